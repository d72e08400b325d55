//! The binary's command line (this test also makes `cargo test --workspace` build the binary
//! that the end-to-end tests in `tests/` spawn).

use std::process::Command;

#[test]
fn help_mentions_the_url_flag() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-bridge-shim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--url"));
}
