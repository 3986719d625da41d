//! mew's file watcher alone, restarting a child on every change: what
//! `bench/watch.py` measures until `watch:` is wired into the supervisor.
//!
//! `watch_latency [--debounce-ms N] DIR -- CMD [ARGS…]` watches DIR (as
//! `watch: ["."]` with the default ignores and .gitignore), runs CMD, and on
//! each debounced change kills it (SIGKILL) and runs it again. Prints `ready`
//! once the watches are in place.

use std::path::PathBuf;
use std::process::{Child, Command, ExitCode};
use std::sync::mpsc;
use std::time::Duration;

use mew::config::{WatchAction, WatchSpec};
use mew::watch::{Notice, Watcher};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut debounce = Duration::from_millis(300);
    let mut dir = None;
    let mut cmd = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--debounce-ms" => {
                let Some(ms) = args.next().and_then(|v| v.parse().ok()) else {
                    eprintln!("--debounce-ms needs a number");
                    return ExitCode::FAILURE;
                };
                debounce = Duration::from_millis(ms);
            }
            "--" => cmd.extend(args.by_ref()),
            _ => dir = Some(PathBuf::from(a)),
        }
    }
    let (Some(dir), false) = (dir, cmd.is_empty()) else {
        eprintln!("usage: watch_latency [--debounce-ms N] DIR -- CMD [ARGS...]");
        return ExitCode::FAILURE;
    };
    let spec = WatchSpec {
        paths: vec![".".into()],
        ignore: Vec::new(),
        gitignore: true,
        debounce,
        action: WatchAction::Restart,
    };
    let (tx, rx) = mpsc::channel();
    let watcher = match Watcher::new(move |n| {
        let _ = tx.send(n);
    }) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = watcher.update(0, &spec, &dir) {
        eprintln!("{e}");
        return ExitCode::FAILURE;
    }
    let spawn = || Command::new(&cmd[0]).args(&cmd[1..]).spawn();
    let mut child: Child = match spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", cmd[0]);
            return ExitCode::FAILURE;
        }
    };
    println!("ready ({} directories watched)", watcher.watched_dirs());
    for notice in rx {
        match notice {
            Notice::Changed(_) => {
                let _ = child.kill();
                let _ = child.wait();
                child = match spawn() {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("{}: {e}", cmd[0]);
                        return ExitCode::FAILURE;
                    }
                };
            }
            Notice::Error { error, .. } => eprintln!("{error}"),
        }
    }
    ExitCode::SUCCESS
}
