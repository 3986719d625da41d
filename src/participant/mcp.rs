//! An MCP server on stdio: the child process, its pipes, and its messages
//! (JSON-RPC 2.0, one JSON value a line).
//!
//! The server runs in its own process group, with its stdin and stdout piped
//! to the bridge and its stderr copied to the bridge's stderr, each line
//! prefixed. A watcher (`/bin/sh`, in the server's group) holds the read end
//! of a pipe whose write end only the bridge has: when the bridge dies, even
//! by SIGKILL, the watcher reads end of file and kills the whole group, so
//! the server never outlives the bridge. (mew's crate has no `unsafe` outside
//! `src/sys.rs`, so `PR_SET_PDEATHSIG` in a `pre_exec` is not an option here;
//! the watcher needs none.)

use std::ffi::OsString;
use std::io::{self, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::unix::AsyncFd;
use tokio::sync::{mpsc, oneshot};

use crate::sys;

/// The longest line taken from the server's stdout; a longer one is dropped.
pub(crate) const MAX_LINE: usize = 16 << 20;
/// The longest stderr line copied whole; the rest of a longer one is cut.
const MAX_STDERR_LINE: usize = 64 << 10;
/// Lines from the server waiting for the bridge (backpressure beyond).
const INCOMING: usize = 256;
/// Messages waiting to be written to the server's stdin.
const OUTGOING: usize = 1024;

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct ServerSpec {
    pub program: OsString,
    pub args: Vec<OsString>,
    /// Set on top of the bridge's environment.
    pub env: Vec<(OsString, OsString)>,
    /// Removed from the environment first (the bridge's tokens).
    pub env_remove: Vec<OsString>,
    pub cwd: Option<PathBuf>,
    /// Prefix of the server's stderr lines on the bridge's stderr.
    pub stderr_prefix: String,
}

/// What the server sent.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A JSON value (a response, a notification, or a request to the client).
    Message(Value),
    /// A line that is not JSON (cut to 200 bytes for the report).
    Invalid(String),
    /// A line over [`MAX_LINE`], dropped; its length.
    Oversized(usize),
}

/// A running MCP server.
pub(crate) struct Server {
    pid: u32,
    out: mpsc::Sender<String>,
    exit: Option<oneshot::Receiver<io::Result<ExitStatus>>>,
    exited: Option<String>,
    /// The watcher's stdin; dropping it makes the watcher kill the group.
    watcher: Option<(Child, std::process::ChildStdin)>,
}

impl Server {
    /// Start the server, and the receiver of what it writes (`None` at the
    /// end of its stdout). Must be called inside a tokio runtime.
    pub(crate) fn spawn(spec: &ServerSpec) -> io::Result<(Server, mpsc::Receiver<Incoming>)> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for k in &spec.env_remove {
            cmd.env_remove(k);
        }
        cmd.envs(spec.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn()?;
        let pid = child.id();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = sys::signal_group(pid, libc::SIGKILL);
            return Err(io::Error::other("the server's pipes were not set up"));
        };
        let watcher = match spawn_watcher(pid) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!(
                    "mew bridge: warning: no watcher for the MCP server ({e}); it may outlive a killed bridge"
                );
                None
            }
        };
        let (exit_tx, exit_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("mcp-wait".into())
            .spawn(move || {
                let _ = exit_tx.send(child.wait());
            })?;

        let stdin = pipe(OwnedFd::from(stdin))?;
        let stdout = pipe(OwnedFd::from(stdout))?;
        let stderr = pipe(OwnedFd::from(stderr))?;

        let (out_tx, out_rx) = mpsc::channel::<String>(OUTGOING);
        tokio::spawn(write_lines(stdin, out_rx));
        let (in_tx, in_rx) = mpsc::channel(INCOMING);
        tokio::spawn(read_messages(stdout, in_tx));
        tokio::spawn(copy_stderr(stderr, spec.stderr_prefix.clone()));
        let server = Server {
            pid,
            out: out_tx,
            exit: Some(exit_rx),
            exited: None,
            watcher,
        };
        Ok((server, in_rx))
    }

    /// Queue a message for the server's stdin. `false`: its stdin is closed.
    pub(crate) async fn send(&self, message: &Value) -> bool {
        self.out.send(message.to_string()).await.is_ok()
    }

    /// Wait for the server (the group leader) to exit; a description of how.
    /// Cancel-safe; after it has returned once, it returns at once.
    pub(crate) async fn exited(&mut self) -> String {
        if let Some(how) = &self.exited {
            return how.clone();
        }
        let how = match self.exit.as_mut() {
            Some(rx) => match rx.await {
                Ok(Ok(status)) => describe(status),
                Ok(Err(e)) => format!("cannot wait for it: {e}"),
                Err(_) => "cannot wait for it".to_owned(),
            },
            None => "exited".to_owned(),
        };
        self.exit = None;
        self.exited = Some(how.clone());
        how
    }

    /// Stop the server: close its stdin and SIGTERM its group, SIGKILL the
    /// group after `grace`. Returns how the server exited.
    pub(crate) async fn stop(&mut self, grace: Duration) -> String {
        // Closing stdin is MCP's own shutdown signal for stdio servers.
        let (dead_tx, _) = mpsc::channel(1);
        self.out = dead_tx;
        if self.exited.is_none() {
            let _ = sys::signal_group(self.pid, libc::SIGTERM);
        }
        let how = match tokio::time::timeout(grace, self.exited()).await {
            Ok(how) => how,
            Err(_) => {
                let _ = sys::signal_group(self.pid, libc::SIGKILL);
                match tokio::time::timeout(Duration::from_secs(5), self.exited()).await {
                    Ok(how) => format!("{how} (after SIGKILL)"),
                    Err(_) => "did not exit after SIGKILL".to_owned(),
                }
            }
        };
        self.reap_group();
        how
    }

    /// After the leader has exited: kill what is left of its group (its
    /// own children, the watcher) and reap the watcher.
    pub(crate) fn reap_group(&mut self) {
        let _ = sys::signal_group(self.pid, libc::SIGKILL);
        if let Some((mut child, stdin)) = self.watcher.take() {
            drop(stdin);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Never leave the server behind, whatever path dropped it.
        if self.exited.is_none() {
            let _ = sys::signal_group(self.pid, libc::SIGKILL);
        }
        self.reap_group();
    }
}

/// `/bin/sh` in the server's group, blocked reading a pipe only the bridge
/// writes to: at end of file (the bridge is gone) it kills the group.
fn spawn_watcher(pgid: u32) -> io::Result<(Child, std::process::ChildStdin)> {
    let script = format!("read _ ; kill -9 -{pgid}");
    let make = |group: u32| {
        let mut cmd = Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(&script)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(group as i32);
        cmd.spawn()
    };
    // In the server's group, so a signal to the group reaches it too; in its
    // own group if the server is already gone.
    let mut child = make(pgid).or_else(|_| make(0))?;
    let stdin = child
        .stdin
        .take()
        .ok_or_else(|| io::Error::other("no pipe to the watcher"))?;
    Ok((child, stdin))
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "exited".to_owned(),
    }
}

type Pipe = AsyncFd<OwnedFd>;

fn pipe(fd: OwnedFd) -> io::Result<Pipe> {
    sys::set_nonblocking(&fd)?;
    sys::async_fd(fd)
}

async fn read_some(fd: &Pipe, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.try_io(|f| sys::read_fd(f.get_ref(), buf)) {
            Ok(r) => return r,
            Err(_would_block) => continue,
        }
    }
}

async fn write_all(fd: &Pipe, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        let mut guard = fd.writable().await?;
        match guard.try_io(|f| sys::write_fd(f.get_ref(), bytes)) {
            Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => continue,
        }
    }
    Ok(())
}

async fn write_lines(fd: Pipe, mut rx: mpsc::Receiver<String>) {
    while let Some(mut line) = rx.recv().await {
        line.push('\n');
        if write_all(&fd, line.as_bytes()).await.is_err() {
            // The server closed its stdin (or died): its exit is reported elsewhere.
            break;
        }
    }
    // Dropping the descriptor closes the server's stdin.
}

/// Splits a byte stream into lines of at most `max` bytes; longer ones are
/// reported by length and not kept.
pub(crate) struct Lines {
    max: usize,
    buf: Vec<u8>,
    /// Bytes of the current line thrown away (it is over `max`).
    skipped: Option<usize>,
}

/// One line from [`Lines`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    Full(Vec<u8>),
    TooLong(usize),
}

impl Lines {
    pub(crate) fn new(max: usize) -> Lines {
        Lines {
            max,
            buf: Vec::new(),
            skipped: None,
        }
    }

    /// Feed bytes; complete lines (without the newline) go to `out`.
    pub(crate) fn feed(&mut self, mut data: &[u8], out: &mut Vec<Line>) {
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n');
            let (chunk, rest) = match nl {
                Some(i) => (&data[..i], Some(&data[i + 1..])),
                None => (data, None),
            };
            match &mut self.skipped {
                Some(n) => *n += chunk.len(),
                None if self.buf.len() + chunk.len() > self.max => {
                    self.skipped = Some(self.buf.len() + chunk.len());
                    self.buf = Vec::new();
                }
                None => self.buf.extend_from_slice(chunk),
            }
            match rest {
                Some(rest) => {
                    out.push(match self.skipped.take() {
                        Some(n) => Line::TooLong(n),
                        None => Line::Full(std::mem::take(&mut self.buf)),
                    });
                    data = rest;
                }
                None => break,
            }
        }
    }

    /// At end of input: the last line if it had no newline.
    pub(crate) fn finish(&mut self) -> Option<Line> {
        match self.skipped.take() {
            Some(n) => Some(Line::TooLong(n)),
            None if !self.buf.is_empty() => Some(Line::Full(std::mem::take(&mut self.buf))),
            None => None,
        }
    }
}

/// Read once from `fd` into `lines`: the lines completed go to `out`. `false`
/// at the end of input (or on an error), the last line then included even
/// without its newline.
async fn read_lines(fd: &Pipe, lines: &mut Lines, buf: &mut [u8], out: &mut Vec<Line>) -> bool {
    let n = read_some(fd, buf).await.unwrap_or(0);
    if n == 0 {
        out.extend(lines.finish());
    } else {
        lines.feed(&buf[..n], out);
    }
    n != 0
}

async fn read_messages(fd: Pipe, tx: mpsc::Sender<Incoming>) {
    let mut lines = Lines::new(MAX_LINE);
    let mut buf = vec![0u8; 64 << 10];
    let mut done = Vec::new();
    loop {
        let more = read_lines(&fd, &mut lines, &mut buf, &mut done).await;
        for line in done.drain(..) {
            let msg = match line {
                Line::TooLong(len) => Incoming::Oversized(len),
                Line::Full(bytes) => {
                    let text = bytes.strip_suffix(b"\r").unwrap_or(&bytes);
                    if text.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    match serde_json::from_slice::<Value>(text) {
                        Ok(v) => Incoming::Message(v),
                        Err(_) => {
                            let cut = &text[..text.len().min(200)];
                            Incoming::Invalid(String::from_utf8_lossy(cut).into_owned())
                        }
                    }
                }
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
        if !more {
            return;
        }
    }
}

async fn copy_stderr(fd: Pipe, prefix: String) {
    let mut lines = Lines::new(MAX_STDERR_LINE);
    let mut buf = vec![0u8; 16 << 10];
    let mut done = Vec::new();
    loop {
        let more = read_lines(&fd, &mut lines, &mut buf, &mut done).await;
        if !done.is_empty() {
            let mut err = io::stderr().lock();
            for line in done.drain(..) {
                let _ = match line {
                    Line::Full(bytes) => writeln!(
                        err,
                        "{prefix}{}",
                        String::from_utf8_lossy(bytes.strip_suffix(b"\r").unwrap_or(&bytes))
                    ),
                    Line::TooLong(len) => {
                        writeln!(err, "{prefix}[a {len}-byte line, not shown]")
                    }
                };
            }
        }
        if !more {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(max: usize, chunks: &[&[u8]]) -> Vec<Line> {
        let mut l = Lines::new(max);
        let mut out = Vec::new();
        for c in chunks {
            l.feed(c, &mut out);
        }
        out.extend(l.finish());
        out
    }

    #[test]
    fn lines_split_across_chunks() {
        assert_eq!(
            lines(10, &[b"ab", b"c\nde\n", b"f"]),
            vec![
                Line::Full(b"abc".to_vec()),
                Line::Full(b"de".to_vec()),
                Line::Full(b"f".to_vec())
            ]
        );
    }

    #[test]
    fn a_line_over_the_limit_is_dropped_and_the_next_kept() {
        assert_eq!(
            lines(4, &[b"abc", b"defg", b"hi\nok\n"]),
            vec![Line::TooLong(9), Line::Full(b"ok".to_vec())]
        );
        assert_eq!(lines(4, &[b"abcd\n"]), vec![Line::Full(b"abcd".to_vec())]);
        assert_eq!(lines(4, &[b"abcde"]), vec![Line::TooLong(5)]);
    }
}
