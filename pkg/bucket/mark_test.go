package bucket

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func testMarker(t testing.TB) *Marker {
	t.Helper()
	m, err := NewMarker(NewKey())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMarkOnlyGenuine: a mark verifies only for the key and the bucket it
// was signed for; forged, copied, edited, version 1 and malformed marks
// never do.
func TestMarkOnlyGenuine(t *testing.T) {
	k := testMarker(t)
	ref := Ref{Store: "s3", Location: "", Bucket: "team-data"}
	good := k.Sign(ref, Mark{CreatedBy: "pvc ns/a", CreatedAt: time.Date(2026, 12, 1, 10, 0, 0, 123, time.UTC)})
	m, err := k.Verify(ref, good)
	if err != nil || m.CreatedBy != "pvc ns/a" || m.Bucket != "team-data" || m.Version != MarkVersion || m.Nonce == "" {
		t.Fatalf("genuine mark: %+v, %v", m, err)
	}
	if again := k.Sign(ref, Mark{CreatedBy: "pvc ns/a"}); bytes.Equal(again, good) {
		t.Fatal("two marks are identical: no nonce")
	}
	// Tampering with any one field breaks the signature.
	var fields map[string]any
	if err := json.Unmarshal(good, &fields); err != nil {
		t.Fatal(err)
	}
	for name, value := range map[string]any{
		"driver": "other.csi.io", "version": 3, "store": "gcs", "location": "eu", "bucket": "other",
		"createdAt": "2020-01-01T00:00:00Z", "createdBy": "pvc evil/x", "state": StateDeleting, "nonce": "AAAA",
		"sig": strings.Repeat("A", 43),
	} {
		edited := map[string]any{}
		for k, v := range fields {
			edited[k] = v
		}
		edited[name] = value
		data, _ := json.Marshal(edited)
		if _, err := k.Verify(ref, data); !errors.Is(err, ErrUnverified) {
			t.Errorf("mark with %s edited verified: %v", name, err)
		}
	}
	other := Ref{Store: "s3", Bucket: "victim"}
	cases := map[string]struct {
		ref  Ref
		data []byte
	}{
		"copied to another bucket":   {other, good},
		"copied to another location": {Ref{Store: "s3", Location: "eu", Bucket: "team-data"}, good},
		"copied to another store":    {Ref{Store: "gcs", Bucket: "team-data"}, good},
		"signed with another key":    {ref, testMarker(t).Sign(ref, Mark{})},
		"version 1 (unsigned)":       {ref, []byte(`{"driver":"bucket.csi.io","createdAt":"2026-01-01T00:00:00Z","createdBy":"pvc ns/a"}`)},
		"forged without a key":       {ref, []byte(`{"driver":"bucket.csi.io","version":2,"store":"s3","location":"","bucket":"team-data","createdAt":"2026-01-01T00:00:00Z","createdBy":"x","nonce":"n","sig":"c2lnbmF0dXJl"}`)},
		"unknown field":              {ref, bytes.Replace(good, []byte(`{`), []byte(`{"extra":1,`), 1)},
		"trailing data":              {ref, append(bytes.Clone(good), []byte(`{}`)...)},
		"too large":                  {ref, append(bytes.Clone(good), bytes.Repeat([]byte(" "), MaxMarkBytes)...)},
		"empty":                      {ref, nil},
		"not JSON":                   {ref, []byte("owner")},
	}
	for name, c := range cases {
		if m, err := k.Verify(c.ref, c.data); !errors.Is(err, ErrUnverified) || m != nil {
			t.Errorf("%s: verified (%+v, %v)", name, m, err)
		}
	}
}

// TestLoadKey: keys shorter than MinKeyBytes and files others can read
// are refused; trailing newlines are not part of the key.
func TestLoadKey(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "key")
	if err := os.WriteFile(p, append(bytes.Repeat([]byte("k"), 40), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := LoadKey(p)
	if err != nil || len(key) != 40 {
		t.Fatalf("LoadKey: %d bytes, %v", len(key), err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(p); err == nil || !strings.Contains(err.Error(), "accessible to others") {
		t.Fatalf("world-readable key file accepted: %v", err)
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("too short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKey(short); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Fatalf("short key accepted: %v", err)
	}
	if _, err := NewMarker([]byte("short")); err == nil {
		t.Fatal("NewMarker accepted a short key")
	}
}

// FuzzVerifyMark: the parser and verifier never panic, and whatever they
// accept is exactly what the key signed: re-signing the parsed fields
// gives the same signature.
func FuzzVerifyMark(f *testing.F) {
	k, err := NewMarker(bytes.Repeat([]byte("fuzz-key-"), 4))
	if err != nil {
		f.Fatal(err)
	}
	ref := Ref{Store: "s3", Bucket: "b"}
	f.Add(k.Sign(ref, Mark{CreatedBy: "pvc ns/a"}), "b")
	f.Add(k.Sign(ref, Mark{State: StateDeleting}), "b")
	f.Add([]byte(`{"driver":"bucket.csi.io","createdAt":"2026-01-01T00:00:00Z","createdBy":"pvc ns/a"}`), "b")
	f.Add([]byte(`{"driver":"bucket.csi.io","version":2}`), "b")
	f.Add([]byte(`{}{}`), "c")
	f.Fuzz(func(t *testing.T, data []byte, bucket string) {
		r := Ref{Store: "s3", Bucket: bucket}
		m, err := k.Verify(r, data)
		if err != nil {
			if !errors.Is(err, ErrUnverified) || m != nil {
				t.Fatalf("Verify error %v with mark %+v", err, m)
			}
			return
		}
		if m.Bucket != bucket || m.Version != MarkVersion || m.Driver != DriverMark || len(data) > MaxMarkBytes {
			t.Fatalf("accepted a mark for the wrong bucket or version: %+v", m)
		}
		var re Mark
		if err := json.Unmarshal(k.Sign(r, *m), &re); err != nil || re.Sig != m.Sig {
			t.Fatalf("accepted mark's signature %q is not the key's %q", m.Sig, re.Sig)
		}
	})
}
