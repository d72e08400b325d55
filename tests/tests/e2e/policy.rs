//! What clients see of an upstream: `tools`/`prompts`/`resources` allow and deny globs,
//! `rename`, `read_only`. Hidden items are neither listed nor callable.

use mcp_bridge_tests::*;
use serde_json::{Value, json};

fn fixture_with(name: &str, policy: &str) -> String {
    format!("{}\n{policy}\n\n", fixture_entry(name, &[]).trim_end())
}

#[tokio::test]
async fn deny_and_allow_globs_hide_tools_from_lists_and_calls() {
    let config = fixture_with("alpha", "tools = { deny = [\"sl*\", \"hang\"] }")
        + &fixture_with(
            "beta",
            "tools = { allow = [\"e*\", \"whoami\"], deny = [\"exit\"] }",
        );
    let (_b, c) = bridge_with(&config, 2).await;
    let names = c.tool_names().await;
    for hidden in [
        "alpha__sleep",
        "alpha__slow_write",
        "alpha__hang",
        "beta__exit",
        "beta__sleep",
    ] {
        assert!(
            !names.iter().any(|n| n == hidden),
            "{hidden} listed: {names:?}"
        );
    }
    for shown in ["alpha__echo", "alpha__exit", "beta__echo", "beta__whoami"] {
        assert!(
            names.iter().any(|n| n == shown),
            "{shown} missing: {names:?}"
        );
    }
    assert_eq!(
        names.iter().filter(|n| n.starts_with("beta__")).count(),
        2,
        "allow keeps only what it names: {names:?}"
    );
    // A hidden tool is refused by the bridge, saying why; nothing reaches the upstream.
    let r = c.call_tool("alpha__sleep", json!({"ms": 1})).await;
    let message = r["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("hidden by the policy of upstream \"alpha\""),
        "{r}"
    );
    let ok = c.call_tool("alpha__echo", json!({"message": "hi"})).await;
    assert!(text_of(&ok).contains("hi"), "{ok}");
}

#[tokio::test]
async fn a_renamed_tool_round_trips_and_read_only_keeps_read_only_tools() {
    let config = fixture_with("alpha", "rename = { echo = \"say\" }")
        + &fixture_with("ro", "read_only = true");
    let (_b, c) = bridge_with(&config, 2).await;
    let names = c.tool_names().await;
    assert!(names.iter().any(|n| n == "alpha__say"), "{names:?}");
    assert!(!names.iter().any(|n| n == "alpha__echo"), "{names:?}");
    // The upstream is called by its own name.
    let r = c
        .call_tool("alpha__say", json!({"message": "renamed"}))
        .await;
    assert!(text_of(&r).contains("renamed"), "{r}");
    let mut ro: Vec<&String> = names.iter().filter(|n| n.starts_with("ro__")).collect();
    ro.sort();
    assert_eq!(
        ro,
        ["ro__echo", "ro__sleep", "ro__whoami"],
        "readOnlyHint tools only"
    );
    let r = c.call_tool("ro__exit", json!({})).await;
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("hidden by the policy"),
        "{r}"
    );
}

#[tokio::test]
async fn hidden_resources_are_neither_listed_nor_readable() {
    let config = format!(
        "[[upstream]]\nname = \"fx\"\ncommand = {:?}\nresources = {{ deny = [\"test://static-b*\"] }}\nprompts = {{ allow = [\"test_simple_*\"] }}\n",
        bin("fixture-everything").display().to_string()
    );
    let (_b, c) = bridge_with(&config, 1).await;
    let list = c.request("resources/list", json!({})).await;
    let uris: Vec<&str> = list["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["uri"].as_str())
        .collect();
    assert!(uris.contains(&"fx+test://static-text"), "{uris:?}");
    assert!(!uris.contains(&"fx+test://static-binary"), "{uris:?}");
    let read = c
        .request("resources/read", json!({"uri": "fx+test://static-binary"}))
        .await;
    assert_eq!(read["error"]["code"], -32002, "{read}");
    let ok = c
        .request("resources/read", json!({"uri": "fx+test://static-text"}))
        .await;
    assert!(ok["result"]["contents"].is_array(), "{ok}");
    let prompts = c.request("prompts/list", json!({})).await;
    let names: Vec<&str> = prompts["result"]["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["fx__test_simple_prompt"], "{prompts}");
    let hidden: Value = c
        .request("prompts/get", json!({"name": "fx__test_prompt_with_image"}))
        .await;
    assert!(
        hidden["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("hidden by the policy"),
        "{hidden}"
    );
}
