//! Killing what is left of a run: every process carrying its marker, the
//! recorded groups still its own, and (for a live server) every descendant
//! it has, marked or not. Blocking (it reads `/proc`): call it off the
//! runtime thread.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::procfs;
use crate::space;
use crate::sys;

/// SIGKILL every process of run `run_id` and the recorded groups that are
/// still its own, until none is left (bounded); returns how many distinct
/// processes were killed. Other spaces' servers started from inside the run
/// are asked to stop (SIGTERM) and given time first, so their own processes
/// are stopped by them, not orphaned.
///
/// `tree_root`: a live server's own pid. Its descendants are killed too: a
/// process that cleared its environment (`setsid env -i CMD &`) or whose
/// `/proc/PID/environ` cannot be read carries no marker, but the server is
/// its subreaper, so it is still in the server's tree.
pub fn kill_run(run_id: &str, pgids: &[u32], tree_root: Option<u32>) -> usize {
    let me = std::process::id();
    stop_nested_servers(run_id, me, tree_root);
    let mut killed: BTreeSet<u32> = BTreeSet::new();
    for round in 0..100 {
        let all = procfs::all_processes();
        let marked: BTreeSet<u32> = procfs::find_marked("MEW_RUN_ID", run_id)
            .into_iter()
            .filter(|&p| p != me)
            .collect();
        let mut targets: BTreeSet<u32> = marked.clone();
        if let Some(root) = tree_root {
            targets.extend(procfs::descendants(root, &all));
        }
        if round == 0 {
            // Recorded groups count only when a member still carries the
            // marker: a pgid reused since is someone else's.
            for &pgid in pgids {
                let members: Vec<u32> = all
                    .iter()
                    .filter(|p| p.pgid == pgid)
                    .map(|p| p.pid)
                    .collect();
                if members.iter().any(|m| marked.contains(m)) {
                    targets.extend(members.into_iter().filter(|&p| p != me));
                }
            }
        }
        if targets.is_empty() {
            break;
        }
        for pid in targets {
            if sys::signal_pid(pid, libc::SIGKILL).unwrap_or(false) {
                killed.insert(pid);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    killed.len()
}

/// Servers of other spaces started from inside this run (they carry its
/// marker, or are in the live server's tree) get SIGTERM and up to 10 s to
/// stop their own processes gracefully before the sweep: a space is its own
/// run, never SIGKILLed from outside with its processes orphaned.
fn stop_nested_servers(run_id: &str, me: u32, tree_root: Option<u32>) {
    let tree: Vec<u32> = tree_root
        .map(|root| procfs::descendants(root, &procfs::all_processes()))
        .unwrap_or_default();
    let nested: Vec<u32> = space::list_running()
        .into_iter()
        .map(|e| e.pid)
        .filter(|&p| p != me)
        .filter(|&p| {
            tree.contains(&p) || procfs::env_var(p, "MEW_RUN_ID").as_deref() == Some(run_id)
        })
        .collect();
    if nested.is_empty() {
        return;
    }
    for &pid in &nested {
        let _ = sys::signal_pid(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while nested.iter().any(|&p| procfs::process_runs(p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}
