package redact

import (
	"io"
	"sync"
)

// Set is a changing union of Redactors, for a log shared by work that
// comes and goes: the node plugin runs COPY volumes' engine (rclone) in
// its own process, so its log masks the secrets of every copy running.
// The zero value is ready; a nil Set masks nothing and ignores Add.
type Set struct {
	mu      sync.RWMutex
	members map[*Redactor]struct{}
}

// Add masks r's secrets until the returned function is called.
func (s *Set) Add(r *Redactor) (remove func()) {
	if s == nil || r.Empty() {
		return func() {}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.members == nil {
		s.members = map[*Redactor]struct{}{}
	}
	s.members[r] = struct{}{}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.members, r)
	}
}

// String masks str with every member.
func (s *Set) String(str string) string {
	if s == nil {
		return str
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	for r := range s.members {
		str = r.String(str)
	}
	return str
}

// Writer returns a writer that masks each Write with the members of the
// moment before passing it to w (see Redactor.Writer).
func (s *Set) Writer(w io.Writer) io.Writer { return &setWriter{s: s, w: w} }

type setWriter struct {
	s *Set
	w io.Writer
}

func (w *setWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.w, w.s.String(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}
