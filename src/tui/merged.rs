//! The merged view (`a`): every process's output lines (only the marked
//! processes' when some are marked) interleaved in arrival order in one
//! pane, each prefixed with the process name in the colour `--no-tui` gives
//! it, with scrollback and search.
//!
//! The lines are the ones the log writer gets (the supervisor's captured
//! output lines, `supervisor::Event::Line`, escape sequences stripped): the
//! server's session feeds each arriving line to [`App::push_line`]. The view
//! keeps the last [`MERGED_LINES`] lines; it lives in the [`App`], so it
//! survives a detach (lines that arrive while nobody is attached are in the
//! log files, not here).

use std::collections::VecDeque;

use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::app::App;
use super::draw::fit;
use super::keys::Command;
use super::layout::{PaneRect, View};
use super::pane::Matcher;
use super::theme::Theme;

/// The pane name of the merged view (not a process name: starts with NUL).
pub(crate) const MERGED_PANE: &str = "\u{0}merged";
/// Lines the merged view keeps.
pub(crate) const MERGED_LINES: usize = 10_000;

#[derive(Clone, Debug)]
pub(crate) struct MergedLine {
    /// Counts every line pushed: a stable id while older lines go.
    pub seq: u64,
    /// Shared with the supervisor's line: a line costs each attached
    /// client a reference, not a copy.
    pub process: std::sync::Arc<str>,
    pub text: std::sync::Arc<str>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Merged {
    /// The main pane shows the merged view.
    pub on: bool,
    pub lines: VecDeque<MergedLine>,
    /// Lines scrolled up from the newest (0 = live).
    pub offset: usize,
    /// The line of the current search match.
    pub hit: Option<u64>,
    next_seq: u64,
}

impl App {
    /// One captured output line of `process` (the server calls this for
    /// every line, whether the view is open or not).
    pub fn push_line(
        &mut self,
        process: impl Into<std::sync::Arc<str>>,
        text: impl Into<std::sync::Arc<str>>,
    ) {
        let (process, text) = (process.into(), text.into());
        let m = &mut self.merged;
        let seq = m.next_seq;
        m.next_seq += 1;
        m.lines.push_back(MergedLine {
            seq,
            process: process.clone(),
            text,
        });
        if m.lines.len() > MERGED_LINES {
            m.lines.pop_front();
        }
        // A view scrolled into the past stays on the same lines.
        if m.offset > 0 && self.shown_in_merged(&process) {
            self.merged.offset += 1;
        }
    }

    /// Whether the merged view is on screen: only then do new lines need a
    /// redraw.
    pub fn shows_merged(&self) -> bool {
        !self.is_quitting() && self.merged.on && self.space_pane().is_none()
    }

    /// Whether the merged view shows `process`'s lines: the marked ones if
    /// any are marked, else all.
    fn shown_in_merged(&self, process: &str) -> bool {
        self.marked.is_empty() || self.marked.contains(process)
    }

    /// The lines the merged view shows, oldest first.
    pub(crate) fn merged_lines(&self) -> Vec<&MergedLine> {
        self.merged
            .lines
            .iter()
            .filter(|l| self.shown_in_merged(&l.process))
            .collect()
    }

    pub(crate) fn merged_pane(&self) -> Option<String> {
        self.merged.on.then(|| MERGED_PANE.to_owned())
    }

    pub(crate) fn toggle_merged(&mut self) {
        self.merged.on = !self.merged.on;
        self.merged.offset = 0;
        self.merged.hit = None;
        if self.merged.on {
            self.space.selected = false;
            self.drop_space_transient();
            self.details = false;
            self.grid = false;
        }
    }

    fn merged_height(&self, st: &crate::status::SpaceStatus) -> usize {
        let l = self.layout(st);
        l.panes
            .iter()
            .find(|p| p.name == MERGED_PANE)
            .map_or(1, |p| usize::from(p.inner.height.max(1)))
    }

    /// Commands that mean something else in the merged view: scrolling,
    /// searching it. Returns whether `cmd` was taken.
    pub(crate) fn merged_command(&mut self, cmd: Command, st: &crate::status::SpaceStatus) -> bool {
        match cmd {
            Command::ScrollUp
            | Command::ScrollDown
            | Command::ScrollTop
            | Command::ScrollBottom => self.merged_scroll(cmd, st),
            Command::Search => {
                self.search = super::app::Search {
                    process: MERGED_PANE.into(),
                    ..Default::default()
                };
                self.merged.hit = None;
                self.mode = super::app::Mode::Search;
            }
            Command::NextMatch | Command::PrevMatch if !self.search.query.is_empty() => {
                if self.search.process != MERGED_PANE {
                    self.search.process = MERGED_PANE.into();
                    self.merged.hit = None;
                }
                self.merged_find(cmd == Command::NextMatch, st);
            }
            Command::Focus | Command::Details | Command::CopyMode | Command::Zoom => {
                // These are about one process: back to its pane first.
                self.merged.on = false;
                return false;
            }
            _ => return false,
        }
        true
    }

    /// Keeps the scroll offset within the lines.
    pub(crate) fn merged_scroll_clamp(&mut self, st: &crate::status::SpaceStatus) {
        let max = self
            .merged_lines()
            .len()
            .saturating_sub(self.merged_height(st));
        self.merged.offset = self.merged.offset.min(max);
    }

    /// Scroll commands in the merged view.
    pub(crate) fn merged_scroll(&mut self, cmd: Command, st: &crate::status::SpaceStatus) {
        let total = self.merged_lines().len();
        let h = self.merged_height(st);
        let max = total.saturating_sub(h);
        let page = h.saturating_sub(1).max(1);
        let off = self.merged.offset;
        self.merged.offset = match cmd {
            Command::ScrollUp => off + page,
            Command::ScrollDown => off.saturating_sub(page),
            Command::ScrollTop => max,
            _ => 0,
        }
        .min(max);
    }

    /// Moves to the next older (`older`) or newer line matching the search
    /// and scrolls so that it shows.
    pub(crate) fn merged_find(&mut self, older: bool, st: &crate::status::SpaceStatus) {
        let Some(m) = Matcher::new(&self.search.query) else {
            return;
        };
        let h = self.merged_height(st);
        let lines = self.merged_lines();
        let total = lines.len();
        let at = |seq: u64| lines.iter().position(|l| l.seq == seq);
        // Where to continue from: the current match, or the visible bottom.
        let from = self
            .merged
            .hit
            .and_then(at)
            .unwrap_or(total.saturating_sub(self.merged.offset));
        let hit_of = |i: usize| {
            let l = lines[i];
            (m.matches_str(&l.text) || m.matches_str(&l.process)).then_some(i)
        };
        let found = if older {
            (0..from.min(total)).rev().find_map(hit_of)
        } else {
            (from + 1..total).find_map(hit_of)
        };
        match found {
            Some(i) => {
                let seq = lines[i].seq;
                // The match at the bottom of the pane, or as low as it goes.
                let offset = (total - 1 - i).min(total.saturating_sub(h));
                self.merged.hit = Some(seq);
                self.merged.offset = offset;
            }
            None => self.no_match(older, self.merged.hit.is_some()),
        }
    }

    pub(crate) fn draw_merged(&self, frame: &mut Frame<'_>, p: &PaneRect, theme: Theme) {
        let lines = self.merged_lines();
        let total = lines.len();
        let area: Rect = p.inner;
        if self.view() != View::Zoom {
            let what = if self.marked.is_empty() {
                " all output ".to_string()
            } else {
                format!(" marked output ({}) ", self.marked.len())
            };
            let mut block = Block::bordered()
                .border_style(theme.border_selected())
                .title(Span::styled(what, theme.label()));
            if self.merged.offset > 0 {
                block = block.title_top(
                    Line::from(Span::styled(
                        format!(" ↑{}/{total} ", self.merged.offset),
                        theme.message(),
                    ))
                    .right_aligned(),
                );
            }
            frame.render_widget(block, p.outer);
        }
        let h = usize::from(area.height);
        let w = usize::from(area.width);
        if total == 0 {
            let text = if self.marked.is_empty() {
                "no output yet"
            } else {
                "no output yet from the marked processes"
            };
            frame.render_widget(Paragraph::new(fit(text, w)).style(theme.dim()), area);
            return;
        }
        let end = total.saturating_sub(self.merged.offset);
        let start = end.saturating_sub(h);
        let width = lines[start..end]
            .iter()
            .map(|l| l.process.chars().count())
            .max()
            .unwrap_or(0);
        let matcher = Matcher::new(&self.search.query);
        let out: Vec<Line<'_>> = lines[start..end]
            .iter()
            .map(|l| {
                let pad = width.saturating_sub(l.process.chars().count());
                let label = format!("{}{:pad$} | ", l.process, "");
                let room = w.saturating_sub(label.chars().count());
                let text_style = if self.merged.hit == Some(l.seq) {
                    theme.search_current()
                } else if matcher.as_ref().is_some_and(|m| m.matches_str(&l.text)) {
                    theme.search_match()
                } else {
                    theme.text()
                };
                Line::from(vec![
                    Span::styled(fit(&label, w), theme.process_label(&l.process)),
                    Span::styled(fit(&l.text, room), text_style),
                ])
            })
            .collect();
        frame.render_widget(Paragraph::new(out), area);
    }
}
