//! The paths of one space: the `.mew/` layout and where its socket goes.

use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::private::{create_private_dir, runtime_dir_path};
use super::{with_context, write_atomic};

/// The longest socket path `bind` accepts on Linux (`sun_path` is 108 bytes
/// including the terminating NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// Every path of one space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpacePaths {
    /// The space directory, absolute and canonical.
    pub dir: PathBuf,
    /// `<dir>/.mew`
    pub mew_dir: PathBuf,
    /// `<dir>/.mew/run` (0700)
    pub run_dir: PathBuf,
    /// `<dir>/.mew/logs` unless the config overrides it ([`SpacePaths::with_logs_dir`]).
    pub logs_dir: PathBuf,
    /// `<dir>/.mew/tokens`
    pub tokens_dir: PathBuf,
    /// The socket the server listens on.
    pub socket: PathBuf,
    /// `<dir>/.mew/run/socket`: a text file holding the socket path.
    pub socket_record: PathBuf,
    /// `<dir>/.mew/run/mew.lock`
    pub lock: PathBuf,
    /// `<dir>/.mew/run/state.json`
    pub state: PathBuf,
}

impl SpacePaths {
    /// The paths of the space in `space_dir` (which must exist). Nothing is
    /// created; see [`SpacePaths::ensure_run_dir`].
    pub fn new(space_dir: &Path) -> io::Result<Self> {
        Self::with_runtime_dir(space_dir, &runtime_dir_path())
    }

    /// Like [`SpacePaths::new`], with an explicit runtime dir for the long-path
    /// socket fallback (tests use this to stay out of the real one).
    pub fn with_runtime_dir(space_dir: &Path, runtime: &Path) -> io::Result<Self> {
        let dir = fs::canonicalize(space_dir)
            .map_err(|e| with_context(e, format!("space directory {}", space_dir.display())))?;
        let mew_dir = dir.join(".mew");
        let run_dir = mew_dir.join("run");
        let local_socket = run_dir.join("mew.sock");
        let socket = if local_socket.as_os_str().len() <= MAX_SOCKET_PATH {
            local_socket
        } else {
            let s = runtime.join(format!("{}.sock", dir_hash(&dir)));
            if s.as_os_str().len() > MAX_SOCKET_PATH {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the space socket path {} is longer than {MAX_SOCKET_PATH} bytes, and so is the \
                         fallback {}: set XDG_RUNTIME_DIR or TMPDIR to a shorter directory",
                        run_dir.join("mew.sock").display(),
                        s.display()
                    ),
                ));
            }
            s
        };
        Ok(SpacePaths {
            logs_dir: mew_dir.join("logs"),
            tokens_dir: mew_dir.join("tokens"),
            socket_record: run_dir.join("socket"),
            lock: run_dir.join("mew.lock"),
            state: run_dir.join("state.json"),
            socket,
            run_dir,
            mew_dir,
            dir,
        })
    }

    /// Use the configured log directory instead of `.mew/logs`.
    pub fn with_logs_dir(mut self, logs_dir: PathBuf) -> Self {
        self.logs_dir = logs_dir;
        self
    }

    /// The socket lives outside `.mew/run` (long space dir).
    pub fn socket_is_external(&self) -> bool {
        !self.socket.starts_with(&self.run_dir)
    }

    /// Create `.mew/` and `.mew/run/` (0700), and the runtime dir when the
    /// socket lives there. Refuses a run dir (or runtime dir) owned by
    /// another user or open to group/others ("unsafe permissions", as tmux).
    pub fn ensure_run_dir(&self) -> io::Result<()> {
        fs::create_dir_all(&self.mew_dir)
            .map_err(|e| with_context(e, format!("cannot create {}", self.mew_dir.display())))?;
        create_private_dir(&self.run_dir)?;
        if let Some(parent) = self.socket.parent().filter(|_| self.socket_is_external()) {
            create_private_dir(parent)?;
        }
        Ok(())
    }

    /// Write the socket path into `.mew/run/socket` (atomically) so clients
    /// find an external socket.
    pub fn record_socket(&self) -> io::Result<()> {
        let mut text = self.socket.as_os_str().as_bytes().to_vec();
        text.push(b'\n');
        write_atomic(&self.socket_record, &text)
    }
}

/// A stable 16-hex-char name for a space dir (FNV-1a 64 of its bytes).
pub fn dir_hash(dir: &Path) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in dir.as_os_str().as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}
