//! One function per fuzz target: it feeds outside bytes to a parser and panics when an
//! invariant breaks. `fuzz/fuzz_targets/*.rs` call these under libFuzzer (`cargo fuzz`);
//! `tests/corpus.rs` replays the checked-in corpus and every crash ever found through them in
//! the ordinary `cargo test`, so a fixed crash stays fixed.
//!
//! Panicking is the point here: a failed `assert!` is what the fuzzer reports.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use bytes::BytesMut;
use mcp_bridge::catalog::Catalog;
use mcp_bridge::jsonrpc::{self, Kind};
use mcp_bridge::naming;
use mcp_bridge::sse::SseParser;
use mcp_bridge::upstream::{Lists, NoClients, Timeouts, Upstream};
use serde_json::Value;
use tokio_util::codec::Decoder;

/// A check: panics when the input breaks an invariant.
pub type Check = fn(&[u8]);

/// Every target, by the name of its `fuzz_targets/<name>.rs` and corpus directory.
pub const TARGETS: &[(&str, Check)] = &[
    ("jsonrpc_envelope", jsonrpc_envelope),
    ("naming", naming),
    ("catalog", catalog),
    ("proto_frames", proto_frames),
    ("sse", sse),
    ("config", config),
    ("consent_form", consent_form),
    ("oauth_metadata", oauth_metadata),
    ("token_response", token_response),
];

/// Splits fuzz input into `n` parts at 0xFF bytes (never valid UTF-8, so string parts stay
/// whatever the fuzzer made them); missing parts are empty.
fn parts(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |&b| b == 0xff).collect();
    out.resize(n, &[]);
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A POST body: parsed into one message or refused with a JSON-RPC error; a message is
/// classified, and the answer the bridge would build for it is valid JSON-RPC.
pub fn jsonrpc_envelope(data: &[u8]) {
    match jsonrpc::parse_message(data) {
        Err(e) => {
            assert!(e.code == jsonrpc::PARSE_ERROR || e.code == jsonrpc::INVALID_REQUEST);
            assert!(!e.message.is_empty());
        }
        Ok(msg) => {
            assert!(!msg.is_array());
            match jsonrpc::classify(&msg) {
                Kind::Request { id, method } => {
                    assert!(id.is_string() || id.is_i64() || id.is_u64());
                    assert_eq!(msg["method"].as_str(), Some(method));
                    let answer = jsonrpc::response(id, Ok(Value::Null));
                    let back: Value = serde_json::from_str(&answer.to_string()).unwrap();
                    assert_eq!(&back["id"], id);
                    assert!(matches!(jsonrpc::classify(&back), Kind::Response { .. }));
                }
                Kind::Notification { method } => {
                    assert!(msg.get("id").is_none());
                    assert_eq!(msg["method"].as_str(), Some(method));
                }
                Kind::Response { id } => {
                    assert!(msg.get("result").is_some() || msg.get("error").is_some());
                    assert!(id.is_string() || id.is_i64() || id.is_u64());
                }
                Kind::Invalid(why) => assert!(!why.is_empty()),
            }
        }
    }
}

/// Tool names and URIs: exposed names always match `^[a-zA-Z0-9_-]{1,64}$`, the same input
/// always gives the same name, disambiguated names differ from the preferred one, and a
/// prefixed URI splits back into the prefix and the original URI.
pub fn naming(data: &[u8]) {
    let p = parts(data, 3);
    let (prefix, tool, uri) = (text(p[0]), text(p[1]), text(p[2]));
    let exposed = naming::expose(&prefix, &tool);
    assert!(naming::is_valid(&exposed), "{exposed:?}");
    assert_eq!(exposed, naming::expose(&prefix, &tool));
    for attempt in 1..4 {
        let other = naming::disambiguate(&exposed, &prefix, &tool, attempt);
        assert!(naming::is_valid(&other), "{other:?}");
        assert_ne!(other, exposed);
    }
    if proto::config::valid_name(&prefix) {
        let shown = naming::expose_uri(&prefix, &uri);
        if uri.contains(':') {
            let (head, original) = naming::split_uri(&shown).expect("a prefixed URI splits");
            assert_eq!(head, naming::uri_prefix(&prefix));
            assert_eq!(original, uri);
        }
    }
    let _ = naming::split_uri(&uri);
}

/// Upstream lists crafted to collide or overflow: every exposed tool and prompt name is valid
/// and unique, nothing with a name is dropped, and each name routes back to its owner and
/// original name; prefixed resource URIs route back to their owner and original URI.
pub fn catalog(data: &[u8]) {
    let p = parts(data, 3);
    let prefixes = ["", "a", "a_b", "x", &"p".repeat(60)];
    let pick = |b: &[u8]| prefixes[b.first().map_or(0, |&x| usize::from(x)) % prefixes.len()];
    let ups: Vec<Arc<Upstream>> = [
        (p[1], "one", pick(p[0])),
        (p[2], "two", pick(&p[0][1.min(p[0].len())..])),
    ]
    .into_iter()
    .filter_map(|(json, name, prefix)| {
        let lists: Lists = serde_json::from_slice(json).ok()?;
        let up = Upstream::new(
            name,
            prefix,
            "fuzz",
            Timeouts::default(),
            Arc::new(tokio::sync::Notify::new()),
            Arc::new(NoClients),
        );
        up.seed_lists(std::sync::Arc::new(lists));
        Some(Arc::new(up))
    })
    .collect();
    let cat = Catalog::build(&ups);
    let tools: Value = serde_json::from_str(cat.tools_result.get()).unwrap();
    let tools = tools["tools"].as_array().unwrap();
    let named: usize = ups
        .iter()
        .map(|u| {
            u.lists()
                .tools
                .iter()
                .filter(|t| t["name"].is_string())
                .count()
        })
        .sum();
    assert_eq!(tools.len(), named);
    assert_eq!(cat.routes.len(), named, "a name was reused");
    for (exposed, route) in &cat.routes {
        assert!(naming::is_valid(exposed), "{exposed:?}");
        let owned = route.upstream.lists();
        assert!(owned.tools.iter().any(|t| t["name"] == route.tool.as_str()));
    }
    for (exposed, route) in &cat.prompts {
        assert!(naming::is_valid(exposed), "{exposed:?}");
        assert!(
            route
                .upstream
                .lists()
                .prompts
                .iter()
                .any(|t| t["name"] == route.tool.as_str())
        );
    }
    // Every exposed resource URI routes to the upstream that listed it first (config order) and
    // to the URI it listed, whatever the prefixes look like.
    let mut first: std::collections::HashMap<String, (&Arc<Upstream>, String)> = Default::default();
    for up in &ups {
        for r in &up.lists().resources {
            let Some(uri) = r["uri"].as_str() else {
                continue;
            };
            first
                .entry(naming::expose_uri(&up.prefix, uri))
                .or_insert((up, uri.to_owned()));
        }
    }
    for (shown, (up, uri)) in &first {
        let (owner, original) = cat.route_uri(shown).expect("a listed URI routes");
        assert!(Arc::ptr_eq(&owner, up), "{shown:?} went to {}", owner.name);
        assert_eq!(&original, uri);
    }
}

/// The agent socket's frames: the length-delimited decoder never allocates past its limit or
/// panics, and every message it accepts encodes and decodes to itself.
pub fn proto_frames(data: &[u8]) {
    let mut codec = proto::codec();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        assert!(frame.len() <= proto::MAX_FRAME_LEN);
        if let Ok(m) = proto::decode::<proto::ClientMessage>(&frame) {
            assert_eq!(
                proto::decode::<proto::ClientMessage>(&proto::encode(&m)).unwrap(),
                m
            );
        }
        if let Ok(m) = proto::decode::<proto::AgentMessage>(&frame) {
            assert_eq!(
                proto::decode::<proto::AgentMessage>(&proto::encode(&m)).unwrap(),
                m
            );
        }
    }
}

/// The SSE reader: the same events whatever the chunk boundaries, and the buffer stays within
/// its line limit (an over-long line is an error, not growth).
pub fn sse(data: &[u8]) {
    const MAX_LINE: usize = 256;
    let Some((&split, body)) = data.split_first() else {
        return;
    };
    let whole = SseParser::new(MAX_LINE).push(body);
    let at = usize::from(split).min(body.len());
    let mut parser = SseParser::new(MAX_LINE);
    let chunked = parser.push(&body[..at]).and_then(|mut first| {
        first.extend(parser.push(&body[at..])?);
        Ok(first)
    });
    match (whole, chunked) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        // An over-long line is found either way (maybe at a different chunk).
        (Err(_), _) | (_, Err(_)) => {}
    }
    let mut bytewise = SseParser::new(MAX_LINE);
    for b in body {
        if bytewise.push(std::slice::from_ref(b)).is_err() {
            break;
        }
        assert!(
            bytewise.buffered() <= 2 * MAX_LINE,
            "the parser grew past its limit"
        );
    }
}

/// The config file: parsed or refused with a message that names the file and a line that
/// exists.
pub fn config(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = proto::config::parse_file(Path::new("/fuzz/config.toml"), src) {
        let msg = e.to_string();
        assert!(msg.contains("/fuzz/config.toml"), "{msg}");
        if let Some(rest) = msg.split("line ").nth(1) {
            let n: usize = rest
                .chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(1);
            assert!(n >= 1 && n <= src.lines().count() + 1, "{msg}");
        }
    }
}

/// The consent page and the authorization server's redirect: a form is only reported when it
/// has a password field; a redirect is only ours when it goes to our redirect URI.
pub fn consent_form(data: &[u8]) {
    let p = parts(data, 2);
    let html = text(p[0]);
    if let Some(form) = mcp_cred_agent::consent::find_password_form(&html) {
        assert!(form.fields.iter().any(|(kind, _, _)| kind == "password"));
    }
    const OURS: &str = "http://127.0.0.1:8769/oauth/callback";
    let location = text(p[1]);
    let outcome = mcp_cred_agent::consent::redirect_outcome(&location, OURS);
    if outcome.is_some() {
        assert!(location.starts_with(OURS));
    }
}

/// Protected-resource and authorization-server metadata, registration answers and 401
/// challenges from a hostile server: refused with a bounded message, or taken apart without
/// inventing anything.
pub fn oauth_metadata(data: &[u8]) {
    use mcp_cred_agent::oauth;
    let p = parts(data, 2);
    let challenge = oauth::parse_challenge(&text(p[1]));
    if let Some(m) = &challenge.resource_metadata {
        assert!(text(p[1]).contains(m.as_str()));
    }
    let Ok(doc) = serde_json::from_slice::<Value>(p[0]) else {
        return;
    };
    match oauth::resource_metadata(&doc, "http://127.0.0.1:1/mcp") {
        Ok(m) => assert_eq!(
            doc["authorization_servers"][0].as_str(),
            Some(m.issuer.as_str())
        ),
        Err(e) => assert!(e.to_string().len() < 1000),
    }
    let issuer = doc["issuer"].as_str().unwrap_or("https://as.example");
    match oauth::server_metadata(&doc, issuer) {
        Ok(m) => assert_eq!(
            doc["token_endpoint"].as_str(),
            Some(m.token_endpoint.as_str())
        ),
        Err(e) => assert!(e.to_string().len() < 1000),
    }
    if let Err(e) = oauth::server_metadata(&doc, "https://other.example") {
        assert!(e.to_string().len() < 1000);
    }
    match oauth::registration_response(&doc) {
        Ok(c) => assert!(!c.client_id.is_empty()),
        Err(e) => assert!(e.to_string().len() < 1000),
    }
}

/// Token endpoint answers: parsed or refused; the lifetime used for expiry arithmetic is
/// always within bounds, so no `expires_in` can overflow it.
pub fn token_response(data: &[u8]) {
    use mcp_cred_agent::oauth;
    if let Ok(t) = oauth::token_response(data) {
        let life = t.lifetime_secs();
        assert!((1..=oauth::MAX_TOKEN_LIFETIME_SECS).contains(&life));
        let _ = u64::MAX.saturating_add(life);
    }
}
