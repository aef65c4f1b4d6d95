package test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestStatsLookMTimesUpAhead: on a MOUNT_CACHED volume of an S3 store,
// and on a MOUNT volume with --mount-object-mtimes, where each file's
// mtime (kept in metadata by rclone-style uploaders) takes a HEAD,
// statting files in name order (`ls -l`) looks the next files' mtimes up
// ahead, several HEADs at once, with no HEAD more than before, and shows
// every file's own mtime. Reading files in order (each statted first)
// looks up none of the small files the small-file prefetch fetches (its
// GETs bring their mtimes), also after an empty file rclone's cache never
// opens (61 HEADs for 61 files before), and the larger ones ahead.
// Before, each stat waited for its HEAD in turn: `ls -l` of 2,500 files
// on MOUNT_CACHED with a 20 ms round trip took 57 s (docs/benchmarks.md).
func TestStatsLookMTimesUpAhead(t *testing.T) {
	testenv.RequireFUSE(t)
	s3srv := testenv.StartS3(t)
	var heads, inFlight, most atomic.Int64
	// Each HEAD takes 20 ms more, as from a far store, so HEADs sent
	// together overlap.
	through := refusingS3(t, s3srv, func(r *http.Request) bool {
		if r.Method != http.MethodHead {
			return false
		}
		heads.Add(1)
		n := inFlight.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(20 * time.Millisecond)
		inFlight.Add(-1)
		return false
	})
	const bucket, n = "stat-ahead", 60
	if err := s3srv.Store(t).CreateBucket(context.Background(), bucket); err != nil {
		t.Fatal(err)
	}
	base := time.Unix(1_500_000_000, 0)
	mtime := func(i int) time.Time { return base.Add(time.Duration(i) * time.Hour) }
	for i := range n {
		if _, err := s3srv.Client().PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String(bucket),
			Key: aws.String(fmt.Sprintf("d/%03d", i)), Body: bytes.NewReader([]byte("data")),
			Metadata: map[string]string{"mtime": fmt.Sprint(mtime(i).Unix())}}); err != nil {
			t.Fatal(err)
		}
	}
	// And files with no mtime in metadata (most uploaders): their mtime
	// is the listing's last-modified time. (rclone keeps the listing's
	// sub-second part, which a HEAD lacks; versitygw lists whole seconds,
	// so this checks the value only.)
	for i := range n {
		putObject(t, s3srv, bucket, fmt.Sprintf("e/%03d", i), []byte("data"))
	}
	// And files a reader reads in order: small ones, and ones larger than
	// the small-file prefetch takes (256 KiB).
	for i := range n {
		putObject(t, s3srv, bucket, fmt.Sprintf("r/%03d", i), []byte("data"))
	}
	// And a package directory: an empty __init__.py sorts first.
	putObject(t, s3srv, bucket, "p/__init__.py", nil)
	for i := range n {
		putObject(t, s3srv, bucket, fmt.Sprintf("p/m%03d.py", i), []byte("data"))
	}
	const nBig = 20
	for i := range nBig {
		putObject(t, s3srv, bucket, fmt.Sprintf("big/%03d", i), bytes.Repeat([]byte{byte(i)}, 300<<10))
	}
	listedAt := map[string]time.Time{}
	page, err := s3srv.Client().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("e/")})
	if err != nil || len(page.Contents) != n {
		t.Fatalf("listing e/: %v", err)
	}
	for _, o := range page.Contents {
		listedAt[strings.TrimPrefix(aws.ToString(o.Key), "e/")] = aws.ToTime(o.LastModified)
	}
	t.Logf("e/000 listed at %s", listedAt["000"].Format(time.RFC3339Nano))
	for _, tc := range []struct {
		mode string
		args []string
	}{
		{"MOUNT_CACHED", nil},
		{"MOUNT", []string{"--mount-object-mtimes"}},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			drv := testenv.StartDriver(t, through, tc.args...)
			c := drv.Dial(t)
			v, err := c.Controller.CreateVolume(context.Background(), createReq("pv-stat-ahead-"+tc.mode, map[string]string{"source": "s3://" + bucket, "mode": tc.mode}, s3srv.Secrets()))
			if err != nil {
				t.Fatal(err)
			}
			id := v.GetVolume().GetVolumeId()
			staging, _ := podPaths(t, drv)
			if err := stageCached(t, c, id, staging, s3srv.Secrets()); err != nil {
				t.Fatal(err)
			}
			defer unstage(t, c, id, staging)
			heads.Store(0)
			most.Store(0)
			entries, err := os.ReadDir(filepath.Join(staging, "d"))
			if err != nil || len(entries) != n {
				t.Fatalf("listing d/: %d entries, %v", len(entries), err)
			}
			for i, e := range entries {
				info, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				if !info.ModTime().Equal(mtime(i)) {
					t.Fatalf("d/%s: mtime %v, want %v (its metadata)", e.Name(), info.ModTime(), mtime(i))
				}
			}
			entries, err = os.ReadDir(filepath.Join(staging, "e"))
			if err != nil || len(entries) != n {
				t.Fatalf("listing e/: %d entries, %v", len(entries), err)
			}
			for _, e := range entries {
				info, err := e.Info()
				if err != nil {
					t.Fatal(err)
				}
				if want := listedAt[e.Name()]; !info.ModTime().Equal(want) {
					t.Fatalf("e/%s: mtime %v, want %v (the listing's last-modified time)", e.Name(), info.ModTime(), want)
				}
			}
			hits := fuseStats(t, drv, id).ReadAhead.MTimeHits
			t.Logf("%d HEADs, at most %d at once; %d stats answered from lookups ahead", heads.Load(), most.Load(), hits)
			if most.Load() < 2 {
				t.Fatalf("at most %d HEAD at once: the mtimes were not looked up ahead", most.Load())
			}
			// A stat that finds its lookup still queued asks its own object.
			if hits < n {
				t.Fatalf("%d of %d stats answered from lookups ahead, want at least %d", hits, 2*n, n)
			}
			if h := heads.Load(); h > 2*n {
				t.Fatalf("%d HEADs for %d files: lookups ahead must not add requests", h, 2*n)
			}
			// readInOrder reads the files of dir one after another and
			// returns the HEADs that made.
			readInOrder := func(dir string, names []string) int64 {
				heads.Store(0)
				for _, name := range names {
					if _, err := os.ReadFile(filepath.Join(staging, dir, name)); err != nil {
						t.Fatal(err)
					}
				}
				return heads.Load()
			}
			numbered := func(format string) []string {
				var names []string
				for i := range n {
					names = append(names, fmt.Sprintf(format, i))
				}
				return names
			}
			// A reader of files in order stats each (the kernel's lookup)
			// before it reads it; the prefetch's GETs bring the small
			// files' mtimes, so only the files read before it starts make
			// a HEAD. Lookups ahead made one for every file.
			h := readInOrder("r", numbered("%03d"))
			t.Logf("reading %d files in order: %d HEADs", n, h)
			if h > 6 {
				t.Fatalf("reading %d files in order made %d HEADs; their GETs bring the mtimes", n, h)
			}
			// rclone's cache never opens the empty __init__.py, so that
			// reader shows no open before its next file: it is still a
			// reader, not an `ls -l`.
			h = readInOrder("p", append([]string{"__init__.py"}, numbered("m%03d.py")...))
			t.Logf("reading an empty __init__.py, then %d files in order: %d HEADs", n, h)
			if h > 7 {
				t.Fatalf("reading an empty __init__.py, then %d files in order, made %d HEADs; their GETs bring the mtimes", n, h)
			}
			// Larger files are statted before their GET: their HEADs are
			// made ahead, several at once, one per file as without.
			heads.Store(0)
			most.Store(0)
			hits = fuseStats(t, drv, id).ReadAhead.MTimeHits
			for i := range nBig {
				if _, err := os.ReadFile(filepath.Join(staging, "big", fmt.Sprintf("%03d", i))); err != nil {
					t.Fatal(err)
				}
			}
			hits = fuseStats(t, drv, id).ReadAhead.MTimeHits - hits
			t.Logf("reading %d files of 300 KiB in order: %d HEADs, at most %d at once, %d stats from lookups", nBig, heads.Load(), most.Load(), hits)
			if h := heads.Load(); h > nBig+2 || most.Load() < 2 || hits < nBig-4 {
				t.Fatalf("reading %d files of 300 KiB in order: %d HEADs, at most %d at once, %d stats answered from lookups; want at most %d, at least 2 and at least %d",
					nBig, h, most.Load(), hits, nBig+2, nBig-4)
			}
		})
	}
}
