#!/usr/bin/env bash
# Crash consistency: one instance runs uninterrupted; another is killed with SIGKILL at
# random points and restarted each time. At the end both state stores must be byte-identical
# (inspect --dump --raw), with every input offset processed exactly once.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir

N=150000
mock_start --partitions 4
"$STREAMSEG" gen --users 20000 --events $N --seed 3 --bad-share 0.002 --format avro \
  --brokers "$BOOTSTRAP" --topic shop.events 2>/dev/null || fail "gen failed"

# Reference: uninterrupted.
# The data path's exactly-once: the model stages are off, since what they write depends on
# the cycle boundaries, which differ between these runs by design (time-based cycles, kills).
# test_segments / test_churn cover the models' restarts with count-bounded cycles.
NO_MODELS=(-X segments.k=0 -X churn.enabled=false)
run_streamseg ref "$SSEG_TMP/ref" "${NO_MODELS[@]}"
wait_processed "$SSEG_TMP/ref" $N 120 || fail "reference run incomplete"
stop_streamseg "$RUN_PID" 10

# Crashing run: SIGKILL at random moments, restart each time. A small commit interval makes
# kills land between and inside cycles.
RANDOM=42
for i in 1 2 3 4 5; do
  run_streamseg crash "$SSEG_TMP/crash" "${NO_MODELS[@]}" -X commit.interval.ms=50 \
    -X commit.max.events=7000
  sleep "0.$((RANDOM % 9 + 1))"
  kill -KILL "$RUN_PID" 2>/dev/null || true
  wait "$RUN_PID" 2>/dev/null || true
  echo "kill $i at $(offsets_total "$SSEG_TMP/crash") committed records"
done
run_streamseg crash "$SSEG_TMP/crash" "${NO_MODELS[@]}"
wait_processed "$SSEG_TMP/crash" $N 120 || fail "crashed run did not finish after restart"
stop_streamseg "$RUN_PID" 10

"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/ref" --dump --raw >"$SSEG_TMP/ref.dump"
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/crash" --dump --raw >"$SSEG_TMP/crash.dump"
users=$(wc -l <"$SSEG_TMP/ref.dump")
[ "$users" -gt 1000 ] || fail "reference state has only $users users"
cmp -s "$SSEG_TMP/ref.dump" "$SSEG_TMP/crash.dump" ||
  fail "state after crashes differs from the uninterrupted run ($(diff "$SSEG_TMP/ref.dump" "$SSEG_TMP/crash.dump" | grep -c '^<') users differ)"
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/ref" --offsets >"$SSEG_TMP/ref.off"
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/crash" --offsets >"$SSEG_TMP/crash.off"
cmp -s <(sed 's/"watermark_ms":[0-9]*//g' "$SSEG_TMP/ref.off") <(sed 's/"watermark_ms":[0-9]*//g' "$SSEG_TMP/crash.off") ||
  fail "offsets/counters differ: $(cat "$SSEG_TMP/ref.off") vs $(cat "$SSEG_TMP/crash.off")"
mock_stop
echo "PASS crash: $users users byte-identical after 5 SIGKILLs"
