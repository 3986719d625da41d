//! One attached TUI client, on the server side.
//!
//! The server keeps the only terminal emulators. For each attached client it
//! keeps an [`App`] (selection, focus, mode, scroll, search) and a
//! [`RemoteRenderer`], turns the client's key, mouse, paste and resize events
//! into actions, and sends back only what changed on the client's screen,
//! rendered for its size. Re-attaching therefore shows exactly what is there,
//! alternate screens and scrollback included.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::unix::OwnedReadHalf;
use tokio::sync::mpsc;

use super::{Ctx, Outbox};
use crate::protocol::{self, ClientMsg, Frame, FrameError, Held, ReadLimits, ServerMsg};
use crate::status::SpaceStatus;
use crate::supervisor::Shared;
use crate::tui::{Action, App, PaneSource, RemoteRenderer, osc52_copy};

/// At most one frame per this interval per client (output is coalesced):
/// 30 a second. The emulator catches up once per frame, and what arrives
/// between two frames beyond the scrollback is never emulated, so the frame
/// rate bounds what a flood costs. Keys are not paced.
const FRAME_INTERVAL: Duration = Duration::from_millis(33);
/// While a process on screen floods (a frame's catch-up dropped lines that
/// nobody could have read), its frames come at most 10 a second: the text
/// is unreadable at any rate, and each frame emulates a scrollback's worth.
const FLOOD_INTERVAL: Duration = Duration::from_millis(100);
/// For this long after a key, frames are not paced: the echo of what the
/// user typed is drawn the moment it arrives.
const INTERACTIVE: Duration = Duration::from_millis(100);
/// Redraw at least this often (uptimes, backoff countdowns).
const TICK: Duration = Duration::from_secs(1);

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The client asked to detach: everything keeps running.
    Detached,
    /// The connection went away without a detach.
    Disconnected,
    /// The space was stopped (a quit from this or another client, or `down`).
    SpaceDown,
}

/// The server's processes as the TUI sees them.
pub struct Panes {
    pub status: Arc<SpaceStatus>,
    pub shared: Arc<Shared>,
    pub space: Option<Arc<crate::participant::observer::Observer>>,
}

impl PaneSource for Panes {
    fn status(&self) -> &SpaceStatus {
        &self.status
    }

    fn with_screen(&self, name: &str, offset: usize, f: &mut dyn FnMut(&vt100::Screen)) {
        let Some(p) = self
            .shared
            .index_of(name)
            .and_then(|i| self.shared.procs.get(i))
        else {
            return;
        };
        let mut lazy = p.lock_screen();
        let screen = lazy.screen();
        if offset == 0 {
            f(screen.vt());
        } else {
            screen.set_view_offset(offset);
            f(screen.vt());
            screen.set_view_offset(0);
        }
    }

    fn scrollback_len(&self, name: &str) -> usize {
        match self
            .shared
            .index_of(name)
            .and_then(|i| self.shared.procs.get(i))
        {
            Some(p) => p.lock_screen().screen().scrollback_len(),
            None => 0,
        }
    }

    fn with_space(&self, f: &mut dyn FnMut(&crate::envelopes::SpaceLog)) -> bool {
        match &self.space {
            Some(o) => {
                o.with_log(|log| f(log));
                true
            }
            None => false,
        }
    }
}

pub struct Attach {
    pub cols: u16,
    pub rows: u16,
    pub no_color: bool,
}

/// Serve one attached client until it detaches, disconnects or the space is
/// down. Its frames are read within `limits`: no idle limit (a user may not
/// type for hours), a deadline per frame, and a paste over the size limit is
/// thrown away (and logged) rather than ending the session.
pub async fn run(
    ctx: Arc<Ctx>,
    rd: &mut OwnedReadHalf,
    tx: Outbox,
    att: Attach,
    limits: ReadLimits,
) -> End {
    let mut app = match unpark(&ctx.space_id) {
        Some(mut app) => {
            app.resume();
            app
        }
        None => match App::new(&ctx.ui_keys) {
            Ok(app) => app,
            Err(e) => {
                tx.msg(&ServerMsg::Bye {
                    reason: format!("ui.keys: {e}"),
                })
                .await;
                return End::Disconnected;
            }
        },
    };
    app.set_color(!att.no_color);
    let (cols, rows) = clamp_size(att.cols, att.rows);
    app.set_size(cols, rows);
    app.set_notes(ctx.devloop.notes());
    let end = serve(&ctx, rd, &tx, &mut app, att, limits).await;
    if end != End::SpaceDown && !app.is_quitting() {
        park(&ctx.space_id, app);
    }
    end
}

/// The view of the client that left last, per space, for the next client
/// to attach: re-attaching shows what was there (selection, zoom, grid,
/// scroll positions), as in tmux.
static PARKED: Mutex<BTreeMap<String, App>> = Mutex::new(BTreeMap::new());

fn park(space: &str, app: App) {
    let mut parked = PARKED.lock().unwrap_or_else(|e| e.into_inner());
    parked.insert(space.to_string(), app);
}

fn unpark(space: &str) -> Option<App> {
    let mut parked = PARKED.lock().unwrap_or_else(|e| e.into_inner());
    parked.remove(space)
}

/// A frame read from the client, with its share of the read budget (kept
/// until the frame is handled).
type Incoming = Result<Option<(Frame, Held)>, FrameError>;

async fn serve(
    ctx: &Arc<Ctx>,
    rd: &mut OwnedReadHalf,
    tx: &Outbox,
    app: &mut App,
    att: Attach,
    limits: ReadLimits,
) -> End {
    // Frames are read by their own future and handed over through a channel:
    // `read_frame` is not cancel-safe, so it must never be a `select!` branch
    // that another branch can interrupt mid-frame.
    let (in_tx, in_rx) = mpsc::channel::<Incoming>(64);
    let reader = async move {
        loop {
            let frame = protocol::read_frame_held(rd, &limits).await;
            // A discarded frame leaves the stream in step: read on.
            let last = !matches!(frame, Ok(Some(_)) | Err(FrameError::Discarded { .. }));
            if in_tx.send(frame).await.is_err() || last {
                break;
            }
        }
        std::future::pending::<()>().await;
    };
    tokio::select! {
        end = session_loop(ctx, in_rx, tx, app, att) => end,
        _ = reader => End::Disconnected,
    }
}

async fn session_loop(
    ctx: &Arc<Ctx>,
    mut in_rx: mpsc::Receiver<Incoming>,
    tx: &Outbox,
    app: &mut App,
    att: Attach,
) -> End {
    let (ctx, tx) = (ctx.clone(), tx.clone());
    let handle = ctx.handle.clone();
    let shared = handle.shared.clone();
    let (cols, rows) = clamp_size(att.cols, att.rows);
    let mut renderer = RemoteRenderer::new(cols, rows);
    let mut status_rx = handle.watch_status();
    let mut down_rx = ctx.down_tx.subscribe();
    let mut gone_rx = ctx.gone_tx.subscribe();
    let mut last_seq = u64::MAX;
    // The processes drawn in the last frame, with the output count seen then.
    let mut shown: Vec<(usize, u64)> = Vec::new();
    let mut last_render = Instant::now() - FRAME_INTERVAL;
    let mut last_input = Instant::now() - INTERACTIVE;
    let mut dirty = true;
    let mut flooding = false;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // New envelopes redraw only a client that shows the space view.
    // Someone looks: the space view joins (once, for every client).
    let space = ctx.space.as_ref().map(|p| p.observer());
    let mut space_rx = space.as_ref().map(|o| o.subscribe());
    // The captured output lines (what the log writer gets) for the merged
    // view: kept by the app whether the view is open or not.
    let mut lines_rx = Some(shared.events.subscribe());
    loop {
        if *down_rx.borrow_and_update() && !app.is_quitting() {
            app.quitting();
            dirty = true;
        }
        if *gone_rx.borrow_and_update() {
            // Draw the final state, then let the client go.
            let panes = Panes {
                status: handle.status(),
                shared: shared.clone(),
                space: space.clone(),
            };
            let bytes = renderer.render(app, &panes);
            if !bytes.is_empty() {
                let _ = tx.output(&bytes).await;
            }
            return End::SpaceDown;
        }
        // New output matters only when it belongs to a process on screen.
        let seq = shared.output_seq.load(Ordering::Acquire);
        if seq != last_seq {
            last_seq = seq;
            if shown.iter().any(|&(i, seen)| seq_of(&shared, i) != seen) {
                dirty = true;
            }
        }
        if dirty {
            let wait = if last_input.elapsed() < INTERACTIVE {
                Duration::ZERO
            } else if flooding {
                FLOOD_INTERVAL.saturating_sub(last_render.elapsed())
            } else {
                FRAME_INTERVAL.saturating_sub(last_render.elapsed())
            };
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            last_seq = shared.output_seq.load(Ordering::Acquire);
            let panes = Panes {
                status: status_rx.borrow_and_update().clone(),
                shared: shared.clone(),
                space: space.clone(),
            };
            // The focused process may have ended.
            app.update(&panes);
            for a in app.take_resizes(&panes) {
                apply(&ctx, &tx, app, a).await;
            }
            shown = app
                .desired_sizes(&panes)
                .iter()
                .filter_map(|(name, _, _)| shared.index_of(name))
                .map(|i| (i, seq_of(&shared, i)))
                .collect();
            let bytes = renderer.render(app, &panes);
            flooding = shown.iter().any(|&(i, _)| {
                shared
                    .procs
                    .get(i)
                    .is_some_and(|p| p.lock_screen().flooded())
            });
            // Pace frames by what was sent: an unchanged frame (a key that
            // changes nothing on screen) must not delay the echo after it.
            if !bytes.is_empty() {
                last_render = Instant::now();
            }
            dirty = false;
            if !bytes.is_empty() && !tx.output(&bytes).await {
                return End::Disconnected;
            }
        }
        // Register for output before checking the counter, so no chunk is missed.
        let notified = shared.output.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let more_output = shared.output_seq.load(Ordering::Acquire) != last_seq;
        tokio::select! {
            // Input first: a flood of output never delays a key.
            biased;
            frame = in_rx.recv() => {
                // The budget share is given back once the message is handled.
                let (msg, _held) = match frame {
                    Some(Ok(Some((f, held)))) => (f.decode::<ClientMsg>(), held),
                    Some(Ok(None)) | None => return End::Disconnected,
                    Some(Err(e @ FrameError::Discarded { .. })) => {
                        tracing::warn!("attached client: {e} (a paste too large to take?)");
                        continue;
                    }
                    Some(Err(e)) => {
                        tracing::warn!("dropped an attached client: {e}");
                        return End::Disconnected;
                    }
                };
                match msg {
                    Ok(ClientMsg::Input { event }) => {
                        last_input = Instant::now();
                        let panes = Panes { status: handle.status(), shared: shared.clone(), space: space.clone() };
                        let actions = app.handle_event(event, &panes);
                        for a in actions {
                            if let Some(end) = apply(&ctx, &tx, app, a).await {
                                return end;
                            }
                        }
                        dirty = true;
                    }
                    Ok(ClientMsg::Resize { cols, rows }) => {
                        let (cols, rows) = clamp_size(cols, rows);
                        app.set_size(cols, rows);
                        renderer.resize(cols, rows);
                        dirty = true;
                    }
                    Ok(ClientMsg::Detach) => return End::Detached,
                    Ok(ClientMsg::Hello { .. }) | Ok(ClientMsg::Request { .. }) => {
                        tracing::warn!("dropped an attached client: unexpected message");
                        return End::Disconnected;
                    }
                    Err(e) => {
                        tracing::warn!("dropped an attached client: {e}");
                        return End::Disconnected;
                    }
                }
            }
            // New output: the check at the top decides whether it is on screen.
            _ = std::future::ready(()), if more_output => {}
            _ = &mut notified => {}
            r = status_rx.changed() => {
                if r.is_err() { return End::SpaceDown; }
                dirty = true;
            }
            alive = async {
                match space_rx.as_mut() {
                    Some(r) => r.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                if !alive {
                    space_rx = None;
                }
                if app.shows_space() {
                    dirty = true;
                }
            }
            ev = async {
                match lines_rx.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                use tokio::sync::broadcast::error::{RecvError, TryRecvError};
                let mut next = ev.map_err(|e| match e {
                    RecvError::Closed => TryRecvError::Closed,
                    RecvError::Lagged(n) => TryRecvError::Lagged(n),
                });
                // Take what is queued in one go: a flood is one redraw.
                for _ in 0..4096 {
                    match next {
                        Ok(crate::supervisor::Event::Line { process, text, .. }) => {
                            app.push_line(process, text);
                        }
                        Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Closed) => {
                            lines_rx = None;
                            break;
                        }
                    }
                    next = match lines_rx.as_mut() {
                        Some(r) => r.try_recv(),
                        None => break,
                    };
                }
                if app.shows_merged() {
                    dirty = true;
                }
            }
            _ = down_rx.changed() => { dirty = true; }
            _ = gone_rx.changed() => {}
            _ = tick.tick() => { dirty = true; }
        }
    }
}

/// How many output chunks process `i` has had (0: not in the table).
fn seq_of(shared: &crate::supervisor::Shared, i: usize) -> u64 {
    shared
        .procs
        .get(i)
        .map_or(0, |p| p.seq.load(Ordering::Acquire))
}

/// Carry out one action of the app; `Some` ends the session.
async fn apply(ctx: &Arc<Ctx>, tx: &Outbox, app: &mut App, action: Action) -> Option<End> {
    let handle = &ctx.handle;
    let index = |name: &str| handle.shared.index_of(name);
    let report = |r: Result<(), String>| {
        if let Err(e) = r {
            tracing::warn!("{e}");
        }
    };
    match action {
        Action::Input { process, bytes } => {
            if let Some(i) = index(&process) {
                let _ = handle.input(i, &bytes).await;
            }
        }
        Action::Resize {
            process,
            rows,
            cols,
        } => {
            // The most recently active client decides a shared PTY's size.
            if let Some(i) = index(&process) {
                handle.resize(i, rows, cols);
            }
        }
        Action::Restart(name) => report(handle.restart(vec![name]).await),
        Action::Stop(name) => report(handle.stop(vec![name]).await),
        Action::Start(name) => report(handle.start(vec![name]).await),
        Action::Kill(name) => report(handle.kill(vec![name]).await),
        Action::RestartAll => report(handle.restart(Vec::new()).await),
        Action::Reload => {
            let r = ctx.devloop.reload().await;
            let mut notes = ctx.devloop.notes();
            if !r.error_lines.is_empty() {
                // The errors in the notes overlay, until a reload succeeds.
                notes.warnings = r.error_lines.clone();
            }
            app.set_notes(notes);
            app.note(&r.summary());
        }
        Action::Detach => return Some(End::Detached),
        Action::Quit => {
            app.quitting();
            handle.shutdown(false);
            let _ = ctx.down_tx.send(true);
        }
        // A second quit while stopping: kill what is left, as a second
        // Ctrl-C does in --no-tui.
        Action::QuitNow => {
            handle.shutdown(true);
            let _ = ctx.down_tx.send(true);
        }
        Action::Copy(text) => {
            let _ = tx.output(&osc52_copy(&text)).await;
        }
        Action::Send(envelope) => {
            if let Some(space) = ctx.space.as_ref().and_then(|p| p.started())
                && let Err(e) = space.send(&envelope).await
            {
                app.note(&format!("not sent: {e}"));
            }
        }
    }
    None
}

/// The largest terminal a client may claim. A client's size decides the
/// emulators' and the render buffers' (`stty rows 65535 cols 65535` asked
/// for a 206 GB allocation): larger claims are cut to this, zero to one.
pub const MAX_COLS: u16 = 1000;
pub const MAX_ROWS: u16 = 500;

pub fn clamp_size(cols: u16, rows: u16) -> (u16, u16) {
    (cols.clamp(1, MAX_COLS), rows.clamp(1, MAX_ROWS))
}
