//! Start-up and shutdown of the space server: from a loaded config to a
//! running space (lock, crash recovery, port, tokens, FIFOs, socket, the
//! control thread, the supervisor), the main loop until the space is down,
//! and what is removed at the end.

use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use tokio::sync::watch;

use super::conns::{Control, Front};
use super::state_file::StateWriter;
use super::{Ctx, HeadlessOptions, ServeOptions};
use crate::config::load_cli::format_diagnostic;
use crate::config::{self, ResolveContext, SpaceConfig};
use crate::headless::{self, FailureTracker, Printer};
use crate::recovery::{lock_space, previous_server_message, recover};
use crate::signals::Signals;
use crate::space::{self, SpacePaths};
use crate::status::now_millis;
use crate::supervisor::{self, Handle, Options};

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

pub(super) fn resolve_context(
    cfg: &SpaceConfig,
    paths: &SpacePaths,
    port: u16,
) -> std::io::Result<ResolveContext> {
    let tokens = space::participant_tokens(cfg, &paths.tokens_dir)?;
    Ok(ResolveContext { port, tokens })
}

pub(super) async fn serve(cfg: SpaceConfig, opts: ServeOptions) -> u8 {
    // Handle SIGINT/SIGTERM/SIGHUP before anything is spawned: a signal that
    // arrives while the first processes start must stop them, not kill the
    // server by the default action and orphan them.
    let mut signals = Signals::new();
    let Prepared {
        paths,
        lock,
        port,
        resolved,
        warnings,
        fifos,
        listener,
        run_id,
        server_pid,
    } = match prepare(&cfg, &opts) {
        Ok(p) => p,
        Err(why) => {
            say!("{why}");
            return 1;
        }
    };
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
    let notes = space_notes(&cfg, &warnings);
    let space_dir = cfg.dir.clone();
    // The control socket is served from its own thread, started before the
    // supervisor: starting thousands of processes (or anything else the
    // supervisor's thread is busy with) never keeps a client waiting for its
    // hello or its status. Until the supervisor has published a status,
    // `status` answers with the processes about to start.
    let (ctx_tx, ctx_rx) = watch::channel(None);
    let (gone_tx, gone_rx) = watch::channel(false);
    let boot = boot_status(&cfg, &resolved, server_pid, gateway_url.clone());
    let front = Arc::new(Front::new(
        space_id.clone(),
        server_pid,
        boot,
        ctx_rx,
        gone_rx,
    ));
    let mut control = match Control::start(listener, front) {
        Ok(c) => c,
        Err(e) => {
            say!("mew: cannot serve {}: {e}", paths.socket.display());
            return 1;
        }
    };
    // The server's own participant: the space view of every attached TUI
    // (it joins when the first one attaches, or now for `--envelopes`).
    let space_view = space_view(&cfg, port);
    let reload_cfg = cfg.clone();
    let watched = resolved.clone();
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
    let watching = super::part::watch(&handle, &watched);
    // A process under `watch:` that ended is started again by a change:
    // `--no-tui` does not end the space because everything ended.
    let keep_up = watching.any_at_start;
    drop(watched);
    let state = StateWriter::start(
        handle.clone(),
        paths.state.clone(),
        run_id.clone(),
        server_pid,
    );
    let _ = space::register(&space::RegistryEntry {
        id: space_id.clone(),
        dir: space_dir.clone(),
        pid: server_pid,
        socket: paths.socket.clone(),
        started_at: now_millis(),
    });
    let (down_tx, down_rx) = watch::channel(false);
    let devloop = Arc::new(super::reload::Devloop::new(
        reload_cfg,
        paths.clone(),
        port,
        handle.clone(),
        notes,
        opts.part.clone(),
        watching.control(),
    ));
    if opts.watch_config {
        tokio::spawn(super::reload::watch_config(devloop.clone()));
    }
    let ctx = Arc::new(Ctx {
        handle: handle.clone(),
        space_id: space_id.clone(),
        ui_keys,
        down_tx,
        gone_tx,
        space: space_view,
        devloop,
    });
    let _ = ctx_tx.send(Some(ctx.clone()));
    tracing::info!(space = %space_id, pid = server_pid, "space server running");

    let (closed_tx, mut stdout_closed) = tokio::sync::oneshot::channel::<()>();
    let printer = match (&opts.headless, feed) {
        (Some(h), Some(feed)) => Some(start_printer(
            h,
            feed,
            &ctx,
            sink.as_ref(),
            names,
            closed_tx,
        )),
        _ => {
            drop(closed_tx);
            None
        }
    };
    let code = until_down(
        &mut signals,
        &handle,
        &ctx,
        opts.headless.as_ref(),
        &mut stdout_closed,
        down_rx,
        keep_up,
    )
    .await;
    watching.stop();
    let _ = ctx.gone_tx.send(true);
    if let Some(sink) = sink {
        sink.close();
    }
    if let Some(t) = printer {
        let _ = tokio::task::spawn_blocking(move || t.join()).await;
    }
    state.close();
    crate::recovery::remove_socket(&paths);
    let _ = space::unregister(&space_dir);
    remove_fifos(&space_dir, &fifos);
    // Clients streaming the shutdown (attached TUIs, `logs -f`, `down`) get
    // their last frames: the control thread stops accepting and ends once
    // every connection has (at most CLIENT_DRAIN).
    control.stop().await;
    drop(lock);
    code.unwrap_or(0)
}

/// The server's own participant: the space view of every attached TUI
/// (it joins when the first one attaches, or at once for `--envelopes`).
fn space_view(cfg: &SpaceConfig, port: u16) -> Option<Arc<crate::participant::observer::Plan>> {
    match crate::participant::observer::Plan::new(cfg, port) {
        Ok(p) => {
            tracing::info!("the space view will join as {}", p.participant());
            Some(Arc::new(p))
        }
        Err(why) => {
            tracing::info!("no space view: {why}");
            None
        }
    }
}

/// `--no-tui`: the line printer on its own thread (and, with
/// `--envelopes`, the space view's envelopes as lines of it). `closed` is
/// told when stdout's reader goes away.
fn start_printer(
    h: &HeadlessOptions,
    feed: supervisor::LineFeed,
    ctx: &Ctx,
    sink: Option<&supervisor::LineSink>,
    mut names: Vec<String>,
    closed: tokio::sync::oneshot::Sender<()>,
) -> std::thread::JoinHandle<()> {
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    if h.envelopes {
        match (&ctx.space, sink) {
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
    std::thread::spawn(move || printer.run(feed, std::io::stdout(), Some(closed)))
}

/// What the TUI shows of the config: description, warnings, stop timeouts.
pub(super) fn space_notes(
    cfg: &SpaceConfig,
    warnings: &[config::Diagnostic],
) -> crate::tui::SpaceNotes {
    crate::tui::SpaceNotes {
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
    }
}

/// The server's life once everything runs: until the space is down (asked
/// by a client, a signal, a closed stdout, or, with the line printer, the
/// processes ending as `--exit-code-from`, `--abort-on-exit` or
/// `--exit-on-failure` say; `keep_up`: not because every process ended,
/// as a change under `watch:` starts them again). Returns the exit code
/// decided on the way.
async fn until_down(
    signals: &mut Signals,
    handle: &Handle,
    ctx: &Ctx,
    headless: Option<&HeadlessOptions>,
    stdout_closed: &mut tokio::sync::oneshot::Receiver<()>,
    mut down_rx: watch::Receiver<bool>,
    keep_up: bool,
) -> Option<u8> {
    let mut stdout_open = headless.is_some();
    let mut code: Option<u8> = None;
    let mut interrupts = 0;
    let mut status_rx = handle.watch_status();
    let mut tracker = FailureTracker::default();
    let exit_on_failure = headless.is_some_and(|h| h.exit_on_failure);
    let mut shutting_down = false;
    let mut down_done = Box::pin(wait_down_when(handle.clone(), ctx.down_tx.subscribe()));
    // Stop the space (gracefully, or at once), and say so to the clients.
    let stop = |force: bool| {
        handle.shutdown(force);
        let _ = ctx.down_tx.send(true);
    };
    loop {
        tokio::select! {
            sig = signals.recv() => {
                interrupts += 1;
                if code.is_none() {
                    code = Some(128 + sig as u8);
                }
                shutting_down = true;
                stop(interrupts > 1);
            }
            changed = status_rx.changed() => {
                if changed.is_err() { break; }
                let status = status_rx.borrow_and_update().clone();
                if let Some(h) = headless.filter(|_| !shutting_down) {
                    let newly = tracker.observe(&status.processes, exit_on_failure);
                    let ended = if let Some((name, c)) = headless::ended_for(&status.processes, h.exit_code_from.as_deref(), h.abort_on_exit) {
                        tracing::info!("{name} ended: stopping the space");
                        Some(c)
                    } else if exit_on_failure && let Some((name, c)) = newly {
                        tracing::info!("{name} failed for good: stopping the space");
                        Some(c)
                    } else if !keep_up && headless::all_ended(&status.processes) {
                        Some(tracker.first().map_or(0, |(_, c)| *c))
                    } else {
                        None
                    };
                    if let Some(c) = ended {
                        code = Some(c.clamp(0, 255) as u8);
                        shutting_down = true;
                        stop(false);
                    }
                }
            }
            r = &mut *stdout_closed, if stdout_open => {
                stdout_open = false;
                if r.is_ok() {
                    // `up --no-tui | head -1`: the reader is gone. Stop the
                    // space cleanly and exit as a killed writer would (141).
                    tracing::info!("stdout was closed: stopping the space");
                    if code.is_none() {
                        code = Some(128 + libc::SIGPIPE as u8);
                    }
                    shutting_down = true;
                    stop(false);
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
    code
}

/// What [`prepare`] made ready for the space to start.
struct Prepared {
    paths: SpacePaths,
    /// Held until the server ends.
    lock: space::SpaceLock,
    /// The gateway's port (a free one).
    port: u16,
    resolved: Vec<config::ResolvedProcess>,
    /// Found while resolving (said already).
    warnings: Vec<config::Diagnostic>,
    fifos: Vec<config::FifoSpec>,
    listener: std::os::unix::net::UnixListener,
    run_id: String,
    server_pid: u32,
}

/// Everything before the first process: the run dir and the lock (what a
/// crashed predecessor left is killed), the gateway's port, the tokens, the
/// resolved processes, the log dir, the FIFOs, the socket. `Err`: what to
/// say before exiting 1 (nothing has started).
fn prepare(cfg: &SpaceConfig, opts: &ServeOptions) -> Result<Prepared, String> {
    let paths =
        SpacePaths::new(&cfg.dir).map_err(|e| format!("mew: {}: {e}", cfg.dir.display()))?;
    paths.ensure_run_dir().map_err(|e| format!("mew: {e}"))?;
    let mut lock = match lock_space(&paths) {
        Ok(l) => l,
        Err(space::LockError::Held { pid, .. }) => {
            let pid = pid.map_or("unknown pid".to_string(), |p| format!("pid {p}"));
            return Err(format!(
                "mew: space \"{}\" is already running ({pid}) — use \"mew space attach\" or \"mew space down\"",
                cfg.id
            ));
        }
        Err(e) => return Err(format!("mew: cannot lock the space: {e}")),
    };
    if let Some((pid, killed)) = recover(&paths, &lock) {
        say!("{}", previous_server_message(pid, killed));
    }
    let port = gateway_port(cfg, opts)?;
    let ctx = resolve_context(cfg, &paths, port).map_err(|e| {
        format!(
            "mew: cannot prepare tokens in {}: {e}",
            paths.tokens_dir.display()
        )
    })?;
    let (mut resolved, warnings) = config::resolve(cfg, &ctx);
    super::part::apply(cfg, &mut resolved, &opts.part).map_err(|e| format!("mew: {e}"))?;
    for w in cfg.warnings.iter().chain(warnings.iter()) {
        say!("{}", format_diagnostic("warning", w));
    }
    if let Err(e) = crate::logs::create_log_dir(&cfg.logs.dir) {
        say!(
            "mew: cannot create {}: {e} (logging is degraded)",
            cfg.logs.dir.display()
        );
    }
    for note in crate::logs::link_upstream_logs(cfg) {
        say!("mew: {note}");
    }
    if let Err(e) = make_fifos(cfg) {
        remove_fifos(&cfg.dir, &cfg.fifos);
        return Err(format!("mew: {e}"));
    }
    let listen_failed =
        |e: std::io::Error| format!("mew: cannot listen on {}: {e}", paths.socket.display());
    let listener = space::bind_socket(&paths.socket).map_err(listen_failed)?;
    listener.set_nonblocking(true).map_err(listen_failed)?;
    paths
        .record_socket()
        .map_err(|e| format!("mew: cannot record the socket path: {e}"))?;
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
    Ok(Prepared {
        paths,
        lock,
        port,
        resolved,
        warnings,
        fifos: cfg.fifos.clone(),
        listener,
        run_id,
        server_pid,
    })
}

/// The gateway's port: the one asked for (or configured), else the next
/// free one; without a gateway, the configured one as is.
fn gateway_port(cfg: &SpaceConfig, opts: &ServeOptions) -> Result<u16, String> {
    let configured = opts.port.unwrap_or(cfg.gateway_port);
    if cfg.gateway().is_none() {
        return Ok(configured);
    }
    let p = free_port(configured).ok_or_else(|| {
        format!(
            "mew: no free port from {configured} to {}",
            configured.saturating_add(100)
        )
    })?;
    if p != configured && configured != 0 {
        say!("mew: port {configured} is taken; the gateway uses port {p}");
    }
    Ok(p)
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
            .map(|rp| {
                let state = if rp.config.auto_start && !rp.config.disabled {
                    ProcState::Pending {
                        waiting_for: Vec::new(),
                    }
                } else {
                    ProcState::Idle
                };
                ProcessStatus {
                    cwd: rp.cwd.display().to_string(),
                    one_shot: rp.config.one_shot,
                    ..ProcessStatus::new(&rp.name, rp.kind, state)
                }
            })
            .collect(),
        participants: cfg
            .participants
            .iter()
            .map(ParticipantStatus::from)
            .collect(),
        logging_degraded: None,
    }
}
