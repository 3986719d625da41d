//! Attacks and faults against the guarantees: nothing outlives `down`, no
//! duplicate space, nothing hangs, nothing unbounded. The real binary, real
//! processes, real sockets; hostile peers written in the test.
#![allow(clippy::unwrap_used)]

use crate::common;
use crate::common::reliability as util;

use std::time::Duration;

use common::{Space, wait_for};
use util::{down, mew, status_json, up_d};

const W: Duration = Duration::from_secs(30);

/// `rm -rf .mew/run` under a running space: the server still runs (holding
/// its unlinked lock). A second `up` must not start a duplicate set, and
/// `down` must still stop it.
#[test]
fn a_space_whose_run_dir_was_removed_is_not_started_twice_and_down_stops_it() {
    let space = Space::new(
        r#"
processes:
  one: { command: "sleep 1000" }
"#,
    );
    up_d(&space);
    let server = status_json(&space).unwrap()["server_pid"].as_u64().unwrap();
    std::fs::remove_dir_all(space.path().join(".mew/run")).unwrap();
    let before = space.survivors().len();
    let again = mew(&space, &["space", "up", "-d"]);
    assert_ne!(
        again.code(),
        Some(0),
        "a second up started: {}",
        again.stdout
    );
    assert!(
        again.stderr.contains("already running") && again.stderr.contains(&server.to_string()),
        "{}",
        again.stderr
    );
    let headless = mew(&space, &["space", "up", "--no-tui"]);
    assert_ne!(
        headless.code(),
        Some(0),
        "up --no-tui started: {}",
        headless.stdout
    );
    assert!(
        headless.stderr.contains("already running"),
        "{}",
        headless.stderr
    );
    assert_eq!(
        space.survivors().len(),
        before,
        "a duplicate set was started"
    );
    let out = down(&space);
    assert!(out.stdout.contains("is down"), "{}", out.stdout);
    let left = space.wait_no_survivors();
    assert!(left.is_empty(), "survivors:\n{}", Space::describe(&left));
    assert!(wait_for(W, || !std::path::Path::new(&format!(
        "/proc/{server}"
    ))
    .exists()));
}

/// `up -d` on a full disk: the server cannot write a word of its log, so
/// `up` says why the log is empty instead of quoting nothing.
#[test]
fn up_on_a_full_disk_says_the_disk_is_full() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to mount a small tmpfs (CI runs as root)");
        return;
    }
    let space = Space::new("processes:\n  one: { command: \"sleep 1000\" }\n");
    let disk = space.path().join("disk");
    std::fs::create_dir(&disk).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
        .arg(&disk)
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("SKIPPED: cannot mount a tmpfs here");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(disk.clone());
    let inner = Space::new("processes:\n  one: { command: \"sleep 1000\" }\n");
    // The space itself lives on the small disk, which is then filled up.
    let dir = disk.join("space");
    std::fs::create_dir_all(dir.join(".mew")).unwrap();
    std::fs::copy(
        inner.path().join(".mew/space.yaml"),
        dir.join(".mew/space.yaml"),
    )
    .unwrap();
    let mut filler = std::fs::File::create(disk.join("filler")).unwrap();
    let block = vec![0u8; 4096];
    while std::io::Write::write_all(&mut filler, &block).is_ok() {}
    drop(filler);
    let mut cmd = std::process::Command::new(common::MEW);
    cmd.arg("--space-dir").arg(&dir).args(["space", "up", "-d"]);
    cmd.env("TEST_MARK", &space.mark).env("NO_COLOR", "1");
    let out = common::run(cmd, Duration::from_secs(60));
    assert_ne!(out.code(), Some(0), "{}", out.stdout);
    assert!(
        out.stderr.contains("full") || out.stderr.contains("No space left"),
        "no reason given: {}",
        out.stderr
    );
    assert!(space.survivors().is_empty(), "something was left running");
}

/// Descendants with no marker: one that cleared its environment
/// (`setsid env -i`), and one made on every restart. All die with `down`.
#[test]
fn descendants_that_cleared_their_environment_do_not_outlive_down() {
    let space = Space::new(
        r#"
processes:
  hider: { command: "setsid env -i TEST_MARK_COPY=x sleep 1000 & sleep 1000" }
"#,
    );
    up_d(&space);
    // The env -i one carries no TEST_MARK: find it by its argv.
    let hidden = || -> Vec<u32> {
        mew::procfs::all_processes()
            .into_iter()
            .filter(|p| {
                std::fs::read(format!("/proc/{}/environ", p.pid))
                    .is_ok_and(|e| e.split(|b| *b == 0).any(|kv| kv == b"TEST_MARK_COPY=x"))
            })
            .map(|p| p.pid)
            .collect()
    };
    assert!(wait_for(W, || hidden().len() == 1), "{:?}", hidden());
    for n in 2..=3 {
        let out = mew(&space, &["space", "restart", "hider"]);
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
        assert!(
            wait_for(W, || hidden().len() >= n),
            "restart {n}: {:?}",
            hidden()
        );
    }
    down(&space);
    assert!(
        wait_for(W, || hidden().is_empty()),
        "env -i descendants survived down: {:?}",
        hidden()
    );
    assert!(space.wait_no_survivors().is_empty());
}

/// The server SIGKILLed before it wrote `state.json`: the run id in the
/// lock is enough for `down` (and the next `up`) to find what it left.
#[test]
fn a_server_killed_before_its_state_file_is_cleaned_up_after() {
    // Ignores the hangup that the server's death sends through its PTY.
    let space = Space::new("processes:\n  one: { command: \"trap '' HUP; exec sleep 1000\" }\n");
    up_d(&space);
    let server = status_json(&space).unwrap()["server_pid"].as_u64().unwrap() as u32;
    util::signal(server, "KILL");
    assert!(wait_for(W, || !util::alive(server)));
    // As if it died before its first state write.
    let _ = std::fs::remove_file(space.path().join(".mew/run/state.json"));
    assert!(
        !space.survivors().is_empty(),
        "nothing to clean up: the test is void"
    );
    let out = down(&space);
    assert!(out.stdout.contains("had died"), "{}", out.stdout);
    assert!(
        out.stdout.contains("killed 1 leftover process"),
        "{}",
        out.stdout
    );
    let left = space.wait_no_survivors();
    assert!(left.is_empty(), "survivors:\n{}", Space::describe(&left));
}

/// A stale `state.json` whose recorded group is now an unrelated program's
/// (pid reuse): recovery must not SIGKILL it.
#[test]
fn a_reused_pgid_in_a_stale_state_file_is_left_alone() {
    let space = Space::new("processes:\n  one: { command: \"sleep 1000\" }\n");
    // An unrelated process group (not of any mew run).
    let mut bystander = std::process::Command::new("sleep");
    bystander.arg("1000").process_group(0);
    use std::os::unix::process::CommandExt as _;
    let mut bystander = bystander.spawn().unwrap();
    let pgid = bystander.id();
    let run = space.path().join(".mew/run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let state = serde_json::json!({
        "server_pid": 999_999_999u32,
        "run_id": "r-long-gone",
        "started_at": 0,
        "processes": [{"name": "one", "pid": pgid, "pgid": pgid, "started_at": 0}],
    });
    std::fs::write(run.join("state.json"), state.to_string()).unwrap();
    up_d(&space);
    assert!(
        bystander.try_wait().unwrap().is_none(),
        "recovery killed an unrelated process group"
    );
    let _ = bystander.kill();
    let _ = bystander.wait();
    down(&space);
    assert!(space.wait_no_survivors().is_empty());
}

/// A space started from a process of another space is its own run: the
/// outer `down` stops it gracefully (its processes stopped by its own
/// server, none orphaned), never SIGKILLs its server alone.
#[test]
fn a_space_started_inside_another_is_stopped_gracefully_not_orphaned() {
    let inner = Space::new("processes:\n  inner: { command: \"sleep 1000\" }\n");
    let outer = Space::new(&format!(
        "processes:\n  nest: {{ command: \"{} --space-dir {} space up -d --wait && exec sleep 1000\" }}\n",
        common::MEW,
        inner.path().display()
    ));
    up_d(&outer);
    assert!(
        wait_for(W, || status_json(&inner)
            .is_some_and(|s| s["processes"][0]["state"] == "ready")),
        "the inner space did not start"
    );
    let inner_server = status_json(&inner).unwrap()["server_pid"].as_u64().unwrap() as u32;
    down(&outer);
    assert!(
        wait_for(W, || !util::alive(inner_server)),
        "the inner server still runs"
    );
    let log =
        std::fs::read_to_string(inner.path().join(".mew/logs/mew-server.log")).unwrap_or_default();
    let inner_log = inner.log("inner");
    assert!(
        inner_log.contains("stopped") || log.contains("stopping"),
        "the inner space was not stopped by its own server:\n{inner_log}\n{log}"
    );
    let left = outer.wait_no_survivors();
    assert!(left.is_empty(), "survivors:\n{}", Space::describe(&left));
}

/// A server out of descriptors (EMFILE) cannot start a process: that is not
/// the process's crash. Once descriptors are back, it starts again, instead
/// of staying "failed: crash loop" for good.
#[test]
fn a_spawn_that_fails_for_want_of_descriptors_is_not_a_crash() {
    let space = Space::new(
        r#"
processes:
  flaky: { command: "sleep 0.3; exit 1", restart_policy: on-failure, max_restarts: 2, backoff: { initial: 50ms, max: 100ms } }
  steady: { command: "sleep 1000" }
"#,
    );
    up_d(&space);
    let server = status_json(&space).unwrap()["server_pid"].as_u64().unwrap() as u32;
    let fds = || {
        std::fs::read_dir(format!("/proc/{server}/fd"))
            .unwrap()
            .count()
    };
    let limit = |n: usize| {
        let ok = std::process::Command::new("prlimit")
            .arg(format!("--pid={server}"))
            .arg(format!("--nofile={n}:"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "prlimit failed");
    };
    limit(fds());
    let log = space.path().join(".mew/logs/mew-server.log");
    assert!(
        wait_for(W, || std::fs::read_to_string(&log)
            .is_ok_and(|t| t.matches("cannot start").count() >= 4)),
        "no spawn failed for want of descriptors:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    limit(4096);
    // Back: it runs again (it exits 1 every 0.3 s, so it is seen running or
    // restarting, never given up on because of EMFILE).
    assert!(
        wait_for(W, || status_json(&space).is_some_and(|s| {
            let p = &s["processes"][0];
            p["pid"].is_u64() && p["state"] != "failed"
        })),
        "flaky did not start again: {:?}",
        status_json(&space)
    );
    down(&space);
    assert!(space.wait_no_survivors().is_empty());
}

/// `up --no-tui` whose stdout stops reading (a paused pager, a fifo nobody
/// reads): the processes are not frozen behind it (their logs go on), and
/// `down` stops the space; `up` exits.
#[test]
fn a_stdout_that_stops_reading_holds_nothing() {
    let space = Space::new(
        "logs: { rotate_size: 1G }\nprocesses:\n  chatty: { command: \"i=0; while :; do i=$((i+1)); echo \\\"line $i of a space whose stdout stopped reading\\\"; done\" }\n",
    );
    let (reader, writer) = std::io::pipe().unwrap();
    let mut cmd = space.mew();
    cmd.args(["space", "up", "--no-tui"])
        .stdout(writer)
        .stderr(std::process::Stdio::null());
    let mut up = cmd.spawn().unwrap();
    // The pipe (64 KiB) and the printer's permits fill within moments; the
    // log must keep growing far past them.
    let lines = || space.log("chatty").lines().count();
    assert!(
        wait_for(Duration::from_secs(60), || lines() > 200_000),
        "the process froze behind the stalled stdout ({} lines logged)",
        lines()
    );
    let out = down(&space);
    assert!(out.stdout.contains("is down"), "{}", out.stdout);
    // It stopped on its own, not killed by down's patience.
    assert!(!out.stderr.contains("killing"), "{}", out.stderr);
    let deadline = std::time::Instant::now() + W;
    let status = loop {
        if let Some(s) = up.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = up.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(reader);
    assert!(status.is_some(), "up --no-tui did not exit after down");
    assert!(space.wait_no_survivors().is_empty());
}

/// Another user who squats the per-user runtime dir (`$TMPDIR/mew-<uid>`
/// without XDG_RUNTIME_DIR): `ls` refuses it with a clear message instead of
/// "no spaces are running", and a space whose socket must live there says
/// why it cannot start.
#[test]
fn a_squatted_runtime_dir_is_refused_with_a_clear_message() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIPPED: needs root to make a directory owned by another user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let uid = nix::unistd::geteuid().as_raw();
    let squat = tmp.path().join(format!("mew-{uid}"));
    std::fs::create_dir(&squat).unwrap();
    std::os::unix::fs::chown(&squat, Some(65534), Some(65534)).unwrap();
    let env = |c: &mut std::process::Command| {
        c.env_remove("XDG_RUNTIME_DIR").env("TMPDIR", tmp.path());
    };
    let mut ls = std::process::Command::new(common::MEW);
    ls.args(["space", "ls"]);
    env(&mut ls);
    let out = common::run(ls, W);
    assert_ne!(out.code(), Some(0), "{}", out.stdout);
    assert!(
        !out.stdout.contains("no spaces are running"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("owned by uid 65534"), "{}", out.stderr);
    // A space dir too long for a socket in .mew/run: its socket would live
    // in the squatted dir.
    let space = Space::new("processes:\n  one: { command: \"sleep 1000\" }\n");
    let mut deep = space.path().to_path_buf();
    while deep.as_os_str().len() < 120 {
        deep = deep.join("a-rather-long-directory-name");
    }
    std::fs::create_dir_all(deep.join(".mew")).unwrap();
    std::fs::copy(
        space.path().join(".mew/space.yaml"),
        deep.join(".mew/space.yaml"),
    )
    .unwrap();
    let mut up = std::process::Command::new(common::MEW);
    up.arg("--space-dir").arg(&deep).args(["space", "up", "-d"]);
    up.env("TEST_MARK", &space.mark);
    env(&mut up);
    let out = common::run(up, W);
    assert_ne!(out.code(), Some(0), "{}", out.stdout);
    assert!(out.stderr.contains("owned by uid 65534"), "{}", out.stderr);
    assert!(space.survivors().is_empty());
}

/// The server raises its soft descriptor limit to the hard one (a space of
/// 1000 processes needs ~2000 descriptors); its processes get the limit mew
/// was started with back (programs using `select` break past 1024).
#[test]
fn the_server_raises_its_descriptor_limit_and_processes_get_the_original() {
    let space = Space::new("processes:\n  one: { command: \"exec sleep 1000\" }\n");
    let soft_of = |pid: u64| -> (String, String) {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .to_string();
        let f: Vec<&str> = line.split_whitespace().collect();
        (f[3].to_string(), f[4].to_string())
    };
    let mut up = space.mew();
    // Soft 256, hard as it is: started the way a login shell's limit would.
    up.args(["space", "up", "-d", "--wait"]);
    let mut cmd = std::process::Command::new("prlimit");
    cmd.arg("--nofile=256:").arg("--").arg(up.get_program());
    cmd.args(up.get_args());
    for (k, v) in up.get_envs() {
        match v {
            Some(v) => cmd.env(k, v),
            None => cmd.env_remove(k),
        };
    }
    let out = common::run(cmd, W);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let status = status_json(&space).unwrap();
    let server = status["server_pid"].as_u64().unwrap();
    let child = status["processes"][0]["pid"].as_u64().unwrap();
    let (server_soft, server_hard) = soft_of(server);
    assert_eq!(
        server_soft, server_hard,
        "the server kept a soft limit below its hard one"
    );
    assert_eq!(
        soft_of(child).0,
        "256",
        "the process did not get the original limit back"
    );
    down(&space);
    assert!(space.wait_no_survivors().is_empty());
}
