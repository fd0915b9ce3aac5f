#!/usr/bin/env bash
# bench_scaleout: throughput of 2 streamseg instances against 1 on the same cluster (issue 7).
#
# Method: `streamseg mock-kafka` (own process) with P input partitions; N generated events
# (uniform keys) are produced once with `streamseg gen`. Then, in the same run:
#   1 instance:  `streamseg run` with a fresh group and state.dir consumes all N;
#   2 instances: two `streamseg run` with another fresh group (and a changelog topic, as a
#                scaled-out deployment runs) consume the same N together;
#   2 + model:   the same with model.topic (one K-means model and churn parameters for both,
#                docs/scaling.md): the cost of sharing the model.
# Each phase is timed from the processes' start until the committed offsets (streamseg inspect,
# polled every 0.2 s) cover all N, so the group join is included (reported separately from
# the first committed offset on). Prints the rates and their ratios. Sessions time out after
# 6 s (as in the tests): the mock cluster sometimes leaves half of the partitions of a
# two-member group unassigned until a session timeout (45 s by default). On this 2-core machine
# the mock cluster, the producer-side work and both instances share the cores.
#
#   tools/bench_scaleout.sh [--events N] [--users U] [--partitions P] [--streamseg PATH]
set -euo pipefail
events=600000 users=100000 partitions=32 # the mock keeps ~5 MB (~20k events) per partition
here=$(cd "$(dirname "$0")/.." && pwd)
streamseg=$here/build/streamseg
while [ $# -gt 0 ]; do
  case $1 in
  --events) events=$2; shift 2 ;;
  --users) users=$2; shift 2 ;;
  --partitions) partitions=$2; shift 2 ;;
  --streamseg) streamseg=$2; shift 2 ;;
  *) echo "usage: $0 [--events N] [--users U] [--partitions P] [--streamseg PATH]" >&2; exit 2 ;;
  esac
done
tmp=$(mktemp -d /tmp/bench-scaleout-XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${BENCH_KEEP:-}" ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT

"$streamseg" mock-kafka --partitions "$partitions" --topic "bench.changelog:$partitions" --topic bench.model:2 \
  >"$tmp/mock.out" 2>"$tmp/mock.err" &
pids+=($!)
for _ in $(seq 50); do [ -s "$tmp/mock.out" ] && break; sleep 0.1; done
bootstrap=$(head -1 "$tmp/mock.out")
"$streamseg" gen --users "$users" --events "$events" --seed 7 --brokers "$bootstrap" \
  --topic shop.events --quiet 2>/dev/null
now() { date +%s.%N; }
done_count() { # dirs... -> committed processed + dead over all partitions (best per partition)
  local docs=()
  for d in "$@"; do
    docs+=("$("$streamseg" inspect -X "state.dir=$d" --offsets 2>/dev/null || echo '{"partitions":[]}')")
  done
  /usr/bin/python3 - "${docs[@]}" <<'EOF'
import json, sys
best = {}
for doc in sys.argv[1:]:
    for p in json.loads(doc)["partitions"]:
        best[p["partition"]] = max(best.get(p["partition"], 0), p["processed"] + p["dead_lettered"])
print(sum(best.values()))
EOF
}
phase() { # NAME INSTANCES EXTRA... -> prints "total_s first_s"
  local name=$1 n=$2
  shift 2
  local dirs=() ps=() t0 first="" cfirst=0
  t0=$(now)
  for i in $(seq "$n"); do
    dirs+=("$tmp/$name$i")
    "$streamseg" run -X "kafka.bootstrap.servers=$bootstrap" -X "kafka.group.id=$name" \
      -X "state.dir=$tmp/$name$i" -X http.listen= -X log.level=warn -X erasure.topic= \
      -X kafka.session.timeout.ms=6000 -X kafka.heartbeat.interval.ms=500 "$@" \
      2>"$tmp/$name$i.log" &
    ps+=($!)
    pids+=($!)
  done
  while :; do
    c=$(done_count "${dirs[@]}")
    if [ -z "$first" ] && [ "$c" -gt 0 ]; then
      first=$(now)
      cfirst=$c
    fi
    [ "$c" -ge "$events" ] && break
    sleep 0.2
  done
  local t1
  t1=$(now)
  for p in "${ps[@]}"; do kill -TERM "$p"; done
  for p in "${ps[@]}"; do wait "$p" || true; done
  # total seconds, and the rate between the first commit and the end
  awk -v a="$t0" -v b="$t1" -v f="$first" -v n="$events" -v c="$cfirst" \
    'BEGIN { printf "%.3f %.0f\n", b - a, (b - f > 0 ? (n - c) / (b - f) : 0) }'
}
read -r t1 f1 < <(phase one 1)
read -r t2 f2 < <(phase two 2 -X state.changelog.topic=bench.changelog)
read -r t3 f3 < <(phase sync 2 -X state.changelog.topic=bench.changelog -X model.topic=bench.model)
awk -v n="$events" -v t1="$t1" -v f1="$f1" -v t2="$t2" -v f2="$f2" -v t3="$t3" -v f3="$f3" -v p="$partitions" 'BEGIN {
  printf "bench_scaleout: %d events, %d partitions, same cluster, same run\n", n, p
  printf "  1 instance : %.1f s from start (%.0f events/s); %.0f events/s between the first commit and the end\n", t1, n / t1, f1
  printf "  2 instances: %.1f s from start (%.0f events/s); %.0f events/s between the first commit and the end (with a changelog)\n", t2, n / t2, f2
  printf "  2 + model  : %.1f s from start (%.0f events/s); %.0f events/s between the first commit and the end (changelog and model.topic)\n", t3, n / t3, f3
  printf "  ratio 2:1  : %.2f from start, %.2f steady; with the shared model %.2f, %.2f\n", t1 / t2, (f1 > 0 ? f2 / f1 : 0), t1 / t3, (f1 > 0 ? f3 / f1 : 0)
  printf "method: wall time from the processes start until the committed offsets cover every event (polled every 0.2 s); 2 cores shared by the mock cluster and the instances\n"
}'
