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
//! config sets a logs directory other than `.mew/logs`, only mew's own log
//! files in it (`*.log`, `*.log.<N>`) are removed, never the directory. When
//! the socket lives outside `.mew/run` (long space dir), removing run state
//! removes that socket file too.
//!
//! Clean refuses while the space runs (its lock is held) unless `--force`;
//! otherwise it holds the lock while removing, so no `up` starts meanwhile.
//! `--dry-run` only lists, and changes nothing (not even the lock file).

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::{CleanArgs, SpaceArgs};
use crate::space::{self, LockError, SpacePaths};

/// One thing to remove.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// A whole directory (or file) and everything under it.
    Tree(PathBuf),
    /// mew's log files directly inside a directory that is not mew's.
    LogFilesIn(PathBuf),
}

/// Files and bytes under a target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Usage {
    files: u64,
    bytes: u64,
}

/// Entry point for `mew space clean`.
pub fn run(space: &SpaceArgs, args: &CleanArgs) -> ExitCode {
    let mut out = String::new();
    let result = clean(space, args, &mut out);
    print!("{out}");
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mew: {e}");
            ExitCode::FAILURE
        }
    }
}

fn clean(space: &SpaceArgs, args: &CleanArgs, out: &mut String) -> Result<(), String> {
    let paths = SpacePaths::new(&space.space_dir).map_err(|e| e.to_string())?;
    let config = crate::config::load(&crate::config::LoadOptions {
        space_dir: paths.dir.clone(),
        config: space.config.clone(),
        procfile: space.procfile.clone(),
    })
    .ok();

    let (logs, run, tokens) = match (args.all, args.logs, args.tokens) {
        (true, _, _) => (true, true, true),
        (false, false, false) => (true, true, false),
        (false, l, t) => (l, false, t),
    };
    let mut targets = Vec::new();
    if logs {
        targets.push(Target::Tree(paths.logs_dir.clone()));
        if let Some(dir) = config.as_ref().map(|c| c.logs.dir.clone())
            && dir != paths.logs_dir
        {
            targets.push(Target::LogFilesIn(dir));
        }
    }
    if run {
        targets.push(Target::Tree(paths.run_dir.clone()));
        if paths.socket_is_external() {
            targets.push(Target::Tree(paths.socket.clone()));
        }
    }
    if tokens {
        targets.push(Target::Tree(paths.tokens_dir.clone()));
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
    let running_msg = |pid: Option<u32>, id: Option<String>| {
        let pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        format!(
            "space \"{}\" is running{pid}: stop it with \"mew space down\" or pass --force",
            id_of(id)
        )
    };

    // Measure first: taking the lock may create the (empty) lock file.
    let measured: Vec<(Target, Usage)> = targets
        .into_iter()
        .filter_map(|t| measure(&t).map(|u| (t, u)))
        .collect();

    let mut _lock = None;
    if args.dry_run {
        if space::is_locked(&paths) == Some(true) {
            let info = space::read_lock_info(&paths);
            let pid = info
                .as_ref()
                .map(|i| i.pid)
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            let id = id_of(info.and_then(|i| i.space_id));
            let _ = writeln!(
                out,
                "note: space \"{id}\" is running{pid}: clean would refuse without --force"
            );
        }
    } else if paths.run_dir.is_dir() {
        match space::try_lock(&paths) {
            Ok(lock) => _lock = Some(lock),
            Err(LockError::Held { pid }) if !args.force => {
                return Err(running_msg(
                    pid,
                    space::read_lock_info(&paths).and_then(|i| i.space_id),
                ));
            }
            Err(LockError::Held { pid }) => {
                let space_id = space::read_lock_info(&paths).and_then(|i| i.space_id);
                let pid = pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "warning: space \"{}\" is running{pid}; cleaning anyway (--force)",
                    id_of(space_id)
                );
            }
            Err(LockError::Io(e)) if !args.force => {
                return Err(format!(
                    "cannot check whether the space is running: {e} (pass --force to clean anyway)"
                ));
            }
            Err(LockError::Io(_)) => {}
        }
    }

    let shown = |p: &Path| -> String {
        match p.strip_prefix(&paths.dir) {
            Ok(rel) => rel.display().to_string(),
            Err(_) => p.display().to_string(),
        }
    };
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
        .map(|(t, _)| describe(t, &shown).len())
        .max()
        .unwrap_or(0);
    let mut total = Usage::default();
    for (t, u) in &measured {
        let _ = writeln!(out, "  {:<width$}  {}", describe(t, &shown), summary(*u));
        total.files += u.files;
        total.bytes += u.bytes;
    }
    let _ = writeln!(out, "Total: {}", summary(total));
    if args.dry_run {
        return Ok(());
    }

    let mut failures = Vec::new();
    for (t, _) in &measured {
        if let Err(e) = remove(t) {
            failures.push(format!("{}: {e}", describe(t, &shown)));
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

fn describe(t: &Target, shown: &dyn Fn(&Path) -> String) -> String {
    match t {
        Target::Tree(p) => shown(p),
        Target::LogFilesIn(dir) => format!("{}/*.log*", shown(dir)),
    }
}

fn summary(u: Usage) -> String {
    format!(
        "{} file{}, {}",
        u.files,
        if u.files == 1 { "" } else { "s" },
        human_size(u.bytes)
    )
}

/// `512 B`, `1.5 KiB`, `3.0 MiB`...
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A log file mew writes: `name.log` or a rotated `name.log.N`.
fn is_mew_log_file(name: &str) -> bool {
    if name.ends_with(".log") {
        return true;
    }
    match name.rsplit_once(".log.") {
        Some((stem, n)) => {
            !stem.is_empty() && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        }
        None => false,
    }
}

fn log_files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(read) = fs::read_dir(dir) else {
        return Vec::new();
    };
    read.flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| e.file_name().to_str().is_some_and(is_mew_log_file))
        .map(|e| e.path())
        .collect()
}

/// What a target holds; `None` when there is nothing to remove.
fn measure(t: &Target) -> Option<Usage> {
    match t {
        Target::Tree(p) => {
            fs::symlink_metadata(p).ok()?;
            let mut u = Usage::default();
            walk(p, &mut u);
            Some(u)
        }
        Target::LogFilesIn(dir) => {
            let files = log_files_in(dir);
            if files.is_empty() {
                return None;
            }
            let bytes = files
                .iter()
                .filter_map(|f| fs::metadata(f).ok())
                .map(|m| m.len())
                .sum();
            Some(Usage {
                files: files.len() as u64,
                bytes,
            })
        }
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

fn remove(t: &Target) -> io::Result<()> {
    match t {
        Target::Tree(p) => match fs::symlink_metadata(p) {
            Ok(md) if md.is_dir() => fs::remove_dir_all(p),
            Ok(_) => fs::remove_file(p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        },
        Target::LogFilesIn(dir) => {
            for f in log_files_in(dir) {
                match fs::remove_file(&f) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                    _ => {}
                }
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(3 * 1024 * 1024), "3.0 MiB");
    }

    #[test]
    fn log_file_names() {
        for yes in ["a.log", "mew-server.log", "a.log.1", "a.b.log.12"] {
            assert!(is_mew_log_file(yes), "{yes}");
        }
        for no in ["a.txt", "a.log.x", "a.log.", ".log.1", "notes", "a.logx"] {
            assert!(!is_mew_log_file(no), "{no}");
        }
    }

    #[test]
    fn measure_counts_files_not_dirs() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("logs");
        fs::create_dir_all(d.join("sub")).unwrap();
        fs::write(d.join("a.log"), "12345").unwrap();
        fs::write(d.join("sub/b"), "123").unwrap();
        std::os::unix::fs::symlink("/etc/hostname", d.join("link")).unwrap();
        let u = measure(&Target::Tree(d.clone())).unwrap();
        assert_eq!(u, Usage { files: 3, bytes: 8 });
        assert_eq!(measure(&Target::Tree(t.path().join("missing"))), None);
        remove(&Target::Tree(d.clone())).unwrap();
        assert!(!d.exists());
        assert!(Path::new("/etc/hostname").exists() || !Path::new("/etc").exists());
    }

    #[test]
    fn log_files_in_foreign_dir() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("api.log"), "x").unwrap();
        fs::write(t.path().join("api.log.2"), "yy").unwrap();
        fs::write(t.path().join("keep.txt"), "z").unwrap();
        let target = Target::LogFilesIn(t.path().to_path_buf());
        assert_eq!(measure(&target), Some(Usage { files: 2, bytes: 3 }));
        remove(&target).unwrap();
        assert!(t.path().join("keep.txt").exists());
        assert_eq!(measure(&target), None);
    }
}
