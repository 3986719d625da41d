//! The TUI end to end: the real `mew` binary in a real terminal (tmux), driven
//! with `send-keys` and read back with `capture-pane`.
//!
//! Every test runs its own tmux server (`tmux -L <unique>`), killed on drop,
//! and its own space (`common::Space`), brought down on drop; each checks that
//! no process carrying its marker is left.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{MEW, Space, kill, run, wait_for, wait_output};

const FIXTURE: &str = include_str!("../fixtures/tui/space.yaml");
const DEADLINE: Duration = Duration::from_secs(20);

// ---- tmux --------------------------------------------------------------------

/// A private tmux server; killed (with every session in it) on drop.
struct Tmux {
    socket: String,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tmux {
    fn new() -> Tmux {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("tmux.conf");
        std::fs::write(&conf, "set -g status off\nset -g history-limit 2000\n").unwrap();
        let socket = format!(
            "mew-e2e-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        );
        Tmux {
            socket,
            conf,
            _dir: dir,
        }
    }

    fn command(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-L").arg(&self.socket).arg("-f").arg(&self.conf);
        c.env_remove("TMUX");
        c.stdin(Stdio::null());
        c
    }

    /// Runs a tmux command that must succeed; returns its stdout.
    fn run(&self, args: &[&str]) -> String {
        let out = self.command().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "tmux {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A detached session of `cols`×`rows` running the shell `script`.
    fn start(&self, session: &str, cols: u16, rows: u16, script: &str) {
        let (c, r) = (cols.to_string(), rows.to_string());
        self.run(&[
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            &c,
            "-y",
            &r,
            script,
        ]);
    }

    fn screen(&self, session: &str) -> String {
        self.run(&["capture-pane", "-p", "-t", session])
    }

    /// The screen with its attributes as escape sequences.
    fn screen_sgr(&self, session: &str) -> String {
        self.run(&["capture-pane", "-p", "-e", "-t", session])
    }

    fn keys(&self, session: &str, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", session];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    fn type_text(&self, session: &str, text: &str) {
        self.run(&["send-keys", "-t", session, "-l", text]);
    }

    fn display(&self, session: &str, format: &str) -> String {
        self.run(&["display-message", "-p", "-t", session, format])
            .trim()
            .to_string()
    }

    /// Polls the screen until `cond` holds; panics with the screen otherwise.
    fn wait(&self, session: &str, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let end = Instant::now() + DEADLINE;
        loop {
            let s = self.screen(session);
            if cond(&s) {
                return s;
            }
            if Instant::now() > end {
                panic!("timed out waiting for {what}; the screen:\n{s}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn wait_text(&self, session: &str, text: &str) -> String {
        self.wait(session, &format!("{text:?}"), |s| s.contains(text))
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .command()
            .arg("kill-server")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

// ---- the space ----------------------------------------------------------------

fn space() -> Space {
    Space::new(FIXTURE)
}

/// The shell line a pane runs: mew with the test's marker (and `env`), then
/// what the terminal looks like after it: its exit code, whether the tty is
/// back in cooked mode, and a last line. The shell then stays (a dead pane
/// would hide the cursor) until the tmux server is killed.
fn script(space: &Space, env: &str, args: &str) -> String {
    format!(
        "env -u TMUX -u NO_COLOR -u MEW_SPACE_CONFIG TEST_MARK={mark} {env} '{MEW}' --space-dir '{dir}' {args}; \
         echo \"EXIT=$?\"; \
         case \"$(stty -a)\" in *-icanon*) echo TTY=raw;; *) echo TTY=cooked;; esac; \
         echo AFTER; exec sleep 600",
        mark = space.mark,
        dir = space.path().display(),
    )
}

/// Waits until the TUI shows the three processes and the echo prompt.
fn wait_tui(tmux: &Tmux, session: &str) -> String {
    tmux.wait(session, "the process list and the echo pane", |s| {
        s.contains("processes")
            && s.contains("echo")
            && s.contains("printer")
            && s.contains("full")
            && s.contains("prompt>")
    })
}

/// After mew exited: the shell's lines are there, the terminal is restored.
fn assert_restored(tmux: &Tmux, session: &str, code: i32) -> String {
    let s = tmux.wait_text(session, "AFTER");
    assert!(
        s.contains(&format!("EXIT={code}")),
        "exit code {code}:\n{s}"
    );
    assert!(s.contains("TTY=cooked"), "raw mode left on:\n{s}");
    assert_eq!(tmux.display(session, "#{alternate_on}"), "0", "{s}");
    assert_eq!(
        tmux.display(session, "#{cursor_flag}"),
        "1",
        "cursor hidden"
    );
    assert_eq!(tmux.display(session, "#{mouse_any_flag}"), "0", "mouse on");
    s
}

fn status_json(space: &Space) -> serde_json::Value {
    let mut c = space.mew();
    c.args(["space", "status", "--json"]);
    let out = run(c, DEADLINE);
    assert_eq!(out.code(), Some(0), "status: {}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn proc_json(space: &Space, name: &str) -> serde_json::Value {
    status_json(space)["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .cloned()
        .unwrap()
}

/// (name, pid, state) of every process.
fn pids(space: &Space) -> Vec<(String, u64, String)> {
    status_json(space)["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["pid"].as_u64().unwrap_or(0),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn is_running(space: &Space) -> bool {
    let mut c = space.mew();
    c.args(["space", "status"]);
    run(c, DEADLINE).code() == Some(0)
}

/// Waits for the space to be gone and nothing marked to be left.
fn assert_all_gone(space: &Space) {
    assert!(
        wait_for(DEADLINE, || !is_running(space)),
        "the space still runs"
    );
    assert_eq!(space.wait_no_survivors(), Vec::<u32>::new(), "left behind");
}

/// The pid of the mew client whose command line has `arg` (not the server).
fn client_pid(space: &Space, arg: &str) -> u32 {
    let mut found = None;
    wait_for(DEADLINE, || {
        found = space.survivors().into_iter().find(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"mew"))
                && args.contains(&arg.as_bytes())
                && !args.contains(&&b"__serve"[..])
        });
        found.is_some()
    });
    found.unwrap_or_else(|| panic!("no mew client with {arg:?}"))
}

// ---- reading the screen ------------------------------------------------------------

/// The main pane's box: (top row, bottom row, left column, right column) of
/// its border, found from the top border line (the second box on it).
/// `None` while the screen does not show one (e.g. mid-resize).
fn main_box(screen: &str) -> Option<(usize, usize, usize, usize)> {
    let lines: Vec<Vec<char>> = screen.lines().map(|l| l.chars().collect()).collect();
    let top = lines
        .iter()
        .position(|l| l.iter().filter(|c| matches!(c, '┐' | '┓')).count() == 2)?;
    let line = &lines[top];
    let left = line.iter().rposition(|c| matches!(c, '┌' | '┏'))?;
    let right = line.iter().rposition(|c| matches!(c, '┐' | '┓'))?;
    let bottom = (top + 1..lines.len()).find(|&i| matches!(lines[i].first(), Some('└' | '┗')))?;
    (left < right).then_some((top, bottom, left, right))
}

/// The main pane's size (rows, cols) as drawn.
fn main_pane_size(screen: &str) -> Option<(usize, usize)> {
    let (top, bottom, left, right) = main_box(screen)?;
    Some((bottom - top - 1, right - left - 1))
}

/// The text inside the main pane.
fn main_pane(screen: &str) -> Vec<String> {
    let (top, bottom, left, right) =
        main_box(screen).unwrap_or_else(|| panic!("no main pane:\n{screen}"));
    screen
        .lines()
        .skip(top + 1)
        .take(bottom - top - 1)
        .map(|l| l.chars().skip(left + 1).take(right - left - 1).collect())
        .collect()
}

/// The size the full-screen fixture last printed.
fn printed_size(screen: &str) -> Option<(usize, usize)> {
    let at = screen.find("FULL size ")?;
    let rest = &screen[at + "FULL size ".len()..];
    let mut parts = rest.split_whitespace();
    let rows = parts.next()?.parse().ok()?;
    (parts.next()? == "x").then_some(())?;
    let cols = parts.next()?.parse().ok()?;
    Some((rows, cols))
}

/// Numbers of the `printed line N` lines on the screen.
fn printed_lines(screen: &str) -> Vec<u32> {
    screen
        .lines()
        .filter_map(|l| {
            let at = l.find("printed line ")?;
            l[at + "printed line ".len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Whether any SGR sequence sets a foreground or background colour.
fn has_colour(sgr_text: &str) -> bool {
    sgr_text.split("\x1b[").skip(1).any(|seq| {
        let Some(end) = seq.find(|c: char| !(c.is_ascii_digit() || c == ';' || c == ':')) else {
            return false;
        };
        if !seq[end..].starts_with('m') {
            return false;
        }
        seq[..end]
            .split([';', ':'])
            .filter_map(|p| p.parse::<u32>().ok())
            .any(|p| matches!(p, 30..=38 | 40..=48 | 90..=97 | 100..=107))
    })
}

// ---- tests -------------------------------------------------------------------------

#[test]
fn focus_type_resize_restart_and_quit() {
    let space = space();
    let tmux = Tmux::new();
    tmux.start("main", 100, 30, &script(&space, "", "space up"));
    let s = wait_tui(&tmux, "main");
    assert!(s.contains("echo: type a line"), "{s}");

    // Focus the interactive process and talk to it.
    tmux.keys("main", &["Enter"]);
    tmux.wait_text("main", "FOCUS");
    tmux.type_text("main", "hello world");
    tmux.keys("main", &["Enter"]);
    tmux.wait_text("main", "you said [hello world]");

    // Leave focus with the prefix, select the full-screen program: it was
    // given the size of the pane it is shown in.
    tmux.keys("main", &["C-b", "j", "j"]);
    let s = tmux.wait("main", "the full-screen program at the pane's size", |s| {
        s.contains("FULL size") && printed_size(s).is_some() && printed_size(s) == main_pane_size(s)
    });
    assert!(!s.contains("FOCUS"), "{s}");
    assert!(!s.contains("main screen before"), "alternate screen:\n{s}");
    let before = main_pane_size(&s).unwrap();

    // Resize the terminal: the child gets the new pane size (SIGWINCH).
    tmux.run(&["resize-window", "-t", "main", "-x", "90", "-y", "25"]);
    let s = tmux.wait("main", "the new size in the program", |s| {
        s.lines().count() == 25
            && main_pane_size(s).is_some_and(|size| size != before)
            && printed_size(s) == main_pane_size(s)
    });
    let after = main_pane_size(&s).unwrap();
    assert!(
        after.0 < before.0 && after.1 < before.1,
        "{before:?} {after:?}"
    );

    // Restart from the keyboard: a new pid, one restart more, same size.
    let old = proc_json(&space, "full");
    assert_eq!(old["restarts"], 0);
    tmux.keys("main", &["r"]);
    let mut new = old.clone();
    assert!(
        wait_for(DEADLINE, || {
            new = proc_json(&space, "full");
            new["restarts"] == 1 && new["pid"].is_u64() && new["state"] == "ready"
        }),
        "not restarted: {new}"
    );
    assert_ne!(new["pid"], old["pid"]);
    tmux.wait("main", "the restarted program at the pane's size", |s| {
        s.contains("↻1") && printed_size(s) == Some(after)
    });

    // Quit: confirm, then the terminal is back and nothing is left.
    tmux.keys("main", &["q"]);
    tmux.wait_text("main", "y yes");
    tmux.keys("main", &["y"]);
    let s = assert_restored(&tmux, "main", 0);
    assert!(s.contains("stopped"), "{s}");
    assert_all_gone(&space);
}

#[test]
fn detach_and_attach_show_the_same_screens() {
    let space = space();
    let tmux = Tmux::new();
    tmux.start("one", 100, 30, &script(&space, "", "space up"));
    wait_tui(&tmux, "one");
    tmux.keys("one", &["j", "j"]);
    let s = tmux.wait("one", "the full-screen program", |s| {
        printed_size(s).is_some() && printed_size(s) == main_pane_size(s)
    });
    let full_before = main_pane(&s);
    assert!(!s.contains("main screen before"), "alternate screen:\n{s}");

    // The printer's scrollback: PageUp shows earlier lines.
    tmux.keys("one", &["k"]);
    let s = tmux.wait_text("one", "printer: done");
    let live = printed_lines(&s);
    assert!(!s.contains('↑'), "{s}");
    tmux.keys("one", &["PPage"]);
    let s = tmux.wait("one", "a scrolled view", |s| s.contains('↑'));
    let scrolled = printed_lines(&s);
    assert!(
        scrolled.iter().min() < live.iter().min(),
        "live {live:?}, scrolled {scrolled:?}"
    );
    assert!(!s.contains("printer: done"), "{s}");
    let printer_scrolled = main_pane(&s);
    let running = pids(&space);
    assert!(running.iter().all(|(_, pid, _)| *pid > 0), "{running:?}");

    // Detach: the owner leaves, everything keeps running.
    tmux.keys("one", &["d"]);
    let s = assert_restored(&tmux, "one", 0);
    assert!(
        s.contains("detached from space \"") && s.contains("\"mew space attach\" to return"),
        "{s}"
    );
    assert_eq!(pids(&space), running, "processes changed on detach");

    // Attach from another terminal of the same size: the same screen, still
    // scrolled back in the printer's output.
    tmux.start("two", 100, 30, &script(&space, "", "space attach"));
    let s = tmux.wait("two", "the scrolled printer", |s| {
        s.contains("processes") && s.contains('↑')
    });
    assert_eq!(main_pane(&s), printer_scrolled);
    // The full-screen program, in the alternate screen, as it was.
    tmux.keys("two", &["j"]);
    let s = tmux.wait_text("two", "FULL size");
    assert_eq!(main_pane(&s), full_before, "alternate screen after attach");
    assert!(!s.contains("main screen before"), "{s}");
    // Back to live output.
    tmux.keys("two", &["k"]);
    tmux.wait("two", "the scrolled printer", |s| s.contains('↑'));
    tmux.keys("two", &["End"]);
    let s = tmux.wait("two", "live output", |s| {
        s.contains("printer: done") && !s.contains('↑')
    });
    assert_eq!(printed_lines(&s), live);

    // Any client may quit: the space stops.
    tmux.keys("two", &["q"]);
    tmux.wait_text("two", "y yes");
    tmux.keys("two", &["y"]);
    assert_restored(&tmux, "two", 0);
    assert_all_gone(&space);
}

#[test]
fn killing_the_owning_client_stops_the_space() {
    let space = space();
    let tmux = Tmux::new();
    tmux.start("s", 100, 30, &script(&space, "", "space up"));
    wait_tui(&tmux, "s");
    let client = client_pid(&space, "up");
    kill(client, "KILL");
    assert_all_gone(&space);
}

#[test]
fn closing_the_owning_terminal_stops_the_space() {
    let space = space();
    let tmux = Tmux::new();
    tmux.start("s", 100, 30, &script(&space, "", "space up"));
    wait_tui(&tmux, "s");
    tmux.run(&["kill-session", "-t", "s"]);
    assert_all_gone(&space);
}

#[test]
fn sigterm_to_the_owning_client_restores_it_and_stops_the_space() {
    let space = space();
    let tmux = Tmux::new();
    tmux.start("s", 100, 30, &script(&space, "", "space up"));
    wait_tui(&tmux, "s");
    kill(client_pid(&space, "up"), "TERM");
    let s = assert_restored(&tmux, "s", 143);
    assert!(s.contains("SIGTERM received: stopping space"), "{s}");
    assert_all_gone(&space);
}

#[test]
fn losing_the_server_restores_the_terminal() {
    let space = space();
    let tmux = Tmux::new();
    tmux.start("s", 100, 30, &script(&space, "", "space up"));
    wait_tui(&tmux, "s");
    let mut status = space.mew();
    status.args(["space", "status"]);
    let out = run(status, DEADLINE);
    let server: u32 = out
        .stdout
        .split("server pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no server pid in {}", out.stdout));
    kill(server, "KILL");
    let s = assert_restored(&tmux, "s", 1);
    assert!(s.contains("lost the server of space"), "{s}");
    // The client cleaned up after its dead server itself: nothing is left
    // for `down`.
    assert!(s.contains("had died"), "{s}");
    assert_all_gone(&space);
    let mut down = space.mew();
    down.args(["space", "down"]);
    let out = run(down, DEADLINE);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("nothing to stop"), "{}", out.stdout);
}

#[test]
fn signals_to_an_attached_client_restore_its_terminal() {
    let space = space();
    let tmux = Tmux::new();
    tmux.start("owner", 100, 30, &script(&space, "", "space up"));
    wait_tui(&tmux, "owner");
    let running = pids(&space);
    for (sig, name, code) in [("TERM", "SIGTERM", 143), ("HUP", "SIGHUP", 129)] {
        let session = format!("attach-{sig}");
        tmux.start(&session, 80, 24, &script(&space, "", "space attach"));
        wait_tui(&tmux, &session);
        kill(client_pid(&space, "attach"), sig);
        let s = assert_restored(&tmux, &session, code);
        assert!(s.contains(&format!("{name} received")), "{s}");
        // Not the owner: the space keeps running.
        assert_eq!(pids(&space), running);
        assert!(tmux.screen("owner").contains("processes"));
    }
    // `down` from another shell: the owner's client leaves, restored.
    let mut down = space.mew();
    down.args(["space", "down"]);
    assert_eq!(run(down, DEADLINE).code(), Some(0));
    let s = assert_restored(&tmux, "owner", 0);
    assert!(s.contains("stopped"), "{s}");
    assert_all_gone(&space);
}

#[test]
fn up_without_a_terminal_runs_headless() {
    let space = space();
    let mut cmd = space.mew();
    cmd.args(["space", "up"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().unwrap();
    // Reap it as soon as it exits, as a shell would (`down` waits for it).
    let up = std::thread::spawn(move || wait_output(child, DEADLINE * 2));
    assert!(
        wait_for(DEADLINE, || is_running(&space)
            && space.log("printer").contains("printer: done")),
        "the space did not start"
    );
    let mut down = space.mew();
    down.args(["space", "down"]);
    assert_eq!(run(down, DEADLINE).code(), Some(0));
    let out = up.join().unwrap();
    let first = out.stderr.lines().next().unwrap_or_default();
    assert!(first.contains("--no-tui"), "first line: {first:?}");
    // The line printer ran: process output on stdout, prefixed.
    assert!(out.stdout.contains("printed line 300"), "{}", out.stdout);
    assert_all_gone(&space);
}

#[test]
fn bare_mew_starts_or_attaches() {
    // Outside a space: a short help pointing to `mew init`.
    let empty = tempfile::tempdir().unwrap();
    let mut c = Command::new(MEW);
    c.arg("--space-dir").arg(empty.path());
    let out = run(c, DEADLINE);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("mew init"), "{}", out.stdout);

    // In a space that is not running: starts it, as its owner.
    let space = space();
    let tmux = Tmux::new();
    tmux.start("first", 100, 30, &script(&space, "", ""));
    wait_tui(&tmux, "first");
    let running = pids(&space);
    tmux.keys("first", &["d"]);
    let s = assert_restored(&tmux, "first", 0);
    assert!(s.contains("detached from space"), "{s}");

    // Running: attaches to it.
    tmux.start("second", 100, 30, &script(&space, "", ""));
    wait_tui(&tmux, "second");
    assert_eq!(pids(&space), running);
    tmux.keys("second", &["q"]);
    tmux.wait_text("second", "y yes");
    tmux.keys("second", &["y"]);
    assert_restored(&tmux, "second", 0);
    assert_all_gone(&space);
}

#[test]
fn no_color_chrome_has_no_colour() {
    let space = space();
    let tmux = Tmux::new();
    tmux.start("plain", 100, 30, &script(&space, "NO_COLOR=1", "space up"));
    wait_tui(&tmux, "plain");
    let plain = tmux.screen_sgr("plain");
    let header = plain.lines().next().unwrap();
    assert!(!has_colour(header), "colour in the header: {header:?}");
    assert!(!has_colour(&plain), "colour on the screen: {plain:?}");

    // The same space in a client without NO_COLOR has colours.
    tmux.start("colour", 100, 30, &script(&space, "", "space attach"));
    wait_tui(&tmux, "colour");
    let coloured = tmux.screen_sgr("colour");
    assert!(has_colour(&coloured), "no colour at all: {coloured:?}");

    let mut down = space.mew();
    down.args(["space", "down"]);
    assert_eq!(run(down, DEADLINE).code(), Some(0));
    assert_restored(&tmux, "plain", 0);
    assert_all_gone(&space);
}

#[test]
fn long_lines_reflow_when_the_terminal_narrows_and_widens() {
    // 200 characters on one line: 0123456789 twenty times, each run ending
    // in its own letter, so a cut or a lost piece is visible.
    let yaml = r#"
processes:
  wide:
    command: |
      for c in a b c d e f g h i j k l m n o p q r s t; do printf '012345678%s' "$c"; done
      printf '\nwide: done\n'
      while :; do sleep 60; done
"#;
    let line: String = ('a'..='t').map(|c| format!("012345678{c}")).collect();
    let space = Space::new(yaml);
    let tmux = Tmux::new();
    tmux.start("main", 240, 20, &script(&space, "", "space up"));
    tmux.wait("main", "the whole line", |s| {
        s.contains(&line) && s.contains("wide: done")
    });

    // Narrower than the line: it wraps (nothing is cut).
    tmux.run(&["resize-window", "-t", "main", "-x", "80", "-y", "20"]);
    let s = tmux.wait("main", "the line wrapped in a narrow pane", |s| {
        main_pane_size(s).is_some_and(|(_, cols)| cols < 80) && s.contains("wide: done")
    });
    let joined: String = main_pane(&s).iter().map(|l| l.trim_end()).collect();
    assert!(joined.contains(&line), "wrapped, not cut:\n{s}");

    // Wide again: the line is whole on one row, as in tmux.
    tmux.run(&["resize-window", "-t", "main", "-x", "240", "-y", "20"]);
    tmux.wait("main", "the whole line again after widening", |s| {
        s.lines().any(|l| l.contains(&line))
    });

    // Zoom and back, and the grid and back, at 80 columns and then wide.
    tmux.run(&["resize-window", "-t", "main", "-x", "80", "-y", "20"]);
    tmux.wait("main", "the narrow pane", |s| {
        main_pane_size(s).is_some_and(|(_, cols)| cols < 80)
    });
    tmux.keys("main", &["z"]);
    tmux.wait_text("main", "ZOOM");
    tmux.keys("main", &["z", "g"]);
    tmux.wait("main", "the grid", |s| !s.contains("processes"));
    tmux.keys("main", &["g"]);
    tmux.wait_text("main", "processes");
    tmux.run(&["resize-window", "-t", "main", "-x", "240", "-y", "20"]);
    tmux.wait("main", "the whole line after zoom and grid", |s| {
        s.lines().any(|l| l.contains(&line))
    });

    tmux.keys("main", &["q"]);
    tmux.wait_text("main", "y yes");
    tmux.keys("main", &["y"]);
    assert_restored(&tmux, "main", 0);
    assert_all_gone(&space);
}

#[test]
fn notes_focus_that_ends_and_a_second_quit_that_kills() {
    let yaml = r#"
space:
  description: "Try this: focus once (Enter) and type a line; it exits."
shutdown_timeout: 60s
processes:
  once:
    command: |
      echo "once: type a line"
      IFS= read -r line
      echo "once: bye"
      exit 1
  slow:
    command: |
      trap '' TERM
      echo "slow: ignoring SIGTERM"
      while :; do sleep 1; done
    stop_timeout: 60s
    stop_timout: 1s
"#;
    let space = Space::new(yaml);
    let tmux = Tmux::new();
    tmux.start("main", 120, 30, &script(&space, "", "space up"));
    // The config's warning (the misspelt key) is counted in the header; the
    // description is in the header and in the help.
    let s = tmux.wait("main", "the TUI", |s| {
        s.contains("processes") && s.contains("once: type a line")
    });
    assert!(
        s.lines().next().is_some_and(|h| h.contains("⚠ 1 warning")),
        "{s}"
    );
    assert!(s.contains("Try this: focus once"), "{s}");
    tmux.keys("main", &["?"]);
    let s = tmux.wait_text("main", "1 warning in the config");
    assert!(s.contains("stop_timout"), "{s}");
    assert!(s.contains("about  Try this: focus once"), "{s}");
    tmux.keys("main", &["Escape"]);
    tmux.wait("main", "the help closed", |s| !s.contains("in the config"));

    // Focus the process, make it exit: focus is left, and the footer says why.
    tmux.keys("main", &["Enter"]);
    tmux.wait_text("main", "FOCUS");
    tmux.type_text("main", "hi");
    tmux.keys("main", &["Enter"]);
    let s = tmux.wait_text("main", "once exited (code 1): focus left");
    assert!(!s.contains("FOCUS"), "{s}");
    // Keys are mew's again: j selects the next process.
    tmux.keys("main", &["j"]);
    tmux.wait_text("main", "slow: ignoring SIGTERM");

    // Quit: `slow` ignores SIGTERM; the footer says what is waited for and
    // when SIGKILL comes; a second q kills at once (not after 60 s).
    tmux.keys("main", &["q"]);
    tmux.wait_text("main", "y yes");
    tmux.keys("main", &["y"]);
    let s = tmux.wait("main", "the countdown", |s| {
        s.contains("waiting for slow · SIGKILL in") && s.contains("again: kill now")
    });
    assert!(s.contains("stopping… SIGKILL in"), "{s}");
    let asked = Instant::now();
    tmux.keys("main", &["q"]);
    let s = tmux.wait_text("main", "AFTER");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "the second quit did not kill at once ({:?})",
        asked.elapsed()
    );
    assert!(s.contains("TTY=cooked"), "{s}");
    assert_all_gone(&space);
}

// ---- the space view ----------------------------------------------------------

/// A space with a gateway, its human (mew joins as it) and the echo agent.
fn agent_space() -> Space {
    let yaml = format!(
        r#"space: {{ id: s1 }}
participants:
  human:
    tokens: [h1]
    capabilities: [ {{ kind: "*" }} ]
    default_to: {{ chat: [agent] }}
{}"#,
        common::echo_agent()
    );
    Space::new(&yaml)
}

#[test]
fn space_view_talks_answers_proposals_and_survives_detach() {
    let space = agent_space();
    let tmux = Tmux::new();
    tmux.start("one", 120, 32, &script(&space, "", "space up"));
    tmux.wait("one", "the space entry", |s| {
        s.contains("processes") && s.contains("◆ space")
    });
    // e selects the space view; wait until mew and the agent are both in.
    tmux.keys("one", &["e"]);
    tmux.wait("one", "mew and the agent in the space", |s| {
        s.contains("as human") && s.contains("2 here")
    });
    assert!(
        wait_for(DEADLINE, || space
            .log("agent")
            .contains("agent agent joined")),
        "{}",
        space.log("agent")
    );

    // Talk: Enter opens the input line; the agent echoes.
    tmux.keys("one", &["Enter"]);
    tmux.wait_text("one", "to agent ›");
    tmux.type_text("one", "hello from the tui");
    tmux.keys("one", &["Enter"]);
    tmux.wait_text("one", "echo: hello from the tui");
    assert!(wait_for(DEADLINE, || space
        .log("agent")
        .contains("agent got chat from human: hello from the tui")));

    // A proposal: the prompt shows, is counted in the header, approved with a.
    tmux.type_text("one", "propose write");
    tmux.keys("one", &["Enter"]);
    let s = tmux.wait_text("one", "⚑ agent proposes");
    assert!(s.contains("1 proposal"), "{s}");
    tmux.keys("one", &["Escape"]);
    tmux.wait("one", "the input line closed", |s| !s.contains("TALK"));
    tmux.keys("one", &["a"]);
    assert!(
        wait_for(DEADLINE, || space
            .log("agent")
            .contains("agent fulfilled write")),
        "the agent log: {}",
        space.log("agent")
    );
    let s = tmux.wait_text("one", "fulfilled write (");
    assert!(!s.contains("⚑ agent proposes"), "{s}");

    // Another one, rejected with a reason.
    tmux.keys("one", &["Enter"]);
    tmux.wait_text("one", "to agent ›");
    tmux.type_text("one", "propose delete");
    tmux.keys("one", &["Enter"]);
    tmux.wait_text("one", "⚑ agent proposes");
    tmux.keys("one", &["Escape"]);
    tmux.wait("one", "the input line closed", |s| !s.contains("TALK"));
    tmux.keys("one", &["r"]);
    tmux.wait_text("one", "reason ›");
    tmux.type_text("one", "too risky");
    tmux.keys("one", &["Enter"]);
    tmux.wait_text("one", "rejected: too risky");

    // Detach and attach: the space view, with the conversation, is back.
    tmux.keys("one", &["d"]);
    assert_restored(&tmux, "one", 0);
    tmux.start("two", 120, 32, &script(&space, "", "space attach"));
    let s = tmux.wait("two", "the space view after attach", |s| {
        s.contains("◆ space as human") && s.contains("rejected: too risky")
    });
    assert!(s.contains("echo: hello from the tui"), "{s}");
    assert!(s.contains("fulfilled write ("), "{s}");

    tmux.keys("two", &["q"]);
    tmux.wait_text("two", "y yes");
    tmux.keys("two", &["y"]);
    assert_restored(&tmux, "two", 0);
    assert_all_gone(&space);
}
