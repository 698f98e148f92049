#!/usr/bin/env bash
# A full chunk store, refused and recovered from: with the brokers' transfers.max_store_bytes at
# BENCH_STORE_MIB, a getfile of a BENCH_FILE_MIB file on the bench device is timed from its start
# until the transfer ends failed with its store-full message; meanwhile another analyst opens a
# session on another device and runs a command in it; then, after the failed transfer is deleted
# (DELETE /api/v1/transfers/{id}), a getfile of a BENCH_SMALL_MIB file is timed until it completes.
# See benches/README.md, "Full store".
#
# Starts the local stack with deploy/local/up.sh (which always lives in .lr/dev/ of this checkout),
# its brokers configured through LR_TRANSFERS__* variables, and a second agent for the device
# `bench-dev` that dials only broker 3; stops and removes all of it on exit. A transfer that moves
# no chunk forward ends after transfers.max_stall_secs (600 s unless BENCH_STALL_SECS says
# otherwise), so a run takes about that long.
#
# Usage: benches/store_full.sh [--json]
# Environment: BENCH_STORE_MIB (64), BENCH_FILE_MIB (256), BENCH_SMALL_MIB (16), BENCH_STALL_SECS
# (unset: the brokers' default), LR_PORT_BASE (23000: NATS +4222, Raft +7401..3, agents +7501..3,
# API +7601..3).
set -euo pipefail

json=0
for arg in "$@"; do
    case "$arg" in
    --json) json=1 ;;
    -h | --help)
        sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "store_full.sh: unknown option $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

store_mib=${BENCH_STORE_MIB:-64}
file_mib=${BENCH_FILE_MIB:-256}
small_mib=${BENCH_SMALL_MIB:-16}
stall_secs=${BENCH_STALL_SECS:-}
base=${LR_PORT_BASE:-23000}
ssh_port=$((base + 2222))
device=bench-dev
script=store_full.sh

for value in "$store_mib" "$file_mib" "$small_mib"; do
    if ! [[ "$value" =~ ^[1-9][0-9]*$ ]] || [ "$value" -gt 3000 ]; then
        echo "$script: BENCH_STORE_MIB, BENCH_FILE_MIB and BENCH_SMALL_MIB are whole numbers from 1 to 3000" >&2
        exit 2
    fi
done
if [ "$file_mib" -le "$store_mib" ] || [ "$small_mib" -ge "$store_mib" ]; then
    echo "$script: BENCH_FILE_MIB must be above BENCH_STORE_MIB, BENCH_SMALL_MIB below it" >&2
    exit 2
fi
if [ -n "$stall_secs" ] && { ! [[ "$stall_secs" =~ ^[1-9][0-9]*$ ]] || [ "$stall_secs" -gt 3600 ]; }; then
    echo "$script: BENCH_STALL_SECS is a whole number of seconds from 1 to 3600" >&2
    exit 2
fi

. "$(dirname "$0")/stack.sh"
bench_check_dev
bench_check_ports
bench_build load-bench
bench="$bin/load-bench"

echo "$script: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the files: random, written before the stack starts
mkdir -p "$work/files"
head -c $((file_mib << 20)) /dev/urandom >"$work/files/big.bin"
head -c $((small_mib << 20)) /dev/urandom >"$work/files/small.bin"

# ---- the stack: up.sh's brokers read LR_* variables besides their configuration file
export LR_TRANSFERS__MAX_STORE_BYTES=$((store_mib << 20))
if [ -n "$stall_secs" ]; then
    export LR_TRANSFERS__MAX_STALL_SECS=$stall_secs
fi
bench_stack_up
unset LR_TRANSFERS__MAX_STORE_BYTES LR_TRANSFERS__MAX_STALL_SECS
. "$dev/env"
echo "$script: brokers with transfers.max_store_bytes = $((store_mib << 20)), max_stall_secs = ${stall_secs:-600 (default)}"

# ---- the run: analyst-a through broker 1 on bench-dev (its agent on broker 3); analyst-b through
# broker 2 on up.sh's device
json_args=()
[ "$json" = 1 ] && json_args=(--json)
status=0
timeout --foreground $((${stall_secs:-600} + 900)) "$bench" full-store \
    --url "https://localhost:$((base + 7601))" --ca "$ca" --token "$LR_TOKEN" --device "$device" \
    --big "$work/files/big.bin" --small "$work/files/small.bin" \
    --other-url "https://localhost:$((base + 7602))" --other-token "$LR_TOKEN_B" \
    --other-device "$LR_DEVICE" --stall-secs "${stall_secs:-600}" \
    --nats-url "nats://127.0.0.1:$((base + 4222))" \
    --nats-cert "$dev/certs/broker-1.pem" --nats-key "$dev/certs/broker-1.key" \
    "${json_args[@]}" || status=$?

# ---- what the brokers logged of it
echo
echo "== the brokers' logs: chunks refused by the store, and the transfer's end"
# The logs' lines without their colours.
plain() { sed 's/\x1b\[[0-9;]*m//g' "$1"; }
for id in 1 2 3; do
    log="$dev/logs/broker-$id.log"
    refused=$(plain "$log" | grep -c -e 'cannot store a chunk' -e 'chunk refused' || true)
    echo "broker $id: $refused lines of chunks refused or not stored"
    plain "$log" | grep -m 2 -e 'cannot store a chunk' -e 'chunk refused' | cut -c1-400 || true
    plain "$log" | grep -e 'transfer ended' -e 'no progress; asking again' -e 'transfer chunks deleted' |
        tail -n 6 | cut -c1-400 || true
done
echo "$script: load average now $(cut -d' ' -f1-3 /proc/loadavg)"
exit "$status"
