//! `mew client connect`, `mew token create` and `mew space connect` against
//! a real gateway (`mew gateway start`, or the one `mew space up` runs), with
//! real FIFOs. No sleeps: every wait is for a condition, with a generous
//! deadline (the machine may be loaded).
#![allow(clippy::unwrap_used)]

use crate::common;
use common::{Captured, free_port};

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

/// How long any one condition may take.
const W: Duration = Duration::from_secs(60);

const ALICE: &str = "alice-secret-token-3f9a1c";
const BOB: &str = "bob-secret-token-77d2e0";

/// Two participants with tokens, and a watcher whose every envelope the
/// gateway writes to `watcher.log` from its start.
const SPACE: &str = r#"
space: { id: ptest }
participants:
  alice: { tokens: [alice-secret-token-3f9a1c], capabilities: [ { kind: "*" } ] }
  bob: { tokens: [bob-secret-token-77d2e0], capabilities: [ { kind: "*" } ] }
  watcher:
    tokens: [watcher-token]
    capabilities: [ { kind: chat } ]
    output_log: ./watcher.log
    auto_connect: true
"#;

// ---- helpers ------------------------------------------------------------------

fn space_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("mew-part-")
        .tempdir()
        .unwrap();
    fs::create_dir_all(dir.path().join(".mew")).unwrap();
    fs::write(dir.path().join(".mew/space.yaml"), SPACE).unwrap();
    dir
}

/// `mew gateway start` for the space in `dir`, on `port` (0: any).
struct Gateway {
    child: Child,
    port: u16,
}

impl Gateway {
    fn start(dir: &Path, port: u16) -> Gateway {
        let (mut child, rx) =
            common::spawn_gateway(&dir.join(".mew/space.yaml"), port, Stdio::piped());
        let err = Captured::of(child.stderr.take().unwrap());
        let Ok(port) = rx.recv_timeout(W) else {
            let _ = child.kill();
            panic!("the gateway did not start: {}", err.text());
        };
        Gateway { child, port }
    }

    fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `mew client connect`.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    out: Captured,
    err: Captured,
}

impl Client {
    /// `args` after `client connect`; the token goes in `$MEW_TOKEN`.
    fn start(token: &str, args: &[&str]) -> Client {
        let mut cmd = Command::new(common::MEW);
        cmd.args(["client", "connect"]).args(args);
        Client::spawn(cmd, token)
    }

    fn spawn(mut cmd: Command, token: &str) -> Client {
        let mut child = cmd
            .env("MEW_TOKEN", token)
            .env_remove("MEW_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Client {
            stdin: child.stdin.take(),
            out: Captured::of(child.stdout.take().unwrap()),
            err: Captured::of(child.stderr.take().unwrap()),
            child,
        }
    }

    fn send(&mut self, line: &str) {
        let s = self.stdin.as_mut().unwrap();
        s.write_all(line.as_bytes()).unwrap();
        s.write_all(b"\n").unwrap();
        s.flush().unwrap();
    }

    fn wait_err(&self, what: &str) {
        assert!(
            common::wait_for(W, || self.err.text().contains(what)),
            "no {what:?} on the client's stderr:\n{}",
            self.err.text()
        );
    }

    /// Close stdin and wait for the exit code.
    fn finish(mut self) -> (Option<i32>, String, String) {
        drop(self.stdin.take());
        let mut code = None;
        assert!(
            common::wait_for(W, || {
                code = self.child.try_wait().unwrap().map(|s| s.code());
                code.is_some()
            }),
            "the client did not exit:\n{}",
            self.err.text()
        );
        // The pipes close with the process: let the readers catch up.
        let (out, err) = (std::mem::take(&mut self.out), std::mem::take(&mut self.err));
        common::wait_for(Duration::from_secs(5), || {
            Arc::strong_count(&out.0) == 1 && Arc::strong_count(&err.0) == 1
        });
        (code.unwrap(), out.text(), err.text())
    }

    fn signal(&self, sig: &str) {
        common::kill(self.child.id(), sig);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until `path` has a JSON line for which `pred` holds; return it.
fn wait_line(path: &Path, pred: impl Fn(&Value) -> bool) -> Value {
    let mut found = None;
    let ok = common::wait_for(W, || {
        found = fs::read_to_string(path).ok().and_then(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| pred(v))
        });
        found.is_some()
    });
    assert!(
        ok,
        "no such line in {}:\n{}",
        path.display(),
        fs::read_to_string(path).unwrap_or_default()
    );
    found.unwrap()
}

fn chat_with(text: &str) -> impl Fn(&Value) -> bool + '_ {
    move |v| v["kind"] == "chat" && v["payload"]["text"] == text
}

fn chat(text: &str) -> String {
    serde_json::json!({"kind": "chat", "payload": {"text": text}}).to_string()
}

/// Write `line` to the FIFO as one writer would (open, write, close).
fn write_fifo(path: &Path, line: &str) {
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all(format!("{line}\n").as_bytes()).unwrap();
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777
}

// ---- mew client connect ----------------------------------------------------------

#[test]
fn stdin_lines_reach_the_space_and_bad_lines_are_reported() {
    let dir = space_dir();
    let gw = Gateway::start(dir.path(), 0);
    let url = gw.url();
    let mut a = Client::start(ALICE, &["-g", &url, "-s", "ptest", "-p", "alice"]);
    a.send("this is not json");
    a.send("[1, 2]");
    a.send("");
    a.send(&chat("hello from alice"));
    let seen = wait_line(
        &dir.path().join("watcher.log"),
        chat_with("hello from alice"),
    );
    assert_eq!(seen["from"], "alice");
    a.wait_err("line 1: not JSON");
    a.wait_err("line 2: not a JSON object");
    // The client received it too (the gateway delivers to everyone).
    assert!(common::wait_for(W, || a
        .out
        .text()
        .contains("hello from alice")));
    a.send("quit");
    let (code, out, err) = a.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(
        !err.contains("line 3"),
        "a blank line is not an error: {err}"
    );
    assert!(err.contains("connected to"), "{err}");
    for line in out.lines() {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(v.is_object());
    }
    assert!(out.contains("system/welcome"), "{out}");
    assert!(
        !out.contains(ALICE) && !err.contains(ALICE),
        "the token was shown"
    );
}

#[test]
fn a_line_sent_before_the_gateway_listens_is_delivered_once_it_does() {
    let dir = space_dir();
    let port = free_port();
    let url = format!("ws://127.0.0.1:{port}");
    let mut a = Client::start(ALICE, &["-g", &url, "-s", "ptest", "-p", "alice"]);
    a.wait_err("connecting to");
    a.send(&chat("sent early"));
    // End of input while still not connected: what is queued still goes.
    drop(a.stdin.take());
    let _gw = Gateway::start(dir.path(), port);
    let seen = wait_line(&dir.path().join("watcher.log"), chat_with("sent early"));
    assert_eq!(seen["from"], "alice");
    let (code, out, err) = a.finish();
    assert_eq!(code, Some(0), "{err}");
    let copies = fs::read_to_string(dir.path().join("watcher.log"))
        .unwrap()
        .matches("sent early")
        .count();
    assert_eq!(copies, 1, "sent exactly once");
    assert!(!out.contains(ALICE) && !err.contains(ALICE));
}

#[test]
fn fifo_in_and_output_file_round_trip_across_writers() {
    let dir = space_dir();
    let gw = Gateway::start(dir.path(), 0);
    let url = gw.url();
    // Neither the FIFO nor the output file's directory exists yet.
    let fifo = dir.path().join("fifos/bob-in");
    let out_file = dir.path().join("out/deeper/bob.jsonl");
    let b = Client::start(
        BOB,
        &[
            "-g",
            &url,
            "-s",
            "ptest",
            "-p",
            "bob",
            "--fifo-in",
            fifo.to_str().unwrap(),
            "--output-file",
            out_file.to_str().unwrap(),
        ],
    );
    b.wait_err("connected to");
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert_eq!(mode(&fifo), 0o600);
    assert_eq!(mode(&out_file), 0o600);
    wait_line(&out_file, |v| v["kind"] == "system/welcome");

    // Each line from its own writer: the client keeps reading after each one closes.
    write_fifo(&fifo, &chat("first from bob"));
    wait_line(&dir.path().join("watcher.log"), chat_with("first from bob"));
    write_fifo(&fifo, "{broken");
    write_fifo(&fifo, &chat("second from bob"));
    wait_line(
        &dir.path().join("watcher.log"),
        chat_with("second from bob"),
    );
    b.wait_err("line 2: not JSON");

    // Someone else's message lands in bob's output file.
    let mut a = Client::start(ALICE, &["-g", &url, "-s", "ptest", "-p", "alice"]);
    a.send(&chat("to bob"));
    let got = wait_line(&out_file, chat_with("to bob"));
    assert_eq!(got["from"], "alice");
    a.send("quit");
    assert_eq!(a.finish().0, Some(0));

    b.signal("TERM");
    let (code, out, err) = b.finish();
    assert_eq!(code, Some(0), "SIGTERM is a clean exit: {err}");
    assert!(
        out.is_empty(),
        "with --output-file, stdout stays empty: {out}"
    );
    assert!(!err.contains(BOB), "the token was shown: {err}");
    assert!(!fs::read_to_string(&out_file).unwrap().contains(BOB));
}

#[test]
fn fifo_out_is_written_for_a_reader_that_comes_late() {
    let dir = space_dir();
    let gw = Gateway::start(dir.path(), 0);
    let url = gw.url();
    let fifo_in = dir.path().join("fifos/bob-in");
    let fifo_out = dir.path().join("fifos/bob-out");
    let b = Client::start(
        BOB,
        &[
            "-g",
            &url,
            "-s",
            "ptest",
            "-p",
            "bob",
            "--fifo-in",
            fifo_in.to_str().unwrap(),
            "--fifo-out",
            fifo_out.to_str().unwrap(),
        ],
    );
    // Nobody reads bob-out yet: the client still works.
    b.wait_err("connected to");
    write_fifo(&fifo_in, &chat("bob without a reader"));
    wait_line(
        &dir.path().join("watcher.log"),
        chat_with("bob without a reader"),
    );
    assert_eq!(mode(&fifo_out), 0o600);
    // A reader now: it gets what waited (the welcome first), then bob's own chat.
    let reader = fs::File::open(&fifo_out).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first: Value = serde_json::from_str(&rx.recv_timeout(W).unwrap()).unwrap();
    assert_eq!(first["kind"], "system/welcome");
    let mut a = Client::start(ALICE, &["-g", &url, "-s", "ptest", "-p", "alice"]);
    a.send(&chat("alice to the fifo"));
    loop {
        let line = rx.recv_timeout(W).expect("alice's chat on bob-out");
        let v: Value = serde_json::from_str(&line).unwrap();
        if chat_with("alice to the fifo")(&v) {
            break;
        }
    }
    a.send("quit");
    assert_eq!(a.finish().0, Some(0));
    b.signal("INT");
    let (code, _, err) = b.finish();
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn a_fifo_client_survives_a_gateway_restart() {
    let dir = space_dir();
    let port = free_port();
    let mut gw = Gateway::start(dir.path(), port);
    let fifo = dir.path().join("fifos/bob-in");
    let b = Client::start(
        BOB,
        &[
            "-g",
            &gw.url(),
            "-s",
            "ptest",
            "-p",
            "bob",
            "--fifo-in",
            fifo.to_str().unwrap(),
            "--output-file",
            dir.path().join("bob.jsonl").to_str().unwrap(),
        ],
    );
    b.wait_err("connected to");
    gw.stop();
    b.wait_err("disconnected");
    // Written while the gateway is down: queued, then sent.
    write_fifo(&fifo, &chat("across the restart"));
    let _gw = Gateway::start(dir.path(), port);
    wait_line(
        &dir.path().join("watcher.log"),
        chat_with("across the restart"),
    );
    assert!(
        common::wait_for(W, || b.err.text().matches("connected to").count() >= 2),
        "{}",
        b.err.text()
    );
    b.signal("TERM");
    assert_eq!(b.finish().0, Some(0));
}

#[test]
fn a_bad_token_exits_1_with_the_gateways_reason() {
    let dir = space_dir();
    let gw = Gateway::start(dir.path(), 0);
    let bad = "not-a-real-token-5e1b";
    let c = Client::start(bad, &["-g", &gw.url(), "-s", "ptest", "-p", "bob"]);
    let (code, out, err) = c.finish();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("refused the join: unknown token"), "{err}");
    assert!(
        !out.contains(bad) && !err.contains(bad),
        "the token was shown"
    );
    // As --token too.
    let mut cmd = Command::new(common::MEW);
    cmd.args([
        "client",
        "connect",
        "-g",
        &gw.url(),
        "-s",
        "ptest",
        "--token",
        bad,
    ]);
    let c = Client::spawn(cmd, "");
    let (code, out, err) = c.finish();
    assert_eq!(code, Some(1), "{err}");
    assert!(!out.contains(bad) && !err.contains(bad));
}

#[test]
fn fifo_paths_that_are_not_fifos_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("regular");
    fs::write(&file, "keep me").unwrap();
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    // The helper the space server uses.
    let e = mew::participant::client::make_fifo(&file).unwrap_err();
    assert!(e.to_string().contains("regular file"), "{e}");
    let e = mew::participant::client::make_fifo(&link).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    // A symlink to a FIFO is refused too.
    let real = dir.path().join("real-fifo");
    mew::participant::client::make_fifo(&real).unwrap();
    let to_fifo = dir.path().join("to-fifo");
    std::os::unix::fs::symlink(&real, &to_fifo).unwrap();
    assert!(mew::participant::client::make_fifo(&to_fifo).is_err());
    assert_eq!(mode(&real), 0o600);
    // And the command.
    for (path, why) in [(&file, "regular file"), (&link, "symbolic link")] {
        let c = Client::start(
            "t",
            &[
                "-g",
                "ws://127.0.0.1:9",
                "-s",
                "x",
                "--fifo-in",
                path.to_str().unwrap(),
            ],
        );
        let (code, _, err) = c.finish();
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains(why), "{err}");
    }
    assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");
}

// ---- mew token create ------------------------------------------------------------

fn mew_in(dir: &Path, args: &[&str]) -> common::Output {
    let mut cmd = Command::new(common::MEW);
    cmd.arg("--space-dir")
        .arg(dir)
        .args(args)
        .env_remove("MEW_SPACE_CONFIG");
    common::run(cmd, W)
}

#[test]
fn token_create_prints_fresh_random_tokens() {
    let dir = space_dir();
    let mut seen = std::collections::HashSet::new();
    for _ in 0..3 {
        let o = mew_in(
            dir.path(),
            &[
                "token",
                "create",
                "-p",
                "bob",
                "--capabilities",
                r#"[{"kind":"chat"}]"#,
            ],
        );
        assert_eq!(o.code(), Some(0), "{}", o.stderr);
        let t = o.stdout.trim().to_owned();
        assert_eq!(t.len(), 43, "{t}");
        assert!(
            t.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert!(seen.insert(t), "a token came twice");
    }
    // Without --write nothing is stored.
    assert!(!dir.path().join(".mew/tokens/bob.token").exists());
    // Upstream's `-c JSON`: taken as the capabilities, with a note.
    let o = mew_in(
        dir.path(),
        &["token", "create", "-p", "bob", "-c", r#"[{"kind":"chat"}]"#],
    );
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    assert!(
        o.stderr.contains("`-c` is `--config` in mew"),
        "{}",
        o.stderr
    );
    assert_eq!(o.stdout.trim().len(), 43);
}

#[test]
fn token_create_rejects_bad_capabilities() {
    let dir = space_dir();
    for bad in [
        "{",
        r#"{"kind":"chat"}"#,
        r#"["chat"]"#,
        r#"[{"kind":3}]"#,
        "[{}]",
    ] {
        let o = mew_in(
            dir.path(),
            &["token", "create", "-p", "bob", "--capabilities", bad],
        );
        assert_eq!(o.code(), Some(2), "{bad}: {}", o.stderr);
        assert!(o.stderr.contains("--capabilities"), "{}", o.stderr);
        assert!(o.stdout.is_empty(), "no token for bad capabilities");
    }
    let o = mew_in(dir.path(), &["token", "create", "-p", "bob", "-c", "[nope"]);
    assert_eq!(o.code(), Some(2), "{}", o.stderr);
}

#[test]
fn token_create_write_stores_the_token_for_a_participant_only() {
    let dir = space_dir();
    let o = mew_in(dir.path(), &["token", "create", "-p", "bob", "--write"]);
    assert_eq!(o.code(), Some(0), "{}", o.stderr);
    let path = dir.path().join(".mew/tokens/bob.token");
    assert_eq!(fs::read_to_string(&path).unwrap().trim(), o.stdout.trim());
    assert_eq!(mode(&path), 0o600);
    // Kept without --force.
    let again = mew_in(dir.path(), &["token", "create", "-p", "bob", "--write"]);
    assert_eq!(again.code(), Some(1), "{}", again.stderr);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    assert_eq!(fs::read_to_string(&path).unwrap().trim(), o.stdout.trim());
    let forced = mew_in(
        dir.path(),
        &["token", "create", "-p", "bob", "--write", "--force"],
    );
    assert_eq!(forced.code(), Some(0), "{}", forced.stderr);
    assert_eq!(
        fs::read_to_string(&path).unwrap().trim(),
        forced.stdout.trim()
    );
    // The gateway accepts it.
    let gw = Gateway::start(dir.path(), 0);
    let mut c = Client::start(
        forced.stdout.trim(),
        &["-g", &gw.url(), "-s", "ptest", "-p", "bob"],
    );
    c.wait_err("connected to");
    c.send("quit");
    assert_eq!(c.finish().0, Some(0));
    // Not a participant: refused.
    let o = mew_in(dir.path(), &["token", "create", "-p", "mallory", "--write"]);
    assert_eq!(o.code(), Some(2), "{}", o.stderr);
    assert!(o.stderr.contains("not a participant"), "{}", o.stderr);
    assert!(!dir.path().join(".mew/tokens/mallory.token").exists());
}

// ---- mew space connect -----------------------------------------------------------

#[test]
fn space_connect_chats_with_the_running_space() {
    let space = common::Space::new(
        r#"
space: { id: sc-{mark} }
participants:
  human: { capabilities: [ { kind: chat } ] }
  watcher:
    capabilities: [ { kind: chat } ]
    output_log: ./watcher.log
    auto_connect: true
"#,
    );
    // Not running yet: a clear error.
    let mut c = space.mew();
    c.args(["space", "connect"]);
    let o = common::run(c, W);
    assert_eq!(o.code(), Some(3), "{}", o.stderr);
    assert!(
        o.stderr.contains("the space is not running"),
        "{}",
        o.stderr
    );

    let port = free_port().to_string();
    let mut up = space.mew();
    up.args([
        "space",
        "up",
        "-d",
        "--wait",
        "--timeout",
        "50s",
        "-p",
        &port,
    ]);
    let o = common::run(up, W);
    assert_eq!(o.code(), Some(0), "{}\n{}", o.stdout, o.stderr);

    let mut cmd = space.mew();
    cmd.args(["space", "connect"]);
    let mut c = Client::spawn(cmd, "");
    c.wait_err("connected");
    c.send("hello from the terminal");
    c.send(r#"{"kind":"chat","payload":{"text":"raw \u001b[31m envelope"}}"#);
    c.send("{not json");
    let log = space.path().join("watcher.log");
    let seen = wait_line(&log, chat_with("hello from the terminal"));
    assert_eq!(seen["from"], "human");
    wait_line(&log, chat_with("raw \u{1b}[31m envelope"));
    c.wait_err("not JSON");
    // Its own chat comes back as one readable, escaped line.
    assert!(
        common::wait_for(W, || c.out.text().contains("raw \\x1b[31m envelope")),
        "{}",
        c.out.text()
    );
    c.send("/quit");
    let (code, out, err) = c.finish();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("joining as human"), "{err}");
    let welcome = out
        .lines()
        .find(|l| l.contains("system/welcome"))
        .unwrap_or_else(|| panic!("{out}"));
    // HH:MM:SS from → to kind: summary
    let (time, rest) = welcome.split_once(' ').unwrap();
    assert_eq!(time.len(), 8, "{welcome}");
    assert!(
        time.chars().all(|c| c.is_ascii_digit() || c == ':'),
        "{welcome}"
    );
    assert!(
        rest.contains("→ human system/welcome: joined as human"),
        "{welcome}"
    );
    assert!(
        out.lines()
            .any(|l| l.ends_with("human → * chat: hello from the terminal")),
        "{out}"
    );
    assert!(!out.chars().any(|c| c.is_control() && c != '\n'), "{out:?}");
    let token = fs::read_to_string(space.path().join(".mew/tokens/human.token")).unwrap();
    assert!(!out.contains(token.trim()) && !err.contains(token.trim()));

    let mut down = space.mew();
    down.args(["space", "down"]);
    assert_eq!(common::run(down, W).code(), Some(0));
}

#[test]
fn a_fifo_participant_of_a_running_space_sends_and_receives() {
    let space = common::Space::new(
        r#"
space: { id: ff-{mark} }
participants:
  pipe:
    fifo: true
    auto_connect: true
    output_log: ./logs/pipe.log
    capabilities: [ { kind: chat } ]
  watcher:
    capabilities: [ { kind: chat } ]
    output_log: ./watcher.log
    auto_connect: true
"#,
    );
    let port = free_port().to_string();
    let mut up = space.mew();
    up.args([
        "space",
        "up",
        "-d",
        "--wait",
        "--timeout",
        "50s",
        "-p",
        &port,
    ]);
    let o = common::run(up, W);
    assert_eq!(o.code(), Some(0), "{}\n{}", o.stdout, o.stderr);
    // mew's client reads the FIFO mew made, and writes the output log.
    let fifo = space.path().join(".mew/fifos/pipe-in");
    write_fifo(&fifo, &chat("from the pipe"));
    let seen = wait_line(
        &space.path().join("watcher.log"),
        chat_with("from the pipe"),
    );
    assert_eq!(seen["from"], "pipe");
    wait_line(
        &space.path().join("logs/pipe.log"),
        chat_with("from the pipe"),
    );
    let mut down = space.mew();
    down.args(["space", "down"]);
    assert_eq!(common::run(down, W).code(), Some(0));
}
