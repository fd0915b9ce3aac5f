# Shell harness of the integration tests: sourced (`. "$HERE/lib.sh"`) by every
# tests/integration/test_*.sh, under `set -euo pipefail`. Owns the per-test temp dir, the
# `streamseg mock-kafka` process and its control channel, kcat helpers, bounded waits, and the
# cleanup of every background process a test starts. It does not know about streamseg's data
# path (see datapath.sh).
#
# Environment:
#   STREAMSEG          path of the built streamseg binary (set by ctest; required)
#   SSEG_TIMEOUT_MULT  multiplies every timeout and wait (default 1; e.g. 5 under sanitizers)
#   SSEG_KEEP_TMP=1    keep the temp dir (its path is printed at exit)
#
# Functions (timeouts in seconds, all scaled by SSEG_TIMEOUT_MULT):
#   sseg_tmpdir                   creates $SSEG_TMP (exported), removed at exit
#   sseg_track_pid PID            kill PID at exit if it still runs
#   sseg_on_exit 'CMD'            run CMD at exit (before the processes are killed)
#   mock_start [ARGS...]          starts `$STREAMSEG mock-kafka ARGS`; exports BOOTSTRAP, MOCK_PID
#   mock_ctl 'CMD' [TIMEOUT]      sends a control command; 0 on "ok", 1 on "error: ..." (printed);
#                                 the reply line is left in MOCK_REPLY
#   mock_stop [TIMEOUT]           SIGTERM the mock; fails unless it exits 0 in TIMEOUT (5)
#   kcat_count TOPIC [TIMEOUT]    prints the number of messages in TOPIC (30); kcat's status
#   kcat_dump TOPIC FILE [TIMEOUT]  writes "key<TAB>value" lines of TOPIC to FILE (30)
#   kcat_produce TOPIC FILE [TIMEOUT]  produces "key<TAB>value" lines of FILE, keyed (30)
#   wait_until 'CMD' TIMEOUT      polls CMD (eval'd) until it succeeds; 1 on timeout
#   sseg_scale SECONDS            prints SECONDS × SSEG_TIMEOUT_MULT (for timeout(1), sleep)
#   fail MSG                      prints MSG (and the mock's last log lines) and exits 1
#
# Call fail at the top level of the test, not inside $(...): there it only ends the subshell.

if [ -n "${_SSEG_LIB_SOURCED:-}" ]; then
        return 0
fi
_SSEG_LIB_SOURCED=1

SSEG_TIMEOUT_MULT=${SSEG_TIMEOUT_MULT:-1}
if ! awk -v m="$SSEG_TIMEOUT_MULT" 'BEGIN { exit !(m + 0 > 0 && m ~ /^[0-9]*\.?[0-9]+$/) }'; then
        echo "lib.sh: SSEG_TIMEOUT_MULT must be a positive number, not '$SSEG_TIMEOUT_MULT'" >&2
        exit 1
fi
export SSEG_TIMEOUT_MULT
if [ -z "${STREAMSEG:-}" ] || [ ! -x "$STREAMSEG" ]; then
        echo "lib.sh: STREAMSEG must name the built streamseg binary (got '${STREAMSEG:-}')" >&2
        exit 1
fi

SSEG_PIDS=()
_SSEG_EXIT_HOOKS=()
SSEG_TMP=${SSEG_TMP:-}
MOCK_PID=
BOOTSTRAP=${BOOTSTRAP:-}
MOCK_REPLY=
_SSEG_MOCK_FD=
_SSEG_MOCK_LINES=0

# --- time ----------------------------------------------------------------------------------------

# sseg_scale S: S × multiplier, as a decimal number of seconds.
sseg_scale() {
        awk -v s="$1" -v m="$SSEG_TIMEOUT_MULT" 'BEGIN { printf "%.3f\n", s * m }'
}

# _sseg_ms S: S × multiplier in whole milliseconds.
_sseg_ms() {
        awk -v s="$1" -v m="$SSEG_TIMEOUT_MULT" 'BEGIN { printf "%d\n", s * m * 1000 }'
}

# _sseg_now_ms: monotonic enough for test deadlines (bash 5 EPOCHREALTIME, µs resolution).
_sseg_now_ms() {
        local us=${EPOCHREALTIME//[.,]/}
        echo $((us / 1000))
}

# --- failure and cleanup -------------------------------------------------------------------------

fail() {
        echo "FAIL: $(basename "$0"): $*" >&2
        if [ -n "$SSEG_TMP" ] && [ -s "$SSEG_TMP/mock.err" ]; then
                echo "--- last lines of the mock's log ($SSEG_TMP/mock.err):" >&2
                tail -n 15 "$SSEG_TMP/mock.err" >&2 || true
        fi
        exit 1
}

sseg_track_pid() {
        SSEG_PIDS+=("$1")
}

sseg_on_exit() {
        _SSEG_EXIT_HOOKS+=("$1")
}

_sseg_cleanup() {
        local rc=$? h p deadline alive
        trap - EXIT
        set +e
        for h in "${_SSEG_EXIT_HOOKS[@]}"; do
                eval "$h"
        done
        # Ask politely, give everyone a bounded grace period together, then SIGKILL.
        for p in "${SSEG_PIDS[@]}"; do
                kill -TERM "$p" 2>/dev/null
        done
        deadline=$(($(_sseg_now_ms) + $(_sseg_ms 3)))
        while [ "$(_sseg_now_ms)" -lt "$deadline" ]; do
                alive=0
                for p in "${SSEG_PIDS[@]}"; do
                        kill -0 "$p" 2>/dev/null && alive=1
                done
                [ "$alive" -eq 0 ] && break
                sleep 0.05
        done
        for p in "${SSEG_PIDS[@]}"; do
                if kill -0 "$p" 2>/dev/null; then
                        echo "lib.sh: pid $p ignored SIGTERM, killing it" >&2
                        kill -KILL "$p" 2>/dev/null
                fi
                wait "$p" 2>/dev/null
        done
        if [ -n "$_SSEG_MOCK_FD" ]; then
                exec {_SSEG_MOCK_FD}>&-
        fi
        if [ -n "$SSEG_TMP" ] && [ -d "$SSEG_TMP" ]; then
                if [ "${SSEG_KEEP_TMP:-0}" = 1 ]; then
                        echo "lib.sh: kept $SSEG_TMP" >&2
                else
                        rm -rf "$SSEG_TMP"
                fi
        fi
        exit "$rc"
}
trap _sseg_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

sseg_tmpdir() {
        if [ -n "$SSEG_TMP" ] && [ -d "$SSEG_TMP" ]; then
                return 0
        fi
        SSEG_TMP=$(mktemp -d "${TMPDIR:-/tmp}/sseg-$(basename "$0" .sh).XXXXXX") ||
                fail "cannot create a temp dir"
        export SSEG_TMP
}

# --- waiting -------------------------------------------------------------------------------------

wait_until() {
        local cmd=$1 limit=$2 deadline
        deadline=$(($(_sseg_now_ms) + $(_sseg_ms "$limit")))
        while true; do
                if eval "$cmd"; then
                        return 0
                fi
                if [ "$(_sseg_now_ms)" -ge "$deadline" ]; then
                        echo "wait_until: '$cmd' still false after $(sseg_scale "$limit")s" >&2
                        return 1
                fi
                sleep 0.1
        done
}

# _sseg_lines FILE: number of complete (newline-terminated) lines.
_sseg_lines() {
        local n
        # The file may not exist yet: the redirection's own error must be silenced too.
        n=$({ wc -l <"$1"; } 2>/dev/null) || n=0
        echo "$n"
}

# --- the mock cluster ----------------------------------------------------------------------------

mock_start() {
        local fifo out err deadline rc
        sseg_tmpdir
        [ -z "$MOCK_PID" ] || fail "mock_start: a mock is already running (pid $MOCK_PID)"
        fifo=$SSEG_TMP/mock.in
        out=$SSEG_TMP/mock.out
        err=$SSEG_TMP/mock.err
        rm -f "$fifo" "$out"
        mkfifo "$fifo" || fail "mock_start: mkfifo $fifo"
        # Read-write open of a FIFO does not block on Linux, and keeping a writer open means the
        # mock never sees EOF while the test runs. The mock itself must not inherit that fd.
        exec {_SSEG_MOCK_FD}<>"$fifo"
        "$STREAMSEG" mock-kafka "$@" <"$fifo" >"$out" 2>>"$err" {_SSEG_MOCK_FD}>&- &
        MOCK_PID=$!
        sseg_track_pid "$MOCK_PID"
        deadline=$(($(_sseg_now_ms) + $(_sseg_ms 10)))
        while [ "$(_sseg_lines "$out")" -lt 1 ]; do
                if ! kill -0 "$MOCK_PID" 2>/dev/null; then
                        rc=0
                        wait "$MOCK_PID" || rc=$?
                        MOCK_PID=
                        fail "mock_start: streamseg mock-kafka $* exited with $rc before printing the bootstrap servers"
                fi
                [ "$(_sseg_now_ms)" -lt "$deadline" ] ||
                        fail "mock_start: no bootstrap servers from mock-kafka within $(sseg_scale 10)s"
                sleep 0.02
        done
        BOOTSTRAP=$(head -n 1 "$out")
        [[ "$BOOTSTRAP" =~ ^[^[:space:]]+:[0-9]+(,[^[:space:]]+:[0-9]+)*$ ]] ||
                fail "mock_start: first line is not a bootstrap list: '$BOOTSTRAP'"
        _SSEG_MOCK_LINES=1
        export BOOTSTRAP MOCK_PID
}

mock_ctl() {
        local cmd=$1 limit=${2:-10} want out deadline
        [ -n "$MOCK_PID" ] || fail "mock_ctl '$cmd': no mock running"
        # Blank lines and comments get no reply: waiting for one would only time out.
        if [[ -z "${cmd//[[:space:]]/}" || "$cmd" == \#* || "$cmd" == *$'\n'* ]]; then
                fail "mock_ctl: '$cmd' is not one command"
        fi
        out=$SSEG_TMP/mock.out
        want=$((_SSEG_MOCK_LINES + 1))
        printf '%s\n' "$cmd" >&"$_SSEG_MOCK_FD"
        deadline=$(($(_sseg_now_ms) + $(_sseg_ms "$limit")))
        while [ "$(_sseg_lines "$out")" -lt "$want" ]; do
                kill -0 "$MOCK_PID" 2>/dev/null || fail "mock_ctl '$cmd': the mock is gone"
                [ "$(_sseg_now_ms)" -lt "$deadline" ] ||
                        fail "mock_ctl '$cmd': no reply within $(sseg_scale "$limit")s"
                sleep 0.02
        done
        MOCK_REPLY=$(sed -n "${want}p" "$out")
        _SSEG_MOCK_LINES=$want
        if [ "$MOCK_REPLY" = ok ]; then
                return 0
        fi
        echo "mock_ctl '$cmd': $MOCK_REPLY" >&2
        return 1
}

mock_stop() {
        local limit=${1:-5} deadline rc=0 pid=$MOCK_PID p keep=()
        [ -n "$pid" ] || fail "mock_stop: no mock running"
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$(($(_sseg_now_ms) + $(_sseg_ms "$limit")))
        while kill -0 "$pid" 2>/dev/null; do
                [ "$(_sseg_now_ms)" -lt "$deadline" ] ||
                        fail "mock_stop: mock-kafka (pid $pid) still running $(sseg_scale "$limit")s after SIGTERM"
                sleep 0.05
        done
        wait "$pid" || rc=$?
        for p in "${SSEG_PIDS[@]}"; do
                [ "$p" = "$pid" ] || keep+=("$p")
        done
        SSEG_PIDS=("${keep[@]}")
        MOCK_PID=
        exec {_SSEG_MOCK_FD}>&-
        _SSEG_MOCK_FD=
        [ "$rc" -eq 0 ] || fail "mock_stop: mock-kafka exited with $rc after SIGTERM (expected 0)"
}

# --- kcat, an independent client -----------------------------------------------------------------

_sseg_need_bootstrap() {
        [ -n "$BOOTSTRAP" ] || fail "$1: BOOTSTRAP is not set (mock_start first)"
}

kcat_count() {
        local topic=$1 limit=${2:-30} tmp rc=0
        _sseg_need_bootstrap kcat_count
        tmp=$(mktemp "$SSEG_TMP/kcat_count.XXXXXX")
        # One line per message whatever the payload holds: the offset, never the bytes.
        timeout -k 2 "$(sseg_scale "$limit")" kcat -C -b "$BOOTSTRAP" -t "$topic" -e -q \
                -o beginning -f '%o\n' >"$tmp" || rc=$?
        _sseg_lines "$tmp"
        rm -f "$tmp"
        [ "$rc" -eq 0 ] || echo "kcat_count $topic: kcat exited with $rc" >&2
        return "$rc"
}

kcat_dump() {
        local topic=$1 file=$2 limit=${3:-30} rc=0
        _sseg_need_bootstrap kcat_dump
        timeout -k 2 "$(sseg_scale "$limit")" kcat -C -b "$BOOTSTRAP" -t "$topic" -e -q \
                -o beginning -f '%k\t%s\n' >"$file" || rc=$?
        [ "$rc" -eq 0 ] || echo "kcat_dump $topic: kcat exited with $rc" >&2
        return "$rc"
}

kcat_produce() {
        local topic=$1 file=$2 limit=${3:-30} rc=0
        _sseg_need_bootstrap kcat_produce
        timeout -k 2 "$(sseg_scale "$limit")" kcat -P -b "$BOOTSTRAP" -t "$topic" -K '\t' \
                <"$file" || rc=$?
        [ "$rc" -eq 0 ] || echo "kcat_produce $topic: kcat exited with $rc" >&2
        return "$rc"
}
