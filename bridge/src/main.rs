// The request path allocates small, short-lived buffers on several threads; glibc's malloc showed
// as ~12% of the bridge's CPU under load (perf; see BENCHMARKS.md). mimalloc handles that
// pattern better.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc reads its options at its first allocation, before `main`; committing arena memory
/// as it is used (rather than up front) halves the idle footprint (16 → 8 MiB measured) at no
/// measurable throughput cost.
const LAZY_COMMIT: (&str, &str) = ("MIMALLOC_ARENA_EAGER_COMMIT", "0");

/// Memory freed is returned to the OS at once instead of after a delay that only runs out when
/// the same thread allocates again: an idle bridge with 50 upstreams holds 19 MiB instead of
/// 40-58 MiB (catalog rebuilds and cache writes free large transient lists on threads that then
/// sit idle). Measured with `bash bench/run.sh` (RSS with 50 upstreams, CPU per call).
const PROMPT_PURGE: (&str, &str) = ("MIMALLOC_PURGE_DELAY", "0");

fn main() -> std::process::ExitCode {
    if std::env::var_os(LAZY_COMMIT.0).is_none()
        && let Ok(exe) = std::env::current_exe()
    {
        use std::os::unix::process::CommandExt;
        // Same process (exec keeps the pid), now with the option set; only returns on failure,
        // and then the bridge simply runs with mimalloc's defaults.
        let mut cmd = std::process::Command::new(exe);
        cmd.args(std::env::args_os().skip(1))
            .env(LAZY_COMMIT.0, LAZY_COMMIT.1);
        if std::env::var_os(PROMPT_PURGE.0).is_none() {
            cmd.env(PROMPT_PURGE.0, PROMPT_PURGE.1);
        }
        let _ = cmd.exec();
    }
    mcp_bridge::cli::main()
}
