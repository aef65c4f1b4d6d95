package driver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/kube"
	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// ControllerGetCapabilities: create/delete only; buckets need no attach.
func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, t := range []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER,
	} {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// CreateVolume resolves the parameters to a bucket. For `source` it checks
// the bucket is there and usable; otherwise it creates the bucket (marked as
// the driver's) or reuses it, and records the volume inside it so a repeat
// with the same name answers the same volume, and an incompatible repeat
// answers AlreadyExists.
func (d *Driver) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, required("name")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	params := req.GetParameters()
	pvName := params[volume.KeyPVName]
	if pvName == "" {
		pvName = req.GetName()
	}
	spec, err := volume.Parse(params, d.cfg.Defaults, volume.DeriveBucketName(d.cfg.BucketPrefix, pvName))
	if err != nil {
		return nil, err
	}
	if spec.Location == "" {
		b, err := d.cfg.Stores.Get(spec.Store)
		if err != nil {
			return nil, err
		}
		spec.Location = b.DefaultLocation
	}
	// Every volume gets its own ID, `source` ones too: kubelet stages once
	// per ID and node, so a shared ID would share one stage (its secret, its
	// single-writer rule) between PVCs.
	h := volume.Handle{Spec: spec, NameHash: volume.NameHash(req.GetName())}
	id, err := h.ID()
	if err != nil {
		return nil, err
	}
	if !spec.Existing && d.cfg.Ownership == nil {
		return nil, noOwnershipKey("create")
	}
	release, err := d.locks.acquire("create/" + req.GetName())
	if err != nil {
		return nil, err
	}
	defer release()

	st, err := d.openStore(spec.Store, spec.Location, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	defer st.Close()
	capacity := req.GetCapacityRange().GetRequiredBytes()
	if spec.Existing {
		if err := st.HeadBucket(ctx, spec.Bucket); err != nil {
			return nil, err
		}
	} else {
		ref := bucket.Ref{Store: spec.Store, Location: spec.Location, Bucket: spec.Bucket}
		releaseBucket, err := d.locks.acquire(bucketLockKey(ref))
		if err != nil {
			return nil, err
		}
		defer releaseBucket()
		if err := d.ensureManaged(ctx, st, ref, h.NameHash, bucket.Record{Name: req.GetName(), VolumeID: id, CapacityBytes: capacity}, params); err != nil {
			return nil, err
		}
	}
	vctx := map[string]string{volume.KeyBucket: spec.Bucket, volume.KeyStore: spec.Store, volume.KeyMode: string(spec.Mode)}
	if spec.Profile != "" {
		vctx[volume.KeyProfile] = string(spec.Profile) // not in the ID: the node reads it here
	}
	if pv := params[volume.KeyPVName]; pv != "" {
		// The node labels the volume's metrics and events with it.
		vctx[volume.KeyPVName] = pv
	}
	if ns := params[volume.KeyPVCNamespace]; ns != "" {
		// The node shares its copy places by namespace (stage.Request.Tenant).
		vctx[volume.KeyPVCNamespace] = ns
	}
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{
		VolumeId:      id,
		CapacityBytes: capacity,
		VolumeContext: vctx,
	}}, nil
}

// bucketLockKey is the lock every CreateVolume and DeleteVolume of a
// managed bucket holds over its mark, record and purge steps, so deleting
// the last volume of a bucket never interleaves with placing a new volume
// in it. Like every lock of the driver it answers Aborted on overlap (the
// CO retries) rather than wait: a purge can outlast the caller's deadline.
func bucketLockKey(ref bucket.Ref) string { return "bucket/" + ref.String() }

// noOwnershipKey is the answer for creating or deleting a managed bucket
// on a controller started without an ownership key.
func noOwnershipKey(what string) error {
	return fmt.Errorf("%w: this controller has no ownership key (--ownership-key-file), so it cannot %s buckets it manages (it could neither sign nor verify their mark); volumes with `source` on existing buckets work without one", fault.Precondition, what)
}

// ensureManaged creates or reuses a named bucket and keeps the volume
// record. The caller holds the bucket's lock.
func (d *Driver) ensureManaged(ctx context.Context, st store.Store, ref bucket.Ref, nameHash string, rec bucket.Record, params map[string]string) error {
	creator := "volume " + rec.Name
	if pvc, ns := params[volume.KeyPVCName], params[volume.KeyPVCNamespace]; pvc != "" {
		creator = "pvc " + ns + "/" + pvc
	}
	owned, err := d.cfg.Ownership.Ensure(ctx, st, ref, bucket.Owner{CreatedBy: creator})
	if err != nil {
		return err
	}
	if !owned {
		// Used as asked, never deleted, and nothing of ours written into it.
		d.log.Info("using an existing bucket without a genuine bucket-csi mark; it will never be deleted", "bucket", ref.Bucket)
		return nil
	}
	old, err := bucket.GetRecord(ctx, st, ref.Bucket, nameHash)
	if err != nil {
		return err
	}
	if old != nil {
		if old.Name != rec.Name || old.VolumeID != rec.VolumeID || old.CapacityBytes != rec.CapacityBytes {
			return fmt.Errorf("%w: volume %q already exists in bucket %q with other parameters (ID %s, %d bytes requested)", fault.Conflict, rec.Name, ref.Bucket, old.VolumeID, old.CapacityBytes)
		}
		return nil
	}
	rec.CreatedAt = time.Now().UTC()
	if err := bucket.PutRecord(ctx, st, ref.Bucket, nameHash, rec); err != nil {
		return err
	}
	// A purge by another process (the CLI) that started meanwhile sees
	// this record, or this check sees its mark (bucket.Keeper.Purge).
	if err := d.cfg.Ownership.CheckNotDeleting(ctx, st, ref); err != nil {
		return errors.Join(err, bucket.DeleteRecord(ctx, st, ref.Bucket, nameHash))
	}
	return nil
}

// DeleteVolume forgets the volume. It acts only on a bucket that carries a
// genuine mark (signed with this controller's ownership key) and holds the
// record of a volume of exactly this ID, and only once no
// PersistentVolume but the volume's own has its handle. The bucket itself
// is deleted only when the volume was created with persistent "false",
// no other volume has a record in it and no other PersistentVolume names
// it (FailedPrecondition until then, the record kept for the retry); a
// bucket the store refuses to delete keeps its mark and answers
// FailedPrecondition, then and on every retry until the bucket is gone.
// Unknown, malformed and forged IDs touch nothing and answer OK
// (FailedPrecondition on a bucket whose purge did not finish); a retry
// after a deadline still finds the record (the purge deletes it last)
// and finishes the purge.
func (d *Driver) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, required("volume_id")
	}
	h, err := volume.ParseID(d.cfg.Defaults.Kinds, req.GetVolumeId())
	if err != nil || h.Existing {
		// Not ours, or an existing bucket the driver never deletes.
		return &csi.DeleteVolumeResponse{}, nil
	}
	if d.cfg.Ownership == nil {
		return nil, noOwnershipKey("delete")
	}
	release, err := d.locks.acquire(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	defer release()
	ref := bucket.Ref{Store: h.Store, Location: h.Location, Bucket: h.Bucket}
	releaseBucket, err := d.locks.acquire(bucketLockKey(ref))
	if err != nil {
		return nil, err
	}
	defer releaseBucket()
	st, err := d.openStore(h.Store, h.Location, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := st.HeadBucket(ctx, h.Bucket); errors.Is(err, fault.NotFound) {
		return &csi.DeleteVolumeResponse{}, nil
	} else if err != nil {
		return nil, err
	}
	found, err := d.cfg.Ownership.Read(ctx, st, ref)
	if err != nil {
		return nil, err
	}
	if found.Status != bucket.Genuine {
		// Foreign (or a mark this key did not sign): nothing of it is
		// touched.
		return &csi.DeleteVolumeResponse{}, nil
	}
	rec, err := bucket.GetRecord(ctx, st, h.Bucket, h.NameHash)
	if err != nil {
		return nil, err
	}
	if rec == nil || rec.VolumeID != req.GetVolumeId() {
		// No volume of this ID in the bucket: deleted before, or a handle
		// the controller never issued (whoever writes a PV writes any
		// handle, and its persistence flag is not signed). Nothing is
		// touched. (A purge this volume started keeps its record to the
		// end, so its retry after a deadline is not here.) A purge that
		// got past the records and did not finish (the store refused the
		// bucket's delete) is left to an admin, and said so each time.
		if rec == nil && found.Mark.State == bucket.StateDeleting {
			return nil, fmt.Errorf("%w: bucket %q is being deleted and its purge did not finish (the store refused deleting the bucket, or the purge was cut off at its end): "+
				"delete what is left and the bucket with the store's own tools, or run `bucket-csi storage delete %s`; a retry answers OK once the bucket is gone", fault.Precondition, h.Bucket, h.Bucket)
		}
		return &csi.DeleteVolumeResponse{}, nil
	}
	// The handle is the one CreateVolume issued and recorded, so is its
	// persistence flag. A PersistentVolume but the volume's own with this
	// handle (a copy) keeps everything, the record included: its stage
	// needs the record.
	pvs, err := d.bucketPVs(ctx, h)
	if err != nil {
		return nil, err
	}
	if copies := kube.HandleCopies(pvs, rec.Name, req.GetVolumeId()); len(copies) > 0 {
		return nil, fmt.Errorf("%w: volume %s is not deleted while PersistentVolume(s) %s also name its handle; it is deleted by a retry once they are gone", fault.Precondition, req.GetVolumeId(), strings.Join(copies, ", "))
	}
	if h.Persistent {
		return &csi.DeleteVolumeResponse{}, bucket.DeleteRecord(ctx, st, h.Bucket, h.NameHash)
	}
	if others, err := bucket.HasRecordsBut(ctx, st, h.Bucket, h.NameHash); err != nil {
		return nil, err
	} else if others {
		// Other volumes keep the bucket (their own DeleteVolume decides).
		return &csi.DeleteVolumeResponse{}, bucket.DeleteRecord(ctx, st, h.Bucket, h.NameHash)
	}
	// The bucket's last recorded volume: no other PersistentVolume may
	// name the bucket (a static one has no record in it).
	if users := kube.OtherUsers(d.cfg.Defaults.Kinds, pvs, h.Store, h.Bucket, rec.Name, req.GetVolumeId()); len(users) > 0 {
		return nil, fmt.Errorf("%w: bucket %q is not deleted while PersistentVolume(s) %s still use it; it is deleted by a retry once they are gone", fault.Precondition, h.Bucket, strings.Join(users, ", "))
	}
	return d.purge(ctx, st, ref, h)
}

// purge deletes the bucket of the volume h, whose record (if still there)
// is the only use it may have; with records of other volumes it deletes
// only h's. The caller holds the bucket's lock and checked its mark.
func (d *Driver) purge(ctx context.Context, st store.Store, ref bucket.Ref, h volume.Handle) (*csi.DeleteVolumeResponse, error) {
	err := d.cfg.Ownership.Purge(ctx, st, ref, bucket.PurgeOptions{IfUnused: true, Deleting: h.NameHash})
	switch {
	case errors.Is(err, bucket.ErrInUse):
		return &csi.DeleteVolumeResponse{}, bucket.DeleteRecord(ctx, st, h.Bucket, h.NameHash)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		return nil, fmt.Errorf("%w: deleting bucket %q is not finished; the next retry continues", fault.Pending, h.Bucket)
	case err == nil:
		d.log.Info("deleted bucket", "bucket", h.Bucket, "store", h.Store)
	}
	return &csi.DeleteVolumeResponse{}, err
}

// bucketPVs lists the cluster's PersistentVolumes for DeleteVolume of h:
// none when no cluster is configured, and fault.Unavailable when the
// cluster cannot be asked, so nothing is deleted on a guess.
func (d *Driver) bucketPVs(ctx context.Context, h volume.Handle) ([]corev1.PersistentVolume, error) {
	if d.cfg.PVs == nil {
		return nil, nil
	}
	pvs, err := d.cfg.PVs(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: listing PersistentVolumes to check that nothing else uses bucket %q: %v", fault.Unavailable, h.Bucket, err)
	}
	return pvs, nil
}

// ValidateVolumeCapabilities confirms mount capabilities of an existing volume.
func (d *Driver) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, required("volume_id")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, required("volume_capabilities")
	}
	h, err := volume.ParseID(d.cfg.Defaults.Kinds, req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	st, err := d.openStore(h.Store, h.Location, req.GetSecrets())
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if err := st.HeadBucket(ctx, h.Bucket); err != nil {
		return nil, err
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

func (d *Driver) openStore(kind, location string, secrets map[string]string) (store.Store, error) {
	b, err := d.cfg.Stores.Get(kind)
	if err != nil {
		return nil, err
	}
	return b.Open(store.Secrets(secrets), location)
}
