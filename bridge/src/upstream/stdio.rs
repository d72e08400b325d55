//! stdio upstreams: a child process speaking newline-delimited JSON-RPC, supervised with
//! restart and backoff. Children live in their own process group, are SIGKILLed by the kernel if
//! the bridge dies (Linux), and are stopped gracefully (stdin closed, SIGTERM, SIGKILL) when the
//! bridge shuts down.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Upstream;
use super::connection::{self, Ending};
use super::peer::RpcPeer;
use super::supervisor::{self, Outcome};
use futures_util::future::BoxFuture;

#[derive(Debug, Clone)]
pub struct StdioSpec {
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<PathBuf>,
    /// Variables of the bridge's environment the child also gets (`inherit_env`).
    pub inherit_env: Vec<String>,
}

/// Longest stdout line accepted from a child; longer lines are dropped with a warning.
pub(crate) const MAX_MESSAGE: usize = 64 * 1024 * 1024;
/// Longest stderr line logged; the rest of the line is cut.
const MAX_STDERR_LINE: usize = 8 * 1024;
/// How long a child gets after its stdin closes, and again after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// Reads one `\n`-terminated line into `buf` (without the newline), keeping at most `max`
/// bytes. Returns `Ok(None)` at EOF, `Ok(Some(true))` if the line was cut.
pub async fn read_line_capped<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut cut = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() && !cut {
                None
            } else {
                Some(cut)
            });
        }
        let (line_part, found) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], Some(i + 1)),
            None => (chunk, None),
        };
        let room = max.saturating_sub(buf.len());
        if line_part.len() > room {
            cut = true;
        }
        buf.extend_from_slice(&line_part[..line_part.len().min(room)]);
        let used = found.unwrap_or(chunk.len());
        r.consume(used);
        if found.is_some() {
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
            return Ok(Some(cut));
        }
    }
}

/// Runs the upstream until `shutdown`: start, handshake, serve, and restart with backoff.
pub async fn supervise(up: Arc<Upstream>, spec: StdioSpec, shutdown: CancellationToken) {
    let (u, stop) = (up.clone(), shutdown.clone());
    supervisor::supervise(up, shutdown, move || {
        run_once(u.clone(), spec.clone(), stop.clone())
    })
    .await;
}

fn spawn_child(spec: &StdioSpec) -> std::io::Result<Child> {
    let mut cmd = Command::new(&spec.command);
    // A clean environment: the daemons' secrets never reach a third-party program.
    let env = proto::childenv::child_env(std::env::vars(), &spec.inherit_env, &spec.env);
    cmd.args(&spec.args)
        .env_clear()
        .envs(&env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cwd) = &spec.cwd {
        cmd.current_dir(cwd);
    }
    crate::sys::configure_child(&mut cmd);
    cmd.spawn()
}

async fn run_once(up: Arc<Upstream>, spec: StdioSpec, shutdown: CancellationToken) -> Outcome {
    let failed = |reason: String| Outcome::Failed {
        reason,
        was_ready_for: Duration::ZERO,
    };
    let mut child = match spawn_child(&spec) {
        Ok(c) => c,
        Err(e) => return failed(format!("cannot start `{}`: {e}", spec.command)),
    };
    let pid = child.id();
    tracing::info!(upstream = %up.name, pid, command = %spec.command, "started stdio upstream");
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return failed("child has no stdio pipes".into());
    };
    let name = up.name.clone();
    tokio::spawn(log_stderr(name.clone(), stderr));
    let (out_tx, out_rx) = mpsc::unbounded_channel::<Bytes>();
    let close_stdin = CancellationToken::new();
    tokio::spawn(write_stdin(stdin, out_rx, close_stdin.clone()));
    let peer = Arc::new(RpcPeer::new(name, out_tx));
    let reader = tokio::spawn(read_stdout(up.clone(), peer.clone(), stdout));
    let mut transport = ChildProcess {
        child,
        pid,
        close_stdin,
        reader,
    };
    connection::run(&up, peer, &mut transport, &shutdown).await
}

/// A running child as a connection's transport.
struct ChildProcess {
    child: Child,
    pid: Option<u32>,
    close_stdin: CancellationToken,
    reader: tokio::task::JoinHandle<()>,
}

impl connection::Transport for ChildProcess {
    fn ended(&mut self) -> BoxFuture<'_, Ending> {
        Box::pin(async move {
            let reason = tokio::select! {
                status = self.child.wait() => match status {
                    Ok(s) => format!("process exited ({s})"),
                    Err(e) => format!("waiting for the process failed: {e}"),
                },
                _ = &mut self.reader => {
                    // EOF on stdout usually means the process is exiting: report how it ended.
                    match tokio::time::timeout(Duration::from_millis(500), self.child.wait()).await {
                        Ok(Ok(s)) => format!("process exited ({s})"),
                        _ => "process closed its stdout".into(),
                    }
                }
            };
            Ending::Broken(reason)
        })
    }

    fn close(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            stop_child(&mut self.child, self.pid, &self.close_stdin).await;
            self.reader.abort();
        })
    }

    fn abort(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.reader.abort();
            stop_child(&mut self.child, self.pid, &self.close_stdin).await;
        })
    }
}

/// Closes stdin, then SIGTERM, then SIGKILL, each after a grace period; signals reach the whole
/// process group so grandchildren (an `npx` wrapper's node) go too.
async fn stop_child(child: &mut Child, pid: Option<u32>, close_stdin: &CancellationToken) {
    close_stdin.cancel();
    if tokio::time::timeout(STOP_GRACE, child.wait()).await.is_ok() {
        if let Some(pid) = pid {
            crate::sys::signal_group(pid, crate::sys::SIGKILL);
        }
        return;
    }
    if let Some(pid) = pid {
        crate::sys::signal_group(pid, crate::sys::SIGTERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        if let Some(pid) = pid {
            crate::sys::signal_group(pid, crate::sys::SIGKILL);
        }
        let _ = child.kill().await;
    } else if let Some(pid) = pid {
        crate::sys::signal_group(pid, crate::sys::SIGKILL);
    }
}

async fn write_stdin(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    close: CancellationToken,
) {
    loop {
        let line = tokio::select! {
            line = rx.recv() => line,
            () = close.cancelled() => None,
        };
        let Some(line) = line else { break };
        // Under load several messages are queued: write them with one syscall.
        let result = match rx.try_recv() {
            Err(_) => stdin.write_all(&line).await,
            Ok(next) => {
                let mut batch = Vec::with_capacity(line.len() + next.len() + 256);
                batch.extend_from_slice(&line);
                batch.extend_from_slice(&next);
                while batch.len() < 256 * 1024 {
                    match rx.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                stdin.write_all(&batch).await
            }
        };
        if result.is_err() || stdin.flush().await.is_err() {
            break;
        }
    }
}

async fn log_stderr(name: Arc<str>, stderr: tokio::process::ChildStderr) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    while let Ok(Some(cut)) = read_line_capped(&mut reader, &mut buf, MAX_STDERR_LINE).await {
        let line = String::from_utf8_lossy(&buf);
        let ellipsis = if cut { " [...]" } else { "" };
        tracing::info!(target: "upstream_stderr", upstream = %name, "{line}{ellipsis}");
    }
}

async fn read_stdout(up: Arc<Upstream>, peer: Arc<RpcPeer>, stdout: tokio::process::ChildStdout) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let mut buf = Vec::new();
    loop {
        match read_line_capped(&mut reader, &mut buf, MAX_MESSAGE).await {
            Ok(None) | Err(_) => return,
            Ok(Some(true)) => {
                tracing::warn!(upstream = %up.name, "dropped a message over {MAX_MESSAGE} bytes");
            }
            Ok(Some(false)) => {
                if buf.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                match super::protocol::dispatch_line(&up, &peer, &buf) {
                    Ok(()) => {}
                    Err(e) => {
                        let shown =
                            String::from_utf8_lossy(&buf[..buf.len().min(200)]).into_owned();
                        tracing::warn!(upstream = %up.name, error = %e, line = %shown, "upstream wrote a line that is not JSON-RPC");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capped_lines() {
        let data: &[u8] = b"short\r\nthis line is long\nlast";
        let mut r = BufReader::with_capacity(4, data);
        let mut buf = Vec::new();
        assert_eq!(
            read_line_capped(&mut r, &mut buf, 8).await.unwrap(),
            Some(false)
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line_capped(&mut r, &mut buf, 8).await.unwrap(),
            Some(true)
        );
        assert_eq!(buf, b"this lin");
        assert_eq!(
            read_line_capped(&mut r, &mut buf, 8).await.unwrap(),
            Some(false)
        );
        assert_eq!(buf, b"last");
        assert_eq!(read_line_capped(&mut r, &mut buf, 8).await.unwrap(), None);
    }
}
