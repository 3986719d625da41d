//! What mew shows of a MEW space's conversation: an envelope as one
//! readable line ([`summarize`]), the bounded history of a space as the
//! server's own participant sees it ([`SpaceLog`]: envelopes, who is here
//! with which capabilities, proposals waiting for an answer), and the
//! envelopes a person sends from it (chat, fulfilling, granting or
//! rejecting a proposal). Pure data: no sockets, no clock of its own.
//!
//! Everything here comes from the network: every string that reaches a
//! terminal goes through [`escape`] first.

use std::collections::VecDeque;

use indexmap::IndexMap;
use serde_json::{Value, json};

use crate::config::escape;
use crate::status::Millis;

/// The longest summary kept for a line (characters).
pub(crate) const SUMMARY: usize = 300;

/// How an envelope reads at a glance (colours in the TUI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tone {
    Plain,
    /// Chat text.
    Chat,
    /// A refusal: `system/error` (a capability check failed, …), `mcp/reject`.
    Denied,
    /// A proposal waiting for someone to fulfil it.
    Proposal,
    /// The gateway's own bookkeeping: welcome, presence, heartbeat.
    System,
}

/// One envelope (or stream frame) as one line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    pub from: String,
    /// Empty: everyone.
    pub to: Vec<String>,
    pub kind: String,
    /// What it says, on one line, at most [`SUMMARY`] characters, escaped.
    pub text: String,
    pub tone: Tone,
    pub id: Option<String>,
    pub correlation: Vec<String>,
}

impl Summary {
    /// `from → to kind: text`, escaped for a terminal.
    pub(crate) fn line(&self) -> String {
        if self.from.is_empty() {
            // A stream data frame: no envelope around it.
            return format!("{}: {}", self.kind, self.text);
        }
        let to = if self.to.is_empty() {
            "*".to_owned()
        } else {
            self.to.join(",")
        };
        let head = escape(&format!("{} → {to} {}", self.from, self.kind)).into_owned();
        if self.text.is_empty() {
            head
        } else {
            format!("{head}: {}", self.text)
        }
    }
}

/// At most [`SUMMARY`] characters, escaped (a newline shows as `\n`: one line).
fn cut(s: &str) -> String {
    let cut = match s.char_indices().nth(SUMMARY) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    };
    escape(&cut).into_owned()
}

fn str_of(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

fn list_of(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// An MCP call in a few words: `tools/call read_file {"path":…}`.
fn mcp_call(p: &Value) -> String {
    let method = str_of(p.get("method")).unwrap_or_else(|| "?".to_owned());
    match p.pointer("/params/name").and_then(Value::as_str) {
        Some(tool) => {
            let args = p
                .pointer("/params/arguments")
                .map(Value::to_string)
                .unwrap_or_default();
            format!("{method} {tool} {args}").trim_end().to_owned()
        }
        None => method,
    }
}

/// Read one frame received from a gateway.
pub(crate) fn summarize(frame: &str) -> Summary {
    if let Some(rest) = frame.strip_prefix('#')
        && let Some((sid, data)) = rest.split_once('#')
    {
        return Summary {
            from: String::new(),
            to: Vec::new(),
            kind: format!("stream {}", cut(sid)),
            text: format!("{} bytes", data.len()),
            tone: Tone::Plain,
            id: None,
            correlation: Vec::new(),
        };
    }
    let env: Value = match serde_json::from_str(frame) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return Summary {
                from: "?".to_owned(),
                to: Vec::new(),
                kind: "(not an envelope)".to_owned(),
                text: cut(frame),
                tone: Tone::Denied,
                id: None,
                correlation: Vec::new(),
            };
        }
    };
    summarize_value(&env)
}

/// [`summarize`] of a parsed envelope.
pub(crate) fn summarize_value(env: &Value) -> Summary {
    let from = str_of(env.get("from")).unwrap_or_else(|| "?".to_owned());
    let to = list_of(env.get("to"));
    let kind = str_of(env.get("kind")).unwrap_or_else(|| "?".to_owned());
    let p = env.get("payload").cloned().unwrap_or(Value::Null);
    let ids = |list: Option<&Value>| {
        list.and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.get("id").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let (text, tone) = match kind.as_str() {
        "chat" => (
            str_of(p.get("text")).unwrap_or_else(|| p.to_string()),
            Tone::Chat,
        ),
        "system/welcome" => {
            let you = str_of(p.pointer("/you/id")).unwrap_or_else(|| "?".to_owned());
            let others = ids(p.get("participants"));
            (
                if others.is_empty() {
                    format!("joined as {you}; nobody else is here")
                } else {
                    format!("joined as {you}; here: {others}")
                },
                Tone::System,
            )
        }
        "system/presence" => {
            let who = str_of(p.pointer("/participant/id")).unwrap_or_else(|| "?".to_owned());
            let event = str_of(p.get("event")).unwrap_or_else(|| "?".to_owned());
            (format!("{who} {event}"), Tone::System)
        }
        "system/heartbeat" => (String::new(), Tone::System),
        "system/error" => {
            let what = str_of(p.get("error")).unwrap_or_default();
            let msg = str_of(p.get("message")).unwrap_or_default();
            let attempted = str_of(p.get("attempted_kind"))
                .map(|k| format!(" (attempted {k})"))
                .unwrap_or_default();
            (
                format!("{what} {msg}{attempted}").trim().to_owned(),
                Tone::Denied,
            )
        }
        "mcp/request" => (mcp_call(&p), Tone::Plain),
        "mcp/proposal" => (mcp_call(&p), Tone::Proposal),
        "mcp/response" => {
            let text = if let Some(e) = p.get("error") {
                format!(
                    "error {}",
                    str_of(e.get("message")).unwrap_or_else(|| e.to_string())
                )
            } else if let Some(t) = p.pointer("/result/content/0/text").and_then(Value::as_str) {
                t.to_owned()
            } else if let Some(tools) = p.pointer("/result/tools").and_then(Value::as_array) {
                let names: Vec<&str> = tools
                    .iter()
                    .filter_map(|t| t.get("name").and_then(Value::as_str))
                    .collect();
                format!("tools: {}", names.join(", "))
            } else {
                p.get("result").map(Value::to_string).unwrap_or_default()
            };
            (
                text,
                if p.get("error").is_some() {
                    Tone::Denied
                } else {
                    Tone::Plain
                },
            )
        }
        "mcp/reject" => (
            format!(
                "rejected: {}",
                str_of(p.get("reason")).unwrap_or_else(|| "no reason".to_owned())
            ),
            Tone::Denied,
        ),
        "mcp/withdraw" => (
            format!(
                "withdrawn: {}",
                str_of(p.get("reason")).unwrap_or_else(|| "no reason".to_owned())
            ),
            Tone::Plain,
        ),
        "capability/grant" | "capability/revoke" => {
            let who = str_of(p.get("recipient")).unwrap_or_else(|| "?".to_owned());
            let kinds: Vec<String> = p
                .get("capabilities")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|c| {
                            c.get("kind")
                                .and_then(Value::as_str)
                                .unwrap_or("?")
                                .to_owned()
                        })
                        .collect()
                })
                .unwrap_or_default();
            (format!("{who}: {}", kinds.join(", ")), Tone::Plain)
        }
        "stream/request" | "stream/open" | "stream/close" => {
            let sid = str_of(p.get("stream_id")).unwrap_or_default();
            let desc = str_of(p.get("description")).unwrap_or_default();
            (format!("{sid} {desc}").trim().to_owned(), Tone::Plain)
        }
        _ if p.is_null() => (String::new(), Tone::Plain),
        _ => (p.to_string(), Tone::Plain),
    };
    Summary {
        from,
        to,
        kind,
        text: cut(&text),
        tone,
        id: str_of(env.get("id")),
        correlation: list_of(env.get("correlation_id")),
    }
}

/// One envelope of the history.
#[derive(Clone, Debug)]
pub struct Entry {
    /// 1, 2, … in arrival order (never reused).
    pub seq: u64,
    pub at: Millis,
    pub summary: Summary,
    /// The frame as received (the TUI shows it pretty-printed).
    pub raw: String,
}

/// A participant as the server's own participant sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Member {
    pub connected: bool,
    pub capabilities: Vec<Value>,
    /// Capabilities granted (`capability/grant`) since it joined, as seen
    /// by this log (a revoke takes them out again).
    pub granted: Vec<Value>,
}

/// An open stream as the log saw it (`stream/open`, a welcome's
/// `active_streams`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stream {
    pub owner: String,
    pub description: String,
}

/// A proposal nobody has answered yet.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub id: String,
    pub from: String,
    pub to: Vec<String>,
    pub payload: Value,
    pub seq: u64,
}

/// Whether the server's participant is in the space.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Link {
    /// No participant to join as, or no gateway: the space view is empty.
    #[default]
    None,
    Connecting,
    /// Joined as this participant.
    Joined(String),
    /// Lost, saying why (retrying or not).
    Lost(String),
}

/// The space's conversation, bounded: the last [`SpaceLog::capacity`]
/// envelopes, everyone's presence and capabilities, pending proposals.
#[derive(Clone, Debug)]
pub struct SpaceLog {
    pub entries: VecDeque<Entry>,
    pub capacity: usize,
    /// Envelopes received in all (`entries` holds the last ones).
    pub seen: u64,
    pub members: IndexMap<String, Member>,
    pub pending: Vec<Pending>,
    pub link: Link,
    /// `space.default_to` … : whom a typed chat goes to (empty: everyone).
    pub default_to: Vec<String>,
    /// Open streams by id.
    pub streams: IndexMap<String, Stream>,
}

impl Default for SpaceLog {
    fn default() -> Self {
        SpaceLog::new(5000)
    }
}

impl SpaceLog {
    pub fn new(capacity: usize) -> SpaceLog {
        SpaceLog {
            entries: VecDeque::new(),
            capacity: capacity.max(1),
            seen: 0,
            members: IndexMap::new(),
            pending: Vec::new(),
            link: Link::None,
            default_to: Vec::new(),
            streams: IndexMap::new(),
        }
    }

    /// The participant this log is the view of, once joined.
    pub(crate) fn me(&self) -> Option<&str> {
        match &self.link {
            Link::Joined(id) => Some(id),
            _ => None,
        }
    }

    /// Take one frame received at `at`.
    pub(crate) fn push(&mut self, frame: &str, at: Millis) {
        let parsed: Option<Value> = serde_json::from_str(frame).ok().filter(Value::is_object);
        let summary = match &parsed {
            Some(v) => summarize_value(v),
            None => summarize(frame),
        };
        if let Some(env) = &parsed {
            self.track(env, &summary);
        }
        if summary.kind == "system/heartbeat" {
            return;
        }
        self.seen += 1;
        let seq = self.seen;
        if summary.tone == Tone::Proposal
            && let Some(id) = &summary.id
            && let Some(env) = &parsed
        {
            self.pending.push(Pending {
                id: id.clone(),
                from: summary.from.clone(),
                to: summary.to.clone(),
                payload: env.get("payload").cloned().unwrap_or(Value::Null),
                seq,
            });
        }
        self.entries.push_back(Entry {
            seq,
            at,
            summary,
            raw: frame.to_owned(),
        });
        while self.entries.len() > self.capacity {
            self.entries.pop_front();
        }
    }

    /// `id` is connected with `capabilities` (and nothing granted yet).
    fn joined(&mut self, id: &str, capabilities: Vec<Value>) {
        let member = Member {
            connected: true,
            capabilities,
            granted: Vec::new(),
        };
        self.members.insert(id.to_owned(), member);
    }

    /// Presence, capabilities and proposal answers.
    fn track(&mut self, env: &Value, s: &Summary) {
        let p = env.get("payload").cloned().unwrap_or(Value::Null);
        match s.kind.as_str() {
            "system/welcome" => {
                if let Some(you) = p.pointer("/you/id").and_then(Value::as_str) {
                    self.link = Link::Joined(you.to_owned());
                    self.joined(you, array_at(&p, "/you/capabilities"));
                }
                for st in p
                    .get("active_streams")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.open_stream(st);
                }
                for other in p
                    .get("participants")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(id) = other.get("id").and_then(Value::as_str) {
                        self.joined(id, array_at(other, "/capabilities"));
                    }
                }
            }
            "system/presence" => {
                let Some(id) = p.pointer("/participant/id").and_then(Value::as_str) else {
                    return;
                };
                let event = p.get("event").and_then(Value::as_str).unwrap_or("");
                let m = self.members.entry(id.to_owned()).or_default();
                match event {
                    "join" => {
                        m.connected = true;
                        if let Some(c) = p
                            .pointer("/participant/capabilities")
                            .and_then(Value::as_array)
                        {
                            m.capabilities = c.clone();
                        }
                    }
                    "leave" => m.connected = false,
                    _ => {}
                }
            }
            "mcp/request" | "mcp/reject" | "mcp/withdraw" => {
                // A fulfilment, rejection or withdrawal answers the proposal.
                self.pending.retain(|q| !s.correlation.contains(&q.id));
            }
            "capability/grant" | "capability/revoke" => {
                let Some(who) = p.get("recipient").and_then(Value::as_str) else {
                    return;
                };
                let caps = array_at(&p, "/capabilities");
                let m = self.members.entry(who.to_owned()).or_default();
                if s.kind == "capability/grant" {
                    for c in caps {
                        if !m.granted.contains(&c) {
                            m.granted.push(c);
                        }
                    }
                } else {
                    m.granted.retain(|c| !caps.contains(c));
                }
            }
            "stream/open" => self.open_stream(&p),
            "stream/close" => {
                if let Some(id) = p.get("stream_id").and_then(Value::as_str) {
                    self.streams.shift_remove(id);
                }
            }
            _ => {}
        }
    }

    fn open_stream(&mut self, p: &Value) {
        if let Some(id) = p.get("stream_id").and_then(Value::as_str) {
            self.streams.insert(
                id.to_owned(),
                Stream {
                    owner: str_of(p.get("owner")).unwrap_or_default(),
                    description: str_of(p.get("description")).unwrap_or_default(),
                },
            );
        }
    }

    /// The pending proposal with this id.
    pub fn proposal(&self, id: &str) -> Option<&Pending> {
        self.pending.iter().find(|p| p.id == id)
    }
}

/// A chat message (`to` empty: everyone).
pub fn chat(text: &str, to: &[String]) -> Value {
    let mut v = json!({"kind": "chat", "payload": {"text": text, "format": "plain"}});
    if !to.is_empty() {
        v["to"] = json!(to);
    }
    v
}

/// Fulfil a proposal: the MCP request it proposes, to whom it was proposed
/// (spec §3.2.1), correlated to it.
pub(crate) fn fulfil(p: &Pending, jsonrpc_id: u64) -> Value {
    let mut payload = p.payload.clone();
    if let Value::Object(m) = &mut payload {
        m.insert("jsonrpc".into(), json!("2.0"));
        m.insert("id".into(), json!(jsonrpc_id));
    }
    let mut v = json!({"kind": "mcp/request", "correlation_id": [p.id], "payload": payload});
    if !p.to.is_empty() {
        v["to"] = json!(p.to);
    }
    v
}

/// [`fulfil`] without a JSON-RPC id: the server's participant gives the
/// request a fresh one when it sends it.
pub fn fulfil_request(p: &Pending) -> Value {
    let mut v = fulfil(p, 0);
    if let Some(m) = v.get_mut("payload").and_then(Value::as_object_mut) {
        m.remove("id");
    }
    v
}

/// Reject a proposal (spec §3.3.2), to its proposer.
pub fn reject(p: &Pending, reason: &str) -> Value {
    json!({
        "kind": "mcp/reject",
        "to": [p.from],
        "correlation_id": [p.id],
        "payload": {"reason": reason},
    })
}

/// Grant the proposer the capability to make this call itself from now on:
/// `mcp/request` with the proposal's method (and tool name, for
/// `tools/call`). The granter must hold a capability that covers it.
pub fn grant(p: &Pending) -> Value {
    let method = p.payload.get("method").cloned().unwrap_or(json!("*"));
    let mut pattern = json!({"method": method});
    if let Some(tool) = p.payload.pointer("/params/name") {
        pattern["params"] = json!({"name": tool});
    }
    json!({
        "kind": "capability/grant",
        "to": [p.from],
        "payload": {
            "recipient": p.from,
            "capabilities": [{"kind": "mcp/request", "payload": pattern}],
            "reason": format!("granted from mew for proposal {}", p.id),
        },
    })
}

/// The array at `pointer` in `v` (empty when there is none).
fn array_at(v: &Value, pointer: &str) -> Vec<Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_for_the_common_kinds() {
        let l = |s: &str| summarize(s).line();
        assert_eq!(
            l(r#"{"from":"a","to":["b"],"kind":"chat","payload":{"text":"hi\nthere"}}"#),
            "a → b chat: hi\\nthere"
        );
        assert_eq!(
            l(
                r#"{"from":"h","to":["fs"],"kind":"mcp/request","payload":{"method":"tools/call","params":{"name":"read_file","arguments":{"path":"x"}}}}"#
            ),
            "h → fs mcp/request: tools/call read_file {\"path\":\"x\"}"
        );
        let d = summarize(
            r#"{"from":"system:gateway","to":["a"],"kind":"system/error","payload":{"error":"capability_violation","message":"no","attempted_kind":"mcp/request"}}"#,
        );
        assert_eq!(d.tone, Tone::Denied);
        assert_eq!(d.text, "capability_violation no (attempted mcp/request)");
        assert_eq!(l("#stream-1#abc"), "stream stream-1: 3 bytes");
        // Nothing raw from the network reaches a terminal.
        let evil = l(
            "{\"from\":\"a\\u001b[2J\",\"kind\":\"chat\",\"payload\":{\"text\":\"\\u001b]0;x\\u0007\"}}",
        );
        assert!(
            !evil.contains('\u{1b}') && !evil.contains('\u{7}'),
            "{evil:?}"
        );
    }

    #[test]
    fn the_log_tracks_presence_proposals_and_stays_bounded() {
        let mut log = SpaceLog::new(3);
        log.push(
            r#"{"kind":"system/welcome","from":"system:gateway","payload":{"you":{"id":"human","capabilities":[{"kind":"*"}]},"participants":[{"id":"agent","capabilities":[{"kind":"mcp/proposal"}]}]}}"#,
            1,
        );
        assert_eq!(log.me(), Some("human"));
        assert!(log.members["agent"].connected);
        log.push(
            r#"{"id":"p1","kind":"mcp/proposal","from":"agent","to":["fs"],"payload":{"method":"tools/call","params":{"name":"write","arguments":{}}}}"#,
            2,
        );
        assert_eq!(log.pending.len(), 1);
        let p = log.proposal("p1").unwrap().clone();
        let f = fulfil(&p, 7);
        assert_eq!(f["kind"], "mcp/request");
        assert_eq!(f["to"], json!(["fs"]));
        assert_eq!(f["correlation_id"], json!(["p1"]));
        assert_eq!(f["payload"]["params"]["name"], "write");
        assert_eq!(reject(&p, "unsafe")["to"], json!(["agent"]));
        assert_eq!(
            grant(&p)["payload"]["capabilities"][0]["payload"],
            json!({"method": "tools/call", "params": {"name": "write"}})
        );
        // Our fulfilment, echoed back, answers it.
        log.push(
            &serde_json::to_string(&{
                let mut e = f.clone();
                e["from"] = json!("human");
                e
            })
            .unwrap(),
            3,
        );
        assert!(log.pending.is_empty());
        log.push(
            r#"{"kind":"system/presence","from":"system:gateway","payload":{"event":"leave","participant":{"id":"agent"}}}"#,
            4,
        );
        assert!(!log.members["agent"].connected);
        log.push(r#"{"kind":"system/heartbeat","from":"x"}"#, 5);
        assert_eq!(log.seen, 4);
        assert_eq!(log.entries.len(), 3);
        assert_eq!(log.entries.front().unwrap().seq, 2);
    }

    #[test]
    fn grants_streams_and_a_request_without_an_id() {
        let mut log = SpaceLog::new(10);
        log.push(
            r#"{"kind":"system/welcome","from":"system:gateway","payload":{"you":{"id":"human","capabilities":[]},"participants":[],"active_streams":[{"stream_id":"stream-1","owner":"a","description":"old"}]}}"#,
            1,
        );
        assert_eq!(log.streams["stream-1"].owner, "a");
        log.push(
            r#"{"kind":"stream/open","from":"system:gateway","payload":{"stream_id":"stream-2","owner":"b","description":"new"}}"#,
            2,
        );
        log.push(
            r#"{"kind":"stream/close","from":"a","payload":{"stream_id":"stream-1"}}"#,
            3,
        );
        assert_eq!(log.streams.keys().collect::<Vec<_>>(), ["stream-2"]);
        let cap = json!({"kind": "mcp/request", "payload": {"method": "tools/call"}});
        let grant = json!({"kind": "capability/grant", "from": "human", "payload": {"recipient": "b", "capabilities": [cap]}});
        log.push(&grant.to_string(), 4);
        assert_eq!(log.members["b"].granted, vec![cap.clone()]);
        let mut revoke = grant.clone();
        revoke["kind"] = json!("capability/revoke");
        log.push(&revoke.to_string(), 5);
        assert!(log.members["b"].granted.is_empty());
        let p = Pending {
            id: "p".into(),
            from: "b".into(),
            to: vec!["b".into()],
            payload: json!({"method": "tools/call", "params": {"name": "x"}}),
            seq: 1,
        };
        let f = fulfil_request(&p);
        assert!(f["payload"].get("id").is_none());
        assert_eq!(f["payload"]["jsonrpc"], "2.0");
        assert_eq!(f["correlation_id"], json!(["p"]));
    }
}
