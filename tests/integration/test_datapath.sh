#!/usr/bin/env bash
# Data path end to end: events encoded and produced by independent clients (Python avro +
# confluent-kafka) -> streamseg run -> profiles read back with kcat; every user's last profile
# must equal the independent Python computation (tests/oracle/features_oracle.py), and
# `inspect --dump` must equal the last profile on the topic.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir

N_USERS=1500
N_EVENTS=40000
"$STREAMSEG" gen --users $N_USERS --events $N_EVENTS --seed 11 --format json \
  --out "$SSEG_TMP/events.jsonl" 2>/dev/null
[ "$(wc -l <"$SSEG_TMP/events.jsonl")" -eq $N_EVENTS ] || fail "gen wrote the wrong count"

mock_start --partitions 4
/usr/bin/python3 "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic shop.events \
  --events "$SSEG_TMP/events.jsonl" >/dev/null

# several cycles per partition: users are last published at different watermarks
run_streamseg dp "$SSEG_TMP/state" -X commit.max.events=4000
wait_processed "$SSEG_TMP/state" $N_EVENTS 90 || fail "not all events processed"
stop_streamseg "$RUN_PID" 10

# Every record was applied, none dead-lettered.
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/state" --offsets >"$SSEG_TMP/offsets.json"
/usr/bin/python3 - "$SSEG_TMP/offsets.json" $N_EVENTS <<'PY' || fail "offsets wrong"
import json, sys
d = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert d["processed"] == n and d["dead_lettered"] == 0, d
assert sum(p["next_offset"] for p in d["partitions"]) == n, d
PY

# kcat, an independent consumer, reads the profiles topic.
kcat -C -b "$BOOTSTRAP" -t streamseg.profiles -e -q -o beginning -f '%s\n' \
  >"$SSEG_TMP/profiles.jsonl"
users=$(/usr/bin/python3 -c 'import json,sys; print(len({json.loads(l)["user_id"] for l in open(sys.argv[1])}))' "$SSEG_TMP/profiles.jsonl")
want=$(/usr/bin/python3 -c 'import json,sys; print(len({json.loads(l)["user_id"] for l in open(sys.argv[1])}))' "$SSEG_TMP/events.jsonl")
[ "$users" -eq "$want" ] || fail "profiles for $users users, events have $want"

/usr/bin/python3 "$SSEG_SOURCE_DIR/tests/oracle/features_oracle.py" \
  --events "$SSEG_TMP/events.jsonl" --profiles "$SSEG_TMP/profiles.jsonl" ||
  fail "profiles differ from the independent computation"

# The state store holds exactly the last published profile of every user. A profile is encoded
# as of its partition's watermark at the cycle that published it (updated_ts): where that is the
# partition's final watermark, the dump (encoded as of the final watermark) must equal it
# byte for byte; a user last published in an earlier cycle must agree on everything recorded
# from its events (the now-dependent derived fields differ by design).
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/state" --dump >"$SSEG_TMP/dump.jsonl"
/usr/bin/python3 - "$SSEG_TMP/profiles.jsonl" "$SSEG_TMP/dump.jsonl" "$SSEG_TMP/offsets.json" <<'PY' || fail "inspect --dump differs from the topic"
import json, sys
last = {}
for l in open(sys.argv[1]):
    p = json.loads(l); last[p["user_id"]] = p
dump = [json.loads(l) for l in open(sys.argv[2])]
wm = {p["partition"]: p["watermark_ms"] for p in json.load(open(sys.argv[3]))["partitions"]}
assert len(dump) == len(last), (len(dump), len(last))
exact = 0
for p in dump:
    q = last[p["user_id"]]
    if q["updated_ts"] == wm[p["partition"]]:
        assert q == p, p["user_id"]
        exact += 1
    else:
        for f in ("user_id", "partition", "n_events", "counts", "first_ts", "last_ts"):
            assert q[f] == p[f], (p["user_id"], f, q[f], p[f])
assert exact > 0, "no user was published as of the final watermark"
print("dump matches topic for", len(dump), "users,", exact, "byte for byte")
PY
mock_stop
echo "PASS datapath: $N_EVENTS events, $users users"
