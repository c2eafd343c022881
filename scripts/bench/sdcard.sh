#!/usr/bin/env bash
# Benchmark: `cpsimage flash` vs `bmaptool copy` of the same sparse
# 31998345216-byte SD image to a file, side by side (wall time and bytes
# written, from GNU time's file-system output count), then the build's
# bytes written vs data bytes (from the builder test's log line).
#
# usage: scripts/bench/sdcard.sh            (from the repo root)
#        BENCH_DATA_MIB=1500 BENCH_BUILD=0 scripts/bench/sdcard.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
data_mib=${BENCH_DATA_MIB:-600}   # a built image holds ~500-700 MiB of data
work=$(mktemp -d "${TMPDIR:-/var/tmp}/cps-bench-sdcard.XXXXXX")
trap 'rm -rf "$work"' EXIT
for t in bmaptool /usr/bin/time; do
  command -v "$t" >/dev/null || { echo "bench: $t missing; run scripts/deps.sh" >&2; exit 1; }
done
go build -o "$work/cpsimage" ./cmd/cpsimage

img=$work/sd.img
size=31998345216
truncate -s "$size" "$img"
# Data spread like a real card: boot partition files at 4 MiB, the root
# filesystem's metadata and files across the card, a swap header near the end.
chunks=$((data_mib / 8))
for i in $(seq 0 $((chunks - 1))); do
  off=$(( (4 + i * (30000 / chunks)) ))   # MiB
  dd if=/dev/urandom of="$img" bs=1M count=8 seek="$off" conv=notrunc status=none
done
dd if=/dev/urandom of="$img" bs=4096 count=1 seek=$(( (size - (1<<30)) / 4096 )) conv=notrunc status=none
sync "$img"
cat "$img" >/dev/null  # same warm page cache for both tools (holes read as zeros, cheap)

measure() { # label, command...: prints "label  seconds  bytes-written"
  local label=$1; shift
  /usr/bin/time -f "%e %O" -o "$work/time" "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; exit 1; }
  read -r secs blocks <"$work/time"
  printf '%-34s %8.2f s %14d bytes\n' "$label" "$secs" $((blocks * 512))
}

echo "image: $size bytes, $(du -B1 "$img" | cut -f1) bytes of data (du)"
printf '%-34s %10s %20s\n' tool "wall" "written"
measure "bmaptool create (map + sha256)" bmaptool create -o "$work/sd.bmap" "$img"
measure "bmaptool copy --bmap" bmaptool copy --bmap "$work/sd.bmap" "$img" "$work/out-bmap.img"
rm -f "$work/out-bmap.img"; sync
measure "cpsimage flash (write+verify)" "$work/cpsimage" flash "$img" "$work/out-cps.img"
rm -f "$work/out-cps.img"; sync
measure "cpsimage flash --no-verify" "$work/cpsimage" flash --no-verify "$img" "$work/out-cps.img"
# A used card: an existing file is written in place (zeros in mapped
# ranges included), as on a device.
truncate -s "$size" "$work/card"
measure "cpsimage flash to existing card" "$work/cpsimage" flash "$img" "$work/card"
rm -f "$work/out-cps.img" "$work/card"

if [ "${BENCH_BUILD:-1}" = 1 ] && [ "$(id -u)" = 0 ]; then
  echo "build: data bytes vs bytes written while assembling (go test -run TestBuildExtract)"
  CPS_CACHE=${CPS_CACHE:-/var/cache/cps} /usr/bin/time -f "build test wall %e s" \
    go test -count=1 -run 'TestBuildExtract$' -v ./builders/sdcard/ 2>&1 | grep -E 'data [0-9]+ bytes|build test wall|^(ok|FAIL|---)'
fi
