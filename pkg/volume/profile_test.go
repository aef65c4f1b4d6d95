package volume

import (
	"errors"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

func TestParseProfile(t *testing.T) {
	for _, p := range Profiles() {
		got, err := ParseProfile(" " + string(p) + " ")
		if err != nil || got != p {
			t.Errorf("ParseProfile(%q) = %q, %v", p, got, err)
		}
		if p.Tuning() == (Tuning{}) {
			t.Errorf("profile %q tunes nothing", p)
		}
	}
	if got, err := ParseProfile(""); err != nil || got != "" || got.Tuning() != (Tuning{}) {
		t.Errorf("ParseProfile(\"\") = %q, %v; want no profile and no tuning", got, err)
	}
	if _, err := ParseProfile("bulk"); !errors.Is(err, fault.Invalid) {
		t.Errorf("ParseProfile(bulk) = %v, want fault.Invalid", err)
	}
}

// The table's values, as the README documents them.
func TestProfileTuning(t *testing.T) {
	want := map[Profile]Tuning{
		ProfileDataset:    {DirCacheTime: 5 * time.Minute},
		ProfileCheckpoint: {WriteBack: 100 * time.Millisecond},
		ProfileSmallFiles: {DirCacheTime: time.Minute, Transfers: 8, ServerWrites: true},
	}
	if len(Profiles()) != len(want) {
		t.Fatalf("profiles %v, want %d", Profiles(), len(want))
	}
	for p, tu := range want {
		if got := p.Tuning(); got != tu {
			t.Errorf("%s tuning = %+v, want %+v", p, got, tu)
		}
	}
}

func TestOr(t *testing.T) {
	if Or(0, 4) != 4 || Or(8, 4) != 8 || Or(time.Duration(0), time.Second) != time.Second {
		t.Error("Or does not prefer a set value over the default")
	}
}
