package driver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	corev1 "k8s.io/api/core/v1"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

func createReq(name string, params map[string]string) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, Parameters: params, VolumeCapabilities: []*csi.VolumeCapability{rwx()}}
}

// TestCreateVolume checks each answer of CreateVolume: required fields,
// invalid parameters, store answers mapped to their codes (final or
// retryable), and the two kinds of volume that succeed.
func TestCreateVolume(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(e *env)
		req   *csi.CreateVolumeRequest
		want  codes.Code
	}{
		{name: "no name", req: &csi.CreateVolumeRequest{VolumeCapabilities: []*csi.VolumeCapability{rwx()}}, want: codes.InvalidArgument},
		{name: "no capabilities", req: &csi.CreateVolumeRequest{Name: "pv-1"}, want: codes.InvalidArgument},
		{name: "block capability", req: &csi.CreateVolumeRequest{Name: "pv-1", VolumeCapabilities: []*csi.VolumeCapability{blockCap()}}, want: codes.InvalidArgument},
		{name: "unknown parameter", req: createReq("pv-1", map[string]string{"color": "blue"}), want: codes.InvalidArgument},
		{name: "unknown mode", req: createReq("pv-1", map[string]string{volume.KeyMode: "TELEPORT"}), want: codes.InvalidArgument},
		{name: "store not configured", req: createReq("pv-1", map[string]string{volume.KeyStore: "gcs"}), want: codes.InvalidArgument},
		{name: "source bucket missing", req: createReq("pv-1", map[string]string{volume.KeySource: "s3://nope"}), want: codes.NotFound},
		{name: "source bucket exists", setup: func(e *env) { e.bucket("data") }, req: createReq("pv-1", map[string]string{volume.KeySource: "s3://data"}), want: codes.OK},
		{name: "credentials refused", setup: func(e *env) { e.bucket("data") },
			req:  &csi.CreateVolumeRequest{Name: "pv-1", Parameters: map[string]string{volume.KeySource: "s3://data"}, VolumeCapabilities: []*csi.VolumeCapability{rwx()}, Secrets: map[string]string{secretKey: "wrong"}},
			want: codes.PermissionDenied},
		{name: "store unavailable", setup: func(e *env) { e.gate.fail = fmt.Errorf("%w: connection refused", fault.Unavailable) },
			req: createReq("pv-1", nil), want: codes.Unavailable},
		{name: "managed bucket", req: createReq("pv-1", nil), want: codes.OK},
		{name: "managed bucket named", req: createReq("pv-1", map[string]string{volume.KeyName: "team-data"}), want: codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			if tc.setup != nil {
				tc.setup(e)
			}
			resp, err := e.d.CreateVolume(context.Background(), tc.req)
			wantCode(t, "CreateVolume", err, tc.want)
			if err != nil {
				return
			}
			h, err := volume.ParseID(e.cfg.Defaults.Kinds, resp.GetVolume().GetVolumeId())
			if err != nil {
				t.Fatalf("the volume ID %q does not parse: %v", resp.GetVolume().GetVolumeId(), err)
			}
			if got := resp.GetVolume().GetVolumeContext()[volume.KeyBucket]; got != h.Bucket {
				t.Fatalf("volume context bucket %q, ID's bucket %q", got, h.Bucket)
			}
			if err := e.mem.Open(ambientKey).HeadBucket(context.Background(), h.Bucket); err != nil {
				t.Fatalf("bucket %s after CreateVolume: %v", h.Bucket, err)
			}
		})
	}
}

// TestCreateVolumeWithoutOwnershipKey: a managed bucket needs the key
// (final FailedPrecondition); a `source` volume does not.
func TestCreateVolumeWithoutOwnershipKey(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Ownership = nil })
	_, err := e.d.CreateVolume(context.Background(), createReq("pv-1", nil))
	wantCode(t, "managed", err, codes.FailedPrecondition)
	e.bucket("data")
	_, err = e.d.CreateVolume(context.Background(), createReq("pv-2", map[string]string{volume.KeySource: "s3://data"}))
	wantCode(t, "source", err, codes.OK)
}

// TestCreateVolumeRepeat: the same name with the same parameters answers
// the same volume; with other parameters, AlreadyExists.
func TestCreateVolumeRepeat(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		second *csi.CreateVolumeRequest
		want   codes.Code
		sameID bool
	}{
		{name: "same parameters", second: createReq("pv-1", nil), want: codes.OK, sameID: true},
		{name: "other capacity", second: func() *csi.CreateVolumeRequest {
			r := createReq("pv-1", nil)
			r.CapacityRange = &csi.CapacityRange{RequiredBytes: 1 << 30}
			return r
		}(), want: codes.AlreadyExists},
		{name: "other mode", second: createReq("pv-1", map[string]string{volume.KeyMode: string(volume.ModeCopy)}), want: codes.AlreadyExists},
		{name: "other persistence", second: createReq("pv-1", map[string]string{volume.KeyPersistent: "false"}), want: codes.AlreadyExists},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			first, err := e.d.CreateVolume(ctx, createReq("pv-1", nil))
			wantCode(t, "first CreateVolume", err, codes.OK)
			second, err := e.d.CreateVolume(ctx, tc.second)
			wantCode(t, "repeated CreateVolume", err, tc.want)
			if tc.sameID && second.GetVolume().GetVolumeId() != first.GetVolume().GetVolumeId() {
				t.Fatalf("repeat answered volume %q, first %q", second.GetVolume().GetVolumeId(), first.GetVolume().GetVolumeId())
			}
		})
	}
}

// TestControllerOverlap: a call on a volume (or name) that another call
// still holds answers Aborted at once; another volume is not held up.
func TestControllerOverlap(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	entered, block := make(chan struct{}), make(chan struct{})
	e.gate.entered, e.gate.block = entered, block
	done := make(chan error, 1)
	go func() {
		_, err := e.d.CreateVolume(ctx, createReq("pv-1", nil))
		done <- err
	}()
	<-entered // the first call is inside the store
	_, err := e.d.CreateVolume(ctx, createReq("pv-1", nil))
	wantCode(t, "overlapping CreateVolume", err, codes.Aborted)
	_, err = e.d.CreateVolume(ctx, createReq("pv-2", nil))
	wantCode(t, "CreateVolume of another name", err, codes.OK)
	close(block)
	wantCode(t, "first CreateVolume", <-done, codes.OK)
}

// TestDeleteVolume checks DeleteVolume's answers: required ID, IDs it
// does not know (OK), repeats (OK), and what happens to the bucket.
func TestDeleteVolume(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		params map[string]string
		// edit changes the driver's config after the volume is created.
		edit       func(c *Config, e *env)
		want       codes.Code
		bucketGone bool
	}{
		{name: "persistent keeps the bucket", want: codes.OK},
		{name: "not persistent deletes the bucket", params: map[string]string{volume.KeyPersistent: "false"}, want: codes.OK, bucketGone: true},
		{name: "no ownership key", edit: func(c *Config, _ *env) { c.Ownership = nil }, want: codes.FailedPrecondition},
		{name: "store unavailable", edit: func(_ *Config, e *env) { e.gate.fail = fmt.Errorf("%w: connection refused", fault.Unavailable) }, want: codes.Unavailable},
		{name: "another PersistentVolume uses the bucket", params: map[string]string{volume.KeyPersistent: "false"},
			edit: func(c *Config, e *env) { c.PVs = e.staticPVs }, want: codes.FailedPrecondition},
		{name: "cluster unreachable", params: map[string]string{volume.KeyPersistent: "false"},
			edit: func(c *Config, _ *env) {
				c.PVs = func(context.Context) ([]corev1.PersistentVolume, error) { return nil, fmt.Errorf("connection refused") }
			}, want: codes.Unavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			resp, err := e.d.CreateVolume(ctx, createReq("pv-1", tc.params))
			wantCode(t, "CreateVolume", err, codes.OK)
			id, b := resp.GetVolume().GetVolumeId(), resp.GetVolume().GetVolumeContext()[volume.KeyBucket]
			e.lastID = id
			d := e.d
			if tc.edit != nil {
				cfg := e.cfg
				tc.edit(&cfg, e)
				d = New(cfg)
			}
			_, err = d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			wantCode(t, "DeleteVolume", err, tc.want)
			e.gate.fail = nil
			herr := e.mem.Open(ambientKey).HeadBucket(ctx, b)
			if gone := errors.Is(herr, fault.NotFound); gone != tc.bucketGone {
				t.Fatalf("bucket gone after DeleteVolume = %v (%v), want %v", gone, herr, tc.bucketGone)
			}
			if tc.want != codes.OK {
				return
			}
			_, err = d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			wantCode(t, "repeated DeleteVolume", err, codes.OK)
		})
	}
}

// TestDeleteVolumeActsOnlyOnItsRecord: DeleteVolume trusts nothing of a
// handle that the bucket's records do not hold. Handles written by hand
// (the persistence flag of a deleted persistent volume turned to "false",
// another name's hash in an idle or a live bucket) answer OK and touch
// neither bucket nor record. A PersistentVolume that copied a live
// volume's handle, with the provisioner's annotation, is a user of the
// bucket: the DeleteVolume its release causes answers FailedPrecondition
// naming it and keeps the volume's record. A mark saying deleting lets no
// handle without a record act (FailedPrecondition: the purge did not
// finish); the volume's own retry (its record kept to a purge's end)
// finishes the purge.
func TestDeleteVolumeActsOnlyOnItsRecord(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t)
	st := e.mem.Open(ambientKey)
	create := func(name string, params map[string]string) volume.Handle {
		t.Helper()
		resp, err := e.d.CreateVolume(ctx, createReq(name, params))
		wantCode(t, "CreateVolume "+name, err, codes.OK)
		h, err := volume.ParseID(e.cfg.Defaults.Kinds, resp.GetVolume().GetVolumeId())
		if err != nil {
			t.Fatal(err)
		}
		if err := st.PutObject(ctx, h.Bucket, "data", []byte("someone's")); err != nil {
			t.Fatal(err)
		}
		return h
	}
	id := func(h volume.Handle) string {
		t.Helper()
		s, err := h.ID()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	kept := create("pv-kept", map[string]string{volume.KeyName: "kept"})
	_, err := e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id(kept)})
	wantCode(t, "DeleteVolume of a persistent volume", err, codes.OK)
	live := create("pv-live", map[string]string{volume.KeyName: "live", volume.KeyPersistent: "false"})
	forge := func(h volume.Handle, pv string) volume.Handle {
		h.Persistent = false
		if pv != "" {
			h.NameHash = volume.NameHash(pv)
		}
		return h
	}
	for what, h := range map[string]volume.Handle{
		"the deleted persistent volume's handle, persistent false": forge(kept, ""),
		"another name in the idle bucket":                          forge(kept, "pv-other"),
		"another name in the live bucket":                          forge(live, "pv-other"),
	} {
		_, err := e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id(h)})
		wantCode(t, "DeleteVolume of "+what, err, codes.OK)
	}
	record := func() *bucket.Record {
		t.Helper()
		r, err := bucket.GetRecord(ctx, st, "live", live.NameHash)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	for _, b := range []string{"kept", "live"} {
		if _, err := st.GetObject(ctx, b, "data"); err != nil {
			t.Fatalf("bucket %s after DeleteVolume of forged handles: %v", b, err)
		}
	}
	if record() == nil {
		t.Fatal("the live volume's record is gone after DeleteVolume of forged handles")
	}

	cfg := e.cfg
	cfg.PVs = func(context.Context) ([]corev1.PersistentVolume, error) {
		var pvs []corev1.PersistentVolume
		for _, name := range []string{"pv-live", "copy"} {
			pv := corev1.PersistentVolume{}
			pv.Name = name
			pv.Annotations = map[string]string{"pv.kubernetes.io/provisioned-by": Name}
			pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: Name, VolumeHandle: id(live)}
			pvs = append(pvs, pv)
		}
		return pvs, nil
	}
	_, err = New(cfg).DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id(live)})
	wantCode(t, "DeleteVolume of a live volume's handle copied into another PV", err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), "copy") {
		t.Fatalf("the refusal does not name the PV that copied the handle: %v", err)
	}
	if _, err := st.GetObject(ctx, "live", "data"); err != nil || record() == nil {
		t.Fatalf("the live volume lost its bucket (%v) or its record (%v) to a copy of its handle", err, record())
	}

	// A mark left saying deleting while a volume has its record (a purge
	// that found it and could not put the mark back): a forged handle
	// still purges nothing.
	found, err := e.cfg.Ownership.Read(ctx, st, bucket.Ref{Store: live.Store, Location: live.Location, Bucket: "live"})
	if err != nil || found.Mark == nil {
		t.Fatal(found, err)
	}
	m := *found.Mark
	m.State = bucket.StateDeleting
	if err := st.PutObject(ctx, "live", bucket.OwnerKey, e.marker.Sign(bucket.Ref{Store: live.Store, Location: live.Location, Bucket: "live"}, m)); err != nil {
		t.Fatal(err)
	}
	_, err = e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id(forge(live, "pv-other"))})
	wantCode(t, "DeleteVolume of a forged handle while the mark says deleting", err, codes.FailedPrecondition)
	if _, err := st.GetObject(ctx, "live", "data"); err != nil || record() == nil {
		t.Fatalf("a forged handle purged a bucket marked deleting with a volume in it: data %v, record %v", err, record())
	}
	// With its record gone, not even the volume's own handle acts (a
	// purge keeps the deleting volume's record to its end): it is told
	// the purge did not finish; with it, the volume's DeleteVolume (a
	// retry after a deadline) finishes the purge.
	rec := record()
	if err := bucket.DeleteRecord(ctx, st, "live", live.NameHash); err != nil {
		t.Fatal(err)
	}
	_, err = e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id(live)})
	wantCode(t, "DeleteVolume with no record, the mark saying deleting", err, codes.FailedPrecondition)
	if _, err := st.GetObject(ctx, "live", "data"); err != nil {
		t.Fatalf("a handle with no record purged a bucket marked deleting: %v", err)
	}
	if err := bucket.PutRecord(ctx, st, "live", live.NameHash, *rec); err != nil {
		t.Fatal(err)
	}
	_, err = e.d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id(live)})
	wantCode(t, "DeleteVolume retried during a purge", err, codes.OK)
	if err := st.HeadBucket(ctx, "live"); !errors.Is(err, fault.NotFound) {
		t.Fatalf("bucket after the retry that finishes its purge: %v", err)
	}
}

// TestDeleteVolumeOfASharedBucket: volumes of two PVCs naming one bucket,
// each with its PersistentVolume: deleting one forgets it and keeps the
// bucket for the other (whose PV is no reason to refuse), persistent or
// not; deleting the last non-persistent one deletes the bucket.
func TestDeleteVolumeOfASharedBucket(t *testing.T) {
	ctx := context.Background()
	for _, persistent := range []string{"true", "false"} {
		t.Run("persistent "+persistent, func(t *testing.T) {
			e := newEnv(t)
			st := e.mem.Open(ambientKey)
			live := map[string]string{} // PV name -> handle
			e.cfg.PVs = func(context.Context) ([]corev1.PersistentVolume, error) {
				var pvs []corev1.PersistentVolume
				for name, handle := range live {
					pv := corev1.PersistentVolume{}
					pv.Name = name
					pv.Annotations = map[string]string{"pv.kubernetes.io/provisioned-by": Name}
					pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: Name, VolumeHandle: handle}
					pvs = append(pvs, pv)
				}
				return pvs, nil
			}
			d := New(e.cfg)
			for _, pv := range []string{"pvc-a", "pvc-b"} {
				resp, err := d.CreateVolume(ctx, createReq(pv, map[string]string{volume.KeyName: "shared", volume.KeyPersistent: persistent}))
				wantCode(t, "CreateVolume "+pv, err, codes.OK)
				live[pv] = resp.GetVolume().GetVolumeId()
			}
			if err := st.PutObject(ctx, "shared", "data", []byte("theirs")); err != nil {
				t.Fatal(err)
			}
			a := live["pvc-a"]
			_, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: a})
			wantCode(t, "DeleteVolume of one of two volumes on a bucket, both PVs there", err, codes.OK)
			if _, err := st.GetObject(ctx, "shared", "data"); err != nil {
				t.Fatalf("the other volume's bucket lost its data: %v", err)
			}
			delete(live, "pvc-a")
			_, err = d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: live["pvc-b"]})
			wantCode(t, "DeleteVolume of the last volume", err, codes.OK)
			herr := st.HeadBucket(ctx, "shared")
			if gone := errors.Is(herr, fault.NotFound); gone != (persistent == "false") {
				t.Fatalf("bucket gone after its last volume = %v (%v), persistent %s", gone, herr, persistent)
			}
		})
	}
}

// staticPVs lists one static PersistentVolume that uses the last created
// volume's handle.
func (e *env) staticPVs(context.Context) ([]corev1.PersistentVolume, error) {
	pv := corev1.PersistentVolume{}
	pv.Name = "static-copy"
	pv.Spec.CSI = &corev1.CSIPersistentVolumeSource{Driver: Name, VolumeHandle: e.lastID}
	return []corev1.PersistentVolume{pv}, nil
}

// TestDeleteVolumeUnknown: IDs the driver cannot act on answer OK, a
// missing one InvalidArgument.
func TestDeleteVolumeUnknown(t *testing.T) {
	e := newEnv(t)
	e.bucket("data")
	for _, tc := range []struct {
		name string
		id   string
		want codes.Code
	}{
		{name: "no ID", id: "", want: codes.InvalidArgument},
		{name: "malformed ID", id: "not-a-volume", want: codes.OK},
		{name: "bucket gone", id: e.managedID("gone"), want: codes.OK},
		{name: "existing bucket (never deleted)", id: e.sourceID("data", volume.ModeMount), want: codes.OK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.d.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: tc.id})
			wantCode(t, "DeleteVolume", err, tc.want)
		})
	}
	if err := e.mem.Open(ambientKey).HeadBucket(context.Background(), "data"); err != nil {
		t.Fatalf("existing bucket after DeleteVolume: %v", err)
	}
}

// TestValidateVolumeCapabilities: required fields, unknown volumes
// (NotFound), and a capability the driver cannot serve (OK, not
// confirmed, with a message).
func TestValidateVolumeCapabilities(t *testing.T) {
	e := newEnv(t)
	e.bucket("data")
	id := e.sourceID("data", volume.ModeMount)
	for _, tc := range []struct {
		name      string
		req       *csi.ValidateVolumeCapabilitiesRequest
		want      codes.Code
		confirmed bool
	}{
		{name: "no ID", req: &csi.ValidateVolumeCapabilitiesRequest{VolumeCapabilities: []*csi.VolumeCapability{rwx()}}, want: codes.InvalidArgument},
		{name: "no capabilities", req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: id}, want: codes.InvalidArgument},
		{name: "malformed ID", req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: "nope", VolumeCapabilities: []*csi.VolumeCapability{rwx()}}, want: codes.NotFound},
		{name: "bucket gone", req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: e.managedID("gone"), VolumeCapabilities: []*csi.VolumeCapability{rwx()}}, want: codes.NotFound},
		{name: "block", req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: id, VolumeCapabilities: []*csi.VolumeCapability{blockCap()}}, want: codes.OK},
		{name: "mount", req: &csi.ValidateVolumeCapabilitiesRequest{VolumeId: id, VolumeCapabilities: []*csi.VolumeCapability{rwx()}}, want: codes.OK, confirmed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := e.d.ValidateVolumeCapabilities(context.Background(), tc.req)
			wantCode(t, "ValidateVolumeCapabilities", err, tc.want)
			if err == nil && (resp.GetConfirmed() != nil) != tc.confirmed {
				t.Fatalf("confirmed = %v (message %q), want %v", resp.GetConfirmed() != nil, resp.GetMessage(), tc.confirmed)
			}
		})
	}
}
