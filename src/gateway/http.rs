//! The gateway's wire: HTTP routes (axum) and the WebSocket connection loop.
//!
//! One accept loop owns the listening sockets; each TCP connection is served
//! by hyper with a header timeout, under a connection cap, so a client that
//! opens sockets and says nothing cannot exhaust the gateway's descriptors.
//! A WebSocket is accepted on any path. Its task reads frames, hands them to
//! the hub, and writes what the hub queued for it; nothing one client does
//! (garbage, floods, not reading) reaches another.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::SinkExt;
use serde_json::{Map, Value, json};

use super::hub::{ConnId, Hub, Outbox, close};

/// The largest HTTP body or WebSocket message the gateway takes.
pub(crate) const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// A WebSocket that has not joined by then is closed.
pub(crate) const JOIN_TIMEOUT: Duration = Duration::from_secs(10);
/// The gateway pings every connection this often...
pub(crate) const PING_EVERY: Duration = Duration::from_secs(30);
/// ...and closes one it heard nothing from (not even a pong) for this long.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// A request body must arrive within this.
pub(crate) const BODY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub(crate) struct AppState {
    pub hub: Arc<Mutex<Hub>>,
    /// The connection cap, shared with the accept loop: an upgraded WebSocket
    /// keeps a permit of its own for its whole life.
    pub sockets: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    fn with<R>(&self, f: impl FnOnce(&mut Hub) -> R) -> R {
        // A panic while holding the lock poisons it; the hub's state is still
        // consistent enough to serve (every rule leaves it whole), so go on.
        let mut g = self
            .hub
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let r = f(&mut g);
        g.flush_journal();
        r
    }
}

pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/participants", get(participants))
        .route("/participants/{id}/messages", post(post_message))
        .fallback(fallback)
        .with_state(state)
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response()
}

async fn health(State(st): State<AppState>) -> Response {
    json_response(200, &st.with(|h| h.health()))
}

#[derive(serde::Deserialize)]
struct SpaceQuery {
    space: Option<String>,
}

async fn participants(State(st): State<AppState>, Query(q): Query<SpaceQuery>) -> Response {
    json_response(200, &st.with(|h| h.participants(q.space.as_deref())))
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

async fn post_message(
    State(st): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<SpaceQuery>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let Some(token) = bearer(&headers).map(str::to_owned) else {
        return json_response(
            401,
            &json!({"error": "Missing or invalid authorization header"}),
        );
    };
    let bytes = match tokio::time::timeout(
        BODY_TIMEOUT,
        axum::body::to_bytes(body, MAX_MESSAGE_BYTES),
    )
    .await
    {
        Err(_) => {
            return json_response(
                408,
                &json!({"error": "the request body did not arrive in time"}),
            );
        }
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
                || e.to_string().contains("length limit");
            return if too_big {
                json_response(
                    413,
                    &json!({"error": format!("the body is larger than {} bytes", MAX_MESSAGE_BYTES)}),
                )
            } else {
                json_response(400, &json!({"error": "the request body could not be read"}))
            };
        }
        Ok(Ok(b)) => b,
    };
    let body: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            return json_response(
                400,
                &json!({"error": "invalid JSON", "message": e.to_string()}),
            );
        }
    };
    let out = st.with(|h| h.http_post(&id, &token, q.space.as_deref(), body));
    json_response(out.status, &out.body)
}

/// Any other path: a WebSocket upgrade, or 404.
async fn fallback(State(st): State<AppState>, req: Request) -> Response {
    let (mut parts, _body) = req.into_parts();
    let header_token = bearer(&parts.headers).map(str::to_owned);
    match WebSocketUpgrade::from_request_parts(&mut parts, &st).await {
        Ok(ws) => {
            let Ok(permit) = st.sockets.clone().try_acquire_owned() else {
                return json_response(503, &json!({"error": "too many connections"}));
            };
            ws.max_message_size(MAX_MESSAGE_BYTES)
                .max_frame_size(MAX_MESSAGE_BYTES)
                .on_upgrade(move |socket| async move {
                    connection(socket, st, header_token).await;
                    drop(permit);
                })
        }
        Err(_) => json_response(404, &json!({"error": "not found"})),
    }
}

fn close_message(code: u16, reason: &str) -> Message {
    // Close reasons are at most 123 bytes.
    let mut r = reason.to_owned();
    while r.len() > 123 {
        r.pop();
    }
    Message::Close(Some(CloseFrame {
        code,
        reason: r.into(),
    }))
}

fn error_frame(error: &str, message: &str) -> Message {
    let env = json!({
        "protocol": "mew/v0.4",
        "id": format!("error-{}", chrono::Utc::now().timestamp_millis()),
        "ts": super::hub::now_rfc3339(),
        "from": "system:gateway",
        "kind": "system/error",
        "payload": {"error": error, "message": message},
    });
    Message::Text(env.to_string().into())
}

/// What a text frame is.
enum Parsed {
    Frame,
    Envelope(Map<String, Value>),
    Garbage(String),
}

fn parse(text: &str) -> Parsed {
    if text.starts_with('#') && text[1..].contains('#') {
        return Parsed::Frame;
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => Parsed::Envelope(m),
        Ok(_) => Parsed::Garbage("a message must be a JSON object".into()),
        Err(e) => Parsed::Garbage(format!("invalid JSON: {e}")),
    }
}

fn is_join(m: &Map<String, Value>) -> bool {
    m.get("type").and_then(Value::as_str) == Some("join")
        || m.get("kind").and_then(Value::as_str) == Some("system/join")
}

/// Frames written before one flush (one syscall for a burst, not one per frame).
const BATCH_FRAMES: usize = 64;
const BATCH_BYTES: usize = 1 << 20;

/// Write `first` and whatever else is already queued (bounded), then flush.
async fn write_batch(
    socket: &mut WebSocket,
    rx: &mut tokio::sync::mpsc::Receiver<axum::extract::ws::Utf8Bytes>,
    first: axum::extract::ws::Utf8Bytes,
    link: &super::hub::Link,
) -> Result<(), axum::Error> {
    let mut bytes = first.len();
    let mut frames = 1;
    socket.feed(Message::Text(first)).await?;
    while frames < BATCH_FRAMES && bytes < BATCH_BYTES {
        let Ok(next) = rx.try_recv() else { break };
        bytes += next.len();
        frames += 1;
        socket.feed(Message::Text(next)).await?;
    }
    let flushed = socket.flush().await;
    link.sent(bytes);
    flushed
}

async fn connection(mut socket: WebSocket, st: AppState, header_token: Option<String>) {
    let (outbox, mut rx, link) = Outbox::socket();
    let conn: ConnId = st.with(Hub::new_conn);
    let opened = Instant::now();
    let mut last_heard = Instant::now();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING_EVERY, PING_EVERY);
    let mut joined = false;
    let end: Option<(u16, String)> = loop {
        let join_deadline = if joined {
            None
        } else {
            Some(tokio::time::Instant::from_std(opened + JOIN_TIMEOUT))
        };
        tokio::select! {
            biased;
            kick = link.kicked() => break Some(kick),
            frame = rx.recv() => {
                let Some(frame) = frame else { break None };
                // A peer that stops reading blocks these writes: the hub's
                // kick (its queue overflowed) must still end the connection.
                tokio::select! {
                    biased;
                    kick = link.kicked() => break Some(kick),
                    sent = write_batch(&mut socket, &mut rx, frame, &link) => {
                        if sent.is_err() {
                            break None;
                        }
                    }
                }
            }
            msg = socket.recv() => {
                let Some(Ok(msg)) = msg else { break None };
                last_heard = Instant::now();
                match msg {
                    Message::Text(text) => match parse(text.as_str()) {
                        Parsed::Frame => st.with(|h| h.ws_frame(conn, text.as_str())),
                        Parsed::Envelope(m) if !joined => {
                            if !is_join(&m) {
                                let _ = socket.send(error_frame("not_joined", "the first message must be a join")).await;
                                break Some((close::POLICY, "not joined".into()));
                            }
                            match st.with(|h| h.join(conn, outbox.clone(), &m, header_token.as_deref())) {
                                Ok(()) => joined = true,
                                Err((error, message)) => {
                                    let _ = socket.send(error_frame(&error, &message)).await;
                                    break Some((close::POLICY, message));
                                }
                            }
                        }
                        Parsed::Envelope(m) => st.with(|h| h.ws_message(conn, m)),
                        Parsed::Garbage(why) => {
                            let _ = socket.send(error_frame("invalid_request", &why)).await;
                            break Some((1007, why));
                        }
                    },
                    Message::Binary(_) => {
                        let _ = socket.send(error_frame("invalid_request", "binary frames are not part of MEW")).await;
                        break Some((1003, "binary frames are not accepted".into()));
                    }
                    Message::Close(_) => {
                        // Send tungstenite's queued close reply (a clean close for the client).
                        let _ = tokio::time::timeout(Duration::from_secs(2), socket.flush()).await;
                        break None;
                    }
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > IDLE_TIMEOUT {
                    break Some((close::POLICY, "no traffic (not even a pong) for too long".into()));
                }
                if socket.send(Message::Ping(Bytes::new())).await.is_err() {
                    break None;
                }
            }
            () = async {
                match join_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => break Some((close::POLICY, "no join in time".into())),
        }
    };
    st.with(|h| h.leave(conn));
    if let Some((code, reason)) = end {
        // Bounded: a client that does not read must not keep the task.
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            socket.send(close_message(code, &reason)),
        )
        .await;
    }
}
