//! The control socket under hostile and heavy use: connections that say
//! nothing, frames that never end, garbage, and a supervisor busy starting
//! thousands of processes. The real binary, real processes; the hostile
//! clients are plain `UnixStream`s written here.
#![allow(clippy::unwrap_used)]

use crate::common;
use crate::common::reliability as util;

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Space, wait_for};
use util::{down, fds, frame, hello, msg, pids, read_frame, socket, status_json};

const W: Duration = Duration::from_secs(60);

// ---- helpers -------------------------------------------------------------------

fn request(id: u64, req: serde_json::Value) -> Vec<u8> {
    msg(serde_json::json!({"type": "request", "id": id, "req": req}))
}

/// The next message frame, skipping output frames.
fn read_json(s: &mut UnixStream) -> Option<serde_json::Value> {
    loop {
        let (kind, payload) = read_frame(s)?;
        if kind == 1 {
            return Some(serde_json::from_slice(&payload).unwrap());
        }
    }
}

/// Connect, say hello, read the server's hello.
fn connect(path: &Path, client: &str) -> UnixStream {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&hello(client)).unwrap();
    let h = read_json(&mut s).expect("hello");
    assert_eq!(h["type"], "hello", "{h}");
    s
}

/// A full status round trip over a raw connection.
fn raw_status(path: &Path) -> serde_json::Value {
    let mut s = connect(path, "control");
    s.write_all(&request(7, serde_json::json!({"type": "status"})))
        .unwrap();
    let r = read_json(&mut s).expect("response");
    assert_eq!(r["id"], 7, "{r}");
    r
}

/// The server closed this connection (EOF or reset) within `within`.
fn closed_within(s: &mut UnixStream, within: Duration) -> bool {
    let end = Instant::now() + within;
    let mut buf = [0u8; 64 * 1024];
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left.min(Duration::from_secs(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // a hello, a bye, statuses before closing
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return true,
        }
    }
}

/// The connection is still open: nothing says it was closed, now.
fn still_open(s: &mut UnixStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64 * 1024];
    let open = loop {
        match s.read(&mut buf) {
            Ok(0) => break false,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => break true,
            Err(_) => break false,
        }
    };
    s.set_nonblocking(false).unwrap();
    open
}

/// Raise this test's own descriptor limit so it can open `want` sockets;
/// returns how many it may open.
fn allow_fds(want: usize) -> usize {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    let need = (want + 256) as u64;
    if soft < need {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, need.min(hard), hard);
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    want.min((soft as usize).saturating_sub(256))
}

/// `mew space up -d --wait` with the server's descriptor limit set to `nofile`.
fn up_with_nofile(space: &Space, nofile: u64, timeout: &str) -> common::Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {nofile} && exec \"$@\""))
        .arg("sh")
        .arg(common::MEW)
        .arg("--space-dir")
        .arg(space.path())
        .args(["space", "up", "-d", "--wait", "--timeout", timeout]);
    cmd.env_remove("MEW_SPACE_CONFIG")
        .env("NO_COLOR", "1")
        .env("TEST_MARK", &space.mark);
    common::run(cmd, Duration::from_secs(180))
}

fn server_pid(space: &Space) -> u32 {
    status_json(space).expect("status")["server_pid"]
        .as_u64()
        .unwrap() as u32
}

fn pid_of(status: &serde_json::Value, name: &str) -> Option<u32> {
    pids(status)
        .into_iter()
        .find(|(n, _)| n == name)
        .map(|(_, p)| p)
}

fn state_of(status: &serde_json::Value, name: &str) -> String {
    status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["state"].to_string())
        .unwrap_or_default()
}

/// A hostile client that keeps `count` connections open for as long as it
/// runs, reopening each one the server closes: some say nothing, some say
/// hello and then nothing, some send half a hello.
struct Squatters {
    stop: Arc<AtomicBool>,
    reopened: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Squatters {
    fn start(path: PathBuf, count: usize) -> Squatters {
        let stop = Arc::new(AtomicBool::new(false));
        let reopened = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (st, re, op) = (stop.clone(), reopened.clone(), open.clone());
        let thread = std::thread::spawn(move || {
            let dial = |i: usize| -> Option<UnixStream> {
                let mut s = UnixStream::connect(&path).ok()?;
                let h = hello("control");
                let _ = match i % 3 {
                    0 => Ok(()),
                    1 => s.write_all(&h),
                    _ => s.write_all(&h[..3]),
                };
                s.set_nonblocking(true).ok()?;
                Some(s)
            };
            let mut conns: Vec<Option<UnixStream>> = (0..count).map(dial).collect();
            let mut buf = [0u8; 4096];
            while !st.load(Ordering::SeqCst) {
                let mut n_open = 0;
                for (i, c) in conns.iter_mut().enumerate() {
                    let gone = match c {
                        None => true,
                        Some(s) => loop {
                            match s.read(&mut buf) {
                                Ok(0) => break true,
                                Ok(_) => continue,
                                Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                                Err(_) => break true,
                            }
                        },
                    };
                    if gone {
                        *c = dial(i);
                        re.fetch_add(1, Ordering::SeqCst);
                    }
                    if c.is_some() {
                        n_open += 1;
                    }
                }
                op.store(n_open, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Squatters {
            stop,
            reopened,
            open,
            thread: Some(thread),
        }
    }
}

impl Drop for Squatters {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ---- 1. silent connections --------------------------------------------------------

/// A thousand connections that say nothing (or only hello) and are reopened
/// as soon as the server closes them: the server's descriptors are not
/// exhausted, `status` keeps answering, and a process that crashes is
/// restarted (its PTY can still be opened) instead of failing for good.
#[test]
fn a_thousand_silent_connections_do_not_exhaust_the_server() {
    let space = Space::new(
        r#"
processes:
  flaky: { command: "sleep 1000", restart_policy: on-failure }
  steady: { command: "sleep 1000" }
"#,
    );
    // A small descriptor limit for the server, the usual 1024 halved: the
    // squatters would exhaust it several times over.
    let limit = 512u64;
    let out = up_with_nofile(&space, limit, "60s");
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let server = server_pid(&space);
    let count = allow_fds(1000);
    assert!(
        count >= 600,
        "this test cannot open enough sockets ({count})"
    );
    let squat = Squatters::start(socket(&space), count);
    // Let them all connect first.
    assert!(wait_for(W, || squat.open.load(Ordering::SeqCst) >= count / 2));
    let started = Instant::now();
    let mut max_status = Duration::ZERO;
    for round in 0..3 {
        let t = Instant::now();
        let st = util::mew(&space, &["space", "status", "--json"]);
        max_status = max_status.max(t.elapsed());
        assert!(
            st.code() == Some(0),
            "status failed (round {round}) with {} squatters; server fds {:?}: {}",
            squat.open.load(Ordering::SeqCst),
            fds(server),
            st.stderr
        );
        let n = fds(server).unwrap();
        assert!(
            n < (limit as usize) - 64,
            "the server holds {n} descriptors of {limit}"
        );
    }
    // A crash while the squatters are there: it is restarted.
    let before = status_json(&space).unwrap();
    let old = pid_of(&before, "flaky").expect("flaky runs");
    common::kill(old, "KILL");
    let mut last = serde_json::Value::Null;
    let back = wait_for(W, || match status_json(&space) {
        Some(st) => {
            let ok = pid_of(&st, "flaky").is_some_and(|p| p != old)
                && state_of(&st, "flaky").contains("ready");
            last = st;
            ok
        }
        None => false,
    });
    assert!(
        back,
        "flaky was not restarted while the squatters held on: {}",
        state_of(&last, "flaky")
    );
    assert_eq!(server_pid(&space), server);
    eprintln!(
        "{count} squatters ({} reopened) for {:?}: status at most {max_status:?}, server fds {:?}",
        squat.reopened.load(Ordering::SeqCst),
        started.elapsed(),
        fds(server)
    );
    drop(squat);
    down(&space);
}

/// CPU seconds (user + system) a process has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit_once(')').unwrap().1;
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields 14 and 15 of stat (utime, stime), in USER_HZ (100 on Linux).
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// The processes hold nearly all of the server's descriptors, so accept
/// itself fails (EMFILE) while silent connections hold the rest: the server
/// does not spin on the failing accept, closes a silent connection to take
/// the next one, and `status` gets through.
#[test]
fn accept_out_of_descriptors_does_not_spin_and_status_gets_through() {
    let mut yaml = String::from("processes:\n");
    for i in 0..20 {
        yaml.push_str(&format!("  p{i}: {{ command: \"sleep 1000\" }}\n"));
    }
    let space = Space::new(&yaml);
    // 20 processes take a PTY master and a log each: some 55 of 64.
    let limit = 64u64;
    let out = up_with_nofile(&space, limit, "60s");
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let server = server_pid(&space);
    let log = space.path().join(".mew/logs/mew-server.log");
    let squat = Squatters::start(socket(&space), 100);
    assert!(
        wait_for(W, || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("accept failed")),
        "accept never ran out of descriptors; server fds {:?}",
        fds(server)
    );
    let c0 = cpu_secs(server);
    let t = Instant::now();
    let mut answers = 0;
    let mut slowest = Duration::ZERO;
    while t.elapsed() < Duration::from_secs(5) || answers < 3 {
        let s = Instant::now();
        let st = util::mew(&space, &["space", "status", "--json"]);
        slowest = slowest.max(s.elapsed());
        assert_eq!(
            st.code(),
            Some(0),
            "status failed with the descriptors exhausted (server fds {:?}): {}",
            fds(server),
            st.stderr
        );
        answers += 1;
    }
    let used = cpu_secs(server) - c0;
    let wall = t.elapsed().as_secs_f64();
    eprintln!(
        "out of descriptors: {answers} status answers in {wall:.1}s (slowest {slowest:?}); the server used {used:.2}s of CPU; fds {:?}",
        fds(server)
    );
    assert!(
        used < wall * 0.5,
        "the server used {used:.2}s of CPU in {wall:.1}s: the failing accept spins"
    );
    drop(squat);
    down(&space);
}

/// A connection that does not finish its hello, one that says hello and no
/// more, and one that begins a request and never ends it are closed by the
/// server; connections that stream (follow, watch, attach) may stay quiet
/// for as long as they like.
#[test]
fn silent_connections_are_closed_and_streaming_ones_are_not() {
    let space = Space::new("processes:\n  app: { command: \"sleep 1000\" }\n");
    util::up_d(&space);
    let path = socket(&space);
    let mut silent: Vec<(&str, UnixStream)> = Vec::new();
    for _ in 0..3 {
        silent.push(("no hello", UnixStream::connect(&path).unwrap()));
        let mut s = UnixStream::connect(&path).unwrap();
        s.write_all(&hello("control")[..4]).unwrap();
        silent.push(("half a hello", s));
        silent.push(("hello, then nothing", connect(&path, "control")));
        let mut s = connect(&path, "control");
        let req = request(1, serde_json::json!({"type": "status"}));
        s.write_all(&req[..req.len() - 2]).unwrap();
        silent.push(("half a request", s));
        // Talks, then goes quiet.
        let mut s = connect(&path, "control");
        s.write_all(&request(1, serde_json::json!({"type": "status"})))
            .unwrap();
        assert!(read_json(&mut s).is_some());
        silent.push(("a status, then nothing", s));
    }
    let mut streaming: Vec<(&str, UnixStream)> = Vec::new();
    let mut s = connect(&path, "follow");
    s.write_all(&request(
        1,
        serde_json::json!({"type": "follow", "names": []}),
    ))
    .unwrap();
    streaming.push(("follow", s));
    let mut s = connect(&path, "control");
    s.write_all(&request(1, serde_json::json!({"type": "watch"})))
        .unwrap();
    streaming.push(("watch", s));
    let mut s = connect(&path, "attach");
    s.write_all(&request(
        1,
        serde_json::json!({"type": "attach", "cols": 80, "rows": 24, "owner": false}),
    ))
    .unwrap();
    streaming.push(("attach", s));
    let t = Instant::now();
    for (what, s) in &mut silent {
        assert!(
            closed_within(s, W),
            "{what}: not closed after {:?}",
            t.elapsed()
        );
    }
    eprintln!("silent connections closed after {:?}", t.elapsed());
    // Every silent one is gone, past every silence limit; the streams stay.
    for (what, s) in &mut streaming {
        assert!(still_open(s), "{what}: a streaming connection was closed");
    }
    let r = raw_status(&path);
    assert_eq!(
        r["result"]["ok"]["status"]["processes"][0]["state"]["state"], "ready",
        "{r}"
    );
    drop(streaming);
    down(&space);
}

/// Streams (follow, watch, attach) are quiet by nature and never closed
/// for it, so they may not take every slot: past their share a new stream
/// is refused with a reason, and `status` and `down` still get through.
#[test]
fn streams_cannot_take_the_slots_that_status_and_down_need() {
    let space = Space::new("processes:\n  app: { command: \"sleep 1000\" }\n");
    let out = up_with_nofile(&space, 512, "60s");
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let path = socket(&space);
    allow_fds(400);
    let mut streams = Vec::new();
    let mut refused = Vec::new();
    for i in 0..200 {
        let (client, req) = if i % 2 == 0 {
            ("follow", serde_json::json!({"type": "follow", "names": []}))
        } else {
            ("control", serde_json::json!({"type": "watch"}))
        };
        let mut s = connect(&path, client);
        s.write_all(&request(1, req)).unwrap();
        let r = read_json(&mut s).unwrap();
        if r["result"]["ok"]["type"] == "accepted" {
            streams.push(s);
        } else {
            refused.push(
                r["result"]["error"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
        }
    }
    eprintln!(
        "{} streams accepted, {} refused: {:?}",
        streams.len(),
        refused.len(),
        refused.first()
    );
    assert!(!refused.is_empty(), "every one of 200 streams was accepted");
    assert!(refused[0].contains("streams to"), "{}", refused[0]);
    let st = util::mew(&space, &["space", "status", "--json"]);
    assert_eq!(st.code(), Some(0), "{}", st.stderr);
    let out = down(&space);
    assert!(out.stdout.contains("is down"), "{}", out.stdout);
    for s in &mut streams {
        assert!(closed_within(s, W), "a stream did not end with the space");
    }
}

// ---- 2. large frames that never end ----------------------------------------------

/// Each connection sends all but the last byte of a large frame: the server
/// does not buffer them all (its peak RSS stays far below what they sent),
/// drops every one of those connections, and keeps answering.
#[test]
fn large_unfinished_frames_are_dropped_in_bounded_memory() {
    let space = Space::new("processes:\n  app: { command: \"sleep 1000\" }\n");
    util::up_d(&space);
    let path = socket(&space);
    let server = server_pid(&space);
    let base = util::rss_kib(server).unwrap();
    for (frame_len, conns) in [(16usize << 20, 60usize), (4 << 20, 60), (1 << 20, 100)] {
        let t = Instant::now();
        let writers: Vec<_> = (0..conns)
            .map(|_| {
                let p = path.clone();
                std::thread::spawn(move || {
                    let mut s = connect(&p, "attach");
                    let mut head = (frame_len as u32).to_be_bytes().to_vec();
                    head.push(1);
                    let _ = s.write_all(&head);
                    // A JSON string that never ends: all but the last byte.
                    let body = vec![b'a'; frame_len - 1];
                    let _ = s.write_all(b"\"");
                    let _ = s.write_all(&body[1..]);
                    s
                })
            })
            .collect();
        let mut socks: Vec<UnixStream> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        // While they hang there, the server still answers.
        let r = raw_status(&path);
        assert_eq!(r["result"]["ok"]["status"]["server_pid"], server, "{r}");
        let peak = util::proc_status_field(server, "VmHWM").unwrap();
        assert!(
            peak < 200 * 1024,
            "the server's peak RSS reached {peak} kB ({conns} × {frame_len} bytes sent)"
        );
        for s in &mut socks {
            assert!(
                closed_within(s, W),
                "a connection with an unfinished {frame_len}-byte frame was not dropped after {:?}",
                t.elapsed()
            );
        }
        let peak = util::proc_status_field(server, "VmHWM").unwrap();
        eprintln!(
            "{conns} × {frame_len}-byte unfinished frames: dropped within {:?}; server RSS {base} kB before, peak {peak} kB",
            t.elapsed()
        );
        assert!(
            peak < 200 * 1024,
            "the server's peak RSS reached {peak} kB ({conns} × {frame_len} bytes sent)"
        );
        let r = raw_status(&path);
        assert_eq!(r["result"]["ok"]["status"]["server_pid"], server, "{r}");
    }
    assert_eq!(server_pid(&space), server);
    down(&space);
}

// ---- 3. garbage ----------------------------------------------------------------------

/// Garbage of every kind, before and after the hello and on an attached
/// connection, drops that connection only: the server and its processes go
/// on, and a paste too large to take is thrown away without ending the
/// session that sent it.
#[test]
fn garbage_drops_the_connection_not_the_server() {
    let space = Space::new("processes:\n  app: { command: \"sleep 1000\" }\n");
    util::up_d(&space);
    let path = socket(&space);
    let server = server_pid(&space);
    let app = pid_of(&status_json(&space).unwrap(), "app").unwrap();
    let mut rng = util::Rng::new(0x5eed_50c7);
    let mut random = |n: usize| -> Vec<u8> { (0..n).map(|_| rng.next() as u8).collect() };
    let with_hello = |client: &str, rest: Vec<u8>| {
        let mut v = hello(client);
        v.extend(rest);
        v
    };
    let attach = request(
        1,
        serde_json::json!({"type": "attach", "cols": 80, "rows": 24, "owner": false}),
    );
    let mut over_cap = (5u32 << 20).to_be_bytes().to_vec();
    over_cap.push(1);
    over_cap.extend(vec![b' '; 5 << 20]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", random(4096)),
        (
            "random bytes after hello",
            with_hello("control", random(4096)),
        ),
        ("a huge length", vec![0x7f, 0xff, 0xff, 0xff, 1, b'{']),
        (
            "a huge length after hello",
            with_hello("control", vec![0xff, 0xff, 0xff, 0xff, 1]),
        ),
        ("invalid JSON", frame(1, b"{\"type\": \"hello\", ")),
        (
            "invalid JSON after hello",
            with_hello("control", frame(1, b"{\"type\":")),
        ),
        (
            "a server message as hello",
            msg(serde_json::json!({"type": "bye", "reason": "x"})),
        ),
        (
            "a server message after hello",
            with_hello(
                "control",
                msg(serde_json::json!({"type": "status", "status": {}})),
            ),
        ),
        (
            "an output frame after hello",
            with_hello("control", frame(2, b"\x1b[2J")),
        ),
        (
            "a request of the wrong shape",
            with_hello(
                "control",
                request(3, serde_json::json!({"type": "restart", "names": 7})),
            ),
        ),
        (
            "a frame over the client limit",
            with_hello("control", over_cap.clone()),
        ),
        ("random bytes on an attached connection", {
            let mut v = with_hello("attach", attach.clone());
            v.extend(random(4096));
            v
        }),
        ("an output frame on an attached connection", {
            let mut v = with_hello("attach", attach.clone());
            v.extend(frame(2, b"hi"));
            v
        }),
    ];
    for (what, bytes) in cases {
        let mut s = UnixStream::connect(&path).unwrap();
        let writer = {
            let mut s = s.try_clone().unwrap();
            // Writes may fail once the server dropped us: that is the point.
            std::thread::spawn(move || {
                let _ = s.write_all(&bytes);
            })
        };
        assert!(
            closed_within(&mut s, W),
            "{what}: the connection was not dropped"
        );
        writer.join().unwrap();
        let r = raw_status(&path);
        assert_eq!(
            r["result"]["ok"]["status"]["server_pid"], server,
            "{what}: {r}"
        );
        assert!(util::alive(app), "{what}: the process died");
    }
    // A paste over the limit, from an attached client, is thrown away: the
    // session goes on and ends with a detach.
    let mut s = connect(&path, "attach");
    s.write_all(&attach).unwrap();
    let ok = read_json(&mut s).unwrap();
    assert_eq!(ok["result"]["ok"]["type"], "accepted", "{ok}");
    let paste = msg(serde_json::json!({
        "type": "input", "event": {"Paste": "x".repeat(5 << 20)}
    }));
    let writer = {
        let mut s = s.try_clone().unwrap();
        std::thread::spawn(move || {
            s.write_all(&paste).unwrap();
            s.write_all(&msg(serde_json::json!({"type": "detach"})))
                .unwrap();
        })
    };
    let bye = loop {
        let m = read_json(&mut s).expect("the session ended without a bye");
        if m["type"] == "bye" {
            break m;
        }
    };
    writer.join().unwrap();
    assert!(
        bye["reason"].as_str().unwrap().contains("detached"),
        "{bye}"
    );
    assert_eq!(server_pid(&space), server);
    assert!(util::alive(app));
    let log = std::fs::read_to_string(space.path().join(".mew/logs/mew-server.log")).unwrap();
    assert!(log.contains("discarded"), "{log}");
    down(&space);
}

// ---- 4. a busy supervisor -------------------------------------------------------------

/// How many processes this machine lets the test start: 2000, or fewer when
/// PTYs, processes or descriptors run short. Returns (count, nofile for the
/// server).
fn process_budget(want: usize) -> (usize, u64) {
    use nix::sys::resource::{Resource, getrlimit};
    let read = |p: &str| -> Option<usize> { std::fs::read_to_string(p).ok()?.trim().parse().ok() };
    // Outside the initial mount namespace, `reserve` of them are not ours.
    let ptys = match (
        read("/proc/sys/kernel/pty/max"),
        read("/proc/sys/kernel/pty/nr"),
    ) {
        (Some(max), Some(nr)) => max
            .saturating_sub(read("/proc/sys/kernel/pty/reserve").unwrap_or(0))
            .saturating_sub(nr)
            .saturating_sub(200),
        _ => want,
    };
    let (_, nproc) = getrlimit(Resource::RLIMIT_NPROC).unwrap_or((u64::MAX, u64::MAX));
    let nproc = if nix::unistd::geteuid().is_root() || nproc == u64::MAX {
        usize::MAX
    } else {
        (nproc as usize) / 2
    };
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    // A PTY master and a log file per process, and some to spare.
    let fds = (hard.min(1 << 20) as usize).saturating_sub(1024) / 2;
    let n = want.min(ptys).min(nproc).min(fds);
    let nofile = hard.min((2 * n + 1024) as u64);
    (n, nofile)
}

/// 2000 processes: `up -d --wait` succeeds, and `status` answers all along
/// the startup, each within a bound, while the supervisor is busy spawning.
#[test]
fn status_answers_while_two_thousand_processes_start() {
    let (n, nofile) = process_budget(2000);
    if n < 2000 {
        eprintln!(
            "NOTE: this machine allows {n} processes here, not 2000 (PTYs, processes or descriptors)"
        );
    }
    assert!(n >= 200, "too few PTYs or processes available ({n})");
    let mut yaml = String::from("processes:\n");
    for i in 0..n {
        yaml.push_str(&format!("  p{i}: {{ command: \"sleep 1000\" }}\n"));
    }
    let space = Space::new(&yaml);
    let bound = Duration::from_secs(20);
    let t0 = Instant::now();
    let up = {
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$@\""))
            .arg("sh")
            .arg(common::MEW)
            .arg("--space-dir")
            .arg(space.path())
            .args(["space", "up", "-d", "--wait", "--timeout", "120s"]);
        cmd.env_remove("MEW_SPACE_CONFIG")
            .env("NO_COLOR", "1")
            .env("TEST_MARK", &space.mark)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().unwrap()
    };
    let up_done = Arc::new(AtomicBool::new(false));
    let waiter = {
        let done = up_done.clone();
        std::thread::spawn(move || {
            let out = common::wait_output(up, Duration::from_secs(180));
            done.store(true, Ordering::SeqCst);
            out
        })
    };
    // Status, over and over, while `up` runs: before the server listens it
    // says "not running"; from its first answer on, every call answers,
    // each within the bound.
    let mut answered = 0;
    let mut answered_during_up = 0;
    let mut answered_while_starting = 0;
    let mut slowest = Duration::ZERO;
    let mut first_answer = None;
    while !up_done.load(Ordering::SeqCst) || answered == 0 {
        let t = Instant::now();
        let out = util::mew(&space, &["space", "status", "--json"]);
        let took = t.elapsed();
        if out.code() == Some(0) {
            let st: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            assert!(st["processes"].is_array());
            answered += 1;
            if !up_done.load(Ordering::SeqCst) {
                answered_during_up += 1;
            }
            // Processes not started yet: the supervisor was still busy
            // starting them when this status was answered.
            if st["processes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["pid"].is_null())
            {
                answered_while_starting += 1;
            }
            first_answer.get_or_insert(t0.elapsed());
            slowest = slowest.max(took);
        } else {
            assert!(
                first_answer.is_none() && out.stderr.contains("not running"),
                "status failed after {:?} (took {took:?}): {}",
                t0.elapsed(),
                out.stderr
            );
            assert!(
                t0.elapsed() < Duration::from_secs(60),
                "the server never answered"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(took < bound, "status took {took:?} during startup");
    }
    let out = waiter.join().unwrap();
    let up_took = t0.elapsed();
    eprintln!(
        "{n} processes: up -d --wait exited {:?} after {up_took:?}; status first answered after {:?}, {answered} answers ({answered_during_up} while up ran, {answered_while_starting} while processes were still being started), slowest {slowest:?}",
        out.code(),
        first_answer
    );
    assert_eq!(
        out.code(),
        Some(0),
        "up -d --wait failed:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(
        answered_while_starting > 0,
        "status never answered while the processes were being started"
    );
    let st = status_json(&space).unwrap();
    let ready = st["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "ready")
        .count();
    assert_eq!(ready, n);
    down(&space);
}
