package kube

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/bucket-csi/bucket-csi/pkg/stores"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
)

func pv(name, driver, handle string, attrs map[string]string) corev1.PersistentVolume {
	return corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: handle, VolumeAttributes: attrs}}}}
}

func TestReferencingPVs(t *testing.T) {
	pvs := []corev1.PersistentVolume{
		pv("dynamic", volume.DriverName, "v1:s3:Mpn:0123456789ab:my-dataset", map[string]string{"bucket": "my-dataset"}),
		pv("static-source", volume.DriverName, "any-handle", map[string]string{"source": "s3://my-dataset/sub"}),
		pv("static-name", volume.DriverName, "other-handle", map[string]string{"name": "my-dataset", "store": "s3"}),
		pv("other-store", volume.DriverName, "h3", map[string]string{"source": "gs://my-dataset"}),
		pv("other-bucket", volume.DriverName, "v1:s3:Mpn:0123456789ab:other", nil),
		pv("other-driver", "ebs.csi.aws.com", "vol-1", map[string]string{"name": "my-dataset"}),
		{ObjectMeta: metav1.ObjectMeta{Name: "not-csi"}},
	}
	got := ReferencingPVs(stores.Catalog(), pvs, "s3", "my-dataset")
	want := []string{"dynamic", "static-source", "static-name"}
	if !slices.Equal(got, want) {
		t.Fatalf("ReferencingPVs = %v, want %v", got, want)
	}
}

// TestOtherUsers: the dynamic PV being deleted (its recorded name and
// handle) is not a user of its bucket; a PV that copied its handle, with
// the provisioner's annotation or without, and any other PV naming the
// bucket, are.
func TestOtherUsers(t *testing.T) {
	const id = "v1:s3:Men:0123456789ab:shared"
	annotated := func(p corev1.PersistentVolume) corev1.PersistentVolume {
		p.Annotations = map[string]string{"pv.kubernetes.io/provisioned-by": volume.DriverName}
		return p
	}
	pvs := []corev1.PersistentVolume{
		annotated(pv("pvc-1", volume.DriverName, id, map[string]string{"bucket": "shared"})),
		pv("static-copy", volume.DriverName, id, nil),
		annotated(pv("annotated-copy", volume.DriverName, id, nil)),
		pv("static-name", volume.DriverName, "mine", map[string]string{"name": "shared"}),
		pv("unrelated", volume.DriverName, "v1:s3:Mpn:0123456789ab:other", nil),
	}
	if got, want := OtherUsers(stores.Catalog(), pvs, "s3", "shared", "pvc-1", id), []string{"static-copy", "annotated-copy", "static-name"}; !slices.Equal(got, want) {
		t.Fatalf("OtherUsers = %v, want %v", got, want)
	}
	if got := OtherUsers(stores.Catalog(), pvs[:1], "s3", "shared", "pvc-1", id); len(got) != 0 {
		t.Fatalf("the volume's own PV counted as a user: %v", got)
	}
	if got := OtherUsers(stores.Catalog(), pvs[:1], "s3", "shared", "pvc-2", id); !slices.Equal(got, []string{"pvc-1"}) {
		t.Fatalf("a PV of another name with the handle, deleting pvc-2's volume: %v, want it counted", got)
	}
}
