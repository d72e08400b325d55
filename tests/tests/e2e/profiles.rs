//! Views per client: `[[profile]]` served at `/mcp/<profile>`, browser origins bound to a
//! profile (or given `read-only`), the shim's `--profile`; a client never learns of what lies
//! outside its view (lists, calls, prompts, completion, resource reads and links,
//! list_changed). Third-party clients (the Python and TypeScript SDKs) use a profile endpoint.

use std::time::{Duration, Instant};

use mcp_bridge_tests::*;
use serde_json::{Value, json};

use crate::compat::matrix;
use crate::era::{Sdk, check_report, modern_post, pairing, sdk_client, two_upstreams};

/// `fx` and `fb` (fixture-everything twice) and `alpha` (the stdio fixture); profile `narrow`
/// shows `fx` and `alpha` without alpha's `exit` and without fx's embedded resources; profile
/// `web` shows `alpha` to the origin `https://app.example.org`.
fn config() -> String {
    let everything = bin("fixture-everything").display().to_string();
    format!(
        "{}[[upstream]]\nname = \"fx\"\ncommand = {everything:?}\npin = \"warn\"\n\n[[upstream]]\nname = \"fb\"\ncommand = {everything:?}\npin = \"warn\"\n\n\
         [[profile]]\nname = \"narrow\"\nupstreams = [\"fx\", \"alpha\"]\ntools = {{ deny = [\"alpha__exit\"] }}\nresources = {{ deny = [\"fx+test://embedded*\"] }}\n\n\
         [[profile]]\nname = \"web\"\nupstreams = [\"alpha\"]\norigins = [\"https://app.example.org\"]\n",
        fixture_entry("alpha", &[])
    )
}

fn names_of(list: &Value, key: &str, field: &str) -> Vec<String> {
    list["result"][key]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .filter_map(|t| t[field].as_str().map(str::to_owned))
        .collect()
}

fn message(r: &Value) -> &str {
    r["error"]["message"].as_str().unwrap_or_default()
}

/// The next list_changed notification on a GET stream (other messages skipped).
async fn next_list_change(stream: &mut MessageReader) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let m = stream
            .next_before(deadline)
            .await
            .expect("a list_changed notification within 15 s");
        if let Some(method) = m["method"].as_str()
            && method.ends_with("/list_changed")
        {
            return method.to_owned();
        }
    }
}

#[tokio::test]
async fn a_profile_endpoint_shows_only_its_subset_everywhere() {
    let (b, all) = bridge_with(&config(), 3).await;
    let narrow = Client::connect(&format!("{}/narrow", b.url)).await;
    let every = all.tool_names().await;
    let tools = narrow.tool_names().await;
    assert!(every.iter().any(|n| n.starts_with("fb__")), "{every:?}");
    assert!(
        tools.iter().any(|n| n == "fx__test_simple_text"),
        "{tools:?}"
    );
    assert!(tools.iter().any(|n| n == "alpha__echo"), "{tools:?}");
    assert!(
        !tools
            .iter()
            .any(|n| n.starts_with("fb__") || n == "alpha__exit"),
        "{tools:?}"
    );
    // Names are the ones `all` gives.
    assert!(tools.iter().all(|n| every.contains(n)), "{tools:?}");

    // Calls outside the view are unknown (not "hidden": the client does not learn they exist).
    let r = narrow.call_tool("fb__test_simple_text", json!({})).await;
    assert_eq!(message(&r), "Unknown tool: fb__test_simple_text", "{r}");
    let r = narrow.call_tool("alpha__exit", json!({})).await;
    assert_eq!(message(&r), "Unknown tool: alpha__exit", "{r}");
    let ok = narrow.call_tool("fx__test_simple_text", json!({})).await;
    assert!(text_of(&ok).contains("simple text"), "{ok}");

    // Prompts and completion.
    let prompts = names_of(
        &narrow.request("prompts/list", json!({})).await,
        "prompts",
        "name",
    );
    assert!(
        prompts.iter().any(|p| p == "fx__test_simple_prompt"),
        "{prompts:?}"
    );
    assert!(
        !prompts.iter().any(|p| p.starts_with("fb__")),
        "{prompts:?}"
    );
    let r = narrow
        .request("prompts/get", json!({"name": "fb__test_simple_prompt"}))
        .await;
    assert_eq!(message(&r), "Unknown prompt: fb__test_simple_prompt", "{r}");
    let complete = |name: &str| json!({"ref": {"type": "ref/prompt", "name": name}, "argument": {"name": "arg1", "value": "a"}});
    let r = narrow
        .request(
            "completion/complete",
            complete("fb__test_prompt_with_arguments"),
        )
        .await;
    assert_eq!(
        message(&r),
        "Unknown prompt: fb__test_prompt_with_arguments",
        "{r}"
    );
    let r = narrow
        .request(
            "completion/complete",
            complete("fx__test_prompt_with_arguments"),
        )
        .await;
    assert!(r["result"]["completion"].is_object(), "{r}");

    // Resources: not listed, not readable, and links to them dropped from results.
    let uris = names_of(
        &narrow.request("resources/list", json!({})).await,
        "resources",
        "uri",
    );
    assert!(
        uris.iter().any(|u| u == "fx+test://static-text"),
        "{uris:?}"
    );
    assert!(!uris.iter().any(|u| u.starts_with("fb+")), "{uris:?}");
    let r = narrow
        .request("resources/read", json!({"uri": "fb+test://static-text"}))
        .await;
    assert_eq!(r["error"]["code"], -32002, "{r}");
    let embedded = |r: &Value| {
        r["result"]["content"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["resource"]["uri"] == "fx+test://embedded-resource")
    };
    let r = all.call_tool("fx__test_embedded_resource", json!({})).await;
    assert!(embedded(&r), "`all` gets the embedded resource: {r}");
    let r = narrow
        .call_tool("fx__test_embedded_resource", json!({}))
        .await;
    assert!(r["result"].is_object() && !embedded(&r), "{r}");

    // list_changed: a change outside the view is not announced to it. The prompt change of
    // `fb` comes first; the tool change of `fx` after `all` has heard of it. The profile's
    // stream must hear of the tool change first.
    let mut all_stream = all.get_stream().await;
    let mut narrow_stream = narrow.get_stream().await;
    all.call_tool("fb__test_trigger_prompt_change", json!({}))
        .await;
    assert_eq!(
        next_list_change(&mut all_stream).await,
        "notifications/prompts/list_changed"
    );
    all.call_tool("fx__test_trigger_tool_change", json!({}))
        .await;
    assert_eq!(
        next_list_change(&mut all_stream).await,
        "notifications/tools/list_changed"
    );
    assert_eq!(
        next_list_change(&mut narrow_stream).await,
        "notifications/tools/list_changed",
        "the profile's first notification is the change it can see"
    );
    narrow.wait_for_tool("fx__test_dynamic_tool", true).await;

    // A session belongs to the endpoint it started on; an unknown profile is 404.
    let mut stray = narrow.fork();
    stray.url = b.url.clone();
    let a = stray
        .post_json(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}))
        .await;
    assert_eq!(a.status, 404, "{a:?}");
    let a = Client::new(&format!("{}/nope", b.url))
        .post_json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}}))
        .await;
    assert_eq!(a.status, 404, "{a:?}");
    assert!(
        a.body.contains("no profile named \\\"nope\\\""),
        "{}",
        a.body
    );

    // A 2026-07-28 client (stateless) at the profile endpoint sees the same subset.
    let r = modern_post(
        &format!("{}/narrow", b.url),
        "m",
        "",
        "tools/list",
        json!({}),
    )
    .await;
    let mut modern = names_of(&r, "tools", "name");
    let mut listed = narrow.tool_names().await;
    modern.sort();
    listed.sort();
    assert_eq!(modern, listed);
    let r = modern_post(
        &format!("{}/narrow", b.url),
        "m",
        "",
        "tools/call",
        json!({"name": "fb__test_simple_text", "arguments": {}}),
    )
    .await;
    assert_eq!(message(&r), "Unknown tool: fb__test_simple_text", "{r}");

    // status: each profile with its tools and sessions.
    let s = b.status().await;
    let profile = |name: &str| {
        s["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{s}"))
    };
    assert_eq!(profile("narrow")["sessions"], 1, "{s}");
    assert_eq!(profile("narrow")["tools"], listed.len(), "{s}");
    assert_eq!(profile("read-only")["browser_default"], true, "{s}");
}

#[tokio::test]
async fn browser_origins_get_their_bound_profile_or_read_only() {
    let (b, _all) = bridge_with(&config(), 3).await;
    // The bound origin is allowed (it is in no allowed_origins) and sees `web` on `/mcp`.
    let web = Client::connect_as(&b.url, json!({}), &[("origin", "https://app.example.org")]).await;
    let tools = web.tool_names().await;
    assert!(
        !tools.is_empty() && tools.iter().all(|n| n.starts_with("alpha__")),
        "{tools:?}"
    );
    assert!(tools.iter().any(|n| n == "alpha__exit"), "{tools:?}");
    // ...and cannot widen it by path.
    let a = Client::new(&format!("{}/all", b.url))
        .post_raw(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}})
            .to_string(),
            &[
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("origin", "https://app.example.org"),
            ],
        )
        .await;
    assert_eq!(a.status, 403, "{a:?}");
    assert!(
        a.body.contains("is served profile \\\"web\\\""),
        "{}",
        a.body
    );

    // An allowed origin no profile names gets `read-only`: tools annotated readOnlyHint.
    let page = Client::connect_as(&b.url, json!({}), &[("origin", "https://claude.ai")]).await;
    let list = page.request("tools/list", json!({})).await;
    let tools = list["result"]["tools"].as_array().unwrap();
    assert!(!tools.is_empty(), "{list}");
    for t in tools {
        assert_eq!(t["annotations"]["readOnlyHint"], true, "{t}");
    }
    let r = page.call_tool("alpha__exit", json!({})).await;
    assert_eq!(message(&r), "Unknown tool: alpha__exit", "{r}");
    let echo = page
        .call_tool("alpha__echo", json!({"message": "hi"}))
        .await;
    assert!(text_of(&echo).contains("hi"), "{echo}");
    let s = b.status().await;
    let sessions = |name: &str| {
        s["profiles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .map(|p| p["sessions"].clone())
    };
    assert_eq!(sessions("web"), Some(json!(1)), "{s}");
    assert_eq!(sessions("read-only"), Some(json!(1)), "{s}");
}

#[tokio::test]
async fn sdk_clients_and_the_shim_use_a_profile_endpoint() {
    let tp = ThirdParty::get();
    let config = format!(
        "{}{}[[profile]]\nname = \"agents\"\nupstreams = [\"everything\", \"fx\"]\ntools = {{ deny = [\"everything__get-env\"] }}\n",
        two_upstreams(tp),
        fixture_entry("alpha", &[])
    );
    let (b, all) = bridge_with(&config, 3).await;
    let url = format!("{}/agents", b.url);
    let ours = Client::connect(&url).await;
    let shim = bin("mcp-bridge-shim").display().to_string();
    for sdk in [Sdk::Python, Sdk::TypeScript] {
        for mode in ["legacy", "2026-07-28"] {
            let tools = ours.tool_names().await;
            assert!(
                !tools
                    .iter()
                    .any(|n| n.starts_with("alpha__") || n == "everything__get-env"),
                "{tools:?}"
            );
            assert!(all.tool_names().await.len() > tools.len());
            let r = sdk_client(tp, sdk, &[&url, mode]).await;
            check_report(sdk, mode, tools.len(), &r);
            matrix(&format!(
                "| bridge profile `/mcp/agents` ({mode} client, HTTP) | {} | tools/list {} (of the profile), call, sampling, elicitation, two input rounds{} | server-everything 2026.8.31, fixture | pass |",
                sdk.label(),
                tools.len(),
                pairing(mode)
            ));
        }
    }
    // The shim's --profile, driven by the Python SDK over stdio.
    let tools = ours.tool_names().await.len();
    let r = sdk_client(
        tp,
        Sdk::Python,
        &[
            "stdio",
            "legacy",
            &shim,
            "--url",
            &b.url,
            "--profile",
            "agents",
        ],
    )
    .await;
    check_report(Sdk::Python, "legacy", tools, &r);
    matrix(&format!(
        "| shim `--profile agents` (legacy client, stdio) | {} | tools/list {tools} (of the profile), call, sampling, elicitation, two input rounds | server-everything 2026.8.31, fixture | pass |",
        Sdk::Python.label()
    ));
}

#[tokio::test]
async fn a_reloaded_profile_takes_effect_and_its_sessions_see_the_change() {
    let dir = TempDir::new("profiles-reload");
    let ups = fixture_entry("alpha", &[]) + &fixture_entry("beta", &[]);
    let profile = |upstreams: &str| {
        format!(
            "{ups}[[profile]]\nname = \"p\"\nupstreams = [{upstreams}]\norigins = [\"https://app.example.org\"]\n"
        )
    };
    dir.write("config.toml", &profile("\"alpha\""));
    let b = Bridge::builder().in_dir(dir.path()).start().await;
    b.wait_ready(2).await;
    let c = Client::connect(&format!("{}/p", b.url)).await;
    assert!(!c.tool_names().await.iter().any(|n| n.starts_with("beta__")));
    let mut stream = c.get_stream().await;
    dir.write("config.toml", &profile("\"alpha\", \"beta\""));
    signal(b.pid(), libc::SIGHUP);
    assert_eq!(
        next_list_change(&mut stream).await,
        "notifications/tools/list_changed"
    );
    c.wait_for_tool("beta__echo", true).await;
    // A profile removed by the reload: its path is 404, and so is its bound origin's access.
    dir.write("config.toml", &ups);
    signal(b.pid(), libc::SIGHUP);
    wait_for("profile p to be gone", Duration::from_secs(10), async || {
        let a = Client::new(&format!("{}/p", b.url))
            .post_json(&json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}}))
            .await;
        (a.status == 404).then_some(())
    })
    .await;
    let a = Client::new(&b.url)
        .post_raw(
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}).to_string(),
            &[("origin", "https://app.example.org")],
        )
        .await;
    assert_eq!(a.status, 403, "no longer an allowed origin: {a:?}");
}
