//! Every call into the OS that needs `unsafe`, in one place.
//!
//! PTYs, spawning with `pre_exec`, the central reaper's `waitpid`, process
//! groups, window sizes and daemonising live here; the rest of mew uses safe
//! wrappers only.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::pty::{Winsize, openpty};
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Held while a child is being forked and while the reaper calls
/// `waitpid(-1)`. std's `Command::spawn` reaps a child whose `exec` failed
/// itself (and asserts that the wait succeeds); a concurrent `waitpid(-1)`
/// would steal that child. Holding this lock also closes the window between
/// `openpty` and setting `FD_CLOEXEC`, so no child inherits another's master.
static FORK_LOCK: Mutex<()> = Mutex::new(());

fn fork_lock() -> std::sync::MutexGuard<'static, ()> {
    FORK_LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn set_cloexec(fd: RawFd) -> io::Result<()> {
    // SAFETY: `fd` is an open descriptor owned by the caller for the whole call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
    Ok(())
}

/// Put a descriptor in non-blocking mode (for `AsyncFd`).
pub(crate) fn set_nonblocking(fd: &impl AsFd) -> io::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

fn winsize(rows: u16, cols: u16) -> Winsize {
    Winsize {
        ws_row: rows.max(1),
        ws_col: cols.max(1),
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// What to run on a new PTY.
pub struct SpawnSpec<'a> {
    pub argv: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: &'a Path,
    pub rows: u16,
    pub cols: u16,
}

/// A child running on its own PTY, as a session leader (pgid = sid = pid).
pub struct PtyChild {
    pub pid: u32,
    /// The master side; close it to hang the terminal up.
    pub master: OwnedFd,
}

/// Why a spawn failed, in words a user can act on.
#[derive(Debug)]
pub struct SpawnError {
    pub message: String,
    /// 127 for "not found", 126 for "cannot execute", 1 otherwise (shell conventions).
    pub exit_code: i32,
    /// mew lacked a resource (descriptors, processes, memory): not the
    /// program's fault, so not its crash; worth retrying.
    pub transient: bool,
}

/// Errors that say the system (or mew) is short of something, not that the
/// command is wrong.
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::EAGAIN | libc::ENOMEM | libc::ENOSPC)
    )
}

fn spawn_error(argv0: &str, cwd: &Path, e: &io::Error) -> SpawnError {
    let (message, exit_code) = match e.kind() {
        io::ErrorKind::NotFound if !cwd.is_dir() => (
            format!("working directory {} does not exist", cwd.display()),
            1,
        ),
        io::ErrorKind::NotFound => (format!("command not found: {argv0}"), 127),
        io::ErrorKind::PermissionDenied if !cwd.is_dir() => (
            format!("working directory {} is not accessible", cwd.display()),
            1,
        ),
        io::ErrorKind::PermissionDenied => (format!("permission denied: {argv0}"), 126),
        _ => (format!("cannot start {argv0}: {e}"), 126),
    };
    SpawnError {
        message,
        exit_code,
        transient: is_transient(e),
    }
}

/// In a forked child before exec: mark every descriptor from 3 up
/// close-on-exec, so nothing mew inherited (`{ mew space up -d; } 3>&1 | cat`)
/// or opened leaks into the programs it runs. std's exec-error pipe is
/// already close-on-exec, so spawn errors are still reported.
/// Async-signal-safe: `close_range` (Linux 5.11+), else `fcntl` per descriptor.
fn cloexec_from_3() {
    // SAFETY: plain syscalls on descriptor numbers; no memory is touched.
    unsafe {
        #[cfg(target_os = "linux")]
        if libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        ) == 0
        {
            return;
        }
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        let max = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur.min(65_536) as i32
        } else {
            1024
        };
        for fd in 3..max {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// Spawn `spec` on a fresh PTY. The child gets the slave as stdin/stdout/stderr
/// and as its controlling terminal, in a new session. The environment is the
/// server's own plus `spec.env`.
pub fn spawn_on_pty(spec: &SpawnSpec<'_>) -> Result<PtyChild, SpawnError> {
    let Some(argv0) = spec.argv.first() else {
        return Err(SpawnError {
            message: "empty command".into(),
            exit_code: 1,
            transient: false,
        });
    };
    let guard = fork_lock();
    let pty = openpty(&winsize(spec.rows, spec.cols), None).map_err(|e| {
        let e = io::Error::from(e);
        SpawnError {
            message: format!("cannot open a pseudo-terminal: {e}"),
            exit_code: 1,
            transient: is_transient(&e) || e.raw_os_error() == Some(libc::ENOENT),
        }
    })?;
    let os_err = |e: io::Error| SpawnError {
        message: format!("cannot set up the pseudo-terminal: {e}"),
        exit_code: 1,
        transient: is_transient(&e),
    };
    set_cloexec(pty.master.as_raw_fd()).map_err(os_err)?;
    set_cloexec(pty.slave.as_raw_fd()).map_err(os_err)?;
    let stdin = pty.slave.try_clone().map_err(os_err)?;
    let stdout = pty.slave.try_clone().map_err(os_err)?;
    let stderr = pty.slave;

    let mut cmd = Command::new(argv0);
    cmd.args(&spec.argv[1..])
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(spec.cwd)
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr));
    // SAFETY: the closure runs in the forked child before exec and only calls
    // async-signal-safe functions (setsid, ioctl) on descriptor 0, which std
    // has already replaced with the PTY slave.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(io::Error::last_os_error());
            }
            cloexec_from_3();
            restore_child_nofile();
            Ok(())
        });
    }
    let result = cmd.spawn();
    drop(guard);
    match result {
        // The std `Child` is dropped without waiting: the central reaper owns the exit.
        Ok(child) => Ok(PtyChild {
            pid: child.id(),
            master: pty.master,
        }),
        Err(e) => Err(spawn_error(argv0, spec.cwd, &e)),
    }
}

/// Spawn a helper command (an exec probe): `sh -c line`, in its own process
/// group, with stdio to /dev/null. Its exit is delivered by the reaper.
pub(crate) fn spawn_helper(line: &str, env: &[(String, String)], cwd: &Path) -> io::Result<u32> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(line)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    // SAFETY: only async-signal-safe syscalls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            cloexec_from_3();
            restore_child_nofile();
            Ok(())
        });
    }
    let guard = fork_lock();
    let result = cmd.spawn();
    drop(guard);
    Ok(result?.id())
}

/// Set a PTY's window size; the kernel sends SIGWINCH to its foreground group.
pub(crate) fn set_winsize(master: &impl AsRawFd, rows: u16, cols: u16) -> io::Result<()> {
    let ws = winsize(rows, cols);
    // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which is valid
    // for the duration of the call; the descriptor is open.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws as *const Winsize) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// How a reaped process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

impl Exit {
    /// The shell-style code: the exit code, or 128 + signal.
    pub(crate) fn code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Reap every child that has ended (`waitpid(-1, WNOHANG)`), including
/// orphans adopted as subreaper.
pub(crate) fn reap_all() -> Vec<(u32, Exit)> {
    let _guard = fork_lock();
    let mut out = Vec::new();
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => out.push((pid.as_raw() as u32, Exit::Code(code))),
            Ok(WaitStatus::Signaled(pid, sig, _)) => {
                out.push((pid.as_raw() as u32, Exit::Signal(sig as i32)))
            }
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(_) => continue,
            Err(Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    out
}

/// Signal a whole process group. `Ok(false)` when the group no longer exists.
pub(crate) fn signal_group(pgid: u32, sig: i32) -> io::Result<bool> {
    let signal = Signal::try_from(sig).map_err(io::Error::from)?;
    match killpg(Pid::from_raw(pgid as i32), signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Signal one process. `Ok(false)` when it no longer exists.
pub(crate) fn signal_pid(pid: u32, sig: i32) -> io::Result<bool> {
    let signal = Signal::try_from(sig).map_err(io::Error::from)?;
    match nix::sys::signal::kill(Pid::from_raw(pid as i32), signal) {
        Ok(()) => Ok(true),
        Err(Errno::ESRCH) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Whether a process (or zombie) with this pid exists.
pub fn pid_exists(pid: u32) -> bool {
    matches!(
        nix::sys::signal::kill(Pid::from_raw(pid as i32), None),
        Ok(()) | Err(Errno::EPERM)
    )
}

/// Give SIGPIPE its default action again (Rust's runtime ignores it): a
/// command whose reader went away (`mew space status | head -1`) ends
/// quietly, like any Unix tool, instead of failing on EPIPE. Not for the
/// server or the gateway, which handle a closed output themselves.
pub fn default_sigpipe() {
    // SAFETY: setting a signal's disposition to SIG_DFL has no memory-safety
    // conditions; it is called at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Set an environment variable for this process and everything it starts.
/// Only at start-up, before any thread exists (`std::env::set_var` is
/// unsound once other threads may read the environment).
pub fn set_env_at_startup(key: &str, value: &str) {
    // SAFETY: called from `main` before the tokio runtime or any other
    // thread is started, so nothing reads the environment concurrently.
    unsafe {
        std::env::set_var(key, value);
    }
}

/// The soft `RLIMIT_NOFILE` mew was started with, when the server raised
/// its own ([`raise_nofile_limit`]); `u64::MAX`: unchanged.
static CHILD_NOFILE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(u64::MAX);

/// Raise the soft descriptor limit to the hard one: a space of N processes
/// needs about 2N descriptors (a PTY master and a pidfd or pipe each), so
/// 1024 would cap it near 500. The programs mew starts get the original
/// soft limit back (some still use `select`, which breaks past 1024), as
/// systemd does. Returns (old soft, new soft).
pub(crate) fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    let target = hard.min(1 << 20);
    if soft < target {
        setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
        CHILD_NOFILE.store(soft, std::sync::atomic::Ordering::SeqCst);
    }
    Ok((soft, target.max(soft)))
}

/// In a forked child before exec: give back the descriptor limit mew was
/// started with. Async-signal-safe.
fn restore_child_nofile() {
    let soft = CHILD_NOFILE.load(std::sync::atomic::Ordering::Relaxed);
    if soft == u64::MAX {
        return;
    }
    // SAFETY: getrlimit/setrlimit on a local struct; no allocation.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 {
            lim.rlim_cur = soft as libc::rlim_t;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Become a child subreaper (Linux): orphaned descendants are reparented to
/// this process instead of init, so they can be found, killed and reaped.
pub(crate) fn become_subreaper() -> io::Result<()> {
    #[cfg(target_os = "linux")]
    nix::sys::prctl::set_child_subreaper(true)?;
    Ok(())
}

/// Start `exe args` as a daemon: a new session, stdin from /dev/null,
/// stdout/stderr to `out` (opened for appending). Call before any thread is started is not
/// required (this is fork + exec through std), but the child must not inherit
/// mew's runtime, which exec guarantees.
pub(crate) fn spawn_daemon(exe: &Path, args: &[OsString], out: std::fs::File) -> io::Result<u32> {
    let err = out.try_clone()?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    // SAFETY: setsid is async-signal-safe; it runs in the child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            cloexec_from_3();
            Ok(())
        });
    }
    let guard = fork_lock();
    let child = cmd.spawn();
    drop(guard);
    Ok(child?.id())
}

/// Register a descriptor with tokio's reactor.
pub(crate) fn async_fd(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an `OwnedFd` owns its descriptor until it is dropped, and its
    // `as_raw_fd` always returns that same open descriptor; the `AsyncFd`
    // takes ownership of it, so it stays open for the `AsyncFd`'s lifetime.
    unsafe { tokio::io::unix::AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)
}

/// The current user's uid.
pub(crate) fn uid() -> u32 {
    nix::unistd::getuid().as_raw()
}

/// The effective uid: whose files and processes count as ours.
pub(crate) fn euid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// Read from a non-blocking descriptor. `Ok(0)` at end of file; a PTY master
/// whose slave side is closed reports EIO, which is end of file too.
pub(crate) fn read_fd(fd: &impl AsFd, buf: &mut [u8]) -> io::Result<usize> {
    match nix::unistd::read(fd, buf) {
        Ok(n) => Ok(n),
        Err(Errno::EIO) => Ok(0),
        Err(e) => Err(e.into()),
    }
}

/// Write to a non-blocking descriptor.
pub(crate) fn write_fd(fd: &impl AsFd, buf: &[u8]) -> io::Result<usize> {
    Ok(nix::unistd::write(fd, buf)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawn_reports_missing_command() {
        let argv = vec!["/definitely/not/here".to_string()];
        let err = spawn_on_pty(&SpawnSpec {
            argv: &argv,
            env: &[],
            cwd: Path::new("/"),
            rows: 24,
            cols: 80,
        })
        .err()
        .expect("spawn must fail");
        assert_eq!(err.exit_code, 127);
        assert!(err.message.contains("not found"), "{}", err.message);
    }

    #[test]
    fn spawn_reports_missing_cwd() {
        let argv = vec!["/bin/true".to_string()];
        let err = spawn_on_pty(&SpawnSpec {
            argv: &argv,
            env: &[],
            cwd: Path::new("/no/such/dir"),
            rows: 24,
            cols: 80,
        })
        .err()
        .expect("spawn must fail");
        assert!(err.message.contains("/no/such/dir"), "{}", err.message);
    }
}
