#!/usr/bin/env bash
# Benchmark of the raw builder (conpaas.img): cold build with an empty apt
# cache, warm rebuild with it, mmdebstrap alone as the reference floor, bytes
# written vs image data, final image size, and whether the cold and warm
# builds (same SOURCE_DATE_EPOCH) are byte-identical.
# Run from the repository root, as root (mmdebstrap). Bounded: 40 minutes.
set -euo pipefail
mkdir -p bin
go test -tags e2e -c -o bin/raw-bench.test ./builders/raw
CPS_BENCH=1 timeout 45m bin/raw-bench.test -test.run '^TestBenchRaw$' -test.timeout 40m -test.v 2>&1 |
    grep -v '^hash \|^rootfs: \|^raw: '
