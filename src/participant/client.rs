//! `mew client connect`: a participant fed by a FIFO or stdin.
//!
//! Input: JSON objects, one per line, from `--fifo-in` or stdin; each is
//! sent as it is (the gateway fills in `protocol`, `id`, `ts`, `from`). A
//! line that is not a JSON object is reported on stderr with its number and
//! not sent. Lines read before the connection is up wait in the link's
//! queue ([`super::Link`]), so nothing sent early is lost.
//!
//! The input FIFO is opened read-write: the client is then a writer of its
//! own FIFO, so the FIFO never reports end-of-file when a writer (`echo …
//! > fifo`) closes it, and opening never blocks. No `tail -F` process.
//!
//! Output: every frame received (the welcome included), one line each, to
//! `--output-file` (appended; created 0600), `--fifo-out`, or stdout. The
//! output FIFO is opened and written by its own thread: opening a FIFO for
//! writing blocks until a reader opens it, and that must not stop the
//! client. While it has no reader, up to [`FIFO_OUT_QUEUE`] lines wait;
//! past that new lines are dropped and counted (stderr says how many),
//! which keeps memory bounded and the connection read (a client that stops
//! reading is disconnected by the gateway as too slow). A reader that goes
//! away is waited for again; the line being written is kept for the next.
//!
//! Status lines (connecting, connected, disconnected, reconnecting) go to
//! stderr, the token never. The client reconnects for as long as it runs (a
//! FIFO participant outlives a gateway restart); a refused join, a kick or
//! being replaced by another connection of the participant ends it with
//! code 1. SIGTERM and SIGINT close the connection (after what is queued,
//! for up to [`CLOSE_GRACE`]) and exit 0. On stdin, `quit` or end of input
//! sends what is queued, closes and exits 0.

use std::borrow::Cow;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{
    DirBuilderExt as _, FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _,
};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::Value;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::{Link, LinkEnd, LinkEvent, LinkSender, Reconnect, Target};
use crate::cli::ClientConnectArgs;
use crate::cmd::{Error, Outcome, USAGE};
use crate::config::escape;

/// The longest input line sent (the gateway's own frame limit).
pub(crate) const MAX_LINE: usize = 4 << 20;
/// Output lines kept while `--fifo-out` has no reader.
pub(crate) const FIFO_OUT_QUEUE: usize = 4096;
/// How long closing (sending what is queued) may take after SIGTERM/SIGINT.
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(3);

const WHO: &str = "mew client";

/// `mew client connect`; a failure to start is `mew client: <why>` (the
/// session's own ending is its log's last line).
pub fn run(args: ClientConnectArgs) -> Outcome {
    check_url(&args.gateway).map_err(|e| Error::said(WHO, USAGE, format!("--gateway: {e}")))?;
    let Some(token) = super::token_from(args.token.as_deref(), args.participant_id.as_deref())
    else {
        let env = args
            .participant_id
            .as_deref()
            .map(|p| format!(", $MEW_TOKEN or ${}", crate::config::token_env_name(p)))
            .unwrap_or_else(|| ", or $MEW_TOKEN".to_owned());
        return Err(Error::said(
            WHO,
            USAGE,
            format!("no token: give --token{env}"),
        ));
    };
    let (input, source): (Box<dyn Read + Send>, String) = match &args.fifo_in {
        Some(path) => match open_fifo_in(path) {
            Ok(f) => (Box::new(f), shown(path)),
            Err(e) => return Err(Error::said(WHO, 1, format!("--fifo-in: {e}"))),
        },
        None => (Box::new(io::stdin()), "stdin".to_owned()),
    };
    let from_stdin = args.fifo_in.is_none();
    let output = match (&args.output_file, &args.fifo_out) {
        (Some(path), _) => match open_output_file(path) {
            Ok(file) => Output::File {
                file,
                path: path.clone(),
                failing: false,
            },
            Err(e) => {
                return Err(Error::said(
                    WHO,
                    1,
                    format!("--output-file {}: {e}", shown(path)),
                ));
            }
        },
        (None, Some(path)) => {
            make_fifo(path).map_err(|e| Error::said(WHO, 1, format!("--fifo-out: {e}")))?;
            Output::Fifo(FifoOut::start(path.clone()))
        }
        (None, None) => Output::Stdout {
            terminal: io::IsTerminal::is_terminal(&io::stdout()),
        },
    };
    let target = Target {
        url: args.gateway.clone(),
        space: args.space.clone(),
        participant_id: args.participant_id.clone(),
        token,
    };
    let rt = super::command_runtime(WHO)?;
    if from_stdin && io::IsTerminal::is_terminal(&io::stdin()) {
        say(&format!(
            "{WHO}: type JSON envelopes, one per line (e.g. {{\"kind\":\"chat\",\"payload\":{{\"text\":\"hi\"}}}}); `quit` or Ctrl-D ends"
        ));
    }
    let code = rt.block_on(async move {
        let (tx, rx) = mpsc::channel(64);
        spawn_reader(input, tx);
        session(target, rx, source, from_stdin, output).await
    });
    // The stdin or FIFO reader thread may still be blocked in `read`.
    rt.shutdown_background();
    Ok(code)
}

/// `ws://…` only: this build has no TLS (use a TLS-terminating proxy for `wss://`).
pub(crate) fn check_url(url: &str) -> Result<(), String> {
    let shown = escape(url);
    if let Some(rest) = url.strip_prefix("ws://") {
        if rest.is_empty() || rest.starts_with('/') {
            return Err(format!("{shown} names no host"));
        }
        return Ok(());
    }
    if url.starts_with("wss://") {
        return Err(format!(
            "{shown}: wss:// is not supported (mew has no TLS client); use ws:// to a local gateway or a TLS-terminating proxy"
        ));
    }
    if let Some(rest) = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
    {
        return Err(format!(
            "{shown} is not a WebSocket URL (did you mean ws://{}?)",
            escape(rest)
        ));
    }
    Err(format!(
        "{shown} is not a WebSocket URL (expected ws://HOST:PORT)"
    ))
}

/// A path for a message, with control characters escaped.
pub(crate) fn shown(p: &Path) -> String {
    escape(&p.display().to_string()).into_owned()
}

/// Write a line to stderr; a closed stderr is not an error worth dying for.
/// Say where `who` connects, then start a link that reconnects for as long
/// as the command runs (`client connect`, `space connect`).
pub(crate) fn connect_announced(who: &str, target: Target) -> Link {
    say(&format!(
        "{who}: connecting to {} (space {})",
        escape(&target.url),
        escape(&target.space)
    ));
    Link::start(
        target,
        Reconnect {
            enabled: true,
            max_attempts: None,
        },
    )
}

pub(crate) fn say(line: &str) {
    // One write for the line and its newline: stderr is unbuffered, and a
    // process sharing the terminal (the agent that runs this client) must
    // not get its output between the two.
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let _ = io::stderr().lock().write_all(text.as_bytes());
}

// ---------------------------------------------------------------------------
// FIFOs
// ---------------------------------------------------------------------------

/// Make sure `path` is a FIFO of this user: create it (mode 0600, missing
/// parent directories 0700) when it does not exist; accept an existing FIFO
/// of this user; refuse anything else (a symbolic link, even to a FIFO, a
/// regular file, a FIFO of another user).
pub fn make_fifo(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(md) => return check_fifo(path, &md),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", shown(path)))),
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create {}: {e}", shown(parent)))
            })?;
    }
    let mode = nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR;
    match nix::unistd::mkfifo(path, mode) {
        Ok(()) => Ok(()),
        // Made meanwhile by someone else: check theirs.
        Err(nix::errno::Errno::EEXIST) => check_fifo(path, &fs::symlink_metadata(path)?),
        Err(e) => Err(io::Error::new(
            io::Error::from(e).kind(),
            format!("cannot make the FIFO {}: {e}", shown(path)),
        )),
    }
}

fn check_fifo(path: &Path, md: &fs::Metadata) -> io::Result<()> {
    let ft = md.file_type();
    let what = if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_fifo() {
        if md.uid() != crate::sys::uid() {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("{} is a FIFO of another user: refusing it", shown(path)),
            ));
        }
        return Ok(());
    } else if ft.is_file() {
        "a regular file"
    } else if ft.is_dir() {
        "a directory"
    } else {
        "not a FIFO"
    };
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!(
            "{} exists and is {what}, not a FIFO: refusing it",
            shown(path)
        ),
    ))
}

/// Open the input FIFO read-write (see the module docs), never through a
/// symbolic link; made first if missing.
fn open_fifo_in(path: &Path) -> io::Result<File> {
    make_fifo(path)?;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot open {}: {e}", shown(path))))?;
    // Replaced between the check and the open?
    check_fifo(path, &f.metadata()?)?;
    Ok(f)
}

/// Open (or create, 0600, parent directories 0700) the output file for
/// appending, never through a symbolic link, a regular file only.
fn open_output_file(path: &Path) -> io::Result<File> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
    }
    let f = OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        // Non-blocking: a FIFO in its place cannot hang the open.
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    if !f.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file (for a FIFO, use --fifo-out)",
        ));
    }
    Ok(f)
}

// ---------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------

/// What the reader thread reads.
#[derive(Debug)]
pub(crate) enum In {
    Line(Vec<u8>),
    /// A line longer than [`MAX_LINE`] (dropped).
    TooLong,
    End,
    Failed(io::Error),
}

/// Read lines from `input` on a thread of its own (reads block), each sent
/// to `tx` (waiting while the channel is full).
pub(crate) fn spawn_reader(input: Box<dyn Read + Send>, tx: mpsc::Sender<In>) {
    let spawned = std::thread::Builder::new()
        .name("mew-input".into())
        .spawn(move || {
            let r = read_lines(BufReader::new(input), MAX_LINE, |item| {
                tx.blocking_send(item).is_ok()
            });
            let last = match r {
                Ok(()) => In::End,
                Err(e) => In::Failed(e),
            };
            let _ = tx.blocking_send(last);
        });
    if let Err(e) = spawned {
        say(&format!("{WHO}: cannot start the input reader: {e}"));
    }
}

/// Split `r` into lines (without the `\n`), at most `max` bytes each (a
/// longer one is reported as [`In::TooLong`] and skipped). `emit` returning
/// false stops. A last line without a newline counts.
pub(crate) fn read_lines(
    mut r: impl BufRead,
    max: usize,
    mut emit: impl FnMut(In) -> bool,
) -> io::Result<()> {
    let mut line = Vec::new();
    let mut too_long = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            if too_long {
                emit(In::TooLong);
            } else if !line.is_empty() {
                emit(In::Line(line));
            }
            return Ok(());
        }
        let (take, ends) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            line.extend_from_slice(&chunk[..take]);
            if line.len() > max {
                too_long = true;
                line = Vec::new();
            }
        }
        r.consume(if ends { take + 1 } else { take });
        if ends {
            let item = if too_long {
                In::TooLong
            } else {
                In::Line(std::mem::take(&mut line))
            };
            too_long = false;
            if !emit(item) {
                return Ok(());
            }
        }
    }
}

/// What one input line is.
#[derive(Debug, PartialEq)]
pub(crate) enum Parsed {
    /// Blank: ignored.
    Blank,
    /// A JSON object: its text (trimmed), to send as it is.
    Object(String),
    /// Not sendable; why.
    Bad(String),
}

/// Check one input line: a JSON object, or why not.
pub(crate) fn parse_line(bytes: &[u8]) -> Parsed {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Parsed::Bad("not UTF-8".to_owned());
    };
    let t = text.trim();
    if t.is_empty() {
        return Parsed::Blank;
    }
    match serde_json::from_str::<Value>(t) {
        Ok(Value::Object(_)) => Parsed::Object(t.to_owned()),
        Ok(other) => Parsed::Bad(format!(
            "not a JSON object (a JSON {})",
            match other {
                Value::Array(_) => "array",
                Value::String(_) => "string",
                Value::Number(_) => "number",
                Value::Bool(_) => "boolean",
                _ => "null",
            }
        )),
        Err(e) => Parsed::Bad(format!("not JSON ({e})")),
    }
}

/// Send every input line that is a JSON object; report the others. On the
/// end of input (or `quit` on stdin), close the link after what is queued.
async fn feed(mut rx: mpsc::Receiver<In>, sender: LinkSender, source: String, from_stdin: bool) {
    let mut n: u64 = 0;
    let mut why = "ended";
    while let Some(item) = rx.recv().await {
        match item {
            In::Line(bytes) => {
                n += 1;
                if from_stdin && bytes.trim_ascii() == b"quit" {
                    why = "said quit";
                    break;
                }
                match parse_line(&bytes) {
                    Parsed::Blank => {}
                    Parsed::Object(text) => {
                        if sender.send_text(text).await.is_err() {
                            return;
                        }
                    }
                    Parsed::Bad(why) => say(&format!("{WHO}: {source} line {n}: {why}: not sent")),
                }
            }
            In::TooLong => {
                n += 1;
                say(&format!(
                    "{WHO}: {source} line {n}: longer than {} MiB: not sent",
                    MAX_LINE >> 20
                ));
            }
            In::End => break,
            In::Failed(e) => {
                say(&format!("{WHO}: cannot read {source}: {e}"));
                break;
            }
        }
    }
    say(&format!(
        "{WHO}: {source} {why}: closing after what is queued"
    ));
    sender.close().await;
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// Characters a terminal could act on: C0 and C1 controls, DEL, and the
/// bidirectional overrides (they reorder what is shown).
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A frame as one output line: a frame with a line break in it is made one
/// line (JSON re-serialised compactly; other text gets `\n`/`\r` escapes).
/// For a terminal, every character of [`needs_escape`] becomes a JSON
/// `\uXXXX` escape (inside a JSON string that is the same text; they cannot
/// occur outside one).
pub(crate) fn frame_line(frame: &str, terminal: bool) -> Cow<'_, str> {
    let mut line: Cow<'_, str> = Cow::Borrowed(frame);
    if frame.contains(['\n', '\r']) {
        line = match serde_json::from_str::<Value>(frame) {
            Ok(v) => Cow::Owned(v.to_string()),
            Err(_) => Cow::Owned(frame.replace('\n', "\\n").replace('\r', "\\r")),
        };
    }
    if terminal && line.chars().any(needs_escape) {
        let mut out = String::with_capacity(line.len() + 16);
        for c in line.chars() {
            if needs_escape(c) {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            } else {
                out.push(c);
            }
        }
        line = Cow::Owned(out);
    }
    line
}

enum Output {
    Stdout {
        terminal: bool,
    },
    File {
        file: File,
        path: PathBuf,
        failing: bool,
    },
    Fifo(FifoOut),
}

impl Output {
    /// Write one frame. `Err`: the output is gone for good (stdout closed).
    fn write(&mut self, frame: &str) -> Result<(), ()> {
        match self {
            Output::Stdout { terminal } => {
                let mut line = frame_line(frame, *terminal).into_owned();
                line.push('\n');
                let mut out = io::stdout().lock();
                match out.write_all(line.as_bytes()).and_then(|()| out.flush()) {
                    Ok(()) => Ok(()),
                    Err(e) => {
                        say(&format!("{WHO}: cannot write to stdout: {e}"));
                        Err(())
                    }
                }
            }
            Output::File {
                file,
                path,
                failing,
            } => {
                let mut line = frame_line(frame, false).into_owned().into_bytes();
                line.push(b'\n');
                match file.write_all(&line) {
                    Ok(()) => {
                        if std::mem::take(failing) {
                            say(&format!("{WHO}: writing to {} again", shown(path)));
                        }
                    }
                    Err(e) => {
                        if !std::mem::replace(failing, true) {
                            say(&format!(
                                "{WHO}: cannot write to {}: {e} (envelopes are lost until it works again)",
                                shown(path)
                            ));
                        }
                    }
                }
                Ok(())
            }
            Output::Fifo(f) => {
                f.push(frame_line(frame, false).into_owned());
                Ok(())
            }
        }
    }
}

/// `--fifo-out`, written by a thread of its own (see the module docs).
struct FifoOut {
    tx: std::sync::mpsc::SyncSender<String>,
    path: PathBuf,
    dropped: u64,
    /// The writer thread has ended (the FIFO cannot be opened).
    dead: Arc<AtomicBool>,
}

impl FifoOut {
    fn start(path: PathBuf) -> FifoOut {
        let (tx, rx) = std::sync::mpsc::sync_channel::<String>(FIFO_OUT_QUEUE);
        let dead = Arc::new(AtomicBool::new(false));
        let (p, d) = (path.clone(), dead.clone());
        let spawned = std::thread::Builder::new()
            .name("mew-fifo-out".into())
            .spawn(move || {
                fifo_writer(&p, &rx);
                d.store(true, Ordering::Relaxed);
            });
        if let Err(e) = spawned {
            say(&format!("{WHO}: cannot start the --fifo-out writer: {e}"));
            dead.store(true, Ordering::Relaxed);
        }
        FifoOut {
            tx,
            path,
            dropped: 0,
            dead,
        }
    }

    fn push(&mut self, line: String) {
        if self.dead.load(Ordering::Relaxed) {
            return;
        }
        match self.tx.try_send(line) {
            Ok(()) => {
                if self.dropped > 0 {
                    say(&format!(
                        "{WHO}: {}: {} envelope(s) were dropped while it had no reader",
                        shown(&self.path),
                        std::mem::take(&mut self.dropped)
                    ));
                }
            }
            Err(_) => {
                if self.dropped == 0 {
                    say(&format!(
                        "{WHO}: {} has no reader and {FIFO_OUT_QUEUE} envelopes wait: dropping new ones until a reader comes",
                        shown(&self.path)
                    ));
                }
                self.dropped += 1;
            }
        }
    }
}

/// Open the FIFO (waiting for a reader), write lines; when the reader goes
/// away, wait for the next and write the line that failed first.
fn fifo_writer(path: &Path, rx: &std::sync::mpsc::Receiver<String>) {
    let mut pending: Option<String> = None;
    let mut waited = false;
    loop {
        // Blocks until a reader opens the FIFO.
        let opened = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .and_then(|f| {
                check_fifo(path, &f.metadata()?)?;
                Ok(f)
            });
        let mut f = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                say(&format!(
                    "{WHO}: cannot open {}: {e}; no more output",
                    shown(path)
                ));
                return;
            }
        };
        if waited {
            say(&format!("{WHO}: {} has a reader again", shown(path)));
        }
        loop {
            let line = match pending.take() {
                Some(l) => l,
                None => match rx.recv() {
                    Ok(l) => l,
                    Err(_) => return,
                },
            };
            let mut bytes = line.into_bytes();
            bytes.push(b'\n');
            if let Err(e) = f.write_all(&bytes) {
                bytes.pop();
                pending = String::from_utf8(bytes).ok();
                if e.kind() != io::ErrorKind::BrokenPipe {
                    say(&format!("{WHO}: cannot write to {}: {e}", shown(path)));
                }
                say(&format!(
                    "{WHO}: {} lost its reader; waiting for the next",
                    shown(path)
                ));
                waited = true;
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The session
// ---------------------------------------------------------------------------

async fn session(
    target: Target,
    rx: mpsc::Receiver<In>,
    source: String,
    from_stdin: bool,
    mut output: Output,
) -> ExitCode {
    // A write to --fifo-out whose reader left must fail with EPIPE, not
    // kill the client: tokio's handler replaces SIGPIPE's default action.
    let _sigpipe = match &output {
        Output::Fifo(_) => signal(SignalKind::pipe()).ok(),
        _ => None,
    };
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let url = escape(&target.url).into_owned();
    let space = escape(&target.space).into_owned();
    let mut link = connect_announced(WHO, target);
    let sender = link.sender();
    tokio::spawn(feed(rx, sender.clone(), source, from_stdin));
    let mut closing: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            ev = link.next() => match ev {
                Some(LinkEvent::Connected { welcome }) => {
                    let you = welcome
                        .pointer("/payload/you/id")
                        .and_then(Value::as_str)
                        .unwrap_or("?");
                    say(&format!("{WHO}: connected to {url} as {} (space {space})", escape(you)));
                    if output.write(&welcome.to_string()).is_err() {
                        break;
                    }
                }
                Some(LinkEvent::Frame(text)) => {
                    if output.write(&text).is_err() {
                        break;
                    }
                }
                Some(LinkEvent::Disconnected { reason, retrying }) => {
                    let then = if retrying { "; reconnecting" } else { "" };
                    say(&format!("{WHO}: disconnected: {}{then}", escape(&reason)));
                }
                None => break,
            },
            Some(()) = recv(&mut term) => {
                if !begin_close(&sender, &mut closing, "SIGTERM") {
                    return ExitCode::SUCCESS;
                }
            }
            Some(()) = recv(&mut int) => {
                if !begin_close(&sender, &mut closing, "SIGINT") {
                    return ExitCode::SUCCESS;
                }
            }
            () = wait_until(closing) => {
                say(&format!("{WHO}: closing took longer than {}s; exiting", CLOSE_GRACE.as_secs()));
                return ExitCode::SUCCESS;
            }
        }
    }
    match link.end() {
        Some(LinkEnd::Refused(why) | LinkEnd::GaveUp(why)) => {
            say(&format!("{WHO}: {}", escape(why)));
            ExitCode::FAILURE
        }
        _ => {
            say(&format!("{WHO}: closed"));
            ExitCode::SUCCESS
        }
    }
}

/// Start closing on a signal; false on a second signal (exit now).
pub(crate) fn begin_close(
    sender: &LinkSender,
    closing: &mut Option<tokio::time::Instant>,
    what: &str,
) -> bool {
    if closing.is_some() {
        return false;
    }
    say(&format!("{WHO}: {what}: closing"));
    *closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
    let s = sender.clone();
    // `close` waits while the queue is full: not in the event loop.
    tokio::spawn(async move { s.close().await });
    true
}

pub(crate) async fn recv(sig: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
    match sig {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

pub(crate) async fn wait_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut out = Vec::new();
        read_lines(input, max, |i| {
            out.push(match i {
                In::Line(l) => String::from_utf8(l).unwrap(),
                In::TooLong => "<long>".into(),
                other => format!("{other:?}"),
            });
            true
        })
        .unwrap();
        out
    }

    #[test]
    fn lines_are_split_capped_and_the_last_counts() {
        assert_eq!(lines(b"a\nbb\n\nc", 10), ["a", "bb", "", "c"]);
        assert_eq!(
            lines(b"short\n0123456789abc\nok\n", 10),
            ["short", "<long>", "ok"]
        );
        assert_eq!(lines(b"0123456789abc", 10), ["<long>"]);
        assert!(lines(b"", 10).is_empty());
    }

    #[test]
    fn only_json_objects_are_sent() {
        assert_eq!(
            parse_line(b"  {\"kind\":\"chat\"}\r"),
            Parsed::Object("{\"kind\":\"chat\"}".into())
        );
        assert_eq!(parse_line(b"   "), Parsed::Blank);
        assert!(matches!(parse_line(b"[1]"), Parsed::Bad(w) if w.contains("array")));
        assert!(matches!(parse_line(b"hello"), Parsed::Bad(w) if w.contains("not JSON")));
        assert!(matches!(parse_line(b"\xff{}"), Parsed::Bad(w) if w.contains("UTF-8")));
    }

    #[test]
    fn frames_become_one_safe_line() {
        assert_eq!(frame_line("{\"a\":1}", true), "{\"a\":1}");
        assert_eq!(frame_line("{\"a\":\n 1}", false), "{\"a\":1}");
        assert_eq!(frame_line("#s#x\ny", false), "#s#x\\ny");
        assert_eq!(
            frame_line("{\"t\":\"\u{9b}31m\u{202e}\"}", true),
            "{\"t\":\"\\u009b31m\\u202e\"}"
        );
        let v: Value = serde_json::from_str(&frame_line("{\"t\":\"\u{9b}x\"}", true)).unwrap();
        assert_eq!(v["t"], "\u{9b}x");
        assert_eq!(
            frame_line("{\"t\":\"\u{9b}\"}", false),
            "{\"t\":\"\u{9b}\"}"
        );
    }

    #[test]
    fn urls_must_be_ws() {
        assert!(check_url("ws://127.0.0.1:8080").is_ok());
        assert!(check_url("ws://").is_err());
        assert!(check_url("wss://x").unwrap_err().contains("not supported"));
        assert!(check_url("http://x:1").unwrap_err().contains("ws://x:1"));
        assert!(check_url("x:1").is_err());
    }

    #[test]
    fn make_fifo_creates_accepts_and_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("sub/deeper/a-in");
        make_fifo(&f).unwrap();
        let md = fs::symlink_metadata(&f).unwrap();
        assert!(md.file_type().is_fifo());
        assert_eq!(md.mode() & 0o777, 0o600);
        assert_eq!(
            fs::metadata(dir.path().join("sub")).unwrap().mode() & 0o777,
            0o700
        );
        make_fifo(&f).unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        assert!(
            make_fifo(&file)
                .unwrap_err()
                .to_string()
                .contains("regular file")
        );
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        assert!(
            make_fifo(&link)
                .unwrap_err()
                .to_string()
                .contains("symbolic link")
        );
    }
}
