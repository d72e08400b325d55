//! OS calls the standard library does not wrap. All `unsafe` of the agent lives here.
#![allow(unsafe_code)]

pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}

/// Keeps the agent's memory (refresh tokens, the owner password) out of core files and away
/// from other processes of the same user, as ssh-agent and rbw do: no core dumps
/// (`RLIMIT_CORE` 0) and, on Linux, not dumpable, which also refuses `ptrace` attach and
/// `/proc/<pid>/mem` to same-uid processes without `CAP_SYS_PTRACE`. Returns what could not be
/// done, for a warning.
pub fn harden_process() -> Vec<String> {
    let mut failed = Vec::new();
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass by pointer; it lives for the call.
    if unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) } != 0 {
        failed.push(format!(
            "setrlimit(RLIMIT_CORE, 0): {}",
            std::io::Error::last_os_error()
        ));
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_DUMPABLE takes plain integer arguments and touches no memory of ours.
        if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) } != 0 {
            failed.push(format!(
                "prctl(PR_SET_DUMPABLE, 0): {}",
                std::io::Error::last_os_error()
            ));
        }
    }
    failed
}

/// Whether the process may be dumped / ptrace-attached (Linux; `true` elsewhere).
pub fn is_dumpable() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_GET_DUMPABLE takes no pointers.
        unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) != 0 }
    }
    #[cfg(not(target_os = "linux"))]
    true
}
