//! `mew gateway start`: the MEW protocol gateway (v0.4), HTTP + WebSocket.
//!
//! A process of the space like any other (`mew space up` runs it as the
//! `gateway` process when space.yaml has no `gateway:` command), and a
//! command that works alone. It never spawns participants: mew's server
//! does. See docs/gateway.md for the behaviour and every choice made where
//! the upstream gateway and the spec differ.
//!
//! - `config`: what the gateway reads from space.yaml (tokens, capabilities, output logs);
//! - `capability`: the pattern matcher (pure);
//! - `hub`: spaces, participants, streams, grants, invites: every rule (no sockets);
//! - `journal`: the JSONL logs and output logs, written by one thread;
//! - `http`: axum routes, the accept loop's service, the WebSocket loop.

pub(crate) mod capability;
pub(crate) mod config;
pub(crate) mod http;
pub(crate) mod hub;
pub(crate) mod journal;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::cmd::Error;

/// Time a client has to send its request headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Concurrent TCP connections at most (also bounded by the descriptor limit).
const MAX_CONNECTIONS: usize = 4096;

#[derive(Clone, Debug)]
pub struct GatewayOptions {
    pub port: u16,
    pub space_config: PathBuf,
    /// `debug`, `info`, `warn` or `error`.
    pub log_level: String,
    /// Where the JSONL logs go; default `<space>/.mew/logs`.
    pub log_dir: Option<PathBuf>,
    /// Addresses to listen on; default loopback (127.0.0.1 and ::1).
    pub host: Option<IpAddr>,
}

/// The space directory of a config file: the one above `.mew/` when the file
/// is inside it, else the file's own directory.
pub(crate) fn space_dir_of(config: &Path) -> PathBuf {
    let parent = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if parent.file_name().is_some_and(|n| n == ".mew") {
        parent.parent().unwrap_or(parent).to_path_buf()
    } else {
        parent.to_path_buf()
    }
}

const WHO: &str = "mew gateway";

/// `mew gateway start`; a failure to start is `mew gateway: <why>`.
pub fn run(opts: GatewayOptions) -> crate::cmd::Outcome {
    init_tracing(&opts.log_level);
    let config_path =
        std::path::absolute(&opts.space_config).unwrap_or_else(|_| opts.space_config.clone());
    let space_dir = space_dir_of(&config_path);
    let tokens_dir = space_dir.join(".mew").join("tokens");
    let log_dir = opts
        .log_dir
        .clone()
        .unwrap_or_else(|| space_dir.join(".mew").join("logs"));
    let cfg = if config_path.is_file() {
        let mut token_for = |id: &str| {
            crate::space::load_or_create_token(&tokens_dir, id)
                .map_err(|e| format!("the token of participant {id}: {e}"))
        };
        match config::load(
            &config_path,
            &space_dir,
            &|k| std::env::var(k).ok(),
            &mut token_for,
        ) {
            Ok(c) => c,
            Err(e) => return Err(Error::said(WHO, 2, e.to_string())),
        }
    } else {
        eprintln!(
            "mew gateway: no space config at {} (running with no participants; every join will be refused)",
            config_path.display()
        );
        config::GatewayConfig::empty()
    };
    let journal = journal::Journal::start(log_dir.clone(), cfg.logging).map_err(|e| {
        Error::said(
            WHO,
            1,
            format!(
                "cannot prepare the log directory {}: {e}",
                log_dir.display()
            ),
        )
    })?;
    let runtime = crate::participant::command_runtime(WHO)?;
    let store_dir = tokens_dir.clone();
    let hub_opts = hub::HubOptions {
        port: opts.port,
        store_token: Box::new(move |id, token| store_invited_token(&store_dir, id, token)),
    };
    let participants = cfg.participants.len();
    let space_id = cfg.space_id.clone();
    let flusher = journal.clone();
    let outcome = runtime.block_on(async move {
        let listeners = bind(opts.host, opts.port)
            .await
            .map_err(|e| Error::said(WHO, 1, format!("cannot listen on port {}: {e}", opts.port)))?;
        let hub = Arc::new(Mutex::new(hub::Hub::new(cfg, journal.clone(), hub_opts)));
        if let Ok(mut h) = hub.lock() {
            h.auto_connect();
            h.flush_journal();
        }
        let addrs: Vec<String> = listeners.iter().filter_map(|l| l.local_addr().ok()).map(|a| a.to_string()).collect();
        tracing::info!(
            "MEW gateway for space {space_id} ({participants} participants) listening on {}; WebSocket on any path, health at /health",
            addrs.join(", ")
        );
        let port = listeners.first().and_then(|l| l.local_addr().ok()).map_or(opts.port, |a| a.port());
        if let Ok(mut h) = hub.lock() {
            h.set_port(port);
        }
        {
            // A closed stdout must not take the gateway down (println! would panic).
            use std::io::Write as _;
            let mut out = std::io::stdout();
            let _ = writeln!(out, "Gateway listening on port {port}").and_then(|()| out.flush());
        }
        let limit = Arc::new(Semaphore::new(connection_cap()));
        let state = http::AppState {
            hub: hub.clone(),
            sockets: limit.clone(),
        };
        let app = http::router(state);
        let mut accepts = Vec::new();
        for l in listeners {
            accepts.push(tokio::spawn(accept_loop(l, app.clone(), limit.clone())));
        }
        shutdown_signal().await;
        tracing::info!("shutting down");
        for a in &accepts {
            a.abort();
        }
        if let Ok(mut h) = hub.lock() {
            h.close_all();
        }
        // Let connections send their close frames (bounded).
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(ExitCode::SUCCESS)
    });
    runtime.shutdown_timeout(Duration::from_secs(1));
    flusher.sync();
    outcome
}

fn init_tracing(level: &str) {
    let level = match level {
        "debug" | "info" | "warn" | "error" | "trace" => level,
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stdout)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

/// Write an invited participant's token file (0600). A file left by an
/// earlier gateway run (invites last for a gateway's life) is replaced
/// atomically: written beside it, never through a symlink, then renamed.
fn store_invited_token(dir: &Path, id: &str, token: &str) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    crate::space::create_private_dir(dir).map_err(|e| e.to_string())?;
    let path = dir.join(format!("{id}.token"));
    let mut tag = [0u8; 6];
    let _ = getrandom::fill(&mut tag);
    let tag: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = dir.join(format!(".{id}.token.{tag}"));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(token.as_bytes()).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("{}: {e}", path.display()));
    }
    Ok(())
}

/// Descriptors are the real bound: keep a margin for logs and the runtime.
fn connection_cap() -> usize {
    let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    soft.saturating_sub(64).clamp(16, MAX_CONNECTIONS)
}

async fn bind(host: Option<IpAddr>, port: u16) -> std::io::Result<Vec<TcpListener>> {
    let mut out = Vec::new();
    match host {
        Some(h) => out.push(TcpListener::bind(SocketAddr::new(h, port)).await?),
        None => {
            let v4 =
                TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)).await?;
            // ::1 too, on the same port, when the machine has IPv6 (`localhost`
            // may resolve to it first). Port 0: the one the kernel gave v4.
            let port = v4.local_addr()?.port();
            out.push(v4);
            if let Ok(l) =
                TcpListener::bind(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)).await
            {
                out.push(l);
            }
        }
    }
    Ok(out)
}

async fn accept_loop(listener: TcpListener, app: axum::Router, limit: Arc<Semaphore>) {
    loop {
        let (stream, _peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: wait a little rather than spin.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(
                "connection refused: {} connections already open",
                MAX_CONNECTIONS.min(connection_cap())
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let _ = conn.await;
            drop(permit);
        });
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = hup.recv() => {}
    }
}
