//! The lifecycle of every process as a pure state machine:
//! `(state, input) → (state, effects)`.
//!
//! No tokio, no IO, no clock: the time comes in with every input ([`Now`]),
//! and everything the machine wants done in the world goes out as an
//! [`Effect`] (spawn, signal a group, arm a timer, sweep escapees, write a
//! lifecycle line). The runtime ([`super::actor`]) executes the effects and
//! turns what happens back into inputs. A spawn is answered at once, before
//! any other input, by [`Input::Spawned`] or [`Input::SpawnFailed`]; every
//! other answer may come later, and one for an older run (its `generation`)
//! is ignored.
//!
//! The rules (restart policy and backoff are in [`super::policy`]):
//! - a process is started when its dependencies hold (`started`, `ready`,
//!   `completed_successfully`); one that can never hold fails it;
//! - a stop by the user or by mew is never a crash; a user start or restart
//!   resets the backoff and the `max_restarts` budget;
//! - a stop sends the stop signal, then SIGKILL after `stop_timeout`;
//! - what escaped a run's group is swept before the process runs again;
//! - a space shutdown stops dependents before their dependencies, then sweeps
//!   the whole run once.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::policy::{self, Decision, Ending, Policy, RestartState};
use crate::config::{DependCondition, HealthAction, ProbeKind, ResolvedProcess};
use crate::status::{LifecycleEvent, Millis, ProcState, Transition, signal_name};
use crate::sys::Exit;

/// Transitions kept per process for status.
pub(crate) const HISTORY: usize = 50;
/// How long a spawn that failed for want of a resource (EMFILE, EAGAIN…)
/// waits before it is tried again (not counted as a crash).
pub(crate) const TRANSIENT_RETRY: Duration = Duration::from_secs(1);

/// The time an input happened: monotonic for durations, wall clock for status.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Now {
    pub at: Instant,
    pub millis: Millis,
}

/// Why mew is stopping a process.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Intent {
    Stop,
    Kill,
    /// A restart, with why when it is not the user's (a file changed, the
    /// config changed).
    Restart(Option<String>),
    Memory(String),
    /// The health check failed its threshold (`action: restart`).
    Health(String),
    Shutdown,
}

/// What a timer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Timer {
    /// The backoff delay is over: start again.
    RestartDue,
    /// `stop_timeout` is over: SIGKILL.
    Escalate,
}

/// Everything that can happen to the machine.
#[derive(Clone, Debug)]
pub(crate) enum Input {
    /// Start processes by name (empty: every auto-start process).
    Start(Vec<String>),
    /// Stop processes by name (empty: all).
    Stop(Vec<String>),
    /// Restart processes by name (empty: all).
    Restart(Vec<String>),
    /// SIGKILL processes by name (empty: all).
    Kill(Vec<String>),
    /// Restart processes by name for a reason shown in their lifecycle line
    /// ("src/main.rs changed"); one already pending is not queued again.
    RestartFor {
        names: Vec<String>,
        reason: String,
    },
    /// Start processes by name and, first, those of their dependencies
    /// (transitively) that are stopped, failed or never started.
    StartWithDeps(Vec<String>),
    /// Send `signal` to the group of each named process that runs (not one
    /// being stopped), for a reason its lifecycle line shows (`watch:` with
    /// `action: { signal: SIGHUP }`).
    SignalFor {
        names: Vec<String>,
        signal: i32,
        reason: String,
    },
    /// A lifecycle line for a process without a state change (a `watch:`
    /// that could not be set up or kept up).
    Warn {
        name: String,
        message: String,
    },
    /// A new process joins the space (a reload added it, `scale` grew it).
    Add(Box<ResolvedProcess>),
    /// A process leaves the space: it is stopped, then dropped.
    Remove(String),
    /// A process gets a new spec that changes nothing of what runs (`watch`,
    /// `profiles`, `scrollback`, `depends_on`): taken at once, the running
    /// process is left alone (a changed `depends_on` counts from its next start).
    Update(Box<ResolvedProcess>),
    /// A process gets a new spec (same name): a running one is stopped and
    /// started again with it.
    Replace(Box<ResolvedProcess>),
    /// Stop the whole space; `force` kills at once.
    Shutdown {
        force: bool,
    },
    /// The answer to [`Effect::Spawn`]: it runs as `pid` (its group).
    Spawned {
        index: usize,
        generation: u64,
        pid: u32,
    },
    /// The answer to [`Effect::Spawn`]: it could not be started.
    SpawnFailed {
        index: usize,
        generation: u64,
        message: String,
        exit_code: i32,
        /// Out of descriptors or processes: mew's trouble, retried.
        transient: bool,
    },
    Exited {
        index: usize,
        generation: u64,
        exit: Exit,
    },
    Timer {
        index: usize,
        generation: u64,
        timer: Timer,
    },
    ShutdownDeadline,
    /// A readiness probe result (a log match is `Ok`).
    Probe {
        index: usize,
        generation: u64,
        result: Result<(), String>,
    },
    Health {
        index: usize,
        generation: u64,
        result: Result<(), String>,
    },
    /// The resident memory of a running process's tree.
    Memory {
        index: usize,
        rss: u64,
    },
    /// The escapees of process `index`'s last run are gone.
    EscapeesSwept {
        index: usize,
    },
    /// The final sweep of a shutdown is done.
    SweepDone,
}

/// What the machine asks the runtime to do, in order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Effect {
    /// Spawn run `generation` of process `index`; answer with
    /// [`Input::Spawned`] or [`Input::SpawnFailed`] before anything else.
    Spawn { index: usize, generation: u64 },
    /// Start reading the output of the run just spawned and watching its exit.
    Attach { index: usize, generation: u64 },
    /// Poll the readiness probe until it succeeds ([`Input::Probe`]).
    StartProbe { index: usize, generation: u64 },
    /// Run the health check every period ([`Input::Health`]).
    StartHealth { index: usize, generation: u64 },
    /// Stop the readiness probe and the health check of process `index`.
    CancelChecks { index: usize },
    /// Send `signal` to the process group `pid`.
    Signal { pid: u32, signal: i32 },
    /// Answer with [`Input::Timer`] after `after`.
    Arm {
        index: usize,
        generation: u64,
        timer: Timer,
        after: Duration,
    },
    /// Answer with [`Input::ShutdownDeadline`] after `after`.
    ArmShutdown { after: Duration },
    /// Kill what escaped the group of process `index`'s last run, off the
    /// runtime thread; answer with [`Input::EscapeesSwept`].
    SweepEscapees { index: usize },
    /// Kill everything of this run that is left; answer with [`Input::SweepDone`].
    SweepRun,
    /// Write a lifecycle line to process `index`'s log and tell subscribers.
    Emit { index: usize, event: LifecycleEvent },
    /// The shutdown is over: wake whoever waits for it.
    Down,
    /// Process `index` was added at the end of the table.
    Added { index: usize },
    /// Process `index` has a new spec (what the runtime derived from it is stale).
    Replaced { index: usize },
    /// Process `index` has left the space (a tombstone stays at its index).
    Removed { index: usize },
}

/// The run of a process that is alive.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Run {
    /// Its pid, which is also its process group.
    pub pid: u32,
    /// When it was spawned (for its uptime).
    pub since: Instant,
}

/// The lifecycle state of one process.
#[derive(Clone, Debug)]
pub(crate) struct Proc {
    pub rp: ResolvedProcess,
    pub state: ProcState,
    /// Counts runs (and cancellations): answers for an older one are ignored.
    pub generation: u64,
    /// The current run, while one is alive.
    pub run: Option<Run>,
    /// When the last run was spawned (status keeps showing it after it ended).
    pub started_at: Option<Millis>,
    pub exit_code: Option<i32>,
    /// The restart policy's bookkeeping (reset by a user start).
    pub policy: RestartState,
    /// Every restart since the space started (status shows it).
    pub restarts: u32,
    pub history: VecDeque<Transition>,
    /// The last probe or health check verdict, for status.
    pub probe_msg: Option<String>,
    /// Why mew is stopping the current run (`None`: it is not).
    pub intent: Option<Intent>,
    /// Consecutive failures of the health check.
    pub health_failures: u32,
    /// `None`: no health check, or no verdict yet for this run.
    pub healthy: Option<bool>,
    /// Escapees of its last run are being looked for: it is not started
    /// again until that is done, so a new instance can never be mistaken for one.
    pub escapees_pending: bool,
    /// Why it was last restarted for a reason (a file changed), for status;
    /// a user restart clears it.
    pub last_restart_reason: Option<String>,
    /// The spec it takes when the current run has ended.
    pub next_spec: Option<Box<ResolvedProcess>>,
    /// It leaves the space when the current run has ended.
    pub leaving: bool,
    /// It has left the space: no name resolves to it, nothing depends on it.
    pub removed: bool,
}

impl Proc {
    fn new(rp: ResolvedProcess) -> Proc {
        Proc {
            rp,
            state: ProcState::Idle,
            generation: 0,
            run: None,
            started_at: None,
            exit_code: None,
            policy: RestartState::default(),
            restarts: 0,
            history: VecDeque::new(),
            probe_msg: None,
            intent: None,
            health_failures: 0,
            healthy: None,
            escapees_pending: false,
            last_restart_reason: None,
            next_spec: None,
            leaving: false,
            removed: false,
        }
    }

    pub fn name(&self) -> &str {
        &self.rp.name
    }

    /// Ready: its readiness probe passed (or it has none) and it is not being stopped.
    pub fn ready(&self) -> bool {
        matches!(self.state, ProcState::Ready)
    }

    pub fn pid(&self) -> Option<u32> {
        self.run.map(|r| r.pid)
    }
}

/// Where the scheduling pass stopped to wait for a spawn's answer.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    next: usize,
    progressed: bool,
}

/// The lifecycle of a whole space.
pub(crate) struct Machine {
    procs: Vec<Proc>,
    deps: Vec<Vec<(usize, DependCondition)>>,
    dependents: Vec<Vec<usize>>,
    shutdown_timeout: Duration,
    shutting_down: bool,
    forced: bool,
    sweeping: bool,
    down: bool,
    /// A spawn waits for its answer; the scheduling pass resumes after it.
    spawning: Option<usize>,
    cursor: Option<Cursor>,
    now: Now,
    effects: Vec<Effect>,
    dirty: bool,
}

impl Machine {
    pub fn new(processes: Vec<ResolvedProcess>, shutdown_timeout: Duration, now: Now) -> Machine {
        let mut m = Machine {
            procs: Vec::new(),
            deps: Vec::new(),
            dependents: Vec::new(),
            shutdown_timeout,
            shutting_down: false,
            forced: false,
            sweeping: false,
            down: false,
            spawning: None,
            cursor: None,
            now,
            effects: Vec::new(),
            dirty: true,
        };
        m.procs = processes.into_iter().map(Proc::new).collect();
        m.link();
        m
    }

    /// The dependency graph, from the processes' `depends_on`.
    fn link(&mut self) {
        let n = self.procs.len();
        self.deps = vec![Vec::new(); n];
        self.dependents = vec![Vec::new(); n];
        for i in 0..n {
            if self.procs[i].removed {
                continue;
            }
            for d in &self.procs[i].rp.config.depends_on {
                if let Some(j) = self
                    .procs
                    .iter()
                    .position(|p| !p.removed && p.rp.name == d.name)
                {
                    self.deps[i].push((j, d.condition));
                    self.dependents[j].push(i);
                }
            }
        }
    }

    pub fn procs(&self) -> &[Proc] {
        &self.procs
    }

    pub fn is_down(&self) -> bool {
        self.down
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// Whether status changed since the last call.
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// The effects asked for since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Start the auto-start processes (in dependency order).
    pub fn boot(&mut self, now: Now) {
        self.now = now;
        for i in 0..self.procs.len() {
            let cfg = &self.procs[i].rp.config;
            if cfg.auto_start && !cfg.disabled {
                self.want(i, "auto start");
            }
        }
        self.schedule();
    }

    /// Apply one input. User intents answer `Err` for unknown names or when
    /// the space is shutting down; nothing changed then.
    pub fn handle(&mut self, now: Now, input: Input) -> Result<(), String> {
        self.now = now;
        let r = self.apply(input);
        self.maybe_finish_shutdown();
        r
    }

    fn apply(&mut self, input: Input) -> Result<(), String> {
        match input {
            Input::Start(names) => {
                let ids = self.resolve(&names)?;
                let ids: Vec<usize> = if names.is_empty() {
                    ids.into_iter()
                        .filter(|&i| self.procs[i].rp.config.auto_start)
                        .collect()
                } else {
                    ids
                };
                return self.user_start(&ids);
            }
            Input::Stop(names) => {
                for i in self.resolve(&names)? {
                    self.begin_stop(i, Intent::Stop);
                }
            }
            Input::Kill(names) => {
                for i in self.resolve(&names)? {
                    self.begin_stop(i, Intent::Kill);
                }
            }
            Input::Restart(names) => {
                let ids = self.resolve(&names)?;
                return self.restart(&ids, None);
            }
            Input::RestartFor { names, reason } => {
                let ids = self.resolve(&names)?;
                return self.restart(&ids, Some(reason));
            }
            Input::StartWithDeps(names) => {
                let ids = self.resolve(&names)?;
                return self.start_with_deps(&ids);
            }
            Input::SignalFor {
                names,
                signal,
                reason,
            } => {
                for i in self.resolve(&names)? {
                    self.signal_for(i, signal, &reason);
                }
            }
            Input::Warn { name, message } => {
                for i in self.resolve(std::slice::from_ref(&name))? {
                    self.note(i, message.clone());
                }
            }
            Input::Add(rp) => return self.add(*rp),
            Input::Remove(name) => {
                let ids = self.resolve(std::slice::from_ref(&name))?;
                for i in ids {
                    self.remove(i);
                }
            }
            Input::Replace(rp) => {
                let ids = self.resolve(std::slice::from_ref(&rp.name))?;
                for i in ids {
                    self.replace(i, rp.clone());
                }
            }
            Input::Update(rp) => {
                let ids = self.resolve(std::slice::from_ref(&rp.name))?;
                for i in ids {
                    match &mut self.procs[i].next_spec {
                        // A restart for a new spec is under way: it takes this one.
                        Some(next) => *next = rp.clone(),
                        None => self.procs[i].rp = (*rp).clone(),
                    }
                    self.link();
                    self.dirty = true;
                }
                self.schedule();
            }
            Input::Shutdown { force } => self.shutdown(force),
            Input::Spawned {
                index,
                generation,
                pid,
            } => self.on_spawned(index, generation, pid),
            Input::SpawnFailed {
                index,
                generation,
                message,
                exit_code,
                transient,
            } => self.on_spawn_failed(index, generation, message, exit_code, transient),
            Input::Exited {
                index,
                generation,
                exit,
            } => self.on_exited(index, generation, exit),
            Input::Timer {
                index,
                generation,
                timer: Timer::Escalate,
            } => self.escalate(index, generation),
            Input::Timer {
                index,
                generation,
                timer: Timer::RestartDue,
            } => {
                let Some(p) = self.procs.get(index) else {
                    return Ok(());
                };
                if p.generation == generation
                    && matches!(p.state, ProcState::Backoff { .. })
                    && !self.shutting_down
                {
                    self.set_state(
                        index,
                        ProcState::Pending {
                            waiting_for: vec![],
                        },
                        "restarting",
                    );
                    self.schedule();
                }
            }
            Input::ShutdownDeadline => {
                if self.shutting_down && !self.down {
                    self.shutdown(true);
                }
            }
            Input::Probe {
                index,
                generation,
                result,
            } => self.on_probe(index, generation, result),
            Input::Health {
                index,
                generation,
                result,
            } => self.on_health(index, generation, result),
            Input::Memory { index, rss } => self.on_memory(index, rss),
            Input::EscapeesSwept { index } => {
                if let Some(p) = self.procs.get_mut(index) {
                    p.escapees_pending = false;
                }
                self.schedule();
            }
            Input::SweepDone => {
                self.sweeping = false;
                self.down = true;
                self.effects.push(Effect::Down);
            }
        }
        Ok(())
    }

    /// Names → indices; empty means all. Unknown names list the valid ones.
    fn resolve(&self, names: &[String]) -> Result<Vec<usize>, String> {
        if names.is_empty() {
            return Ok((0..self.procs.len())
                .filter(|&i| !self.procs[i].removed)
                .collect());
        }
        let known: Vec<&str> = self
            .procs
            .iter()
            .filter(|p| !p.removed)
            .map(|p| p.rp.name.as_str())
            .collect();
        let asked: Vec<&str> = names.iter().map(String::as_str).collect();
        if let Some(msg) = crate::status::unknown_names(&asked, &known) {
            return Err(msg);
        }
        Ok(asked
            .iter()
            .filter_map(|n| {
                self.procs
                    .iter()
                    .position(|p| !p.removed && p.rp.name == *n)
            })
            .collect())
    }

    // ---- events ------------------------------------------------------------

    fn set_state(&mut self, i: usize, state: ProcState, message: impl Into<String>) {
        let message = message.into();
        let at = self.now.millis;
        let p = &mut self.procs[i];
        p.state = state.clone();
        if p.history.len() >= HISTORY {
            p.history.pop_front();
        }
        p.history.push_back(Transition {
            at,
            state: state.clone(),
            reason: message.clone(),
        });
        self.dirty = true;
        // Waiting on nothing is not news: the "started" event follows at once.
        if matches!(&state, ProcState::Pending { waiting_for } if waiting_for.is_empty()) {
            return;
        }
        self.emit(i, state, message);
    }

    /// An event without a state change (e.g. a probe note).
    fn note(&mut self, i: usize, message: impl Into<String>) {
        let state = self.procs[i].state.clone();
        self.emit(i, state, message.into());
    }

    fn emit(&mut self, i: usize, state: ProcState, message: String) {
        self.dirty = true;
        self.effects.push(Effect::Emit {
            index: i,
            event: LifecycleEvent {
                at: self.now.millis,
                process: self.procs[i].rp.name.clone(),
                state,
                message,
            },
        });
    }

    /// Wait `delay` in `Backoff`, then start again (ignored if the run
    /// changed meanwhile).
    fn backoff(&mut self, i: usize, delay: Duration, message: String) {
        let until = self.now.millis + delay.as_millis() as u64;
        self.set_state(i, ProcState::Backoff { until }, message);
        self.effects.push(Effect::Arm {
            index: i,
            generation: self.procs[i].generation,
            timer: Timer::RestartDue,
            after: delay,
        });
    }

    // ---- starting ----------------------------------------------------------

    /// Mark a process as wanted: it starts when its dependencies allow.
    fn want(&mut self, i: usize, why: &str) {
        if self.procs[i].rp.config.disabled || self.procs[i].state.is_alive() {
            return;
        }
        if matches!(self.procs[i].state, ProcState::Pending { .. }) {
            return;
        }
        self.set_state(
            i,
            ProcState::Pending {
                waiting_for: vec![],
            },
            why,
        );
        // Idle dependencies of a wanted process are wanted too.
        for (j, _) in self.deps[i].clone() {
            if matches!(self.procs[j].state, ProcState::Idle) {
                let why = format!("needed by {}", self.procs[i].rp.name);
                self.want(j, &why);
            }
        }
    }

    fn user_start(&mut self, ids: &[usize]) -> Result<(), String> {
        if self.shutting_down {
            return Err("the space is shutting down".into());
        }
        let disabled: Vec<&str> = ids
            .iter()
            .filter(|&&i| self.procs[i].rp.config.disabled)
            .map(|&i| self.procs[i].rp.name.as_str())
            .collect();
        if !disabled.is_empty() {
            return Err(format!("disabled in the config: {}", disabled.join(", ")));
        }
        for &i in ids {
            let p = &mut self.procs[i];
            if p.state.is_alive() || matches!(p.state, ProcState::Pending { .. }) {
                continue;
            }
            p.policy = RestartState::default();
            p.generation += 1; // cancels a pending backoff timer
            self.want(i, "started by user");
        }
        self.schedule();
        Ok(())
    }

    /// A restart asked for by the user (`reason: None`), or for a reason
    /// (a file watcher): then one already pending is not queued again, and
    /// a process the user stopped (or that was never started) stays so.
    fn restart(&mut self, ids: &[usize], reason: Option<String>) -> Result<(), String> {
        if self.shutting_down {
            return Err("the space is shutting down".into());
        }
        for &i in ids {
            if self.procs[i].rp.config.disabled {
                continue;
            }
            if reason.is_some()
                && (self.restart_pending(i)
                    || matches!(self.procs[i].state, ProcState::Idle | ProcState::Stopped)
                    || matches!(self.procs[i].intent, Some(Intent::Stop | Intent::Kill)))
            {
                continue;
            }
            // A user restart says no reason: the last one is stale.
            self.procs[i].last_restart_reason = reason.clone();
            self.procs[i].policy = RestartState::default();
            if self.procs[i].state.is_alive() {
                self.begin_stop(i, Intent::Restart(reason.clone()));
            } else {
                let p = &mut self.procs[i];
                p.generation += 1;
                p.restarts += 1;
                if !matches!(p.state, ProcState::Pending { .. }) {
                    self.set_state(
                        i,
                        ProcState::Pending {
                            waiting_for: vec![],
                        },
                        "restart requested",
                    );
                }
                // It was not running: its line says why it starts again.
                if let Some(r) = &reason {
                    self.note(i, format!("{r}: starting again"));
                }
            }
        }
        self.schedule();
        Ok(())
    }

    /// Signal the group of `i` if it runs and is not being stopped.
    fn signal_for(&mut self, i: usize, signal: i32, reason: &str) {
        let p = &self.procs[i];
        if !p.state.is_alive() || matches!(p.state, ProcState::Stopping { .. }) {
            return;
        }
        let Some(pid) = p.pid() else { return };
        self.effects.push(Effect::Signal { pid, signal });
        let name = signal_name(signal);
        self.note(i, format!("{reason}: sent {name} to process group {pid}"));
    }

    /// Whether a restart of `i` is already under way: stopping to restart,
    /// or waiting to start.
    fn restart_pending(&self, i: usize) -> bool {
        let p = &self.procs[i];
        matches!(p.state, ProcState::Pending { .. })
            || (matches!(p.state, ProcState::Stopping { .. })
                && matches!(
                    p.intent,
                    Some(Intent::Restart(_)) | Some(Intent::Memory(_)) | Some(Intent::Health(_))
                ))
    }

    /// Start `ids` and, first, what they depend on (transitively) that is
    /// not running and not waiting to: stopped, failed, exited or never
    /// started. A task that completed successfully is not run again.
    fn start_with_deps(&mut self, ids: &[usize]) -> Result<(), String> {
        let mut all = Vec::new();
        let mut todo: Vec<usize> = ids.to_vec();
        while let Some(i) = todo.pop() {
            if all.contains(&i) {
                continue;
            }
            all.push(i);
            for &(j, _) in &self.deps[i] {
                let d = &self.procs[j];
                let done = matches!(d.state, ProcState::Exited { code: 0 }) && d.rp.config.one_shot;
                if !done {
                    todo.push(j);
                }
            }
        }
        // Dependencies first, so their "started" lines come first.
        all.reverse();
        self.user_start(&all)
    }

    /// A new process at the end of the table; it starts if `auto_start`.
    fn add(&mut self, rp: ResolvedProcess) -> Result<(), String> {
        if self.shutting_down {
            return Err("the space is shutting down".into());
        }
        if self
            .procs
            .iter()
            .any(|p| !p.removed && p.rp.name == rp.name)
        {
            return Err(format!("a process named {} already exists", rp.name));
        }
        let start = rp.config.auto_start && !rp.config.disabled;
        self.procs.push(Proc::new(rp));
        self.link();
        let index = self.procs.len() - 1;
        self.effects.push(Effect::Added { index });
        self.dirty = true;
        if start {
            self.want(index, "added");
        }
        self.schedule();
        Ok(())
    }

    /// Stop `i`, then drop it from the space.
    fn remove(&mut self, i: usize) {
        self.procs[i].leaving = true;
        if self.procs[i].state.is_alive() {
            self.begin_stop(i, Intent::Stop);
        } else {
            self.drop_proc(i);
        }
    }

    fn drop_proc(&mut self, i: usize) {
        let p = &mut self.procs[i];
        p.leaving = false;
        p.removed = true;
        p.generation += 1; // cancels a pending backoff timer
        self.set_state(i, ProcState::Stopped, "removed from the space");
        self.link();
        self.effects.push(Effect::Removed { index: i });
        self.schedule();
    }

    /// Give `i` a new spec: at once when it is not running (a pending start
    /// uses it), else after a restart.
    fn replace(&mut self, i: usize, rp: Box<ResolvedProcess>) {
        if self.procs[i].state.is_alive() {
            self.procs[i].next_spec = Some(rp);
            self.begin_stop(i, Intent::Restart(Some("the config changed".into())));
        } else {
            self.procs[i].next_spec = Some(rp);
            self.take_next_spec(i);
            self.schedule();
        }
    }

    fn take_next_spec(&mut self, i: usize) {
        if let Some(rp) = self.procs[i].next_spec.take() {
            self.procs[i].rp = *rp;
            self.link();
            self.effects.push(Effect::Replaced { index: i });
            self.dirty = true;
        }
    }

    /// Whether dependency `j` satisfies `cond` now; `Err` when it never will
    /// without a user action.
    fn dep_state(&self, j: usize, cond: DependCondition) -> Result<bool, String> {
        let d = &self.procs[j];
        let restarting = d.intent.is_some();
        let ok = match cond {
            DependCondition::Started => {
                !restarting && (d.state.is_alive() || matches!(d.state, ProcState::Exited { .. }))
            }
            DependCondition::Ready => !restarting && d.ready(),
            DependCondition::CompletedSuccessfully => {
                matches!(d.state, ProcState::Exited { code: 0 })
            }
        };
        if ok {
            return Ok(true);
        }
        let dead = match &d.state {
            ProcState::Failed { reason } => Some(format!("{} failed: {reason}", d.rp.name)),
            ProcState::Exited { code } => Some(format!("{} exited {code}", d.rp.name)),
            ProcState::Killed { signal } => Some(format!(
                "{} was killed by {}",
                d.rp.name,
                signal_name(*signal)
            )),
            ProcState::Stopped => Some(format!("{} was stopped", d.rp.name)),
            ProcState::Idle if d.rp.config.disabled => Some(format!("{} is disabled", d.rp.name)),
            _ => None,
        };
        match dead {
            Some(why) => Err(why),
            None => Ok(false),
        }
    }

    /// Start every pending process whose dependencies hold, in passes until
    /// nothing changes. A spawn suspends the pass until its answer.
    fn schedule(&mut self) {
        if self.shutting_down {
            self.cursor = None;
            return;
        }
        if self.spawning.is_some() {
            // The pass resumes after the answer, and goes round again.
            return;
        }
        let Cursor {
            next: mut i,
            mut progressed,
        } = self.cursor.take().unwrap_or(Cursor {
            next: 0,
            progressed: false,
        });
        loop {
            while i < self.procs.len() {
                let ProcState::Pending { waiting_for } = &self.procs[i].state else {
                    i += 1;
                    continue;
                };
                if self.procs[i].escapees_pending {
                    i += 1;
                    continue;
                }
                let mut waiting = Vec::new();
                let mut blocked = None;
                for &(j, cond) in &self.deps[i] {
                    match self.dep_state(j, cond) {
                        Ok(true) => {}
                        Ok(false) => waiting.push(self.procs[j].rp.name.clone()),
                        Err(why) => {
                            blocked = Some(why);
                            break;
                        }
                    }
                }
                if let Some(why) = blocked {
                    self.set_state(
                        i,
                        ProcState::Failed {
                            reason: format!("dependency {why}"),
                        },
                        format!("not started: dependency {why}"),
                    );
                    progressed = true;
                } else if waiting.is_empty() {
                    self.cursor = Some(Cursor {
                        next: i + 1,
                        progressed: true,
                    });
                    self.spawn(i);
                    return;
                } else if *waiting_for != waiting {
                    let msg = format!("waiting for {}", waiting.join(", "));
                    self.set_state(
                        i,
                        ProcState::Pending {
                            waiting_for: waiting,
                        },
                        msg,
                    );
                }
                i += 1;
            }
            if !progressed {
                break;
            }
            i = 0;
            progressed = false;
        }
    }

    fn spawn(&mut self, i: usize) {
        let p = &mut self.procs[i];
        p.generation += 1;
        p.intent = None;
        p.health_failures = 0;
        p.healthy = None;
        self.spawning = Some(i);
        self.effects.push(Effect::Spawn {
            index: i,
            generation: p.generation,
        });
    }

    /// Whether an answer is the one the machine waits for.
    fn answers_spawn(&mut self, i: usize, generation: u64) -> bool {
        if self.spawning != Some(i) || self.procs[i].generation != generation {
            return false;
        }
        self.spawning = None;
        true
    }

    fn on_spawned(&mut self, i: usize, generation: u64, pid: u32) {
        if !self.answers_spawn(i, generation) {
            return;
        }
        let now = self.now;
        let p = &mut self.procs[i];
        p.run = Some(Run { pid, since: now.at });
        p.started_at = Some(now.millis);
        let probe =
            p.rp.ready
                .as_ref()
                .map(|r| matches!(r.kind, ProbeKind::Log { .. }));
        // The event goes out before the reader starts, so "started" precedes the output.
        if probe.is_none() {
            self.set_state(i, ProcState::Ready, format!("started pid {pid}"));
        } else {
            self.set_state(
                i,
                ProcState::Starting,
                format!("started pid {pid}, waiting until ready"),
            );
        }
        self.effects.push(Effect::Attach {
            index: i,
            generation,
        });
        match probe {
            // Polled until the first success, then done (a restart polls again).
            Some(false) => self.effects.push(Effect::StartProbe {
                index: i,
                generation,
            }),
            // The reader watches the log.
            Some(true) => {}
            // Ready at once: the health check starts now.
            None => self.start_health(i),
        }
        self.schedule();
    }

    fn on_spawn_failed(
        &mut self,
        i: usize,
        generation: u64,
        message: String,
        exit_code: i32,
        transient: bool,
    ) {
        if !self.answers_spawn(i, generation) {
            return;
        }
        if transient && !self.shutting_down {
            // Out of descriptors or processes: mew's trouble, not the
            // program's. Retried without counting toward its crash loop.
            let delay = TRANSIENT_RETRY;
            self.backoff(
                i,
                delay,
                format!(
                    "cannot start now ({message}); retrying in {}",
                    crate::human::duration(delay)
                ),
            );
        } else {
            self.procs[i].exit_code = Some(exit_code);
            self.after_end(
                i,
                Ending::SpawnFailed,
                Duration::ZERO,
                ProcState::Failed {
                    reason: message.clone(),
                },
                format!("failed to start: {message}"),
            );
        }
        self.schedule();
    }

    /// Start the health check of a process that just became ready.
    fn start_health(&mut self, i: usize) {
        if self.procs[i].rp.health.is_none() {
            return;
        }
        self.effects.push(Effect::StartHealth {
            index: i,
            generation: self.procs[i].generation,
        });
    }

    /// A readiness probe's result. The probe stops at its first success;
    /// failures before it are not counted (a process may take as long as it
    /// needs to become ready).
    fn on_probe(&mut self, i: usize, generation: u64, result: Result<(), String>) {
        let Some(p) = self.procs.get_mut(i) else {
            return;
        };
        if p.generation != generation || !p.state.is_alive() || p.intent.is_some() || p.ready() {
            return;
        }
        match result {
            Ok(()) => {
                p.probe_msg = Some("ok".into());
                self.set_state(i, ProcState::Ready, "ready");
                self.start_health(i);
                self.schedule();
            }
            Err(why) => {
                let changed = p.probe_msg.as_deref() != Some(why.as_str());
                p.probe_msg = Some(why);
                self.dirty |= changed;
            }
        }
    }

    /// A health check's result: `failure_threshold` consecutive failures
    /// restart the process (`action: restart`) or mark it unhealthy.
    fn on_health(&mut self, i: usize, generation: u64, result: Result<(), String>) {
        let Some(p) = self.procs.get_mut(i) else {
            return;
        };
        if p.generation != generation
            || !p.state.is_alive()
            || p.intent.is_some()
            || self.shutting_down
        {
            return;
        }
        let Some(check) = p.rp.health.as_ref() else {
            return;
        };
        let (threshold, action) = (check.probe.failure_threshold.max(1), check.action);
        let msg = match result {
            Ok(()) => {
                p.health_failures = 0;
                let was = p.healthy.replace(true);
                if was == Some(false) {
                    p.probe_msg = Some("healthy".into());
                    self.note(i, "healthy again");
                }
                "healthy".to_string()
            }
            Err(why) => {
                p.health_failures = p.health_failures.saturating_add(1);
                let n = p.health_failures;
                if n < threshold {
                    format!("health check failed ({n} of {threshold}): {why}")
                } else {
                    let reason = format!("health check failed {n} times: {why}");
                    let was = p.healthy.replace(false);
                    p.probe_msg = Some(format!("unhealthy: {reason}"));
                    match action {
                        HealthAction::Restart => self.begin_stop(i, Intent::Health(reason)),
                        HealthAction::None if was != Some(false) => {
                            self.note(i, format!("unhealthy: {reason}"));
                        }
                        HealthAction::None => {}
                    }
                    self.dirty = true;
                    return;
                }
            }
        };
        let p = &mut self.procs[i];
        let changed = p.probe_msg.as_deref() != Some(msg.as_str());
        p.probe_msg = Some(msg);
        self.dirty |= changed;
    }

    /// A memory sample: over `max_memory`, the process is restarted.
    fn on_memory(&mut self, i: usize, rss: u64) {
        let Some(p) = self.procs.get(i) else {
            return;
        };
        if let Some(limit) = p.rp.config.max_memory
            && rss > limit
            && p.intent.is_none()
            && p.state.is_alive()
        {
            let reason = format!(
                "memory {} over limit {}",
                crate::human::size_compact(rss),
                crate::human::size_compact(limit)
            );
            self.begin_stop(i, Intent::Memory(reason));
        }
    }

    // ---- stopping ----------------------------------------------------------

    fn begin_stop(&mut self, i: usize, intent: Intent) {
        let forced = self.forced;
        let p = &mut self.procs[i];
        match &p.state {
            s if s.is_alive() && !matches!(s, ProcState::Stopping { .. }) => {
                let Some(pid) = p.pid() else { return };
                let generation = p.generation;
                let kill = intent == Intent::Kill || forced;
                let (sig, sig_name) = if kill {
                    (libc::SIGKILL, "SIGKILL")
                } else {
                    (p.rp.config.stop_signal.number, p.rp.config.stop_signal.name)
                };
                let timeout = p.rp.config.stop_timeout;
                let why = match &intent {
                    Intent::Stop => "stopping".to_string(),
                    Intent::Kill => "killing".to_string(),
                    Intent::Restart(None) => "restarting".to_string(),
                    Intent::Restart(Some(r)) => format!("{r}: restarting"),
                    Intent::Memory(r) | Intent::Health(r) => format!("{r}: restarting"),
                    Intent::Shutdown => "stopping (space shutdown)".to_string(),
                };
                p.intent = Some(intent);
                self.effects.push(Effect::CancelChecks { index: i });
                self.effects.push(Effect::Signal { pid, signal: sig });
                self.set_state(
                    i,
                    ProcState::Stopping { escalated: kill },
                    format!("{why}: sent {sig_name} to process group {pid}"),
                );
                if !kill {
                    self.effects.push(Effect::Arm {
                        index: i,
                        generation,
                        timer: Timer::Escalate,
                        after: timeout,
                    });
                }
            }
            ProcState::Stopping { escalated } => {
                let escalated = *escalated;
                // A stronger intent replaces a weaker one: a stop beats a restart.
                if matches!(
                    p.intent,
                    Some(Intent::Restart(_)) | Some(Intent::Memory(_)) | Some(Intent::Health(_))
                ) && matches!(intent, Intent::Stop | Intent::Shutdown | Intent::Kill)
                {
                    p.intent = Some(intent.clone());
                }
                if (intent == Intent::Kill || forced) && !escalated {
                    let generation = p.generation;
                    self.escalate(i, generation);
                }
            }
            ProcState::Pending { .. } | ProcState::Backoff { .. } => {
                if matches!(intent, Intent::Restart(_)) {
                    return;
                }
                p.generation += 1;
                self.set_state(i, ProcState::Stopped, "stopped before it started");
            }
            _ => {
                if matches!(intent, Intent::Restart(_)) {
                    self.want(i, "restart requested");
                }
            }
        }
    }

    fn escalate(&mut self, i: usize, generation: u64) {
        let Some(p) = self.procs.get(i) else {
            return;
        };
        if p.generation != generation
            || !matches!(p.state, ProcState::Stopping { escalated: false })
        {
            return;
        }
        let Some(pid) = p.pid() else { return };
        let timeout = p.rp.config.stop_timeout;
        self.effects.push(Effect::Signal {
            pid,
            signal: libc::SIGKILL,
        });
        let msg = if self.forced {
            format!("killing process group {pid} (SIGKILL)")
        } else {
            format!(
                "did not stop within {}: sent SIGKILL to process group {pid}",
                crate::human::duration(timeout)
            )
        };
        self.set_state(i, ProcState::Stopping { escalated: true }, msg);
    }

    fn shutdown(&mut self, force: bool) {
        let first = !self.shutting_down;
        self.shutting_down = true;
        self.cursor = None;
        if force && !self.forced {
            self.forced = true;
            if !first {
                tracing::info!("second interrupt: killing every process now");
            }
        }
        if first {
            self.effects.push(Effect::ArmShutdown {
                after: self.shutdown_timeout,
            });
        }
        for i in 0..self.procs.len() {
            if matches!(
                self.procs[i].state,
                ProcState::Pending { .. } | ProcState::Backoff { .. }
            ) {
                self.procs[i].generation += 1;
                self.set_state(i, ProcState::Stopped, "not started: the space is stopping");
            }
        }
        if self.forced {
            for i in 0..self.procs.len() {
                if self.procs[i].state.is_alive() {
                    self.begin_stop(i, Intent::Shutdown);
                }
            }
        }
        self.advance_shutdown();
    }

    /// Stop every running process none of whose dependents still runs.
    fn advance_shutdown(&mut self) {
        if !self.shutting_down {
            return;
        }
        for i in 0..self.procs.len() {
            let p = &self.procs[i];
            if !p.state.is_alive() || matches!(p.state, ProcState::Stopping { .. }) {
                continue;
            }
            let blocked = self.dependents[i]
                .iter()
                .any(|&d| self.procs[d].state.is_alive());
            if !blocked {
                self.begin_stop(i, Intent::Shutdown);
            }
        }
    }

    fn maybe_finish_shutdown(&mut self) {
        if !self.shutting_down || self.down || self.sweeping || self.spawning.is_some() {
            return;
        }
        if self.procs.iter().any(|p| p.state.is_alive()) {
            return;
        }
        self.sweeping = true;
        self.effects.push(Effect::SweepRun);
    }

    // ---- exits -------------------------------------------------------------

    fn on_exited(&mut self, i: usize, generation: u64, exit: Exit) {
        let shutting_down = self.shutting_down;
        let Some(p) = self.procs.get_mut(i) else {
            return;
        };
        if p.generation != generation {
            return;
        }
        p.healthy = None;
        let run = p.run.take();
        self.effects.push(Effect::CancelChecks { index: i });
        if let Some(run) = run {
            // Whatever is left of its group goes with it.
            self.effects.push(Effect::Signal {
                pid: run.pid,
                signal: libc::SIGKILL,
            });
            // Escapees of this run (setsid, double fork) go too, before any
            // respawn, so a new instance can never be mistaken for one;
            // during a shutdown the final sweep does it once for all.
            if !shutting_down {
                self.procs[i].escapees_pending = true;
                self.effects.push(Effect::SweepEscapees { index: i });
            }
        }
        let uptime = run
            .map(|r| self.now.at.saturating_duration_since(r.since))
            .unwrap_or_default();
        // A new spec applies to what follows this run.
        self.take_next_spec(i);
        let p = &mut self.procs[i];
        p.exit_code = Some(exit.code());
        let how = match exit {
            Exit::Code(c) => format!("exit code {c}"),
            Exit::Signal(s) => signal_name(s),
        };
        match p.intent.take() {
            Some(Intent::Health(reason)) if !shutting_down => {
                self.after_unhealthy(i, reason, uptime, how);
            }
            Some(Intent::Restart(_)) | Some(Intent::Memory(_)) if !shutting_down => {
                p.restarts += 1;
                self.set_state(
                    i,
                    ProcState::Pending {
                        waiting_for: vec![],
                    },
                    format!("stopped ({how}), restarting"),
                );
                self.schedule();
            }
            Some(_) => {
                self.set_state(i, ProcState::Stopped, format!("stopped ({how})"));
            }
            None => {
                let (ending, state, msg) = match exit {
                    Exit::Code(c) => (
                        Ending::Code(c),
                        ProcState::Exited { code: c },
                        format!("exited with code {c}"),
                    ),
                    Exit::Signal(s) => (
                        Ending::Signal(s),
                        ProcState::Killed { signal: s },
                        format!("killed by {}", signal_name(s)),
                    ),
                };
                self.after_end(i, ending, uptime, state, msg);
            }
        }
        if self.procs[i].leaving {
            self.drop_proc(i);
        }
        self.advance_shutdown();
        self.schedule();
    }

    fn decide(&mut self, i: usize, ending: Ending, uptime: Duration) -> Decision {
        let p = &mut self.procs[i];
        policy::decide(
            &Policy {
                restart: p.rp.config.restart_policy,
                max_restarts: p.rp.config.max_restarts,
                backoff: &p.rp.config.backoff,
                one_shot: p.rp.config.one_shot,
            },
            ending,
            uptime,
            &mut p.policy,
        )
    }

    /// Apply the restart policy after a run ended on its own (or never started).
    fn after_end(
        &mut self,
        i: usize,
        ending: Ending,
        uptime: Duration,
        state: ProcState,
        msg: String,
    ) {
        if self.shutting_down {
            self.set_state(i, state, msg);
            return;
        }
        match self.decide(i, ending, uptime) {
            Decision::Stay => self.set_state(i, state, msg),
            Decision::GiveUp { reason } => {
                self.set_state(i, state, msg);
                self.set_state(
                    i,
                    ProcState::Failed {
                        reason: reason.clone(),
                    },
                    reason,
                );
            }
            Decision::Restart { delay } => {
                self.set_state(i, state, msg);
                self.procs[i].restarts += 1;
                self.backoff(
                    i,
                    delay,
                    format!("restarting in {}", crate::human::duration(delay)),
                );
            }
        }
    }

    /// After mew stopped a process whose health check failed: restart it,
    /// counted by the restart policy like any restart (backoff,
    /// `max_restarts`, crash-loop guard), whatever `restart_policy` says.
    fn after_unhealthy(&mut self, i: usize, reason: String, uptime: Duration, how: String) {
        match self.decide(i, Ending::Unhealthy, uptime) {
            Decision::Restart { delay } => {
                self.procs[i].restarts += 1;
                self.backoff(
                    i,
                    delay,
                    format!(
                        "stopped ({how}): {reason}; restarting in {}",
                        crate::human::duration(delay)
                    ),
                );
            }
            Decision::Stay => {
                let msg = format!("stopped ({how}): {reason}");
                self.set_state(i, ProcState::Failed { reason }, msg);
            }
            Decision::GiveUp { reason: given_up } => {
                let msg = format!("stopped ({how}): {reason}; {given_up}");
                self.set_state(i, ProcState::Failed { reason: given_up }, msg);
            }
        }
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
