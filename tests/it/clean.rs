//! `mew space clean` against a fake space dir, with the real binary.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use crate::common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use mew::space::{self, LockInfo, SpacePaths};

fn mew(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mew"))
        .args(["space", "clean", "--space-dir"])
        .arg(dir)
        .args(args)
        .env_remove("MEW_SPACE_CONFIG")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A space with config, agent files, logs, run state and tokens.
fn fake_space() -> (tempfile::TempDir, SpacePaths) {
    let t = tempfile::tempdir().unwrap();
    let p = SpacePaths::new(t.path()).unwrap();
    let m = &p.mew_dir;
    fs::create_dir_all(m.join("agents")).unwrap();
    fs::write(m.join("space.yaml"), "space:\n  id: demo\n").unwrap();
    fs::write(m.join("agents/coder.md"), "agent").unwrap();
    fs::write(m.join("notes.txt"), "mine").unwrap();
    fs::create_dir_all(&p.logs_dir).unwrap();
    fs::write(p.logs_dir.join("api.log"), vec![b'x'; 2048]).unwrap();
    fs::write(p.logs_dir.join("api.log.1"), vec![b'y'; 1024]).unwrap();
    p.ensure_run_dir().unwrap();
    fs::write(&p.state, "{}").unwrap();
    space::load_or_create_token_with(&p.tokens_dir, "coder", None).unwrap();
    (t, p)
}

fn assert_kept(p: &SpacePaths) {
    assert!(p.mew_dir.join("space.yaml").exists());
    assert!(p.mew_dir.join("agents/coder.md").exists());
    assert!(p.mew_dir.join("notes.txt").exists());
}

#[test]
fn dry_run_removes_nothing() {
    let (_t, p) = fake_space();
    let o = mew(&p.dir, &["--dry-run"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Would remove (dry run)"), "{out}");
    assert!(out.contains(".mew/logs  2 files, 3.0 KiB"), "{out}");
    assert!(out.contains(".mew/run"), "{out}");
    assert!(!out.contains(".mew/tokens"), "{out}");
    assert!(p.logs_dir.join("api.log").exists());
    assert!(p.state.exists());
    // Not even a lock file appears.
    assert!(!p.lock.exists());
}

#[test]
fn default_removes_logs_and_run() {
    let (_t, p) = fake_space();
    let o = mew(&p.dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("Removing in"), "{out}");
    assert!(out.contains("Total: 3 files"), "{out}");
    assert!(!p.logs_dir.exists());
    assert!(!p.run_dir.exists());
    assert!(p.tokens_dir.join("coder.token").exists());
    assert_kept(&p);
    // Again: nothing left to do.
    let o = mew(&p.dir, &[]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("Nothing to clean"), "{}", stdout(&o));
}

#[test]
fn logs_only() {
    let (_t, p) = fake_space();
    let o = mew(&p.dir, &["--logs"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!p.logs_dir.exists());
    assert!(p.state.exists());
    assert!(p.tokens_dir.exists());
}

#[test]
fn tokens_only() {
    let (_t, p) = fake_space();
    let o = mew(&p.dir, &["--tokens"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains(".mew/tokens  2 files"),
        "{}",
        stdout(&o)
    );
    assert!(!p.tokens_dir.exists());
    assert!(p.logs_dir.join("api.log").exists());
    assert!(p.state.exists());
    assert_kept(&p);
}

#[test]
fn all_keeps_config_and_agents() {
    let (_t, p) = fake_space();
    let o = mew(&p.dir, &["--all"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!p.logs_dir.exists());
    assert!(!p.run_dir.exists());
    assert!(!p.tokens_dir.exists());
    assert_kept(&p);
    let mut left: Vec<_> = fs::read_dir(&p.mew_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["agents", "notes.txt", "space.yaml"]);
}

#[test]
fn all_conflicts_with_selectors() {
    let (_t, p) = fake_space();
    let o = mew(&p.dir, &["--all", "--tokens"]);
    assert!(!o.status.success());
    assert!(p.tokens_dir.exists());
}

#[test]
fn refuses_while_running_even_when_forced() {
    let (_t, p) = fake_space();
    let mut lock = space::try_lock(&p).unwrap();
    lock.write_info(&LockInfo {
        pid: std::process::id(),
        started_at: 0,
        run_id: space::new_run_id(),
        mew_version: "0.1.0".into(),
        socket: p.socket.clone(),
        space_id: Some("demo".into()),
        gateway_port: None,
    })
    .unwrap();

    let want = format!(
        "space \"demo\" is running (pid {}): clean refuses while a space runs, even with --force",
        std::process::id()
    );
    for args in [&[][..], &["--force"], &["--all", "--force"]] {
        let o = mew(&p.dir, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains(&want), "{args:?}: {err}");
        assert!(p.logs_dir.join("api.log").exists());
        assert!(p.state.exists());
        assert!(p.tokens_dir.exists());
    }

    // A dry run says so, and still changes nothing.
    let o = mew(&p.dir, &["--dry-run"]);
    assert!(o.status.success());
    assert!(stdout(&o).contains("clean would refuse"), "{}", stdout(&o));
    assert!(p.state.exists());
    drop(lock);
    let o = mew(&p.dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!p.run_dir.exists());
}

#[test]
fn stale_lock_is_not_a_running_space() {
    let (_t, p) = fake_space();
    // A lock file left by a dead server: present, with a pid, but unlocked.
    fs::write(
        &p.lock,
        r#"{"pid":1,"started_at":0,"run_id":"x","mew_version":"0","socket":"/x"}"#,
    )
    .unwrap();
    let o = mew(&p.dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!p.run_dir.exists());
}

#[test]
fn missing_space_dir_is_an_error() {
    let t = tempfile::tempdir().unwrap();
    let o = mew(&t.path().join("nope"), &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("nope"), "{}", stderr(&o));
}

// ---- a logs dir that is not mew's (item: only mew's own files) ----------------

fn server_pid_of(up_stdout: &str) -> u32 {
    let at = up_stdout.find("server pid ").unwrap() + "server pid ".len();
    up_stdout[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

const W: Duration = Duration::from_secs(60);

#[test]
fn a_foreign_logs_dir_loses_only_mews_files() {
    let space = common::Space::new(
        "logs: { dir: log, rotate_size: 2K, keep: 3 }\nprocesses:\n  web: { command: \"for i in $(seq 100); do echo line $i of web output; done; exec sleep 1000\" }\n",
    );
    let log = space.path().join("log");
    fs::create_dir_all(&log).unwrap();
    // The application's own logs (a Rails app's log/).
    fs::write(log.join("development.log"), "Started GET / for 127.0.0.1\n").unwrap();
    fs::write(log.join("test.log"), "Run options: --seed 1\n").unwrap();
    fs::write(log.join("production.log.1"), "old\n").unwrap();
    let mut up = space.mew();
    up.args(["space", "up", "-d", "--wait", "--timeout", "30s"]);
    let o = common::run(up, W);
    assert_eq!(o.code(), Some(0), "{}\n{}", o.stdout, o.stderr);
    assert!(common::wait_for(W, || fs::read_to_string(
        log.join("web.log")
    )
    .is_ok_and(|t| t.contains("line 100 of web"))));
    let mut down = space.mew();
    down.args(["space", "down"]);
    assert_eq!(common::run(down, W).code(), Some(0));
    assert!(log.join("web.log.1").exists(), "rotated");

    // The process is renamed since: the manifest still knows `web`.
    fs::write(
        space.path().join(".mew/space.yaml"),
        "logs: { dir: log }\nprocesses:\n  api: { command: \"true\" }\n  development: { command: \"true\" }\n",
    )
    .unwrap();
    let clean = |args: &[&str]| {
        let mut c = space.mew();
        c.args(["space", "clean", "--logs"]).args(args);
        common::run(c, W)
    };
    let o = clean(&["--dry-run"]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    let listed: Vec<String> = o
        .stdout
        .lines()
        .filter(|l| l.starts_with("  log/"))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    let mut want = vec!["log/.mew-logs".to_string(), "log/mew-server.log".into()];
    let mut rotated: Vec<String> = fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("web.log"))
        .map(|n| format!("log/{n}"))
        .collect();
    rotated.sort();
    want.extend(rotated);
    let mut got = listed.clone();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{}", o.stdout);
    assert!(log.join("web.log").exists(), "a dry run removes nothing");

    let o = clean(&[]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    let mut left: Vec<String> = fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    left.sort();
    assert_eq!(left, ["development.log", "production.log.1", "test.log"]);
    assert_eq!(
        fs::read_to_string(log.join("development.log")).unwrap(),
        "Started GET / for 127.0.0.1\n"
    );
}

// ---- never through a symbolic link ---------------------------------------------

#[test]
fn a_symlinked_mew_dir_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let elsewhere = t.path().join("elsewhere");
    fs::create_dir_all(elsewhere.join("logs")).unwrap();
    fs::create_dir_all(elsewhere.join("run")).unwrap();
    fs::write(elsewhere.join("logs/precious.log"), "x").unwrap();
    fs::write(elsewhere.join("run/state.json"), "{}").unwrap();
    fs::write(elsewhere.join("space.yaml"), "space:\n  id: demo\n").unwrap();
    let dir = t.path().join("space");
    fs::create_dir(&dir).unwrap();
    symlink(&elsewhere, dir.join(".mew")).unwrap();
    for args in [&[][..], &["--all"], &["--dry-run"], &["--force"]] {
        let o = mew(&dir, args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stdout(&o));
        assert!(
            stderr(&o).contains(".mew is a symbolic link"),
            "{args:?}: {}",
            stderr(&o)
        );
        assert!(elsewhere.join("logs/precious.log").exists());
        assert!(elsewhere.join("run/state.json").exists());
    }
}

#[test]
fn symlinked_logs_run_or_tokens_dirs_are_refused() {
    for (sub, args) in [
        ("logs", &["--logs"][..]),
        ("run", &[][..]),
        ("tokens", &["--tokens"][..]),
    ] {
        let (t, p) = fake_space();
        let outside = t.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("precious"), "x").unwrap();
        let d = p.mew_dir.join(sub);
        fs::remove_dir_all(&d).unwrap();
        symlink(&outside, &d).unwrap();
        let o = mew(&p.dir, args);
        assert_eq!(o.status.code(), Some(1), "{sub}: {}", stdout(&o));
        assert!(
            stderr(&o).contains(&format!(".mew/{sub} is a symbolic link")),
            "{sub}: {}",
            stderr(&o)
        );
        assert!(outside.join("precious").exists(), "{sub}");
        assert!(
            fs::symlink_metadata(&d).is_ok(),
            "{sub}: the link stays too"
        );
    }
}

#[test]
fn a_link_inside_is_removed_as_a_link() {
    let (t, p) = fake_space();
    let outside = t.path().join("outside");
    fs::create_dir(&outside).unwrap();
    fs::write(outside.join("precious"), "x").unwrap();
    symlink(&outside, p.logs_dir.join("to-dir")).unwrap();
    symlink(outside.join("precious"), p.run_dir.join("to-file")).unwrap();
    let o = mew(&p.dir, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!p.logs_dir.exists() && !p.run_dir.exists());
    assert_eq!(fs::read_to_string(outside.join("precious")).unwrap(), "x");
}

// ---- never while a server of the space runs ------------------------------------

#[test]
fn a_server_whose_run_dir_was_removed_still_stops_clean() {
    let space =
        common::Space::new("processes:\n  web: { command: \"echo up; exec sleep 1000\" }\n");
    let mut up = space.mew();
    up.args(["space", "up", "-d", "--wait", "--timeout", "30s"]);
    let o = common::run(up, W);
    assert_eq!(o.code(), Some(0), "{}\n{}", o.stdout, o.stderr);
    let server = server_pid_of(&o.stdout);
    let run = space.path().join(".mew/run");
    fs::remove_dir_all(&run).unwrap();
    for args in [&[][..], &["--force"], &["--all", "--force"]] {
        let mut c = space.mew();
        c.args(["space", "clean"]).args(args);
        let o = common::run(c, W);
        assert_eq!(o.code(), Some(1), "{args:?}: {}", o.stdout);
        assert!(
            o.stderr.contains(&format!("is running (pid {server})"))
                && o.stderr.contains(&format!("kill {server}")),
            "{args:?}: {}",
            o.stderr
        );
        assert!(space.log_path("web").exists(), "{args:?}");
    }
    let mut c = space.mew();
    c.args(["space", "clean", "--dry-run"]);
    let o = common::run(c, W);
    assert!(o.stdout.contains("clean would refuse"), "{}", o.stdout);
    // Stopped as the message says, the space cleans.
    common::kill(server, "TERM");
    assert!(space.wait_no_survivors().is_empty());
    let mut c = space.mew();
    c.args(["space", "clean"]);
    let o = common::run(c, W);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    assert!(!space.log_path("web").exists());
}
