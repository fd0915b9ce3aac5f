#!/usr/bin/env bash
# One model across instances through model.topic (docs/scaling.md):
#  1. X and Y (one group, 4 input partitions) process a generated shop produced while both run;
#     Y is killed with SIGKILL mid-run and restarted on its state.dir (its replica resumes at
#     the stored log offset). After the input is processed and both have applied the whole
#     K-means log (partition 0, see 1c): both stored models are byte-identical (same checksum, same
#     version), both instances published records (two keys on the log), and every log offset
#     was applied or skipped as a duplicate (none lost, none foreign);
#  1b. churn (partition 1): both refit every 2 s and publish their fits; restarted with refits
#     off they catch up with the log's end and serve identical parameters, combined from both
#     instances' fits: per part the users-weighted geometric mean of the sources' parameters
#     (recomputed here from the sources inspect shows), not the prior;
#  1c. the K-means comparison of 1 is made after a restart with churn off (no timer wakes a
#     user, so nothing more is published) once both applied partition 0 to its end;
#  2. a third instance Z with an empty state.dir in another group replays the log from its
#     beginning and ends with the same model (checked before Z publishes anything: Z reads no
#     input);
#  3. control: the first half of the input with two instances without the model topic ends with
#     two different models (so check 1 can fail);
#  4. a model topic with one partition stops the run with an error naming model.topic.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir
PY=/usr/bin/python3
T=$SSEG_TMP
SYNC=(-X model.topic=streamseg.model -X segments.init.min.users=300
  -X churn.refit.interval.ms=2000 -X churn.fit.min.users=50 -X erasure.topic=
  -X kafka.session.timeout.ms=6000 -X kafka.heartbeat.interval.ms=500)

mock_start --partitions 4 --topic streamseg.model:2 --topic ctl.events:4 --topic one.model:1

"$STREAMSEG" gen --users 1000 --days 30 --seed 23 --format json --out "$T/all.jsonl" --quiet
total=$(wc -l <"$T/all.jsonl")
half=$((total / 2))
head -n "$half" "$T/all.jsonl" >"$T/b1.jsonl"
tail -n +$((half + 1)) "$T/all.jsonl" >"$T/b2.jsonl"
produce() { $PY "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic "$2" --events "$1" >/dev/null; }

# model JSON field of a state dir: model_field DIR EXPR [segments|churn] (python over m)
model_field() {
  "$STREAMSEG" inspect -X "state.dir=$1" --model 2>/dev/null |
    $PY -c "import json,sys; m=json.load(sys.stdin)['${3:-segments}']; print($2)" 2>/dev/null ||
    echo none
}
log_end() { # [PARTITION] the model log's end offset (kcat as the independent reader)
  kcat -b "$BOOTSTRAP" -C -t streamseg.model -p "${1:-0}" -o -1 -e -q -f '%o\n' 2>/dev/null |
    tail -n 1 | awk '{print $1 + 1}'
}
owners_total() {
  local a b
  a=$(offsets_total "$1")
  b=$(offsets_total "$2")
  echo $((a + b))
}
# caught_up DIR...: every DIR's stored K-means model applied its log (partition 0) to its end;
# churn_caught_up the same for the churn parameters' log (partition 1)
log_caught_up() { # PARTITION MODEL DIR...
  local part=$1 model=$2 end d
  shift 2
  end=$(log_end "$part")
  [ -n "$end" ] || return 1
  for d in "$@"; do
    [ "$(model_field "$d" "m['model_sync']['next_offset']" "$model")" = "$end" ] || return 1
  done
}
caught_up() { log_caught_up 0 segments "$@"; }
churn_caught_up() { log_caught_up 1 churn "$@"; }
churn_sources() { # instances with a fit on the churn log
  kcat -b "$BOOTSTRAP" -C -t streamseg.model -p 1 -e -q -f '%k\n' 2>/dev/null | sort -u | wc -l
}

# --- 1: two instances, one killed and restarted ------------------------------------------------
run_streamseg g "$T/X" "${SYNC[@]}"
XPID=$RUN_PID
run_streamseg g "$T/Y" "${SYNC[@]}"
YPID=$RUN_PID
wait_until "grep -q 'assigned shop.events' '$T/g.log'" 30 || fail "no assignment"
produce "$T/b1.jsonl" shop.events
wait_until "[ \$(owners_total '$T/X' '$T/Y') -ge $half ]" 60 || fail "batch 1 stalled"
# Y has applied part of the log and stored it
wait_until "[ \$(model_field '$T/Y' \"m['model_sync']['next_offset']\") -ge 2 ]" 30 ||
  fail "Y stored no progress of the model log"
kill -KILL "$YPID"
wait "$YPID" 2>/dev/null || true
run_streamseg g2 "$T/Y" "${SYNC[@]}" -X kafka.group.id=g
YPID=$RUN_PID
wait_until "grep -q 'applying the shared model.s log from offset [1-9]' '$T/g2.log'" 30 ||
  fail "the restarted Y did not resume the model log at its stored offset"
produce "$T/b2.jsonl" shop.events
wait_until "[ \$(owners_total '$T/X' '$T/Y') -ge $total ]" 120 ||
  fail "processed $(owners_total "$T/X" "$T/Y") of $total"
# both idle: the last records come back and are applied in idle cycles
wait_until "caught_up '$T/X' '$T/Y'" 60 || fail "the instances did not catch up with the model log"
# and both have published a churn fit (refits every 2 s, each one after the other's end)
wait_until "[ \$(churn_sources) -eq 2 ]" 60 ||
  fail "the churn log holds fits of $(churn_sources) instances, not 2"
stop_streamseg "$YPID" 15
stop_streamseg "$XPID" 15
# While refits run, the logs keep growing (a refit publishes a fit and wakes users, whose
# vectors become K-means records): each model is compared after a restart in which nothing
# publishes to its partition any more, once both instances applied that partition to its end.

# --- 1b: the churn parameters (refits off: partition 1 stands still) ------------------------------
grep -q "churn fit published on streamseg.model" "$T/g.log" || fail "no churn fit was published"
run_streamseg h "$T/X" "${SYNC[@]}" -X kafka.group.id=g -X churn.refit.interval.ms=0
XPID=$RUN_PID
run_streamseg h2 "$T/Y" "${SYNC[@]}" -X kafka.group.id=g -X churn.refit.interval.ms=0
YPID=$RUN_PID
wait_until "churn_caught_up '$T/X' '$T/Y'" 60 || fail "the instances did not catch up with the churn log"
stop_streamseg "$YPID" 15
stop_streamseg "$XPID" 15
for d in X Y; do
  "$STREAMSEG" inspect -X "state.dir=$T/$d" --model >"$T/$d.model2" || fail "inspect $d"
done
$PY - "$T/X.model2" "$T/Y.model2" <<'EOF' || fail "the churn parameters are not one combination"
import json, math, sys
x = json.load(open(sys.argv[1]))["churn"]
y = json.load(open(sys.argv[2]))["churn"]
ok = True
for part in ("purchase", "spend"):
    if x[part] != y[part]:
        print(part, "differs:", x[part], y[part])
        ok = False
if x["version"] != y["version"] or x["sources"] != y["sources"]:
    print("versions or sources differ")
    ok = False
src = x["sources"]
print("sources:", [(s["name"].rsplit("/", 1)[-1], s["fitted"], s["fit"]["purchase"]["r"]) for s in src])
if len(src) != 2:
    ok = False
fitted = [s for s in src if s["fitted"] & 1]
if not fitted:
    sys.exit(1)
w = sum(s["fit"]["purchase"]["users_fitted"] for s in fitted)
for k in ("r", "alpha", "a", "b"):
    want = math.exp(sum(s["fit"]["purchase"]["users_fitted"] * math.log(s["fit"]["purchase"][k]) for s in fitted) / w)
    got = x["purchase"][k]
    print(f"purchase {k}: served {got:.6g}, weighted geometric mean of the sources {want:.6g}")
    if abs(got - want) > 1e-9 * abs(want):
        ok = False
if x["purchase"]["users_fitted"] != w:
    ok = False
if len(fitted) == 2 and fitted[0]["fit"]["purchase"]["r"] == fitted[1]["fit"]["purchase"]["r"]:
    print("the two sources' fits are equal: the combination proves nothing")
    ok = False
sys.exit(0 if ok else 1)
EOF


# --- 1c: K-means (churn off: no timers wake users, partition 0 stands still) -----------------------
run_streamseg k "$T/X" "${SYNC[@]}" -X kafka.group.id=g -X churn.enabled=false
XPID=$RUN_PID
run_streamseg k2 "$T/Y" "${SYNC[@]}" -X kafka.group.id=g -X churn.enabled=false
YPID=$RUN_PID
wait_until "caught_up '$T/X' '$T/Y'" 60 || fail "the instances did not catch up with the model log"
stop_streamseg "$YPID" 15
stop_streamseg "$XPID" 15
end=$(log_end 0)
for d in X Y; do
  "$STREAMSEG" inspect -X "state.dir=$T/$d" --model >"$T/$d.model" || fail "inspect $d"
done
$PY - "$T/X.model" "$T/Y.model" "$end" <<'EOF' || fail "the two instances' models differ"
import json, sys
x = json.load(open(sys.argv[1]))["segments"]
y = json.load(open(sys.argv[2]))["segments"]
end = int(sys.argv[3])
ok = True
for m, n in ((x, "X"), (y, "Y")):
    s = m["model_sync"]
    print(f"{n}: version {m['version']} crc {m['model_crc32c']} initialized {m['initialized']} sync {s}")
    if not m["initialized"] or s["next_offset"] != end or s["lost"] or s["foreign"]:
        ok = False
    if s["applied"] + s["duplicates"] != end:
        ok = False
    if s["input_partitions"] != 4:
        ok = False
if x["model_crc32c"] != y["model_crc32c"] or x["version"] != y["version"]:
    ok = False
# the same model in every figure shown
for f in ("seen", "reseeds", "inertia", "features"):
    if x[f] != y[f]:
        print("differs:", f)
        ok = False
sys.exit(0 if ok else 1)
EOF
keys=$(kcat -b "$BOOTSTRAP" -C -t streamseg.model -p 0 -e -q -f '%k\n' | sort -u | wc -l)
[ "$keys" -eq 2 ] || fail "the model log holds records of $keys instances, not 2"
grep -q 'model.topic streamseg.model: [0-9]* records applied' "$T/g2.log" ||
  fail "Y's summary line is missing"

# --- 2: a new instance replays the log from its beginning ---------------------------------------
run_streamseg z "$T/Z" "${SYNC[@]}" -X input.topic=ctl.events -X churn.enabled=false
ZPID=$RUN_PID
wait_until "caught_up '$T/Z'" 60 || fail "Z did not replay the model log"
stop_streamseg "$ZPID" 15
[ "$(model_field "$T/Z" "m['model_crc32c']")" = "$(model_field "$T/X" "m['model_crc32c']")" ] ||
  fail "a replay of the log gives another model than the instances'"

# --- 3: control without the model topic: two models -----------------------------------------------
produce "$T/b1.jsonl" ctl.events
CTL=(-X input.topic=ctl.events -X segments.init.min.users=300 -X churn.enabled=false
  -X erasure.topic= -X output.segment.changes.topic=ctl.changes -X output.profiles.topic=ctl.profiles
  -X kafka.session.timeout.ms=6000 -X kafka.heartbeat.interval.ms=500)
run_streamseg c "$T/A" "${CTL[@]}"
APID=$RUN_PID
run_streamseg c "$T/B" "${CTL[@]}"
BPID=$RUN_PID
wait_until "[ \$(owners_total '$T/A' '$T/B') -ge $half ]" 120 || fail "control not processed"
stop_streamseg "$BPID" 15
stop_streamseg "$APID" 15
a=$(model_field "$T/A" "m['model_crc32c']")
b=$(model_field "$T/B" "m['model_crc32c']")
[ "$a" != none ] && [ "$a" != "$b" ] || fail "control: separate models are identical ($a)"
[ "$(model_field "$T/A" "m['model_sync']")" = None ] || fail "control: a sync state is stored"
# --- 4: a model topic with one partition is a configuration error naming the key ---------------
set +e
timeout "$(sseg_scale 30)" "$STREAMSEG" run -X "kafka.bootstrap.servers=$BOOTSTRAP" -X kafka.group.id=one \
  -X "state.dir=$T/O" -X model.topic=one.model -X input.topic=ctl.events -X http.listen= \
  -X commit.interval.ms=200 2>"$T/one.log"
rc=$?
set -e
[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "a 1-partition model.topic did not stop the run (rc $rc)"
grep -q "model.topic one.model has 1 partition(s); it needs 2" "$T/one.log" ||
  fail "the error does not name model.topic and its partitions: $(tail -n 3 "$T/one.log")"
echo "ok: two instances (one killed and restarted) and a replay share one model; separate ones do not"
