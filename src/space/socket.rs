//! The space socket: where clients find it, binding it, and who may use it.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::private::{check_private_dir, euid};
use super::{SpacePaths, with_context};

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

pub(super) fn check_uid(uid: u32) -> Result<(), String> {
    let ours = euid();
    if uid == ours || uid == 0 {
        Ok(())
    } else {
        Err(format!(
            "refused a connection from uid {uid}: only uid {ours} (the space's owner) and root may use this space"
        ))
    }
}
