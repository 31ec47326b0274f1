#!/usr/bin/env bash
# The network-policy-api conformance suites against weir on the real node
# (scripts/cluster.sh, two nodes, weir deployed from deploy/):
#   v1beta1   ClusterNetworkPolicy, sigs.k8s.io/network-policy-api v0.3.0 (its v1beta1 is
#             v1alpha2's schema under a new version; the suite writes v1beta1)
#   v1alpha1  AdminNetworkPolicy + BaselineAdminNetworkPolicy, v0.1.7 (v0.1.8, which the
#             issue names, is not served by the Go module proxy here; v0.1.7 is the newest
#             v0.1 that is)
# Each suite is the module's own tests, built with `go test -c` from tools/kube/netpol-api/
# (scripts/go-build.sh: cached per machine by the module's files) and run with every feature on, experimental ones
# included. Prints per suite `standard: N passed, M failed; experimental: …`. Exit 0 only
# when every standard test of both suites passed; experimental tests (named ports, node
# peers) are run and reported. v0.1.7 probes exactly once, right after each policy write,
# so a probe could beat the agents to it: before each of its probes the wrapper waits until
# every node's agent enforces the policy objects the API holds (converge.go.in, the agent's
# /revision), reports how long those waits took, and fails the stage if one ended without
# agreement. Uses the nodes if up, else brings them up and down.
#   bash scripts/netpol-api.sh [SUITE...]   run (default: both)
#   bash scripts/netpol-api.sh --build      build the binaries, copy the pinned CRDs, stop
#   bash scripts/netpol-api.sh --record [SUITE...]
#                                           run, and write every probe (what the suite
#                                           expects, the cluster's objects then) to
#                                           tests/netpol-api/SUITE/, which
#                                           crates/weir/tests/netpol_api_cases.rs replays
#                                           against the engine on every test run
#
# SCTP: this kernel has no SCTP sockets. Nothing is skipped for it: the suites' pods use
# agnhost behind tools/node/agnhost-sctp, which serves and probes SCTP with raw INIT /
# INIT-ACK packets (scripts/node-images.sh), so SCTP probes cross the dataplane as SCTP.
set -euo pipefail
cd "$(dirname "$0")/.."
state="${WEIR_NODE_STATE:-/var/tmp/weir-node}"
bin="${WEIR_KUBE_DIR:-/var/tmp/weir-kube}"
out="$bin/netpol-api"
suites=(v1beta1 v1alpha1)

build() {
  mkdir -p "$out/crds"
  local v
  for v in "${suites[@]}"; do
    # `go list -m` names the module's directory only once it is in the module cache,
    # which on a fresh machine it is not: download it first.
    local dir; dir=$(cd "tools/kube/netpol-api/$v" && GOFLAGS=-mod=mod go mod download sigs.k8s.io/network-policy-api \
      && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' sigs.k8s.io/network-policy-api)
    [ -d "$dir" ] || { echo "netpol-api.sh: sigs.k8s.io/network-policy-api ($v) is not in the module cache" >&2; exit 1; }
    source_tree "$v" "$dir"
    bash scripts/go-build.sh "the $v conformance suite (~1-3 min)" "$out/src-$v" "$out/$v" "" test:conformance.test
    # The CRDs of the pinned module (experimental channel: named ports and node peers).
    cp "$dir"/config/crd/experimental/policy.networking.k8s.io_*.yaml "$out/crds/"
  done
  chmod -R u+w "$out/crds"
}

# What is built: the runner module of tools/kube/netpol-api/$v, with the pinned suite
# replaced by a copy into which the probe recorder goes (record.go.in, WEIR_NETPOL_RECORD):
# the suite's helper.go with its PokeServer renamed upstreamPokeServer, and ours (the
# suite's signature, poke.go.in) that records, then calls it. (`go -overlay` cannot do
# this: Go refuses to overlay files of the module cache.) Relative paths only, so the
# build key (scripts/go-build.sh) does not depend on where the checkout is.
source_tree() {
  local v=$1 dir=$2 src="$out/src-$1"
  rm -rf "$src.new" && mkdir -p "$src.new"
  cp -r "$dir" "$src.new/upstream" && chmod -R u+w "$src.new/upstream"
  local pkg="$src.new/upstream/conformance/utils/kubernetes"
  sed -i 's/^func PokeServer(/func upstreamPokeServer(/' "$pkg/helper.go"
  grep -q '^func upstreamPokeServer(' "$pkg/helper.go" || {
    echo "netpol-api.sh: no PokeServer in $dir's helper.go: the recorder does not fit this suite version" >&2
    exit 1
  }
  cp tools/kube/netpol-api/record.go.in "$pkg/weir_record.go"
  cp tools/kube/netpol-api/converge.go.in "$pkg/weir_converge.go"
  cp "tools/kube/netpol-api/$v/poke.go.in" "$pkg/weir_poke.go"
  cp "tools/kube/netpol-api/$v"/{runner_test.go,go.mod,go.sum} "$src.new/"
  printf '\nreplace sigs.k8s.io/network-policy-api => ./upstream\n' >> "$src.new/go.mod"
  rm -rf "$src" && mv "$src.new" "$src"
}

build
[ "${1:-}" = --build ] && exit 0
record=false
[ "${1:-}" = --record ] && { record=true; shift; }
[ $# -gt 0 ] && suites=("$@")
if [ ! -e /run/netns/weir-node ]; then
  trap 'bash scripts/cluster.sh down' EXIT
  bash scripts/cluster.sh up
fi
mkdir -p "$state/netpol-api"

# The suites share their namespaces: the last run's must be gone (its pods take their grace
# period to stop). (The listing first: `kubectl … | grep -q` under pipefail fails as soon as
# grep has seen a match and kubectl gets SIGPIPE, which ended this wait at once.)
namespaces_gone() {
  for _ in $(seq 1 180); do
    left=$(bash scripts/cluster.sh kubectl get ns --no-headers -o custom-columns=N:.metadata.name 2>/dev/null || echo '?')
    grep -q '^network-policy-conformance-\|^?$' <<< "$left" || return 0
    sleep 1
  done
}

# run SUITE LOG RECORD_DIR [go test args…]
run() {
  local v=$1 log=$2 rec=$3; shift 3
  namespaces_gone
  local s=0 agents
  # Every node's network namespace: its agent listens on 127.0.0.1:9595.
  agents=$(find /run/netns -maxdepth 1 -regex '/run/netns/weir-node\(-[0-9]+\)?' | sort | paste -sd' ')
  (cd "$state/netpol-api" && nsenter --net=/run/netns/weir-node env KUBECONFIG="$state/etc/kubeconfig" \
    WEIR_NETPOL_RECORD="$rec" WEIR_AGENT_NETNS="$agents" \
    "$out/$v/conformance.test" -test.v -test.timeout=45m -all-features "$@" > "$log" 2>&1) || s=$?
  echo "$v: suite exit $s, log $log"
}

# Prints the counts of a log, the failed tests, and the waits for the agents
# (converge.go.in). Exit 1 when a standard test failed, none ran, or a wait ended without
# agreement.
summary() { # LOG
  python3 - "$1" <<'PY'
import re, sys
log = sys.argv[1]
# go test -v: `--- PASS: TestConformance/<Test>/<subtest> (1.2s)` at any indentation.
result = re.compile(r"^\s*--- (PASS|FAIL|SKIP): TestConformance/([^/\s]+)(?:/(\S+))? ")
tests, subs = {}, {}
for line in open(log, errors="replace"):
    m = result.match(line)
    if not m:
        continue
    verdict, test, sub = m.groups()
    (subs.setdefault(test, {}) if sub else tests)[sub or test] = verdict
experimental = lambda t: "NamedPort" in t or "NodePeers" in t
failed = []
for kind in ("standard", "experimental"):
    names = [t for t in tests if experimental(t) == (kind == "experimental")]
    count = {v: sum(tests[t] == v for t in names) for v in ("PASS", "FAIL", "SKIP")}
    nsub = sum(len(subs.get(t, {})) for t in names)
    fsub = sum(v == "FAIL" for t in names for v in subs.get(t, {}).values())
    print(f"  {kind}: {count['PASS']} passed, {count['FAIL']} failed, {count['SKIP']} skipped"
          f" ({nsub} subtests, {fsub} failed)")
    for t in names:
        if tests[t] == "FAIL":
            if kind == "standard":
                failed.append(t)
            print(f"  FAILED ({kind}): {t}: " + ", ".join(s for s, v in subs.get(t, {}).items() if v == "FAIL"))
# `weir converged in 1.234s after N looks` (Go durations: 0s, 850ms, 1.2s).
def seconds(d):
    m = re.fullmatch(r"([\d.]+)(ms|s)", d)
    return float(m.group(1)) / (1000 if m.group(2) == "ms" else 1) if m else float("nan")
waits, behind, not_converged = 0, [], 0
for line in open(log, errors="replace"):
    m = re.search(r"weir converged in (\S+) after (\d+) looks", line)
    if m:
        waits += 1
        if int(m.group(2)) > 1:
            behind.append(seconds(m.group(1)))
    elif "weir did not converge" in line:
        not_converged += 1
        print("  " + line.strip())
if waits or not_converged:
    behind.sort()
    pct = lambda q: behind[round(q * (len(behind) - 1))] * 1000
    lag = f"; p50 {pct(0.5):.0f} ms, p90 {pct(0.9):.0f} ms, max {behind[-1] * 1000:.0f} ms" if behind else ""
    print(f"  agents before each probe: {waits} in agreement with the API, {len(behind)} of them"
          f" only after waiting{lag}; {not_converged} never")
if not tests:
    print("  no test ran (see the log)")
    sys.exit(1)
sys.exit(1 if failed or not_converged else 0)
PY
}

# For each probe of LOG that did not give what the suite expected (the "weir probe" lines
# of poke.go.in), the agents' log lines from 3 s before it to 1 s after: whether the new
# policy was synced before the probe, and what the agents dropped meanwhile.
diagnose() { # LOG
  local agents="$1.agents"
  bash scripts/cluster.sh kubectl -n weir-system logs -l app=weir-agent --prefix --timestamps --tail=-1 \
    > "$agents" 2>&1 || true
  python3 - "$1" "$agents" <<'PY'
import re, sys
from datetime import datetime, timedelta
log, agents = sys.argv[1], sys.argv[2]
def when(text):
    m = re.search(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?Z", text)
    if not m:
        return None
    frac = (m.group(2) or ".0")[1:7].ljust(6, "0")
    return datetime.fromisoformat(f"{m.group(1)}.{frac}")
probe = re.compile(r"weir probe (\S+) (\S+) (.*) ok=false")
lines = [(when(l), l.rstrip()) for l in open(agents, errors="replace")]
shown = 0
for line in open(log, errors="replace"):
    m = probe.search(line)
    if not m or shown >= 6:
        continue
    shown += 1
    start, end = when(m.group(1)), when(m.group(2))
    print(f"  failed probe {m.group(1)}..{m.group(2)[11:]}: {m.group(3)}")
    near = [l for t, l in lines if t and start - timedelta(seconds=3) <= t <= end + timedelta(seconds=1)]
    for l in near[:25]:
        print(f"    {l}")
    if len(near) > 25:
        print(f"    … {len(near) - 25} more in {agents}")
    if not near:
        print("    (no agent log line in that window)")
PY
}

status=0
for v in "${suites[@]}"; do
  log="$state/netpol-api/$v.log"
  rec=""
  if $record; then
    rec="$state/netpol-api/record-$v"
    rm -rf "$rec" && mkdir -p "$rec"
  fi
  run "$v" "$log" "$rec"
  if $record; then
    if [ -s "$rec/probes.jsonl" ]; then
      mkdir -p "tests/netpol-api/$v"
      cp "$rec/objects.jsonl" "$rec/probes.jsonl" "tests/netpol-api/$v/"
      echo "  recorded $(wc -l < "$rec/probes.jsonl") probes, $(wc -l < "$rec/objects.jsonl") objects: tests/netpol-api/$v/"
    else
      echo "  nothing recorded (see the log)"; status=1
    fi
  fi
  summary "$log" && continue
  status=1
  diagnose "$log" || true
done
echo "weir agents after the suites: $(bash scripts/cluster.sh agent-usage)"
exit "$status"
