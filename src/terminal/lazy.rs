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
//! - **Memory**: pending bytes are capped (enough for the scrollback and the
//!   screen). Past the cap the oldest pending bytes are dropped at a line
//!   boundary and the screen says so with a marked line; the log file and the
//!   `--no-tui` output still have every line. The visible screen after a
//!   catch-up is exact for line output; a full-screen program redraws within
//!   the kept bytes.

use super::screen::Screen;

/// Bytes of the previous chunk kept to spot a query split across reads.
const QUERY_TAIL: usize = 16;

pub struct LazyScreen {
    /// Created the first time someone looks: a process nobody watches costs
    /// no emulator memory at all (the grid is the bulk of an idle process).
    screen: Option<Screen>,
    rows: u16,
    cols: u16,
    scrollback: usize,
    pending: Vec<u8>,
    /// Most bytes kept pending.
    cap: usize,
    /// Bytes dropped since the last catch-up.
    skipped: u64,
    /// The last catch-up had more output than the screen and its scrollback
    /// can show: the program floods faster than frames are drawn.
    flooded: bool,
    tail: [u8; QUERY_TAIL],
    tail_len: usize,
}

impl LazyScreen {
    pub fn new(rows: u16, cols: u16, scrollback: usize) -> LazyScreen {
        let lines = scrollback.saturating_add(usize::from(rows));
        let cap = lines
            .saturating_mul(usize::from(cols).max(80))
            .clamp(64 << 10, 4 << 20);
        LazyScreen {
            screen: None,
            rows,
            cols,
            scrollback,
            pending: Vec::new(),
            cap,
            skipped: 0,
            flooded: false,
            tail: [0; QUERY_TAIL],
            tail_len: 0,
        }
    }

    /// Record PTY output. Returns the answers to terminal queries in it (the
    /// emulator is brought up to date first when there are any).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        let query = has_query(&self.tail[..self.tail_len], bytes);
        self.remember_tail(bytes);
        if query {
            return self.screen().process(bytes);
        }
        self.pending.extend_from_slice(bytes);
        if self.pending.len() > self.cap {
            self.trim();
        }
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

    /// Drop the oldest pending bytes, keeping half the cap, from a line start.
    fn trim(&mut self) {
        let cut = self.pending.len() - self.cap / 2;
        let cut = match self.pending[cut..].iter().position(|&b| b == b'\n') {
            Some(i) => cut + i + 1,
            None => cut,
        };
        self.skipped += cut as u64;
        self.pending.drain(..cut);
    }

    /// Feed everything pending to the emulator (creating it if needed).
    fn catch_up(&mut self) -> &mut Screen {
        self.keep_last_lines();
        // Only a catch-up with something to emulate says whether it kept up
        // (a frame looks at the screen several times).
        if self.skipped > 0 || !self.pending.is_empty() {
            self.flooded = self.skipped > 0;
        }
        let (rows, cols, scrollback) = (self.rows, self.cols, self.scrollback);
        let screen = self
            .screen
            .get_or_insert_with(|| Screen::new(rows, cols, scrollback));
        if self.skipped > 0 {
            let note = format!(
                "\x1b[0m\r\n\x1b[2m[mew: {} of output not shown here; the log file has every line]\x1b[0m\r\n",
                human(self.skipped)
            );
            screen.process(note.as_bytes());
            self.skipped = 0;
        }
        if !self.pending.is_empty() {
            // Answers to queries that went by unseen are too late to matter.
            screen.process(&self.pending);
            self.pending.clear();
            if self.pending.capacity() > 64 << 10 {
                self.pending.shrink_to(64 << 10);
            }
        }
        screen
    }

    /// Before a catch-up: when the pending bytes hold more lines than the
    /// screen and its scrollback can show, only the last of them can still
    /// be seen; the older ones are dropped unemulated (and the gap is
    /// marked). Under a flood this halves what vt100 processes per frame.
    fn keep_last_lines(&mut self) {
        // Three lines fewer: the gap's note (a blank line and the note) stays
        // at the top of the scrollback, where scrolling up finds it, with the
        // cursor's line after the last one kept.
        let keep = self
            .scrollback
            .saturating_add(usize::from(self.rows))
            .saturating_sub(3);
        let mut seen = 0usize;
        let cut = self.pending.iter().rposition(|&b| {
            if b == b'\n' {
                seen += 1;
            }
            seen > keep
        });
        if let Some(i) = cut {
            let cut = i + 1;
            self.skipped += cut as u64;
            self.pending.drain(..cut);
        }
    }

    /// The emulator, up to date.
    pub fn screen(&mut self) -> &mut Screen {
        self.catch_up()
    }

    /// Resize. An emulator that exists catches up first, so pending output
    /// is laid out at the old size; one that does not will start at the new
    /// size (what it gets is replayed there, as a full-screen program would
    /// redraw after SIGWINCH anyway).
    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.rows = rows;
        self.cols = cols;
        if self.screen.is_some() {
            self.catch_up().resize(rows, cols);
        }
    }

    /// Whether the last catch-up dropped output nobody could have seen (a
    /// flood): clients then draw this process less often.
    pub fn flooded(&self) -> bool {
        self.flooded
    }

    /// Bytes waiting to be emulated.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

fn human(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MB", bytes as f64 / f64::from(1 << 20))
    } else if bytes >= 1 << 10 {
        format!("{} KB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
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
        assert!(vt.contains("5.0 MB of output not shown here"), "{vt}");
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
}
