#!/usr/bin/env bash
# Runs every Go fuzz target of the module (func FuzzXxx in a _test.go) for
# a while each: `make test` runs them for a few seconds, `make fuzz` for
# minutes. The seed corpus (f.Add in the target, and the files under the
# package's testdata/fuzz/FuzzXxx/) already runs in every plain `go test`.
#
# usage: scripts/fuzz.sh [DURATION] [PACKAGE...]
#   DURATION  per target, as go test -fuzztime takes it (default 5s)
#
# A target that fails leaves its input in PACKAGE/testdata/fuzz/FuzzXxx/;
# docs/fuzzing.md says how to turn it into a regression test.
set -euo pipefail
go=${GO:-go}
t=${1:-5s}
shift || true
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- ./...
failed=()
n=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

# fuzz_one DIR TARGET runs one target. Go's fuzz coordinator up to 1.26
# has a shutdown race (go.dev/issue/75804, fixed in Go 1.27): when
# -fuzztime runs out while a worker is mid-input it may fail the target
# with a bare "context deadline exceeded" and write no input. A real
# finding always writes its input ("Failing input written to"), a hung
# worker included, so a bare deadline with no new input is retried once
# and, if it comes back the same, reported as that race, not a failure.
fuzz_one() {
	local dir=$1 f=$2 try
	for try in 1 2; do
		if (cd "$dir" && "$go" test -run '^$' -fuzz "^$f\$" -fuzztime "$t" . </dev/null) 2>&1 | tee "$log"; then
			return 0
		fi
		if grep -q 'Failing input written to' "$log" || ! grep -q '^    context deadline exceeded$' "$log" ||
			[ "$(grep -c '^--- FAIL' "$log")" -ne 1 ]; then
			return 1
		fi
		echo "fuzz: $f stopped on Go's fuzztime shutdown race (go.dev/issue/75804), no input written; try $try of 2"
	done
	echo "fuzz: WARNING: $f hit the shutdown race twice; no failing input was found"
	return 0
}
while read -r pkg dir; do
	for f in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$dir"/*_test.go 2>/dev/null); do
		n=$((n + 1))
		echo "== fuzz $pkg $f for $t"
		# From the package directory, go test prints the fuzzer's progress
		# as it goes (with a package path it holds it back to the end).
		if ! fuzz_one "$dir" "$f"; then
			failed+=("$pkg $f")
		fi
	done
done < <("$go" list -f '{{.ImportPath}} {{.Dir}}' "$@")
if [ ${#failed[@]} -gt 0 ]; then
	printf 'fuzz: FAILED: %s\n' "${failed[@]}"
	echo "fuzz: the failing inputs are in the packages' testdata/fuzz/ directories; see docs/fuzzing.md"
	exit 1
fi
echo "fuzz: $n targets ran for $t each, no failure"
