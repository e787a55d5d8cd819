#!/usr/bin/env bash
# install-deps.sh -- install what ragsafe needs to build, test, benchmark and demo.
#
# Idempotent: installs only the Debian packages that are missing. Needs root for the
# install itself (it never prompts: DEBIAN_FRONTEND=noninteractive, -y).
#   --check-only   exit 0 when everything is present, 1 when something is missing
set -euo pipefail

PKGS=(gcc make pkg-config libpq-dev libzstd-dev libssl-dev liburing-dev check
      libjansson-dev libarchive-dev libcurl4-openssl-dev libexpat1-dev
      postgresql-15 postgresql-client-15 zstd tar util-linux procps python3 pgbackrest
      libcurl4 curl openssl jq strace python3-botocore help2man)

missing=()
for p in "${PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
# The S3 tests run a local S3 server from the npm registry (s3rver). Any node and npm
# will do; installing Debian's over another vendor's build would conflict, so go by the
# commands rather than the package names.
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ "${1:-}" = "--check-only" ]; then
    [ ${#missing[@]} -eq 0 ] && exit 0
    echo "install-deps: missing: ${missing[*]}" >&2
    exit 1
fi

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: error: missing packages: ${missing[*]}" >&2
    echo "install-deps: hint: run 'sudo scripts/install-deps.sh'" >&2
    exit 1
fi

echo "install-deps: installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Do not let the postgresql package start its own cluster on port 5432; tests and the
# demo run their own clusters in temp dirs.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get update -q </dev/null >/dev/null || apt-get update </dev/null
apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
