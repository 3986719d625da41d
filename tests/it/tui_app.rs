//! Behaviour of one client's App: events in, actions out, against real
//! vt100 terminals.
#![allow(clippy::unwrap_used)] // tests may unwrap (helpers are not #[test] fns)

use crate::common::tui as tui_common;

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEventKind};
use mew::status::ProcState;
use mew::tui::{Action, App};
use tui_common::*;

fn input(process: &str, bytes: &[u8]) -> Action {
    Action::Input {
        process: process.into(),
        bytes: bytes.to_vec(),
    }
}

fn screen_text(t: &ratatui::Terminal<ratatui::backend::TestBackend>) -> String {
    let buf = t.backend().buffer();
    let mut s = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}

#[test]
fn new_rejects_bad_ui_keys() {
    let err = App::new(&[("zoomm".into(), "z".into())]).err().unwrap();
    assert!(
        err.contains("unknown action \"zoomm\"") && err.contains("did you mean \"zoom\""),
        "{err}"
    );
    let err = App::new(&[("zoom".into(), "Shift+z".into())])
        .err()
        .unwrap();
    assert!(err.starts_with("ui.keys.zoom: unknown key"), "{err}");
}

#[test]
fn focus_sends_keys_to_the_process() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    assert_eq!(send(&mut app, &src, [ch('j'), key(KeyCode::Enter)]), vec![]);
    assert_eq!(app.focused_process(), Some("api"));
    let got = send(
        &mut app,
        &src,
        [
            ch('l'),
            ch('s'),
            key(KeyCode::Enter),
            ctrl('c'),
            key(KeyCode::Up),
        ],
    );
    assert_eq!(
        got,
        vec![
            input("api", b"l"),
            input("api", b"s"),
            input("api", b"\r"),
            input("api", b"\x03"),
            input("api", b"\x1b[A")
        ]
    );
    // Ctrl-C went to the process, not to quit
    assert!(!app.is_quitting());
    // the program switches to application cursor mode: arrows follow
    src.feed("api", b"\x1b[?1h");
    assert_eq!(
        send(&mut app, &src, [key(KeyCode::Up)]),
        vec![input("api", b"\x1bOA")]
    );
}

#[test]
fn prefix_leaves_focus_twice_sends_it_and_d_detaches() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), ch('i')]);
    assert_eq!(app.focused_process(), Some("api"));
    // prefix: leaves focus, nothing reaches the process
    assert_eq!(send(&mut app, &src, [ctrl('b')]), vec![]);
    assert_eq!(app.focused_process(), None);
    // prefix again: a literal C-b goes to the process and focus comes back
    assert_eq!(
        send(&mut app, &src, [ctrl('b')]),
        vec![input("api", b"\x02")]
    );
    assert_eq!(app.focused_process(), Some("api"));
    // prefix then d: detach
    assert_eq!(
        send(&mut app, &src, [ctrl('b'), ch('d')]),
        vec![Action::Detach]
    );
    // prefix then another key: that key works in the list (j moves down)
    send(&mut app, &src, [ch('i'), ctrl('b'), ch('j')]);
    assert_eq!(app.selected(), Some("worker"));
    assert_eq!(app.focused_process(), None);
    // outside focus, the prefix does nothing to any process
    assert_eq!(send(&mut app, &src, [ctrl('b')]), vec![]);
}

#[test]
fn remapped_prefix() {
    let src = demo();
    let mut app = App::new(&[("prefix".into(), "C-a".into())]).unwrap();
    send(
        &mut app,
        &src,
        [Event::Resize(80, 24), ch('j'), key(KeyCode::Enter)],
    );
    assert_eq!(
        send(&mut app, &src, [ctrl('b')]),
        vec![input("api", b"\x02")]
    );
    assert_eq!(send(&mut app, &src, [ctrl('a')]), vec![]);
    assert_eq!(app.focused_process(), None);
    assert_eq!(
        send(&mut app, &src, [ctrl('a')]),
        vec![input("api", b"\x01")]
    );
}

#[test]
fn remapped_commands() {
    let src = demo();
    let mut app = App::new(&[
        ("restart".into(), "F5".into()),
        ("quit".into(), "C-q".into()),
    ])
    .unwrap();
    send(&mut app, &src, [Event::Resize(80, 24)]);
    assert_eq!(send(&mut app, &src, [ch('r')]), vec![]);
    assert_eq!(
        send(&mut app, &src, [key(KeyCode::F(5))]),
        vec![Action::Restart("gateway".into())]
    );
    send(&mut app, &src, [ch('q')]);
    assert_eq!(
        send(&mut app, &src, [ch('y')]),
        vec![],
        "q no longer asks to quit"
    );
    send(&mut app, &src, [ctrl('q')]);
    assert_eq!(send(&mut app, &src, [ch('y')]), vec![Action::Quit]);
}

#[test]
fn focus_refuses_a_process_that_is_not_running() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, (0..7).map(|_| ch('j'))); // mailer: idle
    assert_eq!(app.selected(), Some("mailer"));
    send(&mut app, &src, [key(KeyCode::Enter)]);
    assert_eq!(app.focused_process(), None);
    let text = screen_text(&render(&app, &src, 80, 24));
    assert!(text.contains("mailer is idle: s starts it"), "{text}");
}

#[test]
fn lifecycle_commands() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j')]);
    assert_eq!(
        send(&mut app, &src, [ch('r')]),
        vec![Action::Restart("api".into())]
    );
    assert_eq!(
        send(&mut app, &src, [ch('s')]),
        vec![Action::Stop("api".into())]
    );
    // kill asks first; n cancels, y confirms
    assert_eq!(send(&mut app, &src, [ch('x'), ch('n')]), vec![]);
    assert_eq!(
        send(&mut app, &src, [ch('x'), ch('y')]),
        vec![Action::Kill("api".into())]
    );
    // a stopped process starts with s
    send(&mut app, &src, (0..5).map(|_| ch('j'))); // cron: stopped
    assert_eq!(app.selected(), Some("cron"));
    assert_eq!(
        send(&mut app, &src, [ch('s')]),
        vec![Action::Start("cron".into())]
    );
    // kill of a process that is not running does not ask
    assert_eq!(send(&mut app, &src, [ch('x'), ch('y')]), vec![]);
    // restart all asks
    assert_eq!(send(&mut app, &src, [ch('R'), key(KeyCode::Esc)]), vec![]);
    assert_eq!(
        send(&mut app, &src, [ch('R'), key(KeyCode::Enter)]),
        vec![Action::RestartAll]
    );
    assert_eq!(send(&mut app, &src, [ch('d')]), vec![Action::Detach]);
}

#[test]
fn quit_asks_then_shows_the_quitting_view() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    assert_eq!(send(&mut app, &src, [ch('q'), key(KeyCode::Esc)]), vec![]);
    assert!(!app.is_quitting());
    // Ctrl-C twice quits, as users expect
    assert_eq!(
        send(&mut app, &src, [ctrl('c'), ctrl('c')]),
        vec![Action::Quit]
    );
    assert!(app.is_quitting());
    // other keys do nothing while quitting
    assert_eq!(send(&mut app, &src, [ch('r'), ch('y'), ch('j')]), vec![]);
    let text = screen_text(&render(&app, &src, 80, 24));
    assert!(text.contains("stopping space \"shop\""), "{text}");
}

#[test]
fn quit_again_while_stopping_kills_now() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('q'), ch('y')]);
    assert!(app.is_quitting());
    let text = screen_text(&render(&app, &src, 80, 24));
    assert!(text.contains("again: kill now"), "{text}");
    // A second quit (q or Ctrl-C), as a second Ctrl-C in --no-tui: kill now, once.
    assert_eq!(send(&mut app, &src, [ch('q')]), vec![Action::QuitNow]);
    assert_eq!(send(&mut app, &src, [ctrl('c'), ch('q')]), vec![]);
    let text = screen_text(&render(&app, &src, 80, 24));
    assert!(text.contains("killing every process now"), "{text}");
    // Also when the space is stopped by another client or `mew space down`.
    let mut other = tui_common::app(&src, 80, 24);
    other.quitting();
    assert_eq!(send(&mut other, &src, [ctrl('c')]), vec![Action::QuitNow]);
}

#[test]
fn focus_is_left_when_the_focused_process_ends() {
    let mut src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), key(KeyCode::Enter)]);
    assert_eq!(app.focused_process(), Some("api"));
    assert!(!app.update(&src));
    src.status.processes[1].state = ProcState::Exited { code: 1 };
    src.status.processes[1].exit_code = Some(1);
    src.status.processes[1].pid = None;
    // The server calls `update` before each frame: the footer says why.
    assert!(app.update(&src));
    assert_eq!(app.focused_process(), None);
    let text = screen_text(&render(&app, &src, 80, 24));
    assert!(text.contains("api exited (code 1): focus left"), "{text}");
    assert!(!text.contains("FOCUS"), "{text}");
    // Keys are commands again.
    send(&mut app, &src, [ch('j')]);
    assert_eq!(app.selected(), Some("worker"));
}

#[test]
fn a_key_for_a_process_that_just_ended_is_not_sent_nor_a_command() {
    let mut src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), key(KeyCode::Enter)]);
    src.status.processes[1].state = ProcState::Killed { signal: 9 };
    // Before any frame: the key is dropped, not typed and not a command.
    assert_eq!(send(&mut app, &src, [ch('s')]), vec![]);
    assert_eq!(app.focused_process(), None);
    let text = screen_text(&render(&app, &src, 80, 24));
    assert!(
        text.contains("api was killed (SIGKILL): focus left"),
        "{text}"
    );
}

#[test]
fn a_new_run_of_the_focused_process_leaves_focus() {
    let mut src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), key(KeyCode::Enter)]);
    assert!(!app.update(&src));
    // Crashed and restarted between two looks: another pid, ready again.
    let api = &mut src.status.processes[1];
    api.pid = api.pid.map(|p| p + 1);
    api.exit_code = Some(3);
    assert!(app.update(&src));
    let text = screen_text(&render(&app, &src, 80, 24));
    assert!(
        text.contains("api exited (code 3), restarting: focus left"),
        "{text}"
    );
}

#[test]
fn resize_actions_follow_the_layout() {
    let src = demo();
    let mut app = App::new(&[]).unwrap();
    let first = app.handle_event(Event::Resize(80, 24), &src);
    assert_eq!(
        first,
        vec![Action::Resize {
            process: "gateway".into(),
            rows: 20,
            cols: 54
        }]
    );
    // the same size again: nothing to do
    assert_eq!(app.handle_event(Event::Resize(80, 24), &src), vec![]);
    // a new selection gets its pane size
    assert_eq!(
        app.handle_event(ch('j'), &src),
        vec![Action::Resize {
            process: "api".into(),
            rows: 20,
            cols: 54
        }]
    );
    // zoom: the whole screen but the status line
    assert_eq!(
        app.handle_event(ch('z'), &src),
        vec![Action::Resize {
            process: "api".into(),
            rows: 23,
            cols: 80
        }]
    );
    // the terminal grows
    assert_eq!(
        app.handle_event(Event::Resize(120, 40), &src),
        vec![Action::Resize {
            process: "api".into(),
            rows: 39,
            cols: 120
        }]
    );
    // grid of the 4 alive processes (gateway, api, worker, db) plus web (backoff), flaky (failed), legacy (killed)
    let mut grid = app.handle_event(ch('z'), &src);
    grid.extend(app.handle_event(ch('g'), &src));
    let names: Vec<String> = app
        .desired_sizes(&src)
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(
        names,
        ["gateway", "api", "worker", "db", "web", "flaky", "legacy"]
    );
    for (name, rows, cols) in app.desired_sizes(&src) {
        assert!(rows >= 2 && cols >= 12, "{name} {rows}x{cols}");
    }
    // below the minimum size nothing is resized
    assert_eq!(app.handle_event(Event::Resize(30, 8), &src), vec![]);
    assert!(app.desired_sizes(&src).is_empty());
}

#[test]
fn take_resizes_reports_status_changes() {
    let mut src = demo();
    let mut app = app(&src, 100, 30);
    send(&mut app, &src, [ch('g')]);
    assert!(app.take_resizes(&src).is_empty());
    // cron starts: it joins the grid and every tile changes size
    src.status.processes[6].state = ProcState::Running;
    let acts = app.take_resizes(&src);
    assert!(
        acts.iter()
            .any(|a| matches!(a, Action::Resize { process, .. } if process == "cron")),
        "{acts:?}"
    );
}

#[test]
fn paste_goes_to_the_focused_process_bracketed_when_asked() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    // not focused: paste is dropped
    assert_eq!(send(&mut app, &src, [Event::Paste("ls\n".into())]), vec![]);
    send(&mut app, &src, [ch('j'), key(KeyCode::Enter)]);
    assert_eq!(
        send(&mut app, &src, [Event::Paste("ls\n".into())]),
        vec![input("api", b"ls\r")]
    );
    src.feed("api", b"\x1b[?2004h");
    assert_eq!(
        send(&mut app, &src, [Event::Paste("ls\n".into())]),
        vec![input("api", b"\x1b[200~ls\r\x1b[201~")]
    );
}

#[test]
fn mouse_selects_scrolls_and_reaches_programs_that_ask() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    // click the third list row (worker): list inner starts at row 2
    send(&mut app, &src, [click(5, 4)]);
    assert_eq!(app.selected(), Some("worker"));
    assert_eq!(app.focused_process(), None);
    // wheel over the list moves the selection
    send(&mut app, &src, [mouse(MouseEventKind::ScrollUp, 5, 10)]);
    assert_eq!(app.selected(), Some("api"));
    // wheel over the pane scrolls the output (3 lines a step)
    send(
        &mut app,
        &src,
        [
            mouse(MouseEventKind::ScrollUp, 40, 10),
            mouse(MouseEventKind::ScrollUp, 40, 10),
        ],
    );
    let text = screen_text(&render(&app, &src, 80, 24));
    assert!(text.contains("↑6/22"), "{text}");
    send(&mut app, &src, [mouse(MouseEventKind::ScrollDown, 40, 10)]);
    assert!(screen_text(&render(&app, &src, 80, 24)).contains("↑3/22"));
    // clicking the pane focuses its process
    send(&mut app, &src, [click(40, 10)]);
    assert_eq!(app.focused_process(), Some("api"));
    // the program did not ask for the mouse: the wheel still scrolls, nothing is sent
    assert_eq!(
        send(&mut app, &src, [mouse(MouseEventKind::ScrollUp, 40, 10)]),
        vec![]
    );
    // now it asks for SGR mouse reports: a click at screen (40,10) is pane cell (15,8)
    src.feed("api", b"\x1b[?1000h\x1b[?1006h");
    assert_eq!(
        send(&mut app, &src, [click(40, 10)]),
        vec![input("api", b"\x1b[<0;16;9M")]
    );
    assert_eq!(
        send(
            &mut app,
            &src,
            [mouse(MouseEventKind::Up(MouseButton::Left), 40, 10)]
        ),
        vec![input("api", b"\x1b[<0;16;9m")]
    );
    // a click on the list leaves focus and selects
    send(&mut app, &src, [click(5, 2)]);
    assert_eq!(app.focused_process(), None);
    assert_eq!(app.selected(), Some("gateway"));
}

#[test]
fn scrolled_view_stays_on_its_lines_while_output_arrives() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), key(KeyCode::PageUp)]);
    let before = screen_text(&render(&app, &src, 80, 24));
    assert!(before.contains("GET /items/4 "), "{before}");
    src.feed("api", b"new line 1\r\nnew line 2\r\nnew line 3\r\n");
    let after = screen_text(&render(&app, &src, 80, 24));
    // same content in the pane, a larger offset in the title
    let pane = |s: &str| {
        s.lines()
            .skip(2)
            .take(20)
            .map(|l| l.chars().skip(25).collect::<String>())
            .collect::<Vec<_>>()
    };
    assert_eq!(pane(&before), pane(&after));
    assert!(after.contains("↑22/25"), "{after}");
    // End returns to the live output
    send(&mut app, &src, [key(KeyCode::End)]);
    assert!(screen_text(&render(&app, &src, 80, 24)).contains("new line 3"));
    // Home goes to the oldest line
    send(&mut app, &src, [key(KeyCode::Home)]);
    assert!(screen_text(&render(&app, &src, 80, 24)).contains("GET /items/1 "));
    // typing into a focused process returns to the live view
    send(&mut app, &src, [key(KeyCode::Enter), ch('x')]);
    let live = screen_text(&render(&app, &src, 80, 24));
    assert!(live.contains("new line 3") && !live.contains("↑"), "{live}");
}

#[test]
fn search_walks_matches_and_reports_misses() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), ch('/')]);
    send(&mut app, &src, typed("warn"));
    send(&mut app, &src, [key(KeyCode::Enter)]); // smart case: matches WARN
    // WARN on lines 7, 14, 21, 28, 35: the newest visible first, then older ones
    send(&mut app, &src, [ch('n'), ch('n'), ch('n')]);
    let text = screen_text(&render(&app, &src, 80, 24));
    assert!(
        text.contains("GET /items/14 ") && text.contains("↑"),
        "{text}"
    );
    send(&mut app, &src, [ch('n')]);
    send(&mut app, &src, [ch('n')]);
    let text = screen_text(&render(&app, &src, 80, 24));
    assert!(text.contains("no older match for \"warn\""), "{text}");
    // Esc clears the search
    send(&mut app, &src, [key(KeyCode::Esc), ch('/')]);
    send(&mut app, &src, typed("nothing-like-this"));
    send(&mut app, &src, [key(KeyCode::Enter)]);
    let text = screen_text(&render(&app, &src, 80, 24));
    assert!(
        text.contains("no match for \"nothing-like-this\""),
        "{text}"
    );
    // an uppercase letter makes the search case-sensitive
    send(&mut app, &src, [key(KeyCode::Esc), ch('/')]);
    send(&mut app, &src, typed("Warn"));
    send(&mut app, &src, [key(KeyCode::Enter)]);
    assert!(screen_text(&render(&app, &src, 80, 24)).contains("no match for \"Warn\""));
}

#[test]
fn copy_mode_copies_the_selection() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    // cursor starts at the terminal cursor ("$ " line); up to "ready — 日本語 ok", select it
    let acts = send(
        &mut app,
        &src,
        [
            ch('j'),
            ch('v'),
            ch('k'),
            ch('0'),
            ch('v'),
            ch('$'),
            ch('y'),
        ],
    );
    assert_eq!(acts, vec![Action::Copy("ready — 日本語 ok".into())]);
    // multi-line, from the middle of one line to the middle of another
    let acts = send(
        &mut app,
        &src,
        [
            ch('v'),
            ch('k'),
            ch('k'),
            ch('0'),
            ch('l'),
            ch('l'),
            ch('l'),
            ch('v'),
            ch('j'),
            ch('l'),
            key(KeyCode::Enter),
        ],
    );
    assert_eq!(
        acts,
        vec![Action::Copy(
            "00:40 INFO api: GET /items/40 200 1ms\nready".into()
        )]
    );
    // y without a selection copies the cursor's line; Esc leaves without copying
    assert_eq!(
        send(&mut app, &src, [ch('v'), ch('k'), key(KeyCode::Esc)]),
        vec![]
    );
    let acts = send(&mut app, &src, [ch('v'), ch('g'), ch('y')]);
    assert_eq!(
        acts,
        vec![Action::Copy(
            "12:00:01 INFO api: GET /items/1 200 3ms".into()
        )]
    );
}

#[test]
fn copy_joins_soft_wrapped_lines() {
    let mut src = demo();
    src.status.processes[1].state = ProcState::Ready;
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j')]);
    // a line longer than the pane (54 columns) wraps
    let long: String = (0..70).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
    src.feed("api", format!("\r\n{long}\r\n").as_bytes());
    let acts = send(
        &mut app,
        &src,
        [
            ch('v'),
            ch('k'),
            ch('k'),
            ch('0'),
            ch('v'),
            ch('j'),
            ch('$'),
            ch('y'),
        ],
    );
    assert_eq!(acts, vec![Action::Copy(long)]);
}

#[test]
fn grid_navigation_and_marks() {
    let src = many(9);
    let mut app = app(&src, 100, 30);
    send(&mut app, &src, [ch('g')]);
    assert_eq!(app.selected(), Some("svc1"));
    send(&mut app, &src, [ch('l'), ch('j')]);
    assert_eq!(app.selected(), Some("svc5"));
    send(
        &mut app,
        &src,
        [key(KeyCode::Right), key(KeyCode::Down), ch('j')],
    );
    assert_eq!(app.selected(), Some("svc9"));
    send(&mut app, &src, [ch('k'), ch('h')]);
    assert_eq!(app.selected(), Some("svc5"));
    // mark two in the list; the grid then shows only them
    send(
        &mut app,
        &src,
        [ch('g'), ch('m'), ch('k'), ch('m'), ch('g')],
    );
    let names: Vec<String> = app
        .desired_sizes(&src)
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(names, ["svc4", "svc5"]);
    // clicking a tile focuses it
    send(&mut app, &src, [click(80, 10)]);
    assert_eq!(app.focused_process(), Some("svc5"));
    // g goes back to the list
    send(&mut app, &src, [ctrl('b'), ch('g')]);
    let names: Vec<String> = app
        .desired_sizes(&src)
        .into_iter()
        .map(|(n, _, _)| n)
        .collect();
    assert_eq!(names, ["svc5"]);
}

#[test]
fn help_and_details_toggle() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('?')]);
    assert!(screen_text(&render(&app, &src, 80, 24)).contains("keys (remap them in ui.keys)"));
    // keys do nothing while help shows, except closing it
    assert_eq!(send(&mut app, &src, [ch('r')]), vec![]);
    send(&mut app, &src, [key(KeyCode::Esc)]);
    assert!(!screen_text(&render(&app, &src, 80, 24)).contains("keys (remap"));
    send(&mut app, &src, [key(KeyCode::Tab)]);
    assert!(screen_text(&render(&app, &src, 80, 24)).contains("history (newest last)"));
    // focusing shows the terminal again
    send(&mut app, &src, [key(KeyCode::Enter)]);
    assert!(!screen_text(&render(&app, &src, 80, 24)).contains("history (newest last)"));
}

#[test]
fn key_releases_are_ignored() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    let mut ev = KeyEvent::new(KeyCode::Char('j'), KeyModifiers::NONE);
    ev.kind = crossterm::event::KeyEventKind::Release;
    send(&mut app, &src, [Event::Key(ev)]);
    assert_eq!(app.selected(), Some("gateway"));
}

#[test]
fn a_vanished_process_drops_selection_and_focus() {
    let mut src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), key(KeyCode::Enter)]);
    src.status.processes.remove(1);
    send(&mut app, &src, [Event::FocusGained]);
    assert_eq!(app.focused_process(), None);
    assert_eq!(app.selected(), Some("gateway"));
}
