#!/usr/bin/env bash
# Director load benchmark: the real cpsdirector binary on loopback, 50
# concurrent clients polling /listapp with their certificate (as cps-tools
# and cpsfrontend do) for 30 s, then the same while 8 clients flood /login
# with wrong passwords. Prints req/s and p99 of both runs and the drop
# (goal: under 30%).
set -euo pipefail
cd "$(dirname "$0")/../.."
CPS_BENCH_SECONDS=${CPS_BENCH_SECONDS:-30} CPS_BENCH_CLIENTS=${CPS_BENCH_CLIENTS:-50} CPS_BENCH_FLOOD=${CPS_BENCH_FLOOD:-8} \
  go test -v -count=1 -timeout 20m -run '^TestLoadList$' ./cmd/cpsdirector/ | grep -E "director load|^ok|FAIL"
