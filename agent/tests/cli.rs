//! The binary's command line (this test also makes `cargo test --workspace` build the binary
//! that the end-to-end tests in `tests/` spawn).

use std::process::Command;

#[test]
fn help_lists_the_subcommands() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-cred-agent"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serve") && text.contains("status"), "{text}");
}

#[test]
fn status_without_an_agent_says_how_to_start_it() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-cred-agent"))
        .arg("status")
        .env("MCP_BRIDGE_CONFIG_DIR", "/nonexistent-mcpb")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mcp-cred-agent serve"));
}
