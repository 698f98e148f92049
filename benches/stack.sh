# Shared by the benchmark scripts (sourced, not run): the local stack of deploy/local/up.sh plus a
# second agent for a bench device that dials broker 3 only, a throwaway sshd on loopback, and
# `bench_cleanup`, which stops and removes all of it.
#
# The caller sets `set -euo pipefail` and these before sourcing: `script` (its name, for messages),
# `base` (LR_PORT_BASE), `device` (the bench device's id), `ssh_port`. Sourcing sets `root`, `dev`
# and `bin`, makes the temp dir `work` and installs `bench_cleanup` as the EXIT trap.

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
dev="$root/.lr/dev"
bin="${CARGO_TARGET_DIR:-$root/target}/release"
# Bound on the stack's start (its build is done before).
up_timeout=300

# up.sh cannot be pointed elsewhere than .lr/dev/: never touch a stack that is running there, and
# start from fresh data for our port base (up.sh keeps one data-<base> folder per port base), so
# that everything the run leaves can be removed. Checked again just before up.sh.
bench_check_dev() {
    if [ -s "$dev/pids" ]; then
        echo "$script: a local stack is running (see $dev/pids); stop it with deploy/local/down.sh first" >&2
        exit 1
    fi
    if [ -e "$dev/data-$base" ]; then
        echo "$script: $dev/data-$base holds a stack's data; remove it, or pick another LR_PORT_BASE" >&2
        exit 1
    fi
}

bench_check_ports() {
    local port
    for port in $((base + 4222)) $((base + 7401)) $((base + 7402)) $((base + 7403)) \
        $((base + 7501)) $((base + 7502)) $((base + 7503)) \
        $((base + 7601)) $((base + 7602)) $((base + 7603)) "$ssh_port"; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$script: 127.0.0.1:$port is in use; pick another LR_PORT_BASE / BENCH_SSH_PORT" >&2
            exit 1
        fi
    done
}

# Installs openssh-server and -client with apt if sshd, ssh, scp or ssh-keygen is missing (root).
bench_need_ssh() {
    if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null && command -v scp >/dev/null &&
        command -v ssh-keygen >/dev/null; then
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        echo "$script: sshd is not installed; run as root, or apt-get install openssh-server openssh-client" >&2
        exit 1
    fi
    # Keep the package from starting a system sshd on port 22 (the usual policy-rc.d switch).
    local policy="" status=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod +x "$policy"
    fi
    timeout 600 apt-get update && DEBIAN_FRONTEND=noninteractive timeout 600 \
        apt-get install -y --no-install-recommends openssh-server openssh-client || status=$?
    [ -z "$policy" ] || rm -f "$policy"
    [ "$status" -eq 0 ] || exit "$status"
}

# Builds the product as up.sh does (built together with the benches, features would unify
# differently and up.sh would rebuild), then the given bench binaries.
bench_build() {
    echo "$script: building (release)"
    cargo build --release --locked --bin lr-broker --bin lr-agent --bin lr
    local args=() name
    for name in "$@"; do args+=(--bin "$name"); done
    cargo build --release --locked -p benches "${args[@]}"
}

work=$(mktemp -d -t "${script%.sh}-XXXXXX")
dev_existed=0
[ -d "$dev" ] && dev_existed=1
lr_existed=0
[ -d "$root/.lr" ] && lr_existed=1
agent_state_existed=0
[ -e "$dev/agent-state" ] && agent_state_existed=1
stack_started=0
# Set once a stack was started in this run (it may have been stopped since: bench_stack_down).
stack_used=0
agent_pid=""
sshd_pid=""
run_sshd_made=0
# Commands the caller adds to run first on exit (e.g. closing an ssh ControlMaster).
bench_on_exit=()

bench_cleanup() {
    set +e
    local step
    for step in "${bench_on_exit[@]}"; do eval "$step"; done
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
        rm -rf "$dev/data-$base"
        # up.sh's agent keeps its fencing state outside data-<base>: a stale one would refuse the
        # lower tokens of a fresh cluster, so it goes too unless it was there before.
        [ "$agent_state_existed" = 1 ] || rm -rf "$dev/agent-state"
    fi
    if [ "$stack_used" = 1 ] && [ "$dev_existed" = 0 ]; then
        rm -rf "$dev"
        [ "$lr_existed" = 1 ] || rmdir "$root/.lr" 2>/dev/null
    fi
    rm -rf "$work"
}
trap bench_cleanup EXIT
trap 'exit 130' INT TERM

# A string field of the JSON object on stdin.
bench_json_field() {
    sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -n 1
}

# Starts up.sh's stack (NATS, three brokers, its agent for this machine), then the agent for
# `device`, whose config lists only broker 3. Sets `api_url`, `ca` and `token` (analyst-a's).
bench_stack_up() {
    bench_check_dev
    stack_started=1
    stack_used=1
    LR_PORT_BASE=$base timeout --foreground "$up_timeout" deploy/local/up.sh --detach
    api_url=$(. "$dev/env" && echo "$LR_API_URL")
    ca="$dev/certs/cluster-ca.pem"
    token=$(. "$dev/env" && echo "$LR_TOKEN")

    bench_agent_start
}

# Enrols the bench device (allowed again first when an earlier call enrolled it) and starts its
# agent, which dials broker 3 only. Needs `api_url`, `ca` (set by bench_stack_up).
bench_agent_start() {
    local enrolment
    bench_lr_admin device allow-reenrolment "$device" >/dev/null 2>&1 || true
    enrolment=$(bench_lr_admin enrolment create --description "$script")
    LR_ENROL_TOKEN=$(bench_json_field token <<<"$enrolment") "$bin/lr-agent" enroll \
        --broker "127.0.0.1:$((base + 7503))" --server-name localhost \
        --ca-fingerprint "$(bench_json_field ca_fingerprint <<<"$enrolment")" \
        --device-id "$device" --state-dir "$work/agent-state" --config "$work/agent.toml" >/dev/null
    "$bin/lr-agent" --config "$work/agent.toml" >>"$work/agent.log" 2>&1 &
    agent_pid=$!
}

# `lr --tenant demo admin ARGS` as the platform admin up.sh made, JSON out.
bench_lr_admin() {
    LR_API_URL=$api_url LR_CA_CERT=$ca LR_CONFIG=/dev/null LR_OUTPUT=json \
        LR_TOKEN=$(. "$dev/env" && echo "$LR_ADMIN_TOKEN") "$bin/lr" --tenant demo admin "$@"
}

# Stops the stack and the bench agent and removes their data (as on exit), so that
# bench_stack_up can start a fresh stack in the same run, configured otherwise.
bench_stack_down() {
    bench_agent_stop
    if [ "$stack_started" = 1 ]; then
        deploy/local/down.sh
        rm -rf "$dev/data-$base"
        [ "$agent_state_existed" = 1 ] || rm -rf "$dev/agent-state"
        stack_started=0
    fi
    # The new cluster's tokens start low again: the agent's old fencing state would refuse them.
    rm -rf "$work/agent-state" "$work/agent.toml"
}

# Builds `otlp-sink`, the span receiver of runs with trace export on.
bench_build_sink() {
    cargo build --release --locked -p testkit --features otlp --bin otlp-sink
}

# Stops the bench device's agent.
bench_agent_stop() {
    if [ -n "$agent_pid" ]; then
        kill "$agent_pid" 2>/dev/null || true
        wait "$agent_pid" 2>/dev/null || true
        agent_pid=""
    fi
}

# Starts a throwaway sshd on 127.0.0.1:$ssh_port that lets in one key, and waits until it answers.
# Sets `ssh_opts`, the ssh options that log in with that key.
bench_sshd_start() {
    mkdir -p "$work/ssh"
    ssh-keygen -q -t ed25519 -N '' -C "$script-host" -f "$work/ssh/host_key"
    ssh-keygen -q -t ed25519 -N '' -C "$script-client" -f "$work/ssh/client_key"
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
# scp speaks SFTP since OpenSSH 9.0.
Subsystem sftp internal-sftp
CONF
    # bash, run by sshd as a top-level shell (SHLVL below 2), sources ~/.bashrc even for
    # `ssh host cmd`; what that costs depends on the machine (a `pyenv init` there adds ~150 ms),
    # so by default it is skipped: SHLVL=1 makes the login shell a second-level one.
    # BENCH_SSH_RC=1 keeps it.
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
        -o LogLevel=ERROR -i "$work/ssh/client_key")
    local _
    for _ in $(seq 1 50); do
        if ! kill -0 "$sshd_pid" 2>/dev/null; then
            echo "$script: sshd exited at start:" >&2
            cat "$work/sshd.log" >&2
            exit 1
        fi
        timeout 5 ssh "${ssh_opts[@]}" -p "$ssh_port" -o ConnectTimeout=2 root@127.0.0.1 true 2>/dev/null &&
            return
        sleep 0.2
    done
    echo "$script: sshd on 127.0.0.1:$ssh_port does not let the bench key in; its log:" >&2
    cat "$work/sshd.log" >&2
    exit 1
}
