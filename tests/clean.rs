//! `mew space clean` against a fake space dir, with the real binary.

#![allow(clippy::unwrap_used)] // test helpers: a failure here is a test failure

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

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
fn refuses_while_running_unless_forced() {
    let (_t, p) = fake_space();
    let mut lock = space::try_lock(&p).unwrap();
    lock.write_info(&LockInfo {
        pid: std::process::id(),
        started_at: 0,
        run_id: space::new_run_id(),
        mew_version: "0.1.0".into(),
        socket: p.socket.clone(),
        space_id: Some("demo".into()),
    })
    .unwrap();

    let o = mew(&p.dir, &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    let want = format!(
        "space \"demo\" is running (pid {}): stop it with \"mew space down\" or pass --force",
        std::process::id()
    );
    assert!(err.contains(&want), "{err}");
    assert!(p.logs_dir.join("api.log").exists());
    assert!(p.state.exists());

    // A dry run says so, and still changes nothing.
    let o = mew(&p.dir, &["--dry-run"]);
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("clean would refuse without --force"),
        "{}",
        stdout(&o)
    );
    assert!(p.state.exists());

    let o = mew(&p.dir, &["--force"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("cleaning anyway"), "{}", stdout(&o));
    assert!(!p.logs_dir.exists());
    assert!(!p.run_dir.exists());
    drop(lock);
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
