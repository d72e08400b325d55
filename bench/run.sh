#!/usr/bin/env bash
# Builds everything in release mode and regenerates the measurements in BENCHMARKS.md.
# Usage: bash bench/run.sh [--secs N]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --workspace
exec target/release/mcp-bench --out BENCHMARKS.md "$@"
