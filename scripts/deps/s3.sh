#!/bin/sh
# Build the real S3 server used by test/s3server: Versity S3 Gateway
# (versitygw, Apache-2.0, posix backend) from the Go module proxy, cached in
# /var/cache/cps/bin. Idempotent: skips the build when the pinned version is
# already there.
set -eu
VERSION=v1.8.0
BIN=/var/cache/cps/bin
if [ -x "$BIN/versitygw" ] && [ -f "$BIN/versitygw.version" ] && [ "$(cat "$BIN/versitygw.version")" = "$VERSION" ]; then
	exit 0
fi
# The Go go.sh installed (it runs first), else the PATH's.
PATH="$(bash "$(dirname "$0")/go.sh" --bindir):$PATH:/usr/local/go/bin"
command -v go >/dev/null 2>&1 || { echo "s3.sh: go is needed to build versitygw (scripts/deps/go.sh installs it)" >&2; exit 1; }
mkdir -p "$BIN"
cd /tmp
GOBIN="$BIN" GOFLAGS=-mod=mod go install "github.com/versity/versitygw/cmd/versitygw@$VERSION"
echo "$VERSION" >"$BIN/versitygw.version"
