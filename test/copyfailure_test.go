package test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/pkg/budget"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestCopyFinalFailureHoldsNothing: a COPY stage that fails with a code
// kubelet takes as final (here NotFound: the bucket is gone) leaves no
// stage behind, since kubelet then never unstages it, even once the pod
// is gone: the volume's record goes, and the copy of an earlier stage
// (--keep-copies) stays kept, so the node's disk budget may evict it;
// without an earlier copy nothing is left. Before, the record stayed and
// the restage's claim made the kept copy's reservation one that nothing
// would ever evict or release.
func TestCopyFinalFailureHoldsNothing(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	for _, keep := range []bool{true, false} {
		name := "gone-plain"
		args := []string{}
		if keep {
			name = "gone-kept"
			args = append(args, "--keep-copies")
		}
		t.Run(name, func(t *testing.T) {
			drv := testenv.StartDriver(t, s3, args...)
			c := drv.Dial(t)
			ctx := context.Background()
			st := s3.Store(t)
			if err := st.CreateBucket(ctx, name); err != nil {
				t.Fatal(err)
			}
			keys := []string{"a.txt", "b/c.txt"}
			for _, k := range keys {
				if err := st.PutObject(ctx, name, k, []byte(k)); err != nil {
					t.Fatal(err)
				}
			}
			vol, err := c.Controller.CreateVolume(ctx, createReq("pv-"+name, map[string]string{"source": "s3://" + name, "mode": "COPY"}, s3.Secrets()))
			if err != nil {
				t.Fatal(err)
			}
			id := vol.GetVolume().GetVolumeId()
			staging, _ := podPaths(t, drv)
			if err := stageCopy(t, c, id, staging, s3.Secrets()); err != nil {
				t.Fatalf("the first stage: %v", err)
			}
			unstage(t, c, id, staging)
			if err := st.DeleteObjects(ctx, name, keys); err != nil {
				t.Fatal(err)
			}
			if err := st.DeleteBucket(ctx, name); err != nil {
				t.Fatal(err)
			}
			staging, _ = podPaths(t, drv)
			err = stageCopy(t, c, id, staging, s3.Secrets())
			if status.Code(err) != codes.NotFound {
				t.Fatalf("the stage of a deleted bucket = %v, want NotFound", err)
			}
			for _, rec := range drv.Staged(t) {
				if rec.VolumeID == id {
					t.Fatalf("the failed stage's record is left: %+v", rec)
				}
			}
			r, reserved := reservation(t, drv, id)
			_, statErr := os.Stat(filepath.Join(drv.StateDir, "copies", volume.DirName(id)))
			if keep {
				if !reserved || !r.Kept || statErr != nil {
					t.Fatalf("the earlier copy: reserved %v %+v, on disk: %v; want it kept and evictable", reserved, r, statErr)
				}
				return
			}
			if reserved || !os.IsNotExist(statErr) {
				t.Fatalf("reserved %v %+v, the copy's directory: %v; want nothing left", reserved, r, statErr)
			}
		})
	}
}

// reservation reads volumeID's reservation from the driver's disk
// ledger.
func reservation(t *testing.T, drv *testenv.Driver, volumeID string) (budget.Reservation, bool) {
	t.Helper()
	return reservationIn(t, drv, "disk-budget.json", volumeID)
}

// reservationIn reads volumeID's reservation from the driver's ledger
// file (disk-budget.json, memory-budget.json, server-budget.json).
func reservationIn(t *testing.T, drv *testenv.Driver, file, volumeID string) (budget.Reservation, bool) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(drv.StateDir, file))
	if err != nil {
		t.Fatal(err)
	}
	var ledger struct {
		Reservations map[string]budget.Reservation `json:"reservations"`
	}
	if err := json.Unmarshal(raw, &ledger); err != nil {
		t.Fatal(err)
	}
	r, ok := ledger.Reservations[volumeID]
	return r, ok
}
