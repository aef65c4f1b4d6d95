package cli

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/store"
)

// remarkCountCap bounds the object count Remark shows.
const remarkCountCap = 100000

// shownMarkBytes bounds how much of an old mark Remark prints.
const shownMarkBytes = 512

// Remark makes the named buckets of store kind (default e.DefaultStore)
// the driver's: for each it shows what it found (the old mark object as
// is, the object count, the creation time), asks (yes skips the question;
// without a terminal it refuses), and writes a genuine mark. This is how an
// admin takes over buckets with a mark of an earlier version, or a bucket
// left unmarked by a crash between creation and mark. Buckets that already
// carry a genuine mark are left alone.
func (e *Env) Remark(ctx context.Context, names []string, kind string, yes bool) error {
	if e.Ownership == nil {
		return errNoKey
	}
	if kind == "" {
		kind = e.DefaultStore
	}
	if len(names) == 0 {
		return errors.New("name the buckets to re-mark")
	}
	st, err := e.open(kind)
	if err != nil {
		return err
	}
	defer st.Close()
	var failed []string
	for _, name := range names {
		if err := e.remarkOne(ctx, st, kind, name, yes); err != nil {
			fmt.Fprintf(e.Err, "Not re-marked %s: %v\n", name, err)
			failed = append(failed, name)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: not re-marked: %s", fault.Precondition, strings.Join(failed, ", "))
	}
	return nil
}

func (e *Env) remarkOne(ctx context.Context, st store.Store, kind, name string, yes bool) error {
	ref := e.ref(kind, name)
	if err := st.HeadBucket(ctx, name); err != nil {
		return err
	}
	f, err := e.Ownership.Read(ctx, st, ref)
	if err != nil {
		return err
	}
	if f.Status == bucket.Genuine {
		fmt.Fprintf(e.Out, "%s already carries a genuine bucket-csi mark (created by %s, %s); nothing to do.\n", name, f.Mark.CreatedBy, f.Mark.CreatedAt.Format(time.RFC3339))
		return nil
	}
	created := bucketCreated(ctx, st, name)
	objects, more := 0, false
	if err := st.List(ctx, name, "", remarkCountCap+1, func(o store.Object) error {
		if o.Key != bucket.OwnerKey {
			objects++
		}
		return nil
	}); err != nil {
		return err
	}
	if objects > remarkCountCap {
		objects, more = remarkCountCap, true
	}
	fmt.Fprintf(e.Out, "%s bucket %s\n", strings.ToUpper(kind), name)
	if created.IsZero() {
		fmt.Fprintln(e.Out, "  created:  unknown (the store does not say)")
	} else {
		fmt.Fprintf(e.Out, "  created:  %s (%s)\n", created.UTC().Format(time.RFC3339), ago(e.Now(), created))
	}
	count := strconv.Itoa(objects)
	if more {
		count = "more than " + count
	}
	fmt.Fprintf(e.Out, "  objects:  %s\n", count)
	switch f.Status {
	case bucket.Unmarked:
		fmt.Fprintf(e.Out, "  old mark: none (no %s)\n", bucket.OwnerKey)
	default:
		raw := f.Raw
		if len(raw) > shownMarkBytes {
			raw = raw[:shownMarkBytes]
		}
		fmt.Fprintf(e.Out, "  old mark: not genuine (%s)\n            %s\n", f.Reason, strconv.Quote(string(raw)))
	}
	question := fmt.Sprintf("Mark %s as created by bucket-csi? DeleteVolume of its last volume with persistent \"false\" and `storage delete` may then delete it with all its objects.", name)
	if !yes && !e.confirm(question) {
		return errors.New("not confirmed (use -y to skip the question)")
	}
	owner := bucket.Owner{CreatedBy: "cli bucket-csi storage remark", CreatedAt: created}
	if err := e.Ownership.Remark(ctx, st, ref, owner); err != nil {
		return err
	}
	fmt.Fprintf(e.Out, "Marked %s as bucket-csi's.\n", name)
	return nil
}

// bucketCreated is the creation time the store lists for name (zero when
// unknown).
func bucketCreated(ctx context.Context, st store.Store, name string) time.Time {
	all, err := st.ListBuckets(ctx)
	if err != nil {
		return time.Time{}
	}
	for _, b := range all {
		if b.Name == name {
			return b.Created
		}
	}
	return time.Time{}
}
