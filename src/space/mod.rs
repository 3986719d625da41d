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

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

mod lock;
mod paths;
mod private;
mod registry;
mod socket;
mod state;
mod tokens;

// What integration tests and the binary use is `pub`; the rest is the crate's.
pub use lock::{LockError, LockInfo, SpaceLock, is_locked, try_lock};
pub use paths::SpacePaths;
pub use tokens::{load_or_create_token_with, new_run_id};

pub(crate) use lock::{read_lock_info, running_server};
pub(crate) use paths::dir_hash;
pub(crate) use private::{check_private_dir, create_private_dir};
pub(crate) use registry::{
    RegistryEntry, list_running, list_running_checked, register, unregister,
};
pub(crate) use socket::{bind_socket, check_peer, peer_uid, socket_path_for};
pub(crate) use state::{ProcessRecord, StateFile, read_state, write_state};
pub(crate) use tokens::{load_or_create_token, new_token, participant_tokens};

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

fn with_context(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

#[cfg(test)]
mod tests;
