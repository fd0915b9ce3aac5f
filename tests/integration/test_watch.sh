#!/usr/bin/env bash
# streamseg watch against a separate mock-kafka. For each output format (avro, json): generated
# events (streamseg gen) go through the processor with fast statistics and low churn levels,
# then `streamseg watch --once` reports on the output topics, and its report is compared with
# an independent read of the same topics (watch_check.py: confluent-kafka + python3-avro):
# records read, the latest size of every segment of the latest k, the model version, alert
# counts by level and direction, the latest alerts; once from the beginning and once from the
# tail. Then a live watch (not a terminal: plain blocks) sees the only broker go down
# (DISCONNECTED), resumes when it is back (a record produced afterwards shows up), and exits 0
# on SIGTERM.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir
T=$SSEG_TMP
CHECK="/usr/bin/python3 $HERE/watch_check.py"
COUNT=7

# Topics of both stories, with more than one partition where the records are keyed.
mock_start --partitions 1 --topic avro.events:2 --topic json.events:2 \
  --topic avro.stats:3 --topic avro.alerts:3 --topic json.stats:2 --topic json.alerts:3

# watch_args FMT: the configuration a watch of story FMT reads with.
watch_args() {
  echo "-X kafka.bootstrap.servers=$BOOTSTRAP -X output.format=$1 \
    -X output.segment.stats.topic=$1.stats -X output.churn.alerts.topic=$1.alerts"
}

for fmt in avro json; do
  # 150 users over 30 days: about 25k events; with low churn levels about a hundred alerts.
  "$STREAMSEG" gen --users 150 --days 30 --seed 11 --format avro --brokers "$BOOTSTRAP" \
    --topic "$fmt.events" --quiet 2>/dev/null || fail "gen failed"
  nev=$(kcat_count "$fmt.events") || fail "cannot count the input"
  # Statistics every 100 ms once 100 users are seen.
  run_streamseg "$fmt" "$T/$fmt.state" -X "input.topic=$fmt.events" -X "output.format=$fmt" \
    -X "output.segment.stats.topic=$fmt.stats" -X "output.churn.alerts.topic=$fmt.alerts" \
    -X "output.profiles.topic=$fmt.profiles" -X "output.segment.changes.topic=$fmt.changes" \
    -X http.listen=127.0.0.1:0 -X stats.interval.ms=100 -X segments.init.min.users=100 \
    -X churn.levels=0.1,0.3,0.6 -X kafka.linger.ms=5
  wait_processed "$T/$fmt.state" "$nev" 60 || fail "$fmt: events not processed"
  sleep 0.3 # > stats.interval.ms: the stop's cycle publishes a last statistics set
  stop_streamseg "$RUN_PID" 10

  # The independent read, then the reports.
  $CHECK read --bootstrap "$BOOTSTRAP" --topic "$fmt.stats" --schema segment_stats.avsc \
    --format "$fmt" --out "$T/$fmt.stats.jsonl" >/dev/null || fail "$fmt: cannot read the stats"
  $CHECK read --bootstrap "$BOOTSTRAP" --topic "$fmt.alerts" --schema churn_alert.avsc \
    --format "$fmt" --out "$T/$fmt.alerts.jsonl" >/dev/null || fail "$fmt: cannot read the alerts"
  # shellcheck disable=SC2046
  "$STREAMSEG" watch $(watch_args "$fmt") --once --from-beginning --count "$COUNT" \
    >"$T/$fmt.report" 2>"$T/$fmt.watch.err" || fail "$fmt: watch --once failed: $(cat "$T/$fmt.watch.err")"
  cat "$T/$fmt.report"
  $CHECK compare "$T/$fmt.report" "$T/$fmt.stats.jsonl" "$T/$fmt.alerts.jsonl" --count "$COUNT" ||
    fail "$fmt: the report (from the beginning) disagrees with the topics"
  # shellcheck disable=SC2046
  "$STREAMSEG" watch $(watch_args "$fmt") --once --count 3 >"$T/$fmt.tail" \
    2>"$T/$fmt.watch.err" || fail "$fmt: watch --once (tail) failed: $(cat "$T/$fmt.watch.err")"
  $CHECK compare "$T/$fmt.tail" "$T/$fmt.stats.jsonl" "$T/$fmt.alerts.jsonl" --count 3 --tail ||
    fail "$fmt: the report (from the tail) disagrees with the topics"
  # The other format's decoder refuses every record and says so.
  other=json
  [ "$fmt" = avro ] || other=avro
  # shellcheck disable=SC2046
  "$STREAMSEG" watch $(watch_args "$fmt") -X "output.format=$other" --once >"$T/$fmt.wrong" \
    2>/dev/null || fail "$fmt: watch --once with the wrong format failed"
  grep -q "undecodable record: .*is output.format $other?" "$T/$fmt.wrong" ||
    fail "$fmt: records read as $other were not reported undecodable"
done

# --- a live watch through an outage (plain blocks: stdout is a file) -------------------------
# shellcheck disable=SC2046
"$STREAMSEG" watch $(watch_args json) --interval 200 -X kafka.reconnect.backoff.max.ms=500 \
  >"$T/live.out" 2>"$T/live.err" &
WATCH_PID=$!
sseg_track_pid "$WATCH_PID"
wait_until "grep -q '^cluster .*: connected' '$T/live.out' && grep -q '^SEGMENTS' '$T/live.out'" 20 ||
  fail "the live watch printed no connected view: $(tail -5 "$T/live.err")"
mock_ctl "down 1"
wait_until "grep -q '^cluster .*: DISCONNECTED' '$T/live.out'" 30 ||
  fail "the live watch did not show the broker down"
mock_ctl "up 1"
# A statistics record written after the outage, with a size no real segment has.
now_ms=$(($(date +%s%N) / 1000000))
printf '0\t{"segment":0,"k":8,"size":424242,"share":1,"weight":1,"description":"after the outage","centroid":[],"model_version":999,"drift":null,"previous_ts":null,"inertia":0,"users_assigned":424242,"ts":%s}\n' \
  "$now_ms" >"$T/late.txt"
kcat_produce json.stats "$T/late.txt" || fail "cannot produce the late record"
wait_until "awk '/DISCONNECTED/ { d = 1 } d && /^ +0 +424242 / { found = 1 } END { exit !found }' '$T/live.out'" 30 ||
  fail "the live watch did not resume after the outage: $(tail -5 "$T/live.out")"
grep -q "^segments  model v999, k=8, 424242 users assigned" "$T/live.out" ||
  fail "the live watch's header does not follow the latest statistics record"
kill -TERM "$WATCH_PID"
rc=0
wait "$WATCH_PID" || rc=$?
[ "$rc" -eq 0 ] || fail "watch exited $rc after SIGTERM (expected 0)"
help=$("$STREAMSEG" watch --help) || fail "watch --help failed"
grep -q -- "--from-beginning" <<<"$help" || fail "watch --help does not describe --from-beginning"
help=$("$STREAMSEG" --help) || fail "streamseg --help failed"
grep -q "^  watch " <<<"$help" || fail "streamseg --help does not list watch"
mock_stop
echo "PASS watch: reports equal the topics (avro, json; beginning, tail); live view through an outage"
