//! `mew gateway start` over real HTTP and WebSocket: the protocol, the
//! security rules and bad input, against the real binary.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const SPACE: &str = r#"
space: { id: s1, name: gateway test }
participants:
  alice: { tokens: [alice-token], capabilities: [ { kind: "*" } ] }
  bob:
    tokens: [bob-token]
    capabilities: [ { kind: chat }, { kind: "stream/*" } ]
  admin:
    tokens: [admin-token]
    capabilities: [ { kind: chat }, { kind: space/invite }, { kind: "capability/*" } ]
  watcher:
    tokens: [watcher-token]
    capabilities: [ { kind: chat } ]
    output_log: ./logs/watcher.log
    auto_connect: true
  poster: { tokens: [poster-token], capabilities: [ { kind: chat } ] }
  lazy:
    tokens: [lazy-token]
    capabilities: [ { kind: chat } ]
    output_log: ./logs/lazy.log
"#;

/// A running `mew gateway start` on a port the kernel chose.
struct Gateway {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    stdout: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Gateway {
    fn start(yaml: &str) -> Gateway {
        Gateway::start_with(yaml, &[])
    }

    fn start_with(yaml: &str, env: &[(&str, &str)]) -> Gateway {
        Gateway::launch(yaml, env, |_| {})
    }

    /// Start in a space dir `prepare` has set up first.
    fn start_prepared(yaml: &str, prepare: impl FnOnce(&Path)) -> Gateway {
        Gateway::launch(yaml, &[], prepare)
    }

    fn launch(yaml: &str, env: &[(&str, &str)], prepare: impl FnOnce(&Path)) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".mew")).unwrap();
        std::fs::write(dir.path().join(".mew/space.yaml"), yaml).unwrap();
        prepare(dir.path());
        let mut child = Command::new(common::MEW)
            .args(["gateway", "start", "--port", "0", "--space-config"])
            .arg(dir.path().join(".mew/space.yaml"))
            .env_remove("MEW_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = BufReader::new(child.stdout.take().unwrap());
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let keep = stdout.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                if let Some(p) = line.strip_prefix("Gateway listening on port ") {
                    let _ = tx.send(p.trim().parse::<u16>().unwrap());
                }
                let mut k = keep.lock().unwrap();
                k.push_str(&line);
                k.push('\n');
            }
        });
        let port = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(p) => p,
            Err(_) => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("the gateway did not start: {err}");
            }
        };
        Gateway {
            child,
            port,
            dir,
            stdout,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
            && http(self.port, "GET", "/health", &[], b"").0 == 200
    }

    fn log(&self, file: &str) -> String {
        std::fs::read_to_string(self.path().join(".mew/logs").join(file)).unwrap_or_default()
    }

    /// Every file the gateway wrote, and its stdout.
    fn everything_written(&self) -> String {
        let mut all = self.stdout.lock().unwrap().clone();
        for sub in [".mew/logs", "logs"] {
            if let Ok(rd) = std::fs::read_dir(self.path().join(sub)) {
                for e in rd.flatten() {
                    all.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
                }
            }
        }
        all
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 request; returns status and body.
fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A large body may be refused before it is all sent.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let text = String::from_utf8_lossy(&resp).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

fn post(g: &Gateway, who: &str, token: Option<&str>, body: &str) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    let (status, body) = http(
        g.port,
        "POST",
        &format!("/participants/{who}/messages"),
        &headers,
        body.as_bytes(),
    );
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

async fn connect(g: &Gateway) -> Ws {
    tokio_tungstenite::connect_async_with_config(g.url(), None, true)
        .await
        .unwrap()
        .0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next JSON text message, within a deadline.
async fn next(ws: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(
                    serde_json::from_str(t.as_str()).unwrap_or(Value::String(t.to_string())),
                );
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            _ => return None,
        }
    }
}

/// The next message of `kind`, skipping others (unparsed: a thousand
/// presence messages per client are skipped in the thousand-joins test).
async fn next_kind(ws: &mut Ws, kind: &str) -> Value {
    let needle = format!("\"kind\":\"{kind}\"");
    loop {
        match tokio::time::timeout(Duration::from_secs(20), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.as_str().contains(&needle) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["kind"] == kind {
                    return v;
                }
            }
            Ok(Some(Ok(_))) => {}
            _ => panic!("no {kind} before the connection ended"),
        }
    }
}

async fn joined(g: &Gateway, id: &str, token: &str) -> Ws {
    let mut ws = connect(g).await;
    send(
        &mut ws,
        json!({"type": "join", "participantId": id, "space": "s1", "token": token}),
    )
    .await;
    let w = next_kind(&mut ws, "system/welcome").await;
    assert_eq!(w["payload"]["you"]["id"], id);
    ws
}

/// Does the connection end (close frame or EOF) within the deadline?
async fn ends(ws: &mut Ws) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
            Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
            Err(_) => return false,
        }
    }
    false
}

fn wait_for(mut cond: impl FnMut() -> bool) -> bool {
    common::wait_for(Duration::from_secs(30), &mut cond)
}

#[test]
fn health_has_upstreams_shape() {
    let g = Gateway::start(SPACE);
    let (status, body) = http(g.port, "GET", "/health", &[], b"");
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "ok");
    assert!(v["spaces"].is_u64() && v["clients"].is_u64() && v["uptime"].is_f64());
    assert!(
        v["features"]
            .as_array()
            .unwrap()
            .contains(&json!("capabilities"))
    );
    // The auto-connected output log counts as a client of space s1.
    assert_eq!(v["clients"], 1);
    assert_eq!(http(g.port, "GET", "/nowhere", &[], b"").0, 404);
}

#[test]
fn http_statuses() {
    let g = Gateway::start(SPACE);
    let chat = r#"{"kind":"chat","payload":{"text":"hi"}}"#;
    assert_eq!(post(&g, "bob", None, chat).0, 401);
    assert_eq!(post(&g, "bob", Some("alice-token"), chat).0, 403);
    assert_eq!(post(&g, "ghost", Some("bob-token"), chat).0, 403);
    assert_eq!(
        post(&g, "bob", Some("bob-token"), "This is not valid JSON").0,
        400
    );
    assert_eq!(
        post(&g, "bob", Some("bob-token"), r#"{"payload":{}}"#).0,
        400
    );
    assert_eq!(post(&g, "bob", Some("bob-token"), "[1,2]").0, 400);
    let (s, v) = post(
        &g,
        "bob",
        Some("bob-token"),
        r#"{"kind":"mcp/request","payload":{"method":"tools/list"}}"#,
    );
    assert_eq!(
        (s, v["error"].as_str()),
        (403, Some("capability_violation"))
    );
    let (s, v) = post(&g, "bob", Some("bob-token"), chat);
    assert_eq!((s, v["status"].as_str()), (200, Some("accepted")));
    let big = format!(
        r#"{{"kind":"chat","payload":{{"text":"{}"}}}}"#,
        "A".repeat(5 << 20)
    );
    assert_eq!(post(&g, "bob", Some("bob-token"), &big).0, 413);
    let invite = r#"{"kind":"space/invite","payload":{"participant_id":"bob"}}"#;
    assert_eq!(post(&g, "admin", Some("admin-token"), invite).0, 409);
    // The participant list, with capabilities and no tokens.
    let (s, body) = http(g.port, "GET", "/participants?space=s1", &[], b"");
    assert_eq!(s, 200);
    assert!(
        body.contains("\"watcher\"") && !body.contains("token\""),
        "{body}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn join_welcome_presence_broadcast() {
    let g = Gateway::start(SPACE);
    let mut a = joined(&g, "alice", "alice-token").await;
    // The other join form, `system/join` with a payload.
    let mut b = connect(&g).await;
    send(&mut b, json!({"kind": "system/join", "payload": {"participantId": "bob", "space": "s1", "token": "bob-token"}})).await;
    let w = next_kind(&mut b, "system/welcome").await;
    let others: Vec<&str> = w["payload"]["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap())
        .collect();
    assert!(
        others.contains(&"alice") && others.contains(&"watcher"),
        "{others:?}"
    );
    let p = next_kind(&mut a, "system/presence").await;
    assert_eq!(p["payload"]["event"], "join");
    assert_eq!(p["payload"]["participant"]["id"], "bob");

    send(&mut b, json!({"kind": "chat", "from": "alice", "payload": {"text": "hello"}, "protocol": "mew/v0.3"})).await;
    let m = next_kind(&mut a, "chat").await;
    assert_eq!(m["from"], "bob", "the gateway sets from");
    assert!(m["id"].is_string() && m["ts"].is_string());
    let echo = next_kind(&mut b, "chat").await;
    assert_eq!(echo["id"], m["id"]);
    // Invalid envelopes get a validation error and the connection stays.
    send(&mut b, json!({"kind": "chat", "payload": {}})).await;
    let e = next_kind(&mut b, "system/error").await;
    assert_eq!(e["payload"]["code"], "VALIDATION_ERROR");
    send(
        &mut b,
        json!({"kind": "mcp/request", "payload": {"method": "tools/list"}}),
    )
    .await;
    let e = next_kind(&mut b, "system/error").await;
    assert_eq!(e["payload"]["error"], "capability_violation");
    // Reserved kinds: not even `*` may send them.
    send(&mut a, json!({"kind": "system/presence", "payload": {"event": "leave", "participant": {"id": "bob"}}})).await;
    let e = next_kind(&mut a, "system/error").await;
    assert_eq!(e["payload"]["error"], "invalid_request");
    drop(b);
    let left = next_kind(&mut a, "system/presence").await;
    assert_eq!(left["payload"]["event"], "leave");
    // Everything is in the logs, in upstream's format.
    assert!(wait_for(|| g.log("envelope-history.jsonl").contains(
        &format!("\"event\":\"delivered\",\"id\":{}", m["id"])
    )));
    assert!(wait_for(|| g.log("capability-decisions.jsonl").contains(
        "\"result\":\"denied\",\"required_capability\":\"mcp/request\""
    )));
    // The output log of the auto-connected watcher got the chat.
    assert!(wait_for(|| std::fs::read_to_string(
        g.path().join("logs/watcher.log")
    )
    .unwrap_or_default()
    .contains("\"text\":\"hello\"")));
}

#[tokio::test(flavor = "current_thread")]
async fn joins_are_authenticated_and_ids_cannot_be_taken_over() {
    let g = Gateway::start(SPACE);
    for bad in [
        json!({"type": "join", "participantId": "alice", "space": "s1", "token": "bob-token"}),
        json!({"type": "join", "participantId": "alice", "space": "s1", "token": "nope"}),
        json!({"type": "join", "participantId": "alice", "space": "s1"}),
        json!({"kind": "chat", "payload": {"text": "not joined"}}),
    ] {
        let mut ws = connect(&g).await;
        send(&mut ws, bad.clone()).await;
        let e = next(&mut ws).await.unwrap();
        assert_eq!(e["kind"], "system/error", "{bad}");
        assert!(ends(&mut ws).await, "{bad}: the connection is closed");
    }
    let mut a = joined(&g, "alice", "alice-token").await;
    // A runtime id with bob's token: bob's capabilities, but not alice's id.
    let mut rt = connect(&g).await;
    send(
        &mut rt,
        json!({"type": "join", "participantId": "alice", "space": "s1", "token": "bob-token"}),
    )
    .await;
    assert_eq!(next(&mut rt).await.unwrap()["kind"], "system/error");
    assert!(ends(&mut rt).await);
    // alice is still there and still hears others.
    let mut b = joined(&g, "bob", "bob-token").await;
    send(
        &mut b,
        json!({"kind": "chat", "payload": {"text": "still here"}}),
    )
    .await;
    assert_eq!(
        next_kind(&mut a, "chat").await["payload"]["text"],
        "still here"
    );
    // The same participant reconnecting replaces the old connection.
    let _a2 = joined(&g, "alice", "alice-token").await;
    assert!(ends(&mut a).await);
    // The bearer header works for a join without a token field.
    let mut req =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(g.url())
            .unwrap();
    req.headers_mut()
        .insert("Authorization", "Bearer bob-token".parse().unwrap());
    let (mut hb, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    send(
        &mut hb,
        json!({"type": "join", "participantId": "bob-2", "space": "s1"}),
    )
    .await;
    let w = next_kind(&mut hb, "system/welcome").await;
    assert_eq!(
        w["payload"]["you"]["capabilities"][0],
        json!({"kind": "chat"})
    );
    // No token appears in anything the gateway wrote.
    drop(hb);
    let all = g.everything_written();
    for t in ["alice-token", "bob-token", "admin-token", "watcher-token"] {
        assert!(!all.contains(t), "{t} leaked");
    }
    for f in std::fs::read_dir(g.path().join(".mew/tokens"))
        .unwrap()
        .flatten()
    {
        let tok = std::fs::read_to_string(f.path()).unwrap();
        if f.file_name() != ".gitignore" {
            assert!(!all.contains(tok.trim()), "a generated token leaked");
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn grants_and_invites() {
    let g = Gateway::start(SPACE);
    let mut admin = joined(&g, "admin", "admin-token").await;
    let mut b = joined(&g, "bob", "bob-token").await;
    send(&mut admin, json!({"id": "g1", "kind": "capability/grant", "payload": {"recipient": "bob", "capabilities": [{"kind": "chat/acknowledge"}]}})).await;
    // Refused: admin does not hold chat/acknowledge.
    let e = next_kind(&mut admin, "system/error").await;
    assert_eq!(e["payload"]["error"], "capability_violation");
    send(&mut admin, json!({"id": "g2", "kind": "capability/grant", "payload": {"recipient": "bob", "capabilities": [{"kind": "space/invite"}]}})).await;
    let w = next_kind(&mut b, "system/welcome").await;
    assert!(
        w["payload"]["you"]["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!({"kind": "space/invite"}))
    );
    assert_eq!(next_kind(&mut b, "capability/grant").await["id"], "g2");

    // An invite: the token reaches the inviter only, the file is private.
    let (s, v) = post(
        &g,
        "admin",
        Some("admin-token"),
        r#"{"id":"inv1","kind":"space/invite","payload":{"participant_id":"new-agent","initial_capabilities":[{"kind":"chat"},{"kind":"mcp/proposal"}]}}"#,
    );
    assert_eq!(s, 200, "{v}");
    let token = v["token"].as_str().unwrap().to_owned();
    let ack = next_kind(&mut admin, "space/invite-ack").await;
    assert_eq!(ack["payload"]["token"], token.as_str());
    let pres = next_kind(&mut b, "system/presence").await;
    assert_eq!(pres["payload"]["event"], "invited");
    assert!(!pres.to_string().contains(&token));
    let file = g.path().join(".mew/tokens/new-agent.token");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
    let mut n = joined(&g, "new-agent", &token).await;
    send(
        &mut n,
        json!({"kind": "mcp/proposal", "payload": {"method": "tools/call"}}),
    )
    .await;
    assert_eq!(next_kind(&mut b, "mcp/proposal").await["from"], "new-agent");
    for bad in ["../evil", "a/b", "x\\y"] {
        let body = json!({"kind": "space/invite", "payload": {"participant_id": bad}}).to_string();
        assert_eq!(
            post(&g, "admin", Some("admin-token"), &body).0,
            400,
            "{bad}"
        );
    }
    assert!(!g.path().join(".mew/evil.token").exists());
    assert!(
        !g.everything_written().contains(&token),
        "the invite token is never logged"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn streams_over_websocket() {
    let g = Gateway::start(SPACE);
    let mut b = joined(&g, "bob", "bob-token").await;
    let mut a = joined(&g, "alice", "alice-token").await;
    send(&mut b, json!({"id": "sr", "kind": "stream/request", "payload": {"direction": "upload", "description": "d", "target": ["alice"]}})).await;
    let open = next_kind(&mut b, "stream/open").await;
    assert_eq!(open["correlation_id"], json!(["sr"]));
    assert_eq!(open["payload"]["owner"], "bob");
    let sid = open["payload"]["stream_id"].as_str().unwrap().to_owned();
    b.send(Message::Text(format!("#{sid}#chunk-1").into()))
        .await
        .unwrap();
    loop {
        let m = next(&mut a).await.unwrap();
        if m == Value::String(format!("#{sid}#chunk-1")) {
            break;
        }
    }
    // alice is not a writer.
    a.send(Message::Text(format!("#{sid}#forged").into()))
        .await
        .unwrap();
    assert_eq!(
        next_kind(&mut a, "system/error").await["payload"]["error"],
        "unauthorized_stream_write"
    );
    // A late joiner learns about the stream.
    let mut late = connect(&g).await;
    send(
        &mut late,
        json!({"type": "join", "participantId": "alice-2", "space": "s1", "token": "alice-token"}),
    )
    .await;
    let w = next_kind(&mut late, "system/welcome").await;
    assert_eq!(w["payload"]["active_streams"][0]["stream_id"], sid.as_str());
    assert_eq!(w["payload"]["active_streams"][0]["description"], "d");
}

#[tokio::test(flavor = "current_thread")]
async fn bad_input_drops_that_connection_not_the_gateway() {
    let mut g = Gateway::start(SPACE);
    let mut a = joined(&g, "alice", "alice-token").await;
    // Garbage on the TCP port.
    {
        let mut s = TcpStream::connect(("127.0.0.1", g.port)).unwrap();
        let _ = s.write_all(b"\x00\xff\xfe GARBAGE\r\n\r\n\x16\x03\x01");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
    // Not JSON, binary, invalid UTF-8, an over-size frame: each drops that connection.
    let mut j = joined(&g, "bob", "bob-token").await;
    j.send(Message::Text("{not json".into())).await.unwrap();
    assert!(ends(&mut j).await, "invalid JSON");
    let mut j = joined(&g, "bob", "bob-token").await;
    j.send(Message::Binary(vec![1u8, 2, 3].into()))
        .await
        .unwrap();
    assert!(ends(&mut j).await, "binary frame");
    {
        // A text frame whose payload is not UTF-8, written by hand.
        let mut s = TcpStream::connect(("127.0.0.1", g.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").unwrap();
        let mut head = [0u8; 1024];
        let _ = s.read(&mut head);
        s.write_all(&[0x81, 0x84, 0, 0, 0, 0, 0xff, 0xfe, 0xfd, 0xfc])
            .unwrap();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    let mut j = joined(&g, "bob", "bob-token").await;
    let huge = format!(
        r#"{{"kind":"chat","payload":{{"text":"{}"}}}}"#,
        "x".repeat(5 << 20)
    );
    let _ = j.send(Message::Text(huge.into())).await;
    assert!(ends(&mut j).await, "over-size frame");
    // A flood from one client is delivered in order to another.
    let mut b = joined(&g, "bob", "bob-token").await;
    for i in 0..2000 {
        send(
            &mut b,
            json!({"kind": "chat", "payload": {"text": format!("n{i}")}}),
        )
        .await;
    }
    let mut seen = 0;
    while seen < 2000 {
        let m = next_kind(&mut a, "chat").await;
        assert_eq!(m["payload"]["text"], format!("n{seen}"));
        seen += 1;
    }
    assert!(g.alive());
}

#[tokio::test(flavor = "current_thread")]
async fn a_client_that_never_reads_is_dropped_and_others_are_not_delayed() {
    let mut g = Gateway::start(SPACE);
    // The slow one: joins, then never reads; its socket buffers fill up.
    let slow = joined(&g, "alice", "alice-token").await;
    let mut reader = joined(&g, "admin", "admin-token").await;
    let text = "y".repeat(16 << 10);
    let body = json!({"kind": "chat", "payload": {"text": text}}).to_string();
    let mut delivered = 0;
    let start = Instant::now();
    while !stdout_has(&g, "alice left space s1") {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the slow client was never dropped"
        );
        for _ in 0..64 {
            assert_eq!(post(&g, "poster", Some("poster-token"), &body).0, 200);
        }
        for _ in 0..64 {
            next_kind(&mut reader, "chat").await;
            delivered += 1;
        }
    }
    // Past the slow client's queue bound (32 MiB of 16 KiB messages), and
    // the reader got every one of them.
    assert!(delivered >= 2048, "{delivered}");
    assert!(g.alive());
    drop(slow);
}

fn stdout_has(g: &Gateway, s: &str) -> bool {
    g.stdout.lock().unwrap().contains(s)
}

#[tokio::test(flavor = "current_thread")]
async fn a_thousand_joins() {
    raise_fd_limit(4096);
    // Presence is O(n²) envelopes: keep the JSONL logs out of this one.
    let g = Gateway::start_with(SPACE, &[("GATEWAY_LOGGING", "false")]);
    // Each connection is read by its own task from the moment it joins, so
    // it answers the gateway's pings however long the others take on a
    // loaded machine (one not read for 90 s is rightly dropped as silent).
    let (welcomed_tx, mut welcomed) = tokio::sync::mpsc::unbounded_channel::<()>();
    let (chatted_tx, mut chatted) = tokio::sync::mpsc::unbounded_channel::<String>();
    let mut readers = Vec::new();
    for i in 0..1000 {
        let mut ws = connect(&g).await;
        send(&mut ws, json!({"type": "join", "participantId": format!("c{i}"), "space": "s1", "token": "bob-token"})).await;
        let (welcomed_tx, chatted_tx) = (welcomed_tx.clone(), chatted_tx.clone());
        readers.push(tokio::spawn(async move {
            next_kind(&mut ws, "system/welcome").await;
            let _ = welcomed_tx.send(());
            let chat = next_kind(&mut ws, "chat").await;
            let _ = chatted_tx.send(chat["payload"]["text"].as_str().unwrap_or("").to_owned());
            ws
        }));
    }
    for _ in 0..1000 {
        welcomed.recv().await.unwrap();
    }
    let mut sender = connect(&g).await;
    send(
        &mut sender,
        json!({"type": "join", "participantId": "sender", "space": "s1", "token": "bob-token"}),
    )
    .await;
    next_kind(&mut sender, "system/welcome").await;
    let (_, health) = http(g.port, "GET", "/health", &[], b"");
    let v: Value = serde_json::from_str(&health).unwrap();
    // The 1000, the sender, and the one more /health has always counted
    // (1000 joins alone read 1001).
    assert_eq!(v["clients"], 1002, "{v}");
    // One message reaches all of them.
    send(
        &mut sender,
        json!({"kind": "chat", "payload": {"text": "to all"}}),
    )
    .await;
    for _ in 0..1000 {
        assert_eq!(chatted.recv().await.unwrap(), "to all");
    }
    for r in readers {
        drop(r.await.unwrap());
    }
}

fn raise_fd_limit(want: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard).unwrap();
    }
}

#[test]
fn silent_connections_are_closed() {
    let g = Gateway::start(SPACE);
    let mut s = TcpStream::connect(("127.0.0.1", g.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    // No request at all: hyper's header timeout closes it.
    let start = Instant::now();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    assert!(
        start.elapsed() < Duration::from_secs(59),
        "a silent socket was kept open"
    );
}

#[test]
fn output_log_from_the_first_post() {
    let g = Gateway::start(SPACE);
    let lazy = g.path().join("logs/lazy.log");
    assert!(!lazy.exists(), "lazy has no auto_connect");
    let (s, _) = post(
        &g,
        "lazy",
        Some("lazy-token"),
        r#"{"kind":"chat","payload":{"text":"first"}}"#,
    );
    assert_eq!(s, 200);
    assert!(wait_for(|| std::fs::read_to_string(&lazy)
        .unwrap_or_default()
        .contains("\"text\":\"first\"")));
    let text = std::fs::read_to_string(&lazy).unwrap();
    assert!(
        text.lines().next().unwrap().contains("system/welcome"),
        "{text}"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&lazy).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn a_symlinked_output_log_is_not_followed() {
    // Another user prepared the output log as a symlink to a file of ours.
    let victim_dir = tempfile::tempdir().unwrap();
    let victim = victim_dir.path().join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let yaml = "participants:\n  w: { tokens: [wt], output_log: ./out.log, auto_connect: true }\n  p: { tokens: [pt], capabilities: [ { kind: chat } ] }\n";
    let g = Gateway::start_prepared(yaml, |dir| {
        std::os::unix::fs::symlink(&victim, dir.join("out.log")).unwrap();
    });
    let (s, _) = post(
        &g,
        "p",
        Some("pt"),
        r#"{"id":"m1","kind":"chat","payload":{"text":"x"}}"#,
    );
    assert_eq!(s, 200);
    // The journal writes in order: once w's delivery is in the history, the
    // output log was tried.
    assert!(wait_for(|| g
        .log("envelope-history.jsonl")
        .contains("\"id\":\"m1\",\"envelope\"")
        && g.log("envelope-history.jsonl")
            .contains("\"participant\":\"w\"")));
    assert!(
        wait_for(|| stdout_has(&g, "cannot write")),
        "{}",
        g.stdout.lock().unwrap()
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
}

#[test]
fn config_errors_are_located_and_nothing_starts() {
    let dir = tempfile::tempdir().unwrap();
    let cfg: PathBuf = dir.path().join("space.yaml");
    std::fs::write(&cfg, "participants:\n  a:\n    capabilities: [chat]\n").unwrap();
    let out = common::run(
        {
            let mut c = Command::new(common::MEW);
            c.args(["gateway", "start", "--port", "0", "--space-config"])
                .arg(&cfg);
            c
        },
        Duration::from_secs(30),
    );
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr.contains("participants.a.capabilities[0]"),
        "{}",
        out.stderr
    );
}

// ----- `mew space up` runs mew's own gateway --------------------------------

fn status(space: &common::Space) -> Value {
    let mut c = space.mew();
    c.args(["space", "status", "--json"]);
    let out = common::run(c, Duration::from_secs(60));
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn port_of(status: &Value) -> u16 {
    status["gateway_url"]
        .as_str()
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap()
}

fn down(space: &common::Space) {
    let mut c = space.mew();
    c.args(["space", "down"]);
    let out = common::run(c, Duration::from_secs(60));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        space.wait_no_survivors().is_empty(),
        "something outlived down"
    );
}

/// A free port now (the kernel's pick); mew takes the next one if it is gone.
fn some_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn space_up_without_a_gateway_block_runs_mews_gateway() {
    // An upstream-style file: participants, no gateway block. The agent
    // polls the gateway's health itself: it must not start before it is ready.
    let space = common::Space::new(
        r#"
space: { id: up1 }
participants:
  agent:
    command: sh
    args: ["-c", "curl -sf http://127.0.0.1:${PORT}/health >/dev/null && echo gateway-was-ready; exec sleep 300", "agent", "--token", "agent-token"]
    auto_start: true
    tokens: [agent-token]
    capabilities: [ { kind: chat } ]
  client:
    tokens: [client-token]
    capabilities: [ { kind: chat } ]
    output_log: ./logs/client.log
    auto_connect: true
"#,
    );
    let port = some_port().to_string();
    let mut c = space.mew();
    c.args(["space", "up", "-d", "--wait", "--port", &port]);
    let out = common::run(c, Duration::from_secs(120));
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let st = status(&space);
    let gw = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "gateway")
        .unwrap()
        .clone();
    assert_eq!(gw["kind"], "gateway");
    assert_eq!(gw["ready"], true);
    assert!(
        gw["command"].as_str().unwrap().contains("gateway start"),
        "{gw}"
    );
    let port = port_of(&st);
    // A literal token in a command line is shown masked.
    let agent = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "agent")
        .unwrap();
    assert!(
        agent["command"].as_str().unwrap().contains("--token ****"),
        "{agent}"
    );
    assert!(!st.to_string().contains("agent-token"));
    assert!(
        wait_for(|| space.log("agent").contains("gateway-was-ready")),
        "{}",
        space.log("agent")
    );
    // Where the upstream CLI put the output, scripts find it.
    let upstream = |name: &str| std::fs::read_to_string(space.path().join("logs").join(name));
    assert!(
        wait_for(|| upstream("agent.log").is_ok_and(|t| t.contains("gateway-was-ready"))),
        "{:?}",
        upstream("agent.log")
    );
    assert!(
        upstream("gateway.log").is_ok_and(|t| t.contains("Gateway listening on port")),
        "{:?}",
        upstream("gateway.log")
    );
    // The no-command participant is connected through its output log.
    let (s, _) = http(
        port,
        "POST",
        "/participants/client/messages",
        &[("Authorization", "Bearer client-token")],
        br#"{"kind":"chat","payload":{"text":"through mew"}}"#,
    );
    assert_eq!(s, 200);
    let out_log = space.path().join("logs/client.log");
    assert!(wait_for(|| std::fs::read_to_string(&out_log)
        .unwrap_or_default()
        .contains("through mew")));
    assert!(wait_for(|| std::fs::read_to_string(
        space.path().join(".mew/logs/envelope-history.jsonl")
    )
    .unwrap_or_default()
    .contains("\"event\":\"received\"")));
    // The gateway's own output is in its process log, without tokens.
    assert!(
        space.log("gateway").contains("Gateway listening on port"),
        "{}",
        space.log("gateway")
    );
    assert!(!space.log("gateway").contains("client-token"));
    down(&space);
}

#[test]
fn a_killed_gateway_is_restarted_and_a_taken_port_is_skipped() {
    let space = common::Space::new("participants:\n  human: { tokens: [h] }\n");
    // Take a port; mew must move to the next free one.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let mut c = space.mew();
    c.args(["space", "up", "-d", "--wait", "--port", &port]);
    let out = common::run(c, Duration::from_secs(120));
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let st = status(&space);
    let got = port_of(&st);
    assert_ne!(got.to_string(), port, "the taken port was used");
    let pid = st["processes"][0]["pid"].as_u64().unwrap();
    common::kill(u32::try_from(pid).unwrap(), "KILL");
    // on-failure: a new gateway, healthy again on the same port.
    assert!(wait_for(|| {
        let st = status(&space);
        let p = &st["processes"][0];
        p["restarts"].as_u64() >= Some(1) && p["ready"] == true
    }));
    assert_eq!(http(got, "GET", "/health", &[], b"").0, 200);
    drop(taken);
    down(&space);
}

#[test]
fn gateway_false_runs_none_and_warns() {
    let space = common::Space::new("gateway: false\nparticipants:\n  a: { command: sleep 300 }\n");
    let mut c = space.mew();
    c.args(["space", "check"]);
    let out = common::run(c, Duration::from_secs(60));
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout.contains("nothing in this space runs a gateway"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("gateway (gateway)"), "{}", out.stdout);
}

#[test]
fn an_invite_replaces_a_token_file_left_by_an_earlier_run() {
    let g = Gateway::start_prepared(SPACE, |dir| {
        std::fs::create_dir_all(dir.join(".mew/tokens")).unwrap();
        std::fs::write(dir.join(".mew/tokens/again.token"), "stale-from-last-run").unwrap();
    });
    let (s, v) = post(
        &g,
        "admin",
        Some("admin-token"),
        r#"{"kind":"space/invite","payload":{"participant_id":"again"}}"#,
    );
    assert_eq!(s, 200, "{v}");
    let file = g.path().join(".mew/tokens/again.token");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        v["token"].as_str().unwrap()
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
