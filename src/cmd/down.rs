//! `mew space down`: stop every process and the server, and make sure of
//! it: a server that does not answer, hangs, or has lost its socket is
//! stopped (or killed) and what it left is cleaned up as after a crash.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::common::{block_on, load};
use super::{Error, Outcome};
use crate::cli::{DownArgs, SpaceArgs};
use crate::client::{Conn, ConnectError};
use crate::protocol::{ClientKind, Request, ServerMsg};
use crate::recovery::{self, process_runs};
use crate::space::{self, SpacePaths};
use crate::status::ProcState;
use crate::sys;

pub fn run(args: &SpaceArgs, a: &DownArgs) -> Outcome {
    let timeout = super::common::duration_arg("--timeout", &a.timeout)?;
    // `down` must work even when the config is broken: it only needs the dir.
    // Patience: the longest a clean stop can take, plus a margin.
    let margin = Duration::from_secs(10);
    let (dir, patience) = match load(args) {
        Ok(cfg) => {
            let stop = cfg
                .processes
                .iter()
                .map(|p| p.stop_timeout)
                .max()
                .unwrap_or_default();
            let longest = timeout.unwrap_or(stop).max(cfg.shutdown_timeout);
            (cfg.dir, longest + margin)
        }
        Err(e) => {
            // Said, and `down` goes on with the dir alone.
            eprintln!("{e}");
            (
                args.space_dir.clone(),
                timeout.unwrap_or_default() + margin * 2,
            )
        }
    };
    block_on(down(&dir, timeout, patience))
}

/// `patience`: how long the server may stay silent (and then take to exit)
/// before `down` takes it for hung: it is then killed, and what it left is
/// cleaned up as after a crash. `down` never reports "down" while the server
/// still runs.
async fn down(space_dir: &Path, timeout: Option<Duration>, patience: Duration) -> Outcome {
    let mut conn = match Conn::connect(space_dir, ClientKind::Control).await {
        Ok(c) => c,
        Err(ConnectError::NotRunning) => return down_without_server(space_dir).await,
        Err(ConnectError::Unsafe(why)) => return Err(Error::Failed(why)),
        Err(ConnectError::Failed(why)) => {
            // A server that holds the lock but does not answer (stopped,
            // wedged) is killed: `down` means nothing of the space runs after.
            let pid = SpacePaths::new(space_dir)
                .ok()
                .and_then(|p| space::read_lock_info(&p))
                .map(|i| i.pid)
                .filter(|&p| process_runs(p));
            let Some(pid) = pid else {
                return Err(Error::Failed(why));
            };
            eprintln!("mew: {why}; killing the space server (pid {pid}) and what it left");
            return kill_hung_server(space_dir, pid).await;
        }
    };
    let server_pid = conn.server_pid;
    let req = Request::Down {
        timeout_ms: timeout.map(|t| t.as_millis() as u64),
    };
    conn.request(req).await?;
    loop {
        match tokio::time::timeout(patience, conn.recv()).await {
            Ok(Ok(Some(ServerMsg::Event { event }))) => {
                if matches!(
                    event.state,
                    ProcState::Stopped
                        | ProcState::Stopping { escalated: true }
                        | ProcState::Exited { .. }
                        | ProcState::Killed { .. }
                ) {
                    println!("{}: {}", event.process, event.message);
                }
            }
            Ok(Ok(Some(ServerMsg::Bye { .. })) | Ok(None) | Err(_)) => break,
            Ok(Ok(Some(_))) => {}
            // Silent for too long (stopped, wedged): handled below.
            Err(_) => break,
        }
    }
    // The server removes its socket and exits once everything is gone.
    if !gone_within(server_pid, patience, Duration::from_millis(5)).await {
        eprintln!(
            "mew: the space server (pid {server_pid}) did not finish stopping within {}; killing it and what it left",
            crate::human::duration(patience)
        );
        return kill_hung_server(space_dir, server_pid).await;
    }
    println!("space \"{}\" is down", conn.space_id);
    Ok(ExitCode::SUCCESS)
}

/// Wait (looking every `step`) for `pid` to stop running; whether it did
/// within `patience`.
async fn gone_within(pid: u32, patience: Duration, step: Duration) -> bool {
    let deadline = Instant::now() + patience;
    while process_runs(pid) && Instant::now() < deadline {
        tokio::time::sleep(step).await;
    }
    !process_runs(pid)
}

/// SIGKILL a server that does not do its job, then clean up after it as
/// after a crash (recorded groups, the run marker).
pub(super) async fn kill_hung_server(space_dir: &Path, pid: u32) -> Outcome {
    let _ = sys::signal_pid(pid, libc::SIGKILL);
    if !gone_within(pid, Duration::from_secs(10), Duration::from_millis(5)).await {
        return Err(Error::Failed(format!(
            "the space server (pid {pid}) is still alive"
        )));
    }
    report_dead_server(space_dir).await;
    println!("the space is down");
    Ok(ExitCode::SUCCESS)
}

/// [`recovery::recover_dead_server`] off the runtime thread, saying what it did.
pub(super) async fn report_dead_server(space_dir: &Path) {
    let dir = space_dir.to_path_buf();
    let report = tokio::task::spawn_blocking(move || recovery::recover_dead_server(&dir))
        .await
        .ok()
        .flatten();
    if let Some(r) = report {
        println!("{r}");
    }
}

/// Kill what a crashed server left behind (the caller holds the lock) and
/// say so. Returns whether there was a crashed server to clean up after.
pub(super) fn report_recovery(paths: &SpacePaths, lock: &space::SpaceLock) -> bool {
    match recovery::recover(paths, lock) {
        Some((pid, killed)) => {
            println!("{}", recovery::recovery_message(pid, killed));
            true
        }
        None => false,
    }
}

/// SIGTERM a server that runs without a socket (its run dir was removed),
/// wait for it to stop its processes and exit, and kill it (and what it left)
/// if it does not within its patience.
async fn stop_unreachable_server(space_dir: &Path, pid: u32) -> Outcome {
    println!("the space server (pid {pid}) has no socket (its run dir was removed); stopping it");
    let _ = sys::signal_pid(pid, libc::SIGTERM);
    let patience = Duration::from_secs(60);
    if !gone_within(pid, patience, Duration::from_millis(10)).await {
        eprintln!(
            "mew: the space server (pid {pid}) did not stop within {}; killing it and what it left",
            crate::human::duration(patience)
        );
        return kill_hung_server(space_dir, pid).await;
    }
    println!("the space is down");
    Ok(ExitCode::SUCCESS)
}

async fn down_without_server(space_dir: &Path) -> Outcome {
    let nothing = || {
        println!("the space is not running; nothing to stop");
        Ok(ExitCode::SUCCESS)
    };
    let Ok(paths) = SpacePaths::new(space_dir) else {
        return nothing();
    };
    // A server whose run dir was removed under it: it cannot be asked, so
    // it is told (SIGTERM stops it as gracefully as a request would).
    if let Some(pid) = space::running_server(&paths) {
        return stop_unreachable_server(space_dir, pid).await;
    }
    // Never started here (no run dir, no lock file): nothing to stop.
    if !paths.lock.exists() && !paths.state.exists() {
        return nothing();
    }
    // A live server that holds the lock but does not answer is not ours to judge.
    match recovery::lock_space(&paths) {
        Ok(lock) => {
            if !report_recovery(&paths, &lock) {
                println!("the space is not running; nothing to stop");
            }
            recovery::remove_socket(&paths);
            drop(lock);
            Ok(ExitCode::SUCCESS)
        }
        Err(space::LockError::Held { pid, .. }) => Err(Error::Failed(format!(
            "a space server holds the lock (pid {}) but does not answer on {}",
            pid.map_or("unknown".into(), |p| p.to_string()),
            paths.socket.display()
        ))),
        Err(e) => Err(Error::Failed(e.to_string())),
    }
}
