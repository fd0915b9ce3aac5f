#!/usr/bin/env bash
# processing.guarantee=exactly_once (docs/scaling.md): events (with bad records) arrive while
# streamseg is killed with SIGKILL and restarted several times, every cycle in a transaction.
# Checked: every input offset processed or dead-lettered, every user's last committed profile
# matches its final state, the final state equals an uninterrupted run; exactly_once without
# a changelog stops start-up naming the key.
# The visibility half of exactly-once (a read_committed consumer never sees the records of an
# aborted transaction, so no output id repeats) needs broker-side transaction markers, which
# librdkafka 2.0.2's mock cluster does not implement: this test probes it first (an aborted
# record visible to read_committed) and asserts unique ids only where the cluster honours
# aborts; otherwise it says so.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir
PY=/usr/bin/python3
EOS=(-X processing.guarantee=exactly_once -X state.changelog.topic=streamseg.changelog
  -X segments.k=0 -X churn.refit.interval.ms=0 -X erasure.topic= -X kafka.session.timeout.ms=6000
  -X kafka.heartbeat.interval.ms=500)

mock_start --partitions 2 --topic streamseg.changelog:2 --topic eos.probe:1
honours_aborts=$($PY - "$BOOTSTRAP" <<'EOF'
import sys
from confluent_kafka import Consumer, Producer, TopicPartition
b = sys.argv[1]
p = Producer({"bootstrap.servers": b, "transactional.id": "eos-probe"})
p.init_transactions(20)
p.begin_transaction(); p.produce("eos.probe", value=b"aborted"); p.flush(10); p.abort_transaction(20)
p.begin_transaction(); p.produce("eos.probe", value=b"committed"); p.commit_transaction(20)
c = Consumer({"bootstrap.servers": b, "group.id": "eos-probe", "isolation.level": "read_committed",
              "enable.partition.eof": True})
c.assign([TopicPartition("eos.probe", 0, 0)])
seen = []
while True:
    m = c.poll(10)
    if m is None or m.error():
        break
    seen.append(m.value())
c.close()
print(1 if seen == [b"committed"] else 0)
EOF
)

rc=0
"$STREAMSEG" run -X "kafka.bootstrap.servers=$BOOTSTRAP" -X "state.dir=$SSEG_TMP/bad" \
  -X processing.guarantee=exactly_once 2>"$SSEG_TMP/bad.err" || rc=$?
[ "$rc" -eq 2 ] && grep -q 'state.changelog.topic' "$SSEG_TMP/bad.err" ||
  fail "exactly_once without a changelog: exit $rc, $(cat "$SSEG_TMP/bad.err")"

# input produced while the processor is killed and restarted
"$STREAMSEG" gen --users 500 --events 40000 --seed 61 --bad-share 0.01 --rate 3000 \
  --brokers "$BOOTSTRAP" --topic shop.events 2>"$SSEG_TMP/gen.err" &
GEN=$!
sseg_track_pid "$GEN"
kills=0
for i in 1 2 3 4; do
  kill -0 "$GEN" 2>/dev/null || break
  before=$(offsets_total "$SSEG_TMP/S")
  run_streamseg eos "$SSEG_TMP/S" "${EOS[@]}" -X kafka.group.id=eos
  # killed once it has committed something, in the middle of a later cycle
  wait_until "[ \$(offsets_total '$SSEG_TMP/S') -gt $before ]" 60 || fail "run $i committed nothing"
  sleep "0.$((RANDOM % 9))"
  kill -KILL "$RUN_PID"
  wait "$RUN_PID" 2>/dev/null || true
  kills=$((kills + 1))
done
[ "$kills" -ge 2 ] || fail "only $kills kills while the input arrived"
wait "$GEN" || fail "gen failed: $(cat "$SSEG_TMP/gen.err")"
produced=$(kcat_count shop.events)
run_streamseg eos "$SSEG_TMP/S" "${EOS[@]}" -X kafka.group.id=eos
wait_processed "$SSEG_TMP/S" "$produced" 90 || fail "not all processed after the kills"
stop_streamseg "$RUN_PID" 10
grep -q 'catching up from changelog\|rebuilding from changelog' "$SSEG_TMP/eos.log" ||
  echo "note: no restart needed a catch-up from the changelog this time" >&2

# committed outputs: ids unique
for t in streamseg.profiles streamseg.dlq streamseg.churn-alerts; do
  fmt='%k\t%h\t%s\n'
  [ "$t" = streamseg.dlq ] && fmt='%k\t%h\t-\n' # values are the original (binary) records
  timeout 60 kcat -C -b "$BOOTSTRAP" -t "$t" -e -q -o beginning -X isolation.level=read_committed \
    -f "$fmt" >"$SSEG_TMP/$t.tsv" || fail "reading $t"
done
$PY - "$SSEG_TMP" "$produced" "$honours_aborts" <<'EOF' || fail "duplicated or missing committed outputs"
import json, re, sys
d, produced, honours = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
def rows(t):
    for line in open(f"{d}/{t}.tsv", errors="replace"):
        k, h, v = line.rstrip("\n").split("\t", 2)
        m = re.search(r"sseg\.id=([^,]*)", h)
        yield k, (m.group(1) if m else None), v
bad = 0
for t in ("streamseg.profiles", "streamseg.dlq", "streamseg.churn-alerts"):
    ids = [i for _, i, _ in rows(t)]
    dup = len(ids) - len(set(ids))
    print(f"{t}: {len(ids)} committed records, {dup} duplicated ids")
    if None in ids or (honours and dup):
        bad += 1
last = {}
for k, _, v in rows("streamseg.profiles"):
    last[k] = json.loads(v)
json.dump({k: v["n_events"] for k, v in last.items()}, open(f"{d}/last_profiles.json", "w"))
sys.exit(1 if bad else 0)
EOF

# the final state equals an uninterrupted run (data path state; churn off for byte identity)
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/S" --dump >"$SSEG_TMP/S.profiles"
$PY - "$SSEG_TMP/S.profiles" "$SSEG_TMP/last_profiles.json" <<'EOF' || fail "last committed profile != final state"
import json, sys
state = {json.loads(l)["user_id"]: json.loads(l)["n_events"] for l in open(sys.argv[1])}
last = json.load(open(sys.argv[2]))
assert set(state) == set(last), (len(state), len(last))
diff = [u for u in state if state[u] != last[u]]
assert not diff, diff[:5]
EOF
run_streamseg ref "$SSEG_TMP/R" -X segments.k=0 -X churn.refit.interval.ms=0 -X erasure.topic=
wait_processed "$SSEG_TMP/R" "$produced" 90 || fail "reference not processed"
stop_streamseg "$RUN_PID" 10
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/R" --dump --raw | cut -f1,2 >"$SSEG_TMP/R.keys"
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/S" --dump --raw | cut -f1,2 >"$SSEG_TMP/S.keys"
cmp -s "$SSEG_TMP/R.keys" "$SSEG_TMP/S.keys" || fail "the killed run holds other users"
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/R" --dump >"$SSEG_TMP/R.profiles"
$PY - "$SSEG_TMP/R.profiles" "$SSEG_TMP/S.profiles" <<'EOF' || fail "event counts differ from the uninterrupted run"
import json, sys
a = {json.loads(l)["user_id"]: (json.loads(l)["n_events"], json.loads(l)["counts"]) for l in open(sys.argv[1])}
b = {json.loads(l)["user_id"]: (json.loads(l)["n_events"], json.loads(l)["counts"]) for l in open(sys.argv[2])}
assert a == b, [u for u in a if a[u] != b.get(u)][:5]
EOF
dead=$("$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/S" --offsets |
  $PY -c 'import json,sys; print(json.load(sys.stdin)["dead_lettered"])')
ndlq=$($PY -c 'import re,sys; print(len({re.search(r"sseg\.id=([^,]*)", l).group(1) for l in open(sys.argv[1], errors="replace")}))' "$SSEG_TMP/streamseg.dlq.tsv")
[ "$dead" -gt 0 ] && [ "$ndlq" -eq "$dead" ] || fail "distinct dead-letter ids $ndlq != dead-lettered offsets $dead"
if [ "$honours_aborts" = 1 ]; then
  echo "ok: $kills kills, $produced records, committed outputs exactly once"
else
  echo "ok: $kills kills, $produced records, state exactly once; NOT CHECKED: output visibility" \
    "(this mock cluster shows aborted transactions to read_committed consumers)"
fi
