package driver

import (
	"fmt"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/bucket-csi/bucket-csi/pkg/fault"
)

// checkCapability accepts mount access with any defined access mode: a
// bucket is shared storage, so every mode, multi-node writers included, is
// supported. Block access is refused.
func checkCapability(c *csi.VolumeCapability) error {
	if c == nil {
		return fmt.Errorf("%w: volume capability is empty", fault.Invalid)
	}
	if c.GetBlock() != nil {
		return fmt.Errorf("%w: block access is not supported: a bucket is a filesystem volume (volumeMode: Filesystem)", fault.Invalid)
	}
	if c.GetMount() == nil {
		return fmt.Errorf("%w: volume capability has no access type; only mount is supported", fault.Invalid)
	}
	m := c.GetAccessMode().GetMode()
	if m == csi.VolumeCapability_AccessMode_UNKNOWN {
		return fmt.Errorf("%w: volume capability has no access mode", fault.Invalid)
	}
	if _, ok := csi.VolumeCapability_AccessMode_Mode_name[int32(m)]; !ok {
		return fmt.Errorf("%w: access mode %d is unknown", fault.Invalid, m)
	}
	return nil
}

func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return fmt.Errorf("%w: volume capabilities are required", fault.Invalid)
	}
	for _, c := range caps {
		if err := checkCapability(c); err != nil {
			return err
		}
	}
	return nil
}

// readOnlyMode reports whether the access mode only allows reading.
func readOnlyMode(c *csi.VolumeCapability) bool {
	switch c.GetAccessMode().GetMode() {
	case csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY, csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY:
		return true
	}
	return false
}
