#!/usr/bin/env bash
# Director load benchmark (issue 8): the real cpsdirector binary on
# loopback, 50 concurrent authenticated clients listing applications for
# 30 s; prints req/s and p99 latency (goal: >= 5000 req/s, p99 < 50 ms).
set -euo pipefail
cd "$(dirname "$0")/../.."
CPS_BENCH_SECONDS=${CPS_BENCH_SECONDS:-30} CPS_BENCH_CLIENTS=${CPS_BENCH_CLIENTS:-50} \
  go test -v -count=1 -run '^TestLoadList$' ./cmd/cpsdirector/ | grep -E "director load|ok|FAIL"
