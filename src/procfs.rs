//! Reading `/proc` (Linux): process info, per-group resource usage, and
//! finding this run's processes by their environment marker.
//!
//! Every reader tolerates processes vanishing mid-scan: a process that is
//! gone (or unreadable) is skipped, never an error.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::unistd::{SysconfVar, sysconf};

use crate::sys;

/// One process, from `/proc/<pid>/stat` and `/proc/<pid>/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub pgid: u32,
    pub sid: u32,
    /// Real uid.
    pub uid: u32,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// utime + stime, in clock ticks ([`clock_ticks_per_sec`]).
    pub cpu_ticks: u64,
    /// Start time after boot, in clock ticks.
    pub start_ticks: u64,
    /// `R`, `S`, `D`, `Z`, `T`...
    pub state: char,
    /// The command name (at most 15 bytes, as the kernel keeps it).
    pub comm: String,
}

/// The fields of `/proc/<pid>/stat` mew uses.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stat {
    comm: String,
    state: char,
    ppid: u32,
    pgid: u32,
    sid: u32,
    cpu_ticks: u64,
    start_ticks: u64,
    rss_pages: u64,
}

/// Parse a `stat` line. `comm` is between the first `(` and the **last** `)`:
/// it may itself contain spaces and parentheses.
fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    if close < open {
        return None;
    }
    let comm = text[open + 1..close].to_string();
    // Fields after comm, numbered as in proc(5) starting from 3 (state).
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize| rest.get(n - 3).copied();
    let num = |n: usize| field(n).and_then(|s| s.parse::<u64>().ok());
    let state = field(3)?.chars().next()?;
    Some(Stat {
        comm,
        state,
        ppid: u32::try_from(num(4)?).ok()?,
        pgid: u32::try_from(num(5)?).ok()?,
        sid: u32::try_from(num(6)?).ok()?,
        cpu_ticks: num(14)?.saturating_add(num(15)?),
        start_ticks: num(22)?,
        // rss (field 24) is a signed long; the kernel never reports it negative.
        rss_pages: field(24)?.parse::<i64>().ok()?.max(0) as u64,
    })
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The real uid from a `status` file (`Uid:\treal\teffective\tsaved\tfs`).
fn parse_status_uid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One process's info, `None` when it does not exist (or vanished).
///
/// RSS comes from the `rss` field of `stat` (the same counter `statm`
/// reports as resident), times the page size.
pub(crate) fn read_proc(pid: u32) -> Option<ProcInfo> {
    let stat = read_stat(pid)?;
    let uid = parse_status_uid(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)?;
    Some(ProcInfo {
        pid,
        ppid: stat.ppid,
        pgid: stat.pgid,
        sid: stat.sid,
        uid,
        rss_bytes: stat.rss_pages.saturating_mul(page_size()),
        cpu_ticks: stat.cpu_ticks,
        start_ticks: stat.start_ticks,
        state: stat.state,
        comm: stat.comm,
    })
}

/// The pids under `/proc`.
fn pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .collect()
}

/// Every process on the machine (that could be read).
pub fn all_processes() -> Vec<ProcInfo> {
    pids().into_iter().filter_map(read_proc).collect()
}

/// The children of a process (of all its threads), from
/// `/proc/<pid>/task/<tid>/children`.
fn children(pid: u32, out: &mut Vec<u32>) {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return;
    };
    for task in tasks.flatten() {
        if let Ok(text) = fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|s| s.parse::<u32>().ok()),
            );
        }
    }
}

/// Sum RSS (bytes) and CPU (ticks) over each root process and its
/// descendants, walking the process tree down from the roots: the cost is
/// proportional to mew's own processes, not to every process on the machine
/// (a developer machine runs hundreds). A root that is gone is absent.
pub(crate) fn tree_usage(roots: &[u32]) -> HashMap<u32, (u64, u64)> {
    let page = page_size();
    let mut out = HashMap::new();
    let mut stack = Vec::new();
    for &root in roots {
        let Some(stat) = read_stat(root) else {
            continue;
        };
        let mut rss = stat.rss_pages.saturating_mul(page);
        let mut ticks = stat.cpu_ticks;
        stack.clear();
        children(root, &mut stack);
        let mut budget = 10_000;
        while let Some(pid) = stack.pop() {
            budget -= 1;
            if budget == 0 {
                break;
            }
            if let Some(st) = read_stat(pid) {
                rss = rss.saturating_add(st.rss_pages.saturating_mul(page));
                ticks = ticks.saturating_add(st.cpu_ticks);
                children(pid, &mut stack);
            }
        }
        out.insert(root, (rss, ticks));
    }
    out
}

/// Processes of this (effective) uid whose environment contains exactly
/// `key=value`, e.g. `MEW_RUN_ID=<run id>`: how recovery finds descendants
/// that left their process group and session. Unreadable environments
/// (other users, zombies, vanished processes) are skipped.
///
/// Note: `/proc/<pid>/environ` is the environment the process was started
/// with, which is what a marker inherited through `exec` needs.
pub fn find_marked(marker_key: &str, marker_value: &str) -> Vec<u32> {
    let needle = format!("{marker_key}={marker_value}");
    let needle = needle.as_bytes();
    let uid = sys::euid();
    let mut out = Vec::new();
    for pid in pids() {
        let dir = format!("/proc/{pid}");
        let Ok(md) = fs::metadata(&dir) else { continue };
        if md.uid() != uid {
            continue;
        }
        let Ok(env) = fs::read(Path::new(&dir).join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|entry| entry == needle) {
            out.push(pid);
        }
    }
    out.sort_unstable();
    out
}

/// Clock ticks per second (`_SC_CLK_TCK`, 100 if unknown).
pub(crate) fn clock_ticks_per_sec() -> u64 {
    sysconf_or(SysconfVar::CLK_TCK, 100)
}

/// The page size in bytes (`_SC_PAGESIZE`, 4096 if unknown).
pub(crate) fn page_size() -> u64 {
    sysconf_or(SysconfVar::PAGE_SIZE, 4096)
}

/// A positive `sysconf` value, or `default`.
fn sysconf_or(var: SysconfVar, default: u64) -> u64 {
    sysconf(var)
        .ok()
        .flatten()
        .and_then(|v| u64::try_from(v).ok())
        .filter(|v| *v > 0)
        .unwrap_or(default)
}

/// Every descendant of `root` in `all` (children, grandchildren...), by
/// parent pid, breadth first. `root` itself is not included.
pub fn descendants(root: u32, all: &[ProcInfo]) -> Vec<u32> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for p in all {
        if p.pid != p.ppid {
            children.entry(p.ppid).or_default().push(p.pid);
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::from([root]);
    let mut queue = std::collections::VecDeque::from([root]);
    while let Some(pid) = queue.pop_front() {
        for &c in children.get(&pid).map(Vec::as_slice).unwrap_or_default() {
            if seen.insert(c) {
                out.push(c);
                queue.push_back(c);
            }
        }
    }
    out
}

/// Whether a process is on its way out: a zombie, or exiting (`PF_EXITING`
/// in the `flags` field of `stat`: its memory may be gone while its files,
/// and so its locks, are still open). `false` when it does not exist.
pub(crate) fn is_ending(pid: u32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(text) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let Some(close) = text.rfind(')') else {
        return false;
    };
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let state = rest.first().and_then(|s| s.chars().next());
    let flags = rest.get(6).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    matches!(state, Some('Z') | Some('X')) || flags & PF_EXITING != 0
}

/// The value of one environment variable a process was started with.
pub fn env_var(pid: u32, key: &str) -> Option<String> {
    let env = fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{key}=");
    env.split(|b| *b == 0).find_map(|entry| {
        entry
            .strip_prefix(prefix.as_bytes())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    })
}

/// Whether a process runs: it exists (a signal-0 probe, [`sys::pid_exists`])
/// and is not on its way out ([`is_ending`]: a zombie, or exiting). The one
/// "is this pid alive" check of mew. Pid 0 (and pids past `i32::MAX`, which
/// `kill` would read as groups) never run.
pub(crate) fn process_runs(pid: u32) -> bool {
    pid != 0 && i32::try_from(pid).is_ok() && sys::pid_exists(pid) && !is_ending(pid)
}

/// The kernel's limit of inotify watches per user
/// (`/proc/sys/fs/inotify/max_user_watches`), for the watcher's messages.
pub(crate) fn inotify_max_user_watches() -> Option<u64> {
    fs::read_to_string("/proc/sys/fs/inotify/max_user_watches")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `(pid, inode)` of every granted exclusive `flock`, from `/proc/locks`
/// (`None` when unreadable). Reading it takes no lock, so it cannot race
/// with a server starting up, unlike a probing `flock`.
pub(crate) fn held_flocks() -> Option<Vec<(u32, u64)>> {
    Some(parse_locks(&fs::read_to_string("/proc/locks").ok()?))
}

/// The granted exclusive `flock`s of a `/proc/locks` text.
fn parse_locks(text: &str) -> Vec<(u32, u64)> {
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
        .collect()
}

/// Whether process `pid` has `path` open (or the file that was there, since
/// removed), from the links in `/proc/<pid>/fd`.
pub(crate) fn has_open(pid: u32, path: &Path) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let mut deleted = path.as_os_str().to_owned();
    deleted.push(" (deleted)");
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .is_ok_and(|t| t.as_os_str() == path.as_os_str() || t.as_os_str() == deleted)
    })
}

/// The names in a directory, read through its descriptor (`/proc/self/fd/N`
/// names the very directory that was opened, whatever happened to its path).
pub(crate) fn dir_entries(dir: BorrowedFd<'_>) -> std::io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    for e in fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))? {
        names.push(e?.file_name());
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_zombie_is_ending_a_running_process_is_not() {
        assert!(!is_ending(std::process::id()));
        let mut child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !is_ending(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        // Another test's reaper may have reaped it already: then it is gone.
        assert!(is_ending(pid) || !std::path::Path::new(&format!("/proc/{pid}")).exists());
        let _ = child.wait();
        assert!(!is_ending(u32::MAX - 1));
    }

    #[test]
    fn tree_usage_sums_a_process_and_its_children() {
        let mut child = std::process::Command::new("/bin/sh")
            .args(["-c", "sleep 30 & sleep 30 & wait"])
            .spawn()
            .unwrap();
        let pid = child.id();
        // Wait until both sleeps exist under the shell.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut kids = Vec::new();
        while std::time::Instant::now() < deadline {
            kids.clear();
            children(pid, &mut kids);
            // And both have exec'd and touched memory: right after an exec
            // a process's RSS can still read 0 (a loaded machine widens it).
            if kids.len() == 2
                && kids
                    .iter()
                    .all(|&k| read_proc(k).is_some_and(|p| p.rss_bytes > 0))
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(kids.len(), 2, "{kids:?}");
        let usage = tree_usage(&[pid, u32::MAX - 1]);
        let (rss, _) = usage[&pid];
        let own = read_proc(pid).unwrap().rss_bytes;
        assert!(rss > own, "{rss} vs {own}");
        assert!(!usage.contains_key(&(u32::MAX - 1)));
        for k in kids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(k as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    use super::*;

    #[test]
    fn locks_are_parsed_and_only_granted_exclusive_flocks_kept() {
        let text = "1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF\n\
                    2: FLOCK  ADVISORY  READ  99 00:2f:1 0 EOF\n\
                    3: POSIX  ADVISORY  WRITE 7 00:2f:2 0 EOF\n\
                    4: -> FLOCK  ADVISORY  WRITE 55 00:2f:5678 0 EOF\n\
                    garbage\n";
        assert_eq!(parse_locks(text), vec![(1234, 5678)]);
    }

    #[test]
    fn this_process_runs_and_pid_zero_does_not() {
        assert!(process_runs(std::process::id()));
        assert!(!process_runs(0));
        assert!(!process_runs(u32::MAX));
    }

    #[test]
    fn an_open_file_is_seen_even_once_removed() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join("held");
        let f = std::fs::File::create(&path).unwrap();
        let me = std::process::id();
        assert!(has_open(me, &path));
        std::fs::remove_file(&path).unwrap();
        assert!(has_open(me, &path));
        drop(f);
        assert!(!has_open(me, &path));
    }
    use std::process::{Child, Command, Stdio};

    /// Kills and reaps a child however the test ends.
    struct Reap(Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn sleep_with_marker(key: &str, value: &str) -> Reap {
        Reap(
            Command::new("sleep")
                .arg("1000")
                .env(key, value)
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    #[test]
    fn parse_stat_with_hostile_comm() {
        let line = "4242 (a b) (c)) S 1 4242 4242 0 -1 4194304 100 0 0 0 7 5 0 0 20 0 1 0 987654 1000 33 18446744073709551615";
        let s = parse_stat(line).unwrap();
        assert_eq!(s.comm, "a b) (c)");
        assert_eq!(s.state, 'S');
        assert_eq!((s.ppid, s.pgid, s.sid), (1, 4242, 4242));
        assert_eq!(s.cpu_ticks, 12);
        assert_eq!(s.start_ticks, 987654);
        assert_eq!(s.rss_pages, 33);
    }

    #[test]
    fn parse_stat_rejects_garbage() {
        assert_eq!(parse_stat(""), None);
        assert_eq!(parse_stat("12 (x"), None);
        assert_eq!(parse_stat("12 x) S"), None);
        assert_eq!(parse_stat("12 (x) S 1 2"), None);
        assert_eq!(
            parse_stat("12 (x) S a b c d e f g h i j k l m n o p q r s t u"),
            None
        );
    }

    #[test]
    fn parse_status() {
        assert_eq!(
            parse_status_uid("Name:\tx\nUid:\t1000\t1001\t1002\t1003\n"),
            Some(1000)
        );
        assert_eq!(parse_status_uid("Name:\tx\n"), None);
    }

    #[test]
    fn reads_ourselves() {
        let me = read_proc(std::process::id()).unwrap();
        assert_eq!(me.pid, std::process::id());
        assert_eq!(me.uid, nix::unistd::getuid().as_raw());
        assert_eq!(me.pgid, nix::unistd::getpgrp().as_raw() as u32);
        assert_eq!(me.ppid, nix::unistd::getppid().as_raw() as u32);
        assert!(me.rss_bytes > 0);
        assert!(me.start_ticks > 0);
        assert!(all_processes().iter().any(|p| p.pid == me.pid));
    }

    #[test]
    fn missing_process_is_none() {
        let mut c = Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        assert_eq!(read_proc(pid), None);
    }

    #[test]
    fn finds_marked_process_and_its_descendants() {
        let value = crate::space::new_run_id();
        let child = sleep_with_marker("MEW_TEST_MARK", &value);
        let pid = child.0.id();
        assert_eq!(find_marked("MEW_TEST_MARK", &value), vec![pid]);
        // Exact match only: a prefix of the value or another key does not count.
        assert!(find_marked("MEW_TEST_MARK", &value[..8]).is_empty());
        assert!(find_marked("MEW_TEST_MAR", &value).is_empty());
        let all = all_processes();
        assert!(descendants(std::process::id(), &all).contains(&pid));
        let info = read_proc(pid).unwrap();
        assert_eq!(info.comm, "sleep");
        assert_eq!(info.ppid, std::process::id());
    }

    #[test]
    fn comm_with_spaces_and_parens() {
        let t = tempfile::tempdir().unwrap();
        let link = t.path().join("a b)c");
        let sleep = ["/bin/sleep", "/usr/bin/sleep"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap();
        std::os::unix::fs::symlink(sleep, &link).unwrap();
        let child = Reap(Command::new(&link).arg("1000").spawn().unwrap());
        let pid = child.0.id();
        // std's spawn returns only after the exec succeeded.
        let info = read_proc(pid).unwrap();
        assert_eq!(info.comm, "a b)c");
        assert_eq!(info.ppid, std::process::id());
    }

    #[test]
    fn descendants_tree() {
        let p = |pid, ppid| ProcInfo {
            pid,
            ppid,
            pgid: pid,
            sid: pid,
            uid: 0,
            rss_bytes: 0,
            cpu_ticks: 0,
            start_ticks: 0,
            state: 'S',
            comm: String::new(),
        };
        let all = vec![p(1, 0), p(10, 1), p(11, 10), p(12, 11), p(13, 10), p(20, 1)];
        let mut d = descendants(10, &all);
        d.sort();
        assert_eq!(d, vec![11, 12, 13]);
        assert!(descendants(12, &all).is_empty());
        // A cycle (impossible in practice) does not hang.
        let cyc = vec![p(5, 6), p(6, 5)];
        assert_eq!(descendants(5, &cyc), vec![6]);
    }

    #[test]
    fn sysconf_values() {
        assert!(clock_ticks_per_sec() >= 1);
        assert!(page_size().is_power_of_two());
    }
}
