#!/usr/bin/env python3
"""Policy change -> enforced, as a pod sees it, on weir's real node (scripts/lesson.sh
--latency). With the lesson installed, a NetworkPolicy admitting personal-<release> to the
data tier on TCP 6379 is applied and deleted FLIPS times each way with kubectl; after each
kubectl returns (the API server has the change), a prober inside personal ubuntu's own
network namespace opens new TCP connections to the Redis pod (20 ms timeout, every 2 ms)
until the change shows: the first connection accepted after an apply, the first one
dropped after a delete. Prints p50/p90/p99/max per direction. Bounded: 10 s per flip."""

import argparse, json, subprocess, sys, time

PROBER = r"""
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
def is_open():
    s = socket.socket(); s.settimeout(0.02)
    try:
        s.connect((host, port)); return True
    except OSError:
        return False
    finally:
        s.close()
for line in sys.stdin:
    want = line.strip() == "open"
    t0 = time.monotonic(); deadline = t0 + 10
    while time.monotonic() < deadline:
        t = time.monotonic()
        if is_open() == want:
            print(f"{(t - t0) * 1000:.1f}", flush=True); break
        time.sleep(0.002)
    else:
        print("timeout", flush=True)
"""


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--kubectl", required=True)
    a.add_argument("--kubeconfig", required=True)
    a.add_argument("--release", default="lesson")
    a.add_argument("--flips", type=int, default=20)
    args = a.parse_args()
    prod, pers = f"production-{args.release}", f"personal-{args.release}"
    node = ["nsenter", "--net=/run/netns/weir-node"]

    def kubectl(*rest, stdin=None):
        return subprocess.run(node + [args.kubectl, f"--kubeconfig={args.kubeconfig}", *rest],
                              input=stdin, capture_output=True, text=True, check=True).stdout

    pods = json.loads(kubectl("get", "pods", "-A", "-o", "json"))["items"]
    ip_of = lambda ns, pred: next(p["status"]["podIP"] for p in pods
                                  if p["metadata"]["namespace"] == ns and pred(p))
    client = ip_of(pers, lambda p: p["metadata"]["name"] == f"ubuntu-{args.release}")
    redis = ip_of(prod, lambda p: p["metadata"]["labels"].get("networking/data") == "true")
    # The client pod's network namespace: the cni-* namespace holding its address.
    netns = None
    for name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split():
        if name.startswith("cni-") and f" {client}/" in subprocess.run(
                ["ip", "-n", name, "-4", "-o", "addr"], capture_output=True, text=True).stdout:
            netns = name
    if netns is None:
        sys.exit(f"latency: no network namespace holds {client}")
    prober = subprocess.Popen(["nsenter", f"--net=/run/netns/{netns}", "python3", "-u", "-c", PROBER,
                               redis, "6379"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    policy = json.dumps({
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "latency-personal-to-redis", "namespace": prod},
        "spec": {"podSelector": {"matchLabels": {"networking/data": "true"}},
                 "policyTypes": ["Ingress"],
                 "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {
                     "kubernetes.io/metadata.name": pers}}}],
                     "ports": [{"protocol": "TCP", "port": 6379}]}]}})
    results = {"allow": [], "deny": []}
    failures = 0

    def wait(state):
        prober.stdin.write(state + "\n"); prober.stdin.flush()
        return prober.stdout.readline().strip()

    try:
        if wait("closed") == "timeout":
            sys.exit("latency: personal -> redis is open before any change")
        for _ in range(args.flips):
            for way, cmd, state in (("allow", ["apply", "-f", "-"], "open"),
                                    ("deny", ["delete", "-f", "-"], "closed")):
                kubectl(*cmd, stdin=policy)
                r = wait(state)
                if r == "timeout":
                    failures += 1
                    print(f"  {way}: not enforced within 10 s")
                else:
                    results[way].append(float(r))
    finally:
        subprocess.run(node + [args.kubectl, f"--kubeconfig={args.kubeconfig}", "delete", "-f", "-",
                               "--ignore-not-found"], input=policy, capture_output=True, text=True)
        prober.stdin.close(); prober.wait(timeout=15)

    def pct(xs, p):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, max(0, round(p / 100 * len(xs) + 0.5) - 1))]

    for way, xs in results.items():
        if xs:
            print(f"  {way:5} ({len(xs)} flips, ms after kubectl returned): p50 {pct(xs, 50):.0f}  "
                  f"p90 {pct(xs, 90):.0f}  p99 {pct(xs, 99):.0f}  max {max(xs):.0f}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
