//! The merged catalog: an immutable snapshot of everything the upstreams serve, under the names
//! and URIs clients see, with the routes back to each upstream's own names; and the rewriting of
//! resource URIs inside upstream answers.

use std::collections::HashMap;
use std::collections::hash_map::Entry as MapEntry;
use std::sync::Arc;

use serde_json::Value;
use serde_json::value::RawValue;

use proto::config::ProfileConfig;

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
    /// The profile this catalog shows; `None` for everything (`all`).
    pub view: Option<Arc<ProfileConfig>>,
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

/// Whether a profile shows an item its upstream's policy shows (`preferred`: the exposed name,
/// or the exposed URI of a resource or template).
fn in_view(view: Option<&ProfileConfig>, kind: ListKind, item: &Value, preferred: &str) -> bool {
    let Some(v) = view else {
        return true;
    };
    match kind {
        ListKind::Tools => {
            v.tools.admits(preferred)
                && (!v.read_only
                    || item.pointer("/annotations/readOnlyHint") == Some(&Value::Bool(true)))
        }
        ListKind::Prompts => v.prompts.admits(preferred),
        ListKind::Resources | ListKind::Templates => v.resources.admits(preferred),
    }
}

fn name_items(
    upstreams: &[Arc<Upstream>],
    kind: ListKind,
    held: &Held,
    view: Option<&ProfileConfig>,
) -> Named {
    let mut routes = HashMap::new();
    let mut hidden = HashMap::new();
    let mut pending = HashMap::new();
    let mut items = Vec::new();
    // Every exposed name, in view or not: a profile's names are the names `all` shows.
    let mut taken = std::collections::HashSet::new();
    for up in upstreams {
        let lists = up.lists();
        let held_here = held.get(&*up.name);
        let upstream_in_view = view.is_none_or(|v| v.includes(&up.name));
        for item in kind.get(&lists) {
            let Some(original) = item.get("name").and_then(Value::as_str) else {
                continue;
            };
            let renamed = up
                .policy
                .rename
                .get(original)
                .map_or(original, String::as_str);
            let preferred = naming::expose(&up.prefix, renamed);
            // What a profile leaves out, its clients never learn of (not even as hidden).
            let visible = upstream_in_view && in_view(view, kind, item, &preferred);
            if !shown(up, kind, item, original) {
                if visible {
                    hidden.insert(preferred, up.name.clone());
                }
                continue;
            }
            if kind == ListKind::Tools && held_here.is_some_and(|h| h.contains(original)) {
                if visible {
                    pending.insert(preferred, up.name.clone());
                }
                continue;
            }
            let mut exposed = preferred.clone();
            let mut attempt = 0;
            while taken.contains(&exposed) {
                attempt += 1;
                exposed = naming::disambiguate(&preferred, &up.name, original, attempt);
            }
            if attempt > 0 && view.is_none() {
                tracing::warn!(upstream = %up.name, name = %original, exposed = %exposed, kind = kind.key(), "name collision; exposing under a disambiguated name");
            }
            taken.insert(exposed.clone());
            // Served items are judged by the name they are listed under (a disambiguated one
            // included), as `status` and `all` show it.
            if !(upstream_in_view && in_view(view, kind, item, &exposed)) {
                continue;
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
    for name in &taken {
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
        Self::build_view(upstreams, held, None)
    }

    /// What the profile `view` shows (everything when `None`): the upstreams it includes, and
    /// of those only the names and URIs it admits, under the same names `all` shows them.
    pub fn build_view(
        upstreams: &[Arc<Upstream>],
        held: &Held,
        view: Option<Arc<ProfileConfig>>,
    ) -> Self {
        let v = view.as_deref();
        let (tools, routes, hidden_tools, pending_tools) =
            name_items(upstreams, ListKind::Tools, held, v);
        let (prompt_items, prompts, hidden_prompts, _) =
            name_items(upstreams, ListKind::Prompts, held, v);
        // Resources and capabilities: only the upstreams in view.
        let upstreams: Vec<Arc<Upstream>> = upstreams
            .iter()
            .filter(|u| v.is_none_or(|v| v.includes(&u.name)))
            .cloned()
            .collect();
        let upstreams = upstreams.as_slice();
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
                let shown = naming::expose_uri(&up.prefix, uri);
                if !up.policy.resources.admits(uri) || !in_view(v, ListKind::Resources, r, &shown) {
                    continue;
                }
                plain_uris
                    .entry(uri.to_owned())
                    .or_insert_with(|| up.clone());
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
                let shown = naming::expose_uri(&up.prefix, tpl);
                if !up.policy.resources.admits(tpl) || !in_view(v, ListKind::Templates, t, &shown) {
                    continue;
                }
                let head = tpl.split('{').next().unwrap_or("");
                if !head.is_empty() {
                    template_heads.push((head.to_owned(), up.clone()));
                }
                let mut t = t.clone();
                t["uriTemplate"] = Value::String(shown);
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
            view,
        }
    }

    /// [`route_uri`](Self::route_uri) for a URI a client may use: `None` also when the
    /// upstream's policy or this catalog's profile hides it, however the client learnt it.
    pub fn resolve_uri(&self, uri: &str) -> Option<(Arc<Upstream>, String)> {
        let (up, original) = self.route_uri(uri)?;
        (up.policy.resources.admits(&original)
            && self.admits_uri(&naming::expose_uri(&up.prefix, &original)))
        .then_some((up, original))
    }

    /// Whether this catalog's profile admits the exposed URI `uri` (always, for `all`).
    pub fn admits_uri(&self, uri: &str) -> bool {
        self.view.as_ref().is_none_or(|v| v.resources.admits(uri))
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

/// The catalogs of every profile (`all` included), built together from one state of the
/// upstreams.
#[derive(Debug)]
pub struct Catalogs {
    all: Arc<Catalog>,
    views: HashMap<Arc<str>, Arc<Catalog>>,
}

impl Catalogs {
    pub fn empty() -> Self {
        Self::build(&[], &Held::new(), &crate::views::Views::default())
    }

    pub fn build(upstreams: &[Arc<Upstream>], held: &Held, views: &crate::views::Views) -> Self {
        let all = Arc::new(Catalog::build_held(upstreams, held));
        let views = views
            .all()
            .map(|(name, p)| {
                let c = if p.is_open() {
                    all.clone()
                } else {
                    Arc::new(Catalog::build_view(upstreams, held, Some(p.clone())))
                };
                (name.clone(), c)
            })
            .collect();
        Self { all, views }
    }

    /// What `all` shows: everything.
    pub fn all(&self) -> &Arc<Catalog> {
        &self.all
    }

    /// The catalog of the profile `view`; `None` once a reload removed it.
    pub fn get(&self, view: &str) -> Option<&Arc<Catalog>> {
        self.views.get(view)
    }

    /// The profiles and their catalogs.
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<Catalog>)> {
        self.views.iter()
    }

    /// Whether `next` differs in anything a client sees or is told (lists, names held back or
    /// hidden, the set of profiles).
    pub fn differs_from(&self, next: &Catalogs) -> bool {
        self.views.len() != next.views.len()
            || next.views.iter().any(|(name, n)| {
                self.views.get(name).is_none_or(|c| {
                    !c.changes(n).is_empty()
                        || c.pending_tools != n.pending_tools
                        || c.hidden_tools != n.hidden_tools
                        || c.capabilities != n.capabilities
                })
            })
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

/// Drops the resource links and embedded resources of an answer (already in exposed URIs)
/// that `catalog`'s profile does not show, so a tool or prompt cannot tell its client of them.
pub(crate) fn drop_unseen_links(catalog: &Catalog, method: &str, result: &mut Value) {
    let seen = |c: &Value| {
        let uri = match c.get("type").and_then(Value::as_str) {
            Some("resource_link") => c.get("uri"),
            Some("resource") => c.pointer("/resource/uri"),
            _ => return true,
        };
        uri.and_then(Value::as_str)
            .is_none_or(|u| catalog.admits_uri(u))
    };
    match method {
        "tools/call" => {
            if let Some(content) = result.get_mut("content").and_then(Value::as_array_mut) {
                content.retain(seen);
            }
        }
        "prompts/get" => {
            if let Some(messages) = result.get_mut("messages").and_then(Value::as_array_mut) {
                messages.retain(|m| m.get("content").is_none_or(|c| c.is_array() || seen(c)));
                for m in messages {
                    if let Some(Value::Array(items)) = m.get_mut("content") {
                        items.retain(seen);
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

    #[test]
    fn a_view_keeps_the_names_all_shows_and_nothing_outside_it() {
        // `b` and `c` both want `x__a_b`; `a` is out of the view.
        let ro = json!({"readOnlyHint": true});
        let a = up_with(
            "a",
            "",
            Lists {
                tools: vec![json!({"name": "x__a_b", "inputSchema": {}})],
                resources: vec![json!({"uri": "a://secret", "name": "s"})],
                capabilities: json!({"resources": {}}),
                ..Default::default()
            },
        );
        let x = up_with(
            "x",
            "x",
            Lists {
                tools: vec![
                    json!({"name": "a.b", "inputSchema": {}, "annotations": ro}),
                    json!({"name": "write", "inputSchema": {}}),
                ],
                ..Default::default()
            },
        );
        let ups = [a.clone(), x.clone()];
        let all = Catalog::build(&ups);
        let view = ProfileConfig {
            name: "v".into(),
            upstreams: Some(vec!["x".into()]),
            read_only: true,
            ..Default::default()
        };
        let v = Catalog::build_view(&ups, &Held::new(), Some(Arc::new(view)));
        let names = |c: &Catalog| {
            let mut n: Vec<String> = c.routes.keys().cloned().collect();
            n.sort();
            n
        };
        assert_eq!(all.len(), 3);
        let disambiguated = names(&all)
            .into_iter()
            .find(|n| all.routes[n].tool == "a.b")
            .unwrap();
        assert_eq!(
            names(&v),
            std::slice::from_ref(&disambiguated),
            "the name `all` gives it"
        );
        assert!(v.hidden_tools.is_empty() && v.pending_tools.is_empty());
        // A profile's globs see the names `all` lists, disambiguated ones included.
        let deny = ProfileConfig {
            name: "d".into(),
            tools: proto::config::Filter {
                allow: None,
                deny: vec![disambiguated.clone()],
            },
            ..Default::default()
        };
        let d = Catalog::build_view(&ups, &Held::new(), Some(Arc::new(deny)));
        assert_eq!(
            names(&d),
            ["x__a_b", "x__write"],
            "only the denied one goes"
        );
        assert_eq!(
            v.route_uri("a://secret").map(|(u, _)| u.name.to_string()),
            None
        );
        assert!(v.capabilities.get("resources").is_none());
        let r: Value = serde_json::from_str(v.resources_result.get()).unwrap();
        assert_eq!(r["resources"], json!([]));
    }
}
