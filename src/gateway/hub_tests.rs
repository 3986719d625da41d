//! The hub's rules, without sockets: each connection is a queue.

use super::*;
use crate::gateway::config::{LogSwitches, ParticipantDef};
use std::sync::mpsc as std_mpsc;

struct Fixture {
    hub: Hub,
    _dir: tempfile::TempDir,
    logs: PathBuf,
    journal: Journal,
    stored: std_mpsc::Receiver<(String, String)>,
}

fn def(id: &str, token: &str, caps: Value) -> ParticipantDef {
    ParticipantDef {
        id: id.into(),
        tokens: vec![token.into()],
        capabilities: capability::with_baseline(caps.as_array().unwrap()),
        output_log: None,
        auto_connect: false,
    }
}

fn fixture(participants: Vec<ParticipantDef>) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let journal = Journal::start(
        logs.clone(),
        LogSwitches {
            envelopes: true,
            capabilities: true,
        },
    )
    .unwrap();
    let mut cfg = GatewayConfig::empty();
    cfg.space_id = "s".into();
    cfg.participants = participants;
    let (tx, stored) = std_mpsc::channel();
    let tx = Mutex::new(tx);
    let hub = Hub::new(
        cfg,
        journal.clone(),
        HubOptions {
            port: 9,
            store_token: Box::new(move |id, tok| {
                tx.lock()
                    .unwrap()
                    .send((id.to_owned(), tok.to_owned()))
                    .unwrap();
                Ok(())
            }),
        },
    );
    Fixture {
        hub,
        _dir: dir,
        logs,
        journal,
        stored,
    }
}

struct Client {
    conn: ConnId,
    rx: mpsc::Receiver<Utf8Bytes>,
    link: Arc<Link>,
}

impl Client {
    fn drain(&mut self) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(f) = self.rx.try_recv() {
            self.link.sent(f.len());
            out.push(
                serde_json::from_str(f.as_str())
                    .unwrap_or_else(|_| Value::String(f.as_str().to_owned())),
            );
        }
        out
    }

    fn kinds(&mut self) -> Vec<String> {
        self.drain()
            .iter()
            .map(|v| v["kind"].as_str().unwrap_or("<frame>").to_owned())
            .collect()
    }

    fn kicked(&self) -> Option<(u16, String)> {
        self.link.kicked.lock().unwrap().clone()
    }
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object: {v}"),
    }
}

fn join(f: &mut Fixture, id: &str, token: &str) -> Result<Client, (String, String)> {
    let (outbox, rx, link) = Outbox::socket();
    let conn = f.hub.new_conn();
    f.hub
        .join(
            conn,
            outbox,
            &obj(json!({"type": "join", "participantId": id, "space": "s", "token": token})),
            None,
        )
        .map(|()| Client { conn, rx, link })
}

fn send(f: &mut Fixture, c: &Client, msg: Value) {
    f.hub.ws_message(c.conn, obj(msg));
}

fn two() -> Fixture {
    fixture(vec![
        def("alice", "ta", json!([{"kind": "*"}])),
        def("bob", "tb", json!([{"kind": "chat"}, {"kind": "stream/*"}])),
    ])
}

#[test]
fn welcome_presence_and_broadcast_with_from_set_by_the_gateway() {
    let mut f = two();
    let mut a = join(&mut f, "alice", "ta").unwrap();
    let w = a.drain();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0]["kind"], "system/welcome");
    assert_eq!(w[0]["to"], json!(["alice"]));
    assert_eq!(w[0]["payload"]["you"]["id"], "alice");
    assert_eq!(w[0]["payload"]["active_streams"], json!([]));
    let mut b = join(&mut f, "bob", "tb").unwrap();
    let wb = b.drain();
    assert_eq!(wb[0]["payload"]["participants"][0]["id"], "alice");
    let p = a.drain();
    assert_eq!(p[0]["kind"], "system/presence");
    assert_eq!(p[0]["payload"]["event"], "join");
    assert_eq!(p[0]["payload"]["participant"]["id"], "bob");

    send(
        &mut f,
        &b,
        json!({"kind": "chat", "from": "alice", "id": "x1", "payload": {"text": "hi"}, "correlation_id": "c1"}),
    );
    let got_a = a.drain();
    let got_b = b.drain();
    assert_eq!(got_a, got_b, "everyone sees everything, the sender too");
    let e = &got_a[0];
    assert_eq!(e["from"], "bob", "a forged from is replaced");
    assert_eq!(e["id"], "x1");
    assert_eq!(e["protocol"], "mew/v0.4");
    assert!(e["ts"].as_str().unwrap().ends_with('Z'));
    assert_eq!(e["correlation_id"], json!(["c1"]));
    let keys: Vec<&String> = e.as_object().unwrap().keys().collect();
    assert_eq!(keys[..4], ["protocol", "id", "ts", "from"]);

    f.hub.leave(b.conn);
    let left = a.drain();
    assert_eq!(
        left[0]["payload"],
        json!({"event": "leave", "participant": {"id": "bob"}})
    );
}

#[test]
fn joins_are_checked_against_tokens() {
    let mut f = two();
    assert_eq!(
        join(&mut f, "alice", "wrong").err().unwrap().1,
        "unknown token"
    );
    assert!(
        join(&mut f, "alice", "tb").is_err(),
        "bob's token cannot claim alice"
    );
    assert!(join(&mut f, "alice", "").is_err());
    // A runtime id with a valid token: capabilities of the token's participant.
    let mut rt = join(&mut f, "client-123", "tb").unwrap();
    let w = rt.drain();
    assert_eq!(
        w[0]["payload"]["you"]["capabilities"][0],
        json!({"kind": "chat"})
    );
    // Nobody takes over a connected id with another token.
    let _a = join(&mut f, "alice", "ta").unwrap();
    let (code, _) = join(&mut f, "client-123", "ta").err().unwrap();
    assert_eq!(code, "unauthorized");
    // The same participant again replaces its old connection.
    let a2 = join(&mut f, "alice", "ta").unwrap();
    assert_eq!(_a.kicked().map(|k| k.0), Some(close::REPLACED));
    assert!(a2.kicked().is_none());
    // The join's token never reaches the log.
    f.journal.sync();
    let log = std::fs::read_to_string(f.logs.join("envelope-history.jsonl")).unwrap();
    assert!(!log.contains("\"ta\"") && !log.contains("\"tb\""), "{log}");
    assert!(log.contains("[redacted]"));
}

#[test]
fn capability_violations_and_reserved_kinds() {
    let mut f = two();
    let mut a = join(&mut f, "alice", "ta").unwrap();
    let mut b = join(&mut f, "bob", "tb").unwrap();
    a.drain();
    b.drain();
    send(
        &mut f,
        &b,
        json!({"id": "r1", "kind": "mcp/request", "payload": {"method": "tools/list"}}),
    );
    let e = b.drain();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["kind"], "system/error");
    assert_eq!(e[0]["payload"]["error"], "capability_violation");
    assert_eq!(e[0]["correlation_id"], json!(["r1"]));
    assert!(a.drain().is_empty(), "a denied envelope reaches nobody");
    // mcp/response is allowed to everyone (baseline).
    send(
        &mut f,
        &b,
        json!({"kind": "mcp/response", "payload": {"result": 1}}),
    );
    assert_eq!(a.kinds(), ["mcp/response"]);
    b.drain();
    // Even `*` cannot send what only the gateway sends.
    for kind in [
        "system/welcome",
        "system/presence",
        "system/register",
        "system/error",
    ] {
        send(&mut f, &a, json!({"kind": kind, "payload": {}}));
        assert_eq!(a.kinds(), ["system/error"], "{kind}");
        assert!(b.drain().is_empty(), "{kind}");
    }
    // Other kinds the gateway emits follow capabilities, and show their sender.
    send(
        &mut f,
        &a,
        json!({"kind": "stream/open", "payload": {"stream_id": "x"}}),
    );
    let forged = b.drain();
    assert_eq!(forged[0]["from"], "alice");
    a.drain();
    // Heartbeats are taken, not broadcast.
    send(&mut f, &b, json!({"kind": "system/heartbeat"}));
    assert!(a.drain().is_empty() && b.drain().is_empty());
    // Validation errors.
    send(&mut f, &b, json!({"kind": "chat", "payload": {}}));
    let e = b.drain();
    assert_eq!(e[0]["payload"]["code"], "VALIDATION_ERROR");
    send(
        &mut f,
        &a,
        json!({"kind": "chat", "protocol": "mew/v9", "payload": {"text": "x"}}),
    );
    assert_eq!(a.drain()[0]["payload"]["code"], "VALIDATION_ERROR");
    send(
        &mut f,
        &a,
        json!({"kind": "chat", "protocol": "mew/v0.3", "payload": {"text": "x"}}),
    );
    assert_eq!(a.kinds(), ["chat"]);
    f.journal.sync();
    let decisions = std::fs::read_to_string(f.logs.join("capability-decisions.jsonl")).unwrap();
    assert!(
        decisions.contains("\"result\":\"denied\",\"required_capability\":\"mcp/request\""),
        "{decisions}"
    );
}

#[test]
fn grants_update_the_welcome_and_can_be_revoked() {
    let mut f = fixture(vec![
        def(
            "admin",
            "t0",
            json!([{"kind": "chat"}, {"kind": "capability/*"}, {"kind": "mcp/request", "payload": {"method": "tools/*"}}]),
        ),
        def("agent", "t1", json!([{"kind": "chat"}])),
    ]);
    let mut admin = join(&mut f, "admin", "t0").unwrap();
    let mut agent = join(&mut f, "agent", "t1").unwrap();
    admin.drain();
    agent.drain();
    let call = json!({"kind": "mcp/request", "payload": {"method": "tools/call", "params": {"name": "x"}}});
    send(&mut f, &agent, call.clone());
    assert_eq!(agent.kinds(), ["system/error"]);
    // Nobody grants what they do not hold.
    send(
        &mut f,
        &admin,
        json!({"kind": "capability/grant", "payload": {"recipient": "agent", "capabilities": [{"kind": "mcp/*"}]}}),
    );
    let e = admin.drain();
    assert_eq!(e[0]["payload"]["error"], "capability_violation");
    assert!(agent.drain().is_empty());
    send(
        &mut f,
        &admin,
        json!({"id": "g1", "kind": "capability/grant", "payload": {"recipient": "agent", "capabilities": [{"kind": "mcp/request", "payload": {"method": "tools/call"}}]}}),
    );
    let got = agent.drain();
    assert_eq!(got[0]["kind"], "system/welcome");
    assert_eq!(
        got[0]["payload"]["you"]["capabilities"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(got[1]["kind"], "capability/grant");
    send(&mut f, &agent, call.clone());
    assert_eq!(agent.kinds(), ["mcp/request"]);
    // The grant survives a reconnect.
    f.hub.leave(agent.conn);
    let mut agent = join(&mut f, "agent", "t1").unwrap();
    agent.drain();
    send(&mut f, &agent, call.clone());
    assert_eq!(agent.kinds(), ["mcp/request"]);
    send(
        &mut f,
        &admin,
        json!({"kind": "capability/revoke", "payload": {"recipient": "agent", "grant_id": "g1"}}),
    );
    let got = agent.drain();
    assert_eq!(got[0]["kind"], "system/welcome");
    assert_eq!(
        got[0]["payload"]["you"]["capabilities"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    send(&mut f, &agent, call);
    assert_eq!(agent.kinds(), ["system/error"]);
    // Unknown recipients are an error.
    send(
        &mut f,
        &admin,
        json!({"kind": "capability/grant", "payload": {"recipient": "ghost", "capabilities": [{"kind": "chat"}]}}),
    );
    assert_eq!(
        admin.drain().last().unwrap()["payload"]["error"],
        "participant_not_found"
    );
}

#[test]
fn invites_give_a_token_to_the_inviter_only() {
    let mut f = fixture(vec![
        def(
            "admin",
            "t0",
            json!([{"kind": "chat"}, {"kind": "space/invite"}]),
        ),
        def("obs", "t1", json!([{"kind": "chat"}])),
    ]);
    let mut admin = join(&mut f, "admin", "t0").unwrap();
    let mut obs = join(&mut f, "obs", "t1").unwrap();
    admin.drain();
    obs.drain();
    let out = f.hub.http_post(
        "admin",
        "t0",
        Some("s"),
        json!({"id": "i1", "kind": "space/invite", "payload": {"participant_id": "new-agent", "initial_capabilities": [{"kind": "mcp/proposal"}]}}),
    );
    assert_eq!(out.status, 200, "{out:?}");
    let token = out.body["token"].as_str().unwrap().to_owned();
    assert_eq!(
        f.stored.try_recv().unwrap(),
        ("new-agent".to_owned(), token.clone())
    );
    let ack = admin.drain();
    assert_eq!(ack[0]["kind"], "space/invite-ack");
    assert_eq!(ack[0]["payload"]["token"], token.as_str());
    assert_eq!(ack[0]["correlation_id"], json!(["i1"]));
    let seen = obs.drain();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0]["payload"]["event"], "invited");
    assert!(!seen[0].to_string().contains(&token));
    // The new participant can join and send what it was given.
    let mut new = join(&mut f, "new-agent", &token).unwrap();
    new.drain();
    send(
        &mut f,
        &new,
        json!({"kind": "mcp/proposal", "payload": {"method": "tools/call"}}),
    );
    assert_eq!(new.kinds(), ["mcp/proposal"]);
    // Duplicates and bad ids.
    let dup = f.hub.http_post(
        "admin",
        "t0",
        None,
        json!({"kind": "space/invite", "payload": {"participant_id": "obs"}}),
    );
    assert_eq!(dup.status, 409);
    for bad in ["../x", "a/b", "a\\b", ".."] {
        let r = f.hub.http_post(
            "admin",
            "t0",
            None,
            json!({"kind": "space/invite", "payload": {"participant_id": bad}}),
        );
        assert_eq!(r.status, 400, "{bad}");
    }
    let r = f.hub.http_post(
        "admin",
        "t0",
        None,
        json!({"kind": "space/invite", "payload": {}}),
    );
    assert_eq!(r.status, 400);
    f.journal.sync();
    let log = std::fs::read_to_string(f.logs.join("envelope-history.jsonl")).unwrap();
    assert!(!log.contains(&token), "the invited token is never logged");
}

#[test]
fn http_posts_are_authenticated() {
    let mut f = two();
    let mut a = join(&mut f, "alice", "ta").unwrap();
    a.drain();
    assert_eq!(
        f.hub
            .http_post(
                "alice",
                "tb",
                None,
                json!({"kind": "chat", "payload": {"text": "x"}})
            )
            .status,
        403
    );
    assert_eq!(
        f.hub
            .http_post(
                "ghost",
                "ta",
                None,
                json!({"kind": "chat", "payload": {"text": "x"}})
            )
            .status,
        403
    );
    assert_eq!(f.hub.http_post("bob", "tb", None, json!([1])).status, 400);
    assert_eq!(
        f.hub
            .http_post("bob", "tb", None, json!({"payload": {}}))
            .status,
        400
    );
    let ok = f.hub.http_post(
        "bob",
        "tb",
        None,
        json!({"kind": "chat", "from": "alice", "payload": {"text": "x"}}),
    );
    assert_eq!(ok.status, 200);
    assert_eq!(ok.body["status"], "accepted");
    let got = a.drain();
    assert_eq!(got[0]["from"], "bob");
    assert!(got[0]["id"].as_str().unwrap().starts_with("http-"));
    assert_eq!(
        f.hub
            .http_post(
                "bob",
                "tb",
                None,
                json!({"kind": "mcp/request", "payload": {"method": "m"}})
            )
            .status,
        403
    );
}

#[test]
fn streams_owner_writers_targets_and_late_joiners() {
    let mut f = fixture(vec![
        def(
            "owner",
            "t0",
            json!([{"kind": "stream/*"}, {"kind": "chat"}]),
        ),
        def("w", "t1", json!([{"kind": "stream/*"}])),
        def("agg", "t2", json!([{"kind": "chat"}])),
    ]);
    let mut o = join(&mut f, "owner", "t0").unwrap();
    let mut w = join(&mut f, "w", "t1").unwrap();
    let mut agg = join(&mut f, "agg", "t2").unwrap();
    for c in [&mut o, &mut w, &mut agg] {
        c.drain();
    }
    send(
        &mut f,
        &o,
        json!({"id": "rq", "kind": "stream/request", "payload": {"direction": "upload", "owner": "mallory", "format": "jsonl", "target": ["agg"]}}),
    );
    let got = w.drain();
    assert_eq!(got[0]["kind"], "stream/open");
    assert_eq!(got[0]["payload"]["owner"], "owner");
    assert_eq!(got[0]["payload"]["target"], json!(["agg"]));
    assert_eq!(got[1]["kind"], "stream/request");
    let sid = got[0]["payload"]["stream_id"].as_str().unwrap().to_owned();
    o.drain();
    agg.drain();
    // Targeted frames reach the target only; a non-writer is refused.
    f.hub.ws_frame(o.conn, &format!("#{sid}#hello"));
    assert_eq!(agg.drain(), vec![Value::String(format!("#{sid}#hello"))]);
    assert!(w.drain().is_empty() && o.drain().is_empty());
    f.hub.ws_frame(w.conn, &format!("#{sid}#nope"));
    assert_eq!(
        w.drain()[0]["payload"]["error"],
        "unauthorized_stream_write"
    );
    assert!(agg.drain().is_empty());
    // Only the owner grants; then the writer may write.
    send(
        &mut f,
        &w,
        json!({"kind": "stream/grant-write", "payload": {"stream_id": sid, "participant_id": "w"}}),
    );
    assert_eq!(w.drain()[0]["payload"]["error"], "unauthorized");
    send(
        &mut f,
        &o,
        json!({"kind": "stream/grant-write", "payload": {"stream_id": sid, "participant_id": "w"}}),
    );
    assert_eq!(agg.kinds(), ["stream/write-granted"]);
    w.drain();
    f.hub.ws_frame(w.conn, &format!("#{sid}#ok"));
    assert_eq!(agg.drain().len(), 1);
    // A late joiner sees the stream with its metadata, and the gateway's owner.
    let mut late = join(&mut f, "agg", "t2").unwrap();
    let wl = late.drain();
    let s = &wl[0]["payload"]["active_streams"][0];
    assert_eq!(s["stream_id"], sid.as_str());
    assert_eq!(s["owner"], "owner");
    assert_eq!(s["format"], "jsonl");
    assert_eq!(s["authorized_writers"], json!(["owner", "w"]));
    // Errors of the spec.
    send(
        &mut f,
        &o,
        json!({"kind": "stream/revoke-write", "payload": {"stream_id": sid, "participant_id": "owner"}}),
    );
    assert_eq!(
        o.drain().last().unwrap()["payload"]["error"],
        "invalid_operation"
    );
    send(
        &mut f,
        &o,
        json!({"kind": "stream/transfer-ownership", "payload": {"stream_id": "stream-99", "new_owner": "w"}}),
    );
    assert_eq!(
        o.drain().last().unwrap()["payload"]["error"],
        "stream_not_found"
    );
    send(
        &mut f,
        &o,
        json!({"kind": "stream/transfer-ownership", "payload": {"stream_id": sid, "new_owner": "ghost"}}),
    );
    assert_eq!(
        o.drain().last().unwrap()["payload"]["error"],
        "participant_not_found"
    );
    send(
        &mut f,
        &o,
        json!({"kind": "stream/transfer-ownership", "payload": {"stream_id": sid, "new_owner": "w"}}),
    );
    let t = o.drain();
    assert_eq!(t[0]["kind"], "stream/ownership-transferred");
    assert_eq!(t[0]["payload"]["authorized_writers"], json!(["w"]));
    // Unknown targets are refused; a writer who leaves loses write access.
    send(
        &mut f,
        &w,
        json!({"kind": "stream/request", "payload": {"direction": "upload", "target": ["ghost"]}}),
    );
    assert_eq!(
        w.drain().last().unwrap()["payload"]["error"],
        "target_not_found"
    );
    // Closing: only owner or writers.
    send(
        &mut f,
        &late,
        json!({"kind": "chat", "payload": {"text": "x"}}),
    );
    send(
        &mut f,
        &w,
        json!({"kind": "stream/close", "payload": {"stream_id": sid}}),
    );
    late.drain();
    let mut again = join(&mut f, "agg", "t2").unwrap();
    assert_eq!(again.drain()[0]["payload"]["active_streams"], json!([]));
}

#[test]
fn a_client_that_does_not_read_is_dropped_and_others_go_on() {
    let mut f = two();
    let slow = join(&mut f, "alice", "ta").unwrap();
    let mut fast = join(&mut f, "bob", "tb").unwrap();
    for i in 0..(QUEUE_FRAMES + 10) {
        send(
            &mut f,
            &fast,
            json!({"kind": "chat", "payload": {"text": format!("m{i}")}}),
        );
        fast.drain();
    }
    assert_eq!(slow.kicked().map(|k| k.0), Some(close::TOO_SLOW));
    assert!(fast.kicked().is_none());
}

#[test]
fn kick_removes_the_participant() {
    let mut f = fixture(vec![
        def(
            "admin",
            "t0",
            json!([{"kind": "space/kick"}, {"kind": "chat"}]),
        ),
        def("x", "t1", json!([{"kind": "chat"}])),
    ]);
    let mut admin = join(&mut f, "admin", "t0").unwrap();
    let mut x = join(&mut f, "x", "t1").unwrap();
    admin.drain();
    x.drain();
    send(
        &mut f,
        &admin,
        json!({"kind": "space/kick", "payload": {"participant_id": "x", "reason": "spam"}}),
    );
    assert_eq!(x.kinds(), ["space/kick"]);
    assert_eq!(x.kicked().map(|k| k.0), Some(close::KICKED));
    let seen = admin.drain();
    assert_eq!(seen.last().unwrap()["payload"]["event"], "leave");
    send(
        &mut f,
        &x,
        json!({"kind": "chat", "payload": {"text": "still here?"}}),
    );
    assert!(admin.drain().is_empty());
}

#[test]
fn output_log_participants_get_every_delivered_envelope() {
    let mut defs = vec![def("alice", "ta", json!([{"kind": "*"}]))];
    let mut log = def("watcher", "tw", json!([{"kind": "chat"}]));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("watch.log");
    log.output_log = Some(path.clone());
    log.auto_connect = true;
    defs.push(log);
    let mut f = fixture(defs);
    f.hub.auto_connect();
    let a = join(&mut f, "alice", "ta").unwrap();
    send(
        &mut f,
        &a,
        json!({"kind": "chat", "payload": {"text": "logged"}}),
    );
    f.journal.sync();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["system/welcome", "system/presence", "chat"]);
    assert_eq!(lines[2]["payload"]["text"], "logged");
}
