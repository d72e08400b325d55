//! The end-to-end tests, one binary: each module starts real processes (the bridge, the agent,
//! the shim, fixture and third-party MCP servers) and speaks to them over real sockets. One
//! binary links the world once (each test binary used to link it again).

mod agent;
mod bridge;
mod chaos;
mod compat;
mod connectors;
mod era;
mod guards;
mod hostile;
mod http_upstream;
mod keychain;
mod lifecycle;
mod oauth;
mod operations;
mod passthrough;
mod pins;
mod policy;
mod profiles;
mod shim;
mod status_page;
