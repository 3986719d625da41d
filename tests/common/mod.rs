//! Shared helpers for integration tests: temporary spaces, running the real
//! `mew` binary with deadlines, and checking that nothing is left behind.
//! `reliability`: status, /proc readings and a PTY client for the reliability
//! tests; `tui`: the TUI's in-memory demo spaces and event helpers.
#![allow(dead_code, clippy::unwrap_used)]

pub mod reliability;
pub mod tui;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

pub const MEW: &str = env!("CARGO_BIN_EXE_mew");

/// Held for the whole of a test that must not run at the same time as any
/// other test taking it (in `tests/heavy/`: load and chaos, each of which
/// once ran alone in a binary of its own). A test that failed while holding
/// it does not stop the next one.
pub fn alone() -> MutexGuard<'static, ()> {
    static ALONE: Mutex<()> = Mutex::new(());
    ALONE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The echo agent (tests/fixtures/echo_agent.py) as a participant of a
/// space.yaml, auto-started on the space's gateway.
pub fn echo_agent() -> String {
    format!(
        r#"  agent:
    command: python3
    args: ["{repo}/tests/fixtures/echo_agent.py", "ws://127.0.0.1:${{PORT}}"]
    env: {{ MEW_BIN: "{MEW}" }}
    auto_start: true
    capabilities: [ {{ kind: chat }}, {{ kind: "mcp/*" }} ]
"#,
        repo = env!("CARGO_MANIFEST_DIR"),
    )
}

/// The repository's root (`tests/fixtures/...` are below it).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temporary space directory with a `.mew/space.yaml`.
pub struct Space {
    pub dir: tempfile::TempDir,
    /// A marker unique to this test, in every process's environment.
    pub mark: String,
}

impl Space {
    /// `yaml` may use `{mark}` for the test's marker value.
    pub fn new(yaml: &str) -> Space {
        let dir = tempfile::Builder::new()
            .prefix("mew-test-")
            .tempdir()
            .unwrap();
        let mark = format!(
            "m{}x{}",
            std::process::id(),
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace(['.', '-'], "")
        );
        std::fs::create_dir_all(dir.path().join(".mew")).unwrap();
        std::fs::write(
            dir.path().join(".mew/space.yaml"),
            yaml.replace("{mark}", &mark),
        )
        .unwrap();
        Space { dir, mark }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn mew(&self) -> Command {
        let mut c = Command::new(MEW);
        c.arg("--space-dir").arg(self.path());
        c.env_remove("MEW_SPACE_CONFIG");
        c.env("NO_COLOR", "1");
        // Every process mew starts (and mew itself) inherits the marker.
        c.env("TEST_MARK", &self.mark);
        c
    }

    pub fn log_path(&self, name: &str) -> PathBuf {
        self.path().join(".mew/logs").join(format!("{name}.log"))
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.log_path(name)).unwrap_or_default()
    }

    /// Processes (of this user) that carry this test's marker.
    pub fn survivors(&self) -> Vec<u32> {
        mew::procfs::find_marked("TEST_MARK", &self.mark)
    }

    /// One line per pid: what it is and where it came from (for failures).
    pub fn describe(pids: &[u32]) -> String {
        let mut out = String::new();
        for &pid in pids {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid pgrp session ...
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            let f: Vec<&str> = after.split_whitespace().collect();
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            let var = |k: &str| mew::procfs::env_var(pid, k).unwrap_or_else(|| "-".into());
            out.push_str(&format!(
                "  {pid} state {} ppid {} pgrp {} sid {} process {} run {}: {}\n",
                f.first().unwrap_or(&"?"),
                f.get(1).unwrap_or(&"?"),
                f.get(2).unwrap_or(&"?"),
                f.get(3).unwrap_or(&"?"),
                var("MEW_PROCESS"),
                var("MEW_RUN_ID"),
                cmd.trim_end()
            ));
        }
        out
    }

    /// Wait until no process carries the marker (bounded); returns survivors.
    pub fn wait_no_survivors(&self) -> Vec<u32> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.survivors();
            if s.is_empty() || Instant::now() > deadline {
                return s;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Space {
    fn drop(&mut self) {
        // Never leave a process behind, whatever the test did.
        for pid in self.survivors() {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
        let _ = Command::new(MEW)
            .arg("--space-dir")
            .arg(self.path())
            .args(["space", "down"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Run to completion, killing the command if it exceeds `deadline`.
/// `mew ARGS` run in `dir` (its working directory), with the variables a
/// config reads from the environment (`MEW_SPACE_CONFIG`, `PORT`) cleared.
pub fn mew_in(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(MEW)
        .args(args)
        .current_dir(dir)
        .env_remove("MEW_SPACE_CONFIG")
        .env_remove("PORT")
        .output()
        .expect("run mew")
}

/// Captured bytes as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `mew ARGS` in `space`, within a minute.
pub fn mew_run(space: &Space, args: &[&str]) -> Output {
    let mut cmd = space.mew();
    cmd.args(args);
    run(cmd, Duration::from_secs(60))
}

/// An output as a failed assertion shows it: the exit code, stdout, stderr.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.code(),
        out.stdout,
        out.stderr
    )
}

pub fn run(mut cmd: Command, deadline: Duration) -> Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("spawn mew");
    wait_output(child, deadline)
}

pub fn wait_output(mut child: Child, deadline: Duration) -> Output {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let t_err = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });
    let end = Instant::now() + deadline;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let st = child.wait().unwrap();
            let stdout = t_out.join().unwrap();
            let stderr = t_err.join().unwrap();
            panic!(
                "mew did not finish within {deadline:?} ({st:?})\nstdout:\n{stdout}\nstderr:\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Output {
        status,
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
    }
}

/// Poll `cond` until it holds or `deadline` passes.
pub fn wait_for(deadline: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    while Instant::now() < end {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

pub fn kill(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Copy a directory tree: directories and regular files (anything else,
/// such as a symlink or a socket a run left behind, is skipped).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let ty = entry.file_type().unwrap();
        let dest = to.join(entry.file_name());
        if ty.is_dir() {
            copy_dir(&entry.path(), &dest);
        } else if ty.is_file() {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Text a child writes to one of its pipes, line by line as it comes
/// (collected on a thread).
#[derive(Clone, Default)]
pub struct Captured(pub Arc<Mutex<String>>);

impl Captured {
    pub fn of(r: impl Read + Send + 'static) -> Captured {
        let c = Captured::default();
        let keep = c.0.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(r).lines().map_while(Result::ok) {
                let mut k = keep.lock().unwrap();
                k.push_str(&line);
                k.push('\n');
            }
        });
        c
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// `mew gateway start` on `port` (0: any) for the space config `yaml`
/// (`MEW_LOG` unset, stderr as the caller says), its stdout read on a
/// thread: the receiver gets the port it says it listens on.
pub fn spawn_gateway(yaml: &Path, port: u16, stderr: Stdio) -> (Child, mpsc::Receiver<u16>) {
    let mut child = Command::new(MEW)
        .args([
            "gateway",
            "start",
            "--port",
            &port.to_string(),
            "--space-config",
        ])
        .arg(yaml)
        .env_remove("MEW_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(p) = line.strip_prefix("Gateway listening on port ") {
                let _ = tx.send(p.trim().parse::<u16>().unwrap());
            }
        }
    });
    (child, rx)
}
