#!/usr/bin/env bash
# Stop the test harness's SLURM (up.sh), by pid files, newest first. Leaves munged running (shared).
BASE=${BASE:-/tmp/slurm}
stop() { # pidfile
  [ -s "$1" ] || return 0
  local pid; pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid"
  for i in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.25; done
  echo "pid $pid ($1) did not stop" >&2
}
stop $BASE/slurmd.pid
stop $BASE/slurmctld.pid
stop $BASE/slurmdbd.pid
stop $BASE/dbrun/mariadb.pid
