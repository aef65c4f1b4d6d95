// Package e2e holds the scenarios `make e2e` runs on a real cluster with
// client-go and an independent S3 client. They are built only with the e2e
// build tag (go test -tags e2e), so `go test ./...` never tries to reach a
// cluster. They need KUBECONFIG, bucket-csi installed with its chart, and
// an S3 server the pods reach: E2E_S3_ENDPOINT, E2E_S3_ACCESS_KEY,
// E2E_S3_SECRET_KEY, and E2E_INLINE_PER_NAMESPACE, the chart's
// inline.perNamespace (hack/cluster exec sets all of them).
package e2e
