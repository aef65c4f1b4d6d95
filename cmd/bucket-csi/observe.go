package main

import (
	"log/slog"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/kubernetes"

	"github.com/bucket-csi/bucket-csi/pkg/driver"
	"github.com/bucket-csi/bucket-csi/pkg/events"
	"github.com/bucket-csi/bucket-csi/pkg/kube"
	"github.com/bucket-csi/bucket-csi/pkg/metrics"
)

// metrics builds the registry served at --metrics-address and puts the
// CSI call counters (and, for the node service, the volume figures) into
// cfg; nil (and nothing counted) when the flag is empty. The registry is
// this process's own: nothing is registered in the client library's (or
// rclone's) global default registry. Register the per-volume collector
// with watchVolumes once the driver exists.
func (f *serveFlags) metrics(cfg *driver.Config) (*prometheus.Registry, error) {
	if f.metricsAddress == "" {
		return nil, nil
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ops, err := metrics.NewOps(reg)
	if err != nil {
		return nil, err
	}
	cfg.Ops = ops
	if cfg.Node {
		if cfg.Volumes, err = metrics.NewNode(reg); err != nil {
			return nil, err
		}
	}
	return reg, nil
}

// watchVolumes registers the node's per-volume collector, fed by d.
func watchVolumes(reg *prometheus.Registry, cfg driver.Config, d *driver.Driver) {
	if reg != nil && cfg.Volumes != nil {
		reg.MustRegister(cfg.Volumes.Collector(d.VolumeFigures))
	}
}

// events gives the node service a recorder of Kubernetes events when a
// cluster is configured (--kubeconfig, or the pod's service account);
// without one the driver records none. stop flushes and stops it.
func (f *serveFlags) events(cfg *driver.Config, log *slog.Logger) (stop func(), err error) {
	if !cfg.Node {
		return func() {}, nil
	}
	rc, err := kube.RestConfig(f.kubeconfig, os.Getenv("KUBERNETES_SERVICE_HOST") != "")
	if err != nil || rc == nil {
		return func() {}, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	k := events.NewKube(cs, "bucket-csi-node", f.nodeID, log)
	if cfg.PVs == nil {
		// Static PVs are named in events after a lookup by handle.
		cfg.PVs = kube.ListPVs(cs)
	}
	cfg.Events = k
	log.Info("recording Kubernetes events", "host", rc.Host)
	return k.Stop, nil
}
