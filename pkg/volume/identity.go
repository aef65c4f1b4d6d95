package volume

// The driver's names, in one place: everything that writes or checks one
// of them reads it from here.
const (
	// DriverName is the CSI driver name: GetPluginInfo, CSIDriver objects,
	// StorageClass provisioners, PersistentVolumes and bucket marks.
	DriverName = "bucket.csi.io"
	// FSName names the driver's FUSE filesystems; mountinfo shows their
	// type as FSType.
	FSName = "bucket-csi"
	// FSType is the filesystem type of the driver's FUSE mounts.
	FSType = "fuse." + FSName
)

// KeyBucket is the volume-context key CreateVolume returns with the bucket
// name (beside KeyStore and KeyMode).
const KeyBucket = "bucket"
