//! The set of upstreams, the merged tool catalog the bridge serves, the warm cache behind it,
//! and config reload.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use proto::config::{Config, Transport, UpstreamConfig};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::ToolCache;
use crate::jsonrpc::{self, RpcError};
use crate::naming;
use crate::upstream::stdio::{self, StdioSpec};
use crate::upstream::{CallError, State, Timeouts, Upstream};

/// Where an exposed tool name leads.
#[derive(Clone)]
pub struct Route {
    pub upstream: Arc<Upstream>,
    pub tool: String,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.upstream.name, self.tool)
    }
}

/// An immutable snapshot of every upstream's tools under their exposed names.
#[derive(Debug)]
pub struct Catalog {
    /// `{"tools":[...]}`, serialised once per change so `tools/list` costs a copy.
    pub list_result: Box<RawValue>,
    pub routes: HashMap<String, Route>,
}

impl Catalog {
    pub fn empty() -> Self {
        Self::build(&[])
    }

    /// Merges tool lists in upstream order. A name clash is resolved deterministically: the
    /// earlier upstream (config order), then the earlier tool, keeps the plain name; later ones
    /// get a stable hash suffix. Nothing is dropped.
    pub fn build(upstreams: &[Arc<Upstream>]) -> Self {
        let mut routes = HashMap::new();
        let mut tools = Vec::new();
        for up in upstreams {
            for tool in up.tools().iter() {
                let Some(original) = tool.get("name").and_then(Value::as_str) else {
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
                    tracing::warn!(upstream = %up.name, tool = %original, exposed = %exposed, "tool name collision; exposing under a disambiguated name");
                }
                let mut tool = tool.clone();
                tool["name"] = Value::String(exposed.clone());
                tools.push(tool);
                routes.insert(
                    exposed,
                    Route {
                        upstream: up.clone(),
                        tool: original.to_owned(),
                    },
                );
            }
        }
        let json = serde_json::json!({ "tools": tools }).to_string();
        // A `Value` always serialises to valid JSON, so the fallback is never taken.
        let list_result = RawValue::from_string(json).unwrap_or_default();
        Self {
            list_result,
            routes,
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
    shutdown: CancellationToken,
    tasks: TaskTracker,
    cache: ToolCache,
    /// The lists read from the cache file at start, to seed upstreams (also ones added later).
    cached: BTreeMap<String, Vec<Value>>,
    /// What was last written to the cache file, to skip rewriting the same lists.
    last_written: Mutex<Option<BTreeMap<String, Vec<Value>>>>,
    default_request: Duration,
    demo: Option<(String, Vec<String>)>,
}

impl Registry {
    /// Seeds the catalog from the warm cache, then starts one supervisor per upstream and the
    /// catalog task.
    pub fn start(config: &Config, demo: Option<(String, Vec<String>)>) -> Arc<Self> {
        let cache = ToolCache::new(&config.config_dir);
        let cached = cache.load();
        if !cached.is_empty() {
            tracing::info!(file = %cache.path().display(), upstreams = cached.len(), "loaded the warm tool cache");
        }
        let registry = Arc::new(Self {
            entries: RwLock::new(Vec::new()),
            catalog: watch::Sender::new(Arc::new(Catalog::empty())),
            tools_changed: Arc::new(Notify::new()),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            cache,
            cached,
            last_written: Mutex::new(None),
            default_request: Duration::from_secs(config.server.request_timeout_secs.max(1)),
            demo,
        });
        registry.apply(registry.wanted(config));
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
            },
            timing: Default::default(),
        }]
    }

    /// Applies a new config: upstreams that are new or changed start, removed or changed ones
    /// stop, identical ones keep their connection.
    pub fn reload(&self, config: &Config) {
        self.apply(self.wanted(config));
    }

    fn apply(&self, wanted: Vec<UpstreamConfig>) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        let mut old: Vec<Entry> = std::mem::take(&mut *entries);
        for config in wanted {
            if let Some(i) = old.iter().position(|e| e.config == config) {
                entries.push(old.swap_remove(i));
                continue;
            }
            if old.iter().any(|e| e.config.name == config.name) {
                tracing::info!(upstream = %config.name, "configuration changed; restarting the upstream");
            } else if self.tasks.len() > 1 {
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
        let up = Arc::new(Upstream::new(
            &config.name,
            &config.prefix,
            transport,
            timeouts,
            self.tools_changed.clone(),
        ));
        if let Some(tools) = self.cached.get(&config.name) {
            up.seed_tools(tools.clone());
        }
        match &config.transport {
            Transport::Stdio {
                command,
                args,
                env,
                cwd,
            } => {
                let spec = StdioSpec {
                    command: command.clone(),
                    args: args.clone(),
                    env: env.clone(),
                    cwd: cwd.clone(),
                };
                self.tasks
                    .spawn(stdio::supervise(up.clone(), spec, stop.clone()));
            }
            Transport::Http { url, .. } => {
                tracing::warn!(upstream = %config.name, %url, "HTTP upstreams are not implemented in this build; upstream disabled");
                up.update_status(|s| {
                    s.state = State::Disabled;
                    s.last_error =
                        Some("HTTP upstreams are not implemented in this build yet".into());
                });
            }
        }
        Entry { config, up, stop }
    }

    fn rebuild_catalog(&self) {
        let catalog = Catalog::build(&self.upstreams());
        self.catalog.send_if_modified(|current| {
            if current.list_result.get() == catalog.list_result.get() {
                false
            } else {
                *current = Arc::new(catalog);
                true
            }
        });
    }

    /// Persists every upstream's last good list once at least one of them is live, so a corrupt
    /// cache file is only replaced by a good one.
    async fn write_cache(&self) {
        let ups = self.upstreams();
        if !ups.iter().any(|u| u.has_live_tools()) {
            return;
        }
        let lists: BTreeMap<String, Vec<Value>> = ups
            .iter()
            .filter(|u| u.has_live_tools() || self.cached.contains_key(&*u.name))
            .map(|u| (u.name.to_string(), u.tools().to_vec()))
            .collect();
        {
            let mut last = self
                .last_written
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.as_ref() == Some(&lists) {
                return;
            }
            *last = Some(lists.clone());
        }
        let bytes = ToolCache::render(&lists);
        let path = self.cache.path().to_path_buf();
        let result =
            tokio::task::spawn_blocking(move || crate::cache::write_atomic(&path, &bytes, 0o600))
                .await;
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

    pub fn upstreams(&self) -> Vec<Arc<Upstream>> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|e| e.up.clone())
            .collect()
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    /// Fires whenever the served tool list really changed.
    pub fn subscribe_catalog(&self) -> watch::Receiver<Arc<Catalog>> {
        self.catalog.subscribe()
    }

    /// `tools/call`: finds the owner of the exposed name and forwards with the original name.
    pub async fn call_tool(&self, mut params: Value) -> Result<Value, RpcError> {
        let Some(name) = params.get("name").and_then(Value::as_str) else {
            return Err(RpcError::new(
                jsonrpc::INVALID_PARAMS,
                "tools/call needs a string \"name\"",
            ));
        };
        let catalog = self.catalog();
        let Some(route) = catalog.routes.get(name) else {
            return Err(RpcError::new(
                jsonrpc::INVALID_PARAMS,
                format!("Unknown tool: {name}"),
            ));
        };
        params["name"] = Value::String(route.tool.clone());
        let up = &route.upstream;
        up.call("tools/call", Some(params), up.timeouts.request)
            .await
            .map_err(CallError::into_rpc)
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

    fn up(name: &str, prefix: &str, names: &[&str]) -> Arc<Upstream> {
        let u = Upstream::new(
            name,
            prefix,
            "test",
            Timeouts::default(),
            Arc::new(Notify::new()),
        );
        u.seed_tools(
            names
                .iter()
                .map(|n| json!({"name": n, "inputSchema": {"type": "object"}, "x-extra": 1}))
                .collect(),
        );
        Arc::new(u)
    }

    #[test]
    fn merges_with_prefixes_and_keeps_unknown_fields() {
        let c = Catalog::build(&[up("a", "a", &["echo"]), up("b", "b", &["echo", "add"])]);
        let v: Value = serde_json::from_str(c.list_result.get()).unwrap();
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
        assert_eq!(c1.list_result.get(), c2.list_result.get());
        assert_eq!(c1.routes["x__a_b"].tool, "a.b");
        assert!(c1.routes.keys().all(|k| naming::is_valid(k)));
    }
}
