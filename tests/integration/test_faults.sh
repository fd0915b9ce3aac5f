#!/usr/bin/env bash
# Fault injection under load (issue 7 item 5), on a 3-broker `streamseg mock-kafka`:
#  A. two instances with a changelog process four batches while the cluster misbehaves:
#     injected errors on Produce, Fetch, OffsetCommit and JoinGroup (retriable codes), leader
#     moves of input and changelog partitions, a broker down and up, and one instance restarted
#     (into a JoinGroup error) in the middle;
#  B. a RocksDB write failure: one instance runs with a file-size limit (RLIMIT_FSIZE, SIGXFSZ
#     ignored: RocksDB's writes fail with EFBIG, as on a full disk); it must stop with an error
#     and a non-zero exit, and a restart without the limit completes the input.
# After each: every input offset processed or dead-lettered exactly once, and every user's state
# byte-identical to a single uninterrupted instance (model stages off, as in test_crash.sh).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir
PY=/usr/bin/python3
PLAIN=(-X segments.k=0 -X churn.enabled=false -X erasure.topic= -X commit.interval.ms=200)
OPTS=("${PLAIN[@]}" -X state.changelog.topic=streamseg.changelog -X kafka.session.timeout.ms=6000
  -X kafka.heartbeat.interval.ms=500)

mock_start --brokers 3 --partitions 4 --topic streamseg.changelog:4
"$STREAMSEG" gen --users 600 --days 8 --seed 51 --format json --out "$SSEG_TMP/all.jsonl" --quiet
total=$(wc -l <"$SSEG_TMP/all.jsonl")
q=$((total / 4))
split -l "$q" -d -a 1 "$SSEG_TMP/all.jsonl" "$SSEG_TMP/b"
produce() { $PY "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic shop.events --events "$1" >/dev/null; }

# processed + dead-lettered per partition from whichever state holds it furthest, summed
owners_total() {
  local docs=()
  for d in "$@"; do
    docs+=("$("$STREAMSEG" inspect -X "state.dir=$d" --offsets 2>/dev/null || echo '{"partitions":[]}')")
  done
  $PY - "${docs[@]}" <<'EOF'
import json, sys
best = {}
for doc in sys.argv[1:]:
    for p in json.loads(doc)["partitions"]:
        best[p["partition"]] = max(best.get(p["partition"], 0), p["processed"] + p["dead_lettered"])
print(sum(best.values()))
EOF
}
wait_owners() { # N TIMEOUT DIRS...
  local n=$1 limit t=0
  limit=$(awk -v t="$2" -v m="$SSEG_TIMEOUT_MULT" 'BEGIN{print int(t*m)}')
  shift 2
  while [ "$t" -lt "$limit" ]; do
    [ "$(owners_total "$@")" -ge "$n" ] && return 0
    sleep 1
    t=$((t + 1))
  done
  echo "wait_owners: $(owners_total "$@") of $n" >&2
  for d in "$@"; do
    echo "$d: $("$STREAMSEG" inspect -X "state.dir=$d" --offsets 2>&1)" >&2
  done
  tail -n 15 "$SSEG_TMP"/f*.log >&2 || true
  return 1
}
# compare DUMPS_FROM... with the reference R: per partition, the state that reached the end
same_as_reference() {
  local args=()
  for d in "$@" "$SSEG_TMP/R"; do
    "$STREAMSEG" inspect -X "state.dir=$d" --offsets >"$d.offsets"
    "$STREAMSEG" inspect -X "state.dir=$d" --dump --raw >"$d.dump"
    args+=("$d")
  done
  $PY - "${args[@]}" <<'EOF'
import json, sys
def load(d):
    off = {p["partition"]: p["next_offset"] for p in json.load(open(d + ".offsets"))["partitions"]}
    users = {}
    for line in open(d + ".dump"):
        part, uid, hexv = line.rstrip("\n").split("\t")
        users.setdefault(int(part), {})[uid] = hexv
    return off, users
*dirs, ref = sys.argv[1:]
ro, ru = load(ref)
states = [load(d) for d in dirs]
bad = 0
for part in sorted(ro):
    cands = [u for o, u in states if o.get(part) == ro[part]]
    if not cands:
        print(f"partition {part}: no state reached offset {ro[part]}"); bad += 1
    for u in cands:
        if u.get(part, {}) != ru.get(part, {}):
            print(f"partition {part}: users differ from the reference"); bad += 1
sys.exit(1 if bad else 0)
EOF
}

# an instance that ended on its own: show why
alive() { # PID WHAT
  kill -0 "$1" 2>/dev/null && return 0
  grep -h 'ERROR\|fatal\|streamseg:' "$SSEG_TMP"/f*.log | grep -v 'rdkafka' | tail -n 10 >&2 || true
  fail "$2 ended on its own"
}

# the reference: one instance, no faults
produce "$SSEG_TMP/b0"
produce "$SSEG_TMP/b1"
produce "$SSEG_TMP/b2"
produce "$SSEG_TMP/b3"
[ -s "$SSEG_TMP/b4" ] && produce "$SSEG_TMP/b4"
run_streamseg ref "$SSEG_TMP/R" "${PLAIN[@]}"
wait_processed "$SSEG_TMP/R" "$total" 120 || fail "reference not processed"
stop_streamseg "$RUN_PID" 10

# --- A: Kafka faults with two instances (a fresh input topic, same records) -----------------------
mock_ctl "topic faults.events 4 3" || fail "topic"
mock_ctl "topic faults.changelog 4 3" || fail "topic"
produce_to() { $PY "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic faults.events --events "$1" >/dev/null; }
FOPTS=("${OPTS[@]}" -X input.topic=faults.events -X state.changelog.topic=faults.changelog)
run_streamseg f "$SSEG_TMP/X" "${FOPTS[@]}"
XPID=$RUN_PID
run_streamseg f "$SSEG_TMP/Y" "${FOPTS[@]}"
YPID=$RUN_PID
produce_to "$SSEG_TMP/b0"
mock_ctl "errors Produce NOT_LEADER_FOR_PARTITION 20" || fail "inject"
mock_ctl "errors Fetch NOT_LEADER_FOR_PARTITION 20" || fail "inject"
mock_ctl "errors OffsetCommit COORDINATOR_NOT_AVAILABLE 10" || fail "inject"
wait_owners "$q" 90 "$SSEG_TMP/X" "$SSEG_TMP/Y" || fail "batch 0 under injected errors"
mock_ctl "leader faults.events 0 2" && mock_ctl "leader faults.events 3 3" &&
  mock_ctl "leader faults.changelog 1 2" || fail "leader moves"
produce_to "$SSEG_TMP/b1"
mock_ctl "down 3" || fail "broker down"
sleep 2
mock_ctl "up 3" || fail "broker up"
wait_owners $((2 * q)) 90 "$SSEG_TMP/X" "$SSEG_TMP/Y" || fail "batch 1 after leader moves and a broker outage"
# Y restarts into JoinGroup errors
alive "$XPID" "X (batch 1)"
alive "$YPID" "Y (batch 1)"
stop_streamseg "$YPID" 15
mock_ctl "errors JoinGroup COORDINATOR_LOAD_IN_PROGRESS 5" || fail "inject"
produce_to "$SSEG_TMP/b2"
run_streamseg f2 "$SSEG_TMP/Y" "${FOPTS[@]}" -X kafka.group.id=f
YPID=$RUN_PID
produce_to "$SSEG_TMP/b3"
[ -s "$SSEG_TMP/b4" ] && produce_to "$SSEG_TMP/b4"
mock_ctl "errors Produce REQUEST_TIMED_OUT 10" || fail "inject"
wait_owners "$total" 120 "$SSEG_TMP/X" "$SSEG_TMP/Y" || fail "all batches under faults"
sleep 1
alive "$XPID" "X (batch 4)"
alive "$YPID" "Y (batch 4)"
stop_streamseg "$YPID" 15
stop_streamseg "$XPID" 15
[ "$(owners_total "$SSEG_TMP/X" "$SSEG_TMP/Y")" -eq "$total" ] ||
  fail "A: processed + dead-lettered $(owners_total "$SSEG_TMP/X" "$SSEG_TMP/Y") != $total"
same_as_reference "$SSEG_TMP/X" "$SSEG_TMP/Y" || fail "A: state differs from the uninterrupted run"

# --- B: RocksDB write failure (file-size limit), then a clean restart --------------------------------
rc=0
(
  trap '' XFSZ
  ulimit -f 64 # KiB: the first WriteBatch (about 400 KiB of users) outgrows it
  exec "$STREAMSEG" run -X "kafka.bootstrap.servers=$BOOTSTRAP" -X kafka.group.id=disk \
    -X "state.dir=$SSEG_TMP/D" -X http.listen= "${PLAIN[@]}" 2>"$SSEG_TMP/disk.log"
) &
DPID=$!
sseg_track_pid "$DPID"
t=0
while kill -0 "$DPID" 2>/dev/null && [ "$t" -lt 600 ]; do sleep 0.2; t=$((t + 1)); done
kill -0 "$DPID" 2>/dev/null && fail "B: streamseg kept running on a failing disk"
wait "$DPID" || rc=$?
[ "$rc" -ne 0 ] || fail "B: exit code 0 after a failed write"
grep -q 'RocksDB' "$SSEG_TMP/disk.log" || fail "B: the error does not name RocksDB: $(tail -3 "$SSEG_TMP/disk.log")"
run_streamseg disk2 "$SSEG_TMP/D" "${PLAIN[@]}" -X kafka.group.id=disk
wait_processed "$SSEG_TMP/D" "$total" 120 || fail "B: restart did not complete the input"
stop_streamseg "$RUN_PID" 10
same_as_reference "$SSEG_TMP/D" || fail "B: state after the disk failure differs"
echo "ok: $total records exactly once through injected errors, leader moves, a broker outage, a restart and a failed disk"
