//! The MCP protocol of an upstream connection, whatever its transport: the handshake
//! (`initialize`, `notifications/initialized`, every list the server announces, paginated), the
//! client capabilities the bridge declares, re-listing on `list_changed`, and every message the
//! upstream sends: answers go to the peer, requests (`ping`, `roots/list`, sampling,
//! elicitation) are answered or relayed to the client that caused them, notifications
//! (progress, logs, resource updates) go to their clients.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::peer::{Guess, RpcPeer};
use super::{
    CallError, INSTANCE_META, LATEST_VERSION, ListKind, Lists, SUPPORTED_VERSIONS, Upstream,
    instance_id,
};
use crate::jsonrpc::{self, RpcError};
use crate::modern;
use proto::config::{Era, Roots};

/// Most pages followed for one list, so a server that hands out cursors forever cannot hang us.
const MAX_PAGES: usize = 1000;

/// The client capabilities the bridge announces to upstreams: everything it can relay to some
/// client. When no connected client has the capability at the time, the upstream gets a
/// JSON-RPC error instead of a hang.
///
/// `roots` only when the upstream's config gives it roots: a client's roots are that client's
/// view and never reach an upstream other clients share.
fn client_capabilities(up: &Upstream) -> Value {
    let mut caps = serde_json::json!({
        "sampling": {},
        "elicitation": {},
    });
    if up.roots != Roots::None {
        caps["roots"] = serde_json::json!({ "listChanged": true });
    }
    caps
}

/// The `_meta` the bridge puts in every 2026-07-28 request it sends an upstream.
fn stateless_meta(up: &Upstream) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert(
        modern::META_VERSION.into(),
        Value::String(modern::VERSION.into()),
    );
    m.insert(modern::META_CAPABILITIES.into(), client_capabilities(up));
    m.insert(
        modern::META_CLIENT.into(),
        serde_json::json!({ "name": "mcp-bridge", "version": env!("CARGO_PKG_VERSION") }),
    );
    m
}

/// Whether an error is -32022 (unsupported version) listing 2026-07-28 as supported.
fn names_stateless(e: &RpcError) -> bool {
    e.code() == Some(modern::UNSUPPORTED_VERSION)
        && e.0
            .pointer("/data/supported")
            .and_then(Value::as_array)
            .is_some_and(|v| v.iter().any(|x| x.as_str() == Some(modern::VERSION)))
}

/// Whether a `server/discover` answer offers a version the bridge speaks statelessly.
fn offers_stateless(discover: &Value) -> bool {
    discover
        .get("supportedVersions")
        .and_then(Value::as_array)
        .is_some_and(|v| v.iter().any(|x| x.as_str() == Some(modern::VERSION)))
}

/// Connects in the era the config allows and the upstream speaks. Over HTTP (`era = "auto"`)
/// a 2026-07-28 `server/discover` goes first, as the spec advises; any error answer or a
/// timeout means the 2025 era. Over stdio `initialize` goes first, because some 2025 servers
/// exit on any request before it; a server that refuses it with -32022 naming 2026-07-28 is
/// then spoken to statelessly. The verdict holds for the connection; a reconnect decides again.
pub(crate) async fn handshake(
    up: &Arc<Upstream>,
    peer: &Arc<RpcPeer>,
    timeout: Duration,
) -> Result<(), CallError> {
    let discover_first = match up.era {
        Era::Modern => true,
        Era::Legacy => false,
        Era::Auto => up.transport != "stdio",
    };
    if discover_first {
        let params = serde_json::json!({ "_meta": stateless_meta(up) });
        let mut probe = peer
            .call("server/discover", Some(params.clone()), timeout)
            .await;
        // Refused with -32022 naming the version the bridge sent: a server that rejects a
        // client's first choice; ask once more rather than fall back to an era it refuses.
        if let Err(CallError::Rpc(e)) = &probe
            && names_stateless(e)
        {
            probe = peer.call("server/discover", Some(params), timeout).await;
        }
        match probe {
            Ok(d) if offers_stateless(&d) => {
                return stateless_handshake(up, peer, d, timeout).await;
            }
            Ok(_) | Err(CallError::Rpc(_) | CallError::Timeout { .. }) if up.era == Era::Auto => {
                tracing::debug!(upstream = %up.name, "no 2026-07-28 server/discover answer; speaking the 2025 era");
            }
            Ok(_) => {
                return Err(CallError::Unavailable {
                    upstream: up.name.to_string(),
                    reason: format!(
                        "its server/discover does not offer {} (era = \"2026-07-28\" in config.toml)",
                        modern::VERSION
                    ),
                });
            }
            Err(e) => return Err(e),
        }
    }
    match initialize(up, peer, timeout).await {
        Err(CallError::Rpc(e)) if up.era != Era::Legacy && names_stateless(&e) => {
            tracing::info!(upstream = %up.name, "the upstream refused initialize and speaks {}; connecting statelessly", modern::VERSION);
            let params = serde_json::json!({ "_meta": stateless_meta(up) });
            let d = peer.call("server/discover", Some(params), timeout).await?;
            stateless_handshake(up, peer, d, timeout).await
        }
        other => other,
    }
}

/// MCP 2026-07-28: the discover answer stands for `initialize`; every list the upstream
/// announces; a `subscriptions/listen` for the list changes it offers.
async fn stateless_handshake(
    up: &Arc<Upstream>,
    peer: &Arc<RpcPeer>,
    discover: Value,
    timeout: Duration,
) -> Result<(), CallError> {
    not_this_bridge(up, &discover)?;
    peer.set_stateless(stateless_meta(up));
    if matches!(up.roots, Roots::Fixed(_)) {
        peer.set_own_capabilities(vec!["roots".into()]);
    }
    let server_info = discover
        .pointer("/_meta")
        .and_then(|m| m.get(modern::META_SERVER))
        .or_else(|| discover.get("serverInfo"))
        .cloned();
    let (fresh, stale_after) = first_lists(
        up,
        peer,
        server_info,
        modern::VERSION.to_owned(),
        discover.get("capabilities"),
        timeout,
    )
    .await?;
    let offers = |cap: &str| {
        fresh.capabilities.pointer(&format!("/{cap}/listChanged")) == Some(&Value::Bool(true))
    };
    let mut filter = serde_json::Map::new();
    for (flag, cap, _) in modern::LIST_CHANGE_FLAGS {
        if offers(cap) {
            filter.insert(flag.into(), Value::Bool(true));
        }
    }
    up.publish(|l| *l = fresh);
    for (kind, every) in stale_after {
        let (up, peer) = (up.clone(), peer.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if peer.is_closed() {
                    return;
                }
                refresh(up.clone(), peer.clone(), &[kind]).await;
            }
        });
    }
    if !filter.is_empty() {
        // Stands for the 2025 GET stream: its list changes re-list like any others.
        peer.send_open_request(
            LISTEN_ID,
            "subscriptions/listen",
            serde_json::json!({ "notifications": filter }),
        );
    }
    Ok(())
}

/// Refuses an upstream whose `initialize` or `server/discover` answer carries this bridge's own
/// instance id: the bridge would proxy itself in a loop.
fn not_this_bridge(up: &Upstream, answer: &Value) -> Result<(), CallError> {
    if answer
        .get("_meta")
        .and_then(|m| m.get(INSTANCE_META))
        .and_then(Value::as_str)
        == Some(instance_id())
    {
        return Err(CallError::Disabled {
            upstream: up.name.to_string(),
            reason: "it is this mcp-bridge itself (the shim, or a URL of this bridge); remove this entry from config.toml, or the bridge would proxy itself in a loop".into(),
        });
    }
    Ok(())
}

/// The id of the bridge's `subscriptions/listen` request to a 2026-07-28 upstream.
pub(crate) const LISTEN_ID: &str = "mcpb-listen";

/// `initialize`, `notifications/initialized`, then every list the upstream announces.
async fn initialize(up: &Upstream, peer: &RpcPeer, timeout: Duration) -> Result<(), CallError> {
    let params = serde_json::json!({
        "protocolVersion": LATEST_VERSION,
        "capabilities": client_capabilities(up),
        "clientInfo": { "name": "mcp-bridge", "version": env!("CARGO_PKG_VERSION") },
    });
    let init = peer.call("initialize", Some(params), timeout).await?;
    not_this_bridge(up, &init)?;
    let version = init
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !SUPPORTED_VERSIONS.contains(&version) {
        return Err(CallError::Unavailable {
            upstream: up.name.to_string(),
            reason: format!(
                "it answered protocol version {version:?}, which mcp-bridge does not speak"
            ),
        });
    }
    let version = version.to_owned();
    peer.notify("notifications/initialized", None);
    let (fresh, _) = first_lists(
        up,
        peer,
        init.get("serverInfo").cloned(),
        version,
        init.get("capabilities"),
        timeout,
    )
    .await?;
    // A reconnected upstream starts at its own log level: tell it what the clients asked for.
    if fresh.capabilities.get("logging").is_some()
        && let Some(level) = up.log_level()
        && let Err(e) = peer.call("logging/setLevel", Some(level), timeout).await
    {
        tracing::debug!(upstream = %up.name, error = %e, "logging/setLevel after connecting failed");
    }
    up.publish(|l| *l = fresh);
    Ok(())
}

/// After `initialize` or `server/discover`: records who the server is and which version it
/// speaks, and fetches every list its capabilities announce. Also says, for each kind whose
/// changes the server does not announce (no `listChanged`), when its `ttlMs` makes it stale
/// (at most once a second), so a 2026-07-28 upstream's lists can be kept as fresh as it says.
async fn first_lists(
    up: &Upstream,
    peer: &RpcPeer,
    server_info: Option<Value>,
    version: String,
    capabilities: Option<&Value>,
    timeout: Duration,
) -> Result<(Lists, Vec<(ListKind, Duration)>), CallError> {
    up.update_status(|s| {
        s.server_info = server_info;
        s.protocol_version = Some(version);
    });
    let mut fresh = Lists {
        capabilities: capabilities
            .cloned()
            .unwrap_or(Value::Object(Default::default())),
        ..Default::default()
    };
    let mut stale_after = Vec::new();
    for kind in ListKind::ALL {
        if fresh.capabilities.get(kind.capability()).is_some() {
            let (items, ttl) = list_all_with_ttl(up, peer, kind, timeout).await?;
            *kind.get_mut(&mut fresh) = items;
            let announced = fresh
                .capabilities
                .pointer(&format!("/{}/listChanged", kind.capability()))
                == Some(&Value::Bool(true));
            if let Some(ms) = ttl.filter(|ms| *ms > 0 && !announced) {
                stale_after.push((kind, Duration::from_millis(ms.max(1000))));
            }
        }
    }
    Ok((fresh, stale_after))
}

/// Fetches one list, following pagination to the end.
async fn list_all(
    up: &Upstream,
    peer: &RpcPeer,
    kind: ListKind,
    timeout: Duration,
) -> Result<Vec<Value>, CallError> {
    Ok(list_all_with_ttl(up, peer, kind, timeout).await?.0)
}

/// [`list_all`], with the first page's 2026-07-28 `ttlMs` (how long the list stays fresh).
async fn list_all_with_ttl(
    up: &Upstream,
    peer: &RpcPeer,
    kind: ListKind,
    timeout: Duration,
) -> Result<(Vec<Value>, Option<u64>), CallError> {
    let mut ttl = None;
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = cursor.as_ref().map(|c| serde_json::json!({ "cursor": c }));
        let mut page = peer.call(kind.method(), params, timeout).await?;
        if cursor.is_none() {
            ttl = page.get("ttlMs").and_then(Value::as_u64);
        }
        if let Some(Value::Array(batch)) = page.get_mut(kind.key()).map(Value::take) {
            for item in batch {
                if item.get(kind.id_field()).and_then(Value::as_str).is_some() {
                    items.push(item);
                } else {
                    tracing::warn!(upstream = %up.name, kind = kind.key(), "ignored an item without a {}", kind.id_field());
                }
            }
        }
        match page.get("nextCursor").and_then(Value::as_str) {
            Some(next) if Some(next) != cursor.as_deref() => cursor = Some(next.to_owned()),
            _ => return Ok((items, ttl)),
        }
    }
    Err(CallError::Unavailable {
        upstream: up.name.to_string(),
        reason: format!("{} did not end after {MAX_PAGES} pages", kind.method()),
    })
}

/// Re-lists `kinds` after a list_changed notification.
async fn refresh(up: Arc<Upstream>, peer: Arc<RpcPeer>, kinds: &[ListKind]) {
    for &kind in kinds {
        match list_all(&up, &peer, kind, up.timeouts.startup).await {
            Ok(items) => up.publish(|l| *kind.get_mut(l) = items),
            Err(e) => {
                tracing::warn!(upstream = %up.name, kind = kind.key(), error = %e, "re-listing failed")
            }
        }
    }
}

/// Routes one message from the upstream, whatever its transport.
/// The fields of a message that say whether it is a plain successful response: read without
/// building a `Value`, so such a response's result is delivered as the text the upstream wrote.
#[derive(serde::Deserialize)]
struct Head<'a> {
    #[serde(borrow, default)]
    jsonrpc: Option<&'a str>,
    #[serde(default)]
    id: Option<u64>,
    #[serde(borrow, default)]
    result: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    method: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

/// Routes one line an upstream wrote (stdio). The answer to one of our requests (the bulk of
/// the traffic) goes to its caller as text; everything else is parsed and [`dispatch`]ed.
/// Returns the parse error of a line that is not JSON.
pub(crate) fn dispatch_line(
    up: &Arc<Upstream>,
    peer: &Arc<RpcPeer>,
    line: &[u8],
) -> Result<(), serde_json::Error> {
    if let Some((id, result)) = plain_response(line) {
        peer.heard();
        // An unknown id (a request that timed out) is dropped, as `deliver` does.
        peer.deliver_text(id, result.to_owned());
        return Ok(());
    }
    dispatch(up, peer, serde_json::from_slice::<Value>(line)?);
    Ok(())
}

/// The id and result of a successful response to one of our requests (ids are integers),
/// or `None` for anything else, which then takes the parsing path.
fn plain_response(line: &[u8]) -> Option<(u64, &serde_json::value::RawValue)> {
    // An object only: serde would also read the fields of a struct from an array.
    if line.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return None;
    }
    match serde_json::from_slice::<Head<'_>>(line).ok()? {
        Head {
            jsonrpc: Some("2.0"),
            id: Some(id),
            result: Some(result),
            method: None,
            error: None,
        } => Some((id, result)),
        _ => None,
    }
}

pub(crate) fn dispatch(up: &Arc<Upstream>, peer: &Arc<RpcPeer>, msg: Value) {
    dispatch_for(up, peer, msg, None);
}

/// Routes one message from the upstream; `cause` is our request id the transport says the
/// message belongs to (a POST's SSE answer), which makes routing exact instead of a guess.
pub(crate) fn dispatch_for(
    up: &Arc<Upstream>,
    peer: &Arc<RpcPeer>,
    msg: Value,
    cause: Option<&Value>,
) {
    peer.heard();
    let cause = cause.map(|id| peer.context_of(id).map_or(Guess::None, Guess::One));
    match jsonrpc::classify(&msg) {
        jsonrpc::Kind::Response { id } => {
            let id = id.clone();
            peer.deliver(&id, msg);
        }
        jsonrpc::Kind::Request { id, method } => {
            serve_request(up, peer, id.clone(), method, &msg, cause)
        }
        jsonrpc::Kind::Notification { method } => {
            on_notification(up, peer, method, msg.clone(), cause)
        }
        jsonrpc::Kind::Invalid(why) => {
            tracing::warn!(upstream = %up.name, why, "invalid JSON-RPC message from upstream");
        }
    }
}

/// A request from the upstream to its client (us): answered locally (`ping`, `roots/list`) or
/// relayed to the client session that caused it. `cause` is that client request when the
/// transport said so; otherwise the bridge guesses, and refuses when the guess would cross
/// clients of different origins.
pub(crate) fn serve_request(
    up: &Arc<Upstream>,
    peer: &Arc<RpcPeer>,
    id: Value,
    method: &str,
    msg: &Value,
    cause: Option<Guess>,
) {
    let capability = match method {
        "ping" => {
            peer.respond(&id, Ok(serde_json::json!({})));
            return;
        }
        "roots/list" => return answer_roots(up, peer, id),
        "sampling/createMessage" => "sampling",
        "elicitation/create" => "elicitation",
        _ => {
            peer.respond(
                &id,
                Err(RpcError::new(
                    jsonrpc::METHOD_NOT_FOUND,
                    format!("Method not found: {method}"),
                )),
            );
            return;
        }
    };
    let params = msg
        .get("params")
        .cloned()
        .unwrap_or(Value::Object(Default::default()));
    let ctx = match cause.unwrap_or_else(|| peer.latest_context(Some(capability))) {
        Guess::One(c) => Some(c),
        Guess::None => None,
        Guess::Ambiguous => {
            tracing::warn!(upstream = %up.name, method, "refused a server→client request: requests of clients of different origins are in flight and stdio cannot say which one it is for");
            peer.respond(
                &id,
                Err(RpcError::new(
                    jsonrpc::INTERNAL_ERROR,
                    format!("mcp-bridge cannot tell which client {method} is for (clients of different origins are calling this upstream at once); retry when one request is in flight"),
                )),
            );
            return;
        }
    };
    // A human may be answering (elicitation): allow the full request timeout.
    let answer = up.downstream.request(
        &up.name,
        ctx,
        capability,
        method.to_owned(),
        params,
        up.timeouts.request,
    );
    let peer = peer.clone();
    tokio::spawn(async move {
        let result = answer.await;
        peer.respond(&id, result);
    });
}

/// `roots/list` from the upstream: from its config, or (`roots = "client"`) from the one
/// client session it serves. Never another client's roots.
fn answer_roots(up: &Arc<Upstream>, peer: &Arc<RpcPeer>, id: Value) {
    let list = match &up.roots {
        Roots::None => {
            peer.respond(
                &id,
                Err(RpcError::new(
                    jsonrpc::METHOD_NOT_FOUND,
                    "mcp-bridge gives this upstream no roots (set `roots` in its config)",
                )),
            );
            return;
        }
        Roots::Fixed(list) => list,
        Roots::Client => {
            let Some(holder) = up.lease_holder().filter(|s| s.has_capability("roots")) else {
                peer.respond(&id, Ok(serde_json::json!({ "roots": [] })));
                return;
            };
            let ctx = peer
                .latest_context(Some("roots"))
                .one()
                .filter(|c| c.session.id() == holder.id());
            let timeout = up.timeouts.request;
            let peer = peer.clone();
            tokio::spawn(async move {
                let answer = holder
                    .request(ctx.as_deref(), "roots/list", serde_json::json!({}), timeout)
                    .await;
                peer.respond(&id, answer);
            });
            return;
        }
    };
    let roots: Vec<Value> = list
        .iter()
        .map(|uri| {
            let name = uri.trim_end_matches('/').rsplit('/').next().unwrap_or(uri);
            serde_json::json!({ "uri": uri, "name": name })
        })
        .collect();
    peer.respond(&id, Ok(serde_json::json!({ "roots": roots })));
}

/// A notification from the upstream.
pub(crate) fn on_notification(
    up: &Arc<Upstream>,
    peer: &Arc<RpcPeer>,
    method: &str,
    mut msg: Value,
    cause: Option<Guess>,
) {
    let relist = |kinds: &'static [ListKind]| {
        tokio::spawn(refresh(up.clone(), peer.clone(), kinds));
    };
    match method {
        "notifications/tools/list_changed" => relist(&[ListKind::Tools]),
        "notifications/prompts/list_changed" => relist(&[ListKind::Prompts]),
        "notifications/resources/list_changed" => {
            relist(&[ListKind::Resources, ListKind::Templates])
        }
        "notifications/progress" => {
            if !peer.route_progress(msg) {
                tracing::debug!(upstream = %up.name, "progress for a request that is gone");
            }
        }
        "notifications/resources/updated" => {
            let Some(uri) = msg.pointer("/params/uri").and_then(Value::as_str) else {
                return;
            };
            let exposed = crate::naming::expose_uri(&up.prefix, uri);
            msg["params"]["uri"] = Value::String(exposed.clone());
            up.downstream.resource_updated(&exposed, &msg);
        }
        "notifications/message" => {
            let text = msg.get("params").map(Value::to_string).unwrap_or_default();
            tracing::debug!(target: "upstream_log", upstream = %up.name, "{text}");
            // Log messages during a call belong to that call's client; others to everyone, each
            // client receiving only the levels it asked for.
            let level = msg
                .pointer("/params/level")
                .and_then(Value::as_str)
                .unwrap_or("info")
                .to_owned();
            match cause.unwrap_or_else(|| peer.latest_context(None)) {
                Guess::One(ctx) => {
                    if ctx.session.wants_log(&level) {
                        ctx.send(msg);
                    }
                }
                Guess::None => up.downstream.log(&up.name, &level, &msg),
                Guess::Ambiguous => {
                    tracing::debug!(upstream = %up.name, "a log message during calls of clients of different origins; kept from both")
                }
            }
        }
        "notifications/cancelled" => {
            tracing::debug!(upstream = %up.name, "upstream cancelled a request it sent")
        }
        "notifications/subscriptions/acknowledged" => {
            let honored = msg
                .pointer("/params/notifications")
                .map(Value::to_string)
                .unwrap_or_default();
            tracing::debug!(upstream = %up.name, honored, "the upstream acknowledged subscriptions/listen")
        }
        _ => up.downstream.broadcast(&up.name, &msg),
    }
}

#[cfg(test)]
mod tests {
    use super::plain_response;

    #[test]
    fn only_a_plain_success_to_an_integer_id_skips_parsing() {
        let line =
            br#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"h\u00e9"}]}}"#;
        let (id, raw) = plain_response(line).unwrap();
        assert_eq!(id, 7);
        assert_eq!(
            raw.get(),
            r#"{"content":[{"type":"text","text":"h\u00e9"}]}"#,
            "the result is the upstream's own text"
        );
        for other in [
            // an error, a request, a notification, a string id, no version, a duplicate key,
            // a negative id, an array, not JSON
            &br#"{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"x"}}"#[..],
            br#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
            br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#,
            br#"{"jsonrpc":"2.0","id":"a","result":{}}"#,
            br#"{"id":7,"result":{}}"#,
            br#"{"jsonrpc":"2.0","id":7,"result":{},"result":{}}"#,
            br#"{"jsonrpc":"2.0","id":-1,"result":{}}"#,
            br#"["2.0",7,{}]"#,
            b"{ nope",
        ] {
            assert!(
                plain_response(other).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
