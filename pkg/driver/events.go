package driver

import (
	"errors"
	"fmt"
	"time"

	"github.com/bucket-csi/bucket-csi/pkg/events"
	"github.com/bucket-csi/bucket-csi/pkg/fault"
	"github.com/bucket-csi/bucket-csi/pkg/nodestate"
	"github.com/bucket-csi/bucket-csi/pkg/redact"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// Event reasons, each one something a user can act on or wait for.
const (
	ReasonCopyStarted         = "CopyStarted"
	ReasonCopyProgress        = "CopyProgress"
	ReasonCopyDone            = "CopyDone"
	ReasonCopyFailed          = "CopyFailed"
	ReasonUploadsPending      = "UploadsPending"
	ReasonUploadsFlushed      = "UploadsFlushed"
	ReasonFUSEServerRestarted = "FUSEServerRestarted"
	ReasonInlineRefused       = "InlineVolumeRefused"
	ReasonCredentialsRefused  = "CredentialsRefused"
)

// subject is who a volume's events are about: its PersistentVolume (when
// the volume context named it) and, in NodePublish, the pod.
type subject struct {
	pv  string
	pod events.Ref
	// namespace is the one the volume serves: its claim's (NodeStage) or
	// its pod's (inline volumes, where kubelet sets pod.namespace).
	namespace string
	// waiting also tells the pods of this node that wait for the PV's
	// claim (events.Ref.WaitingPods): the volume's stage is what holds
	// them.
	waiting bool
}

// podSubject reads the pod from a NodePublish volume context (the
// CSIDriver's podInfoOnMount) and the PV name if present.
func podSubject(attrs map[string]string) subject {
	return subject{pv: trustedPV(attrs), pod: events.Pod(attrs[volume.KeyPodNamespace], attrs[volume.KeyPodName], attrs[volume.KeyPodUID]), namespace: attrs[volume.KeyPodNamespace]}
}

// trustedPV is the PV name in a volume context, or "" for an inline
// volume: it has no PV, and its attributes are the pod author's (kubelet
// sets only the pod.* keys and ephemeral), so a pv/name among them would
// aim events, metrics and logs at someone else's PV.
func trustedPV(attrs map[string]string) string {
	if attrs[volume.KeyEphemeral] == "true" {
		return ""
	}
	return attrs[volume.KeyPVName]
}

// event records one event about every object of s. The message is masked
// with secrets first: whatever an error quoted, no secret leaves.
func (d *Driver) event(s subject, secrets map[string]string, warning bool, reason, msg string) {
	msg = redact.FromSecrets(secrets).String(msg)
	pv := events.PV(s.pv)
	pv.WaitingPods = s.waiting
	for _, ref := range []events.Ref{s.pod, pv} {
		d.cfg.Events.Event(ref, warning, reason, msg)
	}
}

// progressOf returns the background work figures of volume id staged in
// mode, if its stager tracks any (stage.Tracker: a COPY's copy).
func (d *Driver) progressOf(mode volume.Mode, id string) (f stage.CopyFigures, tracked, known bool) {
	t, ok := d.cfg.Stagers[mode].(stage.Tracker)
	if !ok {
		return stage.CopyFigures{}, false, false
	}
	f, known = t.Progress(id)
	return f, true, known
}

// stageEvents reports the outcome of a stage: credentials refused in any
// mode; for a stager that works in the background (stage.Tracker: a
// COPY) that the copy started, its progress (at most once a minute), done
// or failed. running says whether the volume's copy was already running
// before this call.
func (d *Driver) stageEvents(s subject, id string, h volume.Handle, secrets map[string]string, running bool, err error) {
	now := time.Now()
	// Until the stage succeeds, the pods that wait for it hear why.
	s.waiting = err != nil
	if errors.Is(err, fault.Denied) {
		if d.limit.Allow(id+"/denied", now) {
			d.event(s, secrets, true, ReasonCredentialsRefused, fmt.Sprintf("the store refused the volume's credentials for bucket %s: %v; check the Secret the StorageClass or PersistentVolume names", h.Bucket, err))
		}
		return
	}
	fig, tracked, _ := d.progressOf(h.Mode, id)
	if !tracked {
		return
	}
	key := id + "/copy"
	switch {
	case errors.Is(err, fault.Pending) && !running:
		d.limit.Allow(key, now)
		msg := fmt.Sprintf("copying bucket %s to node %s; the pod starts once the copy is complete", h.Bucket, d.cfg.NodeID)
		if fig.Waiting {
			msg = fmt.Sprintf("copying bucket %s to node %s once one of the copies running there ends (--copy-jobs, and one namespace runs at most one less); the pod starts once the copy is complete", h.Bucket, d.cfg.NodeID)
		}
		d.event(s, secrets, false, ReasonCopyStarted, msg)
	case errors.Is(err, fault.Pending):
		if d.limit.Allow(key, now) {
			d.event(s, secrets, false, ReasonCopyProgress, fmt.Sprintf("copying bucket %s to node %s: %s", h.Bucket, d.cfg.NodeID, progressText(fig)))
		}
	case err == nil:
		d.limit.Forget(key)
		d.event(s, secrets, false, ReasonCopyDone, fmt.Sprintf("bucket %s is copied to node %s: %d objects (%s) fetched", h.Bucket, d.cfg.NodeID, fig.FilesDone, bytesText(fig.BytesDone)))
	default:
		d.limit.Forget(key)
		d.event(s, secrets, true, ReasonCopyFailed, fmt.Sprintf("copying bucket %s to node %s failed: %v; the next stage resumes from the files already fetched", h.Bucket, d.cfg.NodeID, err))
	}
}

// unstageEvents reports an unstage that flushes (stage.Unstaged.Flush:
// MOUNT_CACHED) waiting for uploads (at most once a minute) and, once it
// succeeds after waiting, that every file is in the bucket.
func (d *Driver) unstageEvents(pv, id string, did stage.Unstaged, err error) {
	if !did.Flush {
		return
	}
	s := subject{pv: pv}
	now := time.Now()
	switch {
	case errors.Is(err, fault.Pending):
		first, _ := d.flushWaits.LoadOrStore(id, now)
		if d.limit.Allow(id+"/flush", now) {
			d.event(s, nil, true, ReasonUploadsPending, fmt.Sprintf("releasing the volume on node %s waits for uploads (for %s so far): %v", d.cfg.NodeID, now.Sub(first.(time.Time)).Round(time.Second), err))
		}
	case err == nil:
		d.limit.Forget(id + "/flush")
		if first, waited := d.flushWaits.LoadAndDelete(id); waited {
			d.event(s, nil, false, ReasonUploadsFlushed, fmt.Sprintf("every file is in the bucket after %s; the volume is released from node %s", now.Sub(first.(time.Time)).Round(time.Second), d.cfg.NodeID))
		}
	}
}

// progressText summarises COPY figures for a message.
func progressText(f stage.CopyFigures) string {
	if f.Waiting {
		return "waiting for one of the copies running on the node to end (--copy-jobs, and one namespace runs at most one less)"
	}
	return fmt.Sprintf("%d of %d objects, %s of %s", f.FilesDone, f.FilesTotal, bytesText(f.BytesDone), bytesText(f.BytesTotal))
}

// bytesText is n in binary units (1.5 GiB).
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// copyBucket names the bucket a staged COPY volume was copied from.
func copyBucket(rec *nodestate.Volume) string {
	if rec.Staged != nil {
		return rec.Staged.Source
	}
	return rec.VolumeID
}
