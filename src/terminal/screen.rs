//! The terminal emulator of one process: a [`vt100::Parser`] plus what the
//! parser leaves to its embedder.
//!
//! - **Answers to terminal queries.** A program that asks the terminal
//!   something (DSR `CSI 5 n`, CPR `CSI 6 n`, DA1 `CSI c`, DA2 `CSI > c`)
//!   waits for the answer; nushell and others hang without one. The answers
//!   are returned by [`Screen::process`] for the caller to write back to the
//!   PTY.
//! - **Window title and bells** from OSC 0/2 and BEL, kept for the TUI.
//! - **Scrollback view and search** over the scrollback and the visible rows.
//!
//! # Memory
//!
//! vt100 stores cells (32 bytes each), so one screen costs at most about
//! `(scrollback + rows) × cols × 32` bytes, whatever the process writes.
//! vt100 is built without its `std` feature so that vte keeps an OSC string
//! in a fixed 1 KiB buffer (with `std` it buffers an unterminated OSC without
//! bound); the other sequences are parsed into fixed-size state. Replies are
//! capped at 64 KiB per `process` call, the title at 256 characters.
//!
//! # Restarts
//!
//! [`Screen::clear`] prepares the screen for a restarted process without
//! losing history: it leaves the alternate screen, resets modes and
//! attributes, and scrolls the rows that hold text into the scrollback, so
//! the new run starts on a blank screen with the old output above it.
//! [`Screen::reset`] starts over with an empty parser.

use std::num::NonZeroU16;

/// Most reply bytes kept from one `process` call (a flood of queries must not
/// grow memory).
const MAX_REPLIES: usize = 64 * 1024;
/// Longest window title kept, in characters.
const MAX_TITLE: usize = 256;

/// One search hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Match {
    /// Absolute line: 0 is the oldest scrollback line; the visible rows
    /// follow the scrollback. Valid until the next `process` call (old
    /// scrollback lines fall off the top).
    pub line: usize,
    /// First column of the match.
    pub col: u16,
    /// Columns covered by the match.
    pub len: u16,
}

#[derive(Default)]
struct Callbacks {
    replies: Vec<u8>,
    title: Option<String>,
    bells: u64,
}

impl Callbacks {
    fn reply(&mut self, bytes: &[u8]) {
        if self.replies.len() + bytes.len() <= MAX_REPLIES {
            self.replies.extend_from_slice(bytes);
        }
    }
}

impl vt100::Callbacks for Callbacks {
    fn audible_bell(&mut self, _: &mut vt100::Screen) {
        self.bells += 1;
    }

    fn visual_bell(&mut self, _: &mut vt100::Screen) {
        self.bells += 1;
    }

    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        let title: String = String::from_utf8_lossy(title)
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_TITLE)
            .collect();
        self.title = if title.is_empty() { None } else { Some(title) };
    }

    fn unhandled_csi(
        &mut self,
        screen: &mut vt100::Screen,
        i1: Option<u8>,
        i2: Option<u8>,
        params: &[&[u16]],
        c: char,
    ) {
        let first = params.first().and_then(|p| p.first()).copied().unwrap_or(0);
        match (i1, i2, c, first) {
            // DSR: "terminal OK".
            (None, None, 'n', 5) => self.reply(b"\x1b[0n"),
            // CPR: cursor position, 1-based.
            (None, None, 'n', 6) => {
                let (row, col) = screen.cursor_position();
                let answer = format!("\x1b[{};{}R", u32::from(row) + 1, u32::from(col) + 1);
                self.reply(answer.as_bytes());
            }
            // DA1: a VT100 with advanced video.
            (None, None, 'c', 0) => self.reply(b"\x1b[?1;2c"),
            // DA2: terminal type 0, version 0.
            (Some(b'>'), None, 'c', 0) => self.reply(b"\x1b[>0;0;0c"),
            _ => {}
        }
    }
}

/// The terminal emulator of one process.
pub struct Screen {
    parser: vt100::Parser<Callbacks>,
}

fn nz(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

impl Screen {
    /// A blank screen of `rows` × `cols` (each at least 1) keeping at most
    /// `scrollback` rows of history.
    pub fn new(rows: u16, cols: u16, scrollback: usize) -> Self {
        Screen {
            parser: vt100::Parser::new_with_callbacks(
                nz(rows),
                nz(cols),
                scrollback,
                Callbacks::default(),
            ),
        }
    }

    /// Feed PTY output; returns the bytes to write back to the PTY (answers
    /// to terminal queries), usually empty.
    pub fn process(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.parser.process(bytes);
        std::mem::take(&mut self.parser.callbacks_mut().replies)
    }

    /// Like [`Screen::process`], appending the answers to `replies`.
    pub fn process_into(&mut self, bytes: &[u8], replies: &mut Vec<u8>) {
        self.parser.process(bytes);
        replies.append(&mut self.parser.callbacks_mut().replies);
    }

    /// Resize (each dimension at least 1). Rows cut by a shrink go into the
    /// scrollback and come back on grow (vt100 follows xterm).
    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.parser.set_size(nz(rows), nz(cols));
    }

    /// (rows, cols).
    pub fn size(&self) -> (u16, u16) {
        let (rows, cols) = self.parser.screen().size();
        (rows.get(), cols.get())
    }

    /// The emulator state, for rendering.
    pub fn vt(&self) -> &vt100::Screen {
        self.parser.screen()
    }

    /// Scroll the view `lines_up` lines into the scrollback (0 = live);
    /// returns the offset actually set (clamped to the scrollback length).
    /// The view stays on the same lines while new output arrives.
    pub fn set_view_offset(&mut self, lines_up: usize) -> usize {
        self.parser.screen_mut().set_scrollback(lines_up);
        self.parser.screen().scrollback()
    }

    /// The current view offset (0 = live).
    pub fn view_offset(&self) -> usize {
        self.parser.screen().scrollback()
    }

    /// Rows of history currently held.
    pub fn scrollback_len(&self) -> usize {
        self.parser.screen().scrollback_len()
    }

    /// Every occurrence of `needle` in the scrollback and the visible rows,
    /// oldest first (newest last). Matches do not span rows. The view offset
    /// is left as it was.
    pub fn search(&mut self, needle: &str, case_insensitive: bool) -> Vec<Match> {
        let mut found = Vec::new();
        if needle.is_empty() {
            return found;
        }
        let needle = if case_insensitive {
            needle.to_lowercase()
        } else {
            needle.to_owned()
        };
        let saved = self.view_offset();
        let scrollback = self.scrollback_len();
        let (rows, cols) = self.size();
        let rows = usize::from(rows);
        // Page through the history from the oldest line: at offset `o` the
        // visible rows are absolute lines `scrollback - o ..`.
        let mut next = 0;
        let mut offset = scrollback;
        loop {
            self.parser.screen_mut().set_scrollback(offset);
            let screen = self.parser.screen();
            let top = scrollback - screen.scrollback();
            for (r, text) in screen.rows(0, cols).enumerate() {
                let line = top + r;
                if line < next {
                    continue;
                }
                next = line + 1;
                let candidate = if case_insensitive {
                    text.to_lowercase().contains(&needle)
                } else {
                    text.contains(&needle)
                };
                if candidate && let Ok(r) = u16::try_from(r) {
                    search_row(screen, r, cols, line, &needle, case_insensitive, &mut found);
                }
            }
            if offset == 0 {
                break;
            }
            offset = offset.saturating_sub(rows);
        }
        self.parser.screen_mut().set_scrollback(saved);
        found
    }

    /// The window title set by the process (OSC 0 or 2), if any.
    pub fn title(&self) -> Option<&str> {
        self.parser.callbacks().title.as_deref()
    }

    /// Bells (BEL or `ESC g`) rung since this screen was created.
    pub fn bell_count(&self) -> u64 {
        self.parser.callbacks().bells
    }

    /// Prepare for a restarted process, keeping history: leave the
    /// alternate screen, reset attributes and modes, push the rows that hold
    /// text into the scrollback and home the cursor on a blank screen. The
    /// title is forgotten; the bell count is kept (it only grows).
    pub fn clear(&mut self) {
        self.parser.screen_mut().set_scrollback(0);
        // Leave the alternate screen (1049 restores the main cursor), reset
        // the scroll region, attributes, keypad, cursor and mouse modes.
        self.parser.process(
            b"\x1b[?1049l\x1b[?1047l\x1b[?47l\x1b[r\x1b[0m\x1b>\x1b[0 q\x1b[?25h\x1b[?1l\
              \x1b[?2004l\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1005l\x1b[?1006l",
        );
        let (rows, cols) = self.size();
        let used = (self.parser.screen().rows(0, cols).enumerate())
            .filter(|(_, row)| !row.is_empty())
            .map(|(i, _)| i)
            .last();
        if let Some(last) = used {
            // At the bottom row each LF scrolls one row into the scrollback.
            let mut seq = format!("\x1b[{rows};1H");
            seq.extend(std::iter::repeat_n('\n', last + 1));
            self.parser.process(seq.as_bytes());
        }
        self.parser.process(b"\x1b[H\x1b[2J");
        let callbacks = self.parser.callbacks_mut();
        callbacks.title = None;
        callbacks.replies.clear();
    }

    /// Start over: an empty screen of the same size, no scrollback, no title.
    /// The bell count is kept.
    pub fn reset(&mut self) {
        let (rows, cols) = self.size();
        let capacity = self.parser.screen().scrollback_capacity();
        let bells = self.bell_count();
        *self = Screen::new(rows, cols, capacity);
        self.parser.callbacks_mut().bells = bells;
    }
}

/// Find `needle` (already lower-cased when `case_insensitive`) in visible
/// row `r`, mapping byte offsets back to columns.
fn search_row(
    screen: &vt100::Screen,
    r: u16,
    cols: u16,
    line: usize,
    needle: &str,
    case_insensitive: bool,
    found: &mut Vec<Match>,
) {
    let mut text = String::new();
    // (byte offset in `text`, column, width) of each cell's text.
    let mut starts: Vec<(usize, u16, u16)> = Vec::new();
    for c in 0..cols {
        let Some(cell) = screen.cell(r, c) else { break };
        if cell.is_wide_continuation() {
            continue;
        }
        starts.push((text.len(), c, if cell.is_wide() { 2 } else { 1 }));
        let contents = cell.contents();
        if contents.is_empty() {
            text.push(' ');
        } else if case_insensitive {
            text.push_str(&contents.to_lowercase());
        } else {
            text.push_str(contents);
        }
    }
    let cell_at = |byte: usize| -> (u16, u16) {
        let i = starts.partition_point(|&(start, _, _)| start <= byte);
        let (_, col, width) = starts[i.saturating_sub(1)];
        (col, width)
    };
    for (at, m) in text.match_indices(needle) {
        let (col, _) = cell_at(at);
        let (end_col, end_width) = cell_at(at + m.len() - 1);
        found.push(Match {
            line,
            col,
            len: end_col.saturating_add(end_width).saturating_sub(col),
        });
    }
}
