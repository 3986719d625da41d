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
use std::sync::Arc;

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

/// Keep the selection of `part` in a config loaded again (`mew space
/// reload`): names and profiles the new config no longer has are left out,
/// so the rest of the selection still holds.
pub fn apply_again(cfg: &SpaceConfig, resolved: &mut [ResolvedProcess], part: &Part) {
    if part.names.is_empty() && part.profiles.is_empty() {
        let _ = apply(cfg, resolved, part);
        return;
    }
    let known = config::profiles(cfg);
    let part = Part {
        names: part
            .names
            .iter()
            .filter(|n| {
                cfg.processes
                    .iter()
                    .any(|p| p.name == **n || p.replica.as_ref().is_some_and(|r| r.of == **n))
            })
            .cloned()
            .collect(),
        profiles: part
            .profiles
            .iter()
            .filter(|p| known.iter().any(|k| k == *p))
            .cloned()
            .collect(),
    };
    if apply(cfg, resolved, &part).is_err() {
        tracing::warn!("the selection of `up` no longer applies to the reloaded config");
    }
}

/// One process under `watch:`.
struct Watched {
    index: usize,
    name: String,
    spec: WatchSpec,
    cwd: PathBuf,
}

impl Watched {
    fn of(index: usize, rp: &ResolvedProcess) -> Option<Watched> {
        Some(Watched {
            index,
            name: rp.name.clone(),
            spec: rp.config.watch.clone()?,
            cwd: rp.cwd.clone(),
        })
    }
}

/// What the watch task is told after it started (reload, scale).
enum WatchCmd {
    /// Watch this process as its (new) spec says, or stop watching it.
    Set(usize, Option<Watched>),
}

/// The `watch:` task of a space: started at `up`, told by reload and scale
/// what changed. The task ends when [`Watching::stop`] is called.
pub(super) struct Watching {
    task: tokio::task::JoinHandle<()>,
    tx: tokio::sync::mpsc::UnboundedSender<WatchCmd>,
    /// Some process had `watch:` at `up` (`--no-tui` then stays up when
    /// everything ended: a change starts it again).
    pub(super) any_at_start: bool,
}

/// How reload and scale tell the watch task about a process.
#[derive(Clone)]
pub(super) struct WatchControl(tokio::sync::mpsc::UnboundedSender<WatchCmd>);

impl WatchControl {
    /// Process `index` now has the spec of `rp`: watch it as `rp.config.watch`
    /// says (nothing, if it has none).
    pub(super) fn set(&self, index: usize, rp: &ResolvedProcess) {
        let _ = self.0.send(WatchCmd::Set(index, Watched::of(index, rp)));
    }

    /// Process `index` is gone: stop watching it.
    pub(super) fn remove(&self, index: usize) {
        let _ = self.0.send(WatchCmd::Set(index, None));
    }
}

impl Watching {
    pub(super) fn control(&self) -> WatchControl {
        WatchControl(self.tx.clone())
    }

    pub(super) fn stop(self) {
        self.task.abort();
    }
}

/// Start watching every process with `watch:`. The watcher itself (an
/// inotify instance and two threads) is made only when some process has
/// `watch:`, now or after a reload. The trees are walked off the runtime
/// thread; each process says what it watches (or why it cannot) in a
/// lifecycle line.
pub(super) fn watch(handle: &Handle, resolved: &[ResolvedProcess]) -> Watching {
    let initial: Vec<Watched> = resolved
        .iter()
        .enumerate()
        .filter_map(|(index, rp)| Watched::of(index, rp))
        .collect();
    let any_at_start = !initial.is_empty();
    let (tx, mut cmds) = tokio::sync::mpsc::unbounded_channel();
    let handle = handle.clone();
    let task = tokio::spawn(async move {
        let (ntx, mut notices) = tokio::sync::mpsc::unbounded_channel();
        let mut watcher: Option<Arc<Watcher>> = None;
        let mut watched: Vec<Watched> = Vec::new();
        let mut pending: Vec<Watched> = initial;
        loop {
            if !pending.is_empty() {
                let batch = std::mem::take(&mut pending);
                let (w, ntx) = (watcher.clone(), ntx.clone());
                let Ok((w, ok, notes)) =
                    tokio::task::spawn_blocking(move || start(w, ntx, batch)).await
                else {
                    tracing::warn!("the file watcher did not start");
                    return;
                };
                watcher = w;
                for w in ok {
                    watched.retain(|x| x.index != w.index);
                    watched.push(w);
                }
                for (name, note) in notes {
                    let _ = handle.warn(name, note).await;
                }
                continue;
            }
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    None => return,
                    Some(WatchCmd::Set(index, w)) => {
                        watched.retain(|x| x.index != index);
                        pending.retain(|x| x.index != index);
                        match w {
                            Some(w) => pending.push(w),
                            None => {
                                if let Some(watcher) = &watcher {
                                    watcher.remove(index);
                                }
                            }
                        }
                    }
                },
                Some(notice) = notices.recv() => on_notice(&handle, &watched, notice).await,
            }
        }
    });
    Watching {
        task,
        tx,
        any_at_start,
    }
}

/// A change restarts (or signals) its process; a watcher error is a line.
async fn on_notice(handle: &Handle, watched: &[Watched], notice: Notice) {
    match notice {
        Notice::Changed(ev) => {
            let Some(w) = watched.iter().find(|w| w.index == ev.key) else {
                return;
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

/// The watcher (made if there is none yet) with the watches of `batch` set
/// up, the processes it now watches, and a line for each process (what it
/// watches, or why not).
#[allow(clippy::type_complexity)]
fn start(
    watcher: Option<Arc<Watcher>>,
    tx: tokio::sync::mpsc::UnboundedSender<Notice>,
    batch: Vec<Watched>,
) -> (Option<Arc<Watcher>>, Vec<Watched>, Vec<(String, String)>) {
    let watcher = match watcher {
        Some(w) => w,
        None => match Watcher::with_channel(tx) {
            Ok(w) => Arc::new(w),
            Err(e) => {
                let notes = batch
                    .iter()
                    .map(|w| (w.name.clone(), e.to_string()))
                    .collect();
                return (None, Vec::new(), notes);
            }
        },
    };
    let mut notes = Vec::new();
    let mut ok = Vec::new();
    for w in batch {
        match watcher.update(w.index, &w.spec, &w.cwd) {
            Ok(()) => {
                notes.push((
                    w.name.clone(),
                    format!("watching {}", w.spec.paths.join(", ")),
                ));
                ok.push(w);
            }
            Err(e) => {
                watcher.remove(w.index);
                notes.push((w.name.clone(), format!("{e}; not watching")));
            }
        }
    }
    (Some(watcher), ok, notes)
}
