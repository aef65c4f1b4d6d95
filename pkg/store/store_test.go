package store

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMaterialize(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "private")
	out, err := Materialize(map[string]string{
		"type": "x", "config_file": "{file:conf}",
		"file:conf": "key_file={file:key.pem}\n", "file:key.pem": "SECRET",
	}, dir)
	if err != nil {
		t.Fatal(err)
	}
	if out["config_file"] != filepath.Join(dir, "conf") || out["type"] != "x" || len(out) != 2 {
		t.Fatalf("options = %v", out)
	}
	conf, _ := os.ReadFile(filepath.Join(dir, "conf"))
	if string(conf) != "key_file="+filepath.Join(dir, "key.pem")+"\n" {
		t.Fatalf("config file = %q", conf)
	}
	for _, f := range []string{"conf", "key.pem"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("dir mode %v", st.Mode())
	}
	if _, err := Materialize(map[string]string{"file:../escape": "x"}, dir); err == nil {
		t.Fatal("a file name with a path was accepted")
	}
}
