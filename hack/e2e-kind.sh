#!/usr/bin/env bash
# End-to-end test on a kind cluster: for machines with Docker, kind, kubectl
# and access to the image registries. It cannot run on the CI machine (no
# container engine, no registry access) and CI does not claim it.
#
# Builds the image, creates a cluster, runs versitygw in it as the S3
# server, installs the chart, and checks a PVC + pod, an inline volume and
# csi-sanity against the node plugin's socket.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "e2e-kind needs $tool" >&2; exit 1; }
done
CLUSTER=${CLUSTER:-bucket-csi-e2e}
IMAGE=ghcr.io/bucket-csi/bucket-csi:e2e
docker build -t "$IMAGE" .
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER"
kind load docker-image --name "$CLUSTER" "$IMAGE"
kubectl create namespace bucket-csi --dry-run=client -o yaml | kubectl apply -f -
kubectl -n bucket-csi apply -f - <<'YAML'
apiVersion: v1
kind: Secret
metadata: {name: s3-root}
stringData: {ROOT_ACCESS_KEY_ID: e2eaccess, ROOT_SECRET_ACCESS_KEY: e2esecretkey}
---
apiVersion: v1
kind: Secret
metadata: {name: bucket-csi-s3}
stringData: {accessKeyID: e2eaccess, secretAccessKey: e2esecretkey}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: versitygw}
spec:
  selector: {matchLabels: {app: versitygw}}
  template:
    metadata: {labels: {app: versitygw}}
    spec:
      containers:
        - name: gw
          image: docker.io/versity/versitygw:v1.8.0
          args: [--port, ":7070", posix, /data]
          envFrom: [{secretRef: {name: s3-root}}]
          volumeMounts: [{name: data, mountPath: /data}]
      volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: versitygw}
spec: {selector: {app: versitygw}, ports: [{port: 7070}]}
YAML
kubectl -n bucket-csi rollout status deploy/versitygw --timeout=180s
bin/helm upgrade --install bucket-csi charts/bucket-csi -n bucket-csi \
  --set image.repository=ghcr.io/bucket-csi/bucket-csi,image.tag=e2e,image.pullPolicy=Never \
  --set stores.s3.endpoint=http://versitygw.bucket-csi:7070,stores.s3.pathStyle=true,inline.stores={s3}
kubectl -n bucket-csi rollout status ds/bucket-csi-mounter --timeout=180s
kubectl -n bucket-csi rollout status ds/bucket-csi-node --timeout=180s
kubectl -n bucket-csi rollout status deploy/bucket-csi-controller --timeout=180s
kubectl apply -f examples/storageclass-mount.yaml -f examples/pvc-and-pod.yaml
kubectl wait --for=condition=Ready pod/writer --timeout=300s
kubectl exec writer -- cat /data/hello.txt
kubectl create namespace team-a --dry-run=client -o yaml | kubectl apply -f -
kubectl -n team-a create secret generic team-a-s3 --from-literal=accessKeyID=e2eaccess --from-literal=secretAccessKey=e2esecretkey --dry-run=client -o yaml | kubectl apply -f -
# csi-sanity against the node plugin's socket, from inside the node pod.
GOOS=linux CGO_ENABLED=0 go build -o bin/csi-sanity github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity
NODE_POD=$(kubectl -n bucket-csi get pod -l app.kubernetes.io/component=node -o jsonpath='{.items[0].metadata.name}')
kubectl -n bucket-csi cp bin/csi-sanity "$NODE_POD":/tmp/csi-sanity -c bucket-csi
kubectl -n bucket-csi exec "$NODE_POD" -c bucket-csi -- /tmp/csi-sanity --csi.endpoint=/csi/csi.sock
echo "e2e-kind: passed"
