//! Private directories (0700, ours, not a symlink) and the per-user runtime dir.

use std::ffi::OsStr;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::with_context;

pub(super) use crate::sys::euid;

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
