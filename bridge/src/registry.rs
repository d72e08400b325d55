//! The set of upstreams and the merged tool catalog the bridge serves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use proto::config::{Config, Transport};
use serde_json::Value;
use serde_json::value::RawValue;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::jsonrpc::{self, RpcError};
use crate::naming;
use crate::upstream::stdio::{self, StdioSpec};
use crate::upstream::{CallError, State, Upstream};

/// Where an exposed tool name leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub upstream: usize,
    pub tool: String,
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
    pub fn build(upstreams: &[(&str, &str, Arc<Vec<Value>>)]) -> Self {
        let mut routes = HashMap::new();
        let mut tools = Vec::new();
        for (index, (name, prefix, list)) in upstreams.iter().enumerate() {
            for tool in list.iter() {
                let Some(original) = tool.get("name").and_then(Value::as_str) else {
                    continue;
                };
                let preferred = naming::expose(prefix, original);
                let mut exposed = preferred.clone();
                let mut attempt = 0;
                while routes.contains_key(&exposed) {
                    attempt += 1;
                    exposed = naming::disambiguate(&preferred, name, original, attempt);
                }
                if attempt > 0 {
                    tracing::warn!(upstream = %name, tool = %original, exposed = %exposed, "tool name collision; exposing under a disambiguated name");
                }
                let mut tool = tool.clone();
                tool["name"] = Value::String(exposed.clone());
                tools.push(tool);
                routes.insert(
                    exposed,
                    Route {
                        upstream: index,
                        tool: original.to_owned(),
                    },
                );
            }
        }
        let json = serde_json::json!({ "tools": tools }).to_string();
        // A `Value` always serialises to valid JSON.
        let list_result = RawValue::from_string(json)
            .unwrap_or_else(|_| RawValue::from_string("{\"tools\":[]}".into()).unwrap_or_default());
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
}

pub struct Registry {
    upstreams: Vec<Arc<Upstream>>,
    catalog: watch::Sender<Arc<Catalog>>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Registry {
    /// Starts one supervisor per configured upstream and the catalog task.
    pub fn start(config: &Config, demo_command: Option<(String, Vec<String>)>) -> Arc<Self> {
        let tools_changed = Arc::new(Notify::new());
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let mut upstreams = Vec::new();
        let startup_timeout = Duration::from_secs(30);
        for u in &config.upstreams {
            match &u.transport {
                Transport::Stdio {
                    command,
                    args,
                    env,
                    cwd,
                } => {
                    let up = Arc::new(Upstream::new(
                        &u.name,
                        &u.prefix,
                        "stdio",
                        tools_changed.clone(),
                    ));
                    let spec = StdioSpec {
                        command: command.clone(),
                        args: args.clone(),
                        env: env.clone(),
                        cwd: cwd.clone(),
                        startup_timeout,
                    };
                    tasks.spawn(stdio::supervise(up.clone(), spec, shutdown.child_token()));
                    upstreams.push(up);
                }
                Transport::Http { url, .. } => {
                    let up = Arc::new(Upstream::new(
                        &u.name,
                        &u.prefix,
                        "http",
                        tools_changed.clone(),
                    ));
                    tracing::warn!(upstream = %u.name, %url, "HTTP upstreams are not implemented in this build; upstream disabled");
                    up.update_status(|s| {
                        s.state = State::Disabled;
                        s.last_error =
                            Some("HTTP upstreams are not implemented in this build yet".into());
                    });
                    upstreams.push(up);
                }
            }
        }
        if let Some((command, args)) = demo_command {
            let up = Arc::new(Upstream::new(
                crate::demo::NAME,
                crate::demo::NAME,
                "stdio",
                tools_changed.clone(),
            ));
            let spec = StdioSpec {
                command,
                args,
                env: Default::default(),
                cwd: None,
                startup_timeout,
            };
            tasks.spawn(stdio::supervise(up.clone(), spec, shutdown.child_token()));
            upstreams.push(up);
        }
        let registry = Arc::new(Self {
            upstreams,
            catalog: watch::Sender::new(Arc::new(Catalog::empty())),
            shutdown,
            tasks,
        });
        let weak = Arc::downgrade(&registry);
        let stop = registry.shutdown.clone();
        registry.tasks.spawn(async move {
            loop {
                tokio::select! {
                    () = tools_changed.notified() => {}
                    () = stop.cancelled() => return,
                }
                let Some(registry) = weak.upgrade() else {
                    return;
                };
                registry.rebuild_catalog();
            }
        });
        registry
    }

    fn rebuild_catalog(&self) {
        let lists: Vec<_> = self
            .upstreams
            .iter()
            .map(|u| (&*u.name, u.prefix.as_str(), u.tools()))
            .collect();
        let catalog = Catalog::build(&lists);
        self.catalog.send_if_modified(|current| {
            if current.list_result.get() == catalog.list_result.get() {
                false
            } else {
                *current = Arc::new(catalog);
                true
            }
        });
    }

    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.borrow().clone()
    }

    /// Fires whenever the served tool list really changed.
    pub fn subscribe_catalog(&self) -> watch::Receiver<Arc<Catalog>> {
        self.catalog.subscribe()
    }

    /// `tools/call`: finds the owner of the exposed name and forwards with the original name.
    pub async fn call_tool(&self, mut params: Value, timeout: Duration) -> Result<Value, RpcError> {
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
        let Some(up) = self.upstreams.get(route.upstream) else {
            return Err(RpcError::new(
                jsonrpc::INTERNAL_ERROR,
                "tool route points nowhere",
            ));
        };
        params["name"] = Value::String(route.tool.clone());
        up.call("tools/call", Some(params), timeout)
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

    fn tools(names: &[&str]) -> Arc<Vec<Value>> {
        Arc::new(
            names
                .iter()
                .map(|n| json!({"name": n, "inputSchema": {"type": "object"}, "x-extra": 1}))
                .collect(),
        )
    }

    #[test]
    fn merges_with_prefixes_and_keeps_unknown_fields() {
        let c = Catalog::build(&[
            ("a", "a", tools(&["echo"])),
            ("b", "b", tools(&["echo", "add"])),
        ]);
        let v: Value = serde_json::from_str(c.list_result.get()).unwrap();
        let names: Vec<_> = v["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a__echo", "b__echo", "b__add"]);
        assert_eq!(v["tools"][0]["x-extra"], 1);
        assert_eq!(
            c.routes["b__add"],
            Route {
                upstream: 1,
                tool: "add".into()
            }
        );
    }

    #[test]
    fn collisions_are_resolved_deterministically_and_nothing_is_dropped() {
        // Both sanitise to `x__a_b`.
        let build = || {
            Catalog::build(&[
                ("x", "x", tools(&["a.b", "a/b"])),
                ("y", "", tools(&["x__a_b"])),
            ])
        };
        let (c1, c2) = (build(), build());
        assert_eq!(c1.len(), 3);
        assert_eq!(c1.list_result.get(), c2.list_result.get());
        assert_eq!(
            c1.routes["x__a_b"],
            Route {
                upstream: 0,
                tool: "a.b".into()
            }
        );
        assert!(c1.routes.keys().all(|k| naming::is_valid(k)));
    }
}
