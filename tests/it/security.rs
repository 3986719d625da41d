//! Security guarantees, through the real binary: owner-only run state, other
//! users refused, tokens private and never shown, hostile names rejected,
//! awkward space directories handled.
#![allow(clippy::unwrap_used)]

use crate::common;
use crate::common::reliability as util;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Space, run, wait_for};
use util::{down, mew, up_d};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A python another uid can run (a pyenv shim under /root is not one);
/// `.ci/run` installs it.
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn socket_path(space: &Space) -> std::path::PathBuf {
    let recorded = std::fs::read_to_string(space.path().join(".mew/run/socket")).unwrap();
    std::path::PathBuf::from(recorded.trim_end())
}

#[test]
fn run_dir_socket_lock_state_and_tokens_are_owner_only() {
    let space = Space::new(
        r#"
participants:
  agent: { command: "sleep 1000", depends_on_gateway: false, auto_start: true }
"#,
    );
    up_d(&space);
    let run = space.path().join(".mew/run");
    assert_eq!(mode(&run), 0o700, ".mew/run");
    assert_eq!(mode(&socket_path(&space)), 0o600, "socket");
    assert_eq!(mode(&run.join("mew.lock")), 0o600, "lock");
    // Process output may hold secrets: the log directory mew creates is owner-only.
    assert_eq!(mode(&space.path().join(".mew/logs")), 0o700, ".mew/logs");
    assert!(wait_for(Duration::from_secs(10), || run
        .join("state.json")
        .exists()));
    assert_eq!(mode(&run.join("state.json")), 0o600, "state.json");
    let tokens = space.path().join(".mew/tokens");
    assert_eq!(mode(&tokens), 0o700, ".mew/tokens");
    assert_eq!(mode(&tokens.join("agent.token")), 0o600, "agent.token");
    down(&space);
    assert!(space.wait_no_survivors().is_empty());
}

/// `nobody` (uid 65534): without privileges the 0700 run directory stops it;
/// with CAP_DAC_OVERRIDE (so the file modes do not), the server's peer-uid
/// check refuses it. Either way it learns nothing, and the owner is served.
#[test]
fn a_client_of_another_uid_is_refused() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to run a client as another uid (CI runs as root)");
        return;
    }
    let space = Space::new(
        r#"
processes:
  secretive: { command: "echo the-secret-line; sleep 1000" }
"#,
    );
    up_d(&space);
    let as_nobody = |caps: bool, args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        if caps {
            cmd.args(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"]);
        }
        cmd.arg(common::MEW).arg("--space-dir").arg(space.path());
        cmd.args(args);
        cmd.env("TEST_MARK", &space.mark);
        run(cmd, Duration::from_secs(30))
    };
    for caps in [false, true] {
        for args in [
            &["space", "status", "--json"][..],
            &["space", "down"],
            &["space", "stop", "secretive"],
            &["space", "logs", "-f"],
            &["space", "logs"],
        ] {
            if caps && args == ["space", "logs"] {
                // Reading files: CAP_DAC_OVERRIDE is meant to bypass modes.
                continue;
            }
            let out = as_nobody(caps, args);
            assert_ne!(
                out.code(),
                Some(0),
                "caps={caps} {args:?} succeeded as uid 65534:\n{}\n{}",
                out.stdout,
                out.stderr
            );
            assert!(
                !out.stdout.contains("secretive") && !out.stdout.contains("the-secret-line"),
                "caps={caps} {args:?} leaked: {}",
                out.stdout
            );
            // Told why, not "not running": the client itself refuses a run
            // dir that is not its own.
            let why = if args == ["space", "logs"] {
                "permission denied"
            } else {
                "not by you"
            };
            assert!(
                out.stderr.to_lowercase().contains(why),
                "caps={caps} {args:?}: {}",
                out.stderr
            );
        }
    }
    // A raw client of another uid that reaches the socket anyway (it
    // bypasses file modes) is refused by the server's peer check.
    let mut raw = Command::new("setpriv");
    raw.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    raw.args(["--inh-caps=+dac_override", "--ambient-caps=+dac_override"]);
    raw.args([
        SYSTEM_PYTHON,
        "-c",
        "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.settimeout(20); print(s.recv(4096))",
    ]);
    raw.arg(socket_path(&space));
    let out = run(raw, Duration::from_secs(30));
    assert_eq!(out.code(), Some(0), "raw client: {}", out.stderr);
    assert!(
        out.stdout.contains("only uid 0"),
        "raw client got: {}",
        out.stdout
    );
    let server_log =
        std::fs::read_to_string(space.path().join(".mew/logs/mew-server.log")).unwrap();
    assert!(
        server_log.contains("refused a connection from uid 65534"),
        "the peer check did not refuse uid 65534:\n{server_log}"
    );
    // The owner is still served and nothing was stopped.
    let status = util::status_json(&space).expect("status as the owner");
    assert_eq!(status["processes"][0]["state"], "ready", "{status}");
    down(&space);
    assert!(space.wait_no_survivors().is_empty());
}

/// In a shared, group-writable project another member renames `.mew/run`
/// and plants her own with a listening socket: no client of the owner may
/// connect to it (a fake prompt on the owner's terminal, keystrokes sent to
/// her), `down` must not report "down", and the real space is untouched.
#[test]
fn a_planted_run_dir_is_never_talked_to() {
    if !is_root() {
        eprintln!("SKIPPED: needs root to act as another uid (CI runs as root)");
        return;
    }
    let space = Space::new(
        r#"
processes:
  real: { command: "sleep 1000" }
"#,
    );
    up_d(&space);
    let mew_dir = space.path().join(".mew");
    std::fs::set_permissions(space.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&mew_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let accepted = space.path().join("accepted");
    std::fs::write(&accepted, "").unwrap();
    std::fs::set_permissions(&accepted, std::fs::Permissions::from_mode(0o666)).unwrap();
    // Her listener: counts every connection it is offered.
    let listener = r#"
import os, socket, sys
run = sys.argv[1]
os.rename(run, run + ".real")
os.mkdir(run, 0o700)
s = socket.socket(socket.AF_UNIX)
s.bind(os.path.join(run, "mew.sock"))
s.listen(16)
open(os.path.join(run, "ready"), "w").close()
while True:
    c, _ = s.accept()
    with open(sys.argv[2], "a") as f:
        f.write("connection\n")
    c.sendall(b"\x1b]52;c;cHduZWQ=\x07Password: ")
"#;
    let mut evil = Command::new("setpriv");
    evil.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
    evil.args([SYSTEM_PYTHON, "-c", listener]);
    evil.arg(mew_dir.join("run")).arg(&accepted);
    evil.env("TEST_MARK", &space.mark);
    evil.stdout(std::process::Stdio::null());
    let mut evil = evil.spawn().unwrap();
    assert!(
        wait_for(Duration::from_secs(30), || mew_dir
            .join("run/ready")
            .exists()),
        "the planted listener did not start"
    );
    for args in [
        &["space", "status"][..],
        &["space", "down"],
        &["space", "attach"],
        &["space", "logs", "-f"],
        &["space", "restart", "real"],
    ] {
        let out = mew(&space, args);
        assert_ne!(out.code(), Some(0), "{args:?} succeeded: {}", out.stdout);
        assert!(
            out.stderr.contains("owned by uid 65534"),
            "{args:?} did not say why: {}",
            out.stderr
        );
        assert!(!out.stdout.contains("is down"), "{args:?}: {}", out.stdout);
    }
    let _ = evil.kill();
    let _ = evil.wait();
    assert_eq!(
        std::fs::read_to_string(&accepted).unwrap(),
        "",
        "a client of the owner talked to the planted server"
    );
    // Undo the hijack: the real space ran all along.
    std::fs::remove_dir_all(mew_dir.join("run")).unwrap();
    std::fs::rename(mew_dir.join("run.real"), mew_dir.join("run")).unwrap();
    let status = util::status_json(&space).expect("status of the real space");
    assert_eq!(status["processes"][0]["state"], "ready", "{status}");
    down(&space);
    assert!(space.wait_no_survivors().is_empty());
}

fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Token values reach the participant (in `${TOKEN}` and `MEW_TOKEN_<ID>`)
/// and never appear in what mew shows or writes: status (table and JSON),
/// check (text and JSON), every file mew writes outside `.mew/tokens`,
/// and error messages. `clean --tokens` removes them; the next `up` makes new ones.
#[test]
fn token_values_never_appear_and_clean_tokens_removes_them() {
    let space = Space::new(
        r#"
participants:
  agent:
    command: sh
    args: ["-c", "test \"$MEW_TOKEN_AGENT\" = \"$(cat .mew/tokens/agent.token)\" && test \"$1\" = \"$MEW_TOKEN_AGENT\" && echo token-ok; sleep 1000", "x", "${TOKEN}"]
    env: { AGENT_TOKEN_COPY: "${TOKEN}" }
    depends_on_gateway: false
    auto_start: true
  helper:
    command: "echo helper up; sleep 1000 # --token ${TOKEN}"
    depends_on_gateway: false
    auto_start: true
    ready: { log: "helper up" }
processes:
  job: { command: "true", one_shot: true }
"#,
    );
    up_d(&space);
    let tokens_dir = space.path().join(".mew/tokens");
    let token = std::fs::read_to_string(tokens_dir.join("agent.token"))
        .unwrap()
        .trim()
        .to_string();
    let token2 = std::fs::read_to_string(tokens_dir.join("helper.token"))
        .unwrap()
        .trim()
        .to_string();
    assert!(token.len() >= 20 && token2.len() >= 20);
    assert!(
        wait_for(Duration::from_secs(20), || space
            .log("agent")
            .contains("token-ok")),
        "the participant did not get its token: {}",
        space.log("agent")
    );
    let mut shown = Vec::new();
    for args in [
        &["space", "status"][..],
        &["space", "status", "--json"],
        &["space", "check"],
        &["space", "check", "--json"],
        &["space", "logs"],
        &["space", "ls", "--json"],
        // error messages
        &["space", "restart", "no-such"],
        &["space", "logs", "no-such"],
        &["space", "up", "-d"],
        &["space", "clean"],
    ] {
        let out = mew(&space, args);
        shown.push((args, out.stdout + &out.stderr));
    }
    // A broken config's error report quotes the line holding `${TOKEN}`.
    let broken = space.path().join("broken.yaml");
    std::fs::write(
        &broken,
        "participants:\n  agent: { command: \"x ${TOKEN}\", restart_policy: sometimes }\n",
    )
    .unwrap();
    let out = mew(
        &space,
        &["--config", broken.to_str().unwrap(), "space", "check"],
    );
    assert_eq!(out.code(), Some(2));
    shown.push((&["check", "broken"], out.stdout + &out.stderr));
    down(&space);
    assert!(space.wait_no_survivors().is_empty());
    let status_json = &shown[1].1;
    assert!(status_json.contains("****"), "{status_json}");
    for (args, text) in &shown {
        for t in [&token, &token2] {
            assert!(
                !text.contains(t.as_str()),
                "{args:?} shows a token:\n{text}"
            );
        }
    }
    let mut files = Vec::new();
    all_files(&space.path().join(".mew"), &mut files);
    for f in files.iter().filter(|f| !f.starts_with(&tokens_dir)) {
        let text = String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned();
        for t in [&token, &token2] {
            assert!(
                !text.contains(t.as_str()),
                "{} contains a token:\n{text}",
                f.display()
            );
        }
    }
    // clean --tokens removes them; a new up makes new ones.
    let out = mew(&space, &["space", "clean", "--tokens"]);
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(!tokens_dir.join("agent.token").exists());
    assert!(!tokens_dir.join("helper.token").exists());
    up_d(&space);
    let fresh = std::fs::read_to_string(tokens_dir.join("agent.token")).unwrap();
    assert_ne!(
        fresh.trim(),
        token,
        "clean --tokens did not replace the token"
    );
    down(&space);
    assert!(space.wait_no_survivors().is_empty());
}

/// Names that would escape `.mew/logs/` (or are otherwise unfit as file
/// names) are configuration errors with a location, through the real
/// binary, and nothing is started or written.
#[test]
fn hostile_names_are_rejected_with_a_location() {
    let long = "a".repeat(65);
    let very_long = "b".repeat(10_000);
    // (YAML scalar as written, what it means)
    let names: Vec<(String, &str)> = vec![
        ("\"../x\"".into(), "../x"),
        ("\"../../../../tmp/mew-escape\"".into(), "relative escape"),
        ("\"/etc/passwd\"".into(), "/etc/passwd"),
        ("\"a\\0b\"".into(), "NUL"),
        ("\"a/b\"".into(), "slash"),
        ("\"..\"".into(), ".."),
        ("\".hidden\"".into(), "leading dot"),
        ("\"-rf\"".into(), "leading dash"),
        ("\"with space\"".into(), "space"),
        ("\"tab\\there\"".into(), "tab"),
        ("\"new\\nline\"".into(), "newline"),
        ("\"ünïcode\"".into(), "unicode"),
        ("\"\"".into(), "empty"),
        (long.clone(), "65 characters"),
        (very_long.clone(), "10,000 characters"),
    ];
    for (scalar, what) in &names {
        for section in ["processes", "participants"] {
            let yaml = format!(
                "{section}:\n  ok: {{ command: \"true\", depends_on_gateway: false }}\n  {scalar}: {{ command: \"touch /tmp/mew-escape-{{mark}}\" }}\n"
            );
            let space = Space::new(&yaml);
            let out = mew(&space, &["space", "check"]);
            assert_eq!(
                out.code(),
                Some(2),
                "{what} in {section}: check accepted it\n{}\n{}",
                out.stdout,
                out.stderr
            );
            assert!(
                out.stderr.contains("space.yaml:3:3:"),
                "{what} in {section}: no location:\n{}",
                &out.stderr[..out.stderr.len().min(2000)]
            );
            // `up` refuses it too, before anything is spawned or written.
            let mut cmd = space.mew();
            cmd.args(["space", "up", "--no-tui"]);
            let out = run(cmd, Duration::from_secs(30));
            assert_eq!(out.code(), Some(2), "{what}: up:\n{}", out.stderr);
            assert!(
                !space.path().join(".mew/logs").exists(),
                "{what}: logs written"
            );
            assert!(
                !space.path().join(".mew/run").exists(),
                "{what}: run dir made"
            );
            assert!(!Path::new(&format!("/tmp/mew-escape-{}", space.mark)).exists());
        }
    }
    // A space id is a label, never a file name (upstream accepts any
    // string, `{{SPACE_NAME}}` left by a template included): a path-like
    // one is accepted and escapes nothing; control characters are refused.
    let space =
        Space::new("space: { id: \"../../etc\" }\nprocesses:\n  a: { command: \"true\" }\n");
    let out = mew(&space, &["space", "check"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let out = mew(&space, &["space", "up", "--no-tui"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(space.path().join(".mew/logs/a.log").exists());
    let space = Space::new(
        "space: { id: \"a\\u001b]52;c;x\\u0007\" }\nprocesses:\n  a: { command: \"true\" }\n",
    );
    let out = mew(&space, &["space", "check"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("space.yaml:1:"), "{}", out.stderr);
    assert!(!out.stderr.contains('\x1b'), "{}", out.stderr);
}

/// A space directory with spaces, quotes and unicode in its path works end
/// to end: up -d --wait, status, logs, restart, down.
#[test]
fn a_space_dir_with_spaces_quotes_and_unicode_works() {
    let base = tempfile::Builder::new()
        .prefix("mew-test-")
        .tempdir()
        .unwrap();
    let dir = base
        .path()
        .join("my space 'single' \"double\" ünï 空間 $HOME `x`");
    std::fs::create_dir_all(dir.join(".mew")).unwrap();
    let mark = format!("weird{}", std::process::id());
    std::fs::write(
        dir.join(".mew/space.yaml"),
        "processes:\n  app: { command: \"echo hello from $MEW_SPACE_DIR; sleep 1000\" }\n  job: { command: \"echo job done\", one_shot: true }\n",
    )
    .unwrap();
    let mew_in = |args: &[&str]| {
        let mut cmd = Command::new(common::MEW);
        cmd.arg("--space-dir").arg(&dir).args(args);
        cmd.env("TEST_MARK", &mark).env("NO_COLOR", "1");
        run(cmd, Duration::from_secs(60))
    };
    let survivors = || mew::procfs::find_marked("TEST_MARK", &mark);
    let out = mew_in(&["space", "up", "-d", "--wait", "--timeout", "60s"]);
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    let out = mew_in(&["space", "status", "--json"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let status: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(status["space"]["dir"], dir.to_str().unwrap());
    let dir_text = dir.to_str().unwrap().to_string();
    assert!(wait_for(Duration::from_secs(20), || {
        mew_in(&["space", "logs", "app"])
            .stdout
            .contains(&format!("hello from {dir_text}"))
    }));
    assert!(
        mew_in(&["space", "logs", "job"])
            .stdout
            .contains("job done")
    );
    let out = mew_in(&["space", "restart", "app"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let out = mew_in(&["space", "down"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let end = std::time::Instant::now() + Duration::from_secs(10);
    while !survivors().is_empty() && std::time::Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = survivors();
    for pid in &left {
        util::signal(*pid, "KILL");
    }
    assert!(left.is_empty(), "survivors: {left:?}");
}
