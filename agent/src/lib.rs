//! mcp-cred-agent: the only process that holds OAuth secrets. It serves short-lived access
//! tokens to the bridge over a Unix socket (see the `proto` crate for the contract).
//!
//! This build serves the socket, the protocol handshake, `Status`, and typed answers for every
//! request; OAuth login, the token store and refresh are not implemented yet, so every
//! configured OAuth upstream answers `NeedsLogin`.

pub mod cli;
pub mod server;
mod sys;
