#!/usr/bin/env bash
# Round trip of a trivial command through the analyst API (API on node 1, agent on node 3), next to
# a raw NATS request-reply on the same nats-server (the floor) and to `ssh` to localhost over a
# persistent ControlMaster connection running `ls /` (what an analyst would otherwise use).
# Prints p50/p99 of each and the ratios. See benches/README.md, "Command round trip".
#
# Starts the local stack with deploy/local/up.sh (which always lives in .lr/dev/ of this checkout),
# a second agent for the device `bench-dev` that dials only broker 3, and a throwaway sshd on
# 127.0.0.1; stops and removes all of it on exit. Installs openssh-server/-client if missing (root).
#
# With --traces, the API is then measured once more on a fresh stack whose brokers and bench agent
# export their spans (OTLP/gRPC) to an `otlp-sink` on 127.0.0.1, and the overhead is printed.
#
# Usage: benches/command_rtt.sh [--json] [--traces]
# Environment: BENCH_COUNT (1000 measured commands per target), BENCH_WARMUP (50),
# LR_PORT_BASE (20000: NATS +4222, Raft +7401..3, agents +7501..3, API +7601..3, sink +4317),
# BENCH_SSH_PORT (LR_PORT_BASE + 2222), BENCH_SSH_RC=1 (let the remote bash read ~/.bashrc).
set -euo pipefail

json=0
traces=0
for arg in "$@"; do
    case "$arg" in
    --json) json=1 ;;
    --traces) traces=1 ;;
    -h | --help)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "command_rtt.sh: unknown option $arg (try --help)" >&2
        exit 2
        ;;
    esac
done

count=${BENCH_COUNT:-1000}
warmup=${BENCH_WARMUP:-50}
base=${LR_PORT_BASE:-20000}
ssh_port=${BENCH_SSH_PORT:-$((base + 2222))}
device=bench-dev
script=command_rtt.sh
# Bound on each measured run.
run_timeout=900

. "$(dirname "$0")/stack.sh"
bench_check_dev
bench_check_ports
bench_need_ssh
bench_build command-bench
bench="$bin/command-bench"
sink_port=$((base + 4317))
if [ "$traces" = 1 ]; then
    bench_build_sink
    if (exec 3<>"/dev/tcp/127.0.0.1/$sink_port") 2>/dev/null; then
        echo "$script: 127.0.0.1:$sink_port is in use; pick another LR_PORT_BASE" >&2
        exit 1
    fi
fi

echo "$script: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the stack, with the bench agent on broker 3 only; a throwaway sshd and one ControlMaster
# connection to it
bench_stack_up
bench_sshd_start
mux=(-F /dev/null -S "$work/ssh/mux" -p "$ssh_port")
timeout 10 ssh "${ssh_opts[@]}" -p "$ssh_port" -o ControlMaster=yes -o ControlPath="$work/ssh/mux" \
    -o ControlPersist=no -fN root@127.0.0.1
bench_on_exit+=('ssh "${mux[@]}" -O exit root@127.0.0.1 >/dev/null 2>&1')
ssh "${mux[@]}" -O check root@127.0.0.1 2>/dev/null ||
    { echo "$script: the ControlMaster connection is not up" >&2; exit 1; }

# ---- the three measurements, one after another (never together)
# run NAME MODE ARGS: one measurement, its JSON line kept in $work/NAME.out.
run() {
    local name=$1 mode=$2
    shift 2
    echo
    echo "== $name"
    # --foreground: stay in this process group, so Ctrl-C reaches the bench (which then ends its
    # session) at once.
    timeout --foreground "$run_timeout" "$bench" "$mode" --count "$count" --warmup "$warmup" --json "$@" |
        tee "$work/$name.out" | grep -v '^{'
}
run nats nats --url "nats://127.0.0.1:$((base + 4222))" --ca "$ca" \
  --cert "$dev/certs/broker-1.pem" --key "$dev/certs/broker-1.key"
run_api() {
    run "$1" api --url "$api_url" --ca "$ca" --token "$token" --device "$device" --expect-node 3 \
        --label "$1" ||
        { echo "command_rtt.sh: the bench agent's log:" >&2; tail -n 20 "$work/agent.log" >&2; exit 1; }
}
run_api api
run ssh ssh -- ssh -o BatchMode=yes "${mux[@]}" root@127.0.0.1 ls /
outs=("$work/nats.out" "$work/api.out" "$work/ssh.out")

if [ "$traces" = 1 ]; then
    # ---- the API again on a fresh stack whose brokers (and up.sh's agent) and the bench agent
    # export every span to otlp-sink: the same configuration, plus [tracing] otlp_endpoint
    echo
    echo "== restarting the stack with trace export to 127.0.0.1:$sink_port"
    bench_stack_down
    "$bin/otlp-sink" --listen "127.0.0.1:$sink_port" >"$work/sink.out" 2>"$work/sink.log" &
    sink_pid=$!
    bench_on_exit+=('kill "$sink_pid" 2>/dev/null; wait "$sink_pid" 2>/dev/null')
    export LR_TRACING__OTLP_ENDPOINT="http://127.0.0.1:$sink_port"
    bench_stack_up
    unset LR_TRACING__OTLP_ENDPOINT
    run_api api-traced
    # Spans still queued leave within the batch delay (5 s); then the sink says what it got.
    bench_stack_down
    kill "$sink_pid"
    wait "$sink_pid" 2>/dev/null || true
    cat "$work/sink.out"
    outs+=("$work/api-traced.out")
fi

echo
echo "== command round trip, ms (load average now $(cut -d' ' -f1-3 /proc/loadavg))"
"$bench" compare "${outs[@]}"
if [ "$json" = 1 ]; then
    cat "${outs[@]}" | grep '^{'
fi
