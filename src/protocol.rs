//! Frames and messages spoken over the space socket.
//!
//! # Framing
//!
//! Every frame is a 5-byte header followed by a payload:
//!
//! ```text
//! +----------------------+---------+---------------------+
//! | len: u32 big-endian  | kind:u8 | payload (len bytes) |
//! +----------------------+---------+---------------------+
//! ```
//!
//! `len` counts the payload only (not the kind byte) and may not exceed
//! [`MAX_FRAME_LEN`]. Kinds:
//!
//! - [`KIND_MSG`] (1): one JSON document, a [`ClientMsg`] or a [`ServerMsg`];
//! - [`KIND_OUTPUT`] (2): raw bytes for an attached client's terminal
//!   (rendered ANSI output).
//!
//! Anything else is an error: the receiver drops the connection and logs the
//! reason. The protocol is versioned through the `hello` exchange
//! ([`PROTOCOL_VERSION`], [`check_hello`]), so an unknown kind is never a
//! "future extension" to skip.
//!
//! # Conversation
//!
//! 1. The client sends [`ClientMsg::Hello`]; the server answers
//!    [`ServerMsg::Hello`] (or [`ServerMsg::Bye`] with the reason, e.g. a
//!    version mismatch, and closes).
//! 2. The client sends [`ClientMsg::Request`]s; each gets exactly one
//!    [`ServerMsg::Response`] with the same `id`.
//! 3. After a `follow` request, the server streams [`ServerMsg::Line`] and
//!    [`ServerMsg::Event`]; after an `attach` request, [`Frame::Output`]
//!    frames, while the client sends [`ClientMsg::Input`],
//!    [`ClientMsg::Resize`] and finally [`ClientMsg::Detach`].
//! 4. A client that falls behind its bounded queue gets a
//!    [`ServerMsg::Resync`] saying how many messages it missed.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::status::{LifecycleEvent, Millis, SpaceStatus};

/// The protocol version; bump it on any incompatible change.
/// 2: terminal input crosses as mew's own [`input::InputEvent`] (was
/// crossterm's serde form).
pub const PROTOCOL_VERSION: u32 = 2;

/// The largest payload a frame may declare (16 MiB).
pub const MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;

/// The largest frame the server reads from a client after the hello
/// (4 MiB). Client messages are small (keys, resizes, requests naming
/// processes); the largest legitimate one is a paste, whose JSON is the
/// pasted text (escaped): 4 MiB holds a paste of some 3.5 MB of text.
pub const MAX_CLIENT_FRAME_LEN: u32 = 4 * 1024 * 1024;

/// The largest hello the server reads (a hello is well under 200 bytes).
pub const MAX_HELLO_LEN: u32 = 4 * 1024;

/// Frames up to this size are read without a [`ReadBudget`]: their cost is
/// bounded by the number of connections.
pub const SMALL_FRAME_LEN: u32 = 64 * 1024;

/// Frame kind: a JSON message.
pub const KIND_MSG: u8 = 1;
/// Frame kind: raw terminal output for an attached client.
pub const KIND_OUTPUT: u8 = 2;

/// The header length: u32 length + u8 kind.
pub const HEADER_LEN: usize = 5;

/// One frame read from or written to the socket.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// A JSON message (decode it with [`Frame::decode`]).
    Msg(serde_json::Value),
    /// Raw output bytes for an attached client.
    Output(Vec<u8>),
}

impl Frame {
    /// A message frame from any serialisable message.
    pub fn msg<T: Serialize>(msg: &T) -> Result<Frame, FrameError> {
        serde_json::to_value(msg)
            .map(Frame::Msg)
            .map_err(|e| FrameError::BadJson(e.to_string()))
    }

    /// Decode a message frame into a typed message. An output frame or a
    /// JSON document of the wrong shape is [`FrameError::BadJson`].
    pub fn decode<T: DeserializeOwned>(self) -> Result<T, FrameError> {
        match self {
            Frame::Msg(v) => {
                serde_json::from_value(v).map_err(|e| FrameError::BadJson(e.to_string()))
            }
            Frame::Output(bytes) => Err(FrameError::BadJson(format!(
                "expected a message, got {} bytes of terminal output",
                bytes.len()
            ))),
        }
    }
}

/// Why a frame could not be read. Every variant means: drop the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge { len: u32, max: u32 },
    /// A frame over the reader's limit was read and thrown away (see
    /// [`ReadLimits::discard_oversized`]): the stream is still in step.
    #[error("a frame of {len} bytes (over the {max}-byte limit) was discarded")]
    Discarded { len: u32, max: u32 },
    #[error("no frame began within {0:?}")]
    Idle(Duration),
    #[error("a frame was not completed within {0:?}")]
    Timeout(Duration),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("malformed message: {0}")]
    BadJson(String),
    #[error("connection closed in the middle of a frame")]
    Truncated,
}

/// Read one frame. `Ok(None)` on a clean end of stream at a frame boundary;
/// an end of stream inside a frame is [`FrameError::Truncated`].
///
/// The declared length is checked before anything is allocated, and the
/// payload buffer grows only as bytes actually arrive, so a peer that
/// declares a large frame and sends little costs little. No time limits:
/// what a client reads from its server. The server reads its clients with
/// [`read_frame_limited`].
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, FrameError> {
    Ok(read_frame_held(r, &ReadLimits::default())
        .await?
        .map(|(f, _)| f))
}

/// Bytes that large frames in progress may hold together, shared by every
/// connection that reads with it. A frame over [`SMALL_FRAME_LEN`] takes
/// its declared length from the budget before its payload is read (waiting
/// at most until the frame's deadline) and gives it back once the frame is
/// decoded, or, with [`read_frame_held`], once the caller drops the
/// [`Held`] part.
#[derive(Clone, Debug)]
pub struct ReadBudget {
    sem: Arc<tokio::sync::Semaphore>,
    total: u32,
}

impl ReadBudget {
    pub fn new(bytes: u32) -> ReadBudget {
        ReadBudget {
            sem: Arc::new(tokio::sync::Semaphore::new(bytes as usize)),
            total: bytes,
        }
    }

    /// Bytes not taken now.
    pub fn available(&self) -> usize {
        self.sem.available_permits()
    }
}

/// A frame's share of a [`ReadBudget`], given back on drop.
#[derive(Debug, Default)]
pub struct Held {
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// What a reader allows its peer.
#[derive(Clone, Debug)]
pub struct ReadLimits {
    /// The largest payload accepted.
    pub max_len: u32,
    /// How long the peer may stay silent before a frame begins (`None`:
    /// for ever): [`FrameError::Idle`].
    pub idle: Option<Duration>,
    /// How long a frame may take from its first byte to its last (`None`:
    /// for ever): [`FrameError::Timeout`].
    pub frame: Option<Duration>,
    /// Large frames take their length from this budget first.
    pub budget: Option<ReadBudget>,
    /// A frame over `max_len` (but within [`MAX_FRAME_LEN`]) is read and
    /// thrown away, without being buffered, and reported as
    /// [`FrameError::Discarded`]; the stream stays usable. Otherwise it
    /// is [`FrameError::TooLarge`], before anything is read.
    pub discard_oversized: bool,
}

impl Default for ReadLimits {
    /// [`MAX_FRAME_LEN`], no time limits, no budget.
    fn default() -> ReadLimits {
        ReadLimits {
            max_len: MAX_FRAME_LEN,
            idle: None,
            frame: None,
            budget: None,
            discard_oversized: false,
        }
    }
}

/// [`read_frame`] within `limits`.
pub async fn read_frame_limited<R: AsyncRead + Unpin>(
    r: &mut R,
    limits: &ReadLimits,
) -> Result<Option<Frame>, FrameError> {
    Ok(read_frame_held(r, limits).await?.map(|(f, _)| f))
}

/// Await `fut` until `deadline` (none: for ever); past it, [`FrameError::Timeout`].
async fn within<F: std::future::Future>(
    deadline: Option<(tokio::time::Instant, Duration)>,
    fut: F,
) -> Result<F::Output, FrameError> {
    match deadline {
        Some((at, limit)) => tokio::time::timeout_at(at, fut)
            .await
            .map_err(|_| FrameError::Timeout(limit)),
        None => Ok(fut.await),
    }
}

/// [`read_frame_limited`], also returning the frame's share of the budget:
/// a caller that queues decoded frames keeps them counted until it drops
/// the [`Held`].
pub async fn read_frame_held<R: AsyncRead + Unpin>(
    r: &mut R,
    limits: &ReadLimits,
) -> Result<Option<(Frame, Held)>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    // Waiting for a frame to begin is idleness, not a slow frame.
    let first = match limits.idle {
        Some(idle) => tokio::time::timeout(idle, r.read(&mut header))
            .await
            .map_err(|_| FrameError::Idle(idle))??,
        None => r.read(&mut header).await?,
    };
    if first == 0 {
        return Ok(None);
    }
    let deadline = limits
        .frame
        .map(|limit| (tokio::time::Instant::now() + limit, limit));
    let mut filled = first;
    while filled < HEADER_LEN {
        let n = within(deadline, r.read(&mut header[filled..])).await??;
        if n == 0 {
            return Err(FrameError::Truncated);
        }
        filled += n;
    }
    let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
    let kind = header[4];
    let max = limits.max_len.min(MAX_FRAME_LEN);
    if len > MAX_FRAME_LEN || (len > max && !limits.discard_oversized) {
        return Err(FrameError::TooLarge { len, max });
    }
    if kind != KIND_MSG && kind != KIND_OUTPUT {
        return Err(FrameError::UnknownKind(kind));
    }
    if len > max {
        let mut left = len as usize;
        let mut sink = vec![0u8; 64 * 1024];
        while left > 0 {
            let want = left.min(sink.len());
            let n = within(deadline, r.read(&mut sink[..want])).await??;
            if n == 0 {
                return Err(FrameError::Truncated);
            }
            left -= n;
        }
        return Err(FrameError::Discarded { len, max });
    }
    let held = match &limits.budget {
        Some(b) if len > SMALL_FRAME_LEN => {
            let take = len.min(b.total);
            let permit = within(deadline, b.sem.clone().acquire_many_owned(take))
                .await?
                .map_err(|_| FrameError::Io(io::Error::other("the read budget is closed")))?;
            Held {
                _permit: Some(permit),
            }
        }
        _ => Held::default(),
    };
    let len = len as usize;
    let mut payload: Vec<u8> = Vec::with_capacity(len.min(SMALL_FRAME_LEN as usize));
    while payload.len() < len {
        if payload.len() == payload.capacity() {
            // Grow by doubling, never past the declared length.
            let grow = payload.capacity().max(4096).min(len - payload.len());
            payload.reserve_exact(grow);
        }
        let left = (len - payload.len()) as u64;
        let n = within(deadline, (&mut *r).take(left).read_buf(&mut payload)).await??;
        if n == 0 {
            return Err(FrameError::Truncated);
        }
    }
    match kind {
        KIND_MSG => serde_json::from_slice(&payload)
            .map(|v| Some((Frame::Msg(v), held)))
            .map_err(|e| FrameError::BadJson(e.to_string())),
        _ => Ok(Some((Frame::Output(payload), held))),
    }
}

/// Write one frame (header and payload in a single buffer, then flush).
/// A payload over [`MAX_FRAME_LEN`] is refused (`InvalidInput`): the peer
/// would drop the connection. Split large output into several frames.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, f: &Frame) -> io::Result<()> {
    match f {
        Frame::Msg(v) => {
            let payload = serde_json::to_vec(v).map_err(io::Error::other)?;
            write_raw(w, KIND_MSG, &payload).await
        }
        Frame::Output(bytes) => write_raw(w, KIND_OUTPUT, bytes).await,
    }
}

/// Serialise a typed message straight into a message frame and write it
/// (no intermediate `serde_json::Value`).
pub async fn write_msg<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let payload = serde_json::to_vec(msg).map_err(io::Error::other)?;
    write_raw(w, KIND_MSG, &payload).await
}

/// Encode a frame into bytes (header + payload), e.g. to queue it for a
/// slow client. Fails on a payload over [`MAX_FRAME_LEN`].
pub fn encode_frame(kind: u8, payload: &[u8]) -> io::Result<Vec<u8>> {
    let len = checked_len(payload)?;
    let mut buf = Vec::with_capacity(HEADER_LEN + payload.len());
    buf.extend_from_slice(&len.to_be_bytes());
    buf.push(kind);
    buf.extend_from_slice(payload);
    Ok(buf)
}

fn checked_len(payload: &[u8]) -> io::Result<u32> {
    match u32::try_from(payload.len()) {
        Ok(len) if len <= MAX_FRAME_LEN => Ok(len),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "frame payload of {} bytes exceeds the {MAX_FRAME_LEN}-byte limit",
                payload.len()
            ),
        )),
    }
}

async fn write_raw<W: AsyncWrite + Unpin>(w: &mut W, kind: u8, payload: &[u8]) -> io::Result<()> {
    let buf = encode_frame(kind, payload)?;
    w.write_all(&buf).await?;
    w.flush().await
}

// ---------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------

/// What a connecting client intends to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// One-shot commands: status, restart, stop, start, down.
    Control,
    /// The TUI: rendered output and input forwarding.
    Attach,
    /// `logs -f`: a stream of lines and events.
    Follow,
}

/// Client → server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// The first message of every connection.
    Hello {
        version: u32,
        mew_version: String,
        client: ClientKind,
    },
    /// A request; the server answers with a [`ServerMsg::Response`] of the same `id`.
    Request { id: u64, req: Request },
    /// A terminal event from an attached client (key, mouse, paste, focus).
    Input { event: input::InputEvent },
    /// The attached client's terminal size changed.
    Resize { cols: u16, rows: u16 },
    /// An explicit detach: the space keeps running.
    Detach,
}

/// What a client asks of the server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// The whole space's status.
    Status,
    /// Restart these processes (empty: all, in dependency order).
    Restart { names: Vec<String> },
    /// Stop these processes (they are not restarted by policy).
    Stop { names: Vec<String> },
    /// Start these (stopped or idle) processes.
    Start { names: Vec<String> },
    /// Stop everything and the server; `timeout_ms` overrides stop timeouts.
    Down {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
    /// Stream output lines (and lifecycle events) of these processes (empty: all).
    Follow {
        names: Vec<String>,
        /// Also send lines from this time on that the server still holds in
        /// memory; `None`: only new lines.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since_ms: Option<Millis>,
    },
    /// Stream the whole status (`ServerMsg::Status`) now and after every
    /// change, until the space is down (`up -d --wait` waits on this).
    Watch,
    /// Become an attached (TUI) client of this size; `owner`: the client
    /// that ran `up` (its disconnect without a detach stops the space).
    Attach {
        cols: u16,
        rows: u16,
        owner: bool,
        /// The client's `NO_COLOR` is set: mew's own chrome goes without colour.
        #[serde(default)]
        no_color: bool,
    },
    /// Load the config again from the files the server started with and
    /// apply what changed (`mew space reload`).
    Reload,
    /// Run `count` copies of process `name` (`mew space scale NAME=N`).
    Scale { name: String, count: u32 },
}

/// A successful response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBody {
    /// The answer to [`Request::Status`].
    Status { status: SpaceStatus },
    /// The processes a restart/stop/start acted on.
    Done { names: Vec<String> },
    /// The request was accepted; what follows is a stream (follow, attach)
    /// or the server going away (down).
    Accepted,
    /// The answer to [`Request::Reload`].
    Reloaded { report: ReloadReport },
    /// The answer to [`Request::Scale`]: the copies started and stopped.
    Scaled {
        started: Vec<String>,
        stopped: Vec<String>,
    },
}

/// What a reload did. With `errors`, nothing was changed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// The new config's errors, as `mew space check` prints them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<String>,
    /// The same errors, one line each (`error: FILE:LINE:COL: message`).
    #[serde(default)]
    pub error_lines: Vec<String>,
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
    /// Restarted with their new spec: (name, what changed).
    #[serde(default)]
    pub restarted: Vec<(String, Vec<String>)>,
    /// Given their new spec without a restart (`watch`, `profiles` …).
    #[serde(default)]
    pub updated: Vec<(String, Vec<String>)>,
    #[serde(default)]
    pub unchanged: usize,
    /// The new config's warnings, one line each.
    #[serde(default)]
    pub warnings: Vec<String>,
    /// What could not be done (a process that could not be added …).
    #[serde(default)]
    pub failed: Vec<String>,
}

impl ReloadReport {
    /// What changed, a line each: `added: x`, `removed: y`, `restarted: z
    /// (command, env.PORT)`, `updated: w (watch)`, `unchanged: n`, then
    /// the failures. Empty lists are left out; `unchanged` always comes.
    pub fn lines(&self) -> Vec<String> {
        fn with_fields(list: &[(String, Vec<String>)]) -> String {
            list.iter()
                .map(|(n, f)| format!("{n} ({})", f.join(", ")))
                .collect::<Vec<_>>()
                .join(", ")
        }
        let mut out = Vec::new();
        if !self.added.is_empty() {
            out.push(format!("added: {}", self.added.join(", ")));
        }
        if !self.removed.is_empty() {
            out.push(format!("removed: {}", self.removed.join(", ")));
        }
        if !self.restarted.is_empty() {
            out.push(format!("restarted: {}", with_fields(&self.restarted)));
        }
        if !self.updated.is_empty() {
            out.push(format!("updated: {}", with_fields(&self.updated)));
        }
        out.push(format!("unchanged: {}", self.unchanged));
        out.extend(self.failed.iter().map(|f| format!("failed: {f}")));
        out
    }

    /// One line for the TUI's footer.
    pub fn summary(&self) -> String {
        match self.error_lines.first() {
            Some(first) if self.error_lines.len() > 1 => format!(
                "reload: nothing changed, {first} (and {} more: see the notes)",
                self.error_lines.len() - 1
            ),
            Some(first) => format!("reload: nothing changed, {first}"),
            None => format!("reloaded: {}", self.lines().join("; ")),
        }
    }
}

/// Server → client.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// The answer to the client's hello.
    Hello {
        version: u32,
        mew_version: String,
        server_pid: u32,
        space_id: String,
    },
    /// The answer to one request. Serialised as `{"ok": …}` or `{"error": "…"}`.
    Response {
        id: u64,
        #[serde(serialize_with = "ser_result", deserialize_with = "de_result")]
        result: Result<ResponseBody, String>,
    },
    /// A lifecycle event (follow and attach streams).
    Event { event: LifecycleEvent },
    /// One output line of a process (follow streams).
    Line {
        process: String,
        at: Millis,
        text: String,
    },
    /// The status, after a change (watch streams).
    Status { status: SpaceStatus },
    /// The client fell behind and `dropped` messages were skipped.
    Resync { dropped: u64 },
    /// The server closes this connection, saying why.
    Bye { reason: String },
    /// The space was stopped from this attached session (a confirmed quit):
    /// the client exits with this code (the `--no-tui` rules).
    Ended { exit_code: i32 },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResultRepr<T> {
    Ok(T),
    Error(String),
}

fn ser_result<S: Serializer>(r: &Result<ResponseBody, String>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Ok(body) => ResultRepr::Ok(body),
        Err(e) => ResultRepr::Error(e.clone()),
    }
    .serialize(s)
}

fn de_result<'de, D: Deserializer<'de>>(d: D) -> Result<Result<ResponseBody, String>, D::Error> {
    Ok(match ResultRepr::<ResponseBody>::deserialize(d)? {
        ResultRepr::Ok(body) => Ok(body),
        ResultRepr::Error(e) => Err(e),
    })
}

/// One side's versions, as exchanged in the hellos.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Versions {
    pub protocol: u32,
    pub mew: String,
}

impl Versions {
    /// This binary's versions.
    pub fn ours() -> Versions {
        Versions {
            protocol: PROTOCOL_VERSION,
            mew: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// Check that a client and a server can talk. Only the protocol version has
/// to match; differing mew versions with the same protocol are fine.
pub fn check_hello(client: &Versions, server: &Versions) -> Result<(), String> {
    if client.protocol == server.protocol {
        return Ok(());
    }
    Err(format!(
        "mew client speaks protocol {} (mew {}) but the server speaks {} (mew {}): \
         restart the space with the same mew binary",
        client.protocol, client.mew, server.protocol, server.mew
    ))
}

/// Terminal input as it crosses the socket: mew's own types, so that the
/// wire form is mew's to version (a crossterm upgrade cannot change it).
/// The client converts crossterm's events at its edge (`From`); the server
/// and the TUI use only these. The serde form is pinned by a test
/// (`input_wire_form_is_pinned`): changing it needs a new
/// [`PROTOCOL_VERSION`](super::PROTOCOL_VERSION).
pub mod input {
    use serde::{Deserialize, Serialize};

    /// One event from the client's terminal.
    #[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum InputEvent {
        Key(KeyEvent),
        Mouse(MouseEvent),
        /// A bracketed paste: the text as pasted.
        Paste(String),
        Resize {
            cols: u16,
            rows: u16,
        },
        FocusGained,
        FocusLost,
    }

    /// A key with its modifiers, and whether it was pressed, repeated or
    /// released.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct KeyEvent {
        pub code: KeyCode,
        #[serde(default, skip_serializing_if = "KeyModifiers::is_empty")]
        pub modifiers: KeyModifiers,
        #[serde(default, skip_serializing_if = "KeyEventKind::is_press")]
        pub kind: KeyEventKind,
    }

    impl KeyEvent {
        /// A key press.
        pub const fn new(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
            KeyEvent {
                code,
                modifiers,
                kind: KeyEventKind::Press,
            }
        }
    }

    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum KeyEventKind {
        #[default]
        Press,
        Repeat,
        Release,
    }

    impl KeyEventKind {
        fn is_press(&self) -> bool {
            *self == KeyEventKind::Press
        }
    }

    /// The keys mew tells apart. Keys it never acts on nor sends to a PTY
    /// (caps lock, media keys, a modifier alone...) are [`KeyCode::Other`].
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum KeyCode {
        Char(char),
        /// F1..F24 (F0 is not a key).
        F(u8),
        Enter,
        Esc,
        Tab,
        BackTab,
        Backspace,
        Delete,
        Insert,
        Up,
        Down,
        Left,
        Right,
        Home,
        End,
        PageUp,
        PageDown,
        Null,
        Other,
    }

    /// Modifier keys as bits (on the wire: the number). The bits are mew's:
    /// shift 1, control 2, alt 4, super 8, hyper 16, meta 32.
    #[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(transparent)]
    pub struct KeyModifiers(u8);

    impl KeyModifiers {
        pub const NONE: KeyModifiers = KeyModifiers(0);
        pub const SHIFT: KeyModifiers = KeyModifiers(1);
        pub const CONTROL: KeyModifiers = KeyModifiers(2);
        pub const ALT: KeyModifiers = KeyModifiers(4);
        pub const SUPER: KeyModifiers = KeyModifiers(8);
        pub const HYPER: KeyModifiers = KeyModifiers(16);
        pub const META: KeyModifiers = KeyModifiers(32);

        pub const fn bits(self) -> u8 {
            self.0
        }
        pub const fn is_empty(&self) -> bool {
            self.0 == 0
        }
        pub const fn contains(self, other: KeyModifiers) -> bool {
            self.0 & other.0 == other.0
        }
        pub fn remove(&mut self, other: KeyModifiers) {
            self.0 &= !other.0;
        }
        pub fn insert(&mut self, other: KeyModifiers) {
            self.0 |= other.0;
        }
        pub const fn union(self, other: KeyModifiers) -> KeyModifiers {
            KeyModifiers(self.0 | other.0)
        }
        pub const fn difference(self, other: KeyModifiers) -> KeyModifiers {
            KeyModifiers(self.0 & !other.0)
        }
    }

    impl std::fmt::Debug for KeyModifiers {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            let names = [
                (KeyModifiers::SHIFT, "SHIFT"),
                (KeyModifiers::CONTROL, "CONTROL"),
                (KeyModifiers::ALT, "ALT"),
                (KeyModifiers::SUPER, "SUPER"),
                (KeyModifiers::HYPER, "HYPER"),
                (KeyModifiers::META, "META"),
            ];
            let on: Vec<&str> = names
                .iter()
                .filter(|(m, _)| self.contains(*m))
                .map(|(_, n)| *n)
                .collect();
            if on.is_empty() {
                f.write_str("NONE")
            } else {
                f.write_str(&on.join(" | "))
            }
        }
    }

    impl std::ops::BitOr for KeyModifiers {
        type Output = KeyModifiers;
        fn bitor(self, rhs: KeyModifiers) -> KeyModifiers {
            KeyModifiers(self.0 | rhs.0)
        }
    }

    impl std::ops::BitOrAssign for KeyModifiers {
        fn bitor_assign(&mut self, rhs: KeyModifiers) {
            self.0 |= rhs.0;
        }
    }

    impl std::ops::BitAnd for KeyModifiers {
        type Output = KeyModifiers;
        fn bitand(self, rhs: KeyModifiers) -> KeyModifiers {
            KeyModifiers(self.0 & rhs.0)
        }
    }

    /// A mouse event at a cell of the client's terminal (0-based).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    pub struct MouseEvent {
        pub kind: MouseEventKind,
        pub column: u16,
        pub row: u16,
        #[serde(default, skip_serializing_if = "KeyModifiers::is_empty")]
        pub modifiers: KeyModifiers,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum MouseEventKind {
        Down(MouseButton),
        Up(MouseButton),
        Drag(MouseButton),
        Moved,
        ScrollDown,
        ScrollUp,
        ScrollLeft,
        ScrollRight,
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum MouseButton {
        Left,
        Right,
        Middle,
    }

    // ----- the client's edge: crossterm → mew ------------------------------

    use crossterm::event as ct;

    impl From<ct::KeyModifiers> for KeyModifiers {
        fn from(m: ct::KeyModifiers) -> KeyModifiers {
            let mut out = KeyModifiers::NONE;
            for (theirs, ours) in [
                (ct::KeyModifiers::SHIFT, KeyModifiers::SHIFT),
                (ct::KeyModifiers::CONTROL, KeyModifiers::CONTROL),
                (ct::KeyModifiers::ALT, KeyModifiers::ALT),
                (ct::KeyModifiers::SUPER, KeyModifiers::SUPER),
                (ct::KeyModifiers::HYPER, KeyModifiers::HYPER),
                (ct::KeyModifiers::META, KeyModifiers::META),
            ] {
                if m.contains(theirs) {
                    out.insert(ours);
                }
            }
            out
        }
    }

    impl From<ct::KeyCode> for KeyCode {
        fn from(c: ct::KeyCode) -> KeyCode {
            use ct::KeyCode as C;
            match c {
                C::Char(c) => KeyCode::Char(c),
                C::F(n) => KeyCode::F(n),
                C::Enter => KeyCode::Enter,
                C::Esc => KeyCode::Esc,
                C::Tab => KeyCode::Tab,
                C::BackTab => KeyCode::BackTab,
                C::Backspace => KeyCode::Backspace,
                C::Delete => KeyCode::Delete,
                C::Insert => KeyCode::Insert,
                C::Up => KeyCode::Up,
                C::Down => KeyCode::Down,
                C::Left => KeyCode::Left,
                C::Right => KeyCode::Right,
                C::Home => KeyCode::Home,
                C::End => KeyCode::End,
                C::PageUp => KeyCode::PageUp,
                C::PageDown => KeyCode::PageDown,
                C::Null => KeyCode::Null,
                _ => KeyCode::Other,
            }
        }
    }

    impl From<ct::KeyEvent> for KeyEvent {
        fn from(k: ct::KeyEvent) -> KeyEvent {
            KeyEvent {
                code: k.code.into(),
                modifiers: k.modifiers.into(),
                kind: match k.kind {
                    ct::KeyEventKind::Press => KeyEventKind::Press,
                    ct::KeyEventKind::Repeat => KeyEventKind::Repeat,
                    ct::KeyEventKind::Release => KeyEventKind::Release,
                },
            }
        }
    }

    impl From<ct::MouseButton> for MouseButton {
        fn from(b: ct::MouseButton) -> MouseButton {
            match b {
                ct::MouseButton::Left => MouseButton::Left,
                ct::MouseButton::Right => MouseButton::Right,
                ct::MouseButton::Middle => MouseButton::Middle,
            }
        }
    }

    impl From<ct::MouseEvent> for MouseEvent {
        fn from(m: ct::MouseEvent) -> MouseEvent {
            use ct::MouseEventKind as K;
            MouseEvent {
                kind: match m.kind {
                    K::Down(b) => MouseEventKind::Down(b.into()),
                    K::Up(b) => MouseEventKind::Up(b.into()),
                    K::Drag(b) => MouseEventKind::Drag(b.into()),
                    K::Moved => MouseEventKind::Moved,
                    K::ScrollDown => MouseEventKind::ScrollDown,
                    K::ScrollUp => MouseEventKind::ScrollUp,
                    K::ScrollLeft => MouseEventKind::ScrollLeft,
                    K::ScrollRight => MouseEventKind::ScrollRight,
                },
                column: m.column,
                row: m.row,
                modifiers: m.modifiers.into(),
            }
        }
    }

    impl From<ct::Event> for InputEvent {
        fn from(e: ct::Event) -> InputEvent {
            match e {
                ct::Event::Key(k) => InputEvent::Key(k.into()),
                ct::Event::Mouse(m) => InputEvent::Mouse(m.into()),
                ct::Event::Paste(t) => InputEvent::Paste(t),
                ct::Event::Resize(cols, rows) => InputEvent::Resize { cols, rows },
                ct::Event::FocusGained => InputEvent::FocusGained,
                ct::Event::FocusLost => InputEvent::FocusLost,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProcKind;
    use crate::protocol::input::{
        InputEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent,
        MouseEventKind,
    };
    use crate::status::{ProcState, ProcessStatus, SpaceInfo};
    use serde_json::json;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    fn read_all(bytes: &[u8]) -> Vec<Result<Option<Frame>, FrameError>> {
        rt().block_on(async {
            let mut r = bytes;
            let mut out = Vec::new();
            loop {
                let res = read_frame(&mut r).await;
                let stop = !matches!(res, Ok(Some(_)));
                out.push(res);
                if stop {
                    return out;
                }
            }
        })
    }

    fn encode(f: &Frame) -> Vec<u8> {
        rt().block_on(async {
            let mut buf = Vec::new();
            write_frame(&mut buf, f).await.unwrap();
            buf
        })
    }

    fn roundtrip_client(m: ClientMsg) {
        let bytes = encode(&Frame::msg(&m).unwrap());
        let mut frames = read_all(&bytes);
        assert!(matches!(frames.pop(), Some(Ok(None))));
        let f = frames.pop().unwrap().unwrap().unwrap();
        assert_eq!(f.decode::<ClientMsg>().unwrap(), m);
    }

    fn roundtrip_server(m: ServerMsg) {
        let mut buf = Vec::new();
        rt().block_on(write_msg(&mut buf, &m)).unwrap();
        let frames = read_all(&buf);
        let f = match &frames[0] {
            Ok(Some(f)) => f.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(f.decode::<ServerMsg>().unwrap(), m);
    }

    #[test]
    fn header_layout() {
        let bytes = encode(&Frame::Output(b"hi".to_vec()));
        assert_eq!(bytes, vec![0, 0, 0, 2, KIND_OUTPUT, b'h', b'i']);
        let bytes = encode(&Frame::Msg(json!({"a": 1})));
        assert_eq!(&bytes[..5], &[0, 0, 0, 7, KIND_MSG]);
        assert_eq!(&bytes[5..], br#"{"a":1}"#);
    }

    #[test]
    fn client_messages_round_trip() {
        roundtrip_client(ClientMsg::Hello {
            version: PROTOCOL_VERSION,
            mew_version: "0.1.0".into(),
            client: ClientKind::Follow,
        });
        for req in [
            Request::Status,
            Request::Restart { names: vec![] },
            Request::Stop {
                names: vec!["a".into(), "b".into()],
            },
            Request::Start {
                names: vec!["a".into()],
            },
            Request::Down {
                timeout_ms: Some(1500),
            },
            Request::Down { timeout_ms: None },
            Request::Follow {
                names: vec![],
                since_ms: Some(42),
            },
            Request::Attach {
                cols: 80,
                rows: 24,
                owner: true,
                no_color: false,
            },
        ] {
            roundtrip_client(ClientMsg::Request { id: 7, req });
        }
        roundtrip_client(ClientMsg::Input {
            event: InputEvent::Key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL)),
        });
        roundtrip_client(ClientMsg::Input {
            event: InputEvent::Paste("a\nb".into()),
        });
        roundtrip_client(ClientMsg::Resize {
            cols: 120,
            rows: 40,
        });
        roundtrip_client(ClientMsg::Detach);
    }

    /// The wire form of terminal input, pinned: if this test fails, the
    /// protocol changed and [`PROTOCOL_VERSION`] must change with it.
    #[test]
    fn input_wire_form_is_pinned() {
        let cases = [
            (
                InputEvent::Key(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL)),
                r#"{"type":"input","event":{"key":{"code":{"char":"q"},"modifiers":2}}}"#,
            ),
            (
                InputEvent::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
                r#"{"type":"input","event":{"key":{"code":"enter"}}}"#,
            ),
            (
                InputEvent::Key(KeyEvent {
                    code: KeyCode::F(5),
                    modifiers: KeyModifiers::SHIFT | KeyModifiers::ALT,
                    kind: KeyEventKind::Release,
                }),
                r#"{"type":"input","event":{"key":{"code":{"f":5},"modifiers":5,"kind":"release"}}}"#,
            ),
            (
                InputEvent::Mouse(MouseEvent {
                    kind: MouseEventKind::Down(MouseButton::Left),
                    column: 3,
                    row: 4,
                    modifiers: KeyModifiers::NONE,
                }),
                r#"{"type":"input","event":{"mouse":{"kind":{"down":"left"},"column":3,"row":4}}}"#,
            ),
            (
                InputEvent::Mouse(MouseEvent {
                    kind: MouseEventKind::ScrollUp,
                    column: 0,
                    row: 0,
                    modifiers: KeyModifiers::CONTROL,
                }),
                r#"{"type":"input","event":{"mouse":{"kind":"scroll_up","column":0,"row":0,"modifiers":2}}}"#,
            ),
            (
                InputEvent::Paste("a\nb".into()),
                r#"{"type":"input","event":{"paste":"a\nb"}}"#,
            ),
            (
                InputEvent::Resize { cols: 80, rows: 24 },
                r#"{"type":"input","event":{"resize":{"cols":80,"rows":24}}}"#,
            ),
            (
                InputEvent::FocusGained,
                r#"{"type":"input","event":"focus_gained"}"#,
            ),
        ];
        for (event, wire) in cases {
            let msg = ClientMsg::Input { event };
            assert_eq!(serde_json::to_string(&msg).unwrap(), wire);
            assert_eq!(serde_json::from_str::<ClientMsg>(wire).unwrap(), msg);
        }
        assert_eq!(PROTOCOL_VERSION, 2, "the wire form above is version 2's");
    }

    #[test]
    fn crossterm_events_convert_at_the_client_edge() {
        use crossterm::event as ct;
        let key = ct::Event::Key(ct::KeyEvent::new(
            ct::KeyCode::Char('b'),
            ct::KeyModifiers::CONTROL | ct::KeyModifiers::SHIFT,
        ));
        assert_eq!(
            InputEvent::from(key),
            InputEvent::Key(KeyEvent::new(
                KeyCode::Char('b'),
                KeyModifiers::CONTROL | KeyModifiers::SHIFT
            ))
        );
        let caps = ct::Event::Key(ct::KeyEvent::new(
            ct::KeyCode::CapsLock,
            ct::KeyModifiers::NONE,
        ));
        assert_eq!(
            InputEvent::from(caps),
            InputEvent::Key(KeyEvent::new(KeyCode::Other, KeyModifiers::NONE))
        );
        let wheel = ct::Event::Mouse(ct::MouseEvent {
            kind: ct::MouseEventKind::Drag(ct::MouseButton::Right),
            column: 7,
            row: 9,
            modifiers: ct::KeyModifiers::ALT,
        });
        assert_eq!(
            InputEvent::from(wheel),
            InputEvent::Mouse(MouseEvent {
                kind: MouseEventKind::Drag(MouseButton::Right),
                column: 7,
                row: 9,
                modifiers: KeyModifiers::ALT,
            })
        );
        assert_eq!(
            InputEvent::from(ct::Event::Resize(100, 30)),
            InputEvent::Resize {
                cols: 100,
                rows: 30
            }
        );
    }

    #[test]
    fn server_messages_round_trip() {
        let status = SpaceStatus {
            space: SpaceInfo {
                id: "demo".into(),
                name: "Demo".into(),
                dir: "/x".into(),
            },
            server_pid: 10,
            gateway_url: Some("ws://127.0.0.1:8080".into()),
            processes: vec![ProcessStatus {
                name: "gw".into(),
                kind: ProcKind::Gateway,
                state: ProcState::Exited { code: 3 },
                pid: Some(12),
                started_at: Some(1000),
                restarts: 2,
                exit_code: Some(3),
                ready: false,
                cpu_percent: Some(1.5),
                rss_bytes: Some(4096),
                command: "sleep 1".into(),
                cwd: "/x".into(),
                history: vec![],
                probe: None,
                one_shot: false,
                healthy: None,
                last_restart_reason: None,
            }],
            participants: vec![],
            logging_degraded: None,
        };
        roundtrip_server(ServerMsg::Hello {
            version: 1,
            mew_version: "0.1.0".into(),
            server_pid: 99,
            space_id: "demo".into(),
        });
        roundtrip_server(ServerMsg::Response {
            id: 1,
            result: Ok(ResponseBody::Status { status }),
        });
        roundtrip_server(ServerMsg::Response {
            id: 2,
            result: Ok(ResponseBody::Done {
                names: vec!["a".into()],
            }),
        });
        roundtrip_server(ServerMsg::Response {
            id: 3,
            result: Ok(ResponseBody::Accepted),
        });
        roundtrip_server(ServerMsg::Response {
            id: 4,
            result: Err("no process \"x\"".into()),
        });
        roundtrip_server(ServerMsg::Event {
            event: LifecycleEvent {
                at: 5,
                process: "a".into(),
                state: ProcState::Ready,
                message: "ready".into(),
            },
        });
        roundtrip_server(ServerMsg::Line {
            process: "a".into(),
            at: 6,
            text: "hello ✓".into(),
        });
        roundtrip_server(ServerMsg::Resync { dropped: 1000 });
        roundtrip_server(ServerMsg::Bye {
            reason: "server stopping".into(),
        });
    }

    #[test]
    fn wire_shapes_are_stable() {
        let v = serde_json::to_value(ClientMsg::Request {
            id: 1,
            req: Request::Restart {
                names: vec!["a".into()],
            },
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"type": "request", "id": 1, "req": {"type": "restart", "names": ["a"]}})
        );
        let v = serde_json::to_value(ServerMsg::Response {
            id: 1,
            result: Err("boom".into()),
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"type": "response", "id": 1, "result": {"error": "boom"}})
        );
        let v = serde_json::to_value(ServerMsg::Response {
            id: 2,
            result: Ok(ResponseBody::Accepted),
        })
        .unwrap();
        assert_eq!(
            v,
            json!({"type": "response", "id": 2, "result": {"ok": {"type": "accepted"}}})
        );
    }

    #[test]
    fn several_frames_then_clean_eof() {
        let mut bytes = encode(&Frame::Output(vec![]));
        bytes.extend(encode(&Frame::Msg(json!([1, 2]))));
        bytes.extend(encode(&Frame::Output(vec![0xff; 100_000])));
        let frames = read_all(&bytes);
        assert_eq!(frames.len(), 4);
        assert!(matches!(&frames[0], Ok(Some(Frame::Output(b))) if b.is_empty()));
        assert!(matches!(&frames[1], Ok(Some(Frame::Msg(v))) if *v == json!([1, 2])));
        assert!(matches!(&frames[2], Ok(Some(Frame::Output(b))) if b.len() == 100_000));
        assert!(matches!(&frames[3], Ok(None)));
    }

    #[test]
    fn empty_stream_is_clean_eof() {
        assert!(matches!(read_all(&[])[0], Ok(None)));
    }

    #[test]
    fn oversized_length_is_refused_before_reading() {
        // Declares 4 GiB - 1 and carries nothing: must fail on the header alone.
        let frames = read_all(&[0xff, 0xff, 0xff, 0xff, KIND_MSG]);
        assert!(matches!(
            frames[0],
            Err(FrameError::TooLarge { len: u32::MAX, .. })
        ));
        let just_over = (MAX_FRAME_LEN + 1).to_be_bytes();
        let frames = read_all(&[
            just_over[0],
            just_over[1],
            just_over[2],
            just_over[3],
            KIND_OUTPUT,
        ]);
        assert!(
            matches!(frames[0], Err(FrameError::TooLarge { len, .. }) if len == MAX_FRAME_LEN + 1)
        );
    }

    #[test]
    fn max_size_frame_is_accepted() {
        let bytes = encode(&Frame::Output(vec![7; MAX_FRAME_LEN as usize]));
        let frames = read_all(&bytes);
        assert!(
            matches!(&frames[0], Ok(Some(Frame::Output(b))) if b.len() == MAX_FRAME_LEN as usize)
        );
    }

    #[test]
    fn writing_an_oversized_frame_fails() {
        let err = rt()
            .block_on(write_frame(
                &mut Vec::new(),
                &Frame::Output(vec![0; MAX_FRAME_LEN as usize + 1]),
            ))
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn truncated_header_and_payload() {
        assert!(matches!(read_all(&[0, 0])[0], Err(FrameError::Truncated)));
        assert!(matches!(
            read_all(&[0, 0, 0, 10])[0],
            Err(FrameError::Truncated)
        ));
        // Declares 16 MiB, sends 3 bytes.
        let len = MAX_FRAME_LEN.to_be_bytes();
        assert!(matches!(
            read_all(&[len[0], len[1], len[2], len[3], KIND_OUTPUT, 1, 2, 3])[0],
            Err(FrameError::Truncated)
        ));
        let mut bytes = encode(&Frame::Msg(json!({"type": "detach"})));
        bytes.pop();
        assert!(matches!(read_all(&bytes)[0], Err(FrameError::Truncated)));
    }

    #[test]
    fn unknown_kinds() {
        for kind in [0u8, 3, 255] {
            assert!(
                matches!(read_all(&[0, 0, 0, 0, kind])[0], Err(FrameError::UnknownKind(k)) if k == kind)
            );
        }
    }

    #[test]
    fn bad_json() {
        let mut bytes = vec![0, 0, 0, 5, KIND_MSG];
        bytes.extend_from_slice(b"{nope");
        assert!(matches!(read_all(&bytes)[0], Err(FrameError::BadJson(_))));
        let empty = [0, 0, 0, 0, KIND_MSG];
        assert!(matches!(read_all(&empty)[0], Err(FrameError::BadJson(_))));
        // Valid JSON, wrong shape: fails at decode.
        let f = Frame::Msg(json!({"type": "launch_missiles"}));
        assert!(matches!(
            f.decode::<ClientMsg>(),
            Err(FrameError::BadJson(_))
        ));
        assert!(matches!(
            Frame::Output(vec![1]).decode::<ClientMsg>(),
            Err(FrameError::BadJson(_))
        ));
    }

    #[test]
    fn garbage_bytes() {
        // ASCII text where a header is expected: "GET / HTTP/1.1" declares ~1.2 GB.
        let frames = read_all(b"GET / HTTP/1.1\r\n\r\n");
        assert!(matches!(frames[0], Err(FrameError::TooLarge { .. })));
        // A small length with an unknown kind.
        let frames = read_all(&[0, 0, 0, 1, 0x7f, 0]);
        assert!(matches!(frames[0], Err(FrameError::UnknownKind(0x7f))));
    }

    #[test]
    fn hello_versions() {
        let ours = Versions::ours();
        assert_eq!(ours.protocol, PROTOCOL_VERSION);
        assert!(check_hello(&ours, &ours).is_ok());
        let newer_mew = Versions {
            protocol: PROTOCOL_VERSION,
            mew: "9.9.9".into(),
        };
        assert!(check_hello(&newer_mew, &ours).is_ok());
        let client = Versions {
            protocol: 2,
            mew: "0.3.0".into(),
        };
        let server = Versions {
            protocol: 1,
            mew: "0.1.0".into(),
        };
        assert_eq!(
            check_hello(&client, &server).unwrap_err(),
            "mew client speaks protocol 2 (mew 0.3.0) but the server speaks 1 (mew 0.1.0): \
             restart the space with the same mew binary"
        );
    }

    fn timed_rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
    }

    fn limits(max_len: u32) -> ReadLimits {
        ReadLimits {
            max_len,
            ..ReadLimits::default()
        }
    }

    fn header(len: u32, kind: u8) -> Vec<u8> {
        let mut h = len.to_be_bytes().to_vec();
        h.push(kind);
        h
    }

    #[test]
    fn a_limited_reader_refuses_frames_over_its_limit_on_the_header() {
        let frames = rt().block_on(async {
            let bytes = header(1025, KIND_MSG);
            read_frame_limited(&mut &bytes[..], &limits(1024)).await
        });
        assert!(matches!(
            frames,
            Err(FrameError::TooLarge {
                len: 1025,
                max: 1024
            })
        ));
        // At the limit: read.
        let bytes = encode(&Frame::Output(vec![1; 1024]));
        let ok = rt().block_on(async { read_frame_limited(&mut &bytes[..], &limits(1024)).await });
        assert!(matches!(ok, Ok(Some(Frame::Output(b))) if b.len() == 1024));
    }

    #[test]
    fn an_oversized_frame_can_be_discarded_and_the_stream_stays_in_step() {
        let mut bytes = encode(&Frame::Output(vec![9; 200_000]));
        bytes.extend(encode(&Frame::Msg(json!({"type": "detach"}))));
        let l = ReadLimits {
            discard_oversized: true,
            ..limits(1024)
        };
        let (first, second) = rt().block_on(async {
            let mut r = &bytes[..];
            let a = read_frame_limited(&mut r, &l).await;
            let b = read_frame_limited(&mut r, &l).await;
            (a, b)
        });
        assert!(matches!(
            first,
            Err(FrameError::Discarded {
                len: 200_000,
                max: 1024
            })
        ));
        assert!(matches!(second, Ok(Some(Frame::Msg(_)))));
        // Beyond the protocol's own limit nothing is read: the stream is lost.
        let huge = rt().block_on(async {
            read_frame_limited(&mut &header(MAX_FRAME_LEN + 1, KIND_MSG)[..], &l).await
        });
        assert!(matches!(huge, Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn silence_before_a_frame_is_idle_and_a_stalled_frame_times_out() {
        timed_rt().block_on(async {
            let (mut a, b) = tokio::io::duplex(1 << 20);
            let l = ReadLimits {
                idle: Some(Duration::from_millis(50)),
                frame: Some(Duration::from_millis(100)),
                ..limits(1 << 20)
            };
            let mut b = b;
            let r = read_frame_limited(&mut b, &l).await;
            assert!(matches!(r, Err(FrameError::Idle(_))), "{r:?}");
            // A frame that begins but does not finish.
            a.write_all(&header(10, KIND_OUTPUT)).await.unwrap();
            a.write_all(b"abc").await.unwrap();
            let r = read_frame_limited(&mut b, &l).await;
            assert!(matches!(r, Err(FrameError::Timeout(_))), "{r:?}");
            // Half a header is a frame begun, too.
            let (mut a, mut b) = tokio::io::duplex(1 << 20);
            a.write_all(&[0, 0]).await.unwrap();
            let r = read_frame_limited(&mut b, &l).await;
            assert!(matches!(r, Err(FrameError::Timeout(_))), "{r:?}");
        });
    }

    #[test]
    fn large_frames_share_a_budget_and_small_ones_do_not_need_it() {
        let big = encode(&Frame::Output(vec![1; 200_000]));
        let small = encode(&Frame::Output(vec![1; 1000]));
        timed_rt().block_on(async {
            let budget = ReadBudget::new(300_000);
            let l = ReadLimits {
                frame: Some(Duration::from_millis(200)),
                budget: Some(budget.clone()),
                ..limits(1 << 20)
            };
            let (f, held) = read_frame_held(&mut &big[..], &l).await.unwrap().unwrap();
            assert!(matches!(f, Frame::Output(ref b) if b.len() == 200_000));
            assert_eq!(budget.available(), 100_000);
            // While the first is held, a second large frame cannot start.
            let r = read_frame_held(&mut &big[..], &l).await;
            assert!(matches!(r, Err(FrameError::Timeout(_))), "{r:?}");
            // A small one can.
            assert!(
                read_frame_held(&mut &small[..], &l)
                    .await
                    .unwrap()
                    .is_some()
            );
            drop(held);
            assert_eq!(budget.available(), 300_000);
            assert!(
                read_frame_limited(&mut &big[..], &l)
                    .await
                    .unwrap()
                    .is_some()
            );
            assert_eq!(budget.available(), 300_000);
        });
    }

    #[test]
    fn a_declared_length_costs_only_what_arrives() {
        timed_rt().block_on(async {
            let (mut a, mut b) = tokio::io::duplex(1 << 16);
            a.write_all(&header(MAX_CLIENT_FRAME_LEN, KIND_OUTPUT))
                .await
                .unwrap();
            a.write_all(&[1; 1000]).await.unwrap();
            drop(a);
            let r = read_frame_limited(&mut b, &limits(MAX_CLIENT_FRAME_LEN)).await;
            assert!(matches!(r, Err(FrameError::Truncated)), "{r:?}");
        });
    }

    proptest::proptest! {
        #[test]
        fn read_frame_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let frames = read_all(&bytes);
            // Every stream ends in exactly one terminal outcome.
            let last = frames.last().unwrap();
            proptest::prop_assert!(!matches!(last, Ok(Some(_))));
        }

        #[test]
        fn near_valid_streams_never_panic(
            parts in proptest::collection::vec(
                (0u8..4, -2i64..3, proptest::collection::vec(proptest::num::u8::ANY, 0..64)),
                0..8,
            ),
        ) {
            // Headers whose declared length is close to the real one, kinds
            // around the valid ones, payloads that are sometimes JSON.
            let mut bytes = Vec::new();
            for (kind, delta, mut payload) in parts {
                if kind == KIND_MSG && delta == 0 {
                    payload = serde_json::to_vec(&payload).unwrap();
                }
                let len = (payload.len() as i64 + delta).max(0) as u32;
                bytes.extend_from_slice(&len.to_be_bytes());
                bytes.push(kind);
                bytes.extend_from_slice(&payload);
            }
            let frames = read_all(&bytes);
            proptest::prop_assert!(!matches!(frames.last().unwrap(), Ok(Some(_))));
        }

        #[test]
        fn small_frames_survive_arbitrary_prefixes(
            payload in proptest::collection::vec(proptest::num::u8::ANY, 0..256),
        ) {
            let bytes = encode(&Frame::Output(payload.clone()));
            let frames = read_all(&bytes);
            proptest::prop_assert!(matches!(&frames[0], Ok(Some(Frame::Output(b))) if *b == payload));
            // Every strict prefix is a clean EOF (empty) or a truncation.
            for cut in 0..bytes.len() {
                let frames = read_all(&bytes[..cut]);
                if cut == 0 {
                    proptest::prop_assert!(matches!(frames[0], Ok(None)));
                } else {
                    proptest::prop_assert!(matches!(frames[0], Err(FrameError::Truncated)));
                }
            }
        }
    }
}
