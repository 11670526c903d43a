#!/bin/sh
# make demo: the main job on this machine. Live migration between two hosts
# lands with `ferry host` / `ferry migrate`; until then the demo starts the
# sample DMA engine, inspects it and runs its workload.
set -eu
build=${1:-build}
dir=$(mktemp -d /tmp/ferry-demo.XXXXXX)
trap 'kill $dev 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT

"$build/devices/dma/ferry-dev-dma" --socket "$dir/dma.sock" &
dev=$!
i=0
while [ ! -S "$dir/dma.sock" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done

echo "== ferry info: the sample DMA engine"
"$build/tools/ferry/ferry" info "$dir/dma.sock"
echo
echo "Live migration (ferry host / ferry migrate) is not in this build yet."
