#!/usr/bin/env bash
# The safe rollout on weir's real node, on a running app: the lesson's chart without its
# policies; an audited default-deny observes (the agents' /drops: would-drops); weir synth
# writes least-privilege policies from them alone, audited; weir lint with the agents'
# counters says they are ready; they are enforced; the lesson's claims hold. Meanwhile the
# app's clients run in a loop and every request must succeed. Prints `N passed, M failed`;
# exit 0 only if all held. Uses the nodes if they are up (scripts/cluster.sh up), else
# brings them up and down. Needs root.
#   bash scripts/rollout.sh            WEIR_ROLLOUT_OUT=DIR keeps the flows and policies
set -Eeuo pipefail
cd "$(dirname "$0")/.."
release=rollout
# shellcheck source=scripts/node-cli.sh
source scripts/node-cli.sh
nodes=(weir-node weir-node-1)
step() { # step TEXT: said, and its start time kept, to place a failed request in a step
  say "$*"; echo "$(date +%s) $*" >> "$work/steps.log"
}
metrics() { # metrics NODE-NETNS: the agent's /metrics on that node (loopback there)
  nsenter --net="/run/netns/$1" curl -s -m 5 http://127.0.0.1:9595/metrics
}

cargo build --release --locked -q -p weir -p todos
own_node=
[ -e /run/netns/weir-node ] || own_node=1
work=$(mktemp -d)
pids=()
patched=
finish() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  helm uninstall "$release" --wait --timeout 120s >/dev/null 2>&1 || true
  kubectl wait --for=delete "namespace/$prod" "namespace/$pers" --timeout=120s >/dev/null 2>&1 || true
  if [ -n "$patched" ]; then # the agents as deploy/ has them
    kubectl -n weir-system rollout undo ds/weir-agent >/dev/null 2>&1 || true
    kubectl -n weir-system rollout status ds/weir-agent --timeout=120s >/dev/null 2>&1 || true
  fi
  if [ -n "${WEIR_ROLLOUT_OUT:-}" ]; then mkdir -p "$WEIR_ROLLOUT_OUT" && cp -r "$work"/. "$WEIR_ROLLOUT_OUT"/; fi
  rm -rf "$work"
  if [ -n "$own_node" ]; then bash scripts/cluster.sh down; fi
}
trap finish EXIT
if [ -n "$own_node" ]; then bash scripts/cluster.sh up; fi

step "The agents serve /drops (on the node's loopback) for the observation: --serve-drops added"
kubectl -n weir-system patch ds weir-agent --type=json \
  -p '[{"op":"add","path":"/spec/template/spec/containers/0/args/-","value":"--serve-drops"}]' >/dev/null
patched=1
kubectl -n weir-system rollout status ds/weir-agent --timeout=180s

step "helm install $release charts/todos --set networkPolicies=false: the app, unprotected"
helm install "$release" charts/todos --set networkPolicies=false >/dev/null
kubectl -n "$prod" rollout status "deploy/redis-$release" --timeout=180s
kubectl -n "$prod" rollout status "deploy/flask-$release" --timeout=180s
kubectl wait --for=condition=Ready -n "$prod" "pod/ubuntu-$release" --timeout=180s >/dev/null
kubectl wait --for=condition=Ready -n "$pers" "pod/ubuntu-$release" --timeout=180s >/dev/null
kubectl get pods -n "$prod" -o wide; kubectl get pods -n "$pers" -o wide
check "no NetworkPolicy in the app's namespaces" [ -z "$(kubectl get networkpolicies -n "$prod" -o name; kubectl get networkpolicies -n "$pers" -o name)" ]

step "The app runs: its clients in a loop (GET /todos from both namespaces, PING Redis from the logic tier), every answer logged"
api="http://flask-$release.$prod/todos"
client() { # client NAMESPACE SCRIPT: a loop inside that namespace's ubuntu pod, bounded
  kubectl -n "$1" exec "ubuntu-$release" -- timeout 900 sh -c "$2" > "$work/client-$1.log" 2>&1 &
  pids+=($!)
}
# Each line starts with the pod's clock (the node's: one kernel), to place a failure in a step.
# curl says where a request's time went: name lookup, connect, total (s).
get="curl -s -m 3 -o /dev/null -w '%{http_code} dns=%{time_namelookup} connect=%{time_connect} total=%{time_total}' $api"
client "$pers" "while :; do echo \"\$(date +%s) GET \$($get)\"; sleep 0.2; done"
client "$prod" "while :; do echo \"\$(date +%s) GET \$($get) PING \$(timeout 3 redis-cli -h redis-$release.$prod PING)\"; sleep 0.2; done"
# Every packet the agents drop (or would) over the whole rollout, stamped: an unanswered
# request is shown beside what weir dropped then. Idle-bounded, killed at the end.
for n in "${nodes[@]}"; do
  nsenter --net="/run/netns/$n" "$CARGO_TARGET_DIR/release/weir" drops --agent 127.0.0.1:9595 --timeout-s 900 \
    > >(while IFS= read -r l; do echo "$(date +%s) $l"; done > "$work/all-drops-$n.log") 2>&1 &
  pids+=($!)
done
sleep 3
check "the clients get answers" grep -q "GET 200" "$work/client-$pers.log"

step "Observe: an audited default-deny in both namespaces; every connection into them is a would-drop"
kubectl apply -f - <<YAML
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: observe, namespace: $prod, annotations: {weir.dev/mode: audit}}
spec: {podSelector: {}, policyTypes: [Ingress]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: observe, namespace: $pers, annotations: {weir.dev/mode: audit}}
spec: {podSelector: {}, policyTypes: [Ingress]}
YAML
counted() { # counted NETNS POLICY: that agent counts would-drops for POLICY
  metrics "$1" | grep -q "weir_audit_would_drop_total{policy=\"$2\"}"
}
for n in "${nodes[@]}"; do
  for i in $(seq 100); do counted "$n" "$prod/observe" && break; sleep 0.1; done
done
for n in "${nodes[@]}"; do
  nsenter --net="/run/netns/$n" "$CARGO_TARGET_DIR/release/weir" drops --agent 127.0.0.1:9595 --timeout-s 120 \
    > "$work/drops-$n.txt" 2>&1 &
  pids+=($!)
done
sleep 20
for p in "${pids[@]: -2}"; do kill "$p" 2>/dev/null || true; done
sort "$work"/drops-*.txt | uniq -c | sed 's/^/  /' || true
check "the observation saw the app's would-drops" grep -q "^would drop " "$work"/drops-weir-node*.txt

step "weir synth: policies from the would-drops alone, read against the live cluster, written audited"
rc=0; weir synth --kubeconfig "$kc" -q $(for n in "${nodes[@]}"; do echo --flows "$work/drops-$n.txt"; done) \
  --out "$work/synthesised" --audit > "$work/synth.txt" || rc=$?
sed 's/^/  /' "$work/synth.txt"
check "weir synth: exit 0, every observed connection allowed" [ "$rc" = 0 ]
check "…and nothing else between the pods involved" grep -q "and nothing else between the sides involved" "$work/synth.txt"
for f in "$work"/synthesised/*.yaml; do echo "  --- $(basename "$f")"; sed 's/^/  /' "$f"; done

step "Audit them in place of the observation"
kubectl apply -f "$work/synthesised/"
kubectl delete networkpolicy observe -n "$prod" >/dev/null
kubectl delete networkpolicy observe -n "$pers" >/dev/null
for n in "${nodes[@]}"; do
  for i in $(seq 100); do counted "$n" "$prod/allow-to-redis-$release" && break; sleep 0.1; done
done
sleep 15 # the app runs under them
for n in "${nodes[@]}"; do metrics "$n" > "$work/metrics-$n.txt"; done
grep -h weir_audit_would_drop_total "$work"/metrics-*.txt | grep -v '^#' | sed 's/^/  /'
rc=0; weir lint --kubeconfig "$kc" -q $(for n in "${nodes[@]}"; do echo --would-drops "$work/metrics-$n.txt"; done) \
  > "$work/lint.txt" || rc=$?
grep -E "$release" "$work/lint.txt" | grep -E "I00[34]|W013" | sed 's/^/  /'
ready() { [ "$(grep -c "I004 audit-ready-to-enforce" "$work/lint.txt")" -ge 3 ] && ! grep -q W013 "$work/lint.txt"; }
check "weir lint with the agents' counters: ready to enforce, no would-drop" ready

step "Enforce: weir.dev/mode=enforce on each synthesised policy"
for ns in "$prod" "$pers"; do
  kubectl annotate networkpolicy --all -n "$ns" weir.dev/mode=enforce --overwrite >/dev/null
done
redis_ping() { kubectl -n "$1" exec "ubuntu-$release" -- timeout 5 redis-cli -h "redis-$release.$prod" PING 2>&1; }
enforced=
for i in $(seq 20); do
  rc=0; redis_ping "$pers" >/dev/null || rc=$?
  [ "$rc" = 143 ] && { enforced=1; break; }
done
check "personal ubuntu → redis PING times out (enforced)" [ -n "$enforced" ]
out=$(redis_ping "$prod" || true)
check "production ubuntu → redis PING → PONG" [ "$out" = PONG ]
for ns in "$prod" "$pers"; do
  out=$(kubectl -n "$ns" exec "ubuntu-$release" -- curl -s -m 5 -o /dev/null -w '%{http_code}' "$api" 2>&1 || true)
  check "$ns ubuntu → GET /todos → 200" [ "$out" = 200 ]
done
sleep 5

step "The app's clients over the whole rollout"
for p in "${pids[@]:0:4}"; do kill "$p" 2>/dev/null || true; done
for ns in "$pers" "$prod"; do
  # The last line may have been cut by the kill.
  sed '$d' "$work/client-$ns.log" > "$work/client-$ns.whole"
  total=$(wc -l < "$work/client-$ns.whole")
  good='^[0-9]+ GET 200 dns=[0-9.]+ connect=[0-9.]+ total=[0-9.]+( PING PONG)?$'
  bad=$(grep -cvE "$good" "$work/client-$ns.whole" || true)
  echo "  $ns: $total requests, $bad not answered"
  # Each unanswered one with the step it fell in (its start time is at most 3 s later).
  grep -vE "$good" "$work/client-$ns.whole" | while read -r at rest; do
    in=$(awk -v t="$at" '$1 <= t { s = $0 } END { sub(/^[0-9]+ /, "", s); print s }' "$work/steps.log")
    echo "    $rest at $at, during: $in"
    # What the agents dropped from a second before to the request's timeout after.
    awk -v t="$at" '$1 >= t - 1 && $1 <= t + 4 { print "      " FILENAME ": " $0 }' "$work"/all-drops-*.log
  done || true
  check "$ns: every request of the app answered ($total)" [ "$bad" = 0 -a "$total" -gt 100 ]
done

step "helm uninstall $release; the agents as deploy/ has them"
echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
