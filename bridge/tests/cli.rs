//! The binary's command line (this test also makes `cargo test --workspace` build the binary
//! that the end-to-end tests in `tests/` spawn).

use std::process::Command;

#[test]
fn help_lists_the_subcommands() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("serve") && text.contains("status"), "{text}");
    assert!(
        !text.contains("demo-upstream"),
        "internal subcommand stays hidden"
    );
}

#[test]
fn bad_port_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
        .env("MCP_BRIDGE_PORT", "not-a-port")
        .env("MCP_BRIDGE_CONFIG_DIR", "/nonexistent-mcpb")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("MCP_BRIDGE_PORT"));
}

#[test]
fn desktop_config_points_at_the_shim() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-bridge"))
        .arg("desktop-config")
        .env("MCP_BRIDGE_CONFIG_DIR", "/nonexistent-mcpb")
        .env("MCP_BRIDGE_PORT", "9999")
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let entry = &v["mcpServers"]["mcp-bridge"];
    assert!(
        entry["command"]
            .as_str()
            .unwrap()
            .ends_with("/mcp-bridge-shim")
    );
    assert_eq!(
        entry["args"],
        serde_json::json!(["--url", "http://127.0.0.1:9999/mcp"])
    );
}
