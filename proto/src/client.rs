//! The client side of the agent socket, shared by the bridge and the agent's own CLI: connect,
//! the Hello exchange (protocol version check), and one request/response exchange by id.

use std::path::Path;

use futures_util::{SinkExt, StreamExt};
use tokio::net::UnixStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::{AgentError, AgentMessage, ClientMessage, PROTOCOL_VERSION, Request, Response};

/// An open, greeted connection to the agent.
pub type Conn = Framed<UnixStream, LengthDelimitedCodec>;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached or the connection broke.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The agent answered the Hello with an error (for example another protocol version).
    #[error("{0}")]
    Refused(AgentError),
    /// The agent said something the protocol does not allow here.
    #[error("{0}")]
    Protocol(String),
}

/// Connects to the agent at `path` and exchanges Hello.
pub async fn connect(path: &Path) -> Result<Conn, ClientError> {
    let stream = UnixStream::connect(path).await?;
    let mut framed = Framed::new(stream, crate::codec());
    framed
        .send(crate::encode(&ClientMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
        }))
        .await?;
    match framed.next().await {
        Some(frame) => match crate::decode::<AgentMessage>(&frame?) {
            Ok(AgentMessage::Hello { .. }) => Ok(framed),
            Ok(AgentMessage::Response {
                response: Response::Error { error },
                ..
            }) => Err(ClientError::Refused(error)),
            Ok(other) => Err(ClientError::Protocol(format!(
                "unexpected handshake answer {other:?}"
            ))),
            Err(e) => Err(ClientError::Protocol(e.to_string())),
        },
        None => Err(ClientError::Protocol(
            "the agent closed the connection during the handshake".into(),
        )),
    }
}

/// Sends `request` as `id` and waits for the response with that id (others are skipped).
pub async fn exchange(conn: &mut Conn, id: u64, request: Request) -> Result<Response, ClientError> {
    conn.send(crate::encode(&ClientMessage::Request { id, request }))
        .await?;
    loop {
        let frame = conn
            .next()
            .await
            .ok_or_else(|| ClientError::Protocol("the agent closed the connection".into()))??;
        match crate::decode::<AgentMessage>(&frame) {
            Ok(AgentMessage::Response { id: got, response }) if got == id => return Ok(response),
            Ok(_) => continue,
            Err(e) => return Err(ClientError::Protocol(e.to_string())),
        }
    }
}
