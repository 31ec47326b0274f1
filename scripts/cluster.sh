#!/usr/bin/env bash
# A real two-node Kubernetes (v1.37.2, built from pinned Go modules by
# scripts/kube-node.sh; containerd, runc and CNI ptp/host-local from Debian), each node in a
# network namespace of its own: `weir-node` (node-0: the control plane too) and
# `weir-node-1` (node-1), joined by a veth pair. Two nodes because traffic between nodes
# is what a node agent must get right (the source's node filters egress, the
# destination's ingress), and the network-policy-api conformance suites need two (their
# hostNetwork StatefulSet has two replicas on the same ports). WEIR_NODES=1: node-0 only.
#
#   bash scripts/cluster.sh up       start it (etcd, control plane, containerd, kubelet,
#                                    kube-proxy in nftables mode, CoreDNS) and deploy weir
#                                    as users do: `kubectl apply -f deploy/`
#   bash scripts/cluster.sh kubectl ARGS...   kubectl against the node
#   bash scripts/cluster.sh agent-usage       the weir agent's CPU seconds and peak RSS
#   bash scripts/cluster.sh down     stop every process it started (by PID), remove its pod
#                                    namespaces, mounts and cgroups, restore the sysctls
#                                    kubelet changes, delete the namespace
#   bash scripts/cluster.sh status   what is running
#   bash scripts/cluster.sh install  packages, builds and images only (cached per machine)
#
# Safety: nothing is configured in the machine's root network namespace. node-0's
# address sits on a veth pair whose both ends are inside `weir-node`, node-1's on a veth
# pair between the two namespaces; each namespace's default route is a blackhole: nothing
# can leave the machine. Processes are stopped by recorded PID,
# never by name; only `cni-*` pod namespaces created while the node was up are removed.
# -E: the ERR trap (a failed `up` takes the node down) also fires inside functions.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
state="${WEIR_NODE_STATE:-/var/tmp/weir-node}"       # data, configs, certificates, logs
run="${WEIR_NODE_RUN:-/run/weir-node}"                # sockets and runtime state
bin="${WEIR_KUBE_DIR:-/var/tmp/weir-kube}"
ns=weir-node
node_ip=10.200.0.1
nodes="${WEIR_NODES:-2}"
in_ns=(nsenter "--net=/run/netns/$ns")
kubectl() { "${in_ns[@]}" "$bin/node/kubectl" --kubeconfig="$state/etc/kubeconfig" "$@"; }
say() { printf '[%5.1fs] %s\n' "$(($(date +%s%N) - t0))e-9" "$*" >&2; }
t0=$(date +%s%N)

# Sysctls kubelet rewrites on start; restored on `down` to what they were before `up`.
sysctls=(vm.overcommit_memory kernel.panic kernel.panic_on_oops)

install() {
  local need=()
  for p in containerd runc containernetworking-plugins umoci skopeo busybox-static gcc libc6-dev \
      binutils conntrack nftables redis-server redis-tools curl; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  bash scripts/kube-node.sh
  bash scripts/kube-addons.sh
  bash scripts/kube-apiserver.sh  # etcd
  bash scripts/netpol-api.sh --build  # the policy.networking.k8s.io CRDs (and the suites)
}

# Node i: its network namespace, address, link, pod range, state and runtime directories,
# cgroup root and the suffix of its daemons' names (PID files, logs). Node 0 keeps the
# single node's layout.
node_vars() {
  local i=$1
  n_name=node-$i n_ip=10.200.0.$((i + 1)) n_cidr=10.244.$i.0/24 n_gw=10.244.$i.1
  if [ "$i" = 0 ]; then
    n_ns=$ns n_state=$state n_run=$run n_cgroup=weir-node n_sfx="" n_link=node0
  else
    n_ns=$ns-$i n_state=$state/node-$i n_run=$run/node-$i n_cgroup=weir-node-$i n_sfx=-$i n_link=eth0
  fi
}

# Renders a config template for the node of node_vars: $STATE, $RUN, $NODE_IP, $NODE,
# $POD_CIDR, $POD_GW, $CGROUP and $KUBECONFIG replaced.
render() {
  sed -e "s#\$STATE#$n_state#g" -e "s#\$RUN#$n_run#g" -e "s#\$NODE_IP#$n_ip#g" \
    -e "s#\$NODE#$n_name#g" -e "s#\$POD_CIDR#$n_cidr#g" -e "s#\$POD_GW#$n_gw#g" \
    -e "s#\$CGROUP#$n_cgroup#g" -e "s#\$KUBECONFIG#$state/etc/kubeconfig#g" "$1" > "$2"
}

pki() {
  local p="$state/pki"
  [ -f "$p/apiserver.crt" ] && return 0
  mkdir -p "$p"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=weir-node-ca" \
    -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$p/apiserver.key" -out "$p/apiserver.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1,IP:%s,IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n' "$node_ip" > "$p/san.ext"
  openssl x509 -req -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
    -days 3650 -extfile "$p/san.ext" -out "$p/apiserver.crt" 2>/dev/null
  openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
  openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
  # One admin token, random per machine.
  printf '%s,weir-admin,uid-weir-admin,"system:masters"\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" > "$p/tokens.csv"
  chmod 600 "$p"/*.key "$p/tokens.csv"
}

kubeconfig() {
  local token; token=$(cut -d, -f1 "$state/pki/tokens.csv")
  mkdir -p "$state/etc"
  cat > "$state/etc/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: weir-node
  cluster: {server: "https://$node_ip:6443", certificate-authority: "$state/pki/ca.crt"}
contexts:
- name: weir-node
  context: {cluster: weir-node, user: admin}
current-context: weir-node
users:
- name: admin
  user: {token: "$token"}
EOF
  chmod 600 "$state/etc/kubeconfig"
}

# Starts a daemon inside node-0's namespace and records its PID (nsenter execs it);
# `daemon_in NETNS NAME CMD...` inside another node's.
daemon() { daemon_in "$ns" "$@"; }
daemon_in() {
  local netns=$1 name=$2; shift 2
  nsenter "--net=/run/netns/$netns" "$@" > "$state/logs/$name.log" 2>&1 &
  echo $! > "$run/$name.pid"
}

# A node's network namespace, containerd (with the images) and cgroup root; its kubelet
# and kube-proxy start in node_start, once the API server is up.
node_prepare() {
  node_vars "$1"
  ip netns add "$n_ns"
  ip -n "$n_ns" link set lo up
  if [ "$1" = 0 ]; then
    # Loopback, a veth pair with both ends inside, a blackhole default route.
    ip -n "$ns" link add node0 type veth peer name node0p
    ip -n "$ns" link set node0 up
    ip -n "$ns" link set node0p up
    ip -n "$ns" addr add "$node_ip/24" dev node0
  else
    # A veth pair from node-0's namespace; each node routes the other's pods via it.
    ip -n "$ns" link add "to-$n_name" type veth peer name eth0 netns "$n_ns"
    ip -n "$ns" link set "to-$n_name" up
    ip -n "$n_ns" link set eth0 up
    ip -n "$n_ns" addr add "$n_ip/24" dev eth0
    ip -n "$ns" route add "$n_ip/32" dev "to-$n_name"
    ip -n "$ns" route add "$n_cidr" via "$n_ip" dev "to-$n_name"
    ip -n "$n_ns" route add 10.244.0.0/16 via "$node_ip" dev eth0
    ip -n "$n_ns" route add blackhole "$n_cidr"  # its own pods have /32 routes (CNI ptp)
  fi
  ip -n "$n_ns" route add blackhole default
  # The Service range on the node's own link: a host process (weir's agent, hostNetwork)
  # must pass routing before kube-proxy's output DNAT rewrites a ClusterIP; with only the
  # blackhole, connect() fails first. Unanswered, such packets loop here until TTL.
  ip -n "$n_ns" route add 10.96.0.0/16 dev "$n_link"
  ip netns exec "$n_ns" sysctl -q -w net.ipv4.ip_forward=1
  mkdir -p "$n_state/etc/cni/net.d" "$n_run"
  for f in containerd.toml kubelet.yaml kube-proxy.yaml; do render "tools/node/$f" "$n_state/etc/$f"; done
  render tools/node/10-weir-node.conflist "$n_state/etc/cni/net.d/10-weir-node.conflist"
  echo "nameserver 127.0.0.1" > "$n_state/etc/resolv.conf"
  rm -rf "$n_state/kubelet" "$n_state/containerd" "$n_state/cni-ipam" "$n_state/pod-logs"
  daemon_in "$n_ns" "containerd$n_sfx" containerd --config "$n_state/etc/containerd.toml"
  for _ in $(seq 1 100); do ctr -a "$n_run/containerd/containerd.sock" version >/dev/null 2>&1 && break; sleep 0.1; done
  bash scripts/node-images.sh import "$n_run/containerd/containerd.sock"
  # kubelet: cgroup v1 (or hybrid), cgroupfs driver, its own cgroup root in every hierarchy.
  for c in /sys/fs/cgroup/*/; do
    [ "$c" = /sys/fs/cgroup/unified/ ] && continue
    [ -w "$c" ] && mkdir -p "$c/$n_cgroup"
  done
  if [ -d "/sys/fs/cgroup/cpuset/$n_cgroup" ]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus > "/sys/fs/cgroup/cpuset/$n_cgroup/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems > "/sys/fs/cgroup/cpuset/$n_cgroup/cpuset.mems"
  fi
  say "$n_name: containerd up, images imported"
}

node_start() {
  node_vars "$1"
  mkdir -p "$n_state/kubelet"
  daemon_in "$n_ns" "kubelet$n_sfx" "$bin/node/kubelet" --config="$n_state/etc/kubelet.yaml" \
    --kubeconfig="$state/etc/kubeconfig" --root-dir="$n_state/kubelet" \
    --hostname-override="$n_name" --node-ip="$n_ip" --v=1
  daemon_in "$n_ns" "kube-proxy$n_sfx" "$bin/node/kube-proxy" --config="$n_state/etc/kube-proxy.yaml" --v=1
}

up() {
  [ -e "/run/netns/$ns" ] && { echo "cluster.sh: $ns exists; run 'cluster.sh down' first" >&2; exit 1; }
  install
  mkdir -p "$state"/{logs,etc/cni/net.d} "$run"
  for s in "${sysctls[@]}"; do echo "$s=$(sysctl -n "$s")"; done > "$run/sysctls.saved"
  ls /run/netns 2>/dev/null | grep '^cni-' | sort > "$run/netns.before" || true
  pki
  kubeconfig
  mkdir -p "$state/logs"
  for i in $(seq 0 $((nodes - 1))); do node_prepare "$i"; done
  rm -rf "$state/etcd-data"
  daemon etcd "$bin/etcd" --name node --data-dir "$state/etcd-data" \
    --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
    --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster node=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 --unsafe-no-fsync
  daemon apiserver "$bin/node/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 \
    --bind-address=0.0.0.0 --secure-port=6443 --advertise-address="$node_ip" \
    --tls-cert-file="$state/pki/apiserver.crt" --tls-private-key-file="$state/pki/apiserver.key" \
    --client-ca-file="$state/pki/ca.crt" --token-auth-file="$state/pki/tokens.csv" \
    --service-account-key-file="$state/pki/sa.pub" --service-account-signing-key-file="$state/pki/sa.key" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range=10.96.0.0/16 --authorization-mode=Node,RBAC --allow-privileged=true \
    --kubelet-preferred-address-types=InternalIP --profiling=false
  for _ in $(seq 1 240); do kubectl get --raw /readyz >/dev/null 2>&1 && break; sleep 0.5; done
  say "kube-apiserver ready"
  local kc="$state/etc/kubeconfig"
  daemon kcm "$bin/node/kube-controller-manager" --kubeconfig="$kc" --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" --service-account-private-key-file="$state/pki/sa.key" \
    --root-ca-file="$state/pki/ca.crt" --cluster-signing-cert-file="$state/pki/ca.crt" \
    --cluster-signing-key-file="$state/pki/ca.key" --use-service-account-credentials=false \
    --leader-elect=false --bind-address=127.0.0.1 --profiling=false
  daemon scheduler "$bin/node/kube-scheduler" --kubeconfig="$kc" --authentication-kubeconfig="$kc" \
    --authorization-kubeconfig="$kc" --leader-elect=false --bind-address=127.0.0.1 --profiling=false
  for i in $(seq 0 $((nodes - 1))); do node_start "$i"; done
  for i in $(seq 0 $((nodes - 1))); do
    for _ in $(seq 1 120); do kubectl get node "node-$i" >/dev/null 2>&1 && break; sleep 0.5; done
    kubectl wait --for=condition=Ready "node/node-$i" --timeout=120s >/dev/null
  done
  for _ in $(seq 1 120); do kubectl get sa default -n default >/dev/null 2>&1 && break; sleep 0.5; done
  say "$nodes node(s) Ready"
  kubectl apply -f tools/node/coredns.yaml >/dev/null
  # The cluster-wide tiers' CRDs from the pinned network-policy-api modules, before weir
  # starts watching them.
  kubectl create -f "$bin/netpol-api/crds/" >/dev/null
  kubectl wait --for=condition=Established crd --all --timeout=60s >/dev/null
  # weir as users deploy it. Its hostPath state directory is the machine's /var/lib/weir:
  # removed on `down` unless it was there before.
  [ -e /var/lib/weir ] && touch "$run/var-lib-weir.existed"
  kubectl apply -f deploy/ >/dev/null
  kubectl -n weir-system rollout status ds/weir-agent --timeout=120s >/dev/null
  say "weir-agent DaemonSet ready"
  kubectl -n kube-system rollout status deploy/coredns --timeout=120s >/dev/null
  say "CoreDNS ready; kubeconfig: $state/etc/kubeconfig (use inside the namespace: nsenter --net=/run/netns/$ns)"
}

stop_pid() { # stop_pid NAME: SIGTERM, up to 15 s, then SIGKILL
  local f="$run/$1.pid"
  [ -f "$f" ] || return 0
  local p; p=$(cat "$f")
  if kill "$p" 2>/dev/null; then
    for _ in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$p" 2>/dev/null || true
  fi
  rm -f "$f"
}

down() {
  if [ -f "$run/apiserver.pid" ] && kill -0 "$(cat "$run/apiserver.pid")" 2>/dev/null; then
    # Controllers first, so nothing recreates the pods being deleted.
    kubectl delete daemonsets,deployments,replicasets,statefulsets,jobs --all -A --wait=false >/dev/null 2>&1 || true
    kubectl delete pods --all -A --grace-period=1 --wait=false >/dev/null 2>&1 || true
    for _ in $(seq 1 30); do [ -z "$(kubectl get pods -A --no-headers 2>/dev/null)" ] && break; sleep 1; done
  fi
  # Every node that may be up, whatever WEIR_NODES says now.
  local all=(0 1 2 3) i
  for i in "${all[@]}"; do
    node_vars "$i"
    for p in weir-agent kube-proxy kubelet; do stop_pid "$p$n_sfx"; done
    local sock="$n_run/containerd/containerd.sock"
    if [ -S "$sock" ]; then
      local c=(ctr -a "$sock" -n k8s.io)
      for t in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks kill -s KILL "$t" >/dev/null 2>&1 || true; done
      sleep 1
      for t in $("${c[@]}" tasks ls -q 2>/dev/null); do "${c[@]}" tasks delete "$t" >/dev/null 2>&1 || true; done
      for t in $("${c[@]}" containers ls -q 2>/dev/null); do "${c[@]}" containers delete "$t" >/dev/null 2>&1 || true; done
    fi
  done
  for p in scheduler kcm apiserver etcd; do stop_pid "$p"; done
  for i in "${all[@]}"; do
    node_vars "$i"
    # Our containerd's shims: children of our containerd, by PID.
    if [ -f "$run/containerd$n_sfx.pid" ]; then
      local cp; cp=$(cat "$run/containerd$n_sfx.pid")
      for s in $(pgrep -P "$cp" 2>/dev/null); do kill -9 "$s" 2>/dev/null || true; done
      for s in $(pgrep -f "containerd-shim-runc-v2 .*-address $n_run/containerd/containerd.sock" 2>/dev/null); do kill -9 "$s" 2>/dev/null || true; done
    fi
    stop_pid "containerd$n_sfx"
  done
  # Pod namespaces our containerd made (cni-*, not there before `up`).
  if [ -f "$run/netns.before" ]; then
    for n in $(comm -13 "$run/netns.before" <(ls /run/netns 2>/dev/null | grep '^cni-' | sort)); do
      ip netns delete "$n" 2>/dev/null || true
    done
  fi
  for m in $(awk '{print $2}' /proc/mounts | grep -E "^($state|$run)" | sort -r); do umount -l "$m" 2>/dev/null || true; done
  # kubelet links every container's log into the machine's /var/log/containers (the
  # path is fixed); ours point into the nodes' state.
  find /var/log/containers -maxdepth 1 -type l -lname "$state/*" -delete 2>/dev/null || true
  for i in "${all[@]}"; do
    node_vars "$i"
    for c in /sys/fs/cgroup/*/; do
      [ -d "$c/$n_cgroup" ] && find "$c/$n_cgroup" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
  done
  for i in 3 2 1 0; do node_vars "$i"; ip netns delete "$n_ns" 2>/dev/null || true; done
  if [ -f "$run/sysctls.saved" ]; then
    while IFS== read -r k v; do sysctl -q -w "$k=$v" >/dev/null || true; done < "$run/sysctls.saved"
  fi
  [ -d "$run" ] && [ ! -e "$run/var-lib-weir.existed" ] && rm -rf /var/lib/weir
  rm -rf "$run"
  echo "cluster.sh: down; left: netns=[$(ip netns list 2>/dev/null | grep -cE '^(weir-node(-[0-9])?|cni-)( |$)' || true)] mounts=[$(grep -cE "$state|$run" /proc/mounts || true)]" >&2
}

# The weir agents' resource use, from each pod's cgroup (CPU seconds since start) and its
# process (peak RSS): `node-0: cpu_s=… rss_peak_mib=…; node-1: …`.
agent_usage() {
  local out=() uid node
  while read -r uid node; do
    node_vars "${node#node-}"
    local g=/sys/fs/cgroup/cpuacct/$n_cgroup/kubepods
    local d; d=$( { compgen -G "$g/*/pod$uid" || compgen -G "$g/pod$uid" || true; } | head -1)
    [ -n "$d" ] || { echo "cluster.sh: no cgroup for the weir-agent pod on $node" >&2; return 1; }
    local cpu=0 rss=0 p c
    for c in "$d"/*/; do
      for p in $(cat "$c/cgroup.procs" 2>/dev/null); do
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = weir ] || continue
        cpu=$(cat "$c/cpuacct.usage")
        rss=$(awk '/^VmHWM/{print $2}' "/proc/$p/status")
      done
    done
    out+=("$(awk -v n="$node" -v c="$cpu" -v r="$rss" 'BEGIN { printf "%s: cpu_s=%.2f rss_peak_mib=%.1f", n, c / 1e9, r / 1024 }')")
  done < <(kubectl -n weir-system get pods -l app=weir-agent \
    -o jsonpath='{range .items[*]}{.metadata.uid} {.spec.nodeName}{"\n"}{end}' | sort -k2)
  local IFS=';'
  echo "${out[*]}" | sed 's/;/; /g'
}

status() {
  for p in etcd apiserver kcm scheduler containerd kubelet kube-proxy containerd-1 kubelet-1 kube-proxy-1; do
    local f="$run/$p.pid"
    if [ -f "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; then echo "$p: running (pid $(cat "$f"))"; else echo "$p: stopped"; fi
  done
  [ -e "/run/netns/$ns" ] && kubectl get nodes -o wide 2>/dev/null || true
}

case "${1:-}" in
  # WEIR_NODE_KEEP=1 leaves a failed node up to look at (then `down` it yourself).
  up) [ -n "${WEIR_NODE_KEEP:-}" ] || trap 'echo "cluster.sh: up failed; taking the node down" >&2; down' ERR; up ;;
  down) down ;;
  status) status ;;
  install) install; bash scripts/node-images.sh build ;;
  kubectl) shift; kubectl "$@" ;;
  agent-usage) agent_usage ;;
  *) echo "usage: cluster.sh up|down|status|install|agent-usage|kubectl ARGS..." >&2; exit 2 ;;
esac
