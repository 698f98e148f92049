#!/usr/bin/env bash
# Starts a local live response cluster on this machine: one nats-server (JetStream), three broker
# nodes and an agent for this machine, then opens the console on it (unless --detach).
# Trust as in production: a cluster CA for brokers and nats-server, an agent CA that issues the
# certificates devices get by enrolling (the local agent enrols with a token, like any device);
# nats-server admits only the brokers' certificates, over TLS, with broker permissions.
# Analysts are in the brokers' replicated directory, not in their configuration: the node that
# bootstraps the cluster writes the platform admin's token to its data folder, and up.sh uses it
# (with `lr admin`) to create tenants demo and acme, analysts a, b (demo) and c (acme), and a fresh
# token for each analyst on every run.
# Everything lives under .lr/dev/ (configs, certs, data, logs, pids); deploy/local/down.sh stops it.
set -euo pipefail

detach=0
profile=release
for arg in "$@"; do
  case "$arg" in
    --detach) detach=1 ;;
    --debug) profile=debug ;;
    -h|--help) echo "usage: deploy/local/up.sh [--detach] [--debug]"; exit 0 ;;
    *) echo "up.sh: unknown option $arg (try --help)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
dev="$root/.lr/dev"
if [ -f "$dev/pids" ] && [ -s "$dev/pids" ]; then
  echo "up.sh: a local cluster is already running (see $dev/pids); run deploy/local/down.sh first" >&2
  exit 1
fi
mkdir -p "$dev/logs" "$dev/certs"
: > "$dev/pids"

scripts/setup.sh
echo "up.sh: building ($profile)"
if [ "$profile" = release ]; then
  cargo build --release --locked --bin lr-broker --bin lr-agent --bin lr
else
  cargo build --locked --bin lr-broker --bin lr-agent --bin lr
fi
bin="${CARGO_TARGET_DIR:-$root/target}/$profile"

# Ports: NATS 14222, Raft 17401-3, agents 17501-3, API 17601-3 (LR_PORT_BASE moves them all).
# Raft data remembers peer addresses, so each port base keeps its own data folder.
base=${LR_PORT_BASE:-10000}
nats_port=$((base + 4222))
device=$(hostname | tr -c 'A-Za-z0-9_\n-' '-' | cut -c1-64)
device=${device:-localhost}

"$bin/lr-broker" dev-certs --out "$dev/certs" --brokers 3 >/dev/null

"$bin/lr-broker" nats-config --certs "$dev/certs" --brokers 3 \
  --listen "127.0.0.1:$nats_port" --store-dir "$dev/data-$base/nats" --sync always > "$dev/nats.conf"
nats-server -c "$dev/nats.conf" >"$dev/logs/nats.log" 2>&1 &
echo "$! nats-server" >> "$dev/pids"

members=""
for id in 1 2 3; do
  members="$members{ id = $id, addr = \"127.0.0.1:$((base + 7400 + id))\" }, "
done
for id in 1 2 3; do
  cat > "$dev/broker-$id.toml" <<CONF
node_id = $id
data_dir = "$dev/data-$base/broker-$id"
nats_url = "tls://localhost:$nats_port"

[raft]
listen = "127.0.0.1:$((base + 7400 + id))"
members = [${members%, }]
authority_key = "$dev/certs/authority.key"

[agents]
listen = "127.0.0.1:$((base + 7500 + id))"

[api]
listen = "127.0.0.1:$((base + 7600 + id))"

[tls]
cluster_ca = "$dev/certs/cluster-ca.pem"
agent_ca = "$dev/certs/agent-ca.pem"
agent_ca_key = "$dev/certs/agent-ca.key"
cert = "$dev/certs/broker-$id.pem"
key = "$dev/certs/broker-$id.key"
CONF
  "$bin/lr-broker" run --config "$dev/broker-$id.toml" >"$dev/logs/broker-$id.log" 2>&1 &
  echo "$! lr-broker-$id" >> "$dev/pids"
done

api_url=https://localhost:$((base + 7601))
ca_cert=$dev/certs/cluster-ca.pem
deadline=$((SECONDS + 60))
waited() {
  if [ $SECONDS -ge $deadline ]; then
    echo "up.sh: $1 within 60 s; logs are in $dev/logs" >&2
    exit 1
  fi
  sleep 0.5
}
# lr as up.sh runs it: this cluster, and no config file, tenant or output format of the user's.
lr_() {
  LR_API_URL=$api_url LR_CA_CERT=$ca_cert LR_CONFIG=/dev/null LR_TENANT= LR_OUTPUT=table \
    "$bin/lr" "$@"
}

# Every broker answers /healthz with ok (it knows a leader).
for id in 1 2 3; do
  until lr_ health --output json --api-url "https://localhost:$((base + 7600 + id))" 2>/dev/null |
    grep -q '"ok": *true'; do
    waited "broker $id did not become healthy"
  done
done

# The platform admin's token, from the node that bootstrapped the directory (owner-only; the file
# stays there for later runs).
admin_token=""
while [ -z "$admin_token" ]; do
  for file in "$dev/data-$base"/broker-*/bootstrap-admin-token; do
    if [ -s "$file" ]; then
      admin_token=$(tr -d '[:space:]' < "$file")
      break
    fi
  done
  [ -n "$admin_token" ] || waited "no broker wrote $dev/data-$base/broker-*/bootstrap-admin-token (data from an older version? remove $dev/data-$base)"
done
as_admin() { LR_TOKEN=$admin_token lr_ "$@"; }

# `ensure <show command> -- <create command>`: creates a tenant or user, unless a later run finds
# it there already (the create refused with exit 3, already_exists, and the show finds it): then
# answers 1. Any other failure stops up.sh.
ensure() {
  local show=() err code=0
  while [ "$1" != -- ]; do show+=("$1"); shift; done
  shift
  err=$(as_admin "$@" 2>&1 >/dev/null) || code=$?
  [ "$code" = 0 ] && return 0
  if [ "$code" = 3 ] && as_admin "${show[@]}" >/dev/null 2>&1; then
    return 1
  fi
  echo "up.sh: lr $*: $err" >&2
  exit 1
}
# `analyst <tenant> <user> <role>...`: the user with exactly these roles.
analyst() {
  local tenant=$1 user=$2 roles=()
  shift 2
  for role in "$@"; do roles+=(--role "$role"); done
  ensure --tenant "$tenant" admin user show "$user" -- \
    --tenant "$tenant" admin user create "$user" "${roles[@]}" ||
    as_admin --tenant "$tenant" admin user update "$user" "${roles[@]}" >/dev/null
}
# `token_for <tenant> <user>`: a new token for the user, alone on stdout (lr's note that it will
# not be shown again, which does not hold it, goes to a log).
token_for() {
  as_admin --tenant "$1" admin token create "$2" --description "deploy/local/up.sh" \
    2>"$dev/logs/lr-admin.log" || {
    echo "up.sh: cannot create a token for $2 (tenant $1): $(cat "$dev/logs/lr-admin.log")" >&2
    exit 1
  }
}

for tenant in demo acme; do
  ensure admin tenant show "$tenant" -- admin tenant create "$tenant" || true
done
analyst demo analyst-a responder-basic responder-advanced library-manager
analyst demo analyst-b responder-basic responder-advanced
analyst acme analyst-c responder-basic responder-advanced
token_a=$(token_for demo analyst-a)
token_b=$(token_for demo analyst-b)
token_c=$(token_for acme analyst-c)

# The agent for this machine enrols as any device does: a one-use token from tenant demo's admin,
# its key made by `lr-agent enroll` and kept in its state folder. Every run enrols it afresh (an
# earlier run's device id is allowed again first), so a stale certificate never stands in the way.
agent_state="$dev/data-$base/agent-state"
as_admin --tenant demo admin device allow-reenrolment "$device" >/dev/null 2>&1 || true
enrolment=$(as_admin --tenant demo --output json admin enrolment create \
  --description "deploy/local/up.sh" 2>"$dev/logs/lr-admin.log") || {
  echo "up.sh: cannot create an enrolment token: $(cat "$dev/logs/lr-admin.log")" >&2
  exit 1
}
json_field() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" <<<"$enrolment" | head -n 1; }
LR_ENROL_TOKEN=$(json_field token) "$bin/lr-agent" enroll \
  --broker "127.0.0.1:$((base + 7501))" --server-name localhost \
  --ca-fingerprint "$(json_field ca_fingerprint)" --device-id "$device" \
  --state-dir "$agent_state" --config "$dev/agent.toml" >"$dev/logs/enrol.log" 2>&1 || {
  echo "up.sh: the local agent could not enrol: $(cat "$dev/logs/enrol.log")" >&2
  exit 1
}
# It dials all three brokers (the config written names the one it enrolled through).
LR_BROKERS="127.0.0.1:$((base + 7501)),127.0.0.1:$((base + 7502)),127.0.0.1:$((base + 7503))" \
  "$bin/lr-agent" --config "$dev/agent.toml" >"$dev/logs/agent.log" 2>&1 &
echo "$! lr-agent" >> "$dev/pids"

# Tokens inside: readable by this user only.
rm -f "$dev/env"
(umask 077 && cat > "$dev/env" <<ENV
export LR_API_URL=$api_url
export LR_CA_CERT=$ca_cert
export LR_DEVICE=$device
export LR_BIN=$bin
export LR_TOKEN=$token_a
export LR_TOKEN_B=$token_b
export LR_TOKEN_C=$token_c
export LR_ADMIN_TOKEN=$admin_token
export PATH="$bin:\$PATH"
ENV
)

# Healthy: the agent's device is online, as analyst-a sees it.
until LR_TOKEN=$token_a lr_ --output json devices 2>/dev/null | grep -q "\"online\": *true"; do
  waited "the cluster did not become healthy"
done
echo "up.sh: cluster up; device $device online. Environment: source $dev/env"

if [ "$detach" = 0 ]; then
  . "$dev/env"
  exec "$bin/lr" connect "$device"
fi
