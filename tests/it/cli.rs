//! mew in pipelines and CI jobs, and the everyday command line: the real
//! binary, real pipes, real processes.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Space, run, wait_for};

const T: Duration = Duration::from_secs(60);

fn mew(space: &Space, args: &[&str]) -> common::Output {
    let mut c = space.mew();
    c.args(args);
    run(c, T)
}

fn down(space: &Space) {
    let out = mew(space, &["space", "down"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        space.wait_no_survivors().is_empty(),
        "something outlived down"
    );
}

/// A child's exit, waited for with a deadline.
fn wait_exit(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let end = Instant::now() + T;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("{what} did not exit within {T:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn up_no_tui_stops_when_its_reader_goes_away() {
    let space = Space::new(
        "processes:\n  ticker: { command: \"while true; do echo tick; sleep 0.05; done\" }\n  stubborn: { command: \"trap '' TERM HUP; exec sleep 300\", stop_timeout: 1s }\n",
    );
    let mut child = space
        .mew()
        .args(["space", "up", "--no-tui", "--timestamps=false"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `| head -1`: read one line, then close the pipe.
    {
        let mut r = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        assert!(!line.is_empty());
    }
    let st = wait_exit(&mut child, "mew space up --no-tui with a closed stdout");
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert_eq!(st.code(), Some(141), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        space.wait_no_survivors().is_empty(),
        "processes outlived the pipeline"
    );
    // Nothing is left to hang a later `down`.
    let out = mew(&space, &["space", "down"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
}

#[test]
fn commands_end_quietly_on_a_closed_pipe() {
    let space = Space::new("processes:\n  a: { command: \"exec sleep 300\" }\n");
    let out = mew(&space, &["space", "up", "-d", "--wait"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    for args in [
        &["space", "status", "--json"][..],
        &["space", "status"],
        &["space", "check"],
        &["space", "ls"],
        &["--help"],
    ] {
        // stdout: a pipe whose reader is already gone.
        let (rd, wr) = nix::unistd::pipe().unwrap();
        drop(rd);
        let mut c = space.mew();
        c.args(args)
            .stdout(Stdio::from(wr))
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        let mut child = c.spawn().unwrap();
        let st = wait_exit(&mut child, "a command writing to a closed pipe");
        let mut err = String::new();
        let _ = child.stderr.take().unwrap().read_to_string(&mut err);
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{args:?}: {err}"
        );
        assert_ne!(st.code(), Some(101), "{args:?} panicked");
        assert!(
            st.signal() == Some(libc::SIGPIPE) || st.success(),
            "{args:?}: {st:?} {err}"
        );
    }
    down(&space);
}

const CI_SPACE: &str = r#"
processes:
  db: { command: "echo db up; exec sleep 300", ready: { log: "db up" } }
  migrate: { command: "echo migrated", one_shot: true, depends_on: { db: ready } }
  tests: { command: "echo testing; exit 4", depends_on: { migrate: completed_successfully } }
"#;

#[test]
fn exit_code_from_ends_a_ci_run_with_the_tests_code() {
    let space = Space::new(CI_SPACE);
    let out = mew(&space, &["space", "up", "--exit-code-from", "tests"]);
    assert_eq!(out.code(), Some(4), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("testing"), "{}", out.stdout);
    assert!(space.wait_no_survivors().is_empty(), "db outlived the run");
    // Success too.
    let ok = Space::new(&CI_SPACE.replace("exit 4", "exit 0"));
    let out = mew(&ok, &["space", "up", "--exit-code-from", "tests"]);
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    // A name that does not exist is refused before anything starts.
    let out = mew(&ok, &["space", "up", "--exit-code-from", "test"]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("did you mean `tests`"),
        "{}",
        out.stderr
    );
    assert!(ok.survivors().is_empty());
}

#[test]
fn abort_on_exit_stops_at_the_first_end() {
    let space = Space::new(CI_SPACE);
    let out = mew(&space, &["space", "up", "--abort-on-exit"]);
    // migrate (a task that succeeded) does not abort; tests does.
    assert_eq!(out.code(), Some(4), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("testing"));
    assert!(space.wait_no_survivors().is_empty());
}

#[test]
fn down_of_a_never_started_space_is_a_no_op() {
    let space = Space::new("processes:\n  a: { command: \"sleep 1\" }\n");
    let out = mew(&space, &["space", "down"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("nothing to stop"), "{}", out.stdout);
    assert!(
        !space.path().join(".mew/run").exists(),
        "down created state"
    );
}

#[test]
fn hints_for_the_everyday_slips() {
    let space = Space::new(
        "processes:\n  web: { command: \"exec sleep 300\" }\n  worker: { command: \"exec sleep 300\" }\n",
    );
    for word in ["status", "logs", "attach"] {
        let out = mew(&space, &[word]);
        assert_eq!(out.code(), Some(2));
        assert!(
            out.stderr.contains(&format!("`mew space {word}`")),
            "{}",
            out.stderr
        );
    }
    let out = mew(&space, &["space", "up", "-d", "--wait"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let out = mew(&space, &["space", "restart", "wbe"]);
    assert_ne!(out.code(), Some(0));
    assert!(out.stderr.contains("did you mean `web`"), "{}", out.stderr);
    let out = mew(&space, &["space", "logs", "workr"]);
    assert!(
        out.stderr.contains("did you mean `worker`"),
        "{}",
        out.stderr
    );
    down(&space);
}

/// The upstream CLI's habits: `mew up` / `mew down`, `-c FILE`, `-p PORT`,
/// `--detach`; and upstream's `-d DIR` (mew's `-d` is `--detach`) is told.
#[test]
fn upstream_habits_work_or_are_explained() {
    let space = Space::new("");
    std::fs::write(
        space.path().join("other.yaml"),
        "processes:\n  web: { command: \"exec sleep 300\" }\n",
    )
    .unwrap();
    let other = space.path().join("other.yaml");
    let other = other.to_str().unwrap();
    let out = mew(
        &space,
        &["up", "-c", other, "-p", "0", "--detach", "--wait"],
    );
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let out = mew(&space, &["space", "status", "-c", other]);
    assert!(out.stdout.contains("web"), "{}", out.stdout);
    let out = mew(&space, &["down", "-c", other]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("is down"), "{}", out.stdout);
    assert!(space.wait_no_survivors().is_empty());
    let out = mew(&space, &["space", "up", "-d", "."]);
    assert_eq!(out.code(), Some(2), "{}", out.stdout);
    assert!(out.stderr.contains("`--space-dir DIR`"), "{}", out.stderr);
}

/// Upstream's `space up -l LEVEL` sets the gateway's log level.
#[test]
fn up_log_level_reaches_the_gateway() {
    let yaml = "participants:\n  human: { tokens: [t] }\n";
    let quiet = Space::new(yaml);
    let loud = Space::new(yaml);
    for (space, extra) in [(&quiet, &["-l", "warn"][..]), (&loud, &[][..])] {
        let mut args = vec!["up", "-p", "0", "--detach", "--wait"];
        args.extend_from_slice(extra);
        let out = mew(space, &args);
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
    }
    // The gateway prints its port line either way (on stdout, not through
    // its log level): both are up and past start-up when it is there.
    for space in [&quiet, &loud] {
        assert!(common::wait_for(Duration::from_secs(60), || space
            .log("gateway")
            .contains("Gateway listening on port")));
    }
    assert!(
        loud.log("gateway").contains("MEW gateway for space"),
        "{}",
        loud.log("gateway")
    );
    assert!(
        !quiet.log("gateway").contains("MEW gateway for space"),
        "{}",
        quiet.log("gateway")
    );
    let out = mew(&quiet, &["up", "-l", "loud"]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("possible values: debug, info, warn, error"),
        "{}",
        out.stderr
    );
    down(&quiet);
    down(&loud);
}

#[test]
fn a_long_failure_reason_does_not_widen_the_status_table() {
    let long = format!(
        "/nonexistent/{}/program",
        "very-long-directory-name".repeat(6)
    );
    let space = Space::new(&format!(
        "processes:\n  bad: {{ command: \"{long}\", args: [] }}\n  ok: {{ command: \"exec sleep 300\" }}\n"
    ));
    let out = mew(&space, &["space", "up", "-d"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(wait_for(Duration::from_secs(30), || mew(
        &space,
        &["space", "status"]
    )
    .stdout
    .contains("failed")));
    let table = mew(&space, &["space", "status"]).stdout;
    for line in table.lines().skip(1) {
        assert!(
            line.chars().count() <= 120,
            "{} columns: {line}",
            line.chars().count()
        );
    }
    assert!(table.contains('…'), "{table}");
    // The whole reason is in the JSON.
    let json = mew(&space, &["space", "status", "--json"]).stdout;
    assert!(json.contains("very-long-directory-name"), "{json}");
    down(&space);
}

#[test]
fn wait_shows_this_runs_lines_only() {
    let space = Space::new(
        "processes:\n  a: { command: \"echo line-of-$RUN; exit 3\", env: { RUN: first }, ready: { log: never } }\n",
    );
    let out = mew(&space, &["space", "up", "-d", "--wait"]);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("line-of-first"), "{}", out.stderr);
    std::fs::write(
        space.path().join(".mew/space.yaml"),
        "processes:\n  a: { command: \"echo line-of-$RUN; exit 3\", env: { RUN: second }, ready: { log: never } }\n",
    )
    .unwrap();
    let _ = mew(&space, &["space", "down"]);
    let out = mew(&space, &["space", "up", "-d", "--wait"]);
    assert_eq!(out.code(), Some(1));
    assert!(out.stderr.contains("line-of-second"), "{}", out.stderr);
    assert!(
        !out.stderr.contains("line-of-first"),
        "an earlier run's lines: {}",
        out.stderr
    );
    let _ = mew(&space, &["space", "down"]);
}

#[test]
fn warnings_reach_up_in_every_mode() {
    let space = Space::new("processes:\n  a: { command: \"exec sleep 300\", autostart: false }\n");
    let out = mew(&space, &["space", "up", "-d", "--wait"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr.contains("did you mean `auto_start`"),
        "{}",
        out.stderr
    );
    down(&space);
    // A top-level typo leaves nothing to run: an error, nothing started.
    let typo = Space::new("procesess:\n  a: { command: \"exec sleep 300\" }\n");
    let out = mew(&typo, &["space", "up", "-d"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("nothing to run"), "{}", out.stderr);
    assert!(
        out.stderr.contains("did you mean `processes`"),
        "{}",
        out.stderr
    );
    assert!(typo.survivors().is_empty());
}

#[test]
fn an_attached_client_that_loses_its_server_cleans_up() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    let space = Space::new(
        "processes:\n  plain: { command: \"exec sleep 300\" }\n  escaped: { command: \"setsid sh -c 'trap \\\"\\\" TERM HUP; exec sleep 300' & exec sleep 300\" }\n",
    );
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 30,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(common::MEW);
    cmd.args(["--space-dir"]);
    cmd.arg(space.path());
    cmd.args(["space", "up"]);
    cmd.env("TEST_MARK", &space.mark);
    cmd.env("TERM", "xterm-256color");
    cmd.env_remove("MEW_SPACE_CONFIG");
    let mut client = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    // Keep the terminal drained.
    let mut reader = pty.master.try_clone_reader().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
    });
    let _writer = pty.master.take_writer().unwrap();
    // Wait until both processes run (the escaped one has its own session).
    let status = || {
        let out = mew(&space, &["space", "status", "--json"]);
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    assert!(wait_for(T, || {
        let s = status();
        s["processes"]
            .as_array()
            .is_some_and(|p| p.len() == 2 && p.iter().all(|p| p["pid"].is_u64()))
    }));
    assert!(
        wait_for(T, || space.survivors().len() >= 4),
        "{:?}",
        space.survivors()
    );
    let server = status()["server_pid"].as_u64().unwrap();
    common::kill(u32::try_from(server).unwrap(), "KILL");
    // The client notices, restores the terminal, and kills what is left.
    let end = Instant::now() + T;
    while client.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < end,
            "the client did not exit after losing its server"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        space.wait_no_survivors().is_empty(),
        "left running: {:?}",
        space.survivors()
    );
    let _ = Command::new(common::MEW)
        .arg("--space-dir")
        .arg(space.path())
        .args(["space", "down"])
        .output();
}

#[test]
fn down_of_a_stopped_server_kills_it_and_reports_down_only_when_it_is() {
    let space = Space::new(
        "shutdown_timeout: 1s\nprocesses:\n  a: { command: \"exec sleep 300\", stop_timeout: 1s }\n  escaped: { command: \"setsid sh -c 'trap \\\"\\\" TERM HUP; exec sleep 300' & exec sleep 300\", stop_timeout: 1s }\n",
    );
    let out = mew(&space, &["space", "up", "-d", "--wait"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let st: serde_json::Value =
        serde_json::from_str(&mew(&space, &["space", "status", "--json"]).stdout).unwrap();
    let server = u32::try_from(st["server_pid"].as_u64().unwrap()).unwrap();
    common::kill(server, "STOP");
    let out = mew(&space, &["space", "down"]);
    assert_eq!(out.code(), Some(0), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("killing the space server"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.contains("is down"), "{}", out.stdout);
    assert!(
        space.wait_no_survivors().is_empty(),
        "left running: {:?}",
        space.survivors()
    );
}

#[test]
fn inherited_descriptors_do_not_leak_into_the_space() {
    // `{ mew space up -d; } 3>&1 | cat` returns only when nothing holds the
    // pipe: neither the server nor its processes may inherit descriptor 3.
    let space = Space::new("processes:\n  a: { command: \"exec sleep 300\" }\n");
    let mut c = Command::new("bash");
    c.arg("-c")
        .arg(format!(
            "{{ '{}' --space-dir '{}' space up -d; }} 3>&1 | cat",
            common::MEW,
            space.path().display()
        ))
        .env("TEST_MARK", &space.mark);
    let out = run(c, T);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("is up"), "{}", out.stdout);
    down(&space);
}
