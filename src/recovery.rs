//! Cleaning up after a server that died without shutting down (SIGKILL, a
//! crash, the machine's OOM killer): what it left is found and killed before
//! anything new starts, and nothing that is not the dead run's is touched.
//!
//! The dead run is known from `state.json` (its run id and the process
//! groups it had) or, when it died before writing one, from the run id the
//! lock file still holds. Its processes are found by their run marker
//! (`MEW_RUN_ID` in `/proc/PID/environ`); a recorded group is signalled only
//! when one of its members still carries that marker (a pgid reused by an
//! unrelated program since is left alone). A process that cleared its
//! environment and was reparented to init after the server died cannot be
//! told from any other: docs/reliability.md says so.
//!
//! Also here, because both the server (at start-up) and the commands
//! (`up -d`, `down`, a lost `attach`) need them: taking the space lock while
//! a server exits, and whether a process still runs.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::space::{self, LockError, SpaceLock, SpacePaths};
use crate::supervisor::sweep;

pub(crate) use crate::procfs::process_runs;

/// Take the space lock. A lock still held by a server that is exiting (its
/// memory already gone, its files not yet closed) is waited for, briefly:
/// `down` followed at once by `up` must not be refused.
pub fn lock_space(paths: &SpacePaths) -> Result<SpaceLock, LockError> {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match space::try_lock(paths) {
            Err(LockError::Held { pid: Some(pid) })
                if !process_runs(pid) && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            // A server whose run dir was removed under it (`rm -rf
            // .mew/run`) still runs, holding the old, unlinked lock: the
            // fresh lock file must not let a second set of processes start.
            Ok(lock) => match space::running_server(paths) {
                Some(pid) => {
                    drop(lock);
                    return Err(LockError::Held { pid: Some(pid) });
                }
                None => return Ok(lock),
            },
            other => return other,
        }
    }
}

/// What the user is told after [`recover`] cleaned up after a dead server.
pub fn recovery_message(pid: u32, killed: usize) -> String {
    format!(
        "the space server (pid {pid}) had died; killed {killed} leftover process{}",
        plural(killed)
    )
}

/// What the server logs when it cleaned up after its dead predecessor.
pub fn previous_server_message(pid: u32, killed: usize) -> String {
    format!(
        "mew: the previous server (pid {pid}) did not shut down cleanly; killed {killed} leftover process{}",
        plural(killed)
    )
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "es" }
}

/// When the space's server is dead (its lock is free), kill what it left,
/// remove its socket and say what was done; `None` when a server still
/// holds the lock or nothing was left.
pub fn recover_dead_server(space_dir: &Path) -> Option<String> {
    let paths = SpacePaths::new(space_dir).ok()?;
    let lock = lock_space(&paths).ok()?;
    let report = recover(&paths, &lock).map(|(pid, killed)| recovery_message(pid, killed));
    remove_socket(&paths);
    drop(lock);
    report
}

/// Remove the socket and its record (a dead server's, or at a clean end).
pub fn remove_socket(paths: &SpacePaths) {
    let _ = std::fs::remove_file(&paths.socket);
    let _ = std::fs::remove_file(&paths.socket_record);
}

/// Kill what a crashed server left behind (the caller holds `lock`).
/// Returns the dead server's pid and how many processes were killed, or
/// `None` when there was nothing to clean up after.
pub fn recover(paths: &SpacePaths, lock: &SpaceLock) -> Option<(u32, usize)> {
    let state = space::read_state(&paths.state).ok().flatten();
    let (server_pid, run_id, pgids) = match (&state, &lock.previous) {
        (Some(s), _) => (
            s.server_pid,
            s.run_id.clone(),
            s.processes.iter().map(|p| p.pgid).collect::<Vec<_>>(),
        ),
        (None, Some(info)) => (info.pid, info.run_id.clone(), Vec::new()),
        (None, None) => return None,
    };
    let killed = sweep::kill_run(&run_id, &pgids, None);
    let _ = std::fs::remove_file(&paths.state);
    // Without a state file, a previous run that left nothing was a clean one.
    if state.is_none() && killed == 0 {
        return None;
    }
    Some((server_pid, killed))
}
