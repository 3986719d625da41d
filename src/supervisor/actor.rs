//! The runtime of the lifecycle: one actor task owns the [`Machine`],
//! executes its effects (spawn, signals, timers, probes, sweeps, log lines)
//! and turns what happens (exits, timer ends, probe results, samples) back
//! into the machine's inputs. It holds no lifecycle rule of its own.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use regex::Regex;
use tokio::sync::{Notify, broadcast, mpsc, oneshot, watch};
use tokio::task::AbortHandle;

use super::machine::{Effect, Input, Machine, Now};
use super::pty::{Finish, Pty};
use super::reaper::{self, reaper};
use super::{Cmd, Event, Handle, LineSink, Options, ProcShared, ProcTable, Shared, output, probe};
use crate::config::{ProbeKind, ResolvedProcess, SpaceConfig};
use crate::logs::LogWriter;
use crate::status::{ParticipantStatus, ProcessStatus, SpaceInfo, SpaceStatus, now_millis};
use crate::sys::{self, Exit, SpawnSpec};
use crate::terminal::LazyScreen;

const SAMPLE_EVERY: Duration = Duration::from_secs(2);

fn now() -> Now {
    Now {
        at: Instant::now(),
        millis: now_millis(),
    }
}

/// What the runtime keeps per process beside its lifecycle state.
struct Slot {
    /// The command line as status shows it, participant tokens masked.
    shown_command: String,
    /// The log readiness probe's pattern, compiled once.
    log_re: Option<Arc<Regex>>,
    probe_task: Option<AbortHandle>,
    health_task: Option<AbortHandle>,
    cpu_percent: Option<f32>,
    rss: Option<u64>,
    last_ticks: Option<u64>,
    /// A run spawned and not yet attached to its reader and exit watcher.
    spawned: Option<(Arc<Pty>, oneshot::Receiver<Exit>)>,
}

impl Slot {
    fn new(rp: &ResolvedProcess, secrets: &[String]) -> Slot {
        let shown_command = mask_secrets(crate::human::shell_words(&rp.argv), secrets);
        let log_re = match &rp.ready {
            Some(probe) => match &probe.kind {
                ProbeKind::Log { regex } => Regex::new(regex).ok().map(Arc::new),
                _ => None,
            },
            None => None,
        };
        Slot {
            shown_command,
            log_re,
            probe_task: None,
            health_task: None,
            cpu_percent: None,
            rss: None,
            last_ticks: None,
            spawned: None,
        }
    }

    fn cancel_checks(&mut self) {
        if let Some(t) = self.probe_task.take() {
            t.abort();
        }
        if let Some(t) = self.health_task.take() {
            t.abort();
        }
    }
}

struct Actor {
    space: SpaceConfig,
    opts: Options,
    tx: mpsc::UnboundedSender<Cmd>,
    shared: Arc<Shared>,
    sink: Option<LineSink>,
    status_tx: watch::Sender<Arc<SpaceStatus>>,
    machine: Machine,
    slots: Vec<Slot>,
    /// Token values, masked in the command lines status shows.
    secrets: Vec<String>,
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

/// The shared state of process `index` (a new screen, its log file opened).
fn proc_shared(
    index: usize,
    rp: &ResolvedProcess,
    space: &SpaceConfig,
    opts: &Options,
) -> Arc<ProcShared> {
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
        removed: AtomicBool::new(false),
    })
}

/// The token values of `processes`: masked wherever status shows a command.
fn secrets_of(processes: &[ResolvedProcess]) -> Vec<String> {
    processes
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
        .collect()
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
        .map(|(index, rp)| proc_shared(index, rp, &space, &opts))
        .collect();
    // Token values must never reach status (and so the TUI, `status --json`):
    // an argv built with `${TOKEN}` carries one, so it is masked for display.
    let secrets = secrets_of(&processes);
    let slots: Vec<Slot> = processes.iter().map(|rp| Slot::new(rp, &secrets)).collect();
    let machine = Machine::new(processes, space.shutdown_timeout, now());
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
        procs: ProcTable::new(shared_procs),
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
        machine,
        slots,
        secrets,
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
            if self.machine.take_dirty() || self.dirty {
                self.publish();
            }
        }
    }

    fn boot(&mut self) {
        self.machine.boot(now());
        self.run_effects();
    }

    fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Start(names, reply) => {
                let _ = reply.send(self.feed(Input::Start(names)));
            }
            Cmd::Stop(names, reply) => {
                let _ = reply.send(self.feed(Input::Stop(names)));
            }
            Cmd::Kill(names, reply) => {
                let _ = reply.send(self.feed(Input::Kill(names)));
            }
            Cmd::Restart(names, reply) => {
                let _ = reply.send(self.feed(Input::Restart(names)));
            }
            Cmd::Ask(input, reply) => {
                let _ = reply.send(self.feed(input));
            }
            Cmd::WaitDown(reply) => {
                if self.machine.is_down() {
                    let _ = reply.send(());
                } else {
                    self.down_waiters.push(reply);
                }
            }
            Cmd::Sample => self.sample(),
            Cmd::Usage(usage, at) => self.on_usage(usage, at),
            Cmd::Machine(input) => {
                if let Input::Exited {
                    index, generation, ..
                } = &input
                {
                    self.on_exited(*index, *generation);
                }
                let _ = self.feed(input);
            }
        }
    }

    /// Give the machine an input and carry out what it asks for.
    fn feed(&mut self, input: Input) -> Result<(), String> {
        let r = self.machine.handle(now(), input);
        self.run_effects();
        r
    }

    /// Execute the machine's effects in order. A spawn is answered at once:
    /// what the answer asks for runs before the effects queued after it.
    fn run_effects(&mut self) {
        let mut queue: VecDeque<Effect> = self.machine.take_effects().into();
        while let Some(effect) = queue.pop_front() {
            if let Some(answer) = self.execute(effect) {
                let _ = self.machine.handle(now(), answer);
                for e in self.machine.take_effects().into_iter().rev() {
                    queue.push_front(e);
                }
            }
        }
    }

    /// Run one effect; a spawn returns its answer.
    fn execute(&mut self, effect: Effect) -> Option<Input> {
        match effect {
            Effect::Spawn { index, generation } => return Some(self.spawn(index, generation)),
            Effect::Attach { index, generation } => self.attach(index, generation),
            Effect::StartProbe { index, generation } => self.start_probe(index, generation),
            Effect::StartHealth { index, generation } => self.start_health(index, generation),
            Effect::CancelChecks { index } => self.slots[index].cancel_checks(),
            Effect::Signal { pid, signal } => {
                let _ = sys::signal_group(pid, signal);
            }
            Effect::Arm {
                index,
                generation,
                timer,
                after,
            } => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(Cmd::Machine(Input::Timer {
                        index,
                        generation,
                        timer,
                    }));
                });
            }
            Effect::ArmShutdown { after } => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(after).await;
                    let _ = tx.send(Cmd::Machine(Input::ShutdownDeadline));
                });
            }
            Effect::SweepEscapees { index } => {
                let run_id = self.opts.run_id.clone();
                let name = self.machine.procs()[index].name().to_string();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let _ = tokio::task::spawn_blocking(move || kill_adopted(&run_id, &name)).await;
                    let _ = tx.send(Cmd::Machine(Input::EscapeesSwept { index }));
                });
            }
            Effect::SweepRun => {
                let run_id = self.opts.run_id.clone();
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    sweep_run(&run_id).await;
                    let _ = tx.send(Cmd::Machine(Input::SweepDone));
                });
            }
            Effect::Emit { index, event } => {
                if let Some(p) = self.shared.procs.get(index) {
                    let mut log = p.lock_log();
                    log.write_event(event.at, &event.message);
                    log.flush();
                }
                if let Some(sink) = &self.sink {
                    sink.send_event(event.clone());
                }
                let _ = self.shared.events.send(Event::Lifecycle(event));
            }
            Effect::Down => {
                for w in self.down_waiters.drain(..) {
                    let _ = w.send(());
                }
            }
            Effect::Replaced { index } => {
                self.slots[index].cancel_checks();
                let rp = &self.machine.procs()[index].rp;
                self.slots[index] = Slot::new(rp, &self.secrets);
            }
            Effect::Removed { index } => {
                self.slots[index].cancel_checks();
                if let Some(p) = self.shared.procs.get(index) {
                    p.removed.store(true, Ordering::Release);
                }
                self.dirty = true;
            }
            Effect::Added { index } => self.added(index),
        }
        None
    }

    /// The machine added process `index` at the end of its table: the
    /// shared table and the runtime's slots grow with it.
    fn added(&mut self, index: usize) {
        let rp = &self.machine.procs()[index].rp;
        debug_assert_eq!(index, self.shared.procs.len());
        debug_assert_eq!(index, self.slots.len());
        for s in secrets_of(std::slice::from_ref(rp)) {
            if !self.secrets.contains(&s) {
                self.secrets.push(s);
            }
        }
        self.shared
            .procs
            .push(proc_shared(index, rp, &self.space, &self.opts));
        self.slots.push(Slot::new(rp, &self.secrets));
        self.dirty = true;
    }

    fn spawn(&mut self, i: usize, generation: u64) -> Input {
        let rp = &self.machine.procs()[i].rp;
        let env = spawn_env(rp, &self.opts.run_id);
        let Some(shared) = self.shared.procs.get(i) else {
            return Input::SpawnFailed {
                index: i,
                generation,
                message: "no such process in the table".into(),
                exit_code: -1,
                transient: false,
            };
        };
        let (rows, cols) = *shared.size.lock().unwrap_or_else(|e| e.into_inner());
        let slot = &mut self.slots[i];
        slot.cpu_percent = None;
        slot.rss = None;
        slot.last_ticks = None;
        let spawned = sys::spawn_on_pty(&SpawnSpec {
            argv: &rp.argv,
            env: &env,
            cwd: &rp.cwd,
            rows,
            cols,
        });
        let child = match spawned {
            Ok(c) => c,
            Err(e) => {
                let retried = e.transient && !self.machine.is_shutting_down();
                if retried {
                    tracing::warn!(process = %rp.name, "cannot start: {}", e.message);
                } else {
                    let mut screen = shared.lock_screen();
                    screen.push(format!("\x1b[0m\r\nmew: {}\r\n", e.message).as_bytes());
                }
                return Input::SpawnFailed {
                    index: i,
                    generation,
                    message: e.message,
                    exit_code: e.exit_code,
                    transient: e.transient,
                };
            }
        };
        let pid = child.pid;
        let exit_rx = reaper().watch(pid);
        let pty = match Pty::new(child.master) {
            Ok(pty) => Arc::new(pty),
            Err(e) => {
                // Without its terminal the run is useless: it goes, and is
                // tried again like a spawn that lacked a resource.
                let _ = sys::signal_group(pid, libc::SIGKILL);
                tokio::spawn(async move {
                    let _ = exit_rx.await;
                });
                return Input::SpawnFailed {
                    index: i,
                    generation,
                    message: format!("cannot watch the terminal: {e}"),
                    exit_code: -1,
                    transient: true,
                };
            }
        };
        *shared.pty.lock().unwrap_or_else(|e| e.into_inner()) = Some(pty.clone());
        slot.spawned = Some((pty, exit_rx));
        Input::Spawned {
            index: i,
            generation,
            pid,
        }
    }

    /// Read the output of the run just spawned and watch for its exit.
    fn attach(&mut self, i: usize, generation: u64) {
        let Some((pty, exit_rx)) = self.slots[i].spawned.take() else {
            return;
        };
        let finish = Finish::new();
        let reader = tokio::spawn(output::read_output(
            self.shared.clone(),
            i,
            generation,
            pty,
            finish.clone(),
            self.sink.clone(),
            self.slots[i].log_re.clone(),
            self.tx.clone(),
        ));
        let tx = self.tx.clone();
        tokio::spawn(output::watch_exit(
            tx, i, generation, exit_rx, finish, reader,
        ));
    }

    /// Poll the readiness probe until its first success.
    fn start_probe(&mut self, i: usize, generation: u64) {
        let rp = &self.machine.procs()[i].rp;
        let Some(probe) = rp.ready.clone() else {
            return;
        };
        let env = spawn_env(rp, &self.opts.run_id);
        let cwd = rp.cwd.clone();
        let tx = self.tx.clone();
        let task = tokio::spawn(probe::until_ready(probe, env, cwd, move |result| {
            tx.send(Cmd::Machine(Input::Probe {
                index: i,
                generation,
                result,
            }))
            .is_ok()
        }));
        self.slots[i].probe_task = Some(task.abort_handle());
    }

    /// Run the health check of a process that just became ready.
    fn start_health(&mut self, i: usize, generation: u64) {
        let rp = &self.machine.procs()[i].rp;
        let Some(check) = rp.health.clone() else {
            return;
        };
        let env = spawn_env(rp, &self.opts.run_id);
        let cwd = rp.cwd.clone();
        let tx = self.tx.clone();
        let slot = &mut self.slots[i];
        if let Some(t) = slot.health_task.take() {
            t.abort();
        }
        let task = tokio::spawn(probe::every_period(check.probe, env, cwd, move |result| {
            tx.send(Cmd::Machine(Input::Health {
                index: i,
                generation,
                result,
            }))
            .is_ok()
        }));
        slot.health_task = Some(task.abort_handle());
    }

    /// The runtime's part of an exit of the current run: its terminal and
    /// its usage figures go.
    fn on_exited(&mut self, i: usize, generation: u64) {
        let Some(p) = self.machine.procs().get(i) else {
            return;
        };
        if p.generation != generation {
            return;
        }
        if let Some(p) = self.shared.procs.get(i) {
            *p.pty.lock().unwrap_or_else(|e| e.into_inner()) = None;
        }
        let slot = &mut self.slots[i];
        slot.cpu_percent = None;
        slot.rss = None;
        self.dirty = true;
    }

    fn publish(&mut self) {
        self.dirty = false;
        let processes = self
            .machine
            .procs()
            .iter()
            .zip(&self.slots)
            .filter(|(p, _)| !p.removed)
            .map(|(p, slot)| ProcessStatus {
                name: p.rp.name.clone(),
                kind: p.rp.kind,
                state: p.state.clone(),
                pid: p.pid(),
                started_at: p.started_at,
                restarts: p.restarts,
                exit_code: p.exit_code,
                ready: p.ready(),
                cpu_percent: slot.cpu_percent,
                rss_bytes: slot.rss,
                command: slot.shown_command.clone(),
                cwd: p.rp.cwd.display().to_string(),
                history: p.history.iter().cloned().collect(),
                probe: p.probe_msg.clone(),
                one_shot: p.rp.config.one_shot,
                healthy: p.healthy,
                last_restart_reason: p.last_restart_reason.clone(),
            })
            .collect();
        let degraded = self
            .shared
            .procs
            .live()
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

    // ---- resources ---------------------------------------------------------

    fn sample(&mut self) {
        let pgids: Vec<u32> = self
            .machine
            .procs()
            .iter()
            .filter_map(|p| p.pid())
            .collect();
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
        let mut samples = Vec::new();
        for (i, (p, slot)) in self.machine.procs().iter().zip(&mut self.slots).enumerate() {
            let Some(pid) = p.pid() else { continue };
            let Some(&(rss, ticks)) = usage.get(&pid) else {
                continue;
            };
            slot.rss = Some(rss);
            if let Some(last) = slot.last_ticks
                && elapsed > 0.0
            {
                slot.cpu_percent =
                    Some((ticks.saturating_sub(last) as f64 / hz / elapsed * 100.0) as f32);
            }
            slot.last_ticks = Some(ticks);
            samples.push((i, rss));
        }
        self.dirty = true;
        for (index, rss) in samples {
            let _ = self.feed(Input::Memory { index, rss });
        }
    }
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
