//! A size-rotated log file: `mcp-bridge.log`, then `mcp-bridge.log.1` … `.N` (oldest dropped),
//! usable as a `tracing_subscriber` writer. Both daemons use it; each has its own file.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

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
    pub fn open(path: &Path, max_bytes: u64, keep: usize) -> io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
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
            inner.file = OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&*self.path)?;
        } else {
            let _ = std::fs::remove_file(self.numbered(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(self.numbered(n), self.numbered(n + 1));
            }
            std::fs::rename(&*self.path, self.numbered(1))?;
            inner.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&*self.path)?;
        }
        inner.size = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if inner.size > 0 && inner.size + buf.len() as u64 > self.max_bytes {
            self.rotate(&mut inner)?;
        }
        inner.file.write_all(buf)?;
        inner.size += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .file
            .flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RotatingFile {
    type Writer = RotatingFile;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The default log path: `$MCP_BRIDGE_LOG_PATH`, else `~/Library/Logs/<file>` on macOS and
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
        home.join("Library/Logs").join(file_name)
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
