#!/usr/bin/env bash
# getfile throughput end to end (agent -> brokers -> JetStream -> the analyst's disk, through the
# `lr` console) for one large file, next to `scp` of the same file over loopback and a raw TCP copy
# (the floor), with the peak memory of each broker meanwhile; then several getfiles at once and
# their aggregate throughput, next to as many scp at once. See benches/README.md, "Transfer
# throughput".
#
# Starts the local stack with deploy/local/up.sh (which always lives in .lr/dev/ of this checkout),
# a second agent for the device `bench-dev` that dials only broker 3, and a throwaway sshd on
# 127.0.0.1; stops and removes all of it, and every file it wrote, on exit. Needs about
# 4 x (BENCH_FILE_MIB + BENCH_PARALLEL x BENCH_PARALLEL_MIB) of free disk in $TMPDIR and .lr/.
# Installs openssh-server/-client if missing (root).
#
# Usage: benches/transfer_throughput.sh
# Environment: BENCH_FILE_MIB (1024), BENCH_PARALLEL (10 transfers at once),
# BENCH_PARALLEL_MIB (256, each), LR_PORT_BASE (21000: NATS +4222, Raft +7401..3, agents
# +7501..3, API +7601..3), BENCH_SSH_PORT (LR_PORT_BASE + 2222).
set -euo pipefail

for arg in "$@"; do
    case "$arg" in
    -h | --help)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "transfer_throughput.sh: unknown option $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

file_mib=${BENCH_FILE_MIB:-1024}
parallel=${BENCH_PARALLEL:-10}
parallel_mib=${BENCH_PARALLEL_MIB:-256}
base=${LR_PORT_BASE:-21000}
ssh_port=${BENCH_SSH_PORT:-$((base + 2222))}
device=bench-dev
script=transfer_throughput.sh
# Bound on each measured copy (all of a parallel run together).
run_timeout=1800

for value in "$file_mib" "$parallel" "$parallel_mib"; do
    if ! [[ "$value" =~ ^[1-9][0-9]*$ ]] || [ "$value" -gt 3000 ]; then
        echo "$script: BENCH_FILE_MIB, BENCH_PARALLEL and BENCH_PARALLEL_MIB are whole numbers from 1 to 3000" >&2
        exit 2
    fi
done

. "$(dirname "$0")/stack.sh"
bench_check_dev
bench_check_ports
bench_need_ssh
bench_build tcp-copy

echo "$script: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the files: random, so nothing on the way can compress them
mkdir -p "$work/files" "$work/out"
echo "$script: writing ${file_mib} MiB and ${parallel} x ${parallel_mib} MiB of random data in $work"
head -c $((file_mib << 20)) /dev/urandom >"$work/files/big.bin"
for i in $(seq 1 "$parallel"); do
    head -c $((parallel_mib << 20)) /dev/urandom >"$work/files/part-$i.bin"
done
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

bench_stack_up
bench_sshd_start
. "$dev/env"
export LR_DOWNLOADS_DIR="$work/out"
lr="$bin/lr"

# ---- timing and memory
now() { date +%s.%N; }
# Before each timed copy: flush what earlier steps wrote, so that no copy pays for another's
# writeback to the disk.
settle() { sync; }
# MB/s (10^6 bytes) for bytes $1 over the seconds from $2 to $3.
rate() { awk -v b="$1" -v t0="$2" -v t1="$3" 'BEGIN { printf "%.1f", b / 1e6 / (t1 - t0) }'; }
seconds() { awk -v t0="$1" -v t1="$2" 'BEGIN { printf "%.2f", t1 - t0 }'; }
rows=()
# A result row: name, bytes, start, end.
record() {
    rows+=("$(printf '| %s | %d | %s | %s |' "$1" $(($2 >> 20)) "$(seconds "$3" "$4")" "$(rate "$2" "$3" "$4")")")
    echo "$script: $1: $(rate "$2" "$3" "$4") MB/s"
}

# The processes whose peak memory is reported: the brokers and nats-server of up.sh, the agent.
declare -A watched=()
while read -r pid name; do watched[$name]=$pid; done <"$dev/pids"
unset 'watched[lr-agent]'
watched[bench-agent]=$agent_pid
kib() { awk -v f="$1" '$1 == f":" { print $2 }' "/proc/$2/status"; }
# Resets each watched process's peak (VmHWM) to its current size (Linux's clear_refs, value 5;
# without the right to, the peak stays the one since the process started).
reset_peaks() {
    local name
    for name in "${!watched[@]}"; do
        echo 5 2>/dev/null >"/proc/${watched[$name]}/clear_refs" || true
    done
}
memory=()
# A memory row per watched process: its size before ($2, "name=KiB ...") and its peak since.
record_peaks() {
    local name before
    for name in $(printf '%s\n' "${!watched[@]}" | sort); do
        before=$(tr ' ' '\n' <<<"$2" | awk -F= -v n="$name" '$1 == n { print $2 }')
        memory+=("$(printf '| %s | %s | %d | %d |' "$1" "$name" $((before >> 10)) $(($(kib VmHWM "${watched[$name]}") >> 10)))")
    done
}
sizes_now() {
    local name
    for name in "${!watched[@]}"; do printf '%s=%s ' "$name" "$(kib VmRSS "${watched[$name]}")"; done
}

check_copy() {
    if [ "$(sha_of "$2")" != "$(sha_of "$1")" ]; then
        echo "$script: $2 is not a copy of $1" >&2
        exit 1
    fi
    rm -f "$2"
}

# ---- the floor: one TCP connection on loopback
settle
start=$(now)
"$bin/tcp-copy" "$work/files/big.bin" "$work/out/tcp.bin" >/dev/null
end=$(now)
record "raw TCP copy" $((file_mib << 20)) "$start" "$end"
check_copy "$work/files/big.bin" "$work/out/tcp.bin"

# ---- scp over loopback: ssh's own encryption, to sshd on 127.0.0.1, written to disk
scp_to() { timeout "$run_timeout" scp -q "${ssh_opts[@]}" -P "$ssh_port" "$1" "root@127.0.0.1:$2"; }
settle
start=$(now)
scp_to "$work/files/big.bin" "$work/out/scp.bin"
end=$(now)
record "scp" $((file_mib << 20)) "$start" "$end"
check_copy "$work/files/big.bin" "$work/out/scp.bin"

# ---- getfile through the product: a session through broker 1, the agent on broker 3
session=""
for _ in $(seq 1 120); do
    session=$("$lr" session open "$device" 2>/dev/null) && break
    sleep 0.5
done
if [ -z "$session" ]; then
    echo "$script: cannot open a session to $device; the bench agent's log:" >&2
    tail -n 20 "$work/agent.log" >&2
    exit 1
fi
bench_on_exit+=('"$lr" session close "$session" >/dev/null 2>&1')
run_lr() { timeout "$run_timeout" "$lr" session run --wait "$run_timeout" "$session" -- "$@"; }
# A string field of the JSON object `lr --output json` printed into file $1.
field() { grep -o "\"$2\": *\"[^\"]*\"" "$1" | head -n 1 | cut -d'"' -f4; }

settle
start=$(now)
run_lr fileinfo "$work/files/big.bin" >/dev/null
end=$(now)
echo "$script: fileinfo of the ${file_mib} MiB file (SHA-256 on the device) took $(seconds "$start" "$end") s"

before=$(sizes_now)
reset_peaks
settle
start=$(now)
run_lr getfile "$work/files/big.bin" --output json >"$work/getfile.json"
end=$(now)
record_peaks "getfile ${file_mib} MiB" "$before"
record "getfile (lr, end to end)" $((file_mib << 20)) "$start" "$end"
stored=$(date -d "$(field "$work/getfile.json" finished_at)" +%s.%N)
echo "$script: of which device -> JetStream (verified): $(seconds "$start" "$stored") s," \
    "JetStream -> analyst's disk (verified): $(seconds "$stored" "$end") s"
check_copy "$work/files/big.bin" "$(field "$work/getfile.json" saved_to)"
# Deletes the transfer's chunks from JetStream.
"$lr" transfer cancel "$(field "$work/getfile.json" transfer_id)" >/dev/null

# ---- several at once: scp, then getfile (each in its own `lr` process, one session)
settle
start=$(now)
pids=()
for i in $(seq 1 "$parallel"); do
    scp_to "$work/files/part-$i.bin" "$work/out/scp-$i.bin" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
end=$(now)
record "scp x $parallel at once" $((parallel * parallel_mib << 20)) "$start" "$end"
for i in $(seq 1 "$parallel"); do check_copy "$work/files/part-$i.bin" "$work/out/scp-$i.bin"; done

for i in $(seq 1 "$parallel"); do run_lr fileinfo "$work/files/part-$i.bin" >/dev/null; done
before=$(sizes_now)
reset_peaks
settle
start=$(now)
pids=()
for i in $(seq 1 "$parallel"); do
    run_lr getfile "$work/files/part-$i.bin" --output json >"$work/getfile-$i.json" &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
end=$(now)
record_peaks "getfile x $parallel at once" "$before"
record "getfile x $parallel at once (lr)" $((parallel * parallel_mib << 20)) "$start" "$end"
for i in $(seq 1 "$parallel"); do
    check_copy "$work/files/part-$i.bin" "$(field "$work/getfile-$i.json" saved_to)"
    "$lr" transfer cancel "$(field "$work/getfile-$i.json" transfer_id)" >/dev/null
done

echo
echo "== throughput (MB/s = 10^6 bytes per second; load average now $(cut -d' ' -f1-3 /proc/loadavg))"
echo "| copy | MiB | seconds | MB/s |"
echo "| --- | ---: | ---: | ---: |"
printf '%s\n' "${rows[@]}"
echo
echo "== memory (MiB): resident size before the run, and the peak during it (VmHWM)"
echo "| run | process | before | peak |"
echo "| --- | --- | ---: | ---: |"
printf '%s\n' "${memory[@]}"
