#!/usr/bin/env bash
# Builds lotse-core as a shared library, generates its Kotlin, Swift and Python bindings
# (uniffi library mode), compiles the Kotlin bindings with -Werror and runs the Kotlin test
# on the JVM, then runs the Python test with pytest. Both run the enroll -> offline edit ->
# sync flow against a real lotse-server started here on a free loopback port, and print
# their pass/fail counts. Exits non-zero if anything fails.
#
# Needs: cargo, a JDK (17+), npm, python3 with pytest, JNA (/usr/share/java/jna.jar from
# Debian's libjna-java). With --install it installs what is missing first.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$PWD"
HERE="$ROOT/tests/bindings"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}/debug"

log() { printf '\n== %s\n' "$*"; }

if [ "${1:-}" = "--install" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    missing=()
    [ -f /usr/share/java/jna.jar ] || missing+=(libjna-java)
    command -v java >/dev/null || missing+=(default-jdk-headless)
    command -v npm >/dev/null || missing+=(nodejs npm)
    command -v curl >/dev/null || missing+=(curl)
    python3 -c 'import pytest' 2>/dev/null || missing+=(python3-pytest)
    if ((${#missing[@]})); then
        log "apt-get install ${missing[*]}"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
    fi
fi
if [ ! -x "$HERE/node_modules/kotlin-compiler/bin/kotlinc" ]; then
    log "npm install (tests/bindings: kotlin-compiler)"
    (cd "$HERE" && npm install --no-audit --no-fund --loglevel=error)
fi
JNA="${JNA_JAR:-/usr/share/java/jna.jar}"
[ -f "$JNA" ] || { echo "JNA not found at $JNA (apt-get install libjna-java, or run with --install)" >&2; exit 1; }
KOTLIN_HOME="$HERE/node_modules/kotlin-compiler"
COROUTINES="$KOTLIN_HOME/lib/kotlinx-coroutines-core-jvm.jar"

# LOTSE_BINDINGS_NO_BUILD=1 uses binaries already in target/debug (e.g. built by the caller).
if [ -z "${LOTSE_BINDINGS_NO_BUILD:-}" ]; then
    log "cargo build (lotse-core cdylib, uniffi-bindgen, lotse-server)"
    cargo build -p lotse-core -p uniffi-bindgen -p lotse-server
fi
LIB="$TARGET/liblotse_core.so"
[ "$(uname)" = "Darwin" ] && LIB="$TARGET/liblotse_core.dylib"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/lotse-bindings.XXXXXX")"
SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

log "uniffi-bindgen generate (library mode): Kotlin, Swift, Python"
GEN="$WORK/generated"
"$TARGET/uniffi-bindgen" generate --library "$LIB" \
    --language kotlin --language swift --language python \
    --out-dir "$GEN" --no-format
find "$GEN" -type f | sed "s|$GEN/|   |"

log "start lotse-server on a free loopback port"
DB="sqlite://$WORK/server/lotse.db"
PASSWORD="ein langes Passwort für Tests"
EMAIL="koordination@bindings.example"
echo "$PASSWORD" | "$TARGET/lotse-server" create-coordinator --database-url "$DB" \
    --org "Integrationslotsen Bindings" --email "$EMAIL" --password-stdin >/dev/null
"$TARGET/lotse-server" serve --bind 127.0.0.1:0 --two-factor-optional --database-url "$DB" >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
URL=""
for _ in $(seq 1 1200); do
    URL="$(grep -o 'listening on http://[0-9.:]*' "$WORK/server.out" | head -1 | sed 's/listening on //' || true)"
    [ -n "$URL" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$WORK/server.err" >&2; exit 1; }
    sleep 0.05
done
[ -n "$URL" ] || { echo "server did not start" >&2; exit 1; }
echo "   $URL"
json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
TOKEN="$(curl -sf -X POST "$URL/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$EMAIL\",\"password\":\"$PASSWORD\"}" | json_field '["token"]')"
VOLUNTEER="$(curl -sf -X POST "$URL/api/v1/volunteers" -H "authorization: Bearer $TOKEN" \
    -H 'content-type: application/json' \
    -d '{"display_name":"Amira","languages":["ar","de"],"topics":["behoerden"]}' | json_field '["id"]')"
export LOTSE_TEST_URL="$URL" LOTSE_TEST_TOKEN="$TOKEN" LOTSE_TEST_VOLUNTEER="$VOLUNTEER"

status=0

log "Kotlin: compile bindings and test with -Werror, run on the JVM"
CP="$JNA:$COROUTINES"
mkdir -p "$WORK/kotlin"
if JAVA_OPTS="-Xss4m" "$KOTLIN_HOME/bin/kotlinc" -Werror -cp "$CP" \
    "$GEN/uniffi/lotse_core/lotse_core.kt" "$HERE/LotseTest.kt" \
    -d "$WORK/kotlin/test.jar" 2>&1; then
    java -Djna.library.path="$(dirname "$LIB")" -cp "$WORK/kotlin/test.jar:$CP:$KOTLIN_HOME/lib/kotlin-stdlib.jar" \
        LotseTestKt || status=1
else
    echo "Kotlin compilation failed"
    status=1
fi

log "Python: pytest"
mkdir -p "$WORK/python"
cp "$GEN/lotse_core.py" "$LIB" "$WORK/python/"
PYTHONPATH="$WORK/python" python3 -m pytest -q -p no:cacheprovider "$HERE/test_lotse.py" || status=1

log "Swift: bindings generated ($(ls "$GEN"/*.swift | xargs -n1 basename | tr '\n' ' ')); compiling them needs a Swift toolchain (see mobile-core/README.md)"
exit $status
