//! The OAuth client side of the MCP authorization spec: protected-resource discovery (RFC 9728),
//! authorization-server metadata (RFC 8414 / OIDC, in the spec's order), dynamic client
//! registration (RFC 7591), PKCE S256, and token requests through the `oauth2` crate over a small
//! reqwest adapter. Discovery and registration are written here, compactly.

use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthorizationCode, ClientId, PkceCodeChallenge, PkceCodeVerifier, RefreshToken,
    RequestTokenError, TokenResponse, TokenUrl,
};
use serde_json::{Value, json};
use url::Url;

/// Largest metadata or token document accepted.
const MAX_DOC: usize = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    #[error("{0}")]
    Discovery(String),
    #[error("the authorization server refused the grant (invalid_grant)")]
    InvalidGrant,
    /// Network trouble or a 5xx: worth retrying later.
    #[error("temporary failure: {0}")]
    Transient(String),
    #[error("{0}")]
    Protocol(String),
}

/// A client that never follows redirects (consent redirects are ours to read) and times out.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap_or_default()
}

/// Reads a body of at most `max` bytes; more is an error, so a hostile server cannot make the
/// agent buffer without bound (a declared length over `max` is refused before reading).
pub async fn read_capped(resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    use futures_util::StreamExt;
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("an answer over {max} bytes"));
    }
    let mut out = Vec::new();
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if out.len() + chunk.len() > max {
            return Err(format!("an answer over {max} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Option<Value>, OAuthError> {
    let resp = http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| OAuthError::Transient(format!("GET {url}: {e}")))?;
    if !resp.status().is_success() {
        return Ok(None);
    }
    let bytes = read_capped(resp, MAX_DOC)
        .await
        .map_err(|e| OAuthError::Protocol(format!("{url}: {e}")))?;
    Ok(serde_json::from_slice(&bytes).ok())
}

/// What the resource's 401 challenge said.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Challenge {
    pub resource_metadata: Option<String>,
    pub scope: Option<String>,
    /// `error`, e.g. `insufficient_scope` on a 403.
    pub error: Option<String>,
}

/// Parses `WWW-Authenticate: Bearer k="v", k2=v2`.
pub fn parse_challenge(header: &str) -> Challenge {
    let mut c = Challenge::default();
    let rest = header.trim().strip_prefix("Bearer").unwrap_or(header);
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((key, after)) = s.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        match key.as_str() {
            "resource_metadata" => c.resource_metadata = Some(value.to_owned()),
            "scope" => c.scope = Some(value.to_owned()),
            "error" => c.error = Some(value.to_owned()),
            _ => {}
        }
        s = next.trim_start_matches([',', ' ']);
    }
    c
}

/// What discovery found for one MCP server.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub resource: String,
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub registration_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
    pub scopes: Vec<String>,
    pub iss_parameter_supported: bool,
    /// `client_id_metadata_document_supported`: a client may use its metadata URL as its id.
    pub cimd_supported: bool,
}

/// Finds the authorization server of the MCP server at `mcp_url`.
///
/// Every URL the network names (a challenge's `resource_metadata`, the issuer, the endpoints)
/// must be global unless `allow_local` (see [`crate::netguard`]); `mcp_url` is the user's.
pub async fn discover(
    http: &reqwest::Client,
    mcp_url: &str,
    configured_scopes: &[String],
    allow_local: bool,
) -> Result<Discovered, OAuthError> {
    let guard = async |u: &str| {
        proto::netguard::check_url(u, allow_local, crate::consent::LOCAL_SETTING)
            .await
            .map_err(|e| OAuthError::Discovery(short(&e)))
    };
    let url = Url::parse(mcp_url)
        .map_err(|e| OAuthError::Discovery(format!("bad upstream URL {mcp_url}: {e}")))?;
    // An unauthenticated request draws the 401 challenge that names the metadata.
    let probe = json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "mcp-cred-agent", "version": env!("CARGO_PKG_VERSION")}}});
    let challenge = match http
        .post(mcp_url)
        .header("accept", "application/json, text/event-stream")
        .json(&probe)
        .send()
        .await
    {
        Ok(r) if r.status() == reqwest::StatusCode::UNAUTHORIZED => r
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .map(parse_challenge)
            .unwrap_or_default(),
        Ok(_) => Challenge::default(),
        Err(e) => {
            return Err(OAuthError::Transient(format!(
                "cannot reach {mcp_url}: {e}"
            )));
        }
    };
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    let mut candidates = Vec::new();
    if let Some(m) = &challenge.resource_metadata {
        candidates.push(m.clone());
    }
    if !path.is_empty() {
        candidates.push(format!(
            "{origin}/.well-known/oauth-protected-resource{path}"
        ));
    }
    candidates.push(format!("{origin}/.well-known/oauth-protected-resource"));
    if let Some(m) = &challenge.resource_metadata {
        guard(m).await?;
    }
    let mut prm = None;
    for c in &candidates {
        if let Some(v) = get_json(http, c).await? {
            prm = Some(v);
            break;
        }
    }
    let prm = prm.ok_or_else(|| {
        OAuthError::Discovery(format!(
            "no protected-resource metadata for {mcp_url} (tried {})",
            candidates.join(", ")
        ))
    })?;
    let found = resource_metadata(&prm, mcp_url)?;
    guard(&found.issuer).await?;
    let meta = authorization_server_metadata(http, &found.issuer).await?;
    let server = server_metadata(&meta, &found.issuer)?;
    for endpoint in [
        Some(&server.authorization_endpoint),
        Some(&server.token_endpoint),
        server.registration_endpoint.as_ref(),
        server.revocation_endpoint.as_ref(),
    ]
    .into_iter()
    .flatten()
    {
        guard(endpoint).await?;
    }
    let scopes = if !configured_scopes.is_empty() {
        configured_scopes.to_vec()
    } else if let Some(s) = &challenge.scope {
        s.split_whitespace().map(str::to_owned).collect()
    } else {
        found.scopes_supported
    };
    Ok(Discovered {
        resource: found.resource,
        issuer: found.issuer,
        authorization_endpoint: server.authorization_endpoint,
        token_endpoint: server.token_endpoint,
        registration_endpoint: server.registration_endpoint,
        revocation_endpoint: server.revocation_endpoint,
        iss_parameter_supported: server.iss_parameter_supported,
        cimd_supported: server.cimd_supported,
        scopes,
    })
}

/// Checks the `iss` of an authorization response (RFC 9207; MCP 2026-07-28): a present `iss`
/// must equal the issuer the login started with, byte for byte (no case folding, default-port
/// or trailing-slash normalisation), whether or not the server advertised it; an absent one is
/// refused when the server's metadata says it sends one
/// (`authorization_response_iss_parameter_supported`). This stops a mix-up attack: a code
/// from another authorization server is never exchanged here.
pub fn check_iss(issuer: &str, advertised: bool, iss: Option<&str>) -> Result<(), String> {
    match iss {
        Some(i) if i != issuer => Err(format!(
            "the authorization response came from issuer {:?}, expected {:?}",
            short(i),
            short(issuer)
        )),
        None if advertised => Err(format!(
            "the authorization server {} says it names itself in its responses (iss), and this one did not",
            short(issuer)
        )),
        _ => Ok(()),
    }
}

/// Whether the protected-resource metadata's `resource` is for the MCP server's URL: the same
/// origin (scheme, host, port). A token is issued for the resource, so a document naming
/// another origin would have the agent fetch a token meant for someone else (RFC 9728 §3.3,
/// the MCP authorization spec). The path is not compared: one server often serves `/mcp` and
/// the legacy `/sse` under one document naming either.
fn resource_covers(resource: &str, mcp_url: &str) -> bool {
    match (Url::parse(resource), Url::parse(mcp_url)) {
        (Ok(r), Ok(m)) => r.origin() == m.origin(),
        _ => false,
    }
}

/// What the protected-resource metadata (RFC 9728) of an MCP server says.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceMetadata {
    pub issuer: String,
    pub resource: String,
    pub scopes_supported: Vec<String>,
}

/// Reads a protected-resource metadata document; `mcp_url` is the resource when it names none.
pub fn resource_metadata(prm: &Value, mcp_url: &str) -> Result<ResourceMetadata, OAuthError> {
    let issuer = prm["authorization_servers"][0]
        .as_str()
        .ok_or_else(|| {
            OAuthError::Discovery(
                "protected-resource metadata names no authorization server".into(),
            )
        })?
        .to_owned();
    Url::parse(&issuer).map_err(|e| {
        OAuthError::Discovery(format!(
            "protected-resource metadata names a bad authorization server URL: {e}"
        ))
    })?;
    let resource = prm["resource"].as_str().unwrap_or(mcp_url).to_owned();
    if !resource_covers(&resource, mcp_url) {
        return Err(OAuthError::Discovery(format!(
            "the protected-resource metadata is for {}, not for {} (refusing to authorize with it)",
            short(&resource),
            short(mcp_url)
        )));
    }
    let scopes_supported = prm["scopes_supported"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(ResourceMetadata {
        issuer,
        resource,
        scopes_supported,
    })
}

/// The endpoints of an authorization server, from its RFC 8414 / OIDC metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerMetadata {
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub registration_endpoint: Option<String>,
    pub revocation_endpoint: Option<String>,
    pub iss_parameter_supported: bool,
    pub cimd_supported: bool,
}

/// Checks an authorization server's metadata against the issuer we looked it up for (the
/// `issuer` must match exactly, PKCE S256 must be listed) and takes out its endpoints.
pub fn server_metadata(meta: &Value, issuer: &str) -> Result<ServerMetadata, OAuthError> {
    if meta["issuer"].as_str() != Some(issuer) {
        return Err(OAuthError::Discovery(format!(
            "authorization server metadata says issuer {}, expected {:?}",
            short(&meta["issuer"].to_string()),
            short(issuer)
        )));
    }
    let s256 = meta["code_challenge_methods_supported"]
        .as_array()
        .is_some_and(|a| a.iter().any(|m| m == "S256"));
    if !s256 {
        return Err(OAuthError::Discovery(format!(
            "{} does not list PKCE S256 in code_challenge_methods_supported; refusing to log in without PKCE",
            short(issuer)
        )));
    }
    let field = |k: &str| meta[k].as_str().map(str::to_owned);
    Ok(ServerMetadata {
        authorization_endpoint: field("authorization_endpoint").ok_or_else(|| {
            OAuthError::Discovery("metadata has no authorization_endpoint".into())
        })?,
        token_endpoint: field("token_endpoint")
            .ok_or_else(|| OAuthError::Discovery("metadata has no token_endpoint".into()))?,
        registration_endpoint: field("registration_endpoint"),
        revocation_endpoint: field("revocation_endpoint"),
        iss_parameter_supported: meta["authorization_response_iss_parameter_supported"] == true,
        cimd_supported: meta["client_id_metadata_document_supported"] == true,
    })
}

/// At most 200 characters of something a server sent, for an error message.
fn short(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// RFC 8414 then OpenID Connect discovery, in the order the MCP spec gives.
async fn authorization_server_metadata(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<Value, OAuthError> {
    let url = Url::parse(issuer)
        .map_err(|e| OAuthError::Discovery(format!("bad issuer {}: {e}", short(issuer))))?;
    let origin = url.origin().ascii_serialization();
    let path = url.path().trim_end_matches('/');
    let candidates = if path.is_empty() {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server"),
            format!("{origin}/.well-known/openid-configuration"),
        ]
    } else {
        vec![
            format!("{origin}/.well-known/oauth-authorization-server{path}"),
            format!("{origin}/.well-known/openid-configuration{path}"),
            format!("{origin}{path}/.well-known/openid-configuration"),
        ]
    };
    for c in &candidates {
        if let Some(v) = get_json(http, c).await? {
            return Ok(v);
        }
    }
    Err(OAuthError::Discovery(short(&format!(
        "no authorization server metadata for {issuer} (tried {})",
        candidates.join(", ")
    ))))
}

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    None,
    Basic,
    Post,
}

impl AuthMethod {
    pub fn parse(s: &str) -> Self {
        match s {
            "client_secret_basic" => Self::Basic,
            "client_secret_post" => Self::Post,
            _ => Self::None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Basic => "client_secret_basic",
            Self::Post => "client_secret_post",
        }
    }
}

/// A client's identity at an authorization server.
#[derive(Clone)]
pub struct ClientCreds {
    pub client_id: String,
    pub client_secret: Option<String>,
    pub method: AuthMethod,
}

impl std::fmt::Debug for ClientCreds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCreds")
            .field("client_id", &self.client_id)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl ClientCreds {
    pub fn public(client_id: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            client_secret: None,
            method: AuthMethod::None,
        }
    }
}

/// Dynamic client registration (RFC 7591) as a native client. The server may answer with a
/// secret and a token endpoint auth method; both are kept.
pub async fn register(
    http: &reqwest::Client,
    endpoint: &str,
    redirect_uri: &str,
) -> Result<ClientCreds, OAuthError> {
    let body = json!({
        "client_name": "mcp-bridge",
        "redirect_uris": [redirect_uri],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
        "application_type": "native",
    });
    let resp = http
        .post(endpoint)
        .json(&body)
        .send()
        .await
        .map_err(|e| OAuthError::Transient(format!("registration: {e}")))?;
    let status = resp.status();
    let body = read_capped(resp, MAX_DOC)
        .await
        .map_err(|e| OAuthError::Protocol(format!("registration answer: {e}")))?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| OAuthError::Protocol(format!("registration answer: {e}")))?;
    if !status.is_success() {
        return Err(OAuthError::Discovery(format!(
            "dynamic registration at {endpoint} refused ({status}): {}",
            short(&v.to_string())
        )));
    }
    registration_response(&v)
}

/// Reads a dynamic registration answer (RFC 7591 section 3.2.1).
pub fn registration_response(v: &Value) -> Result<ClientCreds, OAuthError> {
    let client_id = v["client_id"]
        .as_str()
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .ok_or_else(|| OAuthError::Protocol("registration answer has no client_id".into()))?;
    let client_secret = v["client_secret"].as_str().map(str::to_owned);
    let method = match v["token_endpoint_auth_method"].as_str() {
        Some(m) => AuthMethod::parse(m),
        // RFC 7591: the default is client_secret_basic when a secret is issued.
        None if client_secret.is_some() => AuthMethod::Basic,
        None => AuthMethod::None,
    };
    Ok(ClientCreds {
        client_id,
        client_secret,
        method,
    })
}

/// A login in progress: what the token request will need after consent.
pub struct Pending {
    pub verifier: PkceCodeVerifier,
    pub state: String,
    pub authorization_url: String,
}

fn random_token() -> String {
    let mut b = [0u8; 24];
    // The OS random source failing leaves a zero buffer; the state is then still unique per
    // process run via the timestamp below, and PKCE is generated by the oauth2 crate.
    let _ = getrandom::fill(&mut b);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}{t:x}",
        b.iter().map(|x| format!("{x:02x}")).collect::<String>()
    )
}

/// Builds the authorization URL with PKCE S256, state, scope and (optionally) resource.
pub fn authorization_request(
    d: &Discovered,
    client_id: &str,
    redirect_uri: &str,
    send_resource: bool,
) -> Result<Pending, OAuthError> {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state = random_token();
    let mut url = Url::parse(&d.authorization_endpoint)
        .map_err(|e| OAuthError::Discovery(format!("bad authorization_endpoint: {e}")))?;
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", challenge.as_str())
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &state);
        if !d.scopes.is_empty() {
            q.append_pair("scope", &d.scopes.join(" "));
        }
        if send_resource {
            q.append_pair("resource", &d.resource);
        }
    }
    Ok(Pending {
        verifier,
        state,
        authorization_url: url.to_string(),
    })
}

/// Tokens from a token response.
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in: Option<Duration>,
    pub scopes: Option<Vec<String>>,
}

/// Why a token endpoint request got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error(transparent)]
    Send(#[from] reqwest::Error),
    #[error("{0}")]
    Body(String),
}

/// The reqwest 0.13 adapter for `oauth2` (its built-in one targets reqwest 0.12).
struct Http<'a>(&'a reqwest::Client);

impl<'c> oauth2::AsyncHttpClient<'c> for Http<'_> {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>,
    >;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(send(self.0, request))
    }
}

async fn send(
    http: &reqwest::Client,
    req: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let resp = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await?;
    let (status, headers) = (resp.status(), resp.headers().clone());
    let mut out = http::Response::new(read_capped(resp, MAX_DOC).await.map_err(HttpError::Body)?);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

fn token_error<E: std::error::Error + 'static>(
    e: RequestTokenError<E, oauth2::StandardErrorResponse<BasicErrorResponseType>>,
) -> OAuthError {
    match e {
        RequestTokenError::ServerResponse(r)
            if *r.error() == BasicErrorResponseType::InvalidGrant =>
        {
            OAuthError::InvalidGrant
        }
        RequestTokenError::ServerResponse(r) => match r.error() {
            BasicErrorResponseType::Extension(x)
                if x == "temporarily_unavailable" || x == "server_error" =>
            {
                OAuthError::Transient(x.clone())
            }
            other => OAuthError::Protocol(format!(
                "token endpoint error: {}",
                short(&format!("{other:?}"))
            )),
        },
        RequestTokenError::Request(e) => OAuthError::Transient(e.to_string()),
        // A 5xx with a body that is not an OAuth error lands here.
        RequestTokenError::Parse(_, body) => {
            OAuthError::Transient(format!("unparseable token response ({} bytes)", body.len()))
        }
        RequestTokenError::Other(s) => OAuthError::Transient(s),
    }
}

/// The longest access-token life believed: a broken or hostile `expires_in` can neither
/// overflow the expiry arithmetic nor keep a token "valid" for ever.
pub const MAX_TOKEN_LIFETIME_SECS: u64 = 365 * 24 * 3600;

impl Tokens {
    /// Seconds the access token lives: the server's `expires_in` (1 hour when it gives none),
    /// clamped to 1 s ..= [`MAX_TOKEN_LIFETIME_SECS`].
    pub fn lifetime_secs(&self) -> u64 {
        self.expires_in
            .map_or(3600, |d| d.as_secs())
            .clamp(1, MAX_TOKEN_LIFETIME_SECS)
    }
}

/// Parses a successful token response body the way the token requests do (the `oauth2`
/// crate's `BasicTokenResponse`), for tests and fuzzing of what a server can send.
pub fn token_response(body: &[u8]) -> Result<Tokens, OAuthError> {
    serde_json::from_slice::<oauth2::basic::BasicTokenResponse>(body)
        .map(tokens)
        .map_err(|e| OAuthError::Protocol(format!("unparseable token response: {e}")))
}

fn tokens(r: oauth2::basic::BasicTokenResponse) -> Tokens {
    Tokens {
        access_token: r.access_token().secret().clone(),
        refresh_token: r.refresh_token().map(|t| t.secret().clone()),
        expires_in: r.expires_in(),
        scopes: r
            .scopes()
            .map(|s| s.iter().map(|x| x.to_string()).collect()),
    }
}

fn client(
    creds: &ClientCreds,
    token_endpoint: &str,
) -> Result<
    BasicClient<
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    >,
    OAuthError,
> {
    let token_url = TokenUrl::new(token_endpoint.to_owned())
        .map_err(|e| OAuthError::Discovery(format!("bad token_endpoint: {e}")))?;
    let mut c = BasicClient::new(ClientId::new(creds.client_id.clone())).set_token_uri(token_url);
    if let Some(secret) = &creds.client_secret {
        c = c.set_client_secret(oauth2::ClientSecret::new(secret.clone()));
        c = c.set_auth_type(if creds.method == AuthMethod::Post {
            oauth2::AuthType::RequestBody
        } else {
            oauth2::AuthType::BasicAuth
        });
    }
    Ok(c)
}

/// Exchanges an authorization code (with the PKCE verifier) for tokens.
pub async fn exchange_code(
    http: &reqwest::Client,
    creds: &ClientCreds,
    token_endpoint: &str,
    code: &str,
    verifier: PkceCodeVerifier,
    redirect_uri: &str,
    resource: Option<&str>,
) -> Result<Tokens, OAuthError> {
    let redirect = oauth2::RedirectUrl::new(redirect_uri.to_owned())
        .map_err(|e| OAuthError::Protocol(e.to_string()))?;
    let c = client(creds, token_endpoint)?.set_redirect_uri(redirect);
    let mut req = c
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(verifier);
    if let Some(r) = resource {
        req = req.add_extra_param("resource", r);
    }
    req.request_async(&Http(http))
        .await
        .map(tokens)
        .map_err(token_error)
}

/// Uses a refresh token.
pub async fn refresh(
    http: &reqwest::Client,
    creds: &ClientCreds,
    token_endpoint: &str,
    refresh_token: &str,
    resource: Option<&str>,
) -> Result<Tokens, OAuthError> {
    let c = client(creds, token_endpoint)?;
    let rt = RefreshToken::new(refresh_token.to_owned());
    let mut req = c.exchange_refresh_token(&rt);
    if let Some(r) = resource {
        req = req.add_extra_param("resource", r);
    }
    req.request_async(&Http(http))
        .await
        .map(tokens)
        .map_err(token_error)
}

/// RFC 7009 revocation, best effort.
pub async fn revoke(
    http: &reqwest::Client,
    endpoint: &str,
    client_id: &str,
    token: &str,
    hint: &str,
) -> Result<(), OAuthError> {
    let resp = http
        .post(endpoint)
        .form(&[
            ("token", token),
            ("token_type_hint", hint),
            ("client_id", client_id),
        ])
        .send()
        .await
        .map_err(|e| OAuthError::Transient(e.to_string()))?;
    if resp.status().is_success() {
        Ok(())
    } else {
        Err(OAuthError::Protocol(format!(
            "revocation answered {}",
            resp.status()
        )))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn iss_is_compared_exactly_and_required_when_advertised() {
        let issuer = "https://auth.example.com";
        assert!(check_iss(issuer, true, Some(issuer)).is_ok());
        assert!(check_iss(issuer, false, None).is_ok());
        assert!(
            check_iss(issuer, true, None).is_err(),
            "advertised, then absent"
        );
        assert!(
            check_iss(issuer, false, Some("https://evil.example")).is_err(),
            "present and wrong, advertised or not"
        );
        assert!(
            check_iss(issuer, true, Some("https://auth.example.com/")).is_err(),
            "no trailing-slash normalisation"
        );
        assert!(
            check_iss(issuer, true, Some("https://AUTH.example.com")).is_err(),
            "no case folding"
        );
    }

    #[test]
    fn the_resource_must_cover_the_server_url() {
        let ok = |r: &str, m: &str| resource_covers(r, m);
        assert!(ok(
            "https://mcp.example.com/mcp",
            "https://mcp.example.com/mcp"
        ));
        assert!(ok("https://mcp.example.com", "https://mcp.example.com/mcp"));
        assert!(ok(
            "https://mcp.example.com/mcp",
            "https://mcp.example.com/sse"
        ));
        assert!(!ok(
            "https://evil.example.com/mcp",
            "https://mcp.example.com/mcp"
        ));
        assert!(!ok(
            "https://mcp.example.com:8443/mcp",
            "https://mcp.example.com/mcp"
        ));
        assert!(!ok(
            "http://mcp.example.com/mcp",
            "https://mcp.example.com/mcp"
        ));
        assert!(!ok("not a url", "https://mcp.example.com/mcp"));
    }

    use super::*;

    #[test]
    fn token_lifetimes_are_clamped() {
        let life = |body: &str| token_response(body.as_bytes()).map(|t| t.lifetime_secs());
        let base = r#"{"access_token":"a","token_type":"Bearer""#;
        assert_eq!(life(&format!("{base}}}")).ok(), Some(3600));
        assert_eq!(life(&format!(r#"{base},"expires_in":0}}"#)).ok(), Some(1));
        assert_eq!(
            life(&format!(r#"{base},"expires_in":120}}"#)).ok(),
            Some(120)
        );
        assert_eq!(
            life(&format!(r#"{base},"expires_in":18446744073709551615}}"#)).ok(),
            Some(MAX_TOKEN_LIFETIME_SECS)
        );
        assert!(life(r#"{"token_type":"Bearer"}"#).is_err());
    }

    #[test]
    fn metadata_documents_are_checked() {
        let prm = json!({"resource": "https://r/mcp", "authorization_servers": ["https://as"], "scopes_supported": ["a", 1, "b"]});
        let m = resource_metadata(&prm, "https://r/mcp").unwrap();
        assert_eq!(
            (m.issuer.as_str(), m.scopes_supported.len()),
            ("https://as", 2)
        );
        assert!(resource_metadata(&json!({"authorization_servers": ["not a url"]}), "x").is_err());
        assert!(resource_metadata(&json!({"authorization_servers": []}), "x").is_err());
        let meta = json!({"issuer": "https://as", "authorization_endpoint": "https://as/a", "token_endpoint": "https://as/t", "code_challenge_methods_supported": ["S256"]});
        assert_eq!(
            server_metadata(&meta, "https://as").unwrap().token_endpoint,
            "https://as/t"
        );
        assert!(server_metadata(&meta, "https://other").is_err());
        let mut plain = meta.clone();
        plain["code_challenge_methods_supported"] = json!(["plain"]);
        assert!(server_metadata(&plain, "https://as").is_err());
        let long = json!({"issuer": "x".repeat(10_000)});
        let err = server_metadata(&long, "https://as")
            .unwrap_err()
            .to_string();
        assert!(err.len() < 400, "{err}");
        assert!(registration_response(&json!({"client_id": ""})).is_err());
        let c = registration_response(&json!({"client_id": "c", "client_secret": "s"})).unwrap();
        assert_eq!(c.method, AuthMethod::Basic);
    }

    #[test]
    fn challenges_parse() {
        let c = parse_challenge(
            r#"Bearer resource_metadata="https://x/.well-known/oauth-protected-resource/mcp", scope="a b", error="invalid_token""#,
        );
        assert_eq!(
            c.resource_metadata.as_deref(),
            Some("https://x/.well-known/oauth-protected-resource/mcp")
        );
        assert_eq!(c.scope.as_deref(), Some("a b"));
        assert_eq!(
            parse_challenge("Bearer scope=mcp").scope.as_deref(),
            Some("mcp")
        );
        assert_eq!(parse_challenge("Basic realm=x"), Challenge::default());
        assert_eq!(parse_challenge(""), Challenge::default());
    }
}
