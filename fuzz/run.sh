#!/usr/bin/env bash
# Bounded fuzzing of every parser that takes outside bytes (CI runs this).
#   bash fuzz/run.sh [SECONDS_PER_TARGET]      (default 40; FUZZ_SECS also works)
# New inputs go to a scratch directory, so the checked-in corpus (fuzz/corpus/<target>) only
# changes when someone copies interesting inputs in on purpose. A crash leaves its input in
# fuzz/artifacts/<target>/; fix the bug, then copy the input to fuzz/regressions/<target>/ so
# `cargo test` (fuzz/checks/tests/corpus.rs) replays it for ever.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-${FUZZ_SECS:-40}}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
# cargo fuzz passes -Z flags to rustc; this machine has only the stable toolchain.
export RUSTC_BOOTSTRAP=1
# No sanitizer: the project forbids unsafe code, and without ASan the build and every run are
# several times faster. Debug assertions (-a) turn on overflow checks.
flags=(-a --sanitizer none)
cargo fuzz build "${flags[@]}"
failed=()
for t in $(cargo fuzz list); do
  scratch=$(mktemp -d)
  echo "== fuzz $t for ${secs}s"
  log="$scratch.log"
  if ! cargo fuzz run "${flags[@]}" "$t" "$scratch" "corpus/$t" -- \
      -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    failed+=("$t")
    grep -a -A30 -E 'panicked|ERROR: libFuzzer' "$log" | head -60
  fi
  grep -a -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
  rm -rf "$scratch" "$log"
done
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz: crashes in ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
echo "fuzz: all targets ran ${secs}s without a crash"
