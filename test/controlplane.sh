#!/usr/bin/env bash
# Provides kube-apiserver, etcd and kube-controller-manager for envtest,
# and kubelet for the node tests.
#
# Prints the directory that holds them on stdout (use it as
# KUBEBUILDER_ASSETS); progress goes to stderr. When KUBEBUILDER_ASSETS
# already holds all three binaries it is used as is. Otherwise the binaries
# are built from source through the Go module proxy into a cache directory
# outside the repository, keyed by version, so later runs take seconds.
# The first build takes about 7 minutes on 2 cores, kubelet 2 to 7 more.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.0}
ETCD_VERSION=${ETCD_VERSION:-3.6.16}
BINARIES=(kube-apiserver etcd kube-controller-manager kubelet)

say() { printf 'controlplane: %s\n' "$*" >&2; }

has_all() {
  local dir=$1 b
  for b in "${BINARIES[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && has_all "$KUBEBUILDER_ASSETS"; then
  say "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS"
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

cache=${SIDECAR_INJECTOR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sidecar-injector}
dest="$cache/controlplane/k8s-v$K8S_VERSION-etcd-v$ETCD_VERSION"
if has_all "$dest"; then
  say "using cached binaries in $dest"
  echo "$dest"
  exit 0
fi

mkdir -p "$dest"
work=$(mktemp -d "$cache/build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The control plane is built as upstream builds it, whatever the caller set.
unset GOEXPERIMENT
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0

build_kubernetes() {
  local mod="$work/kubernetes" staging m
  mkdir -p "$mod"
  say "fetching k8s.io/kubernetes v$K8S_VERSION"
  (cd "$mod" && go mod init controlplane.local/kubernetes >/dev/null 2>&1)
  local gomod
  gomod=$(cd "$mod" && go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # Each staging module is published as k8s.io/<name> v0.<minor>.<patch>.
  staging=$(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
  {
    echo "module controlplane.local/kubernetes"
    echo "go 1.26"
    echo "require k8s.io/kubernetes v$K8S_VERSION"
    for m in $staging; do echo "replace $m => $m v0.${K8S_VERSION#1.}"; done
  } >"$mod/go.mod"
  for b in kube-apiserver kube-controller-manager kubelet; do
    [ -x "$dest/$b" ] && continue
    say "building $b v$K8S_VERSION (minutes on a cold Go cache)"
    # The version is set as a release build sets it: a node reports it.
    (cd "$mod" && go build -trimpath -ldflags "-X k8s.io/component-base/version.gitVersion=v$K8S_VERSION" -o "$dest/$b" "k8s.io/kubernetes/cmd/$b")
  done
}

build_etcd() {
  local mod="$work/etcd"
  mkdir -p "$mod"
  say "building etcd v$ETCD_VERSION"
  (cd "$mod" && go mod init controlplane.local/etcd >/dev/null 2>&1 &&
    go get "go.etcd.io/etcd/server/v3@v$ETCD_VERSION" >/dev/null 2>&1 &&
    go build -trimpath -o "$dest/etcd" go.etcd.io/etcd/server/v3)
}

has_all "$dest" || {
  [ -x "$dest/etcd" ] || build_etcd
  [ -x "$dest/kube-apiserver" ] && [ -x "$dest/kube-controller-manager" ] && [ -x "$dest/kubelet" ] || build_kubernetes
}
has_all "$dest" || { say "build finished but binaries are missing in $dest"; exit 1; }
say "binaries ready in $dest"
echo "$dest"
