#!/usr/bin/env bash
# go build with progress, for make: says that it is compiling and how many
# packages it has compiled, since the first build of a fresh machine
# compiles every dependency (minutes on 2 cores) and go build alone prints
# nothing while it does.
#
# usage: GO=go scripts/gobuild.sh OUTDIR PACKAGES...
set -euo pipefail
go=${GO:-go}
out=$1
shift
# go list also fetches missing modules (its "go: downloading" lines).
total=$("$go" list -deps "$@" | wc -l)
echo "go build: compiling $* into $out/ ($total packages with their dependencies; a first build compiles them all, later ones reuse Go's build cache)"
# -v names each package as it is compiled; count them instead. Error
# lines (with spaces or colons) pass through.
"$go" build -v -o "$out/" "$@" 2>&1 | awk -v total="$total" '
	/^[A-Za-z0-9._\/-]+$/ { n++; if (n % 25 == 0) printf "go build: %d of at most %d packages compiled\n", n, total; fflush(); next }
	{ print; fflush() }
	END { if (n > 0) printf "go build: %d packages compiled\n", n }'
