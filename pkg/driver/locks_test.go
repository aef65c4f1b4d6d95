package driver

import (
	"errors"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

func TestKeyLocks(t *testing.T) {
	l := newKeyLocks()
	release, err := l.acquire("vol-a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.acquire("vol-a"); !errors.Is(err, fault.Busy) {
		t.Fatalf("second acquire = %v, want fault.Busy", err)
	}
	other, err := l.acquire("vol-b")
	if err != nil {
		t.Fatalf("other key blocked: %v", err)
	}
	other()
	release()
	again, err := l.acquire("vol-a")
	if err != nil {
		t.Fatalf("acquire after release: %v", err)
	}
	again()
}
