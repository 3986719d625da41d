//! MEW participants that run inside mew's binary: the shared gateway link,
//! `mew client connect` and FIFO participants, `mew bridge start` (an MCP
//! server on stdio joined to a space), `mew token create`, `mew space connect`.
//!
//! [`Link`] is the one WebSocket connection to a gateway every one of them
//! uses: it joins, waits for `system/welcome`, reconnects when allowed, and
//! queues what is sent while it is not connected (nothing sent before the
//! socket opens is lost; upstream's client drops it).

pub mod bridge;
pub mod client;
pub mod connect;
pub(crate) mod mcp;
pub(crate) mod observer;
pub mod token;

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Where and as whom a participant joins.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// `ws://host:port[/path]`.
    pub url: String,
    pub space: String,
    /// `None`: the token's participant (the gateway decides).
    pub participant_id: Option<String>,
    pub token: String,
}

/// When a dropped connection is tried again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reconnect {
    /// Reconnect at all after a connection that was up drops.
    pub enabled: bool,
    /// Failed attempts in a row before giving up (`None`: never give up).
    pub max_attempts: Option<u32>,
}

/// What the link reports, in order.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    /// Joined: the gateway's `system/welcome`.
    Connected { welcome: Value },
    /// A text frame from the gateway: an envelope (JSON) or a stream data
    /// frame (`#stream-id#data`), exactly as received.
    Frame(String),
    /// The connection dropped; `retrying` says whether the link tries again.
    Disconnected { reason: String, retrying: bool },
}

/// Why a link ended for good (the last thing [`Link::next`] returns before `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LinkEnd {
    /// [`Link::close`] was called, or every sender was dropped.
    Closed,
    /// The gateway refused the join (a bad token, an unknown space …), or
    /// closed the connection as kicked (4003) or replaced by another
    /// connection of the same participant (4001): retrying cannot help.
    Refused(String),
    /// No connection, and no more attempts allowed.
    GaveUp(String),
}

/// The gateway's close codes after which a link does not reconnect.
const CLOSE_REPLACED: u16 = crate::gateway::hub::close::REPLACED;
const CLOSE_KICKED: u16 = crate::gateway::hub::close::KICKED;

/// How long a connection attempt (TCP, upgrade, join, welcome) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest pause between attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Frames queued while not connected before `send` waits (backpressure, not loss).
const QUEUE: usize = 4096;
/// The largest frame accepted from the gateway (its own limit is 4 MiB).
const MAX_FRAME: usize = 8 << 20;

/// A handle to send on a link; cheap to clone.
#[derive(Clone, Debug)]
pub(crate) struct LinkSender {
    tx: mpsc::Sender<Out>,
}

#[derive(Debug)]
enum Out {
    Text(String),
    Close,
}

impl LinkSender {
    /// Queue a text frame (an envelope's JSON, or a stream data frame).
    /// Waits while the queue is full; `Err` once the link has ended.
    pub(crate) async fn send_text(&self, text: String) -> Result<(), LinkGone> {
        self.tx.send(Out::Text(text)).await.map_err(|_| LinkGone)
    }

    /// Queue an envelope.
    pub(crate) async fn send(&self, envelope: &Value) -> Result<(), LinkGone> {
        self.send_text(envelope.to_string()).await
    }

    /// Close the connection (after what is queued) and end the link.
    /// Queued frames are sent first, on a connection made for them if need
    /// be (within the reconnect budget). To abandon them, drop the [`Link`].
    pub(crate) async fn close(&self) {
        let _ = self.tx.send(Out::Close).await;
    }
}

/// The link has ended; nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LinkGone;

impl std::fmt::Display for LinkGone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the gateway link has ended")
    }
}

/// A participant's connection to a gateway, run by its own task.
pub(crate) struct Link {
    sender: LinkSender,
    events: mpsc::Receiver<LinkEvent>,
    end: tokio::sync::oneshot::Receiver<LinkEnd>,
    ended: Option<LinkEnd>,
}

impl Link {
    /// Start connecting (on the current tokio runtime). The first attempt
    /// is made at once; frames sent meanwhile wait in the queue.
    pub(crate) fn start(target: Target, reconnect: Reconnect) -> Link {
        let join = join_message(&target);
        Link::start_with_join(target, reconnect, join)
    }

    /// [`Link::start`] with a join message of the caller's own (e.g.
    /// [`join_message`] plus the `capabilities` a bridge advertises).
    pub(crate) fn start_with_join(target: Target, reconnect: Reconnect, join: Value) -> Link {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (etx, erx) = mpsc::channel(QUEUE);
        let (end_tx, end_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let end = run(target, join, reconnect, rx, etx).await;
            let _ = end_tx.send(end);
        });
        Link {
            sender: LinkSender { tx },
            events: erx,
            end: end_rx,
            ended: None,
        }
    }

    pub(crate) fn sender(&self) -> LinkSender {
        self.sender.clone()
    }

    /// The next event; `None` once the link has ended (then [`Link::end`] says why).
    pub(crate) async fn next(&mut self) -> Option<LinkEvent> {
        match self.events.recv().await {
            Some(e) => Some(e),
            None => {
                if self.ended.is_none() {
                    self.ended = Some((&mut self.end).await.unwrap_or(LinkEnd::Closed));
                }
                None
            }
        }
    }

    /// Why the link ended, once [`Link::next`] has returned `None`.
    pub(crate) fn end(&self) -> Option<&LinkEnd> {
        self.ended.as_ref()
    }
}

/// The join message (the gateway-specific form every MEW client sends).
pub(crate) fn join_message(target: &Target) -> Value {
    let mut m = json!({"type": "join", "space": target.space, "token": target.token});
    if let Some(id) = &target.participant_id {
        m["participantId"] = Value::String(id.clone());
    }
    m
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connect, join and wait for the welcome. `Err((reason, fatal))`.
async fn open(target: &Target, join: &Value) -> Result<(Ws, Value), (String, bool)> {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(MAX_FRAME);
    config.max_frame_size = Some(MAX_FRAME);
    let attempt = async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(target.url.as_str(), Some(config), true)
                .await
                .map_err(|e| (format!("cannot connect to {}: {e}", target.url), false))?;
        ws.send(Message::text(join.to_string()))
            .await
            .map_err(|e| (format!("join not sent: {e}"), false))?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                    match v.get("kind").and_then(Value::as_str) {
                        Some("system/welcome") => return Ok((ws, v)),
                        Some("system/error") => {
                            let why = v
                                .pointer("/payload/message")
                                .or_else(|| v.pointer("/payload/error"))
                                .and_then(Value::as_str)
                                .unwrap_or("refused")
                                .to_owned();
                            return Err((format!("the gateway refused the join: {why}"), true));
                        }
                        // Anything before the welcome is not for us yet.
                        _ => continue,
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let why = frame
                        .map(|f| format!("{} {}", u16::from(f.code), f.reason))
                        .unwrap_or_else(|| "no reason".to_owned());
                    // 1008 is a policy refusal: a bad token stays bad.
                    let fatal = why.starts_with("1008");
                    return Err((format!("the gateway closed the connection: {why}"), fatal));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err((format!("connection lost while joining: {e}"), false)),
                None => return Err(("connection closed while joining".to_owned(), false)),
            }
        }
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(r) => r,
        Err(_) => Err((
            format!(
                "no welcome from {} within {}s",
                target.url,
                CONNECT_TIMEOUT.as_secs()
            ),
            false,
        )),
    }
}

async fn run(
    target: Target,
    join: Value,
    reconnect: Reconnect,
    mut rx: mpsc::Receiver<Out>,
    events: mpsc::Sender<LinkEvent>,
) -> LinkEnd {
    let mut failures: u32 = 0;
    let mut backoff = BACKOFF_MIN;
    // The first connection is always tried (with the same attempt budget).
    let mut was_up = false;
    // A frame taken from the queue whose send failed: sent first next time.
    let mut pending: Option<String> = None;
    loop {
        let (mut ws, welcome) = match open(&target, &join).await {
            Ok(c) => c,
            Err((reason, fatal)) => {
                if fatal {
                    return LinkEnd::Refused(reason);
                }
                failures += 1;
                let allowed = if was_up && !reconnect.enabled {
                    false
                } else {
                    reconnect.max_attempts.is_none_or(|m| failures <= m)
                };
                if !allowed {
                    return LinkEnd::GaveUp(reason);
                }
                tracing::debug!("{reason}; retrying in {backoff:?}");
                // Wait, but notice the Link being dropped.
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = events.closed() => return LinkEnd::Closed,
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        failures = 0;
        backoff = BACKOFF_MIN;
        was_up = true;
        if events.send(LinkEvent::Connected { welcome }).await.is_err() {
            let _ = ws.close(None).await;
            return LinkEnd::Closed;
        }
        let reason = loop {
            if let Some(text) = pending.take()
                && let Err(e) = ws.send(Message::text(text.clone())).await
            {
                pending = Some(text);
                break format!("send failed: {e}");
            }
            tokio::select! {
                out = rx.recv() => match out {
                    Some(Out::Text(text)) => {
                        if let Err(e) = ws.send(Message::text(text.clone())).await {
                            pending = Some(text);
                            break format!("send failed: {e}");
                        }
                    }
                    Some(Out::Close) | None => {
                        let _ = ws.close(None).await;
                        // Read until the gateway acknowledges (bounded).
                        let _ = tokio::time::timeout(Duration::from_secs(2), async {
                            while let Some(Ok(_)) = ws.next().await {}
                        })
                        .await;
                        return LinkEnd::Closed;
                    }
                },
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        if events.send(LinkEvent::Frame(t.as_str().to_owned())).await.is_err() {
                            let _ = ws.close(None).await;
                            return LinkEnd::Closed;
                        }
                    }
                    Some(Ok(Message::Close(frame))) => {
                        let code = frame.as_ref().map(|f| u16::from(f.code));
                        let reason = frame
                            .map(|f| format!("closed by the gateway: {} {}", u16::from(f.code), f.reason))
                            .unwrap_or_else(|| "closed by the gateway".to_owned());
                        // Kicked, or replaced by another connection of this
                        // participant: coming back would undo that.
                        if matches!(code, Some(CLOSE_REPLACED | CLOSE_KICKED)) {
                            let _ = events
                                .send(LinkEvent::Disconnected { reason: reason.clone(), retrying: false })
                                .await;
                            return LinkEnd::Refused(reason);
                        }
                        break reason;
                    }
                    // Pings are answered by tungstenite; binary frames are not MEW.
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break format!("connection lost: {e}"),
                    None => break "connection closed".to_owned(),
                },
            }
        };
        let retrying = reconnect.enabled && reconnect.max_attempts != Some(0);
        if events
            .send(LinkEvent::Disconnected {
                reason: reason.clone(),
                retrying,
            })
            .await
            .is_err()
        {
            return LinkEnd::Closed;
        }
        if !retrying {
            return LinkEnd::GaveUp(reason);
        }
    }
}

/// The current-thread runtime a command (`mew gateway start`, `mew bridge
/// start`, `mew client connect`, `mew space connect`) runs on; without one,
/// `<who>: cannot start the runtime: …` (exit 1).
pub(crate) fn command_runtime(
    who: &'static str,
) -> Result<tokio::runtime::Runtime, crate::cmd::Error> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| crate::cmd::Error::said(who, 1, format!("cannot start the runtime: {e}")))
}

/// The token a participant command uses: `--token`, else `$MEW_TOKEN`, else
/// `$MEW_TOKEN_<ID>` (what `mew space up` gives each participant).
pub(crate) fn token_from(flag: Option<&str>, participant: Option<&str>) -> Option<String> {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("MEW_TOKEN").ok().filter(|t| !t.is_empty()))
        .or_else(|| {
            let id = participant?;
            std::env::var(crate::config::token_env_name(id))
                .ok()
                .filter(|t| !t.is_empty())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_names_the_participant_only_when_given() {
        let mut t = Target {
            url: "ws://127.0.0.1:1".into(),
            space: "s".into(),
            participant_id: Some("a".into()),
            token: "tok".into(),
        };
        assert_eq!(
            join_message(&t),
            json!({"type":"join","space":"s","token":"tok","participantId":"a"})
        );
        t.participant_id = None;
        assert!(join_message(&t).get("participantId").is_none());
    }

    #[tokio::test]
    async fn a_link_that_cannot_connect_gives_up_after_its_attempts() {
        // A port nothing listens on: bind, take the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut link = Link::start(
            Target {
                url: format!("ws://127.0.0.1:{port}"),
                space: "s".into(),
                participant_id: None,
                token: "t".into(),
            },
            Reconnect {
                enabled: true,
                max_attempts: Some(1),
            },
        );
        assert!(link.next().await.is_none());
        assert!(
            matches!(link.end(), Some(LinkEnd::GaveUp(_))),
            "{:?}",
            link.end()
        );
        assert_eq!(link.sender().send_text("x".into()).await, Err(LinkGone));
    }
}
