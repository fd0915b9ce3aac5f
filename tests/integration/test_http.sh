#!/usr/bin/env bash
# The operations HTTP server, tested like a user would (tests/integration/http_check.py):
#  1. start-up errors name http.listen (malformed, port taken);
#  2. generated events with bad records -> `streamseg run` with a bearer token and JSON logs;
#     /metrics scraped and its figures compared with what an independent client reads from
#     the topics (records in, dead letters by reason, outputs per topic, segment sizes vs the
#     last segment change per user), /users/{id} vs the user's last profile record, /segments,
#     /healthz, /readyz, 401/404/405;
#  3. the dashboard in headless Chromium: it renders the live figures (processed count,
#     segment rows, churn rows, charts), and after more events it shows the new count; a
#     screenshot is saved as $SSEG_BUILD_DIR/dashboard.png;
#  4. two instances on a one-partition topic: the one without a partition is ready too, and
#     both stop with exit 0 (the cooperative-sticky assignor bug of librdkafka < 2.3.0 at
#     destroy is avoided);
#  5. every log line is a JSON object (log.format=json), and SIGTERM exits 0.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir
CHECK="/usr/bin/python3 $HERE/http_check.py"
STATE=$SSEG_TMP/state
TOKEN=s3cret-token
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
[ -n "$CHROMIUM" ] || fail "chromium is not installed (tools/build.sh test installs it)"

mock_start --partitions 2

# --- 1: http.listen errors stop start-up with the key named --------------------------------------
rc=0
"$STREAMSEG" run -X "kafka.bootstrap.servers=$BOOTSTRAP" -X "state.dir=$SSEG_TMP/bad" \
  -X http.listen=no-port-here 2>"$SSEG_TMP/bad.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q 'http.listen' "$SSEG_TMP/bad.err" ||
  fail "malformed http.listen: exit $rc, $(cat "$SSEG_TMP/bad.err")"

# --- 2: run on generated events with bad records ---------------------------------------------------
"$STREAMSEG" gen --users 1500 --events 30000 --seed 11 --bad-share 0.02 --brokers "$BOOTSTRAP" \
  --topic shop.events --quiet 2>"$SSEG_TMP/gen.err" || fail "gen: $(cat "$SSEG_TMP/gen.err")"
produced=$(kcat_count shop.events)
[ "$produced" -gt 30000 ] || fail "only $produced records produced"
run_streamseg http "$STATE" -X "http.auth.token=$TOKEN" -X log.format=json \
  -X segments.init.min.users=200 -X metrics.interval.ms=200
wait_processed "$STATE" "$produced" 60 || fail "input not processed"
wait_until "grep -q 'http: listening on' '$SSEG_TMP/http.log'" 10 || fail "no listening line"
port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$SSEG_TMP/http.log" | head -1 | cut -d: -f2)
[ -n "$port" ] || fail "no port in the log"
# the snapshot is refreshed every 200 ms: wait until it shows everything committed
wait_until "curl -sf -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$port/api/stats |
  /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d[\"processed\"]+d[\"dead\"]!=$produced or d[\"lag\"]!=0)'" 30 ||
  fail "/api/stats never showed $produced records done"

rc=0
"$STREAMSEG" run -X "kafka.bootstrap.servers=$BOOTSTRAP" -X "state.dir=$SSEG_TMP/other" \
  -X "http.listen=127.0.0.1:$port" 2>"$SSEG_TMP/taken.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q 'http.listen' "$SSEG_TMP/taken.err" ||
  fail "port in use: exit $rc, $(cat "$SSEG_TMP/taken.err")"

$CHECK endpoints --port "$port" --token "$TOKEN" --bootstrap "$BOOTSTRAP" --produced "$produced" \
  --metrics-md "$SSEG_SOURCE_DIR/METRICS.md" >"$SSEG_TMP/endpoints.json" ||
  fail "endpoint checks failed"
processed=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["processed"])' \
  "$SSEG_TMP/endpoints.json")
processed=${processed%.0}

# --- 3: the dashboard in headless Chromium ---------------------------------------------------------
dump_dom() { # FILE [SCREENSHOT]
  local shot=()
  [ $# -ge 2 ] && shot=(--screenshot="$2" --window-size=1400,1500)
  timeout "$(sseg_scale 60)" "$CHROMIUM" --headless --no-sandbox --disable-gpu \
    --user-data-dir="$SSEG_TMP/chromium" --virtual-time-budget=4000 "${shot[@]}" \
    --dump-dom "http://127.0.0.1:$port/?token=$TOKEN" >"$1" 2>>"$SSEG_TMP/chromium.log"
}
dump_dom "$SSEG_TMP/dom1.html" || fail "chromium failed: $(tail -3 "$SSEG_TMP/chromium.log")"
$CHECK dom "$SSEG_TMP/dom1.html" --processed "$processed" --k 8 || fail "dashboard (1)"

# live: more events arrive, the page shows the new count
"$STREAMSEG" gen --users 1500 --events 5000 --seed 12 --start-ms 1706745600000 \
  --brokers "$BOOTSTRAP" --topic shop.events --quiet 2>>"$SSEG_TMP/gen.err"
produced2=$(kcat_count shop.events)
wait_processed "$STATE" "$produced2" 60 || fail "second batch not processed"
wait_until "curl -sf -H 'Authorization: Bearer $TOKEN' http://127.0.0.1:$port/api/stats |
  /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(d[\"processed\"]+d[\"dead\"]!=$produced2)'" 30 ||
  fail "/api/stats never showed the second batch"
processed2=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$port/api/stats" |
  /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["processed"])')
[ "$processed2" -gt "$processed" ] || fail "processed did not grow: $processed -> $processed2"
shot=${SSEG_BUILD_DIR:-$SSEG_TMP}/dashboard.png
rm -f "$shot"
dump_dom "$SSEG_TMP/dom2.html" "$shot" || fail "chromium failed: $(tail -3 "$SSEG_TMP/chromium.log")"
$CHECK dom "$SSEG_TMP/dom2.html" --processed "$processed2" --k 8 || fail "dashboard (2)"
[ "$(head -c 8 "$shot" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] &&
  [ "$(stat -c %s "$shot")" -gt 20000 ] || fail "no screenshot at $shot"

# --- 3b: more instances than partitions: the one without a partition is ready too -------------
HTTP_PID=$RUN_PID
mock_ctl "topic solo.events 1" || fail "topic solo.events"
SOLO=(-X input.topic=solo.events -X erasure.topic= -X segments.k=0 -X churn.enabled=false)
run_streamseg solo "$SSEG_TMP/solo1" "${SOLO[@]}"
S1=$RUN_PID
run_streamseg solo "$SSEG_TMP/solo2" "${SOLO[@]}"
S2=$RUN_PID
wait_until "[ \$(grep -c 'listening on' '$SSEG_TMP/solo.log') -eq 2 ]" 10 || fail "solo: no ports"
solo_ports=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$SSEG_TMP/solo.log" | cut -d: -f2)
both_ready() {
  local n=0 assigned=0 p code a
  for p in $solo_ports; do
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$p/readyz" || true)
    [ "$code" != 200 ] || n=$((n + 1))
    a=$(curl -s "http://127.0.0.1:$p/metrics" 2>/dev/null |
      awk '$1 == "streamseg_partitions_assigned" { print $2 }' || true)
    assigned=$((assigned + ${a:-0}))
  done
  [ "$n" -eq 2 ] && [ "$assigned" -eq 1 ]
}
if ! wait_until both_ready 60; then
  for p in $solo_ports; do
    echo "port $p: $(curl -s "http://127.0.0.1:$p/readyz") $(curl -s "http://127.0.0.1:$p/metrics" | grep -E '^streamseg_(partitions_assigned|rdkafka_rebalances)')" >&2
  done
  fail "two instances on one partition: not both ready"
fi
stop_streamseg "$S1" 10
stop_streamseg "$S2" 10
RUN_PID=$HTTP_PID

# --- 4: JSON logs, graceful stop ---------------------------------------------------------------------
stop_streamseg "$RUN_PID" 10
/usr/bin/python3 - "$SSEG_TMP/http.log" <<'EOF' || fail "log.format=json: a line is not a JSON object"
import json, sys
n = 0
for line in open(sys.argv[1]):
    d = json.loads(line)
    assert set(("ts", "level", "msg")) <= set(d), line
    n += 1
assert n >= 5, n
EOF
echo "ok: /metrics, /users, /segments, dashboard ($processed -> $processed2 events); screenshot $shot"
