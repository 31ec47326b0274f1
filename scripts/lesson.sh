#!/usr/bin/env bash
# The NetworkPolicy lesson replayed on weir's real node, with helm and kubectl on real
# containers: the chart (charts/todos: the lesson's templates, images built here) is
# installed, then the lesson's checks run with `kubectl exec` from the ubuntu-like pods,
# weir explains the denied connection from the live cluster, and weir's reading of the
# live cluster is compared with its reading of the chart's manifests. Prints
# `N passed, M failed`; exit 0 only if all held. Uses the node if it is up (scripts/
# cluster.sh up), else brings one up and takes it down at the end. Needs root.
#   bash scripts/lesson.sh             the lesson
#   bash scripts/lesson.sh --latency   and then: policy change → enforced, as a pod sees it
set -Eeuo pipefail
cd "$(dirname "$0")/.."
release="${WEIR_LESSON_RELEASE:-lesson}"
# shellcheck source=scripts/node-cli.sh
source scripts/node-cli.sh

# The same package set as scripts/node-images.sh: another set unifies features differently
# and rebuilds weir (minutes).
cargo build --release --locked -q -p weir -p todos
own_node=
[ -e /run/netns/weir-node ] || own_node=1
work=$(mktemp -d)
uninstall() { # idempotent: the release and its namespaces gone
  helm uninstall "$release" --wait --timeout 120s >/dev/null 2>&1 || true
  kubectl wait --for=delete "namespace/$prod" "namespace/$pers" --timeout=120s >/dev/null 2>&1 || true
}
finish() {
  uninstall
  rm -rf "$work"
  if [ -n "$own_node" ]; then bash scripts/cluster.sh down; fi
}
trap finish EXIT
if [ -n "$own_node" ]; then bash scripts/cluster.sh up; fi

say "helm install $release charts/todos: namespaces $prod and $pers, the todos API on Redis, two ubuntu pods, three NetworkPolicies"
helm install "$release" charts/todos
# helm --wait would wait for a LoadBalancer address this node has no controller to give.
kubectl -n "$prod" rollout status "deploy/redis-$release" --timeout=180s
kubectl -n "$prod" rollout status "deploy/flask-$release" --timeout=180s  # ready: its /probe reached Redis
kubectl wait --for=condition=Ready -n "$prod" "pod/ubuntu-$release" --timeout=180s >/dev/null
kubectl wait --for=condition=Ready -n "$pers" "pod/ubuntu-$release" --timeout=180s >/dev/null
kubectl get pods -n "$prod" -o wide; kubectl get pods -n "$pers" -o wide
kubectl get networkpolicies -n "$prod"

redis_ping() { # from the ubuntu pod of namespace $1: PING the data tier by its DNS name
  kubectl -n "$1" exec "ubuntu-$release" -- timeout 5 redis-cli -h "redis-$release.$prod" PING 2>&1
}
say "The data tier answers the logic tier: production ubuntu (networking/logic=true) → redis-$release.$prod:6379"
out=$(redis_ping "$prod" || true); echo "  redis-cli PING → $out"
check "production ubuntu → redis PING → PONG" [ "$out" = PONG ]

say "…and nobody else: personal ubuntu → the same Redis"
rc=0; out=$(redis_ping "$pers") || rc=$?; echo "  redis-cli PING → ${out:-no answer} (exit $rc)"
# 143: killed by timeout after 5 s. A DNS or connection-refused failure would be exit 1.
check "personal ubuntu → redis PING times out (dropped, not refused)" [ "$rc" = 143 ]

http() { # http NAMESPACE METHOD PATH [BODY]: status and body from that namespace's ubuntu pod
  local args=(-s -m 5 -w ' %{http_code}' -X "$2")
  [ $# -ge 4 ] && args+=(-H 'Content-Type: application/json' -d "$4")
  kubectl -n "$1" exec "ubuntu-$release" -- curl "${args[@]}" "http://flask-$release.$prod$3" 2>&1 || true
}
say "The logic tier answers everyone on HTTP: GET /todos from both namespaces"
for ns in "$prod" "$pers"; do
  out=$(http "$ns" GET /todos); echo "  $ns: GET /todos → $out"
  check "$ns ubuntu → todos GET /todos → 200" [ "${out##* }" = 200 ]
done

say "A todo through the API, from outside the tier (personal ubuntu): create, list, delete"
out=$(http "$pers" POST /todos '{"Name":"enforced by weir"}'); echo "  POST /todos → $out"
id=$(sed -n 's/.*"Id":"\([0-9a-f-]*\)".*/\1/p' <<< "$out")
check "POST /todos → 200 with an Id" [ "${out##* }${id:+ with an Id}" = "200 with an Id" ]
out=$(http "$pers" GET /todos); echo "  GET /todos → $out"
check "GET /todos lists it" grep -q "\"Id\":\"$id\"" <<< "$out"
out=$(http "$pers" DELETE "/todos/$id"); echo "  DELETE /todos/$id → $out"
check "DELETE /todos/{id} → 200" [ "${out##* }" = 200 ]
out=$(http "$pers" GET /todos); echo "  GET /todos → $out"
check "GET /todos no longer lists it" bash -c '! grep -q "$1" <<< "$2"' _ "$id" "$out"

say "weir explains the denied connection, reading the live cluster"
rc=0; weir explain --kubeconfig "$kc" --from "$pers/ubuntu-$release" --to "$prod/redis-$release" \
  --port TCP/6379 > "$work/explain" || rc=$?
sed 's/^/  /' "$work/explain"
explained() { [ "$rc" = 3 ] && grep -q "DENIED" "$work/explain" && grep -q "isolated by .*any-from-any-none-$release" "$work/explain"; }
check "weir explain (live): DENIED, exit 3, isolated by any-from-any-none-$release" explained

say "weir reads the live cluster as it reads the chart's manifests (helm template)"
helm template "$release" charts/todos > "$work/manifests.yaml"
ports=TCP/80,TCP/6379,UDP/53
weir matrix "$work/manifests.yaml" --ports "$ports" -q > "$work/files.csv"
weir matrix --kubeconfig "$kc" --ports "$ports" -q \
  | awk -F, -v a="$prod/" -v b="$pers/" 'NR == 1 || ((index($1, a) == 1 || index($1, b) == 1) && (index($2, a) == 1 || index($2, b) == 1))' \
  > "$work/live.csv"
echo "  $(($(wc -l < "$work/files.csv") - 1)) verdicts from the manifests, $(($(wc -l < "$work/live.csv") - 1)) from the live cluster (lesson namespaces)"
check "weir matrix: live cluster == helm template" diff -u "$work/files.csv" "$work/live.csv"

say "…and with only the agent's rights (its service account: get/list/watch pods, namespaces, networkpolicies, nodes, the tiers)"
token=$(kubectl -n weir-system create token weir-agent --duration=10m)
server=$(kubectl config view --minify -o jsonpath='{.clusters[0].cluster.server}')
cat > "$work/agent.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters: [{name: node, cluster: {server: "$server", certificate-authority: "$state/pki/ca.crt"}}]
users: [{name: agent, user: {token: "$token"}}]
contexts: [{name: agent, context: {cluster: node, user: agent}}]
current-context: agent
KC
rc=0; weir explain --kubeconfig "$work/agent.kubeconfig" --from "$pers/ubuntu-$release" --to "$prod/ubuntu-$release" \
  --port TCP/80 > "$work/explain-agent" 2> "$work/explain-agent.err" || rc=$?
sed 's/^/  /' "$work/explain-agent.err" "$work/explain-agent"
limited() { [ "$rc" = 0 ] && grep -q "not allowed to list .*Deployment" "$work/explain-agent.err" && grep -q ALLOWED "$work/explain-agent"; }
check "weir explain with the agent's rights: answers (ALLOWED), says what it could not list" limited

say "Every agent enforces the policy objects the API holds: weir revision in each agent's pod (its service account) against that agent's /revision"
behind=0
for pod in $(kubectl -n weir-system get pods -l app=weir-agent -o name); do
  out=$(kubectl -n weir-system exec "$pod" -- /usr/local/bin/weir revision --agent 127.0.0.1:9595 --wait-s 10 2>&1) || behind=1
  sed "s|^|  $pod: |" <<< "$out"
done
check "weir revision in every agent's pod: its node enforces the API's policy objects" [ "$behind" = 0 ]

say "Every agent programs the kernel through libnftables (no process per change); their logs say so"
kubectl -n weir-system logs -l app=weir-agent --prefix --tail=-1 > "$work/agent.log" 2>&1 || true
grep '"via"' "$work/agent.log" | sed 's/^/  /' || true
agents=$(kubectl -n weir-system get pods -l app=weir-agent --no-headers | wc -l)
every_agent() { [ "$agents" -gt 0 ] && [ "$(grep -c '"via":"libnftables"' "$work/agent.log")" = "$agents" ]; }
check "every agent ($agents) programs through libnftables" every_agent

if [ "${1:-}" = --latency ]; then
  say "Policy change → enforced, as a pod sees it (python3 probe inside personal ubuntu's network namespace)"
  python3 tools/node/latency.py --kubectl "$bin/node/kubectl" --kubeconfig "$kc" --release "$release" \
    --flips "${WEIR_LATENCY_FLIPS:-20}" || failed=$((failed + 1))
fi

say "helm uninstall $release"
uninstall
echo
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
