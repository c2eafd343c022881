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
while read -r pkg dir; do
	for f in $(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$dir"/*_test.go 2>/dev/null); do
		n=$((n + 1))
		echo "== fuzz $pkg $f for $t"
		# From the package directory, go test prints the fuzzer's progress
		# as it goes (with a package path it holds it back to the end).
		if ! (cd "$dir" && "$go" test -run '^$' -fuzz "^$f\$" -fuzztime "$t" . </dev/null); then
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
