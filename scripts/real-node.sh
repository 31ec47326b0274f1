#!/usr/bin/env bash
# weir on a real Kubernetes cluster of two nodes, end to end (the last stage of
# scripts/test.sh): build what is missing (cached per machine), bring the nodes up with
# weir deployed from deploy/, run the upstream Netpol e2e suite and the network-policy-api
# conformance suites, replay the lesson with helm and kubectl and measure policy change →
# enforced, roll policies out on a running app (observe, synthesise, audit, enforce), take
# the nodes down, and check that nothing is left: no network namespaces, mounts, cgroups or
# processes of the nodes, sysctls as they were.
# Prints one line per stage and `N passed, M failed` over the stages. Needs root.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
state="${WEIR_NODE_STATE:-/var/tmp/weir-node}"
run="${WEIR_NODE_RUN:-/run/weir-node}"
t0=$(date +%s)
stage() { printf '\n==> [%4ds] %s\n' "$(($(date +%s) - t0))" "$*"; }
passed=0 failed=0 results=()
record() { # record NAME STATUS
  if [ "$2" = 0 ]; then passed=$((passed + 1)); results+=("ok    $1"); else failed=$((failed + 1)); results+=("FAIL  $1"); fi
}
[ -e /run/netns/weir-node ] && { echo "real-node.sh: a node is up; take it down first (scripts/cluster.sh down)" >&2; exit 1; }

stage "build (cached per machine: node binaries, add-ons, e2e and conformance binaries, weir release, images)"
bash scripts/cluster.sh install
bash scripts/netpol-e2e.sh --build
sysctls=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)
before=$(for s in "${sysctls[@]}"; do echo "$s=$(sysctl -n "$s")"; done)
netns_before=$(ip netns list 2>/dev/null | awk '{print $1}' | sort)

stage "two nodes up, weir from deploy/"
pids=$(mktemp -d)
trap 'cp "$run"/*.pid "$pids"/ 2>/dev/null || true; bash scripts/cluster.sh down' EXIT
s=0; bash scripts/cluster.sh up || s=$?
record "two nodes up with weir's DaemonSet ready on each" "$s"
if [ "$s" = 0 ]; then
  stage "upstream [sig-network] Netpol e2e suite"
  s=0; bash scripts/netpol-e2e.sh || s=$?
  record "upstream Netpol e2e suite (non-SCTP specs)" "$s"
  stage "the lesson, with helm and kubectl"
  s=0; bash scripts/lesson.sh --latency || s=$?
  record "the lesson" "$s"
  stage "the safe rollout on a running app: observe, synthesise, audit, enforce"
  s=0; bash scripts/rollout.sh || s=$?
  record "the rollout (no request of the app refused)" "$s"
  stage "network-policy-api conformance suites (v1beta1 ClusterNetworkPolicy, v1alpha1 ANP/BANP)"
  s=0; bash scripts/netpol-api.sh || s=$?
  record "network-policy-api conformance suites" "$s"
  echo "weir agent over the run: $(bash scripts/cluster.sh agent-usage)"
fi

stage "nodes down; is anything left?"
cp "$run"/*.pid "$pids"/ 2>/dev/null || true
trap - EXIT
bash scripts/cluster.sh down
left=()
for f in "$pids"/*.pid; do
  [ -f "$f" ] || continue
  kill -0 "$(cat "$f")" 2>/dev/null && left+=("process $(basename "$f" .pid) ($(cat "$f"))")
done
rm -rf "$pids"
[ "$(ip netns list 2>/dev/null | awk '{print $1}' | sort)" = "$netns_before" ] || left+=("network namespaces")
grep -qE " ($state|$run)" /proc/mounts && left+=("mounts")
compgen -G "/sys/fs/cgroup/*/weir-node*" >/dev/null && left+=("cgroups")
after=$(for s in "${sysctls[@]}"; do echo "$s=$(sysctl -n "$s")"; done)
[ "$before" = "$after" ] || left+=("sysctls: $(echo $after)")
[ -e /var/lib/weir ] && left+=("/var/lib/weir")
[ -n "$(find /var/log/containers -maxdepth 1 -type l -lname "$state/*" 2>/dev/null)" ] && left+=("/var/log/containers links")
if [ ${#left[@]} = 0 ]; then record "nothing left behind" 0; else echo "left behind: ${left[*]}"; record "nothing left behind" 1; fi

echo
printf '%s\n' "${results[@]}"
echo "real node: $passed passed, $failed failed ($(($(date +%s) - t0)) s)"
[ "$failed" = 0 ]
