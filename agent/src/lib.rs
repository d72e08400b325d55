//! mcp-cred-agent: the only process that holds OAuth secrets. It serves short-lived access
//! tokens to the bridge over a Unix socket (see the `proto` crate for the contract).
//!
pub mod cli;
pub mod config;
pub mod consent;
pub mod keychain;
pub mod login;
pub mod oauth;
pub mod server;
pub mod store;
mod sys;
pub mod tokens;
