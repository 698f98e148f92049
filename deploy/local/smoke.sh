#!/usr/bin/env bash
# Smoke test of the local stack, as a new user would run it: up.sh --detach, one command through
# the console (`lr exec ... processes -output json`), down.sh; then checks that the command saw
# this machine's processes and that nothing the stack started is still running.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
dev="$root/.lr/dev"
# Debug binaries are the ones the test suite already built.
profile_flag=${LR_SMOKE_PROFILE:---debug}

fail() { echo "smoke: FAIL: $*" >&2; exit 1; }
if [ -s "$dev/pids" ]; then
  fail "a local stack is already running ($dev/pids); stop it with deploy/local/down.sh first"
fi
# Only a stack this script started is stopped on exit.
trap '[ -f "$dev/pids.smoke" ] && deploy/local/down.sh >/dev/null 2>&1; rm -f "$dev/pids.smoke"' EXIT

LR_PORT_BASE=${LR_PORT_BASE:-21000} deploy/local/up.sh --detach "$profile_flag" || {
  cp "$dev/pids" "$dev/pids.smoke" 2>/dev/null || true
  fail "up.sh failed; logs are in $dev/logs"
}
cp "$dev/pids" "$dev/pids.smoke"
# shellcheck disable=SC1091
. "$dev/env"

out=$(timeout 120 lr exec "$LR_DEVICE" -- processes -output json) || fail "lr exec exited with $?"
agent_pid=$(awk '$2 == "lr-agent" {print $1}' "$dev/pids.smoke")
printf '%s' "$out" | python3 -c '
import json, sys
doc = json.load(sys.stdin)
procs = doc["output"]["processes"]
pids = {p["pid"] for p in procs}
assert int(sys.argv[1]) in pids, "the agent process is not in the list"
assert any("lr-broker" in (p.get("command_line") or "") for p in procs), "no broker process in the list"
print(f"smoke: lr exec listed {len(procs)} processes, the agent among them")
' "$agent_pid" || fail "unexpected output: $(printf '%s' "$out" | head -c 400)"

deploy/local/down.sh
while read -r pid name; do
  if kill -0 "$pid" 2>/dev/null; then fail "$name ($pid) still runs after down.sh"; fi
done < "$dev/pids.smoke"
rm -f "$dev/pids.smoke"
echo "smoke: ok"
