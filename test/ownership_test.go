package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/pkg/bucket"
	"github.com/bucket-csi/bucket-csi/pkg/cli"
	"github.com/bucket-csi/bucket-csi/pkg/store/s3store"
	"github.com/bucket-csi/bucket-csi/pkg/volume"
	"github.com/bucket-csi/bucket-csi/test/testenv"
)

func createRaw(t *testing.T, s3srv *testenv.S3, b string) {
	t.Helper()
	if _, err := s3srv.Client().CreateBucket(context.Background(), &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
		t.Fatalf("creating bucket %s: %v", b, err)
	}
}

// TestForgedMarkNeverTrusted: marks written with the bucket's own
// credentials through a plain S3 client (putRaw: what a tenant with write
// access can do) (a copy of a genuine mark from another bucket, an unsigned
// mark of the earlier version, a hand-made one) make no bucket the
// driver's: `storage ls` does not list them (it notes them as unverified),
// `storage delete` refuses them, and a volume naming such a bucket with
// persistent "false" never deletes it nor writes into it.
func TestForgedMarkNeverTrusted(t *testing.T) {
	s3srv, _, c := startAll(t, "--services", "controller")
	ctx := context.Background()
	indep := s3srv.Store(t)
	if _, err := c.Controller.CreateVolume(ctx, createReq("pvc-genuine", map[string]string{"name": "genuine-b"}, s3srv.Secrets())); err != nil {
		t.Fatal(err)
	}
	genuine, err := s3srv.ReadObject(t, "genuine-b", bucket.OwnerKey)
	if err != nil {
		t.Fatal(err)
	}
	forgeries := map[string][]byte{
		"copied-mark": genuine,
		"v1-mark":     []byte(`{"driver":"bucket.csi.io","createdAt":"2026-01-01T00:00:00Z","createdBy":"pvc ns/x"}`),
		"hand-made":   []byte(`{"driver":"bucket.csi.io","version":2,"store":"s3","location":"","bucket":"hand-made","createdAt":"2026-01-01T00:00:00Z","createdBy":"x","nonce":"n","sig":"c2ln"}`),
	}
	for b, mark := range forgeries {
		createRaw(t, s3srv, b)
		putRaw(t, s3srv.Client(), b, "precious.txt", "keep me")
		putRaw(t, s3srv.Client(), b, bucket.OwnerKey, string(mark))
	}
	out, errOut, code := storageCLI(t, s3srv, "ls", "-o", "json")
	var entries []cli.Entry
	if code != 0 || json.Unmarshal([]byte(out), &entries) != nil {
		t.Fatalf("ls (exit %d):\n%s\n%s", code, out, errOut)
	}
	if len(entries) != 1 || entries[0].Name != "genuine-b" {
		t.Fatalf("ls lists %+v, want only genuine-b", entries)
	}
	for b := range forgeries {
		if !strings.Contains(errOut, "unverified mark: S3 bucket "+b+" ") {
			t.Errorf("ls does not note the unverified mark of %s:\n%s", b, errOut)
		}
		_, derr, dcode := storageCLI(t, s3srv, "delete", b, "--force")
		if dcode == 0 || !strings.Contains(derr, "Refusing to delete "+b) {
			t.Fatalf("storage delete of %s: exit %d, %s", b, dcode, derr)
		}
		vol, err := c.Controller.CreateVolume(ctx, createReq("pvc-"+b, map[string]string{"name": b, "persistent": "false"}, s3srv.Secrets()))
		if err != nil {
			t.Fatalf("CreateVolume on %s: %v", b, err)
		}
		for i := 0; i < 2; i++ {
			if _, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.GetVolume().GetVolumeId(), Secrets: s3srv.Secrets()}); err != nil {
				t.Fatalf("DeleteVolume on %s: %v", b, err)
			}
		}
		if got := keys(t, indep, b); len(got) != 2 || got[0] != bucket.OwnerKey || got[1] != "precious.txt" {
			t.Fatalf("%s after storage delete and DeleteVolume holds %v, want exactly the forged mark and precious.txt", b, got)
		}
		if got, _ := s3srv.ReadObject(t, b, bucket.OwnerKey); !bytes.Equal(got, forgeries[b]) {
			t.Fatalf("the driver rewrote the forged mark of %s", b)
		}
	}
}

// TestUnmarkedEmptyBucketNeedsRemark: an empty, fresh, unmarked bucket
// (what a controller crash between CreateBucket and the mark leaves, or
// someone else's bucket) is never adopted by a CreateVolume:
// FailedPrecondition naming `storage remark`. The admin's `storage remark`
// shows what it found, refuses without a terminal unless -y, and then
// marks it; a bucket with an earlier version's mark is re-marked the same
// way and can then be deleted.
func TestUnmarkedEmptyBucketNeedsRemark(t *testing.T) {
	s3srv, _, c := startAll(t, "--services", "controller")
	ctx := context.Background()
	indep := s3srv.Store(t)
	createRaw(t, s3srv, "half-made")
	_, err := c.Controller.CreateVolume(ctx, createReq("pvc-half", map[string]string{"name": "half-made", "persistent": "false"}, s3srv.Secrets()))
	wantStatus(t, "CreateVolume on an empty unmarked bucket", err, codes.FailedPrecondition, "bucket-csi storage remark half-made")
	if got := keys(t, indep, "half-made"); len(got) != 0 {
		t.Fatalf("the refused bucket was written to: %v", got)
	}
	out, errOut, code := storageCLI(t, s3srv, "remark", "half-made")
	if code == 0 || !strings.Contains(errOut, "not confirmed") || !strings.Contains(out, "old mark: none") || !strings.Contains(out, "objects:  0") || !strings.Contains(out, "created:  20") {
		t.Fatalf("remark without a terminal or -y must show the bucket and refuse: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := keys(t, indep, "half-made"); len(got) != 0 {
		t.Fatalf("an unconfirmed remark wrote %v", got)
	}
	out, errOut, code = storageCLI(t, s3srv, "remark", "half-made", "-y")
	if code != 0 || !strings.Contains(out, "Marked half-made") {
		t.Fatalf("remark -y: exit %d\n%s\n%s", code, out, errOut)
	}
	vol, err := c.Controller.CreateVolume(ctx, createReq("pvc-half", map[string]string{"name": "half-made", "persistent": "false"}, s3srv.Secrets()))
	if err != nil {
		t.Fatalf("CreateVolume after remark: %v", err)
	}
	if _, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.GetVolume().GetVolumeId(), Secrets: s3srv.Secrets()}); err != nil {
		t.Fatal(err)
	}
	if err := indep.HeadBucket(ctx, "half-made"); err == nil {
		t.Fatal("the re-marked bucket survived DeleteVolume of its last persistent=false volume")
	}

	// A bucket marked by an earlier version: shown as is, re-marked on purpose.
	createRaw(t, s3srv, "old-version")
	putRaw(t, s3srv.Client(), "old-version", "a.txt", "a")
	putRaw(t, s3srv.Client(), "old-version", "b.txt", "b")
	putRaw(t, s3srv.Client(), "old-version", bucket.OwnerKey, `{"driver":"bucket.csi.io","createdAt":"2026-01-01T00:00:00Z","createdBy":"pvc ml/outputs"}`)
	out, errOut, code = storageCLI(t, s3srv, "remark", "old-version", "-y")
	if code != 0 || !strings.Contains(out, "objects:  2") || !strings.Contains(out, "not genuine") || !strings.Contains(out, `pvc ml/outputs`) || !strings.Contains(out, "Marked old-version") {
		t.Fatalf("remark of a version 1 bucket: exit %d\n%s\n%s", code, out, errOut)
	}
	out, _, _ = storageCLI(t, s3srv, "remark", "old-version", "-y")
	if !strings.Contains(out, "already carries a genuine bucket-csi mark") {
		t.Fatalf("second remark:\n%s", out)
	}
	out, errOut, code = storageCLI(t, s3srv, "delete", "old-version")
	if code != 0 || indep.HeadBucket(ctx, "old-version") == nil {
		t.Fatalf("delete of the re-marked bucket: exit %d\n%s\n%s", code, out, errOut)
	}
}

// TestNoOwnershipKey: a controller without --ownership-key-file refuses to
// create or delete managed buckets (FailedPrecondition naming the flag)
// and leaves them alone; `source` volumes on existing buckets still work.
func TestNoOwnershipKey(t *testing.T) {
	s3srv, _, withKey := startAll(t, "--services", "controller")
	ctx := context.Background()
	vol, err := withKey.Controller.CreateVolume(ctx, createReq("pvc-keyed", map[string]string{"name": "keyed", "persistent": "false"}, s3srv.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	c := testenv.StartDriver(t, s3srv, "--services", "controller", "--ownership-key-file=").Dial(t)
	_, err = c.Controller.CreateVolume(ctx, createReq("pvc-new", map[string]string{"name": "new-b"}, s3srv.Secrets()))
	wantStatus(t, "CreateVolume without a key", err, codes.FailedPrecondition, "--ownership-key-file")
	_, err = c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.GetVolume().GetVolumeId(), Secrets: s3srv.Secrets()})
	wantStatus(t, "DeleteVolume without a key", err, codes.FailedPrecondition, "--ownership-key-file")
	if err := s3srv.Store(t).HeadBucket(ctx, "keyed"); err != nil {
		t.Fatalf("bucket after the refused DeleteVolume: %v", err)
	}
	src, err := c.Controller.CreateVolume(ctx, createReq("pvc-src", map[string]string{"source": "s3://keyed"}, s3srv.Secrets()))
	if err != nil {
		t.Fatalf("source volume without a key: %v", err)
	}
	if _, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: src.GetVolume().GetVolumeId(), Secrets: s3srv.Secrets()}); err != nil {
		t.Fatalf("deleting a source volume without a key: %v", err)
	}
}

// retryAborted calls call until it answers something else than Aborted,
// as the external-provisioner does.
func retryAborted(call func() error) (aborted int, err error) {
	for {
		if err = call(); status.Code(err) != codes.Aborted || aborted > 5000 {
			return aborted, err
		}
		aborted++
		time.Sleep(time.Millisecond)
	}
}

// TestLastVolumeDeleteRacesCreate: 50 rounds of DeleteVolume of the last
// volume of a persistent=false bucket, started together with CreateVolume
// of a new volume on the same bucket, through the driver's gRPC socket.
// After every round the new volume's bucket exists, carries a genuine mark
// that is not being deleted, and holds the new volume's record: never a
// CreateVolume OK whose bucket is purged.
func TestLastVolumeDeleteRacesCreate(t *testing.T) {
	s3srv, _, c := startAll(t, "--services", "controller")
	ctx := context.Background()
	indep := s3srv.Store(t)
	keeper := testKeeper(t, s3srv)
	const b = "race-b"
	params := map[string]string{"name": b, "persistent": "false"}
	create := func(name string) (string, error) {
		var vol *csi.CreateVolumeResponse
		_, err := retryAborted(func() (err error) {
			vol, err = c.Controller.CreateVolume(ctx, createReq(name, params, s3srv.Secrets()))
			return err
		})
		return vol.GetVolume().GetVolumeId(), err
	}
	prev, err := create("pvc-race-0")
	if err != nil {
		t.Fatal(err)
	}
	purged, kept, abortedTotal := 0, 0, 0
	for round := 1; round <= 50; round++ {
		putRaw(t, s3srv.Client(), b, fmt.Sprintf("data/%03d", round), strings.Repeat("x", 1024))
		name := fmt.Sprintf("pvc-race-%d", round)
		var (
			wg         sync.WaitGroup
			id         string
			cerr, derr error
			aborted    int
		)
		start := make(chan struct{})
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			id, cerr = create(name)
		}()
		go func() {
			defer wg.Done()
			<-start
			aborted, derr = retryAborted(func() error {
				_, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: prev, Secrets: s3srv.Secrets()})
				return err
			})
		}()
		close(start)
		wg.Wait()
		abortedTotal += aborted
		if cerr != nil || derr != nil {
			t.Fatalf("round %d: CreateVolume %v, DeleteVolume %v", round, cerr, derr)
		}
		f, err := keeper.Read(ctx, indep, bucket.Ref{Store: "s3", Bucket: b})
		if err != nil || f.Status != bucket.Genuine || f.Mark.State != "" {
			t.Fatalf("round %d: CreateVolume answered OK but the bucket's mark is %+v (%v)", round, f, err)
		}
		if r, err := bucket.GetRecord(ctx, indep, b, volume.NameHash(name)); err != nil || r == nil || r.VolumeID != id {
			t.Fatalf("round %d: CreateVolume answered OK but its record is %+v (%v)", round, r, err)
		}
		if _, err := indep.GetObject(ctx, b, fmt.Sprintf("data/%03d", round)); err != nil {
			purged++ // the delete won: the bucket was purged, then made anew
		} else {
			kept++
		}
		prev = id
	}
	t.Logf("50 rounds: delete first (bucket purged and made anew) %d, create first (bucket kept) %d, Aborted answers retried %d", purged, kept, abortedTotal)
}

// testKeeper reads marks with the key of the test's drivers.
func testKeeper(t *testing.T, s3srv *testenv.S3) *bucket.Keeper {
	t.Helper()
	key, err := bucket.LoadKey(s3srv.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := bucket.NewMarker(key)
	if err != nil {
		t.Fatal(err)
	}
	return bucket.NewKeeper(m, nil)
}

// TestVersionedBucketPurgeRefused: deleting the last persistent=false
// volume of a bucket that keeps object versions, which the store refuses
// to delete while versions remain, never leaves the bucket without its
// mark: DeleteVolume answers FailedPrecondition saying why, the genuine
// mark is back (state "deleting"), a new volume on the bucket is refused
// rather than placed in the half-deleted bucket, a retry answers
// FailedPrecondition again, and once the admin has deleted the versions
// and the bucket the retried DeleteVolume answers OK.
func TestVersionedBucketPurgeRefused(t *testing.T) {
	s3srv := testenv.StartS3Versioning(t)
	c := testenv.StartDriver(t, s3srv, "--services", "controller").Dial(t)
	ctx := context.Background()
	indep := s3srv.Store(t)
	keeper := testKeeper(t, s3srv)
	const b = "versioned-out"
	vol, err := c.Controller.CreateVolume(ctx, createReq("pvc-versioned", map[string]string{"name": b, "persistent": "false"}, s3srv.Secrets()))
	if err != nil {
		t.Fatal(err)
	}
	client := s3srv.Client()
	if _, err := client.PutBucketVersioning(ctx, &s3.PutBucketVersioningInput{Bucket: aws.String(b),
		VersioningConfiguration: &types.VersioningConfiguration{Status: types.BucketVersioningStatusEnabled}}); err != nil {
		t.Fatal(err)
	}
	putRaw(t, s3srv.Client(), b, "result.txt", "v1")
	putRaw(t, s3srv.Client(), b, "result.txt", "v2")
	del := &csi.DeleteVolumeRequest{VolumeId: vol.GetVolume().GetVolumeId(), Secrets: s3srv.Secrets()}
	_, err = c.Controller.DeleteVolume(ctx, del)
	wantStatus(t, "DeleteVolume of a bucket with object versions", err, codes.FailedPrecondition, "refused deleting bucket")
	if err := indep.HeadBucket(ctx, b); err != nil {
		t.Fatalf("bucket after the refused delete: %v", err)
	}
	f, err := keeper.Read(ctx, indep, bucket.Ref{Store: "s3", Bucket: b})
	if err != nil || f.Status != bucket.Genuine || f.Mark.State != bucket.StateDeleting {
		t.Fatalf("mark after the refused delete: %+v (%v); want the genuine mark back, deleting", f, err)
	}
	_, err = c.Controller.CreateVolume(ctx, createReq("pvc-late", map[string]string{"name": b}, s3srv.Secrets()))
	wantStatus(t, "CreateVolume on a half-deleted bucket", err, codes.FailedPrecondition, "is being deleted")
	// The retry says so again (the volume's record went before the
	// bucket's delete was refused) and touches nothing.
	_, err = c.Controller.DeleteVolume(ctx, del)
	wantStatus(t, "DeleteVolume retried before the admin's cleanup", err, codes.FailedPrecondition, "is being deleted", "storage delete")
	if err := indep.HeadBucket(ctx, b); err != nil {
		t.Fatalf("bucket after the retried delete: %v", err)
	}
	// As the message says: the admin deletes the versions and the bucket
	// with the store's own tools; the retried DeleteVolume then answers OK.
	versions, err := client.ListObjectVersions(ctx, &s3.ListObjectVersionsInput{Bucket: aws.String(b)})
	if err != nil {
		t.Fatal(err)
	}
	var ids []types.ObjectIdentifier
	for _, v := range versions.Versions {
		ids = append(ids, types.ObjectIdentifier{Key: v.Key, VersionId: v.VersionId})
	}
	for _, d := range versions.DeleteMarkers {
		ids = append(ids, types.ObjectIdentifier{Key: d.Key, VersionId: d.VersionId})
	}
	for _, id := range ids {
		if _, err := client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b), Key: id.Key, VersionId: id.VersionId}); err != nil {
			t.Fatalf("deleting version %s of %s: %v", aws.ToString(id.VersionId), aws.ToString(id.Key), err)
		}
	}
	if _, err := client.DeleteBucket(ctx, &s3.DeleteBucketInput{Bucket: aws.String(b)}); err != nil {
		t.Fatalf("the admin's bucket delete: %v", err)
	}
	if _, err := c.Controller.DeleteVolume(ctx, del); err != nil {
		t.Fatalf("DeleteVolume once the bucket is gone: %v", err)
	}
}

// TestNameVolumeRefusesAnotherAccountsBucket: on S3 whoever takes a bucket
// name first owns it, and its owner can let anyone in. A bucket another
// account made under the name a `name` volume asks for, opened to the
// driver's account by its policy, is refused with FailedPrecondition
// whatever it holds (a plain object, a junk mark, or the genuine mark of a
// bucket of that name the driver made and purged before), and the driver
// writes nothing into it. In the driver's own account the same calls use
// an existing bucket and create a new one as before, and `source` still
// mounts the other account's bucket, an explicit choice. (versitygw with
// two accounts beside its root, each listing only its own buckets.)
func TestNameVolumeRefusesAnotherAccountsBucket(t *testing.T) {
	const driverKey, driverSecret = "driveracct", "driver-secret-0123456789"
	const otherKey, otherSecret = "otheracct", "other-secret-0123456789"
	s3srv := testenv.StartS3Accounts(t, map[string]string{driverKey: driverSecret, otherKey: otherSecret})
	c := testenv.StartDriver(t, s3srv, "--services", "controller").Dial(t)
	ctx := context.Background()
	ours := map[string]string{s3store.SecretAccessKeyID: driverKey, s3store.SecretSecretAccessKey: driverSecret}
	mine := testenv.S3Client(s3srv.Endpoint, driverKey, driverSecret)
	theirs := testenv.S3Client(s3srv.Endpoint, otherKey, otherSecret)

	// The genuine mark of "reborn", made by the driver and left behind by
	// its purge, in the hands of whoever could read the bucket once.
	vol, err := c.Controller.CreateVolume(ctx, createReq("pvc-reborn", map[string]string{"name": "reborn", "persistent": "false"}, ours))
	if err != nil {
		t.Fatal(err)
	}
	oldMark, err := s3srv.ReadObject(t, "reborn", bucket.OwnerKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Controller.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: vol.GetVolume().GetVolumeId(), Secrets: ours}); err != nil {
		t.Fatal(err)
	}
	if _, err := mine.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String("reborn")}); err == nil {
		t.Fatal("the non-persistent bucket reborn outlived its volume")
	}

	squatted := map[string]string{
		"squat-plain":    "",
		"squat-junkmark": `{"driver":"bucket.csi.io","version":2,"store":"s3","bucket":"squat-junkmark","sig":"c2ln"}`,
		"reborn":         string(oldMark),
	}
	for b, mark := range squatted {
		if _, err := theirs.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b)}); err != nil {
			t.Fatalf("the other account creating %s: %v", b, err)
		}
		putRaw(t, theirs, b, "bait.txt", "read me")
		if mark != "" {
			putRaw(t, theirs, b, bucket.OwnerKey, mark)
		}
		// versitygw checks a bucket's policy alone once it has one, so
		// the objects go in first.
		policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":[%q]},"Action":["s3:*"],"Resource":["arn:aws:s3:::%s","arn:aws:s3:::%s/*"]}]}`, driverKey, b, b)
		if _, err := theirs.PutBucketPolicy(ctx, &s3.PutBucketPolicyInput{Bucket: aws.String(b), Policy: aws.String(policy)}); err != nil {
			t.Fatalf("the other account opening %s to the driver's: %v", b, err)
		}
		// The driver's credentials are let in: what the check is about.
		if _, err := mine.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b), Key: aws.String("bait.txt")}); err != nil {
			t.Fatalf("the policy of %s does not let the driver's account in: %v", b, err)
		}
	}
	for b := range squatted {
		before := keys(t, s3srv.Store(t), b)
		_, err := c.Controller.CreateVolume(ctx, createReq("pvc-"+b, map[string]string{"name": b}, ours))
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "another account") {
			t.Errorf("CreateVolume naming %s, another account's bucket = %v, want FailedPrecondition naming another account", b, err)
		}
		if after := keys(t, s3srv.Store(t), b); !slices.Equal(before, after) {
			t.Errorf("the driver wrote into another account's bucket %s: keys %v, before %v", b, after, before)
		}
	}

	// The driver's own account: an existing bucket is used, a new one made.
	if _, err := mine.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("own-existing")}); err != nil {
		t.Fatal(err)
	}
	putRaw(t, mine, "own-existing", "data.txt", "ours")
	for _, b := range []string{"own-existing", "own-new"} {
		if _, err := c.Controller.CreateVolume(ctx, createReq("pvc-"+b, map[string]string{"name": b}, ours)); err != nil {
			t.Errorf("CreateVolume naming %s, of the driver's own account: %v", b, err)
		}
	}
	if _, err := c.Controller.CreateVolume(ctx, createReq("pvc-source", map[string]string{"source": "s3://squat-plain"}, ours)); err != nil {
		t.Errorf("CreateVolume with source naming another account's bucket: %v", err)
	}
}
