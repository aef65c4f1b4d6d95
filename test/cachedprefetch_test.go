package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// TestCachedSmallFilesFetchedAhead: a MOUNT_CACHED volume fetches small
// files ahead in listing order (its server's stats count the opens served
// from the prefetch), and the prefetch is drawn from the node's read-ahead
// memory (here 48 MiB): the first server its full 32 MiB, the next what is
// left (16 MiB, the floor), the next none, which still reads every byte
// right and fetches nothing ahead; an unstage gives its share back. A
// file rewritten through the mount between prefetched reads reads back
// as written, never as the bucket's copy fetched ahead.
func TestCachedSmallFilesFetchedAhead(t *testing.T) {
	testenv.RequireFUSE(t)
	s3, drv, c := startAll(t, "--read-ahead-node-memory", fmt.Sprint(48<<20), "--read-ahead-server-memory", fmt.Sprint(32<<20))
	ctx := context.Background()
	const n = 20
	small := map[string][]byte{}
	for i := range n {
		small[fmt.Sprintf("%03d", i)] = randomBytes(t, 10<<10+i)
	}
	type vol struct{ id, staging, target string }
	stageOne := func(name string) vol {
		t.Helper()
		v, err := c.Controller.CreateVolume(ctx, createReq(name, map[string]string{"mode": "MOUNT_CACHED"}, s3.Secrets()))
		if err != nil {
			t.Fatal(err)
		}
		for key, data := range small {
			putObject(t, s3, v.GetVolume().GetVolumeContext()["bucket"], "small/"+key, data)
		}
		staging, target := podPaths(t, drv)
		publish(t, c, v.GetVolume().GetVolumeId(), staging, target, s3.Secrets(), false)
		return vol{v.GetVolume().GetVolumeId(), staging, target}
	}
	share := func(v vol) int64 {
		t.Helper()
		var cfg struct {
			Prefetch        bool  `json:"prefetch"`
			ReadAheadMemory int64 `json:"readAheadMemory"`
		}
		savedMounterConfig(t, drv, v.id, &cfg)
		if !cfg.Prefetch {
			t.Fatalf("volume %s: the server was started without the small-file prefetch", v.id)
		}
		return cfg.ReadAheadMemory
	}
	// readInOrder reads every file of small/ in listing order; before
	// the file at rewriteAt it rewrites that file through the mount.
	readInOrder := func(v vol, rewriteAt int) {
		t.Helper()
		dir := filepath.Join(v.target, "small")
		entries, err := os.ReadDir(dir)
		if err != nil || len(entries) != n {
			t.Fatalf("listing small/: %d entries, %v", len(entries), err)
		}
		want := small
		for i, e := range entries {
			if i == rewriteAt {
				want = map[string][]byte{e.Name(): []byte("written through the mount")}
				if err := os.WriteFile(filepath.Join(dir, e.Name()), want[e.Name()], 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil || !bytes.Equal(got, want[e.Name()]) {
				t.Fatalf("small/%s: %d bytes, equal %v, err %v", e.Name(), len(got), bytes.Equal(got, want[e.Name()]), err)
			}
			want = small
		}
	}

	var vols []vol
	for i, want := range []int64{32 << 20, 16 << 20, -1} {
		v := stageOne(fmt.Sprintf("pv-prefetch-%d", i))
		if got := share(v); got != want {
			t.Fatalf("server %d got a prefetch share of %d bytes, want %d", i, got, want)
		}
		vols = append(vols, v)
	}
	readInOrder(vols[0], 7)
	// The first two opens are no order yet; the rewritten file is read
	// from the cache.
	st := fuseStats(t, drv, vols[0].id)
	hits := st.ReadAhead.SmallHits
	t.Logf("%d of %d opens served from the prefetch, %d fetches at once", hits, n, st.SmallFetches)
	if hits < n-4 {
		t.Errorf("%d of %d opens were served from the prefetch, want at least %d", hits, n, n-4)
	}
	if st.SmallFetches < 4 || st.SmallFetches > 16 {
		t.Errorf("stats say %d small files fetched at once, want 4 to 16", st.SmallFetches)
	}
	readInOrder(vols[2], -1)
	if st := fuseStats(t, drv, vols[2].id); st.ReadAhead.SmallHits != 0 || st.SmallFetches != 0 {
		t.Errorf("a server without a share served %d opens from a prefetch and says it fetches %d at once", st.ReadAhead.SmallHits, st.SmallFetches)
	}

	unpublish(t, c, vols[0].id, vols[0].staging, vols[0].target)
	v := stageOne("pv-prefetch-3")
	if got := share(v); got != 32<<20 {
		t.Fatalf("after an unstage the next server got %d bytes, want the full 32 MiB", got)
	}
	for _, v := range append(vols[1:], v) {
		unpublish(t, c, v.id, v.staging, v.target)
	}
}
