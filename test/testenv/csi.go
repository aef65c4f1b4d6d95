package testenv

import (
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Clients are CSI clients on one driver socket.
type Clients struct {
	Controller csi.ControllerClient
	Node       csi.NodeClient
	Identity   csi.IdentityClient
}

// Dial connects to the driver's socket.
func (d *Driver) Dial(t testing.TB) Clients {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return Clients{Controller: csi.NewControllerClient(conn), Node: csi.NewNodeClient(conn), Identity: csi.NewIdentityClient(conn)}
}

// MountCap is a filesystem capability with the given access mode.
func MountCap(mode csi.VolumeCapability_AccessMode_Mode, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{MountFlags: flags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}
