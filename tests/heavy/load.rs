//! Load: 200 processes printing for about 10 s with a TUI client attached.
//! `status` keeps answering (latency distribution printed), no log line is
//! lost (every line counted, in order), the server's memory stays under a
//! stated bound, and nothing is left after `down`.
#![allow(clippy::unwrap_used)]

use crate::common;
use crate::common::reliability as util;

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Space, run, wait_for};
use util::{PtyClient, down, rss_kib, server_pid, up_d};

const PROCS: usize = 200;
/// Lines per process: 10 bursts of 200, one a second.
const LINES: usize = 2000;
/// Scrollback per process (lines), and the PTY size the server uses.
const SCROLLBACK: u64 = 1000;
const ROWS: u64 = 40;
const COLS: u64 = 120;

fn config() -> String {
    let mut y = String::from("shutdown_timeout: 20s\nprocesses:\n");
    let scrollback = SCROLLBACK;
    for k in 0..PROCS {
        writeln!(
            y,
            "  p{k:03}: {{ command: \"for r in 0 1 2 3 4 5 6 7 8 9; do seq $((r*200+1)) $((r*200+200)); sleep 1; done; echo finished; exec sleep 1000\", scrollback: {scrollback} }}"
        )
        .unwrap();
    }
    y
}

fn pct(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[test]
fn two_hundred_printing_processes_lose_no_line_and_status_keeps_answering() {
    let _alone = common::alone();
    let space = Space::new(&config());
    let t0 = Instant::now();
    up_d(&space);
    let up_took = t0.elapsed();
    let server = server_pid(&space);
    let idle_rss = rss_kib(server).unwrap();
    let mut client = PtyClient::spawn(&space, &["space", "attach"]);
    assert!(wait_for(Duration::from_secs(60), || client
        .output()
        .contains("\x1b[?1049h")));

    // Status from another shell, in a loop, while everything prints.
    let stop = Arc::new(AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        let cmd_for = {
            let dir = space.path().to_path_buf();
            let mark = space.mark.clone();
            move || {
                let mut c = std::process::Command::new(common::MEW);
                c.arg("--space-dir")
                    .arg(&dir)
                    .args(["space", "status", "--json"]);
                c.env("TEST_MARK", &mark);
                c
            }
        };
        std::thread::spawn(move || {
            let mut times = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                let out = run(cmd_for(), Duration::from_secs(60));
                let took = t.elapsed();
                assert_eq!(
                    out.code(),
                    Some(0),
                    "status failed under load: {}",
                    out.stderr
                );
                let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
                assert_eq!(v["processes"].as_array().unwrap().len(), PROCS);
                times.push(took);
            }
            times
        })
    };

    let mut rss = Vec::new();
    let finished = wait_for(Duration::from_secs(120), || {
        rss.push(rss_kib(server).unwrap());
        (0..PROCS).all(|k| space.log(&format!("p{k:03}")).contains(" | finished\n"))
    });
    let print_took = t0.elapsed() - up_took;
    stop.store(true, Ordering::SeqCst);
    let mut times = poller.join().unwrap();
    assert!(finished, "not every process finished printing within 120 s");

    // The TUI client is still there and still answers (detaches on `d`).
    client.write(b"d");
    assert_eq!(
        client.wait(Duration::from_secs(30)),
        Some(0),
        "the attached client hung"
    );

    // No line lost: every process's 2000 lines, in order, exactly once.
    let mut total = 0;
    for k in 0..PROCS {
        let n = util::check_numbered(&space.log_path(&format!("p{k:03}")), "");
        assert_eq!(n, LINES, "p{k:03}: {n} of {LINES} lines in its log");
        total += n;
    }
    down(&space);
    let left = space.wait_no_survivors();
    assert!(left.is_empty(), "survivors: {left:?}");

    times.sort();
    let max_rss = *rss.iter().max().unwrap();
    eprintln!(
        "load: {PROCS} processes up in {up_took:?}; printed {total} lines in {print_took:?}, all logged in order"
    );
    eprintln!(
        "load: status answered {} times: min {:?} p50 {:?} p90 {:?} p99 {:?} max {:?}",
        times.len(),
        times[0],
        pct(&times, 50),
        pct(&times, 90),
        pct(&times, 99),
        times[times.len() - 1]
    );
    eprintln!(
        "load: server RSS idle {idle_rss} KiB, max {max_rss} KiB ({} KiB per process)",
        max_rss / PROCS as u64
    );
    assert!(!times.is_empty());
    // Generous bounds that express the guarantee, not a benchmark: status is
    // never stuck behind the output (it took up to 10 s before the reader
    // yielded per chunk), and memory is bounded by the configured
    // scrollback: vt100 keeps (scrollback + rows) x cols cells of 32 bytes
    // per process (4 MiB here), plus 2 MiB per process for buffers, the log
    // writer, the reader and the attached client's view.
    assert!(
        times[times.len() - 1] < Duration::from_secs(5),
        "a status call took {:?}",
        times[times.len() - 1]
    );
    let per_process_kib = (SCROLLBACK + ROWS) * COLS * 32 / 1024 + 2048;
    let bound = PROCS as u64 * per_process_kib;
    eprintln!("load: RSS bound {bound} KiB ({per_process_kib} KiB per process)");
    assert!(
        max_rss < bound,
        "server RSS {max_rss} KiB is over the bound {bound} KiB"
    );
}
