#!/usr/bin/env bash
# `streamseg mock-kafka` is a real Kafka protocol peer for independent clients: kcat produces
# and reads back 3000 keyed messages over 3 partitions; the control channel answers, injects
# request errors, takes the broker down (nothing can be read) and up again (everything can);
# the default topics exist; closing stdin does not stop it; SIGTERM stops it with exit 0.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
sseg_tmpdir

# --- usage errors are exit 2, --help is 0 ---------------------------------------------------
rc=0
"$STREAMSEG" mock-kafka --brokers 0 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "--brokers 0 exited $rc, expected 2"
rc=0
"$STREAMSEG" mock-kafka --topic 'bad name:2' 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "an invalid topic name exited $rc, expected 2"
"$STREAMSEG" mock-kafka --help | grep 'leader TOPIC PARTITION' >/dev/null || fail "--help lacks the commands"

mock_start --topic t1:3

# --- the topic was created with its partition count, the defaults with 4 --------------------
kcat -L -b "$BOOTSTRAP" >"$SSEG_TMP/meta.txt" || fail "kcat -L failed"
grep -q 'topic "t1" with 3 partitions' "$SSEG_TMP/meta.txt" || fail "t1 lacks 3 partitions: $(cat "$SSEG_TMP/meta.txt")"
for t in shop.events streamseg.profiles streamseg.dlq streamseg.segment-changes \
        streamseg.segment-stats streamseg.churn-alerts streamseg.model; do
        grep -q "topic \"$t\" with 4 partitions" "$SSEG_TMP/meta.txt" || fail "default topic $t missing"
done

# --- 3000 keyed messages in, the same 3000 out ----------------------------------------------
N=3000
awk -v n="$N" 'BEGIN { for (i = 0; i < n; i++) printf "user-%05d\t{\"seq\":%d,\"v\":\"x%d\"}\n", i, i, i * 7 }' \
        >"$SSEG_TMP/in.tsv"
kcat_produce t1 "$SSEG_TMP/in.tsv" || fail "kcat could not produce to t1"
n=$(kcat_count t1) || fail "kcat could not count t1"
[ "$n" -eq "$N" ] || fail "t1 holds $n messages, expected $N"
kcat_dump t1 "$SSEG_TMP/out.tsv" || fail "kcat could not dump t1"
sort "$SSEG_TMP/in.tsv" >"$SSEG_TMP/in.sorted"
sort "$SSEG_TMP/out.tsv" >"$SSEG_TMP/out.sorted"
cmp -s "$SSEG_TMP/in.sorted" "$SSEG_TMP/out.sorted" ||
        fail "keys/values read back differ from those produced: $(diff "$SSEG_TMP/in.sorted" "$SSEG_TMP/out.sorted" | head -5)"
# Keyed: every partition got some, and each key lives in exactly one partition.
timeout -k 2 "$(sseg_scale 30)" kcat -C -b "$BOOTSTRAP" -t t1 -e -q -o beginning -f '%p %k\n' \
        >"$SSEG_TMP/parts.txt" || fail "kcat could not read partitions of t1"
np=$(cut -d' ' -f1 "$SSEG_TMP/parts.txt" | sort -u | wc -l)
[ "$np" -eq 3 ] || fail "messages landed in $np partitions of t1, expected 3"

# --- the control channel ---------------------------------------------------------------------
mock_ctl ping || fail "ping: $MOCK_REPLY"
if mock_ctl "errors NoSuchApi 6 1" 2>/dev/null; then fail "an unknown API name was accepted"; fi
[[ "$MOCK_REPLY" == "error: "* ]] || fail "bad reply to an unknown API: '$MOCK_REPLY'"
if mock_ctl "down 9" 2>/dev/null; then fail "an unknown broker was accepted"; fi
if mock_ctl "leader no.such.topic 0 1" 2>/dev/null; then fail "leader of an unknown topic was accepted"; fi
mock_ctl "topic t2 2" || fail "topic t2 2: $MOCK_REPLY"
kcat -L -b "$BOOTSTRAP" -t t2 | grep 'topic "t2" with 2 partitions' >/dev/null || fail "t2 not created with 2 partitions"

# Injected Produce errors are retriable: the client retries and nothing is lost or doubled.
mock_ctl "errors Produce NOT_LEADER_FOR_PARTITION 3" || fail "errors: $MOCK_REPLY"
awk 'BEGIN { for (i = 0; i < 100; i++) printf "late-%03d\tv%d\n", i, i }' >"$SSEG_TMP/late.tsv"
timeout -k 2 "$(sseg_scale 30)" kcat -P -b "$BOOTSTRAP" -t t1 -K '\t' -X debug=msg \
        <"$SSEG_TMP/late.tsv" 2>"$SSEG_TMP/late.log" || fail "kcat could not produce through injected errors"
# Each of the 3 failed requests reports at least one partition's message set.
ne=$(grep -c 'encountered error: Broker: Not leader for partition' "$SSEG_TMP/late.log" || true)
[ "$ne" -ge 3 ] || fail "the client saw $ne injected NOT_LEADER_FOR_PARTITION errors, expected >= 3"
n=$(kcat_count t1) || fail "kcat could not count t1"
[ "$n" -eq $((N + 100)) ] || fail "t1 holds $n messages after retries, expected $((N + 100))"
N=$((N + 100))

# --- broker down: nothing can be read; up again: everything can ------------------------------
mock_ctl "down 1" || fail "down 1: $MOCK_REPLY"
rc=0
timeout -k 2 "$(sseg_scale 8)" kcat -C -b "$BOOTSTRAP" -t t1 -e -q -o beginning -m 3 -f '%o\n' \
        >"$SSEG_TMP/down.txt" 2>"$SSEG_TMP/down.err" || rc=$?
n=$(wc -l <"$SSEG_TMP/down.txt")
[ "$n" -eq 0 ] || fail "read $n messages while the only broker was down (kcat rc $rc)"
[ "$rc" -ne 0 ] || fail "kcat reported success reading a topic whose broker is down"
mock_ctl "up 1" || fail "up 1: $MOCK_REPLY"
n=$(kcat_count t1) || fail "kcat could not read t1 after the broker came back"
[ "$n" -eq "$N" ] || fail "t1 holds $n messages after the broker came back, expected $N"

# --- SIGTERM: exit 0 within 5 s --------------------------------------------------------------
mock_stop 5

# --- closing stdin does not stop it; options apply to the default topics --------------------
"$STREAMSEG" mock-kafka --partitions 2 --topic shop.events:5 </dev/null \
        >"$SSEG_TMP/m2.out" 2>"$SSEG_TMP/m2.err" &
M2=$!
sseg_track_pid "$M2"
wait_until '[ -s "$SSEG_TMP/m2.out" ] && [ "$(wc -l <"$SSEG_TMP/m2.out")" -ge 1 ]' 10 || fail "second mock printed no bootstrap"
sleep "$(sseg_scale 0.5)"
kill -0 "$M2" 2>/dev/null || fail "mock-kafka stopped when its stdin reached EOF"
B2=$(head -n 1 "$SSEG_TMP/m2.out")
kcat -L -b "$B2" >"$SSEG_TMP/meta2.txt" || fail "kcat -L on the second mock failed"
grep -q 'topic "shop.events" with 5 partitions' "$SSEG_TMP/meta2.txt" || fail "--topic shop.events:5 ignored"
grep -q 'topic "streamseg.dlq" with 2 partitions' "$SSEG_TMP/meta2.txt" || fail "--partitions 2 ignored"
kill -TERM "$M2"
wait_until '! kill -0 "$M2" 2>/dev/null' 5 || fail "second mock still running 5 s after SIGTERM"
rc=0
wait "$M2" || rc=$?
[ "$rc" -eq 0 ] || fail "second mock exited $rc after SIGTERM"
echo "PASS mock_kafka"
