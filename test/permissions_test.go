package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/bucket-csi/bucket-csi/test/testenv"
)

// The test binary doubles as a one-syscall helper run under another uid:
// with asOpEnv set it performs that operation on the paths in its
// arguments and prints "errno=<n>".
const asOpEnv = "BUCKET_CSI_TEST_AS_OP"

func init() {
	if op := os.Getenv(asOpEnv); op != "" {
		fmt.Printf("errno=%d\n", doOp(op, os.Args[1:]))
		os.Exit(0)
	}
}

// doOp performs one file operation and returns its errno (0: success).
func doOp(op string, args []string) syscall.Errno {
	err := func() error {
		switch op {
		case "read":
			data, err := os.ReadFile(args[0])
			if err == nil && len(data) == 0 {
				return errors.New("empty read")
			}
			return err
		case "list":
			_, err := os.ReadDir(args[0])
			return err
		case "write":
			f, err := os.OpenFile(args[0], os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			if _, err := f.WriteString("written by " + strconv.Itoa(os.Getuid())); err != nil {
				f.Close()
				return err
			}
			return f.Close()
		case "mkdir":
			return unix.Mkdir(args[0], 0o755)
		case "unlink":
			return unix.Unlink(args[0])
		case "rmdir":
			return unix.Rmdir(args[0])
		case "rename":
			return unix.Rename(args[0], args[1])
		case "chmod":
			return unix.Chmod(args[0], 0o644)
		}
		return fmt.Errorf("unknown op %q", op)
	}()
	var errno syscall.Errno
	if err != nil && !errors.As(err, &errno) {
		return syscall.EBADMSG // not a syscall failure: never what a test expects
	}
	return errno
}

// user is a pod's process identity.
type user struct {
	uid, gid uint32
	groups   []uint32
}

var (
	root      = user{0, 0, nil}
	owner     = user{1000, 1000, nil}
	stranger  = user{2000, 2000, nil}
	groupMate = user{2000, 2000, []uint32{3000}}
)

// asUser runs ops through a copy of the test binary that every uid may
// execute.
type asUser struct{ bin string }

func newAsUser(t *testing.T) asUser {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "bucket-csi-as-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	bin := filepath.Join(dir, "as")
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return asUser{bin: bin}
}

// do runs op as u in a new process and returns its errno.
func (a asUser) do(t *testing.T, u user, op string, args ...string) syscall.Errno {
	t.Helper()
	cmd := exec.Command(a.bin, args...)
	cmd.Env = []string{asOpEnv + "=" + op}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}}
	var stderr strings.Builder
	cmd.Stderr = &stderr // engine packages log from their init
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s as uid %d: %v: %s%s", op, u.uid, err, out, stderr.String())
	}
	_, num, _ := strings.Cut(string(out), "errno=")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil {
		t.Fatalf("%s as uid %d: unexpected output %q", op, u.uid, out)
	}
	return syscall.Errno(n)
}

// expect runs op as u and fails unless it ends with want (0: success).
func (a asUser) expect(t *testing.T, u user, want syscall.Errno, op string, args ...string) {
	t.Helper()
	if got := a.do(t, u, op, args...); got != want {
		t.Errorf("%s %v as uid %d (groups %v): errno %d (%v), want %d (%v)", op, args, u.uid, u.groups, got, got, want, want)
	}
}

// permPaths returns a staging path and two pod target paths that other
// uids can reach (kubelet's directories are traversable by pods' uids).
func permPaths(t *testing.T, drv *testenv.Driver) (staging, target, roTarget string) {
	t.Helper()
	work := drv.TempDir(t)
	for _, d := range []string{drv.Dir, work, filepath.Join(work, "pod")} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(work, "staging"), filepath.Join(work, "pod", "rw"), filepath.Join(work, "pod", "ro")
}

// stagePerm stages id with vc (retrying while a copy runs) and publishes it
// read-write at target and read-only at roTarget.
func stagePerm(t *testing.T, c testenv.Clients, id, staging, target, roTarget string, vc *csi.VolumeCapability, secrets map[string]string) {
	t.Helper()
	if err := os.MkdirAll(staging, 0o711); err != nil {
		t.Fatal(err)
	}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		_, err := c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: staging, VolumeCapability: vc, Secrets: secrets})
		cancel()
		if err == nil {
			break
		}
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("NodeStageVolume: %v", err)
		}
	}
	for _, p := range []struct {
		path string
		ro   bool
	}{{target, false}, {roTarget, true}} {
		if _, err := c.Node.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: staging, TargetPath: p.path, VolumeCapability: vc, Readonly: p.ro}); err != nil {
			t.Fatalf("NodePublishVolume %s: %v", p.path, err)
		}
	}
}

func unstagePerm(t *testing.T, c testenv.Clients, id, staging string, targets ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, tp := range targets {
		if _, err := c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: tp}); err != nil {
			t.Fatalf("NodeUnpublishVolume: %v", err)
		}
	}
	for {
		_, err := c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: staging})
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("NodeUnstageVolume: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// assertOwner checks the owner and permission bits of p.
func assertOwner(t *testing.T, p string, uid, gid uint32, perm os.FileMode) {
	t.Helper()
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	sys := st.Sys().(*syscall.Stat_t)
	if sys.Uid != uid || sys.Gid != gid || st.Mode().Perm() != perm {
		t.Errorf("%s: owner %d:%d mode %v, want %d:%d %v", p, sys.Uid, sys.Gid, st.Mode().Perm(), uid, gid, perm)
	}
}

// TestPermissionsEnforced: in every mode the kernel enforces the uid, gid
// and umask mount options and the pod's fsGroup (volume mount group):
// another uid in the pod can neither read, write, delete nor rename the
// owner's files of a umask=077 volume, the owner can; a member of the
// fsGroup can read and write; a read-only publish refuses writes to
// everybody, root included; root in the pod keeps access. COPY applies
// the same owner and modes to its local files on every stage, also to
// files a kept copy (--keep-copies) already held.
func TestPermissionsEnforced(t *testing.T) {
	testenv.RequireFUSE(t)
	s3c, drv, c := startAll(t, "--keep-copies")
	as := newAsUser(t)
	ctx := context.Background()
	for _, mode := range []string{"MOUNT", "MOUNT_CACHED", "COPY"} {
		t.Run(mode, func(t *testing.T) {
			bucketName := "perm-" + strings.ToLower(strings.ReplaceAll(mode, "_", "-"))
			st := s3c.Store(t)
			if err := st.CreateBucket(ctx, bucketName); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"seed.txt", "dir/nested.txt"} {
				if err := st.PutObject(ctx, bucketName, k, []byte("seed "+k)); err != nil {
					t.Fatal(err)
				}
			}
			vol, err := c.Controller.CreateVolume(ctx, createReq("pv-"+bucketName, map[string]string{"source": "s3://" + bucketName, "mode": mode}, s3c.Secrets()))
			if err != nil {
				t.Fatal(err)
			}
			id := vol.GetVolume().GetVolumeId()
			staging, target, roTarget := permPaths(t, drv)
			in := func(p string) string { return filepath.Join(target, p) }

			// uid=1000, gid=1000, umask=077: the owner only.
			stagePerm(t, c, id, staging, target, roTarget, testenv.MountCap(rwx, "umask=077,uid=1000,gid=1000"), s3c.Secrets())
			assertOwner(t, target, 1000, 1000, 0o700)
			assertOwner(t, in("seed.txt"), 1000, 1000, 0o600)
			assertOwner(t, in("dir"), 1000, 1000, 0o700)
			as.expect(t, owner, 0, "write", in("mine.txt"))
			as.expect(t, owner, 0, "read", in("seed.txt"))
			as.expect(t, owner, 0, "read", in("dir/nested.txt"))
			as.expect(t, owner, 0, "rename", in("mine.txt"), in("mine2.txt"))
			for _, u := range []user{stranger, groupMate} {
				as.expect(t, u, syscall.EACCES, "read", in("seed.txt"))
				as.expect(t, u, syscall.EACCES, "list", target)
				as.expect(t, u, syscall.EACCES, "write", in("seed.txt"))
				as.expect(t, u, syscall.EACCES, "write", in("theirs.txt"))
				as.expect(t, u, syscall.EACCES, "unlink", in("mine2.txt"))
				as.expect(t, u, syscall.EACCES, "rename", in("mine2.txt"), in("stolen.txt"))
				as.expect(t, u, syscall.EACCES, "mkdir", in("theirdir"))
			}
			// Root in the pod is not bound by modes, as on any filesystem.
			as.expect(t, root, 0, "read", in("seed.txt"))
			as.expect(t, owner, 0, "unlink", in("mine2.txt"))
			// Read-only publish: nobody writes, root included.
			for _, u := range []user{root, owner} {
				as.expect(t, u, syscall.EROFS, "write", filepath.Join(roTarget, "seed.txt"))
				as.expect(t, u, syscall.EROFS, "write", filepath.Join(roTarget, "new.txt"))
				as.expect(t, u, syscall.EROFS, "unlink", filepath.Join(roTarget, "seed.txt"))
			}
			as.expect(t, owner, 0, "read", filepath.Join(roTarget, "seed.txt"))
			// chmod by the owner: a COPY file is a local file and takes it;
			// a mount accepts it and keeps showing the mount's modes.
			as.expect(t, owner, 0, "chmod", in("seed.txt"))
			want := os.FileMode(0o600)
			if mode == "COPY" {
				want = 0o644
			}
			time.Sleep(1100 * time.Millisecond) // the kernel's attribute cache
			assertOwner(t, in("seed.txt"), 1000, 1000, want)
			as.expect(t, stranger, syscall.EPERM, "chmod", target)
			unstagePerm(t, c, id, staging, target, roTarget)

			// The pod's fsGroup 3000 (and umask=077): group members read and
			// write; in COPY the kept copy's files change owner and mode.
			if err := st.PutObject(ctx, bucketName, "seed.txt", []byte("seed changed")); err != nil {
				t.Fatal(err)
			}
			vc := testenv.MountCap(rwx, "umask=077")
			vc.GetMount().VolumeMountGroup = "3000"
			stagePerm(t, c, id, staging, target, roTarget, vc, s3c.Secrets())
			assertOwner(t, target, 0, 3000, 0o770)
			assertOwner(t, in("seed.txt"), 0, 3000, 0o660)
			assertOwner(t, in("dir/nested.txt"), 0, 3000, 0o660)
			as.expect(t, groupMate, 0, "read", in("seed.txt"))
			as.expect(t, groupMate, 0, "read", in("dir/nested.txt"))
			as.expect(t, groupMate, 0, "write", in("seed.txt"))
			as.expect(t, groupMate, 0, "write", in("group.txt"))
			as.expect(t, groupMate, 0, "rename", in("group.txt"), in("group2.txt"))
			as.expect(t, groupMate, 0, "unlink", in("group2.txt"))
			as.expect(t, stranger, syscall.EACCES, "read", in("seed.txt"))
			as.expect(t, stranger, syscall.EACCES, "write", in("other.txt"))
			as.expect(t, groupMate, syscall.EROFS, "write", filepath.Join(roTarget, "seed.txt"))
			unstagePerm(t, c, id, staging, target, roTarget)
		})
	}
}

// TestExecMountOption: with the exec mount option a script in the bucket
// shows 0755 (umask=022) and runs, in every mode; without it the same
// file shows 0644 and running it is refused with EACCES, as the storage
// e2e suite's exec spec expects of a volume that declares exec.
func TestExecMountOption(t *testing.T) {
	testenv.RequireFUSE(t)
	s3c, drv, c := startAll(t)
	ctx := context.Background()
	for _, mode := range []string{"MOUNT", "MOUNT_CACHED", "COPY"} {
		t.Run(mode, func(t *testing.T) {
			bucketName := "exec-" + strings.ToLower(strings.ReplaceAll(mode, "_", "-"))
			st := s3c.Store(t)
			if err := st.CreateBucket(ctx, bucketName); err != nil {
				t.Fatal(err)
			}
			if err := st.PutObject(ctx, bucketName, "bin/run.sh", []byte("#!/bin/sh\necho ran\n")); err != nil {
				t.Fatal(err)
			}
			vol, err := c.Controller.CreateVolume(ctx, createReq("pv-"+bucketName, map[string]string{"source": "s3://" + bucketName, "mode": mode}, s3c.Secrets()))
			if err != nil {
				t.Fatal(err)
			}
			id := vol.GetVolume().GetVolumeId()
			for _, opts := range []string{"umask=022", "umask=022,exec"} {
				staging, target, roTarget := permPaths(t, drv)
				stagePerm(t, c, id, staging, target, roTarget, testenv.MountCap(rwx, opts), s3c.Secrets())
				script := filepath.Join(target, "bin", "run.sh")
				out, err := exec.Command(script).CombinedOutput()
				if strings.HasSuffix(opts, "exec") {
					assertOwner(t, script, 0, 0, 0o755)
					if err != nil || string(out) != "ran\n" {
						t.Errorf("%s: running the script: %q %v", opts, out, err)
					}
				} else {
					assertOwner(t, script, 0, 0, 0o644)
					if !errors.Is(err, syscall.EACCES) {
						t.Errorf("%s: running the script: %q %v, want EACCES", opts, out, err)
					}
				}
				unstagePerm(t, c, id, staging, target, roTarget)
			}
		})
	}
}

// TestMetadataPrefixRefused: in every mode, a volume showing a bucket's
// root refuses every create, write, rename and delete of the driver's
// metadata directory (.bucket-csi) and anything below it with EPERM, to
// root too, and nothing reaches the bucket (checked with an independent
// S3 client). COPY reserves the name with an immutable directory, so
// making it again answers EEXIST and deleting a name inside it, where
// there is nothing, ENOENT.
func TestMetadataPrefixRefused(t *testing.T) {
	testenv.RequireFUSE(t)
	s3c, drv, c := startAll(t)
	as := newAsUser(t)
	ctx := context.Background()
	for _, mode := range []string{"MOUNT", "MOUNT_CACHED", "COPY"} {
		t.Run(mode, func(t *testing.T) {
			// A bucket the driver creates: it holds the real mark.
			vol, err := c.Controller.CreateVolume(ctx, createReq("pv-meta-"+strings.ToLower(strings.ReplaceAll(mode, "_", "-")), map[string]string{"mode": mode}, s3c.Secrets()))
			if err != nil {
				t.Fatal(err)
			}
			id := vol.GetVolume().GetVolumeId()
			bucketName := vol.GetVolume().GetVolumeContext()["bucket"]
			before := metaObjects(t, s3c, bucketName)
			if len(before) == 0 {
				t.Fatalf("the created bucket %s has no mark", bucketName)
			}
			staging, target, roTarget := permPaths(t, drv)
			stagePerm(t, c, id, staging, target, roTarget, testenv.MountCap(rwx), s3c.Secrets())
			in := func(p string) string { return filepath.Join(target, p) }
			as.expect(t, root, 0, "write", in("plain.txt"))
			as.expect(t, root, 0, "mkdir", in("d"))

			meta, mark := in(".bucket-csi"), in(".bucket-csi/owner.json")
			exists, gone := syscall.EPERM, syscall.EPERM
			if mode == "COPY" {
				exists, gone = syscall.EEXIST, syscall.ENOENT
			}
			for _, u := range []user{root, owner} {
				as.expect(t, u, exists, "mkdir", meta)
				as.expect(t, u, syscall.EPERM, "mkdir", in(".bucket-csi/volumes"))
				as.expect(t, u, syscall.EPERM, "write", mark)
				as.expect(t, u, syscall.EPERM, "rename", in("plain.txt"), mark)
				as.expect(t, u, syscall.EPERM, "rename", in("plain.txt"), meta)
				as.expect(t, u, syscall.EPERM, "rename", in("d"), meta)
				as.expect(t, u, syscall.EPERM, "rename", meta, in("moved"))
				as.expect(t, u, gone, "rename", mark, in("moved.json"))
				as.expect(t, u, syscall.EPERM, "rmdir", meta)
				as.expect(t, u, syscall.EPERM, "unlink", meta)
				as.expect(t, u, gone, "unlink", mark)
				as.expect(t, u, gone, "rmdir", in(".bucket-csi/volumes"))
			}
			// The rest of the root is as writable as ever.
			as.expect(t, root, 0, "rename", in("plain.txt"), in("plain2.txt"))
			unstagePerm(t, c, id, staging, target, roTarget)
			if after := metaObjects(t, s3c, bucketName); strings.Join(after, "\n") != strings.Join(before, "\n") {
				t.Errorf("objects under .bucket-csi/ changed through the mount: before %v, after %v", before, after)
			}
		})
	}
}

// metaObjects lists the keys and ETags under .bucket-csi/ with a plain S3
// client.
func metaObjects(t *testing.T, s3c *testenv.S3, bucketName string) []string {
	t.Helper()
	out, err := s3c.Client().ListObjectsV2(context.Background(), &s3.ListObjectsV2Input{Bucket: aws.String(bucketName), Prefix: aws.String(".bucket-csi")})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, o := range out.Contents {
		keys = append(keys, aws.ToString(o.Key)+" "+aws.ToString(o.ETag))
	}
	return keys
}
