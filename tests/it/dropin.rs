//! The upstream MEW CLI's participant semantics, with the real binary and a
//! real space: FIFO participants made, connected and removed by mew;
//! participant commands started only with `auto_start: true`; the upstream
//! log locations linked to mew's logs.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::time::Duration;

use common::{Space, free_port, wait_for};

const DEADLINE: Duration = Duration::from_secs(120);

fn mew(space: &Space, args: &[&str]) -> common::Output {
    let mut c = space.mew();
    c.args(args);
    common::run(c, DEADLINE)
}

fn up(space: &Space) {
    let port = free_port().to_string();
    let out = mew(space, &["space", "up", "-d", "--wait", "--port", &port]);
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
}

fn down(space: &Space) {
    let out = mew(space, &["space", "down"]);
    assert_eq!(out.code(), Some(0), "{}\n{}", out.stdout, out.stderr);
    assert!(space.wait_no_survivors().is_empty());
}

fn status(space: &Space) -> serde_json::Value {
    let out = mew(space, &["space", "status", "--json"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    serde_json::from_str(&out.stdout).unwrap()
}

fn state_of(space: &Space, name: &str) -> String {
    status(space)["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map(|p| p["state"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

fn read(space: &Space, rel: &str) -> String {
    std::fs::read_to_string(space.path().join(rel)).unwrap_or_default()
}

#[test]
fn a_fifo_participant_is_made_connected_and_removed_by_mew() {
    let space = Space::new(
        r#"
space: { id: "{{SPACE_NAME}}" }
participants:
  writer:
    fifo: true
    auto_connect: true
    output_log: ./logs/writer-output.log
    tokens: [writer-token]
    capabilities: [ { kind: chat } ]
  duplex:
    fifo: true
    tokens: [duplex-token]
    capabilities: [ { kind: chat } ]
  watcher:
    output_log: ./logs/watcher.log
    auto_connect: true
    tokens: [watcher-token]
    capabilities: [ { kind: chat } ]
"#,
    );
    up(&space);
    let fifos = space.path().join(".mew/fifos");
    let dir_mode = std::fs::metadata(&fifos).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    for (name, want) in [
        ("writer-in", true),
        ("writer-out", false), // it has an output_log
        ("duplex-in", true),
        ("duplex-out", true), // no output_log: its output is a FIFO too
    ] {
        let m = std::fs::symlink_metadata(fifos.join(name));
        assert_eq!(m.is_ok(), want, "{name}: {m:?}");
        if let Ok(m) = m {
            assert!(m.file_type().is_fifo(), "{name}");
            assert_eq!(m.permissions().mode() & 0o777, 0o600, "{name}");
        }
    }
    // The connected one is a process: mew's own client.
    assert!(
        wait_for(DEADLINE, || state_of(&space, "writer") == "ready"),
        "{}",
        status(&space)
    );
    // An envelope written to its FIFO reaches the space: the gateway's
    // output_log participant sees it, and so does the writer itself.
    std::fs::write(
        fifos.join("writer-in"),
        "{\"kind\":\"chat\",\"payload\":{\"text\":\"through the fifo\"}}\n",
    )
    .unwrap();
    assert!(
        wait_for(DEADLINE, || read(&space, "logs/watcher.log")
            .contains("through the fifo")),
        "watcher: {}\nwriter's client: {}",
        read(&space, "logs/watcher.log"),
        space.log("writer")
    );
    assert!(wait_for(DEADLINE, || {
        read(&space, "logs/writer-output.log").contains("\"from\":\"writer\"")
    }));
    // Its upstream log name points at mew's log of that client.
    let link = space.path().join("logs/writer-client.log");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), space.log_path("writer"));
    // No token in what mew shows.
    let shown = status(&space).to_string();
    assert!(
        !shown.contains("writer-token") && !shown.contains("--token"),
        "{shown}"
    );
    down(&space);
    assert!(
        !fifos.exists(),
        "{:?}",
        std::fs::read_dir(&fifos).map(|d| d.count())
    );
}

#[test]
fn a_participant_command_waits_for_auto_start_and_upstream_log_names_link_to_mews_logs() {
    let space = Space::new(
        r#"
participants:
  eager:
    command: "echo eager-ran; exec sleep 300"
    auto_start: true
    depends_on_gateway: false
  lazy:
    command: "echo lazy-ran; exec sleep 300"
    depends_on_gateway: false
  kept:
    command: "echo kept-ran; exec sleep 300"
    auto_start: true
    depends_on_gateway: false
"#,
    );
    let logs = space.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    // An empty file (a setup script's `: > logs/eager.log`) is replaced;
    // a file with someone's content is left alone.
    std::fs::write(logs.join("eager.log"), "").unwrap();
    std::fs::write(logs.join("kept.log"), "mine\n").unwrap();
    up(&space);
    assert!(wait_for(DEADLINE, || space
        .log("eager")
        .contains("eager-ran")));
    assert_eq!(state_of(&space, "lazy"), "idle", "{}", status(&space));
    assert!(!space.log("lazy").contains("lazy-ran"));
    assert!(wait_for(DEADLINE, || std::fs::read_to_string(
        logs.join("eager.log")
    )
    .is_ok_and(|t| t.contains("eager-ran"))));
    assert_eq!(
        std::fs::read_to_string(logs.join("kept.log")).unwrap(),
        "mine\n"
    );
    assert!(
        space
            .log("mew-server")
            .contains("kept.log exists and is not mew's"),
        "{}",
        space.log("mew-server")
    );
    // Started by hand, as the warning says.
    let out = mew(&space, &["space", "start", "lazy"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(wait_for(DEADLINE, || std::fs::read_to_string(
        logs.join("lazy.log")
    )
    .is_ok_and(|t| t.contains("lazy-ran"))));
    down(&space);
}

#[test]
fn up_warns_about_a_participant_command_without_auto_start() {
    let space = Space::new("participants:\n  lazy: { command: \"sleep 300\" }\n");
    let out = mew(&space, &["space", "check"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stdout
            .contains("participant `lazy` has a command but no `auto_start: true`")
            && out.stdout.contains("mew space start lazy"),
        "{}",
        out.stdout
    );
}

/// `up --no-tui --envelopes`: the conversation, as the space's person sees
/// it, beside the process lines, one escaped line per envelope.
#[test]
fn no_tui_envelopes_prints_the_conversation() {
    let space = Space::new(&format!(
        r#"
space: {{ id: talk }}
participants:
  human: {{ tokens: [human-secret-token], capabilities: [ {{ kind: "*" }} ] }}
  other: {{ tokens: [other-secret-token], capabilities: [ {{ kind: "*" }} ] }}
{}"#,
        common::echo_agent()
    ));
    let out_path = space.path().join("up.out");
    let out = std::fs::File::create(&out_path).unwrap();
    let port = free_port().to_string();
    let mut up = space.mew();
    up.args([
        "space",
        "up",
        "--no-tui",
        "--envelopes",
        "--timestamps=false",
        "--port",
        &port,
    ])
    .stdin(std::process::Stdio::null())
    .stdout(out)
    .stderr(std::process::Stdio::null());
    let mut child = up.spawn().unwrap();
    let printed = || std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        wait_for(DEADLINE, || space
            .log("agent")
            .contains("agent agent joined")),
        "{}",
        space.log("agent")
    );
    // The space view has joined (it retries until the gateway is up): only
    // what is said from then on is in its history.
    assert!(
        wait_for(DEADLINE, || printed()
            .contains("system/welcome: joined as human")),
        "{}",
        printed()
    );
    // Someone else says something; the agent answers; both are printed.
    let mut connect = space.mew();
    connect
        .args(["space", "connect", "--participant", "other"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut c = connect.spawn().unwrap();
    {
        use std::io::Write as _;
        let mut stdin = c.stdin.take().unwrap();
        stdin.write_all(b"hello \x1b[2J agent\n").unwrap();
        // EOF: the line is sent, then the client leaves.
    }
    let _ = c.wait();
    assert!(
        wait_for(DEADLINE, || printed()
            .contains("agent → other chat: echo: hello")),
        "{}",
        printed()
    );
    let text = printed();
    let line = |want: &str| {
        text.lines()
            .any(|l| l.starts_with("space ") && l.ends_with(want))
    };
    assert!(line("| other → * chat: hello \\x1b[2J agent"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("space ")
            && l.contains("| system:gateway → human system/welcome: joined as human")),
        "{text}"
    );
    // Process lines are there too, and no token anywhere.
    assert!(text.contains("| agent agent starting"), "{text}");
    assert!(
        !text.contains("secret-token") && !text.contains('\u{1b}'),
        "{text}"
    );
    common::kill(child.id(), "INT");
    let _ = child.wait();
    assert!(space.wait_no_survivors().is_empty());
}
