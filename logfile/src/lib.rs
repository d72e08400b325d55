//! The files both daemons write: a size-rotated log file (`mcp-bridge.log`, then
//! `mcp-bridge.log.1` … `.N`, oldest dropped), usable as a `tracing_subscriber` writer, each
//! daemon its own; and private files written atomically ([`write_atomic`]).

mod atomic;
pub use atomic::write_atomic;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
pub const DEFAULT_KEEP: usize = 5;

struct Inner {
    file: File,
    size: u64,
}

/// A log file that rotates when it would grow past `max_bytes`, keeping `keep` old files.
#[derive(Clone)]
pub struct RotatingFile {
    path: Arc<PathBuf>,
    max_bytes: u64,
    keep: usize,
    inner: Arc<Mutex<Inner>>,
}

impl RotatingFile {
    /// Opens (creating) the log at `path`: the file 0600, a directory it creates 0700, and the
    /// daemons' own `mcp-bridge` directory forced to 0700 if it exists wider (logs name
    /// upstreams, clients and errors: nobody else on the machine reads them).
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir)?;
        }
        let file = open_private(path, false)?;
        let size = file.metadata()?.len();
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            max_bytes: max_bytes.max(1024),
            keep,
            inner: Arc::new(Mutex::new(Inner { file, size })),
        })
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut p = self.path.as_os_str().to_owned();
        p.push(format!(".{n}"));
        PathBuf::from(p)
    }

    fn rotate(&self, inner: &mut Inner) -> io::Result<()> {
        inner.file.flush()?;
        if self.keep == 0 {
            inner.file = open_private(&self.path, true)?;
        } else {
            let _ = std::fs::remove_file(self.numbered(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(self.numbered(n), self.numbered(n + 1));
            }
            std::fs::rename(&*self.path, self.numbered(1))?;
            inner.file = open_private(&self.path, false)?;
        }
        inner.size = 0;
        Ok(())
    }
}

/// Opens a log file for appending (or truncated), 0600 whether new or already there.
fn open_private(path: &Path, truncate: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.create(true);
    if truncate {
        o.write(true).truncate(true);
    } else {
        o.append(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        o.mode(0o600);
        let file = o.open(path)?;
        // A file from an older version may be 0644: narrow it.
        if file.metadata()?.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        Ok(file)
    }
    #[cfg(not(unix))]
    o.open(path)
}

/// Creates `dir` (and parents) 0700 when missing; forces an existing `mcp-bridge` directory
/// (the daemons' own) to 0700. A directory the user chose by another name is left as it is.
fn private_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let ours = dir.file_name().is_some_and(|n| n == "mcp-bridge");
        let mode = std::fs::metadata(dir)?.permissions().mode();
        if ours && mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(())
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir)
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner.lock();
        if inner.size > 0 && inner.size + buf.len() as u64 > self.max_bytes {
            self.rotate(&mut inner)?;
        }
        inner.file.write_all(buf)?;
        inner.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.lock().file.flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The default log path: `$MCP_BRIDGE_LOG_PATH`, else `~/Library/Logs/mcp-bridge/<file>` on
/// macOS (a directory of our own, so it can be 0700) and
/// `$XDG_STATE_HOME/mcp-bridge/<file>` (or `~/.local/state/mcp-bridge/<file>`) elsewhere.
/// `file_name` picks the daemon's own file; the agent's sits beside the bridge's.
pub fn default_path(
    env_log_path: Option<&str>,
    home: Option<&str>,
    xdg_state: Option<&str>,
    file_name: &str,
) -> PathBuf {
    if let Some(p) = env_log_path.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if file_name == "mcp-bridge.log" {
            p
        } else {
            p.with_file_name(file_name)
        };
    }
    let home = PathBuf::from(home.unwrap_or("."));
    if cfg!(target_os = "macos") {
        home.join("Library/Logs/mcp-bridge").join(file_name)
    } else {
        let state = xdg_state
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| home.join(".local/state"));
        state.join("mcp-bridge").join(file_name)
    }
}

/// [`init`] at the daemon's default path (see [`default_path`]), reading `HOME` and
/// `XDG_STATE_HOME` from the environment.
pub fn init_default(
    log_path: Option<&Path>,
    max_bytes: u64,
    keep: usize,
    file_name: &str,
) -> Result<PathBuf, String> {
    let var = |k: &str| std::env::var(k).ok();
    let path = default_path(
        log_path.and_then(Path::to_str),
        var("HOME").as_deref(),
        var("XDG_STATE_HOME").as_deref(),
        file_name,
    );
    init(&path, max_bytes, keep)
}

/// Sets up `tracing` for a daemon: the rotating file at `path` (if it can be opened), plus
/// stderr when it is a terminal or `MCP_BRIDGE_LOG_STDERR=1`. Levels from `RUST_LOG`, default
/// `info`. Returns where the file logs go, or why they do not.
pub fn init(path: &Path, max_bytes: u64, keep: usize) -> Result<PathBuf, String> {
    use std::io::IsTerminal;
    use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriterExt};
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let to_stderr = std::io::stderr().is_terminal()
        || std::env::var("MCP_BRIDGE_LOG_STDERR").is_ok_and(|v| v == "1");
    let file = RotatingFile::open(path, max_bytes, keep);
    let (writer, result) = match (file, to_stderr) {
        (Ok(f), true) => (
            BoxMakeWriter::new(f.and(std::io::stderr)),
            Ok(path.to_path_buf()),
        ),
        (Ok(f), false) => (BoxMakeWriter::new(f), Ok(path.to_path_buf())),
        (Err(e), _) => (
            BoxMakeWriter::new(std::io::stderr),
            Err(format!(
                "cannot open the log file {}: {e}; logging to stderr",
                path.display()
            )),
        ),
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_by_size_and_keeps_n_files() {
        let dir = std::env::temp_dir().join(format!("mcpb-log-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("x.log");
        let mut f = RotatingFile::open(&path, 1024, 2).unwrap();
        for i in 0..100 {
            writeln!(f, "line {i:04} {}", "x".repeat(90)).unwrap();
        }
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(files, ["x.log", "x.log.1", "x.log.2"]);
        for f in &files {
            assert!(std::fs::metadata(dir.join(f)).unwrap().len() <= 1024);
        }
        let newest = std::fs::read_to_string(&path).unwrap();
        assert!(newest.contains("line 0099"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn log_files_are_0600_in_a_0700_directory() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let root = std::env::temp_dir().join(format!("mcpb-logmode-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // A directory the logger creates, and files it creates or rotates.
        let dir = root.join("new").join("mcp-bridge");
        let path = dir.join("mcp-bridge.log");
        let mut f = RotatingFile::open(&path, 1024, 2).unwrap();
        for i in 0..40 {
            writeln!(f, "line {i:04} {}", "x".repeat(90)).unwrap();
        }
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.join("mcp-bridge.log.1")), 0o600);
        // An older, world-readable file and our own directory left 0755 are narrowed.
        let old_dir = root.join("old").join("mcp-bridge");
        std::fs::create_dir_all(&old_dir).unwrap();
        std::fs::set_permissions(&old_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let old = old_dir.join("mcp-cred-agent.log");
        std::fs::write(&old, "old line\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        RotatingFile::open(&old, 1024, 2).unwrap();
        assert_eq!(mode(&old_dir), 0o700);
        assert_eq!(mode(&old), 0o600);
        assert_eq!(std::fs::read_to_string(&old).unwrap(), "old line\n");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn default_paths() {
        assert_eq!(
            default_path(Some("/var/log/b.log"), None, None, "mcp-bridge.log"),
            PathBuf::from("/var/log/b.log")
        );
        assert_eq!(
            default_path(Some("/var/log/b.log"), None, None, "mcp-cred-agent.log"),
            PathBuf::from("/var/log/mcp-cred-agent.log")
        );
        if !cfg!(target_os = "macos") {
            assert_eq!(
                default_path(None, Some("/h"), None, "mcp-bridge.log"),
                PathBuf::from("/h/.local/state/mcp-bridge/mcp-bridge.log")
            );
            assert_eq!(
                default_path(None, Some("/h"), Some("/s"), "mcp-bridge.log"),
                PathBuf::from("/s/mcp-bridge/mcp-bridge.log")
            );
        }
    }
}
