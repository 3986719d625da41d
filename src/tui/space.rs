//! The space view: the space's envelopes as readable lines, talking as the
//! space's human participant, answering proposals, the participants panel.
//! State and keys here; drawing too (a pure function of the state and the
//! [`SpaceLog`], reading only the lines on screen).

use std::collections::BTreeSet;

use crate::protocol::input::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Position, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, BorderType, Clear, Paragraph, Wrap};
use serde_json::Value;

use super::app::{App, Mode, Search};
use super::keys::{Command, KeySpec};
use super::layout::{PaneRect, View};
use super::pane::{LineText, Matcher};
use super::theme::Theme;
use super::{Action, PaneSource};
use crate::config::escape;
use crate::envelopes::{self, Entry, Link, Pending, SpaceLog, Tone};
use crate::status::Millis;

/// The layout's name for the space view's pane: no process can be called so.
pub(crate) const SPACE_PANE: &str = "\u{0}space";

/// The longest line typed into the input.
const INPUT_MAX: usize = 4000;

/// What the kind filter cycles through (`F`).
const KINDS: &[&str] = &[
    "chat",
    "mcp",
    "proposal",
    "denied",
    "stream",
    "capability",
    "system",
];

/// The reason sent when a rejection's reason is left empty.
pub(crate) const DEFAULT_REASON: &str = "rejected from mew";

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum InputMode {
    Chat,
    /// Rejecting this proposal: the text is the reason.
    Reason(String),
}

#[derive(Clone, Debug)]
pub(crate) struct Input {
    pub mode: InputMode,
    pub text: String,
}

/// The JSON overlay of one envelope.
#[derive(Clone, Copy, Debug)]
pub(crate) struct JsonView {
    pub seq: u64,
    pub scroll: u16,
}

/// One client's state of the space view.
#[derive(Clone, Debug, Default)]
pub(crate) struct SpaceView {
    /// The source has a space view (cached at every event and frame).
    pub on: bool,
    /// The space entry is selected (the process selection is kept aside).
    pub selected: bool,
    /// Scrolled: the seq of the bottom line shown; `None` follows the live end.
    pub bottom: Option<u64>,
    /// Line mode: the seq of the line under the cursor.
    pub cursor: Option<u64>,
    pub json: Option<JsonView>,
    /// Focused: the input line.
    pub input: Option<Input>,
    /// Whom a chat goes to; `None`: the space's `default_to`.
    pub to: Option<Vec<String>>,
    /// Only envelopes from or to this participant.
    pub who: Option<String>,
    /// Only this kind of envelope (one of [`KINDS`]).
    pub kind: Option<&'static str>,
    /// The current search match.
    pub hit: Option<u64>,
    /// Proposals this client answered (hidden until the log drops them).
    pub answered: BTreeSet<String>,
}

/// Runs `f` on the source's space log, if it has one.
pub(crate) fn read_log<R>(src: &dyn PaneSource, f: impl FnOnce(&SpaceLog) -> R) -> Option<R> {
    let mut f = Some(f);
    let mut out = None;
    src.with_space(&mut |log| {
        if let Some(f) = f.take() {
            out = Some(f(log));
        }
    });
    out
}

/// `HH:MM:SS` of an envelope's arrival: local time, or UTC when the clock is
/// frozen (tests).
fn clock_text(at: Millis, utc: bool) -> String {
    let Some(t) = chrono::DateTime::from_timestamp_millis(i64::try_from(at).unwrap_or(0)) else {
        return "--:--:--".into();
    };
    if utc {
        t.format("%H:%M:%S").to_string()
    } else {
        t.with_timezone(&chrono::Local)
            .format("%H:%M:%S")
            .to_string()
    }
}

/// A capability as text: its kind, and its payload pattern if any.
fn cap_text(c: &Value) -> String {
    let kind = c.get("kind").and_then(Value::as_str).unwrap_or("?");
    let text = match c.get("payload") {
        Some(p) => format!("{kind} {p}"),
        None => kind.to_owned(),
    };
    escape(&text).into_owned()
}

/// A proposal in a few words, for its prompt.
fn proposal_text(p: &Pending) -> String {
    let s = envelopes::summarize_value(&serde_json::json!({
        "kind": "mcp/proposal", "from": p.from, "to": p.to, "payload": p.payload,
    }));
    s.text
}

impl SpaceView {
    fn passes(&self, e: &Entry) -> bool {
        if let Some(who) = &self.who
            && e.summary.from != *who
            && !e.summary.to.contains(who)
        {
            return false;
        }
        let Some(kind) = self.kind else {
            return true;
        };
        let k = e.summary.kind.as_str();
        match kind {
            "chat" => k == "chat",
            "mcp" => k.starts_with("mcp/"),
            "proposal" => k == "mcp/proposal",
            "denied" => e.summary.tone == Tone::Denied,
            "stream" => k.starts_with("stream"),
            "capability" => k.starts_with("capability/"),
            "system" => k.starts_with("system/"),
            _ => true,
        }
    }

    /// The filter as text for the pane title (`from:agent kind:mcp`).
    fn filter_text(&self) -> String {
        let mut parts = Vec::new();
        if let Some(w) = &self.who {
            parts.push(format!("who:{}", escape(w)));
        }
        if let Some(k) = self.kind {
            parts.push(format!("kind:{k}"));
        }
        parts.join(" ")
    }

    /// The index of the bottom entry of the view (the last one passing the
    /// filter at or before the anchor), if any passes.
    fn bottom_index(&self, log: &SpaceLog) -> Option<usize> {
        let end = match self.bottom {
            None => log.entries.len(),
            Some(seq) => match log.entries.binary_search_by_key(&seq, |e| e.seq) {
                Ok(i) => i + 1,
                Err(i) => i,
            },
        };
        (0..end)
            .rev()
            .find(|&i| self.passes(&log.entries[i]))
            .or_else(|| (end..log.entries.len()).find(|&i| self.passes(&log.entries[i])))
    }

    /// The entries on screen, top to bottom, for `h` rows: the ones up to
    /// the anchor, and after it when that does not fill the rows.
    fn window(&self, log: &SpaceLog, h: usize) -> Vec<usize> {
        let Some(b) = self.bottom_index(log) else {
            return Vec::new();
        };
        let mut up: Vec<usize> = (0..=b)
            .rev()
            .filter(|&i| self.passes(&log.entries[i]))
            .take(h)
            .collect();
        up.reverse();
        if up.len() < h {
            let more: Vec<usize> = (b + 1..log.entries.len())
                .filter(|&i| self.passes(&log.entries[i]))
                .take(h - up.len())
                .collect();
            up.extend(more);
        }
        up
    }

    /// `n` passing entries up (or down) from index `i`, stopping at the ends.
    fn walk(&self, log: &SpaceLog, i: usize, n: usize, up: bool) -> usize {
        let mut at = i;
        let mut left = n;
        while left > 0 {
            let next = if up {
                (0..at).rev().find(|&j| self.passes(&log.entries[j]))
            } else {
                (at + 1..log.entries.len()).find(|&j| self.passes(&log.entries[j]))
            };
            match next {
                Some(j) => at = j,
                None => break,
            }
            left -= 1;
        }
        at
    }

    fn last_passing(&self, log: &SpaceLog) -> Option<usize> {
        (0..log.entries.len())
            .rev()
            .find(|&i| self.passes(&log.entries[i]))
    }

    /// Anchors the view at entry `i` (the live end when it is the last one).
    fn anchor(&mut self, log: &SpaceLog, i: usize) {
        self.bottom = if Some(i) >= self.last_passing(log) {
            None
        } else {
            Some(log.entries[i].seq)
        };
    }

    /// Scrolls so that the entry with `seq` is on screen (`h` rows).
    fn reveal(&mut self, log: &SpaceLog, seq: u64, h: usize) {
        let Ok(i) = log.entries.binary_search_by_key(&seq, |e| e.seq) else {
            return;
        };
        let win = self.window(log, h);
        match (win.first(), win.last()) {
            (Some(&top), Some(&bot)) if i >= top && i <= bot => {}
            (Some(&top), _) if i < top => {
                let b = self.walk(log, i, h.saturating_sub(1), false);
                self.anchor(log, b);
            }
            _ => self.anchor(log, i),
        }
    }

    /// Proposals waiting, oldest first, without those this client answered.
    fn open(&self, log: &SpaceLog) -> Vec<Pending> {
        log.pending
            .iter()
            .filter(|p| !self.answered.contains(&p.id))
            .cloned()
            .collect()
    }

    /// Whom a chat goes to now.
    fn recipients(&self, log: &SpaceLog) -> Vec<String> {
        self.to.clone().unwrap_or_else(|| log.default_to.clone())
    }
}

/// The choices `Tab` cycles through: the default, everyone, each connected
/// participant other than this one.
fn to_choices(log: &SpaceLog) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    if !log.default_to.is_empty() {
        out.push(log.default_to.clone());
    }
    out.push(Vec::new());
    for (id, m) in &log.members {
        if m.connected && Some(id.as_str()) != log.me() && !id.starts_with("system:") {
            let one = vec![id.clone()];
            if !out.contains(&one) {
                out.push(one);
            }
        }
    }
    out
}

fn to_text(to: &[String]) -> String {
    if to.is_empty() {
        "everyone".into()
    } else {
        escape(&to.join(",")).into_owned()
    }
}

impl App {
    /// Whether the space entry is the selection (and the source has one).
    pub(crate) fn space_selected(&self) -> bool {
        self.space.on && self.space.selected
    }

    /// Follows the source: whether it has a space view.
    pub(crate) fn sync_space(&mut self, src: &dyn PaneSource) {
        self.space.on = src.with_space(&mut |_| {});
        if !self.space.on {
            self.space.selected = false;
            self.space.input = None;
            self.space.cursor = None;
            self.space.json = None;
        }
    }

    /// Forget the space view's moment: the input, line mode, the overlay.
    pub(crate) fn drop_space_transient(&mut self) {
        self.space.input = None;
        self.space.cursor = None;
        self.space.json = None;
    }

    /// Rows for envelope lines in the space pane (the prompt and the input
    /// line take theirs).
    fn space_rows(&self, src: &dyn PaneSource) -> usize {
        let l = self.layout(src.status());
        let h = l
            .panes
            .iter()
            .find(|p| p.name == SPACE_PANE)
            .map_or(1, |p| p.inner.height);
        let prompt = read_log(src, |log| !self.space.open(log).is_empty()).unwrap_or(false);
        let used = u16::from(self.space.input.is_some()) + if prompt { 2 } else { 0 };
        usize::from(h.saturating_sub(used).max(1))
    }

    pub(crate) fn space_select(&mut self) {
        self.space.selected = true;
        self.unfocus();
        self.grid = false;
    }

    fn space_focus(&mut self, src: &dyn PaneSource) {
        let link = read_log(src, |log| log.link.clone()).unwrap_or_default();
        match link {
            Link::Joined(_) => {
                self.details = false;
                self.space.cursor = None;
                self.space.input = Some(Input {
                    mode: InputMode::Chat,
                    text: String::new(),
                });
            }
            other => self.message = Some(format!("not in the space: {}", link_text(&other))),
        }
    }

    /// Keys for the space view's modes: the JSON overlay, the input line,
    /// line mode. Returns whether the key was taken.
    pub(crate) fn space_modal_key(
        &mut self,
        k: KeyEvent,
        spec: KeySpec,
        src: &dyn PaneSource,
        out: &mut Vec<Action>,
    ) -> bool {
        if !self.space_selected() {
            return false;
        }
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        if let Some(mut j) = self.space.json {
            match k.code {
                KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter => self.space.json = None,
                KeyCode::Up | KeyCode::Char('k') => j.scroll = j.scroll.saturating_sub(1),
                KeyCode::Down | KeyCode::Char('j') => j.scroll = j.scroll.saturating_add(1),
                KeyCode::PageUp => j.scroll = j.scroll.saturating_sub(10),
                KeyCode::PageDown | KeyCode::Char(' ') => j.scroll = j.scroll.saturating_add(10),
                KeyCode::Home | KeyCode::Char('g') => j.scroll = 0,
                KeyCode::Char('y') => {
                    if let Some(raw) = read_log(src, |log| {
                        log.entries
                            .iter()
                            .find(|e| e.seq == j.seq)
                            .map(|e| pretty(&e.raw))
                    })
                    .flatten()
                    {
                        self.message = Some(format!("copied envelope #{}", j.seq));
                        out.push(Action::Copy(raw));
                    }
                }
                _ => {}
            }
            if self.space.json.is_some() {
                self.space.json = Some(j);
            }
            return true;
        }
        if let Some(mut input) = self.space.input.clone() {
            if spec == self.keys.prefix() {
                self.space.input = None;
                self.mode = Mode::Prefix;
                return true;
            }
            match k.code {
                KeyCode::Esc => {
                    self.space.input = None;
                    return true;
                }
                KeyCode::Char('c') if ctrl => {
                    self.space.input = None;
                    return true;
                }
                KeyCode::Enter => {
                    self.submit(&input, src, out);
                    input.text.clear();
                    if matches!(input.mode, InputMode::Reason(_)) {
                        self.space.input = None;
                        return true;
                    }
                }
                KeyCode::Tab if input.mode == InputMode::Chat => {
                    if let Some((choices, now)) =
                        read_log(src, |log| (to_choices(log), self.space.recipients(log)))
                    {
                        let at = choices.iter().position(|c| *c == now);
                        let next = at.map_or(0, |i| (i + 1) % choices.len());
                        self.space.to = choices.get(next).cloned();
                    }
                }
                KeyCode::Backspace => {
                    input.text.pop();
                }
                KeyCode::Char('u') if ctrl => input.text.clear(),
                KeyCode::PageUp => self.space_scroll(Command::ScrollUp, src),
                KeyCode::PageDown => self.space_scroll(Command::ScrollDown, src),
                KeyCode::Char(c)
                    if !ctrl && !c.is_control() && input.text.chars().count() < INPUT_MAX =>
                {
                    input.text.push(c);
                }
                _ => {}
            }
            self.space.input = Some(input);
            return true;
        }
        if let Some(cur) = self.space.cursor {
            let h = self.space_rows(src);
            let page = h.saturating_sub(1).max(1);
            let mut next = None;
            match k.code {
                KeyCode::Esc | KeyCode::Char('q') => self.space.cursor = None,
                KeyCode::Char('c') if ctrl => self.space.cursor = None,
                KeyCode::Enter => {
                    self.space.json = Some(JsonView {
                        seq: cur,
                        scroll: 0,
                    })
                }
                KeyCode::Char('y') => {
                    if let Some(raw) = read_log(src, |log| {
                        log.entries
                            .iter()
                            .find(|e| e.seq == cur)
                            .map(|e| e.raw.clone())
                    })
                    .flatten()
                    {
                        self.message = Some(format!("copied envelope #{cur}"));
                        self.space.cursor = None;
                        out.push(Action::Copy(raw));
                    }
                }
                KeyCode::Up | KeyCode::Char('k') => next = Some((1, true)),
                KeyCode::Down | KeyCode::Char('j') => next = Some((1, false)),
                KeyCode::PageUp => next = Some((page, true)),
                KeyCode::Char('u') if ctrl => next = Some((page, true)),
                KeyCode::PageDown => next = Some((page, false)),
                KeyCode::Char('d') if ctrl => next = Some((page, false)),
                KeyCode::Char('g') | KeyCode::Home => next = Some((usize::MAX, true)),
                KeyCode::Char('G') | KeyCode::End => next = Some((usize::MAX, false)),
                _ => {}
            }
            if let Some((n, up)) = next {
                let view = self.space.clone();
                let moved = read_log(src, |log| {
                    let i = log.entries.binary_search_by_key(&cur, |e| e.seq).ok()?;
                    let j = view.walk(log, i, n.min(log.entries.len()), up);
                    let seq = log.entries[j].seq;
                    let mut v = view.clone();
                    v.reveal(log, seq, h);
                    Some((seq, v.bottom))
                })
                .flatten();
                if let Some((seq, bottom)) = moved {
                    self.space.cursor = Some(seq);
                    self.space.bottom = bottom;
                }
            }
            return true;
        }
        false
    }

    /// Enter in the input line: a chat, or a rejection with its reason.
    fn submit(&mut self, input: &Input, src: &dyn PaneSource, out: &mut Vec<Action>) {
        match &input.mode {
            InputMode::Chat => {
                let text = input.text.trim();
                if text.is_empty() {
                    return;
                }
                let to = read_log(src, |log| self.space.recipients(log)).unwrap_or_default();
                self.space.bottom = None;
                out.push(Action::Send(envelopes::chat(text, &to)));
            }
            InputMode::Reason(id) => {
                let reason = match input.text.trim() {
                    "" => DEFAULT_REASON,
                    r => r,
                };
                let p = read_log(src, |log| log.proposal(id).cloned()).flatten();
                match p {
                    Some(p) => {
                        self.space.answered.insert(p.id.clone());
                        self.message = Some(format!("rejected the proposal of {}", p.from));
                        out.push(Action::Send(envelopes::reject(&p, reason)));
                    }
                    None => self.message = Some("that proposal was already answered".into()),
                }
            }
        }
    }

    /// Keys of the space view outside its modes: answering the proposal
    /// shown, the filters, `Esc`. Returns whether the key was taken.
    pub(crate) fn space_key(
        &mut self,
        k: KeyEvent,
        spec: KeySpec,
        src: &dyn PaneSource,
        out: &mut Vec<Action>,
    ) -> bool {
        if self.prefix_armed() {
            if spec == self.keys.prefix() {
                self.mode = Mode::Normal;
                self.space_focus(src);
                return true;
            }
            if k.code == KeyCode::Char('d') && k.modifiers.is_empty() {
                return false; // detach
            }
            // Any other key acts as in the list.
            self.mode = Mode::Normal;
        }
        if !k.modifiers.difference(KeyModifiers::SHIFT).is_empty() {
            return false;
        }
        let first = read_log(src, |log| self.space.open(log).into_iter().next()).flatten();
        match (k.code, first) {
            (KeyCode::Char('a'), Some(p)) => {
                self.space.answered.insert(p.id.clone());
                self.message = Some(format!("approved the proposal of {}", p.from));
                out.push(Action::Send(envelopes::fulfil_request(&p)));
            }
            (KeyCode::Char('g'), Some(p)) => {
                self.space.answered.insert(p.id.clone());
                self.message = Some(format!(
                    "granted {} this call from now on, and approved it",
                    p.from
                ));
                out.push(Action::Send(envelopes::grant(&p)));
                out.push(Action::Send(envelopes::fulfil_request(&p)));
            }
            (KeyCode::Char('r'), Some(p)) => {
                self.details = false;
                self.space.input = Some(Input {
                    mode: InputMode::Reason(p.id),
                    text: String::new(),
                });
            }
            (KeyCode::Char('f'), _) => {
                let who: Vec<String> = read_log(src, |log| {
                    log.members
                        .keys()
                        .filter(|id| !id.starts_with("system:"))
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
                let at = self
                    .space
                    .who
                    .as_ref()
                    .and_then(|w| who.iter().position(|x| x == w));
                self.space.who = match at {
                    None => who.first().cloned(),
                    Some(i) => who.get(i + 1).cloned(),
                };
                self.space.bottom = None;
                self.space.hit = None;
                self.message = Some(match &self.space.who {
                    Some(w) => format!("only envelopes from or to {}", escape(w)),
                    None => "every participant".into(),
                });
            }
            (KeyCode::Char('F'), _) => {
                let at = self
                    .space
                    .kind
                    .and_then(|k| KINDS.iter().position(|x| *x == k));
                self.space.kind = match at {
                    None => KINDS.first().copied(),
                    Some(i) => KINDS.get(i + 1).copied(),
                };
                self.space.bottom = None;
                self.space.hit = None;
                self.message = Some(match self.space.kind {
                    Some(k) => format!("only {k} envelopes"),
                    None => "every kind".into(),
                });
            }
            (KeyCode::Esc, _) => {
                if !self.search.query.is_empty() {
                    self.search = Search::default();
                    self.space.hit = None;
                } else if self.space.who.is_some() || self.space.kind.is_some() {
                    self.space.who = None;
                    self.space.kind = None;
                    self.space.bottom = None;
                } else if self.details {
                    self.details = false;
                } else if self.zoom {
                    self.zoom = false;
                }
            }
            _ => return false,
        }
        true
    }

    /// A command while the space entry is selected. Returns whether it was
    /// handled here (otherwise it acts as for a process).
    pub(crate) fn space_command(
        &mut self,
        cmd: Command,
        src: &dyn PaneSource,
        _out: &mut Vec<Action>,
    ) -> bool {
        match cmd {
            Command::Focus => self.space_focus(src),
            Command::Restart | Command::StopStart | Command::Kill | Command::Mark => {
                self.message = Some("the space is not a process".into());
            }
            Command::Search => {
                self.search = Search {
                    process: SPACE_PANE.into(),
                    ..Search::default()
                };
                self.mode = Mode::Search;
                self.space.hit = None;
            }
            Command::NextMatch | Command::PrevMatch => {
                if self.search.query.is_empty() {
                    self.message = Some(format!(
                        "no search: {} searches",
                        self.keys.first(Command::Search)
                    ));
                } else {
                    self.space_find(src, cmd == Command::NextMatch);
                }
            }
            Command::CopyMode => {
                let h = self.space_rows(src);
                let view = self.space.clone();
                let seq = read_log(src, |log| {
                    view.window(log, h).last().map(|&i| log.entries[i].seq)
                })
                .flatten();
                match seq {
                    Some(s) => {
                        self.space.cursor = Some(s);
                        self.details = false;
                    }
                    None => self.message = Some("no envelopes yet".into()),
                }
            }
            Command::ScrollUp
            | Command::ScrollDown
            | Command::ScrollTop
            | Command::ScrollBottom => self.space_scroll(cmd, src),
            Command::Grid => {
                self.space.selected = false;
                return false;
            }
            _ => return false,
        }
        true
    }

    pub(crate) fn space_scroll(&mut self, cmd: Command, src: &dyn PaneSource) {
        let h = self.space_rows(src);
        self.space_scroll_by(cmd, h.saturating_sub(1).max(1), src);
    }

    pub(crate) fn space_scroll_by(&mut self, cmd: Command, n: usize, src: &dyn PaneSource) {
        let h = self.space_rows(src);
        let view = self.space.clone();
        let bottom = read_log(src, |log| {
            let mut v = view.clone();
            let b = v.bottom_index(log)?;
            let first = (0..log.entries.len()).find(|&i| v.passes(&log.entries[i]))?;
            // The highest anchor that still fills the rows from the top.
            let top_anchor = v.walk(log, first, h.saturating_sub(1), false);
            match cmd {
                Command::ScrollUp => {
                    let to = v.walk(log, b, n, true).max(top_anchor);
                    v.anchor(log, to.min(b));
                }
                Command::ScrollDown => {
                    let to = v.walk(log, b, n, false);
                    v.anchor(log, to);
                }
                Command::ScrollTop => v.anchor(log, top_anchor),
                _ => v.bottom = None,
            }
            v.bottom
        });
        if let Some(b) = bottom {
            self.space.bottom = b;
        }
    }

    /// Moves to the next older (`older`) or newer matching line.
    pub(crate) fn space_find(&mut self, src: &dyn PaneSource, older: bool) {
        let Some(matcher) = Matcher::new(&self.search.query) else {
            return;
        };
        let h = self.space_rows(src);
        let utc = self.clock.is_some();
        let view = self.space.clone();
        let found = read_log(src, |log| {
            let n = log.entries.len();
            let win = view.window(log, h);
            let from = match view
                .hit
                .and_then(|s| log.entries.binary_search_by_key(&s, |e| e.seq).ok())
            {
                Some(i) => i,
                None if older => win.last().map_or(n, |&i| i + 1),
                None => win.first().map_or(0, |&i| i.saturating_sub(1)),
            };
            let hit = |i: &usize| {
                let e = &log.entries[*i];
                view.passes(e) && !matcher.find(&line_text(&plain(e, utc))).is_empty()
            };
            let i = if older {
                (0..from.min(n)).rev().find(hit)
            } else if view.hit.is_none() && win.first() == Some(&0) {
                None
            } else {
                (from + 1..n).find(hit)
            }?;
            let seq = log.entries[i].seq;
            let mut v = view.clone();
            v.reveal(log, seq, h);
            Some((seq, v.bottom))
        })
        .flatten();
        match found {
            Some((seq, bottom)) => {
                self.space.hit = Some(seq);
                self.space.bottom = bottom;
            }
            None => self.no_match(older, self.space.hit.is_some()),
        }
    }

    /// A click on the space entry's pane: focus its input.
    pub(crate) fn space_click(&mut self, src: &dyn PaneSource) {
        self.space_select();
        self.details = false;
        if self.space.input.is_none() {
            self.space_focus(src);
        }
    }

    /// A paste into the input line.
    pub(crate) fn space_paste(&mut self, text: &str) -> bool {
        let Some(input) = self.space.input.as_mut().filter(|_| self.space.on) else {
            return false;
        };
        for c in text.chars() {
            if input.text.chars().count() >= INPUT_MAX {
                break;
            }
            input
                .text
                .push(if c.is_control() || c == '\n' { ' ' } else { c });
        }
        true
    }

    // ----- drawing ---------------------------------------------------------

    /// The row of the space entry in the process list.
    pub(crate) fn space_row(&self, src: &dyn PaneSource, w: usize, theme: Theme) -> Line<'static> {
        let (link, open, here) = read_log(src, |log| {
            (
                log.link.clone(),
                self.space.open(log).len(),
                log.members.values().filter(|m| m.connected).count(),
            )
        })
        .unwrap_or_default();
        let glyph_style = match link {
            Link::Joined(_) => theme.participant_glyph(true),
            Link::Connecting => theme.message(),
            Link::Lost(_) => theme.error(),
            Link::None => theme.dim(),
        };
        let info = if open > 0 {
            format!("⚑{open}")
        } else {
            match link {
                Link::Joined(_) => format!("{here} here"),
                Link::Connecting => "joining".into(),
                Link::Lost(_) => "lost".into(),
                Link::None => "off".into(),
            }
        };
        let info_w = unicode_width::UnicodeWidthStr::width(info.as_str());
        let name_w = w.saturating_sub(info_w + 4);
        let name = super::draw::fit("space", name_w);
        let pad = name_w.saturating_sub(unicode_width::UnicodeWidthStr::width(name.as_str()));
        let selected = self.space.selected;
        let base = if selected {
            theme.selected_row()
        } else {
            Style::new()
        };
        let info_style = if selected {
            base
        } else if open > 0 {
            theme.message()
        } else {
            theme.dim()
        };
        Line::from(vec![
            Span::styled("◆", if selected { base } else { glyph_style }),
            Span::styled(" ", base),
            Span::styled(
                format!("{name}{} ", " ".repeat(pad)),
                if selected {
                    base.add_modifier(Modifier::BOLD)
                } else {
                    base
                },
            ),
            Span::styled(format!("{info} "), info_style),
        ])
    }

    /// Proposals waiting (for the header).
    pub(crate) fn space_open_count(&self, src: &dyn PaneSource) -> usize {
        if !self.space.on {
            return 0;
        }
        read_log(src, |log| self.space.open(log).len()).unwrap_or(0)
    }

    pub(crate) fn draw_space(
        &self,
        frame: &mut Frame<'_>,
        p: &PaneRect,
        src: &dyn PaneSource,
        theme: Theme,
    ) {
        let view = self.view();
        let input = self.space.input.as_ref();
        let utc = self.clock.is_some();
        let area = p.inner;
        // What is drawn, copied out of the log (held locked while read).
        struct Snap {
            link: Link,
            open: Vec<Pending>,
            rows: Vec<Entry>,
            scrolled: usize,
            to: Vec<String>,
            total: usize,
        }
        let used = u16::from(input.is_some());
        let prompt_rows = 2u16;
        let snap = read_log(src, |log| {
            let open = self.space.open(log);
            let prompt = if open.is_empty() { 0 } else { prompt_rows };
            let h = usize::from(area.height.saturating_sub(used + prompt));
            let win = self.space.window(log, h);
            let scrolled = match (self.space.bottom, win.last()) {
                (Some(_), Some(&b)) => log.entries.len() - 1 - b,
                _ => 0,
            };
            Snap {
                link: log.link.clone(),
                open,
                rows: win.iter().map(|&i| log.entries[i].clone()).collect(),
                scrolled,
                to: self.space.recipients(log),
                total: log.entries.len(),
            }
        });
        let Some(snap) = snap else {
            return;
        };
        if view != View::Zoom {
            let mut title = vec![
                Span::raw(" "),
                Span::styled("◆", theme.label()),
                Span::styled(" space ", theme.label()),
                Span::styled(format!("{} ", link_text(&snap.link)), theme.dim()),
            ];
            let filter = self.space.filter_text();
            if !filter.is_empty() {
                title.push(Span::styled(format!("[{filter}] "), theme.message()));
            }
            if input.is_some() {
                title.push(Span::styled(" TALK ", theme.mode()));
            } else if self.space.cursor.is_some() {
                title.push(Span::styled(" LINE ", theme.mode()));
            }
            let mut block = Block::bordered().title(Line::from(title));
            block = if input.is_some() {
                block
                    .border_type(BorderType::Thick)
                    .border_style(theme.border_focused())
            } else {
                block.border_style(theme.border())
            };
            if snap.scrolled > 0 {
                block = block.title_top(
                    Line::from(Span::styled(
                        format!(" ↑{}/{} ", snap.scrolled, snap.total),
                        theme.message(),
                    ))
                    .right_aligned(),
                );
            }
            frame.render_widget(block, p.outer);
        }
        if self.details && view == View::List {
            self.draw_participants(frame, area, src, theme);
            return;
        }
        let prompt = if snap.open.is_empty() { 0 } else { prompt_rows };
        let lines_h = area.height.saturating_sub(used + prompt);
        let lines_area = Rect::new(area.x, area.y, area.width, lines_h);
        if snap.rows.is_empty() {
            let text = match &snap.link {
                Link::Joined(_) if self.space.who.is_some() || self.space.kind.is_some() => {
                    "no envelope matches the filter (Esc clears it)".to_string()
                }
                Link::Joined(_) => "no envelopes yet".to_string(),
                other => link_text(other),
            };
            frame.render_widget(Paragraph::new(text).style(theme.dim()), lines_area);
        }
        let matcher = if !self.search.query.is_empty() && self.search.process == SPACE_PANE {
            Matcher::new(&self.search.query)
        } else {
            None
        };
        let buf = frame.buffer_mut();
        for (r, e) in snap.rows.iter().enumerate() {
            let y = lines_area.y + r as u16;
            if y >= lines_area.bottom() {
                break;
            }
            let mut cells = segments(e, utc, theme);
            if let Some(m) = &matcher {
                let text: String = cells.iter().map(|c| c.0).collect();
                let current = self.space.hit == Some(e.seq);
                for (s, end) in m.find(&line_text(&text)) {
                    for c in cells.iter_mut().take(usize::from(end)).skip(usize::from(s)) {
                        c.1 = if current {
                            theme.search_current()
                        } else {
                            theme.search_match()
                        };
                    }
                }
            }
            if self.space.cursor == Some(e.seq) {
                for c in cells.iter_mut() {
                    c.1 = theme.copy_cursor();
                }
                buf.set_style(Rect::new(area.x, y, area.width, 1), theme.copy_cursor());
            }
            put_cells(buf, area.x, y, area.width, &cells);
        }
        let mut y = lines_area.bottom();
        if let Some(p) = snap.open.first() {
            let n = snap.open.len();
            let head = format!(
                "⚑ {} proposes{}: {}",
                escape(&p.from),
                if n > 1 {
                    format!(" (1 of {n})")
                } else {
                    String::new()
                },
                proposal_text(p)
            );
            let w = usize::from(area.width);
            frame.render_widget(
                Paragraph::new(super::draw::fit(&head, w)).style(theme.proposal()),
                Rect::new(area.x, y, area.width, 1),
            );
            let keys = Line::from(vec![
                Span::styled("  a", theme.key()),
                Span::raw(" approve  "),
                Span::styled("g", theme.key()),
                Span::raw(" grant (from now on)  "),
                Span::styled("r", theme.key()),
                Span::raw(" reject"),
            ]);
            frame.render_widget(
                Paragraph::new(keys),
                Rect::new(area.x, y + 1, area.width, 1),
            );
            y += prompt;
        }
        if let Some(input) = input {
            let (label, text, placeholder) = match &input.mode {
                InputMode::Chat => (format!("to {} › ", to_text(&snap.to)), &input.text, ""),
                InputMode::Reason(_) => ("reason › ".to_string(), &input.text, DEFAULT_REASON),
            };
            let w = usize::from(area.width);
            let label_w = unicode_width::UnicodeWidthStr::width(label.as_str()).min(w / 2);
            let label = super::draw::fit(&label, label_w);
            // The end of the text stays visible.
            let room = w.saturating_sub(label_w + 1);
            let chars: Vec<char> = text.chars().collect();
            let mut shown = String::new();
            let mut sw = 0;
            for c in chars.iter().rev() {
                let cw = unicode_width::UnicodeWidthChar::width(*c).unwrap_or(0);
                if sw + cw > room {
                    break;
                }
                sw += cw;
                shown.insert(0, *c);
            }
            let mut spans = vec![Span::styled(label.clone(), theme.label())];
            if text.is_empty() && !placeholder.is_empty() {
                spans.push(Span::styled(placeholder, theme.dim()));
            } else {
                spans.push(Span::raw(shown));
            }
            frame.render_widget(
                Paragraph::new(Line::from(spans)),
                Rect::new(area.x, y, area.width, 1),
            );
            if !self.overlay() && self.space.json.is_none() {
                let x = area.x + u16::try_from(label_w + sw).unwrap_or(0);
                frame.set_cursor_position(Position::new(x.min(area.right() - 1), y));
            }
        }
    }

    fn draw_participants(
        &self,
        frame: &mut Frame<'_>,
        area: Rect,
        src: &dyn PaneSource,
        theme: Theme,
    ) {
        let w = usize::from(area.width);
        let lines = read_log(src, |log| {
            let mut lines: Vec<Line<'static>> = Vec::new();
            let connected = log.members.values().filter(|m| m.connected).count();
            lines.push(Line::from(vec![
                Span::styled("participants", theme.label()),
                Span::styled(
                    format!(" — {connected} connected · {}", link_text(&log.link)),
                    theme.dim(),
                ),
            ]));
            for (id, m) in &log.members {
                let (glyph, gs) = if m.connected {
                    ("●", theme.participant_glyph(true))
                } else {
                    ("○", theme.dim())
                };
                let mut spans = vec![
                    Span::styled(glyph, gs),
                    Span::raw(" "),
                    Span::styled(escape(id).into_owned(), theme.participant(id)),
                ];
                if Some(id.as_str()) == log.me() {
                    spans.push(Span::styled(" (mew: you)", theme.dim()));
                }
                if !m.connected {
                    spans.push(Span::styled(" not connected", theme.dim()));
                }
                lines.push(Line::from(spans));
                let caps: Vec<String> = m.capabilities.iter().map(cap_text).collect();
                let caps = if caps.is_empty() {
                    "—".to_string()
                } else {
                    caps.join(", ")
                };
                labelled(
                    &mut lines,
                    "  can     ",
                    &caps,
                    w,
                    theme.dim(),
                    Style::new(),
                );
                if !m.granted.is_empty() {
                    let g: Vec<String> = m.granted.iter().map(cap_text).collect();
                    let g = g.join(", ");
                    labelled(
                        &mut lines,
                        "  granted ",
                        &g,
                        w,
                        theme.dim(),
                        theme.message(),
                    );
                }
            }
            if log.members.is_empty() {
                lines.push(Line::from(Span::styled("(nobody yet)", theme.dim())));
            }
            lines.push(Line::raw(""));
            lines.push(Line::from(Span::styled("streams", theme.label())));
            for (id, s) in &log.streams {
                lines.push(Line::raw(super::draw::fit(
                    &escape(&format!("  {id} by {} {}", s.owner, s.description)),
                    w,
                )));
            }
            if log.streams.is_empty() {
                lines.push(Line::from(Span::styled("  (none open)", theme.dim())));
            }
            lines.push(Line::raw(""));
            lines.push(Line::from(vec![
                Span::styled("chat goes to ", theme.label()),
                Span::raw(to_text(&self.space.recipients(log))),
            ]));
            lines
        })
        .unwrap_or_default();
        frame.render_widget(Paragraph::new(lines), area);
    }

    /// The overlay with one envelope as pretty JSON.
    pub(crate) fn draw_json(
        &self,
        frame: &mut Frame<'_>,
        area: Rect,
        src: &dyn PaneSource,
        theme: Theme,
    ) {
        let Some(j) = self.space.json else {
            return;
        };
        let Some((text, head)) = read_log(src, |log| {
            log.entries
                .iter()
                .find(|e| e.seq == j.seq)
                .map(|e| (pretty(&e.raw), e.summary.clone()))
        })
        .flatten() else {
            return;
        };
        let lines: Vec<Line<'_>> = text
            .lines()
            .map(|l| Line::raw(escape(l).into_owned()))
            .collect();
        let r = Rect::new(
            area.x + 2,
            area.y + 1,
            area.width.saturating_sub(4),
            area.height.saturating_sub(2),
        );
        frame.render_widget(Clear, r);
        let title = format!(
            " envelope #{} · {} · {} ",
            j.seq,
            escape(if head.from.is_empty() {
                "stream"
            } else {
                &head.from
            }),
            escape(&head.kind)
        );
        let block = Block::bordered()
            .border_style(theme.border_selected())
            .title(Span::styled(
                super::draw::fit(&title, usize::from(r.width.saturating_sub(2))),
                theme.label(),
            ))
            .title_bottom(
                Line::from(Span::styled(
                    " j/k scroll · y copy · Esc closes ",
                    theme.dim(),
                ))
                .right_aligned(),
            );
        frame.render_widget(
            Paragraph::new(lines)
                .block(block)
                .wrap(Wrap { trim: false })
                .scroll((j.scroll, 0)),
            r,
        );
    }

    /// The footer while the space entry is selected.
    pub(crate) fn space_footer(&self, spans: &mut Vec<Span<'static>>, width: u16, theme: Theme) {
        let k = |c: Command| self.keys.first(c);
        let mut pairs: Vec<(String, String, u8)> = Vec::new();
        if self.space.json.is_some() {
            pairs.push(("j/k".into(), "scroll".into(), 0));
            pairs.push(("y".into(), "copy".into(), 0));
            pairs.push(("Esc".into(), "close".into(), 0));
        } else if let Some(input) = &self.space.input {
            match input.mode {
                InputMode::Chat => {
                    spans.push(Span::styled(" TALK ", theme.mode()));
                    pairs.push(("Enter".into(), "send".into(), 0));
                    pairs.push(("Tab".into(), "to".into(), 0));
                    pairs.push(("Esc".into(), "leave".into(), 0));
                    pairs.push((format!("{} d", k(Command::Prefix)), "detach".into(), 2));
                }
                InputMode::Reason(_) => {
                    spans.push(Span::styled(" REJECT ", theme.mode()));
                    pairs.push(("Enter".into(), "send".into(), 0));
                    pairs.push(("Esc".into(), "cancel".into(), 0));
                }
            }
        } else if self.space.cursor.is_some() {
            spans.push(Span::styled(" LINE ", theme.mode()));
            pairs.push(("j/k".into(), "move".into(), 0));
            pairs.push(("Enter".into(), "envelope".into(), 0));
            pairs.push(("y".into(), "copy".into(), 1));
            pairs.push(("Esc".into(), "leave".into(), 0));
        } else {
            if self.view() == View::Zoom {
                spans.push(Span::styled(" ZOOM space ", theme.mode()));
            }
            if self.prefix_armed() {
                let p = k(Command::Prefix);
                spans.push(Span::styled(format!(" {p}… "), theme.mode()));
                pairs.push((p.clone(), "talk".into(), 0));
                pairs.push(("d".into(), "detach".into(), 0));
            }
            if !self.search.query.is_empty() && self.search.process == SPACE_PANE {
                spans.push(Span::styled(
                    format!(" /{} ", self.search.query),
                    theme.key(),
                ));
                pairs.push((
                    format!("{}/{}", k(Command::NextMatch), k(Command::PrevMatch)),
                    "older/newer".into(),
                    1,
                ));
            }
            pairs.push((k(Command::Focus), "talk".into(), 0));
            pairs.push((k(Command::CopyMode), "lines".into(), 1));
            pairs.push(("f/F".into(), "filter".into(), 2));
            pairs.push((k(Command::Details), "participants".into(), 2));
            pairs.push((k(Command::Search), "search".into(), 3));
            pairs.push((
                format!("{}/{}", k(Command::Down), k(Command::Up)),
                "select".into(),
                3,
            ));
            pairs.push((k(Command::Help), "help".into(), 0));
            pairs.push((k(Command::Detach), "detach".into(), 3));
            pairs.push((k(Command::Quit), "quit".into(), 0));
        }
        let used: usize = spans.iter().map(|s| s.width()).sum();
        let room = usize::from(width).saturating_sub(used);
        for (key, what) in super::draw::fit_keys(pairs, room) {
            spans.push(Span::styled(format!(" {key}"), theme.key()));
            spans.push(Span::raw(format!(" {what} ")));
        }
    }
}

/// `text` wrapped to `w` after a 10-column `label` (blank on the
/// continuation lines).
fn labelled(
    lines: &mut Vec<Line<'_>>,
    label: &'static str,
    text: &str,
    w: usize,
    label_style: Style,
    style: Style,
) {
    for (i, l) in super::draw::wrap(text, w.saturating_sub(10))
        .into_iter()
        .enumerate()
    {
        lines.push(Line::from(vec![
            Span::styled(if i == 0 { label } else { "          " }, label_style),
            Span::styled(l, style),
        ]));
    }
}

/// The link as a few words.
fn link_text(l: &Link) -> String {
    match l {
        Link::None => "not connected".into(),
        Link::Connecting => "joining…".into(),
        Link::Joined(id) => format!("as {}", escape(id)),
        Link::Lost(why) => format!("lost: {}", escape(why)),
    }
}

/// An envelope pretty-printed (a frame that is not JSON as it came).
fn pretty(raw: &str) -> String {
    match serde_json::from_str::<Value>(raw) {
        Ok(v) => serde_json::to_string_pretty(&v).unwrap_or_else(|_| raw.to_owned()),
        Err(_) => raw.to_owned(),
    }
}

/// A line as the matcher reads it: one column per character.
fn line_text(s: &str) -> LineText {
    let chars: Vec<char> = s.chars().collect();
    let n = chars.len();
    LineText {
        chars,
        cols: (0..n)
            .map(|i| u16::try_from(i).unwrap_or(u16::MAX))
            .collect(),
        widths: vec![1; n],
        wrapped: false,
    }
}

/// The line of an entry as plain text (what the search reads).
fn plain(e: &Entry, utc: bool) -> String {
    segments(e, utc, Theme { color: false })
        .into_iter()
        .map(|c| c.0)
        .collect()
}

/// The characters of an entry's line with their styles: time, `from → to`,
/// kind, summary. Every string from the network is escaped.
fn segments(e: &Entry, utc: bool, theme: Theme) -> Vec<(char, Style)> {
    let s = &e.summary;
    let mut out: Vec<(char, Style)> = Vec::new();
    let mut push = |text: &str, style: Style| {
        for c in text.chars() {
            out.push((c, style));
        }
    };
    push(&clock_text(e.at, utc), theme.dim());
    push(" ", Style::new());
    if s.from.is_empty() {
        // A stream data frame.
        push(&format!("⇢ {}: {}", s.kind, s.text), theme.dim());
        return out;
    }
    let tone = match s.tone {
        Tone::Plain | Tone::Chat => theme.text(),
        Tone::Denied => theme.denied(),
        Tone::Proposal => theme.proposal(),
        Tone::System => theme.dim(),
    };
    push(&escape(&s.from), theme.participant(&s.from));
    push(" → ", theme.dim());
    if s.to.is_empty() {
        push("*", theme.dim());
    } else {
        for (i, t) in s.to.iter().enumerate() {
            if i > 0 {
                push(",", theme.dim());
            }
            push(&escape(t), theme.participant(t));
        }
    }
    push(" ", Style::new());
    let kind_style = if s.tone == Tone::Chat {
        theme.dim()
    } else {
        tone
    };
    push(&escape(&s.kind), kind_style);
    if !s.text.is_empty() {
        push(": ", kind_style);
        push(&s.text, tone);
    }
    out
}

/// Writes styled characters from `x` on one row, at most `w` columns, with
/// `…` when cut.
fn put_cells(buf: &mut ratatui::buffer::Buffer, x: u16, y: u16, w: u16, cells: &[(char, Style)]) {
    use unicode_width::UnicodeWidthChar;
    let total: usize = cells.iter().map(|c| c.0.width().unwrap_or(0)).sum();
    let w = usize::from(w);
    let limit = if total > w { w.saturating_sub(1) } else { w };
    let mut used = 0;
    let mut last = Style::new();
    for (c, style) in cells {
        let cw = c.width().unwrap_or(0);
        if cw == 0 {
            continue;
        }
        if used + cw > limit {
            break;
        }
        let cx = x + u16::try_from(used).unwrap_or(0);
        buf.set_stringn(cx, y, c.to_string(), cw, *style);
        used += cw;
        last = *style;
    }
    if total > w && w > 0 {
        buf.set_stringn(x + u16::try_from(used).unwrap_or(0), y, "…", 1, last);
    }
}

impl App {
    /// The space pane's name in the layout, when the space is shown.
    pub(crate) fn space_pane(&self) -> Option<String> {
        (self.space_selected() && self.view() != View::Grid).then(|| SPACE_PANE.to_string())
    }
}

/// Whether a layout pane is the space view's.
pub(crate) fn is_space_pane(p: &PaneRect) -> bool {
    p.name == SPACE_PANE
}
