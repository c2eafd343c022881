#!/usr/bin/env bash
# Installs staticcheck (honnef.co/go/tools), which `make test` runs after
# go vet, from the Go module proxy only: `go install` fetches the module
# through GOPROXY, checked against the checksum database (GOSUMDB), and
# builds it with the toolchain go.sh installed. Idempotent: an installed
# binary of this version is left alone.
#
# usage: scripts/deps/staticcheck.sh          install if needed
#        scripts/deps/staticcheck.sh --path   print the binary's path
set -euo pipefail
version=v0.8.2 # staticcheck 2026.1.x; the newest the module proxy serves
here=$(cd "$(dirname "$0")" && pwd)
dest=/usr/local/lib/cps/staticcheck-$version
if [ "${1:-}" = --path ]; then
	echo "$dest/staticcheck"
	exit 0
fi
if [ -x "$dest/staticcheck" ]; then
	echo "deps/staticcheck.sh: staticcheck $version at $dest"
	exit 0
fi
bash "$here/go.sh" >/dev/null
export PATH="$(bash "$here/go.sh" --bindir):$PATH" GOTOOLCHAIN=local
echo "deps/staticcheck.sh: go install honnef.co/go/tools/cmd/staticcheck@$version into $dest"
# Outside the repository, so go.mod is not touched.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && GOBIN="$tmp/bin" GOFLAGS=-mod=mod go install "honnef.co/go/tools/cmd/staticcheck@$version")
mkdir -p "$dest"
mv "$tmp/bin/staticcheck" "$dest/staticcheck.new"
mv "$dest/staticcheck.new" "$dest/staticcheck"
