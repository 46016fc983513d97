#!/usr/bin/env bash
# The dashboard in a real headless Chromium (see README.md). Installs what it needs:
# Debian's chromium if /usr/bin/chromium is missing, the pinned npm packages, and the
# server binary; then runs dashboard.mjs, which prints `N passed, M failed`.
set -euo pipefail
cd "$(dirname "$0")"
root="$(cd ../.. && pwd)"

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "== installing chromium (Debian package)"
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y -qq chromium >/dev/null || {
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq chromium >/dev/null
  }
fi

echo "== npm packages (tests/browser)"
# `npm install`, not `npm ci`: see tests/interop/README.md (cbor-extract's optional
# per-platform packages are not in the lock file); the locked versions are installed.
npm install --no-audit --no-fund --loglevel=error

if [ -z "${LOTSE_SERVER_BIN:-}" ]; then
  echo "== building lotse-server"
  (cd "$root" && cargo build -p lotse-server --bin lotse-server --locked)
  export LOTSE_SERVER_BIN="$root/target/debug/lotse-server"
fi

if [ -z "${LOTSE_CORE_PYTHON:-}" ]; then
  # A phone on lotse-core for the web app's concurrent-edit check: its Python bindings.
  echo "== lotse-core's Python bindings"
  # The same packages as tests/bindings/run.sh builds, so that in scripts/test cargo
  # finds them built already (features are unified per set of packages).
  (cd "$root" && cargo build -p lotse-core -p uniffi-bindgen -p lotse-server --locked)
  export LOTSE_CORE_PYTHON="$root/target/browser-python"
  mkdir -p "$LOTSE_CORE_PYTHON"
  "$root/target/debug/uniffi-bindgen" generate --library "$root/target/debug/liblotse_core.so" \
    --language python --out-dir "$LOTSE_CORE_PYTHON" --no-format
  cp "$root/target/debug/liblotse_core.so" "$LOTSE_CORE_PYTHON/"
fi

echo "== dashboard in headless Chromium"
exec node dashboard.mjs
