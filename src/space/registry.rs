//! The per-user registry of running spaces (`mew space ls`).

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::private::{create_private_dir, runtime_dir};
use super::{dir_hash, write_atomic};
use crate::procfs;
use crate::status::Millis;

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
    #[cfg(test)]
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
        let locks = procfs::held_flocks();
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
                procfs::process_runs(e.pid)
                    && locks.as_ref().is_none_or(|held| {
                        fs::metadata(e.dir.join(".mew/run/mew.lock"))
                            .is_ok_and(|md| held.iter().any(|&(_, ino)| ino == md.ino()))
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
