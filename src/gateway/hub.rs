//! The gateway's state and rules: who is in which space, what each may send,
//! streams, grants and invites. No sockets here: a connection is an
//! [`Outbox`] (a bounded queue its task drains, or an output-log file), so
//! every rule is tested by calling the hub and reading the queues.
//!
//! Everything a participant sends goes through [`Hub::handle`]: validate,
//! fill in the envelope (`from` is always the authenticated id), log it,
//! check the capability, apply the kinds the gateway owns (grants, invites,
//! kicks, streams), then deliver it to every participant of the space (MEW's
//! visibility rule: everyone sees everything; `to` says who should act).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use axum::extract::ws::Utf8Bytes;
use indexmap::IndexMap;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc};

use super::capability;
use super::config::GatewayConfig;
use super::journal::{DecisionRecord, EnvelopeRecord, Journal, decision_line, push_envelope_line};

pub(crate) type ConnId = u64;

/// Frames waiting for one connection before it counts as too slow.
pub(crate) const QUEUE_FRAMES: usize = 4096;
/// Bytes waiting for one connection before it counts as too slow.
pub(crate) const QUEUE_BYTES: usize = 32 << 20;

/// WebSocket close codes the gateway uses.
pub(crate) mod close {
    /// The connection's queue overflowed: it does not read fast enough.
    pub(crate) const TOO_SLOW: u16 = 1008;
    /// A policy violation: bad join, invalid data.
    pub(crate) const POLICY: u16 = 1008;
    /// Another connection joined with the same id and token.
    pub(crate) const REPLACED: u16 = 4001;
    /// Removed by `space/kick`.
    pub(crate) const KICKED: u16 = 4003;
    /// The gateway is shutting down.
    pub(crate) const GOING_AWAY: u16 = 1001;
}

/// The state shared by a connection's task and the hub.
#[derive(Default)]
pub(crate) struct Link {
    queued: AtomicUsize,
    kicked: Mutex<Option<(u16, String)>>,
    notify: Notify,
}

impl Link {
    /// Ask the connection to close with `code` (the first reason wins).
    pub(crate) fn kick(&self, code: u16, reason: impl Into<String>) {
        if let Ok(mut k) = self.kicked.lock()
            && k.is_none()
        {
            *k = Some((code, reason.into()));
        }
        self.notify.notify_one();
    }

    /// Resolves once the connection was asked to close.
    pub(crate) async fn kicked(&self) -> (u16, String) {
        loop {
            if let Some(k) = self.kicked.lock().ok().and_then(|k| k.clone()) {
                return k;
            }
            self.notify.notified().await;
        }
    }

    /// The writer sent `bytes` of a frame.
    pub(crate) fn sent(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// Where the hub puts what a participant receives.
#[derive(Clone)]
pub(crate) enum Outbox {
    /// A WebSocket connection's queue.
    Socket {
        tx: mpsc::Sender<Utf8Bytes>,
        link: Arc<Link>,
    },
    /// A participant's `output_log`: one JSON line per envelope.
    File(Arc<PathBuf>),
}

impl Outbox {
    /// A socket outbox and the receiving end its task drains.
    pub(crate) fn socket() -> (Outbox, mpsc::Receiver<Utf8Bytes>, Arc<Link>) {
        let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
        let link = Arc::new(Link::default());
        (
            Outbox::Socket {
                tx,
                link: link.clone(),
            },
            rx,
            link,
        )
    }

    fn transport(&self) -> &'static str {
        match self {
            Outbox::Socket { .. } => "websocket",
            Outbox::File(_) => "virtual",
        }
    }

    /// Queue `frame`; a queue that is full or past its byte bound closes
    /// the connection (overflow policy: a slow reader never delays others).
    fn push(&self, journal: &Journal, frame: &Utf8Bytes, envelope: bool) {
        match self {
            Outbox::Socket { tx, link } => {
                let len = frame.len();
                if link.queued.load(Ordering::Relaxed) + len > QUEUE_BYTES {
                    link.kick(
                        close::TOO_SLOW,
                        "outbound queue full: the client does not read",
                    );
                    return;
                }
                match tx.try_send(frame.clone()) {
                    Ok(()) => {
                        link.queued.fetch_add(len, Ordering::Relaxed);
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        link.kick(
                            close::TOO_SLOW,
                            "outbound queue full: the client does not read",
                        );
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
            Outbox::File(path) => {
                if envelope {
                    journal.output(path, frame.as_str());
                }
            }
        }
    }

    fn kick(&self, code: u16, reason: &str) {
        if let Outbox::Socket { link, .. } = self {
            link.kick(code, reason);
        }
    }
}

/// An HTTP answer: status and JSON body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    pub status: u16,
    pub body: Value,
}

impl Outcome {
    fn new(status: u16, body: Value) -> Outcome {
        Outcome { status, body }
    }
}

/// A participant definition: configured in space.yaml or invited.
struct Principal {
    tokens: Vec<String>,
    capabilities: Vec<Value>,
    output_log: Option<Arc<PathBuf>>,
    auto_connect: bool,
}

struct Member {
    conn: ConnId,
    /// The participant whose token authenticated this connection.
    principal: String,
    outbox: Outbox,
}

struct Stream {
    owner: String,
    writers: Vec<String>,
    created: String,
    request_id: String,
    open_id: String,
    /// Every field of the request's payload (kept for late joiners).
    meta: Map<String, Value>,
    target: Vec<String>,
}

#[derive(Default)]
struct Space {
    members: IndexMap<String, Member>,
    streams: IndexMap<String, Stream>,
    counter: u64,
    /// Runtime grants per principal: (grant id, capabilities).
    grants: HashMap<String, Vec<(String, Vec<Value>)>>,
}

impl Space {
    fn idle(&self) -> bool {
        self.members.is_empty() && self.streams.is_empty() && self.grants.is_empty()
    }
}

/// Who sent an envelope.
#[derive(Clone, Debug)]
struct Who {
    space: String,
    id: String,
    principal: String,
    transport: &'static str,
}

/// Writes an invited participant's token file (`id`, `token`).
pub(crate) type TokenStore = Box<dyn FnMut(&str, &str) -> Result<(), String> + Send>;

/// What the hub needs from outside.
pub(crate) struct HubOptions {
    pub port: u16,
    pub store_token: TokenStore,
}

pub(crate) struct Hub {
    opts: HubOptions,
    default_space: String,
    default_caps: Vec<Value>,
    principals: IndexMap<String, Principal>,
    by_token: HashMap<String, String>,
    spaces: HashMap<String, Space>,
    conns: HashMap<ConnId, (String, String)>,
    journal: Journal,
    started: Instant,
    run_tag: String,
    seq: u64,
    next_conn: ConnId,
}

/// Kinds only the gateway sends: the `system/*` namespace (spec §4.1),
/// whatever a participant's capabilities say. Other kinds the gateway emits
/// (`stream/open`, `space/invite-ack` …) are governed by capabilities: the
/// gateway's own carry `from: system:gateway`, which no participant can
/// forge (upstream's scenario 12 has a participant send `stream/open`).
fn reserved(kind: &str) -> bool {
    kind.starts_with("system/")
}

const PROTOCOL: &str = "mew/v0.4";
const GATEWAY: &str = "system:gateway";
const REDACTED: &str = "[redacted]";

pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn valid_runtime_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && !id.chars().any(char::is_control)
}

impl Hub {
    pub(crate) fn new(cfg: GatewayConfig, journal: Journal, opts: HubOptions) -> Hub {
        let mut tag = [0u8; 3];
        let _ = getrandom::fill(&mut tag);
        let mut hub = Hub {
            opts,
            default_space: cfg.space_id.clone(),
            default_caps: cfg.default_capabilities.clone(),
            principals: IndexMap::new(),
            by_token: HashMap::new(),
            spaces: HashMap::new(),
            conns: HashMap::new(),
            journal,
            started: Instant::now(),
            run_tag: tag.iter().map(|b| format!("{b:02x}")).collect(),
            seq: 0,
            next_conn: 1,
        };
        for p in cfg.participants {
            for t in &p.tokens {
                hub.by_token
                    .entry(t.clone())
                    .or_insert_with(|| p.id.clone());
            }
            hub.principals.insert(
                p.id,
                Principal {
                    tokens: p.tokens,
                    capabilities: p.capabilities,
                    output_log: p.output_log.map(Arc::new),
                    auto_connect: p.auto_connect,
                },
            );
        }
        hub
    }

    /// Connect every `output_log` participant with `auto_connect` (at start).
    pub(crate) fn auto_connect(&mut self) {
        let space = self.default_space.clone();
        let names: Vec<String> = self
            .principals
            .iter()
            .filter(|(_, p)| p.auto_connect && p.output_log.is_some())
            .map(|(n, _)| n.clone())
            .collect();
        for n in names {
            self.connect_output_log(&space, &n);
        }
    }

    /// Hand the log records of what was just handled to the writer thread
    /// (the wire calls this after every message).
    pub(crate) fn flush_journal(&self) {
        self.journal.flush();
    }

    /// The port the gateway listens on (for invite connection URLs).
    pub(crate) fn set_port(&mut self, port: u16) {
        self.opts.port = port;
    }

    pub(crate) fn new_conn(&mut self) -> ConnId {
        let c = self.next_conn;
        self.next_conn += 1;
        c
    }

    fn next_id(&mut self, prefix: &str) -> String {
        self.seq += 1;
        let ms = chrono::Utc::now().timestamp_millis();
        format!("{prefix}-{ms}-{}{}", self.run_tag, self.seq)
    }

    /// The space an HTTP `?space=` names (`default` or nothing: the configured one).
    fn space_name(&self, q: Option<&str>) -> String {
        match q {
            None | Some("") | Some("default") => self.default_space.clone(),
            Some(s) => s.to_owned(),
        }
    }

    fn capabilities(&self, space: &str, principal: &str) -> (Vec<Value>, usize) {
        let mut caps = self
            .principals
            .get(principal)
            .map(|p| p.capabilities.clone())
            .unwrap_or_default();
        let statics = caps.len();
        if let Some(grants) = self.spaces.get(space).and_then(|s| s.grants.get(principal)) {
            for (_, g) in grants {
                caps.extend(g.iter().cloned());
            }
        }
        (caps, statics)
    }

    // ----- joining and leaving -------------------------------------------

    /// A WebSocket join. On success the member is in the space and has its
    /// welcome; on failure the caller sends the error and closes.
    pub(crate) fn join(
        &mut self,
        conn: ConnId,
        outbox: Outbox,
        msg: &Map<String, Value>,
        header_token: Option<&str>,
    ) -> Result<(), (String, String)> {
        let field = |k: &str| {
            msg.get(k)
                .or_else(|| msg.get("payload").and_then(|p| p.get(k)))
                .and_then(Value::as_str)
        };
        let Some(token) = field("token").or(header_token).filter(|t| !t.is_empty()) else {
            return Err((
                "unauthorized".into(),
                "a join needs the participant's token".into(),
            ));
        };
        let Some(owner) = self.by_token.get(token).cloned() else {
            return Err(("unauthorized".into(), "unknown token".into()));
        };
        let id = field("participantId").unwrap_or(&owner).to_owned();
        if !valid_runtime_id(&id) {
            return Err(("invalid_request".into(), "invalid participantId".into()));
        }
        if id != owner && self.principals.contains_key(&id) {
            return Err((
                "unauthorized".into(),
                format!("this token does not belong to participant {id}"),
            ));
        }
        let space_name = field("space")
            .filter(|s| !s.is_empty())
            .unwrap_or(&self.default_space)
            .to_owned();
        if self.conns.contains_key(&conn) {
            return Err(("invalid_request".into(), "already joined".into()));
        }
        let space = self.spaces.entry(space_name.clone()).or_default();
        if let Some(existing) = space.members.get(&id) {
            if existing.principal != owner {
                return Err((
                    "unauthorized".into(),
                    format!("participant id {id} is in use"),
                ));
            }
            // The same participant again: the new connection replaces the old.
            existing.outbox.kick(
                close::REPLACED,
                "replaced by a new connection of this participant",
            );
            if let Some(old) = space.members.shift_remove(&id) {
                self.conns.remove(&old.conn);
            }
        }
        let space = self.spaces.entry(space_name.clone()).or_default();
        space.members.insert(
            id.clone(),
            Member {
                conn,
                principal: owner.clone(),
                outbox,
            },
        );
        self.conns.insert(conn, (space_name.clone(), id.clone()));
        let mut logged = msg.clone();
        redact_join(&mut logged);
        let logged = Value::Object(logged).to_string();
        self.log_envelope(
            "received",
            msg.get("id").and_then(Value::as_str),
            &logged,
            &id,
            &space_name,
            "inbound",
            "websocket",
            None,
        );
        self.welcome_and_presence(&space_name, &id);
        tracing::info!("{id} joined space {space_name} (as participant {owner})");
        Ok(())
    }

    fn connect_output_log(&mut self, space_name: &str, principal: &str) {
        let Some(path) = self
            .principals
            .get(principal)
            .and_then(|p| p.output_log.clone())
        else {
            return;
        };
        let space = self.spaces.entry(space_name.to_owned()).or_default();
        if space.members.contains_key(principal) {
            return;
        }
        let conn = self.next_conn;
        self.next_conn += 1;
        space.members.insert(
            principal.to_owned(),
            Member {
                conn,
                principal: principal.to_owned(),
                outbox: Outbox::File(path.clone()),
            },
        );
        self.conns
            .insert(conn, (space_name.to_owned(), principal.to_owned()));
        self.welcome_and_presence(space_name, principal);
        tracing::info!(
            "{principal} connected to space {space_name} through its output log {}",
            path.display()
        );
    }

    fn welcome_payload(&self, space_name: &str, id: &str) -> Value {
        let Some(space) = self.spaces.get(space_name) else {
            return Value::Null;
        };
        let principal = space.members.get(id).map_or(id, |m| m.principal.as_str());
        let (caps, _) = self.capabilities(space_name, principal);
        let others: Vec<Value> = space
            .members
            .iter()
            .filter(|(pid, _)| pid.as_str() != id)
            .map(|(pid, m)| json!({"id": pid, "capabilities": self.capabilities(space_name, &m.principal).0}))
            .collect();
        let streams: Vec<Value> = space
            .streams
            .iter()
            .map(|(sid, s)| stream_info(sid, s))
            .collect();
        json!({
            "you": {"id": id, "capabilities": caps},
            "participants": others,
            "active_streams": streams,
        })
    }

    fn welcome_and_presence(&mut self, space_name: &str, id: &str) {
        let caps = self.send_welcome(space_name, id, "welcome", json!({"type": "system/welcome"}));
        let presence = self.gateway_envelope(
            "presence",
            "system/presence",
            None,
            None,
            json!({"event": "join", "participant": {"id": id, "capabilities": caps}}),
        );
        self.broadcast(
            space_name,
            &presence,
            Some(id),
            Some(json!({"type": "system/presence", "source_participant": id})),
        );
    }

    /// A connection ended (or was closed by the hub).
    pub(crate) fn leave(&mut self, conn: ConnId) {
        let Some((space_name, id)) = self.conns.remove(&conn) else {
            return;
        };
        self.remove_member(&space_name, &id, "disconnect");
    }

    fn remove_member(&mut self, space_name: &str, id: &str, reason: &str) {
        let Some(space) = self.spaces.get_mut(space_name) else {
            return;
        };
        let Some(m) = space.members.shift_remove(id) else {
            return;
        };
        self.conns.remove(&m.conn);
        for s in space.streams.values_mut() {
            if s.owner != id {
                s.writers.retain(|w| w != id);
            }
        }
        let presence = self.gateway_envelope(
            "presence",
            "system/presence",
            None,
            None,
            json!({"event": "leave", "participant": {"id": id}}),
        );
        self.broadcast(
            space_name,
            &presence,
            None,
            Some(json!({"type": "system/presence", "source_participant": id, "reason": reason})),
        );
        if self.spaces.get(space_name).is_some_and(Space::idle) {
            self.spaces.remove(space_name);
        }
        tracing::info!("{id} left space {space_name} ({reason})");
    }

    /// Close every connection (the gateway stops).
    pub(crate) fn close_all(&mut self) {
        for space in self.spaces.values() {
            for m in space.members.values() {
                m.outbox
                    .kick(close::GOING_AWAY, "the gateway is shutting down");
            }
        }
    }

    // ----- inbound -------------------------------------------------------

    /// Text from a joined or joining WebSocket connection, already parsed.
    pub(crate) fn ws_message(&mut self, conn: ConnId, msg: Map<String, Value>) {
        let Some((space, id)) = self.conns.get(&conn).cloned() else {
            return;
        };
        let principal = self
            .spaces
            .get(&space)
            .and_then(|s| s.members.get(&id))
            .map(|m| m.principal.clone())
            .unwrap_or_default();
        let who = Who {
            space,
            id,
            principal,
            transport: "websocket",
        };
        if msg.get("type").and_then(Value::as_str) == Some("join")
            || msg.get("kind").and_then(Value::as_str) == Some("system/join")
        {
            self.error_to(
                &who,
                None,
                json!({"error": "invalid_request", "message": "already joined"}),
            );
            return;
        }
        self.handle(&who, msg);
    }

    /// A stream data frame `#stream-id#data` from `conn`.
    pub(crate) fn ws_frame(&mut self, conn: ConnId, frame: &str) {
        let Some((space_name, id)) = self.conns.get(&conn).cloned() else {
            return;
        };
        let Some(sid) = frame
            .get(1..)
            .and_then(|r| r.split_once('#'))
            .map(|(s, _)| s)
        else {
            return;
        };
        let Some(space) = self.spaces.get(&space_name) else {
            return;
        };
        let allowed = space.streams.get(sid).filter(|s| s.writers.contains(&id));
        match allowed {
            Some(stream) => {
                let bytes = Utf8Bytes::from(frame.to_owned());
                for (pid, m) in &space.members {
                    if stream.target.is_empty() || stream.target.iter().any(|t| t == pid) {
                        m.outbox.push(&self.journal, &bytes, false);
                    }
                }
            }
            None => {
                let sid = sid.to_owned();
                let who = Who {
                    principal: String::new(),
                    space: space_name,
                    id,
                    transport: "websocket",
                };
                self.error_to(
                    &who,
                    None,
                    json!({"error": "unauthorized_stream_write", "stream_id": sid, "message": format!("You are not authorized to write to stream {sid}")}),
                );
            }
        }
    }

    /// `POST /participants/:id/messages`.
    pub(crate) fn http_post(
        &mut self,
        participant: &str,
        token: &str,
        space_q: Option<&str>,
        body: Value,
    ) -> Outcome {
        let space_name = self.space_name(space_q);
        let principal = match self.principals.get(participant) {
            Some(p) if p.tokens.iter().any(|t| t == token) => participant.to_owned(),
            Some(_) => return Outcome::new(403, json!({"error": "Invalid token for participant"})),
            None => {
                // A runtime id that joined over WebSocket with this token.
                let owner = self.by_token.get(token).cloned();
                let member = self
                    .spaces
                    .get(&space_name)
                    .and_then(|s| s.members.get(participant));
                match (owner, member) {
                    (Some(o), Some(m)) if m.principal == o => o,
                    _ => {
                        return Outcome::new(
                            403,
                            json!({"error": "Invalid token for participant"}),
                        );
                    }
                }
            }
        };
        if principal == participant {
            self.connect_output_log(&space_name, &principal);
        }
        let Value::Object(msg) = body else {
            return Outcome::new(400, json!({"error": "Request body must be a JSON object"}));
        };
        if msg
            .get("kind")
            .and_then(Value::as_str)
            .is_none_or(|k| k.trim().is_empty())
        {
            return Outcome::new(400, json!({"error": "Message kind is required"}));
        }
        let who = Who {
            space: space_name,
            id: participant.to_owned(),
            principal,
            transport: "http",
        };
        self.handle(&who, msg)
    }

    fn handle(&mut self, who: &Who, msg: Map<String, Value>) -> Outcome {
        if let Some(problem) = validate(&msg) {
            self.error_to(
                who,
                msg.get("id").and_then(Value::as_str),
                json!({"error": problem, "code": "VALIDATION_ERROR"}),
            );
            return Outcome::new(400, json!({"error": "invalid_request", "message": problem}));
        }
        let env = self.fill(who, msg);
        let id = env
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let kind = env
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let text = Value::Object(env.clone()).to_string();
        let log_inbound = |hub: &mut Hub, event: &str, meta: Option<&Value>| {
            let (from, space) = (&who.id, &who.space);
            hub.log_envelope(
                event,
                Some(&id),
                &text,
                from,
                space,
                "inbound",
                who.transport,
                meta,
            );
        };
        log_inbound(self, "received", None);
        let reject = |hub: &mut Hub, reason: &str| {
            log_inbound(hub, "rejected", Some(&json!({"reason": reason})));
        };
        if kind == "system/heartbeat" {
            self.decide(
                who,
                &env,
                true,
                Some(&json!({"kind": "system/heartbeat"})),
                Some("implicit"),
                &[],
            );
            return self.accepted(&id, &env);
        }
        if reserved(&kind) {
            reject(self, "reserved_kind");
            let message = format!("{kind} is reserved for the gateway");
            self.error_to(
                who,
                Some(&id),
                json!({"error": "invalid_request", "message": message}),
            );
            return Outcome::new(400, json!({"error": "invalid_request", "message": message}));
        }
        let (caps, statics) = self.capabilities(&who.space, &who.principal);
        let matched = caps.iter().position(|c| capability::allows(c, &env));
        let source = matched.map(|i| if i < statics { "static" } else { "dynamic" });
        self.decide(
            who,
            &env,
            matched.is_some(),
            matched.map(|i| &caps[i]),
            source,
            &caps,
        );
        if matched.is_none() {
            reject(self, "capability_violation");
            self.error_to(
                who,
                Some(&id),
                json!({"error": "capability_violation", "attempted_kind": kind, "your_capabilities": caps}),
            );
            return Outcome::new(
                403,
                json!({"error": "capability_violation", "message": format!("Participant {} lacks capability for {kind}", who.id)}),
            );
        }
        let done = match kind.as_str() {
            "capability/grant" => self.grant(who, &env, &caps),
            "capability/revoke" => self.revoke(who, &env),
            "space/invite" => self.invite(who, &env),
            "space/kick" => self.kick(who, &env, &text),
            "stream/request" => self.stream_request(who, &env, &text),
            "stream/close" => self.stream_close(who, &env),
            "stream/grant-write" | "stream/revoke-write" | "stream/transfer-ownership" => {
                Some(self.stream_control(who, &env, &kind))
            }
            _ => None,
        };
        if let Some(outcome) = done {
            return outcome;
        }
        self.deliver_all(&who.space, &env, &text, &who.id);
        self.accepted(&id, &env)
    }

    fn accepted(&self, id: &str, env: &Map<String, Value>) -> Outcome {
        Outcome::new(
            200,
            json!({"id": id, "status": "accepted", "timestamp": env.get("ts").cloned().unwrap_or(Value::Null)}),
        )
    }

    /// The envelope as delivered: `protocol`, `id`, `ts` kept when given
    /// (filled in when not), `from` always the sender, then the rest in order.
    fn fill(&mut self, who: &Who, msg: Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        let protocol = msg
            .get("protocol")
            .cloned()
            .unwrap_or_else(|| PROTOCOL.into());
        let id = match msg.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => self.next_id(if who.transport == "http" {
                "http"
            } else {
                "msg"
            }),
        };
        let ts = match msg.get("ts") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => now_rfc3339(),
        };
        out.insert("protocol".into(), protocol);
        out.insert("id".into(), id.into());
        out.insert("ts".into(), ts.into());
        out.insert("from".into(), who.id.clone().into());
        for (k, v) in msg {
            if matches!(k.as_str(), "protocol" | "id" | "ts" | "from") {
                continue;
            }
            if k == "correlation_id" && !v.is_array() && !v.is_null() {
                out.insert(k, Value::Array(vec![v]));
            } else {
                out.insert(k, v);
            }
        }
        out
    }

    // ----- the kinds the gateway owns ------------------------------------

    fn resolve_principal(&self, space: &str, name: &str) -> Option<String> {
        if self.principals.contains_key(name) {
            return Some(name.to_owned());
        }
        self.spaces
            .get(space)?
            .members
            .get(name)
            .map(|m| m.principal.clone())
    }

    fn grant(&mut self, who: &Who, env: &Map<String, Value>, held: &[Value]) -> Option<Outcome> {
        let id = env["id"].as_str().unwrap_or_default().to_owned();
        let p = env.get("payload");
        let recipient = pstr(p, "recipient").unwrap_or_default().to_owned();
        let caps: Vec<Value> = p
            .and_then(|p| p.get("capabilities"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if recipient.is_empty() || caps.is_empty() || !caps.iter().all(capability::is_valid) {
            return Some(self.fail(who, &id, 400, "invalid_request", "capability/grant needs payload.recipient and a non-empty payload.capabilities list of {kind: ...} objects".into()));
        }
        let lacking: Vec<&Value> = caps
            .iter()
            .filter(|c| !held.iter().any(|h| capability::covers(h, c)))
            .collect();
        if !lacking.is_empty() {
            let message = format!(
                "you cannot grant capabilities you do not have: {}",
                Value::Array(lacking.into_iter().cloned().collect())
            );
            return Some(self.fail(who, &id, 403, "capability_violation", message));
        }
        let Some(principal) = self.resolve_principal(&who.space, &recipient) else {
            return Some(self.not_in_space(who, &id, &recipient));
        };
        let space = self.spaces.entry(who.space.clone()).or_default();
        let grants = space.grants.entry(principal.clone()).or_default();
        grants.retain(|(g, _)| *g != id);
        grants.push((id, caps.clone()));
        let shown = Value::Array(caps).to_string();
        tracing::info!("{} granted {shown} to {principal}", who.id);
        self.rewelcome(&who.space, &principal, "capability_grant_update", &who.id);
        None
    }

    fn revoke(&mut self, who: &Who, env: &Map<String, Value>) -> Option<Outcome> {
        let id = env["id"].as_str().unwrap_or_default().to_owned();
        let p = env.get("payload");
        let recipient = pstr(p, "recipient").unwrap_or_default().to_owned();
        let grant_id = pstr(p, "grant_id").map(str::to_owned);
        let patterns: Option<Vec<Value>> = p
            .and_then(|p| p.get("capabilities"))
            .and_then(Value::as_array)
            .cloned();
        if recipient.is_empty() || (grant_id.is_none() && patterns.is_none()) {
            return Some(self.fail(who, &id, 400, "invalid_request", "capability/revoke needs payload.recipient and payload.grant_id or payload.capabilities".into()));
        }
        let Some(principal) = self.resolve_principal(&who.space, &recipient) else {
            return Some(self.not_in_space(who, &id, &recipient));
        };
        if let Some(space) = self.spaces.get_mut(&who.space)
            && let Some(grants) = space.grants.get_mut(&principal)
        {
            if let Some(g) = &grant_id {
                grants.retain(|(gid, _)| gid != g);
            }
            if let Some(pats) = &patterns {
                for (_, caps) in grants.iter_mut() {
                    caps.retain(|c| !pats.iter().any(|p| p == c || capability::covers(p, c)));
                }
                grants.retain(|(_, caps)| !caps.is_empty());
            }
            if grants.is_empty() {
                space.grants.remove(&principal);
            }
        }
        tracing::info!("{} revoked capabilities of {principal}", who.id);
        self.rewelcome(&who.space, &principal, "capability_revoke_update", &who.id);
        None
    }

    /// Send every connection of `principal` an updated welcome.
    fn rewelcome(&mut self, space_name: &str, principal: &str, reason: &str, by: &str) {
        let ids: Vec<String> = self
            .spaces
            .get(space_name)
            .map(|s| {
                s.members
                    .iter()
                    .filter(|(_, m)| m.principal == principal)
                    .map(|(id, _)| id.clone())
                    .collect()
            })
            .unwrap_or_default();
        for id in ids {
            let meta =
                json!({"type": "system/welcome", "reason": reason, "source_participant": by});
            self.send_welcome(space_name, &id, "welcome-update", meta);
        }
    }

    /// Send `id` its welcome (an envelope id starting `prefix`), with `meta`
    /// for the journal. Returns the capabilities it tells.
    fn send_welcome(&mut self, space_name: &str, id: &str, prefix: &str, meta: Value) -> Value {
        let payload = self.welcome_payload(space_name, id);
        let caps = payload["you"]["capabilities"].clone();
        let env = self.gateway_envelope(
            prefix,
            "system/welcome",
            Some(vec![id.to_owned()]),
            None,
            payload,
        );
        self.send_to(space_name, id, &env, Some(meta));
        caps
    }

    fn invite(&mut self, who: &Who, env: &Map<String, Value>) -> Option<Outcome> {
        let id = env["id"].as_str().unwrap_or_default().to_owned();
        let p = env.get("payload");
        let Some(new_id) = pstr(p, "participant_id").map(str::to_owned) else {
            return Some(self.fail(
                who,
                &id,
                400,
                "invalid_request",
                "space/invite requires participant_id in payload".into(),
            ));
        };
        if let Err(e) = crate::config::check_name(&new_id) {
            return Some(self.fail(
                who,
                &id,
                400,
                "invalid_request",
                format!("participant_id contains invalid characters: {e}"),
            ));
        }
        if self.principals.contains_key(&new_id) {
            let ack = self.gateway_envelope(
                "invite-ack",
                "space/invite-ack",
                Some(vec![who.id.clone()]),
                Some(&id),
                json!({"status": "already_exists", "participant_id": new_id, "error": format!("Participant {new_id} already exists in this space")}),
            );
            self.send_to(&who.space, &who.id, &ack, Some(json!({"type": "space/invite-ack", "status": "already_exists", "invited_participant": new_id})));
            return Some(Outcome::new(
                409,
                json!({"status": "already_exists", "participant_id": new_id, "message": format!("Participant {new_id} already exists")}),
            ));
        }
        let initial: Vec<Value> = p
            .and_then(|p| p.get("initial_capabilities"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| self.default_caps.clone());
        let caps = capability::with_baseline(&initial);
        let Ok(token) = crate::space::new_token() else {
            return Some(self.fail(
                who,
                &id,
                500,
                "internal_error",
                "no randomness for a token".into(),
            ));
        };
        if let Err(e) = (self.opts.store_token)(&new_id, &token) {
            tracing::warn!("cannot store the token of invited participant {new_id}: {e}");
            return Some(self.fail(
                who,
                &id,
                500,
                "internal_error",
                "the invited participant's token could not be stored".into(),
            ));
        }
        self.by_token.insert(token.clone(), new_id.clone());
        self.principals.insert(
            new_id.clone(),
            Principal {
                tokens: vec![token.clone()],
                capabilities: caps.clone(),
                output_log: None,
                auto_connect: false,
            },
        );
        let url = format!("ws://localhost:{}/", self.opts.port);
        let ack = self.gateway_envelope(
            "invite-ack",
            "space/invite-ack",
            Some(vec![who.id.clone()]),
            Some(&id),
            json!({"status": "created", "participant_id": new_id, "token": token, "connection_url": url}),
        );
        let ack_id = ack["id"].as_str().unwrap_or_default().to_owned();
        self.send_to(
            &who.space,
            &who.id,
            &ack,
            Some(json!({"type": "space/invite-ack", "invited_participant": new_id})),
        );
        let presence = self.gateway_envelope(
            "presence-invite",
            "system/presence",
            None,
            None,
            json!({"event": "invited", "participant": {"id": new_id, "capabilities": caps}, "invited_by": who.id, "reason": p.and_then(|p| p.get("reason")).cloned()}),
        );
        self.broadcast(&who.space, &presence, Some(&who.id), Some(json!({"type": "system/presence", "event": "invited", "invited_participant": new_id})));
        tracing::info!("{} invited {new_id}", who.id);
        Some(Outcome::new(
            200,
            json!({"id": ack_id, "status": "created", "participant_id": new_id, "token": token, "connection_url": url}),
        ))
    }

    fn kick(&mut self, who: &Who, env: &Map<String, Value>, text: &str) -> Option<Outcome> {
        let id = env["id"].as_str().unwrap_or_default().to_owned();
        let p = env.get("payload");
        let target = pstr(p, "participant_id").unwrap_or_default().to_owned();
        let reason = pstr(p, "reason").unwrap_or("kicked").to_owned();
        let ids: Vec<String> = self
            .spaces
            .get(&who.space)
            .map(|s| {
                s.members
                    .iter()
                    .filter(|(mid, m)| **mid == target || m.principal == target)
                    .map(|(mid, _)| mid.clone())
                    .collect()
            })
            .unwrap_or_default();
        if target.is_empty() || ids.is_empty() {
            return Some(self.not_in_space(who, &id, &target));
        }
        self.deliver_all(&who.space, env, text, &who.id);
        for mid in ids {
            if let Some(m) = self
                .spaces
                .get(&who.space)
                .and_then(|s| s.members.get(&mid))
            {
                m.outbox
                    .kick(close::KICKED, &format!("removed by {}: {reason}", who.id));
            }
            self.remove_member(&who.space, &mid, "kicked");
        }
        Some(self.accepted(&id, env))
    }

    fn stream_request(
        &mut self,
        who: &Who,
        env: &Map<String, Value>,
        text: &str,
    ) -> Option<Outcome> {
        let id = env["id"].as_str().unwrap_or_default().to_owned();
        let payload = env
            .get("payload")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let target: Vec<String> = match payload.get("target") {
            Some(Value::Array(t)) => t
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        let space = self.spaces.entry(who.space.clone()).or_default();
        let missing: Vec<&String> = target
            .iter()
            .filter(|t| !space.members.contains_key(*t))
            .collect();
        if !missing.is_empty() {
            let missing: Vec<Value> = missing.into_iter().map(|m| m.as_str().into()).collect();
            self.error_to(
                who,
                Some(&id),
                json!({"error": "target_not_found", "targets": missing, "message": "One or more target participants do not exist in space"}),
            );
            return Some(Outcome::new(
                400,
                json!({"error": "target_not_found", "targets": missing}),
            ));
        }
        space.counter += 1;
        let sid = format!("stream-{}", space.counter);
        let created = now_rfc3339();
        let mut open_payload = json!({
            "stream_id": sid,
            "encoding": "text",
            "owner": who.id,
            "authorized_writers": [who.id],
        });
        if !target.is_empty() {
            open_payload["target"] = json!(target);
        }
        let open = self.gateway_envelope(
            "stream-open",
            "stream/open",
            Some(vec![who.id.clone()]),
            Some(&id),
            open_payload,
        );
        let open_id = open["id"].as_str().unwrap_or_default().to_owned();
        let open_ts = open["ts"].clone();
        if let Some(space) = self.spaces.get_mut(&who.space) {
            space.streams.insert(
                sid.clone(),
                Stream {
                    owner: who.id.clone(),
                    writers: vec![who.id.clone()],
                    created,
                    request_id: id.clone(),
                    open_id: open_id.clone(),
                    meta: payload,
                    target,
                },
            );
        }
        self.broadcast(
            &who.space,
            &open,
            None,
            Some(json!({"type": "stream/open", "source_participant": who.id, "stream_id": sid})),
        );
        self.deliver_all(&who.space, env, text, &who.id);
        Some(Outcome::new(
            200,
            json!({"id": open_id, "status": "stream_opened", "stream_id": sid, "timestamp": open_ts}),
        ))
    }

    fn stream_close(&mut self, who: &Who, env: &Map<String, Value>) -> Option<Outcome> {
        let id = env["id"].as_str().unwrap_or_default().to_owned();
        let p = env.get("payload");
        let named = pstr(p, "stream_id").map(str::to_owned);
        let space = self.spaces.get(&who.space)?;
        let sid = named.or_else(|| {
            let corr = env.get("correlation_id")?.as_array()?;
            space
                .streams
                .iter()
                .find(|(_, s)| {
                    corr.iter().any(|c| {
                        c.as_str() == Some(&s.open_id) || c.as_str() == Some(&s.request_id)
                    })
                })
                .map(|(sid, _)| sid.clone())
        })?;
        let stream = space.streams.get(&sid)?;
        if stream.owner != who.id && !stream.writers.contains(&who.id) {
            return Some(self.fail(
                who,
                &id,
                403,
                "unauthorized",
                format!("Only the stream owner or a writer can close stream {sid}"),
            ));
        }
        if let Some(space) = self.spaces.get_mut(&who.space) {
            space.streams.shift_remove(&sid);
        }
        None
    }

    fn stream_control(&mut self, who: &Who, env: &Map<String, Value>, kind: &str) -> Outcome {
        let id = env["id"].as_str().unwrap_or_default().to_owned();
        let p = env.get("payload");
        let get = |k: &str| {
            p.and_then(|p| p.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let sid = get("stream_id").unwrap_or_default();
        let other = if kind == "stream/transfer-ownership" {
            get("new_owner")
        } else {
            get("participant_id")
        }
        .unwrap_or_default();
        let reason = p.and_then(|p| p.get("reason")).cloned();
        let Some((space, stream)) =
            (self.spaces.get(&who.space)).and_then(|space| Some((space, space.streams.get(&sid)?)))
        else {
            return self.no_stream(who, &id, &sid);
        };
        if stream.owner != who.id {
            let what = match kind {
                "stream/grant-write" => "grant write access",
                "stream/revoke-write" => "revoke write access",
                _ => "transfer ownership",
            };
            return self.fail(
                who,
                &id,
                403,
                "unauthorized",
                format!("Only the stream owner can {what}"),
            );
        }
        if kind != "stream/revoke-write" && !space.members.contains_key(&other) {
            return self.not_in_space(who, &id, &other);
        }
        if kind == "stream/revoke-write" && other == stream.owner {
            return self.fail(
                who,
                &id,
                400,
                "invalid_operation",
                "Owner cannot revoke own write access".into(),
            );
        }
        let everyone: Vec<String> = space.members.keys().cloned().collect();
        let Some(stream) = self
            .spaces
            .get_mut(&who.space)
            .and_then(|s| s.streams.get_mut(&sid))
        else {
            return self.no_stream(who, &id, &sid);
        };
        let (prefix, ack_kind, status, payload) = match kind {
            "stream/grant-write" => {
                if !stream.writers.contains(&other) {
                    stream.writers.push(other.clone());
                }
                (
                    "grant-ack",
                    "stream/write-granted",
                    "granted",
                    json!({"stream_id": sid, "participant_id": other, "authorized_writers": stream.writers, "reason": reason}),
                )
            }
            "stream/revoke-write" => {
                stream.writers.retain(|w| *w != other);
                (
                    "revoke-ack",
                    "stream/write-revoked",
                    "revoked",
                    json!({"stream_id": sid, "participant_id": other, "authorized_writers": stream.writers, "reason": reason}),
                )
            }
            _ => {
                let previous = std::mem::replace(&mut stream.owner, other.clone());
                stream.writers.retain(|w| *w != previous);
                if !stream.writers.contains(&other) {
                    stream.writers.push(other.clone());
                }
                (
                    "transfer-ack",
                    "stream/ownership-transferred",
                    "transferred",
                    json!({"stream_id": sid, "previous_owner": previous, "new_owner": other, "authorized_writers": stream.writers, "reason": reason}),
                )
            }
        };
        let ack =
            self.gateway_envelope(prefix, ack_kind, Some(everyone), Some(&id), payload.clone());
        self.broadcast(
            &who.space,
            &ack,
            None,
            Some(json!({"source_participant": who.id})),
        );
        let mut body = json!({"id": ack["id"], "status": status});
        if let (Some(b), Some(p)) = (body.as_object_mut(), payload.as_object()) {
            for (k, v) in p {
                if k != "reason" && k != "participant_id" {
                    b.insert(k.clone(), v.clone());
                }
            }
        }
        Outcome::new(200, body)
    }

    // ----- output --------------------------------------------------------

    /// A gateway envelope (`from: system:gateway`).
    fn gateway_envelope(
        &mut self,
        prefix: &str,
        kind: &str,
        to: Option<Vec<String>>,
        correlation: Option<&str>,
        payload: Value,
    ) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("protocol".into(), PROTOCOL.into());
        m.insert("id".into(), self.next_id(prefix).into());
        m.insert("ts".into(), now_rfc3339().into());
        m.insert("from".into(), GATEWAY.into());
        if let Some(to) = to {
            m.insert("to".into(), json!(to));
        }
        m.insert("kind".into(), kind.into());
        if let Some(c) = correlation {
            m.insert("correlation_id".into(), json!([c]));
        }
        m.insert("payload".into(), payload);
        m
    }

    /// A `system/error` to the sender (its socket or output log) and an HTTP outcome.
    fn fail(&mut self, who: &Who, id: &str, status: u16, error: &str, message: String) -> Outcome {
        self.error_to(who, Some(id), json!({"error": error, "message": message}));
        Outcome::new(status, json!({"error": error, "message": message}))
    }

    /// [`Hub::fail`] for a participant that is not in the space (404).
    fn not_in_space(&mut self, who: &Who, id: &str, participant: &str) -> Outcome {
        self.fail(
            who,
            id,
            404,
            "participant_not_found",
            format!("Participant {participant} is not in the space"),
        )
    }

    /// [`Hub::fail`] for a stream that does not exist (404).
    fn no_stream(&mut self, who: &Who, id: &str, stream: &str) -> Outcome {
        self.fail(
            who,
            id,
            404,
            "stream_not_found",
            format!("Stream {stream} does not exist"),
        )
    }

    fn error_to(&mut self, who: &Who, correlation: Option<&str>, payload: Value) {
        let reason = payload.get("error").cloned();
        let env = self.gateway_envelope(
            "error",
            "system/error",
            Some(vec![who.id.clone()]),
            correlation,
            payload,
        );
        let mut meta = Map::new();
        if let Some(r) = reason {
            meta.insert("reason".into(), r);
        }
        if let Some(c) = correlation {
            meta.insert("source_envelope".into(), c.into());
        }
        self.send_to(&who.space, &who.id, &env, Some(Value::Object(meta)));
    }

    fn send_to(&self, space_name: &str, id: &str, env: &Map<String, Value>, meta: Option<Value>) {
        let Some(m) = self.spaces.get(space_name).and_then(|s| s.members.get(id)) else {
            return;
        };
        let text = Value::Object(env.clone()).to_string();
        let frame = Utf8Bytes::from(text.clone());
        m.outbox.push(&self.journal, &frame, true);
        let logged = redact_ack(env).unwrap_or(text);
        self.log_envelope(
            "delivered",
            env.get("id").and_then(Value::as_str),
            &logged,
            id,
            space_name,
            "outbound",
            m.outbox.transport(),
            meta.as_ref(),
        );
    }

    /// Deliver a gateway envelope to every member (but `except`).
    fn broadcast(
        &self,
        space_name: &str,
        env: &Map<String, Value>,
        except: Option<&str>,
        meta: Option<Value>,
    ) {
        let text = Value::Object(env.clone()).to_string();
        self.fan_out(
            space_name,
            env.get("id").and_then(Value::as_str),
            &text,
            except,
            meta.as_ref(),
        );
    }

    /// Deliver a participant's envelope to every member.
    fn deliver_all(&self, space_name: &str, env: &Map<String, Value>, text: &str, from: &str) {
        let meta = json!({"source_participant": from});
        self.fan_out(
            space_name,
            env.get("id").and_then(Value::as_str),
            text,
            None,
            Some(&meta),
        );
    }

    fn fan_out(
        &self,
        space_name: &str,
        id: Option<&str>,
        text: &str,
        except: Option<&str>,
        meta: Option<&Value>,
    ) {
        let Some(space) = self.spaces.get(space_name) else {
            return;
        };
        let frame = Utf8Bytes::from(text.to_owned());
        for (pid, m) in &space.members {
            if except != Some(pid.as_str()) {
                m.outbox.push(&self.journal, &frame, true);
            }
        }
        if !self.journal.envelopes_on() {
            return;
        }
        // One record per delivery, written straight into the journal's batch.
        let now = now_rfc3339();
        let meta = meta.map(Value::to_string);
        self.journal.envelopes_with(|buf| {
            for (pid, m) in &space.members {
                if except == Some(pid.as_str()) {
                    continue;
                }
                push_envelope_line(
                    buf,
                    &now,
                    &EnvelopeRecord {
                        event: "delivered",
                        id,
                        envelope: text,
                        participant: pid,
                        space: space_name,
                        direction: "outbound",
                        transport: m.outbox.transport(),
                        metadata: meta.as_deref(),
                    },
                );
            }
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn log_envelope(
        &self,
        event: &str,
        id: Option<&str>,
        envelope: &str,
        participant: &str,
        space: &str,
        direction: &str,
        transport: &str,
        metadata: Option<&Value>,
    ) {
        if !self.journal.envelopes_on() {
            return;
        }
        let meta = metadata.map(Value::to_string);
        self.journal.envelopes_with(|buf| {
            push_envelope_line(
                buf,
                &now_rfc3339(),
                &EnvelopeRecord {
                    event,
                    id,
                    envelope,
                    participant,
                    space,
                    direction,
                    transport,
                    metadata: meta.as_deref(),
                },
            );
        });
    }

    fn decide(
        &self,
        who: &Who,
        env: &Map<String, Value>,
        allowed: bool,
        matched: Option<&Value>,
        source: Option<&str>,
        granted: &[Value],
    ) {
        if !self.journal.capabilities_on() {
            return;
        }
        let meta = json!({
            "source": if who.transport == "http" { "http_api" } else { "websocket" },
            "transport": who.transport,
            "correlation_id": env.get("correlation_id"),
        });
        let mut meta = meta;
        if let Some(m) = meta.as_object_mut() {
            m.retain(|_, v| !v.is_null());
        }
        self.journal.capability(&decision_line(
            &now_rfc3339(),
            &DecisionRecord {
                envelope_id: env.get("id").and_then(Value::as_str),
                participant: &who.id,
                space: &who.space,
                allowed,
                required: env.get("kind").and_then(Value::as_str).unwrap_or("unknown"),
                matched,
                matched_source: source,
                granted,
                metadata: &meta,
            },
        ));
    }

    // ----- queries -------------------------------------------------------

    /// `GET /health`.
    pub(crate) fn health(&self) -> Value {
        let clients: usize = self.spaces.values().map(|s| s.members.len()).sum();
        json!({
            "status": "ok",
            "spaces": self.spaces.len(),
            "clients": clients,
            "uptime": self.started.elapsed().as_secs_f64(),
            "features": ["capabilities", "context", "validation", "http-io"],
        })
    }

    /// `GET /participants?space=`.
    pub(crate) fn participants(&self, space_q: Option<&str>) -> Value {
        let name = self.space_name(space_q);
        let list: Vec<Value> = self
            .spaces
            .get(&name)
            .map(|s| {
                s.members
                    .iter()
                    .map(|(id, m)| json!({"id": id, "connected": true, "capabilities": self.capabilities(&name, &m.principal).0}))
                    .collect()
            })
            .unwrap_or_default();
        json!({ "participants": list })
    }
}

/// A string field of an envelope's payload.
fn pstr<'a>(payload: Option<&'a Value>, key: &str) -> Option<&'a str> {
    payload?.get(key)?.as_str()
}

fn stream_info(sid: &str, s: &Stream) -> Value {
    let mut m = Map::new();
    m.insert("stream_id".into(), sid.into());
    m.insert("owner".into(), s.owner.clone().into());
    m.insert("authorized_writers".into(), json!(s.writers));
    m.insert("created".into(), s.created.clone().into());
    for (k, v) in &s.meta {
        if !m.contains_key(k) {
            m.insert(k.clone(), v.clone());
        }
    }
    Value::Object(m)
}

/// Upstream's checks: a supported protocol, `chat` with text, `mcp/request` with a method.
fn validate(msg: &Map<String, Value>) -> Option<String> {
    if let Some(p) = msg.get("protocol")
        && !matches!(p.as_str(), Some("mew/v0.4" | "mew/v0.3"))
    {
        return Some(format!(
            "Invalid protocol version: {}",
            p.as_str().map_or_else(|| p.to_string(), str::to_owned)
        ));
    }
    let kind = match msg.get("kind") {
        Some(Value::String(k)) if !k.is_empty() => k.as_str(),
        _ => return Some("Message kind is required".into()),
    };
    let payload = msg.get("payload");
    if let Some(p) = payload
        && !p.is_object()
        && !p.is_null()
    {
        return Some("payload must be an object".into());
    }
    let has = |k: &str| {
        payload
            .and_then(|p| p.get(k))
            .is_some_and(|v| !matches!(v, Value::Null) && v != "")
    };
    if kind == "chat" && !has("text") {
        return Some("Chat message requires payload.text".into());
    }
    if kind == "mcp/request" && !has("method") {
        return Some("MCP request requires payload.method".into());
    }
    None
}

fn redact_join(msg: &mut Map<String, Value>) {
    if msg.contains_key("token") {
        msg.insert("token".into(), REDACTED.into());
    }
    if let Some(Value::Object(p)) = msg.get_mut("payload")
        && p.contains_key("token")
    {
        p.insert("token".into(), REDACTED.into());
    }
}

/// An invite-ack as logged: without its token.
fn redact_ack(env: &Map<String, Value>) -> Option<String> {
    if env.get("kind").and_then(Value::as_str) != Some("space/invite-ack") {
        return None;
    }
    let mut copy = env.clone();
    if let Some(Value::Object(p)) = copy.get_mut("payload")
        && p.contains_key("token")
    {
        p.insert("token".into(), REDACTED.into());
    }
    Some(Value::Object(copy).to_string())
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
