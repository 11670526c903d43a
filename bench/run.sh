#!/bin/sh
# make bench: every benchmark, each printing its figure beside the physical
# limit measured in the same run. Pass --json through for machine output.
set -e
build=${1:-build}
shift || true
echo "benchmark                    figure              | physical limit (same run)              | ratio"
# One failing benchmark does not hide the others' figures; the exit status
# still says something failed.
failed=0
for b in "$build"/bench/bench_*; do
	[ -f "$b" ] && [ -x "$b" ] || continue # skip meson's bench_*.p folders
	"$b" "$@" || { rc=$?; echo "$(basename "$b"): FAILED (exit $rc)" >&2; failed=1; }
done
exit $failed
