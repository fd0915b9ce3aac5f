#!/usr/bin/env bash
# Privacy erasure end to end (docs/privacy.md): generated users are processed; erasure requests
# for three of them (and one unknown id) are produced with kcat on streamseg.erasure. Within a
# cycle: one confirmation each (found true/false), a tombstone as the user's last profile
# record, /users/{id} answers 404, `inspect --user` finds nothing, segment sizes and churn level
# counts drop by the erased users. Then the event clock jumps ahead so every timer is due: the
# erased users' timers are gone (no new alert for them, while others get alerts). A restart
# does not apply a request twice.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/datapath.sh"
sseg_tmpdir
STATE=$SSEG_TMP/state
PY=/usr/bin/python3

mock_start --partitions 2 --topic streamseg.erasure:2

"$STREAMSEG" gen --users 400 --days 20 --seed 21 --format json --out "$SSEG_TMP/a.jsonl" --quiet
$PY "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic shop.events \
  --events "$SSEG_TMP/a.jsonl" >/dev/null
n1=$(wc -l <"$SSEG_TMP/a.jsonl")
run_streamseg erase "$STATE" -X segments.init.min.users=100 -X churn.refit.interval.ms=0 \
  -X metrics.interval.ms=200
wait_processed "$STATE" "$n1" 60 || fail "input not processed"
wait_until "grep -q 'listening on' '$SSEG_TMP/erase.log'" 10 || fail "no http line"
port=$(grep -o 'listening on 127.0.0.1:[0-9]*' "$SSEG_TMP/erase.log" | head -1 | cut -d: -f2)
api() { curl -s "http://127.0.0.1:$port$1"; }

# three users with a churn timer (a scored user), from ids >= u100 (the later batch uses u0..u29)
"$STREAMSEG" inspect -X "state.dir=$STATE" --dump >"$SSEG_TMP/dump1.jsonl" 2>/dev/null || true
mapfile -t victims < <($PY - "$SSEG_TMP/dump1.jsonl" <<'EOF'
import json, sys
us = [json.loads(l) for l in open(sys.argv[1])]
pick = [u["user_id"] for u in us if int(u["user_id"][1:]) >= 100 and u.get("churn_score") is not None
        and u.get("segment") is not None][:3]
print("\n".join(pick))
EOF
)
[ "${#victims[@]}" -eq 3 ] || fail "could not pick 3 users: ${victims[*]}"
before=$(api /api/stats)

: >"$SSEG_TMP/req.txt"
for u in "${victims[@]}" ghost-user; do printf '%s\t{}\n' "$u" >>"$SSEG_TMP/req.txt"; done
kcat_produce streamseg.erasure "$SSEG_TMP/req.txt" || fail "producing the requests"
wait_until '[ "$(kcat_count streamseg.erasure-confirmations)" -ge 4 ]' 30 ||
  fail "no 4 confirmations: $(kcat_count streamseg.erasure-confirmations)"
sleep 1 # one more snapshot of the figures
after=$(api /api/stats)
kcat_dump streamseg.erasure-confirmations "$SSEG_TMP/conf.tsv"
timeout 30 kcat -C -b "$BOOTSTRAP" -t streamseg.profiles -e -q -o beginning -f '%k\t%S\n' \
  >"$SSEG_TMP/profiles.tsv"
for u in "${victims[@]}"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/users/$u")
  [ "$code" = 404 ] || fail "/users/$u after erasure: $code"
done
$PY - "$SSEG_TMP/conf.tsv" "$SSEG_TMP/profiles.tsv" "$before" "$after" "${victims[@]}" <<'EOF' || fail "confirmations/tombstones/counters"
import json, sys
conf_path, prof_path, before, after, *victims = sys.argv[1:]
conf = {}
for line in open(conf_path):
    k, v = line.rstrip("\n").split("\t", 1)
    conf.setdefault(k, []).append(json.loads(v))
assert set(conf) == set(victims) | {"ghost-user"}, conf.keys()
for u in victims:
    [c] = conf[u]
    assert c["found"] is True and c["partitions"] and c["user_id"] == u, c
    assert c["id"].startswith("streamseg.erasure/"), c
[g] = conf["ghost-user"]
assert g["found"] is False and g["partitions"] == [], g
last = {}
for line in open(prof_path):
    k, size = line.rstrip("\n").split("\t")
    last[k] = int(size)
for u in victims:
    assert last.get(u) == -1, f"{u}: last profile record is not a tombstone ({last.get(u)})"
assert last.get("ghost-user") == -1, "a tombstone for the unknown user too"
b, a = json.loads(before), json.loads(after)
sb, sa = b["stages"]["segments"]["users_assigned"], a["stages"]["segments"]["users_assigned"]
assert sa == sb - 3, f"segment sizes {sb} -> {sa}"
cb, ca = sum(b["stages"]["churn"]["users_by_level"]), sum(a["stages"]["churn"]["users_by_level"])
assert ca == cb - 3, f"churn level counts {cb} -> {ca}"
EOF
metrics=$(curl -s "http://127.0.0.1:$port/metrics")
grep -q '^streamseg_erasures_total{found="true"} 3$' <<<"$metrics" &&
  grep -q '^streamseg_erasures_total{found="false"} 1$' <<<"$metrics" || fail "erasure metric"

# --- every timer due: none of the erased users gets an alert ----------------------------------
kcat_dump streamseg.churn-alerts "$SSEG_TMP/alerts1.tsv"
"$STREAMSEG" gen --users 30 --events 300 --seed 22 --format json \
  --start-ms $((1704067200000 + 400 * 86400000)) --out "$SSEG_TMP/b.jsonl" --quiet
$PY "$HERE/produce_events.py" --bootstrap "$BOOTSTRAP" --topic shop.events \
  --events "$SSEG_TMP/b.jsonl" >/dev/null
n2=$((n1 + $(wc -l <"$SSEG_TMP/b.jsonl")))
wait_processed "$STATE" "$n2" 60 || fail "second batch not processed"
sleep 1
kcat_dump streamseg.churn-alerts "$SSEG_TMP/alerts2.tsv"
n_a1=$(wc -l <"$SSEG_TMP/alerts1.tsv")
n_a2=$(wc -l <"$SSEG_TMP/alerts2.tsv")
[ "$n_a2" -gt $((n_a1 + 50)) ] || fail "the jump fired few timers: $n_a1 -> $n_a2 alerts"
for u in "${victims[@]}"; do
  a1=$(grep -c "^$u	" "$SSEG_TMP/alerts1.tsv" || true)
  a2=$(grep -c "^$u	" "$SSEG_TMP/alerts2.tsv" || true)
  [ "$a1" = "$a2" ] || fail "erased user $u got alerts after the erasure ($a1 -> $a2)"
  p=$(timeout 30 kcat -C -b "$BOOTSTRAP" -t streamseg.profiles -e -q -o beginning \
    -f '%k\t%S\n' | grep "^$u	" | tail -1 | cut -f2)
  [ "$p" = -1 ] || fail "$u has a profile again after the erasure"
done

# --- a restart does not apply the requests again -----------------------------------------------
stop_streamseg "$RUN_PID" 10
for u in "${victims[@]}"; do
  if "$STREAMSEG" inspect -X "state.dir=$STATE" --user "$u" >/dev/null 2>&1; then
    fail "inspect still finds $u"
  fi
done
run_streamseg erase2 "$STATE"
wait_until "grep -q 'erasure.topic streamseg.erasure: reading 2 partitions' '$SSEG_TMP/erase2.log'" 30 ||
  fail "the restarted instance did not assign the erasure topic"
sleep 2
stop_streamseg "$RUN_PID" 10
[ "$(kcat_count streamseg.erasure-confirmations)" -eq 4 ] || fail "requests applied again"
echo "ok: 3 users erased (+1 unknown), timers gone, counters adjusted, no double apply"
