#!/usr/bin/env bash
# How long a token revocation takes to reach every node: a tenant's token is made, seen working
# on all three brokers, revoked through broker 1, and timed until every broker answers 401.
# Runs against the local stack of deploy/local/up.sh, started and removed here. See
# benches/README.md, "Revocation".
#
# Usage: benches/revocation.sh [--json]
# Environment: BENCH_COUNT (200 measured revocations), BENCH_WARMUP (10), LR_PORT_BASE (20000).
set -euo pipefail

json=0
for arg in "$@"; do
    case "$arg" in
    --json) json=1 ;;
    -h | --help)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "revocation.sh: unknown option $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

count=${BENCH_COUNT:-200}
warmup=${BENCH_WARMUP:-10}
base=${LR_PORT_BASE:-20000}
ssh_port=$((base + 2222))
device=bench-dev
script=revocation.sh

. "$(dirname "$0")/stack.sh"
bench_check_dev
bench_check_ports
bench_build command-bench

echo "$script: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
bench_stack_up
admin=$(. "$dev/env" && echo "${LR_ADMIN_TOKEN:-}")
if [ -z "$admin" ]; then
    echo "$script: up.sh wrote no LR_ADMIN_TOKEN to $dev/env" >&2
    exit 1
fi
urls="https://localhost:$((base + 7601)),https://localhost:$((base + 7602)),https://localhost:$((base + 7603))"
args=(revocation --count "$count" --warmup "$warmup" --urls "$urls" --ca "$ca"
    --tenant demo --user analyst-a)
[ "$json" = 1 ] && args+=(--json)
LR_ADMIN_TOKEN="$admin" timeout --foreground 900 "$bin/command-bench" "${args[@]}"
