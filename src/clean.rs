//! `mew space clean`: remove what mew created in a space's `.mew/`.
//!
//! "mew-created" is exactly three directories of `.mew/`:
//!
//! | selector | removes |
//! | --- | --- |
//! | (none) | `logs/` and `run/` |
//! | `--logs` | `logs/` |
//! | `--tokens` | `tokens/` |
//! | `--all` | `logs/`, `run/` and `tokens/` |
//!
//! `--logs` and `--tokens` combine. Nothing else in `.mew/` is ever removed:
//! `space.yaml`, `agents/` and any file mew did not create stay. When the
//! config sets a logs directory other than `.mew/logs` (say `log/` of a Rails
//! app), only the files mew created there go, file by file, never the
//! directory: `mew-server.log*`, and `<name>.log`, `<name>.log.<N>` for each
//! name the directory's manifest (`.mew-logs`, see `logs.rs`) lists, then the
//! manifest. Without a manifest (logs of an older mew) the names are the
//! configured processes'. When the socket lives outside `.mew/run` (long
//! space dir), removing run state removes that socket file too.
//!
//! **Never through a symbolic link.** A symlinked `.mew`, or a symlinked
//! `logs`/`run`/`tokens` (or configured logs dir, or a directory on the way to
//! it inside the space), is refused with a message and nothing is removed.
//! Removal walks directories by descriptor (`openat` with `O_NOFOLLOW`,
//! `unlinkat`): a symlink inside is removed as a link, its target untouched,
//! and a directory swapped for a link mid-way is not followed either.
//!
//! **Never while the space runs**, `--force` or not: a server of this space
//! is found by its lock (held on `.mew/run/mew.lock`), and also when its run
//! directory was removed under it (a process holding an `flock` on this
//! space's lock file, deleted or not, found through `/proc/locks` and
//! `/proc/<pid>/fd`, or the registry of running spaces). Clean holds the
//! lock while removing, so no `up` starts meanwhile. `--force` only cleans
//! when whether the space runs cannot be checked at all. `--dry-run` only
//! lists (every file, in a logs dir that is not mew's), and changes nothing
//! (not even the lock file).

use std::ffi::{OsStr, OsString};
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

use crate::cli::{CleanArgs, SpaceArgs};
use crate::procfs;
use crate::space::{self, LockError, SpacePaths};

/// Directories nested deeper than this are not removed (mew makes none).
const MAX_DEPTH: u32 = 64;

/// One thing to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A directory of mew's (or file) and everything under it.
    Tree(PathBuf),
    /// One of mew's files in a directory that is not mew's.
    File(PathBuf),
}

impl Target {
    fn path(&self) -> &Path {
        match self {
            Target::Tree(p) | Target::File(p) => p,
        }
    }
}

/// Files and bytes under a target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Usage {
    files: u64,
    bytes: u64,
}

/// `mew space clean`: what it removes (or would) is written to `out`.
pub(crate) fn clean(space: &SpaceArgs, args: &CleanArgs, out: &mut String) -> Result<(), String> {
    let paths = SpacePaths::new(&space.space_dir).map_err(|e| e.to_string())?;
    let config = crate::config::load(&crate::config::LoadOptions {
        space_dir: paths.dir.clone(),
        ..crate::config::LoadOptions::from(space)
    })
    .ok();
    let shown = |p: &Path| -> String {
        match p.strip_prefix(&paths.dir) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => p.display().to_string(),
        }
    };

    let (logs, run, tokens) = match (args.all, args.logs, args.tokens) {
        (true, _, _) => (true, true, true),
        (false, false, false) => (true, true, false),
        (false, l, t) => (l, false, t),
    };

    // Nothing is followed: a symlink where mew's directories should be is
    // refused before anything is looked at or removed.
    // (`run/` always: clean takes the space's lock in it.)
    let mut dirs = vec![paths.mew_dir.clone(), paths.run_dir.clone()];
    if logs {
        dirs.push(paths.logs_dir.clone());
    }
    if tokens {
        dirs.push(paths.tokens_dir.clone());
    }
    let foreign_logs = config
        .as_ref()
        .map(|c| c.logs.dir.clone())
        .filter(|d| logs && *d != paths.logs_dir);
    dirs.extend(foreign_logs.clone());
    for d in &dirs {
        if let Some(link) = symlink_on_the_way(&paths.dir, d) {
            let to = fs::read_link(&link)
                .map(|t| format!(" (to {})", t.display()))
                .unwrap_or_default();
            return Err(format!(
                "refusing to clean: {} is a symbolic link{to}; clean never follows symbolic links, so nothing was removed (remove the link, or clean what it points to yourself)",
                shown(&link)
            ));
        }
    }

    let id_of = |info_id: Option<String>| {
        info_id
            .or_else(|| config.as_ref().map(|c| c.id.clone()))
            .or_else(|| {
                paths
                    .dir
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| paths.dir.display().to_string())
    };
    let running_msg = |pid: Option<u32>| {
        let id = id_of(space::read_lock_info(&paths).and_then(|i| i.space_id));
        let lock_gone = !paths.lock.exists();
        match pid {
            Some(pid) if lock_gone => format!(
                "space \"{id}\" is running (pid {pid}), though its run directory {} was removed: clean refuses while a space runs, even with --force (stop it with \"kill {pid}\", which stops every process of it, then clean)",
                shown(&paths.run_dir)
            ),
            Some(pid) => format!(
                "space \"{id}\" is running (pid {pid}): clean refuses while a space runs, even with --force (stop it with \"mew space down\" first)"
            ),
            None => format!(
                "space \"{id}\" is running: clean refuses while a space runs, even with --force (stop it with \"mew space down\" first)"
            ),
        }
    };

    let running = space::running_server(&paths);
    if let Some(pid) = running {
        if !args.dry_run {
            return Err(running_msg(Some(pid)));
        }
        let id = id_of(space::read_lock_info(&paths).and_then(|i| i.space_id));
        let _ = writeln!(
            out,
            "note: space \"{id}\" is running (pid {pid}): clean would refuse"
        );
    }

    let mut targets = Vec::new();
    let mut notes = Vec::new();
    if logs {
        targets.push(Target::Tree(paths.logs_dir.clone()));
        if let Some(dir) = &foreign_logs {
            let configured: Option<Vec<String>> = config
                .as_ref()
                .map(|c| c.processes.iter().map(|p| p.name.clone()).collect());
            let (files, note) = mew_log_files(&paths.dir, dir, configured.as_deref());
            targets.extend(files.into_iter().map(Target::File));
            notes.extend(note);
        }
    }
    if run {
        targets.push(Target::Tree(paths.run_dir.clone()));
        if paths.socket_is_external() {
            targets.push(Target::File(paths.socket.clone()));
        }
    }
    if tokens {
        targets.push(Target::Tree(paths.tokens_dir.clone()));
    }
    for n in notes {
        let _ = writeln!(out, "note: {n}");
    }

    // Measure first: taking the lock may create the (empty) lock file.
    let measured: Vec<(Target, Usage)> = targets
        .into_iter()
        .filter_map(|t| measure(&t).map(|u| (t, u)))
        .collect();

    let mut _lock = None;
    if !args.dry_run && paths.run_dir.is_dir() {
        match space::try_lock(&paths) {
            Ok(lock) => _lock = Some(lock),
            Err(LockError::Held { pid }) => return Err(running_msg(pid)),
            Err(LockError::Io(e)) if !args.force => {
                return Err(format!(
                    "cannot check whether the space is running: {e} (pass --force to clean anyway)"
                ));
            }
            Err(LockError::Io(e)) => {
                let _ = writeln!(
                    out,
                    "warning: cannot check whether the space is running ({e}); cleaning anyway (--force)"
                );
            }
        }
    }

    if measured.is_empty() {
        let _ = writeln!(out, "Nothing to clean in {}.", paths.mew_dir.display());
        return Ok(());
    }
    let _ = writeln!(
        out,
        "{} in {}:",
        if args.dry_run {
            "Would remove (dry run)"
        } else {
            "Removing"
        },
        paths.dir.display()
    );
    let width = measured
        .iter()
        .map(|(t, _)| shown(t.path()).len())
        .max()
        .unwrap_or(0);
    let mut total = Usage::default();
    for (t, u) in &measured {
        let _ = writeln!(out, "  {:<width$}  {}", shown(t.path()), summary(t, *u));
        total.files += u.files;
        total.bytes += u.bytes;
    }
    let _ = writeln!(out, "Total: {}", files_and_size(total));
    if args.dry_run {
        return Ok(());
    }

    let mut failures = Vec::new();
    for (t, _) in &measured {
        if let Err(e) = remove(&paths.dir, t) {
            failures.push(format!("{}: {e}", shown(t.path())));
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "could not remove everything:\n  {}",
            failures.join("\n  ")
        ))
    }
}

fn files_and_size(u: Usage) -> String {
    format!(
        "{} file{}, {}",
        u.files,
        if u.files == 1 { "" } else { "s" },
        crate::human::size(u.bytes)
    )
}

fn summary(t: &Target, u: Usage) -> String {
    match t {
        Target::Tree(_) => files_and_size(u),
        Target::File(_) => crate::human::size(u.bytes),
    }
}

// ---- no symlinks -----------------------------------------------------------------

/// The plain components of `p` under `base`, when it lies under it (no
/// `..`, no root): there every component is checked, elsewhere only the
/// last one (the directories above a logs dir outside the space are the
/// system's).
fn plain_under<'a>(base: &Path, p: &'a Path) -> Option<Vec<&'a OsStr>> {
    let rel = p.strip_prefix(base).ok()?;
    rel.components()
        .filter(|c| *c != Component::CurDir)
        .map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect()
}

/// The first symbolic link among `dir` and the directories between `base`
/// (the space dir, the user's choice) and it.
fn symlink_on_the_way(base: &Path, dir: &Path) -> Option<PathBuf> {
    let is_link = |p: &Path| fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
    match plain_under(base, dir) {
        Some(parts) => {
            let mut p = base.to_path_buf();
            for part in parts {
                p.push(part);
                if is_link(&p) {
                    return Some(p);
                }
            }
            None
        }
        None => is_link(dir).then(|| dir.to_path_buf()),
    }
}

fn open_dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// Open the directory `dir` without following a symbolic link (anywhere
/// under `base`; outside it, in its last component). `Ok(None)` when it
/// does not exist.
fn open_dir_nofollow(base: &Path, dir: &Path) -> io::Result<Option<OwnedFd>> {
    let walk = |fd: Result<OwnedFd, Errno>| match fd {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(Errno::ELOOP | Errno::ENOTDIR) => Err(io::Error::other(format!(
            "{} is not a directory (a symbolic link?): not followed",
            dir.display()
        ))),
        Err(e) => Err(io::Error::from(e)),
    };
    match plain_under(base, dir) {
        Some(parts) => {
            let mut fd = match walk(nix::fcntl::open(
                base,
                open_dir_flags() & !OFlag::O_NOFOLLOW,
                Mode::empty(),
            ))? {
                Some(fd) => fd,
                None => return Ok(None),
            };
            for part in parts {
                fd = match walk(nix::fcntl::openat(
                    &fd,
                    part,
                    open_dir_flags(),
                    Mode::empty(),
                ))? {
                    Some(next) => next,
                    None => return Ok(None),
                };
            }
            Ok(Some(fd))
        }
        None => walk(nix::fcntl::open(dir, open_dir_flags(), Mode::empty())),
    }
}

/// Open the parent of `p` (as [`open_dir_nofollow`]) and name `p` in it.
fn parent_of(base: &Path, p: &Path) -> io::Result<Option<(OwnedFd, OsString)>> {
    let (Some(parent), Some(name)) = (p.parent(), p.file_name()) else {
        return Err(io::Error::other(format!("{} has no parent", p.display())));
    };
    Ok(open_dir_nofollow(base, parent)?.map(|fd| (fd, name.to_owned())))
}

fn lstat_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<nix::sys::stat::FileStat, Errno> {
    nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW)
}

fn is_dir(st: &nix::sys::stat::FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

fn is_regular(st: &nix::sys::stat::FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFREG
}

/// Remove `name` in `dir` and, for a directory, everything under it,
/// without following any symbolic link. Goes on past a failure; returns
/// the first.
fn remove_at(dir: BorrowedFd<'_>, name: &OsStr, depth: u32) -> io::Result<()> {
    let st = match lstat_at(dir, name) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !is_dir(&st) {
        return match nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
        };
    }
    if depth >= MAX_DEPTH {
        return Err(io::Error::other("directories nested too deeply"));
    }
    let sub = nix::fcntl::openat(dir, name, open_dir_flags(), Mode::empty())?;
    let mut first = None;
    for n in procfs::dir_entries(sub.as_fd())? {
        if let Err(e) = remove_at(sub.as_fd(), &n, depth + 1) {
            first.get_or_insert(e);
        }
    }
    if let Some(e) = first {
        return Err(e);
    }
    match nix::unistd::unlinkat(dir, name, UnlinkatFlags::RemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

// ---- mew's files in a logs dir that is not mew's ------------------------------------

/// `<stem>.log` or `<stem>.log.<N>` for one of `stems`.
fn is_log_of(name: &str, stems: &[String]) -> bool {
    stems.iter().any(|stem| {
        name.strip_prefix(stem.as_str())
            .and_then(|r| r.strip_prefix(".log"))
            .is_some_and(|rest| {
                rest.is_empty()
                    || rest
                        .strip_prefix('.')
                        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
    })
}

/// The files mew created in `dir` (not mew's own directory), the manifest
/// last; and a note when the manifest could not be trusted.
fn mew_log_files(
    base: &Path,
    dir: &Path,
    configured: Option<&[String]>,
) -> (Vec<PathBuf>, Option<String>) {
    let Ok(Some(fd)) = open_dir_nofollow(base, dir) else {
        return (Vec::new(), None);
    };
    let (mut stems, note, manifest) = match crate::logs::manifest_names(fd.as_fd()) {
        Ok(Some(names)) => (names, None, true),
        Ok(None) => (
            configured.map(<[String]>::to_vec).unwrap_or_default(),
            None,
            false,
        ),
        Err(why) => (
            configured.map(<[String]>::to_vec).unwrap_or_default(),
            Some(format!(
                "{}: {why}; going by the configured process names",
                dir.display()
            )),
            false,
        ),
    };
    stems.push("mew-server".into());
    let Ok(names) = procfs::dir_entries(fd.as_fd()) else {
        return (Vec::new(), note);
    };
    let mut files: Vec<PathBuf> = names
        .iter()
        .filter_map(|n| n.to_str())
        .filter(|n| is_log_of(n, &stems))
        .filter(|n| lstat_at(fd.as_fd(), OsStr::new(n)).is_ok_and(|st| is_regular(&st)))
        .map(|n| dir.join(n))
        .collect();
    files.sort();
    if manifest {
        files.push(dir.join(crate::logs::MANIFEST));
    }
    (files, note)
}

/// What a target holds; `None` when there is nothing to remove.
fn measure(t: &Target) -> Option<Usage> {
    let md = fs::symlink_metadata(t.path()).ok()?;
    match t {
        Target::Tree(p) => {
            let mut u = Usage::default();
            walk(p, &mut u);
            Some(u)
        }
        Target::File(_) => Some(Usage {
            files: 1,
            bytes: md.len(),
        }),
    }
}

/// Count every non-directory entry under `p` (symlinks not followed).
fn walk(p: &Path, u: &mut Usage) {
    let Ok(md) = fs::symlink_metadata(p) else {
        return;
    };
    if md.is_dir() {
        if let Ok(read) = fs::read_dir(p) {
            for e in read.flatten() {
                walk(&e.path(), u);
            }
        }
    } else {
        u.files += 1;
        if md.is_file() {
            u.bytes += md.len();
        }
    }
}

fn remove(base: &Path, t: &Target) -> io::Result<()> {
    let Some((dir, name)) = parent_of(base, t.path())? else {
        return Ok(());
    };
    match t {
        Target::Tree(_) => remove_at(dir.as_fd(), &name, 0),
        Target::File(_) => match lstat_at(dir.as_fd(), &name) {
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(e.into()),
            Ok(st) if is_dir(&st) => Err(io::Error::other("is a directory now: left alone")),
            Ok(_) => {
                match nix::unistd::unlinkat(&dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn log_file_names() {
        let stems = ["a".to_string(), "mew-server".into(), "a.b".into()];
        for yes in [
            "a.log",
            "mew-server.log",
            "a.log.1",
            "a.b.log.12",
            "mew-server.log.3",
        ] {
            assert!(is_log_of(yes, &stems), "{yes}");
        }
        for no in [
            "a.txt",
            "a.log.x",
            "a.log.",
            ".log.1",
            "notes",
            "a.logx",
            "b.log",
            "development.log",
            "aa.log",
            "a.log.1.gz",
        ] {
            assert!(!is_log_of(no, &stems), "{no}");
        }
    }

    #[test]
    fn measure_counts_files_not_dirs() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("logs");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("a.log"), "12345").unwrap();
        fs::write(d.join("sub/b"), "123").unwrap();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), "x").unwrap();
        symlink(&outside, d.join("link")).unwrap();
        symlink(outside.join("keep"), d.join("sub/link2")).unwrap();
        let u = measure(&Target::Tree(d.clone())).unwrap();
        assert_eq!(u, Usage { files: 4, bytes: 8 });
        assert_eq!(measure(&Target::Tree(t.path().join("missing"))), None);
        remove(t.path(), &Target::Tree(d.clone())).unwrap();
        assert!(!d.exists());
        assert!(
            outside.join("keep").exists(),
            "a link's target is never touched"
        );
    }

    #[test]
    fn never_through_a_link_on_the_way() {
        let t = tempfile::tempdir().unwrap();
        let real = t.path().join("real");
        fs::create_dir_all(real.join("logs")).unwrap();
        fs::write(real.join("logs/a.log"), "x").unwrap();
        symlink(&real, t.path().join("m")).unwrap();
        let p = t.path().join("m/logs");
        assert_eq!(symlink_on_the_way(t.path(), &p), Some(t.path().join("m")));
        assert!(remove(t.path(), &Target::Tree(p)).is_err());
        assert!(real.join("logs/a.log").exists());
        // Outside the base only the last component counts.
        assert_eq!(
            symlink_on_the_way(Path::new("/nonexistent"), &real.join("logs")),
            None
        );
    }

    #[test]
    fn only_mews_files_in_a_foreign_dir() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("log");
        fs::create_dir(&d).unwrap();
        for f in [
            "api.log",
            "api.log.2",
            "development.log",
            "keep.txt",
            "mew-server.log",
        ] {
            fs::write(d.join(f), "x").unwrap();
        }
        // No manifest: the configured names.
        let (files, note) = mew_log_files(t.path(), &d, Some(&["api".to_string()]));
        assert_eq!(note, None);
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["api.log", "api.log.2", "mew-server.log"]);
        // A manifest: its names, then the manifest itself.
        fs::write(d.join(crate::logs::MANIFEST), "# mew\nold\n").unwrap();
        fs::write(d.join("old.log.1"), "x").unwrap();
        let (files, _) = mew_log_files(t.path(), &d, Some(&["api".to_string()]));
        let names: Vec<_> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            ["mew-server.log", "old.log.1", crate::logs::MANIFEST]
        );
        for f in &files {
            remove(t.path(), &Target::File(f.clone())).unwrap();
        }
        assert!(d.join("development.log").exists() && d.join("api.log").exists());
        assert!(!d.join("old.log.1").exists());
    }
}
