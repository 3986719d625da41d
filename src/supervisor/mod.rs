//! The supervisor: spawns every process on its own PTY, reaps them through one
//! reaper, drives the lifecycle state machine (dependencies, probes, restart
//! policy with backoff, memory limits) and stops them with escalation.
//!
//! The rules live in a pure state machine ([`machine`]: inputs in, effects
//! out, no IO, no clock), unit-tested with a fake clock and fake processes.
//! One actor task ([`actor`]) owns it, executes its effects and turns IO into
//! its inputs; everything else talks to the actor through [`Handle`]. Output
//! never passes through the actor: each running process has a reader task
//! ([`output`]) that feeds the terminal emulator, the log file and the
//! subscribers directly.

mod actor;
mod machine;
mod output;
pub mod policy;
pub mod probe;
pub mod pty;
pub mod reaper;
pub mod sweep;

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, Semaphore, broadcast, mpsc, oneshot, watch};

use crate::config::{ResolvedProcess, SpaceConfig};
use crate::logs::LogWriter;
use crate::status::{LifecycleEvent, Millis, SpaceStatus};
use crate::terminal::LazyScreen;

pub use actor::spawn_env;

/// Settings for one run of a space.
#[derive(Clone, Debug)]
pub struct Options {
    /// Unique to this run; every child carries it as `MEW_RUN_ID`.
    pub run_id: String,
    /// Initial PTY size of every process (clients resize them later).
    pub rows: u16,
    pub cols: u16,
    /// The gateway URL, when there is a gateway (for status).
    pub gateway_url: Option<String>,
    /// The server's pid, for status.
    pub server_pid: u32,
}

/// Something worth telling subscribers.
#[derive(Clone, Debug)]
pub enum Event {
    Lifecycle(LifecycleEvent),
    Line {
        process: Arc<str>,
        at: Millis,
        text: Arc<str>,
    },
}

/// What the headless printer receives, in order.
#[derive(Debug)]
pub enum Printable {
    /// `count` output lines of one process read at `at`, each ended by `\n`
    /// in `text` (one allocation and one channel message per PTY read).
    Lines {
        process: usize,
        /// The process's name: a process added after the printer started
        /// (a reload, `scale`) has no label of its own there. `None`: the
        /// printer's name for `process` (the `--envelopes` lines).
        name: Option<Arc<str>>,
        at: Millis,
        text: String,
        count: usize,
    },
    Event(LifecycleEvent),
    /// Sent once by the front end when it is done: the printer returns.
    End,
}

/// An ordered feed of lines and events (for `--no-tui`). Readers wait for
/// permits, so a slow stdout slows the processes down like a pipe would and
/// loses nothing; the actor never waits. A stdout that stops reading
/// altogether (a paused pager, a fifo nobody reads) must not freeze the
/// space: once the printer has made no progress for [`STALL`] (or the space
/// is stopping), lines that find no permit are not shown, only counted (the
/// log files have every one) and the printer says how many when it can.
#[derive(Clone)]
pub struct LineSink {
    tx: mpsc::UnboundedSender<Printable>,
    permits: Arc<Semaphore>,
    state: Arc<SinkState>,
}

/// The receiving end of a [`LineSink`].
pub struct LineFeed {
    rx: mpsc::UnboundedReceiver<Printable>,
    permits: Arc<Semaphore>,
    state: Arc<SinkState>,
}

#[derive(Default)]
struct SinkState {
    /// When the printer last finished a write (ms since the epoch).
    progress_ms: std::sync::atomic::AtomicU64,
    /// Lines not shown because stdout did not read.
    dropped: std::sync::atomic::AtomicU64,
    /// The space is done: nothing waits for stdout any more.
    closing: std::sync::atomic::AtomicBool,
}

/// Lines in flight between the readers and the printer.
const SINK_PERMITS: usize = 16 * 1024;

/// A printer that has not finished a write for this long is stalled.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(5);

pub fn line_sink() -> (LineSink, LineFeed) {
    let (tx, rx) = mpsc::unbounded_channel();
    let permits = Arc::new(Semaphore::new(SINK_PERMITS));
    let state = Arc::new(SinkState::default());
    state.progress_ms.store(
        crate::status::now_millis(),
        std::sync::atomic::Ordering::Relaxed,
    );
    (
        LineSink {
            tx,
            permits: permits.clone(),
            state: state.clone(),
        },
        LineFeed { rx, permits, state },
    )
}

impl LineFeed {
    /// The printer finished a write.
    pub fn progress(&self) {
        self.state.progress_ms.store(
            crate::status::now_millis(),
            std::sync::atomic::Ordering::Relaxed,
        );
    }

    /// How many lines were not shown since the last call.
    pub fn take_dropped(&self) -> u64 {
        self.state
            .dropped
            .swap(0, std::sync::atomic::Ordering::Relaxed)
    }

    /// The space is done: a write that cannot finish soon is given up.
    pub fn is_closing(&self) -> bool {
        self.state
            .closing
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    fn release(&self, item: &Printable) {
        if let Printable::Lines { count, .. } = item {
            self.permits.add_permits(*count);
        }
    }

    pub async fn recv(&mut self) -> Option<Printable> {
        let item = self.rx.recv().await?;
        self.release(&item);
        Some(item)
    }

    /// Blocking receive, for a printer on its own thread.
    pub fn blocking_recv(&mut self) -> Option<Printable> {
        let item = self.rx.blocking_recv()?;
        self.release(&item);
        Some(item)
    }

    pub fn try_recv(&mut self) -> Option<Printable> {
        let item = self.rx.try_recv().ok()?;
        self.release(&item);
        Some(item)
    }
}

impl LineSink {
    /// Lines that are not a process's output (`--envelopes`), under the
    /// printer's name `process`; the same backpressure as output.
    pub async fn send_text(&self, process: usize, at: Millis, text: String, count: usize) {
        self.send_lines(process, None, at, text, count).await;
    }

    async fn send_lines(
        &self,
        process: usize,
        name: Option<Arc<str>>,
        at: Millis,
        text: String,
        count: usize,
    ) {
        // One PTY read never holds more lines than permits exist (64 KiB).
        let count = count.min(SINK_PERMITS);
        loop {
            match self.permits.try_acquire_many(count as u32) {
                Ok(p) => {
                    p.forget();
                    break;
                }
                Err(tokio::sync::TryAcquireError::Closed) => return,
                Err(tokio::sync::TryAcquireError::NoPermits) => {}
            }
            if self.stalled() {
                self.state
                    .dropped
                    .fetch_add(count as u64, std::sync::atomic::Ordering::Relaxed);
                return;
            }
            let wait = self.permits.acquire_many(count as u32);
            match tokio::time::timeout(std::time::Duration::from_millis(500), wait).await {
                Ok(Ok(p)) => {
                    p.forget();
                    break;
                }
                Ok(Err(_)) => return,
                Err(_) => continue,
            }
        }
        let _ = self.tx.send(Printable::Lines {
            process,
            name,
            at,
            text,
            count,
        });
    }

    fn send_event(&self, ev: LifecycleEvent) {
        let _ = self.tx.send(Printable::Event(ev));
    }

    /// The printer has not written for [`STALL`], or the space is done.
    fn stalled(&self) -> bool {
        let s = &self.state;
        s.closing.load(std::sync::atomic::Ordering::Relaxed)
            || crate::status::now_millis()
                .saturating_sub(s.progress_ms.load(std::sync::atomic::Ordering::Relaxed))
                > STALL.as_millis() as u64
    }

    /// Tell the printer that nothing more will come.
    pub fn close(&self) {
        self.state
            .closing
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.tx.send(Printable::End);
    }
}

/// Per-process state shared with readers and clients (not lifecycle state).
pub struct ProcShared {
    pub name: Arc<str>,
    pub index: usize,
    /// The terminal emulator the TUI renders from (emulating lazily).
    pub screen: Mutex<LazyScreen>,
    pub log: Mutex<LogWriter>,
    /// The PTY of the current run, for input and resizes.
    pub pty: Mutex<Option<Arc<pty::Pty>>>,
    /// The size the PTY should have (kept across restarts).
    pub size: Mutex<(u16, u16)>,
    /// Counts this process's output chunks: a client redraws only for the
    /// processes it shows.
    pub seq: std::sync::atomic::AtomicU64,
    /// It has left the space (a reload removed it, `scale` shrank it): its
    /// index stays taken, no name finds it.
    pub removed: std::sync::atomic::AtomicBool,
}

impl ProcShared {
    pub fn lock_screen(&self) -> std::sync::MutexGuard<'_, LazyScreen> {
        self.screen.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, LogWriter> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn current_pty(&self) -> Option<Arc<pty::Pty>> {
        self.pty.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The processes' shared state by index: the machine's indices, append
/// only (a removed process stays as a tombstone, so indices never move).
/// It grows when a reload or `scale` adds a process.
#[derive(Default)]
pub struct ProcTable(std::sync::RwLock<Vec<Arc<ProcShared>>>);

impl ProcTable {
    pub fn new(procs: Vec<Arc<ProcShared>>) -> ProcTable {
        ProcTable(std::sync::RwLock::new(procs))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Vec<Arc<ProcShared>>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Process `index`, removed ones included (their output may still drain).
    pub fn get(&self, index: usize) -> Option<Arc<ProcShared>> {
        self.read().get(index).cloned()
    }

    /// Every process in the table, removed ones included.
    pub fn all(&self) -> Vec<Arc<ProcShared>> {
        self.read().clone()
    }

    /// The processes of the space now (removed ones left out).
    pub fn live(&self) -> Vec<Arc<ProcShared>> {
        self.read()
            .iter()
            .filter(|p| !p.is_removed())
            .cloned()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    fn push(&self, p: Arc<ProcShared>) {
        self.0.write().unwrap_or_else(|e| e.into_inner()).push(p);
    }
}

impl ProcShared {
    pub fn is_removed(&self) -> bool {
        self.removed.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// State shared by the supervisor and everyone who watches it.
pub struct Shared {
    pub procs: ProcTable,
    pub events: broadcast::Sender<Event>,
    /// Woken on every output chunk; renderers wait on it.
    pub output: Notify,
    /// Counts output chunks, so a renderer can tell whether it missed one.
    pub output_seq: std::sync::atomic::AtomicU64,
    pub status: watch::Receiver<Arc<SpaceStatus>>,
}

impl Shared {
    /// The index of the process of the space called `name` (not a removed one).
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.procs
            .read()
            .iter()
            .position(|p| &*p.name == name && !p.is_removed())
    }
}

/// Commands the actor understands (from clients and from its own tasks).
pub(crate) enum Cmd {
    Start(Vec<String>, oneshot::Sender<Result<(), String>>),
    Stop(Vec<String>, oneshot::Sender<Result<(), String>>),
    Restart(Vec<String>, oneshot::Sender<Result<(), String>>),
    Kill(Vec<String>, oneshot::Sender<Result<(), String>>),
    /// Any other request to the lifecycle machine, answered.
    Ask(machine::Input, oneshot::Sender<Result<(), String>>),
    /// Resolves when every process has settled after a shutdown.
    WaitDown(oneshot::Sender<()>),
    /// Time to sample the processes' resource usage.
    Sample,
    Usage(
        std::collections::HashMap<u32, (u64, u64)>,
        std::time::Instant,
    ),
    /// Something for the lifecycle machine (exits, timers, probes, sweeps).
    Machine(machine::Input),
}

/// A cheap, cloneable way to control a running supervisor.
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Cmd>,
    pub shared: Arc<Shared>,
}

impl Handle {
    async fn ask(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<(), String>>) -> Cmd,
    ) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .map_err(|_| "the space is shutting down".to_string())?;
        rx.await
            .map_err(|_| "the space is shutting down".to_string())?
    }

    /// Start processes (empty: every auto-start process that is not running).
    pub async fn start(&self, names: Vec<String>) -> Result<(), String> {
        self.ask(|tx| Cmd::Start(names, tx)).await
    }

    /// Stop processes (empty: all). They are never restarted by policy.
    pub async fn stop(&self, names: Vec<String>) -> Result<(), String> {
        self.ask(|tx| Cmd::Stop(names, tx)).await
    }

    /// Restart processes (empty: all, in dependency order).
    pub async fn restart(&self, names: Vec<String>) -> Result<(), String> {
        self.ask(|tx| Cmd::Restart(names, tx)).await
    }

    /// Restart processes for a reason their lifecycle line shows ("src/main.rs
    /// changed"); a restart already under way is not queued again.
    pub async fn restart_because(&self, names: Vec<String>, reason: String) -> Result<(), String> {
        self.ask(|tx| Cmd::Ask(machine::Input::RestartFor { names, reason }, tx))
            .await
    }

    /// Start processes and, first, their stopped dependencies (transitively).
    pub async fn start_with_deps(&self, names: Vec<String>) -> Result<(), String> {
        self.ask(|tx| Cmd::Ask(machine::Input::StartWithDeps(names), tx))
            .await
    }

    /// Send `signal` to the process group of each named process that runs,
    /// for a reason its lifecycle line shows (`watch:` with a signal action).
    pub async fn signal_because(
        &self,
        names: Vec<String>,
        signal: i32,
        reason: String,
    ) -> Result<(), String> {
        self.ask(|tx| {
            Cmd::Ask(
                machine::Input::SignalFor {
                    names,
                    signal,
                    reason,
                },
                tx,
            )
        })
        .await
    }

    /// A lifecycle line for `name` (its log, the TUI, `--no-tui`) without a
    /// state change: a warning about it.
    pub async fn warn(&self, name: String, message: String) -> Result<(), String> {
        self.ask(|tx| Cmd::Ask(machine::Input::Warn { name, message }, tx))
            .await
    }

    /// Give a process (by its name) a new spec: a running one is stopped and
    /// started again with it, with dependents following their conditions.
    pub async fn replace(&self, process: ResolvedProcess) -> Result<(), String> {
        self.ask(|tx| Cmd::Ask(machine::Input::Replace(Box::new(process)), tx))
            .await
    }

    /// A new process joins the space; it starts at once if it auto-starts
    /// (after its dependencies, by their conditions).
    pub async fn add(&self, process: ResolvedProcess) -> Result<(), String> {
        self.ask(|tx| Cmd::Ask(machine::Input::Add(Box::new(process)), tx))
            .await
    }

    /// A process leaves the space: it is stopped (as `stop` does), then dropped.
    pub async fn remove(&self, name: String) -> Result<(), String> {
        self.ask(|tx| Cmd::Ask(machine::Input::Remove(name), tx))
            .await
    }

    /// Give a process a new spec that changes nothing of what runs (`watch`,
    /// `profiles`, `scrollback`, `depends_on`): the running process keeps running.
    pub async fn update(&self, process: ResolvedProcess) -> Result<(), String> {
        self.ask(|tx| Cmd::Ask(machine::Input::Update(Box::new(process)), tx))
            .await
    }

    /// SIGKILL processes at once.
    pub async fn kill(&self, names: Vec<String>) -> Result<(), String> {
        self.ask(|tx| Cmd::Kill(names, tx)).await
    }

    /// Begin stopping the whole space (dependents first).
    pub fn shutdown(&self, force: bool) {
        let _ = self
            .tx
            .send(Cmd::Machine(machine::Input::Shutdown { force }));
    }

    /// Wait until a shutdown has finished: no process of the space is left.
    pub async fn wait_down(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Cmd::WaitDown(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    pub fn status(&self) -> Arc<SpaceStatus> {
        self.shared.status.borrow().clone()
    }

    pub fn watch_status(&self) -> watch::Receiver<Arc<SpaceStatus>> {
        self.shared.status.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// Type into a process's terminal.
    pub async fn input(&self, index: usize, bytes: &[u8]) -> std::io::Result<()> {
        let Some(p) = self.shared.procs.get(index) else {
            return Ok(());
        };
        match p.current_pty() {
            Some(pty) => pty.write_all(bytes).await,
            None => Ok(()),
        }
    }

    /// Set the terminal size of a process (now and for later runs).
    pub fn resize(&self, index: usize, rows: u16, cols: u16) {
        let Some(p) = self.shared.procs.get(index) else {
            return;
        };
        let (rows, cols) = (rows.max(2), cols.max(2));
        {
            let mut size = p.size.lock().unwrap_or_else(|e| e.into_inner());
            if *size == (rows, cols) {
                return;
            }
            *size = (rows, cols);
        }
        p.lock_screen().resize(rows, cols);
        if let Some(pty) = p.current_pty() {
            let _ = pty.resize(rows, cols);
        }
    }
}

/// Start supervising `space`: auto-start processes begin at once (in
/// dependency order). Must be called inside a tokio runtime.
pub fn start(
    space: SpaceConfig,
    processes: Vec<ResolvedProcess>,
    opts: Options,
    sink: Option<LineSink>,
) -> Handle {
    actor::start(space, processes, opts, sink)
}
