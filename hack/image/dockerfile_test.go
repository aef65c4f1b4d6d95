package main

import (
	"os"
	"reflect"
	"testing"
)

// TestDockerfile: make image reads the repository's Dockerfile and gets the
// packages, binaries and entrypoint the Docker build uses.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s, err := ParseDockerfile(string(data))
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{
		Base:       "debian:bookworm-slim",
		Packages:   []string{"fuse3", "ca-certificates", "util-linux", "e2fsprogs"},
		Binaries:   []string{"bucket-csi", "bucket-csi-mounter"},
		BinDir:     "/usr/local/bin",
		Entrypoint: []string{"/usr/local/bin/bucket-csi"},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("ParseDockerfile = %+v, want %+v", s, want)
	}
}

func TestDockerfileRefusesUnknownInstructions(t *testing.T) {
	for _, df := range []string{
		"FROM x\nCOPY --from=build /out/a /usr/local/bin/\nENV A=b\nENTRYPOINT [\"/a\"]\n",
		"FROM x\nCOPY a /usr/local/bin/\nENTRYPOINT [\"/a\"]\n",
		"FROM x\nCOPY --from=build /out/a /usr/local/bin/\nENTRYPOINT /a\n",
		"FROM x\nRUN apt-get install -y a\n",
	} {
		if s, err := ParseDockerfile(df); err == nil {
			t.Errorf("ParseDockerfile(%q) = %+v, want an error", df, s)
		}
	}
}
