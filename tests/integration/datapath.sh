# Helpers of the data-path integration tests (sourced after lib.sh).

# run_streamseg NAME STATE_DIR [extra -X args...]: starts `streamseg run` against $BOOTSTRAP in
# the background; its pid goes to RUN_PID, its log to $SSEG_TMP/NAME.log.
run_streamseg() {
  local name=$1 state=$2
  shift 2
  "$STREAMSEG" run -X "kafka.bootstrap.servers=$BOOTSTRAP" -X "kafka.group.id=$name" \
    -X "state.dir=$state" -X output.format=json -X commit.interval.ms=200 \
    -X progress.interval.ms=1000 -X http.listen=127.0.0.1:0 "$@" 2>>"$SSEG_TMP/$name.log" &
  RUN_PID=$!
  sseg_track_pid "$RUN_PID"
  echo "$SSEG_TMP/$name.log" >"$SSEG_TMP/pid.$RUN_PID.log"
}

# offsets_total STATE_DIR: processed + dead-lettered committed in the state (0 if none yet).
offsets_total() {
  "$STREAMSEG" inspect -X "state.dir=$1" --offsets 2>/dev/null |
    /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["processed"]+d["dead_lettered"])' 2>/dev/null ||
    echo 0
}

# wait_processed STATE_DIR N TIMEOUT_S: waits until N input records are committed.
wait_processed() {
  local state=$1 n=$2 timeout=$3 t=0 got=0
  local limit
  limit=$(awk -v t="$timeout" -v m="${SSEG_TIMEOUT_MULT:-1}" 'BEGIN{print int(t*m)}')
  while [ "$t" -lt "$limit" ]; do
    got=$(offsets_total "$state")
    [ "$got" -ge "$n" ] && return 0
    sleep 1
    t=$((t + 1))
  done
  echo "wait_processed: $got of $n records committed in $state after ${limit}s" >&2
  return 1
}

# stop_streamseg PID MAX_S: SIGTERM, expect exit 0 within MAX_S (scaled).
stop_streamseg() {
  local pid=$1 max=$2 t=0 limit
  limit=$(awk -v t="$max" -v m="${SSEG_TIMEOUT_MULT:-1}" 'BEGIN{print int(t*m*10)}')
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null && [ "$t" -lt "$limit" ]; do
    sleep 0.1
    t=$((t + 1))
  done
  if kill -0 "$pid" 2>/dev/null; then
    # what it was doing: its log and every thread's stack (a flake seen once in it_faults)
    local log
    log=$(cat "$SSEG_TMP/pid.$pid.log" 2>/dev/null || true)
    if [ -n "$log" ]; then
      echo "--- last lines of $log:" >&2
      tail -n 25 "$log" >&2 || true
    fi
    if command -v gdb >/dev/null; then
      echo "--- threads of pid $pid:" >&2
      timeout 30 gdb -p "$pid" -batch -ex 'thread apply all bt' 2>/dev/null | grep -E '^(Thread|#)' >&2 || true
    fi
    fail "streamseg (pid $pid) still running ${max}s after SIGTERM"
  fi
  local rc=0
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "streamseg exited $rc after SIGTERM (expected 0)"
}
