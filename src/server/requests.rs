//! One connection: its hello, its requests one after the other, an attached
//! client's session, and the streams (follow, watch, down) it asked for.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::broadcast;

use super::conns::{ConnSlot, Front, Phase};
use super::outbox::{Outbox, TrySend};
use super::session;
use crate::headless;
use crate::protocol::{self, ClientMsg, Request, ResponseBody, ServerMsg, Versions};
use crate::space;
use crate::supervisor::{Event, Handle};

/// How long a new connection may take to say hello (from its accept).
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a control connection with nothing in flight (no request being
/// answered, no stream) may stay silent before it is closed.
const CONTROL_IDLE: Duration = Duration::from_secs(10);
/// How long a connection that ends may take to write what is queued for it.
const WRITER_DRAIN: Duration = Duration::from_secs(5);

pub(super) async fn serve_client(stream: UnixStream, front: Arc<Front>, slot: ConnSlot) {
    use protocol::FrameError;
    let peer = space::check_peer(&stream);
    let (mut rd, mut wr) = stream.into_split();
    if let Err(why) = peer {
        tracing::warn!("refused a connection: {why}");
        // Tell the client why (it is waiting for our hello), then hang up.
        let bye = ServerMsg::Bye { reason: why };
        let _ = tokio::time::timeout(HELLO_TIMEOUT, protocol::write_msg(&mut wr, &bye)).await;
        return;
    }
    let mut gone = front.gone.clone();
    let hello_limits = protocol::ReadLimits {
        max_len: protocol::MAX_HELLO_LEN,
        idle: Some(HELLO_TIMEOUT),
        frame: Some(HELLO_TIMEOUT),
        budget: None,
        discard_oversized: false,
    };
    let hello = tokio::select! {
        r = tokio::time::timeout(HELLO_TIMEOUT, protocol::read_frame_limited(&mut rd, &hello_limits)) => r,
        _ = slot.evicted() => {
            tracing::debug!("closed a connection that had not said hello: too many connections");
            return;
        }
        _ = gone.wait_for(|g| *g) => return,
    };
    let hello = match hello {
        Ok(Ok(Some(f))) => f.decode::<ClientMsg>(),
        Ok(Ok(None)) => return,
        Ok(Err(FrameError::Idle(_) | FrameError::Timeout(_))) | Err(_) => {
            tracing::warn!("dropped a client that did not say hello within {HELLO_TIMEOUT:?}");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!("dropped a client before hello: {e}");
            return;
        }
    };
    let (version, mew_version, kind) = match hello {
        Ok(ClientMsg::Hello {
            version,
            mew_version,
            client,
        }) => (version, mew_version, client),
        Ok(other) => {
            tracing::warn!("dropped a client whose first message was not hello: {other:?}");
            return;
        }
        Err(e) => {
            tracing::warn!("dropped a client with a bad hello: {e}");
            return;
        }
    };
    let theirs = Versions {
        protocol: version,
        mew: mew_version,
    };
    if let Err(why) = protocol::check_hello(&theirs, &Versions::ours()) {
        let bye = ServerMsg::Bye { reason: why };
        let _ = tokio::time::timeout(HELLO_TIMEOUT, protocol::write_msg(&mut wr, &bye)).await;
        return;
    }
    let (out, writer) = Outbox::start(wr);
    let ours = Versions::ours();
    let hello = ServerMsg::Hello {
        version: ours.protocol,
        mew_version: ours.mew,
        server_pid: front.server_pid,
        space_id: front.space_id.clone(),
    };
    if out.msg(&hello).await {
        slot.set(Phase::Idle);
        tracing::debug!(?kind, "client connected");
        converse(&front, &slot, &mut rd, &out).await;
    }
    drop(out);
    // What is queued goes out, unless the client stopped reading.
    let mut writer = writer;
    if tokio::time::timeout(WRITER_DRAIN, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// Requests, one after the other, until the connection or the space ends.
async fn converse(front: &Arc<Front>, slot: &ConnSlot, rd: &mut OwnedReadHalf, out: &Outbox) {
    use protocol::FrameError;
    let mut streams: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    let mut gone = front.gone.clone();
    let mut space_gone = false;
    loop {
        // Silence is a reason to close only with nothing in flight: a
        // connection that follows, watches or waits for `down` is quiet by
        // nature.
        let idle = streams.is_empty().then_some(CONTROL_IDLE);
        let limits = front.limits(idle, false);
        // `read_frame_limited` is not cancel-safe, but a connection whose
        // space is gone (or that is closed to make room) reads nothing more.
        let frame = tokio::select! {
            f = protocol::read_frame_limited(rd, &limits) => f,
            _ = gone.wait_for(|g| *g) => {
                space_gone = true;
                break;
            }
            _ = slot.evicted() => {
                let _ = out.try_msg(&ServerMsg::Bye {
                    reason: "closed: this connection was idle and the server has too many open".into(),
                });
                break;
            }
        };
        let frame = match frame {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(FrameError::Idle(d)) => {
                tracing::info!("closed a control connection silent for {d:?}");
                let _ = out.try_msg(&ServerMsg::Bye {
                    reason: format!("closed: no request within {d:?}"),
                });
                break;
            }
            Err(e) => {
                tracing::warn!("dropped a client: {e}");
                break;
            }
        };
        let msg = match frame.decode::<ClientMsg>() {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("dropped a client: {e}");
                break;
            }
        };
        if slot.phase() == Some(Phase::Idle) {
            slot.set(Phase::Busy);
        }
        match msg {
            ClientMsg::Request {
                id,
                req:
                    Request::Attach {
                        cols,
                        rows,
                        owner,
                        no_color,
                    },
            } => {
                attach(
                    front,
                    slot,
                    rd,
                    out,
                    id,
                    owner,
                    session::Attach {
                        cols,
                        rows,
                        no_color,
                    },
                )
                .await;
                break;
            }
            ClientMsg::Request { id, req } => {
                if let Some(task) = handle_request(id, req, front, slot, out).await {
                    streams.push(task);
                }
            }
            ClientMsg::Hello { .. } => {
                tracing::warn!("dropped a client: a second hello");
                break;
            }
            ClientMsg::Input { .. } | ClientMsg::Resize { .. } | ClientMsg::Detach => {
                // Only meaningful on an attached connection.
            }
        }
        if streams.is_empty() {
            slot.set(Phase::Idle);
        }
    }
    for s in streams {
        if space_gone {
            // They end with the space, after their last message.
            let _ = s.await;
        } else {
            s.abort();
        }
    }
}

/// An attached (TUI) client, until it leaves or the space is down.
async fn attach(
    front: &Arc<Front>,
    slot: &ConnSlot,
    rd: &mut OwnedReadHalf,
    out: &Outbox,
    id: u64,
    owner: bool,
    att: session::Attach,
) {
    let respond = |result: Result<ResponseBody, String>| ServerMsg::Response { id, result };
    if !slot.stream() {
        out.msg(&respond(Err(too_many_streams(front)))).await;
        return;
    }
    let Some(ctx) = front.ctx().await else {
        return;
    };
    if !out.msg(&respond(Ok(ResponseBody::Accepted))).await {
        return;
    }
    let end = session::run(ctx.clone(), rd, out.clone(), att, front.limits(None, true)).await;
    tracing::info!(?end, owner, "attached client left");
    match end {
        session::End::Detached => {
            let reason = format!(
                "detached from space \"{}\" — \"mew space attach\" to return",
                ctx.space_id
            );
            out.msg(&ServerMsg::Bye { reason }).await;
        }
        session::End::Disconnected => {
            if owner {
                // The terminal that ran `up` is gone without a detach:
                // the space does not outlive it by accident.
                tracing::info!("the owning client disconnected: stopping the space");
                ctx.handle.shutdown(false);
                let _ = ctx.down_tx.send(true);
            }
        }
        session::End::SpaceDown => {
            let exit_code = headless::first_failure(&ctx.handle.status().processes);
            out.msg(&ServerMsg::Ended { exit_code }).await;
            let reason = format!("space \"{}\" stopped", ctx.space_id);
            out.msg(&ServerMsg::Bye { reason }).await;
        }
    }
}

fn too_many_streams(front: &Front) -> String {
    format!(
        "the space server already streams to {} clients (attach, logs -f, watch); close one and try again",
        front.conns.streaming_cap
    )
}

async fn handle_request(
    id: u64,
    req: Request,
    front: &Arc<Front>,
    slot: &ConnSlot,
    out: &Outbox,
) -> Option<tokio::task::JoinHandle<()>> {
    let respond = |result: Result<ResponseBody, String>| ServerMsg::Response { id, result };
    let stopping = || "the space is shutting down".to_string();
    match req {
        Request::Status => {
            // The supervisor's last published status (never waiting for it).
            let status = match front.ctx_now() {
                Some(ctx) => ctx.handle.status(),
                None => front.boot.clone(),
            };
            let status = (*status).clone();
            out.msg(&respond(Ok(ResponseBody::Status { status }))).await;
            None
        }
        req @ (Request::Restart { .. } | Request::Stop { .. } | Request::Start { .. }) => {
            let r = match front.ctx().await {
                Some(ctx) => control(&ctx.handle, req).await,
                None => Err(stopping()),
            };
            out.msg(&respond(r.map(|names| ResponseBody::Done { names })))
                .await;
            None
        }
        Request::Down { timeout_ms } => {
            // Never refused for want of room: `down` always gets through.
            let ctx = front.ctx().await?;
            let events = ctx.handle.subscribe();
            out.msg(&respond(Ok(ResponseBody::Accepted))).await;
            ctx.handle.shutdown(false);
            let _ = ctx.down_tx.send(true);
            if let Some(ms) = timeout_ms {
                let handle = ctx.handle.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    handle.shutdown(true);
                });
            }
            let out = out.clone();
            let handle = ctx.handle.clone();
            Some(tokio::spawn(async move {
                let forward = stream_events(events, out.clone(), Vec::new(), false);
                tokio::select! {
                    _ = forward => {}
                    _ = handle.wait_down() => {}
                }
                let _ = out
                    .msg(&ServerMsg::Bye {
                        reason: "the space is down".into(),
                    })
                    .await;
            }))
        }
        Request::Follow { names, .. } => {
            if !slot.stream() {
                out.msg(&respond(Err(too_many_streams(front)))).await;
                return None;
            }
            let ctx = front.ctx().await?;
            let events = ctx.handle.subscribe();
            let known: Vec<String> = ctx
                .handle
                .status()
                .processes
                .iter()
                .map(|p| p.name.clone())
                .collect();
            if let Some(msg) = crate::status::unknown_names(&names, &known) {
                out.msg(&respond(Err(msg))).await;
                return None;
            }
            out.msg(&respond(Ok(ResponseBody::Accepted))).await;
            let out = out.clone();
            let mut gone = front.gone.clone();
            Some(tokio::spawn(async move {
                tokio::select! {
                    _ = stream_events(events, out.clone(), names, true) => {}
                    _ = gone.wait_for(|g| *g) => {}
                }
                let _ = out
                    .msg(&ServerMsg::Bye {
                        reason: "the space is down".into(),
                    })
                    .await;
            }))
        }
        Request::Watch => {
            if !slot.stream() {
                out.msg(&respond(Err(too_many_streams(front)))).await;
                return None;
            }
            out.msg(&respond(Ok(ResponseBody::Accepted))).await;
            let out = out.clone();
            let front = front.clone();
            Some(tokio::spawn(async move {
                // While the processes are being started: what is about to be.
                if front.ctx_now().is_none() {
                    let status = (*front.boot).clone();
                    if !out.msg_written(&ServerMsg::Status { status }).await {
                        return;
                    }
                }
                let Some(ctx) = front.ctx().await else {
                    return;
                };
                let mut rx = ctx.handle.watch_status();
                let mut gone = front.gone.clone();
                loop {
                    let status = (**rx.borrow_and_update()).clone();
                    // One status in flight at a time: a client that reads
                    // slowly gets the latest, not a backlog.
                    if !out.msg_written(&ServerMsg::Status { status }).await {
                        return;
                    }
                    tokio::select! {
                        r = rx.changed() => if r.is_err() { break },
                        _ = gone.wait_for(|g| *g) => break,
                    }
                }
                let _ = out
                    .msg(&ServerMsg::Bye {
                        reason: "the space is down".into(),
                    })
                    .await;
            }))
        }
        Request::Reload => {
            let r = match front.ctx().await {
                Some(ctx) => Ok(ResponseBody::Reloaded {
                    report: ctx.devloop.reload().await,
                }),
                None => Err(stopping()),
            };
            out.msg(&respond(r)).await;
            None
        }
        Request::Scale { name, count } => {
            let r = match front.ctx().await {
                Some(ctx) => ctx
                    .devloop
                    .scale(&name, count)
                    .await
                    .map(|(started, stopped)| ResponseBody::Scaled { started, stopped }),
                None => Err(stopping()),
            };
            out.msg(&respond(r)).await;
            None
        }
        Request::Attach { .. } => None, // handled by converse
    }
}

/// Restart, stop or start processes; the names asked for, on success.
async fn control(handle: &Handle, req: Request) -> Result<Vec<String>, String> {
    match req {
        Request::Restart { names } => handle.restart(names.clone()).await.map(|_| names),
        Request::Stop { names } => handle.stop(names.clone()).await.map(|_| names),
        // A named process starts its stopped dependencies first.
        Request::Start { names } if names.is_empty() => handle.start(names).await.map(|_| vec![]),
        Request::Start { names } => handle.start_with_deps(names.clone()).await.map(|_| names),
        _ => Err("not a control request".into()),
    }
}

/// Forward events to a client without ever blocking the supervisor: a client
/// that falls behind is told how much it missed (`resync`).
async fn stream_events(
    mut events: broadcast::Receiver<Event>,
    out: Outbox,
    names: Vec<String>,
    lines: bool,
) {
    let mut dropped: u64 = 0;
    loop {
        let ev = match events.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                dropped += n;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let msg = match ev {
            Event::Lifecycle(event) => {
                if !names.is_empty() && !names.contains(&event.process) {
                    continue;
                }
                ServerMsg::Event { event }
            }
            Event::Line { process, at, text } => {
                if !lines || (!names.is_empty() && !names.iter().any(|n| **n == *process)) {
                    continue;
                }
                ServerMsg::Line {
                    process: process.to_string(),
                    at,
                    text: text.to_string(),
                }
            }
        };
        if dropped > 0 {
            match out.try_msg(&ServerMsg::Resync { dropped }) {
                Ok(()) => dropped = 0,
                Err(TrySend::Full) => {
                    dropped += 1;
                    continue;
                }
                Err(TrySend::Closed) => return,
            }
        }
        match out.try_msg(&msg) {
            Ok(()) => {}
            Err(TrySend::Full) => dropped += 1,
            Err(TrySend::Closed) => return,
        }
    }
}
