# bucket-csi. `make demo` runs the driver's main job on a local S3 server;
# `make test` runs every test (unit, csi-sanity, real FUSE mounts). Both need
# root and /dev/fuse (fuse3 from Debian).

GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
TEST_TIMEOUT ?= 40m

.PHONY: all build tools test unit lint demo fuzz bench bench-busy manifests e2e-kind clean image k8s-tools e2e-deps cluster-up cluster-down e2e conformance bin/cluster
# An execution count, not a duration: Go 1.26's fuzz coordinator can fail a
# run with "context deadline exceeded" when a duration ends mid-execution
# (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 300000x

all: build

# Static, as the image builds them, so the two share every compiled package
# (a cold build compiles the stores' SDKs and rclone once, not twice).
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/bucket-csi ./cmd/bucket-csi
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/bucket-csi-mounter ./cmd/bucket-csi-mounter

# The driver image without Docker: the Dockerfile's final stage (read by
# hack/image) from this Debian host's packages and static binaries built as
# the Dockerfile builds them. Import with `ctr -n k8s.io images import`.
IMAGE ?= ghcr.io/bucket-csi/bucket-csi:$(VERSION)
image:
	@for p in fuse3 ca-certificates util-linux e2fsprogs; do dpkg -s $$p >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq fuse3 ca-certificates util-linux e2fsprogs; break; }; done
	mkdir -p bin/image
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X main.version=$(VERSION)" -o bin/image/bucket-csi ./cmd/bucket-csi
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/image/bucket-csi-mounter ./cmd/bucket-csi-mounter
	$(GO) run ./hack/image -bin bin/image -tag $(IMAGE) -o bin/bucket-csi-image.tar

# A real single-node Kubernetes here (hack/cluster): kubelet, the control
# plane and kubectl from k8s.io/kubernetes (tools/k8s), etcd, csi-provisioner
# (tools/provisioner), built once into bin/k8s at low priority (a cold build
# takes tens of minutes on 2 cores); containerd, runc, CNI plugins and
# busybox from Debian. Everything of tools/k8s is built with the same flags
# (static, as Kubernetes releases its binaries, and -trimpath), so the
# packages the binaries share, the suite's and agnhost's too, are compiled
# once: a flag that differs gives every package a cache key of its own.
NICE ?= nice -n 19
K8S_GO := cd tools/k8s && CGO_ENABLED=0 $(NICE) $(GO)
K8S_CMDS := kube-apiserver kube-controller-manager kube-scheduler kubelet kubectl
k8s-tools: $(addprefix bin/k8s/,$(K8S_CMDS) etcd csi-provisioner)

# One go build for all five: one action graph, so links overlap compiles.
$(addprefix bin/k8s/,$(K8S_CMDS)) &: tools/k8s/go.mod tools/k8s/go.sum
	mkdir -p bin/k8s
	$(K8S_GO) build -trimpath -ldflags "-s -w" -o ../../bin/k8s/ $(addprefix k8s.io/kubernetes/cmd/,$(K8S_CMDS))

bin/k8s/etcd: tools/k8s/go.mod tools/k8s/go.sum tools/k8s/etcd/main.go
	$(K8S_GO) build -trimpath -ldflags "-s -w" -o ../../$@ ./etcd

# csi-provisioner runs in an image without libc: static.
bin/k8s/csi-provisioner: tools/provisioner/go.mod tools/provisioner/go.sum
	cd tools/provisioner && CGO_ENABLED=0 $(NICE) $(GO) build -trimpath -ldflags "-s -w" -o ../../$@ github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner

e2e-deps:
	@for c in containerd runc /usr/lib/cni/bridge /bin/busybox iptables curl; do command -v $$c >/dev/null || [ -x $$c ] || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd runc containernetworking-plugins busybox-static iptables curl; break; }; done

bin/cluster:
	$(GO) build -o bin/cluster ./hack/cluster

# make cluster-up starts the cluster and installs the chart; kubectl through
# `bin/cluster exec -- kubectl ...` (KUBECONFIG is set inside).
cluster-up e2e conformance: IMAGE = ghcr.io/bucket-csi/bucket-csi:e2e
cluster-up: k8s-tools image bin/versitygw bin/helm e2e-deps bin/cluster
	bin/cluster up

cluster-down: bin/cluster
	bin/cluster down

# Every scenario of test/e2e on that cluster; E2E_KEEP=1 keeps it running.
e2e: k8s-tools image bin/versitygw bin/helm e2e-deps bin/cluster
	GO="$(GO)" hack/e2e.sh

# Kubernetes' external storage e2e suite (test/storage-e2e, hack/conformance.sh)
# on that cluster; CONFORMANCE_QUICK=1 runs one spec of each suite (CI).
SUITE_BINS := bin/k8s/storage-e2e.test bin/k8s/agnhost
conformance: k8s-tools $(SUITE_BINS) image bin/versitygw bin/helm e2e-deps bin/cluster
	hack/conformance.sh

bin/k8s/storage-e2e.test: tools/k8s/go.mod tools/k8s/go.sum tools/k8s/storagee2e/suite_test.go
	$(K8S_GO) test -c -trimpath -o ../../$@ ./storagee2e

# The suite's test image; static, for an image without libc.
bin/k8s/agnhost: tools/k8s/go.mod tools/k8s/go.sum
	$(K8S_GO) build -trimpath -ldflags "-s -w" -o ../../$@ k8s.io/kubernetes/test/images/agnhost

# Test servers and emulators: Go tools pinned in tools/go.mod (tool
# directives), Azurite pinned in tools/azurite/package-lock.json.
tools: bin/versitygw bin/fake-gcs-server bin/azurite-blob bin/helm

# Baselines for make bench: rclone (pinned in tools/go.mod), s3fs and fuse3
# (Debian; rclone mount needs fusermount3). The benchmarks use only the S3
# server.
bench-tools: bin/versitygw bin/fake-gcs-server bin/rclone bin/gcsfuse
	command -v s3fs >/dev/null && command -v fusermount3 >/dev/null || (apt-get update -qq && apt-get install -y -qq s3fs fuse3)

bin/rclone: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o ../bin/rclone github.com/rclone/rclone

# gcsfuse has a module of its own: its dependencies would move the shared
# ones of tools/go.mod (v3.11.4: later versions need Go 1.27).
bin/gcsfuse: tools/gcsfuse/go.mod tools/gcsfuse/go.sum
	cd tools/gcsfuse && $(NICE) $(GO) build -o ../../bin/gcsfuse github.com/googlecloudplatform/gcsfuse/v3

bin/versitygw: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o ../bin/versitygw github.com/versity/versitygw/cmd/versitygw

bin/fake-gcs-server: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o ../bin/fake-gcs-server github.com/fsouza/fake-gcs-server

bin/helm: tools/go.mod tools/go.sum
	cd tools && $(GO) build -o ../bin/helm helm.sh/helm/v3/cmd/helm

bin/azurite-blob: tools/azurite/package.json tools/azurite/package-lock.json
	cd tools/azurite && npm ci --no-audit --no-fund --loglevel=error
	mkdir -p bin && ln -sf ../tools/azurite/node_modules/.bin/azurite-blob bin/azurite-blob

# Every test, with the real servers and real FUSE mounts.
test: build tools
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# Unit tests only: no servers, no FUSE. The store conformance suite runs
# here on the in-memory store (pkg/store/memstore); make test runs it again
# on every real server and emulator (test/stores_test.go). The CSI handler
# tests of pkg/driver run here too, over its seams (docs/architecture.md).
unit:
	$(GO) test -count=1 ./pkg/... ./cmd/... ./internal/deprules/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) mod tidy -diff
	cd tools && $(GO) mod tidy -diff
	cd tools/gcsfuse && $(GO) mod tidy -diff

# Benchmarks against the baselines in the same run (docs/benchmarks.md):
# the S3 server pinned to CPU 0, every client (our FUSE servers, rclone,
# s3fs, the readers) to CPU 1; BENCH_COUNT rounds of each figure, one
# after another, each round running every system once and starting one
# system later than the round before (-bench.rounds; test/bench/rounds_test.go),
# so no system's runs sit back to back. benchreport
# prints the median (min-max) table and the targets and writes them, with
# the chart, into docs/. BENCH_ARGS adds test flags, e.g.
# BENCH_ARGS='-test.bench SeqRead -bench.scale 0.25'. Every figure runs
# once per round-trip time of BENCH_LATENCIES, added by a latency proxy
# in front of the server (0: the server on loopback directly). Each of
# those runs writes its files on a fresh 32 GiB ext4 image with a journal
# in $TMPDIR (root, mkfs.ext4 and the room needed; test/bench/disk_test.go).
BENCH_COUNT ?= 3
BENCH_ARGS ?=
BENCH_LATENCIES ?= 0 20ms
bench: build bench-tools
	$(GO) test -c -o bin/bench.test ./test/bench/
	rm -f bin/bench.txt
	cd test/bench && for rtt in $(BENCH_LATENCIES); do \
		BENCH_SERVER_CPU=0 taskset -c 1 ../../bin/bench.test -test.run '^$$' -test.bench . -bench.latency $$rtt \
		-test.benchtime 1x -bench.rounds $(BENCH_COUNT) -test.timeout 60m $(BENCH_ARGS) | tee -a ../../bin/bench.txt; done
	$(GO) run ./hack/benchreport -in bin/bench.txt -md docs/benchmarks-results.md -svg docs/benchmarks.svg

# The key figures again with a CPU hog process on the clients' CPU (do the
# leads survive a busy machine?), on loopback, into docs/benchmarks-busy.md.
BUSY_FIGURES ?= SeqRead|SmallFiles|RandRead1M
bench-busy: build bench-tools
	$(GO) test -c -o bin/bench.test ./test/bench/
	cd test/bench && BENCH_SERVER_CPU=0 taskset -c 1 ../../bin/bench.test -test.run '^$$' -test.bench '$(BUSY_FIGURES)' -bench.hog \
		-test.benchtime 1x -bench.rounds $(BENCH_COUNT) -test.timeout 60m $(BENCH_ARGS) | tee ../../bin/bench-busy.txt
	$(GO) run ./hack/benchreport -in bin/bench-busy.txt -md docs/benchmarks-busy.md

# A short run of every fuzz target (seed corpora in pkg/*/testdata/fuzz).
FUZZ_TARGETS ?= pkg/volume:FuzzParseID pkg/volume:FuzzParseSource pkg/volume:FuzzParse pkg/volume:FuzzParseMountFlags \
	pkg/bucket:FuzzVerifyMark
fuzz:
	for pt in $(FUZZ_TARGETS); do \
		$(GO) test -run '^$$' -fuzz "^$${pt#*:}$$" -fuzztime $(FUZZTIME) ./$${pt%%:*}/ || exit 1; \
	done

# deploy/bucket-csi.yaml is the chart rendered with default values, except
# the ownership key Secret: a key committed here would be everyone's, so
# deploy/kustomization.yaml makes the Secret from deploy/ownership.key,
# which each installation generates (see the README).
MANIFEST_ARGS = --namespace bucket-csi --set ownershipKey.create=false
manifests: bin/helm
	bin/helm template bucket-csi charts/bucket-csi $(MANIFEST_ARGS) > deploy/bucket-csi.yaml

# End-to-end on a kind cluster: needs Docker, kind, kubectl and access to
# the image registries (not available on the CI machine).
e2e-kind: build
	hack/e2e-kind.sh

# The demo uses only the S3 server (no emulators, no helm).
demo: build bin/versitygw
	$(GO) run ./hack/demo

clean:
	rm -rf bin
