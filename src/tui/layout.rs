//! Pure layout math: where the header, list, panes and footer go for a given
//! terminal size and view. No state, no IO; the app, the renderer and the
//! mouse hit-testing all use the same numbers.

use ratatui::layout::Rect;

/// Below this size mew draws "terminal too small" instead of its layout.
pub const MIN_COLS: u16 = 40;
pub const MIN_ROWS: u16 = 10;
/// A grid tile (border included) is never smaller than this.
pub const TILE_MIN_W: u16 = 14;
pub const TILE_MIN_H: u16 = 4;

/// Which of the three layouts is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// Process list on the left, the selected process's terminal on the right.
    List,
    /// Tiles of several processes.
    Grid,
    /// One process over the whole screen (one status line kept at the bottom).
    Zoom,
}

/// One terminal pane: its frame and the cells the terminal gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaneRect {
    pub name: String,
    pub outer: Rect,
    pub inner: Rect,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScreenLayout {
    pub area: Rect,
    pub too_small: bool,
    pub header: Option<Rect>,
    pub list: Option<Rect>,
    /// Everything between header and footer (grid area, or list + main).
    pub body: Rect,
    pub panes: Vec<PaneRect>,
    pub footer: Rect,
    /// Grid: processes that did not fit.
    pub hidden: usize,
}

/// The width of the process list for a terminal `cols` wide whose longest
/// process name is `longest` characters.
pub fn list_width(cols: u16, longest: usize) -> u16 {
    // glyph, space, name, space, "↻99 12m34s ✓" and two border columns
    let want = u16::try_from(longest)
        .unwrap_or(u16::MAX)
        .saturating_add(17);
    let max = (cols * 2 / 5).max(18);
    want.clamp(18, max.min(40))
}

/// Splits `total` into `parts` near-equal lengths (the first ones get the remainder).
pub fn split_even(total: u16, parts: u16) -> Vec<(u16, u16)> {
    if parts == 0 {
        return Vec::new();
    }
    let base = total / parts;
    let extra = total % parts;
    let mut out = Vec::with_capacity(usize::from(parts));
    let mut pos = 0;
    for i in 0..parts {
        let len = base + u16::from(i < extra);
        out.push((pos, len));
        pos += len;
    }
    out
}

/// The (columns, rows) of a grid for `n` tiles in `w`×`h` cells, or `None`
/// when not even one tile fits. Picks the shape whose tiles are the most
/// terminal-like (a tile is scored by `min(width, 3 × height)`), preferring
/// fewer empty slots and then fewer columns.
pub fn grid_dims(n: usize, w: u16, h: u16) -> Option<(u16, u16)> {
    if n == 0 || w < TILE_MIN_W || h < TILE_MIN_H {
        return None;
    }
    let n = u16::try_from(n).unwrap_or(u16::MAX);
    // (score, fewer empty slots, fewer columns) → (columns, rows)
    type Ranked = ((u16, u16, i32), (u16, u16));
    let mut best: Option<Ranked> = None;
    for cols in 1..=n {
        let rows = n.div_ceil(cols);
        let tw = w / cols;
        let th = h / rows;
        if tw < TILE_MIN_W || th < TILE_MIN_H {
            continue;
        }
        let score = tw.min(th.saturating_mul(3));
        let empty = cols * rows - n;
        // larger score, then fewer empty slots, then fewer columns
        let key = (score, u16::MAX - empty, -i32::from(cols));
        if best.is_none_or(|(k, _)| key > k) {
            best = Some((key, (cols, rows)));
        }
    }
    best.map(|(_, d)| d)
}

/// The tile rectangles for up to `n` tiles in `area`, row-major. When all `n`
/// do not fit at the minimum tile size, as many as fit are laid out (the
/// caller reports the rest as hidden). A last row with fewer tiles shares the
/// full width, so the tiles always cover the area exactly.
pub fn grid_tiles(n: usize, area: Rect) -> Vec<Rect> {
    let mut shown = n;
    let dims = loop {
        if shown == 0 {
            return Vec::new();
        }
        if let Some(d) = grid_dims(shown, area.width, area.height) {
            break d;
        }
        shown -= 1;
    };
    let (cols, rows) = dims;
    let row_spans = split_even(area.height, rows);
    let mut tiles = Vec::with_capacity(shown);
    let mut left = shown as u16;
    for (y, hgt) in row_spans {
        let in_row = left.min(cols);
        if in_row == 0 {
            break;
        }
        for (x, wid) in split_even(area.width, in_row) {
            tiles.push(Rect::new(area.x + x, area.y + y, wid, hgt));
        }
        left -= in_row;
    }
    tiles
}

/// A rectangle shrunk by one cell on every side (the inside of a border).
pub fn inner(r: Rect) -> Rect {
    Rect::new(
        r.x.saturating_add(1),
        r.y.saturating_add(1),
        r.width.saturating_sub(2),
        r.height.saturating_sub(2),
    )
}

/// The whole screen for `view`. `panes` are the process names to show:
/// the selected one for `List`/`Zoom`, the grid set for `Grid`.
pub fn screen_layout(area: Rect, view: View, list_w: u16, panes: &[String]) -> ScreenLayout {
    let mut out = ScreenLayout {
        area,
        too_small: area.width < MIN_COLS || area.height < MIN_ROWS,
        header: None,
        list: None,
        body: area,
        panes: Vec::new(),
        footer: Rect::new(area.x, area.bottom().saturating_sub(1), area.width, 1),
        hidden: 0,
    };
    if out.too_small {
        return out;
    }
    match view {
        View::Zoom => {
            out.body = Rect::new(area.x, area.y, area.width, area.height - 1);
            if let Some(name) = panes.first() {
                out.panes.push(PaneRect {
                    name: name.clone(),
                    outer: out.body,
                    inner: out.body,
                });
            }
        }
        View::List | View::Grid => {
            out.header = Some(Rect::new(area.x, area.y, area.width, 1));
            out.body = Rect::new(area.x, area.y + 1, area.width, area.height - 2);
            if view == View::List {
                let lw = list_w.min(area.width / 2);
                let list = Rect::new(out.body.x, out.body.y, lw, out.body.height);
                let main = Rect::new(
                    out.body.x + lw,
                    out.body.y,
                    out.body.width - lw,
                    out.body.height,
                );
                out.list = Some(list);
                if let Some(name) = panes.first() {
                    out.panes.push(PaneRect {
                        name: name.clone(),
                        outer: main,
                        inner: inner(main),
                    });
                }
            } else {
                let tiles = grid_tiles(panes.len(), out.body);
                out.hidden = panes.len() - tiles.len();
                for (name, t) in panes.iter().zip(tiles) {
                    out.panes.push(PaneRect {
                        name: name.clone(),
                        outer: t,
                        inner: inner(t),
                    });
                }
            }
        }
    }
    out
}

/// The first list item shown so that item `selected` is visible in `height` rows.
pub fn list_scroll(selected: usize, height: u16) -> usize {
    let h = usize::from(height.max(1));
    (selected + 1).saturating_sub(h)
}

/// A rectangle of at most `w`×`h` centred in `area`.
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZES: &[(u16, u16)] = &[
        (40, 8),
        (80, 22),
        (100, 30),
        (120, 40),
        (200, 60),
        (300, 80),
    ];

    #[test]
    fn grids_cover_the_area_without_overlap() {
        for &(w, h) in SIZES {
            let area = Rect::new(3, 1, w, h);
            for n in 1..=12 {
                let tiles = grid_tiles(n, area);
                assert!(!tiles.is_empty(), "{n} in {w}x{h}");
                assert!(tiles.len() <= n);
                let mut covered = vec![0u8; usize::from(w) * usize::from(h)];
                for t in &tiles {
                    assert!(
                        t.width >= TILE_MIN_W && t.height >= TILE_MIN_H,
                        "{n} in {w}x{h}: {t:?}"
                    );
                    assert!(
                        area.contains(t.as_position())
                            && t.right() <= area.right()
                            && t.bottom() <= area.bottom()
                    );
                    for y in t.top()..t.bottom() {
                        for x in t.left()..t.right() {
                            covered[usize::from(y - area.y) * usize::from(w)
                                + usize::from(x - area.x)] += 1;
                        }
                    }
                }
                assert!(
                    covered.iter().all(|&c| c == 1),
                    "{n} in {w}x{h}: gaps or overlaps"
                );
            }
        }
    }

    #[test]
    fn everything_fits_when_there_is_room() {
        for n in 1..=12 {
            assert_eq!(grid_tiles(n, Rect::new(0, 0, 200, 60)).len(), n, "{n}");
        }
        // 80x22 (an 80x24 terminal minus header and footer) holds 9 tiles.
        for n in 1..=9 {
            assert_eq!(grid_tiles(n, Rect::new(0, 0, 80, 22)).len(), n, "{n}");
        }
    }

    #[test]
    fn grid_shapes() {
        let cases: &[(usize, u16, u16, (u16, u16))] = &[
            (1, 80, 22, (1, 1)),
            (2, 80, 22, (2, 1)),
            (2, 200, 60, (2, 1)),
            (2, 80, 60, (1, 2)),
            (3, 80, 22, (2, 2)),
            (4, 80, 22, (2, 2)),
            (4, 200, 22, (4, 1)),
            (6, 120, 40, (3, 2)),
            (9, 80, 22, (3, 3)),
            (9, 200, 60, (3, 3)),
            (12, 200, 60, (4, 3)),
            (12, 300, 80, (4, 3)),
        ];
        for &(n, w, h, want) in cases {
            assert_eq!(grid_dims(n, w, h), Some(want), "{n} in {w}x{h}");
        }
        assert_eq!(grid_dims(1, 10, 22), None);
        assert_eq!(grid_dims(0, 80, 22), None);
    }

    #[test]
    fn a_short_last_row_shares_the_width() {
        let tiles = grid_tiles(3, Rect::new(0, 0, 80, 22));
        assert_eq!(tiles[0], Rect::new(0, 0, 40, 11));
        assert_eq!(tiles[1], Rect::new(40, 0, 40, 11));
        assert_eq!(tiles[2], Rect::new(0, 11, 80, 11));
    }

    #[test]
    fn screen_layouts() {
        let names = vec!["api".to_string()];
        let l = screen_layout(Rect::new(0, 0, 80, 24), View::List, 24, &names);
        assert!(!l.too_small);
        assert_eq!(l.header, Some(Rect::new(0, 0, 80, 1)));
        assert_eq!(l.footer, Rect::new(0, 23, 80, 1));
        assert_eq!(l.list, Some(Rect::new(0, 1, 24, 22)));
        assert_eq!(l.panes[0].inner, Rect::new(25, 2, 54, 20));

        let z = screen_layout(Rect::new(0, 0, 80, 24), View::Zoom, 24, &names);
        assert_eq!(z.panes[0].inner, Rect::new(0, 0, 80, 23));
        assert_eq!(z.header, None);

        let small = screen_layout(Rect::new(0, 0, 39, 24), View::List, 24, &names);
        assert!(small.too_small && small.panes.is_empty());
        assert!(screen_layout(Rect::new(0, 0, 40, 9), View::List, 24, &names).too_small);
        assert!(!screen_layout(Rect::new(0, 0, 40, 10), View::List, 24, &names).too_small);

        let many: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
        let g = screen_layout(Rect::new(0, 0, 80, 24), View::Grid, 24, &many);
        assert_eq!(g.panes.len() + g.hidden, 40);
        assert!(g.hidden > 0);
    }

    #[test]
    fn list_widths() {
        assert_eq!(list_width(80, 3), 20);
        assert_eq!(list_width(80, 30), 32);
        assert_eq!(list_width(40, 30), 18);
        assert_eq!(list_width(300, 60), 40);
        assert_eq!(list_scroll(0, 5), 0);
        assert_eq!(list_scroll(4, 5), 0);
        assert_eq!(list_scroll(5, 5), 1);
    }
}
