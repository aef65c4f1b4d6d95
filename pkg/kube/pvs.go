// Package kube reads the cluster's PersistentVolumes for the two places
// that must know who uses a bucket: the storage CLI (status, delete) and
// the controller (a bucket is never purged while a PersistentVolume of
// this driver, static ones included, still names it).
package kube

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/bucket-csi/bucket-csi/pkg/store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

// PVLister lists the cluster's PersistentVolumes.
type PVLister func(ctx context.Context) ([]corev1.PersistentVolume, error)

// NewPVLister returns a lister for the cluster of kubeconfig (a file
// path), or, when empty and running in a pod, of the in-cluster config; nil
// when no cluster is configured: callers then rely on the volume records in
// buckets alone. inCluster says whether a pod's service account may be used
// (the caller reads the environment).
func NewPVLister(kubeconfig string, inCluster bool) (PVLister, error) {
	cfg, err := RestConfig(kubeconfig, inCluster)
	if err != nil || cfg == nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return ListPVs(cs), nil
}

// ListPVs is the lister of the cluster cs talks to.
func ListPVs(cs kubernetes.Interface) PVLister {
	return func(ctx context.Context) ([]corev1.PersistentVolume, error) {
		list, err := cs.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		return list.Items, nil
	}
}

// RestConfig is the client config of the cluster of kubeconfig (a file
// path), or, when empty and running in a pod (inCluster), of the pod's
// service account; nil when no cluster is configured.
func RestConfig(kubeconfig string, inCluster bool) (*rest.Config, error) {
	var cfg *rest.Config
	var err error
	switch {
	case kubeconfig != "":
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	case inCluster:
		cfg, err = rest.InClusterConfig()
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	return cfg, nil
}

// ReferencingPVs returns the names of the PersistentVolumes of this driver
// that use bucket of store: dynamically provisioned ones (their volume ID
// or the "bucket" attribute the controller returns), static ones naming it
// with `name` or `source`.
func ReferencingPVs(kinds store.Catalog, pvs []corev1.PersistentVolume, kind, bucket string) []string {
	var out []string
	for _, pv := range pvs {
		c := pv.Spec.CSI
		if c == nil || c.Driver != volume.DriverName {
			continue
		}
		if pvUses(kinds, c, kind, bucket) {
			out = append(out, pv.Name)
		}
	}
	return out
}

func pvUses(kinds store.Catalog, c *corev1.CSIPersistentVolumeSource, kind, bucket string) bool {
	if h, err := volume.ParseID(kinds, c.VolumeHandle); err == nil {
		return h.Store == kind && h.Bucket == bucket
	}
	attrs := c.VolumeAttributes
	if s := attrs[volume.KeySource]; s != "" {
		loc, err := volume.ParseSource(kinds, s)
		return err == nil && loc.Store == kind && loc.Bucket == bucket
	}
	st := attrs[volume.KeyStore]
	return (attrs[volume.KeyName] == bucket || attrs[volume.KeyBucket] == bucket) && (st == "" || st == kind)
}

// HandleCopies returns the PersistentVolumes of this driver with handle
// volumeID but the volume's own (named pvName, as CreateVolume was asked
// and recorded), whatever their annotations say (whoever writes a PV
// writes them).
func HandleCopies(pvs []corev1.PersistentVolume, pvName, volumeID string) []string {
	var out []string
	for _, pv := range pvs {
		if c := pv.Spec.CSI; c != nil && c.Driver == volume.DriverName && c.VolumeHandle == volumeID && pv.Name != pvName {
			out = append(out, pv.Name)
		}
	}
	return out
}

// OtherUsers returns the PersistentVolumes of this driver that use bucket
// of store, except the volume's own, which DeleteVolume is deleting: the
// PV named pvName (the name CreateVolume was given and recorded) with
// handle volumeID. Any other PV counts, also one that copied volumeID as
// its handle, whatever its annotations say (whoever writes a PV writes
// them).
func OtherUsers(kinds store.Catalog, pvs []corev1.PersistentVolume, kind, bucket, pvName, volumeID string) []string {
	var out []string
	for _, pv := range pvs {
		c := pv.Spec.CSI
		if c == nil || c.Driver != volume.DriverName || !pvUses(kinds, c, kind, bucket) {
			continue
		}
		if pv.Name == pvName && c.VolumeHandle == volumeID {
			continue
		}
		out = append(out, pv.Name)
	}
	return out
}
