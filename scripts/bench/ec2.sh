#!/usr/bin/env bash
# EBS upload benchmark (issue 7): a 2 GiB sparse image with 600 MiB of data
# registered against the EC2/EBS fake over loopback, 16 parallel block
# uploads vs one; prints blocks sent (only data blocks) and throughput.
set -euo pipefail
cd "$(dirname "$0")/../.."
CPS_BENCH_DATA_MB=${CPS_BENCH_DATA_MB:-600} go test -v -count=1 -run '^TestUploadThroughput$' ./clouds/ec2/ | grep -E "ebs upload|ok|FAIL"
