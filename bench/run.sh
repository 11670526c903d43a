#!/bin/sh
# make bench: every benchmark, each printing its figure beside the physical
# limit measured in the same run. Pass --json through for machine output.
set -e
build=${1:-build}
shift || true
echo "benchmark                    figure              | physical limit (same run)              | ratio"
for b in "$build"/bench/bench_*; do
	[ -x "$b" ] || continue
	"$b" "$@"
done
