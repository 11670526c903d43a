#!/bin/sh
# ferry check against the broken test device: a correct device must pass
# (exit 0), and each deliberate bug must make ferry check exit non-zero with
# the FAIL row that names it.
#
# usage: check_test.sh FERRY BROKEN_DEVICE
set -u
ferry=$1
broken=$2
dir=$(mktemp -d /tmp/ferry-check-test.XXXXXX)
pids=
failures=0

cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT

# start NAME BUG [OPTIONS]: a broken_device on $dir/NAME.sock
start() {
	name=$1 bug=$2
	shift 2
	"$broken" --socket "$dir/$name.sock" --bug "$bug" "$@" 2>"$dir/$name.log" &
	pids="$pids $!"
	i=0
	while [ ! -S "$dir/$name.sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done
	[ -S "$dir/$name.sock" ] || { echo "FAIL: $name ($bug) did not start"; cat "$dir/$name.log"; exit 1; }
}

# Stops the devices; under ASan/UBSan their reports (in the logs) fail the test.
stop_all() {
	for p in $pids; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	pids=
	rm -f "$dir"/*.sock "$dir"/*.inner
	for log in "$dir"/*.log; do
		[ -f "$log" ] || continue
		if grep -q -E 'AddressSanitizer|LeakSanitizer|runtime error' "$log"; then
			echo "FAIL: sanitizer report in $(basename "$log")"
			cat "$log"
			failures=$((failures + 1))
		fi
		rm -f "$log"
	done
}

# run CASE EXPECT_EXIT [ROW REASON_FRAGMENT] -- ARGS...: runs ferry check, then
# checks the exit status and, when ROW is given, that ROW is a FAIL row whose
# reason contains REASON_FRAGMENT.
run() {
	case_name=$1 want=$2 row=$3 frag=$4
	shift 5
	out="$dir/$case_name.out"
	timeout 120 "$ferry" check "$@" >"$out" 2>"$dir/$case_name.err"
	rc=$?
	ok=1
	if [ "$want" = 0 ] && [ $rc -ne 0 ]; then ok=0; fi
	if [ "$want" != 0 ] && { [ $rc -eq 0 ] || [ $rc -ge 2 ]; }; then ok=0; fi
	if [ -n "$row" ]; then
		line=$(grep -F "$row" "$out" | grep '^FAIL ' | grep -F -- "$frag")
		[ -n "$line" ] || ok=0
	fi
	if [ $ok = 1 ]; then
		echo "ok: $case_name (exit $rc)${row:+: $row}"
	else
		echo "FAIL: $case_name: exit $rc (wanted ${want}), row '${row}' / '${frag}'"
		cat "$out"
		tail -n 20 "$dir/$case_name.err"
		failures=$((failures + 1))
	fi
}

start good none
start peer none
run correct-device 0 "" "" -- "$dir/good.sock" --peer "$dir/peer.sock" --strict
run correct-device-json 0 "" "" -- "$dir/good.sock" --json
run correct-self-restore 0 "" "" -- "$dir/good.sock" --strict
stop_all

# A device that gives up (ERROR) on a bad stream is correct too, and lets the
# ERROR rows run; they must pass.
start err none --error-on-bad-stream
run correct-device-error 0 "" "" -- "$dir/err.sock" --strict
grep -q '^PASS   ERROR reset ' "$dir/correct-device-error.out" ||
	{ echo "FAIL: the ERROR rows did not run"; cat "$dir/correct-device-error.out"; failures=$((failures + 1)); }
stop_all

start nv no-validate
start nvp none
run no-validate 1 "truncated restore refused" "accepted a stream cut" -- "$dir/nv.sock"
run no-validate-peer 1 "truncated restore refused" "accepted a stream cut" -- "$dir/nv.sock" --peer "$dir/nvp.sock"
stop_all

start wa wrong-arc
run wrong-arc 1 "fsm PRE_COPY -> RUNNING" "device reports STOP" -- "$dir/wa.sock"
stop_all

start rk reset-keeps-state
run reset-keeps-state 1 "reset from STOP_COPY" "reset did not return to RUNNING" -- "$dir/rk.sock"
stop_all

start ss short-stream
start sp none
run short-stream 1 "restore compare" "differs" -- "$dir/ss.sock" --peer "$dir/sp.sock" --strict
stop_all

if [ $failures -ne 0 ]; then
	echo "$failures case(s) failed"
	exit 1
fi
echo "all cases passed"
