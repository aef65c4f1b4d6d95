package metrics

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bucket-csi/bucket-csi/pkg/fuseproto"
	"github.com/bucket-csi/bucket-csi/pkg/stage"
)

// Volume is one staged volume's figures at scrape time.
type Volume struct {
	// ID is the CSI volume ID (never a label: it may be long).
	ID string
	// PV is the PersistentVolume's name when known; else the label is
	// a short hash of ID (Label).
	PV   string
	Mode string
	// FUSE is what the volume's FUSE server answered; nil for COPY or
	// a server that did not answer.
	FUSE *fuseproto.Stats
	// NoStats marks a live FUSE server that has no control socket to ask
	// (started by a driver version without one): its figures are
	// unknown, not down.
	NoStats bool
	// Copy are the COPY figures; nil when none are known.
	Copy *stage.CopyFigures
}

// Label is the volume label of v: the PV name, else "vol-" and 12 hex
// digits of the ID's SHA-256. One series set per staged volume, so the
// cardinality is bounded by the volumes staged on the node.
func (v Volume) Label() string {
	if v.PV != "" {
		return v.PV
	}
	return VolumeHash(v.ID)
}

// VolumeHash is the short label of a volume ID whose PV is not known.
func VolumeHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "vol-" + hex.EncodeToString(sum[:6])
}

// Source lists the staged volumes with their figures; it is called at
// each scrape with a deadline.
type Source func(ctx context.Context) []Volume

// Node holds the node plugin's volume figures: the per-volume collector
// fed by a Source at scrape time, what the plugin itself learns about each
// volume (repairs, last stage time), and the stage and flush latency by
// mode. Its methods are safe for concurrent use and do nothing on a nil
// Node, so a driver without metrics calls them unconditionally.
type Node struct {
	stage, flush *prometheus.HistogramVec

	mu    sync.Mutex
	notes map[string]*notes // by volume ID
}

// notes are what the plugin records about a staged volume.
type notes struct {
	repairs      int64
	stageSeconds float64
	// staging is when the first NodeStage of a stage not yet complete
	// came (a COPY answers Unavailable until its download is done).
	staging time.Time
}

// NewNode registers the stage and flush histograms with reg. Register
// the per-volume collector with Collector once the Source exists.
func NewNode(reg prometheus.Registerer) (*Node, error) {
	buckets := []float64{0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800}
	n := &Node{
		stage: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bucket_csi_stage_duration_seconds",
			Help:    "Time from the first NodeStage of a volume to its stage completing (a COPY's whole download), by mode.",
			Buckets: buckets,
		}, []string{"mode"}),
		flush: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "bucket_csi_flush_duration_seconds",
			Help:    "Time a MOUNT_CACHED unstage waited for the uploads to drain, by mode.",
			Buckets: buckets,
		}, []string{"mode"}),
		notes: map[string]*notes{},
	}
	if err := register(reg, n.stage, n.flush); err != nil {
		return nil, err
	}
	return n, nil
}

// Staging records a NodeStage of volume id starting at now; the first
// one of a stage starts its duration.
func (n *Node) Staging(id string, now time.Time) {
	n.note(id, func(x *notes) {
		if x.staging.IsZero() {
			x.staging = now
		}
	})
}

// StageFailed records that the stage under way of volume id failed for
// good: the next NodeStage starts a new stage duration.
func (n *Node) StageFailed(id string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if x := n.notes[id]; x != nil {
		x.staging = time.Time{}
	}
}

// Staged records the stage of volume id in mode complete at now.
func (n *Node) Staged(id, mode string, now time.Time) {
	if n == nil {
		return
	}
	var d time.Duration
	n.note(id, func(x *notes) {
		if !x.staging.IsZero() {
			d = now.Sub(x.staging)
		}
		x.staging, x.stageSeconds = time.Time{}, d.Seconds()
	})
	n.stage.WithLabelValues(mode).Observe(d.Seconds())
}

// Flushed records an unstage that waited d for uploads to drain.
func (n *Node) Flushed(mode string, d time.Duration) {
	if n != nil {
		n.flush.WithLabelValues(mode).Observe(d.Seconds())
	}
}

// Repaired records a dead FUSE server of volume id restarted.
func (n *Node) Repaired(id string) {
	n.note(id, func(x *notes) { x.repairs++ })
}

// Forget drops what is recorded about volume id (it was unstaged): its
// series leave the next scrape.
func (n *Node) Forget(id string) {
	if n == nil {
		return
	}
	n.mu.Lock()
	delete(n.notes, id)
	n.mu.Unlock()
}

func (n *Node) note(id string, f func(*notes)) {
	if n == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	x := n.notes[id]
	if x == nil {
		x = &notes{}
		n.notes[id] = x
	}
	f(x)
}

// noted returns a copy of the notes of id.
func (n *Node) noted(id string) notes {
	n.mu.Lock()
	defer n.mu.Unlock()
	if x := n.notes[id]; x != nil {
		return *x
	}
	return notes{}
}
