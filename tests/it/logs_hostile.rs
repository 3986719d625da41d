//! Log files under hostile conditions, through the real binary: a log dir
//! and umask that would make files readable by others, log files and dirs
//! that are symbolic links prepared by someone else, log files removed while
//! the space runs, and tails of very large logs.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Space, wait_for};

const W: Duration = Duration::from_secs(60);

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn mew(space: &Space, args: &[&str]) -> common::Output {
    let mut c = space.mew();
    c.args(args);
    common::run(c, W)
}

fn up(space: &Space) {
    let o = mew(space, &["space", "up", "-d", "--wait", "--timeout", "30s"]);
    assert_eq!(o.code(), Some(0), "{}\n{}", o.stdout, o.stderr);
}

fn down(space: &Space) {
    let o = mew(space, &["space", "down"]);
    assert_eq!(o.code(), Some(0), "{}\n{}", o.stdout, o.stderr);
    assert!(space.wait_no_survivors().is_empty());
}

fn degraded(space: &Space) -> String {
    let o = mew(space, &["space", "status", "--json"]);
    serde_json::from_str::<serde_json::Value>(&o.stdout)
        .ok()
        .and_then(|v| v["logging_degraded"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

/// A log line as mew writes it.
fn line(at: &str, text: &str) -> String {
    format!("{at} | {text}\n")
}

// ---- owner-only files ------------------------------------------------------------

/// In a log dir that already exists with mode 0755, under umask 000, every
/// log file is created 0600, and one left 0644 by an earlier run is made 0600.
#[test]
fn log_files_are_owner_only_whatever_the_dir_and_umask() {
    let space = Space::new(
        "logs: { rotate_size: 2K, keep: 2 }\nprocesses:\n  web: { command: \"for i in $(seq 200); do echo web line $i; done; exec sleep 1000\" }\n  old: { command: \"echo old again; exec sleep 1000\" }\n",
    );
    let logs = space.path().join(".mew/logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old = logs.join("old.log");
    std::fs::write(&old, line("2026-01-01T00:00:00.000+00:00", "from before")).unwrap();
    std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut c = Command::new("sh");
    c.args([
        "-c",
        "umask 000; exec \"$0\" \"$@\"",
        common::MEW,
        "--space-dir",
    ])
    .arg(space.path())
    .args(["space", "up", "-d", "--wait", "--timeout", "30s"])
    .env_remove("MEW_SPACE_CONFIG")
    .env("NO_COLOR", "1")
    .env("TEST_MARK", &space.mark);
    let o = common::run(c, W);
    assert_eq!(o.code(), Some(0), "{}\n{}", o.stdout, o.stderr);
    assert!(wait_for(W, || logs.join("web.log.1").exists()));
    assert!(wait_for(W, || space.log("old").contains("old again")));
    down(&space);
    let mut checked = Vec::new();
    for e in std::fs::read_dir(&logs).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().into_string().unwrap();
        // mew-server.log is opened by the daemon launcher (src/sys.rs
        // `spawn_daemon`), not by the log writer: see the report.
        if name.starts_with("mew-server.log") {
            continue;
        }
        assert_eq!(mode(&e.path()), 0o600, "{name}");
        checked.push(name);
    }
    checked.sort();
    assert!(checked.contains(&"web.log.1".to_string()), "{checked:?}");
    for want in [".mew-logs", "old.log", "web.log"] {
        assert!(checked.contains(&want.to_string()), "{checked:?}");
    }
    assert_eq!(
        mode(&logs),
        0o755,
        "the directory is the user's: its mode stays"
    );
}

// ---- symbolic links ----------------------------------------------------------------

/// `web.log` is a symbolic link to a file of the victim's (as root, made by
/// another user in a log dir that user owns): mew writes nothing through it,
/// cuts nothing of it, and says why in status.
#[test]
fn a_symlinked_log_file_is_never_written_or_cut() {
    let space =
        Space::new("processes:\n  web: { command: \"echo evil output; exec sleep 1000\" }\n");
    // The victim: say a root's shell profile, ending in a partial line.
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("profile");
    let before = "export PATH=/usr/bin\n# no newline at the end".to_string();
    std::fs::write(&victim, &before).unwrap();
    let logs = space.path().join(".mew/logs");
    std::fs::create_dir_all(&logs).unwrap();
    let link = logs.join("web.log");
    symlink(&victim, &link).unwrap();
    if root() {
        // Another user prepared the directory and the link.
        let nobody = Some(nix::unistd::Uid::from_raw(65534));
        nix::unistd::chown(&logs, nobody, None).unwrap();
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &link,
            nobody,
            None,
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
    } else {
        eprintln!("note: not root; the link is the user's own (refused all the same)");
    }
    up(&space);
    let mut why = String::new();
    assert!(
        wait_for(W, || {
            why = degraded(&space);
            why.contains("symbolic link")
        }),
        "status never said so: {why:?}"
    );
    assert!(why.starts_with("web: refusing to write"), "{why}");
    let table = mew(&space, &["space", "status"]);
    assert!(
        table.stdout.contains("logging degraded: web: refusing"),
        "{}",
        table.stdout
    );
    down(&space);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), before);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

/// A symlinked log dir made by another user is refused (root only); one of
/// the user's own, to a directory of theirs, is followed.
#[test]
fn a_symlinked_log_dir_is_followed_only_when_it_is_ones_own() {
    let space = Space::new(
        "logs: { dir: logs-link }\nprocesses:\n  web: { command: \"echo hello there; exec sleep 1000\" }\n",
    );
    let real = space.path().join("real-logs");
    std::fs::create_dir(&real).unwrap();
    let link = space.path().join("logs-link");
    symlink(&real, &link).unwrap();
    up(&space);
    assert!(wait_for(W, || std::fs::read_to_string(
        real.join("web.log")
    )
    .is_ok_and(|t| t.contains("hello there"))));
    assert_eq!(degraded(&space), "");
    down(&space);
    if !root() {
        eprintln!("SKIPPED (the refused half): needs root to make a link owned by another user");
        return;
    }
    std::fs::remove_file(real.join("web.log")).unwrap();
    nix::unistd::fchownat(
        nix::fcntl::AT_FDCWD,
        &link,
        Some(nix::unistd::Uid::from_raw(65534)),
        None,
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .unwrap();
    // `up -d` opens the server's own log there first: refused before
    // anything is spawned, saying why.
    let o = mew(&space, &["space", "up", "-d", "--wait", "--timeout", "30s"]);
    assert_ne!(o.code(), Some(0), "{}", o.stdout);
    assert!(
        o.stderr.contains("symbolic link owned by uid 65534"),
        "{}",
        o.stderr
    );
    assert!(space.survivors().is_empty(), "something was spawned");
    assert!(!real.join("web.log").exists());
}

// ---- removed while running -----------------------------------------------------------

const TICKER: &str = "processes:\n  web: { command: \"i=0; while :; do i=$((i+1)); echo \\\"tick $i\\\"; sleep 0.02; done\" }\n";

fn ticks(text: &str) -> Vec<u64> {
    text.lines()
        .filter_map(|l| l.split_once(" | tick "))
        .map(|(_, n)| n.parse().unwrap())
        .collect()
}

/// `rm .mew/logs/web.log` while the space runs: mew notices, starts a new
/// file with a note (the lines that went to the removed file since the last
/// check copied over: no tick is missing from the new file), `logs` shows
/// the new lines, status says what happened, and `logs -f` still follows.
#[test]
fn a_log_file_removed_while_running_is_reopened_and_reported() {
    let space = Space::new(TICKER);
    up(&space);
    let path = space.log_path("web");
    assert!(wait_for(W, || ticks(&space.log("web")).len() > 20));
    std::fs::remove_file(&path).unwrap();
    assert!(
        wait_for(W, || space
            .log("web")
            .contains("web.log was removed while in use")),
        "no new file with a note: {:?}",
        space.log("web")
    );
    let mut why = String::new();
    assert!(
        wait_for(W, || {
            why = degraded(&space);
            why.contains("web.log was removed while in use")
        }),
        "status never said so: {why:?}"
    );
    assert!(wait_for(W, || ticks(&space.log("web")).len() > 20));
    let text = space.log("web");
    let n = ticks(&text);
    assert!(
        n.windows(2).all(|w| w[1] == w[0] + 1),
        "ticks missing in the new file: {n:?}\n{text}"
    );
    assert_eq!(mode(&path), 0o600);
    // `logs` reads the new file.
    let o = mew(&space, &["space", "logs", "-n", "3", "--no-prefix", "web"]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    let shown: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(shown.len(), 3, "{}", o.stdout);
    assert!(shown.iter().all(|l| l.starts_with("tick ")), "{}", o.stdout);
    let last: u64 = shown[2][5..].parse().unwrap();
    assert!(
        last > *n.first().unwrap(),
        "{last} is older than the new file"
    );

    // `logs -f` prints the tail, then follows live until the space goes down.
    let mut f = space.mew();
    f.args(["space", "logs", "-f", "-n", "1", "--no-prefix", "web"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = f.spawn().unwrap();
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    let first: u64 = rx.recv_timeout(W).unwrap()[5..].parse().unwrap();
    let end = Instant::now() + W;
    let mut followed = 0;
    while followed < 5 && Instant::now() < end {
        if let Ok(l) = rx.recv_timeout(Duration::from_secs(5))
            && let Some(n) = l.strip_prefix("tick ")
        {
            assert!(n.parse::<u64>().unwrap() > first, "{l}");
            followed += 1;
        }
    }
    assert_eq!(followed, 5, "logs -f did not follow");
    down(&space);
    let deadline = Instant::now() + W;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "logs -f did not end with the space"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

// ---- tails of large logs ----------------------------------------------------------------

/// Peak resident memory of a process, from /proc (KiB).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// `logs -n 10` over ~200 MB of logs reads the tail from the end of the
/// files (the current one holds only 3 lines, the rest come from the
/// rotated one): the right 10 lines, and the mew process's peak memory far
/// below the logs' size.
#[test]
fn the_tail_of_a_huge_log_is_read_from_its_end_in_bounded_memory() {
    let space = Space::new("processes:\n  web: { command: \"true\" }\n");
    let logs = space.path().join(".mew/logs");
    std::fs::create_dir_all(&logs).unwrap();
    // The expected lines are long, so that printing them fills the pipe
    // (64 KiB) and mew waits, alive, with its peak memory readable.
    let long = |k: usize| format!("last {k} {}", "x".repeat(16 * 1024));
    let stamp = |s: usize| format!("2026-01-01T00:{:02}:{:02}.000+00:00", s / 60, s % 60);
    {
        let mut f = std::io::BufWriter::new(std::fs::File::create(logs.join("web.log.1")).unwrap());
        let filler = line(&stamp(0), &format!("filler {}", "f".repeat(70)));
        let chunk = filler.repeat((1 << 20) / filler.len());
        for _ in 0..200 {
            f.write_all(chunk.as_bytes()).unwrap();
        }
        for k in 0..7 {
            f.write_all(line(&stamp(1 + k), &long(k)).as_bytes())
                .unwrap();
        }
        f.flush().unwrap();
    }
    let mut cur = String::new();
    for k in 7..10 {
        cur += &line(&stamp(1 + k), &long(k));
    }
    std::fs::write(logs.join("web.log"), cur).unwrap();
    let size = std::fs::metadata(logs.join("web.log.1")).unwrap().len();
    assert!(size > 200_000_000, "{size}");

    let started = Instant::now();
    let mut c = space.mew();
    c.args(["space", "logs", "-n", "10", "--no-prefix"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    // Output has begun: the tail is computed and mew is blocked on the full pipe.
    let mut fds = [nix::poll::PollFd::new(
        out.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(60_000u16)).unwrap();
    assert_eq!(ready, 1, "no output within 60 s");
    let peak = peak_rss_kib(child.id());
    let mut text = String::new();
    out.read_to_string(&mut text).unwrap();
    let st = child.wait().unwrap();
    let took = started.elapsed();
    assert!(st.success(), "{st:?}");
    let got: Vec<&str> = text.lines().collect();
    let want: Vec<String> = (0..10).map(long).collect();
    assert_eq!(got.len(), 10, "{} lines", got.len());
    for (g, w) in got.iter().zip(&want) {
        assert!(g == w, "got {:.40}…, want {:.40}…", g, w);
    }
    let peak = peak.expect("mew exited before its memory could be read");
    eprintln!("logs -n 10 over {size} bytes: peak RSS {peak} KiB, {took:?}");
    assert!(
        peak < 64 * 1024,
        "peak RSS {peak} KiB for a {size}-byte log: not bounded"
    );
}
