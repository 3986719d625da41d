//! Rendering snapshots: the view is a function of state, drawn into
//! ratatui's TestBackend over real vt100 terminals.
#![allow(clippy::unwrap_used)] // tests may unwrap (helpers are not #[test] fns)

use crate::common::tui as tui_common;

use crossterm::event::KeyCode;
use mew::status::ProcState;
use mew::tui::App;
use mew::tui::testing::process;
use ratatui::style::{Color, Modifier};
use tui_common::*;

#[test]
fn list_view() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j')]); // select api
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn list_view_wide() {
    let src = demo();
    let mut app = app(&src, 120, 30);
    send(&mut app, &src, [ch('j')]);
    insta::assert_snapshot!(render(&app, &src, 120, 30).backend());
}

#[test]
fn grid_of_4_marked() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    // mark gateway, api, worker, web
    send(
        &mut app,
        &src,
        [
            ch('m'),
            ch('j'),
            ch('m'),
            ch('j'),
            ch('m'),
            ch('j'),
            ch('j'),
            ch('j'),
            ch('m'),
            ch('g'),
        ],
    );
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn grid_of_9_running() {
    let src = many(9);
    let mut app = app(&src, 100, 30);
    send(&mut app, &src, [ch('g'), ch('l'), ch('j')]); // select the middle tile
    insta::assert_snapshot!(render(&app, &src, 100, 30).backend());
}

#[test]
fn grid_overflow_says_what_is_hidden() {
    let src = many(12);
    let mut app = app(&src, 50, 12);
    send(&mut app, &src, [ch('g')]);
    let t = render(&app, &src, 50, 12);
    let footer: String = (0..50)
        .map(|x| t.backend().buffer()[(x, 11)].symbol().to_string())
        .collect();
    assert!(footer.contains("+6 not shown"), "{footer}");
    insta::assert_snapshot!(t.backend());
}

#[test]
fn zoom() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), ch('z')]);
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn zoom_of_a_full_screen_program() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), ch('j'), ch('z')]); // worker
    // an htop-like program in the alternate screen, laid out for its size
    src.feed("worker", b"\x1b[?1049h\x1b[H\x1b[2J\x1b[7m  PID USER   CPU%  COMMAND          \x1b[0m\r\n  101 app    12.0  worker\r\n  102 app     0.3  sidecar\x1b[23;1H\x1b[30;46mF1\x1b[0mHelp \x1b[30;46mF10\x1b[0mQuit");
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn help_overlay() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('?')]);
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn help_overlay_shows_remapped_keys() {
    let src = demo();
    let keys = vec![
        ("prefix".to_string(), "C-a".to_string()),
        ("restart".to_string(), "F5 r".to_string()),
    ];
    let mut app = mew::tui::App::new(&keys).unwrap();
    app.set_clock(Some(NOW));
    send(
        &mut app,
        &src,
        [crossterm::event::Event::Resize(100, 30), ch('?')],
    );
    insta::assert_snapshot!(render(&app, &src, 100, 30).backend());
}

#[test]
fn detail_view() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(
        &mut app,
        &src,
        (0..5).map(|_| ch('j')).chain([key(KeyCode::Tab)]),
    ); // web
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn detail_view_of_a_ready_process() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), key(KeyCode::Tab)]);
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn search_highlight() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), ch('/')]);
    send(&mut app, &src, typed("items/3"));
    // Enter finds the newest match (items/39); n walks to older ones, into the scrollback.
    send(&mut app, &src, [key(KeyCode::Enter)]);
    send(&mut app, &src, (0..10).map(|_| ch('n')));
    let t = render(&app, &src, 80, 24);
    insta::assert_snapshot!("search_highlight_text", t.backend());
    insta::assert_snapshot!("search_highlight_colours", highlight_map(&t));
    // N comes back to newer matches
    send(&mut app, &src, [ch('N')]);
    let t = render(&app, &src, 80, 24);
    let map = highlight_map(&t);
    assert_eq!(map.matches('M').count(), "items/3".len(), "{map}");
    // the other matches in view (items/31..39) are highlighted too
    assert_eq!(map.matches('y').count(), 9 * "items/3".len(), "{map}");
}

#[test]
fn search_prompt_while_typing() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), ch('/')]);
    send(&mut app, &src, typed("WARN"));
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn too_small() {
    let src = demo();
    let app = app(&src, 39, 9);
    insta::assert_snapshot!(render(&app, &src, 39, 9).backend());
}

#[test]
fn minimum_size_is_usable() {
    let src = demo();
    let mut app = app(&src, 40, 10);
    send(&mut app, &src, [ch('j')]);
    insta::assert_snapshot!(render(&app, &src, 40, 10).backend());
}

#[test]
fn each_process_state() {
    let src = demo();
    let names: Vec<String> = src
        .status
        .processes
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        if !seen.insert(src.status.processes[i].state.name()) {
            continue; // one snapshot per state (gateway and api are both ready)
        }
        let mut app = app(&src, 64, 14);
        send(&mut app, &src, (0..i).map(|_| ch('j')));
        let state = src.status.processes[i].state.name();
        insta::assert_snapshot!(
            format!("state_{state}"),
            render(&app, &src, 64, 14).backend(),
            name
        );
    }
}

#[test]
fn stopping_and_escalated_states() {
    let mut src = demo();
    src.status.processes[1].state = ProcState::Stopping { escalated: false };
    src.status.processes[2].state = ProcState::Stopping { escalated: true };
    let mut app = app(&src, 64, 14);
    send(&mut app, &src, [ch('j'), ch('j')]);
    insta::assert_snapshot!(render(&app, &src, 64, 14).backend());
}

#[test]
fn focus_mode_footer() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), key(KeyCode::Enter)]);
    let t = render(&app, &src, 80, 24);
    // the cursor is shown where the program's cursor is: after "$ "
    let mut term = t;
    term.backend_mut().assert_cursor_position((27, 21));
    insta::assert_snapshot!(term.backend());
}

#[test]
fn prefix_pending_footer() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), key(KeyCode::Enter), ctrl('b')]);
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn confirm_quit_dialog() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('q')]);
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn confirm_kill_dialog() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), ch('x')]);
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn quitting_view() {
    let mut src = demo();
    let mut app = app(&src, 80, 24);
    app.quitting();
    let p = &mut src.status.processes;
    p[0].state = ProcState::Stopped;
    p[1].state = ProcState::Stopping { escalated: false };
    p[2].state = ProcState::Stopping { escalated: true };
    p[3].state = ProcState::Stopped;
    p[5].state = ProcState::Stopped;
    p[10].state = ProcState::Stopped;
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn scrolled_back() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), key(KeyCode::PageUp)]);
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn copy_mode_selection() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(
        &mut app,
        &src,
        [
            ch('j'),
            ch('v'),
            ch('k'),
            ch('0'),
            ch('v'),
            ch('k'),
            ch('$'),
        ],
    );
    let t = render(&app, &src, 80, 24);
    insta::assert_snapshot!("copy_mode_text", t.backend());
    insta::assert_snapshot!("copy_mode_colours", highlight_map(&t));
}

#[test]
fn empty_space() {
    let src = mew::tui::testing::MemorySource::new(mew::tui::testing::empty_status("void"));
    let app = app(&src, 80, 24);
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

/// Where mew's highlights are: y = search match, M = current match,
/// w = copy selection, k = copy cursor, . = anything else.
fn highlight_map(t: &ratatui::Terminal<ratatui::backend::TestBackend>) -> String {
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height - 1 {
        for x in 0..buf.area.width {
            out.push(match buf[(x, y)].bg {
                Color::Yellow => 'y',
                Color::LightMagenta => 'M',
                Color::White => 'w',
                Color::LightCyan => 'k',
                _ => '.',
            });
        }
        out.push('\n');
    }
    out
}

/// A compact picture of the chrome's styles: one letter per cell
/// (R reversed, B bold, D dim, U underlined, . plain; c = has a colour).
fn style_map(
    t: &ratatui::Terminal<ratatui::backend::TestBackend>,
    rows: std::ops::Range<u16>,
) -> String {
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in rows {
        for x in 0..buf.area.width {
            let c = &buf[(x, y)];
            let m = c.modifier;
            let ch = if c.fg != Color::Reset || c.bg != Color::Reset {
                'c'
            } else if m.contains(Modifier::REVERSED) {
                'R'
            } else if m.contains(Modifier::BOLD) {
                'B'
            } else if m.contains(Modifier::DIM) {
                'D'
            } else if m.contains(Modifier::UNDERLINED) {
                'U'
            } else {
                '.'
            };
            out.push(ch);
        }
        out.push('\n');
    }
    out
}

#[test]
fn no_color_uses_attributes_only() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    app.set_color(false);
    send(&mut app, &src, [ch('j'), ch('/')]);
    send(&mut app, &src, typed("GET"));
    let t = render(&app, &src, 80, 24);
    let buf = t.backend().buffer();
    // No chrome cell has a colour: only the process's own output (inside the pane) may.
    let pane = ratatui::layout::Rect::new(24, 2, 54, 20);
    for y in 0..24 {
        for x in 0..80 {
            let c = &buf[(x, y)];
            if !pane.contains(ratatui::layout::Position::new(x, y)) {
                assert_eq!(
                    (c.fg, c.bg),
                    (Color::Reset, Color::Reset),
                    "colour at {x},{y}: {:?}",
                    c.symbol()
                );
            }
        }
    }
    // The search highlight still shows, as reverse video.
    assert!(pane_has(buf, pane, |c| c
        .modifier
        .contains(Modifier::REVERSED)
        && c.symbol() == "G"));
    insta::assert_snapshot!(style_map(&t, 0..24));
}

fn pane_has(
    buf: &ratatui::buffer::Buffer,
    r: ratatui::layout::Rect,
    f: impl Fn(&ratatui::buffer::Cell) -> bool,
) -> bool {
    (r.top()..r.bottom()).any(|y| (r.left()..r.right()).any(|x| f(&buf[(x, y)])))
}

#[test]
fn chrome_uses_only_the_16_basic_colours() {
    let basic = |c: Color| !matches!(c, Color::Indexed(_) | Color::Rgb(..));
    let src = demo();
    for events in [
        vec![ch('j')],
        vec![ch('?')],
        vec![ch('q')],
        vec![ch('g')],
        vec![ch('j'), ch('/'), ch('G')],
    ] {
        let mut app = app(&src, 80, 24);
        send(&mut app, &src, events);
        let t = render(&app, &src, 80, 24);
        for c in t.backend().buffer().content() {
            assert!(basic(c.fg) && basic(c.bg), "{c:?}");
        }
    }
}

#[test]
fn process_output_keeps_its_colours_and_attributes() {
    let mut src = demo();
    src.status.processes[1] = process("api", ProcState::Ready, NOW);
    src.feed("api", b"\x1b[38;5;208morange\x1b[0m \x1b[38;2;1;2;3mrgb\x1b[0m \x1b[3mitalic\x1b[0m \x1b[7minv\x1b[0m\r\n");
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j')]);
    let t = render(&app, &src, 80, 24);
    let buf = t.backend().buffer();
    let find = |s: &str| {
        let area = buf.area;
        (0..area.height)
            .flat_map(|y| (0..area.width).map(move |x| (x, y)))
            .find(|&(x, y)| {
                s.chars().enumerate().all(|(i, ch)| {
                    x + (i as u16) < area.width && buf[(x + i as u16, y)].symbol() == ch.to_string()
                })
            })
            .map(|(x, y)| &buf[(x, y)])
            .unwrap()
    };
    assert_eq!(find("orange").fg, Color::Indexed(208));
    assert_eq!(find("rgb").fg, Color::Rgb(1, 2, 3));
    assert!(find("italic").modifier.contains(Modifier::ITALIC));
    assert!(find("inv").modifier.contains(Modifier::REVERSED));
    assert!(find("200").modifier.contains(Modifier::BOLD));
    assert_eq!(find("WARN").fg, Color::Yellow);
    // a wide character takes two columns
    let wide = find("日");
    assert_eq!(wide.symbol(), "日");
}

#[test]
fn degraded_logging_is_shown_in_the_header() {
    let mut src = demo();
    src.status.logging_degraded = Some("web: cannot write web.log: No space left on device".into());
    let app = app(&src, 120, 30);
    let term = render(&app, &src, 120, 30);
    let header: String = (0..120)
        .map(|x| term.backend().buffer()[(x, 0)].symbol().to_string())
        .collect();
    assert!(header.contains("logs: web: cannot write"), "{header}");
}

fn row_text(t: &ratatui::Terminal<ratatui::backend::TestBackend>, y: u16) -> String {
    let buf = t.backend().buffer();
    (0..buf.area.width)
        .map(|x| buf[(x, y)].symbol().to_string())
        .collect()
}

/// The 200-character line of the reflow tests: `0123456789` twenty times,
/// each run ending in its own letter so a cut is visible.
fn long_line() -> String {
    (0..20)
        .map(|i| format!("012345678{}", char::from(b'a' + i)))
        .collect()
}

#[test]
fn lines_reflow_when_the_pane_narrows_and_widens() {
    let mut st = mew::tui::testing::empty_status("wide");
    st.processes = vec![process("api", ProcState::Ready, NOW - MIN)];
    let mut src = mew::tui::testing::MemorySource::new(st);
    src.add_terminal("api", 24, 80, 1000);
    let line = long_line();
    src.feed("api", format!("{line}\r\nafter\r\n").as_bytes());
    // At 240 columns the pane is wider than the line.
    let mut app = app(&src, 240, 20);
    let t = render(&app, &src, 240, 20);
    assert!(row_text(&t, 2).contains(&line), "{}", row_text(&t, 2));
    // Narrowed: the line wraps instead of being cut...
    send(&mut app, &src, [crossterm::event::Event::Resize(80, 20)]);
    let narrow = render(&app, &src, 80, 20);
    insta::assert_snapshot!("reflow_narrow", narrow.backend());
    // ...and widened again, it is whole (vt100 alone would have cut it).
    send(&mut app, &src, [crossterm::event::Event::Resize(240, 20)]);
    let t = render(&app, &src, 240, 20);
    assert!(row_text(&t, 2).contains(&line), "{}", row_text(&t, 2));
    assert!(row_text(&t, 3).contains("after"), "{}", row_text(&t, 3));
    // The same through the grid and zoom, which change the pane's size.
    send(
        &mut app,
        &src,
        [crossterm::event::Event::Resize(80, 20), ch('z')],
    );
    send(
        &mut app,
        &src,
        [ch('z'), crossterm::event::Event::Resize(240, 20)],
    );
    send(&mut app, &src, [ch('g'), ch('g')]);
    let t = render(&app, &src, 240, 20);
    assert!(row_text(&t, 2).contains(&line), "{}", row_text(&t, 2));
}

/// A space with a probe, one without, one crash-looping between crashes,
/// one in backoff.
fn marks() -> mew::tui::testing::MemorySource {
    use mew::status::Transition;
    let mut st = mew::tui::testing::empty_status("marks");
    let mut probed = process("probed", ProcState::Ready, NOW - 5 * MIN);
    probed.probe = Some("ok".into());
    let plain = process("plain", ProcState::Ready, NOW - 5 * MIN);
    let mut looping = process("looping", ProcState::Ready, NOW - 2_000);
    looping.restarts = 4;
    looping.exit_code = Some(1);
    looping.history = vec![
        Transition {
            at: NOW - 3_000,
            state: ProcState::Backoff { until: NOW - 2_000 },
            reason: "exit 1".into(),
        },
        Transition {
            at: NOW - 2_000,
            state: ProcState::Ready,
            reason: "no probe".into(),
        },
    ];
    let mut backoff = process(
        "backoff",
        ProcState::Backoff { until: NOW + 2_000 },
        NOW - 9_000,
    );
    backoff.restarts = 5;
    // Restarted long ago and stable since: up, not unstable.
    let mut old = process("settled", ProcState::Ready, NOW - 10 * MIN);
    old.restarts = 1;
    old.history = vec![Transition {
        at: NOW - 11 * MIN,
        state: ProcState::Backoff {
            until: NOW - 10 * MIN,
        },
        reason: "exit 1".into(),
    }];
    st.processes = vec![probed, plain, looping, backoff, old];
    let mut src = mew::tui::testing::MemorySource::new(st);
    for p in ["probed", "plain", "looping", "backoff", "settled"] {
        src.add_terminal(p, 24, 80, 100);
    }
    src
}

#[test]
fn started_is_not_ready_and_crash_loops_are_not_green() {
    let src = marks();
    let mut app = app(&src, 80, 12);
    send(&mut app, &src, (0..4).map(|_| ch('j'))); // select settled
    let t = render(&app, &src, 80, 12);
    insta::assert_snapshot!(t.backend());
    let buf = t.backend().buffer();
    // Only the process ready by its probe has a ✓ and a green mark.
    for (y, name, green, tick) in [
        (2, "probed", true, true),
        (3, "plain", false, false),
        (4, "looping", false, false),
        (5, "backoff", false, false),
        (6, "settled", false, false),
    ] {
        let row = row_text(&t, y);
        assert!(row.contains(name), "{row}");
        assert_eq!(buf[(1, y)].fg == Color::Green, green, "{name}: {row}");
        let list: String = row.chars().take(24).collect();
        assert_eq!(list.contains('✓'), tick, "{name}: {row}");
    }
    assert_eq!(buf[(1, 4)].fg, Color::Yellow, "crash-looping");
    assert_eq!(buf[(1, 5)].fg, Color::Red, "backoff");
    let header = row_text(&t, 0);
    assert!(
        header.contains("1 ready · 2 up · 1 unstable · 1 backoff"),
        "{header}"
    );
}

fn with_notes(app: &mut mew::tui::App) {
    app.set_notes(mew::tui::SpaceNotes {
        description: Some(
            "A shop demo. Try: focus api (Enter) and type, restart web (r),\n  open the grid (g)."
                .into(),
        ),
        warnings: vec![
            "/srv/shop/space.yaml:12:5: unknown key \"restart_delay\" (did you mean \"restart\"?)"
                .into(),
            "/srv/shop/space.yaml:30:3: process \"cron\" has no command".into(),
        ],
        ..Default::default()
    });
}

#[test]
fn description_and_warnings_in_the_header() {
    let src = demo();
    let mut app = app(&src, 120, 30);
    with_notes(&mut app);
    let t = render(&app, &src, 120, 30);
    let header = row_text(&t, 0);
    assert!(header.contains("⚠ 2 warnings (? lists)"), "{header}");
    assert!(header.contains("│ A shop demo. Try: fo…"), "{header}");
    // At 80 columns the warnings stay (shorter); the description goes to the help.
    let app80 = {
        let mut a = tui_common::app(&src, 80, 24);
        with_notes(&mut a);
        a
    };
    let header = row_text(&render(&app80, &src, 80, 24), 0);
    assert!(
        header.contains("⚠ 2 warnings │") || header.contains("⚠2"),
        "{header}"
    );
    assert!(!header.contains("A shop"), "{header}");
}

#[test]
fn help_lists_the_description_and_the_warnings() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    with_notes(&mut app);
    send(&mut app, &src, [ch('?')]);
    insta::assert_snapshot!(render(&app, &src, 80, 24).backend());
}

#[test]
fn quitting_shows_what_it_waits_for_and_the_time_left() {
    use mew::status::Transition;
    let mut src = demo();
    let mut app = app(&src, 80, 24);
    app.set_notes(mew::tui::SpaceNotes {
        stop_timeouts: [("api".to_string(), std::time::Duration::from_secs(10))].into(),
        shutdown_timeout: Some(std::time::Duration::from_secs(30)),
        ..Default::default()
    });
    app.quitting();
    let p = &mut src.status.processes;
    p[0].state = ProcState::Stopped;
    p[1].state = ProcState::Stopping { escalated: false };
    p[1].history.push(Transition {
        at: NOW - 3_000,
        state: ProcState::Stopping { escalated: false },
        reason: "space stopping".into(),
    });
    p[2].state = ProcState::Stopping { escalated: true };
    p[3].state = ProcState::Stopped;
    p[5].state = ProcState::Stopped;
    p[10].state = ProcState::Stopped;
    let t = render(&app, &src, 80, 24);
    let footer = row_text(&t, 23);
    assert!(
        footer.contains("waiting for api, worker · SIGKILL in 7s"),
        "{footer}"
    );
    insta::assert_snapshot!(t.backend());
}

// ----- the space view ------------------------------------------------------

/// Where the space view's colours are: r = red (denied), y = yellow
/// (proposal), p = another participant colour, . = anything else.
fn fg_map(t: &ratatui::Terminal<ratatui::backend::TestBackend>) -> String {
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height - 1 {
        for x in 0..buf.area.width {
            out.push(match buf[(x, y)].fg {
                Color::Red => 'r',
                Color::Yellow => 'y',
                Color::Reset | Color::DarkGray | Color::Gray | Color::White | Color::Black => '.',
                Color::Blue | Color::Cyan => '.', // chrome
                _ => 'p',
            });
        }
        out.push('\n');
    }
    out
}

fn space_app(src: &mew::tui::testing::MemorySource, w: u16, h: u16) -> mew::tui::App {
    let mut app = app(src, w, h);
    send(&mut app, src, [ch('e')]);
    assert!(app.shows_space());
    app
}

#[test]
fn space_view_with_a_proposal() {
    let src = space_demo();
    let app = space_app(&src, 100, 24);
    insta::assert_snapshot!(render(&app, &src, 100, 24).backend());
}

#[test]
fn space_view_chat() {
    let src = space_demo();
    let mut app = space_app(&src, 80, 24);
    send(&mut app, &src, [ch('F')]); // kind: chat
    let t = render(&app, &src, 80, 24);
    assert!(
        row_text(&t, 1).contains("[kind:chat]"),
        "{}",
        row_text(&t, 1)
    );
    insta::assert_snapshot!(t.backend());
}

#[test]
fn space_view_mcp_request_and_response() {
    let src = space_demo();
    let mut app = space_app(&src, 100, 24);
    send(&mut app, &src, [ch('F'), ch('F')]); // kind: mcp
    insta::assert_snapshot!(render(&app, &src, 100, 24).backend());
}

#[test]
fn space_view_denied_check_in_red() {
    let src = space_demo();
    let app = space_app(&src, 100, 24);
    let t = render(&app, &src, 100, 24);
    let map = fg_map(&t);
    let denied_row = (0..24)
        .find(|&y| row_text(&t, y).contains("capability_violation"))
        .unwrap();
    let line: &str = map.lines().nth(usize::from(denied_row)).unwrap();
    assert!(line.matches('r').count() > 20, "{line}");
    insta::assert_snapshot!("space_view_colours", map);
}

#[test]
fn space_view_stream() {
    let src = space_demo();
    let mut app = space_app(&src, 100, 24);
    send(&mut app, &src, (0..5).map(|_| ch('F'))); // kind: stream
    insta::assert_snapshot!(render(&app, &src, 100, 24).backend());
}

#[test]
fn space_view_long_payload() {
    let mut src = space_demo();
    src.envelope(&long_chat(), NOW);
    let mut app = space_app(&src, 80, 24);
    send(&mut app, &src, [ch('F')]);
    let t = render(&app, &src, 80, 24);
    for c in t.backend().buffer().content() {
        assert!(!c.symbol().contains('\u{1b}') && !c.symbol().contains('\u{7}'));
    }
    insta::assert_snapshot!(t.backend());
}

#[test]
fn space_view_narrow() {
    let src = space_demo();
    let app = space_app(&src, 40, 12);
    insta::assert_snapshot!(render(&app, &src, 40, 12).backend());
}

#[test]
fn space_view_participants_panel() {
    let mut src = space_demo();
    src.envelope(
        r#"{"kind":"capability/grant","from":"human","to":["agent"],"payload":{"recipient":"agent","capabilities":[{"kind":"mcp/request","payload":{"method":"tools/call","params":{"name":"write_file"}}}]}}"#,
        NOW,
    );
    src.envelope(
        r#"{"kind":"system/presence","from":"system:gateway","payload":{"event":"leave","participant":{"id":"fs"}}}"#,
        NOW,
    );
    let mut app = space_app(&src, 100, 24);
    send(&mut app, &src, [key(KeyCode::Tab)]);
    insta::assert_snapshot!(render(&app, &src, 100, 24).backend());
}

#[test]
fn space_view_json_overlay() {
    let src = space_demo();
    let mut app = space_app(&src, 80, 24);
    // line mode starts at the newest line (the proposal); Enter shows it
    send(&mut app, &src, [ch('v'), key(KeyCode::Enter)]);
    let t = render(&app, &src, 80, 24);
    insta::assert_snapshot!(t.backend());
    let copied = send(&mut app, &src, [ch('y')]);
    let Some(mew::tui::Action::Copy(text)) = copied.first() else {
        panic!("{copied:?}");
    };
    assert!(text.contains("\"write_file\""), "{text}");
    send(&mut app, &src, [key(KeyCode::Esc), key(KeyCode::Esc)]);
    assert!(!row_text(&render(&app, &src, 80, 24), 23).contains("LINE"));
}

#[test]
fn space_view_line_mode_and_search() {
    let src = space_demo();
    let mut app = space_app(&src, 100, 24);
    send(&mut app, &src, [ch('v'), ch('k'), ch('k')]);
    let t = render(&app, &src, 100, 24);
    insta::assert_snapshot!("space_view_line_mode", t.backend());
    send(&mut app, &src, [key(KeyCode::Esc), ch('/')]);
    send(&mut app, &src, typed("milk"));
    send(&mut app, &src, [key(KeyCode::Enter), ch('n')]);
    let t = render(&app, &src, 100, 24);
    let map = highlight_map(&t);
    assert_eq!(map.matches('M').count(), 4, "{map}");
    insta::assert_snapshot!("space_view_search_colours", map);
}

#[test]
fn space_view_talk() {
    let src = space_demo();
    let mut app = space_app(&src, 80, 24);
    send(&mut app, &src, [key(KeyCode::Enter)]);
    send(&mut app, &src, typed("hi there"));
    let t = render(&app, &src, 80, 24);
    insta::assert_snapshot!(t.backend());
    let sent = send(&mut app, &src, [key(KeyCode::Enter)]);
    assert_eq!(
        sent,
        vec![mew::tui::Action::Send(mew::envelopes::chat(
            "hi there",
            &["agent".to_string()]
        ))]
    );
    // Tab: everyone, then each participant; the input stays open.
    send(&mut app, &src, [key(KeyCode::Tab)]);
    send(&mut app, &src, typed("all"));
    let sent = send(&mut app, &src, [key(KeyCode::Enter)]);
    assert_eq!(
        sent,
        vec![mew::tui::Action::Send(mew::envelopes::chat("all", &[]))]
    );
    // Esc leaves; keys are commands again.
    send(&mut app, &src, [key(KeyCode::Esc)]);
    let sent = send(&mut app, &src, typed("j"));
    assert!(sent.is_empty());
    assert!(!app.shows_space(), "j selects the first process");
}

#[test]
fn space_view_answers_proposals() {
    let src = space_demo();
    let p = src
        .space
        .as_ref()
        .unwrap()
        .borrow()
        .proposal("p1")
        .unwrap()
        .clone();
    let mut app = space_app(&src, 80, 24);
    let sent = send(&mut app, &src, [ch('a')]);
    assert_eq!(
        sent,
        vec![mew::tui::Action::Send(mew::envelopes::fulfil_request(&p))]
    );
    assert!(sent_has_no_rpc_id(&sent[0]));
    // answered here: no prompt, no count
    let t = render(&app, &src, 80, 24);
    assert!(!row_text(&t, 0).contains("proposal"), "{}", row_text(&t, 0));

    let mut app = space_app(&src, 80, 24);
    let sent = send(&mut app, &src, [ch('g')]);
    assert_eq!(
        sent,
        vec![
            mew::tui::Action::Send(mew::envelopes::grant(&p)),
            mew::tui::Action::Send(mew::envelopes::fulfil_request(&p)),
        ]
    );

    let mut app = space_app(&src, 80, 24);
    send(&mut app, &src, [ch('r')]);
    insta::assert_snapshot!(
        "space_view_reject_reason",
        render(&app, &src, 80, 24).backend()
    );
    let sent = send(&mut app, &src, [key(KeyCode::Enter)]);
    assert_eq!(
        sent,
        vec![mew::tui::Action::Send(mew::envelopes::reject(
            &p,
            "rejected from mew"
        ))]
    );
    let mut app = space_app(&src, 80, 24);
    send(&mut app, &src, [ch('r')]);
    send(&mut app, &src, typed("too risky"));
    let sent = send(&mut app, &src, [key(KeyCode::Enter)]);
    assert_eq!(
        sent,
        vec![mew::tui::Action::Send(mew::envelopes::reject(
            &p,
            "too risky"
        ))]
    );
}

fn sent_has_no_rpc_id(a: &mew::tui::Action) -> bool {
    matches!(a, mew::tui::Action::Send(v) if v["payload"].get("id").is_none())
}

#[test]
fn space_entry_in_the_list_and_header() {
    let src = space_demo();
    let mut app = app(&src, 80, 24);
    // Not shown until selected: the list has it as row 0, the header counts the proposal.
    assert!(!app.shows_space());
    let t = render(&app, &src, 80, 24);
    assert!(
        row_text(&t, 0).contains("⚑ 1 proposal"),
        "{}",
        row_text(&t, 0)
    );
    assert!(row_text(&t, 2).contains("◆ space"), "{}", row_text(&t, 2));
    // k from the first process selects the space; j goes back
    send(&mut app, &src, [ch('k')]);
    assert!(app.shows_space());
    send(&mut app, &src, [ch('j')]);
    assert!(!app.shows_space());
    assert_eq!(app.selected(), Some("gateway"));
    // e toggles; the grid never shows it (e leaves the grid)
    send(&mut app, &src, [ch('e')]);
    assert!(app.shows_space());
    send(&mut app, &src, [ch('e'), ch('g')]);
    assert!(!app.shows_space());
    send(&mut app, &src, [ch('e')]);
    assert!(app.shows_space());
    // a click on its row selects it
    send(&mut app, &src, [ch('j'), click(3, 2)]);
    assert!(app.shows_space());
    // the space is kept across detach/attach (resume)
    app.resume();
    assert!(app.shows_space());
}

#[test]
fn space_view_scrollback() {
    let mut src = space_demo();
    for i in 0..200 {
        src.envelope(
            &format!(
                r#"{{"kind":"chat","from":"agent","to":["human"],"payload":{{"text":"line {i}"}}}}"#
            ),
            NOW,
        );
    }
    let mut app = space_app(&src, 80, 24);
    send(&mut app, &src, [key(KeyCode::PageUp)]);
    let t = render(&app, &src, 80, 24);
    insta::assert_snapshot!(t.backend());
    // New envelopes do not move a scrolled view.
    src.envelope(
        r#"{"kind":"chat","from":"agent","to":["human"],"payload":{"text":"newest"}}"#,
        NOW,
    );
    let t2 = render(&app, &src, 80, 24);
    assert_eq!(row_text(&t, 5), row_text(&t2, 5));
    send(&mut app, &src, [key(KeyCode::Home)]);
    let t = render(&app, &src, 80, 24);
    assert!(
        row_text(&t, 2).contains("system/welcome"),
        "{}",
        row_text(&t, 2)
    );
    send(&mut app, &src, [key(KeyCode::End)]);
    let t = render(&app, &src, 80, 24);
    assert!(
        (0..24).any(|y| row_text(&t, y).contains("newest")),
        "live again"
    );
}

#[test]
fn space_view_no_color() {
    let src = space_demo();
    let mut app = space_app(&src, 100, 24);
    app.set_color(false);
    let t = render(&app, &src, 100, 24);
    for c in t.backend().buffer().content() {
        assert_eq!((c.fg, c.bg), (Color::Reset, Color::Reset), "{c:?}");
    }
}

#[test]
fn space_view_zoom_and_help() {
    let src = space_demo();
    let mut app = space_app(&src, 80, 24);
    send(&mut app, &src, [ch('z')]);
    assert!(app.shows_space());
    let t = render(&app, &src, 80, 24);
    assert!(
        row_text(&t, 23).contains("ZOOM space"),
        "{}",
        row_text(&t, 23)
    );
    assert!(
        row_text(&t, 1).contains("hello agent"),
        "{}",
        row_text(&t, 1)
    );
    send(&mut app, &src, [key(KeyCode::Esc), ch('?')]);
    let t = render(&app, &src, 80, 24);
    let all: String = (0..24).map(|y| row_text(&t, y)).collect();
    assert!(all.contains("space view (and back)"), "{all}");
    // Without a space view the help does not list it.
    let plain = demo();
    let mut app = tui_common::app(&plain, 80, 24);
    send(&mut app, &plain, [ch('?')]);
    let t = render(&app, &plain, 80, 24);
    let all: String = (0..24).map(|y| row_text(&t, y)).collect();
    assert!(!all.contains("space view"), "{all}");
    send(&mut app, &plain, [key(KeyCode::Esc), ch('e')]);
    assert!(!app.shows_space());
    assert!(row_text(&render(&app, &plain, 80, 24), 23).contains("no space view"));
}

#[test]
fn space_view_paste_and_the_prefix() {
    let src = space_demo();
    let mut app = space_app(&src, 80, 24);
    send(&mut app, &src, [key(KeyCode::Enter)]);
    send(
        &mut app,
        &src,
        [crossterm::event::Event::Paste("two\nlines\u{1b}[2J".into())],
    );
    let sent = send(&mut app, &src, [key(KeyCode::Enter)]);
    assert_eq!(
        sent,
        vec![mew::tui::Action::Send(mew::envelopes::chat(
            "two lines [2J",
            &["agent".to_string()]
        ))]
    );
    // C-b leaves the input, C-b C-b comes back, C-b d detaches.
    send(&mut app, &src, [ctrl('b')]);
    assert!(!row_text(&render(&app, &src, 80, 24), 23).contains("TALK"));
    send(&mut app, &src, [ctrl('b')]);
    assert!(row_text(&render(&app, &src, 80, 24), 23).contains("TALK"));
    send(&mut app, &src, [ctrl('b')]);
    let sent = send(&mut app, &src, [ch('d')]);
    assert_eq!(sent, vec![mew::tui::Action::Detach]);
}

// ----- #17: the merged view, the list filter, grouping ----------------------

/// Captured lines of several processes, interleaved as they arrived.
fn merged_demo(app: &mut App) {
    for i in 1..=90 {
        let (name, text) = match i % 3 {
            0 => ("api", format!("GET /items/{i} 200 {}ms", i % 17)),
            1 => ("worker", format!("job {i} done")),
            _ => ("web", format!("compiled bundle #{i}")),
        };
        app.push_line(name, text);
    }
}

#[test]
fn merged_view_interleaves_all_output() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    merged_demo(&mut app);
    send(&mut app, &src, [ch('a')]);
    let t = render(&app, &src, 80, 24);
    // Each label is coloured as --no-tui colours it.
    let label = |name: &str| {
        let i = mew::headless::color_index(name);
        let sgr: u8 = ["36", "33", "32", "35", "34", "31"][i].parse().unwrap();
        Color::Indexed(sgr - 30)
    };
    let bottom = row_text(&t, 21);
    assert!(bottom.contains("api    | GET /items/90"), "{bottom}");
    let x = bottom.find("api    |").unwrap();
    let x = u16::try_from(bottom[..x].chars().count()).unwrap();
    assert_eq!(t.backend().buffer()[(x, 21)].fg, label("api"));
    insta::assert_snapshot!(t.backend());
}

#[test]
fn merged_view_of_the_marked_with_search_and_scrollback() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    merged_demo(&mut app);
    // Mark api (row 2) and web (row 6): the view shows only them.
    send(
        &mut app,
        &src,
        [
            ch('j'),
            ch('m'),
            ch('j'),
            ch('j'),
            ch('j'),
            ch('j'),
            ch('m'),
            ch('a'),
        ],
    );
    let t = render(&app, &src, 80, 24);
    assert!(!row_text(&t, 21).contains("worker"), "{}", row_text(&t, 21));
    // Search goes back to the newest older match and scrolls to it.
    let mut keys = vec![ch('/')];
    keys.extend(typed("items/9 "));
    keys.push(key(KeyCode::Enter));
    send(&mut app, &src, keys);
    let t = render(&app, &src, 80, 24);
    let shown: String = (2..22).map(|y| row_text(&t, y)).collect();
    assert!(shown.contains("GET /items/9 200"), "{shown}");
    assert!(row_text(&t, 1).contains('↑'), "{}", row_text(&t, 1));
    insta::assert_snapshot!(t.backend());
    // Esc clears the search, then leaves the merged view.
    send(&mut app, &src, [key(KeyCode::Esc), key(KeyCode::Esc)]);
    let t = render(&app, &src, 80, 24);
    assert!(
        !row_text(&t, 1).contains("marked output"),
        "{}",
        row_text(&t, 1)
    );
}

#[test]
fn list_filter_narrows_as_typed() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    let mut keys = vec![ch('f')];
    keys.extend(typed("w"));
    send(&mut app, &src, keys);
    // The selection moved to the first process shown.
    assert_eq!(app.selected(), Some("gateway"));
    insta::assert_snapshot!("list_filter_typing", render(&app, &src, 80, 24).backend());
    // Enter keeps the filter; j/k move among what is shown.
    send(&mut app, &src, [key(KeyCode::Enter), ch('j')]);
    assert_eq!(app.selected(), Some("worker"));
    send(&mut app, &src, [ch('j'), ch('j')]);
    assert_eq!(app.selected(), Some("web"));
    insta::assert_snapshot!("list_filter_kept", render(&app, &src, 80, 24).backend());
    // Esc clears it; the selection stays where it was.
    send(&mut app, &src, [key(KeyCode::Esc)]);
    assert_eq!(app.selected(), Some("web"));
    let t = render(&app, &src, 80, 24);
    assert!(
        row_text(&t, 1).contains(" processes ─"),
        "{}",
        row_text(&t, 1)
    );
}

#[test]
fn list_grouped_by_kind_then_by_profile() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    let mut notes = mew::tui::SpaceNotes::default();
    for (name, profiles) in [
        ("api", vec!["backend"]),
        ("db", vec!["backend"]),
        ("web", vec!["frontend"]),
    ] {
        notes.profiles.insert(
            name.into(),
            profiles.into_iter().map(String::from).collect(),
        );
    }
    app.set_notes(notes);
    send(&mut app, &src, [ch('G')]);
    insta::assert_snapshot!("list_grouped_by_kind", render(&app, &src, 80, 24).backend());
    send(&mut app, &src, [ch('G')]);
    // Navigation follows the rows as shown: backend (api, db) first.
    send(
        &mut app,
        &src,
        [
            ch('k'),
            ch('k'),
            ch('k'),
            ch('k'),
            ch('k'),
            ch('k'),
            ch('k'),
            ch('k'),
            ch('k'),
            ch('k'),
        ],
    );
    assert_eq!(app.selected(), Some("api"));
    send(&mut app, &src, [ch('j')]);
    assert_eq!(app.selected(), Some("db"));
    insta::assert_snapshot!(
        "list_grouped_by_profile",
        render(&app, &src, 80, 24).backend()
    );
    send(&mut app, &src, [ch('G')]);
    let t = render(&app, &src, 80, 24);
    assert!(row_text(&t, 2).contains("gateway"), "{}", row_text(&t, 2));
    assert!(!row_text(&t, 2).contains("─ "), "{}", row_text(&t, 2));
}

#[test]
fn merged_view_keeps_the_last_10000_lines_and_a_scrolled_view_stays_put() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    for i in 0..10_050 {
        app.push_line("api", format!("line {i}"));
    }
    send(&mut app, &src, [ch('a'), key(KeyCode::Home)]);
    let t = render(&app, &src, 80, 24);
    assert!(
        row_text(&t, 2).contains("api | line 50 "),
        "{}",
        row_text(&t, 2)
    );
    // New lines while scrolled up do not move what is shown.
    app.push_line("api", "line 10050");
    let t = render(&app, &src, 80, 24);
    assert!(
        row_text(&t, 2).contains("api | line 51 "),
        "{}",
        row_text(&t, 2)
    );
    send(&mut app, &src, [key(KeyCode::End), ch('a')]);
    send(&mut app, &src, [ch('a')]);
    app.push_line("api", "line 10051");
    let t = render(&app, &src, 80, 24);
    assert!(
        row_text(&t, 21).contains("api | line 10051"),
        "{}",
        row_text(&t, 21)
    );
}

#[test]
fn keys_of_the_new_views_go_to_a_focused_process() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    send(&mut app, &src, [ch('j'), key(KeyCode::Enter)]);
    let out = send(&mut app, &src, [ch('f'), ch('a'), ch('G')]);
    let sent: Vec<u8> = out
        .into_iter()
        .flat_map(|a| match a {
            mew::tui::Action::Input { bytes, .. } => bytes,
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(sent, b"faG");
    let t = render(&app, &src, 80, 24);
    assert!(
        row_text(&t, 1).contains(" processes ─"),
        "{}",
        row_text(&t, 1)
    );
}
