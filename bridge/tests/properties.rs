//! Property tests of the invariants the bridge's safety rests on.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mcp_bridge::guard::Guard;
use mcp_bridge::naming;
use mcp_bridge::registry::Catalog;
use mcp_bridge::upstream::{Lists, NoClients, Timeouts, Upstream};
use proptest::prelude::*;
use serde_json::{Value, json};

fn valid(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn upstream(name: &str, prefix: &str, tools: &[String]) -> Arc<Upstream> {
    let u = Upstream::new(
        name,
        prefix,
        "test",
        Timeouts::default(),
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(NoClients),
    );
    u.seed_lists(Arc::new(Lists {
        tools: tools.iter().map(|t| json!({"name": t})).collect(),
        ..Default::default()
    }));
    Arc::new(u)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Every exposed name is valid for Claude and OpenAI, whatever the upstream sent.
    #[test]
    fn exposed_names_are_always_valid(prefix in "[a-zA-Z0-9_-]{0,70}", tool in any::<String>()) {
        let n = naming::expose(&prefix, &tool);
        prop_assert!(valid(&n), "{n:?}");
        prop_assert_eq!(n.clone(), naming::expose(&prefix, &tool), "deterministic");
    }

    /// Merging any tool sets gives unique, valid names, and each routes back to exactly the
    /// upstream and original name it came from (reversible through the table).
    #[test]
    fn merged_names_are_unique_valid_and_reversible(
        a in prop::collection::vec("[ -~]{0,80}", 0..12),
        b in prop::collection::vec("[a-z._/ ]{1,12}", 0..12),
        c in prop::collection::vec("(a__|x)[a-z._]{0,6}", 0..12),
    ) {
        let dedup = |v: Vec<String>| { let mut seen = HashSet::new(); v.into_iter().filter(|t| seen.insert(t.clone())).collect::<Vec<_>>() };
        let (a, b, c) = (dedup(a), dedup(b), dedup(c));
        let ups = [upstream("a", "a", &a), upstream("b", "", &b), upstream("x", "x", &c)];
        let catalog = Catalog::build(&ups);
        prop_assert_eq!(catalog.len(), a.len() + b.len() + c.len(), "nothing dropped");
        for (up, tools) in ups.iter().zip([&a, &b, &c]) {
            for t in tools.iter() {
                let hits: Vec<_> = catalog.routes.iter().filter(|(_, r)| Arc::ptr_eq(&r.upstream, up) && &r.tool == t).collect();
                prop_assert_eq!(hits.len(), 1, "{:?} of {} exposed once", t, up.name);
                prop_assert!(valid(hits[0].0));
            }
        }
    }
}

/// An independent statement of the allowlist, to compare the matcher with.
fn reference_allows(origin: &str) -> bool {
    let Some(rest) = origin.strip_prefix("https://") else {
        return false;
    };
    let host = rest
        .strip_suffix(":443")
        .unwrap_or(rest)
        .to_ascii_lowercase();
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !host.split('.').all(label_ok) {
        return false;
    }
    if ["claude.ai", "chatgpt.com", "chat.openai.com"].contains(&host.as_str()) {
        return true;
    }
    ["claudeusercontent.com", "openai.com"].iter().any(|s| {
        host.strip_suffix(s)
            .is_some_and(|p| p.len() > 1 && p.ends_with('.'))
    })
}

fn host_part() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("claude.ai".to_owned()),
        Just("chatgpt.com".to_owned()),
        Just("chat.openai.com".to_owned()),
        Just("openai.com".to_owned()),
        Just("claudeusercontent.com".to_owned()),
        Just("evil.com".to_owned()),
        "[a-z0-9-]{0,8}",
        Just("".to_owned()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// The origin matcher accepts exactly the allowlist: lookalikes built from its own pieces
    /// (`evilclaude.ai`, `claude.ai.evil.com`, `x.claudeusercontent.com.evil.com`, ports,
    /// schemes, empty labels) are refused.
    #[test]
    fn origin_matcher_accepts_exactly_the_allowlist(
        scheme in prop_oneof![Just("https://"), Just("http://"), Just("HTTPS://"), Just("wss://")],
        head in host_part(),
        glue in prop_oneof![Just(""), Just("."), Just("-")],
        tail in host_part(),
        port in prop_oneof![Just(""), Just(":443"), Just(":8443"), Just(":")],
        path in prop_oneof![Just(""), Just("/"), Just("/x")],
    ) {
        let guard = Guard::new(&[], &[], false, None).unwrap();
        let origin = format!("{scheme}{head}{glue}{tail}{port}{path}");
        let expected = reference_allows(&origin.replacen("HTTPS://", "https://", 1));
        prop_assert_eq!(guard.origin_allowed(&origin), expected, "{}", origin);
    }
}

/// Request ids are remapped per upstream: with many concurrent calls answered in a random
/// order, every caller gets its own answer.
#[tokio::test]
async fn responses_never_reach_the_wrong_caller() {
    use mcp_bridge::upstream::peer::RpcPeer;
    for seed in 0..20u64 {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<bytes::Bytes>();
        let peer = Arc::new(RpcPeer::new("up".into(), tx));
        let responder = {
            let peer = peer.clone();
            tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed);
                let mut held = Vec::new();
                while let Some(line) = rx.recv().await {
                    let msg: Value = serde_json::from_slice(&line).unwrap();
                    let nudge = msg.get("id").is_none();
                    if !nudge {
                        held.push(msg);
                    }
                    // Answer in a shuffled order, in bursts.
                    if nudge || held.len() >= 8 || rng.bool() {
                        rng.shuffle(&mut held);
                        for m in held.drain(..) {
                            let echo = m["params"]["arguments"]["who"].clone();
                            peer.deliver(
                                &m["id"],
                                json!({"jsonrpc": "2.0", "id": m["id"], "result": {"who": echo}}),
                            );
                        }
                    }
                }
            })
        };
        let calls = (0..64).map(|i| {
            let peer = peer.clone();
            async move {
                let r = peer
                    .call(
                        "tools/call",
                        Some(json!({"name": "t", "arguments": {"who": i}})),
                        Duration::from_secs(5),
                    )
                    .await;
                (i, r)
            }
        });
        let flush = {
            let peer = peer.clone();
            tokio::spawn(async move {
                // Keep the responder moving when fewer than 8 requests are held.
                for _ in 0..200 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    peer.notify("nudge", None);
                }
            })
        };
        for (i, r) in futures_util::future::join_all(calls).await {
            assert_eq!(r.unwrap()["who"], i, "seed {seed}");
        }
        flush.abort();
        drop(peer);
        responder.abort();
    }
}
