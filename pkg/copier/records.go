package copier

import (
	"bufio"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
)

// record is one line of the copy's working files: a planned object (path,
// size, fingerprint) or a manifest entry (with the file's mtime and its
// place in the manifest).
type record struct {
	Path  string
	Size  int64
	FP    string
	MTime int64
	Seq   int64
	Todo  bool // in the plan: the file must be downloaded
}

// recordWriter appends records to a file in a compact binary form,
// each counted by its meter before it is written.
type recordWriter struct {
	f   *os.File
	w   *bufio.Writer
	m   *meter
	buf []byte
}

func createRecords(path string, m *meter) (*recordWriter, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	return &recordWriter{f: f, w: bufio.NewWriterSize(f, 64<<10), m: m}, nil
}

func (w *recordWriter) write(r *record) error {
	b := w.buf[:0]
	b = binary.AppendUvarint(b, uint64(len(r.Path)))
	b = append(b, r.Path...)
	b = binary.AppendVarint(b, r.Size)
	b = binary.AppendUvarint(b, uint64(len(r.FP)))
	b = append(b, r.FP...)
	b = binary.AppendVarint(b, r.MTime)
	b = binary.AppendVarint(b, r.Seq)
	todo := byte(0)
	if r.Todo {
		todo = 1
	}
	b = append(b, todo)
	w.buf = b
	if err := w.m.grow(int64(len(b))); err != nil {
		return err
	}
	_, err := w.w.Write(b)
	return err
}

func (w *recordWriter) close() error {
	err := w.w.Flush()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// recordReader reads a file written by recordWriter, one record at a time.
type recordReader struct {
	f *os.File
	r *bufio.Reader
}

func openRecords(path string) (*recordReader, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	return &recordReader{f: f, r: bufio.NewReaderSize(f, 64<<10)}, nil
}

// next reads the next record; io.EOF at the end.
func (rr *recordReader) next(r *record) error {
	n, err := binary.ReadUvarint(rr.r)
	if err != nil {
		return err // io.EOF at a record boundary
	}
	if r.Path, err = rr.str(n); err != nil {
		return err
	}
	if r.Size, err = binary.ReadVarint(rr.r); err != nil {
		return unexpected(err)
	}
	if n, err = binary.ReadUvarint(rr.r); err != nil {
		return unexpected(err)
	}
	if r.FP, err = rr.str(n); err != nil {
		return err
	}
	if r.MTime, err = binary.ReadVarint(rr.r); err != nil {
		return unexpected(err)
	}
	if r.Seq, err = binary.ReadVarint(rr.r); err != nil {
		return unexpected(err)
	}
	todo, err := rr.r.ReadByte()
	r.Todo = todo == 1
	return unexpected(err)
}

func (rr *recordReader) str(n uint64) (string, error) {
	if n > 1<<20 {
		return "", fmt.Errorf("corrupt working file %s", rr.f.Name())
	}
	b := make([]byte, n)
	_, err := io.ReadFull(rr.r, b)
	return string(b), unexpected(err)
}

func (rr *recordReader) close() error { return rr.f.Close() }

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// sorter sorts any number of records by path (comparePaths, then Seq) in
// bounded memory: records are held up to runBytes, then sorted and spilled
// to a run file in dir (counted by m); each merges the runs.
type sorter struct {
	dir      string
	name     string
	m        *meter
	runBytes int
	buf      []record
	held     int
	runs     []string
}

// sorterRunBytes is how many bytes of records a sorter holds in memory.
const sorterRunBytes = 16 << 20

func newSorter(dir, name string, m *meter, runBytes int) *sorter {
	return &sorter{dir: dir, name: name, m: m, runBytes: runBytes}
}

func compareRecords(a, b *record) int {
	if c := comparePaths(a.Path, b.Path); c != 0 {
		return c
	}
	return int(a.Seq - b.Seq)
}

func (s *sorter) add(r record) error {
	s.buf = append(s.buf, r)
	s.held += len(r.Path) + len(r.FP) + 96 // the record and its strings' headers
	if s.held >= s.runBytes {
		return s.spill()
	}
	return nil
}

func (s *sorter) spill() error {
	slices.SortFunc(s.buf, func(a, b record) int { return compareRecords(&a, &b) })
	path := filepath.Join(s.dir, fmt.Sprintf("%s.run%d", s.name, len(s.runs)))
	w, err := createRecords(path, s.m)
	if err != nil {
		return err
	}
	for i := range s.buf {
		if err := w.write(&s.buf[i]); err != nil {
			w.close()
			return err
		}
	}
	if err := w.close(); err != nil {
		return err
	}
	s.runs = append(s.runs, path)
	clear(s.buf)
	s.buf, s.held = s.buf[:0], 0
	return nil
}

// each calls fn with every record added, in order. The sorter is spent
// afterwards.
func (s *sorter) each(fn func(*record) error) error {
	if len(s.runs) == 0 {
		slices.SortFunc(s.buf, func(a, b record) int { return compareRecords(&a, &b) })
		for i := range s.buf {
			if err := fn(&s.buf[i]); err != nil {
				return err
			}
		}
		s.buf = nil
		return nil
	}
	if len(s.buf) > 0 {
		if err := s.spill(); err != nil {
			return err
		}
	}
	s.buf = nil
	h := &runHeap{}
	defer func() {
		for _, c := range h.cur {
			c.r.close()
		}
	}()
	for _, p := range s.runs {
		rr, err := openRecords(p)
		if err != nil {
			return err
		}
		c := &runCursor{r: rr}
		if err := rr.next(&c.rec); err == io.EOF {
			rr.close()
			continue
		} else if err != nil {
			rr.close()
			return err
		}
		h.cur = append(h.cur, c)
	}
	heap.Init(h)
	for len(h.cur) > 0 {
		c := h.cur[0]
		if err := fn(&c.rec); err != nil {
			return err
		}
		if err := c.r.next(&c.rec); err == io.EOF {
			c.r.close()
			heap.Pop(h)
			continue
		} else if err != nil {
			return err
		}
		heap.Fix(h, 0)
	}
	return nil
}

type runCursor struct {
	r   *recordReader
	rec record
}

type runHeap struct{ cur []*runCursor }

func (h *runHeap) Len() int           { return len(h.cur) }
func (h *runHeap) Less(i, j int) bool { return compareRecords(&h.cur[i].rec, &h.cur[j].rec) < 0 }
func (h *runHeap) Swap(i, j int)      { h.cur[i], h.cur[j] = h.cur[j], h.cur[i] }
func (h *runHeap) Push(x any)         { h.cur = append(h.cur, x.(*runCursor)) }
func (h *runHeap) Pop() any {
	c := h.cur[len(h.cur)-1]
	h.cur = h.cur[:len(h.cur)-1]
	return c
}
