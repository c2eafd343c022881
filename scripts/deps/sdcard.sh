#!/usr/bin/env bash
# Registers qemu-user-static with binfmt_misc so mmdebstrap can run arm64 and
# armhf maintainer scripts in a foreign-architecture root filesystem.
# Idempotent: does nothing when qemu-aarch64 is already registered. Runs
# before the package install, so on a fresh machine it only mounts
# binfmt_misc; the qemu-user-static postinst then registers the handlers
# (binfmt-support), and a second run enables any that are still missing.
set -euo pipefail
bm=/proc/sys/fs/binfmt_misc
if [ ! -e "$bm/register" ]; then
  # Not mounted yet (containers, minimal VMs); systemd normally does this.
  mount -t binfmt_misc binfmt_misc "$bm" 2>/dev/null || {
    echo "deps/sdcard.sh: cannot mount binfmt_misc; arm bootstraps will fail (needs a privileged host)" >&2
    exit 0
  }
fi
if command -v update-binfmts >/dev/null; then
  for f in qemu-aarch64 qemu-arm; do
    if [ -e "/usr/share/binfmts/$f" ] && [ ! -e "$bm/$f" ]; then
      update-binfmts --enable "$f" || echo "deps/sdcard.sh: could not enable $f" >&2
    fi
  done
fi
