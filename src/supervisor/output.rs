//! The output pipeline of one run: read the PTY until the process ends,
//! feed the terminal emulator, the log file, the log probe, subscribers and
//! the `--no-tui` printer; then report the exit to the actor.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use regex::Regex;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::machine::Input;
use super::pty::{Finish, Pty};
use super::{Cmd, Event, LineSink, ProcShared, Shared};
use crate::status::now_millis;
use crate::sys::Exit;
use crate::terminal::capture::LineCapture;

/// How long a reader may take to deliver what it drained after its process
/// exited. Draining itself is bounded in bytes; delivery waits for a slow
/// `--no-tui` stdout (like a pipe), so this is only a last resort.
const DRAIN_GRACE: Duration = Duration::from_secs(60);

/// Read a process's output until it ends: emulator, log file, subscribers.
#[allow(clippy::too_many_arguments)]
pub(super) async fn read_output(
    shared: Arc<Shared>,
    index: usize,
    generation: u64,
    pty: Arc<Pty>,
    finish: Arc<Finish>,
    sink: Option<LineSink>,
    log_re: Option<Arc<Regex>>,
    tx: mpsc::UnboundedSender<Cmd>,
) {
    let Some(proc) = shared.procs.get(index) else {
        return;
    };
    let mut out = Delivery {
        shared: shared.clone(),
        proc: proc.clone(),
        index,
        generation,
        sink,
        log_re,
        matched: false,
        tx,
    };
    let mut buf = vec![0u8; 64 * 1024];
    let mut capture = LineCapture::new();
    // The complete lines of one read, each ended by '\n'.
    let mut lines = Lines::default();
    let mut finishing = false;
    // A process that exited may leave a writer behind: drain at most this much.
    let mut drain_budget: usize = 4 << 20;
    loop {
        // `hot`: the output was already waiting (a flood), not awaited.
        let (n, hot) = if finishing {
            match pty.try_read(&mut buf) {
                Ok(Some(n)) if drain_budget > 0 => {
                    drain_budget = drain_budget.saturating_sub(n);
                    (n, true)
                }
                _ => (0, false),
            }
        } else {
            tokio::select! {
                biased;
                r = pty.read_waited(&mut buf) => r.map_or((0, false), |(n, waited)| (n, !waited)),
                _ = finish.wait() => { finishing = true; continue; }
            }
        };
        if n == 0 {
            break;
        }
        let chunk = &buf[..n];
        // The emulator catches up when someone looks (see terminal::lazy).
        let replies = proc.lock_screen().push(chunk);
        // Nobody is left to read answers once the process has exited.
        if !replies.is_empty() && !finishing {
            let _ = pty.write_all(&replies).await;
        }
        capture.feed(chunk, &mut |line| lines.push(line.text));
        out.deliver(&mut lines).await;
        proc.seq.fetch_add(1, Ordering::Release);
        shared.output_seq.fetch_add(1, Ordering::Release);
        shared.output.notify_waiters();
        // A process that never stops printing keeps its PTY always readable,
        // so this loop would run for tokio's whole coop budget (128 reads)
        // before another task gets a worker: under a flood, clients waited
        // for seconds and `status` timed out. Yield after every chunk that
        // was already waiting so the server stays responsive. A chunk that
        // was awaited went through the scheduler anyway (and since a short
        // read clears the readiness, that is most chunks, floods included);
        // yielding there too cost a scheduler round for every line a quiet
        // program wrote.
        if hot {
            tokio::task::yield_now().await;
        }
    }
    capture.flush(&mut |line| lines.push(line.text));
    out.deliver(&mut lines).await;
    shared.output.notify_waiters();
}

/// Complete lines of one PTY read, in one buffer.
#[derive(Default)]
struct Lines {
    text: String,
    count: usize,
}

impl Lines {
    fn push(&mut self, line: &str) {
        self.text.push_str(line);
        self.text.push('\n');
        self.count += 1;
    }

    fn iter(&self) -> impl Iterator<Item = &str> {
        self.text.split_terminator('\n')
    }
}

/// Where the lines of one process go: its log file, the log probe,
/// subscribers and the `--no-tui` printer.
struct Delivery {
    shared: Arc<Shared>,
    proc: Arc<ProcShared>,
    index: usize,
    generation: u64,
    sink: Option<LineSink>,
    log_re: Option<Arc<Regex>>,
    matched: bool,
    tx: mpsc::UnboundedSender<Cmd>,
}

impl Delivery {
    async fn deliver(&mut self, lines: &mut Lines) {
        let Delivery {
            shared,
            proc,
            index,
            generation,
            sink,
            log_re,
            matched,
            tx,
        } = self;
        let (index, generation) = (*index, *generation);
        if lines.count == 0 {
            return;
        }
        let at = now_millis();
        {
            let mut log = proc.lock_log();
            for l in lines.iter() {
                log.write_line(at, l);
            }
            log.flush();
        }
        if let Some(re) = log_re
            && !*matched
            && lines.iter().any(|l| re.is_match(l))
        {
            *matched = true;
            let _ = tx.send(Cmd::Machine(Input::Probe {
                index,
                generation,
                result: Ok(()),
            }));
        }
        if shared.events.receiver_count() > 0 {
            for l in lines.iter() {
                let _ = shared.events.send(Event::Line {
                    process: proc.name.clone(),
                    at,
                    text: l.into(),
                });
            }
        }
        let count = std::mem::take(&mut lines.count);
        match sink {
            // The printer owns the text from here; the next read starts a new buffer.
            Some(sink) => {
                let text = std::mem::take(&mut lines.text);
                sink.send_lines(index, Some(proc.name.clone()), at, text, count)
                    .await;
            }
            None => lines.text.clear(),
        }
    }
}

pub(super) async fn watch_exit(
    tx: mpsc::UnboundedSender<Cmd>,
    index: usize,
    generation: u64,
    exit_rx: oneshot::Receiver<Exit>,
    finish: Arc<Finish>,
    mut reader: JoinHandle<()>,
) {
    let exit = exit_rx.await.unwrap_or(Exit::Code(-1));
    finish.finish();
    tokio::select! {
        _ = &mut reader => {}
        _ = tokio::time::sleep(DRAIN_GRACE) => reader.abort(),
    }
    let _ = tx.send(Cmd::Machine(Input::Exited {
        index,
        generation,
        exit,
    }));
}
