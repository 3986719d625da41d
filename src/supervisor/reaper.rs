//! The one central reaper.
//!
//! mew is a child subreaper, so it must reap pids it never spawned (orphans
//! reparented to it). Every exit therefore goes through one
//! `waitpid(-1, WNOHANG)` loop that dispatches by pid. An exit that arrives
//! before anyone asked for it (a child that dies at once) is kept in a small
//! "unclaimed" map until [`Reaper::watch`] collects it.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::sys::{self, Exit};

/// Unclaimed exits kept at most (adopted orphans nobody waits for).
const UNCLAIMED_CAP: usize = 4096;

#[derive(Default)]
struct Inner {
    waiting: HashMap<u32, oneshot::Sender<Exit>>,
    unclaimed: HashMap<u32, Exit>,
}

pub struct Reaper {
    inner: Mutex<Inner>,
}

static REAPER: OnceLock<Reaper> = OnceLock::new();

/// The process-wide reaper.
pub fn reaper() -> &'static Reaper {
    REAPER.get_or_init(|| Reaper {
        inner: Mutex::new(Inner::default()),
    })
}

impl Reaper {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ask for the exit of `pid` (a child of this process).
    pub fn watch(&self, pid: u32) -> oneshot::Receiver<Exit> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        if let Some(exit) = inner.unclaimed.remove(&pid) {
            let _ = tx.send(exit);
        } else {
            inner.waiting.insert(pid, tx);
        }
        rx
    }

    /// Reap everything that has ended and deliver the exits.
    pub fn poll(&self) {
        let reaped = sys::reap_all();
        if reaped.is_empty() {
            return;
        }
        let mut inner = self.lock();
        for (pid, exit) in reaped {
            match inner.waiting.remove(&pid) {
                Some(tx) => {
                    let _ = tx.send(exit);
                }
                None => {
                    if inner.unclaimed.len() >= UNCLAIMED_CAP {
                        inner.unclaimed.clear();
                    }
                    tracing::debug!(pid, ?exit, "reaped a process nobody waits for");
                    inner.unclaimed.insert(pid, exit);
                }
            }
        }
    }
}

/// Run the reaper until the runtime stops: reap on every SIGCHLD, and once a
/// second in case a signal was coalesced.
pub async fn run() {
    let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot watch SIGCHLD ({e}); reaping by polling");
            None
        }
    };
    loop {
        reaper().poll();
        match sigchld.as_mut() {
            Some(s) => {
                tokio::select! {
                    _ = s.recv() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

// The reaper's tests are in tests/reaper.rs, a binary of their own: its `waitpid(-1)` would reap
// the children other unit tests of the library wait for themselves.
