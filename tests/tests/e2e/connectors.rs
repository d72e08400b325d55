//! claude.ai and ChatGPT connectors: the bridge as the OAuth authorization server of its public
//! URL, on loopback with a Host header standing in for the tunnel (`public_url =
//! "https://x.example"`); third-party OAuth clients against a loopback public URL.

use std::collections::HashMap;
use std::time::Duration;

use mcp_bridge_tests::*;
use serde_json::{Value, json};

const PUBLIC: &str = "x.example";
const CALLBACK: &str = "https://claude.ai/api/mcp/auth_callback";
/// RFC 7636 appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `alpha` and `beta` (the stdio fixture); profile `one` shows `alpha` only.
fn config(extra_server: &str) -> String {
    format!(
        "[server]\npublic_url = \"https://{PUBLIC}\"\n{extra_server}\n{}{}[[profile]]\nname = \"one\"\nupstreams = [\"alpha\"]\n",
        fixture_entry("alpha", &[]),
        fixture_entry("beta", &[])
    )
}

struct Public<'a> {
    b: &'a Bridge,
    http: reqwest::Client,
}

impl Public<'_> {
    fn new(b: &Bridge) -> Public<'_> {
        Public {
            b,
            http: no_redirects(),
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.b.base))
            .header("host", PUBLIC)
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.b.base))
            .header("host", PUBLIC)
    }

    async fn form(&self, path: &str, pairs: &[(&str, &str)]) -> (u16, Value) {
        let r = self.post(path).form(pairs).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// An MCP request to the public endpoint with `token`: status, `WWW-Authenticate`, body.
    async fn mcp(
        &self,
        token: Option<&str>,
        session: Option<&str>,
        msg: Value,
    ) -> (u16, Option<String>, Value, Option<String>) {
        let mut req = self
            .post("/mcp")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(s) = session {
            req = req
                .header("mcp-session-id", s)
                .header("mcp-protocol-version", "2025-11-25");
        }
        let r = req.body(msg.to_string()).send().await.unwrap();
        let status = r.status().as_u16();
        let challenge = r
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_owned());
        let sid = r
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        (
            status,
            challenge,
            r.json().await.unwrap_or(Value::Null),
            sid,
        )
    }

    /// Initializes a session with `token` and lists its tools.
    async fn tool_names(&self, token: &str) -> Vec<String> {
        let (status, _, init, sid) = self
            .mcp(
                Some(token),
                None,
                json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "connector", "version": "1"}}}),
            )
            .await;
        assert_eq!(status, 200, "{init}");
        let (_, _, list, _) = self
            .mcp(
                Some(token),
                sid.as_deref(),
                json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
            )
            .await;
        list["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("{list}"))
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }

    /// `GET /authorize`: the status and the `Location` (a redirect) or the page.
    async fn authorize(&self, pairs: &[(&str, &str)]) -> (u16, String, reqwest::header::HeaderMap) {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        let r = self
            .get(&format!("/authorize?{query}"))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = match headers.get("location") {
            Some(l) => l.to_str().unwrap().to_owned(),
            None => r.text().await.unwrap(),
        };
        (status, text, headers)
    }
}

fn query_of(location: &str) -> HashMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

fn cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(bin("mcp-bridge"))
        .args(args)
        .env("MCP_BRIDGE_CONFIG_DIR", dir)
        .env("HOME", dir)
        .output()
        .unwrap()
}

/// Starts `mcp-bridge connectors pair` and waits until its window is open.
async fn open_pairing(dir: &std::path::Path, profile: &str) -> tokio::process::Child {
    let child = tokio::process::Command::new(bin("mcp-bridge"))
        .args(["connectors", "pair", "--profile", profile, "--minutes", "2"])
        .env("MCP_BRIDGE_CONFIG_DIR", dir)
        .env("HOME", dir)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let file = dir.join("connectors-pair.json");
    wait_for("the pairing window", Duration::from_secs(10), async || {
        file.exists().then_some(())
    })
    .await;
    child
}

async fn register(p: &Public<'_>, name: &str, redirect: &str) -> String {
    let r = p
        .post("/register")
        // claude.ai has been seen asking for client_secret_post: registered as public anyway.
        .json(&json!({"client_name": name, "redirect_uris": [redirect], "token_endpoint_auth_method": "client_secret_post", "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["token_endpoint_auth_method"], "none", "{v}");
    v["client_id"].as_str().unwrap().to_owned()
}

fn code_request<'a>(client_id: &'a str, redirect: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect),
        ("state", "s-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
        ("resource", "https://x.example/mcp"),
    ]
}

#[tokio::test]
async fn a_paired_connector_sees_its_profile_and_its_tokens_rotate() {
    let b = Bridge::builder()
        .config(&config("connector_refresh_grace_secs = 2"))
        .start()
        .await;
    b.wait_ready(2).await;
    let p = Public::new(&b);

    // Without a token: 401 pointing at the metadata, which points at the issuer.
    let (status, challenge, _, _) = p
        .mcp(
            None,
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        challenge.as_deref(),
        Some(
            "Bearer resource_metadata=\"https://x.example/.well-known/oauth-protected-resource/mcp\""
        )
    );
    let prm: Value = p
        .get("/.well-known/oauth-protected-resource/mcp")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(prm["resource"], "https://x.example/mcp");
    assert_eq!(prm["authorization_servers"], json!(["https://x.example"]));
    let meta: Value = p
        .get("/.well-known/oauth-authorization-server")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], "https://x.example");
    assert_eq!(meta["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(
        meta["token_endpoint_auth_methods_supported"],
        json!(["none"])
    );
    // The public URL serves nothing else; loopback clients need no token, as before, unless
    // a proxy forwarded them (a tunnel that rewrites Host).
    assert_eq!(p.get("/status").send().await.unwrap().status(), 404);
    let forwarded = no_redirects()
        .get(format!("{}/status", b.base))
        .header("x-forwarded-for", "160.79.104.10")
        .send()
        .await
        .unwrap();
    assert_eq!(forwarded.status(), 404);
    assert_eq!(p.get("/mcp/one").send().await.unwrap().status(), 404);
    let local = b.client().await;
    assert!(
        local
            .tool_names()
            .await
            .iter()
            .any(|n| n.starts_with("beta__"))
    );

    // Registration, then the pairing window approves the next authorization.
    let client_id = register(&p, "Claude", CALLBACK).await;
    let mut pair = open_pairing(&b.dir, "one").await;
    let (status, location, _) = p.authorize(&code_request(&client_id, CALLBACK)).await;
    assert_eq!(status, 302, "{location}");
    assert!(location.starts_with(CALLBACK), "{location}");
    let q = query_of(&location);
    assert_eq!(q["state"], "s-1");
    assert_eq!(q["iss"], "https://x.example");
    let out = tokio::time::timeout(Duration::from_secs(10), pair.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(out.success());
    let mut said = String::new();
    tokio::io::AsyncReadExt::read_to_string(pair.stdout.as_mut().unwrap(), &mut said)
        .await
        .unwrap();
    assert!(
        said.contains("approved: Claude (redirecting to claude.ai)"),
        "{said}"
    );

    // The code: PKCE checked, single use.
    let exchange = |code: String, verifier: &'static str| {
        let client_id = client_id.clone();
        let p = &p;
        async move {
            p.form(
                "/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("client_id", &client_id),
                    ("redirect_uri", CALLBACK),
                    ("code_verifier", verifier),
                    ("resource", "https://x.example/mcp"),
                ],
            )
            .await
        }
    };
    let (status, tokens) = exchange(q["code"].clone(), VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    let (status, again) = exchange(q["code"].clone(), VERIFIER).await;
    assert_eq!(
        (status, again["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let at1 = tokens["access_token"].as_str().unwrap().to_owned();
    let rt1 = tokens["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(tokens["token_type"], "Bearer");

    // The grant's profile: alpha only; beta's tools are unknown to it.
    let names = p.tool_names(&at1).await;
    assert!(
        !names.is_empty() && names.iter().all(|n| n.starts_with("alpha__")),
        "{names:?}"
    );
    let (_, _, _, sid) = p
        .mcp(
            Some(&at1),
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
                "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "c", "version": "1"}}}),
        )
        .await;
    let (_, _, call, _) = p
        .mcp(
            Some(&at1),
            sid.as_deref(),
            json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "beta__echo", "arguments": {"message": "x"}}}),
        )
        .await;
    assert_eq!(
        call["error"]["message"], "Unknown tool: beta__echo",
        "{call}"
    );
    let (_, challenge, _, _) = p
        .mcp(
            Some("mcpb_at_wrong"),
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        )
        .await;
    assert!(challenge.unwrap().contains("error=\"invalid_token\""));
    let list = cli(&b.dir, &["connectors", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        listed.contains("claude-1") && listed.contains("one"),
        "{listed}"
    );
    // Tokens are stored hashed only.
    let stored = std::fs::read_to_string(b.dir.join("connectors.json")).unwrap();
    assert!(!stored.contains(&at1) && !stored.contains(&rt1));

    // Rotation: a retried refresh inside the grace window gets the same pair; after it, reuse
    // revokes the family.
    let refresh = |rt: String| {
        let client_id = client_id.clone();
        let p = &p;
        async move {
            p.form(
                "/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", &rt),
                    ("client_id", &client_id),
                ],
            )
            .await
        }
    };
    // Two refreshes with one token at once (a retry racing the first try): one rotation, the
    // same pair for both.
    let ((status, second), (status_b, second_b)) =
        tokio::join!(refresh(rt1.clone()), refresh(rt1.clone()));
    assert_eq!((status, status_b), (200, 200), "{second} {second_b}");
    assert_eq!(second, second_b);
    let (_, retried) = refresh(rt1.clone()).await;
    assert_eq!(retried, second, "the same pair inside the grace window");
    let at2 = second["access_token"].as_str().unwrap().to_owned();
    assert_ne!(at2, at1);
    assert!(!p.tool_names(&at2).await.is_empty());
    wait_for(
        "the grace window to end",
        Duration::from_secs(10),
        async || {
            let (status, v) = refresh(rt1.clone()).await;
            (status == 400 && v["error"] == "invalid_grant").then_some(())
        },
    )
    .await;
    let (status, _, _, _) = p
        .mcp(
            Some(&at2),
            None,
            json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
        )
        .await;
    assert_eq!(status, 401, "the whole family is revoked");
    let (_, dead) = refresh(second["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(dead["error"], "invalid_grant");
}

/// Serves one client metadata document on loopback.
async fn serve_document(doc: impl Fn(&str) -> Value + Send + Sync + 'static) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let body = doc(&url);
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || {
            let body = body.clone();
            async move { axum::Json(body) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_cimd_client_gets_consent_with_the_owner_password_and_revoke_ends_it() {
    let dir = TempDir::new("connectors-cimd");
    dir.write("config.toml", &config("allow_local_client_metadata = true"));
    let env = vec![(
        "MCP_BRIDGE_OWNER_PASSWORD".to_owned(),
        "hunter2-owner".to_owned(),
    )];
    let _agent = AgentProc::start(dir.path(), &env).await;
    let b = Bridge::builder().in_dir(dir.path()).start().await;
    b.wait_ready(2).await;
    let p = Public::new(&b);
    let client_id = serve_document(|url| {
        json!({"client_id": url, "client_name": "Claude Code",
               "redirect_uris": ["http://localhost/callback", "http://127.0.0.1/callback"],
               "token_endpoint_auth_method": "none"})
    })
    .await;
    let redirect = "http://127.0.0.1:53682/callback";

    // A token for another resource is refused before anyone is asked.
    let mut other = code_request(&client_id, redirect);
    other.retain(|(k, _)| *k != "resource");
    other.push(("resource", "https://other.example/mcp"));
    let (status, location, _) = p.authorize(&other).await;
    assert_eq!(status, 302);
    assert_eq!(query_of(&location)["error"], "invalid_target");
    // A redirect the document does not list is not followed.
    let (status, page, _) = p
        .authorize(&code_request(&client_id, "https://evil.example/cb"))
        .await;
    assert_eq!(status, 400, "{page}");

    // The consent page: who asks and where it goes back (the port of a loopback redirect is
    // free, RFC 8252), never framed, a CSRF cookie.
    let (status, page, headers) = p.authorize(&code_request(&client_id, redirect)).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Claude Code") && page.contains("127.0.0.1"),
        "{page}"
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    let cookie = headers["set-cookie"].to_str().unwrap();
    assert!(
        cookie.starts_with("__Host-mcpb-consent=")
            && cookie.contains("Secure")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let field = |name: &str| {
        let at = page.find(&format!("name={name} value=\"")).unwrap() + name.len() + 13;
        page[at..].split('"').next().unwrap().to_owned()
    };
    let (request, csrf) = (field("request"), field("csrf"));
    let cookie_pair = cookie.split(';').next().unwrap().to_owned();
    let consent = |cookie: Option<String>, password: &'static str| {
        let (request, csrf) = (request.clone(), csrf.clone());
        let p = &p;
        async move {
            // What a browser sends for a form on the public URL's own page.
            let mut req = p
                .post("/authorize")
                .header("origin", "https://x.example")
                .form(&[
                    ("request", request.as_str()),
                    ("csrf", csrf.as_str()),
                    ("profile", "all"),
                    ("password", password),
                    ("decision", "approve"),
                ]);
            if let Some(c) = cookie {
                req = req.header("cookie", c);
            }
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let location = r
                .headers()
                .get("location")
                .map(|l| l.to_str().unwrap().to_owned());
            (status, location, r.text().await.unwrap())
        }
    };
    let (status, location, _) = consent(None, "hunter2-owner").await;
    assert_eq!(
        (status, location),
        (403, None),
        "no CSRF cookie, no consent"
    );
    let (status, location, body) = consent(Some(cookie_pair.clone()), "").await;
    assert_eq!((status, location), (403, None), "no password, no consent");
    assert!(body.contains("wrong owner password"), "{body}");
    let (status, location, body) = consent(Some(cookie_pair.clone()), "wrong").await;
    assert_eq!((status, location), (403, None));
    assert!(body.contains("wrong owner password"), "{body}");
    let (status, location, body) = consent(Some(cookie_pair.clone()), "hunter2-owner").await;
    assert_eq!(status, 302, "{body}");
    let location = location.unwrap();
    assert!(location.starts_with(redirect), "{location}");
    let code = query_of(&location)["code"].clone();
    let (status, tokens) = p
        .form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &client_id),
                ("redirect_uri", redirect),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(status, 200, "{tokens}");
    let at = tokens["access_token"].as_str().unwrap().to_owned();
    let names = p.tool_names(&at).await;
    assert!(
        names.iter().any(|n| n.starts_with("beta__")),
        "profile all: {names:?}"
    );

    // An expired token is refused (the file's expiry moved into the past; the bridge re-reads it).
    let path = dir.path().join("connectors.json");
    let original = std::fs::read_to_string(&path).unwrap();
    let mut v: Value = serde_json::from_str(&original).unwrap();
    for a in v["grants"][0]["access"].as_array_mut().unwrap() {
        a["expires"] = json!(1);
    }
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let ping = json!({"jsonrpc": "2.0", "id": 1, "method": "ping"});
    let (status, challenge, _, _) = p.mcp(Some(&at), None, ping.clone()).await;
    assert_eq!(status, 401);
    assert!(challenge.unwrap().contains(
        "resource_metadata=\"https://x.example/.well-known/oauth-protected-resource/mcp\""
    ));
    // So is a token bound to another resource (a grant made for another public URL).
    let mut elsewhere: Value = serde_json::from_str(&original).unwrap();
    elsewhere["grants"][0]["resource"] = json!("https://other.example/mcp");
    std::fs::write(&path, serde_json::to_vec(&elsewhere).unwrap()).unwrap();
    assert_eq!(p.mcp(Some(&at), None, ping.clone()).await.0, 401);
    std::fs::write(&path, &original).unwrap();
    wait_for(
        "the token to work again",
        Duration::from_secs(5),
        async || (p.mcp(Some(&at), None, ping.clone()).await.0 != 401).then_some(()),
    )
    .await;

    // Revoke ends access at once.
    let name = v["grants"][0]["name"].as_str().unwrap().to_owned();
    let out = cli(dir.path(), &["connectors", "revoke", &name]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(p.mcp(Some(&at), None, ping.clone()).await.0, 401);
}

#[tokio::test]
async fn the_python_sdk_oauth_client_connects_through_the_public_url_in_both_eras() {
    let tp = ThirdParty::get();
    // The public URL is the loopback one here, so the SDK's discovery reaches it.
    let port = free_port();
    let b = Bridge::builder()
        .env("MCP_BRIDGE_PORT", &port.to_string())
        .config(&format!(
            "[server]\npublic_url = \"http://127.0.0.1:{port}\"\n\n{}{}[[profile]]\nname = \"one\"\nupstreams = [\"alpha\"]\n",
            fixture_entry("alpha", &[]),
            fixture_entry("beta", &[])
        ))
        .start()
        .await;
    // No `wait_ready`: with a loopback public URL, `/status` is not served (the first list
    // waits for the upstreams instead).
    for mode in ["legacy", "2026-07-28"] {
        let mut pair = open_pairing(&b.dir, "one").await;
        let out = tokio::time::timeout(
            Duration::from_secs(90),
            tokio::process::Command::new(tp.python())
                .arg(tp.root.join("tests/compat/py_oauth_client.py"))
                .args([&b.url, mode, "alpha__echo"])
                .kill_on_drop(true)
                .output(),
        )
        .await
        .expect("the client finished within 90 s")
        .unwrap();
        assert!(
            out.status.success(),
            "{mode}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let r: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            r["version"],
            if mode == "legacy" { "2025-11-25" } else { mode },
            "{r}"
        );
        let tools = r["tools"].as_array().unwrap();
        assert!(
            !tools.is_empty()
                && tools
                    .iter()
                    .all(|t| t.as_str().unwrap().starts_with("alpha__")),
            "profile one only: {r}"
        );
        assert_eq!(r["call"], "[alpha] hi", "{r}");
        assert_eq!(r["iss"], format!("http://127.0.0.1:{port}"), "{r}");
        assert!(pair.wait().await.unwrap().success());
        crate::compat::matrix(&format!(
            "| connector OAuth ({mode} client, HTTP, public URL) | Python SDK client mcp 2.3.0 `OAuthClientProvider` | DCR, pairing approval, PKCE, token, tools/list {} (profile `one`), call | fixture | pass |",
            tools.len()
        ));
    }
    let listed = String::from_utf8_lossy(&cli(&b.dir, &["connectors", "list"]).stdout).to_string();
    assert!(listed.contains("python-sdk-connector-2"), "{listed}");
}
