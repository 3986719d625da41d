//! The central reaper (`waitpid(-1)`) against real children on PTYs. A
//! binary of its own: the reaper reaps every child of the process, so no
//! other test may wait for children of its own here (in the library's unit
//! tests, or beside `mew` commands that tests spawn and wait for, these
//! raced them).
#![allow(clippy::unwrap_used)]
use std::path::Path;
use std::time::{Duration, Instant};

use mew::supervisor::reaper::reaper;
use mew::sys::{self, Exit, SpawnSpec, spawn_on_pty};
use tokio::sync::oneshot;

fn wait_blocking(mut rx: oneshot::Receiver<Exit>) -> Exit {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        reaper().poll();
        match rx.try_recv() {
            Ok(exit) => return exit,
            Err(oneshot::error::TryRecvError::Empty) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("no exit: {e:?}"),
        }
    }
}

/// Spawn on a PTY; the master is returned too, since closing it hangs the child up.
fn spawn_sh(script: &str) -> (u32, std::os::fd::OwnedFd) {
    let argv = vec!["/bin/sh".to_string(), "-c".to_string(), script.to_string()];
    spawn_on_pty(&SpawnSpec {
        argv: &argv,
        env: &[],
        cwd: Path::new("/"),
        rows: 24,
        cols: 80,
    })
    .map(|c| (c.pid, c.master))
    .expect("spawn")
}

#[test]
fn child_is_a_session_leader_on_a_tty() {
    let (pid, _master) =
        spawn_sh(r#"[ "$(ps -o pgid= -p $$ | tr -d ' ')" = "$$" ] && [ -t 0 ] && exit 7; exit 1"#);
    assert_eq!(wait_blocking(reaper().watch(pid)), Exit::Code(7));
}

#[test]
fn an_exit_before_watch_is_kept() {
    let (pid, _master) = spawn_sh("exit 3");
    // Let it die and be reaped before anyone watches it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sys::pid_exists(pid) && Instant::now() < deadline {
        reaper().poll();
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(wait_blocking(reaper().watch(pid)), Exit::Code(3));
}

#[test]
fn death_by_signal_is_reported() {
    let (pid, _master) = spawn_sh("kill -9 $$");
    assert_eq!(wait_blocking(reaper().watch(pid)), Exit::Signal(9));
}
