//! The bridge's side of the agent socket: short-lived access tokens on demand. The bridge never
//! sees a refresh token; the IPC contract has no message that carries one.

use std::path::PathBuf;

use futures_util::{SinkExt, StreamExt};
use proto::{AgentError, AgentMessage, ClientMessage, PROTOCOL_VERSION, Request, Response};
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "mcp-cred-agent is not running or not answering on {path} ({reason}); start it with `mcp-cred-agent serve` or its service"
    )]
    AgentDown { path: String, reason: String },
    #[error("{0}")]
    Agent(AgentError),
}

type Conn = Framed<UnixStream, LengthDelimitedCodec>;

pub struct AgentClient {
    path: PathBuf,
    conn: Mutex<Option<(Conn, u64)>>,
}

impl AgentClient {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            conn: Mutex::new(None),
        }
    }

    fn down(&self, reason: impl ToString) -> TokenError {
        TokenError::AgentDown {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    async fn connect(&self) -> Result<Conn, TokenError> {
        let stream = UnixStream::connect(&self.path)
            .await
            .map_err(|e| self.down(e))?;
        let mut framed = Framed::new(stream, proto::codec());
        framed
            .send(proto::encode(&ClientMessage::Hello {
                protocol_version: PROTOCOL_VERSION,
            }))
            .await
            .map_err(|e| self.down(e))?;
        match framed.next().await {
            Some(Ok(frame)) => match proto::decode::<AgentMessage>(&frame) {
                Ok(AgentMessage::Hello { .. }) => Ok(framed),
                Ok(AgentMessage::Response {
                    response: Response::Error { error },
                    ..
                }) => Err(TokenError::Agent(error)),
                other => Err(self.down(format!("unexpected handshake answer {other:?}"))),
            },
            _ => Err(self.down("the agent closed the connection")),
        }
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
            let sent = conn
                .send(proto::encode(&ClientMessage::Request {
                    id,
                    request: request.clone(),
                }))
                .await;
            let answer = match sent {
                Ok(()) => loop {
                    match conn.next().await {
                        Some(Ok(frame)) => match proto::decode::<AgentMessage>(&frame) {
                            Ok(AgentMessage::Response { id: got, response }) if got == id => {
                                break Ok(response);
                            }
                            Ok(_) => continue,
                            Err(e) => break Err(e.to_string()),
                        },
                        Some(Err(e)) => break Err(e.to_string()),
                        None => break Err("connection closed".into()),
                    }
                },
                Err(e) => Err(e.to_string()),
            };
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
