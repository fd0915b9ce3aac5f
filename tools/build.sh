#!/usr/bin/env bash
# The README's two commands:
#   tools/build.sh demo   install what is missing, build, run `streamseg demo`
#   tools/build.sh test   install what is missing, build with -Werror, run the whole ctest suite
# Other modes: `build` (build only), `asan` (ASan+UBSan build and the unit tests).
# Debian packages are installed with apt-get only when missing (root, or sudo when available).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-demo}
shift || true

build_pkgs=(cmake make gcc pkg-config librdkafka-dev libavro-dev librocksdb-dev libopenblas-dev
  libcurl4-openssl-dev zlib1g-dev liblz4-dev libmicrohttpd-dev)
test_pkgs=(kcat python3 python3-numpy python3-scipy python3-sklearn python3-confluent-kafka
  python3-avro python3-yaml chromium
  clang libclang-rt-14-dev) # clang + libFuzzer: the fuzz_* tests build build/fuzz (docs/fuzzing.md)

install_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "streamseg: installing missing Debian packages: ${missing[*]}" >&2
  local sudo=()
  [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null && sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
}

build() { # build DIR [cmake args...]
  local dir=$1
  shift
  cmake -S "$here" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j"$(nproc)"
}

case "$mode" in
demo)
  install_missing "${build_pkgs[@]}"
  build "$here/build"
  exec "$here/build/streamseg" demo "$@"
  ;;
build)
  install_missing "${build_pkgs[@]}"
  build "$here/build" "$@"
  ;;
test)
  install_missing "${build_pkgs[@]}" "${test_pkgs[@]}"
  build "$here/build" -DSSEG_WERROR=ON
  cd "$here/build"
  exec ctest --output-on-failure -j2 "$@"
  ;;
asan)
  install_missing "${build_pkgs[@]}" "${test_pkgs[@]}"
  build "$here/build-asan" -DSSEG_WERROR=ON -DSSEG_SANITIZE=ON
  cd "$here/build-asan"
  SSEG_TIMEOUT_MULT=${SSEG_TIMEOUT_MULT:-4} ASAN_OPTIONS=detect_leaks=0 exec ctest --output-on-failure -j2 -R '^unit_' "$@"
  ;;
*)
  echo "usage: tools/build.sh demo|test|build|asan [args]" >&2
  exit 2
  ;;
esac
