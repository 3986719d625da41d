//! `.mew/run/state.json`: the run id and the process groups of the running
//! space, what crash recovery reads after a server that died.

use std::sync::Arc;

use crate::space;
use crate::status::now_millis;
use crate::supervisor::Handle;

/// Keep `.mew/run/state.json` in step with the running processes.
pub(super) async fn record_state(
    handle: Handle,
    path: std::path::PathBuf,
    run_id: String,
    server_pid: u32,
    closed: Arc<std::sync::Mutex<bool>>,
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
