//! Bearer tokens for an HTTP upstream: from the agent (cached until shortly before expiry) or
//! an environment variable; a 401 reports the rejected token to the agent; a 403
//! `insufficient_scope` names the scopes for a step-up login.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{Auth, Conn, Failure};
use crate::agent_client::TokenError;

/// The `WWW-Authenticate` of a 403 that asks for more scope (RFC 6750 `insufficient_scope`).
pub(super) fn insufficient_scope(resp: &reqwest::Response) -> Option<String> {
    resp.headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.contains("insufficient_scope"))
        .map(str::to_owned)
}

/// Tokens are renewed when they have less than this left.
const TOKEN_MARGIN: u64 = 30;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Conn {
    pub(super) async fn bearer(&self) -> Result<Option<String>, Failure> {
        match &self.spec.auth {
            Auth::None => Ok(None),
            Auth::Static(t) => Ok(Some(t.clone())),
            Auth::Agent(agent) => {
                if let Some((t, exp)) = self.token.lock().clone()
                    && exp > unix_now() + TOKEN_MARGIN
                {
                    return Ok(Some(t));
                }
                match agent.get_token(&self.up.name, TOKEN_MARGIN * 2).await {
                    Ok((t, exp)) => {
                        *self.token.lock() = Some((t.clone(), exp));
                        Ok(Some(t))
                    }
                    Err(TokenError::Agent(e @ proto::AgentError::NeedsLogin { .. })) => {
                        Err(Failure::NeedsLogin(e.to_string()))
                    }
                    Err(e) => Err(Failure::Broken(e.to_string())),
                }
            }
        }
    }

    /// The bearer token, or `None` after reporting why there is none (the connection ends).
    pub(super) async fn bearer_or_report(&self) -> Option<Option<String>> {
        match self.bearer().await {
            Ok(t) => Some(t),
            Err(f) => {
                let _ = self.fail.send(f);
                None
            }
        }
    }

    /// The upstream refused `token` (401): drop it and tell the agent, which refreshes.
    pub(super) async fn reject(&self, token: Option<String>) -> Result<(), Failure> {
        self.token.lock().take();
        if let (Auth::Agent(agent), Some(t)) = (&self.spec.auth, token) {
            tracing::info!(upstream = %self.up.name, "upstream answered 401; asking the agent for a new token");
            agent
                .token_rejected(&self.up.name, &t)
                .await
                .map_err(|e| match e {
                    TokenError::Agent(e @ proto::AgentError::NeedsLogin { .. }) => {
                        Failure::NeedsLogin(e.to_string())
                    }
                    e => Failure::Broken(e.to_string()),
                })?;
        }
        Ok(())
    }
}
