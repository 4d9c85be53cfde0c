#!/usr/bin/env bash
# Installs everything the build, the tests and the demo need, and nothing when it is
# all there already: Debian packages through apt-get, Python packages into .venv.
# Safe to run again and again; `make demo` and `make test` call it first.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  g++ make pkg-config git
  libsqlite3-dev libsimdjson-dev libhiredis-dev libpqxx-dev libcurl4-openssl-dev libgtest-dev
  redis-server postgresql
  clang-format
  libhowardhinnant-date-dev tzdata
)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if ((${#missing[@]})); then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  # Debian starts services on install; the tests start their own servers, so keep ours off.
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "install-deps: creating .venv"
  "$PYTHON" -m venv .venv
fi
# Build requirements are installed into the venv so builds run without isolation (and so
# offline and incrementally); the test tools come with them.
PY_PACKAGES=(
  "pip>=23" "scikit-build-core>=0.10" "pybind11>=2.12" "cmake>=3.26" ninja
  pytest pytest-timeout ruff mypy "psycopg[binary]>=3.1" "django>=4.2" fastapi uvicorn
  "celery[redis]" croniter python-multipart
)
stamp=.venv/.cinejobs-deps
want="${PY_PACKAGES[*]}"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "install-deps: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check "${PY_PACKAGES[@]}"
  echo "$want" >"$stamp"
fi
