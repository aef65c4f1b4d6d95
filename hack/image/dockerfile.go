package main

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strings"
)

// Spec is what the Dockerfile's final stage puts in the image: Debian
// packages, the binaries built in the build stage and where they go, and
// the entrypoint. The Dockerfile is the one definition; make image reads it.
type Spec struct {
	Base       string   // FROM of the final stage
	Packages   []string // apt-get install arguments
	Binaries   []string // file names copied from the build stage
	BinDir     string   // where they are copied to
	Entrypoint []string
}

var continuation = regexp.MustCompile(`\\\n\s*`)

// ParseDockerfile reads the final stage of a Dockerfile of the shape this
// repository's has: FROM, RUN apt-get install, COPY --from=build, ENTRYPOINT
// (exec form). Any other instruction in the final stage is an error, so a
// change to the Dockerfile cannot silently diverge from make image.
func ParseDockerfile(data string) (Spec, error) {
	var s Spec
	lines := strings.Split(continuation.ReplaceAllString(data, " "), "\n")
	final := -1
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "FROM ") {
			final = i
		}
	}
	if final < 0 {
		return s, fmt.Errorf("no FROM")
	}
	for _, l := range lines[final:] {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		instr, rest, _ := strings.Cut(l, " ")
		rest = strings.TrimSpace(rest)
		switch instr {
		case "FROM":
			s.Base = rest
		case "RUN":
			for _, cmd := range strings.Split(rest, "&&") {
				f := strings.Fields(cmd)
				if len(f) >= 2 && f[0] == "apt-get" && f[1] == "install" {
					for _, a := range f[2:] {
						if !strings.HasPrefix(a, "-") {
							s.Packages = append(s.Packages, a)
						}
					}
				}
			}
		case "COPY":
			f := strings.Fields(rest)
			if len(f) < 3 || !strings.HasPrefix(f[0], "--from=") {
				return s, fmt.Errorf("COPY %s: only COPY --from=<stage> files... dir/ is understood", rest)
			}
			s.BinDir = path.Clean(f[len(f)-1])
			for _, src := range f[1 : len(f)-1] {
				s.Binaries = append(s.Binaries, path.Base(src))
			}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &s.Entrypoint); err != nil {
				return s, fmt.Errorf("ENTRYPOINT must be in exec form: %w", err)
			}
		default:
			return s, fmt.Errorf("instruction %s in the final stage is not understood by make image", instr)
		}
	}
	if len(s.Binaries) == 0 || len(s.Entrypoint) == 0 {
		return s, fmt.Errorf("final stage copies no binaries or has no ENTRYPOINT")
	}
	return s, nil
}
