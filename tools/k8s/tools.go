//go:build tools

// Package tools pins the Kubernetes and etcd commands `make e2e` builds
// (hack/cluster) and agnhost, the storage e2e suite's test image; etcd/ is a
// tiny main around etcdmain.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/test/images/agnhost"
)
