//! The space server (issue 4), driven through the real `mew` binary: `up -d`,
//! `status`, `logs`, `restart`/`stop`/`start`, `down`, crash recovery, the
//! socket's security and robustness, several spaces, long paths, `clean`.
#![allow(clippy::unwrap_used)] // tests may unwrap (helpers are not #[test] fns)

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Output, Space, mew_run, run, show, wait_for};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
/// How long a condition may take to become true.
const W: Duration = Duration::from_secs(20);

/// `up -d --wait`, asserting success.
fn up_wait(space: &Space) -> Output {
    let out = mew_run(space, &["space", "up", "-d", "--wait"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    out
}

fn status_json(space: &Space) -> Value {
    let out = mew_run(space, &["space", "status", "--json"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn process<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no process {name} in {status:#}"))
}

/// Wait until `name`'s entry in `status --json` satisfies `cond`; returns it.
fn wait_process(space: &Space, name: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_for(W, || {
        last = process(&status_json(space), name).clone();
        cond(&last)
    });
    assert!(ok, "condition on {name} never held; last: {last:#}");
    last
}

/// `down`, asserting success and that nothing of this space survives.
fn down_clean(space: &Space) -> Output {
    let out = mew_run(space, &["space", "down"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    let left = space.wait_no_survivors();
    assert!(
        left.is_empty(),
        "survivors after down: {left:?}\n{}",
        show(&out)
    );
    out
}

fn run_dir(space: &Space) -> PathBuf {
    space.path().join(".mew/run")
}

/// The socket the server listens on (from `.mew/run/socket`, else the default).
fn socket_path(dir: &Path) -> PathBuf {
    match std::fs::read_to_string(dir.join(".mew/run/socket")) {
        Ok(s) if !s.trim().is_empty() => PathBuf::from(s.trim()),
        _ => dir.join(".mew/run/mew.sock"),
    }
}

fn server_log(space: &Space) -> String {
    std::fs::read_to_string(space.path().join(".mew/logs/mew-server.log")).unwrap_or_default()
}

fn pid_alive(pid: u32) -> bool {
    // A zombie is as good as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

// ---- a follower: `mew space logs -f` with its lines on a channel ---------------

struct Follower {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Follower {
    fn start(space: &Space, args: &[&str]) -> Follower {
        let mut cmd = space.mew();
        cmd.args(["space", "logs", "-f", "--no-prefix"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Follower {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Wait until a line satisfies `cond` (lines already seen count too).
    fn wait_line(&mut self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        if let Some(l) = self.seen.iter().find(|l| cond(l)) {
            return l.clone();
        }
        let end = Instant::now() + W;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if cond(&l) {
                        return l;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "the follower never printed {what}; it printed:\n{:#?}",
            self.seen
        );
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number in a `tick N` line.
fn tick(line: &str) -> Option<u64> {
    line.strip_prefix("tick ")?.trim().parse().ok()
}

// ---- a raw protocol client ----------------------------------------------------

fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    mew::protocol::encode_frame(kind, payload).unwrap()
}

fn msg_frame(msg: &Value) -> Vec<u8> {
    frame(mew::protocol::KIND_MSG, &serde_json::to_vec(msg).unwrap())
}

fn hello_frame(client: &str) -> Vec<u8> {
    msg_frame(&serde_json::json!({
        "type": "hello",
        "version": mew::protocol::PROTOCOL_VERSION,
        "mew_version": env!("CARGO_PKG_VERSION"),
        "client": client,
    }))
}

/// Read one message frame (blocking, with the stream's timeout).
fn read_msg(s: &mut UnixStream) -> std::io::Result<Value> {
    let mut header = [0u8; 5];
    s.read_exact(&mut header)?;
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)?;
    serde_json::from_slice(&payload).map_err(std::io::Error::other)
}

/// Connect and say hello; returns the stream after the server's hello.
fn raw_client(dir: &Path, kind: &str) -> UnixStream {
    let mut s = UnixStream::connect(socket_path(dir)).unwrap();
    s.set_read_timeout(Some(W)).unwrap();
    s.write_all(&hello_frame(kind)).unwrap();
    let hello = read_msg(&mut s).unwrap();
    assert_eq!(hello["type"], "hello", "{hello}");
    s
}

/// Whether the server closes `s` (reads end of stream or an error) in time.
fn closed_by_server(s: &mut UnixStream) -> bool {
    s.set_read_timeout(Some(W)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

// ---- up -d --wait, status, down -----------------------------------------------

#[test]
fn up_wait_status_and_down() {
    let space = Space::new(
        r#"
gateway: false
participants:
  human: {}
processes:
  db:
    command: "echo starting; sleep 0.3; echo 'db listening'; exec sleep 1000"
    ready: { log: "listening" }
  web: { command: "exec sleep 1000", depends_on: { db: ready } }
  manual: { command: "exec sleep 1000", auto_start: false }
"#,
    );
    let out = up_wait(&space);
    assert!(out.stdout.contains("is up (server pid"), "{}", show(&out));

    // Right after --wait: everything auto-started is ready.
    let st = status_json(&space);
    let id = st["space"]["id"].as_str().unwrap();
    assert!(!id.is_empty(), "{st:#}");
    assert_eq!(
        st["space"]["dir"].as_str().unwrap(),
        std::fs::canonicalize(space.path())
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert!(st["space"]["name"].is_string(), "{st:#}");
    let server_pid = st["server_pid"].as_u64().unwrap() as u32;
    assert!(pid_alive(server_pid));
    assert!(st["gateway_url"].is_null(), "{st:#}");
    for name in ["db", "web"] {
        let p = process(&st, name);
        for key in [
            "name",
            "kind",
            "state",
            "pid",
            "restarts",
            "exit_code",
            "ready",
            "uptime_s",
            "cpu_percent",
            "rss_bytes",
        ] {
            assert!(p.get(key).is_some(), "{name} lacks {key}: {p:#}");
        }
        assert_eq!(p["kind"], "process");
        assert_eq!(p["state"], "ready", "{p:#}");
        assert_eq!(p["ready"], true);
        assert_eq!(p["restarts"], 0);
        assert!(p["exit_code"].is_null());
        assert!(pid_alive(p["pid"].as_u64().unwrap() as u32));
        assert!(p["uptime_s"].is_u64(), "{p:#}");
    }
    let manual = process(&st, "manual");
    assert_eq!(manual["state"], "idle");
    assert!(manual["pid"].is_null());
    assert!(manual["uptime_s"].is_null());
    // Samples arrive with the first resource sampling round.
    let db = wait_process(&space, "db", |p| {
        p["rss_bytes"].as_u64().is_some_and(|r| r > 0)
    });
    assert!(db["cpu_percent"].is_number() || db["cpu_percent"].is_null());
    assert_eq!(st["participants"][0]["name"], "human", "{st:#}");

    // The table: every process, and the participant without a process.
    let out = mew_run(&space, &["space", "status"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert!(
        out.stdout.contains(&format!("server pid {server_pid}")),
        "{}",
        out.stdout
    );
    for (name, state) in [("db", "ready"), ("web", "ready"), ("manual", "idle")] {
        let row = out
            .stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}:\n{}", out.stdout));
        assert!(row.contains(state), "{row}");
    }
    let human = out
        .stdout
        .lines()
        .find(|l| l.starts_with("human "))
        .unwrap_or_else(|| panic!("no row for human:\n{}", out.stdout));
    assert!(
        human.contains("participant") && human.contains("no process"),
        "{human}"
    );

    // down: one line per process, then nothing left.
    let out = down_clean(&space);
    for name in ["db", "web"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(&format!("{name}: "))),
            "no line for {name}\n{}",
            show(&out)
        );
    }
    assert!(out.stdout.contains("is down"), "{}", show(&out));
    assert!(!pid_alive(server_pid));
    for f in ["mew.sock", "socket", "state.json"] {
        assert!(!run_dir(&space).join(f).exists(), "{f} is left behind");
    }

    // Nothing runs now.
    let out = mew_run(&space, &["space", "status"]);
    assert_eq!(out.code(), Some(3), "{}", show(&out));
    assert!(out.stderr.contains("not running"), "{}", show(&out));
    let out = mew_run(&space, &["space", "status", "--json"]);
    assert_eq!(out.code(), Some(3), "{}", show(&out));
    let out = mew_run(&space, &["space", "down"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert!(out.stdout.contains("not running"), "{}", show(&out));

    // A clean down is not mistaken for a crash by the next up.
    let out = up_wait(&space);
    assert!(!out.stdout.contains("had died"), "{}", show(&out));
    down_clean(&space);
}

#[test]
fn status_when_never_started() {
    let space = Space::new("processes:\n  a: { command: \"true\" }\n");
    let out = mew_run(&space, &["space", "status"]);
    assert_eq!(out.code(), Some(3), "{}", show(&out));
    assert!(out.stderr.contains("not running"), "{}", show(&out));
    assert!(out.stdout.is_empty(), "{}", show(&out));
}

// ---- logs ---------------------------------------------------------------------

#[test]
fn logs_tail_names_prefix_since_and_after_down() {
    let space = Space::new(
        r#"
processes:
  alpha: { command: "echo a1; echo a2; echo a3; exec sleep 1000" }
  beta: { command: "echo b1; echo b2; exec sleep 1000" }
"#,
    );
    up_wait(&space);
    assert!(wait_for(W, || space.log("alpha").contains("| a3")
        && space.log("beta").contains("| b2")));

    let check = |when: &str| {
        // Merged, last N (output lines and mew's events alike).
        let out = mew_run(&space, &["space", "logs", "-n", "2"]);
        assert_eq!(out.code(), Some(0), "{when}: {}", show(&out));
        assert_eq!(out.stdout.lines().count(), 2, "{when}: {}", show(&out));

        // One process, with the prefix: time, name, separator.
        let out = mew_run(&space, &["space", "logs", "alpha"]);
        assert_eq!(out.code(), Some(0), "{when}: {}", show(&out));
        let text: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| l.contains(" | "))
            .map(|l| l.split(" | ").nth(1).unwrap())
            .collect();
        assert_eq!(text, ["a1", "a2", "a3"], "{when}: {}", show(&out));
        assert!(
            out.stdout.lines().all(|l| l.contains(" alpha ")),
            "{when}: {}",
            show(&out)
        );
        assert!(!out.stdout.contains("b1"), "{when}: {}", show(&out));

        // Merged without prefixes: the bare text.
        let out = mew_run(&space, &["space", "logs", "--no-prefix"]);
        assert_eq!(out.code(), Some(0), "{when}: {}", show(&out));
        let lines: Vec<&str> = out.stdout.lines().collect();
        for l in ["a1", "a2", "a3", "b1", "b2"] {
            assert!(lines.contains(&l), "{when}: {l} missing\n{}", show(&out));
        }
        let pos = |x: &str| lines.iter().position(|l| *l == x).unwrap();
        assert!(pos("a1") < pos("a2") && pos("a2") < pos("a3"));

        // Several names.
        let out = mew_run(&space, &["space", "logs", "--no-prefix", "beta", "alpha"]);
        assert!(out.stdout.contains("a1") && out.stdout.contains("b1"));

        // Unknown name: the valid ones are listed.
        let out = mew_run(&space, &["space", "logs", "gamma"]);
        assert_eq!(out.code(), Some(2), "{when}: {}", show(&out));
        assert!(
            out.stderr.contains("alpha") && out.stderr.contains("beta"),
            "{when}: {}",
            show(&out)
        );
    };
    check("running");
    down_clean(&space);
    check("after down");

    // --since: a line from long ago is left out, recent ones are kept.
    let log = space.log_path("beta");
    let old = std::fs::read_to_string(&log).unwrap();
    std::fs::write(
        &log,
        format!("2020-01-01T00:00:00.000+00:00 | ancient\n{old}"),
    )
    .unwrap();
    let out = mew_run(&space, &["space", "logs", "--no-prefix", "beta"]);
    assert!(out.stdout.contains("ancient"), "{}", show(&out));
    let out = mew_run(
        &space,
        &["space", "logs", "--no-prefix", "--since", "1h", "beta"],
    );
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert!(!out.stdout.contains("ancient"), "{}", show(&out));
    assert!(out.stdout.contains("b1"), "{}", show(&out));
}

#[test]
fn logs_follow_receives_lines_live() {
    let space = Space::new(
        r#"
processes:
  talker:
    command: "echo hello; n=0; while true; do if [ -e go ]; then n=$((n+1)); echo live-$n; rm -f go; fi; sleep 0.02; done"
"#,
    );
    up_wait(&space);
    assert!(wait_for(W, || space.log("talker").contains("| hello")));
    let mut f = Follower::start(&space, &["talker"]);
    // The tail from the file comes after the subscription: once it is
    // printed, anything new must arrive through the server.
    f.wait_line("the tail (hello)", |l| l == "hello");
    std::fs::write(space.path().join("go"), "").unwrap();
    f.wait_line("live-1", |l| l == "live-1");
    assert!(wait_for(W, || !space.path().join("go").exists()));
    std::fs::write(space.path().join("go"), "").unwrap();
    f.wait_line("live-2", |l| l == "live-2");
    // down ends the follow: the follower exits by itself, successfully.
    down_clean(&space);
    let end = Instant::now() + W;
    let status = loop {
        if let Some(st) = f.child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < end, "the follower outlived the space");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

// ---- restart, stop, start -----------------------------------------------------

#[test]
fn restart_stop_start_and_unknown_names() {
    let space = Space::new(
        r#"
processes:
  a: { command: "exec sleep 1000", restart_policy: always, backoff: { initial: 50ms } }
  b: { command: "exec sleep 1000", restart_policy: always, backoff: { initial: 50ms } }
"#,
    );
    up_wait(&space);
    let before = process(&status_json(&space), "a").clone();
    let pid0 = before["pid"].as_u64().unwrap();

    let out = mew_run(&space, &["space", "restart", "a"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    let after = wait_process(&space, "a", |p| {
        p["state"] == "ready" && p["pid"].as_u64().is_some_and(|p| p != pid0)
    });
    assert_eq!(
        after["restarts"].as_u64(),
        before["restarts"].as_u64().map(|r| r + 1),
        "{before:#}\n{after:#}"
    );
    assert!(
        !pid_alive(pid0 as u32),
        "the old process survived the restart"
    );

    // stop: stays stopped, even with restart_policy: always.
    let pid1 = after["pid"].as_u64().unwrap() as u32;
    let out = mew_run(&space, &["space", "stop", "a"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    let stopped = wait_process(&space, "a", |p| p["state"] == "stopped");
    assert!(stopped["pid"].is_null(), "{stopped:#}");
    assert!(!pid_alive(pid1));
    // The policy does restart a process that dies on its own (b), and by the
    // time it has, it would have restarted `a` too.
    let b = process(&status_json(&space), "b").clone();
    common::kill(b["pid"].as_u64().unwrap() as u32, "KILL");
    wait_process(&space, "b", |p| {
        p["state"] == "ready" && p["restarts"].as_u64() > b["restarts"].as_u64()
    });
    let a = process(&status_json(&space), "a").clone();
    assert_eq!(a["state"], "stopped", "{a:#}");

    let out = mew_run(&space, &["space", "start", "a"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    let started = wait_process(&space, "a", |p| p["state"] == "ready");
    assert!(pid_alive(started["pid"].as_u64().unwrap() as u32));

    // restart with no name: everything.
    let st = status_json(&space);
    let pids: Vec<u64> = ["a", "b"]
        .iter()
        .map(|n| process(&st, n)["pid"].as_u64().unwrap())
        .collect();
    let out = mew_run(&space, &["space", "restart"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    for (name, pid) in ["a", "b"].iter().zip(pids) {
        wait_process(&space, name, |p| {
            p["state"] == "ready" && p["pid"].as_u64().is_some_and(|p| p != pid)
        });
    }

    for verb in ["restart", "stop", "start"] {
        let out = mew_run(&space, &["space", verb, "a", "nope"]);
        assert_eq!(out.code(), Some(2), "{verb}: {}", show(&out));
        assert!(
            out.stderr.contains("nope") && out.stderr.contains("a, b"),
            "{verb}: {}",
            show(&out)
        );
    }
    down_clean(&space);
}

/// `restart` kills the old process and nothing else: the new one is not
/// killed (state stays ready, with restart_policy: no) and the count is +1.
#[test]
fn restart_leaves_the_new_process_alone() {
    let space = Space::new("processes:\n  a: { command: \"exec sleep 1000\" }\n");
    up_wait(&space);
    for round in 1..=20u64 {
        let before = process(&status_json(&space), "a").clone();
        let out = mew_run(&space, &["space", "restart", "a"]);
        assert_eq!(out.code(), Some(0), "{}", show(&out));
        let after = wait_process(&space, "a", |p| {
            p["pid"] != before["pid"] && p["pid"].is_u64() || p["state"] == "killed"
        });
        // The wrong kill lands within milliseconds of the respawn; by the
        // time `logs` has run, a second status sees it (20 rounds make a
        // miss very unlikely: it reproduced within 10 rounds every time).
        let out = mew_run(&space, &["space", "logs", "--no-prefix", "a"]);
        let now = process(&status_json(&space), "a").clone();
        assert_eq!(
            now["state"], "ready",
            "round {round}: {now:#}\n{}",
            out.stdout
        );
        assert_eq!(now["pid"], after["pid"], "round {round}");
        assert_eq!(now["restarts"], round, "round {round}: {now:#}");
    }
    down_clean(&space);
}

// ---- --wait failing -----------------------------------------------------------

#[test]
fn wait_times_out_naming_the_process_with_its_last_lines() {
    let space = Space::new(
        r#"
processes:
  fine: { command: "exec sleep 1000" }
  slow:
    command: "echo warming up the flux; exec sleep 1000"
    ready: { log: "never going to match" }
"#,
    );
    let out = mew_run(&space, &["space", "up", "-d", "--wait", "--timeout", "2s"]);
    assert_ne!(out.code(), Some(0), "{}", show(&out));
    assert!(out.stderr.contains("slow"), "{}", show(&out));
    assert!(!out.stderr.contains("waiting for: fine"), "{}", show(&out));
    assert!(out.stderr.contains("warming up the flux"), "{}", show(&out));
    down_clean(&space);
}

#[test]
fn wait_fails_fast_when_a_process_exits_before_ready() {
    for policy in ["no", "on-failure"] {
        let space = Space::new(&format!(
            r#"
processes:
  fine: {{ command: "exec sleep 1000" }}
  crashy:
    command: "echo cannot open the database; exit 1"
    ready: {{ log: "never" }}
    restart_policy: {policy}
"#
        ));
        // No --timeout: only the failure can end the wait.
        let out = mew_run(&space, &["space", "up", "-d", "--wait"]);
        assert_ne!(out.code(), Some(0), "{policy}: {}", show(&out));
        assert!(out.stderr.contains("crashy"), "{policy}: {}", show(&out));
        assert!(
            out.stderr.contains("cannot open the database"),
            "{policy}: {}",
            show(&out)
        );
        down_clean(&space);
    }
}

// ---- one server per space -----------------------------------------------------

#[test]
fn second_up_is_refused() {
    let space = Space::new("processes:\n  a: { command: \"exec sleep 1000\" }\n");
    up_wait(&space);
    let st = status_json(&space);
    let id = st["space"]["id"].as_str().unwrap();
    let pid = st["server_pid"].as_u64().unwrap();
    for args in [
        &["space", "up", "-d"][..],
        &["space", "up", "-d", "--wait"][..],
        &["space", "up", "--no-tui"][..],
    ] {
        let out = mew_run(&space, args);
        assert_eq!(out.code(), Some(1), "{args:?}: {}", show(&out));
        assert!(
            out.stderr
                .contains(&format!("space \"{id}\" is already running (pid {pid})")),
            "{args:?}: {}",
            show(&out)
        );
    }
    // The running one is untouched.
    assert_eq!(status_json(&space)["server_pid"].as_u64(), Some(pid));
    down_clean(&space);
}

// ---- crash recovery -----------------------------------------------------------

const EVADER: &str = r#"
processes:
  plain: { command: "exec sleep 1000" }
  evader:
    command: "setsid sh -c 'trap \"\" TERM HUP INT; echo $$$$ > evader.pid; while true; do sleep 1; done' & exec sleep 1000"
"#;

/// Start the evader space, kill -9 its server; returns the evader's pid.
fn crash_server(space: &Space) -> u32 {
    up_wait(space);
    let pidfile = space.path().join("evader.pid");
    assert!(wait_for(W, || std::fs::read_to_string(&pidfile)
        .is_ok_and(|s| s.ends_with('\n'))));
    let evader: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(pid_alive(evader));
    let server = status_json(space)["server_pid"].as_u64().unwrap() as u32;
    common::kill(server, "KILL");
    assert!(wait_for(W, || !pid_alive(server)));
    // The server is gone; the evader is not (it is in no group mew knows).
    assert!(pid_alive(evader));
    std::fs::remove_file(&pidfile).unwrap();
    evader
}

#[test]
fn down_after_server_kill_cleans_every_leftover() {
    let space = Space::new(EVADER);
    let evader = crash_server(&space);
    let out = down_clean(&space);
    assert!(out.stdout.contains("had died"), "{}", show(&out));
    assert!(out.stdout.contains("leftover"), "{}", show(&out));
    assert!(!pid_alive(evader));
    assert!(!run_dir(&space).join("state.json").exists());
    assert!(!run_dir(&space).join("mew.sock").exists());
    // And again: nothing to do.
    let out = mew_run(&space, &["space", "down"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert!(out.stdout.contains("not running"), "{}", show(&out));
}

#[test]
fn up_after_server_kill_cleans_leftovers_first() {
    let space = Space::new(EVADER);
    let evader = crash_server(&space);
    let out = up_wait(&space);
    assert!(out.stdout.contains("had died"), "{}", show(&out));
    assert!(!pid_alive(evader), "the old evader survived the new up");
    // The new run works normally (and has a new evader).
    let st = status_json(&space);
    assert_eq!(process(&st, "plain")["state"], "ready");
    assert!(wait_for(W, || space.path().join("evader.pid").exists()));
    down_clean(&space);
}

// ---- socket security ----------------------------------------------------------

#[test]
fn a_run_dir_open_to_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let space = Space::new("processes:\n  a: { command: \"exec sleep 1000\" }\n");
    std::fs::create_dir_all(run_dir(&space)).unwrap();
    std::fs::set_permissions(run_dir(&space), std::fs::Permissions::from_mode(0o777)).unwrap();
    for args in [&["space", "up", "-d"][..], &["space", "up", "--no-tui"][..]] {
        let out = mew_run(&space, args);
        assert_ne!(out.code(), Some(0), "{args:?}: {}", show(&out));
        assert!(
            out.stderr.contains("unsafe permissions") && out.stderr.contains("chmod 700"),
            "{args:?}: {}",
            show(&out)
        );
    }
    assert!(space.wait_no_survivors().is_empty());
    assert!(!run_dir(&space).join("mew.sock").exists());
}

#[test]
fn a_client_of_another_uid_is_refused() {
    let root = nix::unistd::geteuid().is_root();
    let setpriv = Path::new("/usr/bin/setpriv").exists();
    let runuser = Path::new("/usr/sbin/runuser").exists() || Path::new("/sbin/runuser").exists();
    if !root || !(setpriv || runuser) {
        eprintln!("skipped: needs root and setpriv or runuser to act as another user");
        return;
    }
    let space = Space::new("processes:\n  a: { command: \"exec sleep 1000\" }\n");
    up_wait(&space);
    let mut cmd = if setpriv {
        // CAP_DAC_OVERRIDE lets uid 65534 through the 0700 dir and the 0600
        // socket: the client's own trust check must refuse to go on.
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=+dac_override",
            "--ambient-caps=+dac_override",
        ]);
        c
    } else {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--"]);
        c
    };
    cmd.arg(common::MEW)
        .arg("--space-dir")
        .arg(space.path())
        .args(["space", "status"])
        .env("TEST_MARK", &space.mark);
    let out = run(cmd, T);
    assert_ne!(out.code(), Some(0), "{}", show(&out));
    assert!(!out.stdout.contains("NAME"), "{}", show(&out));
    if setpriv {
        // The client itself refuses a run dir that is not its own (the
        // server's own peer check is proven by a raw client in
        // tests/it/security.rs).
        assert!(
            out.stderr.contains("not by you") && out.stderr.contains("uid 65534"),
            "{}",
            show(&out)
        );
    }
    // The owner still gets in.
    assert_eq!(status_json(&space)["processes"][0]["state"], "ready");
    down_clean(&space);
}

#[test]
fn no_tui_serves_the_socket_too() {
    let space = Space::new("processes:\n  a: { command: \"echo fg; exec sleep 1000\" }\n");
    let mut cmd = space.mew();
    cmd.args(["space", "up", "--no-tui", "--timestamps=false"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    let fg_pid = child.id();
    assert!(wait_for(W, || {
        let out = mew_run(&space, &["space", "status", "--json"]);
        out.code() == Some(0) && out.stdout.contains("\"ready\"")
    }));
    let st = status_json(&space);
    assert_eq!(st["server_pid"].as_u64(), Some(u64::from(fg_pid)));
    let out = mew_run(&space, &["space", "logs", "--no-prefix", "a"]);
    assert!(out.stdout.contains("fg"), "{}", show(&out));
    down_clean(&space);
    let out = common::wait_output(child, T);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert!(out.stdout.contains("a | fg"), "{}", show(&out));
}

#[test]
fn a_protocol_version_mismatch_names_both_versions() {
    let space = Space::new("processes:\n  a: { command: \"exec sleep 1000\" }\n");
    up_wait(&space);
    let mut s = UnixStream::connect(socket_path(space.path())).unwrap();
    s.set_read_timeout(Some(W)).unwrap();
    s.write_all(&msg_frame(&serde_json::json!({
        "type": "hello", "version": 999, "mew_version": "9.9.9", "client": "control"
    })))
    .unwrap();
    let bye = read_msg(&mut s).unwrap();
    assert_eq!(bye["type"], "bye", "{bye}");
    let reason = bye["reason"].as_str().unwrap();
    assert!(
        reason.contains("999")
            && reason.contains(&mew::protocol::PROTOCOL_VERSION.to_string())
            && reason.contains("9.9.9"),
        "{reason}"
    );
    assert!(closed_by_server(&mut s));
    status_json(&space);
    down_clean(&space);
}

// ---- bad clients --------------------------------------------------------------

const TICKER: &str = r#"
processes:
  ticker: { command: "n=0; while true; do n=$((n+1)); echo tick $n; sleep 0.05; done" }
"#;

/// The follower still gets fresh lines after `since` (a tick number).
fn follower_alive(f: &mut Follower, after: u64) -> u64 {
    let line = f.wait_line(&format!("a tick after {after}"), |l| {
        tick(l).is_some_and(|n| n > after)
    });
    tick(&line).unwrap()
}

fn last_tick(f: &Follower) -> u64 {
    f.seen.iter().filter_map(|l| tick(l)).max().unwrap_or(0)
}

#[test]
fn malformed_frames_drop_only_their_connection() {
    let space = Space::new(TICKER);
    up_wait(&space);
    let mut f = Follower::start(&space, &[]);
    let mut n = follower_alive(&mut f, 0);
    let sock = socket_path(space.path());

    // A client that connects and never speaks (held open throughout).
    let silent = UnixStream::connect(&sock).unwrap();

    let attacks: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "garbage",
            b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            false,
        ),
        (
            "oversized",
            {
                let mut v = (mew::protocol::MAX_FRAME_LEN + 1).to_be_bytes().to_vec();
                v.push(mew::protocol::KIND_MSG);
                v.extend_from_slice(&[b'x'; 64]);
                v
            },
            false,
        ),
        ("unknown kind", frame(7, b"{}").to_vec(), false),
        (
            "bad json",
            frame(mew::protocol::KIND_MSG, b"{not json"),
            false,
        ),
        (
            "wrong message",
            msg_frame(&serde_json::json!({"type": "launch_missiles"})),
            false,
        ),
        (
            "garbage after hello",
            b"\x00\x00\x00\x03\x01abc".to_vec(),
            true,
        ),
        (
            "unknown request after hello",
            msg_frame(&serde_json::json!({"type": "request", "id": 1, "req": {"type": "explode"}})),
            true,
        ),
    ];
    for (what, bytes, after_hello) in attacks {
        let mut s = if after_hello {
            raw_client(space.path(), "control")
        } else {
            UnixStream::connect(&sock).unwrap()
        };
        s.write_all(&bytes).unwrap();
        assert!(
            closed_by_server(&mut s),
            "{what}: the connection stayed open"
        );
        let st = status_json(&space);
        assert_eq!(process(&st, "ticker")["state"], "ready", "{what}");
        n = follower_alive(&mut f, n);
    }

    // Truncated frames: a header alone, and half a payload, then hang up.
    for (what, bytes) in [
        ("truncated header", vec![0u8, 0]),
        ("truncated payload", {
            let mut v = hello_frame("control");
            v.truncate(v.len() / 2);
            v
        }),
    ] {
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(&bytes).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert!(closed_by_server(&mut s), "{what}");
        status_json(&space);
        n = follower_alive(&mut f, n);
    }

    // A declared 16 MiB frame that never comes: the server does not wait for
    // it before serving others.
    let mut big = UnixStream::connect(&sock).unwrap();
    big.write_all(&mew::protocol::MAX_FRAME_LEN.to_be_bytes())
        .unwrap();
    big.write_all(&[mew::protocol::KIND_MSG, b'{']).unwrap();
    status_json(&space);
    n = follower_alive(&mut f, n);
    drop(big);

    // The silent client is dropped once its hello is overdue; meanwhile all is well.
    let mut silent = silent;
    assert!(
        closed_by_server(&mut silent),
        "the silent client was never dropped"
    );
    status_json(&space);
    follower_alive(&mut f, n);
    let log = server_log(&space);
    assert!(log.contains("dropped a client"), "{log}");
    assert!(log.contains("exceeds"), "{log}");
    drop(f);
    down_clean(&space);
}

#[test]
fn slow_and_vanishing_followers_do_not_stall_the_server() {
    let space = Space::new(
        r#"
processes:
  flood: { command: "i=0; while true; do i=$((i+1)); echo flood line $i with some padding to make it longer; done" }
  ticker: { command: "n=0; while true; do n=$((n+1)); echo tick $n; sleep 0.05; done" }
"#,
    );
    up_wait(&space);
    let follow =
        serde_json::json!({"type": "request", "id": 1, "req": {"type": "follow", "names": []}});

    // A follower that reads nothing.
    let mut slow = raw_client(space.path(), "follow");
    slow.write_all(&msg_frame(&follow)).unwrap();

    // Followers that vanish mid-stream, some after reading a little.
    for i in 0..5 {
        let mut c = raw_client(space.path(), "follow");
        c.write_all(&msg_frame(&follow)).unwrap();
        if i % 2 == 0 {
            let mut buf = [0u8; 1000];
            c.read_exact(&mut buf).unwrap();
        }
        drop(c);
    }

    // Meanwhile status answers and a normal follower keeps up with the ticker.
    let mut f = Follower::start(&space, &["ticker"]);
    let mut n = follower_alive(&mut f, 0);
    for _ in 0..3 {
        let st = status_json(&space);
        assert_eq!(process(&st, "flood")["state"], "ready");
        n = follower_alive(&mut f, n);
    }
    // The flood is still being logged (its PTY reader was never stalled).
    let size = || std::fs::metadata(space.log_path("flood")).map_or(0, |m| m.len());
    let s0 = size();
    assert!(wait_for(W, || size() > s0 + 100_000));

    // The slow follower, reading at last, is told what it missed.
    slow.set_read_timeout(Some(W)).unwrap();
    let mut resync = None;
    let end = Instant::now() + W;
    while Instant::now() < end {
        let m = read_msg(&mut slow).unwrap();
        if m["type"] == "resync" {
            resync = Some(m);
            break;
        }
    }
    let resync = resync.expect("the slow follower never got a resync");
    assert!(resync["dropped"].as_u64().unwrap() > 0, "{resync}");
    drop(slow);
    status_json(&space);
    let last = last_tick(&f);
    follower_alive(&mut f, last);
    drop(f);
    down_clean(&space);
}

// ---- several spaces, long paths -----------------------------------------------

#[test]
fn two_spaces_side_by_side() {
    let one = Space::new("processes:\n  a: { command: \"exec sleep 1000\" }\n");
    let two = Space::new("processes:\n  a: { command: \"exec sleep 1000\" }\n");
    up_wait(&one);
    up_wait(&two);
    let id = |s: &Space| status_json(s)["space"]["id"].as_str().unwrap().to_string();
    let (id1, id2) = (id(&one), id(&two));
    assert_ne!(id1, id2);
    let dir = |s: &Space| std::fs::canonicalize(s.path()).unwrap();
    let out = mew_run(&one, &["space", "ls"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    for (i, d) in [(&id1, dir(&one)), (&id2, dir(&two))] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.starts_with(i.as_str()) && l.ends_with(d.to_str().unwrap())),
            "{i} missing:\n{}",
            out.stdout
        );
    }
    let out = mew_run(&one, &["space", "ls", "--json"]);
    let list: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .any(|e| e["id"] == id2.as_str())
    );

    down_clean(&one);
    let st = status_json(&two);
    assert_eq!(process(&st, "a")["state"], "ready");
    let out = mew_run(&two, &["space", "ls"]);
    assert!(
        !out.stdout.contains(dir(&one).to_str().unwrap()),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(dir(&two).to_str().unwrap()),
        "{}",
        out.stdout
    );
    down_clean(&two);
}

#[test]
fn a_150_character_space_path_works() {
    let space = Space::new("processes:\n  a: { command: \"exit 0\" }\n");
    let mut deep = std::fs::canonicalize(space.path()).unwrap();
    while deep.as_os_str().len() < 150 {
        deep.push("a-long-directory-name");
    }
    std::fs::create_dir_all(deep.join(".mew")).unwrap();
    std::fs::write(
        deep.join(".mew/space.yaml"),
        "processes:\n  a: { command: \"echo deep; exec sleep 1000\" }\n",
    )
    .unwrap();
    let mew = |args: &[&str]| {
        let mut c = Command::new(common::MEW);
        c.arg("--space-dir")
            .arg(&deep)
            .args(args)
            .env_remove("MEW_SPACE_CONFIG")
            .env("TEST_MARK", &space.mark);
        run(c, T)
    };
    let out = mew(&["space", "up", "-d", "--wait"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    let sock = socket_path(&deep);
    assert!(!sock.starts_with(&deep), "{}", sock.display());
    assert!(sock.as_os_str().len() <= 107);
    assert!(sock.exists());
    let out = mew(&["space", "status"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert!(out.stdout.contains("ready"), "{}", show(&out));
    let out = mew(&["space", "logs", "--no-prefix", "a"]);
    assert!(out.stdout.contains("deep"), "{}", show(&out));
    let out = mew(&["space", "down"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert!(space.wait_no_survivors().is_empty());
    assert!(!sock.exists(), "the external socket is left behind");
}

// ---- clean ----------------------------------------------------------------------

#[test]
fn clean_refuses_while_running_and_works_after_down() {
    let space = Space::new("processes:\n  a: { command: \"echo hi; exec sleep 1000\" }\n");
    up_wait(&space);
    assert!(wait_for(W, || space.log("a").contains("| hi")));
    let out = mew_run(&space, &["space", "clean"]);
    assert_eq!(out.code(), Some(1), "{}", show(&out));
    assert!(out.stderr.contains("running"), "{}", show(&out));
    assert!(space.log_path("a").exists());
    assert_eq!(process(&status_json(&space), "a")["state"], "ready");
    down_clean(&space);
    let out = mew_run(&space, &["space", "clean"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert!(!space.log_path("a").exists());
    assert!(space.path().join(".mew/space.yaml").exists());
}

#[test]
fn a_client_claiming_a_huge_terminal_cannot_take_the_server_down() {
    // `stty rows 65535 cols 65535; mew space attach` once asked for a 206 GB
    // allocation; client sizes are clamped.
    let space = Space::new(TICKER);
    up_wait(&space);
    let mut s = raw_client(space.path(), "attach");
    let attach = serde_json::json!({"type": "request", "id": 1, "req": {"type": "attach", "cols": 65535, "rows": 65535, "owner": false}});
    s.write_all(&msg_frame(&attach)).unwrap();
    // It gets frames (drawn at the clamped size), then claims another huge size.
    let mut buf = [0u8; 65536];
    // The error's kind names the cause if this ever fails again (it failed
    // once under load, with the message lost).
    let n = s.read(&mut buf).unwrap_or_else(|e| {
        panic!(
            "no first frame: {e} ({:?})\n{}",
            e.kind(),
            space.log("mew-server")
        )
    });
    assert!(n > 0);
    s.write_all(&msg_frame(
        &serde_json::json!({"type": "resize", "cols": 65535, "rows": 1}),
    ))
    .unwrap();
    let _ = s.read(&mut buf);
    let st = status_json(&space);
    let server_pid = st["server_pid"].as_u64().unwrap() as u32;
    assert!(pid_alive(server_pid));
    drop(s);
    down_clean(&space);
}
