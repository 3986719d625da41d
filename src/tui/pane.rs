//! A process's terminal drawn into a ratatui buffer, and reading its lines
//! (scrollback included) as text for search and copy.
//!
//! Lines are numbered absolutely: 0 is the oldest scrollback line, and the
//! live screen's row `r` is line `scrollback_len + r`. With the view scrolled
//! `offset` lines up, screen row `r` shows line `scrollback_len - offset + r`.

use ratatui::buffer::Buffer;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};

use super::PaneSource;
use super::theme::Theme;

/// A position in a process's output: absolute line, column.
pub(crate) type Pos = (usize, u16);

/// A search match: line, first column, end column (exclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Match {
    pub line: usize,
    pub start: u16,
    pub end: u16,
}

/// A case-insensitive (unless the query has an uppercase letter) literal matcher.
pub(crate) struct Matcher {
    needle: Vec<char>,
    fold: bool,
}

impl Matcher {
    pub fn new(query: &str) -> Option<Matcher> {
        if query.is_empty() {
            return None;
        }
        let fold = !query.chars().any(char::is_uppercase);
        let needle = query
            .chars()
            .map(|c| if fold { lower(c) } else { c })
            .collect();
        Some(Matcher { needle, fold })
    }

    /// Whether `s` contains the query (the list filter, merged lines).
    pub fn matches_str(&self, s: &str) -> bool {
        let hay: Vec<char> = s
            .chars()
            .map(|c| if self.fold { lower(c) } else { c })
            .collect();
        hay.windows(self.needle.len())
            .any(|w| w == self.needle.as_slice())
    }

    /// The column ranges of the matches in a line, left to right.
    pub fn find(&self, line: &LineText) -> Vec<(u16, u16)> {
        let n = self.needle.len();
        let hay = &line.chars;
        let mut out = Vec::new();
        if n == 0 || hay.len() < n {
            return out;
        }
        let mut i = 0;
        while i + n <= hay.len() {
            let hit = (0..n).all(|k| {
                let c = hay[i + k];
                (if self.fold { lower(c) } else { c }) == self.needle[k]
            });
            if hit {
                let start = line.cols[i];
                let last = i + n - 1;
                let end = line.cols[last] + line.widths[last];
                out.push((start, end));
                i += n;
            } else {
                i += 1;
            }
        }
        out
    }
}

fn lower(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

/// One screen row as text, with the column of each character.
#[derive(Clone, Debug, Default)]
pub(crate) struct LineText {
    pub chars: Vec<char>,
    pub cols: Vec<u16>,
    pub widths: Vec<u16>,
    /// The row continues on the next one (soft wrap).
    pub wrapped: bool,
}

pub(crate) fn row_text(screen: &vt100::Screen, row: u16) -> LineText {
    let (_, cols) = screen.size();
    let mut t = LineText {
        wrapped: screen.row_wrapped(row),
        ..LineText::default()
    };
    for col in 0..cols.get() {
        let Some(cell) = screen.cell(row, col) else {
            break;
        };
        if cell.is_wide_continuation() {
            continue;
        }
        let w = if cell.is_wide() { 2 } else { 1 };
        let s = cell.contents();
        if s.is_empty() {
            t.chars.push(' ');
            t.cols.push(col);
            t.widths.push(w);
        } else {
            // a cell may hold a base character plus combining marks
            for (k, c) in s.chars().enumerate() {
                t.chars.push(c);
                t.cols.push(col);
                t.widths.push(if k == 0 { w } else { 0 });
            }
        }
    }
    t
}

impl LineText {
    /// The text between columns `from` and `to` (inclusive), right-trimmed.
    pub fn slice(&self, from: u16, to: u16) -> String {
        let s: String = self
            .chars
            .iter()
            .zip(&self.cols)
            .filter(|(_, c)| **c >= from && **c <= to)
            .map(|(ch, _)| *ch)
            .collect();
        s.trim_end().to_string()
    }
}

/// Facts about a process's terminal that the view math needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ScreenInfo {
    pub rows: u16,
    pub cols: u16,
    pub cursor_row: u16,
    pub scrollback: usize,
}

pub(crate) fn screen_info(src: &dyn PaneSource, name: &str) -> Option<ScreenInfo> {
    let mut out = None;
    let scrollback = src.scrollback_len(name);
    src.with_screen(name, 0, &mut |s| {
        let (rows, cols) = s.size();
        out = Some(ScreenInfo {
            rows: rows.get(),
            cols: cols.get(),
            cursor_row: s.cursor_position().0,
            scrollback,
        });
    });
    out
}

/// Which screen row is drawn at the top of a pane `height` rows tall: 0
/// unless the screen is taller than the pane (another client set a larger
/// size), then the cursor row is kept visible in the live view and the
/// bottom of the view is shown when scrolled.
pub(crate) fn row_shift(info: &ScreenInfo, height: u16, offset: usize) -> u16 {
    if info.rows <= height {
        0
    } else if offset == 0 {
        (info.cursor_row + 1)
            .saturating_sub(height)
            .min(info.rows - height)
    } else {
        info.rows - height
    }
}

/// Reads lines `[from, to)` (absolute numbers) and calls `f` for each.
pub(crate) fn for_lines(
    src: &dyn PaneSource,
    name: &str,
    info: &ScreenInfo,
    from: usize,
    to: usize,
    f: &mut dyn FnMut(usize, LineText),
) {
    let total = info.scrollback + usize::from(info.rows);
    let to = to.min(total);
    let mut line = from;
    while line < to {
        let offset = info.scrollback.saturating_sub(line);
        let first = info.scrollback - offset;
        let mut next = line;
        src.with_screen(name, offset, &mut |s| {
            let rows = usize::from(s.size().0.get());
            while next < to && next - first < rows {
                let row = u16::try_from(next - first).unwrap_or(u16::MAX);
                f(next, row_text(s, row));
                next += 1;
            }
        });
        if next == line {
            break; // the screen went away
        }
        line = next;
    }
}

/// How to decorate the drawn screen.
pub(crate) struct Decor<'a> {
    /// Absolute line of screen row 0 in this view.
    pub first_line: usize,
    pub matcher: Option<&'a Matcher>,
    pub current: Option<Match>,
    /// Inclusive selection, ordered.
    pub selection: Option<(Pos, Pos)>,
    pub copy_cursor: Option<Pos>,
    pub theme: Theme,
}

fn color(c: vt100::Color) -> Color {
    match c {
        vt100::Color::Default => Color::Reset,
        vt100::Color::Idx(i) => match i {
            0 => Color::Black,
            1 => Color::Red,
            2 => Color::Green,
            3 => Color::Yellow,
            4 => Color::Blue,
            5 => Color::Magenta,
            6 => Color::Cyan,
            7 => Color::Gray,
            8 => Color::DarkGray,
            9 => Color::LightRed,
            10 => Color::LightGreen,
            11 => Color::LightYellow,
            12 => Color::LightBlue,
            13 => Color::LightMagenta,
            14 => Color::LightCyan,
            15 => Color::White,
            i => Color::Indexed(i),
        },
        vt100::Color::Rgb(r, g, b) => Color::Rgb(r, g, b),
    }
}

/// Draws `screen` (already scrolled as wanted) into `area`, starting at screen
/// row `shift`. Returns the terminal cursor's position in the buffer when it
/// is visible in the area.
pub(crate) fn render_screen(
    screen: &vt100::Screen,
    area: Rect,
    buf: &mut Buffer,
    shift: u16,
    decor: &Decor<'_>,
) -> Option<Position> {
    let (rows, cols) = screen.size();
    let (rows, cols) = (rows.get(), cols.get());
    for r in 0..area.height {
        let sr = r + shift;
        if sr >= rows {
            break;
        }
        let y = area.y + r;
        let mut c = 0;
        while c < area.width.min(cols) {
            let Some(cell) = screen.cell(sr, c) else {
                break;
            };
            if cell.is_wide_continuation() {
                c += 1;
                continue;
            }
            let wide = cell.is_wide();
            let bc = &mut buf[(area.x + c, y)];
            if wide && c + 1 >= area.width {
                bc.set_symbol(" ");
                c += 1;
                continue;
            }
            let s = cell.contents();
            if s.is_empty() && is_plain(cell) {
                // Most of a pane is blank: no symbol, no style to convert.
                bc.reset();
                c += 1;
                continue;
            }
            bc.set_symbol(if s.is_empty() { " " } else { s });
            let mut m = Modifier::empty();
            if cell.bold() {
                m |= Modifier::BOLD;
            }
            if cell.dim() {
                m |= Modifier::DIM;
            }
            if cell.italic() {
                m |= Modifier::ITALIC;
            }
            if cell.underline() {
                m |= Modifier::UNDERLINED;
            }
            if cell.inverse() {
                m |= Modifier::REVERSED;
            }
            bc.set_style(
                Style::new()
                    .fg(color(cell.fgcolor()))
                    .bg(color(cell.bgcolor()))
                    .add_modifier(m),
            );
            c += if wide { 2 } else { 1 };
        }
        let line = decor.first_line + usize::from(sr);
        if decor.matcher.is_some() || decor.selection.is_some() || decor.copy_cursor.is_some() {
            decorate_row(
                screen,
                sr,
                line,
                Rect::new(area.x, y, area.width.min(cols), 1),
                buf,
                decor,
            );
        }
    }
    let (cr, cc) = screen.cursor_position();
    if screen.hide_cursor() || screen.scrollback() > 0 || cr < shift {
        return None;
    }
    let (r, c) = (cr - shift, cc);
    (r < area.height && c < area.width).then(|| Position::new(area.x + c, area.y + r))
}

/// A cell with the terminal's default colours and no attributes.
fn is_plain(cell: &vt100::Cell) -> bool {
    cell.fgcolor() == vt100::Color::Default
        && cell.bgcolor() == vt100::Color::Default
        && !(cell.bold() || cell.dim() || cell.italic() || cell.underline() || cell.inverse())
}

fn decorate_row(
    screen: &vt100::Screen,
    row: u16,
    line: usize,
    area: Rect,
    buf: &mut Buffer,
    decor: &Decor<'_>,
) {
    let mut paint = |from: u16, to: u16, style: Style| {
        for c in from..to.min(area.width) {
            buf[(area.x + c, area.y)].set_style(style);
        }
    };
    if let Some((a, b)) = decor.selection
        && line >= a.0
        && line <= b.0
    {
        let from = if line == a.0 { a.1 } else { 0 };
        let to = if line == b.0 {
            b.1.saturating_add(1)
        } else {
            area.width
        };
        paint(from, to, decor.theme.selection());
    }
    if let Some(m) = decor.matcher {
        let text = row_text(screen, row);
        for (s, e) in m.find(&text) {
            let current = decor
                .current
                .is_some_and(|c| c.line == line && c.start == s);
            let style = if current {
                decor.theme.search_current()
            } else {
                decor.theme.search_match()
            };
            paint(s, e, style);
        }
    }
    if let Some(p) = decor.copy_cursor
        && p.0 == line
    {
        paint(p.1, p.1 + 1, decor.theme.copy_cursor());
    }
}

/// Extracts the text from `a` to `b` (inclusive, ordered): soft-wrapped rows
/// are joined, other rows end with a newline, trailing blanks are dropped.
pub(crate) fn extract(
    src: &dyn PaneSource,
    name: &str,
    info: &ScreenInfo,
    a: Pos,
    b: Pos,
) -> String {
    let mut out = String::new();
    for_lines(src, name, info, a.0, b.0 + 1, &mut |line, text| {
        let from = if line == a.0 { a.1 } else { 0 };
        let to = if line == b.0 { b.1 } else { u16::MAX };
        out.push_str(&text.slice(from, to));
        if line != b.0 && !text.wrapped {
            out.push('\n');
        }
    });
    out
}
