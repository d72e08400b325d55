//! The bridge's side of the agent socket: short-lived access tokens on demand. The bridge never
//! sees a refresh token; the IPC contract has no message that carries one.

use std::path::PathBuf;

use proto::client::Conn;
use proto::{AgentError, Request, Response};
use tokio::sync::Mutex;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "mcp-cred-agent is not running or not answering on {path} ({reason}); start it with `mcp-cred-agent serve` or its service"
    )]
    AgentDown { path: String, reason: String },
    #[error("{0}")]
    Agent(AgentError),
}

pub struct AgentClient {
    path: PathBuf,
    conn: Mutex<Option<(Conn, u64)>>,
    /// Access tokens asked for, per upstream (`/metrics`).
    token_requests: parking_lot::Mutex<std::collections::BTreeMap<String, u64>>,
}

impl AgentClient {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            conn: Mutex::new(None),
            token_requests: Default::default(),
        }
    }

    fn down(&self, reason: impl ToString) -> TokenError {
        TokenError::AgentDown {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    async fn connect(&self) -> Result<Conn, TokenError> {
        proto::client::connect(&self.path)
            .await
            .map_err(|e| match e {
                proto::client::ClientError::Refused(error) => TokenError::Agent(error),
                e => self.down(e),
            })
    }

    /// One request, over a kept connection; a broken connection is reopened once.
    pub async fn request(&self, request: Request) -> Result<Response, TokenError> {
        let mut guard = self.conn.lock().await;
        for attempt in 0..2 {
            if guard.is_none() {
                *guard = Some((self.connect().await?, 1));
            }
            let Some((conn, next)) = guard.as_mut() else {
                continue;
            };
            let id = *next;
            *next += 1;
            let answer = proto::client::exchange(conn, id, request.clone())
                .await
                .map_err(|e| e.to_string());
            match answer {
                Ok(r) => return Ok(r),
                Err(e) => {
                    *guard = None;
                    if attempt == 1 {
                        return Err(self.down(e));
                    }
                }
            }
        }
        Err(self.down("unreachable"))
    }

    /// An access token for `upstream`, valid for at least `min_valid` seconds if possible.
    pub async fn get_token(
        &self,
        upstream: &str,
        min_valid: u64,
    ) -> Result<(String, u64), TokenError> {
        *self
            .token_requests
            .lock()
            .entry(upstream.to_owned())
            .or_default() += 1;
        match self
            .request(Request::GetToken {
                upstream: upstream.to_owned(),
                min_valid_for_secs: min_valid,
            })
            .await?
        {
            Response::Token {
                access_token,
                expires_at,
            } => Ok((access_token, expires_at)),
            Response::Error { error } => Err(TokenError::Agent(error)),
            other => Err(self.down(format!("unexpected answer {other:?}"))),
        }
    }

    /// Access tokens asked for so far, per upstream.
    pub fn token_requests(&self) -> Vec<(String, u64)> {
        self.token_requests
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }

    /// The upstream answered 403 with this `WWW-Authenticate` challenge (`insufficient_scope`).
    pub async fn scope_required(&self, upstream: &str, challenge: &str) -> Result<(), TokenError> {
        match self
            .request(Request::ScopeRequired {
                upstream: upstream.to_owned(),
                challenge: challenge.to_owned(),
            })
            .await?
        {
            Response::Error { error } => Err(TokenError::Agent(error)),
            _ => Ok(()),
        }
    }

    pub async fn token_rejected(&self, upstream: &str, token: &str) -> Result<(), TokenError> {
        let fp = proto::token_fingerprint(token);
        match self
            .request(Request::TokenRejected {
                upstream: upstream.to_owned(),
                token_fingerprint: fp,
            })
            .await?
        {
            Response::Error { error } => Err(TokenError::Agent(error)),
            _ => Ok(()),
        }
    }
}
