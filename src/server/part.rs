//! The development loop in the server (#17): which processes `up NAME…` and
//! `--profile` start ([`apply`]), and the `watch:` wiring ([`watch`]): one
//! [`crate::watch::Watcher`] for the space, its notices turned into
//! restarts (or signals) with the reason "src/main.rs changed".
//!
//! A change restarts a process that runs, is starting, waits to restart or
//! has ended on its own (exited, crashed, failed); one the user stopped, or
//! that was never started (idle), stays as it is. The watcher debounces a
//! burst into one notice, and the lifecycle machine never queues a restart
//! that is already pending, so a burst is one restart.

use std::path::PathBuf;

use crate::config::{self, ResolvedProcess, SelectError, SpaceConfig, WatchAction, WatchSpec};
use crate::supervisor::Handle;
use crate::watch::{Notice, Watcher};

/// What part of the space `up` starts: `up NAME…` and `--profile P`.
#[derive(Clone, Debug, Default)]
pub struct Part {
    pub names: Vec<String>,
    pub profiles: Vec<String>,
}

impl Part {
    /// The `__serve` arguments that carry this part to a daemon server.
    pub fn args(&self) -> Vec<std::ffi::OsString> {
        let mut out = Vec::new();
        for n in &self.names {
            out.push("--only".into());
            out.push(n.into());
        }
        for p in &self.profiles {
            out.push("--profile".into());
            out.push(p.into());
        }
        out
    }
}

/// Keep what `part` does not select idle, as `auto_start: false` keeps a
/// process (listed, startable with `mew space start`); a process named in
/// `part.names` starts even with `auto_start: false`. `resolved` is in the
/// order of `cfg.processes`.
pub fn apply(
    cfg: &SpaceConfig,
    resolved: &mut [ResolvedProcess],
    part: &Part,
) -> Result<(), SelectError> {
    let selected = config::select(cfg, &part.names, &part.profiles)?;
    for rp in resolved.iter_mut() {
        if !selected.contains(&rp.name) {
            rp.config.auto_start = false;
        } else if part.names.iter().any(|n| {
            *n == rp.name
                || rp
                    .config
                    .replica
                    .as_ref()
                    .is_some_and(|r| r.of == *n && r.count > 1)
        }) {
            rp.config.auto_start = true;
        }
    }
    Ok(())
}

/// One process under `watch:`.
struct Watched {
    index: usize,
    name: String,
    spec: WatchSpec,
    cwd: PathBuf,
}

/// Start watching every process with `watch:` (nothing when none has).
/// The trees are walked off the runtime thread; each process says what it
/// watches (or why it cannot) in a lifecycle line. The task ends when the
/// returned handle is aborted (the watcher with it).
pub(super) fn watch(
    handle: &Handle,
    resolved: &[ResolvedProcess],
) -> Option<tokio::task::JoinHandle<()>> {
    let watched: Vec<Watched> = resolved
        .iter()
        .enumerate()
        .filter_map(|(index, rp)| {
            let spec = rp.config.watch.clone()?;
            Some(Watched {
                index,
                name: rp.name.clone(),
                spec,
                cwd: rp.cwd.clone(),
            })
        })
        .collect();
    if watched.is_empty() {
        return None;
    }
    let handle = handle.clone();
    Some(tokio::spawn(async move {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let started = tokio::task::spawn_blocking(move || start(tx, watched)).await;
        let (watcher, watched, notes) = match started {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("the file watcher did not start: {e}");
                return;
            }
        };
        for (name, note) in notes {
            let _ = handle.warn(name, note).await;
        }
        // Held while notices come: dropping it stops its threads.
        let _watcher = watcher;
        while let Some(notice) = rx.recv().await {
            match notice {
                Notice::Changed(ev) => {
                    let Some(w) = watched.iter().find(|w| w.index == ev.key) else {
                        continue;
                    };
                    let names = vec![w.name.clone()];
                    let r = match w.spec.action {
                        WatchAction::Restart => handle.restart_because(names, ev.describe()).await,
                        WatchAction::Signal { signal } => {
                            handle
                                .signal_because(names, signal.number, ev.describe())
                                .await
                        }
                    };
                    if let Err(why) = r {
                        tracing::info!("{}: {}: {why}", w.name, ev.describe());
                    }
                }
                Notice::Error { key, error } => {
                    if let Some(w) = watched.iter().find(|w| w.index == key) {
                        let _ = handle.warn(w.name.clone(), error.to_string()).await;
                    }
                }
            }
        }
    }))
}

/// The watcher with every process's watch set up, the processes it
/// watches, and a line for each process (what it watches, or why not).
#[allow(clippy::type_complexity)]
fn start(
    tx: tokio::sync::mpsc::UnboundedSender<Notice>,
    watched: Vec<Watched>,
) -> (Option<Watcher>, Vec<Watched>, Vec<(String, String)>) {
    let watcher = match Watcher::with_channel(tx) {
        Ok(w) => w,
        Err(e) => {
            let notes = watched
                .iter()
                .map(|w| (w.name.clone(), e.to_string()))
                .collect();
            return (None, Vec::new(), notes);
        }
    };
    let mut notes = Vec::new();
    let mut ok = Vec::new();
    for w in watched {
        match watcher.update(w.index, &w.spec, &w.cwd) {
            Ok(()) => {
                notes.push((
                    w.name.clone(),
                    format!("watching {}", w.spec.paths.join(", ")),
                ));
                ok.push(w);
            }
            Err(e) => notes.push((w.name.clone(), format!("{e}; not watching"))),
        }
    }
    (Some(watcher), ok, notes)
}
