#!/usr/bin/env bash
# Images for weir's node, built here from local binaries and Debian packages (no registry):
#   bash scripts/node-images.sh build           build the image archives (cached per machine)
#   bash scripts/node-images.sh import SOCKET   import them into the containerd at SOCKET
# pause (a static C program), busybox (busybox-static) and agnhost (built with the node
# binaries) under the names the pinned e2e suite asks for. Packed with umoci + skopeo into
# docker archives that carry their names.
set -euo pipefail
cd "$(dirname "$0")/.."
state="${WEIR_NODE_STATE:-/var/tmp/weir-node}"
bin="${WEIR_KUBE_DIR:-/var/tmp/weir-kube}"
out="$state/images"

# image NAME:TAG ARCHIVE ENTRYPOINT FILE[=DEST]... — a one-layer image of these files.
image() {
  local ref=$1 archive=$2 entry=$3; shift 3
  local w; w=$(mktemp -d "$out/work.XXXX")
  umoci init --layout "$w/oci"
  umoci new --image "$w/oci:img"
  umoci unpack --rootless --image "$w/oci:img" "$w/b" >/dev/null 2>&1 || umoci unpack --image "$w/oci:img" "$w/b" >/dev/null
  local f src dst
  for f in "$@"; do
    src=${f%%=*}; dst=${f#*=}; [ "$dst" = "$f" ] && dst=/$(basename "$src")
    mkdir -p "$w/b/rootfs$(dirname "$dst")"
    cp -a "$src" "$w/b/rootfs$dst"
  done
  if [ -x "$w/b/rootfs/bin/busybox" ]; then
    for a in $("$w/b/rootfs/bin/busybox" --list); do
      [ -e "$w/b/rootfs/bin/$a" ] || ln -s busybox "$w/b/rootfs/bin/$a"
    done
  fi
  mkdir -p "$w/b/rootfs/tmp" "$w/b/rootfs/etc"
  touch "$w/b/rootfs/etc/hosts" "$w/b/rootfs/etc/resolv.conf"
  umoci repack --image "$w/oci:img" "$w/b"
  umoci config --image "$w/oci:img" --config.env PATH=/bin:/usr/bin:/sbin:/usr/sbin \
    --config.entrypoint "$entry"
  rm -f "$archive"
  skopeo copy -q "oci:$w/oci:img" "docker-archive:$archive:$ref"
  rm -rf "$w"
}

build() {
  mkdir -p "$out"
  local stamp="$out/stamp"
  local want; want=$(cat "$bin/node/build.key" tools/node/pause.c scripts/node-images.sh | sha256sum | cut -d' ' -f1)
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  gcc -static -O2 -o "$out/pause" tools/node/pause.c
  image registry.k8s.io/pause:3.10.2 "$out/pause.tar" /pause "$out/pause=/pause"
  image registry.k8s.io/e2e-test-images/busybox:1.37.0-2 "$out/busybox.tar" /bin/sh /bin/busybox=/bin/busybox
  image registry.k8s.io/e2e-test-images/agnhost:2.66.1 "$out/agnhost.tar" /agnhost \
    "$bin/node/agnhost=/agnhost" /bin/busybox=/bin/busybox
  echo "$want" > "$stamp"
}

import() {
  local sock=$1
  build
  for t in pause busybox agnhost; do
    ctr -a "$sock" -n k8s.io images import "$out/$t.tar" >/dev/null
  done
  # containerd's configured sandbox image, as the same pause.
  ctr -a "$sock" -n k8s.io images tag --force registry.k8s.io/pause:3.10.2 registry.k8s.io/pause:3.10 >/dev/null
}

case "${1:-}" in
  build) build ;;
  import) import "${2:?socket}" ;;
  *) echo "usage: node-images.sh build | import SOCKET" >&2; exit 2 ;;
esac
