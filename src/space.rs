//! The on-disk space: `.mew/` paths, the socket, the server lock, the state
//! file, participant tokens and the per-user registry of running spaces.
//!
//! Layout of a space directory:
//!
//! ```text
//! <space>/.mew/
//!   space.yaml            the config (the user's; mew never removes it)
//!   agents/               agent files (the user's)
//!   logs/                 one log per process + mew-server.log (created by mew)
//!   tokens/               <participant>.token, 0700 dir, 0600 files, .gitignore "*"
//!   run/                  0700: mew.lock, state.json, socket, mew.sock
//! ```
//!
//! The socket is `.mew/run/mew.sock` when that path fits in `sun_path`
//! (at most 107 bytes); otherwise it lives in the per-user runtime dir
//! ([`runtime_dir`]) as `<16-hex hash of the space dir>.sock`. Either way,
//! the server writes the real path into `.mew/run/socket`, and clients use
//! [`socket_path_for`].

use std::collections::hash_map::DefaultHasher;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::status::Millis;

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

/// Where the socket of the space in `space_dir` is: the path recorded in
/// `.mew/run/socket` when there is one, else the computed path.
pub fn socket_path_for(space_dir: &Path) -> io::Result<PathBuf> {
    let paths = SpacePaths::new(space_dir)?;
    match fs::read(&paths.socket_record) {
        Ok(bytes) => {
            let trimmed = bytes.trim_ascii();
            if trimmed.is_empty() {
                Ok(paths.socket)
            } else {
                Ok(PathBuf::from(OsStr::from_bytes(trimmed)))
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(paths.socket),
        Err(e) => Err(with_context(
            e,
            format!("cannot read {}", paths.socket_record.display()),
        )),
    }
}

// ---------------------------------------------------------------------------
// Runtime dir, private dirs
// ---------------------------------------------------------------------------

fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The per-user runtime dir for mew (not created): `$XDG_RUNTIME_DIR/mew`
/// when `XDG_RUNTIME_DIR` is set, absolute, a directory and ours; else
/// `<temp dir>/mew-<uid>`.
pub fn runtime_dir_path() -> PathBuf {
    runtime_dir_from(
        std::env::var_os("XDG_RUNTIME_DIR").as_deref(),
        &std::env::temp_dir(),
    )
}

/// [`runtime_dir_path`] with its inputs explicit.
pub fn runtime_dir_from(xdg_runtime_dir: Option<&OsStr>, temp_dir: &Path) -> PathBuf {
    if let Some(xdg) = xdg_runtime_dir.map(Path::new).filter(|p| p.is_absolute())
        && let Ok(md) = fs::metadata(xdg)
        && md.is_dir()
        && md.uid() == euid()
    {
        return xdg.join("mew");
    }
    temp_dir.join(format!("mew-{}", euid()))
}

/// The per-user runtime dir, created 0700 and verified private.
pub fn runtime_dir() -> io::Result<PathBuf> {
    let dir = runtime_dir_path();
    create_private_dir(&dir)?;
    Ok(dir)
}

/// Create `dir` with mode 0700 if missing (parents must exist), then check
/// that it is private with [`check_private_dir`].
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(with_context(e, format!("cannot create {}", dir.display()))),
    }
    check_private_dir(dir)
}

/// A directory is private when it is a real directory (not a symlink), owned
/// by us, with no group or other permission bits.
pub fn check_private_dir(dir: &Path) -> io::Result<()> {
    let md = fs::symlink_metadata(dir)
        .map_err(|e| with_context(e, format!("cannot inspect {}", dir.display())))?;
    if !md.file_type().is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "unsafe {}: not a directory (a symlink?); remove it",
                dir.display()
            ),
        ));
    }
    if md.uid() != euid() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "unsafe permissions on {}: owned by uid {}, not by you (uid {}); remove it",
                dir.display(),
                md.uid(),
                euid()
            ),
        ));
    }
    let mode = md.mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "unsafe permissions on {}: mode {mode:03o} lets other users in; run \"chmod 700 {}\"",
                dir.display(),
                dir.display()
            ),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Socket
// ---------------------------------------------------------------------------

/// Bind the space socket at `path`.
///
/// The parent directory must be private ([`check_private_dir`]): that is the
/// real protection (unix(7)), so the window between `bind` and the `chmod
/// 0600` that follows exposes nothing. (No `umask` games: the umask is
/// process-wide and the server is multi-threaded.) An existing socket file
/// is removed only when no server answers on it (`ECONNREFUSED`/`ENOENT`);
/// a live one is `AddrInUse`. Call this while holding the [`SpaceLock`].
///
/// For tokio: `listener.set_nonblocking(true)` then
/// `tokio::net::UnixListener::from_std(listener)`.
pub fn bind_socket(path: &Path) -> io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        check_private_dir(parent)?;
    }
    match fs::symlink_metadata(path) {
        Ok(md) => {
            if !md.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket; remove it", path.display()),
                ));
            }
            match UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        format!("a server already answers on {}", path.display()),
                    ));
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                    ) =>
                {
                    tracing::info!(socket = %path.display(), "removing a stale socket");
                    match fs::remove_file(path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(with_context(
                                e,
                                format!("cannot remove stale socket {}", path.display()),
                            ));
                        }
                    }
                }
                Err(e) => {
                    return Err(with_context(
                        e,
                        format!("cannot probe socket {}", path.display()),
                    ));
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(with_context(
                e,
                format!("cannot inspect {}", path.display()),
            ));
        }
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| with_context(e, format!("cannot bind {}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The uid of the process at the other end of a unix socket (`SO_PEERCRED`).
pub fn peer_uid<S: AsFd>(stream: &S) -> io::Result<u32> {
    nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::PeerCredentials)
        .map(|cred| cred.uid())
        .map_err(io::Error::from)
}

/// Allow only our own uid and root.
pub fn check_peer<S: AsFd>(stream: &S) -> Result<(), String> {
    let uid = peer_uid(stream).map_err(|e| format!("cannot read the peer's credentials: {e}"))?;
    check_uid(uid)
}

fn check_uid(uid: u32) -> Result<(), String> {
    let ours = euid();
    if uid == ours || uid == 0 {
        Ok(())
    } else {
        Err(format!(
            "refused a connection from uid {uid}: only uid {ours} (the space's owner) and root may use this space"
        ))
    }
}

// ---------------------------------------------------------------------------
// Lock
// ---------------------------------------------------------------------------

/// What the lock file says about its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub pid: u32,
    pub started_at: Millis,
    pub run_id: String,
    pub mew_version: String,
    pub socket: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub space_id: Option<String>,
    /// The port of the space's gateway, when it has one (what
    /// `mew space connect` and `mew client connect` join).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_port: Option<u16>,
}

/// The exclusive `flock` on `.mew/run/mew.lock`, held for the server's life
/// and released when dropped (or when the process dies: a dead holder's lock
/// is simply taken again, never trusted). The descriptor is close-on-exec,
/// so children never inherit it.
///
/// The lock file is never unlinked while in use: unlinking a locked file lets
/// a second process lock a new file of the same name.
#[derive(Debug)]
pub struct SpaceLock {
    file: Flock<File>,
    path: PathBuf,
    /// What the lock file said when it was taken: the last server's pid and
    /// run id (a server killed before it wrote `state.json` leaves only
    /// this), or `None`.
    pub previous: Option<LockInfo>,
}

impl SpaceLock {
    /// Replace the lock file's content with `info`.
    pub fn write_info(&mut self, info: &LockInfo) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
        let file: &mut File = &mut self.file;
        file.set_len(0)?;
        file.rewind()?;
        file.write_all(&json)?;
        file.write_all(b"\n")?;
        file.flush()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock.
    #[error("the space is locked by {}", .pid.map(|p| format!("pid {p}")).unwrap_or_else(|| "another process".into()))]
    Held { pid: Option<u32> },
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// Take the space lock without waiting. The run dir must exist
/// ([`SpacePaths::ensure_run_dir`]). The file is emptied on success: write
/// the holder's details with [`SpaceLock::write_info`].
pub fn try_lock(paths: &SpacePaths) -> Result<SpaceLock, LockError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&paths.lock)
        .map_err(|e| with_context(e, format!("cannot open {}", paths.lock.display())))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(mut locked) => {
            let mut text = String::new();
            let previous = locked
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| serde_json::from_str::<LockInfo>(&text).ok());
            locked.set_len(0)?;
            locked.rewind()?;
            Ok(SpaceLock {
                file: locked,
                path: paths.lock.clone(),
                previous,
            })
        }
        Err((mut file, Errno::EWOULDBLOCK)) => {
            let mut text = String::new();
            let pid = file
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| serde_json::from_str::<LockInfo>(&text).ok())
                .map(|i| i.pid);
            Err(LockError::Held { pid })
        }
        Err((_, errno)) => Err(LockError::Io(with_context(
            io::Error::from(errno),
            format!("cannot lock {}", paths.lock.display()),
        ))),
    }
}

/// Whether some process holds the space lock, found without taking it (from
/// `/proc/locks`, so a dry run changes nothing). `None` when it cannot tell.
pub fn is_locked(paths: &SpacePaths) -> Option<bool> {
    let md = match fs::metadata(&paths.lock) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Some(false),
        Err(_) => return None,
    };
    Some(held_flock_inodes()?.contains(&md.ino()))
}

/// The lock file's content, whoever holds it (or held it last).
pub fn read_lock_info(paths: &SpacePaths) -> Option<LockInfo> {
    let text = fs::read_to_string(&paths.lock).ok()?;
    serde_json::from_str(&text).ok()
}

// ---------------------------------------------------------------------------
// State file
// ---------------------------------------------------------------------------

/// One running process, as recorded for crash recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub name: String,
    pub pid: u32,
    pub pgid: u32,
}

/// `.mew/run/state.json`: what a later `up`/`down` needs to clean up after
/// a crashed server. `run_id` is the value of every child's `MEW_RUN_ID`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    pub server_pid: u32,
    pub run_id: String,
    pub started_at: Millis,
    pub processes: Vec<ProcessRecord>,
}

/// Write the state file atomically (a 0600 temp file in the same dir, then
/// `rename`). Not fsynced: it guards against a crashed server, not a
/// crashed machine (after a reboot no process is left anyway).
pub fn write_state(path: &Path, state: &StateFile) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    write_atomic(path, &json)
}

/// Read the state file; `Ok(None)` when there is none.
pub fn read_state(path: &Path) -> io::Result<Option<StateFile>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("state file {} is corrupt: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(with_context(e, format!("cannot read {}", path.display()))),
    }
}

/// Write `bytes` to `path` through a 0600 temp file and a rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_file_name(format!(".{name}.{}.{seq}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        drop(f);
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| with_context(e, format!("cannot write {}", path.display())))
}

// ---------------------------------------------------------------------------
// Run id, tokens
// ---------------------------------------------------------------------------

/// A fresh run id: 16 hex chars (8 random bytes). Unique per run of a space;
/// children carry it as `MEW_RUN_ID`.
pub fn new_run_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Uniqueness, not secrecy, is what matters here.
        use std::hash::{Hash, Hasher};
        let mut h = DefaultHasher::new();
        std::process::id().hash(&mut h);
        std::time::SystemTime::now().hash(&mut h);
        bytes = h.finish().to_be_bytes();
    }
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub use crate::config::token_env_name;

/// A participant's token: `$MEW_TOKEN_<ID>` when set and not empty (the file
/// is then neither read nor written); else `.mew/tokens/<participant>.token`
/// (trimmed); else a new one (32 random bytes, base64url without padding)
/// written there with mode 0600. The tokens dir is kept 0700 with a
/// `.gitignore` of `*`.
/// A fresh token: 32 random bytes, base64url without padding (43 characters).
/// Every token mew makes (space tokens, invites, `mew token create`) is one.
pub fn new_token() -> io::Result<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| io::Error::other(format!("no randomness for a token: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

pub fn load_or_create_token(tokens_dir: &Path, participant: &str) -> io::Result<String> {
    let env = std::env::var(token_env_name(participant)).ok();
    load_or_create_token_with(tokens_dir, participant, env)
}

/// [`load_or_create_token`] with the environment override passed in.
pub fn load_or_create_token_with(
    tokens_dir: &Path,
    participant: &str,
    env_value: Option<String>,
) -> io::Result<String> {
    if let Some(v) = env_value {
        let v = v.trim();
        if !v.is_empty() {
            return Ok(v.to_string());
        }
    }
    if participant.is_empty() || participant.starts_with('.') || participant.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("participant id {participant:?} cannot name a token file"),
        ));
    }
    ensure_tokens_dir(tokens_dir)?;
    let path = tokens_dir.join(format!("{participant}.token"));
    if let Some(token) = read_token(&path)? {
        return Ok(token);
    }
    let token = new_token()?;
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(token.as_bytes())?;
            f.write_all(b"\n")?;
            Ok(token)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_token(&path)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is empty", path.display()),
            )
        }),
        Err(e) => Err(with_context(e, format!("cannot create {}", path.display()))),
    }
}

fn read_token(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(with_context(e, format!("cannot read {}", path.display()))),
    }
}

fn ensure_tokens_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| with_context(e, format!("cannot create {}", parent.display())))?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let md = fs::metadata(dir)?;
            if md.uid() == euid() && md.mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            }
        }
        Err(e) => return Err(with_context(e, format!("cannot create {}", dir.display()))),
    }
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        fs::write(&gitignore, "*\n")
            .map_err(|e| with_context(e, format!("cannot write {}", gitignore.display())))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Registry of running spaces (`mew space ls`)
// ---------------------------------------------------------------------------

/// One running space, as `mew space ls` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistryEntry {
    pub id: String,
    pub dir: PathBuf,
    pub pid: u32,
    pub socket: PathBuf,
    pub started_at: Millis,
}

/// A registry directory: one `<hash of space dir>.json` per running space.
#[derive(Clone, Debug)]
pub struct Registry {
    pub dir: PathBuf,
}

impl Registry {
    /// The user's registry, `<runtime dir>/spaces` (0700, created).
    pub fn open() -> io::Result<Registry> {
        Ok(Registry {
            dir: registry_dir()?,
        })
    }

    /// A registry in an explicit (private) directory.
    pub fn at(dir: PathBuf) -> io::Result<Registry> {
        create_private_dir(&dir)?;
        Ok(Registry { dir })
    }

    fn entry_path(&self, space_dir: &Path) -> PathBuf {
        self.dir.join(format!("{}.json", dir_hash(space_dir)))
    }

    pub fn register(&self, entry: &RegistryEntry) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(entry).map_err(io::Error::other)?;
        write_atomic(&self.entry_path(&entry.dir), &json)
    }

    pub fn unregister(&self, space_dir: &Path) -> io::Result<()> {
        match fs::remove_file(self.entry_path(space_dir)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The running spaces, sorted by dir. Entries whose server is dead or
    /// whose lock is free are removed.
    pub fn list_running(&self) -> Vec<RegistryEntry> {
        let Ok(read) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let locks = held_flock_inodes();
        let mut out = Vec::new();
        for ent in read.flatten() {
            let path = ent.path();
            if path.extension() != Some(OsStr::new("json")) {
                continue;
            }
            let entry = fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<RegistryEntry>(&b).ok());
            let live = entry.as_ref().is_some_and(|e| {
                pid_alive(e.pid)
                    && locks.as_ref().is_none_or(|held| {
                        fs::metadata(e.dir.join(".mew/run/mew.lock"))
                            .is_ok_and(|md| held.contains(&md.ino()))
                    })
            });
            match entry {
                Some(e) if live => out.push(e),
                _ => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        out.sort_by(|a, b| a.dir.cmp(&b.dir));
        out
    }
}

/// `<runtime dir>/spaces`, created 0700.
pub fn registry_dir() -> io::Result<PathBuf> {
    let dir = runtime_dir()?.join("spaces");
    create_private_dir(&dir)?;
    Ok(dir)
}

/// Record a running space in the user's registry.
pub fn register(entry: &RegistryEntry) -> io::Result<()> {
    Registry::open()?.register(entry)
}

/// Remove a space from the user's registry.
pub fn unregister(space_dir: &Path) -> io::Result<()> {
    Registry::open()?.unregister(space_dir)
}

/// The user's running spaces, or why the registry cannot be trusted (a
/// runtime dir squatted by another user is refused, as tmux does, rather
/// than read as "nothing runs").
pub fn list_running_checked() -> io::Result<Vec<RegistryEntry>> {
    Ok(Registry::open()?.list_running())
}

/// The user's running spaces (pruning dead entries).
pub fn list_running() -> Vec<RegistryEntry> {
    Registry::open()
        .map(|r| r.list_running())
        .unwrap_or_default()
}

fn pid_alive(pid: u32) -> bool {
    pid != 0 && Path::new(&format!("/proc/{pid}")).exists()
}

/// Inodes of files with a granted exclusive `flock`, from `/proc/locks`
/// (`None` when unreadable). Reading it takes no lock, so it cannot race
/// with a server starting up, unlike a probing `flock`.
fn held_flock_inodes() -> Option<Vec<u64>> {
    Some(held_flocks()?.into_iter().map(|(_, ino)| ino).collect())
}

// ---------------------------------------------------------------------------
// Is a server of this space running?
// ---------------------------------------------------------------------------

/// The pid of a server of this space, if one runs: the holder of the lock on
/// `.mew/run/mew.lock`, or a process that holds an `flock` on a file of that
/// name that was removed (`rm -rf .mew/run` under a running space leaves it
/// running, holding the deleted lock file), found through `/proc/locks` and
/// `/proc/<pid>/fd`; or the registry's server for this dir, when it holds
/// such a file open.
///
/// `clean` refuses while one runs, `up` does not start a second set of
/// processes beside one, and `down` stops one whose run dir was removed.
///
/// The calling process never counts (it may hold the lock itself).
pub fn running_server(paths: &SpacePaths) -> Option<u32> {
    let me = std::process::id();
    let lock_ino = fs::metadata(&paths.lock).ok().map(|m| m.ino());
    let locks = held_flocks().map(|l| {
        l.into_iter()
            .filter(|&(pid, _)| pid != me)
            .collect::<Vec<_>>()
    });
    if let Some(ino) = lock_ino
        && let Some(&(pid, _)) = locks.iter().flatten().find(|(_, i)| *i == ino)
    {
        return Some(pid);
    }
    if let Some(pid) = locks
        .iter()
        .flatten()
        .map(|&(pid, _)| pid)
        .find(|&pid| holds_lock_file(pid, &paths.lock))
    {
        return Some(pid);
    }
    let entry = runtime_dir_path()
        .join("spaces")
        .join(format!("{}.json", dir_hash(&paths.dir)));
    let pid = fs::read(entry)
        .ok()
        .and_then(|b| serde_json::from_slice::<RegistryEntry>(&b).ok())
        .filter(|e| e.dir == paths.dir)
        .map(|e| e.pid)
        .filter(|&pid| pid != me)?;
    holds_lock_file(pid, &paths.lock).then_some(pid)
}

/// `(pid, inode)` of every granted exclusive `flock`, from `/proc/locks`.
fn held_flocks() -> Option<Vec<(u32, u64)>> {
    let text = fs::read_to_string("/proc/locks").ok()?;
    Some(
        text.lines()
            .filter(|l| !l.contains("->"))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // "1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF"
                if f.get(1) != Some(&"FLOCK") || f.get(3) != Some(&"WRITE") {
                    return None;
                }
                let pid = f.get(4)?.parse().ok()?;
                let ino = f.get(5)?.rsplit(':').next()?.parse().ok()?;
                Some((pid, ino))
            })
            .collect(),
    )
}

/// Process `pid` has `lock` open (or the file that was there, since removed).
fn holds_lock_file(pid: u32, lock: &Path) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let mut deleted = lock.as_os_str().to_owned();
    deleted.push(" (deleted)");
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .is_ok_and(|t| t.as_os_str() == lock.as_os_str() || t.as_os_str() == deleted)
    })
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

fn with_context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o777
    }

    fn space() -> (tempfile::TempDir, SpacePaths) {
        let t = tempfile::tempdir().unwrap();
        let rt = t.path().join("rt");
        let p = SpacePaths::with_runtime_dir(t.path(), &rt).unwrap();
        (t, p)
    }

    #[test]
    fn paths_layout() {
        let (t, p) = space();
        let dir = fs::canonicalize(t.path()).unwrap();
        assert_eq!(p.dir, dir);
        assert_eq!(p.run_dir, dir.join(".mew/run"));
        assert_eq!(p.logs_dir, dir.join(".mew/logs"));
        assert_eq!(p.tokens_dir, dir.join(".mew/tokens"));
        assert_eq!(p.lock, dir.join(".mew/run/mew.lock"));
        assert_eq!(p.state, dir.join(".mew/run/state.json"));
        assert_eq!(p.socket, dir.join(".mew/run/mew.sock"));
        assert!(!p.socket_is_external());
        let p = p.with_logs_dir(PathBuf::from("/var/log/x"));
        assert_eq!(p.logs_dir, PathBuf::from("/var/log/x"));
        assert!(SpacePaths::new(&dir.join("missing")).is_err());
    }

    #[test]
    fn relative_space_dir_becomes_absolute() {
        let p = SpacePaths::new(Path::new(".")).unwrap();
        assert!(p.dir.is_absolute());
    }

    #[test]
    fn run_dir_is_private() {
        let (_t, p) = space();
        p.ensure_run_dir().unwrap();
        assert_eq!(mode(&p.run_dir), 0o700);
        // Idempotent.
        p.ensure_run_dir().unwrap();
    }

    #[test]
    fn unsafe_run_dir_is_refused() {
        let (_t, p) = space();
        p.ensure_run_dir().unwrap();
        fs::set_permissions(&p.run_dir, fs::Permissions::from_mode(0o777)).unwrap();
        let err = p.ensure_run_dir().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("unsafe permissions"), "{err}");
        assert!(err.to_string().contains("chmod 700"), "{err}");
        fs::set_permissions(&p.run_dir, fs::Permissions::from_mode(0o750)).unwrap();
        assert!(p.ensure_run_dir().is_err());
        // bind_socket refuses it too.
        assert!(bind_socket(&p.socket).is_err());
    }

    #[test]
    fn symlinked_run_dir_is_refused() {
        let (t, p) = space();
        fs::create_dir_all(&p.mew_dir).unwrap();
        let elsewhere = t.path().join("elsewhere");
        DirBuilder::new().mode(0o700).create(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &p.run_dir).unwrap();
        assert!(p.ensure_run_dir().is_err());
    }

    #[test]
    fn long_space_dir_uses_runtime_socket() {
        let t = tempfile::tempdir().unwrap();
        let mut deep = fs::canonicalize(t.path()).unwrap();
        while deep.as_os_str().len() < 150 {
            deep.push("a-rather-long-directory-name");
        }
        fs::create_dir_all(&deep).unwrap();
        assert!(deep.as_os_str().len() >= 150);
        let rt = t.path().join("rt");
        let p = SpacePaths::with_runtime_dir(&deep, &rt).unwrap();
        assert!(p.socket_is_external());
        assert_eq!(p.socket, rt.join(format!("{}.sock", dir_hash(&p.dir))));
        assert!(p.socket.as_os_str().len() <= MAX_SOCKET_PATH);
        p.ensure_run_dir().unwrap();
        assert_eq!(mode(&rt), 0o700);
        let listener = bind_socket(&p.socket).unwrap();
        p.record_socket().unwrap();
        assert_eq!(socket_path_for(&deep).unwrap(), p.socket);
        let client = UnixStream::connect(socket_path_for(&deep).unwrap()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        assert_eq!(peer_uid(&server_side).unwrap(), euid());
        drop(client);
    }

    #[test]
    fn long_space_dir_with_default_runtime_dir() {
        let t = tempfile::tempdir().unwrap();
        let deep = fs::canonicalize(t.path()).unwrap().join("x".repeat(150));
        fs::create_dir_all(&deep).unwrap();
        let p = SpacePaths::new(&deep).unwrap();
        assert!(p.socket_is_external());
        assert!(p.socket.starts_with(runtime_dir_path()));
    }

    #[test]
    fn too_long_fallback_is_a_clear_error() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("y".repeat(120));
        fs::create_dir_all(&deep).unwrap();
        let err = SpacePaths::with_runtime_dir(&deep, &deep).unwrap_err();
        assert!(err.to_string().contains("XDG_RUNTIME_DIR"), "{err}");
    }

    #[test]
    fn runtime_dir_resolution() {
        let t = tempfile::tempdir().unwrap();
        let tmp = Path::new("/some/tmp");
        // Ours and absolute: used.
        assert_eq!(
            runtime_dir_from(Some(t.path().as_os_str()), tmp),
            t.path().join("mew")
        );
        // Relative, missing or unset: the per-uid temp dir.
        let fallback = tmp.join(format!("mew-{}", euid()));
        assert_eq!(runtime_dir_from(Some(OsStr::new("rel")), tmp), fallback);
        assert_eq!(
            runtime_dir_from(Some(OsStr::new("/nonexistent/x")), tmp),
            fallback
        );
        assert_eq!(runtime_dir_from(None, tmp), fallback);
        if euid() != 0 {
            // Owned by root, not us.
            assert_eq!(runtime_dir_from(Some(OsStr::new("/")), tmp), fallback);
        }
    }

    #[test]
    fn socket_is_0600_and_stale_socket_is_replaced() {
        let (_t, p) = space();
        p.ensure_run_dir().unwrap();
        let l = bind_socket(&p.socket).unwrap();
        assert_eq!(mode(&p.socket), 0o600);
        // A live server: refused.
        let err = bind_socket(&p.socket).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        // The server dies, leaving its socket file behind: replaced.
        drop(l);
        assert!(p.socket.exists());
        assert_eq!(
            UnixStream::connect(&p.socket).unwrap_err().kind(),
            io::ErrorKind::ConnectionRefused
        );
        let l2 = bind_socket(&p.socket).unwrap();
        let _c = UnixStream::connect(&p.socket).unwrap();
        let (s, _) = l2.accept().unwrap();
        assert!(check_peer(&s).is_ok());
    }

    #[test]
    fn non_socket_file_is_not_removed() {
        let (_t, p) = space();
        p.ensure_run_dir().unwrap();
        fs::write(&p.socket, "precious").unwrap();
        assert!(bind_socket(&p.socket).is_err());
        assert_eq!(fs::read_to_string(&p.socket).unwrap(), "precious");
    }

    #[test]
    fn peer_rules() {
        assert!(check_uid(euid()).is_ok());
        assert!(check_uid(0).is_ok());
        let other = euid().wrapping_add(4242).max(1);
        let err = check_uid(other).unwrap_err();
        assert!(err.contains(&format!("uid {other}")), "{err}");
    }

    /// Only root can give a file to another user or run a process as one.
    fn root_with_perl() -> bool {
        euid() == 0 && Path::new("/usr/bin/perl").exists()
    }

    #[test]
    fn run_dir_of_another_user_is_refused() {
        if euid() != 0 {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let (_t, p) = space();
        p.ensure_run_dir().unwrap();
        std::os::unix::fs::chown(&p.run_dir, Some(65534), Some(65534)).unwrap();
        let err = p.ensure_run_dir().unwrap_err();
        assert!(err.to_string().contains("owned by uid 65534"), "{err}");
        assert!(bind_socket(&p.socket).is_err());
    }

    #[test]
    fn peer_of_another_uid_is_refused() {
        use std::io::Read as _;
        use std::os::unix::process::CommandExt;
        if !root_with_perl() {
            eprintln!("skipped: needs root and /usr/bin/perl");
            return;
        }
        // A deliberately public socket, so that another user can reach it.
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o711)).unwrap();
        let sock = t.path().join("s.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        fs::set_permissions(&sock, fs::Permissions::from_mode(0o777)).unwrap();
        let mut child = std::process::Command::new("/usr/bin/perl")
            .args([
                "-MIO::Socket::UNIX",
                "-e",
                "my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die \"connect: $!\"; print \"connected\\n\"; $| = 1; <STDIN>;",
            ])
            .arg(&sock)
            .uid(65534)
            .gid(65534)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let (stream, _) = listener.accept().unwrap();
        assert_eq!(peer_uid(&stream).unwrap(), 65534);
        let err = check_peer(&stream).unwrap_err();
        assert!(err.contains("uid 65534"), "{err}");
        drop(child.stdin.take());
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(child.wait().unwrap().success());
        assert_eq!(out, "connected\n");
    }

    #[test]
    fn socket_path_for_without_record_computes_it() {
        let (t, p) = space();
        assert_eq!(socket_path_for(t.path()).unwrap(), p.socket);
        p.ensure_run_dir().unwrap();
        fs::write(&p.socket_record, "/elsewhere/s.sock\n").unwrap();
        assert_eq!(
            socket_path_for(t.path()).unwrap(),
            PathBuf::from("/elsewhere/s.sock")
        );
    }

    #[test]
    fn lock_held_then_free() {
        let (_t, p) = space();
        p.ensure_run_dir().unwrap();
        let mut lock = try_lock(&p).unwrap();
        assert_eq!(mode(&p.lock), 0o600);
        let info = LockInfo {
            pid: std::process::id(),
            started_at: 5,
            run_id: new_run_id(),
            mew_version: "0.1.0".into(),
            socket: p.socket.clone(),
            space_id: Some("demo".into()),
            gateway_port: Some(8080),
        };
        lock.write_info(&info).unwrap();
        // A second open file description conflicts, even in this process.
        match try_lock(&p) {
            Err(LockError::Held { pid }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        assert_eq!(read_lock_info(&p), Some(info));
        drop(lock);
        // Free again; the stale content is not trusted and is cleared.
        let lock2 = try_lock(&p).unwrap();
        assert_eq!(fs::read_to_string(&p.lock).unwrap(), "");
        drop(lock2);
    }

    #[test]
    fn is_locked_without_taking_the_lock() {
        let (_t, p) = space();
        assert_eq!(is_locked(&p), Some(false));
        p.ensure_run_dir().unwrap();
        let lock = try_lock(&p).unwrap();
        assert_eq!(is_locked(&p), Some(true));
        drop(lock);
        assert_eq!(is_locked(&p), Some(false));
    }

    #[test]
    fn held_lock_without_info() {
        let (_t, p) = space();
        p.ensure_run_dir().unwrap();
        let _lock = try_lock(&p).unwrap();
        assert!(matches!(try_lock(&p), Err(LockError::Held { pid: None })));
    }

    #[test]
    fn lock_needs_run_dir() {
        let (_t, p) = space();
        assert!(matches!(try_lock(&p), Err(LockError::Io(_))));
    }

    #[test]
    fn state_round_trip() {
        let (_t, p) = space();
        p.ensure_run_dir().unwrap();
        assert_eq!(read_state(&p.state).unwrap(), None);
        let st = StateFile {
            server_pid: 1,
            run_id: "00ff00ff00ff00ff".into(),
            started_at: 3,
            processes: vec![ProcessRecord {
                name: "a".into(),
                pid: 10,
                pgid: 10,
            }],
        };
        write_state(&p.state, &st).unwrap();
        assert_eq!(read_state(&p.state).unwrap(), Some(st.clone()));
        assert_eq!(mode(&p.state), 0o600);
        let st2 = StateFile {
            processes: vec![],
            ..st
        };
        write_state(&p.state, &st2).unwrap();
        assert_eq!(read_state(&p.state).unwrap(), Some(st2));
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(&p.run_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![OsStr::new("state.json").to_owned()]);
        fs::write(&p.state, "{").unwrap();
        assert_eq!(
            read_state(&p.state).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
    }

    #[test]
    fn run_ids_are_hex_and_distinct() {
        let a = new_run_id();
        let b = new_run_id();
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn token_env_names() {
        assert_eq!(token_env_name("coder-agent"), "MEW_TOKEN_CODER_AGENT");
        assert_eq!(token_env_name("a.b c"), "MEW_TOKEN_A_B_C");
        assert_eq!(token_env_name("x9"), "MEW_TOKEN_X9");
    }

    #[test]
    fn token_created_then_reused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join(".mew/tokens");
        let tok = load_or_create_token_with(&dir, "agent", None).unwrap();
        assert_eq!(tok.len(), 43); // 32 bytes base64url, no padding
        assert!(
            tok.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("agent.token")), 0o600);
        assert_eq!(fs::read_to_string(dir.join(".gitignore")).unwrap(), "*\n");
        assert_eq!(load_or_create_token_with(&dir, "agent", None).unwrap(), tok);
        assert_ne!(load_or_create_token_with(&dir, "other", None).unwrap(), tok);
        // A hand-written token file is trimmed.
        fs::write(dir.join("human.token"), "  secret \n").unwrap();
        assert_eq!(
            load_or_create_token_with(&dir, "human", None).unwrap(),
            "secret"
        );
    }

    #[test]
    fn token_env_override() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("tokens");
        assert_eq!(
            load_or_create_token_with(&dir, "agent", Some("from-env".into())).unwrap(),
            "from-env"
        );
        assert!(!dir.join("agent.token").exists());
        // Empty override: ignored.
        let tok = load_or_create_token_with(&dir, "agent", Some(String::new())).unwrap();
        assert_ne!(tok, "");
        assert!(dir.join("agent.token").exists());
        // The real-env entry point reads the file when the variable is unset.
        let name = "no-such-env-participant-4b1c";
        assert!(std::env::var(token_env_name(name)).is_err());
        let tok = load_or_create_token(&dir, name).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join(format!("{name}.token")))
                .unwrap()
                .trim(),
            tok
        );
    }

    #[test]
    fn loose_tokens_dir_is_tightened_and_bad_ids_refused() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("tokens");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        load_or_create_token_with(&dir, "a", None).unwrap();
        assert_eq!(mode(&dir), 0o700);
        for bad in ["", "../x", ".hidden", "a/b"] {
            assert!(load_or_create_token_with(&dir, bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn registry_register_list_prune() {
        let t = tempfile::tempdir().unwrap();
        let reg = Registry::at(t.path().join("spaces")).unwrap();
        assert_eq!(mode(&reg.dir), 0o700);

        // A live space: this process holds its lock.
        let (_live_t, live) = space();
        live.ensure_run_dir().unwrap();
        let _lock = try_lock(&live).unwrap();
        let live_entry = RegistryEntry {
            id: "live".into(),
            dir: live.dir.clone(),
            pid: std::process::id(),
            socket: live.socket.clone(),
            started_at: 1,
        };
        reg.register(&live_entry).unwrap();

        // Its pid is alive but nobody holds its lock.
        let (_free_t, free) = space();
        free.ensure_run_dir().unwrap();
        drop(try_lock(&free).unwrap());
        let free_entry = RegistryEntry {
            id: "free".into(),
            dir: free.dir.clone(),
            ..live_entry.clone()
        };
        reg.register(&free_entry).unwrap();

        // A dead pid (a reaped child).
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead_pid = child.id();
        child.wait().unwrap();
        let (_dead_t, dead) = space();
        let dead_entry = RegistryEntry {
            id: "dead".into(),
            dir: dead.dir.clone(),
            pid: dead_pid,
            ..live_entry.clone()
        };
        reg.register(&dead_entry).unwrap();

        // Garbage.
        fs::write(reg.dir.join("junk.json"), "nope").unwrap();

        assert_eq!(reg.list_running(), vec![live_entry.clone()]);
        let left: Vec<_> = fs::read_dir(&reg.dir).unwrap().collect();
        assert_eq!(left.len(), 1, "pruned entries are removed");

        reg.unregister(&live.dir).unwrap();
        reg.unregister(&live.dir).unwrap();
        assert!(reg.list_running().is_empty());
    }

    #[test]
    fn dir_hash_is_stable() {
        assert_eq!(dir_hash(Path::new("")), "cbf29ce484222325");
        assert_eq!(dir_hash(Path::new("/a")).len(), 16);
        assert_ne!(dir_hash(Path::new("/a")), dir_hash(Path::new("/b")));
    }
}
