#!/usr/bin/env bash
# One cached Go build of test infrastructure from a pinned Go module:
#   go-build.sh WHAT MODULE_DIR OUT_DIR LDFLAGS PACKAGE...
# builds the packages' binaries into OUT_DIR (static, -trimpath); a PACKAGE written
# `test:NAME` is the module's own test binary (`go test -c`), OUT_DIR/NAME. Nothing is
# built when OUT_DIR already holds them from the same module: go.mod, go.sum, the module's
# own .go files and the flags (a key over all of them, so an edited runner is rebuilt, not
# only a new dependency). Replaced whole, so an interrupted build never leaves a half-new
# directory. Everything comes from the Go module proxy.
set -euo pipefail
command -v go >/dev/null || { echo "go-build.sh: go is required (the machine image has it)" >&2; exit 1; }
what=$1 mod=$2 out=$3 ldflags=$4; shift 4
key=$( { echo "$ldflags $*"; cd "$mod" && find . -name '*.go' -o -name go.mod -o -name go.sum | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -d' ' -f1)
fresh=true
for p in "$@"; do [ -x "$out/$(basename "${p#test:}")" ] || fresh=false; done
if $fresh && [ "$(cat "$out/build.key" 2>/dev/null)" = "$key" ]; then
  exit 0
fi
echo "building $what (once per machine)" >&2
tmp="$out.tmp"
rm -rf "$tmp" && mkdir -p "$tmp"
# A long build is not a hang: a line a minute until it is done.
(m=0; while sleep 60; do m=$((m + 1)); echo "  … still building $what: $m min" >&2; done) &
beat=$!
trap 'kill "$beat" 2>/dev/null || true' EXIT
pkgs=() tests=()
for p in "$@"; do case $p in test:*) tests+=("${p#test:}") ;; *) pkgs+=("$p") ;; esac; done
export CGO_ENABLED=0 GOFLAGS=-mod=mod
[ ${#pkgs[@]} = 0 ] || (cd "$mod" && go build -trimpath -ldflags "$ldflags" -o "$tmp/" "${pkgs[@]}")
for t in ${tests[@]+"${tests[@]}"}; do
  (cd "$mod" && go test -c -trimpath -ldflags "$ldflags" -o "$tmp/$t" .)
done
echo "$key" > "$tmp/build.key"
rm -rf "$out" && mv "$tmp" "$out"
