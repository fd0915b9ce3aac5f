#!/usr/bin/env bash
# The benchmark harness (issue 5) in tiny configurations: each program under tools/ runs to
# the end and prints its figures, and the counts behind them agree. The full runs stay out of
# the suite (docs/benchmarks.md); nothing here looks at a timing's value, only that it is there.
#   bench_pipeline --peer yes: in-process, raw, end-to-end and the Python peer's rates
#   bench_state: the timer sweep visits exactly the due timers; the firing cycle fires them;
#                restart after a graceful stop and after kill -9 reaches the first record
#   bench_latency: a maximum, then per load every event matched to its profile, percentiles
#   bench_churn: per-user scoring and refit figures
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
sseg_tmpdir
B=${SSEG_BUILD_DIR:?}
num='[0-9]+(\.[0-9]+)?'

# A number > 0 in field $2 of the first line matching $1 of file $3 (awk field numbering).
positive() {
        awk -v re="$1" -v f="$2" '$0 ~ re { found = 1; if (($f + 0) > 0) ok = 1; exit }
                END { exit !(found && ok) }' "$3"
}

# --- bench_pipeline with the Python peer -----------------------------------------------------
timeout "$(sseg_scale 300)" "$B/bench_pipeline" --users 2000 --events 6000 --e2e-events 3000 \
  --partitions 2 --skew uniform --peer yes --streamseg "$STREAMSEG" \
  >"$SSEG_TMP/pipeline.out" 2>"$SSEG_TMP/pipeline.err" ||
  { cat "$SSEG_TMP/pipeline.out" "$SSEG_TMP/pipeline.err" >&2; fail "bench_pipeline failed"; }
cat "$SSEG_TMP/pipeline.out"
grep -q '^method: ' "$SSEG_TMP/pipeline.out" || fail "bench_pipeline printed no method"
grep -q '^machine: host ' "$SSEG_TMP/pipeline.out" || fail "bench_pipeline printed no machine line"
positive '^in-process  uniform ' 3 "$SSEG_TMP/pipeline.out" || fail "no in-process rate"
positive '^raw consume uniform ' 4 "$SSEG_TMP/pipeline.out" || fail "no raw consume rate"
positive '^end to end  uniform ' 5 "$SSEG_TMP/pipeline.out" || fail "no end-to-end rate"
positive '^peer        uniform ' 3 "$SSEG_TMP/pipeline.out" || fail "no peer rate"
grep -Eq "^    peer: 3000 events \(0 undecodable\), [0-9]+ users, K-means fitted True" \
  "$SSEG_TMP/pipeline.out" || fail "the peer did not process the 3000 events and fit K-means"
grep -Eq "streamseg end to end = $num x peer$" "$SSEG_TMP/pipeline.out" || fail "no peer ratio"

# --- bench_state: timer sweep and restart ----------------------------------------------------
timeout "$(sseg_scale 300)" "$B/bench_state" --users 3000 --events 9000 --partitions 2 \
  --restart-events 20 --crash-events 500 --streamseg "$STREAMSEG" \
  -X kafka.session.timeout.ms=6000 >"$SSEG_TMP/state.out" 2>"$SSEG_TMP/state.err" ||
  { cat "$SSEG_TMP/state.out" "$SSEG_TMP/state.err" >&2; fail "bench_state failed"; }
cat "$SSEG_TMP/state.out"
grep -q '^method: ' "$SSEG_TMP/state.out" || fail "bench_state printed no method"
stored=$(sed -nE 's/^timer sweep: ([0-9]+) timers stored for ([0-9]+) users.*/\1/p' "$SSEG_TMP/state.out")
[ "${stored:-0}" -gt 0 ] || fail "no timers stored"
# (a): at each fraction the sweep visits exactly the timers due, and 10 % of them is ~10 %
for pct in 0.1 1.0 10.0; do
        line=$(grep -E "^    $pct % due +[0-9]+ timers visited \([0-9]+ due\)" "$SSEG_TMP/state.out" | head -1)
        [ -n "$line" ] || fail "no index sweep line at $pct %"
        visited=$(sed -nE 's/.* ([0-9]+) timers visited.*/\1/p' <<<"$line")
        due=$(sed -nE 's/.*\(([0-9]+) due\).*/\1/p' <<<"$line")
        [ "$visited" = "$due" ] || fail "at $pct % the sweep visited $visited timers, $due due"
done
due10=$(sed -nE 's/^    10\.0 % due +[0-9]+ timers visited \(([0-9]+) due\).*/\1/p' "$SSEG_TMP/state.out")
awk -v d="$due10" -v n="$stored" 'BEGIN { exit !(d >= 0.1 * n && d < 0.2 * n) }' ||
  fail "10 % due is $due10 of $stored timers"
grep -Eq '^    nothing due +0 timers visited' "$SSEG_TMP/state.out" || fail "an empty sweep visited timers"
# (b): the pipeline fires users at 10 %, none at the baseline
grep -Eq '^    nothing due +0 users fired' "$SSEG_TMP/state.out" || fail "the baseline cycle fired users"
fired=$(sed -nE 's/^    10\.0 % due +([0-9]+) users fired.*/\1/p' "$SSEG_TMP/state.out")
[ "${fired:-0}" -gt 0 ] || fail "the firing cycle fired nobody at 10 %"
# restart: every phase has a time (a missing one prints -1.00)
grep -q -- ' -1\.00 s' "$SSEG_TMP/state.out" && fail "a restart phase was not observed"
n=$(grep -Ec "^    state opened $num s, partitions assigned $num s, first record processed \(its profile on the topic\) $num s, 20 waiting records committed $num s" "$SSEG_TMP/state.out" || true)
[ "$n" = 3 ] || fail "expected 3 restart measurements, found $n"

# --- bench_latency ---------------------------------------------------------------------------
timeout "$(sseg_scale 300)" "$B/bench_latency" --users 2000 --max-events 3000 --seconds 1 \
  --events-cap 800 --partitions 2 --intervals 100 --loads 25,75 --streamseg "$STREAMSEG" \
  >"$SSEG_TMP/latency.out" 2>"$SSEG_TMP/latency.err" ||
  { cat "$SSEG_TMP/latency.out" "$SSEG_TMP/latency.err" >&2; fail "bench_latency failed"; }
cat "$SSEG_TMP/latency.out"
grep -q '^method: ' "$SSEG_TMP/latency.out" || fail "bench_latency printed no method"
positive '^commit.interval.ms=100: maximum ' 3 "$SSEG_TMP/latency.out" || fail "no maximum rate"
n=$(grep -Ec "^        profile +p50 +$num ms +p99 +$num ms +p99\.9 +$num ms +\(800 of 800 events matched" \
  "$SSEG_TMP/latency.out" || true)
[ "$n" = 2 ] || fail "expected every event matched to its profile at 2 loads, found $n lines"
n=$(grep -Ec "^        segment change +p50 +$num ms .*\([1-9][0-9]* changes matched, 0 not\)" \
  "$SSEG_TMP/latency.out" || true)
[ "$n" = 2 ] || fail "expected matched segment changes at 2 loads, found $n lines"

# --- bench_churn -----------------------------------------------------------------------------
timeout "$(sseg_scale 120)" "$B/bench_churn" --users 2000 >"$SSEG_TMP/churn.out" ||
  fail "bench_churn failed"
positive 'P\(alive\), BG/NBD' 3 "$SSEG_TMP/churn.out" || fail "no P(alive) figure"
grep -Eq '^  BG/NBD, day grid +[0-9]+ ms' "$SSEG_TMP/churn.out" || fail "no BG/NBD refit figure"
echo "bench smoke: every program printed its figures"
