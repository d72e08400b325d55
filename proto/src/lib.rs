//! The IPC contract between `mcp-bridge` and `mcp-cred-agent`.
//!
//! Frames are `tokio_util::codec::LengthDelimitedCodec` frames (u32 big-endian length prefix)
//! carrying one JSON document each. JSON rather than a binary encoding so that the two daemons
//! can be upgraded separately: unknown fields are ignored and optional fields default.
//!
//! A connection starts with the client sending [`ClientMessage::Hello`] and the agent answering
//! [`AgentMessage::Hello`]; after that every [`ClientMessage::Request`] gets exactly one
//! [`AgentMessage::Response`] with the same id.
#![forbid(unsafe_code)]

pub mod childenv;
pub mod client;
pub mod config;
pub mod netguard;
pub mod wake;
pub mod watch;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

/// Bumped when a message changes meaning incompatibly. Additive changes keep the version.
pub const PROTOCOL_VERSION: u32 = 1;

/// Largest frame either side accepts. Token responses are a few KiB at most.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// File name of the agent socket inside the config directory.
pub const SOCKET_FILE_NAME: &str = "agent.sock";

/// Environment variable that overrides the socket path.
pub const SOCKET_ENV: &str = "MCP_CRED_AGENT_SOCKET";

/// The codec both sides use; frames over [`MAX_FRAME_LEN`] are an error, never an allocation.
pub fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_LEN)
        .new_codec()
}

/// Messages sent by a client (the bridge or a CLI) to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientMessage {
    Hello { protocol_version: u32 },
    Request { id: u64, request: Request },
}

/// Messages sent by the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum AgentMessage {
    Hello { protocol_version: u32 },
    Response { id: u64, response: Response },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op")]
pub enum Request {
    /// An access token for `upstream` valid for at least `min_valid_for_secs`.
    GetToken {
        upstream: String,
        #[serde(default)]
        min_valid_for_secs: u64,
    },
    /// The upstream answered 401 to the token with this fingerprint.
    TokenRejected {
        upstream: String,
        token_fingerprint: String,
    },
    /// The upstream answered 403 `insufficient_scope`; `challenge` is its `WWW-Authenticate`.
    /// The agent logs in again asking for the scopes named there as well as those already
    /// granted (headless where possible): `Ack` once a token with them exists, else an error
    /// that says what the user must do.
    ScopeRequired {
        upstream: String,
        challenge: String,
    },
    /// Log in to `upstream`: discovery, registration, consent (headless where possible).
    Login {
        upstream: String,
    },
    /// Forget `upstream`'s tokens (revoking them where the server supports RFC 7009).
    Logout {
        upstream: String,
    },
    /// An OAuth redirect reached the bridge's `/oauth/callback`.
    CompleteLogin {
        state: String,
        #[serde(default)]
        code: Option<String>,
        #[serde(default)]
        error: Option<String>,
        /// The redirect's `iss` (RFC 9207), checked against the authorization server.
        #[serde(default)]
        iss: Option<String>,
    },
    Status,
    /// Is this the owner password? (The bridge's connector consent page asks for it; the
    /// password itself stays with the agent.) `Ack`, or an error; failures are rate limited.
    VerifyOwner {
        password: Redacted,
    },
}

/// A string that never shows in `Debug` (a password on its way to the agent).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Redacted(pub String);

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum Response {
    Token {
        access_token: String,
        /// Unix seconds.
        expires_at: u64,
    },
    Ack,
    /// Headless consent was not possible: the user must open this URL; the redirect comes back
    /// through `CompleteLogin`.
    Browser {
        authorization_url: String,
    },
    Status {
        upstreams: Vec<UpstreamStatus>,
        /// Where the logins are kept (the file or the OS keychain item), and whether the last
        /// write failed. Absent from agents older than the keychain store.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        store: Option<String>,
    },
    Error {
        error: AgentError,
    },
}

/// Hand-written so that an access token can never reach a log line through `{:?}`.
impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Token { expires_at, .. } => f
                .debug_struct("Token")
                .field("access_token", &"<redacted>")
                .field("expires_at", expires_at)
                .finish(),
            Self::Ack => f.write_str("Ack"),
            Self::Browser { authorization_url } => f
                .debug_struct("Browser")
                .field("authorization_url", authorization_url)
                .finish(),
            Self::Status { upstreams, store } => f
                .debug_struct("Status")
                .field("upstreams", upstreams)
                .field("store", store)
                .finish(),
            Self::Error { error } => f.debug_struct("Error").field("error", error).finish(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamStatus {
    pub name: String,
    pub logged_in: bool,
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub expires_at: Option<u64>,
    #[serde(default)]
    pub last_error: Option<String>,
}

/// Typed errors, so the bridge can branch on the kind instead of parsing strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "code")]
pub enum AgentError {
    #[error("upstream '{upstream}' needs a login: run `{how}`")]
    NeedsLogin { upstream: String, how: String },
    #[error("refreshing the token of '{upstream}' failed: {reason}")]
    RefreshFailed { upstream: String, reason: String },
    #[error("no OAuth upstream named '{upstream}' is configured")]
    UnknownUpstream { upstream: String },
    #[error("no login is waiting for that state")]
    UnknownState,
    #[error("login to '{upstream}' failed: {reason}")]
    LoginFailed { upstream: String, reason: String },
    #[error("protocol version {got} is not supported (agent speaks {supported})")]
    VersionMismatch { got: u32, supported: u32 },
    #[error("{message}")]
    Internal { message: String },
    /// `VerifyOwner` with a wrong password, none configured, or too many failures.
    #[error("{reason}")]
    NotOwner { reason: String },
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is not valid JSON for this message type: {0}")]
    Json(#[from] serde_json::Error),
}

/// A short, stable fingerprint of an access token, so the bridge can say which token an upstream
/// rejected without sending the token back (FNV-1a 64, hex).
pub fn token_fingerprint(token: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in token.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// Decodes one frame body. Garbage is an error, never a panic.
pub fn decode<T: for<'de> Deserialize<'de>>(frame: &[u8]) -> Result<T, DecodeError> {
    Ok(serde_json::from_slice(frame)?)
}

/// Encodes one message as a frame body.
pub fn encode<T: Serialize>(msg: &T) -> bytes::Bytes {
    // Serialising these plain enums of strings and integers cannot fail; an empty frame would be
    // rejected by the peer as garbage rather than misread.
    serde_json::to_vec(msg).unwrap_or_default().into()
}

#[derive(Debug, thiserror::Error)]
pub enum SocketPathError {
    #[error(
        "agent socket path {path} is {len} bytes, over the platform limit of {max}; \
         set {SOCKET_ENV} to a shorter path"
    )]
    TooLong {
        path: PathBuf,
        len: usize,
        max: usize,
    },
}

/// `sun_path` capacity minus the terminating NUL (104 on macOS, 108 on Linux).
pub const MAX_SOCKET_PATH: usize = if cfg!(target_os = "linux") { 107 } else { 103 };

/// The socket path rule: `$MCP_CRED_AGENT_SOCKET` if set, else `<config_dir>/agent.sock`.
/// One config directory is one installation, so a test's agent and bridge find each other and
/// never a user's.
pub fn socket_path(
    config_dir: &Path,
    override_path: Option<&Path>,
) -> Result<PathBuf, SocketPathError> {
    let path = match override_path {
        Some(p) => p.to_path_buf(),
        None => config_dir.join(SOCKET_FILE_NAME),
    };
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(SocketPathError::TooLong {
            path,
            len,
            max: MAX_SOCKET_PATH,
        });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tokio_util::codec::{Decoder, Encoder};

    fn roundtrip<T>(msg: T)
    where
        T: Serialize + for<'de> Deserialize<'de> + PartialEq + std::fmt::Debug,
    {
        let mut codec = codec();
        let mut buf = BytesMut::new();
        codec.encode(encode(&msg), &mut buf).unwrap();
        let frame = codec.decode(&mut buf).unwrap().unwrap();
        let back: T = decode(&frame).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn every_message_roundtrips() {
        roundtrip(ClientMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
        });
        for request in [
            Request::GetToken {
                upstream: "overseer".into(),
                min_valid_for_secs: 30,
            },
            Request::TokenRejected {
                upstream: "overseer".into(),
                token_fingerprint: "abc".into(),
            },
            Request::ScopeRequired {
                upstream: "overseer".into(),
                challenge: "Bearer error=\"insufficient_scope\", scope=\"a b\"".into(),
            },
            Request::CompleteLogin {
                state: "s".into(),
                code: Some("c".into()),
                error: None,
                iss: None,
            },
            Request::Status,
            Request::Login {
                upstream: "o".into(),
            },
            Request::Logout {
                upstream: "o".into(),
            },
        ] {
            roundtrip(ClientMessage::Request { id: 7, request });
        }
        roundtrip(AgentMessage::Hello {
            protocol_version: PROTOCOL_VERSION,
        });
        let errors = [
            AgentError::NeedsLogin {
                upstream: "o".into(),
                how: "mcp-cred-agent login o".into(),
            },
            AgentError::RefreshFailed {
                upstream: "o".into(),
                reason: "r".into(),
            },
            AgentError::UnknownUpstream {
                upstream: "o".into(),
            },
            AgentError::UnknownState,
            AgentError::LoginFailed {
                upstream: "o".into(),
                reason: "r".into(),
            },
            AgentError::VersionMismatch {
                got: 9,
                supported: 1,
            },
            AgentError::Internal {
                message: "m".into(),
            },
        ];
        let mut responses = vec![
            Response::Token {
                access_token: "t".into(),
                expires_at: 5,
            },
            Response::Ack,
            Response::Browser {
                authorization_url: "https://as/authorize".into(),
            },
            Response::Status {
                upstreams: vec![UpstreamStatus {
                    name: "o".into(),
                    logged_in: true,
                    issuer: Some("https://as".into()),
                    scopes: vec!["a".into()],
                    expires_at: Some(3),
                    last_error: None,
                }],
                store: Some("/home/u/.config/mcp-bridge/oauth-state.json".into()),
            },
        ];
        responses.extend(errors.into_iter().map(|error| Response::Error { error }));
        for response in responses {
            roundtrip(AgentMessage::Response { id: 1, response });
        }
    }

    #[test]
    fn unknown_fields_are_ignored() {
        let msg: ClientMessage = decode(
            br#"{"type":"Request","id":1,"future":true,"request":{"op":"GetToken","upstream":"x","extra":1}}"#,
        )
        .unwrap();
        assert_eq!(
            msg,
            ClientMessage::Request {
                id: 1,
                request: Request::GetToken {
                    upstream: "x".into(),
                    min_valid_for_secs: 0
                }
            }
        );
    }

    #[test]
    fn garbage_frames_are_errors() {
        for bad in [
            &b""[..],
            b"\xff\xfe",
            b"{}",
            b"[1,2]",
            br#"{"type":"Nope"}"#,
        ] {
            assert!(decode::<ClientMessage>(bad).is_err(), "{bad:?}");
            assert!(decode::<AgentMessage>(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn oversize_frames_are_refused() {
        let mut codec = codec();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&((MAX_FRAME_LEN as u32) + 1).to_be_bytes());
        buf.extend_from_slice(&[b'x'; 16]);
        assert!(codec.decode(&mut buf).is_err());
        let mut out = BytesMut::new();
        let big = bytes::Bytes::from(vec![b'x'; MAX_FRAME_LEN + 1]);
        assert!(codec.encode(big, &mut out).is_err());
    }

    #[test]
    fn token_is_redacted_in_debug() {
        let r = Response::Token {
            access_token: "secret-token-value".into(),
            expires_at: 1,
        };
        assert!(!format!("{r:?}").contains("secret-token-value"));
    }

    #[test]
    fn socket_path_rule() {
        let dir = Path::new("/tmp/cfg");
        assert_eq!(
            socket_path(dir, None).unwrap(),
            Path::new("/tmp/cfg/agent.sock")
        );
        assert_eq!(
            socket_path(dir, Some(Path::new("/run/a.sock"))).unwrap(),
            Path::new("/run/a.sock")
        );
        let long = PathBuf::from(format!("/tmp/{}", "d".repeat(200)));
        let err = socket_path(&long, None).unwrap_err().to_string();
        assert!(err.contains("MCP_CRED_AGENT_SOCKET"), "{err}");
    }
}
