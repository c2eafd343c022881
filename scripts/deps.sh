#!/usr/bin/env bash
# Installs the Debian packages cps needs, idempotently: only missing packages
# are installed, and `apt-get update` runs only when something is missing.
# Package lists live in scripts/deps/*.list (one package per line, # comments),
# one list per feature so each stays readable. Extra set-up steps (e.g. an APT
# component, the Go toolchain) live in scripts/deps/*.sh and run before the
# install; a step may have no list (go.sh).
#
# usage: scripts/deps.sh [NAME...]   (default: every step and list)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/deps"

lists=("$@")
if [ ${#lists[@]} -eq 0 ]; then
  lists=(*.list)
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: run as root or install sudo" >&2; exit 1; }
  sudo=sudo
fi

# Set-up steps: all of them for a full install; with named lists, only
# the steps of those lists (s3.sh builds a server only the tests need).
for s in *.sh; do
  [ -e "$s" ] || continue
  if [ $# -gt 0 ]; then
    case " ${lists[*]} " in *" ${s%.sh} "*|*" ${s%.sh}.list "*) ;; *) continue ;; esac
  fi
  $sudo bash "$s"
done

want=()
for l in "${lists[@]}"; do
  l=${l%.list}.list
  if [ ! -f "$l" ]; then
    [ -f "${l%.list}.sh" ] && continue
    echo "deps.sh: no package list or step ${l%.list}" >&2; exit 1
  fi
  while read -r p _; do
    case "$p" in ""|\#*) continue ;; esac
    want+=("$p")
  done <"$l"
done

missing=()
for p in $(printf '%s\n' "${want[@]}" | sort -u); do
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  [ ${#want[@]} -eq 0 ] || echo "deps.sh: all ${#want[@]} packages installed"
  exit 0
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
