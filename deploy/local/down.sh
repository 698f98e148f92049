#!/usr/bin/env bash
# Stops everything deploy/local/up.sh started, and waits until it is gone.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
pids="$root/.lr/dev/pids"
[ -f "$pids" ] || { echo "down.sh: nothing to stop"; exit 0; }

# Agent first, then brokers, NATS last: each drains towards what is still running.
tac "$pids" | while read -r pid name; do
  kill -TERM "$pid" 2>/dev/null || true
done
deadline=$((SECONDS + 20))
while read -r pid name; do
  while kill -0 "$pid" 2>/dev/null; do
    if [ $SECONDS -ge $deadline ]; then
      echo "down.sh: $name ($pid) did not stop; killing it" >&2
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
done < "$pids"
: > "$pids"
echo "down.sh: stopped"
