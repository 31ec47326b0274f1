#!/usr/bin/env bash
# Regenerates the report screenshots in docs/ with headless Chromium (scripts/setup.sh
# installs it):
#   docs/report.png      examples/todos examples/ingress: the seed, its ways in
#   docs/report-60.png   a generated cluster of 60 workloads in 6 namespaces (weir bench
#                        generate, seed 1): the heatmap, and the graph drawn one arrow per
#                        pair of namespaces
#   bash scripts/screenshots.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
cargo build -q -p weir --all-features
weir="$CARGO_TARGET_DIR/debug/weir"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
shot() { # HTML PNG WIDTH HEIGHT
  timeout 120 chromium --headless --no-sandbox --disable-gpu --user-data-dir="$tmp/profile" \
    --hide-scrollbars --window-size="$3,$4" --screenshot="$2" "file://$1" 2>/dev/null
}
"$weir" report examples/todos examples/ingress -q --out "$tmp/todos.html"
shot "$tmp/todos.html" docs/report.png 1200 1700
"$weir" bench generate --pods 300 --replicas 5 --namespaces 6 --policies 40 --seed 1 > "$tmp/generated-60-workloads.json"
(cd "$tmp" && "$weir" report generated-60-workloads.json -q --out d60.html)
shot "$tmp/d60.html" docs/report-60.png 1900 2700
ls -l docs/report.png docs/report-60.png
