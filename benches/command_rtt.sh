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
# Usage: benches/command_rtt.sh [--json]
# Environment: BENCH_COUNT (1000 measured commands per target), BENCH_WARMUP (50),
# LR_PORT_BASE (20000: NATS +4222, Raft +7401..3, agents +7501..3, API +7601..3),
# BENCH_SSH_PORT (LR_PORT_BASE + 2222), BENCH_SSH_RC=1 (let the remote bash read ~/.bashrc).
set -euo pipefail

json=0
for arg in "$@"; do
    case "$arg" in
    --json) json=1 ;;
    -h | --help)
        sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
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
# Bounds: each measured run, and the stack's start (its build is done before).
run_timeout=900
up_timeout=300

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
dev="$root/.lr/dev"
bin="$root/target/release"

# up.sh cannot be pointed elsewhere than .lr/dev/: never touch a stack that is running there, and
# start from fresh data for our port base (up.sh keeps one data-<base> folder per port base), so
# that everything the run leaves can be removed. Checked again just before up.sh.
check_dev() {
    if [ -s "$dev/pids" ]; then
        echo "command_rtt.sh: a local stack is running (see $dev/pids); stop it with deploy/local/down.sh first" >&2
        exit 1
    fi
    if [ -e "$dev/data-$base" ]; then
        echo "command_rtt.sh: $dev/data-$base holds a stack's data; remove it, or pick another LR_PORT_BASE" >&2
        exit 1
    fi
}
check_dev
for port in $((base + 4222)) $((base + 7401)) $((base + 7402)) $((base + 7403)) \
    $((base + 7501)) $((base + 7502)) $((base + 7503)) \
    $((base + 7601)) $((base + 7602)) $((base + 7603)) "$ssh_port"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        echo "command_rtt.sh: 127.0.0.1:$port is in use; pick another LR_PORT_BASE / BENCH_SSH_PORT" >&2
        exit 1
    fi
done

if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null || ! command -v ssh-keygen >/dev/null; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "command_rtt.sh: sshd is not installed; run as root, or apt-get install openssh-server openssh-client" >&2
        exit 1
    fi
    # Keep the package from starting a system sshd on port 22 (the usual policy-rc.d switch).
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
    fi
    status=0
    timeout 600 apt-get update && DEBIAN_FRONTEND=noninteractive timeout 600 \
        apt-get install -y --no-install-recommends openssh-server openssh-client || status=$?
    [ -z "$policy" ] || rm -f "$policy"
    [ "$status" -eq 0 ] || exit "$status"
fi

echo "command_rtt.sh: building (release)"
# The same build as up.sh's (built together with the bench, features would unify differently and
# up.sh would rebuild), then the bench.
cargo build --release --locked --bin lr-broker --bin lr-agent --bin lr
cargo build --release --locked -p benches --bin command-bench
bench="$bin/command-bench"

work=$(mktemp -d -t command-rtt-XXXXXX)
dev_existed=0
[ -d "$dev" ] && dev_existed=1
lr_existed=0
[ -d "$root/.lr" ] && lr_existed=1
agent_state_existed=0
[ -e "$dev/agent-state" ] && agent_state_existed=1
stack_started=0
agent_pid=""
sshd_pid=""
run_sshd_made=0
ssh_master=0
cleanup() {
    set +e
    if [ "$ssh_master" = 1 ]; then
        ssh -F /dev/null -S "$work/ssh/mux" -O exit -p "$ssh_port" root@127.0.0.1 >/dev/null 2>&1
    fi
    if [ -n "$sshd_pid" ]; then
        kill "$sshd_pid" 2>/dev/null
        wait "$sshd_pid" 2>/dev/null
    fi
    [ "$run_sshd_made" = 1 ] && rmdir /run/sshd 2>/dev/null
    if [ -n "$agent_pid" ]; then
        kill "$agent_pid" 2>/dev/null
        wait "$agent_pid" 2>/dev/null
    fi
    if [ "$stack_started" = 1 ]; then
        deploy/local/down.sh
        rm -rf "$dev/data-$base" "$dev/certs/agent-$device.pem" "$dev/certs/agent-$device.key"
        # up.sh's agent keeps its fencing state outside data-<base>: a stale one would refuse the
        # lower tokens of a fresh cluster, so it goes too unless it was there before.
        [ "$agent_state_existed" = 1 ] || rm -rf "$dev/agent-state"
        if [ "$dev_existed" = 0 ]; then
            rm -rf "$dev"
            [ "$lr_existed" = 1 ] || rmdir "$root/.lr" 2>/dev/null
        fi
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "command_rtt.sh: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- the stack: NATS, three brokers, up.sh's own agent; then the bench agent on broker 3 only
check_dev
stack_started=1
LR_PORT_BASE=$base timeout --foreground "$up_timeout" deploy/local/up.sh --detach
api_url=$(. "$dev/env" && echo "$LR_API_URL")
ca="$dev/certs/ca.pem"
token=$(. "$dev/env" && echo "$LR_TOKEN")

# --brokers 0: no broker certificate; the CA up.sh made is kept.
"$bin/lr-broker" dev-certs --out "$dev/certs" --brokers 0 --agent "demo/$device" >/dev/null
cat >"$work/agent.toml" <<CONF
device_id = "$device"
tenant = "demo"
brokers = ["127.0.0.1:$((base + 7503))"]
state_dir = "$work/agent-state"

[tls]
ca_cert = "$ca"
cert = "$dev/certs/agent-$device.pem"
key = "$dev/certs/agent-$device.key"
CONF
"$bin/lr-agent" --config "$work/agent.toml" >"$work/agent.log" 2>&1 &
agent_pid=$!

# ---- a throwaway sshd on loopback, and one ControlMaster connection to it
mkdir -p "$work/ssh"
ssh-keygen -q -t ed25519 -N '' -C command-rtt-host -f "$work/ssh/host_key"
ssh-keygen -q -t ed25519 -N '' -C command-rtt-client -f "$work/ssh/client_key"
cp "$work/ssh/client_key.pub" "$work/ssh/authorized_keys"
cat >"$work/ssh/sshd_config" <<CONF
ListenAddress 127.0.0.1
Port $ssh_port
HostKey $work/ssh/host_key
PidFile $work/ssh/sshd.pid
AuthorizedKeysFile $work/ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
PrintMotd no
LogLevel ERROR
CONF
# bash, run by sshd as a top-level shell (SHLVL below 2), sources ~/.bashrc even for `ssh host cmd`;
# what that costs depends on the machine (a `pyenv init` there adds ~150 ms), so by default it is
# skipped: SHLVL=1 makes the login shell a second-level one. BENCH_SSH_RC=1 keeps it.
if [ "${BENCH_SSH_RC:-0}" != 1 ]; then
    echo "SetEnv SHLVL=1" >>"$work/ssh/sshd_config"
fi
if [ ! -d /run/sshd ]; then
    mkdir -p /run/sshd
    run_sshd_made=1
fi
/usr/sbin/sshd -D -e -f "$work/ssh/sshd_config" >"$work/sshd.log" 2>&1 &
sshd_pid=$!
ssh_opts=(-F /dev/null -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
    -o LogLevel=ERROR -i "$work/ssh/client_key" -p "$ssh_port")
for _ in $(seq 1 50); do
    if ! kill -0 "$sshd_pid" 2>/dev/null; then
        echo "command_rtt.sh: sshd exited at start:" >&2
        cat "$work/sshd.log" >&2
        exit 1
    fi
    timeout 5 ssh "${ssh_opts[@]}" -o ConnectTimeout=2 root@127.0.0.1 true 2>/dev/null && break
    sleep 0.2
done
timeout 10 ssh "${ssh_opts[@]}" -o ControlMaster=yes -o ControlPath="$work/ssh/mux" -o ControlPersist=no \
    -fN root@127.0.0.1
ssh_master=1
ssh -F /dev/null -S "$work/ssh/mux" -O check -p "$ssh_port" root@127.0.0.1 2>/dev/null ||
    { echo "command_rtt.sh: the ControlMaster connection is not up" >&2; exit 1; }

# ---- the three measurements, one after another (never together)
run() {
    local mode=$1
    shift
    echo
    echo "== $mode"
    # --foreground: stay in this process group, so Ctrl-C reaches the bench (which then ends its
    # session) at once.
    timeout --foreground "$run_timeout" "$bench" "$mode" --count "$count" --warmup "$warmup" --json "$@" |
        tee "$work/$mode.out" | grep -v '^{'
}
run nats --url "nats://127.0.0.1:$((base + 4222))"
run api --url "$api_url" --ca "$ca" --token "$token" --device "$device" --expect-node 3 ||
    { echo "command_rtt.sh: the bench agent's log:" >&2; tail -n 20 "$work/agent.log" >&2; exit 1; }
run ssh -- ssh -F /dev/null -o BatchMode=yes -S "$work/ssh/mux" -p "$ssh_port" root@127.0.0.1 ls /

echo
echo "== command round trip, ms (load average now $(cut -d' ' -f1-3 /proc/loadavg))"
"$bench" compare "$work/nats.out" "$work/api.out" "$work/ssh.out"
if [ "$json" = 1 ]; then
    cat "$work/nats.out" "$work/api.out" "$work/ssh.out" | grep '^{'
fi
