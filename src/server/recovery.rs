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

use crate::space::{self, SpaceLock, SpacePaths};
use crate::supervisor::sweep;

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
