#!/usr/bin/env bash
# Images for weir's real node, built here from local binaries and Debian packages (no
# registry):
#   bash scripts/node-images.sh build           build the image archives (cached per input)
#   bash scripts/node-images.sh import SOCKET   import them into the containerd at SOCKET
#
# - the e2e suite's: pause (a static C program), busybox (busybox-static) and agnhost
#   (built with the node binaries), under the names the pinned suite asks for;
# - the network-policy-api conformance suites': agnhost:2.45, that agnhost behind an SCTP
#   front (tools/node/agnhost-sctp) with busybox as its shell;
# - weir:0.1.0, the name deploy/weir-agent.yaml uses: the weir binary with nft and
#   conntrack from Debian (nftables, conntrack packages) and their shared libraries;
# - the lesson's: weir.dev/todos (the todos crate), weir.dev/redis (Debian's
#   redis-server), weir.dev/client (redis-cli and curl from Debian, busybox for a shell);
# - weir.dev/coredns (scripts/kube-addons.sh): the node's cluster DNS.
# Each is one layer, packed with umoci + skopeo into a docker archive that carries its
# name; an archive is rebuilt only when a file that goes into it changed.
set -euo pipefail
cd "$(dirname "$0")/.."
state="${WEIR_NODE_STATE:-/var/tmp/weir-node}"
bin="${WEIR_KUBE_DIR:-/var/tmp/weir-kube}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
out="$state/images"

# The files an item brings: FILE[=DEST] is the file; lib:FILE is FILE at its own path and
# every shared library it loads (ldd), the dynamic loader included, each at the path the
# loader asks for; libs:FILE only those libraries.
files_of() {
  local f=$1
  case "$f" in
    lib:*|libs:*)
      if [ "${f%%:*}" = lib ]; then
        f=${f#lib:}
        echo "$f=$f"
      else
        f=${f#libs:}
      fi
      ldd "$f" | awk '/=> \//{print $3"="$3} /^\t\/.*ld-linux/{print $1"="$1}' ;;
    *=*) echo "$f" ;;
    *) echo "$f=/$(basename "$f")" ;;
  esac
}

# image NAME:TAG ARCHIVE "ENTRYPOINT ARG..." ITEM... — a one-layer image of these items.
image() {
  local ref=$1 archive=$2 entry=$3; shift 3
  local list; list=$(for f in "$@"; do files_of "$f"; done | sort -u)
  local key; key=$( { echo "$ref $entry"; sha256sum "$0"; while IFS== read -r src _; do sha256sum "$src"; done <<< "$list"; } | sha256sum | cut -d' ' -f1)
  [ -f "$archive" ] && [ "$(cat "$archive.key" 2>/dev/null)" = "$key" ] && return 0
  local w; w=$(mktemp -d "$out/work.XXXX")
  umoci init --layout "$w/oci"
  umoci new --image "$w/oci:img"
  umoci unpack --rootless --image "$w/oci:img" "$w/b" >/dev/null 2>&1 || umoci unpack --image "$w/oci:img" "$w/b" >/dev/null
  local r="$w/b/rootfs" src dst
  while IFS== read -r src dst; do
    mkdir -p "$r$(dirname "$dst")"
    cp -L -p "$src" "$r$dst"  # the file, not a link into the host's layout
  done <<< "$list"
  if [ -x "$r/bin/busybox" ]; then
    for a in $("$r/bin/busybox" --list); do
      [ -e "$r/bin/$a" ] || ln -s busybox "$r/bin/$a"
    done
  fi
  mkdir -p "$r/tmp" "$r/etc"
  chmod 1777 "$r/tmp"
  touch "$r/etc/hosts" "$r/etc/resolv.conf"
  echo "root:x:0:0:root:/root:/bin/sh" > "$r/etc/passwd"
  echo "root:x:0:" > "$r/etc/group"
  echo "hosts: files dns" > "$r/etc/nsswitch.conf"
  umoci repack --image "$w/oci:img" "$w/b"
  local args=() e
  for e in $entry; do args+=(--config.entrypoint "$e"); done
  umoci config --image "$w/oci:img" --config.env PATH=/bin:/usr/bin:/sbin:/usr/sbin:/usr/local/bin "${args[@]}"
  rm -f "$archive"
  skopeo copy -q "oci:$w/oci:img" "docker-archive:$archive:$ref"
  echo "$key" > "$archive.key"
  rm -rf "$w"
}

build() {
  mkdir -p "$out"
  cargo build --release --locked -q -p weir -p todos
  # Without debug info: the image carries what runs.
  strip -o "$out/weir" "$CARGO_TARGET_DIR/release/weir"
  strip -o "$out/todos" "$CARGO_TARGET_DIR/release/todos"
  [ -x "$out/pause" ] && cmp -s tools/node/pause.c "$out/pause.c" || {
    gcc -static -O2 -o "$out/pause" tools/node/pause.c && cp tools/node/pause.c "$out/pause.c"; }
  image registry.k8s.io/pause:3.10.2 "$out/pause.tar" /pause "$out/pause=/pause"
  image registry.k8s.io/e2e-test-images/busybox:1.37.0-2 "$out/busybox.tar" /bin/sh /bin/busybox=/bin/busybox
  image registry.k8s.io/e2e-test-images/agnhost:2.66.1 "$out/agnhost.tar" /agnhost \
    "$bin/node/agnhost=/agnhost" /bin/busybox=/bin/busybox
  # The network-policy-api conformance pods' agnhost: upstream's, behind a front that
  # speaks SCTP over raw sockets (tools/node/agnhost-sctp: this kernel has no SCTP), with
  # busybox and a /bin/bash that is busybox sh (the pods run `/bin/bash -c CMD`).
  (cd tools/node/agnhost-sctp && go vet ./... && go test -count=1 ./... >/dev/null \
    && CGO_ENABLED=0 go build -trimpath -o "$out/agnhost-sctp" .)
  image registry.k8s.io/e2e-test-images/agnhost:2.45 "$out/agnhost-2.45.tar" "/agnhost pause" \
    "$out/agnhost-sctp=/agnhost" "$bin/node/agnhost=/agnhost-upstream" /bin/busybox=/bin/busybox \
    tools/node/bash=/bin/bash
  image weir:0.1.0 "$out/weir.tar" /usr/local/bin/weir \
    "libs:$out/weir" "$out/weir=/usr/local/bin/weir" lib:/usr/sbin/nft lib:/usr/sbin/conntrack
  image weir.dev/todos:0.1.0 "$out/todos.tar" /usr/local/bin/todos \
    "libs:$out/todos" "$out/todos=/usr/local/bin/todos"
  image weir.dev/redis:7.0.15 "$out/redis.tar" "/usr/bin/redis-server --protected-mode no --appendonly no" \
    lib:/usr/bin/redis-server
  image weir.dev/client:1 "$out/client.tar" /bin/sh \
    lib:/usr/bin/redis-cli lib:/usr/bin/curl /bin/busybox=/bin/busybox
  image weir.dev/coredns:1.15.0 "$out/coredns.tar" /coredns "$bin/addons/coredns=/coredns"
}

import() {
  local sock=$1
  build
  for t in pause busybox agnhost agnhost-2.45 weir todos redis client coredns; do
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
