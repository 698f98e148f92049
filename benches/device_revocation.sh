#!/usr/bin/env bash
# How long a device revocation takes to cut off a connected agent: the bench device enrols, its
# agent comes online through broker 3, the device is revoked through broker 1, and the time until
# broker 2 lists it offline is measured; then it is allowed again, enrols afresh, and so on.
# Runs against the local stack of deploy/local/up.sh, started and removed here. See
# benches/README.md, "Device revocation".
#
# Usage: benches/device_revocation.sh
# Environment: BENCH_COUNT (20 measured revocations), LR_PORT_BASE (20000).
set -euo pipefail

case "${1:-}" in
-h | --help)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
"") ;;
*)
    echo "device_revocation.sh: unknown option $1 (try --help)" >&2
    exit 2
    ;;
esac

count=${BENCH_COUNT:-20}
base=${LR_PORT_BASE:-20000}
ssh_port=$((base + 2222))
device=bench-dev
script=device_revocation.sh
# Bound on one wait (online, or offline after the revocation).
wait_secs=60

. "$(dirname "$0")/stack.sh"
bench_check_dev
bench_check_ports
bench_build

echo "$script: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
bench_stack_up
node2="https://localhost:$((base + 7602))"

# `online true|false`: waits until broker 2 lists the bench device so; false when it does not
# within wait_secs.
online() {
    local deadline=$((SECONDS + wait_secs))
    until LR_API_URL=$node2 LR_CA_CERT=$ca LR_CONFIG=/dev/null LR_TOKEN=$token \
        "$bin/lr" --output json devices 2>/dev/null |
        tr -d ' \n' | grep -q "\"device\":\"$device\"[^}]*\"online\":$1"; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.01
    done
}

samples=()
for i in $(seq 1 "$count"); do
    [ "$i" = 1 ] || bench_agent_start
    online true || { echo "$script: the bench device did not come online; see $work/agent.log" >&2; exit 1; }
    t0=$(date +%s%N)
    bench_lr_admin device revoke "$device" >/dev/null 2>&1
    online false || { echo "$script: the revoked device stayed online for $wait_secs s" >&2; exit 1; }
    samples+=($((($(date +%s%N) - t0) / 1000000)))
    bench_agent_stop
done

sorted=$(printf '%s\n' "${samples[@]}" | sort -n)
pick() { sed -n "$(((count * $1 + 99) / 100))p" <<<"$sorted"; }
echo "$script: device revoked through broker 1, until broker 2 lists it offline ($count runs, heartbeat interval 5000 ms)"
echo "$script: p50 $(pick 50) ms, p90 $(pick 90) ms, max $(tail -n 1 <<<"$sorted") ms"
