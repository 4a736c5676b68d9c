#!/usr/bin/env bash
# Local Prefect for the LAMP flows, bound to 127.0.0.1, state in $PREFECT_HOME (default .prefect/):
#   scripts/prefect_local.sh up       server (background, pid file) -> pool "lamp-local" -> global concurrency
#                                     limit "gpu" -> deploy prefect.yaml -> the process workers (pid files)
#   scripts/prefect_local.sh workers  only the process workers (server, pool and deployments already up)
#   scripts/prefect_local.sh down     workers (SIGINT), then server (SIGINT), by PID; waits for them to exit
# Settings (environment): PREFECT_PORT (4200), LAMP_GPUS (slots of the "gpu" limit, default 1),
# LAMP_WORKERS (process workers, default 1):
#   1      one worker "lamp-worker-0" that runs every flow (the motions of a dispatch=deployment run as
#          parallel subprocesses; GPU stages take turns on the "gpu" limit);
#   N > 1  one worker per GPU: "lamp-worker-i" with CUDA_VISIBLE_DEVICES=i polls only the work queue
#          "motions" (the `lamp-motion` deployment, prefect.yaml) and runs one motion at a time (--limit 1),
#          so the motions spread over the GPUs; plus "lamp-orchestrator" for the other flows (queue
#          "default": lamp-all-motions, ablations, compare), so a parent waiting for its motions never
#          holds a GPU worker.
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

# Run a command with SIGINT at its default action. A shell started in the background (nohup, CI
# runners, `make &`) passes SIGINT down as *ignored*, bash cannot undo that for its children, and a
# Python process that starts with SIGINT ignored never raises KeyboardInterrupt: the server and the
# workers would then ignore the SIGINT that `down` sends. An array, not a function: `"${SIGINT_DEFAULT[@]}"
# cmd &` stays one simple command, so $! (and, through exec, the pid file) is the Prefect process itself.
SIGINT_DEFAULT=(python3 -c 'import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execvp(sys.argv[1], sys.argv[1:])')

stop_pid() {  # stop_pid <pid file> <name>: SIGINT, wait up to 30 s, then SIGTERM
  local file=$1 name=$2 pid
  [[ -f $file ]] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    echo "stopping $name (pid $pid)"
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    if kill -0 "$pid" 2>/dev/null; then
      echo "$name still running 30 s after SIGINT: SIGTERM"
      kill -TERM "$pid" 2>/dev/null || true; sleep 2
    fi
  fi
  rm -f "$file"
}

up() {
  if [[ -f $RUN/server.pid ]] && kill -0 "$(cat "$RUN/server.pid")" 2>/dev/null; then
    echo "server already running (pid $(cat "$RUN/server.pid"))"
  else
    set -m  # job control: see start_worker
    "${SIGINT_DEFAULT[@]}" "$BIN" server start --host 127.0.0.1 --port "$PORT" </dev/null >"$RUN/server.log" 2>&1 &
    echo $! >"$RUN/server.pid"
    set +m
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
  workers
  echo "export PREFECT_API_URL=$PREFECT_API_URL"
}

start_worker() {  # start_worker <id> [env assignments...] -- <worker start args...>: background, pid file
  local id=$1 pidf=$RUN/worker-$1.pid
  shift
  if [[ -f $pidf ]] && kill -0 "$(cat "$pidf")" 2>/dev/null; then echo "worker $id already running"; return 0; fi
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  # job control on: without it a background job of this (non-interactive) shell ignores SIGINT, and a
  # Prefect worker then ignores the SIGINT (and the SIGTERM it turns into SIGINT) that `down` sends;
  # SIGINT_DEFAULT: the same when this shell itself was started with SIGINT ignored
  set -m
  "${SIGINT_DEFAULT[@]}" env ${envs[@]+"${envs[@]}"} "$BIN" worker start --pool "$POOL" "$@" </dev/null >"$RUN/worker-$id.log" 2>&1 &
  echo $! >"$pidf"
  set +m
  echo "worker $id started (pid $!, log $RUN/worker-$id.log)"
}

workers() {
  local n=${LAMP_WORKERS:-1}
  if (( n > 1 )); then
    start_worker orchestrator -- --name lamp-orchestrator --work-queue default
    for w in $(seq 0 $((n - 1))); do
      start_worker "$w" "CUDA_VISIBLE_DEVICES=$w" -- --name "lamp-worker-$w" --work-queue motions --limit 1
    done
  elif (( n == 1 )); then
    start_worker 0 -- --name lamp-worker-0
  fi
}

down() {
  for f in "$RUN"/worker-*.pid; do [[ -e $f ]] && stop_pid "$f" "worker $(basename "$f" .pid)"; done
  stop_pid "$RUN/server.pid" server
  echo "stopped"
}

case "${1:-}" in
  up) up ;;
  workers) workers ;;
  down) down ;;
  *) echo "usage: $0 up|workers|down" >&2; exit 2 ;;
esac
