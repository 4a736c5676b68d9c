#!/usr/bin/env bash
# Local Prefect for the LAMP flows, bound to 127.0.0.1, state in $PREFECT_HOME (default .prefect/):
#   scripts/prefect_local.sh up     server (background, pid file) -> pool "lamp-local" -> global concurrency
#                                   limit "gpu" -> deploy prefect.yaml -> one process worker (pid file)
#   scripts/prefect_local.sh down   worker (SIGINT), then server (SIGINT), by PID; waits for both to exit
# Settings (environment): PREFECT_PORT (4200), LAMP_GPUS (slots of the "gpu" limit, default 1),
# LAMP_WORKERS (process workers, default 1; worker i gets CUDA_VISIBLE_DEVICES=i when LAMP_WORKERS > 1).
# Afterwards, in the same shell:  export PREFECT_API_URL=http://127.0.0.1:${PREFECT_PORT:-4200}/api
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export LAMP_ROOT=$ROOT
export PREFECT_HOME=${PREFECT_HOME:-$ROOT/.prefect}
export DO_NOT_TRACK=1 PREFECT_SERVER_ANALYTICS_ENABLED=false MLFLOW_DISABLE_TELEMETRY=true DVC_NO_ANALYTICS=1
PORT=${PREFECT_PORT:-4200}
export PREFECT_API_URL=http://127.0.0.1:$PORT/api
POOL=lamp-local
BIN=${PREFECT_BIN:-$(command -v prefect || echo "$ROOT/.venv/bin/prefect")}
RUN=$PREFECT_HOME/run
mkdir -p "$RUN"

stop_pid() {  # stop_pid <pid file> <name>: SIGINT, wait up to 30 s, then SIGTERM
  local file=$1 name=$2 pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    echo "stopping $name (pid $pid)"
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null || true; sleep 2; fi
  fi
  rm -f "$file"
}

up() {
  if [[ -f $RUN/server.pid ]] && kill -0 "$(cat "$RUN/server.pid")" 2>/dev/null; then
    echo "server already running (pid $(cat "$RUN/server.pid"))"
  else
    "$BIN" server start --host 127.0.0.1 --port "$PORT" >"$RUN/server.log" 2>&1 &
    echo $! >"$RUN/server.pid"
    echo "server starting (pid $!, log $RUN/server.log)"
  fi
  for i in $(seq 120); do
    if python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=2)' \
        "http://127.0.0.1:$PORT/api/health" >/dev/null 2>&1; then
      break
    fi
    if ! kill -0 "$(cat "$RUN/server.pid")" 2>/dev/null; then echo "server died; see $RUN/server.log" >&2; exit 1; fi
    [[ $i == 120 ]] && { echo "server not healthy after 60 s; see $RUN/server.log" >&2; exit 1; }
    sleep 0.5
  done
  echo "server healthy at $PREFECT_API_URL"
  "$BIN" work-pool inspect "$POOL" >/dev/null 2>&1 || "$BIN" work-pool create "$POOL" --type process
  "$BIN" global-concurrency-limit inspect gpu >/dev/null 2>&1 \
    || "$BIN" global-concurrency-limit create gpu --limit "${LAMP_GPUS:-1}"
  "$BIN" --no-prompt deploy --all
  local n=${LAMP_WORKERS:-1}
  for w in $(seq 0 $((n - 1))); do
    local pidf=$RUN/worker-$w.pid
    if [[ -f $pidf ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; then echo "worker $w already running"; continue; fi
    if (( n > 1 )); then
      CUDA_VISIBLE_DEVICES=$w "$BIN" worker start --pool "$POOL" --name "lamp-worker-$w" >"$RUN/worker-$w.log" 2>&1 &
    else
      "$BIN" worker start --pool "$POOL" --name "lamp-worker-$w" >"$RUN/worker-$w.log" 2>&1 &
    fi
    echo $! >"$pidf"
    echo "worker $w started (pid $!, log $RUN/worker-$w.log)"
  done
  echo "export PREFECT_API_URL=$PREFECT_API_URL"
}

down() {
  for f in "$RUN"/worker-*.pid; do [[ -e $f ]] && stop_pid "$f" "worker $(basename "$f" .pid)"; done
  stop_pid "$RUN/server.pid" server
  echo "stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
