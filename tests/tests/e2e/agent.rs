//! The credential agent's socket, over a real Unix socket against the real binary.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use mcp_bridge_tests::*;
use proto::{AgentError, AgentMessage, ClientMessage, Request, Response};
use tokio::net::UnixStream;
use tokio_util::codec::Framed;

struct Agent {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    socket: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_agent(dir: &Path) -> (Child, Arc<Mutex<Vec<String>>>) {
    let mut child = Command::new(bin("mcp-cred-agent"))
        .env_clear()
        .env("MCP_BRIDGE_CONFIG_DIR", dir)
        .env("MCP_BRIDGE_OVERSEER_URL", "https://mcp.example.com/mcp")
        .env("MCP_BRIDGE_LOG_STDERR", "1")
        .env("MCP_BRIDGE_LOG_PATH", dir.join("mcp-bridge.log"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let logs = Arc::new(Mutex::new(Vec::new()));
    let sink = logs.clone();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    (child, logs)
}

async fn start_agent(dir: &Path) -> Agent {
    let (child, logs) = spawn_agent(dir);
    let l = logs.clone();
    wait_for("agent to listen", Duration::from_secs(20), async || {
        l.lock()
            .unwrap()
            .iter()
            .any(|x| x.contains("listening on"))
            .then_some(())
    })
    .await;
    Agent {
        child,
        logs,
        socket: dir.join("agent.sock"),
    }
}

type Conn = Framed<UnixStream, tokio_util::codec::LengthDelimitedCodec>;

async fn connect(path: &Path) -> Conn {
    let mut f = Framed::new(UnixStream::connect(path).await.unwrap(), proto::codec());
    f.send(proto::encode(&ClientMessage::Hello {
        protocol_version: proto::PROTOCOL_VERSION,
    }))
    .await
    .unwrap();
    let hello: AgentMessage = proto::decode(&f.next().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        hello,
        AgentMessage::Hello {
            protocol_version: proto::PROTOCOL_VERSION
        }
    );
    f
}

async fn ask(f: &mut Conn, id: u64, request: Request) -> Response {
    f.send(proto::encode(&ClientMessage::Request { id, request }))
        .await
        .unwrap();
    match proto::decode(&f.next().await.unwrap().unwrap()).unwrap() {
        AgentMessage::Response { id: got, response } => {
            assert_eq!(got, id);
            response
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn serves_typed_answers_on_a_private_socket() {
    let dir = TempDir::new("agent");
    let a = start_agent(dir.path()).await;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(dir.path()), 0o700);
    assert_eq!(mode(&a.socket), 0o600);

    let mut f = connect(&a.socket).await;
    let r = ask(
        &mut f,
        1,
        Request::GetToken {
            upstream: "overseer".into(),
            min_valid_for_secs: 30,
        },
    )
    .await;
    assert_eq!(
        r,
        Response::Error {
            error: AgentError::NeedsLogin {
                upstream: "overseer".into(),
                how: "mcp-cred-agent login overseer".into()
            }
        }
    );
    let r = ask(
        &mut f,
        2,
        Request::GetToken {
            upstream: "nope".into(),
            min_valid_for_secs: 0,
        },
    )
    .await;
    assert_eq!(
        r,
        Response::Error {
            error: AgentError::UnknownUpstream {
                upstream: "nope".into()
            }
        }
    );
    let Response::Status { upstreams, .. } = ask(&mut f, 3, Request::Status).await else {
        panic!()
    };
    assert_eq!(upstreams.len(), 1);
    assert!(!upstreams[0].logged_in);

    // Many clients at once.
    let socket = a.socket.clone();
    let all = (0..50).map(|i| {
        let socket = socket.clone();
        async move {
            let mut f = connect(&socket).await;
            ask(
                &mut f,
                i,
                Request::GetToken {
                    upstream: "overseer".into(),
                    min_valid_for_secs: 0,
                },
            )
            .await
        }
    });
    for r in futures_util::future::join_all(all).await {
        assert!(matches!(
            r,
            Response::Error {
                error: AgentError::NeedsLogin { .. }
            }
        ));
    }

    // The CLI reads the same socket.
    let out = Command::new(bin("mcp-cred-agent"))
        .arg("status")
        .env_clear()
        .env("MCP_BRIDGE_CONFIG_DIR", dir.path())
        .env("MCP_BRIDGE_OVERSEER_URL", "https://x/mcp")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("overseer")
            && String::from_utf8_lossy(&out.stdout).contains("not logged in")
    );
}

#[tokio::test]
async fn garbage_and_oversize_frames_close_only_that_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TempDir::new("agent");
    let a = start_agent(dir.path()).await;
    for bytes in [
        &b"\x00\x00\x00\x05hello"[..],
        &b"\xff\xff\xff\xff"[..],
        &b"\x00\x00\x00\x0b{\"type\":1}x"[..],
    ] {
        let mut s = UnixStream::connect(&a.socket).await.unwrap();
        s.write_all(bytes).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "connection closed without an answer");
    }
    // A request before Hello is refused too.
    let mut f = Framed::new(
        UnixStream::connect(&a.socket).await.unwrap(),
        proto::codec(),
    );
    f.send(proto::encode(&ClientMessage::Request {
        id: 1,
        request: Request::Status,
    }))
    .await
    .unwrap();
    assert!(f.next().await.is_none());
    // The agent is unharmed.
    let mut f = connect(&a.socket).await;
    assert!(matches!(
        ask(&mut f, 1, Request::Status).await,
        Response::Status { .. }
    ));
    // A client of another protocol version gets a typed refusal.
    let mut f = Framed::new(
        UnixStream::connect(&a.socket).await.unwrap(),
        proto::codec(),
    );
    f.send(proto::encode(&ClientMessage::Hello {
        protocol_version: 99,
    }))
    .await
    .unwrap();
    let m: AgentMessage = proto::decode(&f.next().await.unwrap().unwrap()).unwrap();
    assert!(matches!(
        m,
        AgentMessage::Response {
            response: Response::Error {
                error: AgentError::VersionMismatch { got: 99, .. }
            },
            ..
        }
    ));
}

#[tokio::test]
async fn one_agent_per_socket_and_stale_sockets_are_replaced() {
    let dir = TempDir::new("agent");
    let mut a = start_agent(dir.path()).await;
    let (mut second, logs) = spawn_agent(dir.path());
    let status = wait_exit(&mut second, Duration::from_secs(20));
    assert!(!status.success());
    wait_for("refusal message", Duration::from_secs(5), async || {
        logs.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("already running"))
            .then_some(())
    })
    .await;
    // kill -9 leaves the socket file behind; the next agent replaces it.
    signal(a.child.id() as i32, libc::SIGKILL);
    wait_exit(&mut a.child, Duration::from_secs(10));
    assert!(a.socket.exists());
    let b = start_agent(dir.path()).await;
    assert!(
        b.logs
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("stale socket"))
    );
    let mut f = connect(&b.socket).await;
    assert!(matches!(
        ask(&mut f, 1, Request::Status).await,
        Response::Status { .. }
    ));
}

#[tokio::test]
async fn peers_of_another_uid_are_refused() {
    #[allow(unsafe_code)]
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "this test runs a client as another uid, which needs root (CI and the project's machines run tests as root)"
    );
    // The probe runs as `nobody`, so the build tree must be traversable by other users.
    let probe = bin("ipc-probe");
    let dir = TempDir::new("agent");
    let a = start_agent(dir.path()).await;
    // Open the file permissions so that only the uid check stands between nobody and the agent.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&a.socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let run = |uid: Option<u32>| {
        let mut c = Command::new(&probe);
        c.arg(&a.socket);
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            c.uid(uid).gid(uid);
        }
        String::from_utf8_lossy(&c.output().unwrap().stdout)
            .trim()
            .to_owned()
    };
    assert_eq!(run(None), "hello-ok");
    assert_eq!(
        run(Some(65534)),
        "closed",
        "a peer of another uid must be refused"
    );
    let logs = a.logs.clone();
    wait_for("refusal logged", Duration::from_secs(5), async || {
        logs.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("another user") && l.contains("65534"))
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_flood_of_idle_connections_is_capped_and_the_agent_keeps_serving() {
    use tokio::io::AsyncReadExt;
    let dir = TempDir::new("agent");
    let a = start_agent(dir.path()).await;
    let cap = mcp_cred_agent::server::MAX_CONNECTIONS;
    // Connections that never say hello: the first `cap` are held, the rest closed at once.
    let mut flood = Vec::new();
    for _ in 0..cap + 50 {
        flood.push(UnixStream::connect(&a.socket).await.unwrap());
    }
    let mut closed = 0;
    for s in flood.iter_mut().skip(cap) {
        let mut buf = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("a connection over the cap is closed, not held")
            .unwrap_or(0);
        closed += usize::from(n == 0);
    }
    assert_eq!(closed, 50);
    // Releasing the flood frees the slots: a real client is served again.
    drop(flood);
    let mut f = wait_for("a slot to free", Duration::from_secs(20), async || {
        let mut f = Framed::new(UnixStream::connect(&a.socket).await.ok()?, proto::codec());
        f.send(proto::encode(&ClientMessage::Hello {
            protocol_version: proto::PROTOCOL_VERSION,
        }))
        .await
        .ok()?;
        let first = tokio::time::timeout(Duration::from_secs(2), f.next())
            .await
            .ok()??;
        matches!(
            proto::decode(&first.ok()?).ok()?,
            AgentMessage::Hello { .. }
        )
        .then_some(f)
    })
    .await;
    assert!(matches!(
        ask(&mut f, 1, Request::Status).await,
        Response::Status { .. }
    ));
    assert!(
        a.logs
            .lock()
            .unwrap()
            .join("\n")
            .contains("connections already open")
    );
}

#[tokio::test]
async fn the_agent_is_not_dumpable_and_dumps_no_core() {
    let dir = TempDir::new("agent-harden");
    let a = start_agent(dir.path()).await;
    let pid = a.child.id();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .expect("a core limit line");
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(
        &fields[4..6],
        ["0", "0"],
        "soft and hard core limits: {core}"
    );
    // The agent checks PR_GET_DUMPABLE itself after setting it (as root, the test cannot tell
    // a non-dumpable process from /proc).
    let logs = a.logs.lock().unwrap().clone();
    assert!(
        logs.iter()
            .any(|l| l.contains("core dumps off") && l.contains("dumpable=false")),
        "{logs:?}"
    );
    let mode = std::fs::metadata(dir.path().join("mcp-cred-agent.log"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "the agent's log file");
}
