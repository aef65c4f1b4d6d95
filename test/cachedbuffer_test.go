package test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bucket-csi/bucket-csi/internal/netdelay"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestCachedReadBufferFollowsRoundTrip: a MOUNT_CACHED server reads 1 MiB
// ahead of a cache miss from a store that answers in under 2 ms (here the
// S3 server on loopback) and rclone's 16 MiB from a farther one (the same
// server 10 ms away), as its stats say; near, four random 1 MiB reads of a
// cold 64 MiB file fetch far less than the 4 x 17 MiB the 16 MiB buffer
// would; either way random reads and a whole read of the cold file return
// the object's bytes.
func TestCachedReadBufferFollowsRoundTrip(t *testing.T) {
	testenv.RequireFUSE(t)
	s3 := testenv.StartS3(t)
	p := &netdelay.Proxy{Target: strings.TrimPrefix(s3.Endpoint, "http://"), RTT: 10 * time.Millisecond}
	if err := p.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	far := *s3.S3
	far.Endpoint = "http://" + p.Addr()
	data := randomBytes(t, 64<<20)
	for _, tc := range []struct {
		name string
		srv  *testenv.S3
		want int64
	}{
		{"near", s3, 1 << 20},
		{"far", &testenv.S3{S3: &far}, 16 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			drv := testenv.StartDriver(t, tc.srv)
			c := drv.Dial(t)
			v, err := c.Controller.CreateVolume(context.Background(), createReq("pv-buffer-"+tc.name, map[string]string{"mode": "MOUNT_CACHED"}, s3.Secrets()))
			if err != nil {
				t.Fatal(err)
			}
			id := v.GetVolume().GetVolumeId()
			putObject(t, s3, v.GetVolume().GetVolumeContext()["bucket"], "data.bin", data)
			staging, target := podPaths(t, drv)
			publish(t, c, id, staging, target, s3.Secrets(), false)
			if got := fuseStats(t, drv, id).CacheReadBuffer; got != tc.want {
				t.Fatalf("the cache downloader's buffer is %d bytes, want %d", got, tc.want)
			}
			fh, err := os.Open(filepath.Join(target, "data.bin"))
			if err != nil {
				t.Fatal(err)
			}
			before := fuseStats(t, drv, id).StoreBytes
			buf := make([]byte, 1<<20)
			for i := range int64(4) {
				off := i<<24 + rand.Int64N(15<<20) // one read in each 16 MiB
				if _, err := fh.ReadAt(buf, off); err != nil || !bytes.Equal(buf, data[off:off+int64(len(buf))]) {
					t.Fatalf("1 MiB at %d: equal %v, err %v", off, bytes.Equal(buf, data[off:off+int64(len(buf))]), err)
				}
			}
			fh.Close() // the downloaders write what they read ahead and stop
			fetched := settledStoreBytes(t, drv, id) - before
			t.Logf("4 random 1 MiB reads fetched %d MiB", fetched>>20)
			if tc.name == "near" && fetched > 24<<20 {
				t.Errorf("4 random 1 MiB reads fetched %d MiB from a near store; want at most 24", fetched>>20)
			}
			got, err := os.ReadFile(filepath.Join(target, "data.bin"))
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("whole read: %d bytes, equal %v, err %v", len(got), bytes.Equal(got, data), err)
			}
		})
	}
}

// settledStoreBytes waits until the volume's server has not fetched from
// the store for half a second (at most 20 s) and returns its count.
func settledStoreBytes(t *testing.T, drv *testenv.Driver, id string) int64 {
	t.Helper()
	last := fuseStats(t, drv, id).StoreBytes
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		n := fuseStats(t, drv, id).StoreBytes
		if n == last {
			return n
		}
		last = n
	}
	t.Fatalf("the server kept fetching for 20 s (%d bytes)", last)
	return 0
}
