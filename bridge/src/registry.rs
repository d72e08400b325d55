//! The set of upstreams: starting and stopping them (config reload), the merged catalog they
//! make (`catalog`), routing a client request to its upstream, and writing the warm cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use std::time::Duration;

use proto::config::{Auth, AuthKind, Config, Transport, UpstreamConfig};
use serde_json::Value;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::agent_client::AgentClient;
use crate::cache::ToolCache;
use crate::catalog::expose_result_uris;
pub use crate::catalog::{Catalog, Catalogs, Route};
use crate::jsonrpc::{self, RpcError};
use crate::upstream::http;
use crate::upstream::stdio::{self, StdioSpec};
use crate::upstream::{
    Answer, CallError, Downstream, Lists, RequestContext, State, Timeouts, Upstream,
};
use crate::views::{SharedViews, Views};

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
    catalog: watch::Sender<Arc<Catalogs>>,
    /// The profiles (`[[profile]]` and the built-ins), replaced on reload.
    pub views: SharedViews,
    tools_changed: Arc<Notify>,
    downstream: Arc<dyn Downstream>,
    /// The credential agent, shared by every OAuth upstream.
    pub agent: Arc<AgentClient>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    cache: ToolCache,
    /// Pinned tool definitions (`tool-pins.json`).
    pub pins: crate::pins::Pins,
    /// What `/metrics` shows.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The lists read from the cache file at start, to seed upstreams (also ones added later).
    /// Dropped per upstream once it has live lists (then its own lists are what counts).
    cached: Mutex<BTreeMap<String, Arc<Lists>>>,
    /// What was last written to the cache file, to skip rewriting the same lists.
    last_written: Mutex<Option<BTreeMap<String, Arc<Lists>>>>,
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
        views: SharedViews,
    ) -> Arc<Self> {
        let cache = ToolCache::new(&config.config_dir);
        let cached: BTreeMap<String, Arc<Lists>> = cache
            .load()
            .into_iter()
            .map(|(k, v)| (k, Arc::new(v)))
            .collect();
        if !cached.is_empty() {
            tracing::info!(file = %cache.path().display(), upstreams = cached.len(), "loaded the warm tool cache");
        }
        let registry = Arc::new(Self {
            entries: RwLock::new(Vec::new()),
            catalog: watch::Sender::new(Arc::new(Catalogs::empty())),
            views,
            tools_changed: Arc::new(Notify::new()),
            downstream,
            agent: Arc::new(AgentClient::new(agent_socket(config))),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            cache,
            pins: crate::pins::Pins::load(&config.config_dir),
            metrics: Arc::default(),
            cached: Mutex::new(cached),
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
            // An approval (`mcp-bridge tools approve`) changes the pin file: looked for each second.
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let approvals = tokio::select! {
                    () = changed.notified() => false,
                    _ = tick.tick() => true,
                    () = stop.cancelled() => return,
                };
                let Some(registry) = weak.upgrade() else {
                    return;
                };
                if approvals && !registry.pins.reload_if_changed() {
                    continue;
                }
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
            era: Default::default(),
            policy: Default::default(),
            // The built-in demo changes with the bridge's version: warn, never hold back.
            pin: proto::config::PinMode::Warn,
        }]
    }

    /// Applies a new config: upstreams that are new or changed start, removed or changed ones
    /// stop, identical ones keep their connection.
    pub fn reload(&self, config: &Config) {
        *self.views.write() = Arc::new(Views::from_config(config));
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
            // A changed upstream starts from the lists its previous self served.
            let previous = old
                .iter()
                .find(|e| e.config.name == config.name)
                .map(|e| e.up.lists());
            if previous.is_some() {
                tracing::info!(upstream = %config.name, "configuration changed; restarting the upstream");
            } else if reload {
                tracing::info!(upstream = %config.name, "new upstream in the configuration");
            }
            entries.push(self.start_upstream(config, previous));
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

    fn start_upstream(&self, config: UpstreamConfig, previous: Option<Arc<Lists>>) -> Entry {
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
            .with_roots(config.roots.clone())
            .with_era(config.era)
            .with_policy(config.policy.clone())
            .with_pin(config.pin),
        );
        let seed = previous
            .filter(|l| !l.tools.is_empty())
            .or_else(|| self.cached.lock().get(&config.name).cloned());
        if let Some(lists) = seed {
            up.seed_lists(lists);
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
        let ups = self.upstreams();
        let held: crate::catalog::Held = ups
            .iter()
            .map(|u| {
                let lists = u.lists();
                let h = self
                    .pins
                    .judge(&u.name, u.pin, &lists.tools, u.has_live_lists());
                (u.name.to_string(), h)
            })
            .filter(|(_, h)| !h.is_empty())
            .collect();
        let views = self.views.read().clone();
        let catalogs = Catalogs::build(&ups, &held, &views);
        self.catalog.send_if_modified(|current| {
            // What is held back or hidden can change while the lists served stay the same.
            if current.differs_from(&catalogs) {
                *current = Arc::new(catalogs);
                true
            } else {
                false
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
            .filter(|u| u.in_first_start())
            .collect();
        if starting.is_empty() {
            return;
        }
        let _ = tokio::time::timeout(limit, async {
            for up in starting {
                let mut rx = up.subscribe_status();
                while up.in_first_start() {
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
        // The upstreams' own `Arc`s: comparing and rendering copy no tool.
        let lists: BTreeMap<String, Arc<Lists>> = {
            let mut cached = self.cached.lock();
            // A live upstream's cached lists are stale and no longer needed.
            cached.retain(|name, _| !ups.iter().any(|u| &*u.name == name && u.has_live_lists()));
            ups.iter()
                .filter(|u| u.has_live_lists() || cached.contains_key(&*u.name))
                .map(|u| (u.name.to_string(), u.lists()))
                .collect()
        };
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

    /// What `all` shows: everything.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().all().clone()
    }

    /// The pin file changed here (an approval on the status page): served at once.
    pub fn pins_changed(&self) {
        self.pins.reload_if_changed();
        self.tools_changed.notify_one();
    }

    /// Every profile's catalog.
    pub fn catalogs(&self) -> Arc<Catalogs> {
        self.catalog.borrow().clone()
    }

    /// What the profile `view` shows; an error naming it once a reload removed it.
    pub fn view(&self, view: &str) -> Result<Arc<Catalog>, RpcError> {
        self.catalog.borrow().get(view).cloned().ok_or_else(|| {
            RpcError::new(
                jsonrpc::INVALID_REQUEST,
                format!("profile {view:?} is no longer in config.toml; reconnect"),
            )
        })
    }

    /// Fires whenever what some profile shows really changed.
    pub fn subscribe_catalog(&self) -> watch::Receiver<Arc<Catalogs>> {
        self.catalog.subscribe()
    }

    /// Routes a client request that belongs to one upstream (`tools/call`, `prompts/get`,
    /// `resources/read`, `resources/(un)subscribe`, `completion/complete`): finds the owner,
    /// restores the upstream's own name or URI, forwards, and exposes URIs in the answer.
    pub async fn forward(
        &self,
        view: &str,
        method: &str,
        mut params: Value,
        ctx: Option<Arc<RequestContext>>,
    ) -> Result<Answer, RpcError> {
        let catalog = self.view(view)?;
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
                if what == "tool"
                    && let Some(up) = catalog.pending_tools.get(name)
                {
                    let original = name.split_once("__").map_or(name, |(_, t)| t);
                    return RpcError::new(
                        jsonrpc::INVALID_PARAMS,
                        format!("tool {name} of upstream {up:?} is new or changed since it was approved, so mcp-bridge holds it back; review it with `mcp-bridge tools list --pending`, then approve it with `mcp-bridge tools approve {up} {original}`"),
                    );
                }
                let hidden = if what == "tool" {
                    &catalog.hidden_tools
                } else {
                    &catalog.hidden_prompts
                };
                match hidden.get(name) {
                    Some(up) => RpcError::new(
                        jsonrpc::INVALID_PARAMS,
                        format!("{what} {name} is hidden by the policy of upstream {up:?} in config.toml (its `{what}s`, `read_only` or `rename`)"),
                    ),
                    None => RpcError::new(jsonrpc::INVALID_PARAMS, format!("Unknown {what}: {name}")),
                }
            })
        };
        let by_uri = |uri: Option<&str>| -> Result<(Arc<Upstream>, String), RpcError> {
            let uri = uri.ok_or_else(|| {
                RpcError::new(
                    jsonrpc::INVALID_PARAMS,
                    format!("{method} needs a string \"uri\""),
                )
            })?;
            let not_found = || {
                RpcError::with_data(
                    jsonrpc::RESOURCE_NOT_FOUND,
                    "Resource not found",
                    serde_json::json!({ "uri": uri }),
                )
            };
            catalog.resolve_uri(uri).ok_or_else(not_found)
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
                if method != "resources/read" && up.speaks_stateless() {
                    return Err(RpcError::new(
                        jsonrpc::METHOD_NOT_FOUND,
                        format!(
                            "upstream {:?} speaks MCP 2026-07-28, whose resource subscriptions mcp-bridge does not relay yet",
                            up.name
                        ),
                    ));
                }
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
        let started = std::time::Instant::now();
        let answer = up
            .call_for(method, Some(params), up.timeouts.request, ctx)
            .await
            .map_err(CallError::into_rpc);
        self.metrics.observe(
            method,
            &up.name,
            started.elapsed().as_secs_f64(),
            answer.as_ref().err().and_then(|e| e.code()),
        );
        let answer = answer?;
        let hides_resources = catalog
            .view
            .as_ref()
            .is_some_and(|v| !v.resources.is_open());
        if up.prefix.is_empty() && !hides_resources {
            // Nothing in the result changes: it goes out as the upstream wrote it.
            return Ok(answer);
        }
        let mut result = answer.into_value();
        if !up.prefix.is_empty() {
            expose_result_uris(&up.prefix, method, &mut result);
        }
        if hides_resources {
            crate::catalog::drop_unseen_links(&catalog, method, &mut result);
        }
        Ok(Answer::Parsed(result))
    }

    /// `logging/setLevel`: passed to every connected upstream that logs.
    pub fn set_log_level(&self, params: &Value) {
        for up in self.upstreams() {
            // Kept, so a reconnected upstream is told again (it starts at its own default).
            up.remember_log_level(params.clone());
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

    /// The machine slept for about `gap`: remote connections are likely dead (NAT and server
    /// timeouts), so every HTTP upstream reconnects now, and every upstream in backoff retries
    /// at once instead of finishing a wait that began before the sleep. Stdio children slept
    /// with the bridge and keep going (their keepalive still checks them).
    pub fn resumed(&self, gap: Duration) {
        tracing::info!(
            asleep_secs = gap.as_secs(),
            "the system resumed; reconnecting remote upstreams"
        );
        for up in self.upstreams() {
            match up.state() {
                State::Ready if up.transport != "stdio" => up.reconnect_now(),
                State::Backoff | State::NeedsLogin => up.wake.notify_one(),
                _ => {}
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
