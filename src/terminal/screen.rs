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
//! # Invalid UTF-8
//!
//! vte 0.15 rescans the rest of its input for every invalid UTF-8 byte
//! (quadratic: a 1 MiB flood of invalid bytes cost a minute of CPU), so
//! [`Screen::process`] drops invalid sequences itself before vt100 sees them.
//! Nothing visible is lost: vt100 displays nothing for U+FFFD or C1
//! controls. A sequence split across `process` calls is joined.
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
    /// The start of a UTF-8 sequence cut by the end of the last `process`.
    carry: [u8; 4],
    carry_len: usize,
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
            carry: [0; 4],
            carry_len: 0,
        }
    }

    /// Feed PTY output; returns the bytes to write back to the PTY (answers
    /// to terminal queries), usually empty.
    pub fn process(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.feed(bytes);
        std::mem::take(&mut self.parser.callbacks_mut().replies)
    }

    /// Hand `bytes` to vt100 without its invalid UTF-8 (see the module doc).
    fn feed(&mut self, mut bytes: &[u8]) {
        // Complete a sequence cut by the end of the previous call.
        while self.carry_len > 0 && !bytes.is_empty() {
            self.carry[self.carry_len] = bytes[0];
            self.carry_len += 1;
            bytes = &bytes[1..];
            let carry = self.carry;
            match std::str::from_utf8(&carry[..self.carry_len]) {
                Ok(_) => {
                    self.parser.process(&carry[..self.carry_len]);
                    self.carry_len = 0;
                }
                Err(e) => match e.error_len() {
                    // Still incomplete (a carry never exceeds 3 bytes).
                    None => {}
                    // Invalid: drop it, then read what followed it normally.
                    Some(bad) => {
                        let rest = &carry[bad..self.carry_len];
                        self.carry_len = 0;
                        self.feed_valid(rest);
                    }
                },
            }
        }
        self.feed_valid(bytes);
    }

    fn feed_valid(&mut self, mut bytes: &[u8]) {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(_) => {
                    self.parser.process(bytes);
                    return;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    self.parser.process(&bytes[..valid]);
                    match e.error_len() {
                        Some(bad) => bytes = &bytes[valid + bad..],
                        None => {
                            let tail = &bytes[valid..];
                            self.carry[..tail.len()].copy_from_slice(tail);
                            self.carry_len = tail.len();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Resize (each dimension at least 1). Rows cut by a shrink go into the
    /// scrollback and come back on grow (vt100 follows xterm).
    pub(crate) fn resize(&mut self, rows: u16, cols: u16) {
        self.parser.set_size(nz(rows), nz(cols));
    }

    /// Start over at `rows` × `cols` with `scrollback` rows of history and
    /// feed it `history` (the kept raw output), for a reflow: lines wrap at
    /// the new width as they would have had the screen always been this
    /// size. Answers to the queries in it are dropped (they were given at
    /// the time); the bell count is kept, and so is the title unless the
    /// history sets one.
    pub(crate) fn rebuild(&mut self, rows: u16, cols: u16, scrollback: usize, history: &[&[u8]]) {
        let bells = self.bell_count();
        let title = self.parser.callbacks_mut().title.take();
        *self = Screen::new(rows, cols, scrollback);
        for part in history {
            self.feed(part);
        }
        let callbacks = self.parser.callbacks_mut();
        callbacks.replies.clear();
        callbacks.bells = bells;
        if callbacks.title.is_none() {
            callbacks.title = title;
        }
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
    pub(crate) fn set_view_offset(&mut self, lines_up: usize) -> usize {
        self.parser.screen_mut().set_scrollback(lines_up);
        self.parser.screen().scrollback()
    }

    /// The current view offset (0 = live).
    pub(crate) fn view_offset(&self) -> usize {
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

    /// The window title set by the process (OSC 0 or 2), if any. Kept
    /// (across a rebuild too) but shown nowhere yet: only tests read it.
    #[cfg(test)]
    pub(crate) fn title(&self) -> Option<&str> {
        self.parser.callbacks().title.as_deref()
    }

    /// Bells (BEL or `ESC g`) rung since this screen was created.
    pub(crate) fn bell_count(&self) -> u64 {
        self.parser.callbacks().bells
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row_texts(screen: &Screen) -> Vec<String> {
        let (_, cols) = screen.size();
        screen.vt().rows(0, cols).collect()
    }

    #[test]
    fn answers_terminal_queries() {
        let mut s = Screen::new(24, 80, 100);
        assert_eq!(s.process(b"\x1b[5n"), b"\x1b[0n");
        assert_eq!(s.process(b"\x1b[5;10H\x1b[6n"), b"\x1b[5;10R");
        assert_eq!(s.process(b"\x1b[c"), b"\x1b[?1;2c");
        assert_eq!(s.process(b"\x1b[0c"), b"\x1b[?1;2c");
        assert_eq!(s.process(b"\x1b[>c"), b"\x1b[>0;0;0c");
        assert_eq!(s.process(b"\x1b[>0c"), b"\x1b[>0;0;0c");
        // Not queries, or not ones we answer.
        assert_eq!(s.process(b"\x1b[1c\x1b[7n\x1b[?6n\x1b[31mhi"), b"");
        // Several at once, and one split across calls.
        assert_eq!(s.process(b"\x1b[H\x1b[6n\x1b[5n"), b"\x1b[1;1R\x1b[0n");
        assert_eq!(s.process(b"ab\x1b["), b"");
        assert_eq!(s.process(b"6n"), b"\x1b[1;3R");
    }

    #[test]
    fn invalid_utf8_is_dropped_and_split_sequences_are_joined() {
        let mut s = Screen::new(3, 20, 0);
        s.process(b"a\xffb\xe2\x82c\xc3");
        s.process(b"\xa9");
        s.process(b"\xf0\x9f");
        s.process(b"\x8e\x89|\xe2");
        s.process(b"\x1b[1mx\xe4");
        s.process(b"\xb8");
        s.process(b"\x96");
        assert_eq!(row_texts(&s)[0], "abcé🎉|x世");
        assert!(s.vt().cell(0, 6).is_some_and(|c| !c.bold()));
        assert!(s.vt().cell(0, 7).is_some_and(vt100::Cell::bold));
    }

    #[test]
    fn replies_are_capped() {
        let mut s = Screen::new(24, 80, 0);
        let flood = b"\x1b[5n".repeat(100_000);
        let replies = s.process(&flood);
        assert!(replies.len() <= MAX_REPLIES);
        assert_eq!(replies.len() % 4, 0);
        assert_eq!(s.process(b"\x1b[5n"), b"\x1b[0n");
    }

    #[test]
    fn title_and_bells() {
        let mut s = Screen::new(24, 80, 0);
        assert_eq!(s.title(), None);
        s.process(b"\x1b]0;first\x07");
        assert_eq!(s.title(), Some("first"));
        s.process(b"\x1b]2;second\x1b\\");
        assert_eq!(s.title(), Some("second"));
        s.process(b"\x1b]1;icon only\x07");
        assert_eq!(s.title(), Some("second"));
        // BEL as an OSC terminator is not a bell.
        assert_eq!(s.bell_count(), 0);
        s.process(b"ding\x07\x07\x1bg");
        assert_eq!(s.bell_count(), 3);
        s.process(format!("\x1b]2;{}\x07", "t".repeat(1000)).as_bytes());
        assert_eq!(s.title().map(str::len), Some(MAX_TITLE));
        s.process(b"\x1b]2;bad\x01\x1b\\");
        assert!(s.title().is_some_and(|t| !t.contains('\x01')));
    }

    #[test]
    fn resize_and_size() {
        let mut s = Screen::new(0, 0, 0);
        assert_eq!(s.size(), (1, 1));
        s.resize(30, 100);
        assert_eq!(s.size(), (30, 100));
        s.process(b"\x1b[6n");
        assert_eq!(s.process(b"\x1b[99;999H\x1b[6n"), b"\x1b[30;100R");
    }

    #[test]
    fn scrollback_is_capped_and_viewable() {
        let mut s = Screen::new(5, 20, 50);
        for i in 0..200 {
            s.process(format!("line {i}\r\n").as_bytes());
        }
        assert_eq!(s.scrollback_len(), 50);
        assert_eq!(s.set_view_offset(10), 10);
        assert_eq!(row_texts(&s)[0], "line 186");
        // The view stays on the same lines while output arrives.
        s.process(b"more\r\n");
        assert_eq!(s.view_offset(), 11);
        assert_eq!(row_texts(&s)[0], "line 186");
        assert_eq!(s.set_view_offset(1000), 50);
        assert_eq!(s.set_view_offset(0), 0);
        assert_eq!(row_texts(&s)[3], "more");
    }

    #[test]
    fn search_covers_scrollback_and_screen() {
        let mut s = Screen::new(4, 30, 100);
        for i in 0..10 {
            s.process(format!("row {i} Needle x\r\n").as_bytes());
        }
        s.process(b"tail needle needle");
        // 10 lines + the tail line; 4 visible rows: 7 lines in scrollback.
        assert_eq!(s.scrollback_len(), 7);
        s.set_view_offset(3);
        let hits = s.search("Needle", false);
        assert_eq!(hits.len(), 10);
        assert_eq!(
            hits[0],
            Match {
                line: 0,
                col: 6,
                len: 6
            }
        );
        assert_eq!(
            hits[9],
            Match {
                line: 9,
                col: 6,
                len: 6
            }
        );
        assert_eq!(s.view_offset(), 3, "view offset restored");
        let hits = s.search("NEEDLE", true);
        assert_eq!(hits.len(), 12);
        assert_eq!(
            hits[10],
            Match {
                line: 10,
                col: 5,
                len: 6
            }
        );
        assert_eq!(
            hits[11],
            Match {
                line: 10,
                col: 12,
                len: 6
            }
        );
        assert!(s.search("absent", true).is_empty());
        assert!(s.search("", false).is_empty());
    }

    #[test]
    fn search_maps_wide_characters_to_columns() {
        let mut s = Screen::new(3, 20, 10);
        s.process("世界 hello 世界\r\n".as_bytes());
        let hits = s.search("hello", false);
        assert_eq!(
            hits,
            [Match {
                line: 0,
                col: 5,
                len: 5
            }]
        );
        let hits = s.search("世界", false);
        assert_eq!(
            hits,
            [
                Match {
                    line: 0,
                    col: 0,
                    len: 4
                },
                Match {
                    line: 0,
                    col: 11,
                    len: 4
                }
            ]
        );
    }

    #[test]
    fn search_on_a_short_history() {
        let mut s = Screen::new(10, 20, 100);
        s.process(b"a\r\nb\r\na\r\n");
        assert_eq!(s.scrollback_len(), 0);
        let hits = s.search("a", false);
        assert_eq!(
            hits,
            [
                Match {
                    line: 0,
                    col: 0,
                    len: 1
                },
                Match {
                    line: 2,
                    col: 0,
                    len: 1
                }
            ]
        );
    }

    #[test]
    fn garbage_keeps_the_parser_working() {
        let mut s = Screen::new(10, 40, 20);
        let mut state = 0x2545_f491_u32;
        let mut garbage = vec![0u8; 1 << 20];
        for b in &mut garbage {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *b = state as u8;
        }
        for chunk in garbage.chunks(4096) {
            s.process(chunk);
        }
        assert!(s.scrollback_len() <= 20);
        // Whatever state the garbage left, a reset and a line still render.
        s.process(b"\x18\x1b\\\x1bc\x1b[?1049lhello");
        assert_eq!(row_texts(&s)[0], "hello");
    }
}
