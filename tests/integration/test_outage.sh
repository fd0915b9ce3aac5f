#!/usr/bin/env bash
# Broker outage: the only broker goes down mid-run while events keep arriving later; the
# processor pauses (nothing committed past undelivered outputs), resumes when the broker is
# back, and ends with every record processed exactly once.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir

mock_start --partitions 2
"$STREAMSEG" gen --users 2000 --events 30000 --seed 8 --format avro \
  --brokers "$BOOTSTRAP" --topic shop.events 2>/dev/null || fail "gen failed"
run_streamseg outage "$SSEG_TMP/state"
wait_processed "$SSEG_TMP/state" 30000 60 || fail "first batch not processed"

# More events arrive while the broker goes down: the producer and the processor both wait.
"$STREAMSEG" gen --users 2000 --events 60000 --seed 9 --rate 20000 --format avro \
  --brokers "$BOOTSTRAP" --topic shop.events 2>"$SSEG_TMP/gen2.log" &
GEN_PID=$!
sseg_track_pid "$GEN_PID"
sleep 1
mock_ctl "down 1"
sleep 3
before=$(offsets_total "$SSEG_TMP/state")
sleep 3
during=$(offsets_total "$SSEG_TMP/state")
kill -0 "$RUN_PID" || fail "streamseg died during the outage"
[ "$during" -eq "$before" ] || fail "committed progress moved from $before to $during while the broker was down"
mock_ctl "up 1"
wait "$GEN_PID" || fail "generator failed to deliver after the outage: $(tail -3 "$SSEG_TMP/gen2.log")"
wait_processed "$SSEG_TMP/state" 90000 90 || fail "processing did not resume after the outage"
stop_streamseg "$RUN_PID" 15
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/state" --offsets | grep '"processed":90000,' >/dev/null ||
  fail "expected exactly 90000 processed records"
grep -q "progress" "$SSEG_TMP/outage.log" || fail "no progress lines in the log"
mock_stop
echo "PASS outage"
