//! The `--no-tui` front end: prefixed output lines and the exit-code rules.
//!
//! Output: `HH:MM:SS name | line` for process output, `HH:MM:SS name * event`
//! for lifecycle events, names padded to the longest, a stable colour per
//! name (only on a terminal and when `NO_COLOR` is unset).
//!
//! Exit codes (docs/cli.md):
//! - interrupted: 130 (SIGINT), 143 (SIGTERM), 129 (SIGHUP);
//! - every process ended on its own: 0 if all succeeded, else the code of the
//!   first process that failed for good;
//! - `--exit-on-failure`: the first process that fails for good stops the
//!   space, and mew exits with its code. A service (not `one_shot`) that
//!   ends, even with code 0, counts as failed there (exit 1 for code 0).

use std::io::{self, Write};

use crate::status::{Millis, ProcState, ProcessStatus};
use crate::supervisor::{LineFeed, Printable};

/// Colours for process names (basic 16-colour palette, readable on dark and light).
pub(crate) const PALETTE: [&str; 6] = ["36", "33", "32", "35", "34", "31"];

pub struct Printer {
    names: Vec<String>,
    width: usize,
    color: bool,
    timestamps: bool,
    /// Per process: the label before output lines and before events,
    /// computed once (name, padding, colour, separator).
    labels: Vec<[Vec<u8>; 2]>,
    clock: Clock,
    /// Writing to this descriptor (stdout): wait for it with `poll` and write
    /// at most `PIPE_BUF` at a time, so a write never blocks for good and a
    /// stopping space can give up on a reader that went away without closing.
    poll_stdout: bool,
}

/// Formats `HH:MM:SS` in local time, once per second.
struct Clock {
    second: i64,
    text: String,
}

impl Clock {
    fn format(&mut self, at: Millis) -> &str {
        let second = (at / 1000) as i64;
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = chrono::DateTime::from_timestamp(second, 0)
                .map(|t| {
                    t.with_timezone(&chrono::Local)
                        .format("%H:%M:%S")
                        .to_string()
                })
                .unwrap_or_else(|| "--:--:--".into());
        }
        &self.text
    }
}

/// A stable colour index for a name (FNV-1a).
pub fn color_index(name: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h as usize % PALETTE.len()
}

fn label(name: &str, width: usize, color: Option<&str>, sep: char) -> Vec<u8> {
    let pad = width.saturating_sub(name.chars().count());
    match color {
        Some(c) => format!("\x1b[{c}m{name}{:pad$} {sep}\x1b[0m ", ""),
        None => format!("{name}{:pad$} {sep} ", ""),
    }
    .into_bytes()
}

impl Printer {
    pub fn new(names: Vec<String>, color: bool, timestamps: bool) -> Printer {
        let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
        let labels = names
            .iter()
            .map(|n| {
                let c = color.then(|| PALETTE[color_index(n)]);
                [label(n, width, c, '|'), label(n, width, c, '*')]
            })
            .collect();
        Printer {
            names,
            width,
            color,
            timestamps,
            labels,
            poll_stdout: false,
            clock: Clock {
                second: -1,
                text: String::new(),
            },
        }
    }

    fn prefix(
        &mut self,
        out: &mut Vec<u8>,
        at: Millis,
        index: Option<usize>,
        name: &str,
        event: bool,
    ) {
        if self.timestamps {
            let color = self.color;
            let t = self.clock.format(at);
            if color {
                out.extend_from_slice(b"\x1b[2m");
                out.extend_from_slice(t.as_bytes());
                out.extend_from_slice(b"\x1b[0m ");
            } else {
                out.extend_from_slice(t.as_bytes());
                out.push(b' ');
            }
        }
        match index.and_then(|i| self.labels.get(i)) {
            Some(l) => out.extend_from_slice(&l[usize::from(event)]),
            None => {
                let c = self.color.then_some("37");
                out.extend_from_slice(&label(name, self.width, c, if event { '*' } else { '|' }));
            }
        }
    }

    /// Append one printable item as a line to `out`.
    pub fn format(&mut self, item: &Printable, out: &mut Vec<u8>) {
        match item {
            Printable::Lines {
                process,
                name,
                at,
                text,
                ..
            } => {
                // A process added since the start (a reload, `scale`) is
                // not among the labels: it is labelled by its name.
                let (index, name) = match name {
                    Some(n) if self.names.get(*process).is_none_or(|m| **m != **n) => (None, &**n),
                    _ => (Some(*process), ""),
                };
                for line in text.split_terminator('\n') {
                    self.prefix(out, *at, index, name, false);
                    out.extend_from_slice(line.as_bytes());
                    out.push(b'\n');
                }
            }
            Printable::End => {}
            Printable::Event(ev) => {
                let index = self.names.iter().position(|n| *n == ev.process);
                self.prefix(out, ev.at, index, &ev.process, true);
                if self.color {
                    let style = match ev.state {
                        ProcState::Failed { .. } | ProcState::Killed { .. } => "1;31",
                        ProcState::Exited { code } if code != 0 => "1;31",
                        ProcState::Ready => "1;32",
                        _ => "1",
                    };
                    out.extend_from_slice(
                        format!("\x1b[{style}m{}\x1b[0m\n", ev.message).as_bytes(),
                    );
                } else {
                    out.extend_from_slice(ev.message.as_bytes());
                    out.push(b'\n');
                }
            }
        }
    }

    /// Print everything from `feed` until it closes. Runs on its own thread:
    /// a slow stdout slows the processes down, it never drops a line. When
    /// the output is gone (its reader closed the pipe: `| head -1`),
    /// `on_closed` is told — the space then stops, as a pipeline expects —
    /// and the feed is drained to its end so no reader ever blocks.
    /// The printer writes to the process's stdout: see `poll_stdout`.
    pub fn for_stdout(mut self) -> Printer {
        self.poll_stdout = true;
        self
    }

    pub fn run(
        mut self,
        mut feed: LineFeed,
        out: impl Write,
        on_closed: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let mut out = out;
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(item) = feed.blocking_recv() {
            if matches!(item, Printable::End) {
                return;
            }
            buf.clear();
            self.note_dropped(&feed, &mut buf);
            self.format(&item, &mut buf);
            let mut more = 0;
            let mut end = false;
            while more < 4096 {
                match feed.try_recv() {
                    Some(Printable::End) => {
                        end = true;
                        break;
                    }
                    Some(next) => {
                        self.format(&next, &mut buf);
                        more += 1;
                    }
                    None => break,
                }
            }
            if end {
                self.note_dropped(&feed, &mut buf);
                let _ = self.write_out(&mut out, &buf, &feed);
                return;
            }
            if self.write_out(&mut out, &buf, &feed).is_err() {
                // stdout is gone (closed pipe, or a stopping space gave up
                // on it): say so, then drain so nothing blocks.
                if let Some(tx) = on_closed {
                    let _ = tx.send(());
                }
                while let Some(item) = feed.blocking_recv() {
                    if matches!(item, Printable::End) {
                        break;
                    }
                }
                return;
            }
            feed.progress();
            if more > 0 {
                // More arrived while this batch was formatted: a stream is
                // running. Let it gather for a moment instead of waking for
                // every PTY read: under a 400,000-line flood the handoff to
                // this thread (a futex on each side) was the largest syscall
                // cost of the server. A quiet process (one item per batch)
                // is printed at once.
                std::thread::sleep(STREAM_GATHER);
            }
        }
    }

    /// Lines that stdout was too stalled to take are said, not hidden.
    fn note_dropped(&self, feed: &LineFeed, buf: &mut Vec<u8>) {
        let n = feed.take_dropped();
        if n > 0 {
            let _ = writeln!(
                buf,
                "mew: {n} line{} not shown here (stdout stopped reading); \"mew space logs\" has every one",
                if n == 1 { " was" } else { "s were" }
            );
        }
    }

    /// Write `buf` whole. With a poll descriptor: in `PIPE_BUF` pieces, each
    /// after `poll` says there is room, so no write blocks; once the space is
    /// stopping, a reader that takes nothing for 2 s is given up on.
    fn write_out(&self, out: &mut impl Write, buf: &[u8], feed: &LineFeed) -> io::Result<()> {
        if !self.poll_stdout {
            return out.write_all(buf).and_then(|_| out.flush());
        }
        use std::os::fd::AsFd as _;
        let stdout = io::stdout();
        let mut waited_closing = std::time::Duration::ZERO;
        for piece in buf.chunks(PIPE_BUF) {
            loop {
                let mut fds = [nix::poll::PollFd::new(
                    stdout.as_fd(),
                    nix::poll::PollFlags::POLLOUT,
                )];
                let ready = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(200u16));
                match ready {
                    Ok(n) if n > 0 => break,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {
                        if feed.is_closing() {
                            waited_closing += std::time::Duration::from_millis(200);
                            if waited_closing >= std::time::Duration::from_secs(2) {
                                return Err(io::Error::new(
                                    io::ErrorKind::TimedOut,
                                    "stdout stopped reading",
                                ));
                            }
                        }
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            out.write_all(piece)?;
            out.flush()?;
        }
        Ok(())
    }
}

/// At most this much is written after one `poll` (what a pipe with room
/// takes without blocking).
const PIPE_BUF: usize = 4096;

/// How long the printer lets a running stream gather between two writes.
/// The lines keep their read-time timestamps; the permits (16 Ki lines) hold
/// far more than a flood writes in this time.
const STREAM_GATHER: std::time::Duration = std::time::Duration::from_millis(1);

/// The exit code a failed process contributes.
pub fn failure_code(p: &ProcessStatus, exit_on_failure: bool) -> Option<i32> {
    match &p.state {
        ProcState::Exited { code: 0 } if exit_on_failure && !p.one_shot => Some(1),
        ProcState::Exited { code: 0 } => None,
        ProcState::Exited { code } => Some(*code),
        ProcState::Killed { signal } => Some(128 + signal),
        ProcState::Failed { .. } => Some(p.exit_code.filter(|&c| c != 0).unwrap_or(1)),
        _ => None,
    }
}

/// Tracks the first process that failed for good, in the order failures happen.
#[derive(Default)]
pub struct FailureTracker {
    first: Option<(String, i32)>,
    seen: std::collections::HashSet<String>,
}

impl FailureTracker {
    /// Look at a new status; returns the first failure when it is new.
    pub fn observe(
        &mut self,
        processes: &[ProcessStatus],
        exit_on_failure: bool,
    ) -> Option<(String, i32)> {
        let mut newly = None;
        for p in processes {
            let failed = p.state.is_settled() && failure_code(p, exit_on_failure).is_some();
            if !failed {
                self.seen.remove(&p.name);
                continue;
            }
            if self.seen.insert(p.name.clone())
                && self.first.is_none()
                && let Some(code) = failure_code(p, exit_on_failure)
            {
                self.first = Some((p.name.clone(), code));
                newly = self.first.clone();
            }
        }
        newly
    }

    pub fn first(&self) -> Option<&(String, i32)> {
        self.first.as_ref()
    }
}

/// The code of the process that failed for good first (by the time of its
/// last transition), or 0: how a TUI quit ends (the `--no-tui` rules).
pub fn first_failure(processes: &[ProcessStatus]) -> i32 {
    processes
        .iter()
        .filter(|p| p.state.is_settled())
        .filter_map(|p| {
            let code = failure_code(p, false)?;
            let at = p.history.last().map_or(0, |t| t.at);
            Some((at, code))
        })
        .min()
        .map_or(0, |(_, code)| code)
}

/// The exit code of a process that ended for good (exited, killed, failed);
/// `None` while it runs, waits, restarts, or was stopped by a user.
pub fn end_code(p: &ProcessStatus) -> Option<i32> {
    match &p.state {
        ProcState::Exited { code } => Some(*code),
        ProcState::Killed { signal } => Some(128 + signal),
        ProcState::Failed { .. } => Some(p.exit_code.filter(|&c| c != 0).unwrap_or(1)),
        _ => None,
    }
}

/// `--exit-code-from NAME` and `--abort-on-exit`: the process whose end stops
/// the space, with the code mew exits with. With `exit_code_from`, only
/// NAME counts; with `abort_on_exit`, the first process that ended (a
/// `one_shot` task that succeeded does not count: it did its job).
pub fn ended_for(
    processes: &[ProcessStatus],
    exit_code_from: Option<&str>,
    abort_on_exit: bool,
) -> Option<(String, i32)> {
    if let Some(name) = exit_code_from {
        let p = processes.iter().find(|p| p.name == name)?;
        return end_code(p).map(|c| (p.name.clone(), c));
    }
    if !abort_on_exit {
        return None;
    }
    processes
        .iter()
        .filter_map(|p| {
            let code = end_code(p)?;
            if p.one_shot && code == 0 {
                return None;
            }
            let at = p.history.last().map_or(0, |t| t.at);
            Some((at, p.name.clone(), code))
        })
        .min()
        .map(|(_, name, code)| (name, code))
}

/// Every process has ended on its own (nothing running, pending or waiting to restart).
pub fn all_ended(processes: &[ProcessStatus]) -> bool {
    !processes.is_empty() && processes.iter().all(|p| p.state.is_settled())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProcKind;
    use crate::status::LifecycleEvent;

    fn proc_status(name: &str, state: ProcState, one_shot: bool) -> ProcessStatus {
        ProcessStatus {
            one_shot,
            ..ProcessStatus::new(name, ProcKind::Process, state)
        }
    }

    #[test]
    fn lines_are_prefixed_and_padded() {
        let mut p = Printer::new(vec!["web".into(), "worker".into()], false, false);
        let mut out = Vec::new();
        p.format(
            &Printable::Lines {
                process: 0,
                name: None,
                at: 0,
                text: "hello\n".into(),
                count: 1,
            },
            &mut out,
        );
        p.format(
            &Printable::Event(LifecycleEvent {
                at: 0,
                process: "worker".into(),
                state: ProcState::Exited { code: 1 },
                message: "exited with code 1".into(),
            }),
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "web    | hello\nworker * exited with code 1\n"
        );
    }

    #[test]
    fn a_process_added_later_is_labelled_by_its_name() {
        let mut p = Printer::new(vec!["web".into(), "space".into()], false, false);
        let mut out = Vec::new();
        p.format(
            &Printable::Lines {
                process: 1,
                name: Some("new".into()),
                at: 0,
                text: "hi\n".into(),
                count: 1,
            },
            &mut out,
        );
        p.format(
            &Printable::Lines {
                process: 0,
                name: Some("web".into()),
                at: 0,
                text: "ok\n".into(),
                count: 1,
            },
            &mut out,
        );
        assert_eq!(String::from_utf8(out).unwrap(), "new   | hi\nweb   | ok\n");
    }

    #[test]
    fn timestamps_and_colour_are_optional() {
        let mut p = Printer::new(vec!["a".into()], true, true);
        let mut out = Vec::new();
        p.format(
            &Printable::Lines {
                process: 0,
                name: None,
                at: 1_700_000_000_000,
                text: "x\n".into(),
                count: 1,
            },
            &mut out,
        );
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("\x1b["), "{s:?}");
        assert!(s.ends_with("x\n"));
        let time = s.trim_start_matches("\x1b[2m");
        assert_eq!(&time[2..3], ":");
    }

    #[test]
    fn colour_is_stable_per_name() {
        assert_eq!(color_index("gateway"), color_index("gateway"));
    }

    #[test]
    fn exit_codes_follow_the_rules() {
        let ok = proc_status("a", ProcState::Exited { code: 0 }, false);
        let task = proc_status("t", ProcState::Exited { code: 0 }, true);
        let bad = proc_status("b", ProcState::Exited { code: 3 }, false);
        let killed = proc_status("k", ProcState::Killed { signal: 9 }, false);
        assert_eq!(failure_code(&ok, false), None);
        assert_eq!(failure_code(&ok, true), Some(1));
        assert_eq!(failure_code(&task, true), None);
        assert_eq!(failure_code(&bad, false), Some(3));
        assert_eq!(failure_code(&killed, false), Some(137));
        let mut f = FailureTracker::default();
        assert_eq!(f.observe(&[ok.clone(), task.clone()], false), None);
        assert_eq!(
            f.observe(&[bad.clone(), killed.clone()], false),
            Some(("b".into(), 3))
        );
        assert_eq!(f.observe(&[bad, killed], false), None);
        assert_eq!(f.first(), Some(&("b".to_string(), 3)));
        assert!(all_ended(&[ok.clone(), task.clone()]));
        // --exit-code-from / --abort-on-exit.
        let running = proc_status("db", ProcState::Ready, false);
        let tests = proc_status("tests", ProcState::Exited { code: 0 }, true);
        let all = [running.clone(), task.clone(), tests.clone()];
        assert_eq!(
            ended_for(&all, Some("tests"), false),
            Some(("tests".into(), 0))
        );
        assert_eq!(ended_for(&all, Some("db"), false), None);
        assert_eq!(
            ended_for(&all, None, true),
            None,
            "successful tasks do not abort"
        );
        let crashed = proc_status("api", ProcState::Exited { code: 0 }, false);
        assert_eq!(
            ended_for(&[running, crashed], None, true),
            Some(("api".into(), 0))
        );
        assert!(!all_ended(&[proc_status("r", ProcState::Ready, false)]));
    }
}
