//! `mew bridge start` against the real binary, a real `mew gateway start`
//! and a small MCP server (`tests/fixtures/mcp_server.py`): requests and
//! answers, errors, a server that never initializes, one that crashes,
//! signals, and that the server never outlives the bridge.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Generous: the machine running the tests may be loaded.
const DEADLINE: Duration = Duration::from_secs(60);
const TOKEN: &str = "fs-secret-token-4f1c";

const SPACE: &str = r#"
space: { id: s7, name: bridge test }
participants:
  fs:
    tokens: [fs-secret-token-4f1c]
    capabilities: [ { kind: mcp/response }, { kind: chat }, { kind: participant/status } ]
  client:
    tokens: [client-token]
    capabilities: [ { kind: mcp/request }, { kind: chat } ]
"#;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcp_server.py")
}

struct Gateway {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Gateway {
    fn start() -> Gateway {
        Gateway::start_on(0)
    }

    fn start_on(port: u16) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".mew")).unwrap();
        let yaml = dir.path().join(".mew/space.yaml");
        std::fs::write(&yaml, SPACE).unwrap();
        let (child, port) = common::spawn_gateway(&yaml, port, Stdio::null());
        let port = port
            .recv_timeout(DEADLINE)
            .expect("the gateway did not start");
        Gateway {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running `mew bridge start`, its output collected.
struct Bridge {
    child: Child,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    pid_file: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Bridge {
    /// `mew bridge start` as mew's own space runner calls it: the command
    /// after `--`, the token in `$MEW_TOKEN_FS`.
    fn start(url: &str, flags: &[&str], server_args: &[&str]) -> Bridge {
        let tmp = tempfile::tempdir().unwrap();
        let pid_file = tmp.path().join("server.pid");
        let mut cmd = Command::new(common::MEW);
        cmd.args(["bridge", "start", "--gateway", url, "--space", "s7"])
            .args(["--participant-id", "fs"])
            .args(flags)
            .arg("--")
            .arg("python3")
            .arg(fixture())
            .arg("--pid-file")
            .arg(&pid_file)
            .args(server_args);
        Bridge::spawn(cmd, pid_file, tmp)
    }

    fn spawn(mut cmd: Command, pid_file: PathBuf, tmp: tempfile::TempDir) -> Bridge {
        let mut child = cmd
            .env_remove("MEW_TOKEN")
            .env("MEW_TOKEN_FS", TOKEN)
            .env_remove("MEW_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = common::Captured::of(child.stdout.take().unwrap()).0;
        let stderr = common::Captured::of(child.stderr.take().unwrap()).0;
        Bridge {
            child,
            stdout,
            stderr,
            pid_file,
            _tmp: tmp,
        }
    }

    fn output(&self) -> String {
        format!(
            "--- stdout\n{}--- stderr\n{}",
            self.stdout.lock().unwrap(),
            self.stderr.lock().unwrap()
        )
    }

    /// The MCP server's pid, once it has written it.
    fn server_pid(&self) -> u32 {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Ok(s) = std::fs::read_to_string(&self.pid_file)
                && let Ok(pid) = s.trim().parse()
            {
                return pid;
            }
            assert!(
                Instant::now() < until,
                "the MCP server never started\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let until = Instant::now() + DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < until,
                "the bridge did not exit\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::try_from(sig).unwrap()).unwrap();
    }

    fn wait_stderr(&self, needle: &str) {
        let until = Instant::now() + DEADLINE;
        while !self.stderr.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < until,
                "no `{needle}` from the bridge\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn assert_no_token(&self) {
        assert!(!self.output().contains(TOKEN), "the token was printed");
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a process runs (a zombie does not count).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

fn assert_gone(pid: u32, bridge: &Bridge) {
    let until = Instant::now() + DEADLINE;
    while running(pid) {
        assert!(
            Instant::now() < until,
            "the MCP server {pid} outlived the bridge\n{}",
            bridge.output()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next envelope `pick` accepts, within the deadline.
async fn next_where(ws: &mut Ws, what: &str, pick: impl Fn(&Value) -> bool) -> Value {
    let until = tokio::time::Instant::now() + DEADLINE;
    loop {
        match tokio::time::timeout_at(until, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap_or(Value::Null);
                if pick(&v) {
                    return v;
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("the connection ended waiting for {what}: {other:?}"),
            Err(_) => panic!("no {what} within {DEADLINE:?}"),
        }
    }
}

/// Join as `client`, then start the bridge and wait until it has joined.
async fn client_and_bridge(g: &Gateway, flags: &[&str], server_args: &[&str]) -> (Ws, Bridge) {
    let (mut ws, _) = tokio_tungstenite::connect_async(g.url()).await.unwrap();
    send(
        &mut ws,
        json!({"type": "join", "participantId": "client", "space": "s7", "token": "client-token"}),
    )
    .await;
    next_where(&mut ws, "the welcome", |v| v["kind"] == "system/welcome").await;
    let bridge = Bridge::start(&g.url(), flags, server_args);
    next_where(&mut ws, "the bridge's join", |v| {
        v["kind"] == "system/presence"
            && v["payload"]["event"] == "join"
            && v["payload"]["participant"]["id"] == "fs"
    })
    .await;
    (ws, bridge)
}

/// Send an `mcp/request` to `to` and wait for the `mcp/response` to it.
async fn request(ws: &mut Ws, id: &str, to: &str, method: &str, params: Value) -> Value {
    send(
        ws,
        json!({"id": id, "kind": "mcp/request", "to": [to],
               "payload": {"method": method, "params": params}}),
    )
    .await;
    let r = next_where(ws, &format!("the response to {id}"), |v| {
        v["kind"] == "mcp/response" && v["correlation_id"][0] == id
    })
    .await;
    assert_eq!(r["from"], "fs", "{r}");
    assert_eq!(r["to"], json!(["client"]), "{r}");
    assert_eq!(r["correlation_id"], json!([id]), "{r}");
    r
}

#[tokio::test(flavor = "current_thread")]
async fn requests_reach_the_mcp_server_and_answers_come_back_correlated() {
    let g = Gateway::start();
    let (mut ws, mut bridge) = client_and_bridge(&g, &[], &[]).await;

    let r = request(&mut ws, "req-list", "fs", "tools/list", json!({})).await;
    let names: Vec<&str> = r["payload"]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"echo") && names.contains(&"add"),
        "{names:?}"
    );

    let r = request(
        &mut ws,
        "req-echo",
        "fs",
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "Test content"}}),
    )
    .await;
    assert_eq!(
        r["payload"]["result"]["content"][0]["text"], "Test content",
        "{r}"
    );

    // Not for the bridge: ignored (the answer to the next request comes
    // first, and nothing answers this one).
    send(
        &mut ws,
        json!({"id": "req-other", "kind": "mcp/request", "to": ["someone-else"],
               "payload": {"method": "tools/list", "params": {}}}),
    )
    .await;
    let r = request(
        &mut ws,
        "req-add",
        "fs",
        "tools/call",
        json!({"name": "add", "arguments": {"a": 2, "b": 3}}),
    )
    .await;
    assert_eq!(r["payload"]["result"]["content"][0]["text"], "5", "{r}");

    let r = request(&mut ws, "req-res", "fs", "resources/list", json!({})).await;
    assert_eq!(
        r["payload"]["result"]["resources"][0]["uri"],
        "file:///fixture.txt"
    );
    let r = request(
        &mut ws,
        "req-read",
        "fs",
        "resources/read",
        json!({"uri": "file:///fixture.txt"}),
    )
    .await;
    assert_eq!(
        r["payload"]["result"]["contents"][0]["text"],
        "fixture contents"
    );

    // The bridge's token is not passed on to the MCP server.
    let r = request(
        &mut ws,
        "req-env",
        "fs",
        "tools/call",
        json!({"name": "env", "arguments": {"name": "MEW_TOKEN_FS"}}),
    )
    .await;
    assert_eq!(r["payload"]["result"]["content"][0]["text"], "<unset>");

    // The server's stderr is passed through, prefixed.
    bridge.wait_stderr("[fs mcp] fixture mcp server started");
    let pid = bridge.server_pid();
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit().success(), "{}", bridge.output());
    assert_gone(pid, &bridge);
    bridge.assert_no_token();
}

#[tokio::test(flavor = "current_thread")]
async fn mcp_errors_come_back_as_errors() {
    let g = Gateway::start();
    let (mut ws, mut bridge) = client_and_bridge(&g, &[], &[]).await;

    let r = request(
        &mut ws,
        "req-fail",
        "fs",
        "tools/call",
        json!({"name": "fail", "arguments": {}}),
    )
    .await;
    assert!(r["payload"].get("result").is_none(), "{r}");
    assert_eq!(r["payload"]["error"]["code"], -32042, "{r}");
    assert_eq!(r["payload"]["error"]["message"], "the fail tool failed");
    assert_eq!(r["payload"]["error"]["data"]["why"], "asked");

    let r = request(&mut ws, "req-nope", "fs", "prompts/list", json!({})).await;
    assert_eq!(r["payload"]["error"]["code"], -32601, "{r}");

    // A request without a method is refused by the gateway already; one
    // without params is passed on without them.
    send(
        &mut ws,
        json!({"id": "req-noparams", "kind": "mcp/request", "to": ["fs"],
               "payload": {"method": "tools/list"}}),
    )
    .await;
    let r = next_where(&mut ws, "the answer without params", |v| {
        v["kind"] == "mcp/response" && v["correlation_id"][0] == "req-noparams"
    })
    .await;
    assert!(r["payload"]["result"]["tools"].is_array(), "{r}");

    bridge.signal(libc::SIGINT);
    assert!(bridge.wait_exit().success(), "{}", bridge.output());
    bridge.assert_no_token();
}

#[test]
fn a_server_that_never_initializes_fails_the_bridge_within_the_init_timeout() {
    // No gateway is needed: the bridge initializes the server before joining.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let mut bridge = Bridge::start(
        &format!("ws://127.0.0.1:{port}"),
        &["--init-timeout", "1500"],
        &["--never-init"],
    );
    let pid = bridge.server_pid();
    let status = bridge.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", bridge.output());
    let out = bridge.output();
    assert!(
        out.contains("did not initialize") && out.contains("--init-timeout"),
        "{out}"
    );
    // Not before the timeout.
    assert!(started.elapsed() >= Duration::from_millis(1500));
    assert_gone(pid, &bridge);
    bridge.assert_no_token();
}

#[tokio::test(flavor = "current_thread")]
async fn a_crashing_server_answers_its_requester_and_ends_the_bridge() {
    let g = Gateway::start();
    let (mut ws, mut bridge) = client_and_bridge(&g, &[], &[]).await;
    let pid = bridge.server_pid();

    let r = request(
        &mut ws,
        "req-crash",
        "fs",
        "tools/call",
        json!({"name": "crash", "arguments": {}}),
    )
    .await;
    let msg = r["payload"]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(msg.contains("exited with status 3"), "{r}");
    assert_eq!(r["payload"]["error"]["code"], -32603);

    // The space hears about it (fs may send participant/status).
    let s = next_where(&mut ws, "the error status", |v| {
        v["kind"] == "participant/status" && v["from"] == "fs"
    })
    .await;
    assert_eq!(s["payload"]["status"], "error", "{s}");

    let status = bridge.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", bridge.output());
    assert_gone(pid, &bridge);
    bridge.wait_stderr("[fs mcp] crashing as asked");
    bridge.assert_no_token();
}

#[tokio::test(flavor = "current_thread")]
async fn sigkill_of_the_bridge_takes_the_mcp_server_down() {
    let g = Gateway::start();
    let (_ws, mut bridge) = client_and_bridge(&g, &[], &[]).await;
    let pid = bridge.server_pid();
    assert!(running(pid));
    bridge.signal(libc::SIGKILL);
    bridge.wait_exit();
    assert_gone(pid, &bridge);
}

#[tokio::test(flavor = "current_thread")]
async fn notifications_become_chat_and_oversized_lines_are_dropped() {
    let g = Gateway::start();
    let (mut ws, mut bridge) = client_and_bridge(&g, &["--request-timeout", "3000"], &[]).await;

    // The server sends the notification, then the answer: in that order.
    send(
        &mut ws,
        json!({"id": "req-log", "kind": "mcp/request", "to": ["fs"],
               "payload": {"method": "tools/call",
                           "params": {"name": "log", "arguments": {"text": "disk almost full"}}}}),
    )
    .await;
    let chat = next_where(&mut ws, "the log as chat", |v| {
        v["kind"] == "chat" && v["from"] == "fs"
    })
    .await;
    let r = next_where(&mut ws, "the answer to req-log", |v| {
        v["kind"] == "mcp/response" && v["correlation_id"][0] == "req-log"
    })
    .await;
    assert_eq!(r["payload"]["result"]["content"][0]["text"], "logged");
    let text = chat["payload"]["text"].as_str().unwrap();
    assert!(
        text.starts_with("[MCP] ") && text.contains("disk almost full"),
        "{chat}"
    );

    // A 17 MiB answer is dropped: the requester gets the timeout error, and
    // the bridge goes on.
    let r = request(
        &mut ws,
        "req-big",
        "fs",
        "tools/call",
        json!({"name": "big", "arguments": {}}),
    )
    .await;
    let msg = r["payload"]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(msg.contains("timeout"), "{r}");
    bridge.wait_stderr("-byte line from the MCP server (over 16 MiB)");
    let r = request(
        &mut ws,
        "req-after",
        "fs",
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "still here"}}),
    )
    .await;
    assert_eq!(r["payload"]["result"]["content"][0]["text"], "still here");

    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit().success(), "{}", bridge.output());
}

#[tokio::test(flavor = "current_thread")]
async fn sigterm_answers_what_is_pending_and_stops_the_server() {
    let g = Gateway::start();
    let (mut ws, mut bridge) = client_and_bridge(&g, &[], &[]).await;
    let pid = bridge.server_pid();
    send(
        &mut ws,
        json!({"id": "req-slow", "kind": "mcp/request", "to": ["fs"],
               "payload": {"method": "tools/call",
                           "params": {"name": "slow", "arguments": {"seconds": 600}}}}),
    )
    .await;
    // The server has the request once it says so.
    bridge.wait_stderr("[fs mcp] slow tool started");
    bridge.signal(libc::SIGTERM);
    let r = next_where(&mut ws, "the answer to the pending request", |v| {
        v["kind"] == "mcp/response" && v["correlation_id"][0] == "req-slow"
    })
    .await;
    assert!(
        r["payload"]["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("shutting down"),
        "{r}"
    );
    assert!(bridge.wait_exit().success(), "{}", bridge.output());
    assert_gone(pid, &bridge);
}

#[tokio::test(flavor = "current_thread")]
async fn upstream_flags_env_and_cwd_reach_the_server() {
    let g = Gateway::start();
    let (mut ws, _) = tokio_tungstenite::connect_async(g.url()).await.unwrap();
    send(
        &mut ws,
        json!({"type": "join", "participantId": "client", "space": "s7", "token": "client-token"}),
    )
    .await;
    next_where(&mut ws, "the welcome", |v| v["kind"] == "system/welcome").await;
    let tmp = tempfile::tempdir().unwrap();
    let pid_file = tmp.path().join("server.pid");
    let cwd = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(common::MEW);
    cmd.args(["bridge", "start", "-g", &g.url(), "-s", "s7", "-p", "fs"])
        .args(["-m", "python3", "--mcp-args"])
        .arg(format!(
            "{},--pid-file,{}",
            fixture().display(),
            pid_file.display()
        ))
        .args(["--mcp-env", "FIXTURE_VAR=a=b,OTHER=1", "--mcp-cwd"])
        .arg(cwd.path())
        .args([
            "--capabilities",
            r#"[{"kind":"mcp/response"},{"kind":"chat"}]"#,
        ]);
    let mut bridge = Bridge::spawn(cmd, pid_file, tmp);
    next_where(&mut ws, "the bridge's join", |v| {
        v["kind"] == "system/presence" && v["payload"]["participant"]["id"] == "fs"
    })
    .await;
    let r = request(
        &mut ws,
        "req-env",
        "fs",
        "tools/call",
        json!({"name": "env", "arguments": {"name": "FIXTURE_VAR"}}),
    )
    .await;
    assert_eq!(r["payload"]["result"]["content"][0]["text"], "a=b");
    let r = request(
        &mut ws,
        "req-cwd",
        "fs",
        "tools/call",
        json!({"name": "cwd", "arguments": {}}),
    )
    .await;
    let want = cwd.path().canonicalize().unwrap();
    assert_eq!(
        r["payload"]["result"]["content"][0]["text"],
        want.to_str().unwrap()
    );
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit().success(), "{}", bridge.output());
}

#[tokio::test(flavor = "current_thread")]
async fn losing_the_gateway_without_reconnect_ends_the_bridge() {
    let mut g = Gateway::start();
    let (_ws, mut bridge) = client_and_bridge(&g, &["--reconnect", "false"], &[]).await;
    let pid = bridge.server_pid();
    g.child.kill().unwrap();
    g.child.wait().unwrap();
    let status = bridge.wait_exit();
    assert_eq!(status.code(), Some(1), "{}", bridge.output());
    assert!(bridge.output().contains("gateway"), "{}", bridge.output());
    assert_gone(pid, &bridge);
    bridge.assert_no_token();
}

#[tokio::test(flavor = "current_thread")]
async fn the_bridge_rejoins_a_restarted_gateway() {
    let mut g = Gateway::start();
    let port = g.port;
    let (_ws, mut bridge) = client_and_bridge(&g, &["--max-reconnects", "30"], &[]).await;
    let pid = bridge.server_pid();
    g.child.kill().unwrap();
    g.child.wait().unwrap();
    drop(g);
    bridge.wait_stderr("gateway connection lost");
    let g = Gateway::start_on(port);
    let (mut ws, _) = tokio_tungstenite::connect_async(g.url()).await.unwrap();
    send(
        &mut ws,
        json!({"type": "join", "participantId": "client", "space": "s7", "token": "client-token"}),
    )
    .await;
    let w = next_where(&mut ws, "the welcome", |v| v["kind"] == "system/welcome").await;
    // The bridge may have rejoined before us (in the welcome) or after (presence).
    let listed = w["payload"]["participants"]
        .as_array()
        .is_some_and(|ps| ps.iter().any(|p| p["id"] == "fs"));
    if !listed {
        next_where(&mut ws, "the bridge's rejoin", |v| {
            v["kind"] == "system/presence" && v["payload"]["participant"]["id"] == "fs"
        })
        .await;
    }
    let r = request(
        &mut ws,
        "req-again",
        "fs",
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "back"}}),
    )
    .await;
    assert_eq!(r["payload"]["result"]["content"][0]["text"], "back");
    // The same MCP server all along.
    assert_eq!(bridge.server_pid(), pid);
    assert!(running(pid));
    bridge.signal(libc::SIGTERM);
    assert!(bridge.wait_exit().success(), "{}", bridge.output());
    bridge.assert_no_token();
}

#[test]
fn bad_flags_are_refused_before_anything_starts() {
    for (args, needle) in [
        (vec!["--capabilities", "{nope"], "--capabilities"),
        (vec!["--mcp-env", "NOEQUALS"], "KEY=VALUE"),
    ] {
        let out = Command::new(common::MEW)
            .args([
                "bridge",
                "start",
                "-g",
                "ws://127.0.0.1:1",
                "-s",
                "s",
                "-p",
                "fs",
            ])
            .args(&args)
            .args(["--", "python3", "-c", "pass"])
            .env("MEW_TOKEN_FS", TOKEN)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
    let out = Command::new(common::MEW)
        .args([
            "bridge",
            "start",
            "-g",
            "ws://127.0.0.1:1",
            "-s",
            "s",
            "-p",
            "fs",
        ])
        .env_remove("MEW_TOKEN")
        .env_remove("MEW_TOKEN_FS")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no token"));
}
