//! The server lock (`.mew/run/mew.lock`) and finding a running server by it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::private::runtime_dir_path;
use super::registry::RegistryEntry;
use super::{SpacePaths, dir_hash, with_context};
use crate::procfs;
use crate::status::Millis;

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
    Some(
        procfs::held_flocks()?
            .iter()
            .any(|&(_, ino)| ino == md.ino()),
    )
}

/// The lock file's content, whoever holds it (or held it last).
pub fn read_lock_info(paths: &SpacePaths) -> Option<LockInfo> {
    let text = fs::read_to_string(&paths.lock).ok()?;
    serde_json::from_str(&text).ok()
}

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
    let locks = procfs::held_flocks().map(|l| {
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
        .find(|&pid| procfs::has_open(pid, &paths.lock))
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
    procfs::has_open(pid, &paths.lock).then_some(pid)
}
