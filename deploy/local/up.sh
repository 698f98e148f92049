#!/usr/bin/env bash
# Starts a local live response cluster on this machine: one nats-server (JetStream), three broker
# nodes and an agent for this machine, then opens the console on it (unless --detach).
# Trust as in production: a cluster CA for brokers and nats-server, an agent CA for agents;
# nats-server admits only the brokers' certificates, over TLS, with broker permissions.
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

"$bin/lr-broker" dev-certs --out "$dev/certs" --brokers 3 --agent "demo/$device" >/dev/null

token() { head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n'; }
sha() { printf '%s' "$1" | sha256sum | cut -d' ' -f1; }
token_a=$(token); token_b=$(token); token_c=$(token)

"$bin/lr-broker" nats-config --certs "$dev/certs" --brokers 3 \
  --listen "127.0.0.1:$nats_port" --store-dir "$dev/data-$base/nats" > "$dev/nats.conf"
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
tokens = [
  { tenant = "demo", user = "analyst-a", token_sha256 = "$(sha "$token_a")" },
  { tenant = "demo", user = "analyst-b", token_sha256 = "$(sha "$token_b")" },
  { tenant = "acme", user = "analyst-c", token_sha256 = "$(sha "$token_c")" },
]

[tls]
cluster_ca = "$dev/certs/cluster-ca.pem"
agent_ca = "$dev/certs/agent-ca.pem"
cert = "$dev/certs/broker-$id.pem"
key = "$dev/certs/broker-$id.key"
CONF
  "$bin/lr-broker" run --config "$dev/broker-$id.toml" >"$dev/logs/broker-$id.log" 2>&1 &
  echo "$! lr-broker-$id" >> "$dev/pids"
done

cat > "$dev/agent.toml" <<CONF
device_id = "$device"
tenant = "demo"
brokers = ["127.0.0.1:$((base + 7501))", "127.0.0.1:$((base + 7502))", "127.0.0.1:$((base + 7503))"]
state_dir = "$dev/data-$base/agent-state"
# The lease authority's public key: the agent runs only orders under grants it signed.
authority_keys = ["$(cat "$dev/certs/authority.pub")"]

[tls]
ca_cert = "$dev/certs/cluster-ca.pem"
cert = "$dev/certs/agent-$device.pem"
key = "$dev/certs/agent-$device.key"
CONF
"$bin/lr-agent" --config "$dev/agent.toml" >"$dev/logs/agent.log" 2>&1 &
echo "$! lr-agent" >> "$dev/pids"

cat > "$dev/env" <<ENV
export LR_API_URL=https://localhost:$((base + 7601))
export LR_CA_CERT=$dev/certs/cluster-ca.pem
export LR_DEVICE=$device
export LR_BIN=$bin
export LR_TOKEN=$token_a
export LR_TOKEN_B=$token_b
export LR_TOKEN_C=$token_c
export PATH="$bin:\$PATH"
ENV

# Healthy: every broker knows a leader, and the agent's device is online.
. "$dev/env"
deadline=$((SECONDS + 60))
until "$bin/lr" --output json devices 2>/dev/null | grep -q "\"online\": *true"; do
  if [ $SECONDS -ge $deadline ]; then
    echo "up.sh: the cluster did not become healthy within 60 s; logs are in $dev/logs" >&2
    exit 1
  fi
  sleep 0.5
done
echo "up.sh: cluster up; device $device online. Environment: source $dev/env"

if [ "$detach" = 0 ]; then
  exec "$bin/lr" connect "$device"
fi
