#!/usr/bin/env bash
# Hashing benchmark (issue 4): md5sum vs `cpsimage md5` (MD5 only) vs
# `cpsimage md5 --all` (MD5+SHA1+SHA256+SHA512 in one pass), on a dense
# 2 GiB file and on a 32 GB sparse file holding 1 GiB of data.
# Prints seconds and the ratio md5sum_time / ours (>1 means we are faster).
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${BENCH_DIR:-/var/tmp/cps-bench-verify}
mkdir -p "$work" bin
go build -o bin/cpsimage ./cmd/cpsimage
dense=$work/dense-2G.img
sparse=$work/sparse-32G.img
[ -s "$dense" ] || head -c $((2 << 30)) /dev/urandom > "$dense"
if [ ! -s "$sparse" ]; then
  truncate -s 32G "$sparse"
  # 1 GiB of data in 16 extents spread over the file.
  for i in $(seq 0 15); do
    dd if=/dev/urandom of="$sparse" bs=1M count=64 seek=$((i * 2000)) conv=notrunc status=none
  done
fi
sync
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
printf '%-22s %10s %14s %18s %10s %10s\n' file md5sum "cpsimage md5" "cpsimage md5 --all" ratio-md5 ratio-all
for f in "$dense" "$sparse"; do
  cat "$f" >/dev/null 2>&1 || true   # same page-cache state for all three
  a=$(t md5sum "$f"); b=$(t bin/cpsimage md5 "$f"); c=$(t bin/cpsimage md5 --all "$f")
  printf '%-22s %9.2fs %13.2fs %17.2fs %9.2fx %9.2fx\n' "$(basename "$f")" "$a" "$b" "$c" "$(echo "$a / $b" | bc -l)" "$(echo "$a / $c" | bc -l)"
done
