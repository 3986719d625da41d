//! Chaos: a space of 30 processes (fast printers, forkers, processes that
//! ignore SIGTERM, crashers on a timer, slow printers) under rounds of random
//! faults: `kill -9` of processes, of their children, of an attached client
//! and of the server; SIGSTOP/SIGCONT of the server; restarts.
//!
//! After every fault the server must answer; after every round's `down` no
//! process carrying the test's marker may exist anywhere in the process
//! table, and every log file must hold whole lines, each printer's numbers
//! in order; after a server `kill -9`, the next `up` must clean up the
//! previous run and start normally.
//!
//! Deterministic from its seed: `MEW_CHAOS_SEED=<n>` replays a schedule
//! (printed at the start); `MEW_CHAOS_ROUNDS` sets the number of rounds.
#![allow(clippy::unwrap_used)]

use crate::common;
use crate::common::reliability as util;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use common::{Space, wait_for};
use util::{PtyClient, Rng, alive, down, mew, pids, signal, status_json, up_d};

const W: Duration = Duration::from_secs(30);

fn config() -> String {
    let mut y = String::from("shutdown_timeout: 5s\nlogs: { rotate_size: 1G }\nprocesses:\n");
    for k in 1..=4 {
        writeln!(
            y,
            "  fast{k}: {{ command: \"i=0; while :; do i=$((i+1)); echo \\\"n $i\\\"; done\" }}"
        )
        .unwrap();
    }
    for k in 1..=6 {
        writeln!(
            y,
            "  fork{k}: {{ command: \"sleep 1000 & sleep 1000 & (setsid sleep 1000 &); while :; do sleep 1; done\" }}"
        )
        .unwrap();
    }
    for k in 1..=6 {
        writeln!(
            y,
            "  deaf{k}: {{ command: \"trap '' TERM HUP INT; while :; do sleep 0.5; done\", stop_timeout: 1s }}"
        )
        .unwrap();
    }
    for k in 1..=6 {
        writeln!(
            y,
            "  crash{k}: {{ command: \"sleep 1.{k}; exit 3\", restart_policy: always, backoff: {{ initial: 100ms, max: 500ms }} }}"
        )
        .unwrap();
    }
    for k in 1..=8 {
        writeln!(
            y,
            "  slow{k}: {{ command: \"i=0; while :; do i=$((i+1)); echo \\\"n $i\\\"; sleep 0.1; done\" }}"
        )
        .unwrap();
    }
    y
}

fn run_id(space: &Space) -> String {
    let lock = std::fs::read_to_string(space.path().join(".mew/run/mew.lock")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&lock).unwrap();
    v["run_id"].as_str().unwrap().to_string()
}

/// The server answers status (bounded); returns it.
fn answers(space: &Space, what: &str) -> serde_json::Value {
    let mut last = None;
    assert!(
        wait_for(W, || {
            last = status_json(space);
            last.is_some()
        }),
        "the server stopped answering after: {what}"
    );
    last.unwrap()
}

fn check_logs(space: &Space, round: usize) -> usize {
    let mut lines = 0;
    for k in 1..=4 {
        lines += util::check_numbered(&space.log_path(&format!("fast{k}")), "n ");
    }
    for k in 1..=8 {
        lines += util::check_numbered(&space.log_path(&format!("slow{k}")), "n ");
    }
    for prefix in ["fork", "deaf", "crash"] {
        for k in 1..=6 {
            let p = space.log_path(&format!("{prefix}{k}"));
            if p.exists() {
                util::whole_lines(&p);
            }
        }
    }
    assert!(lines > 0, "round {round}: nothing was logged");
    lines
}

#[test]
fn chaos_rounds_leave_nothing_behind_and_lose_no_line() {
    let _alone = common::alone();
    let seed: u64 = std::env::var("MEW_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| util::now_ms() as u64);
    let rounds: usize = std::env::var("MEW_CHAOS_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    eprintln!("chaos: seed {seed}, {rounds} rounds (replay: MEW_CHAOS_SEED={seed})");
    let mut rng = Rng::new(seed);
    let space = Space::new(&config());
    let started = Instant::now();
    let mut server_kills = 0;
    let mut faults_done: Vec<String> = Vec::new();
    let mut run_ids: Vec<String> = Vec::new();
    for round in 0..rounds {
        let ctx = |what: &str| format!("seed {seed}, round {round}: {what}");
        up_d(&space);
        let status = answers(&space, &ctx("up"));
        run_ids.push(run_id(&space));
        assert_eq!(status["processes"].as_array().unwrap().len(), 30);
        let server = status["server_pid"].as_u64().unwrap() as u32;
        let mut client = (rng.below(2) == 0).then(|| {
            let c = PtyClient::spawn(&space, &["space", "attach"]);
            assert!(
                wait_for(W, || c.output().contains("\x1b[?1049h")),
                "{}",
                ctx("attach")
            );
            c
        });
        for _ in 0..4 {
            let status = answers(&space, &ctx("before a fault"));
            let procs = pids(&status);
            let fault = match rng.below(6) {
                0 | 1 => {
                    let Some((name, pid)) = rng.pick(&procs).cloned() else {
                        continue;
                    };
                    signal(pid, "KILL");
                    format!("kill -9 {name} ({pid})")
                }
                2 => {
                    let all = mew::procfs::all_processes();
                    let children: Vec<(String, u32)> = procs
                        .iter()
                        .filter(|(n, _)| n.starts_with("fork"))
                        .flat_map(|(n, p)| {
                            mew::procfs::descendants(*p, &all)
                                .into_iter()
                                .map(move |c| (n.clone(), c))
                        })
                        .collect();
                    let Some((name, pid)) = rng.pick(&children).cloned() else {
                        continue;
                    };
                    signal(pid, "KILL");
                    format!("kill -9 a child of {name} ({pid})")
                }
                3 => {
                    signal(server, "STOP");
                    std::thread::sleep(Duration::from_millis(100 + rng.below(400) as u64));
                    signal(server, "CONT");
                    "SIGSTOP/SIGCONT the server".to_string()
                }
                4 => match client.take() {
                    Some(c) => {
                        signal(c.pid, "KILL");
                        drop(c);
                        "kill -9 the attached client".to_string()
                    }
                    None => continue,
                },
                _ => {
                    let Some((name, _)) = rng.pick(&procs).cloned() else {
                        continue;
                    };
                    let out = mew(&space, &["space", "restart", &name]);
                    assert_eq!(out.code(), Some(0), "{}: {}", ctx("restart"), out.stderr);
                    format!("restart {name}")
                }
            };
            faults_done.push(format!("r{round}: {fault}"));
            answers(&space, &ctx(&fault));
            assert!(
                alive(server),
                "{}",
                ctx(&format!("server died after {fault}"))
            );
        }
        // Let the printers print a little under the new conditions.
        std::thread::sleep(Duration::from_millis(300));
        if rng.below(2) == 0 {
            // The server dies without a word; the next up must clean up first.
            let old_run = run_id(&space);
            signal(server, "KILL");
            assert!(wait_for(W, || !alive(server)));
            server_kills += 1;
            faults_done.push(format!("r{round}: kill -9 the server"));
            drop(client.take());
            let leftovers = mew::procfs::find_marked("MEW_RUN_ID", &old_run);
            let up = up_d(&space);
            let status = answers(&space, &ctx("up after kill -9"));
            run_ids.push(run_id(&space));
            let new_server = status["server_pid"].as_u64().unwrap() as u32;
            assert_ne!(new_server, server);
            let still = mew::procfs::find_marked("MEW_RUN_ID", &old_run);
            assert!(
                still.is_empty(),
                "{}: processes of the killed server's run survived the new up: {still:?}",
                ctx("recover")
            );
            if !leftovers.is_empty() {
                // `up -d` cleans up before starting the server and says so;
                // a server that finds leftovers itself notes it in its log.
                let log =
                    std::fs::read_to_string(space.path().join(".mew/logs/mew-server.log")).unwrap();
                assert!(
                    up.stdout.contains("had died") || log.contains("did not shut down cleanly"),
                    "{}: no recovery note (up said: {})",
                    ctx("recover"),
                    up.stdout
                );
            }
            // Started normally: every long-running process is up again.
            assert!(
                wait_for(W, || {
                    let s = status_json(&space).unwrap();
                    s["processes"].as_array().unwrap().iter().all(|p| {
                        let n = p["name"].as_str().unwrap();
                        n.starts_with("crash") || p["state"] == "ready"
                    })
                }),
                "{}",
                ctx("not all processes came back after recovery")
            );
            eprintln!(
                "round {round}: server kill -9 with {} leftovers; the new up cleaned them",
                leftovers.len()
            );
        }
        drop(client.take());
        let down_out = down(&space);
        let left = space.wait_no_survivors();
        assert!(
            left.is_empty(),
            "{}: survivors after down:\n{}run ids: {run_ids:?}\ndown said: {}{}\nfaults: {faults_done:#?}\nserver log:\n{}",
            ctx("down"),
            Space::describe(&left),
            down_out.stdout,
            down_out.stderr,
            std::fs::read_to_string(space.path().join(".mew/logs/mew-server.log"))
                .unwrap_or_default()
        );
        let lines = check_logs(&space, round);
        eprintln!("round {round}: ok ({lines} numbered lines in order so far)");
    }
    eprintln!(
        "chaos: {rounds} rounds, {} faults ({server_kills} server kills) in {:?}; seed {seed}",
        faults_done.len(),
        started.elapsed()
    );
}
