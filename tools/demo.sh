#!/bin/sh
# make demo: live migration between two hosts on this machine, under load.
#
#   source:      2 x ferry-dev-dma, 2 x ferry-dev-vram --size 64M,
#                ferry host --mem 256M (workloads running)
#   destination: 4 fresh device servers of the same kinds,
#                ferry host --mem 256M --prealloc --incoming tcp:127.0.0.1:PORT
#                (memory resident before the stream arrives, as a VMM
#                prepares an incoming guest)
#
# The workloads run a few seconds, `ferry migrate` moves the guest (progress
# on stderr, report on stdout), the workloads go on at the destination, and
# `ferry status --verify` checks every operation's data there. Every
# process started here is stopped on exit. Exit status: 0 when the migration
# succeeded and verification found no mismatch.
#
# A build whose `ferry host` is not there yet shows `ferry info` of the
# sample DMA engine instead and says so (exit 0).
#
# usage: sh tools/demo.sh [BUILD_DIR]   (POSIX sh; `make demo` runs it)
set -eu
build=${1:-build}
ferry=$build/tools/ferry/ferry
dev_dma=$build/devices/dma/ferry-dev-dma
dev_vram=$build/devices/vram/ferry-dev-vram
mem=256M
vram_size=64M
run_before_s=3   # workloads on the source before the migration
run_after_s=3    # workloads on the destination before verifying

dir=$(mktemp -d /tmp/ferry-demo.XXXXXX)
pids=""

cleanup() {
	status=$?
	trap - EXIT INT TERM
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for p in $pids; do wait "$p" 2>/dev/null || true; done
	rm -rf "$dir"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME CMD...: runs CMD in the background, output in $dir/NAME.log
start() {
	name=$1
	shift
	"$@" >"$dir/$name.log" 2>&1 &
	pids="$pids $!"
	last_pid=$!
}

# wait_socket PATH PID: until PATH is a socket (PID must stay alive), 10 s
wait_socket() {
	i=0
	while [ ! -S "$1" ]; do
		if ! kill -0 "$2" 2>/dev/null || [ $i -ge 100 ]; then
			echo "demo: $1 did not appear" >&2
			return 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
}

fail() {
	echo "demo: $*" >&2
	for f in "$dir"/*.log; do
		[ -s "$f" ] || continue
		echo "---- $(basename "$f")" >&2
		tail -n 20 "$f" >&2
	done
	exit 1
}

if ! "$ferry" host --help >/dev/null 2>&1; then
	start dma "$dev_dma" --socket "$dir/dma.sock"
	wait_socket "$dir/dma.sock" "$last_pid" || fail "ferry-dev-dma did not start"
	echo "== ferry info: the sample DMA engine"
	"$ferry" info "$dir/dma.sock"
	echo
	echo "ferry host is not implemented in this build: no live migration to show yet."
	exit 0
fi

# ---- device servers: four for each side ----
for side in src dst; do
	for n in 0 1; do
		start "$side-dma$n" "$dev_dma" --socket "$dir/$side-dma$n.sock"
		eval "pid_${side}_dma$n=\$last_pid"
		start "$side-vram$n" "$dev_vram" --socket "$dir/$side-vram$n.sock" --size "$vram_size"
		eval "pid_${side}_vram$n=\$last_pid"
	done
done
for side in src dst; do
	for d in dma0 dma1 vram0 vram1; do
		eval "p=\$pid_${side}_$d"
		wait_socket "$dir/$side-$d.sock" "$p" || fail "device server $side-$d did not start"
	done
done

devices() {
	echo "--device dma:$dir/$1-dma0.sock --device dma:$dir/$1-dma1.sock" \
	     "--device vram:$dir/$1-vram0.sock --device vram:$dir/$1-vram1.sock"
}

# ---- the two hosts ----
# shellcheck disable=SC2046 # the device list splits on purpose (no spaces in $dir)
start src-host "$ferry" host --mem "$mem" $(devices src) --control "$dir/src.ctl" --fill 64M
src_pid=$last_pid
# shellcheck disable=SC2046
start dst-host "$ferry" host --mem "$mem" $(devices dst) --control "$dir/dst.ctl" \
	--prealloc --incoming tcp:127.0.0.1:0
dst_pid=$last_pid
wait_socket "$dir/src.ctl" "$src_pid" || fail "the source host did not start"
wait_socket "$dir/dst.ctl" "$dst_pid" || fail "the destination host did not start"
# the destination listens on a port the kernel chose; its log names it
uri=$(sed -n 's/.*waiting for an incoming migration on \(tcp:[^ ]*\).*/\1/p' "$dir/dst-host.log")
[ -n "$uri" ] || fail "the destination host did not say where it listens"

echo "== source and destination hosts are up: $mem of guest memory, 2 dma + 2 vram ($vram_size) devices each"
echo "== workloads run on the source for $run_before_s s"
sleep "$run_before_s"
"$ferry" status --control "$dir/src.ctl" || fail "the source host does not answer"

echo
echo "== ferry migrate --control SRC --to $uri"
if "$ferry" migrate --control "$dir/src.ctl" --to "$uri" >"$dir/report.txt"; then
	migrated=yes
else
	migrated=no
fi
cat "$dir/report.txt"
[ "$migrated" = yes ] || fail "the migration failed"

echo
echo "== workloads run on the destination for $run_after_s s, then ferry status --verify"
sleep "$run_after_s"
if "$ferry" status --control "$dir/dst.ctl" --verify >"$dir/status.txt"; then
	verified=yes
else
	verified=no
fi
cat "$dir/status.txt"

echo
echo "== result"
grep -E '^  (downtime +[0-9]|total time |bandwidth |verification )' "$dir/report.txt" || true
mismatches=$(sed -n 's/^  \([0-9][0-9]*\) mismatch.*/\1/p' "$dir/status.txt")
echo "  workload data at the destination: ${mismatches:-?} mismatches after $run_after_s s of running there"
[ "$verified" = yes ] || fail "verification at the destination failed"
echo "  live migration: OK"
