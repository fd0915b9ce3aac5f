#!/usr/bin/env bash
# Two instances on one cluster with a changelog (docs/scaling.md), with faults:
#  1. X and Y (same group) share 4 input partitions while batch 1 is produced;
#  2. Y is killed with SIGKILL while batch 2 is being processed; X takes over Y's partitions
#     (restoring them from the changelog) and processes the rest;
#  3. Y restarts on its stale state.dir, gets partitions back in the rebalance (reused, caught
#     up or rebuilt from the changelog), and batch 3 is processed by both.
# Invariant: every input offset is processed or dead-lettered exactly once (the owners'
# offsets sum to the input), and the final state of every user — read from the instance that
# owns its partition at the end — is byte-identical to a single uninterrupted instance.
# Model stages are off: the state compared is the data path's (cycle-boundary independent).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir
PY=/usr/bin/python3
OPTS=(-X segments.k=0 -X churn.enabled=false -X erasure.topic= -X commit.interval.ms=200
  -X state.changelog.topic=streamseg.changelog -X kafka.session.timeout.ms=6000
  -X kafka.heartbeat.interval.ms=500)

mock_start --partitions 4 --topic streamseg.changelog:4

"$STREAMSEG" gen --users 900 --days 12 --seed 41 --format json --out "$SSEG_TMP/all.jsonl" --quiet
total=$(wc -l <"$SSEG_TMP/all.jsonl")
third=$((total / 3))
head -n "$third" "$SSEG_TMP/all.jsonl" >"$SSEG_TMP/b1.jsonl"
sed -n "$((third + 1)),$((2 * third))p" "$SSEG_TMP/all.jsonl" >"$SSEG_TMP/b2.jsonl"
tail -n +$((2 * third + 1)) "$SSEG_TMP/all.jsonl" >"$SSEG_TMP/b3.jsonl"
produce() { $PY "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic shop.events --events "$1" >/dev/null; }

# The committed progress of the partitions, each from the instance holding it furthest.
owners_total() {
  local x y
  x=$("$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/X" --offsets 2>/dev/null || echo '{"partitions":[]}')
  y=$("$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/Y" --offsets 2>/dev/null || echo '{"partitions":[]}')
  $PY - "$x" "$y" <<'EOF'
import json, sys
best = {}
for doc in sys.argv[1:]:
    for p in json.loads(doc)["partitions"]:
        n = p["processed"] + p["dead_lettered"]
        best[p["partition"]] = max(best.get(p["partition"], 0), n)
print(sum(best.values()))
EOF
}
wait_owners() { # N TIMEOUT
  local t=0
  while [ "$t" -lt "$2" ]; do
    [ "$(owners_total)" -ge "$1" ] && return 0
    sleep 1
    t=$((t + 1))
  done
  echo "wait_owners: $(owners_total) of $1" >&2
  return 1
}

# --- 1: two instances share the partitions -------------------------------------------------------
run_streamseg g "$SSEG_TMP/X" "${OPTS[@]}"
XPID=$RUN_PID
run_streamseg g "$SSEG_TMP/Y" "${OPTS[@]}"
YPID=$RUN_PID
produce "$SSEG_TMP/b1.jsonl"
wait_owners "$third" 60 || fail "batch 1 not processed by the pair"
nx=$("$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/X" --offsets | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["partitions"]))')
ny=$("$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/Y" --offsets | $PY -c 'import json,sys; print(len(json.load(sys.stdin)["partitions"]))')
[ "$nx" -ge 1 ] && [ "$ny" -ge 1 ] || fail "the partitions were not shared (X $nx, Y $ny)"

# --- 2: Y is killed during batch 2 ---------------------------------------------------------------
produce "$SSEG_TMP/b2.jsonl"
sleep 0.5
kill -KILL "$YPID"
wait "$YPID" 2>/dev/null || true
# after Y's session times out, X is assigned Y's partitions and rebuilds them
wait_until "grep -q 'rebuilding from changelog' '$SSEG_TMP/g.log'" 60 ||
  fail "X did not rebuild Y's partitions from the changelog"
wait_owners $((2 * third)) 90 || fail "X did not finish batch 2 after Y's death"

# --- 3: Y restarts on its stale state; batch 3 ----------------------------------------------------
run_streamseg g2 "$SSEG_TMP/Y" "${OPTS[@]}" -X kafka.group.id=g
YPID=$RUN_PID
# the rebalance gives Y partitions back (its stale copies are caught up from the changelog)
wait_until "grep -q 'assigned shop.events' '$SSEG_TMP/g2.log'" 60 ||
  fail "the restarted Y got no partition"
produce "$SSEG_TMP/b3.jsonl"
if ! wait_owners "$total" 90; then
  for d in X Y; do
    echo "$d: $("$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/$d" --offsets 2>&1)" >&2
  done
  tail -n 20 "$SSEG_TMP/g.log" "$SSEG_TMP/g2.log" >&2
  fail "batch 3 not processed"
fi
sleep 1
stop_streamseg "$YPID" 15
stop_streamseg "$XPID" 15

# --- the invariant --------------------------------------------------------------------------------
[ "$(owners_total)" -eq "$total" ] || fail "processed + dead-lettered $(owners_total) != $total"
run_streamseg ref "$SSEG_TMP/R" -X segments.k=0 -X churn.enabled=false -X erasure.topic=
wait_processed "$SSEG_TMP/R" "$total" 90 || fail "reference not processed"
stop_streamseg "$RUN_PID" 10
for d in X Y R; do
  "$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/$d" --offsets >"$SSEG_TMP/$d.offsets"
  "$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/$d" --dump --raw >"$SSEG_TMP/$d.dump"
done
$PY - "$SSEG_TMP" <<'EOF' || fail "the moved state differs from the uninterrupted run"
import json, os, sys
d = sys.argv[1]
def load(name):
    off = {p["partition"]: p["next_offset"] for p in json.load(open(os.path.join(d, name + ".offsets")))["partitions"]}
    users = {}
    for line in open(os.path.join(d, name + ".dump")):
        part, uid, hexv = line.rstrip("\n").split("\t")
        users.setdefault(int(part), {})[uid] = hexv
    return off, users
xo, xu = load("X"); yo, yu = load("Y"); ro, ru = load("R")
bad = 0
for part in sorted(ro):
    # the owner at the end: the instance whose progress reached the end of the partition
    cands = [u for o, u in ((xo, xu), (yo, yu)) if o.get(part) == ro[part]]
    if not cands:
        print(f"partition {part}: nobody reached offset {ro[part]} (X {xo.get(part)}, Y {yo.get(part)})")
        bad += 1
        continue
    for u in cands:
        got, want = u.get(part, {}), ru.get(part, {})
        if got != want:
            diff = [k for k in set(got) | set(want) if got.get(k) != want.get(k)]
            print(f"partition {part}: {len(diff)} users differ, e.g. {diff[:3]}")
            bad += 1
sys.exit(1 if bad else 0)
EOF
# which partitions come back to Y is the assignor's choice: its copies are current, stale
# (caught up) or absent (rebuilt); it_changelog covers each case deterministically
grep -q 'catching up from changelog\|rebuilding from changelog\|local state is current' \
  "$SSEG_TMP/g2.log" || fail "the restarted Y did not check its state against the changelog"
echo "ok: kill -9 and rejoin under load, $total records exactly once, state equal to a single run"
