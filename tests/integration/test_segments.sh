#!/usr/bin/env bash
# Segmentation end to end against a separate mock-kafka (docs/segments.md). One input
# partition per story and count-bounded cycles (commit.max.events, commit.interval.ms=600000),
# so every cycle boundary is a function of the input.
#  a. generated shop (streamseg gen), Avro outputs decoded with python3-avro against
#     schemas/segment_change.avsc and segment_stats.avsc: each user's changes chain (first
#     previous null, then previous = the last segment), every stats set's sizes equal the
#     assignments replayed from the change stream up to its model version, and the dump's
#     segments are the users' last changes;
#  d. the same input in a run killed with SIGKILL at three points and restarted: the dump
#     (every user's profile, segments included) and the change events by id, with identical
#     content but for processed_ts, equal the uninterrupted run's;
#  b. flapping: two tight groups of returning users apart in recency and a user "j" between
#     them whose recency jitters across the boundary: without hysteresis (control) j flips
#     >= 10 times, with the default hysteresis at most once (segments_check.py flap);
#  c. drift: new users every cycle; the viewers' views shift mid-stream; their centre (from
#     the stats records) holds the share of old mass the half-life predicts after H and 3H
#     points, and at most 2^(-N/H) (segments_check.py drift).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir
CHECK="/usr/bin/python3 $HERE/segments_check.py"
T=$SSEG_TMP

# Every input topic with one partition (the mock would create unknown ones with 4).
mock_start --partitions 1 --topic e2e.events:1 --topic flap.events:1 --topic drift.events:1

# run_seg NAME GROUP STATE INPUT [-X ...]: a run on INPUT with count-bounded cycles, in
# consumer group GROUP (log GROUP.log); its outputs go to NAME.changes / NAME.stats /
# NAME.profiles. A restart after kill -9 takes a new group: the offsets come from the state,
# and a fresh group assigns at once instead of waiting out the dead member's session.
run_seg() {
  local name=$1 group=$2 state=$3 input=$4
  shift 4
  run_streamseg "$group" "$state" -X "input.topic=$input" -X commit.interval.ms=600000 \
    -X "output.segment.changes.topic=$name.changes" -X "output.segment.stats.topic=$name.stats" \
    -X "output.profiles.topic=$name.profiles" -X kafka.linger.ms=0 "$@"
}

# read_topic TOPIC SCHEMA FORMAT OUT
read_topic() {
  $CHECK read --bootstrap "$BOOTSTRAP" --topic "$1" --schema "$2" --format "$3" --out "$4" \
    >/dev/null || fail "cannot read $1"
}

dump() {
  "$STREAMSEG" inspect -X "state.dir=$1" --dump >"$2" || fail "inspect --dump $1 failed"
}

# --- a: end to end ------------------------------------------------------------------------------
N=30000
M=300 # events per cycle: N is a multiple, so the last cycle commits before the stop
E2E=(-X output.format=avro -X "commit.max.events=$M" -X stats.interval.ms=100
  -X segments.init.min.users=500)
"$STREAMSEG" gen --users 800 --events $N --seed 5 --format avro --brokers "$BOOTSTRAP" \
  --topic e2e.events --quiet 2>/dev/null || fail "gen failed"
run_seg ref ref "$T/ref" e2e.events "${E2E[@]}"
wait_processed "$T/ref" $N 60 || fail "reference run incomplete"
sleep 0.3 # > stats.interval.ms: the stop's cycle publishes the final statistics
stop_streamseg "$RUN_PID" 10
read_topic ref.changes segment_change.avsc avro "$T/ref_changes.jsonl"
read_topic ref.stats segment_stats.avsc avro "$T/ref_stats.jsonl"
dump "$T/ref" "$T/ref_dump.jsonl"
$CHECK e2e "$T/ref_changes.jsonl" "$T/ref_stats.jsonl" "$T/ref_dump.jsonl" 8 ||
  fail "end to end: the outputs disagree"
grep -q "segments: k=8, model v0 (new" "$T/ref.log" || fail "the stage did not start (log)"

# --- d: kill -9 at three points, restart ------------------------------------------------------------
i=0
for at in 6000 14000 23000; do
  i=$((i + 1))
  run_seg crash "crash$i" "$T/crash" e2e.events "${E2E[@]}"
  wait_until "[ \$(offsets_total '$T/crash') -ge $at ]" 60 || fail "crash run stuck before $at"
  kill -KILL "$RUN_PID"
  wait "$RUN_PID" 2>/dev/null || true
  echo "killed at $(offsets_total "$T/crash") committed records (target $at)"
done
run_seg crash crash "$T/crash" e2e.events "${E2E[@]}"
wait_processed "$T/crash" $N 60 || fail "restarted run incomplete"
stop_streamseg "$RUN_PID" 10
cat "$T"/crash?.log >>"$T/crash.log"
grep -q "segments: k=8, model v[1-9][0-9]* (stored, initialised" "$T/crash.log" ||
  fail "a restart did not load the stored model"
read_topic crash.changes segment_change.avsc avro "$T/crash_changes.jsonl"
dump "$T/crash" "$T/crash_dump.jsonl"
$CHECK same "$T/ref_changes.jsonl" "$T/crash_changes.jsonl" "$T/ref_dump.jsonl" \
  "$T/crash_dump.jsonl" || fail "restarts changed the segments or the change events"

# --- b: flapping --------------------------------------------------------------------------------------
# k=2 for the two groups; a short half-life so the model follows the groups' common ageing.
nf=$($CHECK flap-events "$T/flap.jsonl" 90 0.5 0.6)
/usr/bin/python3 "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic flap.events \
  --events "$T/flap.jsonl" >/dev/null || fail "producing the flapping story failed"
FLAP=(-X output.format=json -X commit.max.events=41 -X segments.k=2 -X segments.halflife=300
  -X segments.init.min.users=82 -X churn.enabled=false)
for h in 0 0.1; do
  run_seg "flap$h" "flap$h" "$T/flap$h" flap.events "${FLAP[@]}" -X "segments.hysteresis=$h"
  wait_processed "$T/flap$h" "$nf" 60 || fail "flapping run (hysteresis $h) incomplete"
  stop_streamseg "$RUN_PID" 10
  read_topic "flap$h.changes" segment_change.avsc json "$T/flap$h.jsonl"
done
$CHECK flap "$T/flap0.1.jsonl" "$T/flap0.jsonl" || fail "flapping"

# --- c: drift -------------------------------------------------------------------------------------------
H=400
INIT=100
$CHECK drift-events "$T" >/dev/null
DRIFT=(-X output.format=json -X commit.max.events=120 -X segments.k=2 -X "segments.halflife=$H"
  -X "segments.init.min.users=$INIT" -X stats.interval.ms=100 -X churn.enabled=false)
na=$(wc -l <"$T/drift_a.jsonl")
nb=$(wc -l <"$T/drift_b.jsonl")
/usr/bin/python3 "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic drift.events \
  --events "$T/drift_a.jsonl" >/dev/null || fail "producing the drift story failed"
run_seg drift drift1 "$T/drift" drift.events "${DRIFT[@]}"
wait_processed "$T/drift" "$na" 60 || fail "drift part a incomplete"
sleep 0.3 # the stop's cycle publishes the statistics of the final model
stop_streamseg "$RUN_PID" 10
read_topic drift.stats segment_stats.avsc json "$T/drift_stats_a.jsonl"
/usr/bin/python3 "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic drift.events \
  --events "$T/drift_b.jsonl" >/dev/null || fail "producing the drift story failed"
run_seg drift drift2 "$T/drift" drift.events "${DRIFT[@]}"
wait_processed "$T/drift" $((na + nb)) 60 || fail "drift part b incomplete"
sleep 0.3
stop_streamseg "$RUN_PID" 10
read_topic drift.stats segment_stats.avsc json "$T/drift_stats_b.jsonl"
$CHECK drift "$T/drift_stats_a.jsonl" "$T/drift_stats_b.jsonl" $H $INIT || fail "drift"

mock_stop
echo "PASS segments: end to end, restarts, flapping and drift"
