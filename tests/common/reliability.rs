//! Helpers shared by the reliability tests (chaos, reliability, security,
//! load): status through the real binary, /proc readings of the server, a
//! client attached in a real PTY, log-file checks and a seeded PRNG.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Output, Space, run};

pub const T: Duration = Duration::from_secs(60);

/// `mew space up -d --wait` (bounded); panics with the output on failure.
pub fn up_d(space: &Space) -> Output {
    let mut cmd = space.mew();
    cmd.args(["space", "up", "-d", "--wait", "--timeout", "60s"]);
    let out = run(cmd, Duration::from_secs(90));
    assert_eq!(
        out.code(),
        Some(0),
        "up -d failed\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    out
}

/// `mew space down` (bounded); panics unless it exits 0.
pub fn down(space: &Space) -> Output {
    let mut cmd = space.mew();
    cmd.args(["space", "down"]);
    let out = run(cmd, T);
    assert_eq!(
        out.code(),
        Some(0),
        "down failed\nstdout:\n{}\nstderr:\n{}",
        out.stdout,
        out.stderr
    );
    out
}

/// `mew space <args>` (bounded), whatever its exit code.
pub fn mew(space: &Space, args: &[&str]) -> Output {
    let mut cmd = space.mew();
    cmd.args(args);
    run(cmd, T)
}

/// `status --json`, parsed; `None` when status did not succeed.
pub fn status_json(space: &Space) -> Option<serde_json::Value> {
    let out = mew(space, &["space", "status", "--json"]);
    if out.code() != Some(0) {
        return None;
    }
    serde_json::from_str(&out.stdout).ok()
}

pub fn server_pid(space: &Space) -> u32 {
    status_json(space).expect("status")["server_pid"]
        .as_u64()
        .unwrap() as u32
}

/// `name → pid` of every process status reports with a pid.
pub fn pids(status: &serde_json::Value) -> Vec<(String, u32)> {
    status["processes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| Some((p["name"].as_str()?.to_string(), p["pid"].as_u64()? as u32)))
        .collect()
}

/// A field of /proc/<pid>/status in its unit (kB for memory), if the process exists.
pub fn proc_status_field(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

pub fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_field(pid, "VmRSS")
}

/// Bytes the process has read (`rchar` of /proc/<pid>/io: PTYs, sockets, files).
pub fn read_bytes(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|v| v.trim().parse().ok())
}

pub fn threads(pid: u32) -> Option<u64> {
    proc_status_field(pid, "Threads")
}

pub fn fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

pub fn alive(pid: u32) -> bool {
    // A zombie is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next())
                .is_some_and(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

/// Lines of a log file must each be whole: `<RFC 3339 ms timestamp> | text`
/// or `<timestamp> * event`, and the file must end with a newline.
/// Returns the records as (is_event, text).
pub fn whole_lines(path: &Path) -> Vec<(bool, String)> {
    let bytes = std::fs::read(path).unwrap();
    if bytes.is_empty() {
        return Vec::new();
    }
    assert_eq!(
        bytes.last(),
        Some(&b'\n'),
        "{} does not end with a whole line",
        path.display()
    );
    let text =
        String::from_utf8(bytes).unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()));
    let re = regex::Regex::new(
        r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(?:[+-]\d\d:\d\d|Z) ([|*]) (.*)$",
    )
    .unwrap();
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            let c = re.captures(l).unwrap_or_else(|| {
                panic!("{}:{}: not a whole log line: {l:?}", path.display(), i + 1)
            });
            (&c[1] == "*", c[2].to_string())
        })
        .collect()
}

/// For a process printing `<prefix><n>` with n = 1, 2, 3... in each run:
/// every run (delimited by `started pid` events) must hold an unbroken
/// sequence starting at 1 (the tail of a killed run may be missing, nothing
/// in the middle). Returns the number of numbered lines.
pub fn check_numbered(path: &Path, prefix: &str) -> usize {
    let mut expect = 1u64;
    let mut count = 0;
    for (i, (event, text)) in whole_lines(path).into_iter().enumerate() {
        if event {
            if text.starts_with("started pid") {
                expect = 1;
            }
            continue;
        }
        let Some(n) = text
            .strip_prefix(prefix)
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        assert_eq!(
            n,
            expect,
            "{}: record {}: expected {prefix}{expect}, found {text:?}",
            path.display(),
            i + 1
        );
        expect += 1;
        count += 1;
    }
    count
}

/// A small deterministic PRNG (splitmix64): the chaos schedule is replayable
/// from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() {
            None
        } else {
            Some(&items[self.below(items.len())])
        }
    }
}

/// `mew space attach` (or `up`) running in a real PTY, its output drained
/// by a thread into `screen`.
pub struct PtyClient {
    pub child: Box<dyn portable_pty::Child + Send + Sync>,
    pub pid: u32,
    pub output: Arc<std::sync::Mutex<Vec<u8>>>,
    pub done: Arc<AtomicBool>,
    writer: Box<dyn std::io::Write + Send>,
    _master: Box<dyn portable_pty::MasterPty + Send>,
}

impl PtyClient {
    pub fn spawn(space: &Space, args: &[&str]) -> PtyClient {
        use portable_pty::{CommandBuilder, PtySize, native_pty_system};
        let pty = native_pty_system()
            .openpty(PtySize {
                rows: 40,
                cols: 120,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(super::MEW);
        cmd.arg("--space-dir");
        cmd.arg(space.path());
        cmd.args(args);
        cmd.env("TEST_MARK", &space.mark);
        cmd.env("TERM", "xterm-256color");
        cmd.env_remove("MEW_SPACE_CONFIG");
        let child = pty.slave.spawn_command(cmd).unwrap();
        drop(pty.slave);
        let pid = child.process_id().unwrap();
        let mut reader = pty.master.try_clone_reader().unwrap();
        let writer = pty.master.take_writer().unwrap();
        let output = Arc::new(std::sync::Mutex::new(Vec::new()));
        let done = Arc::new(AtomicBool::new(false));
        let (o, d) = (output.clone(), done.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let mut o = o.lock().unwrap();
                // Keep the tail only: the client may draw for a long time.
                if o.len() > 4 << 20 {
                    o.drain(..2 << 20);
                }
                o.extend_from_slice(&buf[..n]);
            }
            d.store(true, Ordering::SeqCst);
        });
        PtyClient {
            child,
            pid,
            output,
            done,
            writer,
            _master: pty.master,
        }
    }

    /// Wait (bounded) until everything the client wrote has been read
    /// (the terminal reached EOF), e.g. after it exited.
    pub fn drained(&self, deadline: Duration) -> bool {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if self.done.load(Ordering::SeqCst) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.done.load(Ordering::SeqCst)
    }

    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.output.lock().unwrap()).into_owned()
    }

    /// Wait (bounded) for the client to exit; its exit code.
    pub fn wait(&mut self, deadline: Duration) -> Option<u32> {
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if let Some(st) = self.child.try_wait().unwrap() {
                return Some(st.exit_code());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// The terminal's `c_lflag` (ICANON, ECHO...), read through the master.
    pub fn termios_local_flags(&self) -> Option<u64> {
        self._master
            .get_termios()
            .map(|t| t.local_flags.bits() as u64)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        let _ = self.writer.write_all(bytes);
        let _ = self.writer.flush();
    }
}

impl Drop for PtyClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `kill -<sig> <pid>` through the real `kill` command.
pub fn signal(pid: u32, sig: &str) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    let _ = st;
}

/// Milliseconds since the epoch.
pub fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

// ---- a raw protocol client ----------------------------------------------------

/// The path of the space's control socket (written to `.mew/run/socket`).
pub fn socket(space: &Space) -> PathBuf {
    let s = std::fs::read_to_string(space.path().join(".mew/run/socket")).unwrap();
    PathBuf::from(s.trim_end())
}

/// One frame: a 4-byte big-endian length, the kind, the payload.
pub fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes().to_vec();
    f.push(kind);
    f.extend_from_slice(payload);
    f
}

/// A message frame (kind 1) holding `v`.
pub fn msg(v: serde_json::Value) -> Vec<u8> {
    frame(1, v.to_string().as_bytes())
}

/// The client's first message, as `client` (`control`, `attach`...).
pub fn hello(client: &str) -> Vec<u8> {
    msg(serde_json::json!({
        "type": "hello", "version": mew::protocol::PROTOCOL_VERSION,
        "mew_version": "test", "client": client
    }))
}

/// Read one frame (blocking, with the stream's timeout); `None` at EOF/error.
pub fn read_frame(s: &mut UnixStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 5];
    s.read_exact(&mut head).ok()?;
    let len = u32::from_be_bytes(head[..4].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).ok()?;
    Some((head[4], payload))
}
