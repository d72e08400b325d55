//! The agent's configuration: the shared contract (`proto::config`) read from this process's
//! environment and config.toml, and the socket it serves.

use std::path::PathBuf;

use proto::config::Config;

/// The configuration and the agent socket path of this process.
pub fn load() -> anyhow::Result<(Config, PathBuf)> {
    let config = proto::config::load_process()?;
    let socket = config.agent_socket()?;
    Ok((config, socket))
}
