# Sourced by the scripts that drive weir's real node (lesson.sh, rollout.sh): where the node
# keeps its state, kubectl, helm and weir run inside node-0's network namespace, and the
# checks' tally. Set `release` (the Helm release) before sourcing.
state="${WEIR_NODE_STATE:-/var/tmp/weir-node}"
bin="${WEIR_KUBE_DIR:-/var/tmp/weir-kube}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/weir-target}"
prod="production-$release" pers="personal-$release"
kc="$state/etc/kubeconfig"
in_node=(nsenter --net=/run/netns/weir-node)
kubectl() { "${in_node[@]}" "$bin/node/kubectl" --kubeconfig="$kc" "$@"; }
helm() { "${in_node[@]}" env KUBECONFIG="$kc" HELM_CACHE_HOME="$state/helm/cache" \
  HELM_CONFIG_HOME="$state/helm/config" HELM_DATA_HOME="$state/helm/data" "$bin/addons/helm" "$@"; }
weir() { "${in_node[@]}" "$CARGO_TARGET_DIR/release/weir" "$@"; }
t0=$(date +%s%N)
say() { printf '\n[%5.1fs] %s\n' "$(($(date +%s%N) - t0))e-9" "$*"; }
passed=0 failed=0
check() { # check WHAT COMMAND...: one claim
  local what=$1; shift
  if "$@"; then passed=$((passed + 1)); echo "  ok    $what"
  else failed=$((failed + 1)); echo "  FAIL  $what"; fi
}
