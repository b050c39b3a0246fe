#!/usr/bin/env bash
# A real MCP client against the real server: the MCP Inspector's CLI (v2), over stdio and over streamable
# HTTP (with a bearer token), on the embedded sandbox. Run from .ci/run after the test suite; by hand:
#     scripts/inspector_check.sh
# Checks, on each transport: tools/list (--strict: schema portability), tools/call preflight_call,
# resources/read uponai://policy; on HTTP also that a request without the token is refused (auth_required).
# When npx or the npm registry cannot be reached the step says so and is skipped (exit 0); any failed check
# when it can be reached exits 1.
set -uo pipefail
cd "$(dirname "$0")/.."

INSPECTOR_PKG="@modelcontextprotocol/inspector@${INSPECTOR_VERSION:-2.12.0}"
FROM="+14155550100"
TO="+14155552671"
TOKEN="inspector-ci-$(date +%s)-$RANDOM$RANDOM"

skip() { echo "inspector check: SKIPPED: $*"; exit 0; }
command -v npx >/dev/null 2>&1 || skip "npx (Node.js) is not installed"
timeout 60 npm ping >/dev/null 2>&1 || skip "the npm registry cannot be reached (npm ping failed)"
if ! timeout 60 npm view "$INSPECTOR_PKG" version >/dev/null 2>&1; then
  echo "inspector check: FAILED  $INSPECTOR_PKG is not on the npm registry"; exit 1
fi

WORK="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null; wait "$SERVER_PID" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

FAILED=0
N=0
# run <label> <expected exit code> <inspector args...>: runs the Inspector CLI, checks its exit code.
run() {
  local label="$1" expected="$2"
  shift 2
  N=$((N + 1))
  local out="$WORK/out.$N" err="$WORK/err.$N" code=0
  timeout 300 npx -y "$INSPECTOR_PKG" --cli --format json -q "$@" >"$out" 2>"$err" || code=$?
  if [ "$code" -eq "$expected" ]; then
    echo "inspector check: ok      $label"
  else
    FAILED=1
    echo "inspector check: FAILED  $label (exit $code, expected $expected)"
    echo "--- stdout"; head -c 2000 "$out"; echo
    echo "--- stderr"; grep -v "npm warn" "$err" | tail -n 30
  fi
}

# Prefetch once so the timeouts below measure the server, not the download.
timeout 300 npx -y "$INSPECTOR_PKG" --cli --version >/dev/null 2>&1 || skip "npx could not fetch $INSPECTOR_PKG"

SERVE=(uv run --frozen --quiet uponai-mcp serve)
ARGS_JSON="{\"from_number\":\"$FROM\",\"to_number\":\"$TO\"}"

# --- stdio --------------------------------------------------------------------------------------------------
STDIO_ENV=(-e UPONAI_SANDBOX=1 -e "UPONAI_DATA_DIR=$WORK/stdio" -e UPONAI_LOG_LEVEL=WARNING)
run "stdio tools/list --strict" 0 "${STDIO_ENV[@]}" --method tools/list --strict -- "${SERVE[@]}"
run "stdio tools/call preflight_call" 0 "${STDIO_ENV[@]}" --method tools/call --tool-name preflight_call \
  --tool-args-json "$ARGS_JSON" -- "${SERVE[@]}"
run "stdio resources/read uponai://policy" 0 "${STDIO_ENV[@]}" --method resources/read --uri uponai://policy \
  -- "${SERVE[@]}"
run "stdio tools/call of a failing tool exits 5" 5 "${STDIO_ENV[@]}" --method tools/call --tool-name get_call \
  --tool-args-json '{"call_id":"call_doesnotexist"}' -- "${SERVE[@]}"

# --- streamable HTTP, bearer token ----------------------------------------------------------------------------
UPONAI_SANDBOX=1 UPONAI_DATA_DIR="$WORK/http" UPONAI_LOG_LEVEL=WARNING UPONAI_MCP_TOKENS="$TOKEN" \
  "${SERVE[@]}" --transport streamable-http --host 127.0.0.1 --port 0 2>"$WORK/http.log" &
SERVER_PID=$!
URL=""
for _ in $(seq 1 300); do
  URL="$(grep -o 'streamable HTTP at http://[^ ]*/mcp' "$WORK/http.log" 2>/dev/null | head -n 1 | sed 's/.* at //')"
  [ -n "$URL" ] && break
  kill -0 "$SERVER_PID" 2>/dev/null || break
  sleep 0.2
done
if [ -z "$URL" ]; then
  echo "inspector check: FAILED  the HTTP server did not start"; cat "$WORK/http.log"; exit 1
fi
AUTH=(--header "Authorization: Bearer $TOKEN")
run "http tools/list --strict (legacy era)" 0 "$URL" "${AUTH[@]}" --method tools/list --strict
run "http tools/call preflight_call (modern era)" 0 "$URL" "${AUTH[@]}" --protocol-era modern \
  --method tools/call --tool-name preflight_call --tool-args-json "$ARGS_JSON"
run "http resources/read uponai://policy" 0 "$URL" "${AUTH[@]}" --method resources/read --uri uponai://policy
run "http without the token is refused (auth_required, exit 3)" 3 "$URL" --stored-auth-only --method tools/list

if [ "$FAILED" -ne 0 ]; then
  echo "inspector check: FAILED"
  exit 1
fi
echo "inspector check: all $N checks passed ($INSPECTOR_PKG)"
