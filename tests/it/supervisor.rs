//! The supervisor, driven through `mew space up --no-tui` with real processes.

use crate::common;

use std::time::Duration;

use common::{Space, run, wait_for};

const T: Duration = Duration::from_secs(60);

fn up(space: &Space, extra: &[&str]) -> common::Output {
    let mut cmd = space.mew();
    cmd.args(["space", "up", "--no-tui", "--timestamps=false"])
        .args(extra);
    run(cmd, T)
}

/// The records of `name`'s log files.
fn records(space: &Space, name: &str) -> Vec<mew::logs::LogRecord> {
    mew::logs::read_logs(
        &space.path().join(".mew/logs"),
        &[name.to_string()],
        None,
        None,
    )
    .expect("read logs")
}

/// Lines of `name`'s log without their timestamps (events marked `* `).
fn log_lines(space: &Space, name: &str) -> Vec<String> {
    records(space, name)
        .into_iter()
        .map(|r| {
            if r.event {
                format!("* {}", r.text)
            } else {
                r.text
            }
        })
        .collect()
}

/// Times of the events of `name` whose text is exactly `text`.
fn exact_event_times(space: &Space, name: &str, text: &str) -> Vec<u64> {
    records(space, name)
        .into_iter()
        .filter(|r| r.event && r.text == text)
        .map(|r| r.at)
        .collect()
}

/// Times of the events of `name` whose text contains `needle`.
fn event_times(space: &Space, name: &str, needle: &str) -> Vec<u64> {
    records(space, name)
        .into_iter()
        .filter(|r| r.event && r.text.contains(needle))
        .map(|r| r.at)
        .collect()
}

#[test]
fn prints_prefixed_lines_and_exits_zero_when_all_succeed() {
    let space = Space::new(
        r#"
processes:
  hello: { command: "echo hello from mew; echo second line" }
  other: { command: "printf 'a\rb\n'" }
"#,
    );
    let out = up(&space, &[]);
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("hello | hello from mew\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("hello | second line\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("other | b\n"), "{}", out.stdout);
    assert!(
        out.stdout.contains("hello * exited with code 0"),
        "{}",
        out.stdout
    );
    assert!(log_lines(&space, "hello").contains(&"hello from mew".to_string()));
    assert!(space.wait_no_survivors().is_empty());
}

#[test]
fn exit_code_is_the_first_failure() {
    let space = Space::new(
        r#"
processes:
  ok: { command: "exit 0" }
  bad: { command: "sleep 0.2; exit 3" }
  worse: { command: "sleep 1; exit 4" }
"#,
    );
    let out = up(&space, &[]);
    assert_eq!(out.code(), Some(3), "{}\n{}", out.stdout, out.stderr);
}

#[test]
fn spawn_failure_is_reported_and_the_rest_keeps_running() {
    let space = Space::new(
        r#"
processes:
  missing: { command: "/no/such/binary", args: [] }
  badcwd: { command: "true", cwd: "/no/such/dir" }
  fine: { command: "sleep 0.5; echo still here" }
"#,
    );
    let out = up(&space, &[]);
    assert!(
        out.stdout
            .contains("missing * failed to start: command not found: /no/such/binary"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("/no/such/dir"), "{}", out.stdout);
    assert!(
        out.stdout.contains("fine    | still here"),
        "{}",
        out.stdout
    );
    assert_eq!(out.code(), Some(127), "{}", out.stdout);
}

#[test]
fn exit_on_failure_stops_the_space_with_the_code() {
    let space = Space::new(
        r#"
processes:
  server: { command: "sleep 1000" }
  tests: { command: "sleep 0.3; exit 5", one_shot: true }
"#,
    );
    let out = up(&space, &["--exit-on-failure"]);
    assert_eq!(out.code(), Some(5), "{}\n{}", out.stdout, out.stderr);
    assert!(space.wait_no_survivors().is_empty());
}

#[test]
fn dependencies_start_in_order_for_each_condition() {
    let space = Space::new(
        r#"
processes:
  setup: { command: "sleep 0.3; echo setup done", one_shot: true }
  db:
    command: "sleep 0.3; echo 'db listening'; sleep 1000"
    ready: { log: "listening" }
  api:
    command: "echo api up; sleep 1000"
    depends_on: { db: ready, setup: completed_successfully }
  watcher:
    command: "echo watching; sleep 1000"
    depends_on: [api]
  probe-done: { command: "sleep 1; exit 0", depends_on: [watcher], one_shot: true }
  stopper: { command: "sleep 1.5; exit 9", depends_on: { probe-done: completed_successfully } }
"#,
    );
    let out = up(&space, &["--exit-on-failure"]);
    assert_eq!(out.code(), Some(9), "{}\n{}", out.stdout, out.stderr);
    let ready_db = exact_event_times(&space, "db", "ready")[0];
    let setup_done = event_times(&space, "setup", "exited with code 0")[0];
    let api_start = event_times(&space, "api", "started pid")[0];
    let watcher_start = event_times(&space, "watcher", "started pid")[0];
    assert!(
        api_start >= ready_db && api_start >= setup_done,
        "{}",
        out.stdout
    );
    assert!(watcher_start >= api_start, "{}", out.stdout);
    assert!(space.wait_no_survivors().is_empty());
}

#[test]
fn a_failed_dependency_fails_its_dependents() {
    let space = Space::new(
        r#"
processes:
  migrate: { command: "exit 2", one_shot: true }
  app: { command: "sleep 1000", depends_on: { migrate: completed_successfully } }
"#,
    );
    let out = up(&space, &[]);
    assert!(
        out.stdout
            .contains("app     * not started: dependency migrate exited 2"),
        "{}",
        out.stdout
    );
    assert_eq!(out.code(), Some(2), "{}", out.stdout);
}

#[test]
fn probes_exec_tcp_http_decide_readiness() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { break };
            let mut buf = [0u8; 512];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n");
        }
    });
    let flag = tempfile::NamedTempFile::new().unwrap().into_temp_path();
    let flag_path = flag.to_path_buf();
    drop(flag);
    let yaml = format!(
        r#"
processes:
  by-exec:
    command: "sleep 0.5; touch {flag}; sleep 1000"
    ready: {{ exec: "test -f {flag}", period: 100ms }}
  by-tcp:
    command: "sleep 1000"
    ready: {{ tcp: "127.0.0.1:{port}", period: 100ms }}
  by-http:
    command: "sleep 1000"
    ready: {{ http: "http://127.0.0.1:{port}/health", period: 100ms }}
  after:
    command: "echo all ready; exit 6"
    depends_on: {{ by-exec: ready, by-tcp: ready, by-http: ready }}
"#,
        flag = flag_path.display()
    );
    let space = Space::new(&yaml);
    let out = up(&space, &["--exit-on-failure"]);
    let _ = std::fs::remove_file(&flag_path);
    assert_eq!(out.code(), Some(6), "{}\n{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("after   | all ready"), "{}", out.stdout);
    for name in ["by-exec", "by-tcp", "by-http"] {
        assert_eq!(
            exact_event_times(&space, name, "ready").len(),
            1,
            "{name}: {}",
            space.log(name)
        );
    }
}

#[test]
fn restart_on_failure_backs_off_exponentially_then_gives_up() {
    let space = Space::new(
        r#"
processes:
  crashy:
    command: "sleep 1.1; exit 1"
    restart_policy: on-failure
    max_restarts: 3
    backoff: { initial: 200ms, multiplier: 2, max: 10s }
"#,
    );
    let out = up(&space, &[]);
    assert_eq!(out.code(), Some(1), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("gave up after 3 restarts"),
        "{}",
        out.stdout
    );
    let exits = event_times(&space, "crashy", "exited with code 1");
    let starts = event_times(&space, "crashy", "started pid");
    assert_eq!(starts.len(), 4, "{}", out.stdout);
    assert_eq!(exits.len(), 4, "{}", out.stdout);
    // The gap between an exit and the next start grows: ~200ms, ~400ms, ~800ms.
    let gaps: Vec<u64> = (0..3).map(|i| starts[i + 1] - exits[i]).collect();
    assert!(
        gaps[0] >= 190 && gaps[1] >= 390 && gaps[2] >= 790,
        "{gaps:?}"
    );
    assert!(gaps[1] > gaps[0] && gaps[2] > gaps[1], "{gaps:?}");
}

#[test]
fn always_restarts_even_on_success_and_no_never_restarts() {
    let space = Space::new(
        r#"
processes:
  looper:
    command: "echo run"
    restart_policy: always
    max_restarts: 2
    backoff: { initial: 50ms }
  once: { command: "exit 0", restart_policy: "no" }
"#,
    );
    let out = up(&space, &[]);
    assert_eq!(
        event_times(&space, "looper", "started pid").len(),
        3,
        "{}",
        out.stdout
    );
    assert_eq!(
        event_times(&space, "once", "started pid").len(),
        1,
        "{}",
        out.stdout
    );
}

#[test]
fn crash_loop_guard_stops_fast_failures() {
    let space = Space::new(
        r#"
processes:
  spin:
    command: "exit 1"
    restart_policy: always
    backoff: { initial: 10ms, max: 20ms }
"#,
    );
    let out = up(&space, &[]);
    assert!(out.stdout.contains("crash loop"), "{}", out.stdout);
    assert_eq!(out.code(), Some(1));
}

#[test]
fn memory_limit_restarts_the_process() {
    let space = Space::new(
        r#"
processes:
  hog:
    command: "tail /dev/zero"
    max_memory: 40M
    restart_policy: "no"
  stopper: { command: "sleep 8; exit 7" }
"#,
    );
    let out = up(&space, &["--exit-on-failure"]);
    let log = space.log("hog");
    assert!(
        log.contains("over limit 40M: restarting"),
        "{log}\n{}",
        out.stdout
    );
    assert!(
        event_times(&space, "hog", "started pid").len() >= 2,
        "{}",
        out.stdout
    );
}

#[test]
fn stop_escalates_to_sigkill_and_leaves_no_orphan() {
    let space = Space::new(
        r#"
processes:
  stubborn:
    command: "trap '' TERM HUP INT; while true; do sleep 0.1; done"
    stop_timeout: 300ms
  background: { command: "sleep 1000 & sleep 1000 & wait" }
  nohup: { command: "(trap '' HUP TERM; sleep 1000) & wait" }
  escaped: { command: "setsid sleep 1000 & sleep 1000" }
  daemon: { command: "(sleep 1000 &) ; sleep 1000" }
  ender: { command: "sleep 1.5; exit 4" }
"#,
    );
    let out = up(&space, &["--exit-on-failure"]);
    assert_eq!(out.code(), Some(4), "{}\n{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("did not stop within 300ms: sent SIGKILL"),
        "{}",
        out.stdout
    );
    let left = space.wait_no_survivors();
    assert!(left.is_empty(), "left behind: {left:?}\n{}", out.stdout);
}

#[test]
fn sigint_and_sigterm_stop_gracefully_with_130_and_143() {
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        let space = Space::new(
            r#"
processes:
  a: { command: "echo started; sleep 1000" }
  b: { command: "sleep 1000 & wait" }
"#,
        );
        let mut cmd = space.mew();
        cmd.args(["space", "up", "--no-tui", "--timestamps=false"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let child = cmd.spawn().unwrap();
        let pid = child.id();
        assert!(
            wait_for(T, || space.log("a").contains("started")),
            "never started"
        );
        common::kill(pid, sig);
        let out = common::wait_output(child, T);
        assert_eq!(
            out.code(),
            Some(code),
            "{sig}: {}\n{}",
            out.stdout,
            out.stderr
        );
        assert!(space.wait_no_survivors().is_empty());
    }
}

#[test]
fn log_keeps_every_line_in_order() {
    let space = Space::new(
        r#"
processes:
  counter: { command: "seq 1 1000000" }
"#,
    );
    let out = up(&space, &[]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let lines: Vec<String> = log_lines(&space, "counter")
        .into_iter()
        .filter(|l| !l.starts_with("* "))
        .collect();
    assert_eq!(lines.len(), 1_000_000);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l, &(i + 1).to_string());
    }
    let printed = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("counter | "))
        .count();
    assert_eq!(printed, 1_000_000);
}

#[test]
fn logs_rotate_by_size() {
    let space = Space::new(
        r#"
logs: { rotate_size: 20K, keep: 2 }
processes:
  chatty: { command: "seq 1 20000" }
"#,
    );
    let out = up(&space, &[]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let dir = space.path().join(".mew/logs");
    assert!(dir.join("chatty.log.1").exists());
    assert!(dir.join("chatty.log.2").exists());
    assert!(!dir.join("chatty.log.3").exists());
    let size = std::fs::metadata(dir.join("chatty.log")).unwrap().len();
    assert!(size <= 20 * 1024, "{size}");
    // The newest lines are in the current file, in order.
    let lines = log_lines(&space, "chatty");
    assert!(lines.iter().any(|l| l == "20000"));
}

#[test]
fn two_spaces_run_side_by_side() {
    let a = Space::new("processes:\n  p: { command: \"sleep 1; echo in-a\" }\n");
    let b = Space::new("processes:\n  p: { command: \"sleep 1; echo in-b\" }\n");
    let mut ca = a.mew();
    ca.args(["space", "up", "--no-tui"]);
    let mut cb = b.mew();
    cb.args(["space", "up", "--no-tui"]);
    let ta = std::thread::spawn(move || run(ca, T));
    let tb = std::thread::spawn(move || run(cb, T));
    let (oa, ob) = (ta.join().unwrap(), tb.join().unwrap());
    assert_eq!(oa.code(), Some(0), "{}", oa.stderr);
    assert_eq!(ob.code(), Some(0), "{}", ob.stderr);
    assert!(a.log("p").contains("in-a") && !a.log("p").contains("in-b"));
    assert!(b.log("p").contains("in-b") && !b.log("p").contains("in-a"));
}

#[test]
fn children_get_the_mew_environment_and_a_tty() {
    let space = Space::new(
        r#"
space: { id: envtest }
processes:
  show:
    command: "echo space=$MEW_SPACE proc=$MEW_PROCESS term=$TERM run=${MEW_RUN_ID:+set}; [ -t 1 ] && echo tty"
"#,
    );
    let out = up(&space, &[]);
    assert!(
        out.stdout
            .contains("space=envtest proc=show term=xterm-256color run=set"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("show | tty"), "{}", out.stdout);
}

#[test]
fn rapid_restarts_never_kill_the_new_instance() {
    // Regression: the sweep for escaped children of the old instance once ran
    // concurrently with the respawn and killed the new instance.
    let space = Space::new(
        r#"
processes:
  a: { command: "while :; do sleep 1; done" }
  b: { command: "sleep 1000 & wait", depends_on: [a] }
"#,
    );
    let mut cmd = space.mew();
    cmd.args(["space", "up", "--no-tui"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    let pid = child.id();
    assert!(
        wait_for(T, || space.log("b").contains("started pid")),
        "never started"
    );
    for _ in 0..10 {
        let mut r = space.mew();
        r.args(["space", "restart"]);
        assert_eq!(run(r, T).code(), Some(0));
    }
    let all_ready = || {
        let mut st = space.mew();
        st.args(["space", "status", "--json"]);
        let out = run(st, T);
        let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
        v["processes"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| p["state"] == "ready"))
    };
    assert!(wait_for(T, all_ready), "not everything came back");
    common::kill(pid, "TERM");
    let out = common::wait_output(child, T);
    assert_eq!(out.code(), Some(143), "{}", out.stdout);
    for name in ["a", "b"] {
        assert!(
            !space.log(name).contains("killed by"),
            "{name}: {}",
            space.log(name)
        );
    }
    assert!(space.wait_no_survivors().is_empty());
}

/// Lines in a file of the space (0 when it does not exist yet).
fn count_lines(space: &Space, file: &str) -> usize {
    std::fs::read_to_string(space.path().join(file))
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// `mew space status --json`, parsed (`Null` when it fails).
fn status_json(space: &Space) -> serde_json::Value {
    let mut st = space.mew();
    st.args(["space", "status", "--json"]);
    let out = run(st, T);
    serde_json::from_str(&out.stdout).unwrap_or_default()
}

/// `name`'s entry in `status --json`.
fn proc_status(space: &Space, name: &str) -> serde_json::Value {
    status_json(space)["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name).cloned())
        .unwrap_or_default()
}

/// Start `up --no-tui` in the background.
fn up_in_background(space: &Space) -> std::process::Child {
    let mut cmd = space.mew();
    cmd.args(["space", "up", "--no-tui", "--timestamps=false"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd.spawn().expect("spawn mew")
}

/// Stop a background `up` with SIGTERM and check that nothing is left.
fn stop_up(space: &Space, child: std::process::Child) -> common::Output {
    let pid = child.id();
    common::kill(pid, "TERM");
    let out = common::wait_output(child, T);
    assert_eq!(out.code(), Some(143), "{}\n{}", out.stdout, out.stderr);
    let left = space.wait_no_survivors();
    assert!(left.is_empty(), "left behind: {left:?}\n{}", out.stdout);
    out
}

/// Whether `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, rest)| !rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[test]
fn a_readiness_probe_stops_once_ready_and_runs_again_after_a_restart() {
    // The process keeps its own clock (a tick every 100ms) and the probe
    // counts its runs. Were the probe still running after readiness, it
    // would run about once per tick: 30 ticks later the count has not moved.
    // (A loaded machine can only slow the probe down, never make it run
    // more, so a busy CI cannot make this fail.)
    let space = Space::new(
        r#"
processes:
  web:
    command: "while :; do echo tick >> ticks; sleep 0.1; done"
    ready: { exec: "echo hit >> hits; [ $(wc -l < hits) -ge 3 ]", period: 100ms }
"#,
    );
    let child = up_in_background(&space);
    let readies = || exact_event_times(&space, "web", "ready").len();
    assert!(wait_for(T, || readies() == 1), "{}", space.log("web"));
    let ticks = count_lines(&space, "ticks");
    assert!(wait_for(T, || count_lines(&space, "ticks") >= ticks + 30));
    assert_eq!(count_lines(&space, "hits"), 3, "{}", space.log("web"));

    // A new instance must become ready again: its probe runs (once: the
    // count is already past 3) and stops again.
    let mut r = space.mew();
    r.args(["space", "restart", "web"]);
    assert_eq!(run(r, T).code(), Some(0));
    assert!(wait_for(T, || readies() == 2), "{}", space.log("web"));
    let ticks = count_lines(&space, "ticks");
    assert!(wait_for(T, || count_lines(&space, "ticks") >= ticks + 30));
    assert_eq!(count_lines(&space, "hits"), 4, "{}", space.log("web"));
    let web = proc_status(&space, "web");
    assert_eq!(web["state"], "ready", "{web}");
    // No `health:` check: no verdict.
    assert!(web["healthy"].is_null(), "{web}");
    stop_up(&space, child);
}

#[test]
fn an_exec_probe_that_forks_leaves_nothing_behind() {
    // Each check starts a long sleep in the background and exits at once;
    // the check's process group must go with it.
    let space = Space::new(
        r#"
processes:
  web:
    command: "sleep 1000"
    ready: { exec: "sleep 1000 & echo $! >> children; true", period: 100ms }
    health: { exec: "sleep 1000 & echo $! >> children; true", period: 100ms }
"#,
    );
    let child = up_in_background(&space);
    let children = || -> Vec<u32> {
        std::fs::read_to_string(space.path().join("children"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    // Checks run one after the other: once a sixth has started, the first
    // five (the readiness probe and four health checks) have ended.
    assert!(
        wait_for(T, || children().len() >= 6),
        "{}",
        space.log("web")
    );
    let ended: Vec<u32> = children().into_iter().take(5).collect();
    assert!(
        wait_for(T, || ended.iter().all(|&pid| !alive(pid))),
        "still running: {:?}",
        ended.iter().filter(|&&pid| alive(pid)).collect::<Vec<_>>()
    );
    // The process itself is untouched.
    assert_eq!(proc_status(&space, "web")["state"], "ready");
    assert_eq!(event_times(&space, "web", "started pid").len(), 1);
    stop_up(&space, child);
}

#[test]
fn a_failing_health_check_restarts_the_process_counted_by_the_policy() {
    // `restart_policy: no`: the health check restarts anyway (its action),
    // and the restart counts towards `max_restarts` like any other.
    let space = Space::new(
        r#"
processes:
  web:
    command: "echo started >> starts; sleep 1000"
    health: { exec: "test -f healthy", period: 100ms, failure_threshold: 2 }
    max_restarts: 1
    backoff: { initial: 100ms }
"#,
    );
    let out = up(&space, &[]);
    let log = space.log("web");
    assert!(
        out.stdout.contains(
            "web * health check failed 2 times: test -f healthy: exit 1: restarting: sent SIGTERM to process group"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "web * stopped (SIGTERM): health check failed 2 times: test -f healthy: exit 1; restarting in 100ms"
        ),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "web * stopped (SIGTERM): health check failed 2 times: test -f healthy: exit 1; gave up after 1 restarts"
        ),
        "{}",
        out.stdout
    );
    assert!(log.contains("health check failed 2 times"), "{log}");
    assert_eq!(count_lines(&space, "starts"), 2, "{}", out.stdout);
    assert_eq!(event_times(&space, "web", "started pid").len(), 2);
    assert_ne!(out.code(), Some(0), "{}", out.stdout);
    assert!(space.wait_no_survivors().is_empty());
}

#[test]
fn a_health_check_with_action_none_only_reports() {
    // The health check starts once the process is ready: while the readiness
    // probe keeps failing (five runs), the health check has not run once.
    let space = Space::new(
        r#"
processes:
  web:
    command: "sleep 1000"
    ready: { exec: "echo r >> ready-hits; test -f go", period: 100ms }
    health:
      exec: "echo h >> health-hits; test -f healthy"
      period: 100ms
      failure_threshold: 2
      action: none
"#,
    );
    let child = up_in_background(&space);
    assert!(wait_for(T, || count_lines(&space, "ready-hits") >= 5));
    assert_eq!(count_lines(&space, "health-hits"), 0);
    let web = proc_status(&space, "web");
    assert_eq!(web["state"], "starting", "{web}");
    assert!(web["healthy"].is_null(), "{web}");
    std::fs::write(space.path().join("go"), "").unwrap();
    let unhealthy =
        "unhealthy: health check failed 2 times: echo h >> health-hits; test -f healthy: exit 1";
    assert!(
        wait_for(T, || space.log("web").contains(unhealthy)),
        "{}",
        space.log("web")
    );
    let web = proc_status(&space, "web");
    assert_eq!(web["state"], "ready", "{web}");
    assert_eq!(web["restarts"], 0, "{web}");
    assert_eq!(web["healthy"], false, "{web}");
    assert!(count_lines(&space, "health-hits") >= 2);
    // Healthy again on the next success.
    std::fs::write(space.path().join("healthy"), "").unwrap();
    assert!(
        wait_for(T, || exact_event_times(&space, "web", "healthy again")
            .len()
            == 1),
        "{}",
        space.log("web")
    );
    let web = proc_status(&space, "web");
    assert_eq!(web["state"], "ready", "{web}");
    assert_eq!(web["restarts"], 0, "{web}");
    assert_eq!(web["healthy"], true, "{web}");
    assert_eq!(event_times(&space, "web", "started pid").len(), 1);
    // Reported once, not at every failure.
    assert_eq!(event_times(&space, "web", "unhealthy:").len(), 1);
    stop_up(&space, child);
}
