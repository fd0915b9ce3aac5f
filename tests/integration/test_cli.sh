#!/usr/bin/env bash
# The CLI contract: --help/--version, bad configuration stops start-up with exit 2 and a
# message naming the key, inspect refuses a missing state directory.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
sseg_tmpdir

"$STREAMSEG" --version | grep -E '^streamseg [0-9]+\.[0-9]+\.[0-9]+$' >/dev/null || fail "--version"
"$STREAMSEG" --help >"$SSEG_TMP/help.txt"
grep -q state.cache.max.bytes "$SSEG_TMP/help.txt" || fail "--help lacks the property table"
"$STREAMSEG" run --help | grep 'SIGTERM' >/dev/null || fail "run --help"

expect_conf_error() { # expect_conf_error PATTERN ARGS...: exit 2 and PATTERN on stderr
  local pat=$1 rc=0
  shift
  "$STREAMSEG" "$@" >"$SSEG_TMP/out" 2>"$SSEG_TMP/err" || rc=$?
  [ "$rc" -eq 2 ] || fail "'$*' exited $rc, expected 2"
  grep -q -- "$pat" "$SSEG_TMP/err" || fail "'$*': stderr lacks '$pat': $(cat "$SSEG_TMP/err")"
}
expect_conf_error 'input.format' run -X input.format=xml
expect_conf_error 'commit.interval.ms' run -X commit.interval.ms=-1
expect_conf_error 'no.such.key' run -X no.such.key=1
expect_conf_error 'state.cache.max.bytes' run -X state.cache.max.bytes=huge
printf 'input.topic=a\noutput.format=xml\n' >"$SSEG_TMP/bad.conf"
expect_conf_error 'bad.conf:2: output.format' run -c "$SSEG_TMP/bad.conf"
expect_conf_error 'kafka.no.such.property' run -X kafka.no.such.property=1 -X "state.dir=$SSEG_TMP/s1"
expect_conf_error 'schema.registry' run -X input.format=confluent -X "state.dir=$SSEG_TMP/s2"

# run --check-config: the same parsing as run, then exit 0 or 2, never opening state.dir or
# connecting (the broker and the registry below do not exist: a connection attempt would fail
# or hang).
"$STREAMSEG" run --help | grep -q -- '--check-config' || fail "run --help lacks --check-config"
printf 'input.format=confluent
schema.registry.url=http://127.0.0.1:9
' >"$SSEG_TMP/ok.conf"
out=$("$STREAMSEG" run --check-config -c "$SSEG_TMP/ok.conf" -X kafka.bootstrap.servers=127.0.0.1:9 \
  -X "state.dir=$SSEG_TMP/s3" -X kafka.client.id=c1) || fail "--check-config on a good config"
[ "$out" = "config OK" ] || fail "--check-config printed '$out'"
[ ! -e "$SSEG_TMP/s3" ] || fail "--check-config created state.dir"
expect_conf_error 'bad.conf:2: output.format' run --check-config -c "$SSEG_TMP/bad.conf"
expect_conf_error 'no.such.key' run -X no.such.key=1 --check-config
expect_conf_error 'kafka.no.such.property' run --check-config -X kafka.no.such.property=1
expect_conf_error 'segments.init.min.users' run --check-config -X segments.k=9 -X segments.init.min.users=5
expect_conf_error 'schema.registry' run --check-config -X input.format=confluent
expect_conf_error 'input schema file' run --check-config -X "input.schema.file=$SSEG_TMP/none.avsc"
expect_conf_error 'http.listen' run --check-config -X http.listen=0.0.0.0
expect_conf_error 'state.changelog.topic' run --check-config -X processing.guarantee=exactly_once
expect_conf_error 'http.listen' run --check-config -X http.listen=127.0.0.1:70000
"$STREAMSEG" run --check-config -X 'http.listen=[::1]:0' >/dev/null || fail "--check-config on [::1]:0"
[ ! -s "$SSEG_TMP/out" ] || fail "--check-config printed on stdout despite an error: $(cat "$SSEG_TMP/out")"

rc=0
"$STREAMSEG" inspect -X "state.dir=$SSEG_TMP/none" --offsets 2>"$SSEG_TMP/err" || rc=$?
[ "$rc" -eq 1 ] && grep -q "$SSEG_TMP/none" "$SSEG_TMP/err" || fail "inspect on a missing dir: rc=$rc $(cat "$SSEG_TMP/err")"
rc=0
"$STREAMSEG" frobnicate 2>/dev/null || rc=$?
[ "$rc" -eq 2 ] || fail "unknown command exited $rc"
echo "PASS cli"
