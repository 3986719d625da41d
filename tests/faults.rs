//! Attacks and faults against the guarantees: nothing outlives `down`, no
//! duplicate space, nothing hangs, nothing unbounded. The real binary, real
//! processes, real sockets; hostile peers written in the test.
#![allow(clippy::unwrap_used)]

mod common;
#[path = "fixtures/reliability/util.rs"]
mod util;

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
