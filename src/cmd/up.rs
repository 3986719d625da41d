//! `mew space up`: with the TUI (start the server, attach as its owner),
//! `-d` (start the server in the background, `--wait` for readiness), or
//! `--no-tui` (the server in the foreground with the line printer).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use super::common::{block_on, config_args, connect, duration_arg, load};
use super::{Error, Outcome};
use crate::cli::{SpaceArgs, UpArgs};
use crate::client::{Conn, ConnectError};
use crate::config::SpaceConfig;
use crate::config::load_cli::format_diagnostic;
use crate::protocol::{ClientKind, Request, ServerMsg};
use crate::recovery::{lock_space, process_runs};
use crate::server;
use crate::space::{self, SpacePaths};
use crate::status::{Millis, ProcState, SpaceStatus, now_millis};
use crate::sys;

/// How long a new server may take to answer on its socket.
const START_DEADLINE: Duration = Duration::from_secs(30);

pub fn run(up: UpArgs, args: &SpaceArgs) -> Outcome {
    let timeout = duration_arg("--timeout", &up.timeout)?;
    let cfg = match load(args) {
        Ok(cfg) => cfg,
        // `up -d DIR` (upstream's `-d`) with no config here: say what `-d` is.
        Err(e) => match upstream_dash_d(&up) {
            Some(dir) => {
                return Err(Error::Usage(format!(
                    "no space config here for `{}`{DASH_D_HELP}",
                    crate::config::escape(&dir)
                )));
            }
            None => return Err(e),
        },
    };
    if let Some(name) = &up.exit_code_from
        && cfg.process(name).is_none()
    {
        let names: Vec<&str> = cfg.processes.iter().map(|p| p.name.as_str()).collect();
        let hint = crate::config::did_you_mean(name, &names)
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        return Err(Error::Usage(format!(
            "--exit-code-from: no process `{name}`{hint}; processes: {}",
            names.join(", ")
        )));
    }
    // `up NAME…` / `--profile`: an unknown one is a usage error, before
    // anything is spawned.
    let part = server::Part {
        names: up.names.clone(),
        profiles: up.profile.clone(),
    };
    if let Err(e) = crate::config::select(&cfg, &part.names, &part.profiles) {
        return Err(Error::Usage(selection_error(&e, up.detach)));
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let ci_mode = up.exit_code_from.is_some() || up.abort_on_exit || up.envelopes;
    let tui = !up.no_tui && !ci_mode && interactive;
    if up.detach || tui {
        // The server's stderr is its log file in these modes: say the
        // warnings here, where the user looks (`--no-tui` prints its own).
        for w in crate::check::plan(cfg.clone()).warnings {
            eprintln!("{}", format_diagnostic("warning", &w));
        }
    }
    if up.detach {
        let opts = DetachOptions {
            wait: up.wait,
            timeout,
            port: up.port,
        };
        return detached(&cfg, &serve_args(&cfg, &part, up.watch_config), opts);
    }
    if tui {
        start_server(&cfg, &serve_args(&cfg, &part, up.watch_config), up.port)?;
        return super::attach::run(&cfg.dir, true);
    }
    if !up.no_tui && !ci_mode {
        eprintln!("mew: stdin or stdout is not a terminal: running as --no-tui");
    }
    Ok(server::run(
        cfg,
        server::ServeOptions {
            port: up.port,
            headless: Some(server::HeadlessOptions {
                timestamps: up.timestamps,
                exit_on_failure: up.exit_on_failure,
                exit_code_from: up.exit_code_from,
                abort_on_exit: up.abort_on_exit,
                envelopes: up.envelopes,
            }),
            watch_config: up.watch_config,
            part,
        },
    ))
}

const DASH_D_HELP: &str = "\nhelp: `-d` means `--detach` in mew (as in docker compose); the upstream MEW CLI's `-d DIR` is `--space-dir DIR` here";

/// The NAME right after a `-d` on the command line, when it is a directory:
/// upstream's `-d DIR`.
fn upstream_dash_d(up: &UpArgs) -> Option<String> {
    if !up.detach {
        return None;
    }
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == "-d" && up.names.contains(&w[1]) && Path::new(&w[1]).is_dir())
        .map(|w| w[1].clone())
}

/// What `up NAME…` / `--profile` says for a name or profile it does not
/// know. A directory given as a name is most likely upstream's `-d DIR`
/// (mew's `-d` is `--detach`) or a space dir: say so.
fn selection_error(e: &crate::config::SelectError, detach: bool) -> String {
    let mut msg = e.to_string();
    if let crate::config::SelectError::UnknownProcess { name, .. } = e
        && Path::new(name).is_dir()
    {
        if detach {
            msg.push_str(DASH_D_HELP);
        } else {
            msg.push_str(&format!(
                "\nhelp: `{}` is a directory: to run the space there, use `--space-dir DIR`",
                crate::config::escape(name)
            ));
        }
    }
    msg
}

/// The `__serve` arguments after the subcommand: the config, the part,
/// and `--watch-config` if asked for.
fn serve_args(cfg: &SpaceConfig, part: &server::Part, watch_config: bool) -> Vec<OsString> {
    let mut args = config_args(cfg);
    args.extend(part.args());
    if watch_config {
        args.push("--watch-config".into());
    }
    args
}

struct DetachOptions {
    wait: bool,
    timeout: Option<Duration>,
    port: Option<u16>,
}

/// Start the space server in the background; returns its pid once it answers.
fn start_server(
    cfg: &SpaceConfig,
    config_args: &[OsString],
    port: Option<u16>,
) -> Result<u32, Error> {
    let failed = Error::Failed;
    let paths =
        SpacePaths::new(&cfg.dir).map_err(|e| failed(format!("{}: {e}", cfg.dir.display())))?;
    paths.ensure_run_dir().map_err(|e| failed(e.to_string()))?;
    match lock_space(&paths) {
        Ok(lock) => {
            // A crashed server's leftovers go first, and the user hears of it
            // (the new server's own report would only reach its log file).
            super::down::report_recovery(&paths, &lock);
            drop(lock);
        }
        Err(space::LockError::Held { pid, .. }) => {
            let pid = pid.map_or("unknown pid".to_string(), |p| format!("pid {p}"));
            return Err(failed(format!(
                "space \"{}\" is already running ({pid}) — use \"mew space attach\" or \"mew space down\"",
                cfg.id
            )));
        }
        Err(e) => return Err(failed(format!("cannot lock the space: {e}"))),
    }
    let exe =
        std::env::current_exe().map_err(|e| failed(format!("cannot find the mew binary: {e}")))?;
    crate::logs::create_log_dir(&cfg.logs.dir)
        .map_err(|e| failed(format!("cannot create {}: {e}", cfg.logs.dir.display())))?;
    let log = crate::logs::server_log_path(&cfg.logs.dir);
    // Owner-only, never through a link, recorded as mew's own.
    let log_file = crate::logs::open_server_log(&cfg.logs.dir)
        .map_err(|e| failed(format!("cannot open {}: {e}", log.display())))?;
    let mut args: Vec<OsString> = vec!["__serve".into()];
    args.extend(config_args.iter().cloned());
    if let Some(p) = port {
        args.push("--port".into());
        args.push(p.to_string().into());
    }
    let log_start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let pid = sys::spawn_daemon(&exe, &args, log_file)
        .map_err(|e| failed(format!("cannot start the space server: {e}")))?;
    let deadline = Instant::now() + START_DEADLINE;
    block_on(async {
        loop {
            match Conn::connect(&cfg.dir, ClientKind::Control).await {
                Ok(c) if c.server_pid == pid => return Ok(pid),
                Ok(c) => {
                    return Err(failed(format!(
                        "space \"{}\" is already running (pid {})",
                        c.space_id, c.server_pid
                    )));
                }
                Err(ConnectError::NotRunning) => {}
                Err(e) => return Err(Error::connect(&cfg.dir, e)),
            }
            if !daemon_runs(pid) || Instant::now() > deadline {
                let said = match tail_from(&log, log_start, 20) {
                    Some(lines) => lines,
                    None => format!("  (nothing: {})", why_log_is_empty(&cfg.logs.dir)),
                };
                return Err(failed(format!(
                    "the space server did not start; its log ({}) says:\n{said}",
                    log.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// `up -d`: start the space server in the background and return once it
/// answers (with `wait`: once every auto-start process is ready).
fn detached(cfg: &SpaceConfig, config_args: &[OsString], opts: DetachOptions) -> Outcome {
    // Log lines older than this are another run's.
    let run_start = now_millis();
    let pid = start_server(cfg, config_args, opts.port)?;
    block_on(async {
        let mut conn = connect(&cfg.dir, ClientKind::Control).await?;
        let status = conn.status().await?;
        println!("space \"{}\" is up (server pid {pid})", status.space.id);
        if let Some(url) = &status.gateway_url {
            println!("gateway: {url}");
        }
        if opts.wait {
            wait_ready(cfg, &mut conn, opts.timeout, run_start).await?;
            println!("all processes are ready");
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// `--wait`: until every auto-start process is ready, one fails, or the
/// timeout passes.
async fn wait_ready(
    cfg: &SpaceConfig,
    conn: &mut Conn,
    timeout: Option<Duration>,
    run_start: Millis,
) -> Result<(), Error> {
    let wait_deadline = timeout.map(|t| Instant::now() + t);
    // Wait on the server's status changes, not by polling.
    conn.request(Request::Watch).await?;
    loop {
        let next = match wait_deadline {
            Some(d) => tokio::time::timeout_at(d.into(), conn.recv()).await.ok(),
            None => Some(conn.recv().await),
        };
        let status = match next {
            Some(Ok(Some(ServerMsg::Status { status }))) => status,
            Some(Ok(Some(ServerMsg::Bye { reason }))) => {
                return Err(Error::Failed(format!(
                    "the space stopped while waiting: {reason}"
                )));
            }
            Some(Ok(Some(_))) => continue,
            Some(Ok(None)) | Some(Err(_)) => {
                return Err(Error::Failed("lost the space server while waiting".into()));
            }
            None => conn.status().await?,
        };
        match readiness(&status) {
            Readiness::Ready => return Ok(()),
            Readiness::Failed(name, why) => {
                return Err(Error::Failed(format!(
                    "{name} failed before becoming ready: {why}{}",
                    process_tail(cfg, &name, run_start)
                )));
            }
            Readiness::Waiting(names) => {
                if wait_deadline.is_some_and(|d| Instant::now() >= d) {
                    let tails: String = names
                        .iter()
                        .map(|n| process_tail(cfg, n, run_start))
                        .collect();
                    return Err(Error::Failed(format!(
                        "timed out after {} waiting for: {}{tails}",
                        crate::human::duration(timeout.unwrap_or_default()),
                        names.join(", ")
                    )));
                }
            }
        }
    }
}

/// The daemon still runs (it is our child until it exits: reap it if it
/// died, or it would stay a zombie).
fn daemon_runs(pid: u32) -> bool {
    let _ = sys::reap_all();
    process_runs(pid)
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
/// earlier run would blame the wrong failure), each after a newline; empty
/// when its log cannot be read.
fn process_tail(cfg: &SpaceConfig, name: &str, since: Millis) -> String {
    let Ok(records) =
        crate::logs::read_logs(&cfg.logs.dir, &[name.to_string()], Some(15), Some(since))
    else {
        return String::new();
    };
    let mut out = format!("\n--- last lines of {name} ---");
    for r in records {
        let sep = if r.event { '*' } else { '|' };
        out.push_str(&format!("\n{name} {sep} {}", r.text));
    }
    out
}

/// The last `lines` non-blank lines written to `path` after offset `from`,
/// indented and escaped; `None` when there are none.
fn tail_from(path: &Path, from: u64, lines: usize) -> Option<String> {
    let text = std::fs::read(path).ok()?;
    let text = String::from_utf8_lossy(&text[(from as usize).min(text.len())..]).to_string();
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let shown = &all[all.len().saturating_sub(lines)..];
    if shown.is_empty() {
        return None;
    }
    let shown: Vec<String> = shown
        .iter()
        .map(|l| format!("  {}", crate::config::escape(l)))
        .collect();
    Some(shown.join("\n"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_of_a_log_is_its_last_non_blank_lines_after_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("mew-server.log");
        std::fs::write(&log, "old run\nfirst\n\nsecond\nthird\n").unwrap();
        assert_eq!(tail_from(&log, 8, 2).as_deref(), Some("  second\n  third"));
        assert_eq!(
            tail_from(&log, 8, 10).as_deref(),
            Some("  first\n  second\n  third")
        );
        assert_eq!(tail_from(&log, 1000, 10), None);
        assert_eq!(tail_from(&dir.path().join("none"), 0, 10), None);
    }
}
