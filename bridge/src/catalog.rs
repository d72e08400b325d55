//! The merged catalog: an immutable snapshot of everything the upstreams serve, under the names
//! and URIs clients see, with the routes back to each upstream's own names; and the rewriting of
//! resource URIs inside upstream answers.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;

use crate::naming;
use crate::upstream::{ListKind, Upstream};

/// Where an exposed tool or prompt name leads.
#[derive(Clone)]
pub struct Route {
    pub upstream: Arc<Upstream>,
    /// The name at the upstream.
    pub tool: String,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.upstream.name, self.tool)
    }
}

fn raw(v: Value) -> Box<RawValue> {
    // A `Value` always serialises to valid JSON, so the fallback is never taken.
    RawValue::from_string(v.to_string()).unwrap_or_default()
}

/// An immutable snapshot of everything the upstreams serve, under the names and URIs clients
/// see. List results are serialised once per change, so list requests cost a copy.
#[derive(Debug)]
pub struct Catalog {
    pub tools_result: Box<RawValue>,
    pub prompts_result: Box<RawValue>,
    pub resources_result: Box<RawValue>,
    pub templates_result: Box<RawValue>,
    /// Exposed tool name → owner.
    pub routes: HashMap<String, Route>,
    /// Exposed prompt name → owner.
    pub prompts: HashMap<String, Route>,
    /// Exposed names of tools and prompts an upstream's policy hides → that upstream.
    pub hidden_tools: HashMap<String, Arc<str>>,
    pub hidden_prompts: HashMap<String, Arc<str>>,
    /// Exposed names of tools held back until approved (`pin`) → their upstream.
    pub pending_tools: HashMap<String, Arc<str>>,
    /// URI scheme prefix (see `naming::uri_prefix`) → owner.
    uri_prefixes: HashMap<String, Arc<Upstream>>,
    /// Exposed URIs of listed resources → owner and original URI; the first upstream in config
    /// order keeps a URI two of them expose (an unprefixed upstream's `a+x:y` looks like
    /// upstream `a`'s prefixed `x:y`).
    exposed_uris: HashMap<String, (Arc<Upstream>, String)>,
    /// Original resource URIs of listed resources → owner, for URIs clients got unprefixed
    /// (for example from a tool result's resource link).
    plain_uris: HashMap<String, Arc<Upstream>>,
    /// Literal heads of resource templates → owner.
    template_heads: Vec<(String, Arc<Upstream>)>,
    /// Upstreams that serve resources at all.
    resource_owners: Vec<Arc<Upstream>>,
    /// The server capabilities the bridge can honestly announce.
    pub capabilities: Value,
}

/// Exposes the named items (tools or prompts) of every upstream, resolving clashes.
/// Whether an upstream's policy shows this tool or prompt (`tools`/`prompts` globs on the
/// upstream's name; `read_only` keeps only tools annotated `readOnlyHint: true`).
fn shown(up: &Upstream, kind: ListKind, item: &Value, name: &str) -> bool {
    let p = &up.policy;
    match kind {
        ListKind::Tools => {
            p.tools.admits(name)
                && (!p.read_only
                    || item.pointer("/annotations/readOnlyHint") == Some(&Value::Bool(true)))
        }
        ListKind::Prompts => p.prompts.admits(name),
        _ => true,
    }
}

/// Exposed tools and prompts, and the names the policy hides (exposed name → upstream), so a
/// call to one is refused saying why instead of "unknown".
type Named = (
    Vec<Value>,
    HashMap<String, Route>,
    HashMap<String, Arc<str>>,
    HashMap<String, Arc<str>>,
);

/// Upstream name → the tools held back until approved (`pins`).
pub type Held = HashMap<String, std::collections::HashSet<String>>;

fn name_items(upstreams: &[Arc<Upstream>], kind: ListKind, held: &Held) -> Named {
    let mut routes = HashMap::new();
    let mut hidden = HashMap::new();
    let mut pending = HashMap::new();
    let mut items = Vec::new();
    for up in upstreams {
        let lists = up.lists();
        let held_here = held.get(&*up.name);
        for item in kind.get(&lists) {
            let Some(original) = item.get("name").and_then(Value::as_str) else {
                continue;
            };
            let renamed = up
                .policy
                .rename
                .get(original)
                .map_or(original, String::as_str);
            if !shown(up, kind, item, original) {
                hidden.insert(naming::expose(&up.prefix, renamed), up.name.clone());
                continue;
            }
            if kind == ListKind::Tools && held_here.is_some_and(|h| h.contains(original)) {
                pending.insert(naming::expose(&up.prefix, renamed), up.name.clone());
                continue;
            }
            let preferred = naming::expose(&up.prefix, renamed);
            let mut exposed = preferred.clone();
            let mut attempt = 0;
            while routes.contains_key(&exposed) {
                attempt += 1;
                exposed = naming::disambiguate(&preferred, &up.name, original, attempt);
            }
            if attempt > 0 {
                tracing::warn!(upstream = %up.name, name = %original, exposed = %exposed, kind = kind.key(), "name collision; exposing under a disambiguated name");
            }
            let mut item = item.clone();
            item["name"] = Value::String(exposed.clone());
            items.push(item);
            routes.insert(
                exposed,
                Route {
                    upstream: up.clone(),
                    tool: original.to_owned(),
                },
            );
        }
    }
    for name in routes.keys() {
        hidden.remove(name);
        pending.remove(name);
    }
    (items, routes, hidden, pending)
}

impl Catalog {
    pub fn empty() -> Self {
        Self::build(&[])
    }

    /// Merges lists in upstream order. A name clash is resolved deterministically: the earlier
    /// upstream (config order), then the earlier item, keeps the plain name; later ones get a
    /// stable hash suffix. Nothing is dropped. URIs get the upstream's scheme prefix.
    pub fn build(upstreams: &[Arc<Upstream>]) -> Self {
        Self::build_held(upstreams, &Held::new())
    }

    /// [`build`](Self::build), leaving out the tools `held` back until approved.
    pub fn build_held(upstreams: &[Arc<Upstream>], held: &Held) -> Self {
        let (tools, routes, hidden_tools, pending_tools) =
            name_items(upstreams, ListKind::Tools, held);
        let (prompt_items, prompts, hidden_prompts, _) =
            name_items(upstreams, ListKind::Prompts, held);
        let mut resources = Vec::new();
        let mut templates = Vec::new();
        let mut uri_prefixes: HashMap<String, Arc<Upstream>> = HashMap::new();
        let mut plain_uris = HashMap::new();
        let mut exposed_uris = HashMap::new();
        let mut template_heads = Vec::new();
        let mut resource_owners = Vec::new();
        let any = |cap: &str| upstreams.iter().any(|u| u.has_capability(cap));
        for up in upstreams {
            let lists = up.lists();
            if !up.prefix.is_empty() {
                let p = naming::uri_prefix(&up.prefix);
                if let Some(other) = uri_prefixes.get(&p) {
                    tracing::warn!(upstream = %up.name, other = %other.name, "two upstreams share the resource URI prefix {p:?}; the first keeps it");
                } else {
                    uri_prefixes.insert(p, up.clone());
                }
            }
            if up.has_capability("resources")
                || !lists.resources.is_empty()
                || !lists.templates.is_empty()
            {
                resource_owners.push(up.clone());
            }
            for r in &lists.resources {
                let Some(uri) = r.get("uri").and_then(Value::as_str) else {
                    continue;
                };
                if !up.policy.resources.admits(uri) {
                    continue;
                }
                plain_uris
                    .entry(uri.to_owned())
                    .or_insert_with(|| up.clone());
                let shown = naming::expose_uri(&up.prefix, uri);
                match exposed_uris.entry(shown.clone()) {
                    MapEntry::Vacant(v) => {
                        v.insert((up.clone(), uri.to_owned()));
                    }
                    MapEntry::Occupied(o) if !Arc::ptr_eq(&o.get().0, up) => {
                        tracing::warn!(upstream = %up.name, other = %o.get().0.name, "two upstreams expose the resource URI {shown:?}; the first keeps it");
                    }
                    MapEntry::Occupied(_) => {}
                }
                let mut r = r.clone();
                r["uri"] = Value::String(shown);
                resources.push(r);
            }
            for t in &lists.templates {
                let Some(tpl) = t.get("uriTemplate").and_then(Value::as_str) else {
                    continue;
                };
                if !up.policy.resources.admits(tpl) {
                    continue;
                }
                let head = tpl.split('{').next().unwrap_or("");
                if !head.is_empty() {
                    template_heads.push((head.to_owned(), up.clone()));
                }
                let mut t = t.clone();
                t["uriTemplate"] = Value::String(naming::expose_uri(&up.prefix, tpl));
                templates.push(t);
            }
        }
        let mut capabilities = serde_json::json!({ "tools": { "listChanged": true } });
        if !resource_owners.is_empty() {
            // Resource subscriptions are relayed to 2025 upstreams only.
            let subscribe = upstreams.iter().any(|u| {
                !u.speaks_stateless()
                    && u.lists().capabilities.pointer("/resources/subscribe")
                        == Some(&Value::Bool(true))
            });
            capabilities["resources"] =
                serde_json::json!({ "listChanged": true, "subscribe": subscribe });
        }
        if any("prompts") || !prompt_items.is_empty() {
            capabilities["prompts"] = serde_json::json!({ "listChanged": true });
        }
        if any("logging") {
            capabilities["logging"] = serde_json::json!({});
        }
        if any("completions") {
            capabilities["completions"] = serde_json::json!({});
        }
        Self {
            tools_result: raw(serde_json::json!({ "tools": tools })),
            prompts_result: raw(serde_json::json!({ "prompts": prompt_items })),
            resources_result: raw(serde_json::json!({ "resources": resources })),
            templates_result: raw(serde_json::json!({ "resourceTemplates": templates })),
            routes,
            prompts,
            hidden_tools,
            hidden_prompts,
            pending_tools,
            uri_prefixes,
            exposed_uris,
            plain_uris,
            template_heads,
            resource_owners,
            capabilities,
        }
    }

    /// Finds the owner of a resource URI and the URI at that upstream: by an exposed listed URI,
    /// then by scheme prefix, then by an original listed URI, then by a template's literal
    /// head, then the only resource server.
    pub fn route_uri(&self, uri: &str) -> Option<(Arc<Upstream>, String)> {
        if let Some((up, original)) = self.exposed_uris.get(uri) {
            return Some((up.clone(), original.clone()));
        }
        if let Some((p, original)) = naming::split_uri(uri)
            && let Some(up) = self.uri_prefixes.get(p)
        {
            return Some((up.clone(), original.to_owned()));
        }
        if let Some(up) = self.plain_uris.get(uri) {
            return Some((up.clone(), uri.to_owned()));
        }
        if let Some((_, up)) = self
            .template_heads
            .iter()
            .filter(|(h, _)| uri.starts_with(h.as_str()))
            .max_by_key(|(h, _)| h.len())
        {
            return Some((up.clone(), uri.to_owned()));
        }
        match self.resource_owners.as_slice() {
            [only] => Some((only.clone(), uri.to_owned())),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Number of exposed tools that belong to `up`.
    pub fn count_for(&self, up: &Arc<Upstream>) -> usize {
        self.routes
            .values()
            .filter(|r| Arc::ptr_eq(&r.upstream, up))
            .count()
    }

    /// Which list notifications a change from `self` to `next` calls for.
    /// The pre-serialised result of a list request.
    pub fn raw(&self, kind: ListKind) -> &RawValue {
        match kind {
            ListKind::Tools => &self.tools_result,
            ListKind::Resources => &self.resources_result,
            ListKind::Templates => &self.templates_result,
            ListKind::Prompts => &self.prompts_result,
        }
    }

    pub fn changes(&self, next: &Catalog) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.tools_result.get() != next.tools_result.get() {
            out.push("notifications/tools/list_changed");
        }
        if self.resources_result.get() != next.resources_result.get()
            || self.templates_result.get() != next.templates_result.get()
        {
            out.push("notifications/resources/list_changed");
        }
        if self.prompts_result.get() != next.prompts_result.get() {
            out.push("notifications/prompts/list_changed");
        }
        out
    }
}

/// Rewrites the resource URIs inside an upstream's answer the way lists expose them, so a
/// client can read what a result points at: `contents[].uri` of a read, resource links and
/// embedded resources in a tool result's `content`, and in a prompt's messages.
pub(crate) fn expose_result_uris(prefix: &str, method: &str, result: &mut Value) {
    fn block(prefix: &str, c: &mut Value) {
        let target = match c.get("type").and_then(Value::as_str) {
            Some("resource_link") => c,
            Some("resource") => match c.get_mut("resource") {
                Some(r) => r,
                None => return,
            },
            _ => return,
        };
        if let Some(uri) = target.get("uri").and_then(Value::as_str) {
            target["uri"] = Value::String(naming::expose_uri(prefix, uri));
        }
    }
    match method {
        "resources/read" => {
            if let Some(contents) = result.get_mut("contents").and_then(Value::as_array_mut) {
                for c in contents {
                    if let Some(uri) = c.get("uri").and_then(Value::as_str) {
                        c["uri"] = Value::String(naming::expose_uri(prefix, uri));
                    }
                }
            }
        }
        "tools/call" => {
            if let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) {
                content.iter_mut().for_each(|c| block(prefix, c));
            }
        }
        "prompts/get" => {
            if let Some(messages) = result.get_mut("messages").and_then(Value::as_array_mut) {
                for m in messages {
                    match m.get_mut("content") {
                        Some(Value::Array(items)) => {
                            items.iter_mut().for_each(|c| block(prefix, c))
                        }
                        Some(c) => block(prefix, c),
                        None => {}
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::{Lists, Timeouts};
    use serde_json::json;
    use tokio::sync::Notify;

    fn up_with(name: &str, prefix: &str, lists: Lists) -> Arc<Upstream> {
        let u = Upstream::new(
            name,
            prefix,
            "test",
            Timeouts::default(),
            Arc::new(Notify::new()),
            Arc::new(crate::upstream::NoClients),
        );
        u.seed_lists(Arc::new(lists));
        Arc::new(u)
    }

    fn up(name: &str, prefix: &str, names: &[&str]) -> Arc<Upstream> {
        let tools = names
            .iter()
            .map(|n| json!({"name": n, "inputSchema": {"type": "object"}, "x-extra": 1}))
            .collect();
        up_with(
            name,
            prefix,
            Lists {
                tools,
                ..Default::default()
            },
        )
    }

    #[test]
    fn merges_with_prefixes_and_keeps_unknown_fields() {
        let c = Catalog::build(&[up("a", "a", &["echo"]), up("b", "b", &["echo", "add"])]);
        let v: Value = serde_json::from_str(c.tools_result.get()).unwrap();
        let names: Vec<_> = v["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a__echo", "b__echo", "b__add"]);
        assert_eq!(v["tools"][0]["x-extra"], 1);
        let r = &c.routes["b__add"];
        assert_eq!((&*r.upstream.name, r.tool.as_str()), ("b", "add"));
    }

    #[test]
    fn collisions_are_resolved_deterministically_and_nothing_is_dropped() {
        // All three want `x__a_b`.
        let ups = [up("x", "x", &["a.b", "a/b"]), up("y", "", &["x__a_b"])];
        let (c1, c2) = (Catalog::build(&ups), Catalog::build(&ups));
        assert_eq!(c1.len(), 3);
        assert_eq!(c1.tools_result.get(), c2.tools_result.get());
        assert_eq!(c1.routes["x__a_b"].tool, "a.b");
        assert!(c1.routes.keys().all(|k| naming::is_valid(k)));
    }

    #[test]
    fn resources_and_prompts_are_exposed_and_routed_back() {
        let files = up_with(
            "files",
            "fs",
            Lists {
                resources: vec![json!({"uri": "file:///a.txt", "name": "a"})],
                templates: vec![json!({"uriTemplate": "file:///{path}", "name": "any"})],
                prompts: vec![json!({"name": "summarise"})],
                capabilities: json!({"resources": {"subscribe": true}, "prompts": {}}),
                ..Default::default()
            },
        );
        let plain = up_with(
            "test",
            "",
            Lists {
                resources: vec![json!({"uri": "test://static-text", "name": "s"})],
                templates: vec![json!({"uriTemplate": "test://template/{id}/data", "name": "t"})],
                capabilities: json!({"resources": {}}),
                ..Default::default()
            },
        );
        let c = Catalog::build(&[files.clone(), plain.clone()]);
        let v: Value = serde_json::from_str(c.resources_result.get()).unwrap();
        assert_eq!(v["resources"][0]["uri"], "fs+file:///a.txt");
        assert_eq!(v["resources"][1]["uri"], "test://static-text");
        let t: Value = serde_json::from_str(c.templates_result.get()).unwrap();
        assert_eq!(
            t["resourceTemplates"][0]["uriTemplate"],
            "fs+file:///{path}"
        );
        assert_eq!(c.prompts["fs__summarise"].tool, "summarise");
        let route = |u: &str| c.route_uri(u).map(|(up, orig)| (up.name.to_string(), orig));
        assert_eq!(
            route("fs+file:///b.txt"),
            Some(("files".into(), "file:///b.txt".into()))
        );
        assert_eq!(
            route("file:///a.txt"),
            Some(("files".into(), "file:///a.txt".into())),
            "listed URI, unprefixed"
        );
        assert_eq!(
            route("test://template/7/data"),
            Some(("test".into(), "test://template/7/data".into()))
        );
        assert_eq!(route("other://x"), None, "two resource servers: no guess");
        assert_eq!(c.capabilities["resources"]["subscribe"], true);
        assert!(c.capabilities.get("logging").is_none());
        assert_eq!(c.capabilities["prompts"]["listChanged"], true);
    }
}
