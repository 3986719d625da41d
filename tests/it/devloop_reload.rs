//! The config of a running space changes, with the real binary: `mew space
//! reload` (added, removed, changed and unchanged processes; a broken file
//! changes nothing), `mew space scale NAME=N` up and down, and `up
//! --watch-config` reloading by itself (also when an override file appears).
#![allow(clippy::unwrap_used)] // tests may unwrap (helpers are not #[test] fns)

use crate::common;

use std::time::Duration;

use common::{Space, mew_run, show, wait_for};
use serde_json::Value;

/// How long a condition may take to become true (the machine is loaded).
const W: Duration = Duration::from_secs(30);

fn up_wait(space: &Space, extra: &[&str]) {
    let mut args = vec!["space", "up", "-d", "--wait"];
    args.extend_from_slice(extra);
    let out = mew_run(space, &args);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
}

fn status_json(space: &Space) -> Value {
    let out = mew_run(space, &["space", "status", "--json"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// Name → pid of every process in `status --json` (`None`: not running).
fn pids(status: &Value) -> Vec<(String, Option<u64>)> {
    status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap().to_owned(), p["pid"].as_u64()))
        .collect()
}

fn pid_of(status: &Value, name: &str) -> Option<u64> {
    pids(status)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, p)| p)
}

fn names(status: &Value) -> Vec<String> {
    pids(status).into_iter().map(|(n, _)| n).collect()
}

/// Wait until `cond` holds of the status; the last status seen.
fn wait_status(space: &Space, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
    let mut last = Value::Null;
    let ok = wait_for(W, || {
        // The server may not answer yet (`up --no-tui` just started).
        let out = mew_run(space, &["space", "status", "--json"]);
        if out.code() != Some(0) {
            return false;
        }
        last = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        !last.is_null() && cond(&last)
    });
    assert!(ok, "{what}: not within {W:?}; last status:\n{last:#}");
    last
}

fn write_config(space: &Space, yaml: &str) {
    let path = space.path().join(".mew/space.yaml");
    std::fs::write(path, yaml.replace("{mark}", &space.mark)).unwrap();
}

const BEFORE: &str = "processes:
  keep:
    command: sleep 1000
  gone:
    command: sleep 1000
  change:
    command: sleep 1000
    env: { LEVEL: \"1\" }
  live:
    command: sleep 1000
";

const AFTER: &str = "processes:
  keep:
    command: sleep 1000
  change:
    command: sleep 1000
    env: { LEVEL: \"2\" }
  live:
    command: sleep 1000
    profiles: [dev]
  new:
    command: sleep 1000
    depends_on: { keep: started }
";

#[test]
fn reload_starts_the_added_stops_the_removed_restarts_the_changed() {
    let space = Space::new(BEFORE);
    up_wait(&space, &[]);
    let before = wait_status(&space, "all running", |s| {
        ["keep", "gone", "change", "live"]
            .iter()
            .all(|n| pid_of(s, n).is_some())
    });
    write_config(&space, AFTER);
    let out = mew_run(&space, &["space", "reload"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert!(out.stdout.contains("added: new\n"), "{}", show(&out));
    assert!(out.stdout.contains("removed: gone\n"), "{}", show(&out));
    assert!(
        out.stdout.contains("restarted: change (env.LEVEL)\n"),
        "{}",
        show(&out)
    );
    assert!(
        out.stdout.contains("updated: live (profiles)\n"),
        "{}",
        show(&out)
    );
    assert!(out.stdout.contains("unchanged: 1\n"), "{}", show(&out));

    let after = wait_status(&space, "the new config runs", |s| {
        let n = names(s);
        !n.contains(&"gone".to_string())
            && pid_of(s, "new").is_some()
            && pid_of(s, "change").is_some_and(|p| Some(p) != pid_of(&before, "change"))
    });
    assert_eq!(
        pid_of(&after, "keep"),
        pid_of(&before, "keep"),
        "keep kept its pid"
    );
    assert_eq!(
        pid_of(&after, "live"),
        pid_of(&before, "live"),
        "live kept its pid"
    );
    let mut n = names(&after);
    n.sort();
    assert_eq!(n, ["change", "keep", "live", "new"]);
    // The restarted process runs with its new environment.
    let pid = pid_of(&after, "change").unwrap() as u32;
    assert_eq!(
        mew::procfs::env_var(pid, "LEVEL").as_deref(),
        Some("2"),
        "the new env"
    );

    // Nothing changed: nothing happens.
    let out = mew_run(&space, &["space", "reload"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert_eq!(out.stdout, "unchanged: 4\n", "{}", show(&out));

    // A process removed and added back gets a new run.
    write_config(&space, BEFORE);
    let out = mew_run(&space, &["space", "reload"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert!(out.stdout.contains("added: gone\n"), "{}", show(&out));
    wait_status(&space, "gone is back", |s| {
        pid_of(s, "gone").is_some() && !names(s).contains(&"new".to_string())
    });
    let out = mew_run(&space, &["space", "down"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert!(space.wait_no_survivors().is_empty());
}

#[test]
fn a_broken_config_changes_nothing_and_says_where() {
    let space = Space::new("processes:\n  a:\n    command: sleep 1000\n");
    up_wait(&space, &[]);
    let before = wait_status(&space, "a running", |s| pid_of(s, "a").is_some());
    write_config(
        &space,
        "processes:\n  a:\n    command: sleep 1000\n  b:\n    command: sleep 1000\n    stop_timeout: forever\n",
    );
    let out = mew_run(&space, &["space", "reload"]);
    assert_eq!(out.code(), Some(2), "{}", show(&out));
    assert!(
        out.stderr.contains("space.yaml:6:19: `b.stop_timeout`"),
        "file:line:col of the error: {}",
        show(&out)
    );
    assert!(out.stderr.contains("nothing was changed"), "{}", show(&out));
    assert!(
        !out.stderr.contains("nothing was started"),
        "{}",
        show(&out)
    );
    // `status` needs a config that loads: the good one back (no reload).
    write_config(&space, "processes:\n  a:\n    command: sleep 1000\n");
    let after = status_json(&space);
    assert_eq!(names(&after), ["a"]);
    assert_eq!(pid_of(&after, "a"), pid_of(&before, "a"));
}

#[test]
fn scale_starts_copies_and_stops_the_highest() {
    let space = Space::new(
        "processes:\n  worker:\n    command: sh -c 'echo port=$PORT; exec sleep 1000'\n    replicas: 2\n    env: { PORT: \"9100\" }\n  web:\n    command: sleep 1000\n",
    );
    up_wait(&space, &[]);
    wait_status(&space, "two workers", |s| {
        pid_of(s, "worker-1").is_some() && pid_of(s, "worker-2").is_some()
    });
    let out = mew_run(&space, &["space", "scale", "worker=4"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert_eq!(
        out.stdout,
        "started: worker-3, worker-4\n",
        "{}",
        show(&out)
    );
    let s = wait_status(&space, "four workers", |s| {
        (1..=4).all(|i| pid_of(s, &format!("worker-{i}")).is_some())
    });
    let pid3 = pid_of(&s, "worker-3").unwrap() as u32;
    assert_eq!(mew::procfs::env_var(pid3, "PORT").as_deref(), Some("9102"));
    let one = pid_of(&s, "worker-1");

    let out = mew_run(&space, &["space", "scale", "worker=1"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert_eq!(
        out.stdout,
        "stopped: worker-4, worker-3, worker-2\n",
        "{}",
        show(&out)
    );
    let s = wait_status(&space, "one worker", |s| {
        let mut n = names(s);
        n.sort();
        n == ["web", "worker-1"]
    });
    assert_eq!(pid_of(&s, "worker-1"), one, "worker-1 kept running");

    // A plain process is its own copy 1.
    let out = mew_run(&space, &["space", "scale", "web=2"]);
    assert_eq!(out.code(), Some(0), "{}", show(&out));
    assert_eq!(out.stdout, "started: web-2\n", "{}", show(&out));
    wait_status(&space, "web-2 runs", |s| pid_of(s, "web-2").is_some());

    // Usage errors.
    let out = mew_run(&space, &["space", "scale", "worker"]);
    assert_eq!(out.code(), Some(2), "{}", show(&out));
    let out = mew_run(&space, &["space", "scale", "wroker=2"]);
    assert_eq!(out.code(), Some(1), "{}", show(&out));
    assert!(
        out.stderr.contains("did you mean `worker`"),
        "{}",
        show(&out)
    );
}

#[test]
fn watch_config_reloads_when_a_config_file_changes() {
    let space = Space::new("processes:\n  a:\n    command: sleep 1000\n");
    up_wait(&space, &["--watch-config"]);
    let before = wait_status(&space, "a running", |s| pid_of(s, "a").is_some());
    write_config(
        &space,
        "processes:\n  a:\n    command: sleep 1000\n  b:\n    command: sleep 1000\n",
    );
    wait_status(&space, "b added by the watcher", |s| {
        pid_of(s, "b").is_some()
    });
    // An override file that appears counts too.
    std::fs::write(
        space.path().join(".mew/space.override.yaml"),
        "processes:\n  a:\n    env: { FROM: override }\n",
    )
    .unwrap();
    let after = wait_status(&space, "a restarted for the override", |s| {
        pid_of(s, "a").is_some_and(|p| Some(p) != pid_of(&before, "a"))
    });
    let pid = pid_of(&after, "a").unwrap() as u32;
    assert_eq!(
        mew::procfs::env_var(pid, "FROM").as_deref(),
        Some("override")
    );
}

#[test]
fn the_tui_key_asks_for_a_reload() {
    use crate::common::tui::{app, ch, demo, send};
    let src = demo();
    let mut app = app(&src, 80, 24);
    assert_eq!(
        send(&mut app, &src, [ch('c')]),
        vec![mew::tui::Action::Reload]
    );
    // `ui.keys` can move it like any command.
    use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
    let mut remapped = mew::tui::App::new(&[("reload".into(), "F6".into())]).unwrap();
    send(&mut remapped, &src, [Event::Resize(80, 24)]);
    assert_eq!(send(&mut remapped, &src, [ch('c')]), vec![]);
    let f6 = Event::Key(KeyEvent::new(KeyCode::F(6), KeyModifiers::NONE));
    assert_eq!(
        send(&mut remapped, &src, [f6]),
        vec![mew::tui::Action::Reload]
    );
}

#[test]
fn no_tui_watch_config_prints_the_added_process_under_its_name() {
    use std::process::Stdio;
    let space = Space::new("processes:\n  a:\n    command: sleep 1000\n");
    let mut cmd = space.mew();
    cmd.args([
        "space",
        "up",
        "--no-tui",
        "--timestamps=false",
        "--watch-config",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let out = common::Captured::of(child.stdout.take().unwrap());
    let err = common::Captured::of(child.stderr.take().unwrap());
    wait_status(&space, "a running", |s| pid_of(s, "a").is_some());
    write_config(
        &space,
        "processes:\n  a:\n    command: sleep 1000\n  late:\n    command: sh -c 'echo hello from late; exec sleep 1000'\n",
    );
    let ok = wait_for(W, || out.text().contains("late | hello from late\n"));
    assert!(ok, "stdout:\n{}\nstderr:\n{}", out.text(), err.text());
    assert!(
        err.text()
            .contains("config reloaded: added: late; unchanged: 1"),
        "stderr:\n{}",
        err.text()
    );
    let down = mew_run(&space, &["space", "down"]);
    assert_eq!(down.code(), Some(0), "{}", show(&down));
    let ended = wait_for(W, || child.try_wait().unwrap().is_some());
    assert!(ended, "up --no-tui did not end after down");
}

/// A private tmux server (killed on drop) for the TUI key end to end.
struct Tmux(String);

impl Tmux {
    fn new() -> Tmux {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Tmux(format!("mew-reload-{}-{n}", std::process::id()))
    }

    fn run(&self, args: &[&str]) -> String {
        let out = std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.0)
            .args(["-f", "/dev/null"])
            .args(args)
            .env_remove("TMUX")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait(&self, what: &str) -> String {
        let mut screen = String::new();
        let ok = wait_for(W, || {
            screen = self.run(&["capture-pane", "-p", "-t", "s"]);
            screen.contains(what)
        });
        assert!(ok, "{what:?} not on the screen within {W:?}:\n{screen}");
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .arg("-L")
            .arg(&self.0)
            .arg("kill-server")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

#[test]
fn the_tui_key_reloads_and_shows_the_result_or_the_errors() {
    if std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .is_err()
    {
        eprintln!("skipped: no tmux");
        return;
    }
    let space = Space::new("processes:\n  alpha:\n    command: sleep 1000\n");
    let tmux = Tmux::new();
    let script = format!(
        "env -u TMUX -u MEW_SPACE_CONFIG NO_COLOR=1 TEST_MARK={mark} '{mew}' --space-dir '{dir}' space up; exec sleep 600",
        mark = space.mark,
        mew = common::MEW,
        dir = space.path().display(),
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "s",
        "-x",
        "120",
        "-y",
        "30",
        &script,
    ]);
    tmux.wait("alpha");
    write_config(
        &space,
        "processes:\n  alpha:\n    command: sleep 1000\n  beta:\n    command: sleep 1000\n",
    );
    tmux.run(&["send-keys", "-t", "s", "c"]);
    tmux.wait("reloaded: added: beta; unchanged: 1");
    wait_status(&space, "beta runs", |s| pid_of(s, "beta").is_some());
    write_config(
        &space,
        "processes:\n  alpha:\n    command: sleep 1000\n    stop_timeout: forever\n",
    );
    tmux.run(&["send-keys", "-t", "s", "c"]);
    let screen = tmux.wait("reload: nothing changed");
    assert!(screen.contains("space.yaml:4:19"), "{screen}");
    // The space runs on as it was (the good config back for `status`).
    write_config(
        &space,
        "processes:\n  alpha:\n    command: sleep 1000\n  beta:\n    command: sleep 1000\n",
    );
    let s = status_json(&space);
    assert!(pid_of(&s, "alpha").is_some() && pid_of(&s, "beta").is_some());
    let down = mew_run(&space, &["space", "down"]);
    assert_eq!(down.code(), Some(0), "{}", show(&down));
}
