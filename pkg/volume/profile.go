package volume

import (
	"strings"
	"time"
)

// KeyProfile is the volume attribute that picks a workload profile.
const KeyProfile = "profile"

// Profile names a set of tuned settings for one kind of workload; the
// empty Profile keeps the driver's defaults.
type Profile string

// The workload profiles (see profileTable).
const (
	ProfileDataset    Profile = "dataset"
	ProfileCheckpoint Profile = "checkpoint"
	ProfileSmallFiles Profile = "small-files"
)

// Tuning is what a profile sets for a volume. A zero field keeps the
// driver's value (its flag); a per-volume setting the user gave
// explicitly (the dir-cache-time mount option) wins over the profile.
type Tuning struct {
	// DirCacheTime: how long a directory listing is trusted
	// (--dir-cache-time, the dir-cache-time mount option).
	DirCacheTime time.Duration
	// Transfers: parallel uploads (MOUNT_CACHED; --upload-transfers;
	// above 1, files no longer reach the bucket in close order).
	Transfers int
	// WriteBack: the delay between a file's last close and its upload
	// (MOUNT_CACHED; --write-back).
	WriteBack time.Duration
	// ServerWrites: new files are written through the FUSE server, never
	// handed to the kernel as passthrough writers (MOUNT_CACHED).
	ServerWrites bool
}

// profileEntry is one row of the profile table.
type profileEntry struct {
	name   Profile
	tuning Tuning
}

// profileTable is the one table of profiles (README "Workload profiles"
// shows the same rows):
//
//   - dataset: files read, rarely changed: listings trusted for 5
//     minutes (default 10s);
//   - checkpoint: large files written and fsync'ed (MOUNT_CACHED): uploads
//     start 100 ms after the last close (default 1s), in close order;
//   - small-files: many small files listed, read and written: listings
//     trusted for 1 minute, 8 parallel uploads (close order not kept;
//     fsync stays the durable checkpoint), new files written through the
//     FUSE server in MOUNT_CACHED (a passthrough writer's cost per file
//     made 16 KiB files written one by one 0.69× as fast,
//     docs/benchmarks.md "Small files written"; without the profile the
//     FUSE server does so only after 32 small files in a row).
//
// No profile changes the read-ahead: 8 parallel GETs of 16 MiB read a
// sequential file at 0.64× the defaults' rate (4 of 8 MiB), with twice
// the CPU per GiB and twice the memory, both with the server on loopback
// and 20 ms away (make bench, 2 December 2026, docs/benchmarks.md).
func profileTable() []profileEntry {
	return []profileEntry{
		{ProfileDataset, Tuning{DirCacheTime: 5 * time.Minute}},
		{ProfileCheckpoint, Tuning{WriteBack: 100 * time.Millisecond}},
		{ProfileSmallFiles, Tuning{DirCacheTime: time.Minute, Transfers: 8, ServerWrites: true}},
	}
}

// Profiles lists the accepted profiles in table order.
func Profiles() []Profile {
	var out []Profile
	for _, e := range profileTable() {
		out = append(out, e.name)
	}
	return out
}

// ParseProfile parses a `profile` attribute value ("" is no profile);
// anything else not in the table is fault.Invalid naming the accepted
// values.
func ParseProfile(v string) (Profile, error) {
	p := Profile(strings.ToLower(strings.TrimSpace(v)))
	if p == "" {
		return "", nil
	}
	names := make([]string, 0, 3)
	for _, e := range profileTable() {
		if e.name == p {
			return p, nil
		}
		names = append(names, string(e.name))
	}
	return "", invalid(KeyProfile, v, strings.Join(names, ", "))
}

// Tuning returns the profile's settings (zero for no profile).
func (p Profile) Tuning() Tuning {
	for _, e := range profileTable() {
		if e.name == p {
			return e.tuning
		}
	}
	return Tuning{}
}

// Or returns v, or def when v is zero: a profile's setting over the
// driver's default.
func Or[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}
