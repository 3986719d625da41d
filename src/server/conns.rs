//! The control socket's connections: the thread that serves them, the
//! accept loop, and the limits (how many at once, how many streaming, which
//! silent one is closed to make room).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Ctx;
use super::outbox::encode_msg;
use super::requests::serve_client;
use crate::protocol::{self, ServerMsg};

/// At shutdown, how long the server waits for its clients to take their last frames.
const CLIENT_DRAIN: Duration = Duration::from_secs(1);
/// How long one client frame may take from its first byte to its last.
pub(super) const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once, at most (fewer with a small descriptor limit:
/// a quarter of it, so processes keep theirs).
pub(super) const MAX_CONNECTIONS: usize = 256;
/// Bytes that large client frames in progress may hold, all connections together.
const READ_BUDGET: u32 = 32 * 1024 * 1024;
/// After a failed accept (EMFILE...), wait this long before the next one;
/// at the cap with no connection to close, look again this often.
pub(super) const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// At the cap, a connection silent (no hello yet, or idle) for this long is
/// closed to let a new one in; the newest get at least this long to speak.
pub(super) const EVICT_AFTER: Duration = Duration::from_millis(250);
/// Failed accepts and refused connections are reported at most this often.
pub(super) const WARN_EVERY: Duration = Duration::from_secs(10);

/// The cap on open connections for this process's descriptor limit.
fn connection_cap() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    usize::try_from(soft / 4)
        .unwrap_or(usize::MAX)
        .clamp(16, MAX_CONNECTIONS)
}

/// What every connection shares, from before the supervisor exists.
pub(super) struct Front {
    pub(super) space_id: String,
    pub(super) server_pid: u32,
    /// The status until the supervisor publishes its own: every process as
    /// it is about to start.
    pub(super) boot: Arc<crate::status::SpaceStatus>,
    /// Set once the supervisor runs.
    pub(super) ctx: watch::Receiver<Option<Arc<Ctx>>>,
    /// Set once the space is down.
    pub(super) gone: watch::Receiver<bool>,
    pub(super) conns: Arc<Conns>,
    pub(super) budget: protocol::ReadBudget,
}

impl Front {
    pub(super) fn new(
        space_id: String,
        server_pid: u32,
        boot: crate::status::SpaceStatus,
        ctx: watch::Receiver<Option<Arc<Ctx>>>,
        gone: watch::Receiver<bool>,
    ) -> Front {
        Front {
            space_id,
            server_pid,
            boot: Arc::new(boot),
            ctx,
            gone,
            conns: Arc::new(Conns::new(connection_cap())),
            budget: protocol::ReadBudget::new(READ_BUDGET),
        }
    }

    pub(super) fn ctx_now(&self) -> Option<Arc<Ctx>> {
        self.ctx.borrow().clone()
    }

    /// The supervisor's context, waiting while it starts the processes.
    pub(super) async fn ctx(&self) -> Option<Arc<Ctx>> {
        let mut rx = self.ctx.clone();
        let ctx = rx.wait_for(|c| c.is_some()).await.ok()?;
        ctx.clone()
    }

    /// Limits for a client's frames after its hello.
    pub(super) fn limits(
        &self,
        idle: Option<Duration>,
        discard_oversized: bool,
    ) -> protocol::ReadLimits {
        protocol::ReadLimits {
            max_len: protocol::MAX_CLIENT_FRAME_LEN,
            idle,
            frame: Some(FRAME_TIMEOUT),
            budget: Some(self.budget.clone()),
            discard_oversized,
        }
    }
}

/// The thread that serves the control socket, on a runtime of its own.
pub(super) struct Control {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Control {
    pub(super) fn start(
        listener: std::os::unix::net::UnixListener,
        front: Arc<Front>,
    ) -> std::io::Result<Control> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let listener = {
            let _in_rt = rt.enter();
            tokio::net::UnixListener::from_std(listener)?
        };
        let (stop, stop_rx) = watch::channel(false);
        let thread = std::thread::Builder::new()
            .name("mew-control".into())
            .spawn(move || {
                rt.block_on(async move {
                    accept_loop(listener, front.clone(), stop_rx).await;
                    // The listener is closed; connections take their last
                    // frames, then whatever is left is dropped.
                    let _ = tokio::time::timeout(CLIENT_DRAIN, front.conns.wait_empty()).await;
                });
                rt.shutdown_timeout(Duration::from_millis(100));
            })?;
        Ok(Control {
            stop,
            thread: Some(thread),
        })
    }

    /// Stop accepting; return once every connection has ended (bounded by
    /// CLIENT_DRAIN).
    pub(super) async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// A rate-limited warning: the first at once, then at most one per WARN_EVERY
/// with the count of those not reported.
struct Warn {
    last: Option<std::time::Instant>,
    skipped: u64,
}

impl Warn {
    fn new() -> Warn {
        Warn {
            last: None,
            skipped: 0,
        }
    }

    fn warn(&mut self, what: std::fmt::Arguments<'_>) {
        if self.last.is_some_and(|t| t.elapsed() < WARN_EVERY) {
            self.skipped += 1;
            return;
        }
        if self.skipped > 0 {
            tracing::warn!("{what} (and {} more like it)", self.skipped);
        } else {
            tracing::warn!("{what}");
        }
        self.last = Some(std::time::Instant::now());
        self.skipped = 0;
    }
}

async fn accept_loop(
    listener: tokio::net::UnixListener,
    front: Arc<Front>,
    mut stop: watch::Receiver<bool>,
) {
    let mut accept_failed = Warn::new();
    let mut refused = Warn::new();
    let mut full = Warn::new();
    loop {
        // At the cap, new connections wait in the kernel's backlog (costing
        // the server nothing) until one ends or one has been silent long
        // enough to be closed for the newcomer: a flood of connections is
        // taken in at a bounded rate, and each gets EVICT_AFTER to speak.
        if let Some(until) = front.conns.room() {
            full.warn(format_args!(
                "{} connections are open: new ones wait until one ends or one is idle",
                front.conns.cap
            ));
            tokio::select! {
                _ = tokio::time::sleep_until(until.into()) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            continue;
        }
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => return,
        };
        match accepted {
            Ok((stream, _)) => match front.conns.admit() {
                Some(slot) => {
                    let front = front.clone();
                    tokio::spawn(serve_client(stream, front, slot));
                }
                None => {
                    // Taken meanwhile (room was checked before the accept): say so and hang up.
                    let reason = format!(
                        "the space server has {} connections open; try again later",
                        front.conns.cap
                    );
                    if let Some(bye) = encode_msg(&ServerMsg::Bye { reason }) {
                        let _ = stream.try_write(&bye);
                    }
                    refused.warn(format_args!(
                        "refused a connection: {} connections are open, none idle long enough to close",
                        front.conns.cap
                    ));
                }
            },
            Err(e) => {
                // Out of descriptors (EMFILE, ENFILE: the processes hold the
                // rest) or memory: the connection stays in the backlog.
                // Close a silent connection to free a descriptor, and never
                // spin.
                let no_fds = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                if no_fds && front.conns.evict_silent() {
                    accept_failed.warn(format_args!(
                        "accept failed: {e}; closed the connection silent the longest"
                    ));
                    // Its task closes it when it runs: right after this yield.
                    tokio::task::yield_now().await;
                } else {
                    accept_failed.warn(format_args!("accept failed: {e}"));
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            }
        }
    }
}

/// What a connection is doing, for the cap and for eviction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Accepted, no hello yet.
    Hello,
    /// A control connection with nothing in flight.
    Idle,
    /// A request is being answered, or `down` streams its progress.
    Busy,
    /// Follow, watch or attach: quiet by nature, counted apart.
    Streaming,
}

/// Every open connection, oldest first.
pub(super) struct Conns {
    pub(super) cap: usize,
    /// Streaming connections at most: the rest of the cap is kept for
    /// control clients (`status`, `down`), which can always get in by
    /// closing a silent connection.
    pub(super) streaming_cap: usize,
    table: std::sync::Mutex<Table>,
    emptied: tokio::sync::Notify,
}

#[derive(Default)]
struct Table {
    next: u64,
    live: std::collections::BTreeMap<u64, Entry>,
    streaming: usize,
}

struct Entry {
    phase: Phase,
    /// The last sign of life (accept, a frame, an answer).
    since: std::time::Instant,
    kill: Arc<tokio::sync::Notify>,
}

impl Conns {
    pub(super) fn new(cap: usize) -> Conns {
        Conns {
            cap,
            streaming_cap: cap - (cap / 8).max(4),
            table: std::sync::Mutex::new(Table::default()),
            emptied: tokio::sync::Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection silent the longest (no hello yet, or idle), with the
    /// time it went silent.
    fn most_silent(t: &Table) -> Option<(u64, std::time::Instant)> {
        t.live
            .iter()
            .filter(|(_, e)| matches!(e.phase, Phase::Hello | Phase::Idle))
            .map(|(id, e)| (*id, e.since))
            .min_by_key(|&(id, since)| (since, id))
    }

    /// `None` when a new connection can be taken now (a free slot, or a
    /// connection silent for EVICT_AFTER to close); else when to look again.
    fn room(&self) -> Option<std::time::Instant> {
        let t = self.lock();
        if t.live.len() < self.cap {
            return None;
        }
        let now = std::time::Instant::now();
        match Self::most_silent(&t) {
            Some((_, since)) if now.duration_since(since) >= EVICT_AFTER => None,
            Some((_, since)) => Some(since + EVICT_AFTER),
            // Every one is busy or streaming: one ends soon (streams are
            // capped below the cap, requests are answered, `down` ends).
            None => Some(now + ACCEPT_RETRY),
        }
    }

    /// Close the connection silent the longest, if it has been silent for
    /// EVICT_AFTER.
    fn evict_silent(&self) -> bool {
        let mut t = self.lock();
        match Self::most_silent(&t) {
            Some((id, since)) if since.elapsed() >= EVICT_AFTER => {
                if let Some(e) = t.live.remove(&id) {
                    e.kill.notify_one();
                }
                true
            }
            _ => false,
        }
    }

    /// A slot for a new connection. At the cap, the connection silent the
    /// longest is closed to make room, if it has been silent for
    /// EVICT_AFTER; `None` otherwise.
    fn admit(self: &Arc<Self>) -> Option<ConnSlot> {
        let mut t = self.lock();
        if t.live.len() >= self.cap {
            drop(t);
            if !self.evict_silent() {
                return None;
            }
            t = self.lock();
        }
        let id = t.next;
        t.next += 1;
        let kill = Arc::new(tokio::sync::Notify::new());
        t.live.insert(
            id,
            Entry {
                phase: Phase::Hello,
                since: std::time::Instant::now(),
                kill: kill.clone(),
            },
        );
        Some(ConnSlot {
            id,
            conns: self.clone(),
            kill,
        })
    }

    async fn wait_empty(&self) {
        loop {
            let emptied = self.emptied.notified();
            tokio::pin!(emptied);
            emptied.as_mut().enable();
            if self.lock().live.is_empty() {
                return;
            }
            emptied.await;
        }
    }
}

/// One connection's place in [`Conns`]; leaving frees it.
pub(super) struct ConnSlot {
    id: u64,
    conns: Arc<Conns>,
    kill: Arc<tokio::sync::Notify>,
}

impl ConnSlot {
    pub(super) fn phase(&self) -> Option<Phase> {
        self.conns.lock().live.get(&self.id).map(|e| e.phase)
    }

    /// Enter `phase` (a streaming connection stays streaming).
    pub(super) fn set(&self, phase: Phase) {
        let mut t = self.conns.lock();
        if let Some(e) = t.live.get_mut(&self.id) {
            e.since = std::time::Instant::now();
            if e.phase != Phase::Streaming {
                e.phase = phase;
                if phase == Phase::Streaming {
                    t.streaming += 1;
                }
            }
        }
    }

    /// Become a streaming connection, unless as many stream as may.
    pub(super) fn stream(&self) -> bool {
        let mut t = self.conns.lock();
        let full = t.streaming >= self.conns.streaming_cap;
        match t.live.get_mut(&self.id) {
            Some(e) if e.phase == Phase::Streaming => true,
            Some(_) if full => false,
            Some(e) => {
                e.phase = Phase::Streaming;
                e.since = std::time::Instant::now();
                t.streaming += 1;
                true
            }
            // Evicted meanwhile: it ends at its next read.
            None => false,
        }
    }

    /// Resolves when the server closes this connection to make room.
    pub(super) async fn evicted(&self) {
        self.kill.notified().await
    }
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let mut t = self.conns.lock();
        if let Some(e) = t.live.remove(&self.id)
            && e.phase == Phase::Streaming
        {
            t.streaming -= 1;
        }
        if t.live.is_empty() {
            self.conns.emptied.notify_waiters();
        }
    }
}
