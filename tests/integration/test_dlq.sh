#!/usr/bin/env bash
# Bad input: a mix of good events and every kind of bad record. Each bad record lands on the
# DLQ with its reason and the source coordinates in headers, the stream never stops, and
# processed + dead-lettered = produced.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir

"$STREAMSEG" gen --users 300 --events 5000 --seed 5 --format json --out "$SSEG_TMP/events.jsonl" 2>/dev/null
mock_start --partitions 3
/usr/bin/python3 "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic shop.events \
  --events "$SSEG_TMP/events.jsonl" --bad-mix 4 --summary "$SSEG_TMP/expected.json" >/dev/null
total=$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["total"])' "$SSEG_TMP/expected.json")

run_streamseg dlq "$SSEG_TMP/state"
wait_processed "$SSEG_TMP/state" "$total" 60 || fail "not all records accounted for"
stop_streamseg "$RUN_PID" 10

"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/state" --offsets >"$SSEG_TMP/offsets.json"
kcat -C -b "$BOOTSTRAP" -t streamseg.dlq -e -q -o beginning -f '%h\n' >"$SSEG_TMP/dlq_headers.txt"
/usr/bin/python3 - "$SSEG_TMP/expected.json" "$SSEG_TMP/offsets.json" "$SSEG_TMP/dlq_headers.txt" <<'PY' || fail "DLQ contents wrong"
import json, re, sys, collections
exp = json.load(open(sys.argv[1])); off = json.load(open(sys.argv[2]))
bad = {k: v for k, v in exp.items() if k not in ("good", "total")}
assert off["processed"] == exp["good"], (off, exp)
assert off["dead_lettered"] == sum(bad.values()), (off, exp)
assert off["processed"] + off["dead_lettered"] == exp["total"]
got = collections.Counter(); coords = set()
for line in open(sys.argv[3]):
    # kcat prints headers as k=v,k=v; messages may hold commas, names never do.
    h = dict(re.findall(r"(sseg\.[a-z.]+)=(.*?)(?=,sseg\.|$)", line.rstrip("\n")))
    got[h["sseg.error"]] += 1
    assert h["sseg.source.topic"] == "shop.events", h
    assert h.get("sseg.error.message"), h
    coords.add((h["sseg.source.partition"], h["sseg.source.offset"]))
assert dict(got) == bad, (dict(got), bad)
assert len(coords) == sum(bad.values()), "duplicate or missing DLQ coordinates"
print("DLQ per reason:", dict(got))
PY
mock_stop
echo "PASS dlq"
