// Package cli is `bucket-csi storage`: list the buckets the driver (or
// this CLI) created, delete them, and upload local files to a bucket. It
// uses the same stores, credentials and ownership rules as the driver.
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
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// Env is what the commands run with.
type Env struct {
	Stores store.Registry
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
	PVs PVLister
	Now func() time.Time
}

func (e *Env) open(kind string) (store.Store, error) {
	b, err := e.Stores.Get(kind)
	if err != nil {
		return nil, err
	}
	return b.Open(e.Secrets[kind], b.DefaultLocation)
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

// List returns the marked buckets of every configured store. A store that
// cannot be listed is reported on e.Err and skipped.
func (e *Env) List(ctx context.Context) ([]Entry, error) {
	var out []Entry
	for _, kind := range e.Stores.Kinds() {
		st, err := e.open(kind)
		if err == nil {
			var entries []Entry
			entries, err = listStore(ctx, kind, st)
			out = append(out, entries...)
		}
		if err != nil {
			fmt.Fprintf(e.Err, "warning: store %s: %v\n", kind, err)
		}
	}
	if e.PVs != nil {
		pvs, err := e.PVs(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing PersistentVolumes: %w", err)
		}
		for i := range out {
			if refs := ReferencingPVs(pvs, out[i].Store, out[i].Name); len(refs) > 0 {
				out[i].PVs = refs
				out[i].Status = fmt.Sprintf("IN USE (PVs: %s)", strings.Join(refs, ", "))
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	return out, nil
}

func listStore(ctx context.Context, kind string, st store.Store) ([]Entry, error) {
	all, err := st.ListBuckets(ctx)
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, b := range all {
		o, err := bucket.ReadOwner(ctx, st, b.Name)
		if err != nil || o == nil {
			continue // not ours (or unreadable): never listed, as in the spec
		}
		n := 0
		lerr := st.List(ctx, b.Name, bucket.MetaDir+"/volumes/", 0, func(store.Object) error { n++; return nil })
		e := Entry{Name: b.Name, Store: kind, Created: o.CreatedAt, CreatedBy: o.CreatedBy, Volumes: n, Status: "READY"}
		switch {
		case lerr != nil:
			e.Volumes, e.Status = -1, "UNKNOWN (volumes could not be listed)"
		case n > 0:
			e.Status = fmt.Sprintf("IN USE (%d volumes)", n)
		}
		out = append(out, e)
	}
	return out, nil
}

// Ls prints the listing as a table or as JSON.
func (e *Env) Ls(ctx context.Context, asJSON bool) error {
	entries, err := e.List(ctx)
	if err != nil {
		return err
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
	entries, err := e.List(ctx)
	if err != nil {
		return err
	}
	byName := map[string]Entry{}
	for _, en := range entries {
		byName[en.Name] = en
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
		switch {
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
			err = bucket.Purge(ctx, st, name, nil)
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
