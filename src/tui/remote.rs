//! Rendering an [`App`] for a remote client: ANSI bytes for a terminal of the
//! client's size, never touching the server's own tty.
//!
//! A ratatui `Terminal` with a fixed viewport draws into [`ByteBackend`],
//! which writes cursor moves, SGR and text into a `Vec<u8>` and reports the
//! client's size (the stock `CrosstermBackend` would ask the server's tty).
//! ratatui keeps the previous frame, so each render sends only the cells that
//! changed.

use std::io;

use ratatui::backend::{Backend, ClearType, WindowSize};
use ratatui::buffer::Cell;
use ratatui::layout::{Position, Rect, Size};
use ratatui::style::{Color, Modifier};
use ratatui::{Terminal, TerminalOptions, Viewport};

use super::{App, PaneSource};

/// A ratatui backend that appends escape sequences to a byte buffer.
#[derive(Debug)]
pub struct ByteBackend {
    out: Vec<u8>,
    size: Size,
    cursor: Position,
    /// The cells where this backend wrote the first half of a wide symbol
    /// (row-major): see `draw`.
    wide: Vec<bool>,
}

impl ByteBackend {
    pub fn new(cols: u16, rows: u16) -> ByteBackend {
        ByteBackend {
            out: Vec::new(),
            size: Size::new(cols, rows),
            cursor: Position::ORIGIN,
            wide: vec![false; usize::from(cols) * usize::from(rows)],
        }
    }

    fn wide_at(&mut self, x: u16, y: u16) -> Option<&mut bool> {
        let i = usize::from(y) * usize::from(self.size.width) + usize::from(x);
        if x < self.size.width {
            self.wide.get_mut(i)
        } else {
            None
        }
    }

    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }
}

fn push_num(out: &mut Vec<u8>, n: u32) {
    out.extend_from_slice(n.to_string().as_bytes());
}

/// SGR parameters for a colour (`fg` selects 30/38/39 or 40/48/49 forms).
fn push_color(out: &mut Vec<u8>, c: Color, fg: bool) {
    let base: u32 = if fg { 30 } else { 40 };
    match c {
        Color::Reset => push_num(out, base + 9),
        Color::Black => push_num(out, base),
        Color::Red => push_num(out, base + 1),
        Color::Green => push_num(out, base + 2),
        Color::Yellow => push_num(out, base + 3),
        Color::Blue => push_num(out, base + 4),
        Color::Magenta => push_num(out, base + 5),
        Color::Cyan => push_num(out, base + 6),
        Color::Gray => push_num(out, base + 7),
        Color::DarkGray => push_num(out, base + 60),
        Color::LightRed => push_num(out, base + 61),
        Color::LightGreen => push_num(out, base + 62),
        Color::LightYellow => push_num(out, base + 63),
        Color::LightBlue => push_num(out, base + 64),
        Color::LightMagenta => push_num(out, base + 65),
        Color::LightCyan => push_num(out, base + 66),
        Color::White => push_num(out, base + 67),
        Color::Indexed(i) => {
            push_num(out, base + 8);
            out.extend_from_slice(b";5;");
            push_num(out, u32::from(i));
        }
        Color::Rgb(r, g, b) => {
            push_num(out, base + 8);
            out.extend_from_slice(b";2;");
            push_num(out, u32::from(r));
            out.push(b';');
            push_num(out, u32::from(g));
            out.push(b';');
            push_num(out, u32::from(b));
        }
    }
}

/// One full SGR sequence: reset, then the cell's attributes and colours.
fn push_sgr(out: &mut Vec<u8>, fg: Color, bg: Color, m: Modifier) {
    out.extend_from_slice(b"\x1b[0");
    for (flag, code) in [
        (Modifier::BOLD, b"1" as &[u8]),
        (Modifier::DIM, b"2"),
        (Modifier::ITALIC, b"3"),
        (Modifier::UNDERLINED, b"4"),
        (Modifier::SLOW_BLINK, b"5"),
        (Modifier::RAPID_BLINK, b"6"),
        (Modifier::REVERSED, b"7"),
        (Modifier::HIDDEN, b"8"),
        (Modifier::CROSSED_OUT, b"9"),
    ] {
        if m.contains(flag) {
            out.push(b';');
            out.extend_from_slice(code);
        }
    }
    if fg != Color::Reset {
        out.push(b';');
        push_color(out, fg, true);
    }
    if bg != Color::Reset {
        out.push(b';');
        push_color(out, bg, false);
    }
    out.push(b'm');
}

fn push_move(out: &mut Vec<u8>, p: Position) {
    out.extend_from_slice(b"\x1b[");
    push_num(out, u32::from(p.y) + 1);
    out.push(b';');
    push_num(out, u32::from(p.x) + 1);
    out.push(b'H');
}

impl Backend for ByteBackend {
    type Error = io::Error;

    fn draw<'a, I>(&mut self, content: I) -> io::Result<()>
    where
        I: Iterator<Item = (u16, u16, &'a Cell)>,
    {
        let mut style: Option<(Color, Color, Modifier)> = None;
        let mut last: Option<Position> = None;
        // A narrow symbol written over the first half of a wide one makes the
        // terminal erase the second half with the current attributes (bold,
        // a background). ratatui does not resend that cell when it has not
        // changed (it is blank in both frames), so it is cleared here, unless
        // it comes next anyway.
        let mut orphan: Option<Position> = None;
        let mut content = content.peekable();
        while let Some((x, y, cell)) = content.next() {
            if !matches!(last, Some(p) if p.y == y && p.x + 1 == x) {
                push_move(&mut self.out, Position::new(x, y));
            }
            last = Some(Position::new(x, y));
            let s = (cell.fg, cell.bg, cell.modifier);
            if style != Some(s) {
                push_sgr(&mut self.out, s.0, s.1, s.2);
                style = Some(s);
            }
            self.out.extend_from_slice(cell.symbol().as_bytes());
            let is_wide = unicode_width::UnicodeWidthStr::width(cell.symbol()) > 1;
            let was_wide = self
                .wide_at(x, y)
                .map(|w| std::mem::replace(w, is_wide))
                .unwrap_or(false);
            if is_wide {
                // A wide symbol moves the terminal two columns: the next cell needs a move.
                last = None;
                if let Some(w) = self.wide_at(x.saturating_add(1), y) {
                    *w = false;
                }
            } else if was_wide {
                orphan = Some(Position::new(x.saturating_add(1), y));
            }
            self.cursor = Position::new(x.saturating_add(1), y);
            if let Some(p) = orphan.take()
                && p.x < self.size.width
                && !matches!(content.peek(), Some((nx, ny, _)) if *nx == p.x && *ny == p.y)
            {
                if last != Some(Position::new(p.x.saturating_sub(1), p.y)) {
                    push_move(&mut self.out, p);
                }
                self.out.extend_from_slice(b"\x1b[0m ");
                style = Some((Color::Reset, Color::Reset, Modifier::empty()));
                last = Some(p);
                self.cursor = Position::new(p.x.saturating_add(1), p.y);
            }
        }
        if style.is_some() {
            self.out.extend_from_slice(b"\x1b[0m");
        }
        Ok(())
    }

    fn hide_cursor(&mut self) -> io::Result<()> {
        self.out.extend_from_slice(b"\x1b[?25l");
        Ok(())
    }

    fn show_cursor(&mut self) -> io::Result<()> {
        self.out.extend_from_slice(b"\x1b[?25h");
        Ok(())
    }

    fn get_cursor_position(&mut self) -> io::Result<Position> {
        Ok(self.cursor)
    }

    fn set_cursor_position<P: Into<Position>>(&mut self, position: P) -> io::Result<()> {
        let p = position.into();
        push_move(&mut self.out, p);
        self.cursor = p;
        Ok(())
    }

    fn clear(&mut self) -> io::Result<()> {
        self.wide.fill(false);
        self.out.extend_from_slice(b"\x1b[0m\x1b[H\x1b[2J");
        self.cursor = Position::ORIGIN;
        Ok(())
    }

    fn clear_region(&mut self, clear_type: ClearType) -> io::Result<()> {
        let seq: &[u8] = match clear_type {
            ClearType::All => b"\x1b[2J",
            ClearType::AfterCursor => b"\x1b[J",
            ClearType::BeforeCursor => b"\x1b[1J",
            ClearType::CurrentLine => b"\x1b[2K",
            ClearType::UntilNewLine => b"\x1b[K",
        };
        self.out.extend_from_slice(seq);
        Ok(())
    }

    fn size(&self) -> io::Result<Size> {
        Ok(self.size)
    }

    fn window_size(&mut self) -> io::Result<WindowSize> {
        Ok(WindowSize {
            columns_rows: self.size,
            pixels: Size::new(0, 0),
        })
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Renders one client's [`App`] into bytes for that client's terminal
/// (already in raw mode and the alternate screen).
pub struct RemoteRenderer {
    terminal: Option<Terminal<ByteBackend>>,
    size: (u16, u16),
}

impl RemoteRenderer {
    pub fn new(cols: u16, rows: u16) -> RemoteRenderer {
        RemoteRenderer {
            terminal: None,
            size: (cols, rows),
        }
    }

    /// The client's terminal changed size: the next render is a full frame.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        if (cols, rows) != self.size {
            self.size = (cols, rows);
            self.terminal = None;
        }
    }

    /// The next render is a full frame (after a resync or a dropped frame).
    pub fn invalidate(&mut self) {
        self.terminal = None;
    }

    /// The bytes that bring the client's screen from the last render to this
    /// one. The first render (and the first after `resize`/`invalidate`)
    /// clears the screen and draws everything.
    pub fn render(&mut self, app: &App, src: &dyn PaneSource) -> Vec<u8> {
        let (cols, rows) = self.size;
        let mut prefix = Vec::new();
        if self.terminal.is_none() {
            let backend = ByteBackend::new(cols, rows);
            let opts = TerminalOptions {
                viewport: Viewport::Fixed(Rect::new(0, 0, cols, rows)),
            };
            match Terminal::with_options(backend, opts) {
                Ok(t) => self.terminal = Some(t),
                Err(_) => return Vec::new(), // ByteBackend never fails
            }
            prefix.extend_from_slice(b"\x1b[0m\x1b[H\x1b[2J");
        }
        let Some(term) = self.terminal.as_mut() else {
            return prefix;
        };
        if term.draw(|f| app.draw(f, src)).is_err() {
            self.terminal = None;
            return prefix;
        }
        prefix.extend(term.backend_mut().take());
        prefix
    }
}

/// OSC 52: asks the client's terminal to put `text` on the clipboard.
/// (Inside tmux this needs `set -g set-clipboard on`.)
pub fn osc52_copy(text: &str) -> Vec<u8> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    let mut out = Vec::with_capacity(b64.len() + 8);
    out.extend_from_slice(b"\x1b]52;c;");
    out.extend_from_slice(b64.as_bytes());
    out.push(0x07);
    out
}
