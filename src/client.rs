//! The client side of the socket: `status`, `logs`, `restart`, `stop`,
//! `start`, `down`, `ls`, and starting a background server (`up -d`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::config::SpaceConfig;
use crate::protocol::{self, ClientKind, ClientMsg, Request, ResponseBody, ServerMsg, Versions};
use crate::space::{self, SpacePaths};
use crate::status::{Millis, ProcState, SpaceStatus, now_millis};
use crate::sys;

/// Exit code when the space is not running.
pub const NOT_RUNNING: u8 = 3;

/// A connected, greeted client.
pub struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    next_id: u64,
    pub server_pid: u32,
    pub space_id: String,
}

#[derive(Debug)]
pub enum ConnectError {
    /// No server answers (no socket, or a stale one).
    NotRunning,
    /// A server answered but the conversation failed.
    Failed(String),
    /// The run dir or the server is not this user's: nothing was said to
    /// it (a planted socket must never see a keystroke or draw a byte).
    Unsafe(String),
}

impl ConnectError {
    /// The message for the user, when there is one to print as is.
    fn why(&self) -> Option<&str> {
        match self {
            ConnectError::NotRunning => None,
            ConnectError::Failed(w) | ConnectError::Unsafe(w) => Some(w),
        }
    }
}

/// The run dir (and the directory of an external socket) must be ours and
/// private before anything in it is believed, and the server at the other
/// end must run as us (or root), like tmux: in a shared, group-writable
/// project another member could otherwise replace `.mew/run` with her own
/// and put her server in front of the user's terminal.
fn trusted_socket(space_dir: &Path) -> Result<PathBuf, ConnectError> {
    let paths = SpacePaths::new(space_dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            ConnectError::Failed(format!(
                "{}: permission denied (the space belongs to another user)",
                space_dir.display()
            ))
        } else {
            ConnectError::NotRunning
        }
    })?;
    match std::fs::symlink_metadata(&paths.run_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConnectError::NotRunning);
        }
        _ => {}
    }
    let refuse = |e: std::io::Error| {
        ConnectError::Unsafe(format!("{e}; refusing to talk to the server it names"))
    };
    space::check_private_dir(&paths.run_dir).map_err(refuse)?;
    let socket = space::socket_path_for(space_dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            ConnectError::Failed(e.to_string())
        } else {
            ConnectError::NotRunning
        }
    })?;
    if !socket.starts_with(&paths.run_dir)
        && let Some(parent) = socket.parent()
    {
        space::check_private_dir(parent).map_err(refuse)?;
    }
    Ok(socket)
}

impl Conn {
    pub async fn connect(space_dir: &Path, kind: ClientKind) -> Result<Conn, ConnectError> {
        // Permission denied means the space exists but is not ours: saying
        // "not running" would send the user the wrong way.
        let denied = |e: std::io::Error, what: &Path| {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                ConnectError::Failed(format!(
                    "{}: permission denied (the space belongs to another user)",
                    what.display()
                ))
            } else {
                ConnectError::NotRunning
            }
        };
        let socket = trusted_socket(space_dir)?;
        let stream = UnixStream::connect(&socket)
            .await
            .map_err(|e| denied(e, &socket))?;
        match space::peer_uid(&stream) {
            Ok(uid) if uid == nix::unistd::geteuid().as_raw() || uid == 0 => {}
            Ok(uid) => {
                return Err(ConnectError::Unsafe(format!(
                    "the server on {} runs as uid {uid}, not as you; refusing to talk to it",
                    socket.display()
                )));
            }
            Err(e) => {
                return Err(ConnectError::Unsafe(format!(
                    "cannot check who runs the server on {}: {e}",
                    socket.display()
                )));
            }
        }
        let (mut rd, mut wr) = stream.into_split();
        let ours = Versions::ours();
        let hello = ClientMsg::Hello {
            version: ours.protocol,
            mew_version: ours.mew.clone(),
            client: kind,
        };
        // A server that refuses us (another uid) says why and closes, maybe
        // before our hello is written: read its answer even if writing failed.
        let sent = protocol::write_msg(&mut wr, &hello).await;
        let reply = tokio::time::timeout(Duration::from_secs(10), protocol::read_frame(&mut rd))
            .await
            .map_err(|_| {
                ConnectError::Failed("the space server did not answer within 10s".into())
            })?;
        if let Err(e) = sent
            && !matches!(&reply, Ok(Some(_)))
        {
            return Err(ConnectError::Failed(format!(
                "cannot talk to the space server: {e}"
            )));
        }
        match reply {
            Ok(Some(f)) => match f.decode::<ServerMsg>() {
                Ok(ServerMsg::Hello {
                    version,
                    mew_version,
                    server_pid,
                    space_id,
                }) => {
                    let theirs = Versions {
                        protocol: version,
                        mew: mew_version,
                    };
                    protocol::check_hello(&ours, &theirs).map_err(ConnectError::Failed)?;
                    Ok(Conn {
                        rd,
                        wr,
                        next_id: 1,
                        server_pid,
                        space_id,
                    })
                }
                Ok(ServerMsg::Bye { reason }) => Err(ConnectError::Failed(reason)),
                Ok(other) => Err(ConnectError::Failed(format!(
                    "unexpected answer: {other:?}"
                ))),
                Err(e) => Err(ConnectError::Failed(e.to_string())),
            },
            Ok(None) => Err(ConnectError::NotRunning),
            Err(e) => Err(ConnectError::Failed(e.to_string())),
        }
    }

    pub async fn send(&mut self, msg: &ClientMsg) -> Result<(), String> {
        protocol::write_msg(&mut self.wr, msg)
            .await
            .map_err(|e| format!("lost the space server: {e}"))
    }

    /// Split into its halves (for a client that reads and writes at once).
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        (self.rd, self.wr)
    }

    pub async fn recv(&mut self) -> Result<Option<ServerMsg>, String> {
        match protocol::read_frame(&mut self.rd).await {
            Ok(Some(f)) => f.decode::<ServerMsg>().map(Some).map_err(|e| e.to_string()),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Send a request and wait for its response (skipping stream messages).
    pub async fn request(&mut self, req: Request) -> Result<ResponseBody, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&ClientMsg::Request { id, req }).await?;
        loop {
            match self.recv().await? {
                Some(ServerMsg::Response { id: rid, result }) if rid == id => return result,
                Some(ServerMsg::Bye { reason }) => return Err(reason),
                Some(_) => continue,
                None => return Err("the space server closed the connection".into()),
            }
        }
    }

    pub async fn status(&mut self) -> Result<SpaceStatus, String> {
        match self.request(Request::Status).await? {
            ResponseBody::Status { status } => Ok(status),
            other => Err(format!("unexpected answer: {other:?}")),
        }
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mew: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    }
}

fn not_running(space_dir: &Path) -> ExitCode {
    eprintln!(
        "mew: the space in {} is not running (start it with \"mew space up\")",
        space_dir.display()
    );
    ExitCode::from(NOT_RUNNING)
}

async fn connect_or_exit(space_dir: &Path, kind: ClientKind) -> Result<Conn, ExitCode> {
    match Conn::connect(space_dir, kind).await {
        Ok(c) => Ok(c),
        Err(ConnectError::NotRunning) => Err(not_running(space_dir)),
        Err(e) => {
            eprintln!("mew: {}", e.why().unwrap_or_default());
            Err(ExitCode::FAILURE)
        }
    }
}

// ---- status ------------------------------------------------------------------

pub fn status(space_dir: &Path, json: bool) -> ExitCode {
    runtime().block_on(async {
        let mut conn = match connect_or_exit(space_dir, ClientKind::Control).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        match conn.status().await {
            Ok(status) => {
                if json {
                    println!("{}", status_json(&status));
                } else {
                    print!("{}", status_table(&status, now_millis()));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("mew: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// The documented, stable JSON shape of `status --json` (docs/cli.md).
pub fn status_json(s: &SpaceStatus) -> String {
    let now = now_millis();
    let processes: Vec<serde_json::Value> = s
        .processes
        .iter()
        .map(|p| {
            let uptime = match (&p.state, p.started_at) {
                (st, Some(t)) if st.is_alive() => Some(now.saturating_sub(t) / 1000),
                _ => None,
            };
            serde_json::json!({
                "name": p.name,
                "kind": p.kind.as_str(),
                "state": p.state.name(),
                "detail": p.state.describe(now),
                "pid": p.pid,
                "restarts": p.restarts,
                "exit_code": p.exit_code,
                "ready": p.ready,
                "healthy": p.healthy,
                "uptime_s": uptime,
                "cpu_percent": p.cpu_percent,
                "rss_bytes": p.rss_bytes,
                "command": p.command,
            })
        })
        .collect();
    let participants: Vec<serde_json::Value> = s
        .participants
        .iter()
        .map(|p| serde_json::json!({"name": p.name, "note": p.note}))
        .collect();
    let doc = serde_json::json!({
        "space": {"id": s.space.id, "name": s.space.name, "dir": s.space.dir},
        "server_pid": s.server_pid,
        "gateway_url": s.gateway_url,
        "logging_degraded": s.logging_degraded,
        "processes": processes,
        "participants": participants,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The STATE column at most: a long failure reason must not widen the table
/// past a terminal (`status --json` has it whole, in `detail`).
const STATE_WIDTH: usize = 40;

/// `s` cut to `max` characters, with `…` when something was cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The human status table.
pub fn status_table(s: &SpaceStatus, now: Millis) -> String {
    let mut out = String::new();
    out.push_str(&format!("space {} ({})", s.space.id, s.space.dir));
    if let Some(url) = &s.gateway_url {
        out.push_str(&format!("  gateway {url}"));
    }
    out.push_str(&format!("  server pid {}\n", s.server_pid));
    if let Some(d) = &s.logging_degraded {
        out.push_str(&format!("logging degraded: {d}\n"));
    }
    let header = [
        "NAME", "KIND", "STATE", "PID", "UPTIME", "RESTARTS", "EXIT", "READY", "CPU", "RSS",
    ];
    let mut rows: Vec<[String; 10]> = Vec::new();
    for p in &s.processes {
        let uptime = match (&p.state, p.started_at) {
            (st, Some(t)) if st.is_alive() => crate::human::uptime(now.saturating_sub(t) / 1000),
            _ => "-".into(),
        };
        rows.push([
            p.name.clone(),
            p.kind.as_str().into(),
            clip(&p.state.describe(now), STATE_WIDTH),
            p.pid.map_or("-".into(), |x| x.to_string()),
            uptime,
            p.restarts.to_string(),
            p.exit_code.map_or("-".into(), |c| c.to_string()),
            if p.ready { "yes".into() } else { "no".into() },
            p.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%")),
            p.rss_bytes.map_or("-".into(), crate::human::size_compact),
        ]);
    }
    for p in &s.participants {
        rows.push([
            p.name.clone(),
            "participant".into(),
            clip(&format!("no process ({})", p.note), STATE_WIDTH),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:w$}  "));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&header.map(String::from)));
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

// ---- control -----------------------------------------------------------------

pub fn control(space_dir: &Path, req: Request, verb: &str) -> ExitCode {
    runtime().block_on(async {
        let mut conn = match connect_or_exit(space_dir, ClientKind::Control).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let asked = match &req {
            Request::Restart { names } | Request::Stop { names } | Request::Start { names } => {
                names.clone()
            }
            _ => Vec::new(),
        };
        if !asked.is_empty() {
            // A usage error, like `logs` with an unknown name: exit 2.
            let known: Vec<String> = match conn.status().await {
                Ok(s) => s.processes.into_iter().map(|p| p.name).collect(),
                Err(e) => {
                    eprintln!("mew: {e}");
                    return ExitCode::FAILURE;
                }
            };
            if let Some(msg) = crate::status::unknown_names(&asked, &known) {
                eprintln!("mew: {msg}");
                return ExitCode::from(2);
            }
        }
        match conn.request(req).await {
            Ok(ResponseBody::Done { names }) => {
                if names.is_empty() {
                    println!("{verb}: all processes");
                } else {
                    println!("{verb}: {}", names.join(", "));
                }
                ExitCode::SUCCESS
            }
            Ok(_) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("mew: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

// ---- down --------------------------------------------------------------------

/// `patience`: how long the server may stay silent (and then take to exit)
/// before `down` takes it for hung: it is then killed, and what it left is
/// cleaned up as after a crash. `down` never reports "down" while the server
/// still runs.
pub fn down(space_dir: &Path, timeout: Option<Duration>, patience: Duration) -> ExitCode {
    runtime().block_on(async {
        let mut conn = match Conn::connect(space_dir, ClientKind::Control).await {
            Ok(c) => c,
            Err(ConnectError::NotRunning) => return down_without_server(space_dir).await,
            Err(ConnectError::Unsafe(why)) => {
                eprintln!("mew: {why}");
                return ExitCode::FAILURE;
            }
            Err(ConnectError::Failed(why)) => {
                // A server that holds the lock but does not answer (stopped,
                // wedged) is killed: `down` means nothing of the space runs after.
                let pid = SpacePaths::new(space_dir)
                    .ok()
                    .and_then(|p| space::read_lock_info(&p))
                    .map(|i| i.pid)
                    .filter(|&p| server_alive(p));
                let Some(pid) = pid else {
                    eprintln!("mew: {why}");
                    return ExitCode::FAILURE;
                };
                eprintln!("mew: {why}; killing the space server (pid {pid}) and what it left");
                return kill_hung_server(space_dir, pid).await;
            }
        };
        let server_pid = conn.server_pid;
        let req = Request::Down {
            timeout_ms: timeout.map(|t| t.as_millis() as u64),
        };
        if let Err(e) = conn.request(req).await {
            eprintln!("mew: {e}");
            return ExitCode::FAILURE;
        }
        loop {
            match tokio::time::timeout(patience, conn.recv()).await {
                Ok(Ok(Some(ServerMsg::Event { event }))) => {
                    if matches!(
                        event.state,
                        ProcState::Stopped
                            | ProcState::Stopping { escalated: true }
                            | ProcState::Exited { .. }
                            | ProcState::Killed { .. }
                    ) {
                        println!("{}: {}", event.process, event.message);
                    }
                }
                Ok(Ok(Some(ServerMsg::Bye { .. })) | Ok(None) | Err(_)) => break,
                Ok(Ok(Some(_))) => {}
                // Silent for too long (stopped, wedged): handled below.
                Err(_) => break,
            }
        }
        // The server removes its socket and exits once everything is gone.
        let deadline = Instant::now() + patience;
        while server_alive(server_pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if server_alive(server_pid) {
            eprintln!(
                "mew: the space server (pid {server_pid}) did not finish stopping within {}; killing it and what it left",
                crate::human::duration(patience)
            );
            return kill_hung_server(space_dir, server_pid).await;
        }
        println!("space \"{}\" is down", conn.space_id);
        ExitCode::SUCCESS
    })
}

/// SIGKILL a server that does not do its job, then clean up after it as
/// after a crash (recorded groups, the run marker).
async fn kill_hung_server(space_dir: &Path, pid: u32) -> ExitCode {
    let _ = sys::signal_pid(pid, libc::SIGKILL);
    let gone = Instant::now() + Duration::from_secs(10);
    while server_alive(pid) && Instant::now() < gone {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if server_alive(pid) {
        eprintln!("mew: the space server (pid {pid}) is still alive");
        return ExitCode::FAILURE;
    }
    report_dead_server(space_dir).await;
    println!("the space is down");
    ExitCode::SUCCESS
}

/// Kill what a crashed server left behind (the caller holds the lock) and
/// say so. Returns whether there was a crashed server to clean up after.
fn report_recovery(paths: &SpacePaths, lock: &space::SpaceLock) -> bool {
    match crate::server::recover(paths, lock) {
        Some((pid, killed)) => {
            println!("{}", recovery_message(pid, killed));
            true
        }
        None => false,
    }
}

/// The server process still runs (a zombie waiting for its parent to reap it
/// has finished: a `--no-tui` server is the child of whoever started it).
fn server_alive(pid: u32) -> bool {
    crate::server::process_runs(pid)
}

/// SIGTERM a server that runs without a socket (its run dir was removed),
/// wait for it to stop its processes and exit, and kill it (and what it left)
/// if it does not within its patience.
async fn stop_unreachable_server(space_dir: &Path, pid: u32) -> ExitCode {
    println!("the space server (pid {pid}) has no socket (its run dir was removed); stopping it");
    let _ = sys::signal_pid(pid, libc::SIGTERM);
    let patience = Duration::from_secs(60);
    let deadline = Instant::now() + patience;
    while server_alive(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    if server_alive(pid) {
        eprintln!(
            "mew: the space server (pid {pid}) did not stop within {}; killing it and what it left",
            crate::human::duration(patience)
        );
        return kill_hung_server(space_dir, pid).await;
    }
    println!("the space is down");
    ExitCode::SUCCESS
}

async fn down_without_server(space_dir: &Path) -> ExitCode {
    let Ok(paths) = SpacePaths::new(space_dir) else {
        println!("the space is not running; nothing to stop");
        return ExitCode::SUCCESS;
    };
    // A server whose run dir was removed under it: it cannot be asked, so
    // it is told (SIGTERM stops it as gracefully as a request would).
    if let Some(pid) = space::running_server(&paths) {
        return stop_unreachable_server(space_dir, pid).await;
    }
    // Never started here (no run dir, no lock file): nothing to stop.
    if !paths.lock.exists() && !paths.state.exists() {
        println!("the space is not running; nothing to stop");
        return ExitCode::SUCCESS;
    }
    // A live server that holds the lock but does not answer is not ours to judge.
    match crate::server::lock_space(&paths) {
        Ok(lock) => {
            if !report_recovery(&paths, &lock) {
                println!("the space is not running; nothing to stop");
            }
            let _ = std::fs::remove_file(&paths.socket);
            let _ = std::fs::remove_file(&paths.socket_record);
            drop(lock);
            ExitCode::SUCCESS
        }
        Err(space::LockError::Held { pid, .. }) => {
            eprintln!(
                "mew: a space server holds the lock (pid {}) but does not answer on {}",
                pid.map_or("unknown".into(), |p| p.to_string()),
                paths.socket.display()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mew: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---- ls ----------------------------------------------------------------------

pub fn ls(json: bool) -> ExitCode {
    let entries = match space::list_running_checked() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("mew: cannot list the running spaces: {e}");
            return ExitCode::FAILURE;
        }
    };
    if json {
        let v: Vec<serde_json::Value> = entries
            .iter()
            .map(|e| serde_json::json!({"id": e.id, "dir": e.dir, "pid": e.pid, "socket": e.socket, "started_at": e.started_at}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else if entries.is_empty() {
        println!("no spaces are running");
    } else {
        let now = now_millis();
        let w = entries.iter().map(|e| e.id.len()).max().unwrap_or(2).max(2);
        println!("{:w$}  {:>7}  {:>8}  DIR", "ID", "PID", "UPTIME");
        for e in entries {
            println!(
                "{:w$}  {:>7}  {:>8}  {}",
                e.id,
                e.pid,
                crate::human::uptime(now.saturating_sub(e.started_at) / 1000),
                e.dir.display()
            );
        }
    }
    ExitCode::SUCCESS
}

// ---- logs --------------------------------------------------------------------

pub struct LogsOptions {
    pub follow: bool,
    pub lines: Option<usize>,
    pub since: Option<Duration>,
    pub no_prefix: bool,
    pub names: Vec<String>,
}

pub fn logs(cfg: &SpaceConfig, opts: LogsOptions) -> ExitCode {
    let known: Vec<String> = cfg.processes.iter().map(|p| p.name.clone()).collect();
    if let Some(msg) = crate::status::unknown_names(&opts.names, &known) {
        eprintln!("mew: {msg}");
        return ExitCode::from(2);
    }
    let names = if opts.names.is_empty() {
        known.clone()
    } else {
        opts.names.clone()
    };
    let width = names.iter().map(|n| n.len()).max().unwrap_or(0);
    let since = opts
        .since
        .map(|d| now_millis().saturating_sub(d.as_millis() as u64));
    let tail = opts.lines.or(if opts.follow { Some(10) } else { None });
    let dir = cfg.logs.dir.clone();
    let print = move |out: &mut dyn Write, process: &str, at: Millis, event: bool, text: &str| {
        let ts = chrono::DateTime::from_timestamp_millis(at as i64)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%H:%M:%S%.3f")
                    .to_string()
            })
            .unwrap_or_default();
        let sep = if event { '*' } else { '|' };
        let _ = if opts.no_prefix {
            writeln!(out, "{text}")
        } else {
            writeln!(out, "{ts} {process:width$} {sep} {text}")
        };
    };
    let mut last_at: Millis = 0;
    if opts.follow {
        return runtime().block_on(async move {
            // Subscribe first so nothing falls between the files and the stream.
            let mut conn = match Conn::connect(&cfg.dir, ClientKind::Follow).await {
                Ok(c) => Some(c),
                Err(ConnectError::NotRunning) => None,
                Err(e) => {
                    eprintln!("mew: {}", e.why().unwrap_or_default());
                    return ExitCode::FAILURE;
                }
            };
            if let Some(c) = conn.as_mut()
                && let Err(e) = c
                    .request(Request::Follow {
                        names: opts.names.clone(),
                        since_ms: None,
                    })
                    .await
            {
                eprintln!("mew: {e}");
                return ExitCode::FAILURE;
            }
            let stdout = std::io::stdout();
            {
                let mut out = stdout.lock();
                match crate::logs::read_logs(&dir, &names, tail, since) {
                    Ok(records) => {
                        for r in records {
                            last_at = last_at.max(r.at);
                            print(&mut out, &r.process, r.at, r.event, &r.text);
                        }
                    }
                    Err(e) => eprintln!("mew: cannot read logs in {}: {e}", dir.display()),
                }
            }
            let Some(mut conn) = conn else {
                eprintln!("mew: the space is not running; nothing to follow");
                return ExitCode::from(NOT_RUNNING);
            };
            loop {
                match conn.recv().await {
                    Ok(Some(ServerMsg::Line { process, at, text })) if at >= last_at => {
                        print(&mut stdout.lock(), &process, at, false, &text);
                    }
                    Ok(Some(ServerMsg::Event { event })) if event.at >= last_at => {
                        print(
                            &mut stdout.lock(),
                            &event.process,
                            event.at,
                            true,
                            &event.message,
                        );
                    }
                    Ok(Some(ServerMsg::Resync { dropped })) => {
                        eprintln!(
                            "mew: fell behind; {dropped} messages skipped (see the log files)"
                        );
                    }
                    Ok(Some(ServerMsg::Bye { reason })) => {
                        eprintln!("mew: {reason}");
                        return ExitCode::SUCCESS;
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return ExitCode::SUCCESS,
                    Err(e) => {
                        eprintln!("mew: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            }
        });
    }
    // Streamed: memory stays bounded whatever the size of the logs.
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let read = crate::logs::each_log(&dir, &names, tail, since, |r| {
        print(&mut out, &r.process, r.at, r.event, &r.text);
        true
    });
    match read {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mew: cannot read logs in {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

// ---- up -d -------------------------------------------------------------------

pub struct DetachOptions {
    pub wait: bool,
    pub timeout: Option<Duration>,
    pub port: Option<u16>,
}

/// Start the space server in the background; returns once it answers.
fn start_server(
    cfg: &SpaceConfig,
    config_args: &[std::ffi::OsString],
    port: Option<u16>,
    deadline: Duration,
) -> Result<u32, ExitCode> {
    let paths = SpacePaths::new(&cfg.dir).map_err(|e| {
        eprintln!("mew: {}: {e}", cfg.dir.display());
        ExitCode::FAILURE
    })?;
    paths.ensure_run_dir().map_err(|e| {
        eprintln!("mew: {e}");
        ExitCode::FAILURE
    })?;
    match crate::server::lock_space(&paths) {
        Ok(lock) => {
            // A crashed server's leftovers go first, and the user hears of it
            // (the new server's own report would only reach its log file).
            report_recovery(&paths, &lock);
            drop(lock);
        }
        Err(space::LockError::Held { pid, .. }) => {
            let pid = pid.map_or("unknown pid".to_string(), |p| format!("pid {p}"));
            eprintln!(
                "mew: space \"{}\" is already running ({pid}) — use \"mew space attach\" or \"mew space down\"",
                cfg.id
            );
            return Err(ExitCode::FAILURE);
        }
        Err(e) => {
            eprintln!("mew: cannot lock the space: {e}");
            return Err(ExitCode::FAILURE);
        }
    }
    let exe = std::env::current_exe().map_err(|e| {
        eprintln!("mew: cannot find the mew binary: {e}");
        ExitCode::FAILURE
    })?;
    crate::logs::create_log_dir(&cfg.logs.dir).map_err(|e| {
        eprintln!("mew: cannot create {}: {e}", cfg.logs.dir.display());
        ExitCode::FAILURE
    })?;
    let log = crate::server::server_log(&cfg.logs.dir);
    // Owner-only, never through a link, recorded as mew's own.
    let log_file = crate::logs::open_server_log(&cfg.logs.dir).map_err(|e| {
        eprintln!("mew: cannot open {}: {e}", log.display());
        ExitCode::FAILURE
    })?;
    let mut args: Vec<std::ffi::OsString> = vec!["__serve".into()];
    args.extend(config_args.iter().cloned());
    if let Some(p) = port {
        args.push("--port".into());
        args.push(p.to_string().into());
    }
    let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let pid = sys::spawn_daemon(&exe, &args, log_file).map_err(|e| {
        eprintln!("mew: cannot start the space server: {e}");
        ExitCode::FAILURE
    })?;
    let deadline = Instant::now() + deadline;
    runtime().block_on(async {
        loop {
            match Conn::connect(&cfg.dir, ClientKind::Control).await {
                Ok(c) if c.server_pid == pid => return Ok(pid),
                Ok(c) => {
                    eprintln!(
                        "mew: space \"{}\" is already running (pid {})",
                        c.space_id, c.server_pid
                    );
                    return Err(ExitCode::FAILURE);
                }
                Err(ConnectError::NotRunning) => {}
                Err(e) => {
                    eprintln!("mew: {}", e.why().unwrap_or_default());
                    return Err(ExitCode::FAILURE);
                }
            }
            if !alive(pid) || Instant::now() > deadline {
                eprintln!(
                    "mew: the space server did not start; its log ({}) says:",
                    log.display()
                );
                if print_tail_from(&log, log_start, 20) == 0 {
                    eprintln!("  (nothing: {})", why_log_is_empty(&cfg.logs.dir));
                }
                return Err(ExitCode::FAILURE);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// `mew space up` with the TUI: start the server, attach as its owner.
pub fn up_attached(
    cfg: &SpaceConfig,
    config_args: &[std::ffi::OsString],
    port: Option<u16>,
) -> ExitCode {
    if let Err(code) = start_server(cfg, config_args, port, Duration::from_secs(30)) {
        return code;
    }
    attach(&cfg.dir, true)
}

/// Start the space server in the background and return once it answers
/// (with `wait`: once every auto-start process is ready).
pub fn up_detached(
    cfg: &SpaceConfig,
    config_args: &[std::ffi::OsString],
    opts: DetachOptions,
) -> ExitCode {
    // Log lines older than this are another run's.
    let run_start = now_millis();
    let pid = match start_server(cfg, config_args, opts.port, Duration::from_secs(30)) {
        Ok(pid) => pid,
        Err(code) => return code,
    };
    runtime().block_on(async {
        let mut conn = match connect_or_exit(&cfg.dir, ClientKind::Control).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let status = match conn.status().await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("mew: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("space \"{}\" is up (server pid {pid})", status.space.id);
        if let Some(url) = &status.gateway_url {
            println!("gateway: {url}");
        }
        if !opts.wait {
            return ExitCode::SUCCESS;
        }
        let wait_deadline = opts.timeout.map(|t| Instant::now() + t);
        // Wait on the server's status changes, not by polling.
        if let Err(e) = conn.request(Request::Watch).await {
            eprintln!("mew: {e}");
            return ExitCode::FAILURE;
        }
        loop {
            let next = match wait_deadline {
                Some(d) => tokio::time::timeout_at(d.into(), conn.recv()).await.ok(),
                None => Some(conn.recv().await),
            };
            let status = match next {
                Some(Ok(Some(ServerMsg::Status { status }))) => Some(status),
                Some(Ok(Some(ServerMsg::Bye { reason }))) => {
                    eprintln!("mew: the space stopped while waiting: {reason}");
                    return ExitCode::FAILURE;
                }
                Some(Ok(Some(_))) => continue,
                Some(Ok(None)) | Some(Err(_)) => {
                    eprintln!("mew: lost the space server while waiting");
                    return ExitCode::FAILURE;
                }
                None => None,
            };
            let status = match status {
                Some(s) => s,
                None => match conn.status().await {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("mew: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            };
            match readiness(&status) {
                Readiness::Ready => {
                    println!("all processes are ready");
                    return ExitCode::SUCCESS;
                }
                Readiness::Failed(name, why) => {
                    eprintln!("mew: {name} failed before becoming ready: {why}");
                    print_process_tail(cfg, &name, run_start);
                    return ExitCode::FAILURE;
                }
                Readiness::Waiting(names) => {
                    if wait_deadline.is_some_and(|d| Instant::now() >= d) {
                        eprintln!(
                            "mew: timed out after {} waiting for: {}",
                            crate::human::duration(opts.timeout.unwrap_or_default()),
                            names.join(", ")
                        );
                        for n in &names {
                            print_process_tail(cfg, n, run_start);
                        }
                        return ExitCode::FAILURE;
                    }
                }
            }
        }
    })
}

fn alive(pid: u32) -> bool {
    // The daemon is our child until it exits: reap it if it died.
    let exited = sys::reap_all().iter().any(|(p, _)| *p == pid);
    !exited && sys::pid_exists(pid)
}

enum Readiness {
    Ready,
    Waiting(Vec<String>),
    Failed(String, String),
}

fn readiness(s: &SpaceStatus) -> Readiness {
    let mut waiting = Vec::new();
    for p in &s.processes {
        match &p.state {
            ProcState::Ready => {}
            ProcState::Idle | ProcState::Stopped => {}
            ProcState::Exited { code: 0 } if p.one_shot => {}
            ProcState::Exited { .. } | ProcState::Killed { .. } | ProcState::Failed { .. } => {
                return Readiness::Failed(p.name.clone(), p.state.describe(now_millis()));
            }
            // Crashed and waiting to be restarted: a failure for --wait, not
            // a reason to wait for the next attempt (or the timeout).
            ProcState::Backoff { .. } => {
                let why = match p.exit_code {
                    Some(code) => format!("exited {code} (a restart is scheduled)"),
                    None => "crashed (a restart is scheduled)".to_string(),
                };
                return Readiness::Failed(p.name.clone(), why);
            }
            _ => waiting.push(p.name.clone()),
        }
    }
    if waiting.is_empty() {
        Readiness::Ready
    } else {
        Readiness::Waiting(waiting)
    }
}

/// The last lines `name` logged in this run (from `since` on: lines of an
/// earlier run would blame the wrong failure).
fn print_process_tail(cfg: &SpaceConfig, name: &str, since: Millis) {
    if let Ok(records) =
        crate::logs::read_logs(&cfg.logs.dir, &[name.to_string()], Some(15), Some(since))
    {
        eprintln!("--- last lines of {name} ---");
        for r in records {
            let sep = if r.event { '*' } else { '|' };
            eprintln!("{name} {sep} {}", r.text);
        }
    }
}

/// Print the last `lines` lines written to `path` after offset `from`;
/// returns how many were printed.
fn print_tail_from(path: &PathBuf, from: u64, lines: usize) -> usize {
    let Ok(text) = std::fs::read(path) else {
        return 0;
    };
    let text = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).to_string();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let shown = &all[all.len().saturating_sub(lines)..];
    for l in shown {
        eprintln!("  {}", crate::config::escape(l));
    }
    shown.len()
}

/// Why a server that died said nothing in its log: most often a full disk
/// (it could not write a word), said with the numbers.
fn why_log_is_empty(dir: &Path) -> String {
    match nix::sys::statvfs::statvfs(dir) {
        Ok(v) => {
            let free = v.blocks_available().saturating_mul(v.fragment_size());
            let inodes = v.files_available();
            if free < 1024 * 1024 || (v.files() > 0 && inodes == 0) {
                format!(
                    "the file system of {} is full ({} free, {inodes} inodes free); free some space and try again",
                    dir.display(),
                    crate::human::size_compact(free)
                )
            } else {
                format!(
                    "the server wrote nothing before it ended ({} free on {}); run \"mew space up --no-tui\" to see it fail",
                    crate::human::size_compact(free),
                    dir.display()
                )
            }
        }
        Err(e) => format!("cannot inspect {}: {e}", dir.display()),
    }
}

// ---- attach ------------------------------------------------------------------

/// Attach this terminal to the running space: a thin client that forwards
/// keys, mouse, paste and resizes, and writes what the server renders.
pub fn attach(space_dir: &Path, owner: bool) -> ExitCode {
    use crossterm::event::Event;

    runtime().block_on(async {
        let mut conn = match connect_or_exit(space_dir, ClientKind::Attach).await {
            Ok(c) => c,
            Err(code) => return code,
        };
        let (cols, rows) = crossterm::terminal::size().unwrap_or((80, 24));
        let no_color = std::env::var_os("NO_COLOR").is_some();
        if let Err(e) = conn
            .request(Request::Attach {
                cols,
                rows,
                owner,
                no_color,
            })
            .await
        {
            eprintln!("mew: {e}");
            return ExitCode::FAILURE;
        }
        let space_id = conn.space_id.clone();
        let (mut rd, mut wr) = conn.into_split();
        crate::tui::guard::install_panic_hook();
        let guard = match crate::tui::guard::TerminalGuard::enter() {
            Ok(g) => g,
            Err(e) => {
                eprintln!("mew: cannot set up the terminal: {e}");
                return ExitCode::FAILURE;
            }
        };
        let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
        std::thread::spawn(move || {
            while let Ok(ev) = crossterm::event::read() {
                if ev_tx.send(ev).is_err() {
                    break;
                }
            }
        });
        let (frame_tx, mut frame_rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let f = protocol::read_frame(&mut rd).await;
                let done = !matches!(f, Ok(Some(_)));
                if frame_tx.send(f).await.is_err() || done {
                    break;
                }
            }
        });
        let mut signals = crate::server::Signals::new();
        let mut stdout = std::io::stdout();
        let mut farewell: Option<String> = None;
        let mut code: u8 = 0;
        let mut ended = false;
        let mut lost = false;
        // The size the server renders for. A SIGWINCH can be missed (seen
        // once under load: the view stayed at the old size); the size is
        // also checked every second and a change sent, so a lost signal
        // costs at most a second, never the rest of the session.
        let mut sent_size = (cols, rows);
        let mut size_check = tokio::time::interval(Duration::from_secs(1));
        size_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = size_check.tick() => {
                    if let Ok(now) = crossterm::terminal::size()
                        && now != sent_size
                    {
                        sent_size = now;
                        let msg = ClientMsg::Resize { cols: now.0, rows: now.1 };
                        if protocol::write_msg(&mut wr, &msg).await.is_err() {
                            farewell = Some("lost the space server".into());
                            code = 1;
                            break;
                        }
                    }
                }
                ev = ev_rx.recv() => {
                    let msg = match ev {
                        Some(Event::Resize(cols, rows)) => {
                            sent_size = (cols, rows);
                            ClientMsg::Resize { cols, rows }
                        }
                        Some(event) => ClientMsg::Input {
                            event: event.into(),
                        },
                        None => break,
                    };
                    if protocol::write_msg(&mut wr, &msg).await.is_err() {
                        farewell = Some("lost the space server".into());
                        code = 1;
                        break;
                    }
                }
                frame = frame_rx.recv() => match frame {
                    Some(Ok(Some(protocol::Frame::Output(bytes)))) => {
                        if stdout.write_all(&bytes).and_then(|_| stdout.flush()).is_err() {
                            break;
                        }
                    }
                    Some(Ok(Some(f))) => match f.decode::<ServerMsg>() {
                        Ok(ServerMsg::Ended { exit_code }) => {
                            code = exit_code.clamp(0, 255) as u8;
                            ended = true;
                        }
                        Ok(ServerMsg::Bye { reason }) => {
                            farewell = Some(reason);
                            break;
                        }
                        _ => {}
                    },
                    Some(Ok(None)) | None => {
                        // Without `Ended` first, the server died under us.
                        if ended {
                            farewell.get_or_insert_with(|| format!("space \"{space_id}\" stopped"));
                        } else {
                            farewell = Some(format!("lost the server of space \"{space_id}\""));
                            code = 1;
                            lost = true;
                        }
                        break;
                    }
                    Some(Err(e)) => {
                        farewell = Some(format!("lost the space server: {e}"));
                        code = 1;
                        lost = true;
                        break;
                    }
                },
                sig = signals.recv() => {
                    code = 128 + sig as u8;
                    // The server stops the space when its owner leaves without detaching.
                    let what = if owner { "stopping" } else { "left" };
                    farewell = Some(format!(
                        "{} received: {what} space \"{space_id}\"",
                        crate::status::signal_name(sig)
                    ));
                    break;
                }
            }
        }
        drop(guard);
        if let Some(f) = farewell {
            println!("{f}");
        }
        if lost {
            // The server died under us (SIGKILL, OOM): nothing may outlive the
            // session, so clean up after it as `down` would.
            report_dead_server(space_dir).await;
        }
        ExitCode::from(code)
    })
}

fn recovery_message(pid: u32, killed: usize) -> String {
    format!(
        "the space server (pid {pid}) had died; killed {killed} leftover process{}",
        if killed == 1 { "" } else { "es" }
    )
}

/// [`recover_dead_server`] off the runtime thread, saying what it did.
async fn report_dead_server(space_dir: &Path) {
    let dir = space_dir.to_path_buf();
    let report = tokio::task::spawn_blocking(move || recover_dead_server(&dir))
        .await
        .ok()
        .flatten();
    if let Some(r) = report {
        println!("{r}");
    }
}

/// When the space's server is dead (its lock is free), kill what it left
/// and say what was done; `None` when a server still holds the lock.
fn recover_dead_server(space_dir: &Path) -> Option<String> {
    let paths = SpacePaths::new(space_dir).ok()?;
    let lock = crate::server::lock_space(&paths).ok()?;
    let report =
        crate::server::recover(&paths, &lock).map(|(pid, killed)| recovery_message(pid, killed));
    let _ = std::fs::remove_file(&paths.socket);
    let _ = std::fs::remove_file(&paths.socket_record);
    drop(lock);
    report
}
