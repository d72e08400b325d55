//! The whole protocol through the bridge: resources, prompts, completion, logging, progress,
//! cancellation and server→client requests, with fixture-everything behind a prefix.

use std::time::Duration;

use mcp_bridge_tests::*;
use serde_json::{Value, json};

fn config() -> String {
    format!(
        "[[upstream]]\nname = \"everything\"\nprefix = \"ev\"\ncommand = {:?}\n\n{}",
        bin("fixture-everything").display().to_string(),
        fixture_entry("alpha", &[])
    )
}

async fn bridge() -> Bridge {
    let b = Bridge::builder().config(&config()).start().await;
    b.wait_ready(2).await;
    b
}

#[tokio::test]
async fn resources_prompts_and_completion_behind_a_prefix() {
    let b = bridge().await;
    let c = b.client().await;
    let caps = &c.init["capabilities"];
    assert_eq!(caps["resources"]["subscribe"], true, "{caps}");
    assert!(
        caps["prompts"].is_object()
            && caps["logging"].is_object()
            && caps["completions"].is_object(),
        "{caps}"
    );

    let list = c.request("resources/list", json!({})).await;
    let uris: Vec<_> = list["result"]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["uri"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        uris.contains(&"ev+test://static-text".to_owned()),
        "{uris:?}"
    );
    let read = c
        .request("resources/read", json!({"uri": "ev+test://static-text"}))
        .await;
    assert_eq!(
        read["result"]["contents"][0]["uri"],
        "ev+test://static-text"
    );
    assert_eq!(
        read["result"]["contents"][0]["text"],
        "This is the content of the static text resource."
    );
    let templates = c.request("resources/templates/list", json!({})).await;
    assert_eq!(
        templates["result"]["resourceTemplates"][0]["uriTemplate"],
        "ev+test://template/{id}/data"
    );
    let read = c
        .request(
            "resources/read",
            json!({"uri": "ev+test://template/42/data"}),
        )
        .await;
    assert!(
        read["result"]["contents"][0]["text"]
            .as_str()
            .unwrap()
            .contains("42"),
        "{read}"
    );
    // A URI the client got unprefixed (from a tool result) still finds its owner.
    let read = c
        .request("resources/read", json!({"uri": "test://static-binary"}))
        .await;
    assert_eq!(
        read["result"]["contents"][0]["mimeType"], "image/png",
        "{read}"
    );
    let missing = c
        .request("resources/read", json!({"uri": "nope://x"}))
        .await;
    assert_eq!(missing["error"]["code"], -32002);
    assert_eq!(
        c.request(
            "resources/subscribe",
            json!({"uri": "ev+test://watched-resource"})
        )
        .await["result"],
        json!({})
    );

    let prompts = c.request("prompts/list", json!({})).await;
    assert!(
        prompts["result"]["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "ev__test_simple_prompt")
    );
    let got = c.request("prompts/get", json!({"name": "ev__test_prompt_with_arguments", "arguments": {"arg1": "A1", "arg2": "B2"}})).await;
    assert!(
        got["result"]["messages"].to_string().contains("A1"),
        "{got}"
    );
    let done = c.request("completion/complete", json!({"ref": {"type": "ref/prompt", "name": "ev__test_prompt_with_arguments"}, "argument": {"name": "arg1", "value": "x"}})).await;
    assert!(done["result"]["completion"]["values"].is_array(), "{done}");
}

#[tokio::test]
async fn logs_and_progress_stream_on_the_calls_own_response() {
    let b = bridge().await;
    let c = b.client().await;
    assert_eq!(
        c.request("logging/setLevel", json!({"level": "debug"}))
            .await["result"],
        json!({})
    );
    let mut r = c.post_stream(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": "ev__test_tool_with_logging", "arguments": {}}})).await;
    let (before, resp) = r.until_response(&json!(5)).await;
    // The fixture's own "Log level set to" message may land here too (the bridge forwards
    // setLevel in the background); the tool's three messages must, in order.
    let logs: Vec<_> = before
        .iter()
        .filter(|m| m["method"] == "notifications/message")
        .filter_map(|m| m["params"]["data"].as_str())
        .filter(|d| d.starts_with("Tool "))
        .collect();
    assert_eq!(
        logs,
        [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed"
        ],
        "{before:?}"
    );
    assert_eq!(text_of(&resp), "Tool with logging executed successfully");
}

#[tokio::test]
async fn progress_goes_only_to_its_own_session() {
    let b = bridge().await;
    let (a, z) = (b.client().await, b.client().await);
    let call = |c: &Client| {
        let c = c.fork();
        async move {
            // Both clients use the same token; the bridge keeps them apart.
            let mut r = c.post_stream(&json!({"jsonrpc": "2.0", "id": 9, "method": "tools/call", "params": {"name": "ev__test_tool_with_progress", "arguments": {}, "_meta": {"progressToken": 1}}})).await;
            r.until_response(&json!(9)).await
        }
    };
    let ((pa, ra), (pz, rz)) = tokio::join!(call(&a), call(&z));
    for (progress, resp) in [(pa, ra), (pz, rz)] {
        assert!(resp["result"].is_object(), "{resp}");
        let values: Vec<_> = progress
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .map(|m| {
                assert_eq!(
                    m["params"]["progressToken"], 1,
                    "the client's own token comes back"
                );
                m["params"]["progress"].as_i64().unwrap()
            })
            .collect();
        assert_eq!(
            values,
            [0, 50, 100],
            "exactly this call's progress, in order"
        );
    }
}

#[tokio::test]
async fn sampling_goes_to_the_calling_session_and_the_answer_back() {
    let b = bridge().await;
    let caps = json!({"sampling": {}});
    let (a, z) = (
        Client::connect_with(&b.url, caps.clone()).await,
        Client::connect_with(&b.url, caps).await,
    );
    let mut ra = a.post_stream(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "ev__test_sampling", "arguments": {"prompt": "from a"}}})).await;
    let qa = ra.next().await.unwrap();
    assert_eq!(qa["method"], "sampling/createMessage", "{qa}");
    assert_eq!(qa["params"]["messages"][0]["content"]["text"], "from a");
    // While a's question is open, z calls too and gets its own question.
    let mut rz = z.post_stream(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "ev__test_sampling", "arguments": {"prompt": "from z"}}})).await;
    let qz = tokio::select! { q = rz.next() => q.unwrap(), q = ra.next() => panic!("z's question went to a: {q:?}") };
    assert_eq!(
        qz["params"]["messages"][0]["content"]["text"], "from z",
        "{qz}"
    );
    let answer = |q: &Value, text: &str| json!({"jsonrpc": "2.0", "id": q["id"], "result": {"role": "assistant", "content": {"type": "text", "text": text}, "model": "m"}});
    assert_eq!(z.post_json(&answer(&qz, "zed")).await.status, 202);
    assert_eq!(a.post_json(&answer(&qa, "ay")).await.status, 202);
    let (_, resp_z) = rz.until_response(&json!(1)).await;
    let (_, resp_a) = ra.until_response(&json!(1)).await;
    assert_eq!(text_of(&resp_z), "LLM response: zed");
    assert_eq!(text_of(&resp_a), "LLM response: ay");
    // An answer from the wrong session does not reach anyone.
    assert_eq!(z.post_json(&answer(&qa, "late")).await.status, 202);
}

#[tokio::test]
async fn a_request_no_client_can_serve_is_refused_not_hung() {
    let b = bridge().await;
    let c = b.client().await; // declares no elicitation
    let r = tokio::time::timeout(
        Duration::from_secs(20),
        c.call_tool("ev__test_elicitation", json!({"message": "hi"})),
    )
    .await
    .expect("no hang");
    assert_eq!(r["result"]["isError"], true, "{r}");
    assert!(
        text_of(&r).contains("no connected client supports elicitation"),
        "{r}"
    );
}

#[tokio::test]
async fn a_cancelled_call_is_cancelled_upstream() {
    let b = bridge().await;
    let c = b.client().await;
    let slow = {
        let c = c.fork();
        tokio::spawn(async move {
            c.post_json(&json!({"jsonrpc": "2.0", "id": 77, "method": "tools/call", "params": {"name": "alpha__sleep", "arguments": {"ms": 60000}}})).await
        })
    };
    b.wait_log("call reached the child", |l| {
        l.contains("fixture alpha sleeping 60000")
    })
    .await;
    let n = c.post_json(&json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 77, "reason": "user"}})).await;
    assert_eq!(n.status, 202);
    let answer = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("cancel ends the call")
        .unwrap();
    assert_eq!(answer.json()["error"]["code"], -32800, "{answer:?}");
    b.wait_log("cancel forwarded with the upstream's id", |l| {
        l.contains("fixture alpha got cancel for request")
    })
    .await;
}
