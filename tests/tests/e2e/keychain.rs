//! The agent's OS keychain store (`[agent] store = "keychain"`) against a real GNOME Keyring
//! (the Secret Service) on a private D-Bus session bus that this test starts: logins move into
//! the keychain and back without being lost, a locked keychain stops the agent with a clear
//! error and changes nothing, and an unreachable one is refused.
//!
//! Needs `dbus-daemon`, `gnome-keyring-daemon`, `secret-tool` and `gdbus` (Debian packages
//! dbus-daemon, gnome-keyring, libsecret-tools, libglib2.0-bin; `.ci/run` installs them).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mcp_bridge_tests::*;
use proto::{Request, Response};

const PASSWORD: &str = "keyring-test-password";

/// A private session bus with a GNOME Keyring (secrets only) whose `login` collection is
/// unlocked, in a temporary home. Both are killed on drop.
struct Keyring {
    dir: TempDir,
    bus: Child,
    keyring: Option<Child>,
    address: String,
}

fn need(tool: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
    assert!(
        found,
        "{tool} is not installed: the keychain test needs the Debian packages dbus-daemon, gnome-keyring, libsecret-tools and libglib2.0-bin (.ci/run installs them)"
    );
}

impl Keyring {
    fn start() -> Self {
        for tool in [
            "dbus-daemon",
            "gnome-keyring-daemon",
            "secret-tool",
            "gdbus",
        ] {
            need(tool);
        }
        let dir = TempDir::new("keyring");
        for d in ["home", "run", "data", "config", "cache"] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            dir.path().join("run"),
            std::fs::Permissions::from_mode(0o700),
        )
        .unwrap();
        // No <servicedir>: nothing is started on demand (no second keyring, no prompter), so an
        // unlock prompt fails at once instead of waiting for a user.
        let conf = dir.write(
            "bus.conf",
            &format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"#,
                dir.path().display()
            ),
        );
        let mut bus = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--nopidfile", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let address = {
            use std::io::BufRead;
            let mut line = String::new();
            std::io::BufReader::new(bus.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            line.trim().to_owned()
        };
        assert!(address.starts_with("unix:"), "bus address {address:?}");
        let mut k = Self {
            dir,
            bus,
            keyring: None,
            address,
        };
        k.start_keyring();
        k
    }

    /// The environment of a process on this session (the keyring's own home).
    fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        let p = self.dir.path();
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", p.join("home"))
            .env("XDG_RUNTIME_DIR", p.join("run"))
            .env("XDG_DATA_HOME", p.join("data"))
            .env("XDG_CONFIG_HOME", p.join("config"))
            .env("XDG_CACHE_HOME", p.join("cache"))
            .env("DBUS_SESSION_BUS_ADDRESS", &self.address);
        c
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![("DBUS_SESSION_BUS_ADDRESS".into(), self.address.clone())]
    }

    fn gdbus(&self, args: &[&str]) -> String {
        let out = self
            .command("gdbus")
            .arg("call")
            .arg("--session")
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn service_up(&self) -> bool {
        self.gdbus(&[
            "-d",
            "org.freedesktop.DBus",
            "-o",
            "/org/freedesktop/DBus",
            "-m",
            "org.freedesktop.DBus.NameHasOwner",
            "org.freedesktop.secrets",
        ])
        .contains("true")
    }

    /// Starts the keyring daemon with the password on stdin, which creates (or opens) the
    /// `login` collection and unlocks it.
    fn start_keyring(&mut self) {
        use std::io::Write;
        let mut child = self
            .command("gnome-keyring-daemon")
            .args(["--foreground", "--components=secrets", "--unlock"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(PASSWORD.as_bytes()).unwrap();
        drop(stdin);
        self.keyring = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.service_up() {
            assert!(Instant::now() < deadline, "the keyring did not come up");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn lock(&self) {
        self.gdbus(&[
            "-d",
            "org.freedesktop.secrets",
            "-o",
            "/org/freedesktop/secrets",
            "-m",
            "org.freedesktop.Secret.Service.Lock",
            "['/org/freedesktop/secrets/collection/login']",
        ]);
    }

    /// A running GNOME Keyring cannot be unlocked over D-Bus without a prompter: restart it
    /// with the password (its items are on disk).
    fn unlock(&mut self) {
        if let Some(mut k) = self.keyring.take() {
            let _ = k.kill();
            let _ = k.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.service_up() {
            assert!(Instant::now() < deadline, "the keyring did not stop");
            std::thread::sleep(Duration::from_millis(25));
        }
        self.start_keyring();
    }

    /// The agent's item for `config_dir`, read with libsecret's own tool.
    fn lookup(&self, config_dir: &Path) -> Option<String> {
        let out = self
            .command("secret-tool")
            .args(["lookup", "service", "mcp-cred-agent", "username"])
            .arg(config_dir)
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for Keyring {
    fn drop(&mut self) {
        if let Some(k) = self.keyring.as_mut() {
            let _ = k.kill();
            let _ = k.wait();
        }
        let _ = self.bus.kill();
        let _ = self.bus.wait();
    }
}

fn refresh_token_of(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v.pointer("/upstreams/remote/refresh_token")?
        .as_str()
        .map(str::to_owned)
}

/// Runs the agent expecting it to refuse to start; returns what it said.
fn refused_start(dir: &Path, env: &[(String, String)]) -> String {
    let mut child = AgentProc::command(dir, env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut child, Duration::from_secs(60));
    let mut text = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(
        !status.success(),
        "the agent should refuse to start:\n{text}"
    );
    text
}

fn set_store(dir: &TempDir, upstream: &str, store: &str) {
    dir.write(
        "config.toml",
        &format!("{upstream}[agent]\nstore = {store:?}\n"),
    );
}

async fn store_of(agent: &AgentProc) -> String {
    let Response::Status { store, .. } = agent.ipc().await.ask(Request::Status).await else {
        panic!("no status")
    };
    store.unwrap_or_default()
}

#[tokio::test]
async fn logins_move_into_the_keychain_and_back_and_a_locked_keychain_loses_nothing() {
    let mut keyring = Keyring::start();
    let f = FixtureHttp::start(&[], None).await;
    let dir = TempDir::new("keychain-agent");
    let upstream = oauth_entry("remote", &f.mcp_url());
    let state: PathBuf = dir.path().join("oauth-state.json");

    // 1. A login in the file store (the default).
    dir.write("config.toml", &upstream);
    let agent = AgentProc::start(dir.path(), &keyring.env()).await;
    let out = agent.cli(&["login", "remote", "--no-browser"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(store_of(&agent).await.ends_with("oauth-state.json"));
    drop(agent);
    let refresh = refresh_token_of(&std::fs::read_to_string(&state).unwrap())
        .expect("the login has a refresh token");

    // 2. store = "keychain": the login moves into the keychain; the file keeps a note only.
    set_store(&dir, &upstream, "keychain");
    let agent = AgentProc::start(dir.path(), &keyring.env()).await;
    agent
        .proc
        .wait_log("the move into the keychain", |l| {
            l.contains("moved the logins into the OS keychain")
        })
        .await;
    let note = std::fs::read_to_string(&state).unwrap();
    assert!(!note.contains(&refresh), "the file keeps no secret: {note}");
    assert!(
        note.contains("keychain"),
        "the file says where they went: {note}"
    );
    let item = keyring.lookup(dir.path());
    let item = item.expect("libsecret finds the agent's item");
    assert_eq!(refresh_token_of(&item).as_deref(), Some(refresh.as_str()));
    assert!(store_of(&agent).await.contains("keychain"));
    let mut ipc = agent.ipc().await;
    assert!(
        matches!(ipc.token("remote", 30).await, Response::Token { .. }),
        "tokens are served from the keychain store"
    );
    assert!(
        !agent.proc.text().contains(&refresh),
        "no secret in the logs"
    );
    drop(ipc);
    drop(agent);

    // 3. A locked keychain: the agent refuses to start, says what to do, changes nothing.
    let note_before = std::fs::read(&state).unwrap();
    keyring.lock();
    let said = refused_start(dir.path(), &keyring.env());
    assert!(said.contains("locked") && said.contains("unlock"), "{said}");
    assert!(said.contains("no login is lost"), "{said}");
    assert!(!said.contains(&refresh));
    assert_eq!(std::fs::read(&state).unwrap(), note_before);
    keyring.unlock();
    assert_eq!(
        keyring
            .lookup(dir.path())
            .and_then(|i| refresh_token_of(&i)),
        Some(refresh.clone()),
        "the item is intact after the refused start"
    );

    // 4. store = "file" while the keychain is unreachable: refused, nothing changed.
    set_store(&dir, &upstream, "file");
    let gone = vec![(
        "DBUS_SESSION_BUS_ADDRESS".to_owned(),
        format!("unix:path={}/no-bus", dir.path().display()),
    )];
    let said = refused_start(dir.path(), &gone);
    assert!(said.contains("not reachable to move them back"), "{said}");
    assert_eq!(std::fs::read(&state).unwrap(), note_before);

    // 5. store = "file" with the keychain there: the login moves back and the item goes.
    let agent = AgentProc::start(dir.path(), &keyring.env()).await;
    agent
        .proc
        .wait_log("the move out of the keychain", |l| {
            l.contains("moved the logins out of the OS keychain")
        })
        .await;
    assert_eq!(
        refresh_token_of(&std::fs::read_to_string(&state).unwrap()),
        Some(refresh.clone())
    );
    assert_eq!(
        keyring.lookup(dir.path()),
        None,
        "the keychain item is removed"
    );
    let mut ipc = agent.ipc().await;
    assert!(matches!(
        ipc.token("remote", 30).await,
        Response::Token { .. }
    ));
    drop(ipc);
    drop(agent);

    // 6. store = "keychain" with no keychain at all: a clear refusal, the file untouched.
    set_store(&dir, &upstream, "keychain");
    let file_before = std::fs::read(&state).unwrap();
    let said = refused_start(dir.path(), &gone);
    assert!(
        said.contains("not reachable") && said.contains(r#"store = "file""#),
        "{said}"
    );
    assert_eq!(std::fs::read(&state).unwrap(), file_before);
}
