#!/usr/bin/env bash
# Glance upload benchmark: a sparse 2 GiB image with 300 MiB of data uploaded
# by clouds/glance vs `curl -T` of the same file, to the same real glance-api
# (test/glanceserver: 127.0.0.1, noauth, file store). Prints both side by side.
# Sizes: CPS_BENCH_SIZE / CPS_BENCH_DATA (bytes). Run from the repo root.
set -euo pipefail
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go test -c -tags bench -o "$out/glance.test" ./clouds/glance
timeout 900 "$out/glance.test" -test.run '^TestBenchGlance$' -test.timeout 880s
