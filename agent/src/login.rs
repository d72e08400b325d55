//! `mcp-cred-agent login`: asks the running agent to log in; when consent needs a person, opens
//! (or prints) the authorization URL and, if the bridge is not running, serves the OAuth callback
//! itself and relays it to the agent.

use std::time::Duration;

use anyhow::Context;
use proto::{Request, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::AgentClient;

pub async fn run(upstream: Option<String>, no_browser: bool) -> anyhow::Result<()> {
    let (config, socket) = crate::config::load()?;
    let mut client = AgentClient::connect(&socket).await?;
    let names: Vec<String> = match upstream {
        Some(u) => vec![u],
        None => match client.request(Request::Status).await? {
            Response::Status { upstreams, .. } => upstreams
                .into_iter()
                .filter(|u| !u.logged_in)
                .map(|u| u.name)
                .collect(),
            other => anyhow::bail!("unexpected answer {other:?}"),
        },
    };
    if names.is_empty() {
        println!("every OAuth upstream is logged in");
    }
    for name in names {
        match client
            .request(Request::Login {
                upstream: name.clone(),
            })
            .await?
        {
            Response::Ack => println!("logged in to {name}"),
            Response::Browser { authorization_url } => {
                browser_login(
                    &mut client,
                    &name,
                    &authorization_url,
                    config.port,
                    no_browser,
                )
                .await?;
                println!("logged in to {name}");
            }
            Response::Error { error } => return Err(error.into()),
            other => anyhow::bail!("unexpected answer {other:?}"),
        }
    }
    Ok(())
}

async fn browser_login(
    client: &mut AgentClient,
    name: &str,
    url: &str,
    port: u16,
    no_browser: bool,
) -> anyhow::Result<()> {
    eprintln!("Open this URL to allow mcp-bridge to access {name}:\n\n  {url}\n");
    if !no_browser {
        let opener = if cfg!(target_os = "macos") {
            "open"
        } else {
            "xdg-open"
        };
        let env = proto::childenv::child_env(std::env::vars(), &[], &Default::default());
        let _ = std::process::Command::new(opener)
            .arg(url)
            .env_clear()
            .envs(env)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    // Without a running bridge on the callback port, receive the redirect here.
    match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(listener) => {
            let (state, code, error, iss) =
                tokio::time::timeout(Duration::from_secs(600), accept_callback(&listener))
                    .await
                    .context("no redirect within 10 minutes")??;
            match client
                .request(Request::CompleteLogin {
                    state,
                    code,
                    error,
                    iss,
                })
                .await?
            {
                Response::Ack => Ok(()),
                Response::Error { error } => Err(error.into()),
                other => anyhow::bail!("unexpected answer {other:?}"),
            }
        }
        Err(_) => {
            eprintln!(
                "(mcp-bridge is listening on port {port} and will pass the redirect to the agent)"
            );
            for _ in 0..600 {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if let Response::Status { upstreams, .. } = client.request(Request::Status).await?
                    && upstreams.iter().any(|u| u.name == name && u.logged_in)
                {
                    return Ok(());
                }
            }
            anyhow::bail!("no login within 10 minutes")
        }
    }
}

/// Serves one `GET /oauth/callback?code=..&state=..` and returns its parameters.
/// The redirect's state, code, error and iss.
type Callback = (String, Option<String>, Option<String>, Option<String>);

async fn accept_callback(listener: &tokio::net::TcpListener) -> anyhow::Result<Callback> {
    loop {
        let (mut sock, _) = listener.accept().await?;
        let mut buf = vec![0u8; 8192];
        let n = sock.read(&mut buf).await?;
        let head = String::from_utf8_lossy(&buf[..n]);
        let target = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .unwrap_or("");
        let Ok(url) = url::Url::parse(&format!("http://127.0.0.1{target}")) else {
            continue;
        };
        if url.path() != "/oauth/callback" {
            let _ = sock
                .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                .await;
            continue;
        }
        let get = |k: &str| {
            url.query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        let body = "<html><body>mcp-bridge: login received, you can close this tab.</body></html>";
        let _ = sock.write_all(format!("HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\n\r\n{body}", body.len()).as_bytes()).await;
        return Ok((
            get("state").unwrap_or_default(),
            get("code"),
            get("error"),
            get("iss"),
        ));
    }
}
