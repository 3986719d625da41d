//! `.mew/run/state.json`: the run id and the process groups of the running
//! space, what crash recovery reads after a server that died.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::space;
use crate::status::now_millis;
use crate::supervisor::Handle;

/// The writer of the state file, for as long as the space runs.
pub(super) struct StateWriter {
    path: PathBuf,
    /// Set once the space is down: no write may land after that.
    closed: Arc<Mutex<bool>>,
}

impl StateWriter {
    /// Keep the file at `path` in step with `handle`'s processes, from now on.
    pub(super) fn start(handle: Handle, path: PathBuf, run_id: String, server_pid: u32) -> Self {
        let closed = Arc::new(Mutex::new(false));
        tokio::spawn(record_state(
            handle,
            path.clone(),
            run_id,
            server_pid,
            closed.clone(),
        ));
        StateWriter { path, closed }
    }

    /// The space is down (a clean end): remove the file, and let no write
    /// still in flight bring it back (the next `up` would take this clean
    /// shutdown for a crash).
    pub(super) fn close(&self) {
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        *closed = true;
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Keep `.mew/run/state.json` in step with the running processes.
async fn record_state(
    handle: Handle,
    path: PathBuf,
    run_id: String,
    server_pid: u32,
    closed: Arc<Mutex<bool>>,
) {
    let mut rx = handle.watch_status();
    let started_at = now_millis();
    let mut last: Option<Vec<(String, u32)>> = None;
    loop {
        let pids: Vec<(String, u32)> = {
            let status = rx.borrow_and_update();
            status
                .processes
                .iter()
                .filter_map(|p| p.pid.map(|pid| (p.name.clone(), pid)))
                .collect()
        };
        if last.as_ref() != Some(&pids) {
            let state = space::StateFile {
                server_pid,
                run_id: run_id.clone(),
                started_at,
                processes: pids
                    .iter()
                    .map(|(name, pid)| space::ProcessRecord {
                        name: name.clone(),
                        pid: *pid,
                        pgid: *pid,
                    })
                    .collect(),
            };
            let p = path.clone();
            let closed = closed.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let closed = closed.lock().unwrap_or_else(|e| e.into_inner());
                if !*closed {
                    let _ = space::write_state(&p, &state);
                }
            })
            .await;
            last = Some(pids);
        }
        if rx.changed().await.is_err() {
            break;
        }
    }
}
