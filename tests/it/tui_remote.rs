//! The remote rendering path: the bytes RemoteRenderer sends, played into a
//! terminal emulator of the client's size, show exactly what TestBackend
//! shows for the same state.
#![allow(clippy::unwrap_used)] // tests may unwrap (helpers are not #[test] fns)

use crate::common::tui as tui_common;

use std::num::NonZeroU16;

use crossterm::event::{Event, KeyCode};
use mew::tui::testing::MemorySource;
use mew::tui::{App, RemoteRenderer, osc52_copy};
use ratatui::style::{Color, Modifier};
use tui_common::*;

fn client(cols: u16, rows: u16) -> vt100::Parser {
    vt100::Parser::new(
        NonZeroU16::new(rows).unwrap(),
        NonZeroU16::new(cols).unwrap(),
        0,
    )
}

fn color(c: vt100::Color) -> Color {
    match c {
        vt100::Color::Default => Color::Reset,
        vt100::Color::Idx(i) => [
            Color::Black,
            Color::Red,
            Color::Green,
            Color::Yellow,
            Color::Blue,
            Color::Magenta,
            Color::Cyan,
            Color::Gray,
            Color::DarkGray,
            Color::LightRed,
            Color::LightGreen,
            Color::LightYellow,
            Color::LightBlue,
            Color::LightMagenta,
            Color::LightCyan,
            Color::White,
        ]
        .get(usize::from(i))
        .copied()
        .unwrap_or(Color::Indexed(i)),
        vt100::Color::Rgb(r, g, b) => Color::Rgb(r, g, b),
    }
}

/// Asserts that the client's screen equals what TestBackend draws for the
/// same state: every cell's text, colours and attributes, and the cursor.
fn assert_same(client: &vt100::Parser, app: &App, src: &MemorySource) {
    let screen = client.screen();
    let (rows, cols) = screen.size();
    let mut expected = render(app, src, cols.get(), rows.get());
    let buf = expected.backend().buffer().clone();
    let mut skip = false;
    for y in 0..rows.get() {
        for x in 0..cols.get() {
            if std::mem::take(&mut skip) {
                continue;
            }
            let want = &buf[(x, y)];
            let got = screen.cell(y, x).unwrap();
            let text = if got.contents().is_empty() {
                " "
            } else {
                got.contents()
            };
            assert_eq!(text, want.symbol(), "text at {x},{y}");
            assert_eq!(color(got.fgcolor()), want.fg, "fg at {x},{y} ({text:?})");
            assert_eq!(color(got.bgcolor()), want.bg, "bg at {x},{y} ({text:?})");
            let m = want.modifier;
            assert_eq!(got.bold(), m.contains(Modifier::BOLD), "bold at {x},{y}");
            assert_eq!(got.dim(), m.contains(Modifier::DIM), "dim at {x},{y}");
            assert_eq!(
                got.italic(),
                m.contains(Modifier::ITALIC),
                "italic at {x},{y}"
            );
            assert_eq!(
                got.underline(),
                m.contains(Modifier::UNDERLINED),
                "underline at {x},{y}"
            );
            assert_eq!(
                got.inverse(),
                m.contains(Modifier::REVERSED),
                "inverse at {x},{y}"
            );
            skip = got.is_wide();
        }
    }
    let backend = expected.backend_mut();
    let cursor_visible = backend.cursor_visible();
    assert_eq!(!screen.hide_cursor(), cursor_visible, "cursor visibility");
    if cursor_visible {
        let p = backend.get_cursor_position().unwrap();
        assert_eq!(screen.cursor_position(), (p.y, p.x), "cursor position");
    }
}

use ratatui::backend::Backend as _;

#[test]
fn two_renders_reproduce_the_test_backend() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    let mut r = RemoteRenderer::new(80, 24);
    let mut term = client(80, 24);

    let first = r.render(&app, &src);
    term.process(&first);
    assert_same(&term, &app, &src);

    // state changes: another process selected and focused, new output arrives
    send(&mut app, &src, [ch('j'), key(KeyCode::Enter)]);
    src.feed("api", b"\x1b[1;31mboom\x1b[0m \x1b[3;4mitalic under\x1b[0m \x1b[38;2;10;20;30mrgb\x1b[0m \x1b[38;5;200midx\x1b[0m\r\n$ ");
    let second = r.render(&app, &src);
    term.process(&second);
    assert_same(&term, &app, &src);
    assert!(
        !term.screen().hide_cursor(),
        "a focused process shows its cursor"
    );
    assert!(
        !second.windows(4).any(|w| w == b"\x1b[2J"),
        "no clear in a diff"
    );

    // one character echoed at the prompt: only that cell (and the cursor) is sent
    src.feed("api", b"x");
    let small = r.render(&app, &src);
    term.process(&small);
    assert_same(&term, &app, &src);
    assert!(small.len() < 64, "{}", String::from_utf8_lossy(&small));

    // nothing changed: almost nothing is sent (cursor bookkeeping only)
    let third = r.render(&app, &src);
    term.process(&third);
    assert_same(&term, &app, &src);
    assert!(third.len() < 32, "{}", String::from_utf8_lossy(&third));
}

#[test]
fn overlays_grid_and_search_render_remotely() {
    let src = demo();
    let mut app = app(&src, 100, 30);
    let mut r = RemoteRenderer::new(100, 30);
    let mut term = client(100, 30);
    for events in [
        vec![ch('g')],
        vec![ch('?')],
        vec![
            key(KeyCode::Esc),
            ch('g'),
            ch('j'),
            ch('/'),
            ch('i'),
            ch('t'),
            ch('e'),
            ch('m'),
            key(KeyCode::Enter),
        ],
        vec![ch('v'), ch('k'), ch('v'), ch('h')],
        vec![key(KeyCode::Esc), ch('z')],
        vec![ch('q')],
    ] {
        send(&mut app, &src, events);
        term.process(&r.render(&app, &src));
        assert_same(&term, &app, &src);
    }
}

#[test]
fn resize_and_invalidate_send_full_frames() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    let mut r = RemoteRenderer::new(80, 24);
    let mut term = client(80, 24);
    term.process(&r.render(&app, &src));

    // the client grows: full frame at the new size
    send(&mut app, &src, [Event::Resize(120, 40)]);
    r.resize(120, 40);
    term.set_size(NonZeroU16::new(40).unwrap(), NonZeroU16::new(120).unwrap());
    let full = r.render(&app, &src);
    assert!(full.windows(4).any(|w| w == b"\x1b[2J"));
    term.process(&full);
    assert_same(&term, &app, &src);

    // the client's screen was garbled (say, a dropped frame): invalidate repaints all
    term.process(b"\x1b[H\x1b[41mgarbage garbage garbage\x1b[10;10Hmore\x1b[0m");
    r.invalidate();
    term.process(&r.render(&app, &src));
    assert_same(&term, &app, &src);

    // too small, then back
    send(&mut app, &src, [Event::Resize(30, 8)]);
    r.resize(30, 8);
    term.set_size(NonZeroU16::new(8).unwrap(), NonZeroU16::new(30).unwrap());
    term.process(&r.render(&app, &src));
    assert_same(&term, &app, &src);
    assert!(term.screen().contents().contains("terminal too small"));
}

#[test]
fn no_color_frames_carry_no_chrome_colours() {
    let src = demo();
    let mut app = app(&src, 80, 24);
    app.set_color(false);
    let mut r = RemoteRenderer::new(80, 24);
    let mut term = client(80, 24);
    term.process(&r.render(&app, &src));
    assert_same(&term, &app, &src);
    // the header row: reverse video, no colour
    let cell = term.screen().cell(0, 2).unwrap();
    assert!(cell.inverse());
    assert_eq!(cell.bgcolor(), vt100::Color::Default);
}

#[test]
fn osc52_encodes_the_clipboard_text() {
    assert_eq!(osc52_copy("hi ✓"), b"\x1b]52;c;aGkg4pyT\x07");
}
