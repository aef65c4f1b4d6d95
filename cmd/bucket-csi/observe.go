package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/bucket-csi/bucket-csi/pkg/driver"
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
