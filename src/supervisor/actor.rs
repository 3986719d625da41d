//! The lifecycle actor: the only owner of process state.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio::task::{AbortHandle, JoinHandle};

use super::policy::{self, Decision, Ending, Policy, RestartState};
use super::pty::{Finish, Pty};
use super::reaper::{self, reaper};
use super::{Cmd, Event, Handle, LineSink, Options, ProcShared, Shared, probe};
use crate::config::{DependCondition, HealthAction, ProbeKind, ResolvedProcess, SpaceConfig};
use crate::logs::LogWriter;
use crate::status::{
    LifecycleEvent, Millis, ParticipantStatus, ProcState, ProcessStatus, SpaceInfo, SpaceStatus,
    Transition, now_millis, signal_name,
};
use crate::sys::{self, Exit, SpawnSpec};
use crate::terminal::LazyScreen;
use crate::terminal::capture::LineCapture;

const HISTORY: usize = 50;
const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// How long a reader may take to deliver what it drained after its process
/// exited. Draining itself is bounded in bytes; delivery waits for a slow
/// `--no-tui` stdout (like a pipe), so this is only a last resort.
const DRAIN_GRACE: Duration = Duration::from_secs(60);
/// How long a spawn that failed for want of a resource (EMFILE, EAGAIN…)
/// waits before it is tried again (not counted as a crash).
const TRANSIENT_RETRY: Duration = Duration::from_secs(1);

/// Why mew is stopping a process.
#[derive(Clone, Debug, PartialEq)]
enum Intent {
    Stop,
    Kill,
    Restart,
    Memory(String),
    /// The health check failed its threshold (`action: restart`).
    Health(String),
    Shutdown,
}

struct Proc {
    rp: ResolvedProcess,
    state: ProcState,
    generation: u64,
    pid: Option<u32>,
    started_at: Option<Millis>,
    started: Option<Instant>,
    ready: bool,
    exit_code: Option<i32>,
    rs: RestartState,
    restarts: u32,
    history: VecDeque<Transition>,
    probe_msg: Option<String>,
    intent: Option<Intent>,
    probe_task: Option<AbortHandle>,
    health_task: Option<AbortHandle>,
    /// Consecutive failures of the health check.
    health_failures: u32,
    /// `None`: no health check, or no verdict yet for this run.
    healthy: Option<bool>,
    cpu_percent: Option<f32>,
    rss: Option<u64>,
    last_ticks: Option<u64>,
    log_re: Option<Arc<Regex>>,
    /// The command line as status shows it, participant tokens masked.
    shown_command: String,
    /// Escapees of its last run are being looked for (off the runtime
    /// thread): it is not started again until that is done, so a new
    /// instance can never be mistaken for one.
    escapees_pending: bool,
}

struct Actor {
    space: SpaceConfig,
    opts: Options,
    tx: mpsc::UnboundedSender<Cmd>,
    shared: Arc<Shared>,
    sink: Option<LineSink>,
    status_tx: watch::Sender<Arc<SpaceStatus>>,
    procs: Vec<Proc>,
    deps: Vec<Vec<(usize, DependCondition)>>,
    dependents: Vec<Vec<usize>>,
    shutting_down: bool,
    forced: bool,
    sweeping: bool,
    down: bool,
    down_waiters: Vec<oneshot::Sender<()>>,
    last_sample: Option<Instant>,
    dirty: bool,
}

/// The environment of a process on top of mew's own: what the config
/// resolved (its env, `MEW_SPACE`, `MEW_PROCESS`, tokens…), the terminal
/// type, and this run's marker.
pub fn spawn_env(rp: &ResolvedProcess, run_id: &str) -> Vec<(String, String)> {
    let mut env = Vec::with_capacity(rp.env.len() + 2);
    env.push(("TERM".into(), "xterm-256color".into()));
    env.extend(rp.env.iter().cloned());
    env.push(("MEW_RUN_ID".into(), run_id.to_string()));
    env
}

static REAPER_STARTED: AtomicBool = AtomicBool::new(false);

pub(crate) fn start(
    space: SpaceConfig,
    processes: Vec<ResolvedProcess>,
    opts: Options,
    sink: Option<LineSink>,
) -> Handle {
    if let Err(e) = sys::become_subreaper() {
        tracing::warn!("cannot become a child subreaper: {e}");
    }
    match sys::raise_nofile_limit() {
        Ok((old, new)) if new > old => {
            tracing::info!("descriptor limit raised from {old} to {new} (processes get {old})");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the descriptor limit: {e}"),
    }
    if !REAPER_STARTED.swap(true, Ordering::SeqCst) {
        tokio::spawn(reaper::run());
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let (events, _) = broadcast::channel(4096);
    let shared_procs: Vec<Arc<ProcShared>> = processes
        .iter()
        .enumerate()
        .map(|(index, rp)| {
            Arc::new(ProcShared {
                name: rp.name.as_str().into(),
                index,
                screen: Mutex::new(LazyScreen::new(opts.rows, opts.cols, rp.config.scrollback)),
                log: Mutex::new(LogWriter::open(
                    &space.logs.dir,
                    &rp.name,
                    space.logs.rotate_size,
                    space.logs.keep,
                )),
                pty: Mutex::new(None),
                size: Mutex::new((opts.rows, opts.cols)),
                seq: std::sync::atomic::AtomicU64::new(0),
            })
        })
        .collect();
    let names: HashMap<&str, usize> = processes
        .iter()
        .enumerate()
        .map(|(i, p)| (p.name.as_str(), i))
        .collect();
    let mut deps = vec![Vec::new(); processes.len()];
    let mut dependents = vec![Vec::new(); processes.len()];
    for (i, p) in processes.iter().enumerate() {
        for d in &p.config.depends_on {
            if let Some(&j) = names.get(d.name.as_str()) {
                deps[i].push((j, d.condition));
                dependents[j].push(i);
            }
        }
    }
    // Token values must never reach status (and so the TUI, `status --json`):
    // an argv built with `${TOKEN}` carries one, so it is masked for display.
    let secrets: Vec<String> = processes
        .iter()
        .flat_map(|p| p.env.iter())
        .filter(|(k, v)| k.starts_with("MEW_TOKEN_") && !v.is_empty())
        .map(|(_, v)| v.clone())
        // Literal `tokens:` values written into args are secrets too.
        .chain(
            processes
                .iter()
                .flat_map(|p| p.config.tokens.iter().filter(|t| !t.is_empty()).cloned()),
        )
        .collect();
    let procs: Vec<Proc> = processes
        .into_iter()
        .map(|rp| {
            let shown_command = mask_secrets(crate::human::shell_words(&rp.argv), &secrets);
            let log_re = match &rp.ready {
                Some(probe) => match &probe.kind {
                    ProbeKind::Log { regex } => Regex::new(regex).ok().map(Arc::new),
                    _ => None,
                },
                None => None,
            };
            Proc {
                rp,
                state: ProcState::Idle,
                generation: 0,
                pid: None,
                started_at: None,
                started: None,
                ready: false,
                exit_code: None,
                rs: RestartState::default(),
                restarts: 0,
                history: VecDeque::new(),
                probe_msg: None,
                intent: None,
                probe_task: None,
                health_task: None,
                health_failures: 0,
                healthy: None,
                cpu_percent: None,
                rss: None,
                last_ticks: None,
                log_re,
                shown_command,
                escapees_pending: false,
            }
        })
        .collect();
    let placeholder = Arc::new(SpaceStatus {
        space: SpaceInfo {
            id: space.id.clone(),
            name: space.name.clone(),
            dir: space.dir.display().to_string(),
        },
        server_pid: opts.server_pid,
        gateway_url: opts.gateway_url.clone(),
        processes: Vec::new(),
        participants: Vec::new(),
        logging_degraded: None,
    });
    let (status_tx, status_rx) = watch::channel(placeholder);
    let shared = Arc::new(Shared {
        procs: shared_procs,
        events,
        output: Notify::new(),
        output_seq: std::sync::atomic::AtomicU64::new(0),
        status: status_rx,
    });
    let mut actor = Actor {
        space,
        opts,
        tx: tx.clone(),
        shared: shared.clone(),
        sink,
        status_tx,
        procs,
        deps,
        dependents,
        shutting_down: false,
        forced: false,
        sweeping: false,
        down: false,
        down_waiters: Vec::new(),
        last_sample: None,
        dirty: true,
    };
    actor.boot();
    actor.publish();
    tokio::spawn(actor.run(rx));
    let sampler_tx = tx.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if sampler_tx.send(Cmd::Sample).is_err() {
                break;
            }
        }
    });
    Handle { tx, shared }
}

impl Actor {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Cmd>) {
        while let Some(cmd) = rx.recv().await {
            self.handle(cmd);
            while let Ok(cmd) = rx.try_recv() {
                self.handle(cmd);
            }
            self.maybe_finish_shutdown();
            if self.dirty {
                self.publish();
            }
        }
    }

    fn boot(&mut self) {
        for i in 0..self.procs.len() {
            let cfg = &self.procs[i].rp.config;
            if cfg.auto_start && !cfg.disabled {
                self.want(i, "auto start");
            }
        }
        self.schedule();
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Start(names, reply) => {
                let r = self.resolve(&names).map(|ids| {
                    let ids = if names.is_empty() {
                        ids.into_iter()
                            .filter(|&i| self.procs[i].rp.config.auto_start)
                            .collect()
                    } else {
                        ids
                    };
                    self.user_start(&ids)
                });
                let _ = reply.send(r.and_then(|r| r));
            }
            Cmd::Stop(names, reply) => {
                let r = self.resolve(&names).map(|ids| {
                    for i in ids {
                        self.begin_stop(i, Intent::Stop);
                    }
                });
                let _ = reply.send(r);
            }
            Cmd::Kill(names, reply) => {
                let r = self.resolve(&names).map(|ids| {
                    for i in ids {
                        self.begin_stop(i, Intent::Kill);
                    }
                });
                let _ = reply.send(r);
            }
            Cmd::Restart(names, reply) => {
                let r = self.resolve(&names).and_then(|ids| self.user_restart(&ids));
                let _ = reply.send(r);
            }
            Cmd::Shutdown { force } => self.shutdown(force),
            Cmd::WaitDown(reply) => {
                if self.down {
                    let _ = reply.send(());
                } else {
                    self.down_waiters.push(reply);
                }
            }
            Cmd::Exited {
                index,
                generation,
                exit,
            } => self.on_exited(index, generation, exit),
            Cmd::Escalate { index, generation } => self.escalate(index, generation),
            Cmd::RestartDue { index, generation } => {
                let p = &self.procs[index];
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
            Cmd::ProbeResult {
                index,
                generation,
                result,
            } => self.on_probe(index, generation, result),
            Cmd::LogMatched { index, generation } => {
                self.on_probe(index, generation, Ok(()));
            }
            Cmd::HealthResult {
                index,
                generation,
                result,
            } => self.on_health(index, generation, result),
            Cmd::Sample => self.sample(),
            Cmd::Usage(usage, at) => self.on_usage(usage, at),
            Cmd::ShutdownDeadline => {
                if self.shutting_down && !self.down {
                    self.shutdown(true);
                }
            }
            Cmd::EscapeesSwept { index } => {
                self.procs[index].escapees_pending = false;
                self.schedule();
            }
            Cmd::SweepDone => {
                self.sweeping = false;
                self.down = true;
                for w in self.down_waiters.drain(..) {
                    let _ = w.send(());
                }
            }
        }
    }

    /// Names → indices; empty means all. Unknown names list the valid ones.
    fn resolve(&self, names: &[String]) -> Result<Vec<usize>, String> {
        if names.is_empty() {
            return Ok((0..self.procs.len()).collect());
        }
        let known: Vec<&str> = self.procs.iter().map(|p| p.rp.name.as_str()).collect();
        let asked: Vec<&str> = names.iter().map(String::as_str).collect();
        if let Some(msg) = crate::status::unknown_names(&asked, &known) {
            return Err(msg);
        }
        Ok(asked
            .iter()
            .filter_map(|n| known.iter().position(|k| k == n))
            .collect())
    }

    // ---- events and status -------------------------------------------------

    /// Wait `delay` in `Backoff`, then start again (`RestartDue`, ignored
    /// if the run changed meanwhile).
    fn backoff(&mut self, i: usize, generation: u64, delay: Duration, message: String) {
        let until = now_millis() + delay.as_millis() as u64;
        self.set_state(i, ProcState::Backoff { until }, message);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(Cmd::RestartDue {
                index: i,
                generation,
            });
        });
    }

    fn set_state(&mut self, i: usize, state: ProcState, message: impl Into<String>) {
        let message = message.into();
        let at = now_millis();
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
        // Waiting on nothing is not news: the "started" event follows at once.
        if matches!(&state, ProcState::Pending { waiting_for } if waiting_for.is_empty()) {
            self.dirty = true;
            return;
        }
        self.emit(i, at, state, message);
    }

    /// An event without a state change (e.g. a probe note).
    fn note(&mut self, i: usize, message: impl Into<String>) {
        let state = self.procs[i].state.clone();
        self.emit(i, now_millis(), state, message.into());
    }

    fn emit(&mut self, i: usize, at: Millis, state: ProcState, message: String) {
        self.dirty = true;
        let shared = &self.shared.procs[i];
        {
            let mut log = shared.lock_log();
            log.write_event(at, &message);
            log.flush();
        }
        let ev = LifecycleEvent {
            at,
            process: self.procs[i].rp.name.clone(),
            state,
            message,
        };
        if let Some(sink) = &self.sink {
            sink.send_event(ev.clone());
        }
        let _ = self.shared.events.send(Event::Lifecycle(ev));
    }

    fn publish(&mut self) {
        self.dirty = false;
        let processes = self
            .procs
            .iter()
            .map(|p| ProcessStatus {
                name: p.rp.name.clone(),
                kind: p.rp.kind,
                state: p.state.clone(),
                pid: p.pid,
                started_at: p.started_at,
                restarts: p.restarts,
                exit_code: p.exit_code,
                ready: p.ready,
                cpu_percent: p.cpu_percent,
                rss_bytes: p.rss,
                command: p.shown_command.clone(),
                cwd: p.rp.cwd.display().to_string(),
                history: p.history.iter().cloned().collect(),
                probe: p.probe_msg.clone(),
                one_shot: p.rp.config.one_shot,
                healthy: p.healthy,
            })
            .collect();
        let degraded = self
            .shared
            .procs
            .iter()
            .find_map(|p| p.lock_log().degraded().map(|d| format!("{}: {d}", p.name)));
        let status = SpaceStatus {
            space: SpaceInfo {
                id: self.space.id.clone(),
                name: self.space.name.clone(),
                dir: self.space.dir.display().to_string(),
            },
            server_pid: self.opts.server_pid,
            gateway_url: self.opts.gateway_url.clone(),
            processes,
            participants: self
                .space
                .participants
                .iter()
                .map(|p| ParticipantStatus {
                    name: p.name.clone(),
                    note: p.note.clone(),
                })
                .collect(),
            logging_degraded: degraded,
        };
        let _ = self.status_tx.send(Arc::new(status));
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
                self.want(j, &format!("needed by {}", self.procs[i].rp.name));
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
            p.rs = RestartState::default();
            p.generation += 1; // cancels a pending backoff timer
            self.want(i, "started by user");
        }
        self.schedule();
        Ok(())
    }

    fn user_restart(&mut self, ids: &[usize]) -> Result<(), String> {
        if self.shutting_down {
            return Err("the space is shutting down".into());
        }
        for &i in ids {
            if self.procs[i].rp.config.disabled {
                continue;
            }
            self.procs[i].rs = RestartState::default();
            if self.procs[i].state.is_alive() {
                self.begin_stop(i, Intent::Restart);
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
            }
        }
        self.schedule();
        Ok(())
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
            DependCondition::Ready => !restarting && d.ready,
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

    /// Start every pending process whose dependencies hold.
    fn schedule(&mut self) {
        if self.shutting_down {
            return;
        }
        loop {
            let mut progressed = false;
            for i in 0..self.procs.len() {
                let ProcState::Pending { waiting_for } = &self.procs[i].state else {
                    continue;
                };
                if self.procs[i].escapees_pending {
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
                    self.spawn(i);
                    progressed = true;
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
            }
            if !progressed {
                break;
            }
        }
    }

    fn spawn(&mut self, i: usize) {
        let env = spawn_env(&self.procs[i].rp, &self.opts.run_id);
        let shared = self.shared.procs[i].clone();
        let (rows, cols) = *shared.size.lock().unwrap_or_else(|e| e.into_inner());
        let p = &mut self.procs[i];
        p.generation += 1;
        let generation = p.generation;
        p.intent = None;
        p.ready = false;
        p.health_failures = 0;
        p.healthy = None;
        p.cpu_percent = None;
        p.rss = None;
        p.last_ticks = None;
        let spawned = sys::spawn_on_pty(&SpawnSpec {
            argv: &p.rp.argv,
            env: &env,
            cwd: &p.rp.cwd,
            rows,
            cols,
        });
        let child = match spawned {
            Ok(c) => c,
            // Out of descriptors or processes: mew's trouble, not the
            // program's. Retried without counting toward its crash loop.
            Err(e) if e.transient && !self.shutting_down => {
                let delay = TRANSIENT_RETRY;
                tracing::warn!(process = %p.rp.name, "cannot start: {}", e.message);
                self.backoff(
                    i,
                    generation,
                    delay,
                    format!(
                        "cannot start now ({}); retrying in {}",
                        e.message,
                        crate::human::duration(delay)
                    ),
                );
                return;
            }
            Err(e) => {
                p.exit_code = Some(e.exit_code);
                p.pid = None;
                let msg = e.message;
                {
                    let mut screen = shared.lock_screen();
                    screen.push(format!("\x1b[0m\r\nmew: {msg}\r\n").as_bytes());
                }
                self.after_end(
                    i,
                    Ending::SpawnFailed,
                    Duration::ZERO,
                    ProcState::Failed {
                        reason: msg.clone(),
                    },
                    format!("failed to start: {msg}"),
                );
                return;
            }
        };
        let pid = child.pid;
        let exit_rx = reaper().watch(pid);
        let pty = match Pty::new(child.master) {
            Ok(pty) => Arc::new(pty),
            Err(e) => {
                let _ = sys::signal_group(pid, libc::SIGKILL);
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    if let Ok(exit) = exit_rx.await {
                        let _ = tx.send(Cmd::Exited {
                            index: i,
                            generation,
                            exit,
                        });
                    }
                });
                self.note(i, format!("cannot watch the terminal: {e}"));
                return;
            }
        };
        p.pid = Some(pid);
        p.started_at = Some(now_millis());
        p.started = Some(Instant::now());
        *shared.pty.lock().unwrap_or_else(|e| e.into_inner()) = Some(pty.clone());
        let probe = p.rp.ready.clone();
        let log_re = p.log_re.clone();
        // The event goes out before the reader starts, so "started" precedes the output.
        if probe.is_none() {
            p.ready = true;
            self.set_state(i, ProcState::Ready, format!("started pid {pid}"));
        } else {
            self.set_state(
                i,
                ProcState::Starting,
                format!("started pid {pid}, waiting until ready"),
            );
        }
        let finish = Finish::new();
        let reader = tokio::spawn(read_output(
            self.shared.clone(),
            i,
            generation,
            pty,
            finish.clone(),
            self.sink.clone(),
            log_re,
            self.tx.clone(),
        ));
        let tx = self.tx.clone();
        tokio::spawn(watch_exit(tx, i, generation, exit_rx, finish, reader));

        match probe {
            // Polled until the first success, then done (a restart polls again).
            Some(probe) if !matches!(probe.kind, ProbeKind::Log { .. }) => {
                let tx = self.tx.clone();
                let cwd = self.procs[i].rp.cwd.clone();
                let task = tokio::spawn(probe::until_ready(probe, env, cwd, move |result| {
                    tx.send(Cmd::ProbeResult {
                        index: i,
                        generation,
                        result,
                    })
                    .is_ok()
                }));
                self.procs[i].probe_task = Some(task.abort_handle());
            }
            Some(_) => {}
            // Ready at once: the health check starts now.
            None => self.start_health(i),
        }
    }

    /// Start the health check of a process that just became ready.
    fn start_health(&mut self, i: usize) {
        let Some(check) = self.procs[i].rp.health.clone() else {
            return;
        };
        let env = spawn_env(&self.procs[i].rp, &self.opts.run_id);
        let p = &mut self.procs[i];
        if let Some(t) = p.health_task.take() {
            t.abort();
        }
        let (generation, cwd, tx) = (p.generation, p.rp.cwd.clone(), self.tx.clone());
        let task = tokio::spawn(probe::every_period(check.probe, env, cwd, move |result| {
            tx.send(Cmd::HealthResult {
                index: i,
                generation,
                result,
            })
            .is_ok()
        }));
        p.health_task = Some(task.abort_handle());
    }

    /// A readiness probe's result. The probe stops at its first success;
    /// failures before it are not counted (a process may take as long as it
    /// needs to become ready).
    fn on_probe(&mut self, i: usize, generation: u64, result: Result<(), String>) {
        let p = &mut self.procs[i];
        if p.generation != generation || !p.state.is_alive() || p.intent.is_some() || p.ready {
            return;
        }
        match result {
            Ok(()) => {
                // The probe task has ended (or the log matched): nothing to abort.
                p.probe_task = None;
                p.probe_msg = Some("ok".into());
                p.ready = true;
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
        let p = &mut self.procs[i];
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

    // ---- stopping ----------------------------------------------------------

    fn begin_stop(&mut self, i: usize, intent: Intent) {
        let p = &mut self.procs[i];
        match &p.state {
            s if s.is_alive() && !matches!(s, ProcState::Stopping { .. }) => {
                let Some(pid) = p.pid else { return };
                let generation = p.generation;
                let kill = intent == Intent::Kill || self.forced;
                let (sig, sig_name) = if kill {
                    (libc::SIGKILL, "SIGKILL")
                } else {
                    (p.rp.config.stop_signal.number, p.rp.config.stop_signal.name)
                };
                let timeout = p.rp.config.stop_timeout;
                let why = match &intent {
                    Intent::Stop => "stopping".to_string(),
                    Intent::Kill => "killing".to_string(),
                    Intent::Restart => "restarting".to_string(),
                    Intent::Memory(r) | Intent::Health(r) => format!("{r}: restarting"),
                    Intent::Shutdown => "stopping (space shutdown)".to_string(),
                };
                p.intent = Some(intent);
                p.ready = false;
                if let Some(t) = p.probe_task.take() {
                    t.abort();
                }
                if let Some(t) = p.health_task.take() {
                    t.abort();
                }
                let _ = sys::signal_group(pid, sig);
                self.set_state(
                    i,
                    ProcState::Stopping { escalated: kill },
                    format!("{why}: sent {sig_name} to process group {pid}"),
                );
                if !kill {
                    let tx = self.tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(timeout).await;
                        let _ = tx.send(Cmd::Escalate {
                            index: i,
                            generation,
                        });
                    });
                }
            }
            ProcState::Stopping { escalated } => {
                let escalated = *escalated;
                // A stronger intent replaces a weaker one: a stop beats a restart.
                if matches!(
                    p.intent,
                    Some(Intent::Restart) | Some(Intent::Memory(_)) | Some(Intent::Health(_))
                ) && matches!(intent, Intent::Stop | Intent::Shutdown | Intent::Kill)
                {
                    p.intent = Some(intent.clone());
                }
                if (intent == Intent::Kill || self.forced) && !escalated {
                    let generation = p.generation;
                    self.escalate(i, generation);
                }
            }
            ProcState::Pending { .. } | ProcState::Backoff { .. } => {
                if intent == Intent::Restart {
                    return;
                }
                p.generation += 1;
                self.set_state(i, ProcState::Stopped, "stopped before it started");
            }
            _ => {
                if intent == Intent::Restart {
                    self.want(i, "restart requested");
                }
            }
        }
    }

    fn escalate(&mut self, i: usize, generation: u64) {
        let p = &self.procs[i];
        if p.generation != generation
            || !matches!(p.state, ProcState::Stopping { escalated: false })
        {
            return;
        }
        let Some(pid) = p.pid else { return };
        let timeout = p.rp.config.stop_timeout;
        let _ = sys::signal_group(pid, libc::SIGKILL);
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
        if force && !self.forced {
            self.forced = true;
            if !first {
                tracing::info!("second interrupt: killing every process now");
            }
        }
        if first {
            let tx = self.tx.clone();
            let deadline = self.space.shutdown_timeout;
            tokio::spawn(async move {
                tokio::time::sleep(deadline).await;
                let _ = tx.send(Cmd::ShutdownDeadline);
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
        if !self.shutting_down || self.down || self.sweeping {
            return;
        }
        if self.procs.iter().any(|p| p.state.is_alive()) {
            return;
        }
        self.sweeping = true;
        let run_id = self.opts.run_id.clone();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            sweep_run(&run_id).await;
            let _ = tx.send(Cmd::SweepDone);
        });
    }

    // ---- exits -------------------------------------------------------------

    fn on_exited(&mut self, i: usize, generation: u64, exit: Exit) {
        let p = &mut self.procs[i];
        if p.generation != generation {
            return;
        }
        if let Some(t) = p.probe_task.take() {
            t.abort();
        }
        if let Some(t) = p.health_task.take() {
            t.abort();
        }
        p.healthy = None;
        let pid = p.pid.take();
        {
            let shared = &self.shared.procs[i];
            *shared.pty.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        if let Some(pgid) = pid {
            // Whatever is left of its group goes with it.
            let _ = sys::signal_group(pgid, libc::SIGKILL);
            // Escapees of this run (setsid, double fork) go too. This runs
            // before any respawn, so a new instance can never be mistaken for
            // one; during a shutdown the final sweep does it once for all.
            if !self.shutting_down {
                p.escapees_pending = true;
                let run_id = self.opts.run_id.clone();
                let name = p.rp.name.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let _ = tokio::task::spawn_blocking(move || kill_adopted(&run_id, &name)).await;
                    let _ = tx.send(Cmd::EscapeesSwept { index: i });
                });
            }
        }
        let uptime = p.started.map(|s| s.elapsed()).unwrap_or_default();
        p.exit_code = Some(exit.code());
        p.ready = false;
        p.cpu_percent = None;
        p.rss = None;
        let how = match exit {
            Exit::Code(c) => format!("exit code {c}"),
            Exit::Signal(s) => signal_name(s),
        };
        match p.intent.take() {
            Some(Intent::Health(reason)) if !self.shutting_down => {
                self.after_unhealthy(i, reason, uptime, how);
            }
            Some(Intent::Restart) | Some(Intent::Memory(_)) if !self.shutting_down => {
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
        self.advance_shutdown();
        self.schedule();
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
        let p = &mut self.procs[i];
        let decision = policy::decide(
            &Policy {
                restart: p.rp.config.restart_policy,
                max_restarts: p.rp.config.max_restarts,
                backoff: &p.rp.config.backoff,
                one_shot: p.rp.config.one_shot,
            },
            ending,
            uptime,
            &mut p.rs,
        );
        match decision {
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
                let p = &mut self.procs[i];
                p.restarts += 1;
                let generation = p.generation;
                self.backoff(
                    i,
                    generation,
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
        let p = &mut self.procs[i];
        let decision = policy::decide(
            &Policy {
                restart: p.rp.config.restart_policy,
                max_restarts: p.rp.config.max_restarts,
                backoff: &p.rp.config.backoff,
                one_shot: p.rp.config.one_shot,
            },
            Ending::Unhealthy,
            uptime,
            &mut p.rs,
        );
        match decision {
            Decision::Restart { delay } => {
                p.restarts += 1;
                let generation = p.generation;
                self.backoff(
                    i,
                    generation,
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

    // ---- resources ---------------------------------------------------------

    fn sample(&mut self) {
        let pgids: Vec<u32> = self.procs.iter().filter_map(|p| p.pid).collect();
        if pgids.is_empty() {
            return;
        }
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let usage = crate::procfs::tree_usage(&pgids);
            let _ = tx.send(Cmd::Usage(usage, Instant::now()));
        });
    }

    fn on_usage(&mut self, usage: HashMap<u32, (u64, u64)>, at: Instant) {
        let elapsed = self
            .last_sample
            .map(|l| at.saturating_duration_since(l).as_secs_f64())
            .unwrap_or(0.0);
        self.last_sample = Some(at);
        let hz = crate::procfs::clock_ticks_per_sec().max(1) as f64;
        let mut over = Vec::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            let Some(pid) = p.pid else { continue };
            let Some(&(rss, ticks)) = usage.get(&pid) else {
                continue;
            };
            p.rss = Some(rss);
            if let Some(last) = p.last_ticks
                && elapsed > 0.0
            {
                p.cpu_percent =
                    Some((ticks.saturating_sub(last) as f64 / hz / elapsed * 100.0) as f32);
            }
            p.last_ticks = Some(ticks);
            if let Some(limit) = p.rp.config.max_memory
                && rss > limit
                && p.intent.is_none()
                && p.state.is_alive()
            {
                over.push((
                    i,
                    format!(
                        "memory {} over limit {}",
                        crate::human::size_compact(rss),
                        crate::human::size_compact(limit)
                    ),
                ));
            }
        }
        self.dirty = true;
        for (i, reason) in over {
            self.begin_stop(i, Intent::Memory(reason));
        }
    }
}

/// Read a process's output until it ends: emulator, log file, subscribers.
#[allow(clippy::too_many_arguments)]
async fn read_output(
    shared: Arc<Shared>,
    index: usize,
    generation: u64,
    pty: Arc<Pty>,
    finish: Arc<Finish>,
    sink: Option<LineSink>,
    log_re: Option<Arc<Regex>>,
    tx: mpsc::UnboundedSender<Cmd>,
) {
    let proc = shared.procs[index].clone();
    let mut out = Delivery {
        shared: shared.clone(),
        proc: proc.clone(),
        index,
        generation,
        sink,
        log_re,
        matched: false,
        tx,
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut capture = LineCapture::new();
    // The complete lines of one read, each ended by '\n'.
    let mut lines = Lines::default();
    let mut finishing = false;
    // A process that exited may leave a writer behind: drain at most this much.
    let mut drain_budget: usize = 4 << 20;
    loop {
        // `hot`: the output was already waiting (a flood), not awaited.
        let (n, hot) = if finishing {
            match pty.try_read(&mut buf) {
                Ok(Some(n)) if drain_budget > 0 => {
                    drain_budget = drain_budget.saturating_sub(n);
                    (n, true)
                }
                _ => (0, false),
            }
        } else {
            tokio::select! {
                biased;
                r = pty.read_waited(&mut buf) => r.map_or((0, false), |(n, waited)| (n, !waited)),
                _ = finish.wait() => { finishing = true; continue; }
            }
        };
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        // The emulator catches up when someone looks (see terminal::lazy).
        let replies = proc.lock_screen().push(chunk);
        // Nobody is left to read answers once the process has exited.
        if !replies.is_empty() && !finishing {
            let _ = pty.write_all(&replies).await;
        }
        capture.feed(chunk, &mut |line| lines.push(line.text));
        out.deliver(&mut lines).await;
        proc.seq.fetch_add(1, Ordering::Release);
        shared.output_seq.fetch_add(1, Ordering::Release);
        shared.output.notify_waiters();
        // A process that never stops printing keeps its PTY always readable,
        // so this loop would run for tokio's whole coop budget (128 reads)
        // before another task gets a worker: under a flood, clients waited
        // for seconds and `status` timed out. Yield after every chunk that
        // was already waiting so the server stays responsive. A chunk that
        // was awaited went through the scheduler anyway (and since a short
        // read clears the readiness, that is most chunks, floods included);
        // yielding there too cost a scheduler round for every line a quiet
        // program wrote.
        if hot {
            tokio::task::yield_now().await;
        }
    }
    capture.flush(&mut |line| lines.push(line.text));
    out.deliver(&mut lines).await;
    shared.output.notify_waiters();
}

/// Complete lines of one PTY read, in one buffer.
#[derive(Default)]
struct Lines {
    text: String,
    count: usize,
}

impl Lines {
    fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        self.count += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.text.split_terminator('\n')
    }
}

/// Where the lines of one process go: its log file, the log probe,
/// subscribers and the `--no-tui` printer.
struct Delivery {
    shared: Arc<Shared>,
    proc: Arc<ProcShared>,
    index: usize,
    generation: u64,
    sink: Option<LineSink>,
    log_re: Option<Arc<Regex>>,
    matched: bool,
    tx: mpsc::UnboundedSender<Cmd>,
}

impl Delivery {
    async fn deliver(&mut self, lines: &mut Lines) {
        let Delivery {
            shared,
            proc,
            index,
            generation,
            sink,
            log_re,
            matched,
            tx,
        } = self;
        let (index, generation) = (*index, *generation);
        if lines.count == 0 {
            return;
        }
        let at = now_millis();
        {
            let mut log = proc.lock_log();
            for l in lines.iter() {
                log.write_line(at, l);
            }
            log.flush();
        }
        if let Some(re) = log_re
            && !*matched
            && lines.iter().any(|l| re.is_match(l))
        {
            *matched = true;
            let _ = tx.send(Cmd::LogMatched { index, generation });
        }
        if shared.events.receiver_count() > 0 {
            for l in lines.iter() {
                let _ = shared.events.send(Event::Line {
                    process: proc.name.clone(),
                    at,
                    text: l.into(),
                });
            }
        }
        let count = std::mem::take(&mut lines.count);
        match sink {
            // The printer owns the text from here; the next read starts a new buffer.
            Some(sink) => {
                let text = std::mem::take(&mut lines.text);
                sink.send_lines(index, at, text, count).await;
            }
            None => lines.text.clear(),
        }
    }
}

async fn watch_exit(
    tx: mpsc::UnboundedSender<Cmd>,
    index: usize,
    generation: u64,
    exit_rx: oneshot::Receiver<Exit>,
    finish: Arc<Finish>,
    mut reader: JoinHandle<()>,
) {
    let exit = exit_rx.await.unwrap_or(Exit::Code(-1));
    finish.finish();
    tokio::select! {
        _ = &mut reader => {}
        _ = tokio::time::sleep(DRAIN_GRACE) => reader.abort(),
    }
    let _ = tx.send(Cmd::Exited {
        index,
        generation,
        exit,
    });
}

/// Kill what is left of one process that escaped its group (setsid, double
/// fork): it carries this run's marker and the process name. Called when the
/// process has ended and before it is started again.
fn kill_adopted(run_id: &str, name: &str) {
    // Another space's server started by this process is its own run: asked
    // to stop (it stops its processes), never SIGKILLed with them orphaned.
    let servers: Vec<u32> = crate::space::list_running()
        .into_iter()
        .map(|e| e.pid)
        .collect();
    for pid in crate::procfs::find_marked("MEW_RUN_ID", run_id) {
        if crate::procfs::env_var(pid, "MEW_PROCESS").as_deref() == Some(name) {
            let sig = if servers.contains(&pid) {
                libc::SIGTERM
            } else {
                libc::SIGKILL
            };
            let _ = sys::signal_pid(pid, sig);
        }
    }
}

/// After a shutdown: kill everything of this run that is left (marked, or
/// in the server's tree), off the runtime thread.
pub(crate) async fn sweep_run(run_id: &str) {
    let id = run_id.to_string();
    let me = std::process::id();
    let _ = tokio::task::spawn_blocking(move || super::sweep::kill_run(&id, &[], Some(me))).await;
}

/// `text` with every secret value replaced by `****` (as `mew space check` shows tokens).
fn mask_secrets(mut text: String, secrets: &[String]) -> String {
    for s in secrets {
        if text.contains(s.as_str()) {
            text = text.replace(s.as_str(), crate::config::TOKEN_MASK);
        }
    }
    text
}
