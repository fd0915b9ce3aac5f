#!/usr/bin/env bash
# Builds and runs the libFuzzer targets in tests/fuzz (docs/fuzzing.md).
#   run.sh build DIR            configure DIR with clang and -DSSEG_FUZZ=ON, build the targets
#   run.sh run BIN [SECONDS]    fuzz one target for SECONDS (default $SSEG_FUZZ_SECONDS or 20)
#                               from its seed corpus; what it finds stays in DIR/corpus/NAME
#   run.sh long [SECONDS] [NAME...]
#                               build build-fuzz/ at the project root and fuzz each target (all
#                               by default) for SECONDS (default 600), one after the other
# A crash, a leak, undefined behaviour, a broken invariant (abort) or an input slower than 10 s
# fails the run; the input is saved as DIR/artifacts/NAME-<kind>-<sha1> and the command that
# replays it is printed.
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)

build() { # build DIR
  local dir=$1
  if ! command -v clang >/dev/null; then
    echo "run.sh: fuzzing needs clang and libFuzzer: apt-get install -y clang libclang-rt-14-dev" \
      "(tools/build.sh test installs them)" >&2
    exit 1
  fi
  # SSEG_FUZZ_JOBS make jobs (default 2: the machine has two cores).
  cmake -S "$src" -B "$dir" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DSSEG_FUZZ=ON >/dev/null
  cmake --build "$dir" --target fuzz -j"${SSEG_FUZZ_JOBS:-2}"
}

run() { # run BIN [SECONDS]
  local bin=$1 secs=${2:-${SSEG_FUZZ_SECONDS:-20}}
  local name dir seeds
  name=$(basename "$bin")
  name=${name#fuzz_}
  dir=$(dirname "$bin")
  seeds=$src/tests/fuzz/corpus/$name
  [ -x "$bin" ] || { echo "run.sh: $bin is not built (run.sh build DIR)" >&2; exit 1; }
  [ -d "$seeds" ] || { echo "run.sh: no seed corpus $seeds" >&2; exit 1; }
  mkdir -p "$dir/corpus/$name" "$dir/artifacts"
  local opts=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
    -artifact_prefix="$dir/artifacts/$name-")
  case $name in
  decode) opts+=(-max_len=4096) ;;
  conf) opts+=(-max_len=12288) ;; # the deploy example config (10 kB) and lines over 4095 bytes
  registry) opts+=(-max_len=16384) ;;
  watch) opts+=(-max_len=4096) ;;
  esac
  [ -f "$src/tests/fuzz/$name.dict" ] && opts+=(-dict="$src/tests/fuzz/$name.dict")
  # New inputs go to the first directory (in the build tree); the seeds are only read.
  local log rc=0
  log=$(mktemp)
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" "${opts[@]}" "$dir/corpus/$name" "$seeds" >"$log" 2>&1 || rc=$?
  # The full log on failure; otherwise libFuzzer's summary (inputs run, coverage, speed).
  if [ $rc -ne 0 ]; then
    cat "$log"
    rm -f "$log"
    local art
    art=$(ls -t "$dir/artifacts/$name-"* 2>/dev/null | head -n1 || true)
    echo "run.sh: fuzz_$name failed (exit $rc); replay: $bin ${art:-<artifact>}" >&2
    exit 1
  fi
  grep -E '^(INFO: Seed|INFO: seed corpus|#[0-9]+[[:space:]]+(INITED|DONE))|^Done|^stat::(number_of_executed_units|average_exec_per_sec|new_units_added|peak_rss_mb)' "$log" || true
  # A run that did not even read its seeds proves nothing.
  if ! grep -q 'INITED' "$log"; then
    cat "$log"
    rm -f "$log"
    echo "run.sh: fuzz_$name did not start" >&2
    exit 1
  fi
  rm -f "$log"
}

mode=${1:-}
shift || true
case $mode in
build) build "$@" ;;
run) run "$@" ;;
long)
  secs=${1:-600}
  shift || true
  names=("$@")
  [ ${#names[@]} -eq 0 ] && names=(decode conf registry watch)
  build "$src/build-fuzz"
  for n in "${names[@]}"; do
    echo "== fuzz_$n for ${secs}s"
    run "$src/build-fuzz/tests/fuzz/fuzz_$n" "$secs"
  done
  ;;
*)
  echo "usage: tests/fuzz/run.sh build DIR | run BIN [SECONDS] | long [SECONDS] [NAME...]" >&2
  exit 2
  ;;
esac
