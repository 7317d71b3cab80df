#!/usr/bin/env bash
# Builds the Kubernetes test binaries (kube-apiserver, kubectl, etcd, helm) from
# the Go module proxy, once per version, into ~/.cache/accessbot/testenv/<key>/.
# Prints the directory holding the binaries on its last line.
#
# KUBEBUILDER_ASSETS (the envtest convention) pointing at kube-apiserver and
# etcd short-circuits the Kubernetes build; kubectl and helm are still built
# unless present there too.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S_VERSION=$(awk '$1=="k8s.io/kubernetes"{print $2}' "$here/go.mod")
HELM_VERSION=v3.22.0
minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
# Module builds carry no git metadata: stamp the release the way the Kubernetes
# build does, so kubectl, the apiserver and helm's kubeVersion checks see v1.X.Y
# rather than v0.0.0-master.
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  stamp+=" -X $pkg.gitTreeState=clean"
done
key=$( (cat "$here/go.mod" "$here/go.sum" "$here"/cmd/*/*.go; echo "$HELM_VERSION $stamp") |
  sha256sum | cut -c1-10)
cache=${ACCESSBOT_CACHE:-$HOME/.cache/accessbot}/testenv/${K8S_VERSION}-${key}
if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  # Links to someone else's binaries must not land in the cache of our own build.
  cache=$cache-assets-$(echo "$KUBEBUILDER_ASSETS" | sha256sum | cut -c1-8)
fi
mkdir -p "$cache"

log() { echo "testenv: $*" >&2; }

need_build=()
for bin in kube-apiserver kubectl etcd; do
  if [[ -n "${KUBEBUILDER_ASSETS:-}" && -x "$KUBEBUILDER_ASSETS/$bin" ]]; then
    ln -sf "$KUBEBUILDER_ASSETS/$bin" "$cache/$bin"
  elif [[ ! -x "$cache/$bin" ]]; then
    need_build+=("$bin")
  fi
done

if ! command -v go >/dev/null 2>&1 && { ((${#need_build[@]})) || [[ ! -x "$cache/helm" ]]; }; then
  log "Go is not installed and binaries are missing: install Go >= 1.26 (https://go.dev/dl) or set KUBEBUILDER_ASSETS"
  exit 3
fi

export GOFLAGS="${GOFLAGS:--buildvcs=false}" CGO_ENABLED=0
if ((${#need_build[@]})); then
  log "building ${need_build[*]} for Kubernetes $K8S_VERSION (cold: about 5-9 min on 2 cores, measured)"
  start=$SECONDS
  tmp=$(mktemp -d "$cache/.build.XXXX")
  pkgs=()
  for bin in "${need_build[@]}"; do
    case $bin in
      etcd) pkgs+=(./cmd/etcd) ;;
      *) pkgs+=("k8s.io/kubernetes/cmd/$bin") ;;
    esac
  done
  (cd "$here" && go build -trimpath -ldflags="-s -w$stamp" -o "$tmp/" "${pkgs[@]}")
  # Rename into place only after a complete build so an interrupted run never
  # leaves a half-written binary that a later run would trust.
  for bin in "${need_build[@]}"; do mv "$tmp/$bin" "$cache/$bin"; done
  rmdir "$tmp"
  log "built in $((SECONDS - start)) s"
fi

if [[ ! -x "$cache/helm" ]]; then
  log "building helm $HELM_VERSION"
  start=$SECONDS
  tmp=$(mktemp -d "$cache/.helm.XXXX")
  GOBIN="$tmp" go install -trimpath -ldflags="-s -w" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  mv "$tmp/helm" "$cache/helm"
  rmdir "$tmp"
  log "built helm in $((SECONDS - start)) s"
fi

echo "$cache"
