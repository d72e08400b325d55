#!/usr/bin/env bash
# Checks the release configuration (dist-workspace.toml) and builds the Linux x86_64 archives
# with cargo-dist, as a release would; nothing is published. Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.34.0
root="$PWD/.tools/dist"
if [ "$("$root/bin/dist" --version 2>/dev/null)" != "cargo-dist $version" ]; then
  echo "== installing cargo-dist $version from crates.io (into .tools/dist)"
  cargo install cargo-dist --version "$version" --locked --root "$root" --quiet
fi
dist="$root/bin/dist"
echo "== dist plan (the release configuration)"
"$dist" plan --output-format=json > target/dist-plan.json
echo "== dist build: the x86_64-unknown-linux-gnu archives"
"$dist" build --artifacts=local --target x86_64-unknown-linux-gnu
for app in mcp-bridge mcp-cred-agent mcp-bridge-shim; do
  archive="target/distrib/$app-x86_64-unknown-linux-gnu.tar.xz"
  [ -f "$archive" ] || { echo "missing $archive"; exit 1; }
  (cd target/distrib && sha256sum -c "$app-x86_64-unknown-linux-gnu.tar.xz.sha256")
  listing=$(tar -tJf "$archive")
  grep -qx "$app-x86_64-unknown-linux-gnu/$app" <<<"$listing" || { echo "$archive has no $app binary"; exit 1; }
done
# The packaged bridge runs and names its build.
tmp=$(mktemp -d)
tar -xJf target/distrib/mcp-bridge-x86_64-unknown-linux-gnu.tar.xz -C "$tmp"
"$tmp"/mcp-bridge-x86_64-unknown-linux-gnu/mcp-bridge --version
rm -rf "$tmp"
ls -l target/distrib/*.tar.xz
echo "== Homebrew formulae from these archives (only the Linux x86_64 ones are built here)"
PARTIAL=1 bash packaging/homebrew/formulae.sh "$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)" \
  "https://example.invalid/mcp-bridge/releases" target/distrib target/homebrew
for f in target/homebrew/*.rb; do
  ruby -c "$f"
  for app in mcp-bridge mcp-cred-agent mcp-bridge-shim; do
    sum=$(cut -d' ' -f1 "target/distrib/$app-x86_64-unknown-linux-gnu.tar.xz.sha256")
    if grep -q "/$app-x86_64-unknown-linux-gnu.tar.xz\"" "$f"; then
      grep -q "sha256 \"$sum\"" "$f" || { echo "$f: wrong checksum for $app"; exit 1; }
    fi
  done
done
grep -q 'service do' target/homebrew/mcp-bridge.rb && grep -q 'service do' target/homebrew/mcp-cred-agent.rb
