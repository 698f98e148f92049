#!/usr/bin/env bash
# Runs the acquire+release benchmark on the lease cluster, then the same workload on a throwaway
# 3-member etcd cluster on loopback (both fsync every write on a quorum), and prints ours / etcd.
# Only one system runs at a time, so they do not compete for the CPU.
#
# Environment: BENCH_SECONDS (default 10), BENCH_CLIENTS (default 1,64),
# ETCD_BASE_PORT (default 23790: clients on +1..+3, peers on +11..+13).
set -euo pipefail

seconds=${BENCH_SECONDS:-10}
clients=${BENCH_CLIENTS:-1,64}
base_port=${ETCD_BASE_PORT:-23790}

cd "$(dirname "$0")/.."

if ! command -v etcd >/dev/null || ! command -v etcdctl >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "etcd is not installed; run as root, or apt-get install etcd-server etcd-client" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client
fi
echo "etcd: $(etcd --version | head -n 1)"

cargo build --release -p benches --bin lease-bench
bin="${CARGO_TARGET_DIR:-target}/release/lease-bench"

work=$(mktemp -d -t lease-bench-XXXXXX)
etcd_pids=()
cleanup() {
    # Only the members this script started, by pid.
    for pid in "${etcd_pids[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${etcd_pids[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo
echo "== lease cluster: 3 nodes in-process, redb stores in $work/cluster"
"$bin" cluster --clients "$clients" --seconds "$seconds" --data-dir "$work/cluster" --json |
    tee "$work/cluster.out" | grep -v '^{'
grep '^{' "$work/cluster.out" >"$work/cluster.json"

initial_cluster=""
endpoints=""
for i in 1 2 3; do
    initial_cluster+="${initial_cluster:+,}m$i=http://127.0.0.1:$((base_port + 10 + i))"
    endpoints+="${endpoints:+,}http://127.0.0.1:$((base_port + i))"
done
for i in 1 2 3; do
    client_url="http://127.0.0.1:$((base_port + i))"
    peer_url="http://127.0.0.1:$((base_port + 10 + i))"
    etcd --name "m$i" --data-dir "$work/etcd/m$i" \
        --listen-client-urls "$client_url" --advertise-client-urls "$client_url" \
        --listen-peer-urls "$peer_url" --initial-advertise-peer-urls "$peer_url" \
        --initial-cluster "$initial_cluster" --initial-cluster-state new \
        --initial-cluster-token lease-bench --logger zap --log-level warn \
        >"$work/etcd-m$i.log" 2>&1 &
    etcd_pids+=($!)
done

# Up to 30 s for the members to elect a leader; stop early if one of them died.
healthy=false
for _ in $(seq 1 60); do
    for pid in "${etcd_pids[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "an etcd member exited at start (port taken?); its logs:" >&2
            tail -n 5 "$work"/etcd-m*.log >&2
            exit 1
        fi
    done
    if ETCDCTL_API=3 etcdctl --endpoints "$endpoints" --command-timeout=2s endpoint health >/dev/null 2>&1; then
        healthy=true
        break
    fi
    sleep 0.5
done
if [ "$healthy" != true ]; then
    echo "the etcd cluster did not become healthy within 30 s" >&2
    tail -n 5 "$work"/etcd-m*.log >&2
    exit 1
fi

echo
echo "== etcd: 3 members, data in $work/etcd, client via the JSON gateway"
"$bin" etcd --endpoints "$endpoints" --clients "$clients" --seconds "$seconds" \
    --lease-mode per-session,per-client --json |
    tee "$work/etcd.out" | grep -v '^{'
grep '^{' "$work/etcd.out" >"$work/etcd.json"

echo
echo "== ours / etcd"
"$bin" compare "$work/cluster.json" "$work/etcd.json"
