//! The development loop with the real binary (#17): `watch:` restarts (once
//! per write, once per burst, never for an ignored path, the reason in
//! `status --json`), `up NAME…` and `--profile`, `start` with its
//! dependencies, and `mew space run`.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;
use std::time::Duration;

use common::{Output, Space, mew_run, show, wait_for};
use serde_json::Value;

const T: Duration = Duration::from_secs(60);
/// How long a condition may take to become true.
const W: Duration = Duration::from_secs(20);

fn ok(space: &Space, args: &[&str]) -> Output {
    let out = mew_run(space, args);
    assert_eq!(out.code(), Some(0), "{args:?}: {}", show(&out));
    out
}

fn status_json(space: &Space) -> Value {
    let out = ok(space, &["space", "status", "--json"]);
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

/// The state of every process, by name.
fn states(space: &Space) -> Vec<(String, String)> {
    status_json(space)["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn state_of(space: &Space, name: &str) -> String {
    process(&status_json(space), name)["state"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `down`, asserting success and that nothing of this space survives.
fn down_clean(space: &Space) {
    ok(space, &["space", "down"]);
    let left = space.wait_no_survivors();
    assert!(left.is_empty(), "survivors after down: {left:?}");
}

/// How many times the process started (a line each in `count`).
fn starts(space: &Space) -> usize {
    std::fs::read_to_string(space.path().join("count"))
        .unwrap_or_default()
        .lines()
        .count()
}

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Write `rel`, then wait until the process has started `n` times in all
/// and `status` says it restarted because of `rel`.
fn change_and_wait(space: &Space, rel: &str, n: usize) {
    write(space.path(), rel, "changed\n");
    let why = format!("{rel} changed");
    let mut last = Value::Null;
    let done = wait_for(W, || {
        last = process(&status_json(space), "app").clone();
        starts(space) >= n
            && last["last_restart_reason"] == why.as_str()
            && last["state"] == "ready"
    });
    assert!(
        done,
        "no restart for {rel}: {} starts; last {last:#}\n{}",
        starts(space),
        space.log("app")
    );
}

#[test]
fn a_write_restarts_once_a_burst_once_and_an_ignored_path_never() {
    let space = Space::new(
        "processes:\n  app:\n    command: echo started >> count; exec sleep 1000\n    watch:\n      paths: [src]\n      ignore: [\"*.tmp\"]\n      debounce: 100ms\n  other:\n    command: exec sleep 1000\n",
    );
    write(space.path(), "src/main.rs", "fn main() {}\n");
    write(space.path(), ".gitignore", "gen/\n");
    ok(&space, &["space", "up", "-d", "--wait"]);
    // The watch is up once the process says so.
    assert!(
        wait_for(W, || space.log("app").contains("watching src")),
        "{}",
        space.log("app")
    );
    assert_eq!(starts(&space), 1);
    let app = process(&status_json(&space), "app").clone();
    assert!(app.get("last_restart_reason").is_none(), "{app:#}");

    // One write: one restart, and status says why.
    change_and_wait(&space, "src/main.rs", 2);
    assert_eq!(starts(&space), 2);
    let st = status_json(&space);
    assert_eq!(process(&st, "app")["restarts"], 1);
    assert!(process(&st, "other").get("last_restart_reason").is_none());
    let table = ok(&space, &["space", "status"]).stdout;
    assert!(table.contains("(src/main.rs changed)"), "{table}");

    // A burst of writes: one restart (a later change proves no second one
    // was still coming: it would have come first).
    for i in 0..20 {
        write(space.path(), "src/lib.rs", &format!("// {i}\n"));
    }
    assert!(wait_for(W, || starts(&space) >= 3));
    change_and_wait(&space, "src/after_burst.rs", 4);
    assert_eq!(starts(&space), 4, "{}", space.log("app"));

    // Ignored: the default `target`, `ignore:` and `.gitignore`; then one
    // change that is not, and exactly one restart for it.
    write(space.path(), "src/target/debug/out.o", "x");
    write(space.path(), "src/scratch.tmp", "x");
    write(space.path(), "src/gen/code.rs", "x");
    write(space.path(), "count.txt", "outside the watch\n");
    change_and_wait(&space, "src/real.rs", 5);
    assert_eq!(starts(&space), 5, "{}", space.log("app"));
    assert_eq!(process(&status_json(&space), "app")["restarts"], 4);
    assert!(space.log("app").contains("src/real.rs changed: restarting"));
    down_clean(&space);
}

#[test]
fn a_change_does_not_start_a_stopped_process_and_a_signal_action_keeps_it_running() {
    let space = Space::new(
        "processes:\n  app:\n    command: echo started >> count; exec sleep 1000\n    watch:\n      paths: [src]\n      debounce: 50ms\n  hup:\n    command: trap 'echo hup >> hups' HUP; while true; do sleep 0.1; done\n    watch:\n      paths: [conf]\n      debounce: 400ms\n      action: SIGHUP\n",
    );
    write(space.path(), "src/a.rs", "x");
    write(space.path(), "conf/app.conf", "x");
    ok(&space, &["space", "up", "-d", "--wait"]);
    assert!(wait_for(W, || space.log("app").contains("watching src")
        && space.log("hup").contains("watching conf")));
    let pid = process(&status_json(&space), "hup")["pid"].clone();
    write(space.path(), "conf/app.conf", "y");
    assert!(
        wait_for(W, || std::fs::read_to_string(space.path().join("hups"))
            .is_ok_and(|t| t.contains("hup"))),
        "{}",
        space.log("hup")
    );
    let hup = process(&status_json(&space), "hup").clone();
    assert_eq!(hup["pid"], pid, "a signal action does not restart");
    assert_eq!(hup["restarts"], 0);
    assert!(
        space
            .log("hup")
            .contains("conf/app.conf changed: sent SIGHUP")
    );

    // Stopped by the user: a change leaves it stopped. The signal process
    // sees a later change, so the first one was handled (and ignored).
    ok(&space, &["space", "stop", "app"]);
    assert!(wait_for(W, || state_of(&space, "app") == "stopped"));
    write(space.path(), "src/a.rs", "changed");
    write(space.path(), "conf/app.conf", "z");
    assert!(wait_for(W, || std::fs::read_to_string(
        space.path().join("hups")
    )
    .is_ok_and(|t| t.lines().count() >= 2)));
    // (The app's change, with the shorter debounce, reached the server first.)
    assert_eq!(state_of(&space, "app"), "stopped");
    assert_eq!(starts(&space), 1);
    down_clean(&space);
}

const CHAIN: &str = "processes:\n  a:\n    command: exec sleep 1000\n    depends_on: [b]\n  b:\n    command: exec sleep 1000\n    depends_on: [c]\n  c:\n    command: exec sleep 1000\n  d:\n    command: exec sleep 1000\n  debug:\n    command: exec sleep 1000\n    profiles: [tools]\n";

#[test]
fn up_names_starts_them_and_their_dependencies_only() {
    let space = Space::new(CHAIN);
    ok(&space, &["space", "up", "-d", "--wait", "a"]);
    let st = states(&space);
    for (name, state) in &st {
        let want = if ["a", "b", "c"].contains(&name.as_str()) {
            "ready"
        } else {
            "idle"
        };
        assert_eq!(state, want, "{name}: {st:?}");
    }
    // The others are known and startable.
    ok(&space, &["space", "start", "d"]);
    assert!(wait_for(W, || state_of(&space, "d") == "ready"));
    assert_eq!(state_of(&space, "debug"), "idle");
    down_clean(&space);

    // Naming the middle of the chain starts it and what it needs.
    let space = Space::new(CHAIN);
    ok(&space, &["space", "up", "-d", "--wait", "b"]);
    let st = states(&space);
    let running: Vec<&str> = st
        .iter()
        .filter(|(_, s)| s == "ready")
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(running, ["b", "c"], "{st:?}");
    down_clean(&space);
}

#[test]
fn up_with_an_unknown_name_or_profile_is_a_usage_error_before_anything_starts() {
    let space = Space::new(CHAIN);
    let out = mew_run(&space, &["space", "up", "-d", "dbug"]);
    assert_eq!(out.code(), Some(2), "{}", show(&out));
    assert!(out.stderr.contains("no process `dbug`"), "{}", show(&out));
    assert!(out.stderr.contains("did you mean"), "{}", show(&out));
    let out = mew_run(&space, &["space", "up", "--no-tui", "--profile", "tool"]);
    assert_eq!(out.code(), Some(2), "{}", show(&out));
    assert!(
        out.stderr.contains("no process has the profile `tool`")
            && out.stderr.contains("did you mean `tools`?"),
        "{}",
        show(&out)
    );
    // Nothing runs: no server.
    let out = mew_run(&space, &["space", "status"]);
    assert_eq!(out.code(), Some(3), "{}", show(&out));
    assert!(space.wait_no_survivors().is_empty());
}

#[test]
fn profiles_start_only_when_asked_for() {
    let space = Space::new(CHAIN);
    ok(&space, &["space", "up", "-d", "--wait"]);
    assert_eq!(state_of(&space, "debug"), "idle");
    assert_eq!(state_of(&space, "d"), "ready");
    down_clean(&space);

    let space = Space::new(CHAIN);
    ok(
        &space,
        &["space", "up", "-d", "--wait", "--profile", "tools"],
    );
    let st = states(&space);
    assert!(st.iter().all(|(_, s)| s == "ready"), "{st:?}");
    down_clean(&space);
}

#[test]
fn up_no_tui_with_names_runs_only_those() {
    let space = Space::new(
        "processes:\n  first:\n    command: echo first-ran\n    one_shot: true\n  second:\n    command: echo second-ran\n    depends_on: { first: completed_successfully }\n  third:\n    command: echo third-ran\n",
    );
    let out = ok(&space, &["space", "up", "--no-tui", "second"]);
    assert!(out.stdout.contains("first-ran"), "{}", show(&out));
    assert!(out.stdout.contains("second-ran"), "{}", show(&out));
    assert!(!out.stdout.contains("third-ran"), "{}", show(&out));
    assert!(space.wait_no_survivors().is_empty());
}

#[test]
fn start_starts_the_stopped_dependencies_first() {
    let space = Space::new(
        "processes:\n  db:\n    command: exec sleep 1000\n  web:\n    command: exec sleep 1000\n    depends_on: [db]\n",
    );
    ok(&space, &["space", "up", "-d", "--wait"]);
    ok(&space, &["space", "stop", "web", "db"]);
    assert!(wait_for(W, || {
        let st = states(&space);
        st.iter().all(|(_, s)| s == "stopped")
    }));
    let out = ok(&space, &["space", "start", "web"]);
    assert_eq!(out.stdout.trim(), "started: web");
    assert!(
        wait_for(W, || states(&space).iter().all(|(_, s)| s == "ready")),
        "{:?}",
        states(&space)
    );
    down_clean(&space);
}

#[test]
fn run_gives_a_command_the_environment_and_cwd_of_a_process_and_its_exit_code() {
    let space = Space::new(
        "processes:\n  api:\n    command: echo own-command \"$GREETING\"\n    cwd: sub\n    env: { GREETING: \"hello {mark}\" }\n",
    );
    std::fs::create_dir_all(space.path().join("sub")).unwrap();
    let out = mew_run(
        &space,
        &[
            "space",
            "run",
            "api",
            "--",
            "sh",
            "-c",
            "echo \"$GREETING|$(pwd -P)|$MEW_PROCESS|${MEW_RUN_ID-none}\"; exit 7",
        ],
    );
    assert_eq!(out.code(), Some(7), "{}", show(&out));
    let sub = space.path().join("sub").canonicalize().unwrap();
    assert_eq!(
        out.stdout.trim(),
        format!("hello {}|{}|api|none", space.mark, sub.display())
    );

    // Without a command: the process's own.
    let out = ok(&space, &["space", "run", "api"]);
    assert_eq!(
        out.stdout.trim(),
        format!("own-command hello {}", space.mark)
    );

    // An unknown name: a usage error with a suggestion.
    let out = mew_run(&space, &["space", "run", "apj", "--", "true"]);
    assert_eq!(out.code(), Some(2), "{}", show(&out));
    assert!(out.stderr.contains("did you mean `api`?"), "{}", show(&out));
}

#[test]
fn run_uses_the_running_spaces_port_and_the_participants_token() {
    let space = Space::new(
        "participants:\n  human: { tokens: [t] }\n  bot:\n    command: exec sleep 1000\n    env: { SEEN_PORT: \"${PORT}\" }\n    auto_start: false\n    capabilities: [ { kind: chat } ]\n",
    );
    ok(&space, &["space", "up", "-d", "--wait", "-p", "0"]);
    let url = status_json(&space)["gateway_url"]
        .as_str()
        .unwrap()
        .to_string();
    let port = url.rsplit(':').next().unwrap().to_string();
    let out = ok(
        &space,
        &[
            "space",
            "run",
            "bot",
            "--",
            "sh",
            "-c",
            "echo \"$SEEN_PORT $MEW_TOKEN_BOT\"",
        ],
    );
    let token = std::fs::read_to_string(space.path().join(".mew/tokens/bot.token")).unwrap();
    assert_eq!(
        out.stdout.trim(),
        format!("{port} {}", token.trim()),
        "{}",
        show(&out)
    );
    down_clean(&space);
}

/// The TUI's details view says why mew last restarted the process.
#[test]
fn the_tui_details_show_why_it_restarted() {
    use crate::common::tui::{app, demo, key, render, send};
    let mut src = demo();
    let selected = src.status.processes[0].name.clone();
    src.status.processes[0].last_restart_reason = Some("src/main.rs changed".into());
    src.status.processes[0].restarts = 3;
    let mut app = app(&src, 100, 30);
    assert_eq!(app.selected(), Some(selected.as_str()));
    send(&mut app, &src, [key(crossterm::event::KeyCode::Tab)]);
    let term = render(&app, &src, 100, 30);
    let buf = term.backend().buffer();
    let mut text = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            text.push_str(buf[(x, y)].symbol());
        }
        text.push('\n');
    }
    assert!(text.contains("3 (last: src/main.rs changed)"), "{text}");
}

/// `--no-tui` with a task under `watch:`: the task ending does not end the
/// space (a change runs it again); `down` does.
#[test]
fn a_watched_task_runs_again_on_a_change_and_no_tui_stays_up() {
    let space = Space::new(
        "processes:\n  task:\n    command: echo started >> count; echo task-ran\n    one_shot: true\n    watch:\n      paths: [src]\n      debounce: 50ms\n",
    );
    write(space.path(), "src/lib.rs", "x");
    let mut cmd = space.mew();
    cmd.args(["space", "up", "--no-tui"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = cmd.spawn().unwrap();
    assert!(
        wait_for(W, || starts(&space) == 1
            && space.log("task").contains("watching src")
            && state_of_quiet(&space, "task").as_deref() == Some("exited")),
        "{}",
        space.log("task")
    );
    write(space.path(), "src/lib.rs", "y");
    assert!(wait_for(W, || starts(&space) == 2), "{}", space.log("task"));
    ok(&space, &["space", "down"]);
    let out = common::wait_output(child, T);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert_eq!(out.stdout.matches("task-ran").count(), 2, "{}", show(&out));
    assert!(out.stdout.contains("src/lib.rs changed"), "{}", show(&out));
    assert!(space.wait_no_survivors().is_empty());
}

/// The state of `name`, `None` while the space does not answer yet.
fn state_of_quiet(space: &Space, name: &str) -> Option<String> {
    let out = mew_run(space, &["space", "status", "--json"]);
    let v: Value = serde_json::from_str(&out.stdout).ok()?;
    v["processes"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == name)?["state"]
        .as_str()
        .map(str::to_string)
}

/// How many times `b` started (a line each in `count-b`).
fn starts_b(space: &Space) -> usize {
    std::fs::read_to_string(space.path().join("count-b"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[test]
fn a_reload_starts_and_stops_watching() {
    let b = "  b:\n    command: echo started >> count-b; exec sleep 1000\n    watch:\n      paths: [src]\n      debounce: 100ms\n";
    let plain =
        format!("processes:\n  app:\n    command: echo started >> count; exec sleep 1000\n{b}");
    let watched = format!(
        "processes:\n  app:\n    command: echo started >> count; exec sleep 1000\n    watch:\n      paths: [src]\n      debounce: 100ms\n{b}"
    );
    let space = Space::new(&plain);
    write(space.path(), "src/main.rs", "fn main() {}\n");
    ok(&space, &["space", "up", "-d", "--wait"]);
    assert!(wait_for(W, || space.log("b").contains("watching src")));
    let pid = process(&status_json(&space), "app")["pid"].clone();

    // `watch:` added by a reload: the process keeps running (only its watch
    // changed), and from then on a change restarts it.
    std::fs::write(space.path().join(".mew/space.yaml"), &watched).unwrap();
    let out = ok(&space, &["space", "reload"]);
    assert!(
        out.stdout.contains("updated: app (watch)"),
        "{}",
        show(&out)
    );
    assert_eq!(process(&status_json(&space), "app")["pid"], pid);
    assert!(
        wait_for(W, || space.log("app").contains("watching src")),
        "{}",
        space.log("app")
    );
    change_and_wait(&space, "src/main.rs", 2);

    // `watch:` removed by a reload: a change restarts `b` (it was seen) but
    // no longer `app`.
    std::fs::write(space.path().join(".mew/space.yaml"), &plain).unwrap();
    let out = ok(&space, &["space", "reload"]);
    assert!(
        out.stdout.contains("updated: app (watch)"),
        "{}",
        show(&out)
    );
    let before = starts_b(&space);
    write(space.path(), "src/lib.rs", "// changed\n");
    assert!(
        wait_for(W, || starts_b(&space) > before
            && process(&status_json(&space), "b")["state"] == "ready"),
        "{}",
        space.log("b")
    );
    assert_eq!(starts(&space), 2, "{}", space.log("app"));
    down_clean(&space);
}

#[test]
fn a_reload_keeps_the_part_of_the_space_that_up_started() {
    let space = Space::new(CHAIN);
    ok(&space, &["space", "up", "-d", "--wait", "b"]);
    // A new process outside the selection is added idle; one that `b`
    // now depends on is started.
    let grown = CHAIN.replace(
        "    depends_on: [c]\n",
        "    depends_on: [c, e]\n    env: {V: \"2\"}\n",
    ) + "  e:\n    command: exec sleep 1000\n  f:\n    command: exec sleep 1000\n";
    std::fs::write(space.path().join(".mew/space.yaml"), grown).unwrap();
    let out = ok(&space, &["space", "reload"]);
    assert!(out.stdout.contains("added: e, f"), "{}", show(&out));
    assert!(
        wait_for(W, || state_of(&space, "b") == "ready"
            && state_of(&space, "e") == "ready"),
        "{:?}",
        states(&space)
    );
    let st = states(&space);
    for (name, state) in &st {
        let want = if ["b", "c", "e"].contains(&name.as_str()) {
            "ready"
        } else {
            "idle"
        };
        assert_eq!(state, want, "{name}: {st:?}");
    }
    down_clean(&space);
}
