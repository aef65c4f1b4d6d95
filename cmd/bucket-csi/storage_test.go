package main

import (
	"bytes"
	"flag"
	"slices"
	"strings"
	"testing"

	"github.com/bucket-csi/bucket-csi/pkg/stores"
)

// storageFlags is a flag set with the storage commands' flags.
func storageFlags() *flag.FlagSet {
	fs := flag.NewFlagSet("bucket-csi storage x", flag.ContinueOnError)
	stores.Flags(fs)
	fs.Bool("all", false, "delete: every bucket")
	fs.Bool("y", false, "no confirmation")
	fs.String("name", "", "upload: the bucket")
	fs.String("o", "table", "ls output")
	return fs
}

// TestReorderBoolFlagsFromFlagSet: which flags take a value comes from
// the flag set, so a store's boolean flag (--s3-path-style) never swallows
// the positional argument after it.
func TestReorderBoolFlagsFromFlagSet(t *testing.T) {
	got := reorder(storageFlags(), []string{"b1", "--s3-path-style", "b2", "-y", "--name", "n", "-o=json", "--", "-x"})
	want := []string{"--s3-path-style", "-y", "--name", "n", "-o=json", "b1", "b2", "-x"}
	if !slices.Equal(got, want) {
		t.Fatalf("reorder = %q, want %q", got, want)
	}
}

// TestCommandUsageListsItsFlags: `storage ls --help` shows ls's flags and
// the shared ones, not delete's --all or upload's --name.
func TestCommandUsageListsItsFlags(t *testing.T) {
	fs := storageFlags()
	var out bytes.Buffer
	fs.SetOutput(&out)
	commandUsage(fs, "ls")
	for _, want := range []string{"-o string", "-s3-endpoint", "-s3-path-style"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("ls usage lacks %q:\n%s", want, out.String())
		}
	}
	for _, not := range []string{"  -all\n", "  -name string", "  -y\n"} {
		if strings.Contains(out.String(), not) {
			t.Errorf("ls usage lists %q:\n%s", not, out.String())
		}
	}
}
