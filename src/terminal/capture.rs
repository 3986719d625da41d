//! PTY bytes → complete text lines, as a terminal would have shown them.
//!
//! [`LineCapture`] runs on every byte every process writes, so it is a small
//! byte-at-a-time state machine with a fast path for runs of printable ASCII
//! (no allocation per byte; buffers are reused from line to line). It feeds
//! the log files and the `--no-tui` printer.
//!
//! # Rules
//!
//! The capture models one terminal line with a cursor column:
//!
//! - `\n` ends the line (so `\r\n` does too). Every `\n` emits a line, empty
//!   ones included.
//! - `\r` moves the cursor to column 0; text written afterwards overwrites the
//!   line cell by cell (`progress 10%\rprogress 100%\n` → `progress 100%`,
//!   `hello world\rHELLO\n` → `HELLO world`).
//! - Backspace moves one column left; tab moves to the next multiple of 8.
//!   Cursor moves write nothing: the gap is filled with spaces only when text
//!   is written past the end of the line, so trailing tabs or moves leave no
//!   trailing blanks.
//! - `CSI K` (erase in line) modes 0, 1 and 2; `CSI G`/`` CSI ` `` (column
//!   absolute), `CSI C`/`CSI a` (right), `CSI D` (left), `ESC 7`/`ESC 8` and
//!   `CSI s`/`CSI u` (save/restore the column) are applied. Moves past the end
//!   of the text are clamped to column 1024 (or the line length if longer),
//!   which bounds the blanks a few escape bytes can produce.
//! - Every other escape sequence is removed: CSI, OSC (ended by BEL or ST),
//!   DCS/SOS/PM/APC strings (ended by ST), two-byte and charset-designation
//!   ESC sequences. An ESC inside a string ends it, as in xterm; CAN and SUB
//!   abort any sequence. Strings are skipped, never buffered; CSI parameters
//!   are kept in a fixed 64-byte buffer (a longer CSI is skipped whole). C0
//!   controls inside ESC/CSI are executed, as a terminal does.
//! - Other C0 controls, DEL and C1 controls (U+0080..U+009F) are dropped.
//! - The alternate screen (`CSI ?1049h`, `?1047h`, `?47h` until the matching
//!   `l`) is not captured: a full-screen program would spam the log. The line
//!   in progress before it is kept and continues afterwards (1049 also
//!   restores the cursor column).
//! - Invalid UTF-8 becomes U+FFFD, one per maximal invalid subpart (as
//!   [`String::from_utf8_lossy`]); sequences split across `feed` calls are
//!   joined.
//! - Every character counts as one column (wide and combining characters are
//!   not measured); this only matters for tabs and cursor moves.
//! - A line longer than 64 KiB of UTF-8 is split: the first 64 KiB are emitted
//!   and the rest continues on a new line from column 0.
//!
//! The output depends only on the bytes, never on how they were split into
//! `feed` calls.

/// Longest captured line, in bytes of UTF-8 plain text.
pub(crate) const MAX_LINE: usize = 64 * 1024;
/// Cursor moves past the end of the text are clamped to this column.
const MAX_PAD_COL: usize = 1024;
/// Bytes of CSI parameters and intermediates kept; longer sequences are skipped.
const MAX_CSI: usize = 64;
const REPLACEMENT: char = '\u{FFFD}';

/// One captured line. It borrows the capture's buffers; copy what you keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapturedLine<'a> {
    /// Plain text: no escape sequences, no control characters.
    pub text: &'a str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Ground,
    Esc,
    EscIntermediate,
    Csi,
    Osc,
    OscEsc,
    Str,
    StrEsc,
}

/// The line being built, plain text only.
///
/// Text mode (`cells_mode == false`): `text` holds the line. Appending at the
/// end is always done here; overwriting too while the line is pure ASCII
/// (byte index == column). Any other edit switches to cells mode, where
/// `cells` holds one `char` per column, until the line is emitted.
#[derive(Default)]
struct Line {
    text: String,
    cells: Vec<char>,
    cells_mode: bool,
    /// Columns (chars) in the line.
    len: usize,
    /// UTF-8 length of the line.
    bytes: usize,
    /// Cursor column.
    col: usize,
}

impl Line {
    fn is_ascii_text(&self) -> bool {
        !self.cells_mode && self.text.len() == self.len
    }

    fn make_cells(&mut self) {
        if !self.cells_mode {
            self.cells.clear();
            self.cells.extend(self.text.chars());
            self.text.clear();
            self.cells_mode = true;
        }
    }

    /// Empty the line, keeping the cursor column.
    fn clear(&mut self) {
        self.text.clear();
        self.cells.clear();
        self.cells_mode = false;
        self.len = 0;
        self.bytes = 0;
    }

    fn push_spaces(&mut self, n: usize) {
        if self.cells_mode {
            self.cells.extend(std::iter::repeat_n(' ', n));
        } else {
            self.text.extend(std::iter::repeat_n(' ', n));
        }
        self.len += n;
        self.bytes += n;
    }

    /// Overwrite columns `col..col + run.len()` (all `< len`) with ASCII.
    fn overwrite_ascii(&mut self, col: usize, run: &str) {
        if self.is_ascii_text() {
            self.text.replace_range(col..col + run.len(), run);
        } else {
            self.make_cells();
            for (cell, c) in self.cells[col..col + run.len()].iter_mut().zip(run.chars()) {
                self.bytes = self.bytes - cell.len_utf8() + 1;
                *cell = c;
            }
        }
    }

    fn truncate_at(&mut self, col: usize) {
        if col >= self.len {
            return;
        }
        if col == 0 {
            self.clear();
        } else if self.is_ascii_text() {
            self.text.truncate(col);
            self.len = col;
            self.bytes = col;
        } else {
            self.make_cells();
            self.bytes -= self.cells[col..]
                .iter()
                .map(|c| c.len_utf8())
                .sum::<usize>();
            self.cells.truncate(col);
            self.len = col;
        }
    }

    /// Blank columns `0..=col`.
    fn blank_through(&mut self, col: usize) {
        if col + 1 >= self.len {
            self.clear();
        } else if self.is_ascii_text() {
            let blanks: String = std::iter::repeat_n(' ', col + 1).collect();
            self.text.replace_range(0..=col, &blanks);
        } else {
            self.make_cells();
            for cell in &mut self.cells[..=col] {
                self.bytes = self.bytes - cell.len_utf8() + 1;
                *cell = ' ';
            }
        }
    }
}

/// Turns the raw byte stream of a PTY into complete text lines. See the
/// module documentation for the rules.
pub struct LineCapture {
    state: State,
    line: Line,
    /// Scratch for emitting a cells-mode line.
    scratch: String,
    saved_col: usize,
    alt_screen: bool,
    alt_saved_col: usize,
    csi: [u8; MAX_CSI],
    csi_len: usize,
    csi_overflow: bool,
    /// UTF-8 decoder: continuation bytes still needed, code point so far, and
    /// the allowed range of the next byte.
    utf8_need: u8,
    utf8_cp: u32,
    utf8_lo: u8,
    utf8_hi: u8,
}

impl LineCapture {
    /// A new capture.
    pub fn new() -> Self {
        LineCapture {
            state: State::Ground,
            line: Line::default(),
            scratch: String::new(),
            saved_col: 0,
            alt_screen: false,
            alt_saved_col: 0,
            csi: [0; MAX_CSI],
            csi_len: 0,
            csi_overflow: false,
            utf8_need: 0,
            utf8_cp: 0,
            utf8_lo: 0x80,
            utf8_hi: 0xbf,
        }
    }

    /// Feed PTY output; `out` is called for each completed line.
    pub fn feed(&mut self, bytes: &[u8], out: &mut dyn FnMut(CapturedLine<'_>)) {
        let mut i = 0;
        while i < bytes.len() {
            let rest = &bytes[i..];
            match self.state {
                State::Ground if self.utf8_need == 0 => {
                    // Fast paths: a run of printable ASCII, or of valid
                    // non-ASCII UTF-8 (each validated once: the segment ends
                    // at the next ASCII byte).
                    let n = rest.iter().position(|&b| !(0x20..0x7f).contains(&b));
                    let n = n.unwrap_or(rest.len());
                    if n > 0 {
                        if !self.alt_screen {
                            self.put_ascii(&rest[..n], out);
                        }
                        i += n;
                        continue;
                    }
                    let n = rest.iter().position(|&b| b < 0x80).unwrap_or(rest.len());
                    if n > 0 {
                        i += self.non_ascii(&rest[..n], out);
                        continue;
                    }
                }
                State::Osc | State::Str => {
                    // Skip string content up to a byte that may end it.
                    let n = rest
                        .iter()
                        .position(|&b| matches!(b, 0x07 | 0x18 | 0x1a | 0x1b));
                    let n = n.unwrap_or(rest.len());
                    if n > 0 {
                        i += n;
                        continue;
                    }
                }
                _ => {}
            }
            self.byte(bytes[i], out);
            i += 1;
        }
    }

    /// Emit the pending partial line, if any, and reset the parser (escape
    /// state, alternate screen). Call it when the process exits.
    pub fn flush(&mut self, out: &mut dyn FnMut(CapturedLine<'_>)) {
        if self.utf8_need > 0 {
            self.utf8_need = 0;
            if !self.alt_screen {
                self.put_char(REPLACEMENT, out);
            }
        }
        if self.line.len > 0 {
            self.emit(out);
        }
        self.line.clear();
        self.line.col = 0;
        self.state = State::Ground;
        self.alt_screen = false;
        self.saved_col = 0;
        self.alt_saved_col = 0;
    }

    /// A partial line (text without its `\n`) is pending.
    #[cfg(test)]
    pub(crate) fn has_partial(&self) -> bool {
        self.line.len > 0 || self.utf8_need > 0
    }

    fn byte(&mut self, b: u8, out: &mut dyn FnMut(CapturedLine<'_>)) {
        match self.state {
            State::Ground => self.ground(b, out),
            State::Esc => match b {
                b'[' => {
                    self.csi_len = 0;
                    self.csi_overflow = false;
                    self.state = State::Csi;
                }
                b']' => self.state = State::Osc,
                b'P' | b'X' | b'^' | b'_' => self.state = State::Str,
                0x20..=0x2f => self.state = State::EscIntermediate,
                b'7' => {
                    self.saved_col = self.line.col;
                    self.state = State::Ground;
                }
                b'8' => {
                    self.line.col = self.clamp_col(self.saved_col);
                    self.state = State::Ground;
                }
                0x30..=0x7e => self.state = State::Ground,
                0x7f => {}
                0x80..=0xff => {
                    self.state = State::Ground;
                    self.ground(b, out);
                }
                _ => self.control_in_sequence(b, out),
            },
            State::EscIntermediate => match b {
                0x20..=0x2f | 0x7f => {}
                0x30..=0x7e => self.state = State::Ground,
                0x80..=0xff => {
                    self.state = State::Ground;
                    self.ground(b, out);
                }
                _ => self.control_in_sequence(b, out),
            },
            State::Csi => match b {
                0x20..=0x3f => {
                    if self.csi_len < MAX_CSI {
                        self.csi[self.csi_len] = b;
                        self.csi_len += 1;
                    } else {
                        self.csi_overflow = true;
                    }
                }
                0x40..=0x7e => {
                    self.state = State::Ground;
                    if !self.csi_overflow {
                        self.csi_dispatch(b);
                    }
                }
                0x7f => {}
                0x80..=0xff => {
                    self.state = State::Ground;
                    self.ground(b, out);
                }
                _ => self.control_in_sequence(b, out),
            },
            State::Osc => match b {
                0x07 | 0x18 | 0x1a => self.state = State::Ground,
                0x1b => self.state = State::OscEsc,
                _ => {}
            },
            State::Str => match b {
                0x18 | 0x1a => self.state = State::Ground,
                0x1b => self.state = State::StrEsc,
                _ => {}
            },
            State::OscEsc | State::StrEsc => {
                if b == b'\\' {
                    self.state = State::Ground;
                } else {
                    // ESC ended the string and starts a new sequence.
                    self.state = State::Esc;
                    self.byte(b, out);
                }
            }
        }
    }

    /// A C0 control inside ESC or CSI: executed, or cancels the sequence.
    fn control_in_sequence(&mut self, b: u8, out: &mut dyn FnMut(CapturedLine<'_>)) {
        match b {
            0x18 | 0x1a => self.state = State::Ground,
            0x1b => self.state = State::Esc,
            _ => self.control(b, out),
        }
    }

    fn ground(&mut self, b: u8, out: &mut dyn FnMut(CapturedLine<'_>)) {
        if self.utf8_need > 0 {
            if (self.utf8_lo..=self.utf8_hi).contains(&b) {
                self.utf8_cp = (self.utf8_cp << 6) | u32::from(b & 0x3f);
                self.utf8_need -= 1;
                self.utf8_lo = 0x80;
                self.utf8_hi = 0xbf;
                if self.utf8_need == 0 {
                    let c = char::from_u32(self.utf8_cp).unwrap_or(REPLACEMENT);
                    self.decoded(c, out);
                }
                return;
            }
            // Invalid continuation: the sequence so far becomes U+FFFD and
            // this byte starts over.
            self.utf8_need = 0;
            self.decoded(REPLACEMENT, out);
        }
        match b {
            0x20..=0x7e => {
                if !self.alt_screen {
                    self.put_ascii(&[b], out);
                }
            }
            0x1b => self.state = State::Esc,
            0x00..=0x1f | 0x7f => self.control(b, out),
            0x80..=0xff => {
                let (need, cp, lo, hi) = match b {
                    0xc2..=0xdf => (1, b & 0x1f, 0x80, 0xbf),
                    0xe0 => (2, b & 0x0f, 0xa0, 0xbf),
                    0xe1..=0xec | 0xee..=0xef => (2, b & 0x0f, 0x80, 0xbf),
                    0xed => (2, b & 0x0f, 0x80, 0x9f),
                    0xf0 => (3, b & 0x07, 0x90, 0xbf),
                    0xf1..=0xf3 => (3, b & 0x07, 0x80, 0xbf),
                    0xf4 => (3, b & 0x07, 0x80, 0x8f),
                    _ => {
                        self.decoded(REPLACEMENT, out);
                        return;
                    }
                };
                self.utf8_need = need;
                self.utf8_cp = u32::from(cp);
                self.utf8_lo = lo;
                self.utf8_hi = hi;
            }
        }
    }

    fn decoded(&mut self, c: char, out: &mut dyn FnMut(CapturedLine<'_>)) {
        if self.alt_screen || is_c1(c) {
            return;
        }
        self.put_char(c, out);
    }

    fn control(&mut self, b: u8, out: &mut dyn FnMut(CapturedLine<'_>)) {
        if self.alt_screen {
            return;
        }
        match b {
            b'\n' => self.emit(out),
            b'\r' => self.line.col = 0,
            0x08 => self.line.col = self.line.col.saturating_sub(1),
            b'\t' => self.line.col = self.clamp_col((self.line.col / 8 + 1) * 8),
            _ => {}
        }
    }

    /// Cursor moves past the text stop at column 1024 (or the line's end).
    fn clamp_col(&self, col: usize) -> usize {
        col.min(self.line.len.max(MAX_PAD_COL - 1)).min(MAX_LINE)
    }

    fn csi_dispatch(&mut self, fin: u8) {
        let csi = self.csi;
        let p = &csi[..self.csi_len];
        let (private, params) = match p.first() {
            Some(&m @ b'<'..=b'?') => (Some(m), &p[1..]),
            _ => (None, p),
        };
        if params
            .iter()
            .any(|b| (0x20..=0x2f).contains(b) || (b'<'..=b'?').contains(b))
        {
            return; // intermediates or stray markers: nothing we apply
        }
        if self.alt_screen && !(private == Some(b'?') && (fin == b'h' || fin == b'l')) {
            return;
        }
        let first = || first_param(params);
        match (private, fin) {
            (None | Some(b'?'), b'K') => self.erase_in_line(first().unwrap_or(0)),
            (None, b'G' | b'`') => {
                let n = first().unwrap_or(1).max(1);
                self.line.col = self.clamp_col(n - 1);
            }
            (None, b'C' | b'a') => {
                let n = first().unwrap_or(1).max(1);
                self.line.col = self.clamp_col(self.line.col.saturating_add(n));
            }
            (None, b'D') => {
                let n = first().unwrap_or(1).max(1);
                self.line.col = self.line.col.saturating_sub(n);
            }
            (None, b's') if params.is_empty() => self.saved_col = self.line.col,
            (None, b'u') if params.is_empty() => {
                self.line.col = self.clamp_col(self.saved_col);
            }
            (Some(b'?'), b'h' | b'l') => {
                let enter = fin == b'h';
                for mode in params.split(|&b| b == b';') {
                    let Some(mode) = parse_num(mode) else {
                        continue;
                    };
                    if matches!(mode, 47 | 1047 | 1049) {
                        self.alternate_screen(enter, mode == 1049);
                    }
                }
            }
            _ => {}
        }
    }

    fn alternate_screen(&mut self, enter: bool, save_cursor: bool) {
        if enter && !self.alt_screen {
            self.alt_screen = true;
            if save_cursor {
                self.alt_saved_col = self.line.col;
            }
        } else if !enter && self.alt_screen {
            self.alt_screen = false;
            if save_cursor {
                self.line.col = self.clamp_col(self.alt_saved_col);
            }
        }
    }

    fn erase_in_line(&mut self, mode: usize) {
        let col = self.line.col;
        match mode {
            0 => {
                self.line.truncate_at(col);
            }
            1 | 2 => {
                if mode == 1 {
                    self.line.blank_through(col);
                } else {
                    self.line.clear();
                }
            }
            _ => {}
        }
    }

    /// Fill the gap between the end of the line and the cursor with spaces
    /// before writing; split the line if that would overflow it.
    fn pad_to_cursor(&mut self, out: &mut dyn FnMut(CapturedLine<'_>)) {
        if self.line.col > self.line.len {
            let pad = self.line.col - self.line.len;
            if self.line.bytes + pad >= MAX_LINE {
                self.split(out);
            } else {
                self.line.push_spaces(pad);
            }
        }
    }

    fn put_ascii(&mut self, run: &[u8], out: &mut dyn FnMut(CapturedLine<'_>)) {
        // Printable ASCII is valid UTF-8.
        let Ok(mut run) = std::str::from_utf8(run) else {
            return;
        };
        while !run.is_empty() {
            self.pad_to_cursor(out);
            let col = self.line.col;
            if col == self.line.len {
                let room = MAX_LINE - self.line.bytes;
                if room == 0 {
                    self.split(out);
                    continue;
                }
                let (piece, rest) = run.split_at(room.min(run.len()));
                if self.line.cells_mode {
                    self.line.cells.extend(piece.chars());
                } else {
                    self.line.text.push_str(piece);
                }
                self.line.len += piece.len();
                self.line.bytes += piece.len();
                self.line.col += piece.len();
                run = rest;
            } else {
                let n = (self.line.len - col).min(run.len());
                let (piece, rest) = run.split_at(n);
                self.line.overwrite_ascii(col, piece);
                self.line.col += n;
                run = rest;
            }
        }
    }

    /// Decode a segment of bytes >= 0x80 (in Ground, no sequence pending);
    /// returns the bytes consumed. An incomplete sequence at the end goes to
    /// the byte-wise decoder, which joins it with what follows.
    fn non_ascii(&mut self, mut seg: &[u8], out: &mut dyn FnMut(CapturedLine<'_>)) -> usize {
        let total = seg.len();
        while !seg.is_empty() {
            let (valid, bad) = match std::str::from_utf8(seg) {
                Ok(s) => (s, None),
                Err(e) => {
                    let v = e.valid_up_to();
                    (
                        std::str::from_utf8(&seg[..v]).unwrap_or(""),
                        Some(e.error_len()),
                    )
                }
            };
            if !valid.is_empty() && !self.alt_screen {
                self.put_str(valid, out);
            }
            seg = &seg[valid.len()..];
            match bad {
                None => {}
                Some(Some(len)) => {
                    self.decoded(REPLACEMENT, out);
                    seg = &seg[len.min(seg.len())..];
                }
                Some(None) => {
                    for &b in seg {
                        self.ground(b, out);
                    }
                    seg = &[];
                }
            }
        }
        total
    }

    /// Write valid non-ASCII text (C1 controls are dropped).
    fn put_str(&mut self, mut s: &str, out: &mut dyn FnMut(CapturedLine<'_>)) {
        while !s.is_empty() {
            // A C1 control writes nothing, so it moves nothing either (no
            // padding up to the cursor), as when it arrives byte by byte.
            let mut chars = s.chars();
            if chars.next().is_some_and(is_c1) {
                s = chars.as_str();
                continue;
            }
            self.pad_to_cursor(out);
            let col = self.line.col;
            if col == self.line.len && self.line.bytes < MAX_LINE {
                // Append as many whole characters as fit, up to a C1 control.
                let room = MAX_LINE - self.line.bytes;
                let mut end = 0;
                let mut n = 0;
                for (at, c) in s.char_indices() {
                    if is_c1(c) || at + c.len_utf8() > room {
                        break;
                    }
                    end = at + c.len_utf8();
                    n += 1;
                }
                if n > 0 {
                    let (piece, rest) = s.split_at(end);
                    if self.line.cells_mode {
                        self.line.cells.extend(piece.chars());
                    } else {
                        self.line.text.push_str(piece);
                    }
                    self.line.len += n;
                    self.line.bytes += end;
                    self.line.col += n;
                    s = rest;
                    continue;
                }
            }
            let mut chars = s.chars();
            if let Some(c) = chars.next()
                && !is_c1(c)
            {
                self.put_char(c, out);
            }
            s = chars.as_str();
        }
    }

    fn put_char(&mut self, c: char, out: &mut dyn FnMut(CapturedLine<'_>)) {
        let mut buf = [0u8; 4];
        let s: &str = c.encode_utf8(&mut buf);
        if c.is_ascii() {
            self.put_ascii(s.as_bytes(), out);
            return;
        }
        self.pad_to_cursor(out);
        let col = self.line.col;
        let grow = if col == self.line.len {
            s.len()
        } else {
            self.line.make_cells();
            s.len().saturating_sub(self.line.cells[col].len_utf8())
        };
        if self.line.bytes + grow > MAX_LINE {
            self.split(out);
        }
        let col = self.line.col;
        if col == self.line.len {
            if self.line.cells_mode {
                self.line.cells.push(c);
            } else {
                self.line.text.push(c);
            }
            self.line.len += 1;
            self.line.bytes += s.len();
        } else {
            self.line.make_cells();
            let old = std::mem::replace(&mut self.line.cells[col], c);
            self.line.bytes = self.line.bytes - old.len_utf8() + s.len();
        }
        self.line.col += 1;
    }

    /// The line is full: emit it and continue on a new one at column 0.
    fn split(&mut self, out: &mut dyn FnMut(CapturedLine<'_>)) {
        self.emit(out);
    }

    /// Emit the current line (at `\n`, or when splitting a full one) and
    /// start a new one at column 0.
    fn emit(&mut self, out: &mut dyn FnMut(CapturedLine<'_>)) {
        let text: &str = if self.line.cells_mode {
            self.scratch.clear();
            self.scratch.extend(&self.line.cells);
            &self.scratch
        } else {
            &self.line.text
        };
        out(CapturedLine { text });
        self.line.clear();
        self.line.col = 0;
        if self.scratch.capacity() > MAX_LINE {
            self.scratch = String::new();
        }
    }

    #[cfg(test)]
    fn buffered_bytes(&self) -> usize {
        self.line.text.len() + self.line.cells.len() * 4 + self.scratch.len()
    }
}

fn is_c1(c: char) -> bool {
    ('\u{80}'..'\u{a0}').contains(&c)
}

fn parse_num(s: &[u8]) -> Option<usize> {
    let s = s.split(|&b| b == b':').next().unwrap_or(&[]);
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        s.iter()
            .fold(0usize, |n, &d| (n * 10 + usize::from(d - b'0')).min(65_535)),
    )
}

fn first_param(params: &[u8]) -> Option<usize> {
    parse_num(params.split(|&b| b == b';').next().unwrap_or(&[]))
}

impl Default for LineCapture {
    fn default() -> Self {
        LineCapture::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn run(capture: &mut LineCapture, chunks: &[&[u8]]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut out = |l: CapturedLine<'_>| lines.push(l.text.to_owned());
        for chunk in chunks {
            capture.feed(chunk, &mut out);
        }
        capture.flush(&mut out);
        lines
    }

    /// Plain capture of `input` fed in one piece, then flushed.
    fn plain(input: &[u8]) -> Vec<String> {
        run(&mut LineCapture::new(), &[input])
    }

    #[test]
    fn newline_and_crlf_end_lines() {
        assert_eq!(plain(b"one\ntwo\r\nthree\n"), ["one", "two", "three"]);
        assert_eq!(plain(b"\n\r\n"), ["", ""]);
        assert_eq!(plain(b"tail without newline"), ["tail without newline"]);
    }

    #[test]
    fn carriage_return_overwrites() {
        assert_eq!(plain(b"progress 10%\rprogress 100%\n"), ["progress 100%"]);
        assert_eq!(plain(b"hello world\rHELLO\n"), ["HELLO world"]);
        assert_eq!(plain(b"a\rb\rc\r\n"), ["c"]);
    }

    #[test]
    fn carriage_return_overwrites_non_ascii() {
        assert_eq!(plain("héllo wörld\rHÉ\n".as_bytes()), ["HÉllo wörld"]);
        assert_eq!(plain("abc\rä\n".as_bytes()), ["äbc"]);
        assert_eq!(plain("äöü\rx\n".as_bytes()), ["xöü"]);
    }

    #[test]
    fn backspace_moves_left() {
        assert_eq!(plain(b"abc\x08d\n"), ["abd"]);
        assert_eq!(plain(b"ab\x08\x08\x08c\n"), ["cb"]);
        assert_eq!(plain(b"ab\x08\n"), ["ab"]);
    }

    #[test]
    fn tab_expands_to_multiple_of_eight() {
        assert_eq!(plain(b"a\tb\n"), ["a       b"]);
        assert_eq!(plain(b"12345678\tx\n"), ["12345678        x"]);
        assert_eq!(plain(b"\tx\n"), ["        x"]);
        // A trailing tab writes nothing.
        assert_eq!(plain(b"a\t\n"), ["a"]);
        // A tab over existing text moves without erasing.
        assert_eq!(plain(b"abcdefghij\r\tX\n"), ["abcdefghXj"]);
    }

    #[test]
    fn erase_in_line_modes() {
        assert_eq!(plain(b"hello\r\x1b[Kbye\n"), ["bye"]);
        assert_eq!(plain(b"hello world\x1b[6D\x1b[K\n"), ["hello"]);
        assert_eq!(plain(b"hello world\x1b[6D\x1b[0K\n"), ["hello"]);
        assert_eq!(plain(b"hello world\x1b[6D\x1b[1K\n"), ["      world"]);
        assert_eq!(plain(b"hello\x1b[2Kx\n"), ["     x"]);
        assert_eq!(plain(b"progress 50%\r\x1b[2Kdone\n"), ["done"]);
        assert_eq!(plain("héllo wörld\x1b[6D\x1b[K\n".as_bytes()), ["héllo"]);
        assert_eq!(
            plain("héllo wörld\x1b[6D\x1b[1K\n".as_bytes()),
            ["      wörld"]
        );
    }

    #[test]
    fn cursor_column_moves() {
        assert_eq!(plain(b"abcdef\x1b[3GX\n"), ["abXdef"]);
        assert_eq!(plain(b"abcdef\x1b[GX\n"), ["Xbcdef"]);
        assert_eq!(plain(b"ab\x1b[3Cc\n"), ["ab   c"]);
        assert_eq!(plain(b"ab\x1b[Cc\n"), ["ab c"]);
        assert_eq!(plain(b"abcd\x1b[2DX\n"), ["abXd"]);
        assert_eq!(plain(b"abcd\x1b[99DX\n"), ["Xbcd"]);
        assert_eq!(plain(b"abcd\x1b7xy\x1b8Z\n"), ["abcdZy"]);
        assert_eq!(plain(b"abcd\x1b[sxy\x1b[uZ\n"), ["abcdZy"]);
        // Moves past the text stop at column 1024 (index 1023).
        let far = plain(b"\x1b[99999Gx\n");
        assert_eq!(far, [format!("{}x", " ".repeat(1023))]);
        let far = plain(b"\x1b[99999C\x1b[99999Cx\n");
        assert_eq!(far, [format!("{}x", " ".repeat(1023))]);
        // ... unless the text is longer.
        let long = "z".repeat(3000);
        let far = plain(format!("{long}\x1b[2000D\x1b[99999Cx\n").as_bytes());
        assert_eq!(far, [format!("{long}x")]);
    }

    #[test]
    fn escape_sequences_are_removed() {
        assert_eq!(
            plain(b"\x1b[1;31mred\x1b[0m \x1b[38;2;1;2;3mrgb\x1b[m\n"),
            ["red rgb"]
        );
        assert_eq!(plain(b"a\x1b]0;title\x07b\n"), ["ab"]);
        assert_eq!(
            plain(b"a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b\n"),
            ["alinkb"]
        );
        assert_eq!(plain(b"a\x1bPq#0;2;0;0;0\x1b\\b\n"), ["ab"]);
        assert_eq!(
            plain(b"a\x1b_apc data\x1b\\b\x1b^pm\x1b\\c\x1bXsos\x1b\\d\n"),
            ["abcd"]
        );
        assert_eq!(
            plain(b"a\x1b(Bb\x1b)0c\x1b#8d\x1b=e\x1b>f\x1bMg\n"),
            ["abcdefg"]
        );
        assert_eq!(
            plain(b"a\x1b[?25l\x1b[?2004hb\x1b[2J\x1b[H\x1b[5;5Hc\x1b[>4;1md\n"),
            ["abcd"]
        );
        // An ESC inside an OSC ends it and starts a new sequence.
        assert_eq!(plain(b"a\x1b]0;t\x1b[31mb\n"), ["ab"]);
        // CAN and SUB abort a sequence.
        assert_eq!(plain(b"a\x1b[12\x18b\x1b]0;x\x1ac\n"), ["abc"]);
        // Controls inside a CSI are executed.
        assert_eq!(plain(b"a\x1b[3\n1mb\n"), ["a", "b"]);
    }

    #[test]
    fn other_controls_are_dropped() {
        assert_eq!(plain(b"a\x00\x01\x07b\x7fc\x0b\x0cd\x0e\n"), ["abcd"]);
        // C1 controls encoded in UTF-8.
        assert_eq!(plain("a\u{85}b\u{9b}c\n".as_bytes()), ["abc"]);
        // A dropped C1 control past the text does not pad up to the cursor
        // (found by the chunking proptest: whole and bytewise differed).
        assert_eq!(plain("a\x1b[5`\u{9f}\n".as_bytes()), ["a"]);
    }

    #[test]
    fn unterminated_strings_are_bounded_and_end_at_the_terminator() {
        let mut capture = LineCapture::new();
        let mut lines = Vec::new();
        let mut out = |l: CapturedLine<'_>| lines.push(l.text.to_owned());
        capture.feed(b"before\x1b]0;", &mut out);
        let junk = vec![b'x'; 1 << 20];
        for _ in 0..8 {
            capture.feed(&junk, &mut out);
            assert!(
                capture.buffered_bytes() < 64,
                "OSC content must not be buffered"
            );
        }
        capture.feed(b"\x07after\n", &mut out);
        capture.feed(b"\x1b_", &mut out);
        capture.feed(&junk, &mut out);
        capture.feed(b"\x1b\\apc done\n", &mut out);
        let long_csi = [b"\x1b[".as_slice(), &vec![b'1'; 100_000], b"mcsi done\n"].concat();
        capture.feed(&long_csi, &mut out);
        assert!(capture.buffered_bytes() < 64);
        assert_eq!(lines, ["beforeafter", "apc done", "csi done"]);
    }

    #[test]
    fn alternate_screen_is_not_captured() {
        assert_eq!(
            plain(b"before\n\x1b[?1049hjunk\nmore junk\r\n\x1b[?1049lafter\n"),
            ["before", "after"]
        );
        assert_eq!(plain(b"a\n\x1b[?47hjunk\n\x1b[?47lb\n"), ["a", "b"]);
        assert_eq!(plain(b"a\n\x1b[?1;1047hjunk\n\x1b[?1047;1lb\n"), ["a", "b"]);
        // The line in progress continues; 1049 restores the cursor column.
        assert_eq!(plain(b"abc\x1b[?1049hxyz\r\x1b[?1049ldef\n"), ["abcdef"]);
        // Text in the alternate screen never ends up in a line, even unterminated.
        assert_eq!(
            plain("\x1b[?1049hü\x1b[31mtop\x1b[2K".as_bytes()),
            Vec::<String>::new()
        );
    }

    #[test]
    fn invalid_utf8_becomes_replacement() {
        assert_eq!(plain(b"a\xffb\n"), ["a\u{fffd}b"]);
        assert_eq!(plain(b"a\xe2\x82b\n"), ["a\u{fffd}b"]);
        assert_eq!(plain(b"\xed\xa0\x80\n"), ["\u{fffd}\u{fffd}\u{fffd}"]);
        assert_eq!(plain(b"\xc0\xaf\n"), ["\u{fffd}\u{fffd}"]);
        assert_eq!(plain(b"\xe2\x82\n"), ["\u{fffd}"]);
        assert_eq!(plain(b"\xe2\x82\x1b[31mx\n"), ["\u{fffd}x"]);
        // Incomplete at the end: flushed as one replacement.
        assert_eq!(plain(b"ok\xf0\x9f"), ["ok\u{fffd}"]);
    }

    #[test]
    fn utf8_split_across_feeds() {
        let text = "héllo → 世界 🎉\n";
        let bytes = text.as_bytes();
        let chunks: Vec<&[u8]> = bytes.chunks(1).collect();
        let lines = run(&mut LineCapture::new(), &chunks);
        assert_eq!(lines, ["héllo → 世界 🎉"]);
    }

    #[test]
    fn long_lines_are_split() {
        let input = [vec![b'x'; 200 * 1024], b"\n".to_vec()].concat();
        let lines = plain(&input);
        let lens: Vec<usize> = lines.iter().map(String::len).collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, MAX_LINE, 8192]);
        assert!(lines.iter().all(|l| l.bytes().all(|b| b == b'x')));

        // Multi-byte characters are never cut in half.
        let input = format!("{}\n", "é".repeat(40_000));
        let lines = plain(input.as_bytes());
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].chars().count(), MAX_LINE / 2);
        assert_eq!(lines[1].chars().count(), 40_000 - MAX_LINE / 2);

        // Overwriting with wider characters splits too: a full line is
        // emitted and the character starts the next one.
        let input = [
            vec![b'y'; MAX_LINE],
            b"\r".to_vec(),
            "é".repeat(10).into_bytes(),
        ]
        .concat();
        let lines = plain(&input);
        assert_eq!(lines, ["y".repeat(MAX_LINE), "é".repeat(10)]);
        let input = [
            vec![b'y'; MAX_LINE - 1],
            b"\r".to_vec(),
            "é".repeat(10).into_bytes(),
        ]
        .concat();
        let lines = plain(&input);
        assert_eq!(
            lines,
            [format!("é{}", "y".repeat(MAX_LINE - 2)), "é".repeat(9)]
        );
    }

    #[test]
    fn flush_and_partial() {
        let mut capture = LineCapture::new();
        let mut lines = Vec::new();
        let mut out = |l: CapturedLine<'_>| lines.push(l.text.to_owned());
        assert!(!capture.has_partial());
        capture.feed(b"done\npartial", &mut out);
        assert!(capture.has_partial());
        capture.feed(b"\r\x1b[K", &mut out);
        assert!(!capture.has_partial(), "an erased line is not pending");
        capture.feed(b"last words\xe2", &mut out);
        capture.flush(&mut out);
        assert!(!capture.has_partial());
        // Flushing resets the parser: a half escape does not eat the next run.
        capture.feed(b"\x1b]0;never ended", &mut out);
        capture.flush(&mut out);
        capture.feed(b"next run\n", &mut out);
        capture.flush(&mut out);
        assert_eq!(lines, ["done", "last words\u{fffd}", "next run"]);
    }

    /// Fragments that exercise every state of the parser.
    fn fragment() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => "[a-z ]{1,12}".prop_map(String::into_bytes),
            2 => prop::collection::vec(any::<u8>(), 1..8),
            1 => Just(b"\n".to_vec()),
            1 => Just(b"\r\n".to_vec()),
            1 => Just(b"\r".to_vec()),
            1 => Just(b"\x08".to_vec()),
            1 => Just(b"\t".to_vec()),
            1 => Just(b"\x1b".to_vec()),
            1 => Just(b"\x1b[".to_vec()),
            1 => Just(b"\x1b]0;".to_vec()),
            1 => Just(b"\x07".to_vec()),
            1 => Just(b"\x1b\\".to_vec()),
            1 => Just(b"\x1bP".to_vec()),
            1 => Just(b"\x18".to_vec()),
            1 => (0u16..3000, prop::sample::select(b"mKGCDsu`a".to_vec()))
                .prop_map(|(n, c)| format!("\x1b[{n}{}", c as char).into_bytes()),
            1 => prop::sample::select(vec!["\x1b[?1049h", "\x1b[?1049l", "\x1b[?47h", "\x1b[?47l"])
                .prop_map(|s| s.as_bytes().to_vec()),
            1 => Just("é世🎉".as_bytes().to_vec()),
            1 => Just(b"\xe2\x82".to_vec()),
        ]
    }

    fn input_and_cuts() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
        prop::collection::vec(fragment(), 0..80).prop_flat_map(|frags| {
            let input = frags.concat();
            let len = input.len();
            (Just(input), prop::collection::vec(0..=len, 0..10))
        })
    }

    fn chunked<'a>(input: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts = cuts.to_vec();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(&input[start..cut]);
            start = cut;
        }
        chunks.push(&input[start..]);
        chunks
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn output_does_not_depend_on_chunking((input, cuts) in input_and_cuts()) {
            let whole = run(&mut LineCapture::new(), &[&input]);
            let pieces = run(&mut LineCapture::new(), &chunked(&input, &cuts));
            prop_assert_eq!(&whole, &pieces);
            let bytewise: Vec<&[u8]> = input.chunks(1).collect();
            prop_assert_eq!(&whole, &run(&mut LineCapture::new(), &bytewise));
        }

        #[test]
        fn lines_are_clean((input, _) in input_and_cuts()) {
            for text in run(&mut LineCapture::new(), &[&input]) {
                prop_assert!(text.len() <= MAX_LINE);
                prop_assert!(!text.chars().any(|c| c.is_control()), "control in {:?}", text);
            }
        }

        #[test]
        fn plain_text_matches_lossy_utf8(input in prop::collection::vec(
            prop_oneof![8 => 0x20u8..0x7f, 4 => 0x80u8..=0xff, 1 => Just(b'\n')], 0..300)) {
            let decoded = String::from_utf8_lossy(&input);
            let decoded: String = decoded.chars().filter(|c| !('\u{80}'..'\u{a0}').contains(c)).collect();
            let mut expected: Vec<String> = decoded.split('\n').map(str::to_owned).collect();
            if expected.last().is_some_and(String::is_empty) {
                expected.pop();
            }
            prop_assert_eq!(plain(&input), expected);
        }

        #[test]
        fn memory_stays_bounded(chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..4096), 1..20)) {
            let mut capture = LineCapture::new();
            let mut sink = |_: CapturedLine<'_>| {};
            for chunk in &chunks {
                capture.feed(chunk, &mut sink);
                prop_assert!(capture.buffered_bytes() <= 5 * MAX_LINE);
            }
        }
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_without_newlines() {
        let mut capture = LineCapture::new();
        let mut lines = 0usize;
        let mut sink = |l: CapturedLine<'_>| {
            assert!(l.text.len() <= MAX_LINE);
            lines += 1;
        };
        let chunk: Vec<u8> = b"\x1b[31mab\xffc\x1b[0m".repeat(4096);
        for _ in 0..64 {
            capture.feed(&chunk, &mut sink);
            assert!(capture.buffered_bytes() <= MAX_LINE + 8);
        }
        assert!(lines > 0);
    }
}
