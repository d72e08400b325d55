//! `/metrics` in the OpenMetrics text format (which Prometheus scrapes), written with
//! `prometheus-client`. Names follow OpenTelemetry's MCP semantic conventions where they exist
//! (`mcp.server.operation.duration` → `mcp_server_operation_duration_seconds`, with
//! `mcp_method_name` and `error_type`), plus `upstream`; the bridge's own are `mcp_bridge_*`.
//! Durations are recorded as requests end; states, counts and sessions are read at scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::server::Bridge;

/// OpenTelemetry's suggested boundaries for MCP operation durations, in seconds.
const BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    mcp_method_name: String,
    upstream: String,
    /// Empty when the request succeeded.
    error_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Up {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpState {
    upstream: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Profile {
    profile: String,
}

type Operations = Family<Operation, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

pub struct Metrics {
    operations: Operations,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            operations: Family::new_with_constructor(histogram),
        }
    }
}

impl Metrics {
    /// A request routed to `upstream` ended after `secs`; `error` is its JSON-RPC error code.
    pub fn observe(&self, method: &str, upstream: &str, secs: f64, error: Option<i64>) {
        self.operations
            .get_or_create(&Operation {
                mcp_method_name: method.to_owned(),
                upstream: upstream.to_owned(),
                error_type: error.map(|c| c.to_string()).unwrap_or_default(),
            })
            .observe(secs);
    }

    /// The exposition: recorded durations, and everything else as it is now.
    pub fn render(&self, bridge: &Bridge) -> String {
        let mut r = Registry::default();
        r.register_with_unit(
            "mcp_server_operation_duration",
            "Duration of MCP requests the bridge served by an upstream, by method (OpenTelemetry mcp.server.operation.duration)",
            prometheus_client::registry::Unit::Seconds,
            self.operations.clone(),
        );
        let up = Family::<Up, Gauge>::default();
        let state = Family::<UpState, Gauge>::default();
        let connects = Family::<Up, Counter>::default();
        let failures = Family::<Up, Counter>::default();
        let tools = Family::<Up, Gauge>::default();
        let tokens = Family::<Up, Counter>::default();
        let catalog = bridge.registry.catalog();
        for u in bridge.registry.upstreams() {
            let s = u.status();
            let label = Up {
                upstream: u.name.to_string(),
            };
            let name = serde_json::to_value(s.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            up.get_or_create(&label).set(i64::from(name == "ready"));
            state
                .get_or_create(&UpState {
                    upstream: u.name.to_string(),
                    state: name,
                })
                .set(1);
            connects.get_or_create(&label).inc_by(s.connects);
            failures.get_or_create(&label).inc_by(s.failures);
            tools
                .get_or_create(&label)
                .set(catalog.count_for(&u) as i64);
        }
        for (name, n) in bridge.registry.agent.token_requests() {
            tokens.get_or_create(&Up { upstream: name }).inc_by(n);
        }
        let sessions = Family::<Profile, Gauge>::default();
        let views = bridge.registry.views.read().clone();
        for (name, _) in views.all() {
            sessions
                .get_or_create(&Profile {
                    profile: name.to_string(),
                })
                .set(0);
        }
        for s in bridge.sessions.all() {
            sessions
                .get_or_create(&Profile {
                    profile: s.view.to_string(),
                })
                .inc();
        }
        let list_changes = Counter::<u64>::default();
        list_changes.inc_by(
            bridge
                .list_changes
                .load(std::sync::atomic::Ordering::Relaxed),
        );
        r.register(
            "mcp_bridge_upstream_up",
            "Whether the upstream is ready (1) or not (0)",
            up,
        );
        r.register(
            "mcp_bridge_upstream_state",
            "The upstream's state (1 for the current one)",
            state,
        );
        r.register(
            "mcp_bridge_upstream_connects",
            "Connections the upstream completed",
            connects,
        );
        r.register(
            "mcp_bridge_upstream_failures",
            "Times the upstream's connection failed (each is a reconnect)",
            failures,
        );
        r.register(
            "mcp_bridge_upstream_tools",
            "Tools the upstream has in the served catalog",
            tools,
        );
        r.register(
            "mcp_bridge_token_requests",
            "Access tokens the bridge asked the credential agent for (the agent refreshes them)",
            tokens,
        );
        r.register(
            "mcp_bridge_sessions",
            "Client sessions, by profile",
            sessions,
        );
        r.register(
            "mcp_bridge_list_changed",
            "list_changed notifications broadcast",
            list_changes,
        );
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        out
    }
}
