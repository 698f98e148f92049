#!/usr/bin/env bash
# Broker memory under large outputs: BENCH_SESSIONS analysts at once, each in their own session on
# their own device (mem-01, mem-02, ..., one agent each), run BENCH_COMMANDS commands whose output
# is just under the 3 MiB one result may carry (`dir` of a folder of long file names); then each
# session's command list is read (GET /api/v1/sessions/{id}/commands?limit=50, one after another).
# Prints each broker's and nats-server's resident size before, its peak during the commands and
# during the lists, and its CPU time (the agents' and the client's too), the output bytes moved,
# the wall time and the growth of JetStream's store.
# See benches/README.md, "Broker memory under large outputs".
#
# Starts the local stack with deploy/local/up.sh (which always lives in .lr/dev/ of this checkout)
# and one agent per bench device, spread over the three brokers; stops and removes all of it on
# exit. Every command's output is written to the audit log: allow BENCH_SESSIONS x BENCH_COMMANDS
# x 3 MiB of free disk under .lr/ (30 GiB for the full run).
#
# Usage: benches/output_memory.sh [--json]
# Environment: BENCH_SESSIONS (10), BENCH_COMMANDS (1000 per session), BENCH_OUTPUT_BYTES
# (3137536: each output's size, just under 3 MiB), BENCH_MAX_SECS (1800: the commands stop then
# and the run is reported as cut short), LR_PORT_BASE (22000: NATS +4222, Raft +7401..3, agents
# +7501..3, API +7601..3).
set -euo pipefail

json=0
for arg in "$@"; do
    case "$arg" in
    --json) json=1 ;;
    -h | --help)
        sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "output_memory.sh: unknown option $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

sessions=${BENCH_SESSIONS:-10}
commands=${BENCH_COMMANDS:-1000}
output_bytes=${BENCH_OUTPUT_BYTES:-3137536}
max_secs=${BENCH_MAX_SECS:-1800}
base=${LR_PORT_BASE:-22000}
ssh_port=$((base + 2222))
# The first bench device; bench_stack_up starts its agent (on broker 3).
device=mem-01
script=output_memory.sh
# What one result may carry (MAX_OUTPUT_BYTES in agent/src/executor.rs).
max_output=$((3 * 1024 * 1024))
# Length of each file name in the listed folder (the most a name may be is 255).
name_len=200

if ! [[ "$sessions" =~ ^[1-9][0-9]?$ ]] || ! [[ "$commands" =~ ^[1-9][0-9]*$ ]] ||
    [ "$commands" -gt 100000 ] || ! [[ "$max_secs" =~ ^[1-9][0-9]*$ ]] ||
    ! [[ "$output_bytes" =~ ^[1-9][0-9]*$ ]] || [ "$output_bytes" -gt "$max_output" ] ||
    [ "$output_bytes" -lt 100000 ]; then
    echo "$script: BENCH_SESSIONS is 1 to 99, BENCH_COMMANDS 1 to 100000, BENCH_MAX_SECS a whole number, BENCH_OUTPUT_BYTES 100000 to $max_output" >&2
    exit 2
fi

. "$(dirname "$0")/stack.sh"
bench_check_dev
bench_check_ports
bench_build load-bench
bench="$bin/load-bench"

echo "$script: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the stack; one agent per bench device: mem-01 on broker 3 (bench_stack_up), then
# mem-02 on 1, mem-03 on 2, mem-04 on 3, ...
bench_stack_up
devices=("$device")
agent_pids=()
stop_bench_agents() {
    local pid
    for pid in "${agent_pids[@]}"; do kill "$pid" 2>/dev/null; done
    for pid in "${agent_pids[@]}"; do wait "$pid" 2>/dev/null; done
}
bench_on_exit+=(stop_bench_agents)
for i in $(seq 2 "$sessions"); do
    id=$(printf 'mem-%02d' "$i")
    node=$(((i + 1) % 3 + 1))
    mkdir -p "$work/$id"
    enrolment=$(bench_lr_admin enrolment create --description "$script")
    LR_ENROL_TOKEN=$(bench_json_field token <<<"$enrolment") "$bin/lr-agent" enroll \
        --broker "127.0.0.1:$((base + 7500 + node))" --server-name localhost \
        --ca-fingerprint "$(bench_json_field ca_fingerprint <<<"$enrolment")" \
        --device-id "$id" --state-dir "$work/$id/state" --config "$work/$id/agent.toml" >/dev/null
    "$bin/lr-agent" --config "$work/$id/agent.toml" >>"$work/$id/agent.log" 2>&1 &
    agent_pids+=($!)
    devices+=("$id")
done

# ---- one analyst per session (the tenant's session limit raised to fit them), each with a token
bench_lr_admin tenant update demo --max-sessions $((sessions + 5)) >/dev/null
(umask 077 && : >"$work/analysts")
for i in $(seq 1 "$sessions"); do
    user=$(printf 'mem-analyst-%02d' "$i")
    bench_lr_admin user create "$user" --role responder-basic --role responder-advanced >/dev/null
    user_token=$(bench_lr_admin token create "$user" --description "$script" 2>/dev/null |
        bench_json_field token)
    [ -n "$user_token" ] || { echo "$script: no token for $user" >&2; exit 1; }
    echo "${devices[$((i - 1))]} $user_token" >>"$work/analysts"
done
first_token=$(head -n 1 "$work/analysts" | cut -d' ' -f2)

# ---- the listed folder: empty files with long names, as many as make an output of
# BENCH_OUTPUT_BYTES (measured through the product: `dir` on mem-01)
folder="$work/listed"
mkdir -p "$folder"
pad=$(printf '%*s' $((name_len - 6)) '' | tr ' ' x)
files=0
# `grow_to N`: the folder holds files 1..N.
grow_to() {
    if [ "$1" -gt "$files" ]; then
        seq -f "$folder/%05g-$pad" $((files + 1)) "$1" | xargs touch
    else
        seq -f "$folder/%05g-$pad" $(($1 + 1)) "$files" | xargs rm -f
    fi
    files=$1
}
size_now() {
    "$bench" output-size --url "$api_url" --ca "$ca" --token "$first_token" --device "$device" \
        --command-line "dir $folder"
}
empty=$(size_now)
grow_to 1000
per_file=$((($(size_now) - empty) / 1000))
target=$(((output_bytes - empty) / per_file))
if [ "$target" -gt 10000 ]; then
    echo "$script: $target files would be needed, more than dir lists (10000); lower BENCH_OUTPUT_BYTES" >&2
    exit 1
fi
grow_to "$target"
size=$(size_now)
for _ in $(seq 1 20); do
    [ "$size" -gt "$output_bytes" ] || break
    grow_to $((files - (size - output_bytes) / per_file - 1))
    size=$(size_now)
done
if [ "$size" -gt "$output_bytes" ]; then
    echo "$script: cannot size the folder for an output of $output_bytes bytes (now $size)" >&2
    exit 1
fi
echo "$script: $folder holds $files files of $name_len-character names: \`dir\` answers $size bytes (one result may carry $max_output)"

# ---- the run
declare -A pids=()
while read -r pid name; do pids[$name]=$pid; done <"$dev/pids"
watch=()
for name in lr-broker-1 lr-broker-2 lr-broker-3 nats-server; do
    watch+=(--watch "$name=${pids[$name]}")
done
for pid in "$agent_pid" "${agent_pids[@]}"; do watch+=(--watch "bench agents=$pid"); done
watch+=(--watch "load-bench (client)=self" --clock-ticks "$(getconf CLK_TCK)")
node_url() { echo "https://localhost:$((base + 7600 + $1))"; }
store="$dev/data-$base/nats"
store_before=$(du -sb "$store" | cut -f1)
json_args=()
[ "$json" = 1 ] && json_args=(--json)
status=0
# Session i (from 0) goes through broker (i + 1) mod 3 + 1: never the broker its device dials.
timeout --foreground $((max_secs + 900)) "$bench" outputs \
    --urls "$(node_url 2),$(node_url 3),$(node_url 1)" --ca "$ca" --analysts "$work/analysts" \
    --command-line "dir $folder" --commands "$commands" --max-secs "$max_secs" \
    "${watch[@]}" "${json_args[@]}" || status=$?
store_after=$(du -sb "$store" | cut -f1)
echo
echo "$script: JetStream's store grew by $(((store_after - store_before) >> 20)) MiB (from $((store_before >> 20)) MiB); load average now $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$status" != 0 ]; then
    echo "$script: load-bench exited with $status; the last lines of the brokers' logs:" >&2
    for id in 1 2 3; do tail -n 5 "$dev/logs/broker-$id.log" >&2; done
    exit "$status"
fi
