//! The status page at `/`, loaded in a real headless Chromium (the Debian package, installed
//! by `.ci/run`): what it shows matches `/status`, it fits a 390 px wide phone screen, its
//! approve button needs the page's token, and another origin gets nothing. Screenshots go to
//! `target/status-page*.png` (CI artifacts).

use std::time::Duration;

use mcp_bridge_tests::*;
use serde_json::{Value, json};

fn chromium() -> std::path::PathBuf {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find_map(|name| {
            std::env::var_os("PATH").and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(name))
                    .find(|c| c.is_file())
            })
        })
        .expect(
            "the status page test needs Chromium: `apt-get install chromium` (.ci/run installs it)",
        )
}

/// Loads `url` in headless Chromium at `width`×`height`, lets its script run, and returns the
/// DOM; with `shot`, also saves a screenshot there.
async fn load(url: &str, width: u32, height: u32, shot: Option<&std::path::Path>) -> String {
    let profile = TempDir::new("chromium");
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--virtual-time-budget=6000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--window-size={width},{height}"))
    .kill_on_drop(true);
    if let Some(path) = shot {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            cmd.arg(format!("--screenshot={}", path.display()))
                .arg(url)
                .output(),
        )
        .await
        .expect("chromium finished within 60 s")
        .unwrap();
        assert!(path.exists(), "{}", String::from_utf8_lossy(&out.stderr));
        return String::new();
    }
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        cmd.arg("--dump-dom").arg(url).output(),
    )
    .await
    .expect("chromium finished within 60 s")
    .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_status_page_shows_what_status_says_in_a_real_browser() {
    let config = format!(
        "{}[[upstream]]\nname = \"broken\"\ncommand = \"/nonexistent/mcp-server\"\n",
        fixture_entry("alpha", &[])
    );
    let b = Bridge::builder().config(&config).start().await;
    wait_for(
        "alpha ready and broken failed",
        Duration::from_secs(20),
        async || {
            let s = b.status().await;
            (s["upstreams"][0]["state"] == "ready" && s["upstreams"][1]["last_error"].is_string())
                .then_some(())
        },
    )
    .await;
    let page = format!("{}/", b.base);
    // The failing upstream moves between states while the page loads: what the page shows
    // must be what `/status` said just before or just after.
    let before = b.status().await;
    let dom = load(&page, 1280, 900, None).await;
    let status = b.status().await;
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the script ran: {dom}"
    );
    for (u, earlier) in status["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .zip(before["upstreams"].as_array().unwrap())
    {
        let row = |s: &Value| {
            format!(
                "data-upstream=\"{}\" data-state=\"{}\"",
                s["name"].as_str().unwrap(),
                s["state"].as_str().unwrap()
            )
        };
        assert!(
            dom.contains(&row(u)) || dom.contains(&row(earlier)),
            "{} in {dom}",
            row(u)
        );
        assert!(
            dom.contains(&format!("data-tools=\"{}\"", u["tools"])),
            "{u}"
        );
    }
    assert!(
        dom.contains("No such file or directory"),
        "the last error is shown"
    );
    assert!(dom.contains("mcp-bridge doctor"), "and what to do");
    for p in status["profiles"].as_array().unwrap() {
        assert!(dom.contains(&format!("data-profile=\"{}\"", p["name"].as_str().unwrap())));
    }
    // A phone-sized screen: nothing wider than the viewport.
    let narrow = load(&page, 390, 844, None).await;
    assert!(
        narrow.contains("data-overflow=\"false\""),
        "fits 390 px: {narrow}"
    );
    let target = bin_dir().join("..");
    load(&page, 1280, 900, Some(&target.join("status-page.png"))).await;
    load(&page, 390, 844, Some(&target.join("status-page-390.png"))).await;

    // The approve endpoint needs the page's token, which only its own origin can read.
    let http = reqwest::Client::new();
    let token = {
        let html = http.get(&page).send().await.unwrap().text().await.unwrap();
        let at = html.find("name=\"csrf\" content=\"").unwrap() + 21;
        html[at..].split('"').next().unwrap().to_owned()
    };
    let approve = |t: &'static str, origin: Option<&'static str>| {
        let mut req = http
            .post(format!("{}/ui/approve", b.base))
            .header("x-csrf-token", t)
            .json(&json!({"upstream": "alpha"}));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        req.send()
    };
    assert_eq!(approve("wrong", None).await.unwrap().status(), 403);
    let leaked: &'static str = Box::leak(token.into_boxed_str());
    let ok = approve(leaked, None).await.unwrap();
    assert_eq!(ok.status(), 200);
    let v: Value = ok.json().await.unwrap();
    assert_eq!(v["approved"], 0, "nothing was pending: {v}");
    // A page on another allowed origin (loopback pages are allowed) cannot read it or post.
    let foreign = http
        .get(&page)
        .header("origin", "http://localhost:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert_eq!(
        approve(leaked, Some("http://localhost:3000"))
            .await
            .unwrap()
            .status(),
        403
    );
    let csp = http
        .get(&page)
        .send()
        .await
        .unwrap()
        .headers()
        .get("content-security-policy")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
}

/// `/metrics` samples, as the official Prometheus Python client's OpenMetrics parser reads them.
async fn scrape(b: &Bridge) -> Vec<Value> {
    let tp = ThirdParty::get();
    let text = reqwest::get(format!("{}/metrics", b.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut child = tokio::process::Command::new(tp.python())
        .arg(tp.root.join("tests/compat/parse_metrics.py"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "the exposition parses: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sample<'a>(samples: &'a [Value], name: &str, labels: &[(&str, &str)]) -> Option<&'a Value> {
    samples
        .iter()
        .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
}

#[tokio::test]
async fn metrics_parse_and_count_calls_errors_states_and_sessions() {
    let config = format!(
        "{}[[upstream]]\nname = \"broken\"\ncommand = \"/nonexistent/mcp-server\"\n",
        fixture_entry("alpha", &[])
    );
    let b = Bridge::builder().config(&config).start().await;
    wait_for("alpha ready", Duration::from_secs(20), async || {
        (b.status().await["upstreams"][0]["state"] == "ready").then_some(())
    })
    .await;
    let c = b.client().await;
    for _ in 0..3 {
        let r = c.call_tool("alpha__echo", json!({"message": "m"})).await;
        assert!(text_of(&r).contains('m'));
    }
    // A call that fails at the upstream: its exit ends the call with an error.
    let failed = c.call_tool("alpha__exit", json!({})).await;
    assert!(
        failed.get("error").is_some() || failed["result"]["isError"] == true,
        "{failed}"
    );
    let samples = scrape(&b).await;
    let ok = sample(
        &samples,
        "mcp_server_operation_duration_seconds_count",
        &[
            ("mcp_method_name", "tools/call"),
            ("upstream", "alpha"),
            ("error_type", ""),
        ],
    )
    .unwrap_or_else(|| panic!("{samples:?}"));
    assert_eq!(ok["value"], 3.0, "{ok}");
    assert_eq!(
        sample(
            &samples,
            "mcp_server_operation_duration_seconds_bucket",
            &[("upstream", "alpha"), ("le", "+Inf"), ("error_type", "")]
        )
        .unwrap()["value"],
        3.0
    );
    if failed.get("error").is_some() {
        let errors: f64 = samples
            .iter()
            .filter(|s| {
                s["name"] == "mcp_server_operation_duration_seconds_count"
                    && s["labels"]["upstream"] == "alpha"
                    && s["labels"]["error_type"] != ""
            })
            .map(|s| s["value"].as_f64().unwrap())
            .sum();
        assert_eq!(errors, 1.0, "{samples:?}");
    }
    assert_eq!(
        sample(
            &samples,
            "mcp_bridge_upstream_up",
            &[("upstream", "broken")]
        )
        .unwrap()["value"],
        0.0
    );
    assert!(
        sample(
            &samples,
            "mcp_bridge_upstream_failures_total",
            &[("upstream", "broken")]
        )
        .unwrap()["value"]
            .as_f64()
            .unwrap()
            >= 1.0
    );
    assert_eq!(
        sample(&samples, "mcp_bridge_sessions", &[("profile", "all")]).unwrap()["value"],
        1.0
    );
    assert_eq!(
        sample(
            &samples,
            "mcp_bridge_upstream_state",
            &[("upstream", "broken"), ("state", "ready")]
        ),
        None,
        "only the current state is 1"
    );
}
