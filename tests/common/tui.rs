//! Shared fixtures for the TUI tests: a demo space with real vt100 terminals.
#![allow(dead_code, clippy::unwrap_used)]

use crossterm::event::{
    Event, KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use mew::config::ProcKind;
use mew::status::{ParticipantStatus, ProcState, Transition};
use mew::tui::testing::{MemorySource, empty_status, process};
use mew::tui::{Action, App};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

/// A fixed "now" so uptimes and ages are stable in snapshots.
pub const NOW: u64 = 1_700_000_000_000;
pub const MIN: u64 = 60_000;

pub fn key(code: KeyCode) -> Event {
    Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
}
pub fn ch(c: char) -> Event {
    key(KeyCode::Char(c))
}
pub fn ctrl(c: char) -> Event {
    Event::Key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL))
}
pub fn mouse(kind: MouseEventKind, col: u16, row: u16) -> Event {
    Event::Mouse(MouseEvent {
        kind,
        column: col,
        row,
        modifiers: KeyModifiers::NONE,
    })
}
pub fn click(col: u16, row: u16) -> Event {
    mouse(MouseEventKind::Down(MouseButton::Left), col, row)
}

/// Sends events to the app and plays the server's part for `Resize`
/// (resizing the process's terminal, as TIOCSWINSZ would). Returns the
/// actions other than `Resize`.
pub fn send(
    app: &mut App,
    src: &MemorySource,
    events: impl IntoIterator<Item = Event>,
) -> Vec<Action> {
    let mut out = Vec::new();
    for ev in events {
        for a in app.handle_event(ev, src) {
            match a {
                Action::Resize {
                    process,
                    rows,
                    cols,
                } => src.resize(&process, rows, cols),
                other => out.push(other),
            }
        }
    }
    out
}

pub fn typed(s: &str) -> Vec<Event> {
    s.chars().map(ch).collect()
}

/// Renders the app into a TestBackend of the given size.
pub fn render(app: &App, src: &MemorySource, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| app.draw(f, src)).unwrap();
    t
}

/// An app sized `w`×`h` with a frozen clock; the panes already resized.
pub fn app(src: &MemorySource, w: u16, h: u16) -> App {
    let mut app = App::new(&[]).unwrap();
    app.set_clock(Some(NOW));
    send(&mut app, src, [Event::Resize(w, h)]);
    app
}

fn log_lines(name: &str, n: usize) -> String {
    let mut s = String::new();
    for i in 1..=n {
        let (lvl, color) = if i % 7 == 0 {
            ("WARN", 33)
        } else {
            ("INFO", 32)
        };
        s.push_str(&format!(
            "\x1b[2m12:00:{:02}\x1b[0m \x1b[{color}m{lvl}\x1b[0m {name}: GET /items/{i} \x1b[1m200\x1b[0m {}ms\r\n",
            i % 60,
            i * 3 % 17
        ));
    }
    s
}

/// The demo space: one process in every state, two participants. Every
/// process that ran has a terminal with some output.
pub fn demo() -> MemorySource {
    let mut st = empty_status("shop");
    st.gateway_url = Some("http://127.0.0.1:7777".into());
    let mut gateway = process("gateway", ProcState::Ready, NOW - 12 * MIN);
    gateway.kind = ProcKind::Gateway;
    let mut api = process("api", ProcState::Ready, NOW - 5 * MIN - 12_000);
    api.restarts = 2;
    api.cpu_percent = Some(3.5);
    api.rss_bytes = Some(84 * 1024 * 1024 + 300 * 1024);
    api.probe = Some("GET http://127.0.0.1:8080/health: 200 OK".into());
    let mut worker = process("worker", ProcState::Running, NOW - 40_000);
    worker.probe = Some("tcp 127.0.0.1:9000: connection refused".into());
    let db = process("db", ProcState::Starting, NOW - 2_000);
    let mut migrate = process("migrate", ProcState::Exited { code: 0 }, NOW - 11 * MIN);
    migrate.one_shot = true;
    let mut web = process(
        "web",
        ProcState::Backoff { until: NOW + 4_000 },
        NOW - 30_000,
    );
    web.restarts = 3;
    web.exit_code = Some(1);
    web.history = vec![
        Transition {
            at: NOW - 62_000,
            state: ProcState::Starting,
            reason: "spawned".into(),
        },
        Transition {
            at: NOW - 60_000,
            state: ProcState::Ready,
            reason: "no probe".into(),
        },
        Transition {
            at: NOW - 31_000,
            state: ProcState::Exited { code: 1 },
            reason: "exit 1".into(),
        },
        Transition {
            at: NOW - 31_000,
            state: ProcState::Backoff {
                until: NOW - 27_000,
            },
            reason: "exit 1".into(),
        },
        Transition {
            at: NOW - 27_000,
            state: ProcState::Starting,
            reason: "restart 3 of 10".into(),
        },
        Transition {
            at: NOW - 4_000,
            state: ProcState::Exited { code: 1 },
            reason: "exit 1".into(),
        },
        Transition {
            at: NOW - 4_000,
            state: ProcState::Backoff { until: NOW + 4_000 },
            reason: "exit 1".into(),
        },
    ];
    let cron = process("cron", ProcState::Stopped, NOW - 20 * MIN);
    let mut mailer = process("mailer", ProcState::Idle, 0);
    mailer.started_at = None;
    let flaky = process(
        "flaky",
        ProcState::Failed {
            reason: "gave up after 5 restarts".into(),
        },
        NOW - 3 * MIN,
    );
    let legacy = process("legacy", ProcState::Killed { signal: 9 }, NOW - 7 * MIN);
    let mut queue = process(
        "queue",
        ProcState::Pending {
            waiting_for: vec!["db".into()],
        },
        0,
    );
    queue.started_at = None;
    st.processes = vec![
        gateway, api, worker, db, migrate, web, cron, mailer, flaky, legacy, queue,
    ];
    st.participants = vec![
        ParticipantStatus {
            name: "alice".into(),
            note: "human".into(),
        },
        ParticipantStatus {
            name: "bot-7".into(),
            note: "agent".into(),
        },
    ];
    let mut src = MemorySource::new(st);
    for name in [
        "gateway", "api", "worker", "db", "migrate", "web", "cron", "flaky", "legacy",
    ] {
        src.add_terminal(name, 24, 80, 1000);
    }
    src.feed(
        "gateway",
        b"gateway listening on http://127.0.0.1:7777\r\n\x1b[36m2 participants joined\x1b[0m\r\n",
    );
    src.feed("api", log_lines("api", 40).as_bytes());
    src.feed("api", "\x1b[1;35mready\x1b[0m — 日本語 ok\r\n$ ".as_bytes());
    src.feed("worker", b"worker: connecting to queue...\r\n\x1b[31merror\x1b[0m: tcp 127.0.0.1:9000: connection refused\r\n");
    src.feed("db", b"db: starting up\r\n");
    src.feed("migrate", b"applied 3 migrations\r\n");
    src.feed(
        "web",
        b"web: \x1b[4mlistening\x1b[0m\r\n\x1b[41;97m panic \x1b[0m index out of range\r\n",
    );
    src.feed("cron", b"cron: next run 12:00\r\n");
    src.feed("flaky", b"flaky: crashed\r\n");
    src.feed("legacy", b"legacy: still here\r\n");
    src
}

/// `n` running processes, each with a few lines of output.
pub fn many(n: usize) -> MemorySource {
    let mut st = empty_status("fleet");
    for i in 1..=n {
        st.processes.push(process(
            &format!("svc{i}"),
            ProcState::Ready,
            NOW - (i as u64) * MIN,
        ));
    }
    let mut src = MemorySource::new(st);
    for i in 1..=n {
        let name = format!("svc{i}");
        src.add_terminal(&name, 24, 80, 100);
        for l in 1..=5 {
            src.feed(&name, format!("{name} line {l}\r\n").as_bytes());
        }
    }
    src
}

/// The demo space with a space view: a human (mew), an agent and a file
/// server talking — chat, an MCP request and its response, a proposal, a
/// denied capability check, a stream, a long payload.
pub fn space_demo() -> MemorySource {
    let mut src = demo();
    let mut log = mew::envelopes::SpaceLog::new(5000);
    log.default_to = vec!["agent".into()];
    src.set_space(log);
    let s = 1000;
    let frames = [
        r#"{"kind":"system/welcome","from":"system:gateway","to":["human"],"payload":{"you":{"id":"human","capabilities":[{"kind":"*"}]},"participants":[{"id":"agent","capabilities":[{"kind":"chat"},{"kind":"mcp/*"}]},{"id":"fs","capabilities":[{"kind":"mcp/response"}]}]}}"#,
        r#"{"id":"c1","kind":"chat","from":"human","to":["agent"],"payload":{"text":"hello agent","format":"plain"}}"#,
        r#"{"id":"c2","kind":"chat","from":"agent","to":["human"],"payload":{"text":"echo: hello agent","format":"plain"}}"#,
        r#"{"id":"r1","kind":"mcp/request","from":"agent","to":["fs"],"payload":{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"notes.txt"}}}}"#,
        r#"{"id":"r2","kind":"mcp/response","from":"fs","to":["agent"],"correlation_id":["r1"],"payload":{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"buy milk"}]}}}"#,
        r#"{"kind":"system/error","from":"system:gateway","to":["fs"],"payload":{"error":"capability_violation","message":"fs may not send chat","attempted_kind":"chat"}}"#,
        r#"{"id":"s1","kind":"stream/request","from":"agent","to":["system:gateway"],"payload":{"direction":"upload","description":"reasoning"}}"#,
        r#"{"kind":"stream/open","from":"system:gateway","to":["agent"],"correlation_id":["s1"],"payload":{"stream_id":"stream-1","owner":"agent","description":"reasoning","encoding":"text"}}"#,
        "#stream-1#thinking about milk",
        r#"{"id":"p1","kind":"mcp/proposal","from":"agent","to":["fs"],"payload":{"method":"tools/call","params":{"name":"write_file","arguments":{"path":"notes.txt","content":"buy milk and eggs"}}}}"#,
    ];
    for (i, f) in frames.iter().enumerate() {
        src.envelope(f, NOW - s * (frames.len() - i) as u64);
    }
    src
}

/// A long chat (escapes and newlines included) for the space view.
pub fn long_chat() -> String {
    let text = format!(
        "{}\nsecond line \u{1b}[31mred?\u{7}",
        "lorem ipsum ".repeat(40)
    );
    serde_json::json!({"id":"c9","kind":"chat","from":"agent","to":["human"],"payload":{"text": text}}).to_string()
}
