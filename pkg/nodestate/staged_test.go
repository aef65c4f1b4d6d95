package nodestate

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// TestSecretsMAC: equal secrets give equal MACs on one node, any change
// (value, key, an extra entry, a shifted boundary) another; another node's
// key gives another MAC; the key is created once, 0600, by concurrent first
// uses alike; the MAC holds no secret.
func TestSecretsMAC(t *testing.T) {
	d := Dir{Root: filepath.Join(t.TempDir(), "state")}
	secrets := map[string]string{"accessKeyID": "AKIA1", "secretAccessKey": "hunter2"}
	macs := make([]string, 8)
	var wg sync.WaitGroup
	for i := range macs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := d.SecretsMAC(secrets)
			if err != nil {
				t.Error(err)
			}
			macs[i] = m
		}()
	}
	wg.Wait()
	for _, m := range macs {
		if m != macs[0] || len(m) != 64 {
			t.Fatalf("concurrent first uses disagree: %v", macs)
		}
	}
	st, err := os.Stat(filepath.Join(d.Root, keyFile))
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != keySize {
		t.Fatalf("key file: %v %v", st, err)
	}
	if left, _ := filepath.Glob(filepath.Join(d.Root, ".key-*")); len(left) != 0 {
		t.Fatalf("temporary key files left: %v", left)
	}
	for _, other := range []map[string]string{
		{"accessKeyID": "AKIA1", "secretAccessKey": "hunter3"},
		{"accessKeyID": "AKIA1"},
		{"accessKeyID": "AKIA1", "secretAccessKey": "hunter2", "sessionToken": ""},
		{"accessKeyID": "AKIA1s", "ecretAccessKey": "hunter2"},
		nil,
	} {
		m, err := d.SecretsMAC(other)
		if err != nil {
			t.Fatal(err)
		}
		if m == macs[0] {
			t.Errorf("secrets %v have the same MAC as the staged ones", other)
		}
	}
	if m, _ := (Dir{Root: t.TempDir()}).SecretsMAC(secrets); m == macs[0] {
		t.Fatal("two nodes' keys give the same MAC")
	}
	if strings.Contains(macs[0], "hunter2") {
		t.Fatal("the MAC contains the secret")
	}
	if err := os.WriteFile(filepath.Join(d.Root, keyFile), []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := d.SecretsMAC(secrets); err == nil || strings.Contains(err.Error(), "short") {
		t.Fatalf("a corrupt key: %v", err)
	}
}

// TestStagedDiff names each difference, and secrets only as differing.
func TestStagedDiff(t *testing.T) {
	a := Staged{Source: "s3://data/p", Flags: volume.MountFlags{UID: 1000, Umask: 0o22}, SecretsMAC: "aa"}
	if d := a.Diff(a); len(d) != 0 {
		t.Fatalf("equal fingerprints differ: %v", d)
	}
	b := Staged{Source: "s3://data/q", Flags: volume.MountFlags{UID: 1000, Umask: 0o77, ReadOnly: true}, SecretsMAC: "bb"}
	got := strings.Join(a.Diff(b), "\n")
	for _, want := range []string{"s3://data/p is staged, s3://data/q asked", `"rw,uid=1000,gid=0,umask=022,dir-cache-time=0s" are staged, "ro,uid=1000,gid=0,umask=077,dir-cache-time=0s" asked`, "the secrets differ"} {
		if !strings.Contains(got, want) {
			t.Errorf("diff %q does not say %q", got, want)
		}
	}
	if strings.Contains(got, "aa") || strings.Contains(got, "bb") {
		t.Errorf("diff shows a secrets MAC: %q", got)
	}
}
