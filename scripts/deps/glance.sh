#!/bin/sh
# Prepare the machine for Debian's glance-api package: its maintainer scripts
# ask debconf questions (Keystone registration, database); answer them
# non-interactively so the install never waits. Idempotent.
set -eu
export DEBIAN_FRONTEND=noninteractive
if command -v debconf-set-selections >/dev/null 2>&1; then
	cat <<'SEL' | debconf-set-selections
glance-api glance/configure_db boolean false
glance-api glance-api/configure_db boolean false
glance-api glance/register-endpoint boolean false
glance-api glance-api/register-endpoint boolean false
glance-common glance/configure_db boolean false
SEL
fi
