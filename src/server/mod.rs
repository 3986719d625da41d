//! The space server: owns the supervisor (and so every process), serves
//! clients on the space's unix socket, records its state for crash recovery.
//!
//! The same code runs in the foreground for `mew space up --no-tui` (with the
//! headless printer attached) and as the daemon behind `up -d` and the TUI.

mod recovery;
mod session;

pub use recovery::recover;

/// `eprintln!` that cannot panic: a closed stderr (`up --no-tui 2>&1 | head`)
/// must never take the server, and so its processes, down.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::{broadcast, mpsc, watch};

use crate::cli::SpaceArgs;
use crate::config::{self, ProcKind, ResolveContext, SpaceConfig};
use crate::headless::{self, FailureTracker, Printer};
use crate::protocol::{self, ClientMsg, Request, ResponseBody, ServerMsg, Versions};
use crate::space::{self, SpacePaths};
use crate::status::now_millis;
use crate::supervisor::{self, Event, Handle, Options};
use crate::sys;

/// What `up` asked for.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub port: Option<u16>,
    /// `Some`: run in the foreground with the line printer (`--no-tui`).
    pub headless: Option<HeadlessOptions>,
}

#[derive(Clone, Debug)]
pub struct HeadlessOptions {
    pub timestamps: bool,
    pub exit_on_failure: bool,
    /// `--exit-code-from NAME`: when NAME ends, stop the space and exit with its code.
    pub exit_code_from: Option<String>,
    /// `--abort-on-exit`: the first process that ends for good (a task that
    /// succeeded aside) stops the space; exit with its code.
    pub abort_on_exit: bool,
    /// `--envelopes`: also print the space's envelopes (the space view's lines).
    pub envelopes: bool,
}

/// Load and validate the config, printing errors and warnings. Nothing is
/// spawned or written; a config error yields exit code 2.
pub fn load_config(args: &SpaceArgs) -> Result<SpaceConfig, ExitCode> {
    let opts = config::LoadOptions {
        space_dir: args.space_dir.clone(),
        config: args.config.clone(),
        procfile: args.procfile.clone(),
    };
    match config::load(&opts) {
        Ok(cfg) => Ok(cfg),
        Err(e) => {
            say!("{e}");
            Err(ExitCode::from(e.exit_code()))
        }
    }
}

/// Run the server until the space is down. Creates the async runtime.
pub fn run(cfg: SpaceConfig, opts: ServeOptions) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("mew: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(serve(cfg, opts));
    rt.shutdown_timeout(Duration::from_millis(200));
    ExitCode::from(code)
}

/// At shutdown, how long the server waits for its clients to take their last frames.
const CLIENT_DRAIN: Duration = Duration::from_secs(1);

/// Find a free TCP port, starting at `port`; `0`: one the kernel picks
/// (the gateway, its probe and `${PORT}` all need the real number).
pub fn free_port(port: u16) -> Option<u16> {
    if port == 0 {
        return std::net::TcpListener::bind(("0.0.0.0", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .ok();
    }
    (port..=port.saturating_add(100)).find(|&p| std::net::TcpListener::bind(("0.0.0.0", p)).is_ok())
}

/// Whether a process runs (one that is gone, a zombie, or one that is
/// exiting, does not).
pub fn process_runs(pid: u32) -> bool {
    sys::pid_exists(pid) && !crate::procfs::is_ending(pid)
}

/// Take the space lock. A lock still held by a server that is exiting (its
/// memory already gone, its files not yet closed) is waited for, briefly:
/// `down` followed at once by `up` must not be refused.
pub fn lock_space(paths: &SpacePaths) -> Result<space::SpaceLock, space::LockError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        match space::try_lock(paths) {
            Err(space::LockError::Held { pid: Some(pid) })
                if !process_runs(pid) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            // A server whose run dir was removed under it (`rm -rf
            // .mew/run`) still runs, holding the old, unlinked lock: the
            // fresh lock file must not let a second set of processes start.
            Ok(lock) => match space::running_server(paths) {
                Some(pid) => {
                    drop(lock);
                    return Err(space::LockError::Held { pid: Some(pid) });
                }
                None => return Ok(lock),
            },
            other => return other,
        }
    }
}

/// The name `--envelopes` lines carry.
const ENVELOPES_LABEL: &str = "space";

/// `--no-tui --envelopes`: each envelope the space view sees, as a line of
/// the printer (`space | from → to kind: summary`), in order; envelopes
/// that left the view's history before they could be printed are counted.
async fn print_envelopes(
    space: Arc<crate::participant::observer::Observer>,
    sink: supervisor::LineSink,
    index: usize,
) {
    let mut changed = space.subscribe();
    let mut last = 0u64;
    loop {
        let (lines, skipped) = space.with_log(|log| {
            let first = log.entries.front().map_or(log.seen + 1, |e| e.seq);
            let skipped = first.saturating_sub(last + 1);
            let lines: Vec<(crate::status::Millis, String)> = log
                .entries
                .iter()
                .filter(|e| e.seq > last)
                .map(|e| (e.at, e.summary.line()))
                .collect();
            (lines, skipped)
        });
        if skipped > 0 {
            sink.send_text(
                index,
                now_millis(),
                format!("({skipped} envelopes not shown)\n"),
                1,
            )
            .await;
        }
        last += skipped;
        for (at, line) in lines {
            last += 1;
            sink.send_text(index, at, line + "\n", 1).await;
        }
        if changed.changed().await.is_err() {
            return;
        }
    }
}

/// The FIFOs of the `fifo: true` participants, under `.mew/fifos/`
/// (removed again by [`remove_fifos`] when the server ends).
fn make_fifos(cfg: &SpaceConfig) -> Result<(), String> {
    for f in &cfg.fifos {
        let mut paths = vec![f.input_path(&cfg.dir)];
        if f.output {
            paths.push(f.output_path(&cfg.dir));
        }
        for path in paths {
            crate::participant::client::make_fifo(&path).map_err(|e| {
                format!(
                    "cannot make the FIFO {} of participant `{}`: {e}",
                    path.display(),
                    f.name
                )
            })?;
        }
    }
    Ok(())
}

/// Remove what [`make_fifos`] made (only FIFOs: a file put there is kept).
fn remove_fifos(space_dir: &Path, fifos: &[config::FifoSpec]) {
    use std::os::unix::fs::FileTypeExt;
    for f in fifos {
        for path in [f.input_path(space_dir), f.output_path(space_dir)] {
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_fifo()) {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if !fifos.is_empty() {
        let _ = std::fs::remove_dir(config::fifo_dir(space_dir));
    }
}

fn resolve_context(
    cfg: &SpaceConfig,
    paths: &SpacePaths,
    port: u16,
) -> std::io::Result<ResolveContext> {
    let mut tokens = std::collections::HashMap::new();
    for p in &cfg.processes {
        if p.kind == ProcKind::Participant {
            tokens.insert(
                p.name.clone(),
                space::load_or_create_token(&paths.tokens_dir, &p.name)?,
            );
        }
    }
    Ok(ResolveContext { port, tokens })
}

struct Ctx {
    handle: Handle,
    space_id: String,
    /// `ui.keys` from the config, for every attached client's key map.
    ui_keys: Vec<(String, String)>,
    /// What the TUI shows of the config: description, warnings, stop timeouts.
    notes: crate::tui::SpaceNotes,
    /// Set when a client asked the space to go down.
    down_tx: watch::Sender<bool>,
    /// Set once the space is down (all processes gone).
    gone_tx: watch::Sender<bool>,
    /// The server's own participant in the space (the TUI's space view).
    space: Option<Arc<crate::participant::observer::Plan>>,
}

async fn serve(cfg: SpaceConfig, opts: ServeOptions) -> u8 {
    // Handle SIGINT/SIGTERM/SIGHUP before anything is spawned: a signal that
    // arrives while the first processes start must stop them, not kill the
    // server by the default action and orphan them.
    let mut signals = Signals::new();
    let paths = match SpacePaths::new(&cfg.dir) {
        Ok(p) => p,
        Err(e) => {
            say!("mew: {}: {e}", cfg.dir.display());
            return 1;
        }
    };
    if let Err(e) = paths.ensure_run_dir() {
        say!("mew: {e}");
        return 1;
    }
    let mut lock = match lock_space(&paths) {
        Ok(l) => l,
        Err(space::LockError::Held { pid, .. }) => {
            let pid = pid.map_or("unknown pid".to_string(), |p| format!("pid {p}"));
            say!(
                "mew: space \"{}\" is already running ({pid}) — use \"mew space attach\" or \"mew space down\"",
                cfg.id
            );
            return 1;
        }
        Err(e) => {
            say!("mew: cannot lock the space: {e}");
            return 1;
        }
    };
    if let Some((pid, killed)) = recover(&paths, &lock) {
        say!(
            "mew: the previous server (pid {pid}) did not shut down cleanly; killed {killed} leftover process{}",
            if killed == 1 { "" } else { "es" }
        );
    }
    let configured = opts.port.unwrap_or(cfg.gateway_port);
    let port = if cfg.gateway().is_some() {
        match free_port(configured) {
            Some(p) => {
                if p != configured && configured != 0 {
                    say!("mew: port {configured} is taken; the gateway uses port {p}");
                }
                p
            }
            None => {
                say!(
                    "mew: no free port from {configured} to {}",
                    configured.saturating_add(100)
                );
                return 1;
            }
        }
    } else {
        configured
    };
    let ctx = match resolve_context(&cfg, &paths, port) {
        Ok(c) => c,
        Err(e) => {
            say!(
                "mew: cannot prepare tokens in {}: {e}",
                paths.tokens_dir.display()
            );
            return 1;
        }
    };
    let (resolved, warnings) = config::resolve(&cfg, &ctx);
    for w in cfg.warnings.iter().chain(warnings.iter()) {
        say!("{}", format_diagnostic("warning", w));
    }
    if let Err(e) = crate::logs::create_log_dir(&cfg.logs.dir) {
        say!(
            "mew: cannot create {}: {e} (logging is degraded)",
            cfg.logs.dir.display()
        );
    }
    for note in crate::logs::link_upstream_logs(&cfg) {
        say!("mew: {note}");
    }
    if let Err(e) = make_fifos(&cfg) {
        say!("mew: {e}");
        remove_fifos(&cfg.dir, &cfg.fifos);
        return 1;
    }
    let fifos = cfg.fifos.clone();
    let listener = match space::bind_socket(&paths.socket) {
        Ok(l) => l,
        Err(e) => {
            say!("mew: cannot listen on {}: {e}", paths.socket.display());
            return 1;
        }
    };
    if let Err(e) = listener.set_nonblocking(true) {
        say!("mew: cannot listen on {}: {e}", paths.socket.display());
        return 1;
    }
    if let Err(e) = paths.record_socket() {
        say!("mew: cannot record the socket path: {e}");
        return 1;
    }
    let run_id = space::new_run_id();
    let server_pid = std::process::id();
    let _ = lock.write_info(&space::LockInfo {
        pid: server_pid,
        started_at: now_millis(),
        run_id: run_id.clone(),
        mew_version: env!("CARGO_PKG_VERSION").to_string(),
        socket: paths.socket.clone(),
        space_id: Some(cfg.id.clone()),
        gateway_port: cfg.gateway().map(|_| port),
    });
    let gateway_url = cfg.gateway().map(|_| format!("ws://localhost:{port}"));
    let (rows, cols) = headless_size();
    let (sink, feed) = match &opts.headless {
        Some(_) => {
            let (s, f) = supervisor::line_sink();
            (Some(s), Some(f))
        }
        None => (None, None),
    };
    let names: Vec<String> = resolved.iter().map(|p| p.name.clone()).collect();
    let space_id = cfg.id.clone();
    let ui_keys = cfg.ui_keys.clone();
    let notes = crate::tui::SpaceNotes {
        description: cfg.description.clone(),
        warnings: cfg
            .warnings
            .iter()
            .chain(warnings.iter())
            .map(|w| {
                format_diagnostic("warning", w)
                    .trim_start_matches("warning: ")
                    .to_owned()
            })
            .collect(),
        stop_timeouts: cfg
            .processes
            .iter()
            .map(|p| (p.name.clone(), p.stop_timeout))
            .collect(),
        shutdown_timeout: Some(cfg.shutdown_timeout),
        profiles: cfg
            .processes
            .iter()
            .map(|p| (p.name.clone(), p.profiles.clone()))
            .collect(),
    };
    let space_dir = cfg.dir.clone();
    // The control socket is served from its own thread, started before the
    // supervisor: starting thousands of processes (or anything else the
    // supervisor's thread is busy with) never keeps a client waiting for its
    // hello or its status. Until the supervisor has published a status,
    // `status` answers with the processes about to start.
    let (ctx_tx, ctx_rx) = watch::channel(None);
    let (gone_tx, gone_rx) = watch::channel(false);
    let front = Arc::new(Front {
        space_id: space_id.clone(),
        server_pid,
        boot: Arc::new(boot_status(
            &cfg,
            &resolved,
            server_pid,
            gateway_url.clone(),
        )),
        ctx: ctx_rx,
        gone: gone_rx,
        conns: Arc::new(Conns::new(connection_cap())),
        budget: protocol::ReadBudget::new(READ_BUDGET),
    });
    let mut control = match Control::start(listener, front) {
        Ok(c) => c,
        Err(e) => {
            say!("mew: cannot serve {}: {e}", paths.socket.display());
            return 1;
        }
    };
    // The server's own participant: the space view of every attached TUI
    // (it joins when the first one attaches, or now for `--envelopes`).
    let space_view = match crate::participant::observer::Plan::new(&cfg, port) {
        Ok(p) => {
            tracing::info!("the space view will join as {}", p.participant());
            Some(Arc::new(p))
        }
        Err(why) => {
            tracing::info!("no space view: {why}");
            None
        }
    };
    let handle = supervisor::start(
        cfg,
        resolved,
        Options {
            run_id: run_id.clone(),
            rows,
            cols,
            gateway_url: gateway_url.clone(),
            server_pid,
        },
        sink.clone(),
    );
    // Set once the space is down: no state write may land after that.
    let state_closed = Arc::new(std::sync::Mutex::new(false));
    tokio::spawn(record_state(
        handle.clone(),
        paths.state.clone(),
        run_id.clone(),
        server_pid,
        state_closed.clone(),
    ));
    let _ = space::register(&space::RegistryEntry {
        id: space_id.clone(),
        dir: space_dir.clone(),
        pid: server_pid,
        socket: paths.socket.clone(),
        started_at: now_millis(),
    });
    let (down_tx, mut down_rx) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        handle: handle.clone(),
        space_id: space_id.clone(),
        ui_keys,
        notes,
        down_tx,
        gone_tx,
        space: space_view,
    });
    let _ = ctx_tx.send(Some(ctx.clone()));
    tracing::info!(space = %space_id, pid = server_pid, "space server running");

    let (closed_tx, mut stdout_closed) = tokio::sync::oneshot::channel::<()>();
    let printer = match (&opts.headless, feed) {
        (Some(h), Some(feed)) => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            let mut names = names;
            if h.envelopes {
                match (&ctx.space, &sink) {
                    (Some(space), Some(sink)) => {
                        tokio::spawn(print_envelopes(space.observer(), sink.clone(), names.len()));
                        names.push(ENVELOPES_LABEL.to_owned());
                    }
                    _ => say!(
                        "mew: --envelopes: this space has no space view (no gateway, or no participant for mew to join as)"
                    ),
                }
            }
            let printer = Printer::new(names, color, h.timestamps).for_stdout();
            Some(std::thread::spawn(move || {
                printer.run(feed, std::io::stdout(), Some(closed_tx))
            }))
        }
        _ => {
            drop(closed_tx);
            None
        }
    };
    let mut stdout_open = opts.headless.is_some();

    let mut code: Option<u8> = None;
    let mut interrupts = 0;
    let mut status_rx = handle.watch_status();
    let mut tracker = FailureTracker::default();
    let exit_on_failure = opts.headless.as_ref().is_some_and(|h| h.exit_on_failure);
    let mut shutting_down = false;
    let mut down_done = Box::pin(wait_down_when(handle.clone(), ctx.down_tx.subscribe()));
    loop {
        tokio::select! {
            sig = signals.recv() => {
                interrupts += 1;
                if code.is_none() {
                    code = Some(128 + sig as u8);
                }
                if interrupts == 1 {
                    handle.shutdown(false);
                } else {
                    handle.shutdown(true);
                }
                shutting_down = true;
                let _ = ctx.down_tx.send(true);
            }
            changed = status_rx.changed() => {
                if changed.is_err() { break; }
                let status = status_rx.borrow_and_update().clone();
                if let Some(h) = opts.headless.as_ref().filter(|_| !shutting_down) {
                    let newly = tracker.observe(&status.processes, exit_on_failure);
                    if let Some((name, c)) = headless::ended_for(&status.processes, h.exit_code_from.as_deref(), h.abort_on_exit) {
                        tracing::info!("{name} ended: stopping the space");
                        code = Some(c.clamp(0, 255) as u8);
                        shutting_down = true;
                        handle.shutdown(false);
                        let _ = ctx.down_tx.send(true);
                    } else if exit_on_failure && let Some((name, c)) = newly {
                        tracing::info!("{name} failed for good: stopping the space");
                        code = Some(c.clamp(0, 255) as u8);
                        shutting_down = true;
                        handle.shutdown(false);
                        let _ = ctx.down_tx.send(true);
                    } else if headless::all_ended(&status.processes) {
                        code = Some(tracker.first().map_or(0, |(_, c)| (*c).clamp(0, 255) as u8));
                        shutting_down = true;
                        handle.shutdown(false);
                        let _ = ctx.down_tx.send(true);
                    }
                }
            }
            r = &mut stdout_closed, if stdout_open => {
                stdout_open = false;
                if r.is_ok() {
                    // `up --no-tui | head -1`: the reader is gone. Stop the
                    // space cleanly and exit as a killed writer would (141).
                    tracing::info!("stdout was closed: stopping the space");
                    if code.is_none() {
                        code = Some(128 + libc::SIGPIPE as u8);
                    }
                    shutting_down = true;
                    handle.shutdown(false);
                    let _ = ctx.down_tx.send(true);
                }
            }
            r = down_rx.changed() => {
                if r.is_ok() && *down_rx.borrow() {
                    shutting_down = true;
                }
            }
            _ = &mut down_done => break,
        }
    }
    let _ = ctx.gone_tx.send(true);
    if let Some(sink) = sink {
        sink.close();
    }
    if let Some(t) = printer {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    {
        // A write still in flight would leave a state file behind, and the
        // next `up` would take this clean shutdown for a crash.
        let mut closed = state_closed.lock().unwrap_or_else(|e| e.into_inner());
        *closed = true;
        let _ = std::fs::remove_file(&paths.state);
    }
    let _ = std::fs::remove_file(&paths.socket);
    let _ = std::fs::remove_file(&paths.socket_record);
    let _ = space::unregister(&space_dir);
    remove_fifos(&space_dir, &fifos);
    // Clients streaming the shutdown (attached TUIs, `logs -f`, `down`) get
    // their last frames: the control thread stops accepting and ends once
    // every connection has (at most CLIENT_DRAIN).
    control.stop().await;
    drop(lock);
    code.unwrap_or(0)
}

async fn wait_down_when(handle: Handle, mut down: watch::Receiver<bool>) {
    while !*down.borrow_and_update() {
        if down.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
    handle.wait_down().await;
}

/// The PTY size for processes before any client says otherwise.
fn headless_size() -> (u16, u16) {
    (40, 120)
}

pub fn format_diagnostic(level: &str, d: &config::Diagnostic) -> String {
    match &d.loc {
        Some(loc) => format!(
            "{level}: {}:{}:{}: {}",
            config::escape(&d.file.display().to_string()),
            loc.line,
            loc.col,
            d.message
        ),
        None => format!(
            "{level}: {}: {}",
            config::escape(&d.file.display().to_string()),
            d.message
        ),
    }
}

/// SIGINT, SIGTERM and SIGHUP, as the signal number.
pub struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    pub async fn recv(&mut self) -> i32 {
        async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = one(&mut self.int) => libc::SIGINT,
            _ = one(&mut self.term) => libc::SIGTERM,
            _ = one(&mut self.hup) => libc::SIGHUP,
        }
    }
}

/// Keep `.mew/run/state.json` in step with the running processes.
async fn record_state(
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

// ---- the control socket ---------------------------------------------------------

/// How long a new connection may take to say hello (from its accept).
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a control connection with nothing in flight (no request being
/// answered, no stream) may stay silent before it is closed.
const CONTROL_IDLE: Duration = Duration::from_secs(10);
/// How long one client frame may take from its first byte to its last.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections open at once, at most (fewer with a small descriptor limit:
/// a quarter of it, so processes keep theirs).
const MAX_CONNECTIONS: usize = 256;
/// Bytes that large client frames in progress may hold, all connections together.
const READ_BUDGET: u32 = 32 * 1024 * 1024;
/// Frames queued for one client before it counts as slow.
const CLIENT_QUEUE: usize = 1024;
/// Bytes queued for one client before senders wait (or, for streams of
/// lines and events, skip and count a resync). One frame is always let in.
const CLIENT_QUEUE_BYTES: usize = 8 * 1024 * 1024;
/// How long a connection that ends may take to write what is queued for it.
const WRITER_DRAIN: Duration = Duration::from_secs(5);
/// After a failed accept (EMFILE...), wait this long before the next one;
/// at the cap with no connection to close, look again this often.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);
/// At the cap, a connection silent (no hello yet, or idle) for this long is
/// closed to let a new one in; the newest get at least this long to speak.
const EVICT_AFTER: Duration = Duration::from_millis(250);
/// Failed accepts and refused connections are reported at most this often.
const WARN_EVERY: Duration = Duration::from_secs(10);

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
struct Front {
    space_id: String,
    server_pid: u32,
    /// The status until the supervisor publishes its own: every process as
    /// it is about to start.
    boot: Arc<crate::status::SpaceStatus>,
    /// Set once the supervisor runs.
    ctx: watch::Receiver<Option<Arc<Ctx>>>,
    /// Set once the space is down.
    gone: watch::Receiver<bool>,
    conns: Arc<Conns>,
    budget: protocol::ReadBudget,
}

impl Front {
    fn ctx_now(&self) -> Option<Arc<Ctx>> {
        self.ctx.borrow().clone()
    }

    /// The supervisor's context, waiting while it starts the processes.
    async fn ctx(&self) -> Option<Arc<Ctx>> {
        let mut rx = self.ctx.clone();
        let ctx = rx.wait_for(|c| c.is_some()).await.ok()?;
        ctx.clone()
    }

    /// Limits for a client's frames after its hello.
    fn limits(&self, idle: Option<Duration>, discard_oversized: bool) -> protocol::ReadLimits {
        protocol::ReadLimits {
            max_len: protocol::MAX_CLIENT_FRAME_LEN,
            idle,
            frame: Some(FRAME_TIMEOUT),
            budget: Some(self.budget.clone()),
            discard_oversized,
        }
    }
}

/// The status before the supervisor's first: auto-start processes pending,
/// the others idle. The command line is left out (the supervisor masks the
/// tokens in it).
fn boot_status(
    cfg: &SpaceConfig,
    resolved: &[config::ResolvedProcess],
    server_pid: u32,
    gateway_url: Option<String>,
) -> crate::status::SpaceStatus {
    use crate::status::{ParticipantStatus, ProcState, ProcessStatus, SpaceInfo, SpaceStatus};
    SpaceStatus {
        space: SpaceInfo {
            id: cfg.id.clone(),
            name: cfg.name.clone(),
            dir: cfg.dir.display().to_string(),
        },
        server_pid,
        gateway_url,
        processes: resolved
            .iter()
            .map(|rp| ProcessStatus {
                name: rp.name.clone(),
                kind: rp.kind,
                state: if rp.config.auto_start && !rp.config.disabled {
                    ProcState::Pending {
                        waiting_for: Vec::new(),
                    }
                } else {
                    ProcState::Idle
                },
                pid: None,
                started_at: None,
                restarts: 0,
                exit_code: None,
                ready: false,
                cpu_percent: None,
                rss_bytes: None,
                command: String::new(),
                cwd: rp.cwd.display().to_string(),
                history: Vec::new(),
                probe: None,
                one_shot: rp.config.one_shot,
                healthy: None,
            })
            .collect(),
        participants: cfg
            .participants
            .iter()
            .map(|p| ParticipantStatus {
                name: p.name.clone(),
                note: p.note.clone(),
            })
            .collect(),
        logging_degraded: None,
    }
}

/// The thread that serves the control socket, on a runtime of its own.
struct Control {
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Control {
    fn start(
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
    async fn stop(&mut self) {
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
enum Phase {
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
struct Conns {
    cap: usize,
    /// Streaming connections at most: the rest of the cap is kept for
    /// control clients (`status`, `down`), which can always get in by
    /// closing a silent connection.
    streaming_cap: usize,
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
    fn new(cap: usize) -> Conns {
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
struct ConnSlot {
    id: u64,
    conns: Arc<Conns>,
    kill: Arc<tokio::sync::Notify>,
}

impl ConnSlot {
    fn phase(&self) -> Option<Phase> {
        self.conns.lock().live.get(&self.id).map(|e| e.phase)
    }

    /// Enter `phase` (a streaming connection stays streaming).
    fn set(&self, phase: Phase) {
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
    fn stream(&self) -> bool {
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
    async fn evicted(&self) {
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

/// One encoded message frame; `None` if it cannot be encoded (never for
/// mew's own messages).
fn encode_msg(msg: &ServerMsg) -> Option<Vec<u8>> {
    let payload = serde_json::to_vec(msg).ok()?;
    protocol::encode_frame(protocol::KIND_MSG, &payload).ok()
}

/// Why a frame could not be queued without waiting.
pub(crate) enum TrySend {
    Full,
    Closed,
}

/// What goes to one client: encoded frames in a bounded queue (frames and
/// bytes) that one writer task drains.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Out>,
    state: Arc<OutState>,
}

struct OutState {
    queued: std::sync::atomic::AtomicUsize,
    drained: tokio::sync::Notify,
}

struct Out {
    bytes: Vec<u8>,
    written: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Outbox {
    fn start(mut wr: tokio::net::unix::OwnedWriteHalf) -> (Outbox, tokio::task::JoinHandle<()>) {
        use std::sync::atomic::Ordering;
        use tokio::io::AsyncWriteExt;
        let (tx, mut rx) = mpsc::channel::<Out>(CLIENT_QUEUE);
        let state = Arc::new(OutState {
            queued: std::sync::atomic::AtomicUsize::new(0),
            drained: tokio::sync::Notify::new(),
        });
        let st = state.clone();
        let writer = tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                let ok = wr.write_all(&out.bytes).await.is_ok();
                st.queued.fetch_sub(out.bytes.len(), Ordering::AcqRel);
                st.drained.notify_waiters();
                if !ok {
                    break;
                }
                if let Some(w) = out.written {
                    let _ = w.send(());
                }
            }
            rx.close();
            st.drained.notify_waiters();
        });
        (Outbox { tx, state }, writer)
    }

    async fn bytes(
        &self,
        bytes: Vec<u8>,
        written: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> bool {
        use std::sync::atomic::Ordering;
        let len = bytes.len();
        loop {
            let drained = self.state.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let queued = self.state.queued.load(Ordering::Acquire);
            if queued == 0 || queued + len <= CLIENT_QUEUE_BYTES || self.tx.is_closed() {
                break;
            }
            drained.await;
        }
        self.state.queued.fetch_add(len, Ordering::AcqRel);
        if self.tx.send(Out { bytes, written }).await.is_err() {
            self.state.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Queue a message (waiting while the client is behind); `false` once
    /// the connection is gone.
    pub(crate) async fn msg(&self, msg: &ServerMsg) -> bool {
        match encode_msg(msg) {
            Some(b) => self.bytes(b, None).await,
            None => false,
        }
    }

    /// Queue rendered terminal output.
    pub(crate) async fn output(&self, bytes: &[u8]) -> bool {
        match protocol::encode_frame(protocol::KIND_OUTPUT, bytes) {
            Ok(b) => self.bytes(b, None).await,
            Err(_) => false,
        }
    }

    /// Queue a message and wait until it is written to the socket: a stream
    /// where only the latest value matters (watch) holds one at a time.
    async fn msg_written(&self, msg: &ServerMsg) -> bool {
        let Some(b) = encode_msg(msg) else {
            return false;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.bytes(b, Some(tx)).await && rx.await.is_ok()
    }

    /// Queue a message if there is room now.
    fn try_msg(&self, msg: &ServerMsg) -> Result<(), TrySend> {
        use std::sync::atomic::Ordering;
        let bytes = encode_msg(msg).ok_or(TrySend::Closed)?;
        let len = bytes.len();
        let queued = self.state.queued.load(Ordering::Acquire);
        if queued > 0 && queued + len > CLIENT_QUEUE_BYTES {
            return Err(TrySend::Full);
        }
        self.state.queued.fetch_add(len, Ordering::AcqRel);
        match self.tx.try_send(Out {
            bytes,
            written: None,
        }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.state.queued.fetch_sub(len, Ordering::AcqRel);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => TrySend::Full,
                    mpsc::error::TrySendError::Closed(_) => TrySend::Closed,
                })
            }
        }
    }
}

async fn serve_client(stream: UnixStream, front: Arc<Front>, slot: ConnSlot) {
    use protocol::FrameError;
    let peer = space::check_peer(&stream);
    let (mut rd, mut wr) = stream.into_split();
    if let Err(why) = peer {
        tracing::warn!("refused a connection: {why}");
        // Tell the client why (it is waiting for our hello), then hang up.
        let bye = ServerMsg::Bye { reason: why };
        let _ = tokio::time::timeout(HELLO_TIMEOUT, protocol::write_msg(&mut wr, &bye)).await;
        return;
    }
    let mut gone = front.gone.clone();
    let hello_limits = protocol::ReadLimits {
        max_len: protocol::MAX_HELLO_LEN,
        idle: Some(HELLO_TIMEOUT),
        frame: Some(HELLO_TIMEOUT),
        budget: None,
        discard_oversized: false,
    };
    let hello = tokio::select! {
        r = tokio::time::timeout(HELLO_TIMEOUT, protocol::read_frame_limited(&mut rd, &hello_limits)) => r,
        _ = slot.evicted() => {
            tracing::debug!("closed a connection that had not said hello: too many connections");
            return;
        }
        _ = gone.wait_for(|g| *g) => return,
    };
    let hello = match hello {
        Ok(Ok(Some(f))) => f.decode::<ClientMsg>(),
        Ok(Ok(None)) => return,
        Ok(Err(FrameError::Idle(_) | FrameError::Timeout(_))) | Err(_) => {
            tracing::warn!("dropped a client that did not say hello within {HELLO_TIMEOUT:?}");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!("dropped a client before hello: {e}");
            return;
        }
    };
    let (version, mew_version, kind) = match hello {
        Ok(ClientMsg::Hello {
            version,
            mew_version,
            client,
        }) => (version, mew_version, client),
        Ok(other) => {
            tracing::warn!("dropped a client whose first message was not hello: {other:?}");
            return;
        }
        Err(e) => {
            tracing::warn!("dropped a client with a bad hello: {e}");
            return;
        }
    };
    let theirs = Versions {
        protocol: version,
        mew: mew_version,
    };
    if let Err(why) = protocol::check_hello(&theirs, &Versions::ours()) {
        let bye = ServerMsg::Bye { reason: why };
        let _ = tokio::time::timeout(HELLO_TIMEOUT, protocol::write_msg(&mut wr, &bye)).await;
        return;
    }
    let (out, writer) = Outbox::start(wr);
    let ours = Versions::ours();
    let hello = ServerMsg::Hello {
        version: ours.protocol,
        mew_version: ours.mew,
        server_pid: front.server_pid,
        space_id: front.space_id.clone(),
    };
    if out.msg(&hello).await {
        slot.set(Phase::Idle);
        tracing::debug!(?kind, "client connected");
        converse(&front, &slot, &mut rd, &out).await;
    }
    drop(out);
    // What is queued goes out, unless the client stopped reading.
    let mut writer = writer;
    if tokio::time::timeout(WRITER_DRAIN, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Requests, one after the other, until the connection or the space ends.
async fn converse(front: &Arc<Front>, slot: &ConnSlot, rd: &mut OwnedReadHalf, out: &Outbox) {
    use protocol::FrameError;
    let mut streams: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut gone = front.gone.clone();
    let mut space_gone = false;
    loop {
        // Silence is a reason to close only with nothing in flight: a
        // connection that follows, watches or waits for `down` is quiet by
        // nature.
        let idle = streams.is_empty().then_some(CONTROL_IDLE);
        let limits = front.limits(idle, false);
        // `read_frame_limited` is not cancel-safe, but a connection whose
        // space is gone (or that is closed to make room) reads nothing more.
        let frame = tokio::select! {
            f = protocol::read_frame_limited(rd, &limits) => f,
            _ = gone.wait_for(|g| *g) => {
                space_gone = true;
                break;
            }
            _ = slot.evicted() => {
                let _ = out.try_msg(&ServerMsg::Bye {
                    reason: "closed: this connection was idle and the server has too many open".into(),
                });
                break;
            }
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(FrameError::Idle(d)) => {
                tracing::info!("closed a control connection silent for {d:?}");
                let _ = out.try_msg(&ServerMsg::Bye {
                    reason: format!("closed: no request within {d:?}"),
                });
                break;
            }
            Err(e) => {
                tracing::warn!("dropped a client: {e}");
                break;
            }
        };
        let msg = match frame.decode::<ClientMsg>() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("dropped a client: {e}");
                break;
            }
        };
        if slot.phase() == Some(Phase::Idle) {
            slot.set(Phase::Busy);
        }
        match msg {
            ClientMsg::Request {
                id,
                req:
                    Request::Attach {
                        cols,
                        rows,
                        owner,
                        no_color,
                    },
            } => {
                attach(
                    front,
                    slot,
                    rd,
                    out,
                    id,
                    owner,
                    session::Attach {
                        cols,
                        rows,
                        no_color,
                    },
                )
                .await;
                break;
            }
            ClientMsg::Request { id, req } => {
                if let Some(task) = handle_request(id, req, front, slot, out).await {
                    streams.push(task);
                }
            }
            ClientMsg::Hello { .. } => {
                tracing::warn!("dropped a client: a second hello");
                break;
            }
            ClientMsg::Input { .. } | ClientMsg::Resize { .. } | ClientMsg::Detach => {
                // Only meaningful on an attached connection.
            }
        }
        if streams.is_empty() {
            slot.set(Phase::Idle);
        }
    }
    for s in streams {
        if space_gone {
            // They end with the space, after their last message.
            let _ = s.await;
        } else {
            s.abort();
        }
    }
}

/// An attached (TUI) client, until it leaves or the space is down.
async fn attach(
    front: &Arc<Front>,
    slot: &ConnSlot,
    rd: &mut OwnedReadHalf,
    out: &Outbox,
    id: u64,
    owner: bool,
    att: session::Attach,
) {
    let respond = |result: Result<ResponseBody, String>| ServerMsg::Response { id, result };
    if !slot.stream() {
        out.msg(&respond(Err(too_many_streams(front)))).await;
        return;
    }
    let Some(ctx) = front.ctx().await else {
        return;
    };
    if !out.msg(&respond(Ok(ResponseBody::Accepted))).await {
        return;
    }
    let end = session::run(ctx.clone(), rd, out.clone(), att, front.limits(None, true)).await;
    tracing::info!(?end, owner, "attached client left");
    match end {
        session::End::Detached => {
            let reason = format!(
                "detached from space \"{}\" — \"mew space attach\" to return",
                ctx.space_id
            );
            out.msg(&ServerMsg::Bye { reason }).await;
        }
        session::End::Disconnected => {
            if owner {
                // The terminal that ran `up` is gone without a detach:
                // the space does not outlive it by accident.
                tracing::info!("the owning client disconnected: stopping the space");
                ctx.handle.shutdown(false);
                let _ = ctx.down_tx.send(true);
            }
        }
        session::End::SpaceDown => {
            let exit_code = headless::first_failure(&ctx.handle.status().processes);
            out.msg(&ServerMsg::Ended { exit_code }).await;
            let reason = format!("space \"{}\" stopped", ctx.space_id);
            out.msg(&ServerMsg::Bye { reason }).await;
        }
    }
}

fn too_many_streams(front: &Front) -> String {
    format!(
        "the space server already streams to {} clients (attach, logs -f, watch); close one and try again",
        front.conns.streaming_cap
    )
}

async fn handle_request(
    id: u64,
    req: Request,
    front: &Arc<Front>,
    slot: &ConnSlot,
    out: &Outbox,
) -> Option<tokio::task::JoinHandle<()>> {
    let respond = |result: Result<ResponseBody, String>| ServerMsg::Response { id, result };
    let stopping = || "the space is shutting down".to_string();
    match req {
        Request::Status => {
            // The supervisor's last published status (never waiting for it).
            let status = match front.ctx_now() {
                Some(ctx) => ctx.handle.status(),
                None => front.boot.clone(),
            };
            let status = (*status).clone();
            out.msg(&respond(Ok(ResponseBody::Status { status }))).await;
            None
        }
        Request::Restart { names } => {
            let r = match front.ctx().await {
                Some(ctx) => ctx.handle.restart(names.clone()).await,
                None => Err(stopping()),
            };
            out.msg(&respond(r.map(|_| ResponseBody::Done { names })))
                .await;
            None
        }
        Request::Stop { names } => {
            let r = match front.ctx().await {
                Some(ctx) => ctx.handle.stop(names.clone()).await,
                None => Err(stopping()),
            };
            out.msg(&respond(r.map(|_| ResponseBody::Done { names })))
                .await;
            None
        }
        Request::Start { names } => {
            let r = match front.ctx().await {
                Some(ctx) => ctx.handle.start(names.clone()).await,
                None => Err(stopping()),
            };
            out.msg(&respond(r.map(|_| ResponseBody::Done { names })))
                .await;
            None
        }
        Request::Down { timeout_ms } => {
            // Never refused for want of room: `down` always gets through.
            let ctx = front.ctx().await?;
            let events = ctx.handle.subscribe();
            out.msg(&respond(Ok(ResponseBody::Accepted))).await;
            ctx.handle.shutdown(false);
            let _ = ctx.down_tx.send(true);
            if let Some(ms) = timeout_ms {
                let handle = ctx.handle.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    handle.shutdown(true);
                });
            }
            let out = out.clone();
            let handle = ctx.handle.clone();
            Some(tokio::spawn(async move {
                let forward = stream_events(events, out.clone(), Vec::new(), false);
                tokio::select! {
                    _ = forward => {}
                    _ = handle.wait_down() => {}
                }
                let _ = out
                    .msg(&ServerMsg::Bye {
                        reason: "the space is down".into(),
                    })
                    .await;
            }))
        }
        Request::Follow { names, .. } => {
            if !slot.stream() {
                out.msg(&respond(Err(too_many_streams(front)))).await;
                return None;
            }
            let ctx = front.ctx().await?;
            let events = ctx.handle.subscribe();
            let known: Vec<String> = ctx
                .handle
                .status()
                .processes
                .iter()
                .map(|p| p.name.clone())
                .collect();
            if let Some(msg) = crate::status::unknown_names(&names, &known) {
                out.msg(&respond(Err(msg))).await;
                return None;
            }
            out.msg(&respond(Ok(ResponseBody::Accepted))).await;
            let out = out.clone();
            let mut gone = front.gone.clone();
            Some(tokio::spawn(async move {
                tokio::select! {
                    _ = stream_events(events, out.clone(), names, true) => {}
                    _ = gone.wait_for(|g| *g) => {}
                }
                let _ = out
                    .msg(&ServerMsg::Bye {
                        reason: "the space is down".into(),
                    })
                    .await;
            }))
        }
        Request::Watch => {
            if !slot.stream() {
                out.msg(&respond(Err(too_many_streams(front)))).await;
                return None;
            }
            out.msg(&respond(Ok(ResponseBody::Accepted))).await;
            let out = out.clone();
            let front = front.clone();
            Some(tokio::spawn(async move {
                // While the processes are being started: what is about to be.
                if front.ctx_now().is_none() {
                    let status = (*front.boot).clone();
                    if !out.msg_written(&ServerMsg::Status { status }).await {
                        return;
                    }
                }
                let Some(ctx) = front.ctx().await else {
                    return;
                };
                let mut rx = ctx.handle.watch_status();
                let mut gone = front.gone.clone();
                loop {
                    let status = (**rx.borrow_and_update()).clone();
                    // One status in flight at a time: a client that reads
                    // slowly gets the latest, not a backlog.
                    if !out.msg_written(&ServerMsg::Status { status }).await {
                        return;
                    }
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { break },
                        _ = gone.wait_for(|g| *g) => break,
                    }
                }
                let _ = out
                    .msg(&ServerMsg::Bye {
                        reason: "the space is down".into(),
                    })
                    .await;
            }))
        }
        Request::Attach { .. } => None, // handled by converse
    }
}

/// Forward events to a client without ever blocking the supervisor: a client
/// that falls behind is told how much it missed (`resync`).
async fn stream_events(
    mut events: broadcast::Receiver<Event>,
    out: Outbox,
    names: Vec<String>,
    lines: bool,
) {
    let mut dropped: u64 = 0;
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                dropped += n;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let msg = match ev {
            Event::Lifecycle(event) => {
                if !names.is_empty() && !names.contains(&event.process) {
                    continue;
                }
                ServerMsg::Event { event }
            }
            Event::Line { process, at, text } => {
                if !lines || (!names.is_empty() && !names.iter().any(|n| **n == *process)) {
                    continue;
                }
                ServerMsg::Line {
                    process: process.to_string(),
                    at,
                    text: text.to_string(),
                }
            }
        };
        if dropped > 0 {
            match out.try_msg(&ServerMsg::Resync { dropped }) {
                Ok(()) => dropped = 0,
                Err(TrySend::Full) => {
                    dropped += 1;
                    continue;
                }
                Err(TrySend::Closed) => return,
            }
        }
        match out.try_msg(&msg) {
            Ok(()) => {}
            Err(TrySend::Full) => dropped += 1,
            Err(TrySend::Closed) => return,
        }
    }
}

/// The `.mew/logs/mew-server.log` path for a space's log dir.
pub fn server_log(logs_dir: &Path) -> std::path::PathBuf {
    logs_dir.join("mew-server.log")
}
