//! The agent's state: logins, single-flight refresh, background refresh at ~80% of a token's
//! lifetime, and the answers to every IPC request. The only place secrets live.
//!
//! Invariants: a rotated refresh token is persisted before the new access token is handed out
//! (a kill -9 right after a rotation loses nothing); one refresh at a time per upstream; the
//! refresh token never leaves this process.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::config::{Auth, AuthKind, Config, Transport};
use proto::{AgentError, Request, Response, UpstreamStatus};
use tokio::sync::watch;

use crate::consent::{self, OwnerPassword};
use crate::oauth::{self, Discovered, OAuthError};
#[cfg(test)]
use crate::store::FileStore;
use crate::store::{self, Secret, TokenStore};

/// When the background refresher renews a login: at 80% of the access token's life, and
/// never sooner than [`MIN_REFRESH_GAP_SECS`] after it was issued, so a server handing out
/// tokens that expire at once is not hammered.
fn refresh_due(l: &store::Login) -> u64 {
    let life = l.expires_at.saturating_sub(l.issued_at);
    l.issued_at
        .saturating_add((life / 5).saturating_mul(4).max(MIN_REFRESH_GAP_SECS))
}

const MIN_REFRESH_GAP_SECS: u64 = 5;

/// Automatic re-logins after `invalid_grant` are at least this far apart per upstream.
const AUTO_LOGIN_GAP: std::time::Duration = std::time::Duration::from_secs(60);

/// True (and noted) if `upstream` had no automatic login of this kind in the last
/// [`AUTO_LOGIN_GAP`]; false otherwise.
fn first_in_a_while(last: &Mutex<HashMap<String, std::time::Instant>>, upstream: &str) -> bool {
    let mut last = last.lock();
    if last
        .get(upstream)
        .is_some_and(|t| t.elapsed() < AUTO_LOGIN_GAP)
    {
        return false;
    }
    last.insert(upstream.to_owned(), std::time::Instant::now());
    true
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An OAuth upstream from the configuration.
#[derive(Debug, Clone)]
pub struct OAuthUpstream {
    pub url: String,
    pub scopes: Vec<String>,
    pub send_resource: bool,
    pub client_id: Option<String>,
    /// `client_metadata_url`: this client's metadata document (CIMD), used as its id where the
    /// authorization server supports that.
    pub client_metadata_url: Option<String>,
    /// `allow_local_oauth`: the OAuth endpoints may be on local or private addresses.
    pub allow_local: bool,
}

struct PendingLogin {
    upstream: String,
    verifier: oauth2::PkceCodeVerifier,
    discovered: Discovered,
    creds: oauth::ClientCreds,
}

pub struct Agent {
    /// The OAuth upstreams of the configuration (replaced on SIGHUP).
    upstreams: parking_lot::RwLock<BTreeMap<String, OAuthUpstream>>,
    redirect_uri: String,
    store: TokenStore,
    /// Why the last write of the store failed (a locked keychain), and when it was tried: the
    /// logins are then only in memory, and the write is tried again.
    unsaved: Mutex<Option<(String, std::time::Instant)>>,
    state: tokio::sync::Mutex<store::State>,
    /// One refresh at a time per upstream.
    refresh_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Upstreams with a background refresher running.
    refreshers: Mutex<std::collections::HashSet<String>>,
    http: reqwest::Client,
    password: OwnerPassword,
    pending: Mutex<HashMap<String, PendingLogin>>,
    /// When each upstream last got an automatic re-login after `invalid_grant`.
    auto_logins: Mutex<HashMap<String, std::time::Instant>>,
    /// Scopes upstreams asked for with 403 `insufficient_scope`, added to every later login
    /// (in memory; granted scopes are in the store and asked for again anyway).
    extra_scopes: Mutex<HashMap<String, Vec<String>>>,
    /// When each upstream last had a step-up login.
    step_ups: Mutex<HashMap<String, std::time::Instant>>,
    /// Bumped when a login changes, to wake the background refreshers.
    changed: watch::Sender<u64>,
    /// When `VerifyOwner` last failed (the last minute's).
    owner_failures: Mutex<Vec<std::time::Instant>>,
}

/// The OAuth upstreams a configuration names.
fn oauth_upstreams(config: &Config) -> BTreeMap<String, OAuthUpstream> {
    config
        .upstreams
        .iter()
        .filter_map(|u| match &u.transport {
            Transport::Http {
                url,
                auth: Auth::Named(AuthKind::Oauth),
                scopes,
                resource,
                client_id,
                client_metadata_url,
                allow_local_oauth,
                ..
            } => Some((
                u.name.clone(),
                OAuthUpstream {
                    url: url.clone(),
                    scopes: scopes.clone(),
                    send_resource: *resource,
                    client_id: client_id.clone(),
                    client_metadata_url: client_metadata_url.clone(),
                    allow_local: *allow_local_oauth,
                },
            )),
            _ => None,
        })
        .collect()
}

fn creds_of(l: &store::Login) -> oauth::ClientCreds {
    oauth::ClientCreds {
        client_id: l.client_id.clone(),
        client_secret: l.client_secret.as_ref().map(|s| s.expose().to_owned()),
        method: oauth::AuthMethod::parse(l.auth_method.as_deref().unwrap_or("none")),
    }
}

fn fingerprint_of(l: &store::Login) -> Option<String> {
    l.access_token
        .as_ref()
        .map(|t| proto::token_fingerprint(t.expose()))
}

fn needs_login(upstream: &str) -> AgentError {
    AgentError::NeedsLogin {
        upstream: upstream.to_owned(),
        how: format!("mcp-cred-agent login {upstream}"),
    }
}

impl Agent {
    /// Loads the store; a store with a bad mode, owner or content is refused.
    pub fn new(config: &Config, password: OwnerPassword) -> Result<Arc<Self>, store::StoreError> {
        let upstreams = oauth_upstreams(config);
        let (store, state) = TokenStore::open(
            &config.config_dir,
            config.agent.store,
            crate::keychain::platform_store,
        )?;
        tracing::info!(store = %store.describe(), logins = state.upstreams.len(), "token store loaded");
        Ok(Arc::new(Self {
            redirect_uri: format!("http://127.0.0.1:{}/oauth/callback", config.port),
            upstreams: parking_lot::RwLock::new(upstreams),
            store,
            unsaved: Mutex::new(None),
            state: tokio::sync::Mutex::new(state),
            refresh_locks: Mutex::new(HashMap::new()),
            refreshers: Mutex::new(Default::default()),
            http: oauth::http_client(),
            password,
            pending: Mutex::new(HashMap::new()),
            auto_logins: Mutex::new(HashMap::new()),
            extra_scopes: Mutex::new(HashMap::new()),
            step_ups: Mutex::new(HashMap::new()),
            changed: watch::Sender::new(0),
            owner_failures: Mutex::new(Vec::new()),
        }))
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    /// Writes the store. A failure (a locked keychain, a full disk) keeps the logins in memory,
    /// says so loudly, and is retried by [`retry_unsaved`](Self::retry_unsaved).
    fn persist(&self, st: &store::State) {
        match self.store.save(st) {
            Ok(()) => {
                if self.unsaved.lock().take().is_some() {
                    tracing::info!(store = %self.store.describe(), "the token store is written again");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot write the token store; the new tokens are kept in memory and written when it works again (until then a restart of mcp-cred-agent would lose them)");
                *self.unsaved.lock() = Some((e.to_string(), std::time::Instant::now()));
            }
        }
    }

    /// [`persist`](Self::persist), answering the write's error.
    fn persisted(&self, st: &store::State) -> Result<(), String> {
        self.persist(st);
        match self.unsaved.lock().as_ref() {
            Some((e, _)) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// Tries a failed store write again, at most every 10 s.
    async fn retry_unsaved(&self) {
        // Claimed under the lock, so concurrent callers do not each try (a keychain call can
        // take up to its 20 s deadline).
        let due = self.unsaved.lock().as_mut().is_some_and(|(_, at)| {
            let due = at.elapsed() >= Duration::from_secs(10);
            if due {
                *at = std::time::Instant::now();
            }
            due
        });
        if due {
            let st = self.state.lock().await;
            self.persist(&st);
        }
    }

    pub async fn handle(&self, request: Request) -> Response {
        let result = match request {
            Request::GetToken {
                upstream,
                min_valid_for_secs,
            } => self.get_token(&upstream, min_valid_for_secs).await,
            Request::TokenRejected {
                upstream,
                token_fingerprint,
            } => self.token_rejected(&upstream, &token_fingerprint).await,
            Request::ScopeRequired {
                upstream,
                challenge,
            } => self.scope_required(&upstream, &challenge).await,
            Request::Login { upstream } => self.login(&upstream).await,
            Request::CompleteLogin {
                state,
                code,
                error,
                iss,
            } => self.complete_login(&state, code, error, iss).await,
            Request::Logout { upstream } => self.logout(&upstream).await,
            Request::Status => Ok(self.status().await),
            Request::VerifyOwner { password } => self.verify_owner(&password.0).await,
        };
        result.unwrap_or_else(|error| Response::Error { error })
    }

    /// The machine slept for about `gap`: the refreshers' waits were measured on a clock that
    /// stopped, so they look again now and refresh what expired meanwhile.
    pub fn resumed(&self, gap: Duration) {
        tracing::info!(
            asleep_secs = gap.as_secs(),
            "the system resumed; refreshing tokens that expired meanwhile"
        );
        self.changed.send_modify(|n| *n += 1);
    }

    /// The connector consent page's password check: constant-time against the owner password;
    /// at most 5 failures a minute (the page is on the public URL).
    async fn verify_owner(&self, given: &str) -> Result<Response, AgentError> {
        let not_owner = |reason: &str| AgentError::NotOwner {
            reason: reason.to_owned(),
        };
        {
            let mut f = self.owner_failures.lock();
            let now = std::time::Instant::now();
            f.retain(|t| now.duration_since(*t) < Duration::from_secs(60));
            if f.len() >= 5 {
                return Err(not_owner(
                    "too many wrong passwords; wait a minute and try again",
                ));
            }
        }
        let expected = self.password.read().await.map_err(|e| not_owner(&e))?;
        let Some(expected) = expected else {
            return Err(not_owner(
                "no owner password is set for mcp-cred-agent (MCP_BRIDGE_OWNER_PASSWORD or MCP_BRIDGE_OWNER_PASSWORD_OP_REF); approve with `mcp-bridge connectors pair` instead",
            ));
        };
        let (a, b) = (expected.expose().as_bytes(), given.as_bytes());
        let same =
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        if same {
            Ok(Response::Ack)
        } else {
            self.owner_failures.lock().push(std::time::Instant::now());
            tracing::warn!("a connector consent was refused: wrong owner password");
            Err(not_owner("wrong owner password"))
        }
    }

    fn known(&self, upstream: &str) -> Result<OAuthUpstream, AgentError> {
        self.upstreams
            .read()
            .get(upstream)
            .cloned()
            .ok_or_else(|| AgentError::UnknownUpstream {
                upstream: upstream.to_owned(),
            })
    }

    /// The lock that keeps refreshes (and the re-logins after them) of `upstream` one at a time.
    fn refresh_lock(&self, upstream: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.refresh_locks
            .lock()
            .entry(upstream.to_owned())
            .or_default()
            .clone()
    }

    fn names(&self) -> Vec<String> {
        self.upstreams.read().keys().cloned().collect()
    }

    /// Applies a re-read configuration (SIGHUP): new OAuth upstreams become known (and get a
    /// background refresher), removed ones are forgotten by the agent's answers (their logins
    /// stay in the store, so putting an upstream back needs no new login), changed ones take
    /// the new URL, scopes and options at their next login or refresh.
    pub fn reload(self: &Arc<Self>, config: &Config) {
        let next = oauth_upstreams(config);
        let names: Vec<String> = next.keys().cloned().collect();
        *self.upstreams.write() = next;
        tracing::info!(upstreams = ?names, "configuration reloaded");
        self.spawn_refreshers();
        // Refreshers of removed upstreams notice and end.
        self.changed.send_modify(|n| *n += 1);
    }

    async fn get_token(&self, upstream: &str, min_valid: u64) -> Result<Response, AgentError> {
        self.known(upstream)?;
        self.retry_unsaved().await;
        // A server that issues tokens shorter-lived than the caller asks for would otherwise be
        // asked for a new one on every request: half the token's life is enough then.
        let fresh = |l: &store::Login| {
            let life = l.expires_at.saturating_sub(l.issued_at);
            l.access_token.is_some() && l.expires_at >= now() + min_valid.min(life / 2)
        };
        // A refresh (or the headless re-login that follows an `invalid_grant`) in flight: wait
        // for it, so a caller arriving meanwhile gets its outcome rather than the NeedsLogin of
        // the moment in between.
        let flight = self.refresh_lock(upstream);
        if flight.try_lock().is_err() {
            drop(flight.lock().await);
        }
        // Refresh only if the token this caller found wanting is still the current one: callers
        // that queued behind a refresh take its result instead of refreshing again.
        let seen = {
            let st = self.state.lock().await;
            let Some(login) = st.upstreams.get(upstream) else {
                return Err(needs_login(upstream));
            };
            if login.needs_login {
                return Err(needs_login(upstream));
            }
            if let Some(t) = login.access_token.as_ref().filter(|_| fresh(login)) {
                return Ok(Response::Token {
                    access_token: t.expose().to_owned(),
                    expires_at: login.expires_at,
                });
            }
            fingerprint_of(login)
        };
        let refreshed = self
            .refresh(upstream, |l| !fresh(l) && fingerprint_of(l) == seen)
            .await;
        if let Some(r) = self.current(upstream, fresh).await? {
            return Ok(r);
        }
        // The refresh failed for now: an old token that has not expired is still useful.
        if let Some(r) = self
            .current(upstream, |l| {
                l.access_token.is_some() && l.expires_at > now()
            })
            .await?
        {
            return Ok(r);
        }
        refreshed?;
        Err(AgentError::RefreshFailed {
            upstream: upstream.to_owned(),
            reason: "no valid access token".into(),
        })
    }

    /// The access token if `ok` says it will do.
    async fn current(
        &self,
        upstream: &str,
        ok: impl Fn(&store::Login) -> bool,
    ) -> Result<Option<Response>, AgentError> {
        let st = self.state.lock().await;
        let Some(login) = st.upstreams.get(upstream) else {
            return Err(needs_login(upstream));
        };
        if login.needs_login {
            return Err(needs_login(upstream));
        }
        Ok(login
            .access_token
            .as_ref()
            .filter(|_| ok(login))
            .map(|t| Response::Token {
                access_token: t.expose().to_owned(),
                expires_at: login.expires_at,
            }))
    }

    async fn token_rejected(
        &self,
        upstream: &str,
        fingerprint: &str,
    ) -> Result<Response, AgentError> {
        self.known(upstream)?;
        // Only the token the upstream refused is stale; if another caller already replaced it,
        // there is nothing to do.
        let rejected = |l: &store::Login| fingerprint_of(l).as_deref() == Some(fingerprint);
        self.refresh(upstream, rejected).await?;
        Ok(Response::Ack)
    }

    /// Refreshes `upstream`'s tokens if `stale` still says so once this caller holds the
    /// upstream's refresh lock (single flight: concurrent callers wait and then find the fresh
    /// token). The rotated refresh token is on disk before anyone can use the new access token.
    async fn refresh(
        &self,
        upstream: &str,
        stale: impl Fn(&store::Login) -> bool,
    ) -> Result<(), AgentError> {
        self.known(upstream)?;
        let lock = self.refresh_lock(upstream);
        let _flight = lock.lock().await;
        let (rt, creds, token_endpoint, resource) = {
            let st = self.state.lock().await;
            let Some(login) = st.upstreams.get(upstream) else {
                return Err(needs_login(upstream));
            };
            if login.needs_login {
                return Err(needs_login(upstream));
            }
            if !stale(login) {
                return Ok(());
            }
            let Some(rt) = login.refresh_token.clone() else {
                return Err(AgentError::RefreshFailed {
                    upstream: upstream.to_owned(),
                    reason: "the server issued no refresh token; log in again".into(),
                });
            };
            (
                rt,
                creds_of(login),
                login.token_endpoint.clone(),
                login.resource.clone(),
            )
        };
        let result = oauth::refresh(
            &self.http,
            &creds,
            &token_endpoint,
            rt.expose(),
            resource.as_deref(),
        )
        .await;
        let mut st = self.state.lock().await;
        let Some(login) = st.upstreams.get_mut(upstream) else {
            return Err(needs_login(upstream));
        };
        let mut revoked = false;
        let outcome = match result {
            Ok(t) => {
                let at = now();
                login.expires_at = at.saturating_add(t.lifetime_secs());
                login.access_token = Some(Secret::new(t.access_token));
                login.issued_at = at;
                if let Some(new_rt) = t.refresh_token {
                    login.refresh_token = Some(Secret::new(new_rt));
                }
                if let Some(s) = t.scopes {
                    login.scopes = s;
                }
                login.last_refresh = Some(at);
                login.last_error = None;
                tracing::info!(
                    upstream,
                    expires_in = login.expires_at - at,
                    "refreshed the access token"
                );
                Ok(())
            }
            Err(OAuthError::InvalidGrant) => {
                revoked = true;
                login.needs_login = true;
                login.access_token = None;
                login.last_error =
                    Some("the refresh token was refused (invalid_grant); log in again".into());
                tracing::warn!(upstream, "refresh token refused; a new login is needed");
                Err(needs_login(upstream))
            }
            Err(e) => {
                login.last_error = Some(e.to_string());
                tracing::warn!(upstream, error = %e, "refresh failed");
                Err(AgentError::RefreshFailed {
                    upstream: upstream.to_owned(),
                    reason: e.to_string(),
                })
            }
        };
        // Persist before the lock is released and before any caller sees the new token.
        self.persist(&st);
        drop(st);
        self.changed.send_modify(|n| *n += 1);
        if revoked && self.relogin_headless(upstream).await {
            return Ok(());
        }
        outcome
    }

    /// Step-up authorization: the upstream answered 403 `insufficient_scope`. A new login asks
    /// for the named scopes on top of the granted ones, headlessly where possible; at most once
    /// a minute per upstream (the MCP spec asks clients to limit scope upgrade attempts).
    async fn scope_required(
        &self,
        upstream: &str,
        challenge: &str,
    ) -> Result<Response, AgentError> {
        self.known(upstream)?;
        let failed = |reason: String| AgentError::LoginFailed {
            upstream: upstream.to_owned(),
            reason,
        };
        let c = oauth::parse_challenge(challenge);
        if c.error.as_deref() != Some("insufficient_scope") {
            return Err(failed(
                "the upstream refused the request (403) without asking for more scope".into(),
            ));
        }
        let wanted: Vec<String> = c
            .scope
            .as_deref()
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        if wanted.is_empty() {
            return Err(failed(
                "the upstream asked for more scope (403 insufficient_scope) without naming it"
                    .into(),
            ));
        }
        {
            let mut extra = self.extra_scopes.lock();
            let e = extra.entry(upstream.to_owned()).or_default();
            for w in &wanted {
                if !e.contains(w) {
                    e.push(w.clone());
                }
            }
        }
        let how = format!("mcp-cred-agent login {upstream}");
        if !first_in_a_while(&self.step_ups, upstream) {
            return Err(failed(format!(
                "the upstream wants scope {:?}, and a step-up login was tried less than a minute ago; run `{how}`",
                wanted.join(" ")
            )));
        }
        tracing::info!(upstream, scope = %wanted.join(" "), "the upstream asked for more scope; logging in again");
        match self.login(upstream).await? {
            Response::Ack => Ok(Response::Ack),
            _ => Err(failed(format!(
                "the upstream wants scope {:?}, which needs your consent: run `{how}`",
                wanted.join(" ")
            ))),
        }
    }

    /// After `invalid_grant` (the login was revoked or expired at the server): a new login
    /// without a person when consent can be given headlessly — the server approves at once, or
    /// its password form takes the owner password. At most once a minute per upstream, so a
    /// server that keeps revoking is not logged into in a loop. True if the login is back.
    async fn relogin_headless(&self, upstream: &str) -> bool {
        if !first_in_a_while(&self.auto_logins, upstream) {
            return false;
        }
        match self.login(upstream).await {
            Ok(Response::Ack) => {
                tracing::warn!(
                    upstream,
                    "the login was lost (invalid_grant); logged in again headlessly"
                );
                true
            }
            Ok(_) => {
                tracing::warn!(
                    upstream,
                    "the login was lost (invalid_grant) and consent needs a person: run `mcp-cred-agent login {upstream}`"
                );
                false
            }
            Err(e) => {
                tracing::warn!(upstream, error = %e, "the login was lost (invalid_grant); a headless login failed");
                false
            }
        }
    }

    async fn login(&self, upstream: &str) -> Result<Response, AgentError> {
        let cfg = self.known(upstream)?;
        let failed = |reason: String| AgentError::LoginFailed {
            upstream: upstream.to_owned(),
            reason,
        };
        let mut d = oauth::discover(&self.http, &cfg.url, &cfg.scopes, cfg.allow_local)
            .await
            .map_err(|e| failed(e.to_string()))?;
        // A new login keeps what was granted before and what the server asked for since.
        let granted = self
            .state
            .lock()
            .await
            .upstreams
            .get(upstream)
            .map(|l| l.scopes.clone())
            .unwrap_or_default();
        let extra = self
            .extra_scopes
            .lock()
            .get(upstream)
            .cloned()
            .unwrap_or_default();
        for s in granted.into_iter().chain(extra) {
            if !d.scopes.contains(&s) {
                d.scopes.push(s);
            }
        }
        let creds = match (cfg.client_id.as_deref(), cfg.client_metadata_url.as_deref()) {
            (Some(id), _) => oauth::ClientCreds::public(id),
            // Client ID metadata document: the URL is the id, nothing to register.
            (None, Some(url)) if d.cimd_supported => oauth::ClientCreds::public(url),
            (None, _) => self
                .client_for(&d)
                .await
                .map_err(|e| failed(e.to_string()))?,
        };
        let pending = oauth::authorization_request(
            &d,
            &creds.client_id,
            &self.redirect_uri,
            cfg.send_resource,
        )
        .map_err(|e| failed(e.to_string()))?;
        let outcome = consent::headless(
            &self.http,
            &pending.authorization_url,
            &self.redirect_uri,
            &self.password,
            cfg.allow_local,
        )
        .await
        .map_err(failed)?;
        let url = pending.authorization_url.clone();
        let state = pending.state.clone();
        self.pending.lock().insert(
            state,
            PendingLogin {
                upstream: upstream.to_owned(),
                verifier: pending.verifier,
                discovered: d,
                creds,
            },
        );
        match outcome {
            consent::Outcome::Redirected {
                code,
                state,
                iss,
                error,
            } => {
                tracing::info!(upstream, "consent given headlessly");
                self.complete(state.as_deref().unwrap_or(""), code, error, iss)
                    .await?;
                Ok(Response::Ack)
            }
            consent::Outcome::NeedsBrowser(reason) => {
                tracing::info!(upstream, reason, "consent needs a browser");
                Ok(Response::Browser {
                    authorization_url: url,
                })
            }
        }
    }

    /// The client id for this authorization server: kept per issuer, else registered.
    async fn client_for(&self, d: &Discovered) -> Result<oauth::ClientCreds, OAuthError> {
        if let Some(c) = self
            .state
            .lock()
            .await
            .clients
            .get(&d.issuer)
            .filter(|c| c.redirect_uri == self.redirect_uri)
        {
            return Ok(oauth::ClientCreds {
                client_id: c.client_id.clone(),
                client_secret: c.client_secret.as_ref().map(|s| s.expose().to_owned()),
                method: oauth::AuthMethod::parse(c.auth_method.as_deref().unwrap_or("none")),
            });
        }
        let Some(endpoint) = &d.registration_endpoint else {
            return Err(OAuthError::Discovery(format!(
                "{} offers no dynamic registration; set `client_id` for this upstream in config.toml",
                d.issuer
            )));
        };
        let creds = oauth::register(&self.http, endpoint, &self.redirect_uri).await?;
        let mut st = self.state.lock().await;
        st.clients.insert(
            d.issuer.clone(),
            store::Client {
                client_id: creds.client_id.clone(),
                redirect_uri: self.redirect_uri.clone(),
                client_secret: creds.client_secret.clone().map(Secret::new),
                auth_method: Some(creds.method.as_str().to_owned()),
            },
        );
        self.persist(&st);
        Ok(creds)
    }

    async fn complete_login(
        &self,
        state: &str,
        code: Option<String>,
        error: Option<String>,
        iss: Option<String>,
    ) -> Result<Response, AgentError> {
        self.complete(state, code, error, iss).await?;
        Ok(Response::Ack)
    }

    /// Finishes a login: checks state (and `iss` where sent), exchanges the code, stores tokens.
    async fn complete(
        &self,
        state: &str,
        code: Option<String>,
        error: Option<String>,
        iss: Option<String>,
    ) -> Result<(), AgentError> {
        let Some(p) = self.pending.lock().remove(state) else {
            return Err(AgentError::UnknownState);
        };
        let failed = |reason: String| AgentError::LoginFailed {
            upstream: p.upstream.clone(),
            reason,
        };
        if let Some(e) = error {
            return Err(failed(format!("the authorization server answered {e}")));
        }
        oauth::check_iss(
            &p.discovered.issuer,
            p.discovered.iss_parameter_supported,
            iss.as_deref(),
        )
        .map_err(failed)?;
        let code = code.ok_or_else(|| failed("the redirect carried no code".into()))?;
        let cfg = self.known(&p.upstream)?;
        let resource = cfg.send_resource.then(|| p.discovered.resource.clone());
        let t = oauth::exchange_code(
            &self.http,
            &p.creds,
            &p.discovered.token_endpoint,
            &code,
            p.verifier,
            &self.redirect_uri,
            resource.as_deref(),
        )
        .await
        .map_err(|e| failed(e.to_string()))?;
        let at = now();
        let expires_at = at.saturating_add(t.lifetime_secs());
        let login = store::Login {
            issuer: p.discovered.issuer.clone(),
            token_endpoint: p.discovered.token_endpoint.clone(),
            revocation_endpoint: p.discovered.revocation_endpoint.clone(),
            resource,
            client_id: p.creds.client_id.clone(),
            client_secret: p.creds.client_secret.clone().map(Secret::new),
            auth_method: Some(p.creds.method.as_str().to_owned()),
            scopes: t.scopes.unwrap_or_else(|| p.discovered.scopes.clone()),
            access_token: Some(Secret::new(t.access_token)),
            issued_at: at,
            expires_at,
            refresh_token: t.refresh_token.map(Secret::new),
            last_refresh: None,
            last_error: None,
            needs_login: false,
        };
        let mut st = self.state.lock().await;
        st.upstreams.insert(p.upstream.clone(), login);
        self.persisted(&st)
            .map_err(|e| failed(format!("logged in, but the tokens are only in memory until the store can be written again (retried every 10 s): {e}")))?;
        drop(st);
        tracing::info!(upstream = %p.upstream, "logged in");
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }

    async fn logout(&self, upstream: &str) -> Result<Response, AgentError> {
        self.known(upstream)?;
        let removed = {
            let mut st = self.state.lock().await;
            let removed = st.upstreams.remove(upstream);
            self.persisted(&st).map_err(|e| AgentError::Internal {
                message: format!("logged out here, but the store keeps the login until it can be written again (retried every 10 s): {e}"),
            })?;
            removed
        };
        if let Some(l) = removed
            && let Some(endpoint) = &l.revocation_endpoint
        {
            for (tok, hint) in [
                (l.refresh_token.as_ref(), "refresh_token"),
                (l.access_token.as_ref(), "access_token"),
            ] {
                if let Some(t) = tok
                    && let Err(e) =
                        oauth::revoke(&self.http, endpoint, &l.client_id, t.expose(), hint).await
                {
                    tracing::warn!(upstream, error = %e, "revocation failed; the tokens are forgotten locally");
                }
            }
        }
        self.changed.send_modify(|n| *n += 1);
        Ok(Response::Ack)
    }

    async fn status(&self) -> Response {
        let st = self.state.lock().await;
        let upstreams = self
            .names()
            .into_iter()
            .map(|name| {
                let l = st.upstreams.get(&name);
                UpstreamStatus {
                    name,
                    logged_in: l.is_some_and(|l| {
                        !l.needs_login && (l.refresh_token.is_some() || l.expires_at > now())
                    }),
                    issuer: l.map(|l| l.issuer.clone()),
                    scopes: l.map(|l| l.scopes.clone()).unwrap_or_default(),
                    expires_at: l.map(|l| l.expires_at),
                    last_error: l.and_then(|l| l.last_error.clone()),
                }
            })
            .collect();
        let store = match self.unsaved.lock().as_ref() {
            Some((e, _)) => format!(
                "{} (NOT WRITTEN, the logins are only in memory: {e})",
                self.store.describe()
            ),
            None => self.store.describe(),
        };
        Response::Status {
            upstreams,
            store: Some(store),
        }
    }

    /// One background task per upstream: refresh at ~80% of the token's life; on failure retry
    /// with backoff (the old token is served meanwhile until it expires).
    pub fn spawn_refreshers(self: &Arc<Self>) {
        for name in self.names() {
            if !self.refreshers.lock().insert(name.clone()) {
                continue;
            }
            let agent = self.clone();
            tokio::spawn(async move {
                agent.refresher(&name).await;
                agent.refreshers.lock().remove(&name);
            });
        }
    }

    async fn refresher(&self, upstream: &str) {
        let mut failures = 0u32;
        let mut changed = self.changed.subscribe();
        loop {
            changed.borrow_and_update();
            if self.known(upstream).is_err() {
                return;
            }
            let due = {
                let st = self.state.lock().await;
                st.upstreams
                    .get(upstream)
                    .filter(|l| !l.needs_login && l.refresh_token.is_some())
                    .map(refresh_due)
            };
            let Some(due) = due else {
                if changed.changed().await.is_err() {
                    return;
                }
                continue;
            };
            let wait = if failures > 0 {
                let ceiling =
                    Duration::from_secs(1u64 << failures.min(6)).min(Duration::from_secs(60));
                ceiling.mul_f64(0.5 + fastrand::f64() / 2.0)
            } else {
                Duration::from_secs(due.saturating_sub(now()))
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                r = changed.changed() => {
                    if r.is_err() {
                        return;
                    }
                    continue;
                }
            }
            let stale = |l: &store::Login| now() >= refresh_due(l);
            match self.refresh(upstream, stale).await {
                Ok(()) => failures = 0,
                Err(AgentError::RefreshFailed { .. }) => failures += 1,
                Err(_) => failures = 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A token endpoint on loopback: each POST answers a new pair (`at-N`, `rt-N`) after
    /// 100 ms (so concurrent callers overlap), or `invalid_grant` once `refuse` is set.
    struct TokenServer {
        url: String,
        served: Arc<AtomicU64>,
        refuse: Arc<std::sync::atomic::AtomicBool>,
    }

    async fn token_server() -> TokenServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/token", listener.local_addr().unwrap());
        let served = Arc::new(AtomicU64::new(0));
        let refuse = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (count, no) = (served.clone(), refuse.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (count, no) = (count.clone(), no.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Headers, then the body Content-Length names.
                    loop {
                        let n = sock.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        let text = String::from_utf8_lossy(&buf).to_string();
                        if let Some(end) = text.find("\r\n\r\n") {
                            let len = text[..end]
                                .lines()
                                .find_map(|l| {
                                    l.to_ascii_lowercase()
                                        .strip_prefix("content-length:")
                                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                                })
                                .unwrap_or(0);
                            if buf.len() >= end + 4 + len {
                                break;
                            }
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let (status, body) = if no.load(Ordering::SeqCst) {
                        ("400 Bad Request", r#"{"error":"invalid_grant"}"#.to_owned())
                    } else {
                        let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                        (
                            "200 OK",
                            format!(
                                r#"{{"access_token":"at-{n}","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-{n}"}}"#
                            ),
                        )
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                });
            }
        });
        TokenServer {
            url,
            served,
            refuse,
        }
    }

    /// An agent whose one upstream `u` has an expired access token `old` and refresh token
    /// `rt-0` for `server`.
    async fn agent_with_expired_login(
        server: &TokenServer,
    ) -> (Arc<Agent>, std::path::PathBuf, FileStore) {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "mcpa-tokens-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let toml = "[[upstream]]\nname = \"u\"\nurl = \"http://127.0.0.1:9/mcp\"\nauth = \"oauth\"\nallow_local_oauth = true\n";
        let env = [(
            "MCP_BRIDGE_CONFIG_DIR".to_owned(),
            dir.display().to_string(),
        )]
        .into_iter()
        .collect();
        let config = proto::config::load(&env, |_| Ok(Some(toml.to_owned()))).unwrap();
        let store = FileStore::new(&dir);
        let mut state = store.load().unwrap();
        state.upstreams.insert(
            "u".into(),
            store::Login {
                issuer: "http://127.0.0.1".into(),
                token_endpoint: server.url.clone(),
                revocation_endpoint: None,
                resource: None,
                client_id: "c".into(),
                client_secret: None,
                auth_method: None,
                scopes: Vec::new(),
                access_token: Some(Secret::new("old".into())),
                expires_at: now().saturating_sub(10),
                issued_at: now().saturating_sub(3610),
                refresh_token: Some(Secret::new("rt-0".into())),
                last_refresh: None,
                last_error: None,
                needs_login: false,
            },
        );
        store.save(&state).unwrap();
        let agent = Agent::new(&config, OwnerPassword::default()).unwrap();
        (agent, dir, store)
    }

    fn token_of(r: &Response) -> String {
        match r {
            Response::Token { access_token, .. } => access_token.clone(),
            other => panic!("not a token: {other:?}"),
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_refresh_and_the_rotation_is_stored_first() {
        let server = token_server().await;
        let (agent, dir, store) = agent_with_expired_login(&server).await;
        let ask = || {
            agent.handle(Request::GetToken {
                upstream: "u".into(),
                min_valid_for_secs: 60,
            })
        };
        let answers = futures_util::future::join_all((0..5).map(|_| ask())).await;
        let tokens: Vec<String> = answers.iter().map(token_of).collect();
        assert!(tokens.iter().all(|t| t == "at-1"), "{tokens:?}");
        assert_eq!(server.served.load(Ordering::SeqCst), 1, "single flight");
        let stored = store.load().unwrap();
        assert_eq!(
            stored.upstreams["u"]
                .refresh_token
                .as_ref()
                .unwrap()
                .expose(),
            "rt-1",
            "the rotated refresh token is on disk"
        );
        // A fresh token is served from memory.
        assert_eq!(token_of(&ask().await), "at-1");
        assert_eq!(server.served.load(Ordering::SeqCst), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_rejected_token_is_refreshed_only_if_it_is_still_the_current_one() {
        let server = token_server().await;
        let (agent, dir, _store) = agent_with_expired_login(&server).await;
        let get = Request::GetToken {
            upstream: "u".into(),
            min_valid_for_secs: 60,
        };
        assert_eq!(token_of(&agent.handle(get.clone()).await), "at-1");
        // An upstream refusing a token that was already replaced: nothing to do.
        let stale = Request::TokenRejected {
            upstream: "u".into(),
            token_fingerprint: proto::token_fingerprint("old"),
        };
        assert!(matches!(agent.handle(stale).await, Response::Ack));
        assert_eq!(server.served.load(Ordering::SeqCst), 1);
        // Refusing the current one refreshes it.
        let current = Request::TokenRejected {
            upstream: "u".into(),
            token_fingerprint: proto::token_fingerprint("at-1"),
        };
        assert!(matches!(agent.handle(current).await, Response::Ack));
        assert_eq!(server.served.load(Ordering::SeqCst), 2);
        assert_eq!(token_of(&agent.handle(get).await), "at-2");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn invalid_grant_means_a_new_login_is_needed() {
        let server = token_server().await;
        server.refuse.store(true, Ordering::SeqCst);
        let (agent, dir, store) = agent_with_expired_login(&server).await;
        let r = agent
            .handle(Request::GetToken {
                upstream: "u".into(),
                min_valid_for_secs: 60,
            })
            .await;
        assert!(
            matches!(
                r,
                Response::Error {
                    error: AgentError::NeedsLogin { .. }
                }
            ),
            "{r:?}"
        );
        let stored = store.load().unwrap();
        assert!(stored.upstreams["u"].needs_login);
        assert!(stored.upstreams["u"].access_token.is_none());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_refresh_is_due_at_four_fifths_of_the_life() {
        let mut l = store::Login {
            issuer: String::new(),
            token_endpoint: String::new(),
            revocation_endpoint: None,
            resource: None,
            client_id: String::new(),
            client_secret: None,
            auth_method: None,
            scopes: Vec::new(),
            access_token: None,
            expires_at: 4600,
            issued_at: 1000,
            refresh_token: None,
            last_refresh: None,
            last_error: None,
            needs_login: false,
        };
        assert_eq!(refresh_due(&l), 1000 + 2880);
        // A token that expires at once is not refreshed in a tight loop.
        l.expires_at = 1000;
        assert_eq!(refresh_due(&l), 1000 + MIN_REFRESH_GAP_SECS);
    }
}
