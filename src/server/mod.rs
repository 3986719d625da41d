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
use tokio::sync::{broadcast, mpsc, watch};

use crate::cli::SpaceArgs;
use crate::config::{self, ProcKind, ResolveContext, SpaceConfig};
use crate::headless::{self, FailureTracker, Printer};
use crate::protocol::{self, ClientMsg, Frame, Request, ResponseBody, ServerMsg, Versions};
use crate::space::{self, SpacePaths};
use crate::status::now_millis;
use crate::supervisor::{self, Event, Handle, Options};
use crate::sys;

/// How long a new connection may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames queued for one client before it counts as slow.
const CLIENT_QUEUE: usize = 1024;

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

/// Find a free TCP port, starting at `port`.
pub fn free_port(port: u16) -> Option<u16> {
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
                if p != configured {
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
    let listener = match space::bind_socket(&paths.socket) {
        Ok(l) => l,
        Err(e) => {
            say!("mew: cannot listen on {}: {e}", paths.socket.display());
            return 1;
        }
    };
    let listener = match listener
        .set_nonblocking(true)
        .and_then(|_| tokio::net::UnixListener::from_std(listener))
    {
        Ok(l) => l,
        Err(e) => {
            say!("mew: cannot listen on {}: {e}", paths.socket.display());
            return 1;
        }
    };
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
    };
    let space_dir = cfg.dir.clone();
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
    let (gone_tx, _) = watch::channel(false);
    let ctx = Arc::new(Ctx {
        handle: handle.clone(),
        space_id: space_id.clone(),
        ui_keys,
        notes,
        down_tx,
        gone_tx,
    });
    let accept_ctx = ctx.clone();
    // Every connection holds a clone of `conn_tx`; when the space is gone the
    // server waits until all are dropped (each client has its last frames),
    // bounded by CLIENT_DRAIN.
    let (conn_tx, mut conn_rx) = mpsc::channel::<()>(1);
    let accept = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let alive = conn_tx.clone();
                    let ctx = accept_ctx.clone();
                    tokio::spawn(async move {
                        serve_client(stream, ctx).await;
                        drop(alive);
                    });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    });
    tracing::info!(space = %space_id, pid = server_pid, "space server running");

    let (closed_tx, mut stdout_closed) = tokio::sync::oneshot::channel::<()>();
    let printer = match (&opts.headless, feed) {
        (Some(h), Some(feed)) => {
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
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
    // Clients streaming the shutdown (attached TUIs, `logs -f`, `down`) get
    // their last frames: wait until every connection has ended.
    accept.abort();
    let _ = tokio::time::timeout(CLIENT_DRAIN, conn_rx.recv()).await;
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

// ---- clients -----------------------------------------------------------------

async fn send(tx: &mpsc::Sender<Frame>, msg: &ServerMsg) -> bool {
    match Frame::msg(msg) {
        Ok(f) => tx.send(f).await.is_ok(),
        Err(_) => false,
    }
}

async fn serve_client(stream: UnixStream, ctx: Arc<Ctx>) {
    let peer = space::check_peer(&stream);
    let (mut rd, mut wr) = stream.into_split();
    if let Err(why) = peer {
        tracing::warn!("refused a connection: {why}");
        // Tell the client why (it is waiting for our hello), then hang up.
        let bye = ServerMsg::Bye { reason: why };
        let _ = tokio::time::timeout(HELLO_TIMEOUT, protocol::write_msg(&mut wr, &bye)).await;
        return;
    }
    let hello = match tokio::time::timeout(HELLO_TIMEOUT, protocol::read_frame(&mut rd)).await {
        Ok(Ok(Some(f))) => f.decode::<ClientMsg>(),
        Ok(Ok(None)) => return,
        Ok(Err(e)) => {
            tracing::warn!("dropped a client before hello: {e}");
            return;
        }
        Err(_) => {
            tracing::warn!("dropped a client that did not say hello within {HELLO_TIMEOUT:?}");
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
        let _ = protocol::write_msg(&mut wr, &ServerMsg::Bye { reason: why }).await;
        return;
    }
    let (tx, mut rx) = mpsc::channel::<Frame>(CLIENT_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            if protocol::write_frame(&mut wr, &frame).await.is_err() {
                break;
            }
        }
    });
    let ours = Versions::ours();
    let hello = ServerMsg::Hello {
        version: ours.protocol,
        mew_version: ours.mew,
        server_pid: std::process::id(),
        space_id: ctx.space_id.clone(),
    };
    if !send(&tx, &hello).await {
        return;
    }
    tracing::debug!(?kind, "client connected");
    let mut streams: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut gone = ctx.gone_tx.subscribe();
    let mut space_gone = false;
    loop {
        // `read_frame` is not cancel-safe, but a connection whose space is
        // gone reads nothing more.
        let frame = tokio::select! {
            f = protocol::read_frame(&mut rd) => f,
            _ = gone.wait_for(|g| *g) => {
                space_gone = true;
                break;
            }
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
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
                let ok = ServerMsg::Response {
                    id,
                    result: Ok(ResponseBody::Accepted),
                };
                if !send(&tx, &ok).await {
                    break;
                }
                let att = session::Attach {
                    cols,
                    rows,
                    no_color,
                };
                let end = session::run(ctx.clone(), &mut rd, tx.clone(), att).await;
                tracing::info!(?end, owner, "attached client left");
                match end {
                    session::End::Detached => {
                        let reason = format!(
                            "detached from space \"{}\" — \"mew space attach\" to return",
                            ctx.space_id
                        );
                        send(&tx, &ServerMsg::Bye { reason }).await;
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
                        send(&tx, &ServerMsg::Ended { exit_code }).await;
                        let reason = format!("space \"{}\" stopped", ctx.space_id);
                        send(&tx, &ServerMsg::Bye { reason }).await;
                    }
                }
                break;
            }
            ClientMsg::Request { id, req } => {
                if let Some(task) = handle_request(id, req, &ctx, &tx).await {
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
    }
    for s in streams {
        if space_gone {
            // They end with the space, after their last message.
            let _ = s.await;
        } else {
            s.abort();
        }
    }
    drop(tx);
    let _ = writer.await;
}

async fn handle_request(
    id: u64,
    req: Request,
    ctx: &Arc<Ctx>,
    tx: &mpsc::Sender<Frame>,
) -> Option<tokio::task::JoinHandle<()>> {
    let respond = |result: Result<ResponseBody, String>| ServerMsg::Response { id, result };
    match req {
        Request::Status => {
            let status = (*ctx.handle.status()).clone();
            send(tx, &respond(Ok(ResponseBody::Status { status }))).await;
            None
        }
        Request::Restart { names } => {
            let r = ctx.handle.restart(names.clone()).await;
            send(tx, &respond(r.map(|_| ResponseBody::Done { names }))).await;
            None
        }
        Request::Stop { names } => {
            let r = ctx.handle.stop(names.clone()).await;
            send(tx, &respond(r.map(|_| ResponseBody::Done { names }))).await;
            None
        }
        Request::Start { names } => {
            let r = ctx.handle.start(names.clone()).await;
            send(tx, &respond(r.map(|_| ResponseBody::Done { names }))).await;
            None
        }
        Request::Down { timeout_ms } => {
            let events = ctx.handle.subscribe();
            send(tx, &respond(Ok(ResponseBody::Accepted))).await;
            ctx.handle.shutdown(false);
            let _ = ctx.down_tx.send(true);
            if let Some(ms) = timeout_ms {
                let handle = ctx.handle.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    handle.shutdown(true);
                });
            }
            let tx = tx.clone();
            let handle = ctx.handle.clone();
            Some(tokio::spawn(async move {
                let forward = stream_events(events, tx.clone(), Vec::new(), false);
                tokio::select! {
                    _ = forward => {}
                    _ = handle.wait_down() => {}
                }
                let _ = send(
                    &tx,
                    &ServerMsg::Bye {
                        reason: "the space is down".into(),
                    },
                )
                .await;
            }))
        }
        Request::Follow { names, .. } => {
            let events = ctx.handle.subscribe();
            let known: Vec<String> = ctx
                .handle
                .status()
                .processes
                .iter()
                .map(|p| p.name.clone())
                .collect();
            if let Some(msg) = crate::status::unknown_names(&names, &known) {
                send(tx, &respond(Err(msg))).await;
                return None;
            }
            send(tx, &respond(Ok(ResponseBody::Accepted))).await;
            let tx = tx.clone();
            let mut gone = ctx.gone_tx.subscribe();
            Some(tokio::spawn(async move {
                tokio::select! {
                    _ = stream_events(events, tx.clone(), names, true) => {}
                    _ = gone.wait_for(|g| *g) => {}
                }
                let _ = send(
                    &tx,
                    &ServerMsg::Bye {
                        reason: "the space is down".into(),
                    },
                )
                .await;
            }))
        }
        Request::Watch => {
            send(tx, &respond(Ok(ResponseBody::Accepted))).await;
            let tx = tx.clone();
            let mut rx = ctx.handle.watch_status();
            let mut gone = ctx.gone_tx.subscribe();
            Some(tokio::spawn(async move {
                loop {
                    let status = (**rx.borrow_and_update()).clone();
                    if !send(&tx, &ServerMsg::Status { status }).await {
                        return;
                    }
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { break },
                        _ = gone.wait_for(|g| *g) => break,
                    }
                }
                let _ = send(
                    &tx,
                    &ServerMsg::Bye {
                        reason: "the space is down".into(),
                    },
                )
                .await;
            }))
        }
        Request::Attach { .. } => None, // handled by serve_client
    }
}

/// Forward events to a client without ever blocking the supervisor: a client
/// that falls behind is told how much it missed (`resync`).
async fn stream_events(
    mut events: broadcast::Receiver<Event>,
    tx: mpsc::Sender<Frame>,
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
            match Frame::msg(&ServerMsg::Resync { dropped }) {
                Ok(f) => match tx.try_send(f) {
                    Ok(()) => dropped = 0,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped += 1;
                        continue;
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                },
                Err(_) => return,
            }
        }
        let Ok(frame) = Frame::msg(&msg) else {
            continue;
        };
        match tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => dropped += 1,
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        }
    }
}

/// The `.mew/logs/mew-server.log` path for a space's log dir.
pub fn server_log(logs_dir: &Path) -> std::path::PathBuf {
    logs_dir.join("mew-server.log")
}
