// Package cli is `bucket-csi storage`: list the buckets the driver (or
// this CLI) created, delete them, re-mark buckets as the driver's, and
// upload local files to a bucket. It uses the same stores, credentials,
// ownership key and ownership rules as the driver.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/kube"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// Env is what the commands run with.
type Env struct {
	Stores store.Registry
	// Kinds is every store kind of the build (pkg/stores.Catalog): bucket
	// URIs and naming rules.
	Kinds store.Catalog
	// Secrets are the credentials per store kind (the same keys as the CSI
	// secrets); a store without an entry uses the ambient identity.
	Secrets map[string]store.Secrets
	// DefaultStore is used by upload when --store is not given.
	DefaultStore string
	Out, Err     io.Writer
	// In answers confirmations; nil means no terminal (confirmations fail).
	In io.Reader
	// Terminal selects the live progress line over plain lines.
	Terminal bool
	// PVs, when set, lists the cluster's PersistentVolumes: ls and delete
	// then also count the PVs that reference a bucket.
	PVs kube.PVLister
	Now func() time.Time
	// Ownership verifies and writes marks with the driver's ownership key;
	// nil when no key is configured (every command but upload into an
	// existing bucket then refuses).
	Ownership *bucket.Keeper
}

// errNoKey is the answer of commands that need the ownership key.
var errNoKey = fmt.Errorf("%w: --ownership-key-file is required: only marks signed with the driver's ownership key count (in a cluster: the key in the chart's Secret)", fault.Invalid)

func (e *Env) open(kind string) (store.Store, error) {
	b, err := e.Stores.Get(kind)
	if err != nil {
		return nil, err
	}
	return b.Open(e.Secrets[kind], b.DefaultLocation)
}

// ref names bucket in kind's store at the configured default location,
// the one location the CLI opens.
func (e *Env) ref(kind, name string) bucket.Ref {
	return bucket.Ref{Store: kind, Location: e.Stores[kind].DefaultLocation, Bucket: name}
}

// Entry is one bucket in `storage ls`.
type Entry struct {
	Name      string    `json:"name"`
	Store     string    `json:"store"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"createdBy"`
	// Volumes is the number of volumes that still use the bucket; -1 when
	// they could not be listed (delete then refuses without --force).
	Volumes int `json:"volumes"`
	// PVs are the PersistentVolumes that reference the bucket (only when
	// a cluster is configured).
	PVs    []string `json:"pvs,omitempty"`
	Status string   `json:"status"`
}

// Unverified is a bucket whose mark object is not a genuine mark: never
// listed as the driver's nor deleted until an admin re-marks it.
type Unverified struct {
	Name, Store, Reason string
}

// List returns the buckets of every configured store that carry a
// genuine mark, and those whose mark object is not genuine. A store that
// cannot be listed is reported on e.Err and skipped.
func (e *Env) List(ctx context.Context) ([]Entry, []Unverified, error) {
	if e.Ownership == nil {
		return nil, nil, errNoKey
	}
	var out []Entry
	var suspects []Unverified
	for _, kind := range e.Stores.Kinds() {
		st, err := e.open(kind)
		if err == nil {
			var entries []Entry
			var sus []Unverified
			entries, sus, err = e.listStore(ctx, kind, st)
			_ = st.Close()
			out = append(out, entries...)
			suspects = append(suspects, sus...)
		}
		if err != nil {
			fmt.Fprintf(e.Err, "warning: store %s: %v\n", kind, err)
		}
	}
	if e.PVs != nil {
		pvs, err := e.PVs(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("listing PersistentVolumes: %w", err)
		}
		for i := range out {
			if refs := kube.ReferencingPVs(e.Kinds, pvs, out[i].Store, out[i].Name); len(refs) > 0 {
				out[i].PVs = refs
				out[i].Status = fmt.Sprintf("IN USE (PVs: %s)", strings.Join(refs, ", "))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, suspects, nil
}

func (e *Env) listStore(ctx context.Context, kind string, st store.Store) ([]Entry, []Unverified, error) {
	all, err := st.ListBuckets(ctx)
	if err != nil {
		return nil, nil, err
	}
	var out []Entry
	var suspects []Unverified
	for _, b := range all {
		f, err := e.Ownership.Read(ctx, st, e.ref(kind, b.Name))
		if err != nil || f.Status == bucket.Unmarked {
			continue // not ours (or unreadable): never listed, as in the spec
		}
		if f.Status == bucket.Unverified {
			suspects = append(suspects, Unverified{Name: b.Name, Store: kind, Reason: f.Reason})
			continue
		}
		n := 0
		lerr := st.List(ctx, b.Name, bucket.MetaDir+"/volumes/", 0, func(store.Object) error { n++; return nil })
		en := Entry{Name: b.Name, Store: kind, Created: f.Mark.CreatedAt, CreatedBy: f.Mark.CreatedBy, Volumes: n, Status: "READY"}
		switch {
		case lerr != nil:
			en.Volumes, en.Status = -1, "UNKNOWN (volumes could not be listed)"
		case f.Mark.State == bucket.StateDeleting:
			en.Status = "DELETING (unfinished; `storage delete` finishes it)"
		case n > 0:
			en.Status = fmt.Sprintf("IN USE (%d volumes)", n)
		}
		out = append(out, en)
	}
	return out, suspects, nil
}

// Ls prints the listing as a table or as JSON.
func (e *Env) Ls(ctx context.Context, asJSON bool) error {
	entries, suspects, err := e.List(ctx)
	if err != nil {
		return err
	}
	for _, s := range suspects {
		fmt.Fprintf(e.Err, "unverified mark: %s bucket %s is not listed as bucket-csi's (%s); if it is, re-mark it with `bucket-csi storage remark %s`\n", strings.ToUpper(s.Store), s.Name, s.Reason, s.Name)
	}
	if asJSON {
		if entries == nil {
			entries = []Entry{}
		}
		enc := json.NewEncoder(e.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	rows := [][]string{{"NAME", "CREATED", "STORE", "CREATED BY", "STATUS"}}
	for _, en := range entries {
		rows = append(rows, []string{en.Name, ago(e.Now(), en.Created), strings.ToUpper(en.Store), en.CreatedBy, en.Status})
	}
	printTable(e.Out, rows)
	return nil
}

// Delete deletes the named marked buckets with their objects. It refuses,
// deleting nothing of that bucket, when the bucket is not the driver's or
// (without force) still used by volumes.
func (e *Env) Delete(ctx context.Context, names []string, all, yes, force bool) error {
	entries, suspects, err := e.List(ctx)
	if err != nil {
		return err
	}
	byName := map[string]Entry{}
	for _, en := range entries {
		byName[en.Name] = en
	}
	unverified := map[string]Unverified{}
	for _, s := range suspects {
		unverified[s.Name] = s
	}
	if all {
		names = nil
		for _, en := range entries {
			names = append(names, en.Name)
		}
		if len(names) == 0 {
			fmt.Fprintln(e.Out, "No buckets created by bucket-csi.")
			return nil
		}
		if !yes && !e.confirm(fmt.Sprintf("Delete %d buckets and all their objects: %s?", len(names), strings.Join(names, ", "))) {
			return errors.New("not confirmed; nothing deleted (use -y to skip the question)")
		}
	}
	if len(names) == 0 {
		return errors.New("name the buckets to delete, or use --all")
	}
	var failed []string
	for _, name := range names {
		en, ok := byName[name]
		sus, isSuspect := unverified[name]
		switch {
		case !ok && isSuspect:
			fmt.Fprintf(e.Err, "Refusing to delete %s: its %s mark is not genuine (%s); bucket-csi deletes only its own buckets. If it is bucket-csi's, re-mark it first with `bucket-csi storage remark %s`.\n", name, bucket.OwnerKey, sus.Reason, name)
			failed = append(failed, name)
			continue
		case !ok:
			fmt.Fprintf(e.Err, "Refusing to delete %s: it was not created by bucket-csi (no %s mark) or does not exist; bucket-csi deletes only its own buckets.\n", name, bucket.OwnerKey)
			failed = append(failed, name)
			continue
		case (en.Volumes != 0 || len(en.PVs) > 0) && !force:
			fmt.Fprintf(e.Err, "Refusing to delete %s: volumes still use it (%s); delete their PersistentVolumes first, or use --force.\n", name, en.Status)
			failed = append(failed, name)
			continue
		}
		st, err := e.open(en.Store)
		if err == nil {
			fmt.Fprintf(e.Out, "Deleting %s bucket %s...\n", strings.ToUpper(en.Store), name)
			err = e.Ownership.Purge(ctx, st, e.ref(en.Store, name), bucket.PurgeOptions{IfUnused: !force})
			_ = st.Close()
		}
		if err != nil {
			fmt.Fprintf(e.Err, "Deleting %s failed: %v\n", name, err)
			failed = append(failed, name)
			continue
		}
		fmt.Fprintf(e.Out, "Deleted %s.\n", name)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: not deleted: %s", fault.Precondition, strings.Join(failed, ", "))
	}
	return nil
}

func (e *Env) confirm(question string) bool {
	if e.In == nil || !e.Terminal {
		return false
	}
	fmt.Fprintf(e.Out, "%s [y/N] ", question)
	var answer string
	_, _ = fmt.Fscanln(e.In, &answer)
	return strings.EqualFold(answer, "y") || strings.EqualFold(answer, "yes")
}

// ago formats t relative to now, as "3 mins ago".
func ago(now, t time.Time) string {
	d := now.Sub(t)
	plural := func(n int, unit string) string {
		if n == 1 {
			return fmt.Sprintf("1 %s ago", unit)
		}
		return fmt.Sprintf("%d %ss ago", n, unit)
	}
	switch {
	case t.IsZero():
		return "-"
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d.Minutes()), "min")
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour")
	default:
		return plural(int(d.Hours()/24), "day")
	}
}

func printTable(w io.Writer, rows [][]string) {
	widths := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, c := range r {
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, c := range r {
			if i < len(r)-1 {
				fmt.Fprintf(&b, "%-*s  ", widths[i], c)
			} else {
				b.WriteString(c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// IsTerminal reports whether f is a character device (a terminal).
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
