#!/usr/bin/env bash
# Installs the Go toolchain go.mod asks for, when the machine has none that
# recent, from Debian and the Go module proxy only. Idempotent: with a
# recent enough Go it only says which one it found.
#
#   1. A bootstrap Go: the go already there, else Debian's golang-go
#      (1.19 on bookworm, too old to build cps, but able to fetch modules).
#   2. With it, `go mod download` fetches golang.org/toolchain@
#      v0.0.1-goX.Y.Z.linux-ARCH, Go's own release as the go command's
#      toolchain switching (GOTOOLCHAIN) fetches it: through GOPROXY,
#      checked against the checksum database (GOSUMDB).
#   3. It is unpacked into /usr/local/lib/cps/goX.Y.Z, which the Makefile
#      puts first in PATH. Nothing else on the machine changes.
#
# usage: scripts/deps/go.sh          install if needed
#        scripts/deps/go.sh --bindir print the bin directory the Makefile uses
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
want=$(sed -n 's/^toolchain go\([0-9.]*\).*/\1/p' "$repo/go.mod")
[ -n "$want" ] || want=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$repo/go.mod")
[ -n "$want" ] || { echo "deps/go.sh: no go line in $repo/go.mod" >&2; exit 1; }
dest=/usr/local/lib/cps/go$want
if [ "${1:-}" = --bindir ]; then
	echo "$dest/bin"
	exit 0
fi
export PATH="$dest/bin:$PATH:/usr/local/go/bin"

# version GO: the release of the go binary GO ("1.26.8"), run outside any
# module so no toolchain switch happens.
version() { (cd / && GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null | sed 's/^go//'); }
# at_least A B: version A >= version B.
at_least() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" = "$2" ]; }

if have=$(command -v go) && v=$(version "$have") && [ -n "$v" ] && at_least "$v" "$want"; then
	echo "deps/go.sh: go$v at $have (go.mod needs go$want)"
	exit 0
fi

sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
installed() { dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null | grep -qx installed; }
boot=$(command -v go || true)
need=()
[ -n "$boot" ] || need+=(golang-go)
installed ca-certificates || need+=(ca-certificates) # for the proxy's TLS
if [ ${#need[@]} -gt 0 ]; then
	echo "deps/go.sh: installing ${need[*]} from Debian to fetch go$want"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -q
	$sudo apt-get install -y -q --no-install-recommends "${need[@]}"
	boot=$(command -v go)
fi

case $(dpkg --print-architecture) in
	amd64) arch=amd64 ;; arm64) arch=arm64 ;; i386) arch=386 ;; armhf) arch=armv6l ;;
	ppc64el) arch=ppc64le ;; s390x) arch=s390x ;; riscv64) arch=riscv64 ;;
	*) echo "deps/go.sh: no Go release for $(dpkg --print-architecture)" >&2; exit 1 ;;
esac
mod=golang.org/toolchain@v0.0.1-go$want.linux-$arch
tmp=$(mktemp -d)
# The module cache is read-only by design.
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
echo "deps/go.sh: fetching go$want ($mod, about 70 MB) through the Go module proxy with $boot (go$(version "$boot"))"
printf 'module cps-go-bootstrap\n' >"$tmp/go.mod"
if ! (cd "$tmp" && GOMODCACHE="$tmp/mod" GOFLAGS=-mod=mod GOTOOLCHAIN=local "$boot" mod download -json "$mod" >"$tmp/download.json"); then
	echo "deps/go.sh: go mod download $mod failed:" >&2
	cat "$tmp/download.json" >&2
	exit 1
fi
dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p' "$tmp/download.json")
[ -d "$dir" ] || { echo "deps/go.sh: go mod download $mod gave no directory:" >&2; cat "$tmp/download.json" >&2; exit 1; }

$sudo mkdir -p "$(dirname "$dest")"
$sudo rm -rf "$dest.part"
$sudo cp -r --no-preserve=mode,ownership "$dir" "$dest.part"
# Module zips keep no file modes: make the commands executable again, as
# the go command does after a toolchain switch.
$sudo find "$dest.part/bin" "$dest.part/pkg/tool" -type f -exec chmod 755 {} +
v=$(version "$dest.part/bin/go")
[ "$v" = "$want" ] || { echo "deps/go.sh: $dest.part/bin/go says go$v, want go$want" >&2; exit 1; }
$sudo rm -rf "$dest"
$sudo mv "$dest.part" "$dest"
echo "deps/go.sh: go$want installed in $dest"
