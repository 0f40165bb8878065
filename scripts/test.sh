#!/usr/bin/env bash
# The README's test command: installs what the tests need that cargo cannot (moto_server,
# the local stand-in for AWS CodeBuild and S3 that tests/codebuild.rs starts on
# loopback), then runs the whole test suite. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v moto_server >/dev/null 2>&1; then
  if ! python3 -m pip --version >/dev/null 2>&1; then
    echo "scripts/test.sh: installing python3-pip (for moto_server)" >&2
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pip
  fi
  echo "scripts/test.sh: installing moto[server] (pip)" >&2
  # A distribution Python refuses installs into its own site (PEP 668).
  python3 -m pip install --quiet --disable-pip-version-check 'moto[server]' 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages 'moto[server]'
  hash -r
fi
# The tests make throwaway git repositories and commit in them.
git config --global user.email >/dev/null 2>&1 || git config --global user.email "test@promptgate.invalid"
git config --global user.name >/dev/null 2>&1 || git config --global user.name "promptgate tests"

exec cargo test "$@"
