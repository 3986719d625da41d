//! Drawing: a pure function of the [`App`] state and the [`PaneSource`].

use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};

use super::PaneSource;
use super::app::{App, Confirm, Mode};
use super::keys::{COMMANDS, Command};
use super::layout::{self, MIN_COLS, MIN_ROWS, PaneRect, View};
use super::list::Row;
use super::pane::{self, Decor, Matcher};
use super::theme::{Shown, Theme};
use crate::status::{Millis, ProcState, ProcessStatus, SpaceStatus, signal_name};

/// Truncates to `w` display columns, with `…` when cut.
pub(crate) fn fit(s: &str, w: usize) -> String {
    use unicode_width::UnicodeWidthChar;
    let total: usize = s.chars().map(|c| c.width().unwrap_or(0)).sum();
    if total <= w {
        return s.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if used + cw + 1 > w {
            break;
        }
        out.push(c);
        used += cw;
    }
    if w > 0 {
        out.push('…');
    }
    out
}

/// Word-wraps `s` to lines of at most `w` columns (a longer word is cut).
/// The footer's `(key, what, priority)` pairs that fit in `room` cells,
/// in their order: the lowest priorities are dropped first.
pub(crate) fn fit_keys<W: AsRef<str>>(
    pairs: Vec<(String, W, u8)>,
    room: usize,
) -> Vec<(String, W)> {
    let mut room = room;
    let mut keep = vec![false; pairs.len()];
    let last = pairs.iter().map(|p| p.2).max().unwrap_or(0);
    for prio in 0..=last {
        for (i, (key, what, p)) in pairs.iter().enumerate() {
            let w = key.chars().count() + what.as_ref().chars().count() + 3;
            if *p == prio && w <= room {
                keep[i] = true;
                room -= w;
            }
        }
    }
    pairs
        .into_iter()
        .zip(keep)
        .filter(|(_, k)| *k)
        .map(|((key, what, _), _)| (key, what))
        .collect()
}

pub(crate) fn wrap(s: &str, w: usize) -> Vec<String> {
    use unicode_width::UnicodeWidthStr;
    let w = w.max(4);
    let mut out: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in s.split_whitespace() {
        let sep = usize::from(!line.is_empty());
        if line.width() + sep + word.width() > w && !line.is_empty() {
            out.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while line.width() > w {
            let cut: String = fit(&line, w);
            let kept = cut.trim_end_matches('…').chars().count();
            out.push(cut);
            line = line.chars().skip(kept).collect();
        }
    }
    if !line.is_empty() || out.is_empty() {
        out.push(line);
    }
    out
}

/// The short state text of a list row (right-aligned column).
fn row_info(p: &ProcessStatus, now: Millis) -> String {
    let up = || {
        p.started_at
            .map(|t| crate::human::uptime_ms(now.saturating_sub(t)))
            .unwrap_or_default()
    };
    match &p.state {
        ProcState::Pending { .. } => "pending".into(),
        ProcState::Starting | ProcState::Running => up(),
        // ✓ only when a readiness probe says so: "started" is not "healthy".
        ProcState::Ready if Shown::of(p, now) == Shown::Ready => format!("{} ✓", up()),
        ProcState::Ready => up(),
        ProcState::Stopping { escalated } => if *escalated { "killing" } else { "stopping" }.into(),
        ProcState::Exited { code } => format!("exit {code}"),
        ProcState::Killed { signal } => signal_name(*signal),
        ProcState::Failed { .. } => "failed".into(),
        ProcState::Backoff { until } => format!("in {}s", until.saturating_sub(now).div_ceil(1000)),
        ProcState::Stopped => "stopped".into(),
        ProcState::Idle => "idle".into(),
    }
}

impl App {
    /// Draws the whole client screen. Pure: reads state, changes nothing.
    pub fn draw(&self, frame: &mut Frame<'_>, src: &dyn PaneSource) {
        let area = frame.area();
        let st = src.status();
        let theme = Theme { color: self.color };
        let l = self.layout_for(area, st);
        if l.too_small {
            let msg = format!(
                "terminal too small (need {MIN_COLS}x{MIN_ROWS}, have {}x{})",
                area.width, area.height
            );
            let y = area.y + area.height.saturating_sub(1) / 2;
            let p = Paragraph::new(msg)
                .alignment(Alignment::Center)
                .wrap(Wrap { trim: true });
            frame.render_widget(
                p,
                Rect::new(area.x, y, area.width, area.height - (y - area.y)),
            );
            return;
        }
        if let Some(h) = l.header {
            let open = self.space_open_count(src);
            self.draw_header(frame, h, st, open, theme);
        }
        if self.is_quitting() {
            self.draw_quitting(frame, l.body, st, theme);
            self.draw_footer(frame, l.footer, src, &l, theme);
            return;
        }
        if let Some(list) = l.list {
            let row = self
                .space
                .on
                .then(|| self.space_row(src, usize::from(list.width.saturating_sub(2)), theme));
            self.draw_list(frame, list, st, row, theme);
        }
        for p in &l.panes {
            if super::space::is_space_pane(p) {
                self.draw_space(frame, p, src, theme);
            } else if p.name == super::merged::MERGED_PANE {
                self.draw_merged(frame, p, theme);
            } else {
                self.draw_pane(frame, p, src, theme);
            }
        }
        if l.panes.is_empty() {
            let text = if st.processes.is_empty() {
                "no processes in this space".to_string()
            } else {
                format!(
                    "nothing to tile: no process is running or marked ({} marks, {} leaves the grid)",
                    self.keys.first(Command::Mark),
                    self.keys.first(Command::Grid)
                )
            };
            let body = if let Some(list) = l.list {
                Rect::new(
                    list.right(),
                    l.body.y,
                    l.body.width - list.width,
                    l.body.height,
                )
            } else {
                l.body
            };
            let r = layout::centered(body, body.width.saturating_sub(4), 3);
            frame.render_widget(
                Paragraph::new(text)
                    .style(theme.dim())
                    .alignment(Alignment::Center)
                    .wrap(Wrap { trim: true }),
                r,
            );
        }
        self.draw_footer(frame, l.footer, src, &l, theme);
        if self.space.json.is_some() && self.shows_space() {
            self.draw_json(frame, l.body, src, theme);
        }
        match &self.mode {
            Mode::Help => self.draw_help(frame, area, theme),
            Mode::Confirm(c) => self.draw_confirm(frame, area, c, st, theme),
            _ => {}
        }
    }

    fn draw_header(
        &self,
        frame: &mut Frame<'_>,
        r: Rect,
        st: &SpaceStatus,
        proposals: usize,
        theme: Theme,
    ) {
        let mut spans = vec![Span::styled(
            format!(" mew · {} ", st.space.name),
            theme.header(),
        )];
        if let Some(url) = &st.gateway_url {
            spans.push(Span::styled(format!("│ {url} "), theme.header_dim()));
        }
        // Proposals waiting for an answer come first: someone must act.
        if proposals > 0 {
            spans.push(Span::styled(
                format!(
                    "│ ⚑ {proposals} proposal{} ",
                    if proposals == 1 { "" } else { "s" }
                ),
                theme.header_warn(),
            ));
        }
        // counts by state, in lifecycle order; glyphs when the words do not fit
        let order = [
            "ready", "up", "unstable", "running", "starting", "pending", "backoff", "stopping",
            "exited", "killed", "failed", "stopped", "idle",
        ];
        let now = self.now();
        let mut counts: Vec<(usize, Shown<'_>, &str)> = Vec::new();
        for name in order {
            let mut of = st
                .processes
                .iter()
                .map(|p| Shown::of(p, now))
                .filter(|s| s.name() == name);
            if let Some(first) = of.next() {
                counts.push((1 + of.count(), first, name));
            }
        }
        // The warnings and the description come after the counts; the
        // warnings' room is kept, the description gets what is left.
        // Longest first: the one that fits is shown.
        let warnings: Vec<String> = match self.notes.warnings.len() {
            0 => Vec::new(),
            n => {
                let s = if n == 1 { "" } else { "s" };
                vec![
                    format!(
                        "│ ⚠ {n} warning{s} ({} lists) ",
                        self.keys.first(Command::Help)
                    ),
                    format!("│ ⚠ {n} warning{s} "),
                    format!("│ ⚠{n} "),
                ]
            }
        };
        let warn_w = warnings
            .last()
            .map_or(0, |w| unicode_width::UnicodeWidthStr::width(w.as_str()));
        if !counts.is_empty() {
            let words: Vec<String> = counts
                .iter()
                .map(|(n, _, name)| format!("{n} {name}"))
                .collect();
            let words = format!("│ {} ", words.join(" · "));
            let used: usize = spans.iter().map(|s| s.width()).sum::<usize>() + warn_w;
            if used + unicode_width::UnicodeWidthStr::width(words.as_str()) <= usize::from(r.width)
            {
                spans.push(Span::styled(words, theme.header_dim()));
            } else {
                spans.push(Span::styled("│", theme.header_dim()));
                for (n, shown, name) in counts {
                    let (glyph, style) = theme.shown(shown);
                    let glyph = if name == "ready" { "✓" } else { glyph };
                    spans.push(Span::styled(
                        format!(" {glyph}"),
                        theme.header_dim().patch(style),
                    ));
                    spans.push(Span::styled(n.to_string(), theme.header_dim()));
                }
                spans.push(Span::styled(" ", theme.header_dim()));
            }
        }
        if let Some(why) = &st.logging_degraded {
            spans.push(Span::styled(
                format!("│ ⚠ logs: {why} "),
                theme.header_warn(),
            ));
        }
        let used: usize = spans.iter().map(|s| s.width()).sum();
        let room = usize::from(r.width).saturating_sub(used);
        if let Some(w) = (warnings.iter())
            .find(|w| unicode_width::UnicodeWidthStr::width(w.as_str()) <= room)
            .or(warnings.last())
        {
            spans.push(Span::styled(w.clone(), theme.header_warn()));
        }
        if let Some(d) = self.description() {
            let used: usize = spans.iter().map(|s| s.width()).sum();
            let room = usize::from(r.width).saturating_sub(used + 3);
            if room >= 12 {
                spans.push(Span::styled(
                    format!("│ {} ", fit(&d, room)),
                    theme.header_dim(),
                ));
            }
        }
        frame.render_widget(
            Paragraph::new(Line::from(spans)).style(theme.header_dim()),
            r,
        );
    }

    fn draw_list(
        &self,
        frame: &mut Frame<'_>,
        r: Rect,
        st: &SpaceStatus,
        space_row: Option<Line<'static>>,
        theme: Theme,
    ) {
        let block = Block::bordered()
            .border_style(if self.focused() {
                theme.border()
            } else {
                theme.border_selected()
            })
            .title(Span::styled(
                if self.filter.is_empty() {
                    " processes ".to_string()
                } else {
                    format!(
                        " processes {}/{} ",
                        self.list_names(st).len(),
                        st.processes.len()
                    )
                },
                theme.label(),
            ));
        let inner = block.inner(r);
        frame.render_widget(block, r);
        let now = self.now();
        let w = usize::from(inner.width);
        let sel_idx = self.selected_row(st);
        // The space entry, when there is one, is row 0.
        let first = usize::from(space_row.is_some());
        let row_idx = if self.space_selected() {
            0
        } else {
            sel_idx + first
        };
        let top = layout::list_scroll(row_idx, inner.height);
        let mut lines: Vec<Line<'_>> = Vec::new();
        if top == 0
            && let Some(row) = space_row
        {
            lines.push(row);
        }
        for (i, row) in self
            .list_rows(st)
            .into_iter()
            .enumerate()
            .skip(top.saturating_sub(first))
        {
            let p = match row {
                Row::Process(p) => p,
                Row::Heading(h) => {
                    lines.push(Line::from(Span::styled(
                        fit(&format!("─ {h}"), w),
                        theme.label(),
                    )));
                    continue;
                }
            };
            let (glyph, gstyle) = theme.shown(Shown::of(p, now));
            let mut info = row_info(p, now);
            if p.restarts > 0 {
                info = format!("↻{} {info}", p.restarts);
            }
            // On a narrow list the name wins: drop the restarts, then the info.
            let name_len = p.name.chars().count().min(8);
            let room =
                |info: &str| w.saturating_sub(unicode_width::UnicodeWidthStr::width(info) + 4);
            if room(&info) < name_len {
                info = row_info(p, now);
            }
            if room(&info) < name_len {
                info = if Shown::of(p, now) == Shown::Ready {
                    "✓".into()
                } else {
                    String::new()
                };
            }
            let mark = if self.marked.contains(&p.name) {
                "+"
            } else {
                " "
            };
            let info_w = unicode_width::UnicodeWidthStr::width(info.as_str());
            let name_w = w.saturating_sub(info_w + 4);
            let name = fit(&p.name, name_w);
            let pad = name_w.saturating_sub(unicode_width::UnicodeWidthStr::width(name.as_str()));
            let selected = i == sel_idx && !self.space_selected();
            let base = if selected {
                theme.selected_row()
            } else {
                Style::new()
            };
            let name_style = if selected {
                base.add_modifier(Modifier::BOLD)
            } else {
                base
            };
            lines.push(Line::from(vec![
                Span::styled(glyph, if selected { base } else { gstyle }),
                Span::styled(mark, base),
                Span::styled(format!("{name}{} ", " ".repeat(pad)), name_style),
                Span::styled(
                    format!("{info} "),
                    if selected { base } else { theme.dim() },
                ),
            ]));
        }
        for part in st
            .participants
            .iter()
            .filter(|p| self.passes_filter(&p.name))
        {
            let text = format!("· {}  {}", part.name, part.note);
            lines.push(Line::from(Span::styled(fit(&text, w), theme.dim())));
        }
        frame.render_widget(Paragraph::new(lines), inner);
    }

    fn draw_pane(&self, frame: &mut Frame<'_>, p: &PaneRect, src: &dyn PaneSource, theme: Theme) {
        let st = src.status();
        let Some(proc_) = st.processes.iter().find(|s| s.name == p.name) else {
            return;
        };
        let view = self.view();
        let is_sel = self.current(st).is_some_and(|c| c.name == p.name);
        let focused = self.focused() && is_sel;
        let sb = src.scrollback_len(&p.name);
        let offset = self.offset(&p.name, sb);
        let now = self.now();
        if view != View::Zoom {
            let shown = Shown::of(proc_, now);
            let (glyph, gstyle) = theme.shown(shown);
            let mut title = vec![
                Span::raw(" "),
                Span::styled(glyph, gstyle),
                Span::styled(
                    format!(" {} ", p.name),
                    if is_sel { theme.label() } else { theme.text() },
                ),
                Span::styled(format!("{} ", shown.describe(now)), theme.dim()),
            ];
            if focused {
                title.push(Span::styled(" FOCUS ", theme.mode()));
            }
            let mut block = Block::bordered().title(Line::from(title));
            block = if focused {
                block
                    .border_type(BorderType::Thick)
                    .border_style(theme.border_focused())
            } else if is_sel && view == View::Grid {
                block.border_style(theme.border_selected())
            } else {
                block.border_style(theme.border())
            };
            if offset > 0 {
                block = block.title_top(
                    Line::from(Span::styled(format!(" ↑{offset}/{sb} "), theme.message()))
                        .right_aligned(),
                );
            }
            frame.render_widget(block, p.outer);
        }
        let area = p.inner;
        if self.details && view == View::List && is_sel {
            self.draw_details(frame, area, proc_, theme);
            return;
        }
        let matcher = if !self.search.query.is_empty() && self.search.process == p.name {
            Matcher::new(&self.search.query)
        } else {
            None
        };
        let current = self
            .search
            .current
            .filter(|_| self.search.process == p.name);
        let copy = self.copy().filter(|c| c.process == p.name);
        let selection = copy.and_then(|c| {
            c.anchor.map(|a| {
                if a <= c.cursor {
                    (a, c.cursor)
                } else {
                    (c.cursor, a)
                }
            })
        });
        let decor = Decor {
            first_line: sb - offset,
            matcher: matcher.as_ref(),
            current,
            selection,
            copy_cursor: copy.map(|c| c.cursor),
            theme,
        };
        let mut cursor = None;
        let mut drawn = false;
        let info = pane::screen_info(src, &p.name);
        let shift = info.map_or(0, |i| pane::row_shift(&i, area.height, offset));
        src.with_screen(&p.name, offset, &mut |screen| {
            drawn = true;
            cursor = pane::render_screen(screen, area, frame.buffer_mut(), shift, &decor);
        });
        if !drawn {
            let text = match proc_.state {
                ProcState::Idle | ProcState::Stopped => {
                    format!(
                        "{} — {} starts it",
                        proc_.state.name(),
                        self.keys.first(Command::StopStart)
                    )
                }
                _ => proc_.state.describe(now),
            };
            frame.render_widget(Paragraph::new(text).style(theme.dim()), area);
        }
        if focused
            && self.copy().is_none()
            && offset == 0
            && !self.overlay()
            && let Some(pos) = cursor
        {
            frame.set_cursor_position(pos);
        }
    }

    fn draw_details(&self, frame: &mut Frame<'_>, area: Rect, p: &ProcessStatus, theme: Theme) {
        let now = self.now();
        let dash = || "—".to_string();
        let row = |k: &str, v: String| {
            Line::from(vec![
                Span::styled(format!("{k:<10}"), theme.label()),
                Span::raw(v),
            ])
        };
        let since = p
            .history
            .last()
            .map(|t| {
                format!(
                    " (for {})",
                    crate::human::uptime_ms(now.saturating_sub(t.at))
                )
            })
            .unwrap_or_default();
        let mut lines = vec![
            row("state", format!("{}{since}", p.state.describe(now))),
            row("kind", p.kind.as_str().to_string()),
            row("command", p.command.clone()),
            row("cwd", p.cwd.clone()),
            row("pid", p.pid.map_or_else(dash, |x| x.to_string())),
            row(
                "uptime",
                match (p.state.is_alive(), p.started_at) {
                    (true, Some(t)) => crate::human::uptime_ms(now.saturating_sub(t)),
                    _ => dash(),
                },
            ),
            row(
                "restarts",
                match &p.last_restart_reason {
                    Some(why) => format!("{} (last: {why})", p.restarts),
                    None => p.restarts.to_string(),
                },
            ),
            row(
                "exit code",
                p.exit_code.map_or_else(dash, |c| c.to_string()),
            ),
            row(
                "ready",
                match Shown::of(p, now) {
                    Shown::Ready => "yes (readiness probe passed)".into(),
                    Shown::Up => "unknown: no readiness probe (started)".into(),
                    s @ Shown::Unstable { .. } => s.describe(now),
                    Shown::State(_) => "no".into(),
                },
            ),
            row("probe", p.probe.clone().unwrap_or_else(dash)),
            row(
                "cpu",
                p.cpu_percent.map_or_else(dash, |c| format!("{c:.1}%")),
            ),
            row("memory", p.rss_bytes.map_or_else(dash, crate::human::size)),
            Line::raw(""),
            Line::from(Span::styled("history (newest last)", theme.label())),
        ];
        let room = usize::from(area.height).saturating_sub(lines.len()).max(1);
        let skip = p.history.len().saturating_sub(room);
        for t in p.history.iter().skip(skip) {
            let (glyph, style) = theme.state(&t.state);
            lines.push(Line::from(vec![
                Span::styled(
                    format!(
                        "{:>9} ago ",
                        crate::human::uptime_ms(now.saturating_sub(t.at))
                    ),
                    theme.dim(),
                ),
                Span::styled(glyph, style),
                Span::raw(format!(" {:<12}", t.state.describe(t.at))),
                Span::styled(
                    if t.reason.is_empty() {
                        String::new()
                    } else {
                        format!("— {}", t.reason)
                    },
                    theme.dim(),
                ),
            ]));
        }
        if p.history.is_empty() {
            lines.push(Line::from(Span::styled(
                "(no transitions yet)",
                theme.dim(),
            )));
        }
        frame.render_widget(Paragraph::new(lines), area);
    }

    /// When the process stopping since `since` gets SIGKILL: its
    /// `stop_timeout` after its stop, or the space's shutdown deadline,
    /// whichever is first (`None` when neither is known).
    fn kill_at(&self, p: &ProcessStatus) -> Option<Millis> {
        let since = p
            .history
            .iter()
            .rev()
            .find(|t| matches!(t.state, ProcState::Stopping { .. }))
            .map(|t| t.at);
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let own = since
            .zip(self.notes.stop_timeouts.get(&p.name))
            .map(|(at, d)| at.saturating_add(ms(*d)));
        let space = self
            .quit_at()
            .zip(self.notes.shutdown_timeout)
            .map(|(at, d)| at.saturating_add(ms(d)));
        match (own, space) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// `SIGKILL in 7s` for a process that is stopping (empty when unknown).
    fn kill_countdown(&self, p: &ProcessStatus, now: Millis) -> String {
        match self.kill_at(p) {
            Some(at) if at > now => format!("SIGKILL in {}s", (at - now).div_ceil(1000)),
            Some(_) => "SIGKILL due".into(),
            None => String::new(),
        }
    }

    fn draw_quitting(&self, frame: &mut Frame<'_>, body: Rect, st: &SpaceStatus, theme: Theme) {
        let now = self.now();
        let done = st
            .processes
            .iter()
            .filter(|p| {
                !p.state.is_alive()
                    && !matches!(
                        p.state,
                        ProcState::Backoff { .. } | ProcState::Pending { .. }
                    )
            })
            .count();
        let mut lines = vec![
            Line::from(Span::styled(
                format!("{done} of {} processes stopped", st.processes.len()),
                theme.label(),
            )),
            Line::raw(""),
        ];
        for p in &st.processes {
            let (glyph, style) = theme.state(&p.state);
            let (text, tstyle) = match p.state {
                ProcState::Stopping { escalated: true } => {
                    ("did not stop in time: killing".to_string(), theme.error())
                }
                ProcState::Stopping { escalated: false } if self.killing() => {
                    ("killing".to_string(), theme.error())
                }
                ProcState::Stopping { escalated: false } => {
                    let countdown = self.kill_countdown(p, now);
                    let text = if countdown.is_empty() {
                        "stopping…".to_string()
                    } else {
                        format!("stopping… {countdown}")
                    };
                    (text, theme.message())
                }
                ref s if s.is_alive() => (
                    "running: stops after its dependents".to_string(),
                    theme.dim(),
                ),
                ref s => (s.describe(now), theme.dim()),
            };
            lines.push(Line::from(vec![
                Span::styled(glyph, style),
                Span::raw(format!(" {:<20} ", fit(&p.name, 20))),
                Span::styled(text, tstyle),
            ]));
        }
        let h = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
        let r = layout::centered(body, 60.min(body.width), h);
        frame.render_widget(Clear, r);
        let block = Block::bordered()
            .border_style(theme.border_selected())
            .title(Span::styled(
                format!(" stopping space \"{}\" ", st.space.name),
                theme.label(),
            ));
        frame.render_widget(Paragraph::new(lines).block(block), r);
    }

    /// The quitting footer: what the space still waits for, and how to stop waiting.
    fn quitting_footer(&self, spans: &mut Vec<Span<'_>>, st: &SpaceStatus, theme: Theme) {
        let now = self.now();
        spans.push(Span::styled(" QUITTING ", theme.mode()));
        let stopping: Vec<&ProcessStatus> = st
            .processes
            .iter()
            .filter(|p| matches!(p.state, ProcState::Stopping { .. }))
            .collect();
        if self.killing() {
            spans.push(Span::styled(" killing every process now", theme.error()));
            return;
        }
        if stopping.is_empty() {
            spans.push(Span::raw(" stopping every process"));
        } else {
            let names: Vec<&str> = stopping.iter().map(|p| p.name.as_str()).collect();
            spans.push(Span::raw(format!(" waiting for {}", names.join(", "))));
            let first = stopping
                .iter()
                .filter(|p| p.state == ProcState::Stopping { escalated: false })
                .filter_map(|p| self.kill_at(p))
                .min();
            if let Some(at) = first {
                spans.push(Span::styled(
                    format!(" · SIGKILL in {}s", at.saturating_sub(now).div_ceil(1000)),
                    theme.message(),
                ));
            }
        }
        spans.push(Span::styled(" │", theme.dim()));
        spans.push(Span::styled(
            format!(" {}", self.keys.first(Command::Quit)),
            theme.key(),
        ));
        spans.push(Span::raw(" again: kill now "));
    }

    /// The description on one line (whitespace collapsed), if any.
    pub(crate) fn description(&self) -> Option<String> {
        let d = self.notes.description.as_deref()?;
        let d = d.split_whitespace().collect::<Vec<_>>().join(" ");
        (!d.is_empty()).then_some(d)
    }

    fn draw_footer(
        &self,
        frame: &mut Frame<'_>,
        r: Rect,
        src: &dyn PaneSource,
        l: &layout::ScreenLayout,
        theme: Theme,
    ) {
        let st = src.status();
        let k = |c: Command| self.keys.first(c);
        let mut spans: Vec<Span<'_>> = Vec::new();
        let keys = |spans: &mut Vec<Span<'_>>, pairs: &[(String, &str)]| {
            for (key, what) in pairs {
                spans.push(Span::styled(format!(" {key}"), theme.key()));
                spans.push(Span::raw(format!(" {what} ")));
            }
        };
        if let Some(m) = &self.message {
            spans.push(Span::styled(format!(" {m} "), theme.message()));
            spans.push(Span::styled("│", theme.dim()));
        }
        match &self.mode {
            Mode::Quitting { .. } => self.quitting_footer(&mut spans, st, theme),
            Mode::Confirm(_) => keys(&mut spans, &[("y".into(), "yes"), ("n/Esc".into(), "no")]),
            Mode::Help => keys(&mut spans, &[("Esc".into(), "close help")]),
            Mode::Search => {
                spans.push(Span::styled(
                    format!(" /{}", self.search.query),
                    theme.key(),
                ));
                spans.push(Span::styled("█", theme.text()));
                keys(
                    &mut spans,
                    &[("Enter".into(), "search"), ("Esc".into(), "cancel")],
                );
            }
            Mode::Filter => {
                spans.push(Span::styled(
                    format!(" filter: {}", self.filter),
                    theme.key(),
                ));
                spans.push(Span::styled("█", theme.text()));
                keys(
                    &mut spans,
                    &[("Enter".into(), "keep"), ("Esc".into(), "clear")],
                );
            }
            Mode::Copy(_) => {
                spans.push(Span::styled(" COPY ", theme.mode()));
                keys(
                    &mut spans,
                    &[
                        ("hjkl".into(), "move"),
                        ("v".into(), "select"),
                        ("y".into(), "copy"),
                        ("Esc".into(), "leave"),
                    ],
                );
            }
            _ if self.shows_space() => self.space_footer(&mut spans, r.width, theme),
            Mode::Focus { .. } => {
                let name = self.selected().unwrap_or_default();
                spans.push(Span::styled(format!(" FOCUS {name} "), theme.mode()));
                let p = k(Command::Prefix);
                keys(
                    &mut spans,
                    &[
                        (p.clone(), "leave focus"),
                        (format!("{p} {p}"), &format!("send {p}")),
                        (format!("{p} d"), "detach"),
                    ],
                );
            }
            Mode::Normal | Mode::Prefix => {
                if self.view() == View::Zoom
                    && let Some(p) = self.current(st)
                {
                    let shown = Shown::of(p, self.now());
                    let (glyph, style) = theme.shown(shown);
                    spans.push(Span::styled(format!(" ZOOM {} ", p.name), theme.mode()));
                    spans.push(Span::styled(format!(" {glyph}"), style));
                    spans.push(Span::raw(format!(" {} │", shown.name())));
                }
                if self.prefix_armed() {
                    let p = k(Command::Prefix);
                    spans.push(Span::styled(format!(" {p}… "), theme.mode()));
                    keys(
                        &mut spans,
                        &[(p.clone(), &format!("send {p}")), ("d".into(), "detach")],
                    );
                }
                if !self.filter.is_empty() {
                    spans.push(Span::styled(
                        format!(" filter: {} ", self.filter),
                        theme.key(),
                    ));
                }
                if self.merged.on {
                    spans.push(Span::styled(" ALL ", theme.mode()));
                }
                if !self.search.query.is_empty() {
                    spans.push(Span::styled(
                        format!(" /{} ", self.search.query),
                        theme.key(),
                    ));
                    keys(
                        &mut spans,
                        &[
                            (
                                format!("{}/{}", k(Command::NextMatch), k(Command::PrevMatch)),
                                "older/newer",
                            ),
                            ("Esc".into(), "clear"),
                        ],
                    );
                }
                let cur = self.current(st);
                let stop = if cur.is_some_and(|p| {
                    p.state.is_alive()
                        || matches!(
                            p.state,
                            ProcState::Pending { .. } | ProcState::Backoff { .. }
                        )
                }) {
                    "stop"
                } else {
                    "start"
                };
                // (key, what, priority): when the line is too narrow, the lowest priorities go first
                let mut pairs: Vec<(String, &str, u8)> = Vec::new();
                match self.view() {
                    View::Zoom => pairs.push((k(Command::Zoom), "unzoom", 0)),
                    View::Grid => {
                        pairs.push(("hjkl".into(), "move", 1));
                        pairs.push((k(Command::Mark), "mark", 4));
                    }
                    View::List => pairs.push((
                        format!("{}/{}", k(Command::Down), k(Command::Up)),
                        "select",
                        1,
                    )),
                }
                pairs.extend([
                    (k(Command::Focus), "focus", 1),
                    (k(Command::Restart), "restart", 2),
                    (k(Command::StopStart), stop, 2),
                    (k(Command::Kill), "kill", 5),
                ]);
                if self.view() != View::Zoom {
                    pairs.push((k(Command::Grid), if self.grid { "list" } else { "grid" }, 4));
                    pairs.push((k(Command::Zoom), "zoom", 4));
                }
                pairs.extend([
                    (k(Command::Search), "search", 3),
                    (k(Command::Help), "help", 0),
                    (k(Command::Detach), "detach", 3),
                    (k(Command::Quit), "quit", 0),
                ]);
                if l.hidden > 0 {
                    spans.push(Span::styled(
                        format!(" +{} not shown ", l.hidden),
                        theme.message(),
                    ));
                }
                let used: usize = spans.iter().map(|s| s.width()).sum();
                let shown = fit_keys(pairs, usize::from(r.width).saturating_sub(used));
                keys(&mut spans, &shown);
            }
        }
        frame.render_widget(Paragraph::new(Line::from(spans)), r);
    }

    fn draw_help(&self, frame: &mut Frame<'_>, area: Rect, theme: Theme) {
        let entries: Vec<(String, &str)> = COMMANDS
            .iter()
            .filter(|c| c.0 != Command::Space || self.space.on)
            .map(|(cmd, _, _, help)| (self.keys.all(*cmd), *help))
            .collect();
        let key_w = entries
            .iter()
            .map(|(k, _)| k.chars().count())
            .max()
            .unwrap_or(8)
            .min(14);
        let col_w = key_w + 2 + 24;
        let two = usize::from(area.width) >= col_w * 2 + 5;
        let per_col = if two {
            entries.len().div_ceil(2)
        } else {
            entries.len()
        };
        let mut lines: Vec<Line<'_>> = Vec::new();
        for i in 0..per_col {
            let mut spans = Vec::new();
            for col in 0..(if two { 2 } else { 1 }) {
                if let Some((key, help)) = entries.get(col * per_col + i) {
                    spans.push(Span::styled(
                        format!(" {:<key_w$} ", fit(key, key_w)),
                        theme.key(),
                    ));
                    spans.push(Span::raw(format!("{:<24}", fit(help, 24))));
                }
            }
            lines.push(Line::from(spans));
        }
        let p = self.keys.first(Command::Prefix);
        let extra = [
            (
                "focus",
                format!("all keys go to the process · {p} leaves · {p} {p} sends {p}"),
            ),
            (
                "copy",
                "hjkl/arrows move · v select · y/Enter copy · Esc leave".into(),
            ),
            (
                "search",
                "Enter finds the newest match · n older · N newer · Esc clears".into(),
            ),
            (
                "mouse",
                "click selects (a pane: focuses) · wheel scrolls".into(),
            ),
        ];
        let space_extra = self.space.on.then(|| {
            (
                "space",
                format!(
                    "{} talk · {} lines, Enter the JSON · f/F filter · a/g/r answer a proposal",
                    self.keys.first(Command::Focus),
                    self.keys.first(Command::CopyMode)
                ),
            )
        });
        let mut extras: Vec<Line<'_>> = extra
            .into_iter()
            .chain(space_extra)
            .map(|(what, text)| {
                Line::from(vec![
                    Span::styled(format!(" {what:<7}"), theme.label()),
                    Span::raw(text),
                ])
            })
            .collect();
        let w = if two { col_w * 2 + 4 } else { col_w + 2 };
        let w = u16::try_from(w).unwrap_or(u16::MAX).max(78).min(area.width);
        // The space's description and warnings come first; when everything
        // does not fit, the extra lines go, then the warnings that do not fit.
        let inner_w = usize::from(w.saturating_sub(2)).max(10);
        let room = usize::from(area.height.saturating_sub(2));
        let mut notes: Vec<Line<'_>> = Vec::new();
        if let Some(d) = self.description() {
            for (i, l) in wrap(&d, inner_w.saturating_sub(8)).into_iter().enumerate() {
                let label = if i == 0 { " about  " } else { "        " };
                notes.push(Line::from(vec![
                    Span::styled(label, theme.label()),
                    Span::raw(l),
                ]));
            }
            notes.push(Line::raw(""));
        }
        let warnings = &self.notes.warnings;
        if !warnings.is_empty() {
            let keys_h = lines.len() + 1;
            let mut warn_lines: Vec<Line<'_>> = vec![Line::from(Span::styled(
                format!(
                    " ⚠ {} warning{} in the config",
                    warnings.len(),
                    if warnings.len() == 1 { "" } else { "s" }
                ),
                theme.message(),
            ))];
            let mut shown = 0;
            for w in warnings {
                let wrapped = wrap(w, inner_w.saturating_sub(3));
                // Keep a line for "N more" when some are left out.
                let reserve = usize::from(shown + 1 < warnings.len());
                if notes.len() + warn_lines.len() + wrapped.len() + reserve + keys_h > room {
                    break;
                }
                for (i, l) in wrapped.into_iter().enumerate() {
                    let lead = if i == 0 { " · " } else { "   " };
                    warn_lines.push(Line::from(vec![
                        Span::styled(lead, theme.message()),
                        Span::raw(l),
                    ]));
                }
                shown += 1;
            }
            if shown < warnings.len() {
                warn_lines.push(Line::from(Span::styled(
                    format!(
                        "   … {} more: \"mew space check\" lists them all",
                        warnings.len() - shown
                    ),
                    theme.dim(),
                )));
            }
            notes.extend(warn_lines);
            notes.push(Line::raw(""));
        }
        if notes.len() + lines.len() + 1 + extras.len() > room {
            extras.clear();
        } else {
            lines.push(Line::raw(""));
        }
        let lines: Vec<Line<'_>> = notes.into_iter().chain(lines).chain(extras).collect();
        let h = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
        let r = layout::centered(area, w, h);
        frame.render_widget(Clear, r);
        let block = Block::bordered()
            .border_style(theme.border_selected())
            .title(Span::styled(
                " keys (remap them in ui.keys) ",
                theme.label(),
            ))
            .title_bottom(Line::from(Span::styled(" Esc closes ", theme.dim())).right_aligned());
        frame.render_widget(
            Paragraph::new(lines)
                .block(block)
                .wrap(Wrap { trim: false }),
            r,
        );
    }

    fn draw_confirm(
        &self,
        frame: &mut Frame<'_>,
        area: Rect,
        c: &Confirm,
        st: &SpaceStatus,
        theme: Theme,
    ) {
        let alive = st.processes.iter().filter(|p| p.state.is_alive()).count();
        let (title, text) = match c {
            Confirm::Quit => (
                " quit ",
                format!(
                    "Stop all {alive} running process{} and quit?",
                    if alive == 1 { "" } else { "es" }
                ),
            ),
            Confirm::Kill(n) => (
                " kill ",
                format!("Kill {n}? Its process group gets SIGKILL."),
            ),
            Confirm::RestartAll => (
                " restart all ",
                format!("Restart all {} processes?", st.processes.len()),
            ),
        };
        let w = (text.chars().count() + 6).clamp(30, usize::from(area.width));
        let r = layout::centered(area, u16::try_from(w).unwrap_or(u16::MAX), 5);
        frame.render_widget(Clear, r);
        let lines = vec![
            Line::raw(text),
            Line::raw(""),
            Line::from(vec![
                Span::styled("y", theme.key()),
                Span::raw(" yes    "),
                Span::styled("n", theme.key()),
                Span::raw(" no"),
            ]),
        ];
        let block = Block::bordered()
            .border_style(theme.error())
            .title(Span::styled(title, theme.error()));
        frame.render_widget(
            Paragraph::new(lines)
                .alignment(Alignment::Center)
                .block(block),
            r,
        );
    }
}
