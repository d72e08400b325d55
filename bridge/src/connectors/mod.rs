//! claude.ai and ChatGPT connectors: the bridge as the OAuth 2.1 authorization server of its
//! public URL (`[server] public_url`, the tunnel's). Requests for that host need an access
//! token issued here, bound to the resource `<public_url><mcp_path>`; the grant behind a token
//! names the profile its connector sees.
//!
//! Where things live (SECURITY.md, "Connectors"): registrations and grants are in
//! `connectors.json` (config directory, 0600, atomic), with every token stored only as its
//! SHA-256; no signing key exists (tokens are opaque random strings, checked by hash). Codes,
//! consent requests and the answer to a just-rotated refresh token (kept for the grace window,
//! so a retried refresh gets the same pair) are in memory only. The owner password never
//! reaches the bridge's configuration: the consent page's password goes to the credential
//! agent, which compares it (`VerifyOwner`). `mcp-bridge connectors pair` opens a pairing
//! window instead (a file the running bridge reads under the same lock).

pub mod http;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::jsonfile::{self, Versioned, now};

pub const FILE_NAME: &str = "connectors.json";
const LOCK_NAME: &str = "connectors.lock";
/// The pairing window `mcp-bridge connectors pair` opens.
pub const PAIR_FILE: &str = "connectors-pair.json";
const VERSION: u32 = 1;
const WHAT: &str = "a connectors file";
/// Access tokens live an hour; refresh tokens 90 days from their last use.
pub const ACCESS_SECS: u64 = 3600;
const REFRESH_SECS: u64 = 90 * 86_400;
const CODE_SECS: u64 = 120;
const CONSENT_SECS: u64 = 600;
/// Registrations kept; clients that never completed a login are pruned first.
const MAX_CLIENTS: usize = 100;
const UNUSED_CLIENT_SECS: u64 = 3600;
const MAX_METADATA_BYTES: usize = 64 * 1024;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorFile {
    pub version: u32,
    #[serde(default)]
    pub clients: Vec<Registered>,
    #[serde(default)]
    pub grants: Vec<Grant>,
}

impl Default for ConnectorFile {
    fn default() -> Self {
        Self {
            version: VERSION,
            clients: Vec::new(),
            grants: Vec::new(),
        }
    }
}

impl Versioned for ConnectorFile {
    const VERSION: u32 = VERSION;
    fn version(&self) -> u32 {
        self.version
    }
}

/// A client registered dynamically (RFC 7591).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registered {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub created: u64,
}

/// A token's SHA-256 (hex) and when it stops being valid (Unix seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hashed {
    pub hash: String,
    pub expires: u64,
}

/// What the owner approved for one connector: its profile, and the token family.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub name: String,
    pub client_id: String,
    pub client_name: String,
    pub redirect_host: String,
    pub profile: String,
    pub resource: String,
    pub created: u64,
    pub refreshed: u64,
    pub refresh: Hashed,
    /// Refresh tokens this family replaced: (hash, when).
    #[serde(default)]
    pub superseded: Vec<(String, u64)>,
    #[serde(default)]
    pub access: Vec<Hashed>,
}

/// A client as the authorization endpoint knows it: registered, or described by its metadata
/// document (CIMD: the client id is the document's URL).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
}

/// A checked authorization request.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client: ClientInfo,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub resource: String,
}

impl AuthRequest {
    /// The host the browser is sent back to, shown on the consent page.
    pub fn redirect_host(&self) -> String {
        url::Url::parse(&self.redirect_uri)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default()
    }
}

struct Consent {
    request: AuthRequest,
    csrf: String,
    created: Instant,
}

struct Code {
    request: AuthRequest,
    profile: String,
    expires: u64,
}

/// Why an authorization request fails: shown on a page (client or redirect URI unknown: the
/// browser must not be sent anywhere), or sent back to the client's redirect URI.
#[derive(Debug)]
pub enum AuthorizeError {
    Page(String),
    Redirect(String),
}

/// An OAuth error answer (`error`, `error_description`) with its status.
#[derive(Debug)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub(crate) fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }

    fn grant(description: impl Into<String>) -> Self {
        Self::new(400, "invalid_grant", description)
    }

    pub fn body(&self) -> Value {
        json!({ "error": self.error, "error_description": self.description })
    }
}

/// 32 random bytes, base64url, behind `prefix` (so a leaked token says what it is).
fn token(prefix: &str) -> Result<String, OAuthError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| {
        OAuthError::new(
            500,
            "server_error",
            format!("no randomness from the OS: {e}"),
        )
    })?;
    Ok(format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn is_loopback_http(uri: &url::Url) -> bool {
    uri.scheme() == "http"
        && matches!(
            uri.host(),
            Some(url::Host::Domain("localhost"))
                | Some(url::Host::Ipv4(std::net::Ipv4Addr::LOCALHOST))
                | Some(url::Host::Ipv6(std::net::Ipv6Addr::LOCALHOST))
        )
}

/// A redirect URI a connector may register: https, or http on a loopback host (native apps).
fn acceptable_redirect(uri: &str) -> bool {
    url::Url::parse(uri)
        .is_ok_and(|u| u.fragment().is_none() && (u.scheme() == "https" || is_loopback_http(&u)))
}

/// The `redirect_uris` of a registration or a metadata document: 1 to 10, each acceptable.
fn redirect_uris(meta: &Value) -> Result<Vec<String>, String> {
    let uris: Vec<String> = meta
        .get("redirect_uris")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if uris.is_empty() || uris.len() > 10 {
        return Err("redirect_uris must list 1 to 10 URIs".into());
    }
    match uris.iter().find(|u| !acceptable_redirect(u)) {
        Some(u) => Err(format!(
            "redirect URI {u:?} must be https, or http on a loopback address"
        )),
        None => Ok(uris),
    }
}

/// Exact matching, except that a loopback redirect matches whatever its port (RFC 8252 §7.3).
pub fn redirect_matches(registered: &str, given: &str) -> bool {
    if registered == given {
        return true;
    }
    match (url::Url::parse(registered), url::Url::parse(given)) {
        (Ok(mut r), Ok(mut g)) if is_loopback_http(&r) && is_loopback_http(&g) => {
            let _ = r.set_port(None);
            let _ = g.set_port(None);
            r == g
        }
        _ => false,
    }
}

fn pkce_ok(challenge: &str, verifier: &str) -> bool {
    let digest = Sha256::digest(verifier.as_bytes());
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    (43..=128).contains(&verifier.len()) && computed == challenge
}

/// `host[:port]` of a URL or a Host header, lowercase, with the scheme's default port removed.
fn authority(host: &str, default_port: u16) -> String {
    let h = host.trim().to_ascii_lowercase();
    // `[v6]:port`, `name:port`, or no port (a bracketed v6 address alone has ':' only inside
    // its brackets).
    let (name, port) = match h.rsplit_once(':') {
        Some((name, port)) if !h.starts_with('[') || name.ends_with(']') => (name, Some(port)),
        _ => (h.as_str(), None),
    };
    let name = name.trim_end_matches('.');
    match port {
        Some(p) if p.parse::<u16>().ok() != Some(default_port) => format!("{name}:{p}"),
        _ => name.to_owned(),
    }
}

/// The pairing window: the next authorization within it is approved with `profile`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pairing {
    pub until: u64,
    pub profile: String,
    /// Filled by the bridge when it approved one: who it was.
    #[serde(default)]
    pub used_by: Option<String>,
}

pub struct Connectors {
    dir: PathBuf,
    /// The public URL: the issuer.
    pub issuer: String,
    /// `<public_url><mcp_path>`: the resource tokens are bound to.
    pub resource: String,
    pub mcp_path: String,
    public_authority: String,
    default_port: u16,
    allow_local_metadata: bool,
    /// A refresh token superseded less than this long ago gets the pair that replaced it again
    /// (clients retry a refresh whose answer they lost); after it, its reuse revokes the grant.
    grace_secs: u64,
    /// The file's content as last read (or why it is refused), and its stamp.
    file: Mutex<(Result<ConnectorFile, String>, Option<jsonfile::Stamp>)>,
    consents: Mutex<HashMap<String, Consent>>,
    codes: Mutex<HashMap<String, Code>>,
    /// Superseded refresh token hash → the answer that replaced it, until the grace ends.
    recent: Mutex<HashMap<String, (Value, u64)>>,
    metadata_cache: Mutex<HashMap<String, (ClientInfo, Instant)>>,
    fetches: tokio::sync::Semaphore,
    http: reqwest::Client,
}

impl std::fmt::Debug for Connectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connectors")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Connectors {
    /// The connector service of `config`, when it has a `public_url`.
    pub fn new(config: &proto::config::Config) -> Option<Arc<Self>> {
        let public = config.server.public_url.clone()?;
        let parsed = url::Url::parse(&public).ok()?;
        let default_port = parsed.port_or_known_default().unwrap_or(443);
        let host = match parsed.port() {
            Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or("")),
            None => parsed.host_str().unwrap_or("").to_owned(),
        };
        let dir = config.config_dir.clone();
        let connectors = Self {
            resource: format!("{public}{}", config.mcp_path),
            issuer: public,
            mcp_path: config.mcp_path.clone(),
            public_authority: authority(&host, default_port),
            default_port,
            allow_local_metadata: config.server.allow_local_client_metadata,
            grace_secs: config.server.connector_refresh_grace_secs,
            file: Mutex::new((Ok(ConnectorFile::default()), None)),
            consents: Mutex::new(HashMap::new()),
            codes: Mutex::new(HashMap::new()),
            recent: Mutex::new(HashMap::new()),
            metadata_cache: Mutex::new(HashMap::new()),
            fetches: tokio::sync::Semaphore::new(4),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap_or_default(),
            dir,
        };
        connectors.reload();
        Some(Arc::new(connectors))
    }

    fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The public host, for the Host allowlist.
    pub fn public_host(&self) -> &str {
        &self.public_authority
    }

    /// Whether `origin` is the public URL's own (or `null`, what a browser sends for a form
    /// posted from a page that hides its referrer).
    pub fn is_own_origin(&self, origin: &str) -> bool {
        origin == "null" || origin.trim_end_matches('/') == self.issuer
    }

    /// Whether a request's `Host` is the public URL's.
    pub fn is_public(&self, host: &str) -> bool {
        authority(host, self.default_port) == self.public_authority
    }

    fn reload(&self) {
        let stamp = jsonfile::stamp(&self.path());
        let content = match jsonfile::read::<ConnectorFile>(&self.path(), WHAT) {
            Ok(f) => Ok(f.unwrap_or_default()),
            Err(e) => {
                tracing::error!(error = %e, "connectors refused: no connector can authenticate until the file is fixed or removed");
                Err(e)
            }
        };
        *self.file.lock() = (content, stamp);
    }

    fn reload_if_changed(&self) {
        if self.file.lock().1 != jsonfile::stamp(&self.path()) {
            self.reload();
        }
    }

    /// Changes the file under its lock (re-read first), keeping the in-memory copy current.
    fn update<R>(
        &self,
        change: impl FnOnce(&mut ConnectorFile) -> (bool, R),
    ) -> Result<R, OAuthError> {
        let out = jsonfile::update(&self.path(), &self.dir.join(LOCK_NAME), WHAT, change)
            .map_err(|e| OAuthError::new(500, "server_error", e))?;
        self.reload();
        Ok(out)
    }

    /// Why connectors cannot work now, if they cannot.
    pub fn refused(&self) -> Option<String> {
        self.file.lock().0.as_ref().err().cloned()
    }

    /// What `status` shows: the public URL and how many connectors have access.
    pub fn summary(&self) -> Value {
        self.reload_if_changed();
        let file = self.file.lock();
        match &file.0 {
            Ok(f) => json!({
                "public_url": self.issuer,
                "resource": self.resource,
                "grants": f.grants.iter().map(|g| json!({"name": g.name, "client": g.client_name, "profile": g.profile})).collect::<Vec<_>>(),
                "registered_clients": f.clients.len(),
            }),
            Err(e) => json!({ "public_url": self.issuer, "error": e }),
        }
    }

    /// RFC 7591 registration of a public client.
    pub fn register(&self, meta: &Value) -> Result<Value, OAuthError> {
        let bad = |d: String| OAuthError::new(400, "invalid_client_metadata", d);
        let uris =
            redirect_uris(meta).map_err(|e| OAuthError::new(400, "invalid_redirect_uri", e))?;
        // A client asking for a secret (claude.ai has asked for `client_secret_post`) is
        // registered as a public client, as RFC 7591 §3.2.1 lets a server decide; the answer
        // says so, and PKCE protects its codes.
        if let Some(m) = meta
            .get("token_endpoint_auth_method")
            .and_then(Value::as_str)
            && m != "none"
        {
            tracing::debug!(
                asked = m,
                "registering a client as public (token_endpoint_auth_method none)"
            );
        }
        let name: String = meta
            .get("client_name")
            .and_then(Value::as_str)
            .unwrap_or("unnamed client")
            .chars()
            .filter(|c| !c.is_control())
            .take(80)
            .collect();
        let client_id = token("mcpb_client_")?;
        let created = now();
        let record = Registered {
            client_id: client_id.clone(),
            client_name: name.clone(),
            redirect_uris: uris.clone(),
            created,
        };
        self.update(|f| {
            // Claude registers a client per fresh connection: forget the ones that never
            // completed a login, oldest first, to stay under the quota.
            let granted: std::collections::HashSet<String> =
                f.grants.iter().map(|g| g.client_id.clone()).collect();
            f.clients.retain(|c| {
                granted.contains(&c.client_id)
                    || created.saturating_sub(c.created) < UNUSED_CLIENT_SECS
            });
            while f.clients.len() >= MAX_CLIENTS {
                match f.clients.iter().position(|c| !granted.contains(&c.client_id)) {
                    Some(i) => {
                        f.clients.remove(i);
                    }
                    None => return (false, false),
                }
            }
            f.clients.push(record);
            (true, true)
        })
        .and_then(|added| {
            if added {
                Ok(())
            } else {
                Err(bad(format!(
                    "{MAX_CLIENTS} connectors hold grants already; revoke unused ones with `mcp-bridge connectors revoke NAME`"
                )))
            }
        })?;
        tracing::info!(client = %name, "a connector registered");
        Ok(json!({
            "client_id": client_id,
            "client_id_issued_at": created,
            "client_name": name,
            "redirect_uris": uris,
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }))
    }

    /// The client behind `client_id`: registered here, or (a URL) its metadata document.
    async fn client(&self, client_id: &str) -> Result<ClientInfo, String> {
        if client_id.starts_with("https://") || client_id.starts_with("http://") {
            return self.metadata_document(client_id).await;
        }
        self.reload_if_changed();
        let file = self.file.lock();
        let f = file.0.as_ref().map_err(Clone::clone)?;
        f.clients
            .iter()
            .find(|c| c.client_id == client_id)
            .map(|c| ClientInfo {
                client_id: c.client_id.clone(),
                client_name: c.client_name.clone(),
                redirect_uris: c.redirect_uris.clone(),
            })
            .ok_or_else(|| {
                format!(
                    "no client {client_id:?} is registered here; the connector must register again"
                )
            })
    }

    /// Fetches a Client ID Metadata Document: https only (or a local address when
    /// `allow_local_client_metadata`), no redirects, 5 s, 64 KiB; its `client_id` must be its
    /// URL. Cached five minutes.
    async fn metadata_document(&self, url: &str) -> Result<ClientInfo, String> {
        if let Some((c, at)) = self.metadata_cache.lock().get(url)
            && at.elapsed() < Duration::from_secs(300)
        {
            return Ok(c.clone());
        }
        let parsed =
            url::Url::parse(url).map_err(|e| format!("client id {url:?} is not a URL: {e}"))?;
        if parsed.scheme() != "https" && !self.allow_local_metadata {
            return Err(format!(
                "client metadata document {url} must be served over https"
            ));
        }
        if parsed.path().len() <= 1 || parsed.fragment().is_some() {
            return Err(format!(
                "client metadata document URL {url} needs a path and no fragment"
            ));
        }
        // A few fetches at a time: anyone can name a document URL.
        let _permit = self.fetches.try_acquire().map_err(|_| {
            "too many client metadata documents are being fetched; try again".to_owned()
        })?;
        proto::netguard::check_url(
            url,
            self.allow_local_metadata,
            "[server] allow_local_client_metadata = true",
        )
        .await?;
        let mut resp = self
            .http
            .get(url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| format!("cannot fetch the client metadata document {url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!(
                "the client metadata document {url} answered {}",
                resp.status()
            ));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| format!("reading {url}: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_METADATA_BYTES {
                return Err(format!(
                    "the client metadata document {url} is larger than 64 KiB"
                ));
            }
        }
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("the client metadata document {url} is not JSON: {e}"))?;
        if doc.get("client_id").and_then(Value::as_str) != Some(url) {
            return Err(format!(
                "the client metadata document {url} names another client_id"
            ));
        }
        if let Some(m) = doc
            .get("token_endpoint_auth_method")
            .and_then(Value::as_str)
            && m != "none"
        {
            return Err(format!(
                "the client metadata document {url} asks for token_endpoint_auth_method {m:?}; this server takes public clients (\"none\")"
            ));
        }
        let redirect_uris =
            redirect_uris(&doc).map_err(|e| format!("the client metadata document {url}: {e}"))?;
        let info = ClientInfo {
            client_id: url.to_owned(),
            client_name: doc
                .get("client_name")
                .and_then(Value::as_str)
                .unwrap_or(parsed.host_str().unwrap_or("client"))
                .chars()
                .filter(|c| !c.is_control())
                .take(80)
                .collect(),
            redirect_uris,
        };
        let mut cache = self.metadata_cache.lock();
        cache.retain(|_, (_, at)| at.elapsed() < Duration::from_secs(300));
        if cache.len() >= 256
            && let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, (_, at))| *at)
                .map(|(k, _)| k.clone())
        {
            cache.remove(&oldest);
        }
        cache.insert(url.to_owned(), (info.clone(), Instant::now()));
        Ok(info)
    }

    /// Checks an authorization request (the query of `GET /authorize`).
    pub async fn check_authorize(
        &self,
        q: &HashMap<String, String>,
    ) -> Result<AuthRequest, AuthorizeError> {
        let page = |m: String| AuthorizeError::Page(m);
        let client_id = q
            .get("client_id")
            .ok_or_else(|| page("the request names no client_id".into()))?;
        let client = self.client(client_id).await.map_err(page)?;
        let redirect_uri = match q.get("redirect_uri") {
            Some(r) => r.clone(),
            None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
            None => return Err(page("the request names no redirect_uri".into())),
        };
        if !client
            .redirect_uris
            .iter()
            .any(|r| redirect_matches(r, &redirect_uri))
        {
            return Err(page(format!(
                "redirect_uri {redirect_uri:?} is not one {} registered",
                client.client_name
            )));
        }
        let state = q.get("state").cloned();
        let back = |error: &str, description: &str| {
            AuthorizeError::Redirect(self.redirect_to(
                &redirect_uri,
                &[("error", error), ("error_description", description)],
                state.as_deref(),
            ))
        };
        if q.get("response_type").map(String::as_str) != Some("code") {
            return Err(back(
                "unsupported_response_type",
                "only response_type=code is supported",
            ));
        }
        let Some(challenge) = q.get("code_challenge").filter(|c| !c.is_empty()) else {
            return Err(back(
                "invalid_request",
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        };
        if q.get("code_challenge_method").map(String::as_str) != Some("S256") {
            return Err(back(
                "invalid_request",
                "code_challenge_method must be S256",
            ));
        }
        let resource = match q.get("resource") {
            None => self.resource.clone(),
            Some(r) if r.trim_end_matches('/') == self.resource => self.resource.clone(),
            Some(_) => {
                return Err(back(
                    "invalid_target",
                    &format!("this server issues tokens for {} only", self.resource),
                ));
            }
        };
        Ok(AuthRequest {
            client,
            redirect_uri,
            state,
            code_challenge: challenge.clone(),
            resource,
        })
    }

    /// The client's redirect URI with `params`, its `state` and our `iss` (RFC 9207).
    pub fn redirect_to(
        &self,
        redirect_uri: &str,
        params: &[(&str, &str)],
        state: Option<&str>,
    ) -> String {
        let Ok(mut u) = url::Url::parse(redirect_uri) else {
            return redirect_uri.to_owned();
        };
        {
            let mut q = u.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(s) = state {
                q.append_pair("state", s);
            }
            q.append_pair("iss", &self.issuer);
        }
        u.into()
    }

    /// Parks a request for the consent page: its id and CSRF token.
    pub fn begin_consent(&self, request: AuthRequest) -> Result<(String, String), OAuthError> {
        let (id, csrf) = (token("")?, token("")?);
        let mut consents = self.consents.lock();
        consents.retain(|_, c| c.created.elapsed() < Duration::from_secs(CONSENT_SECS));
        if consents.len() >= 100 {
            return Err(OAuthError::new(
                503,
                "temporarily_unavailable",
                "too many consent pages are open; try again in a few minutes",
            ));
        }
        consents.insert(
            id.clone(),
            Consent {
                request,
                csrf: csrf.clone(),
                created: Instant::now(),
            },
        );
        Ok((id, csrf))
    }

    /// The parked request `id` if `csrf` is its token (the form's and the cookie's); it stays
    /// parked (a wrong password may be retried) until [`end_consent`](Self::end_consent).
    pub fn consent(&self, id: &str, csrf: &str) -> Option<AuthRequest> {
        let consents = self.consents.lock();
        let c = consents.get(id)?;
        let same = crate::guard::constant_time_eq(c.csrf.as_bytes(), csrf.as_bytes());
        (same && c.created.elapsed() < Duration::from_secs(CONSENT_SECS)).then(|| c.request.clone())
    }

    pub fn end_consent(&self, id: &str) {
        self.consents.lock().remove(id);
    }

    /// Takes the pairing window if one is open and its profile passes `exists`: its profile.
    /// Marks it used by `who`.
    pub fn take_pairing(&self, who: &str, exists: impl Fn(&str) -> bool) -> Option<String> {
        let path = self.dir.join(PAIR_FILE);
        let _lock = jsonfile::exclusive(&self.dir.join(LOCK_NAME)).ok()?;
        let mut pairing: Pairing = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
        if pairing.used_by.is_some() || pairing.until < now() {
            return None;
        }
        if !exists(&pairing.profile) {
            tracing::warn!(profile = %pairing.profile, "the pairing window names a profile this bridge does not have (reload it with SIGHUP); not approving");
            return None;
        }
        pairing.used_by = Some(who.to_owned());
        let bytes = serde_json::to_vec(&pairing).ok()?;
        logfile::write_atomic(&path, &bytes, 0o600).ok()?;
        Some(pairing.profile)
    }

    /// A single-use code for an approved request.
    pub fn issue_code(&self, request: AuthRequest, profile: String) -> Result<String, OAuthError> {
        let code = token("mcpb_code_")?;
        let mut codes = self.codes.lock();
        let t = now();
        codes.retain(|_, c| c.expires > t);
        codes.insert(
            hash(&code),
            Code {
                request,
                profile,
                expires: t + CODE_SECS,
            },
        );
        Ok(code)
    }

    /// A new access token (and the refresh token given) as the token endpoint answers them.
    fn answer(access: &str, refresh: &str) -> Value {
        json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ACCESS_SECS,
            "refresh_token": refresh,
        })
    }

    /// `grant_type=authorization_code`.
    pub fn exchange_code(&self, form: &HashMap<String, String>) -> Result<Value, OAuthError> {
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        let Some(code) = self.codes.lock().remove(&hash(field("code"))) else {
            return Err(OAuthError::grant("the code is unknown, used or expired"));
        };
        if code.expires < now() {
            return Err(OAuthError::grant("the code expired"));
        }
        let r = &code.request;
        if field("client_id") != r.client.client_id {
            return Err(OAuthError::grant("the code was issued to another client"));
        }
        if field("redirect_uri") != r.redirect_uri && form.contains_key("redirect_uri") {
            return Err(OAuthError::grant(
                "redirect_uri differs from the authorization request's",
            ));
        }
        if !pkce_ok(&r.code_challenge, field("code_verifier")) {
            return Err(OAuthError::grant(
                "code_verifier does not match the code_challenge",
            ));
        }
        if let Some(res) = form.get("resource")
            && res.trim_end_matches('/') != r.resource
        {
            return Err(OAuthError::new(
                400,
                "invalid_target",
                format!("this code is for {}", r.resource),
            ));
        }
        let (access, refresh) = (token("mcpb_at_")?, token("mcpb_rt_")?);
        let t = now();
        let base: String = r
            .client
            .client_name
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
            .trim_matches('-')
            .chars()
            .take(32)
            .collect();
        let base = if base.is_empty() {
            "connector".to_owned()
        } else {
            base
        };
        let name = self.update(|f| {
            let mut n = 1;
            while f.grants.iter().any(|g| g.name == format!("{base}-{n}")) {
                n += 1;
            }
            let name = format!("{base}-{n}");
            f.grants.push(Grant {
                name: name.clone(),
                client_id: r.client.client_id.clone(),
                client_name: r.client.client_name.clone(),
                redirect_host: r.redirect_host(),
                profile: code.profile.clone(),
                resource: r.resource.clone(),
                created: t,
                refreshed: t,
                refresh: Hashed {
                    hash: hash(&refresh),
                    expires: t + REFRESH_SECS,
                },
                superseded: Vec::new(),
                access: vec![Hashed {
                    hash: hash(&access),
                    expires: t + ACCESS_SECS,
                }],
            });
            (true, name)
        })?;
        tracing::info!(grant = %name, client = %r.client.client_name, profile = %code.profile, "a connector was granted access");
        Ok(Self::answer(&access, &refresh))
    }

    /// `grant_type=refresh_token`: rotation; a superseded token inside the grace window gets
    /// the same new pair, after it revokes the grant.
    pub fn refresh(&self, form: &HashMap<String, String>) -> Result<Value, OAuthError> {
        let given = hash(form.get("refresh_token").map(String::as_str).unwrap_or(""));
        let client_id = form.get("client_id").cloned().unwrap_or_default();
        let t = now();
        let grace = self.grace_secs;
        let (access, refresh) = (token("mcpb_at_")?, token("mcpb_rt_")?);
        enum Outcome {
            Rotated(String, Value),
            Retried(Value),
            Reused(String),
            Unknown,
        }
        // Everything is decided under the file's lock, so two refreshes with one token (a
        // client's retry racing its first try) are a rotation and a retry, never a reuse.
        let outcome = self.update(|f| {
            let mut recent = self.recent.lock();
            recent.retain(|_, (_, until)| *until >= t);
            if let Some(i) = f.grants.iter().position(|g| {
                g.client_id == client_id && g.superseded.iter().any(|(h, _)| *h == given)
            }) {
                let at = f.grants[i]
                    .superseded
                    .iter()
                    .find(|(h, _)| *h == given)
                    .map_or(0, |(_, at)| *at);
                if t.saturating_sub(at) <= grace {
                    // A retry inside the grace window gets the pair that replaced the token;
                    // one whose answer this process no longer has (a restart) gets an error
                    // and revokes nothing.
                    return (
                        false,
                        recent
                            .get(&given)
                            .map_or(Outcome::Unknown, |(a, _)| Outcome::Retried(a.clone())),
                    );
                }
                // A superseded token after its grace window: the family is compromised.
                let g = f.grants.remove(i);
                return (true, Outcome::Reused(g.name));
            }
            let Some(g) = f
                .grants
                .iter_mut()
                .find(|g| g.refresh.hash == given && g.client_id == client_id)
            else {
                return (false, Outcome::Unknown);
            };
            if g.refresh.expires < t {
                return (false, Outcome::Unknown);
            }
            g.superseded.push((std::mem::take(&mut g.refresh.hash), t));
            g.superseded
                .retain(|(_, at)| t.saturating_sub(*at) < REFRESH_SECS);
            if g.superseded.len() > 50 {
                g.superseded.remove(0);
            }
            g.refresh = Hashed {
                hash: hash(&refresh),
                expires: t + REFRESH_SECS,
            };
            g.access.retain(|a| a.expires > t);
            g.access.push(Hashed {
                hash: hash(&access),
                expires: t + ACCESS_SECS,
            });
            g.refreshed = t;
            let answer = Self::answer(&access, &refresh);
            recent.insert(given.clone(), (answer.clone(), t + grace));
            (true, Outcome::Rotated(g.name.clone(), answer))
        })?;
        match outcome {
            Outcome::Rotated(name, answer) => {
                tracing::debug!(grant = %name, "a connector's tokens were rotated");
                Ok(answer)
            }
            Outcome::Retried(answer) => Ok(answer),
            Outcome::Reused(name) => {
                tracing::warn!(grant = %name, "a superseded refresh token was used after the grace window; the grant is revoked");
                Err(OAuthError::grant(
                    "the refresh token was already used; the grant is revoked, connect again",
                ))
            }
            Outcome::Unknown => Err(OAuthError::grant(
                "the refresh token is unknown, expired or revoked",
            )),
        }
    }

    /// RFC 7009: an access token ends; a refresh token ends its grant.
    pub fn revoke(&self, token: &str) -> Result<(), OAuthError> {
        let h = hash(token);
        self.update(|f| {
            let before = f.grants.len();
            f.grants.retain(|g| g.refresh.hash != h);
            let mut changed = before != f.grants.len();
            for g in &mut f.grants {
                let n = g.access.len();
                g.access.retain(|a| a.hash != h);
                changed |= n != g.access.len();
            }
            (changed, ())
        })
    }

    /// The profile a bearer token on the public URL is served, or `None` (401).
    pub fn authenticate(&self, bearer: &str) -> Option<Arc<str>> {
        self.reload_if_changed();
        let h = hash(bearer);
        let t = now();
        let file = self.file.lock();
        let f = file.0.as_ref().ok()?;
        f.grants
            .iter()
            .find(|g| g.access.iter().any(|a| a.hash == h && a.expires > t))
            .filter(|g| g.resource == self.resource)
            .map(|g| g.profile.as_str().into())
    }
}

/// The connectors file of `dir` (empty when there is none), or why it is refused.
pub fn read(dir: &Path) -> Result<ConnectorFile, String> {
    Ok(jsonfile::read(&dir.join(FILE_NAME), WHAT)?.unwrap_or_default())
}

/// `mcp-bridge connectors list`.
pub fn describe(dir: &Path) -> Result<String, String> {
    let f = read(dir)?;
    let mut out = String::new();
    if f.grants.is_empty() {
        out.push_str("no connector has access (add one: README, \"claude.ai and ChatGPT\")\n");
    } else {
        out.push_str(&format!(
            "{:<24} {:<24} {:<28} {:<12} {:<20}\n",
            "NAME", "CLIENT", "REDIRECTS TO", "PROFILE", "LAST REFRESH"
        ));
    }
    for g in &f.grants {
        out.push_str(&format!(
            "{:<24} {:<24} {:<28} {:<12} {:<20}\n",
            g.name,
            g.client_name,
            g.redirect_host,
            g.profile,
            ago(g.refreshed)
        ));
    }
    let waiting = f
        .clients
        .iter()
        .filter(|c| !f.grants.iter().any(|g| g.client_id == c.client_id))
        .count();
    if waiting > 0 {
        out.push_str(&format!(
            "{waiting} registered client(s) without a grant (pruned after an hour)\n"
        ));
    }
    Ok(out)
}

fn ago(t: u64) -> String {
    let s = now().saturating_sub(t);
    match s {
        0..60 => format!("{s} s ago"),
        60..3600 => format!("{} min ago", s / 60),
        3600..86_400 => format!("{} h ago", s / 3600),
        _ => format!("{} days ago", s / 86_400),
    }
}

/// `mcp-bridge connectors revoke NAME`: the grant and every token of it end at once.
pub fn revoke_grant(dir: &Path, name: &str) -> Result<(), String> {
    let removed = jsonfile::update(
        &dir.join(FILE_NAME),
        &dir.join(LOCK_NAME),
        WHAT,
        |f: &mut ConnectorFile| {
            let before = f.grants.len();
            f.grants.retain(|g| g.name != name);
            let removed = before != f.grants.len();
            (removed, removed)
        },
    )?;
    if removed {
        Ok(())
    } else {
        Err(format!(
            "no connector named {name:?}; `mcp-bridge connectors list` shows them"
        ))
    }
}

/// `mcp-bridge connectors pair`: opens the window for `secs` and waits for the bridge to use
/// it; who it approved, or `None` when nobody came.
pub fn pair(dir: &Path, profile: &str, secs: u64) -> Result<Option<String>, String> {
    let path = dir.join(PAIR_FILE);
    let write = |p: &Pairing| {
        let bytes = serde_json::to_vec(p).map_err(|e| e.to_string())?;
        logfile::write_atomic(&path, &bytes, 0o600)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    write(&Pairing {
        until: now() + secs,
        profile: profile.to_owned(),
        used_by: None,
    })?;
    let used_by = || {
        std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Pairing>(&b).ok())
            .and_then(|p| p.used_by)
    };
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        if let Some(who) = used_by() {
            let _ = std::fs::remove_file(&path);
            return Ok(Some(who));
        }
    }
    // The last look and the close happen under the bridge's lock, so an approval cannot slip
    // in between them unreported.
    let _lock = jsonfile::exclusive(&dir.join(LOCK_NAME))?;
    let who = used_by();
    let _ = std::fs::remove_file(&path);
    Ok(who)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_redirects_match_whatever_the_port_and_others_exactly() {
        assert!(redirect_matches(
            "http://127.0.0.1/callback",
            "http://127.0.0.1:53121/callback"
        ));
        assert!(redirect_matches(
            "http://localhost:1/cb",
            "http://localhost:2/cb"
        ));
        assert!(!redirect_matches(
            "http://localhost/cb",
            "http://localhost:2/other"
        ));
        assert!(!redirect_matches(
            "https://claude.ai/api/mcp/auth_callback",
            "https://claude.ai/api/mcp/auth_callback/x"
        ));
        assert!(!redirect_matches(
            "https://a.example/cb",
            "https://a.example:444/cb"
        ));
        assert!(acceptable_redirect(
            "https://claude.ai/api/mcp/auth_callback"
        ));
        assert!(acceptable_redirect("http://[::1]:9/cb"));
        assert!(!acceptable_redirect("http://evil.example/cb"));
        assert!(!acceptable_redirect("https://a.example/cb#frag"));
    }

    #[test]
    fn pkce_is_s256_of_the_verifier() {
        // RFC 7636 appendix B.
        assert!(pkce_ok(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
        ));
        assert!(!pkce_ok(
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
            "short"
        ));
    }

    #[test]
    fn authorities_compare_without_default_ports() {
        assert_eq!(authority("X.Example:443", 443), "x.example");
        assert_eq!(authority("x.example", 443), "x.example");
        assert_eq!(authority("127.0.0.1:8769", 80), "127.0.0.1:8769");
        assert_eq!(authority("[::1]:443", 443), "[::1]");
        assert_eq!(authority("[::1]", 443), "[::1]");
        assert_eq!(authority("x.example.:443", 443), "x.example");
        assert_eq!(authority("x.example.", 443), "x.example");
    }
}
