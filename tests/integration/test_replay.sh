#!/usr/bin/env bash
# streamseg replay end to end: the gzip-compressed Online Retail slice (tests/data/replay/) is
# replayed into a separate mock-kafka; kcat, an independent client, finds exactly the expected
# records on the topic, keyed by the expected users; `streamseg run` processes every one of them
# with zero dead letters and publishes a profile for every user.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir

SLICE=$SSEG_TEST_DATA/replay/online_retail.csv
EXPECTED=$SSEG_TEST_DATA/replay/online_retail.expected.jsonl
want=$(wc -l <"$EXPECTED")
[ "$want" -gt 0 ] || fail "no expected events in $EXPECTED"
gzip -c "$SLICE" >"$SSEG_TMP/online_retail.csv.gz"

mock_start --partitions 3
"$STREAMSEG" replay --format online-retail "$SSEG_TMP/online_retail.csv.gz" --brokers "$BOOTSTRAP" \
  --topic shop.events --format-out avro 2>"$SSEG_TMP/replay.err" ||
  { cat "$SSEG_TMP/replay.err" >&2; fail "replay exited non-zero"; }
cat "$SSEG_TMP/replay.err"
grep -q "^replay: done: format=online-retail rows=26 events=$want out=$want " "$SSEG_TMP/replay.err" ||
  fail "summary does not say rows=26 events=out=$want"
grep -q "^replay: skipped: no_user=5 malformed=0 unknown_type=0 invalid=0" "$SSEG_TMP/replay.err" ||
  fail "summary does not count the 5 rows without CustomerID"
grep -q "^replay: out by type: .* PURCHASE=19 REFUND=2$" "$SSEG_TMP/replay.err" ||
  fail "summary does not count 19 purchases and 2 refunds"
grep -q "^replay: delivered=$want failed=0$" "$SSEG_TMP/replay.err" || fail "not every record delivered"

n=$(kcat_count shop.events) || fail "kcat could not read shop.events"
[ "$n" -eq "$want" ] || fail "shop.events holds $n records, expected $want"

# Keys are the user ids, one record per expected event.
kcat -C -b "$BOOTSTRAP" -t shop.events -e -q -o beginning -f '%k\n' >"$SSEG_TMP/keys.txt"
/usr/bin/python3 - "$EXPECTED" "$SSEG_TMP/keys.txt" <<'PY' || fail "record keys differ from the expected users"
import collections, json, sys
want = collections.Counter(json.loads(l)["user_id"] for l in open(sys.argv[1]))
got = collections.Counter(l.rstrip("\n") for l in open(sys.argv[2]))
assert got == want, (got, want)
PY

run_streamseg replay "$SSEG_TMP/state"
wait_processed "$SSEG_TMP/state" "$want" 30 || fail "not all replayed events processed"
stop_streamseg "$RUN_PID" 10

"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/state" --offsets >"$SSEG_TMP/offsets.json"
/usr/bin/python3 - "$SSEG_TMP/offsets.json" "$want" <<'PY' || fail "offsets wrong"
import json, sys
d = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert d["processed"] == n and d["dead_lettered"] == 0, d
PY

kcat -C -b "$BOOTSTRAP" -t streamseg.profiles -e -q -o beginning -f '%s\n' >"$SSEG_TMP/profiles.jsonl"
/usr/bin/python3 - "$EXPECTED" "$SSEG_TMP/profiles.jsonl" <<'PY' || fail "profiles do not cover the replayed users"
import json, sys
want = {json.loads(l)["user_id"] for l in open(sys.argv[1])}
got = {json.loads(l)["user_id"] for l in open(sys.argv[2]) if l.strip()}
assert got == want, (sorted(got), sorted(want))
print("profiles for", len(got), "users")
PY
mock_stop
echo "PASS replay: $want events, 0 dead letters"
