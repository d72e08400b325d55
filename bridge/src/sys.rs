//! The few OS calls tokio does not wrap: process-group signalling and parent-death signals for
//! stdio children. All `unsafe` in the bridge lives here.
#![allow(unsafe_code)]

/// Puts a child in its own process group (so its own children can be signalled with it) and, on
/// Linux, asks the kernel to SIGKILL it if the bridge dies without cleaning up (kill -9), so
/// upstream children are never orphaned.
pub fn configure_child(cmd: &mut tokio::process::Command) {
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpid is async-signal-safe and has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: the closure runs in the forked child before exec and only makes the
        // async-signal-safe calls prctl, getppid and _exit; it allocates nothing and touches no
        // lock.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The bridge may have died between fork and prctl; then nobody would kill us.
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
}

/// Sends `signal` to the process group led by `pid` (see [`configure_child`]).
pub fn signal_group(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill has no memory-safety preconditions; a negative pid addresses the group this
    // bridge created for its own child, and an already-gone group only yields ESRCH.
    unsafe {
        libc::kill(-pid, signal);
    }
}

pub use libc::{SIGKILL, SIGTERM};

pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}
