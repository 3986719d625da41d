//! A terminal emulator that only emulates when someone looks.
//!
//! Feeding vt100 costs far more than everything else on the output path
//! (measured: 0.75 of 1.0 CPU seconds for 400,000 lines; vt100 runs at
//! 20–50 MB/s where the line capture runs at 300–500 MB/s). Most of the time
//! nobody looks at most processes, so the reader only appends the raw bytes
//! to a bounded buffer, and the emulator catches up when a client renders the
//! process (at most once per frame) or resizes it.
//!
//! Two things cannot wait:
//! - **Terminal queries** (DSR `CSI 5n`, CPR `CSI 6n`, DA `CSI c`, `CSI >c`):
//!   a program blocks until it gets the answer, so a chunk that contains one
//!   (even split across reads) is emulated at once and answered.
//! - **Memory**: the raw bytes kept are capped (enough for the scrollback and
//!   the screen). Past the cap the oldest bytes are dropped at a line
//!   boundary; when some of them had not been emulated yet the screen says
//!   so with a marked line; the log file and the `--no-tui` output still have
//!   every line. The visible screen after a catch-up is exact for line
//!   output; a full-screen program redraws within the kept bytes.
//!
//! # Reflow
//!
//! vt100 cuts rows that are wider than the screen when it shrinks, and they
//! stay cut when it grows again. The raw bytes are therefore kept after they
//! were emulated (the same bound: about `(scrollback + rows) × cols` bytes),
//! and a resize of a screen showing its main (not alternate) screen replays
//! them into a fresh emulator at the new size, so lines wrap and unwrap as in
//! tmux. The replay is deferred to the next look (a burst of resizes between
//! two frames costs one replay; a process nobody shows costs none) and feeds
//! only the last `scrollback + rows` lines. A program in the alternate screen
//! is resized in place and redraws after its SIGWINCH; once it leaves the
//! alternate screen, the main screen is replayed at the size it has then.

use super::screen::Screen;

/// Bytes of the previous chunk kept to spot a query split across reads.
const QUERY_TAIL: usize = 16;

/// The note a replay starts with when older output was dropped.
const REPLAY_NOTE: &[u8] =
    b"\x1b[0m\x1b[2m[mew: older output not shown here; the log file has every line]\x1b[0m\r\n";

pub struct LazyScreen {
    /// Created the first time someone looks: a process nobody watches costs
    /// no emulator memory at all (the grid is the bulk of an idle process).
    screen: Option<Screen>,
    rows: u16,
    cols: u16,
    scrollback: usize,
    /// The raw output kept: what the emulator was fed (for a reflow), then
    /// what it has not been fed yet (`raw[fed..]`).
    raw: Vec<u8>,
    /// Bytes of `raw` already given to the emulator (or passed over).
    fed: usize,
    /// The front of `raw` was cut: a replay cannot show everything.
    lost: bool,
    /// The size changed while the main screen was shown: replay at the next look.
    reflow: bool,
    /// The size changed while the alternate screen was shown: replay when
    /// the program leaves it.
    reflow_after_alt: bool,
    /// Most bytes kept in `raw`.
    cap: usize,
    /// Bytes dropped unemulated since the last catch-up.
    skipped: u64,
    /// The last catch-up had more output than the screen and its scrollback
    /// can show: the program floods faster than frames are drawn.
    flooded: bool,
    tail: [u8; QUERY_TAIL],
    tail_len: usize,
}

fn cap_for(rows: u16, cols: u16, scrollback: usize) -> usize {
    let lines = scrollback.saturating_add(usize::from(rows));
    lines
        .saturating_mul(usize::from(cols).max(80))
        .clamp(64 << 10, 4 << 20)
}

impl LazyScreen {
    pub(crate) fn new(rows: u16, cols: u16, scrollback: usize) -> LazyScreen {
        LazyScreen {
            screen: None,
            rows,
            cols,
            scrollback,
            raw: Vec::new(),
            fed: 0,
            lost: false,
            reflow: false,
            reflow_after_alt: false,
            cap: cap_for(rows, cols, scrollback),
            skipped: 0,
            flooded: false,
            tail: [0; QUERY_TAIL],
            tail_len: 0,
        }
    }

    /// Record PTY output. Returns the answers to terminal queries in it (the
    /// emulator is brought up to date first when there are any).
    pub(crate) fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        let query = has_query(&self.tail[..self.tail_len], bytes);
        self.remember_tail(bytes);
        if query {
            self.catch_up();
            self.raw.extend_from_slice(bytes);
            self.fed = self.raw.len();
            let replies = match self.screen.as_mut() {
                Some(screen) => screen.process(bytes),
                None => Vec::new(),
            };
            self.trim();
            return replies;
        }
        self.raw.extend_from_slice(bytes);
        self.trim();
        Vec::new()
    }

    fn remember_tail(&mut self, bytes: &[u8]) {
        if bytes.len() >= QUERY_TAIL {
            self.tail
                .copy_from_slice(&bytes[bytes.len() - QUERY_TAIL..]);
            self.tail_len = QUERY_TAIL;
        } else {
            let keep = (QUERY_TAIL - bytes.len()).min(self.tail_len);
            self.tail
                .copy_within(self.tail_len - keep..self.tail_len, 0);
            self.tail[keep..keep + bytes.len()].copy_from_slice(bytes);
            self.tail_len = keep + bytes.len();
        }
    }

    /// Past the cap, drop the oldest bytes (keeping three quarters of the
    /// cap, so a trim happens once per quarter cap of output), from a line
    /// start when there is one.
    fn trim(&mut self) {
        if self.raw.len() <= self.cap {
            return;
        }
        let cut = self.raw.len() - self.cap / 4 * 3;
        let cut = match self.raw[cut..].iter().position(|&b| b == b'\n') {
            Some(i) => cut + i + 1,
            None => cut,
        };
        if cut > self.fed {
            self.skipped += (cut - self.fed) as u64;
            self.fed = 0;
        } else {
            self.fed -= cut;
        }
        self.lost = true;
        self.raw.drain(..cut);
    }

    /// Feed everything pending to the emulator (creating it if needed), or
    /// replay the kept output when a reflow is due.
    fn catch_up(&mut self) -> &mut Screen {
        if self.reflow && self.screen.is_some() {
            self.reflow = false;
            self.replay();
        }
        self.keep_last_lines();
        // Only a catch-up with something to emulate says whether it kept up
        // (a frame looks at the screen several times).
        if self.skipped > 0 || self.fed < self.raw.len() {
            self.flooded = self.skipped > 0;
        }
        let (rows, cols, scrollback) = (self.rows, self.cols, self.scrollback);
        let screen = self
            .screen
            .get_or_insert_with(|| Screen::new(rows, cols, scrollback));
        if self.skipped > 0 {
            let note = format!(
                "\x1b[0m\r\n\x1b[2m[mew: {} of output not shown here; the log file has every line]\x1b[0m\r\n",
                crate::human::size(self.skipped)
            );
            screen.process(note.as_bytes());
            self.skipped = 0;
        }
        let mut left_alt = false;
        if self.fed < self.raw.len() {
            let was_alt = screen.vt().alternate_screen();
            // Answers to queries that went by unseen are too late to matter.
            screen.process(&self.raw[self.fed..]);
            self.fed = self.raw.len();
            left_alt = was_alt && !screen.vt().alternate_screen();
        }
        if left_alt && self.reflow_after_alt {
            self.reflow_after_alt = false;
            self.replay();
        }
        // `replay` rebuilds the screen in place: it is still there.
        self.screen
            .get_or_insert_with(|| Screen::new(rows, cols, scrollback))
    }

    /// Rebuild the emulator at the current size from the kept output: the
    /// last `scrollback + rows` lines of it (older ones could not be shown).
    fn replay(&mut self) {
        let Some(screen) = self.screen.as_mut() else {
            return;
        };
        let keep = self.scrollback.saturating_add(usize::from(self.rows));
        let mut seen = 0usize;
        let start = self
            .raw
            .iter()
            .rposition(|&b| {
                if b == b'\n' {
                    seen += 1;
                }
                seen > keep
            })
            .map_or(0, |i| i + 1);
        let note = self.lost && start == 0;
        let parts: [&[u8]; 2] = [if note { REPLAY_NOTE } else { b"" }, &self.raw[start..]];
        screen.rebuild(self.rows, self.cols, self.scrollback, &parts);
        self.fed = self.raw.len();
        self.skipped = 0;
    }

    /// Before a catch-up: when the pending bytes hold more lines than the
    /// screen and its scrollback can show, only the last of them can still
    /// be seen; the older ones are passed over unemulated (and the gap is
    /// marked; a later replay has them). Under a flood this halves what
    /// vt100 processes per frame.
    fn keep_last_lines(&mut self) {
        // Three lines fewer: the gap's note (a blank line and the note) stays
        // at the top of the scrollback, where scrolling up finds it, with the
        // cursor's line after the last one kept.
        let keep = self
            .scrollback
            .saturating_add(usize::from(self.rows))
            .saturating_sub(3);
        let mut seen = 0usize;
        let cut = self.raw[self.fed..].iter().rposition(|&b| {
            if b == b'\n' {
                seen += 1;
            }
            seen > keep
        });
        if let Some(i) = cut {
            let cut = i + 1;
            self.skipped += cut as u64;
            self.fed += cut;
        }
    }

    /// The emulator, up to date.
    pub(crate) fn screen(&mut self) -> &mut Screen {
        self.catch_up()
    }

    /// Resize. An emulator that exists catches up first, so pending output
    /// is laid out at the old size. On the main screen the kept output is
    /// then replayed at the new size at the next look (the lines reflow); in
    /// the alternate screen the emulator is resized in place (the program
    /// redraws after SIGWINCH). An emulator that does not exist yet will
    /// start at the new size with everything kept.
    pub(crate) fn resize(&mut self, rows: u16, cols: u16) {
        if (rows, cols) == (self.rows, self.cols) {
            return;
        }
        self.cap = cap_for(rows, cols, self.scrollback);
        if self.screen.is_none() || self.reflow {
            // Nothing to lay out at the old size: the next look builds (or
            // replays) the screen at the size it has then.
            self.rows = rows;
            self.cols = cols;
            return;
        }
        let screen = self.catch_up();
        if screen.vt().alternate_screen() {
            screen.resize(rows, cols);
            self.reflow_after_alt = true;
        } else {
            self.reflow = true;
        }
        self.rows = rows;
        self.cols = cols;
    }

    /// Whether the last catch-up dropped output nobody could have seen (a
    /// flood): clients then draw this process less often.
    pub(crate) fn flooded(&self) -> bool {
        self.flooded
    }

    /// Bytes waiting to be emulated.
    #[cfg(test)]
    pub(crate) fn pending_len(&self) -> usize {
        self.raw.len() - self.fed
    }

    /// Raw bytes kept (emulated and pending), at most about
    /// `(scrollback + rows) × cols`.
    #[cfg(test)]
    pub(crate) fn kept_len(&self) -> usize {
        self.raw.len()
    }
}

/// Whether `tail ++ bytes` contains a query a program waits on:
/// `CSI [?] Ps n` (DSR, CPR) or `CSI [>] [Ps] c` (primary, secondary DA).
fn has_query(tail: &[u8], bytes: &[u8]) -> bool {
    if !bytes.contains(&0x1b) && !tail.contains(&0x1b) {
        return false;
    }
    // Join the boundary region so a query split across reads is seen.
    let mut joined = Vec::with_capacity(tail.len() + bytes.len().min(QUERY_TAIL));
    joined.extend_from_slice(tail);
    joined.extend_from_slice(&bytes[..bytes.len().min(QUERY_TAIL)]);
    scan(&joined) || scan(bytes)
}

fn scan(buf: &[u8]) -> bool {
    let mut i = 0;
    while let Some(off) = buf[i..].iter().position(|&b| b == 0x1b) {
        let start = i + off;
        i = start + 1;
        if buf.get(start + 1) != Some(&b'[') {
            continue;
        }
        let mut j = start + 2;
        if matches!(buf.get(j), Some(b'?') | Some(b'>')) {
            j += 1;
        }
        while matches!(buf.get(j), Some(b'0'..=b'9') | Some(b';')) {
            j += 1;
        }
        if matches!(buf.get(j), Some(b'n') | Some(b'c')) {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &mut LazyScreen) -> String {
        s.screen().vt().contents()
    }

    #[test]
    fn output_waits_until_someone_looks() {
        let mut s = LazyScreen::new(5, 20, 100);
        assert!(s.push(b"hello\r\nworld\r\n").is_empty());
        assert_eq!(s.pending_len(), 14);
        assert!(text(&mut s).contains("hello\nworld"));
        assert_eq!(s.pending_len(), 0);
    }

    #[test]
    fn queries_are_answered_at_once_even_when_split() {
        let mut s = LazyScreen::new(5, 20, 100);
        s.push(b"abc");
        // Cursor after "abc" is row 1, column 4.
        assert_eq!(s.push(b"\x1b[6n"), b"\x1b[1;4R");
        assert_eq!(s.pending_len(), 0);
        s.push(b"x\x1b[");
        assert_eq!(s.push(b"5n"), b"\x1b[0n");
        assert!(s.push(b"\x1b[1;2H\x1b[31m").is_empty());
        assert!(!s.push(b"\x1b[>c").is_empty());
    }

    #[test]
    fn pending_output_is_bounded_and_the_gap_is_marked() {
        let mut s = LazyScreen::new(5, 40, 10);
        let cap = s.cap;
        for i in 0..100_000 {
            s.push(format!("line {i}\r\n").as_bytes());
            assert!(s.pending_len() <= cap);
        }
        assert!(s.skipped > 0);
        let vt = s.screen().vt().contents();
        assert!(vt.contains("line 99999"), "{vt}");
        // What was kept still fills the whole scrollback.
        assert_eq!(s.screen().scrollback_len(), 10);
    }

    #[test]
    fn a_catch_up_emulates_only_the_lines_that_can_still_be_seen() {
        // Wide enough for the note to take one row.
        let mut s = LazyScreen::new(5, 100, 10);
        s.push(b"\x1b[31m");
        for i in 0..100 {
            s.push(format!("line {i}\r\n").as_bytes());
        }
        let screen = s.screen();
        assert_eq!(screen.scrollback_len(), 10);
        screen.set_view_offset(10);
        let top = screen.vt().contents();
        screen.set_view_offset(0);
        // The oldest visible line is the note, then the newest 12 lines.
        assert!(top.starts_with("\n[mew: "), "{top}");
        assert!(top.contains("of output not shown here"), "{top}");
        assert!(top.contains("line 88"), "{top}");
        assert!(!top.contains("line 87"), "{top}");
        assert!(s.screen().vt().contents().contains("line 99"));
        assert!(s.flooded());
        s.push(b"one more\r\n");
        s.screen();
        assert!(!s.flooded());
        // Fewer lines than fit are all emulated, without a note.
        let mut s = LazyScreen::new(5, 40, 10);
        for i in 0..12 {
            s.push(format!("line {i}\r\n").as_bytes());
        }
        assert_eq!(s.screen().scrollback_len(), 8);
        assert_eq!(s.skipped, 0);
    }

    #[test]
    fn no_emulator_until_someone_looks() {
        let mut s = LazyScreen::new(5, 10, 10);
        s.push(b"hello");
        assert!(s.screen.is_none());
        s.resize(6, 30);
        assert!(s.screen.is_none());
        assert_eq!(s.screen().size(), (6, 30));
        assert!(text(&mut s).contains("hello"));
    }

    #[test]
    fn a_gap_is_marked_on_screen() {
        let mut s = LazyScreen::new(5, 40, 10);
        s.skipped = 5 << 20;
        s.push(b"after\r\n");
        let vt = s.screen().vt().contents();
        assert!(vt.contains("5.0 MiB of output not shown here"), "{vt}");
        assert!(vt.contains("after"), "{vt}");
    }

    #[test]
    fn resize_catches_up_first() {
        let mut s = LazyScreen::new(5, 10, 10);
        s.screen();
        s.push(b"0123456789abcdef");
        s.resize(5, 20);
        assert_eq!(s.pending_len(), 0);
        assert!(text(&mut s).contains("0123456789"));
    }

    fn rows(s: &mut LazyScreen) -> Vec<String> {
        let screen = s.screen();
        let (_, cols) = screen.size();
        screen.vt().rows(0, cols).collect()
    }

    fn long_line() -> String {
        (0..200)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect()
    }

    #[test]
    fn a_long_line_reflows_when_narrowed_and_widened() {
        let line = long_line();
        let mut s = LazyScreen::new(10, 200, 100);
        s.push(format!("{line}\r\nnext\r\n").as_bytes());
        assert_eq!(rows(&mut s)[0], line);
        s.resize(10, 60);
        let narrow = rows(&mut s);
        assert_eq!(narrow[..4].concat(), line, "{narrow:?}");
        assert_eq!(narrow[4], "next");
        s.resize(10, 200);
        let wide = rows(&mut s);
        assert_eq!(wide[0], line, "{wide:?}");
        assert_eq!(wide[1], "next");
    }

    #[test]
    fn a_burst_of_resizes_costs_one_replay_at_the_next_look() {
        let line = long_line();
        let mut s = LazyScreen::new(10, 200, 100);
        s.push(format!("{line}\r\n").as_bytes());
        s.screen();
        for cols in [150, 100, 60, 40, 90] {
            s.resize(10, cols);
            // Deferred: the emulator keeps its old size until someone looks.
            assert_eq!(s.screen.as_ref().map(Screen::size), Some((10, 200)));
        }
        s.push(b"after\r\n");
        let r = rows(&mut s);
        assert_eq!(s.screen().size(), (10, 90));
        assert_eq!(r[..3].concat(), line, "{r:?}");
        assert_eq!(r[3], "after");
        assert_eq!(s.pending_len(), 0);
    }

    #[test]
    fn the_alternate_screen_is_resized_in_place_and_the_main_screen_reflows_after() {
        let line = long_line();
        let mut s = LazyScreen::new(10, 200, 100);
        s.push(format!("{line}\r\n\x1b[?1049h\x1b[HFULL").as_bytes());
        s.screen();
        s.resize(10, 60);
        // Not replayed: what the program drew stays until it redraws.
        assert!(!s.reflow);
        assert!(s.screen().vt().alternate_screen());
        assert_eq!(s.screen().size(), (10, 60));
        assert_eq!(rows(&mut s)[0], "FULL");
        s.resize(10, 200);
        // Leaving the alternate screen shows the main screen reflowed.
        s.push(b"\x1b[?1049l");
        let r = rows(&mut s);
        assert!(!s.screen().vt().alternate_screen());
        assert_eq!(r[0], line, "{r:?}");
    }

    #[test]
    fn a_replay_keeps_the_scrollback_and_marks_what_was_dropped() {
        let mut s = LazyScreen::new(5, 40, 20);
        for i in 0..10 {
            s.push(format!("line {i}\r\n").as_bytes());
        }
        s.screen();
        s.resize(5, 30);
        let screen = s.screen();
        assert_eq!(screen.scrollback_len(), 6);
        assert!(!screen.vt().contents().contains("[mew:"));
        // Past the cap the front of what is kept goes: a replay says so.
        let mut s = LazyScreen::new(5, 40, 20);
        let cap = s.cap;
        let mut i = 0;
        while s.kept_len() + 20 < cap || !s.lost {
            s.push(format!("line {i}\r\n").as_bytes());
            i += 1;
            s.screen();
        }
        assert!(s.kept_len() <= cap);
        s.resize(5, 30);
        let screen = s.screen();
        assert!(screen.vt().contents().contains(&format!("line {}", i - 1)));
        assert_eq!(screen.scrollback_len(), 20);
    }

    #[test]
    fn a_replay_answers_no_query_and_keeps_bells_and_title() {
        let mut s = LazyScreen::new(5, 40, 20);
        assert!(!s.push(b"\x1b]2;t\x07ding\x07\x1b[6n").is_empty());
        s.resize(5, 30);
        assert_eq!(s.screen().bell_count(), 1);
        assert_eq!(s.screen().title(), Some("t"));
        assert!(s.push(b"x").is_empty());
    }
}
