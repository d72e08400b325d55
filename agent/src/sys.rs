//! OS calls the standard library does not wrap. All `unsafe` of the agent lives here.
#![allow(unsafe_code)]

pub fn effective_uid() -> u32 {
    // SAFETY: geteuid cannot fail and has no preconditions.
    unsafe { libc::geteuid() }
}
