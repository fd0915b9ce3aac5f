#!/usr/bin/env bash
# State that moves with its partition (state.changelog.topic, docs/scaling.md):
#  1. instance A processes batch 1 with a changelog and stops;
#  2. instance B starts on an empty state.dir: it rebuilds both partitions from the changelog
#     (its users byte-identical to A's) and resumes at A's offsets: it processes batch 2 only;
#  3. A restarts with its stale state: it catches up from its stored changelog offset (only
#     B's records are read), and ends byte-identical to B and to a reference instance that
#     processed both batches uninterrupted without a changelog;
#  4. A restarts once more: its state is current, nothing is restored;
#  5. with churn on, an instance rebuilt from the changelog has the same users and the same
#     churn timer index (recreated from the records' timer headers) as the one that wrote it.
# Model stages are off (segments.k=0, churn off): the comparison is of the data path's state,
# which does not depend on cycle boundaries.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir
PY=/usr/bin/python3
COMMON=(-X segments.k=0 -X churn.enabled=false -X erasure.topic=)
CL=(-X state.changelog.topic=streamseg.changelog)

mock_start --partitions 2 --topic streamseg.changelog:2 --topic streamseg.changelog2:2

"$STREAMSEG" gen --users 600 --days 10 --seed 31 --format json --out "$SSEG_TMP/all.jsonl" --quiet
total=$(wc -l <"$SSEG_TMP/all.jsonl")
n1=$((total / 2))
head -n "$n1" "$SSEG_TMP/all.jsonl" >"$SSEG_TMP/b1.jsonl"
tail -n +$((n1 + 1)) "$SSEG_TMP/all.jsonl" >"$SSEG_TMP/b2.jsonl"
dump() { "$STREAMSEG" inspect -X "state.dir=$1" --dump --raw 2>/dev/null | sort; }
metric() { # PORT NAME -> value
  curl -s "http://127.0.0.1:$1/metrics" | awk -v n="$2" '$1 == n { print $2 }'
}
port_of() { grep -o 'listening on 127.0.0.1:[0-9]*' "$SSEG_TMP/$1.log" | tail -1 | cut -d: -f2; }

# --- 1: A processes batch 1 ---------------------------------------------------------------------
$PY "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic shop.events \
  --events "$SSEG_TMP/b1.jsonl" >/dev/null
run_streamseg a "$SSEG_TMP/A" "${COMMON[@]}" "${CL[@]}"
wait_processed "$SSEG_TMP/A" "$n1" 60 || fail "A: batch 1 not processed"
stop_streamseg "$RUN_PID" 10
dump "$SSEG_TMP/A" >"$SSEG_TMP/A1.dump"
users1=$(wc -l <"$SSEG_TMP/A1.dump")
[ "$users1" -gt 100 ] || fail "A has only $users1 users"
[ "$(kcat_count streamseg.changelog)" -gt "$users1" ] || fail "the changelog holds too little"

# --- 2: B on an empty state: rebuilt from the changelog, then batch 2 ------------------------------
run_streamseg b "$SSEG_TMP/B" "${COMMON[@]}" "${CL[@]}" -X metrics.interval.ms=200
wait_until "[ \$(grep -c 'changelog: partition [01]: .* user records applied' '$SSEG_TMP/b.log') -eq 2 ]" 30 ||
  fail "B did not restore both partitions: $(grep changelog "$SSEG_TMP/b.log" | tail -3)"
grep -q 'rebuilding from changelog' "$SSEG_TMP/b.log" || fail "B: no rebuild"
wait_until "[ -n \"\$(port_of b)\" ]" 10 || fail "B: no http port"
sleep 1
restored=$(metric "$(port_of b)" streamseg_changelog_restored_users_total)
[ "${restored%.*}" -ge "$users1" ] || fail "B restored $restored user records, A has $users1 users"
# B resumes at A's offsets: its state equals A's before batch 2 arrives
stop_streamseg "$RUN_PID" 10
dump "$SSEG_TMP/B" >"$SSEG_TMP/B1.dump"
cmp -s "$SSEG_TMP/A1.dump" "$SSEG_TMP/B1.dump" || fail "B's restored state differs from A's"
$PY "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic shop.events \
  --events "$SSEG_TMP/b2.jsonl" >/dev/null
run_streamseg b2 "$SSEG_TMP/B" "${COMMON[@]}" "${CL[@]}"
wait_processed "$SSEG_TMP/B" "$total" 60 || fail "B: batch 2 not processed"
stop_streamseg "$RUN_PID" 10
grep -q 'local state is current' "$SSEG_TMP/b2.log" || fail "B's restart restored instead of reusing"
dump "$SSEG_TMP/B" >"$SSEG_TMP/B2.dump"

# --- 3: A catches up from its own changelog offset ---------------------------------------------------
run_streamseg a2 "$SSEG_TMP/A" "${COMMON[@]}" "${CL[@]}"
wait_until "[ \$(grep -c 'changelog: partition [01]: .* user records applied' '$SSEG_TMP/a2.log') -eq 2 ]" 30 ||
  fail "A did not catch up: $(grep changelog "$SSEG_TMP/a2.log" | tail -3)"
grep -q 'catching up from changelog' "$SSEG_TMP/a2.log" || fail "A rebuilt instead of catching up"
sleep 2
stop_streamseg "$RUN_PID" 10
dump "$SSEG_TMP/A" >"$SSEG_TMP/A2.dump"
cmp -s "$SSEG_TMP/A2.dump" "$SSEG_TMP/B2.dump" || fail "A after catching up differs from B"
[ "$(offsets_total "$SSEG_TMP/A")" -eq "$total" ] || fail "A's offsets: $(offsets_total "$SSEG_TMP/A")"

# reference: both batches, one instance, no changelog
run_streamseg ref "$SSEG_TMP/R" "${COMMON[@]}"
wait_processed "$SSEG_TMP/R" "$total" 60 || fail "reference not processed"
stop_streamseg "$RUN_PID" 10
dump "$SSEG_TMP/R" >"$SSEG_TMP/R.dump"
cmp -s "$SSEG_TMP/R.dump" "$SSEG_TMP/B2.dump" ||
  fail "moved state differs from an uninterrupted run ($(diff "$SSEG_TMP/R.dump" "$SSEG_TMP/B2.dump" | wc -l) lines)"

# --- 4: current state is reused ----------------------------------------------------------------------
run_streamseg a3 "$SSEG_TMP/A" "${COMMON[@]}" "${CL[@]}"
wait_until "[ \$(grep -c 'local state is current' '$SSEG_TMP/a3.log') -eq 2 ]" 30 ||
  fail "A's current state was not reused: $(grep changelog "$SSEG_TMP/a3.log" | tail -3)"
stop_streamseg "$RUN_PID" 10

# --- 5: churn timers follow the state ------------------------------------------------------------------
CL2=(-X state.changelog.topic=streamseg.changelog2 -X segments.k=0 -X churn.refit.interval.ms=0
  -X erasure.topic=)
# many cycles: users appear in several, each time with another timer
run_streamseg c "$SSEG_TMP/C" "${CL2[@]}" -X commit.max.events=2000
wait_processed "$SSEG_TMP/C" "$total" 60 || fail "C not processed"
stop_streamseg "$RUN_PID" 10
run_streamseg d "$SSEG_TMP/D" "${CL2[@]}"
wait_until "[ \$(grep -c 'changelog: partition [01]: .* user records applied' '$SSEG_TMP/d.log') -eq 2 ]" 30 ||
  fail "D did not restore"
stop_streamseg "$RUN_PID" 10
dump "$SSEG_TMP/C" >"$SSEG_TMP/C.dump"
dump "$SSEG_TMP/D" >"$SSEG_TMP/D.dump"
cmp -s "$SSEG_TMP/C.dump" "$SSEG_TMP/D.dump" || fail "D's restored users differ from C's"
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/C" --timers >"$SSEG_TMP/C.timers"
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/D" --timers >"$SSEG_TMP/D.timers"
ntimers=$(wc -l <"$SSEG_TMP/C.timers")
[ "$ntimers" -gt 100 ] || fail "C has only $ntimers timers"
cmp -s "$SSEG_TMP/C.timers" "$SSEG_TMP/D.timers" || fail "D's timers differ from C's"
echo "ok: $users1 users rebuilt on B, A caught up, both equal the uninterrupted run; $ntimers timers restored"

