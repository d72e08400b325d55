//! The set of upstreams, the merged tool catalog the bridge serves, the warm cache behind it,
//! and config reload.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use proto::config::{Auth, AuthKind, Config, Transport, UpstreamConfig};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent_client::AgentClient;
use crate::cache::ToolCache;
use crate::jsonrpc::{self, RpcError};
use crate::naming;
use crate::upstream::http;
use crate::upstream::stdio::{self, StdioSpec};
use crate::upstream::{
    CallError, Downstream, ListKind, Lists, RequestContext, State, Timeouts, Upstream,
};

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
fn name_items(upstreams: &[Arc<Upstream>], kind: ListKind) -> (Vec<Value>, HashMap<String, Route>) {
    let mut routes = HashMap::new();
    let mut items = Vec::new();
    for up in upstreams {
        let lists = up.lists();
        for item in kind.get(&lists) {
            let Some(original) = item.get("name").and_then(Value::as_str) else {
                continue;
            };
            let preferred = naming::expose(&up.prefix, original);
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
    (items, routes)
}

impl Catalog {
    pub fn empty() -> Self {
        Self::build(&[])
    }

    /// Merges lists in upstream order. A name clash is resolved deterministically: the earlier
    /// upstream (config order), then the earlier item, keeps the plain name; later ones get a
    /// stable hash suffix. Nothing is dropped. URIs get the upstream's scheme prefix.
    pub fn build(upstreams: &[Arc<Upstream>]) -> Self {
        let (tools, routes) = name_items(upstreams, ListKind::Tools);
        let (prompt_items, prompts) = name_items(upstreams, ListKind::Prompts);
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
            let subscribe = upstreams.iter().any(|u| {
                u.lists().capabilities.pointer("/resources/subscribe") == Some(&Value::Bool(true))
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
fn expose_result_uris(prefix: &str, method: &str, result: &mut Value) {
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

/// Whether `up` is in its first handshake with nothing to show yet.
fn first_start(up: &Upstream) -> bool {
    let s = up.status();
    s.connects == 0
        && s.failures == 0
        && matches!(s.state, State::Connecting | State::Initializing)
        && !up.has_live_lists()
        && up.lists().tools.is_empty()
}

/// The agent socket of this installation (`$MCP_CRED_AGENT_SOCKET` or `<config dir>/agent.sock`).
pub fn agent_socket(config: &Config) -> std::path::PathBuf {
    config.agent_socket().unwrap_or_else(|e| {
        tracing::error!("{e}");
        config.config_dir.join(proto::SOCKET_FILE_NAME)
    })
}

struct Entry {
    config: UpstreamConfig,
    up: Arc<Upstream>,
    stop: CancellationToken,
}

pub struct Registry {
    entries: RwLock<Vec<Entry>>,
    catalog: watch::Sender<Arc<Catalog>>,
    tools_changed: Arc<Notify>,
    downstream: Arc<dyn Downstream>,
    /// The credential agent, shared by every OAuth upstream.
    pub agent: Arc<AgentClient>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    cache: ToolCache,
    /// The lists read from the cache file at start, to seed upstreams (also ones added later).
    cached: BTreeMap<String, Lists>,
    /// What was last written to the cache file, to skip rewriting the same lists.
    last_written: Mutex<Option<BTreeMap<String, Lists>>>,
    default_request: Duration,
    demo: Option<(String, Vec<String>)>,
}

impl Registry {
    /// Seeds the catalog from the warm cache, then starts one supervisor per upstream and the
    /// catalog task.
    pub fn start(
        config: &Config,
        demo: Option<(String, Vec<String>)>,
        downstream: Arc<dyn Downstream>,
    ) -> Arc<Self> {
        let cache = ToolCache::new(&config.config_dir);
        let cached = cache.load();
        if !cached.is_empty() {
            tracing::info!(file = %cache.path().display(), upstreams = cached.len(), "loaded the warm tool cache");
        }
        let registry = Arc::new(Self {
            entries: RwLock::new(Vec::new()),
            catalog: watch::Sender::new(Arc::new(Catalog::empty())),
            tools_changed: Arc::new(Notify::new()),
            downstream,
            agent: Arc::new(AgentClient::new(agent_socket(config))),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            cache,
            cached,
            last_written: Mutex::new(None),
            default_request: Duration::from_secs(config.server.request_timeout_secs.max(1)),
            demo,
        });
        registry.apply(registry.wanted(config), false);
        // Serve the cached lists at once, before any upstream finishes its handshake.
        registry.rebuild_catalog();
        let weak = Arc::downgrade(&registry);
        let (changed, stop) = (registry.tools_changed.clone(), registry.shutdown.clone());
        registry.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = changed.notified() => {}
                    () = stop.cancelled() => return,
                }
                let Some(registry) = weak.upgrade() else {
                    return;
                };
                registry.rebuild_catalog();
                registry.write_cache().await;
            }
        });
        registry
    }

    /// The upstreams a config asks for; the demo when it asks for none.
    fn wanted(&self, config: &Config) -> Vec<UpstreamConfig> {
        if !config.upstreams.is_empty() {
            return config.upstreams.clone();
        }
        let Some((command, args)) = &self.demo else {
            return Vec::new();
        };
        vec![UpstreamConfig {
            name: crate::demo::NAME.into(),
            prefix: crate::demo::NAME.into(),
            transport: Transport::Stdio {
                command: command.clone(),
                args: args.clone(),
                env: BTreeMap::new(),
                cwd: None,
                inherit_env: Vec::new(),
            },
            timing: Default::default(),
            roots: Default::default(),
        }]
    }

    /// Applies a new config: upstreams that are new or changed start, removed or changed ones
    /// stop, identical ones keep their connection.
    pub fn reload(&self, config: &Config) {
        self.apply(self.wanted(config), true);
    }

    fn apply(&self, wanted: Vec<UpstreamConfig>, reload: bool) {
        let mut entries = self.entries.write();
        let mut old: Vec<Entry> = std::mem::take(&mut *entries);
        for config in wanted {
            if let Some(i) = old.iter().position(|e| e.config == config) {
                entries.push(old.swap_remove(i));
                continue;
            }
            if old.iter().any(|e| e.config.name == config.name) {
                tracing::info!(upstream = %config.name, "configuration changed; restarting the upstream");
            } else if reload {
                tracing::info!(upstream = %config.name, "new upstream in the configuration");
            }
            entries.push(self.start_upstream(config));
        }
        for gone in old {
            if !entries.iter().any(|e| e.config.name == gone.config.name) {
                tracing::info!(upstream = %gone.config.name, "upstream removed from the configuration; stopping it");
            }
            gone.stop.cancel();
        }
        drop(entries);
        self.tools_changed.notify_one();
    }

    fn start_upstream(&self, config: UpstreamConfig) -> Entry {
        let timeouts = Timeouts::from_config(&config.timing, self.default_request);
        let stop = self.shutdown.child_token();
        let transport = match config.transport {
            Transport::Stdio { .. } => "stdio",
            Transport::Http { .. } => "http",
        };
        let up = Arc::new(
            Upstream::new(
                &config.name,
                &config.prefix,
                transport,
                timeouts,
                self.tools_changed.clone(),
                self.downstream.clone(),
            )
            .with_roots(config.roots.clone()),
        );
        if let Some(lists) = self.cached.get(&config.name) {
            up.seed_lists(lists.clone());
        }
        match &config.transport {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
                inherit_env,
            } => {
                let spec = StdioSpec {
                    command: command.clone(),
                    args: args.clone(),
                    env: env.clone(),
                    cwd: cwd.clone(),
                    inherit_env: inherit_env.clone(),
                };
                self.tasks
                    .spawn(stdio::supervise(up.clone(), spec, stop.clone()));
            }
            Transport::Http {
                url,
                auth,
                headers,
                transport,
                ..
            } => {
                let auth = match auth {
                    Auth::Named(AuthKind::None) => Ok(http::Auth::None),
                    Auth::Named(AuthKind::Oauth) => Ok(http::Auth::Agent(self.agent.clone())),
                    Auth::Bearer { bearer_env } => std::env::var(bearer_env)
                        .ok()
                        .filter(|t| !t.is_empty())
                        .map(http::Auth::Static)
                        .ok_or_else(|| {
                            format!("the bearer token variable {bearer_env} is not set")
                        }),
                };
                match auth {
                    Ok(auth) => {
                        let spec = http::HttpSpec {
                            url: url.clone(),
                            auth,
                            headers: headers.clone(),
                            transport: *transport,
                        };
                        self.tasks
                            .spawn(http::supervise(up.clone(), spec, stop.clone()));
                    }
                    Err(e) => {
                        tracing::error!(upstream = %config.name, "{e}; upstream disabled");
                        up.update_status(|s| {
                            s.state = State::Disabled;
                            s.last_error = Some(e);
                        });
                    }
                }
            }
        }
        Entry { config, up, stop }
    }

    fn rebuild_catalog(&self) {
        let catalog = Catalog::build(&self.upstreams());
        self.catalog.send_if_modified(|current| {
            if current.changes(&catalog).is_empty() {
                false
            } else {
                *current = Arc::new(catalog);
                true
            }
        });
    }

    /// "Never an empty tool list": while an upstream that has nothing to show yet (no cached
    /// lists, never listed live) is still in its first handshake, a client's list waits for it,
    /// at most `limit`, then gets what is ready. An upstream that failed, needs a login or is
    /// backing off is not waited for.
    pub async fn wait_for_first_lists(&self, limit: Duration) {
        if limit.is_zero() {
            return;
        }
        let starting: Vec<Arc<Upstream>> = self
            .upstreams()
            .into_iter()
            .filter(|u| first_start(u))
            .collect();
        if starting.is_empty() {
            return;
        }
        let _ = tokio::time::timeout(limit, async {
            for up in starting {
                let mut rx = up.subscribe_status();
                while first_start(&up) {
                    if rx.changed().await.is_err() {
                        break;
                    }
                }
            }
        })
        .await;
        self.rebuild_catalog();
    }

    /// Persists every upstream's last good list once at least one of them is live, so a corrupt
    /// cache file is only replaced by a good one.
    async fn write_cache(&self) {
        let ups = self.upstreams();
        if !ups.iter().any(|u| u.has_live_lists()) {
            return;
        }
        let lists: BTreeMap<String, Lists> = ups
            .iter()
            .filter(|u| u.has_live_lists() || self.cached.contains_key(&*u.name))
            .map(|u| (u.name.to_string(), (*u.lists()).clone()))
            .collect();
        {
            let mut last = self.last_written.lock();
            if last.as_ref() == Some(&lists) {
                return;
            }
            *last = Some(lists.clone());
        }
        let bytes = ToolCache::render(&lists);
        let path = self.cache.path().to_path_buf();
        let result =
            tokio::task::spawn_blocking(move || logfile::write_atomic(&path, &bytes, 0o600)).await;
        match result {
            Ok(Ok(())) => {
                tracing::debug!(file = %self.cache.path().display(), "tool cache written")
            }
            Ok(Err(e)) => {
                tracing::warn!(file = %self.cache.path().display(), error = %e, "cannot write the tool cache")
            }
            Err(e) => tracing::warn!(error = %e, "tool cache writer failed"),
        }
    }

    /// Whether some upstream logs in through the credential agent.
    pub fn uses_agent(&self) -> bool {
        self.entries.read().iter().any(|e| {
            matches!(
                e.config.transport,
                Transport::Http {
                    auth: Auth::Named(AuthKind::Oauth),
                    ..
                }
            )
        })
    }

    pub fn upstreams(&self) -> Vec<Arc<Upstream>> {
        self.entries.read().iter().map(|e| e.up.clone()).collect()
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    /// Fires whenever the served tool list really changed.
    pub fn subscribe_catalog(&self) -> watch::Receiver<Arc<Catalog>> {
        self.catalog.subscribe()
    }

    /// Routes a client request that belongs to one upstream (`tools/call`, `prompts/get`,
    /// `resources/read`, `resources/(un)subscribe`, `completion/complete`): finds the owner,
    /// restores the upstream's own name or URI, forwards, and exposes URIs in the answer.
    pub async fn forward(
        &self,
        method: &str,
        mut params: Value,
        ctx: Option<Arc<RequestContext>>,
    ) -> Result<Value, RpcError> {
        let catalog = self.catalog();
        let by_name = |table: &HashMap<String, Route>,
                       name: Option<&str>,
                       what: &str|
         -> Result<Route, RpcError> {
            let name = name.ok_or_else(|| {
                RpcError::new(
                    jsonrpc::INVALID_PARAMS,
                    format!("{method} needs a string \"name\""),
                )
            })?;
            table.get(name).cloned().ok_or_else(|| {
                RpcError::new(jsonrpc::INVALID_PARAMS, format!("Unknown {what}: {name}"))
            })
        };
        let by_uri = |uri: Option<&str>| -> Result<(Arc<Upstream>, String), RpcError> {
            let uri = uri.ok_or_else(|| {
                RpcError::new(
                    jsonrpc::INVALID_PARAMS,
                    format!("{method} needs a string \"uri\""),
                )
            })?;
            catalog.route_uri(uri).ok_or_else(|| {
                RpcError::with_data(
                    jsonrpc::RESOURCE_NOT_FOUND,
                    "Resource not found",
                    serde_json::json!({ "uri": uri }),
                )
            })
        };
        let up = match method {
            "tools/call" | "prompts/get" => {
                let (table, what) = if method == "tools/call" {
                    (&catalog.routes, "tool")
                } else {
                    (&catalog.prompts, "prompt")
                };
                let route = by_name(table, params.get("name").and_then(Value::as_str), what)?;
                params["name"] = Value::String(route.tool);
                route.upstream
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let (up, original) = by_uri(params.get("uri").and_then(Value::as_str))?;
                params["uri"] = Value::String(original);
                up
            }
            "completion/complete" => {
                let reference = params.get("ref").cloned().unwrap_or(Value::Null);
                match reference.get("type").and_then(Value::as_str) {
                    Some("ref/prompt") => {
                        let route = by_name(
                            &catalog.prompts,
                            reference.get("name").and_then(Value::as_str),
                            "prompt",
                        )?;
                        params["ref"]["name"] = Value::String(route.tool);
                        route.upstream
                    }
                    Some("ref/resource") => {
                        let (up, original) = by_uri(reference.get("uri").and_then(Value::as_str))?;
                        params["ref"]["uri"] = Value::String(original);
                        up
                    }
                    _ => {
                        return Err(RpcError::new(
                            jsonrpc::INVALID_PARAMS,
                            "completion/complete needs a ref/prompt or ref/resource",
                        ));
                    }
                }
            }
            _ => {
                return Err(RpcError::new(
                    jsonrpc::METHOD_NOT_FOUND,
                    format!("Method not found: {method}"),
                ));
            }
        };
        let mut result = up
            .call_for(method, Some(params), up.timeouts.request, ctx)
            .await
            .map_err(CallError::into_rpc)?;
        if !up.prefix.is_empty() {
            expose_result_uris(&up.prefix, method, &mut result);
        }
        Ok(result)
    }

    /// `logging/setLevel`: passed to every connected upstream that logs.
    pub fn set_log_level(&self, params: &Value) {
        for up in self.upstreams() {
            if up.has_capability("logging")
                && let Some(conn) = up.ready_conn()
            {
                let (params, timeout) = (params.clone(), up.timeouts.request);
                tokio::spawn(async move {
                    if let Err(e) = conn.call("logging/setLevel", Some(params), timeout).await {
                        tracing::debug!(upstream = %conn.upstream(), error = %e, "logging/setLevel failed");
                    }
                });
            }
        }
    }

    /// A login completed: every upstream waiting for one retries now, not at the end of its
    /// backoff.
    pub fn wake_waiting_for_login(&self) {
        for up in self.upstreams() {
            if up.state() == State::NeedsLogin {
                up.wake.notify_one();
            }
        }
    }

    /// A client's roots changed: tells the upstreams that serve exactly that client
    /// (`roots = "client"`, leased by it); no other upstream ever sees a client's roots.
    pub fn roots_changed(&self, session: &crate::session::Session) {
        for up in self.upstreams() {
            if up.lease_holder().is_some_and(|h| h.id() == session.id)
                && let Some(conn) = up.ready_conn()
            {
                conn.notify("notifications/roots/list_changed", None);
            }
        }
    }

    /// Stops every upstream (children get stdin closed, SIGTERM, SIGKILL) and waits for them.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn up_with(name: &str, prefix: &str, lists: Lists) -> Arc<Upstream> {
        let u = Upstream::new(
            name,
            prefix,
            "test",
            Timeouts::default(),
            Arc::new(Notify::new()),
            Arc::new(crate::upstream::NoClients),
        );
        u.seed_lists(lists);
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
