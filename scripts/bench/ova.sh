#!/usr/bin/env bash
# OVA benchmark (issue 6): our streamOptimized VMDK writer vs
# `qemu-img convert -O vmdk -o subformat=streamOptimized`, side by side, on
# a sparse 2 GiB raw disk with ~500 MB of data. Prints time and output size.
set -euo pipefail
cd "$(dirname "$0")/../.."
work=${BENCH_DIR:-/var/tmp/cps-bench-ova}
mkdir -p "$work" bin
go build -o bin/cpsimage ./cmd/cpsimage
raw=$work/disk.img
if [ ! -s "$raw" ]; then
  truncate -s 2G "$raw"
  # ~500 MB of data: half random (incompressible), half text (compressible).
  dd if=/dev/urandom of="$raw" bs=1M count=250 seek=16 conv=notrunc status=none
  # (yes dies of SIGPIPE once head has enough: not an error)
  { yes "ConPaaS benchmark line of compressible text" || true; } | head -c $((250 << 20)) | dd of="$raw" bs=1M seek=1024 conv=notrunc status=none
fi
cat > "$work/ova.pkr.hcl" <<HCL
image "bench" {
  kind   = "ova"
  source = "$raw"
  output = "$work/bench.ova"
}
HCL
t() { local s e; s=$(date +%s.%N); "$@" >/dev/null 2>&1; e=$(date +%s.%N); echo "$e - $s" | bc; }
rm -f "$work/q.vmdk" "$work/bench.ova"*
a=$(t qemu-img convert -f raw -O vmdk -o subformat=streamOptimized "$raw" "$work/q.vmdk")
b=$(t bin/cpsimage build -force "$work/ova.pkr.hcl")
ours=$(tar tvf "$work/bench.ova" | awk '/vmdk/ {print $3}')
printf '%-34s %8s %14s\n' tool seconds "vmdk bytes"
printf '%-34s %7.2fs %14d\n' "qemu-img convert streamOptimized" "$a" "$(stat -c %s "$work/q.vmdk")"
printf '%-34s %7.2fs %14d   (whole OVA build incl. hashing)\n' "cpsimage build (ova)" "$b" "$ours"
printf 'speed ratio qemu-img/ours: %.2fx\n' "$(echo "$a / $b" | bc -l)"
