//! Views per client: which profile (`[[profile]]`, or the built-in `all` and `read-only`) a
//! request is served, from its path (`/mcp/<profile>`) and its `Origin`.
//!
//! A browser origin always gets one profile: the one whose `origins` name it, else
//! `browser_profile` (`read-only` unless configured). It cannot pick another by path, so a page
//! never widens its own view. Programs (no `Origin`) get `all` at `/mcp` and the named profile
//! at `/mcp/<profile>`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;
use proto::config::{Config, Filter, PROFILE_ALL, Policy, ProfileConfig};

use crate::guard::{OriginPattern, parse_origin, parse_pattern};

/// The profiles of the running configuration; replaced as a whole on reload.
#[derive(Debug)]
pub struct Views {
    profiles: HashMap<Arc<str>, Arc<ProfileConfig>>,
    /// Profile names in config order, built-ins first.
    order: Vec<Arc<str>>,
    origins: Vec<(OriginPattern, Arc<str>)>,
    browser: Arc<str>,
}

/// The views, shared by the server, the sessions, the guard and the registry (which replaces
/// them when the configuration is reloaded).
pub type SharedViews = Arc<RwLock<Arc<Views>>>;

/// Why a request gets no view.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    #[error("Not Found: no profile named {0:?} in config.toml")]
    Unknown(String),
    #[error(
        "Forbidden: origin {origin} is served profile {bound:?}; it cannot use profile {asked:?}"
    )]
    OriginBound {
        origin: String,
        bound: Arc<str>,
        asked: String,
    },
}

impl Default for Views {
    /// The built-in profiles only.
    fn default() -> Self {
        Self::new(Vec::new(), proto::config::PROFILE_READ_ONLY)
    }
}

impl Views {
    pub fn from_config(config: &Config) -> Self {
        Self::new(config.profiles.clone(), &config.server.browser_profile)
    }

    fn new(configured: Vec<ProfileConfig>, browser: &str) -> Self {
        let mut profiles = HashMap::new();
        let mut order = Vec::new();
        let mut origins = Vec::new();
        for p in ProfileConfig::builtin().into_iter().chain(configured) {
            let name: Arc<str> = p.name.as_str().into();
            for o in &p.origins {
                match parse_pattern(o) {
                    Some(pattern) => origins.push((pattern, name.clone())),
                    None => {
                        tracing::warn!(profile = %name, origin = %o, "ignoring an origin that is not of the form https://host[:port]")
                    }
                }
            }
            order.push(name.clone());
            profiles.insert(name, Arc::new(p));
        }
        let browser = profiles
            .get_key_value(browser)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| proto::config::PROFILE_READ_ONLY.into());
        Self {
            profiles,
            order,
            origins,
            browser,
        }
    }

    pub fn shared(config: &Config) -> SharedViews {
        Arc::new(RwLock::new(Arc::new(Self::from_config(config))))
    }

    /// Every profile, built-ins first, then in config order.
    pub fn all(&self) -> impl Iterator<Item = (&Arc<str>, &Arc<ProfileConfig>)> {
        self.order
            .iter()
            .filter_map(|n| self.profiles.get_key_value(n))
    }

    /// The profile of browser origins no profile names (`browser_profile`).
    pub fn browser(&self) -> &Arc<str> {
        &self.browser
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ProfileConfig>> {
        self.profiles.get(name)
    }

    /// The profile `origin` is bound to, if a `[[profile]]` lists it.
    pub fn bound_profile(&self, origin: &str) -> Option<&Arc<str>> {
        let o = parse_origin(origin)?;
        self.origins
            .iter()
            .find(|(p, _)| p.matches(&o))
            .map(|(_, name)| name)
    }

    /// The profile a request is served: `asked` is the `<profile>` of `/mcp/<profile>`.
    pub fn resolve(
        &self,
        asked: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Arc<str>, ViewError> {
        if let Some(a) = asked
            && !self.profiles.contains_key(a)
        {
            return Err(ViewError::Unknown(a.to_owned()));
        }
        let Some(origin) = origin else {
            return Ok(self
                .profiles
                .get_key_value(asked.unwrap_or(PROFILE_ALL))
                .map(|(k, _)| k.clone())
                .unwrap_or_else(|| PROFILE_ALL.into()));
        };
        let bound = self.bound_profile(origin).unwrap_or(&self.browser).clone();
        match asked {
            Some(a) if a != &*bound => Err(ViewError::OriginBound {
                origin: origin.to_owned(),
                bound,
                asked: a.to_owned(),
            }),
            _ => Ok(bound),
        }
    }

    /// Whether clients of `view` may hear from the upstream named `upstream` at all.
    pub fn sees_upstream(&self, view: &str, upstream: &str) -> bool {
        self.profiles
            .get(view)
            .is_some_and(|p| p.includes(upstream))
    }
}

fn describe_filter(what: &str, f: &Filter, out: &mut Vec<String>) {
    if let Some(a) = &f.allow {
        out.push(format!("{what} allow [{}]", a.join(", ")));
    }
    if !f.deny.is_empty() {
        out.push(format!("{what} deny [{}]", f.deny.join(", ")));
    }
}

/// One line saying what an upstream's policy hides or renames; `None` when it shows all.
pub fn describe_policy(p: &Policy) -> Option<String> {
    let mut out = Vec::new();
    describe_filter("tools", &p.tools, &mut out);
    describe_filter("prompts", &p.prompts, &mut out);
    describe_filter("resources", &p.resources, &mut out);
    if !p.rename.is_empty() {
        let pairs: Vec<String> = p
            .rename
            .iter()
            .map(|(a, b)| format!("{a} -> {b}"))
            .collect();
        out.push(format!("rename {}", pairs.join(", ")));
    }
    if p.read_only {
        out.push("read-only tools only".into());
    }
    (!out.is_empty()).then(|| out.join("; "))
}

/// One line saying what a profile shows.
pub fn describe_profile(p: &ProfileConfig) -> String {
    let mut out = vec![match &p.upstreams {
        None => "every upstream".to_owned(),
        Some(u) if u.is_empty() => "no upstream".to_owned(),
        Some(u) => format!("upstreams {}", u.join(", ")),
    }];
    describe_filter("tools", &p.tools, &mut out);
    describe_filter("prompts", &p.prompts, &mut out);
    describe_filter("resources", &p.resources, &mut out);
    if p.read_only {
        out.push("read-only tools only".into());
    }
    if !p.origins.is_empty() {
        out.push(format!("for origins {}", p.origins.join(", ")));
    }
    out.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn views(toml: &str) -> Views {
        let env = [("MCP_BRIDGE_CONFIG_DIR".to_owned(), "/c".to_owned())]
            .into_iter()
            .collect();
        let src = toml.to_owned();
        let config = proto::config::load(&env, move |_| Ok(Some(src.clone()))).unwrap();
        Views::from_config(&config)
    }

    const CONFIG: &str = "[[upstream]]\nname = \"a\"\ncommand = \"x\"\n\n[[upstream]]\nname = \"b\"\ncommand = \"y\"\n\n[[profile]]\nname = \"web\"\nupstreams = [\"a\"]\norigins = [\"https://app.example.com\", \"https://*.example.org\"]\n";

    #[test]
    fn programs_pick_by_path_and_browsers_get_their_bound_profile() {
        let v = views(CONFIG);
        let ok = |asked, origin| v.resolve(asked, origin).map(|n| n.to_string());
        assert_eq!(ok(None, None).as_deref(), Ok("all"));
        assert_eq!(ok(Some("web"), None).as_deref(), Ok("web"));
        assert_eq!(ok(Some("read-only"), None).as_deref(), Ok("read-only"));
        assert!(matches!(ok(Some("nope"), None), Err(ViewError::Unknown(_))));
        assert_eq!(
            ok(None, Some("https://app.example.com")).as_deref(),
            Ok("web")
        );
        assert_eq!(
            ok(None, Some("https://x.example.org")).as_deref(),
            Ok("web")
        );
        assert_eq!(
            ok(Some("web"), Some("https://app.example.com")).as_deref(),
            Ok("web")
        );
        // An unbound browser origin gets the browser default, and cannot pick another view.
        assert_eq!(
            ok(None, Some("https://claude.ai")).as_deref(),
            Ok("read-only")
        );
        assert!(matches!(
            ok(Some("all"), Some("https://claude.ai")),
            Err(ViewError::OriginBound { .. })
        ));
        assert!(matches!(
            ok(Some("all"), Some("https://app.example.com")),
            Err(ViewError::OriginBound { .. })
        ));
        assert!(v.sees_upstream("web", "a") && !v.sees_upstream("web", "b"));
        assert!(v.sees_upstream("all", "b") && !v.sees_upstream("gone", "a"));
    }

    #[test]
    fn browser_profile_sets_the_default_for_unbound_origins() {
        let v = views(&format!("[server]\nbrowser_profile = \"all\"\n\n{CONFIG}"));
        assert_eq!(
            v.resolve(None, Some("https://claude.ai")).unwrap().as_ref(),
            "all"
        );
        let names: Vec<&str> = v.all().map(|(n, _)| n.as_ref()).collect();
        assert_eq!(names, ["all", "read-only", "web"]);
        assert_eq!(
            describe_profile(v.get("web").unwrap()),
            "upstreams a; for origins https://app.example.com, https://*.example.org"
        );
        assert_eq!(
            describe_profile(v.get("read-only").unwrap()),
            "every upstream; read-only tools only"
        );
    }
}
