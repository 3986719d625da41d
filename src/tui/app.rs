//! One attached client's view: what is selected, focused, marked, scrolled,
//! searched; which mode and overlay is showing. Events in, actions out.
//! Drawing lives in `draw.rs` and is a pure function of this state.

use std::collections::{BTreeSet, HashMap};

use crate::protocol::input::{
    InputEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent,
    MouseEventKind,
};
use ratatui::layout::Rect;

use super::input::{key_to_pty_bytes, mouse_to_pty_bytes, paste_to_pty_bytes};
use super::keys::{Command, KeyMap, KeySpec};
use super::layout::{self, ScreenLayout, View};
use super::list::Grouping;
use super::merged::{MERGED_PANE, Merged};
use super::pane::{self, Match, Matcher, Pos, ScreenInfo};
use super::space::{SPACE_PANE, SpaceView};
use super::{Action, PaneSource, SpaceNotes};
use crate::status::{Millis, ProcState, ProcessStatus, SpaceStatus, signal_name};

/// Lines scrolled by one mouse wheel step.
const WHEEL_LINES: usize = 3;

/// A question waiting for y/n.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Confirm {
    Quit,
    Kill(String),
    RestartAll,
}

/// A view scrolled into the scrollback, pinned to the content: when new
/// output pushes lines into the scrollback, the offset grows with it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Scroll {
    pub offset: usize,
    pub at_len: usize,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Search {
    pub query: String,
    pub current: Option<Match>,
    /// The process the current match belongs to.
    pub process: String,
}

/// What this client's keys do now: one mode at a time. The key handling
/// (`App::on_key`) and the footer (`draw.rs`) both read it, so the
/// precedence between modes is written once: the mode itself.
#[derive(Clone, Debug, Default)]
pub(crate) enum Mode {
    /// Keys are commands (the list, grid or zoom).
    #[default]
    Normal,
    /// The prefix key was pressed: the next key is a command (the prefix
    /// again sends it to the process, `d` detaches).
    Prefix,
    /// Every key goes to the selected process's PTY. `pid` is that
    /// process's run when focus was taken: another run ends the focus.
    Focus { pid: Option<u32> },
    /// Typing the search query (`App::search` holds it).
    Search,
    /// Typing the process list's filter (`App::filter` holds it).
    Filter,
    /// Copy mode: a cursor and maybe a selection in one process's output.
    Copy(Copy),
    /// The help overlay.
    Help,
    /// A question waiting for y/n.
    Confirm(Confirm),
    /// The space is stopping: `at` is when this client started showing it,
    /// `killing` that a second quit is killing everything.
    Quitting { at: Millis, killing: bool },
}

#[derive(Clone, Debug)]
pub(crate) struct Copy {
    pub process: String,
    pub cursor: Pos,
    pub anchor: Option<Pos>,
}

/// The TUI state of one attached client.
pub struct App {
    pub(crate) keys: KeyMap,
    pub(crate) color: bool,
    pub(crate) size: (u16, u16),
    pub(crate) selected: Option<String>,
    pub(crate) mode: Mode,
    pub(crate) grid: bool,
    pub(crate) zoom: bool,
    pub(crate) details: bool,
    pub(crate) marked: BTreeSet<String>,
    pub(crate) search: Search,
    pub(crate) scroll: HashMap<String, Scroll>,
    pub(crate) message: Option<String>,
    pub(crate) notes: SpaceNotes,
    pub(crate) clock: Option<Millis>,
    sent_sizes: HashMap<String, (u16, u16)>,
    /// The space view (see `space.rs`).
    pub(crate) space: SpaceView,
    /// The process list shows only names containing this (see `list.rs`).
    pub(crate) filter: String,
    pub(crate) group: Grouping,
    /// The merged view of every process's output (see `merged.rs`).
    pub(crate) merged: Merged,
}

impl App {
    /// A client view with the `ui.keys` bindings applied. The error names the
    /// bad entry (unknown action, unparsable key, key bound twice).
    pub fn new(keys: &[(String, String)]) -> Result<App, String> {
        Ok(App {
            keys: KeyMap::from_config(keys)?,
            color: true,
            size: (80, 24),
            selected: None,
            mode: Mode::Normal,
            grid: false,
            zoom: false,
            details: false,
            marked: BTreeSet::new(),
            search: Search::default(),
            scroll: HashMap::new(),
            message: None,
            notes: SpaceNotes::default(),
            clock: None,
            sent_sizes: HashMap::new(),
            space: SpaceView::default(),
            filter: String::new(),
            group: Grouping::None,
            merged: Merged::default(),
        })
    }

    /// What the TUI shows of the space's configuration: the description,
    /// the warnings, the stop timeouts for the countdown while stopping.
    pub fn set_notes(&mut self, notes: SpaceNotes) {
        self.notes = notes;
    }

    /// Chrome colours on or off (off when the client has `NO_COLOR` set).
    pub fn set_color(&mut self, color: bool) {
        self.color = color;
    }

    /// The client's terminal size (also updated by `Event::Resize`).
    pub fn set_size(&mut self, cols: u16, rows: u16) {
        self.size = (cols, rows);
    }

    pub fn size(&self) -> (u16, u16) {
        self.size
    }

    /// Freezes "now" for uptimes and ages (tests); `None` uses the clock.
    pub fn set_clock(&mut self, now: Option<Millis>) {
        self.clock = now;
    }

    pub(crate) fn now(&self) -> Millis {
        self.clock.unwrap_or_else(crate::status::now_millis)
    }

    /// The selected process, if any.
    /// Show a one-line message in the footer (e.g. why an envelope was not sent).
    pub fn note(&mut self, msg: &str) {
        self.message = Some(msg.to_owned());
    }

    /// Whether the space view is on screen: only then does a new envelope
    /// need a redraw (the view costs nothing when nobody looks at it).
    pub fn shows_space(&self) -> bool {
        !self.is_quitting() && self.space_pane().is_some()
    }

    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// The process receiving this client's keys, if focused.
    pub fn focused_process(&self) -> Option<&str> {
        if self.focused() {
            self.selected.as_deref()
        } else {
            None
        }
    }

    /// Switches to the quitting view: each process's state as it stops.
    /// Called on every attached client once a quit was confirmed.
    pub fn quitting(&mut self) {
        self.drop_transient();
        if !self.is_quitting() {
            self.mode = Mode::Quitting {
                at: self.now(),
                killing: false,
            };
        }
    }

    /// Whether this client's keys go to the selected process.
    pub(crate) fn focused(&self) -> bool {
        matches!(self.mode, Mode::Focus { .. })
    }

    /// Takes focus on the selected process (its run is noted by `update`).
    pub(crate) fn focus(&mut self) {
        self.mode = Mode::Focus { pid: None };
    }

    /// Leaves focus or copy mode for the list (other modes stay).
    pub(crate) fn unfocus(&mut self) {
        if matches!(self.mode, Mode::Focus { .. } | Mode::Copy(_)) {
            self.mode = Mode::Normal;
        }
    }

    pub(crate) fn prefix_armed(&self) -> bool {
        matches!(self.mode, Mode::Prefix)
    }

    pub(crate) fn copy(&self) -> Option<&Copy> {
        match &self.mode {
            Mode::Copy(c) => Some(c),
            _ => None,
        }
    }

    /// When this client started showing the space stopping.
    pub(crate) fn quit_at(&self) -> Option<Millis> {
        match self.mode {
            Mode::Quitting { at, .. } => Some(at),
            _ => None,
        }
    }

    /// A second quit while stopping: everything is being killed.
    pub(crate) fn killing(&self) -> bool {
        matches!(self.mode, Mode::Quitting { killing: true, .. })
    }

    /// Whether a dialog or the help overlay covers the screen.
    pub(crate) fn overlay(&self) -> bool {
        matches!(self.mode, Mode::Confirm(_) | Mode::Help)
    }

    /// Follows the status: when the focused process has ended (or a new run
    /// of it replaced the one focused), focus is left and the footer says
    /// why. Returns whether focus was left. The server calls this before
    /// every frame; `handle_event` calls it first.
    pub fn update(&mut self, src: &dyn PaneSource) -> bool {
        self.sync_space(src);
        let Mode::Focus { pid } = self.mode else {
            return false;
        };
        let st = src.status();
        let Some(p) = self.current(st) else {
            self.mode = Mode::Normal;
            return true;
        };
        let new_run = matches!((pid, p.pid), (Some(a), Some(b)) if a != b);
        if p.state.is_alive() && !new_run {
            if pid.is_none() {
                self.mode = Mode::Focus { pid: p.pid };
            }
            return false;
        }
        self.message = Some(format!("{} {}: focus left", p.name, how_it_ended(p)));
        self.mode = Mode::Normal;
        true
    }

    /// Forget what belongs to the moment: focus, a half-typed prefix,
    /// dialogs, help, copy mode, search editing.
    fn drop_transient(&mut self) {
        if !self.is_quitting() {
            self.mode = Mode::Normal;
        }
        self.drop_space_transient();
    }

    pub fn is_quitting(&self) -> bool {
        matches!(self.mode, Mode::Quitting { .. })
    }

    /// Readies a view that a client left (detach, lost connection) for the
    /// next client to attach: the selection, view (grid, zoom, details),
    /// marks, search and scroll positions stay, so that client sees what was
    /// there; what belonged to the moment goes (focus, a half-typed prefix,
    /// dialogs, help, copy mode, the footer message), and every pane's size
    /// is sent again for the new terminal.
    pub fn resume(&mut self) {
        self.drop_transient();
        self.message = None;
        self.sent_sizes.clear();
    }

    // ----- view geometry -------------------------------------------------

    pub(crate) fn view(&self) -> View {
        if self.zoom {
            View::Zoom
        } else if self.grid {
            View::Grid
        } else {
            View::List
        }
    }

    /// The processes the grid tiles: the marked ones if any, else the ones
    /// running or ended unexpectedly (stopped, idle, pending and cleanly
    /// exited ones are left out).
    pub(crate) fn grid_names(&self, st: &SpaceStatus) -> Vec<String> {
        let marked: Vec<String> = st
            .processes
            .iter()
            .filter(|p| self.marked.contains(&p.name))
            .map(|p| p.name.clone())
            .collect();
        if !marked.is_empty() {
            return marked;
        }
        st.processes
            .iter()
            .filter(|p| match p.state {
                ProcState::Exited { code } => code != 0,
                ProcState::Killed { .. } | ProcState::Failed { .. } | ProcState::Backoff { .. } => {
                    true
                }
                ref s => s.is_alive(),
            })
            .map(|p| p.name.clone())
            .collect()
    }

    /// The selected process's status: the remembered name, or the first process.
    pub(crate) fn current<'a>(&self, st: &'a SpaceStatus) -> Option<&'a ProcessStatus> {
        self.selected
            .as_ref()
            .and_then(|n| st.processes.iter().find(|p| &p.name == n))
            .or_else(|| st.processes.first())
    }

    pub(crate) fn current_name(&self, st: &SpaceStatus) -> Option<String> {
        self.current(st).map(|p| p.name.clone())
    }

    pub(crate) fn list_width(&self, st: &SpaceStatus, cols: u16) -> u16 {
        let longest = st
            .processes
            .iter()
            .map(|p| p.name.chars().count())
            .chain(st.participants.iter().map(|p| p.name.chars().count()))
            .chain(self.space.on.then_some("space".len()))
            .max()
            .unwrap_or(4);
        layout::list_width(cols, longest)
    }

    pub(crate) fn layout_for(&self, area: Rect, st: &SpaceStatus) -> ScreenLayout {
        let view = self.view();
        let panes = match view {
            View::Grid => self.grid_names(st),
            View::List | View::Zoom => match self.space_pane().or_else(|| self.merged_pane()) {
                Some(pane) => vec![pane],
                None => self.current_name(st).into_iter().collect(),
            },
        };
        layout::screen_layout(area, view, self.list_width(st, area.width), &panes)
    }

    pub(crate) fn layout(&self, st: &SpaceStatus) -> ScreenLayout {
        self.layout_for(Rect::new(0, 0, self.size.0, self.size.1), st)
    }

    /// The size of the pane each visible process terminal is drawn in, as
    /// (name, rows, cols): what its PTY should be set to (TIOCSWINSZ).
    pub fn desired_sizes(&self, src: &dyn PaneSource) -> Vec<(String, u16, u16)> {
        if self.is_quitting() {
            return Vec::new();
        }
        self.layout(src.status())
            .panes
            .into_iter()
            .filter(|p| {
                p.inner.width > 0
                    && p.inner.height > 0
                    && p.name != SPACE_PANE
                    && p.name != MERGED_PANE
            })
            .map(|p| (p.name, p.inner.height, p.inner.width))
            .collect()
    }

    /// `Resize` actions for panes whose size changed since this client last
    /// asked. `handle_event` appends them itself; the server should also call
    /// this after a status change (a process joining the grid changes sizes).
    pub fn take_resizes(&mut self, src: &dyn PaneSource) -> Vec<Action> {
        let mut out = Vec::new();
        for (name, rows, cols) in self.desired_sizes(src) {
            if self.sent_sizes.get(&name) != Some(&(rows, cols)) {
                self.sent_sizes.insert(name.clone(), (rows, cols));
                out.push(Action::Resize {
                    process: name,
                    rows,
                    cols,
                });
            }
        }
        out
    }

    /// The effective scroll offset of a process's view (0 = live).
    pub(crate) fn offset(&self, name: &str, scrollback: usize) -> usize {
        match self.scroll.get(name) {
            None => 0,
            Some(s) => (s.offset + scrollback.saturating_sub(s.at_len)).min(scrollback),
        }
    }

    fn set_offset(&mut self, name: &str, offset: usize, scrollback: usize) {
        let offset = offset.min(scrollback);
        if offset == 0 {
            self.scroll.remove(name);
        } else {
            self.scroll.insert(
                name.to_string(),
                Scroll {
                    offset,
                    at_len: scrollback,
                },
            );
        }
    }

    /// Height of the pane showing `name` (falls back to the main pane).
    fn pane_height(&self, src: &dyn PaneSource, name: &str) -> u16 {
        let l = self.layout(src.status());
        l.panes
            .iter()
            .find(|p| p.name == name)
            .or(l.panes.first())
            .map_or(1, |p| p.inner.height.max(1))
    }

    /// Lines visible in `name`'s pane: (first absolute line, count).
    fn visible(&self, src: &dyn PaneSource, name: &str, info: &ScreenInfo) -> (usize, usize) {
        let h = self.pane_height(src, name);
        let off = self.offset(name, info.scrollback);
        let shift = pane::row_shift(info, h, off);
        let first = info.scrollback - off + usize::from(shift);
        (first, usize::from(h.min(info.rows)))
    }

    /// Scrolls `name` so that absolute `line` is visible (centred if it was not).
    fn reveal(&mut self, src: &dyn PaneSource, name: &str, line: usize) {
        let Some(info) = pane::screen_info(src, name) else {
            return;
        };
        let (first, count) = self.visible(src, name, &info);
        if line >= first && line < first + count {
            return;
        }
        let h = usize::from(self.pane_height(src, name).min(info.rows));
        let sb = info.scrollback;
        let live_shift = usize::from(pane::row_shift(&info, h as u16, 0));
        if line >= sb + live_shift && line < sb + live_shift + h {
            self.set_offset(name, 0, sb);
            return;
        }
        let scrolled_shift = usize::from(info.rows) - h;
        let offset = (sb + scrolled_shift + h / 2)
            .saturating_sub(line)
            .clamp(1, sb.max(1));
        self.set_offset(name, offset, sb);
    }

    // ----- events --------------------------------------------------------

    /// Applies one client event; returns what the server must do.
    pub fn handle_event(&mut self, ev: impl Into<InputEvent>, src: &dyn PaneSource) -> Vec<Action> {
        let ev = ev.into();
        let mut out = Vec::new();
        // A key or paste meant for a process that has just ended is dropped
        // (the user has not seen the footer say so yet), not taken as a command.
        let left_focus = self.update(src);
        match ev {
            InputEvent::Key(_) | InputEvent::Paste(_) if left_focus => {}
            InputEvent::Resize { cols, rows } => self.size = (cols, rows),
            InputEvent::Key(k) if k.kind != KeyEventKind::Release => self.on_key(k, src, &mut out),
            InputEvent::Mouse(m) => self.on_mouse(m, src, &mut out),
            InputEvent::Paste(text) => self.on_paste(&text, src, &mut out),
            _ => {}
        }
        // The selection may have moved away from a process that is gone.
        if let Some(sel) = &self.selected
            && !src.status().processes.iter().any(|p| &p.name == sel)
        {
            self.selected = None;
            if self.focused() {
                self.mode = Mode::Normal;
            }
        }
        if self.selected.is_none() {
            self.selected = self.current_name(src.status());
        }
        out.extend(self.take_resizes(src));
        out
    }

    fn on_paste(&mut self, text: &str, src: &dyn PaneSource, out: &mut Vec<Action>) {
        if self.space_paste(text) {
        } else if matches!(self.mode, Mode::Filter) {
            self.filter_paste(text, src.status());
        } else if matches!(self.mode, Mode::Search) {
            self.search.query.push_str(&text.replace(['\n', '\r'], " "));
        } else if let Some(name) = self.focused_process().map(str::to_string) {
            let mut bracketed = false;
            src.with_screen(&name, 0, &mut |s| bracketed = s.bracketed_paste());
            self.set_offset(&name, 0, 0);
            out.push(Action::Input {
                process: name,
                bytes: paste_to_pty_bytes(text, bracketed),
            });
        }
    }

    fn on_key(&mut self, k: KeyEvent, src: &dyn PaneSource, out: &mut Vec<Action>) {
        let spec = KeySpec::from_event(&k);
        self.message = None;
        match self.mode.clone() {
            Mode::Quitting { at, killing } => {
                // A second quit while stopping kills everything now (as a
                // second Ctrl-C does in --no-tui).
                let ctrl_c =
                    k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                if !killing && (ctrl_c || self.keys.is(&spec, Command::Quit)) {
                    self.mode = Mode::Quitting { at, killing: true };
                    out.push(Action::QuitNow);
                }
                return;
            }
            Mode::Confirm(c) => {
                let yes = matches!(k.code, KeyCode::Char('y' | 'Y') | KeyCode::Enter)
                    || (c == Confirm::Quit
                        && self.keys.is(&spec, Command::Quit)
                        && k.code != KeyCode::Char('q'));
                let no = matches!(k.code, KeyCode::Char('n' | 'N' | 'q') | KeyCode::Esc);
                if yes {
                    self.mode = Mode::Normal;
                    match c {
                        Confirm::Quit => {
                            self.quitting();
                            out.push(Action::Quit);
                        }
                        Confirm::Kill(name) => out.push(Action::Kill(name)),
                        Confirm::RestartAll => out.push(Action::RestartAll),
                    }
                } else if no {
                    self.mode = Mode::Normal;
                }
                return;
            }
            Mode::Help => {
                if matches!(k.code, KeyCode::Esc | KeyCode::Char('q') | KeyCode::Enter)
                    || self.keys.is(&spec, Command::Help)
                {
                    self.mode = Mode::Normal;
                }
                return;
            }
            _ => {}
        }
        if self.space_modal_key(k, spec, src, out) {
            return;
        }
        match self.mode {
            Mode::Search => return self.search_key(k, src),
            Mode::Filter => return self.filter_key(k, src.status()),
            Mode::Copy(_) => return self.copy_key(k, src, out),
            _ => {}
        }
        if self.space_selected() && self.space_key(k, spec, src, out) {
            return;
        }
        let st = src.status();
        match self.mode {
            Mode::Focus { .. } => {
                let Some(name) = self.current_name(st) else {
                    self.mode = Mode::Normal;
                    return;
                };
                if spec == self.keys.prefix() {
                    self.mode = Mode::Prefix;
                    return;
                }
                let mut app_cursor = false;
                src.with_screen(&name, 0, &mut |s| app_cursor = s.application_cursor());
                if let Some(bytes) = key_to_pty_bytes(&k, app_cursor) {
                    let sb = src.scrollback_len(&name);
                    self.set_offset(&name, 0, sb);
                    out.push(Action::Input {
                        process: name,
                        bytes,
                    });
                }
                return;
            }
            Mode::Prefix => {
                self.mode = Mode::Normal;
                if spec == self.keys.prefix() {
                    if let Some(name) = self.current_name(st) {
                        let prefix = KeyEvent::new(spec.code, spec.mods);
                        if let Some(bytes) = key_to_pty_bytes(&prefix, false) {
                            out.push(Action::Input {
                                process: name,
                                bytes,
                            });
                        }
                        self.focus();
                    }
                    return;
                }
                if k.code == KeyCode::Char('d') && k.modifiers.is_empty() {
                    out.push(Action::Detach);
                    return;
                }
            }
            _ => {}
        }
        if k.code == KeyCode::Esc {
            if !self.search.query.is_empty() {
                self.search = Search::default();
                self.merged.hit = None;
            } else if !self.filter.is_empty() {
                self.filter.clear();
            } else if self.merged.on {
                self.toggle_merged();
            } else if self.details {
                self.details = false;
            } else if self.zoom {
                self.zoom = false;
            }
            return;
        }
        if let Some(cmd) = self.keys.lookup(&spec) {
            self.command(cmd, src, out);
        }
    }

    fn command(&mut self, cmd: Command, src: &dyn PaneSource, out: &mut Vec<Action>) {
        if self.space_selected() && self.space_command(cmd, src, out) {
            return;
        }
        let st = src.status();
        if self.merged.on && self.merged_command(cmd, st) {
            return;
        }
        let cur = self.current(st).cloned();
        let name = cur.as_ref().map(|p| p.name.clone());
        match cmd {
            Command::Up | Command::Down | Command::Left | Command::Right => self.navigate(cmd, st),
            Command::Focus => {
                if let Some(p) = &cur {
                    if p.state.is_alive() {
                        self.focus();
                        self.details = false;
                    } else {
                        self.message = Some(format!(
                            "{} is {}: {} starts it",
                            p.name,
                            p.state.name(),
                            self.keys.first(Command::StopStart)
                        ));
                    }
                }
            }
            Command::Prefix => {
                self.message = Some(format!(
                    "not focused: {} focuses",
                    self.keys.first(Command::Focus)
                ));
            }
            Command::Restart => {
                if let Some(n) = name {
                    self.message = Some(format!("restarting {n}"));
                    out.push(Action::Restart(n));
                }
            }
            Command::RestartAll => self.mode = Mode::Confirm(Confirm::RestartAll),
            Command::Reload => {
                self.message = Some("reloading the config".into());
                out.push(Action::Reload);
            }
            Command::StopStart => {
                if let Some(p) = cur {
                    let running = p.state.is_alive()
                        || matches!(
                            p.state,
                            ProcState::Pending { .. } | ProcState::Backoff { .. }
                        );
                    if running {
                        self.message = Some(format!("stopping {}", p.name));
                        out.push(Action::Stop(p.name));
                    } else {
                        self.message = Some(format!("starting {}", p.name));
                        out.push(Action::Start(p.name));
                    }
                }
            }
            Command::Kill => {
                if let Some(p) = cur {
                    if p.state.is_alive() {
                        self.mode = Mode::Confirm(Confirm::Kill(p.name));
                    } else {
                        self.message = Some(format!("{} is not running", p.name));
                    }
                }
            }
            Command::Grid => {
                self.grid = !self.grid;
                self.zoom = false;
                if self.grid {
                    let names = self.grid_names(st);
                    if names.is_empty() {
                        self.message =
                            Some("nothing to tile: no process is running or marked".into());
                    } else if !name.as_ref().is_some_and(|n| names.contains(n)) {
                        self.selected = names.first().cloned();
                    }
                }
            }
            Command::Zoom => self.zoom = !self.zoom,
            Command::Mark => {
                if let Some(n) = name {
                    if !self.marked.remove(&n) {
                        self.marked.insert(n.clone());
                        self.message = Some(format!(
                            "marked {n} ({} marked; {} shows them together)",
                            self.marked.len(),
                            self.keys.first(Command::Grid)
                        ));
                    } else {
                        self.message = Some(format!("unmarked {n}"));
                    }
                }
            }
            Command::Details => self.details = !self.details,
            Command::Search => {
                if let Some(n) = name {
                    self.search = Search {
                        process: n,
                        ..Search::default()
                    };
                    self.mode = Mode::Search;
                }
            }
            Command::NextMatch | Command::PrevMatch => {
                if self.search.query.is_empty() {
                    self.message = Some(format!(
                        "no search: {} searches",
                        self.keys.first(Command::Search)
                    ));
                } else if let Some(n) = name {
                    self.find(src, &n, cmd == Command::NextMatch);
                }
            }
            Command::CopyMode => {
                if let Some(n) = name {
                    self.enter_copy(src, &n);
                }
            }
            Command::ScrollUp
            | Command::ScrollDown
            | Command::ScrollTop
            | Command::ScrollBottom => {
                if let Some(n) = name {
                    let sb = src.scrollback_len(&n);
                    let page = usize::from(self.pane_height(src, &n).saturating_sub(1).max(1));
                    let off = self.offset(&n, sb);
                    let new = match cmd {
                        Command::ScrollUp => off + page,
                        Command::ScrollDown => off.saturating_sub(page),
                        Command::ScrollTop => sb,
                        _ => 0,
                    };
                    self.set_offset(&n, new, sb);
                }
            }
            Command::Help => self.mode = Mode::Help,
            Command::Detach => out.push(Action::Detach),
            Command::Quit => self.mode = Mode::Confirm(Confirm::Quit),
            Command::Merged => self.toggle_merged(),
            Command::Filter => self.start_filter(),
            Command::Group => self.cycle_group(),
            Command::Space => {
                self.merged.on = false;
                if !self.space.on {
                    self.message = Some(
                        "no space view: no gateway, or no participant for mew to join as".into(),
                    );
                } else if self.space.selected {
                    self.space.selected = false;
                    self.drop_space_transient();
                } else {
                    self.space_select();
                }
            }
        }
    }

    fn navigate(&mut self, cmd: Command, st: &SpaceStatus) {
        let (names, step): (Vec<String>, isize) = if self.view() == View::Grid {
            let names = self.grid_names(st);
            let cols = layout::grid_dims(names.len(), self.size.0, self.size.1.saturating_sub(2))
                .map_or(1, |(c, _)| c as isize);
            let step = match cmd {
                Command::Up => -cols,
                Command::Down => cols,
                Command::Left => -1,
                _ => 1,
            };
            (names, step)
        } else {
            let step = match cmd {
                Command::Up => -1,
                Command::Down => 1,
                _ => return,
            };
            let list = self.list_names(st);
            if self.space.on {
                // The space entry is row 0, above the processes.
                let names: Vec<&String> = list.iter().collect();
                let cur = if self.space.selected {
                    0
                } else {
                    1 + self
                        .selected
                        .as_ref()
                        .and_then(|s| names.iter().position(|n| *n == s))
                        .unwrap_or(0) as isize
                };
                let next = (cur + step).clamp(0, names.len() as isize) as usize;
                if next == 0 {
                    self.merged.on = false;
                    self.space_select();
                } else {
                    self.space.selected = false;
                    self.drop_space_transient();
                    self.selected = Some(names[next - 1].clone());
                }
                return;
            }
            (list, step)
        };
        if names.is_empty() {
            return;
        }
        let cur = self
            .selected
            .as_ref()
            .and_then(|s| names.iter().position(|n| n == s))
            .unwrap_or(0) as isize;
        let next = (cur + step).clamp(0, names.len() as isize - 1) as usize;
        self.selected = Some(names[next].clone());
    }

    // ----- search ----------------------------------------------------------

    fn search_key(&mut self, k: KeyEvent, src: &dyn PaneSource) {
        match k.code {
            KeyCode::Esc => self.clear_search(),
            KeyCode::Enter => {
                self.mode = Mode::Normal;
                self.search.current = None;
                if self.search.query.is_empty() {
                    return;
                }
                let name = self.search.process.clone();
                if name == MERGED_PANE {
                    self.merged.hit = None;
                    self.merged_find(true, src.status());
                } else if name == SPACE_PANE {
                    self.space.hit = None;
                    self.space_find(src, true);
                } else {
                    self.find(src, &name, true);
                }
            }
            KeyCode::Backspace if self.search.query.is_empty() => self.clear_search(),
            KeyCode::Backspace => {
                self.search.query.pop();
            }
            KeyCode::Char('u') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                self.search.query.clear()
            }
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => {
                self.clear_search()
            }
            KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                self.search.query.push(c)
            }
            _ => {}
        }
    }

    /// The footer's "no (older/newer) match" (`had`: a match was current).
    pub(crate) fn no_match(&mut self, older: bool, had: bool) {
        let which = if older { "older" } else { "newer" };
        self.message = Some(if had {
            format!("no {which} match for \"{}\"", self.search.query)
        } else {
            format!("no match for \"{}\"", self.search.query)
        });
    }

    /// Drops the search (query and match) and stops editing it.
    pub(crate) fn clear_search(&mut self) {
        self.search = Search::default();
        if matches!(self.mode, Mode::Search) {
            self.mode = Mode::Normal;
        }
    }

    /// Moves to the next older (`older`) or newer match and scrolls to it.
    fn find(&mut self, src: &dyn PaneSource, name: &str, older: bool) {
        let Some(matcher) = Matcher::new(&self.search.query) else {
            return;
        };
        let Some(info) = pane::screen_info(src, name) else {
            return;
        };
        if self.search.process != name {
            self.search.process = name.to_string();
            self.search.current = None;
        }
        let total = info.scrollback + usize::from(info.rows);
        // Where to continue from: the current match, or the visible bottom (older) / top (newer).
        let from = match self.search.current {
            Some(m) => (m.line, m.start),
            None => {
                let (first, count) = self.visible(src, name, &info);
                if older {
                    (first + count, 0)
                } else {
                    (first.saturating_sub(1), u16::MAX)
                }
            }
        };
        let found = if older {
            search_backward(src, name, &info, &matcher, from)
        } else {
            search_forward(src, name, &info, &matcher, from, total)
        };
        match found {
            Some(m) => {
                self.search.current = Some(m);
                self.reveal(src, name, m.line);
            }
            None => self.no_match(older, self.search.current.is_some()),
        }
    }

    // ----- copy mode -------------------------------------------------------

    fn enter_copy(&mut self, src: &dyn PaneSource, name: &str) {
        let Some(info) = pane::screen_info(src, name) else {
            self.message = Some(format!("{name} has no output to copy"));
            return;
        };
        let (first, count) = self.visible(src, name, &info);
        let cursor = if self.offset(name, info.scrollback) == 0 {
            let mut col = 0;
            src.with_screen(name, 0, &mut |s| col = s.cursor_position().1);
            (info.scrollback + usize::from(info.cursor_row), col)
        } else {
            (first + count.saturating_sub(1), 0)
        };
        self.mode = Mode::Copy(Copy {
            process: name.to_string(),
            cursor,
            anchor: None,
        });
    }

    fn copy_key(&mut self, k: KeyEvent, src: &dyn PaneSource, out: &mut Vec<Action>) {
        let Some(mut c) = self.copy().cloned() else {
            return;
        };
        let Some(info) = pane::screen_info(src, &c.process) else {
            self.mode = Mode::Normal;
            return;
        };
        let total = info.scrollback + usize::from(info.rows);
        let last_col = info.cols.saturating_sub(1);
        let page = usize::from(self.pane_height(src, &c.process).saturating_sub(1).max(1));
        let (line, col) = c.cursor;
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Esc | KeyCode::Char('q') => {
                self.mode = Mode::Normal;
                return;
            }
            KeyCode::Char('c') if ctrl => {
                self.mode = Mode::Normal;
                return;
            }
            KeyCode::Left | KeyCode::Char('h') => c.cursor.1 = col.saturating_sub(1),
            KeyCode::Right | KeyCode::Char('l') => c.cursor.1 = (col + 1).min(last_col),
            KeyCode::Up | KeyCode::Char('k') => c.cursor.0 = line.saturating_sub(1),
            KeyCode::Down | KeyCode::Char('j') => c.cursor.0 = (line + 1).min(total - 1),
            KeyCode::PageUp | KeyCode::Char('u') if k.code == KeyCode::PageUp || ctrl => {
                c.cursor.0 = line.saturating_sub(page);
            }
            KeyCode::PageDown | KeyCode::Char('d') if k.code == KeyCode::PageDown || ctrl => {
                c.cursor.0 = (line + page).min(total - 1);
            }
            KeyCode::Home | KeyCode::Char('0') => c.cursor.1 = 0,
            KeyCode::End | KeyCode::Char('$') => {
                let mut end = 0;
                pane::for_lines(src, &c.process, &info, line, line + 1, &mut |_, t| {
                    end = t
                        .chars
                        .iter()
                        .zip(&t.cols)
                        .rev()
                        .find(|(ch, _)| **ch != ' ')
                        .map_or(0, |(_, c)| *c);
                });
                c.cursor.1 = end;
            }
            KeyCode::Char('g') => c.cursor = (0, 0),
            KeyCode::Char('G') => c.cursor = (total - 1, 0),
            KeyCode::Char('v' | ' ') => {
                c.anchor = if c.anchor.is_some() {
                    None
                } else {
                    Some(c.cursor)
                };
            }
            KeyCode::Char('y') | KeyCode::Enter => {
                let (a, b) = match c.anchor {
                    Some(a) => order(a, c.cursor),
                    None => ((line, 0), (line, u16::MAX)),
                };
                let text = pane::extract(src, &c.process, &info, a, b);
                let lines = b.0 - a.0 + 1;
                self.message = Some(format!(
                    "copied {} character{} ({lines} line{})",
                    text.chars().count(),
                    if text.chars().count() == 1 { "" } else { "s" },
                    if lines == 1 { "" } else { "s" }
                ));
                self.mode = Mode::Normal;
                out.push(Action::Copy(text));
                return;
            }
            _ => return,
        }
        let name = c.process.clone();
        let target = c.cursor.0;
        self.mode = Mode::Copy(c);
        self.reveal(src, &name, target);
    }

    // ----- mouse -----------------------------------------------------------

    fn on_mouse(&mut self, m: MouseEvent, src: &dyn PaneSource, out: &mut Vec<Action>) {
        if self.is_quitting() || self.overlay() {
            return;
        }
        let st = src.status();
        let l = self.layout(st);
        if l.too_small {
            return;
        }
        let pos = ratatui::layout::Position::new(m.column, m.row);
        let pane = l.panes.iter().find(|p| p.outer.contains(pos)).cloned();

        // A focused program that asked for the mouse gets the events over its pane.
        if self.focused()
            && let Some(p) = &pane
            && Some(p.name.as_str()) == self.selected.as_deref()
            && p.inner.contains(pos)
        {
            let mut modes = None;
            src.with_screen(&p.name, 0, &mut |s| {
                modes = Some((s.mouse_protocol_mode(), s.mouse_protocol_encoding()))
            });
            if let Some((mode, enc)) = modes
                && mode != vt100::MouseProtocolMode::None
            {
                let (col, row) = (m.column - p.inner.x, m.row - p.inner.y);
                if let Some(bytes) = mouse_to_pty_bytes(&m, col, row, mode, enc) {
                    out.push(Action::Input {
                        process: p.name.clone(),
                        bytes,
                    });
                }
                return;
            }
        }
        match m.kind {
            MouseEventKind::ScrollUp | MouseEventKind::ScrollDown => {
                let up = m.kind == MouseEventKind::ScrollUp;
                if let Some(p) = pane.as_ref().filter(|p| p.name == SPACE_PANE) {
                    let _ = p;
                    let cmd = if up {
                        Command::ScrollUp
                    } else {
                        Command::ScrollDown
                    };
                    self.space_scroll_by(cmd, WHEEL_LINES, src);
                } else if pane.as_ref().is_some_and(|p| p.name == MERGED_PANE) {
                    let off = self.merged.offset;
                    self.merged.offset = if up {
                        off + WHEEL_LINES
                    } else {
                        off.saturating_sub(WHEEL_LINES)
                    };
                    self.merged_scroll_clamp(st);
                } else if let Some(p) = pane {
                    let sb = src.scrollback_len(&p.name);
                    let off = self.offset(&p.name, sb);
                    let new = if up {
                        off + WHEEL_LINES
                    } else {
                        off.saturating_sub(WHEEL_LINES)
                    };
                    self.set_offset(&p.name, new, sb);
                } else if l.list.is_some_and(|r| r.contains(pos)) {
                    self.navigate(if up { Command::Up } else { Command::Down }, st);
                }
            }
            MouseEventKind::Down(MouseButton::Left) => {
                if let Some(list) = l.list
                    && list.contains(pos)
                {
                    let inner = layout::inner(list);
                    if m.row < inner.y || m.row >= inner.bottom() {
                        return;
                    }
                    let first = usize::from(self.space.on);
                    let sel = if self.space_selected() {
                        0
                    } else {
                        self.selected_row(st) + first
                    };
                    let top = layout::list_scroll(sel, inner.height);
                    let idx = top + usize::from(m.row - inner.y);
                    if first == 1 && idx == 0 {
                        self.space_select();
                        return;
                    }
                    if first == 1 {
                        self.space.selected = false;
                        self.drop_space_transient();
                    }
                    if let Some(super::list::Row::Process(p)) = self.list_rows(st).get(idx - first)
                    {
                        self.selected = Some(p.name.clone());
                        self.unfocus();
                    }
                } else if pane.as_ref().is_some_and(|p| p.name == MERGED_PANE) {
                } else if pane.as_ref().is_some_and(|p| p.name == SPACE_PANE) {
                    self.space_click(src);
                } else if let Some(p) = pane {
                    let alive = st
                        .processes
                        .iter()
                        .any(|s| s.name == p.name && s.state.is_alive());
                    self.selected = Some(p.name.clone());
                    self.unfocus();
                    self.details = false;
                    if alive {
                        self.focus();
                    }
                }
            }
            _ => {}
        }
    }
}

/// How a process's run ended, for the footer: `exited (code 1)`,
/// `was killed (SIGKILL)`, `exited (code 1), restarting`.
fn how_it_ended(p: &ProcessStatus) -> String {
    let last_end = p.history.iter().rev().find_map(|t| match t.state {
        ProcState::Exited { code } => Some(format!("exited (code {code})")),
        ProcState::Killed { signal } => Some(format!("was killed ({})", signal_name(signal))),
        _ => None,
    });
    let last_end = last_end.or_else(|| p.exit_code.map(|c| format!("exited (code {c})")));
    match &p.state {
        ProcState::Exited { code } => format!("exited (code {code})"),
        ProcState::Killed { signal } => format!("was killed ({})", signal_name(*signal)),
        ProcState::Failed { reason } => format!("failed ({reason})"),
        ProcState::Stopped => "stopped".into(),
        ProcState::Idle => "ended".into(),
        _ => match last_end {
            Some(end) => format!("{end}, restarting"),
            None => "restarted".into(),
        },
    }
}

fn order(a: Pos, b: Pos) -> (Pos, Pos) {
    if a <= b { (a, b) } else { (b, a) }
}

/// The nearest match strictly before `from` (line, column), scanning upward.
fn search_backward(
    src: &dyn PaneSource,
    name: &str,
    info: &ScreenInfo,
    matcher: &Matcher,
    from: (usize, u16),
) -> Option<Match> {
    let total = info.scrollback + usize::from(info.rows);
    let mut end = (from.0 + 1).min(total);
    let chunk = usize::from(info.rows.max(1));
    while end > 0 {
        let start = end.saturating_sub(chunk);
        let mut lines = Vec::with_capacity(end - start);
        pane::for_lines(src, name, info, start, end, &mut |l, t| lines.push((l, t)));
        for (l, t) in lines.into_iter().rev() {
            let hits = matcher.find(&t);
            if let Some(&(s, e)) = hits.iter().rev().find(|(s, _)| (l, *s) < from) {
                return Some(Match {
                    line: l,
                    start: s,
                    end: e,
                });
            }
        }
        end = start;
    }
    None
}

/// The nearest match strictly after `from`, scanning downward.
fn search_forward(
    src: &dyn PaneSource,
    name: &str,
    info: &ScreenInfo,
    matcher: &Matcher,
    from: (usize, u16),
    total: usize,
) -> Option<Match> {
    let chunk = usize::from(info.rows.max(1));
    let mut start = from.0;
    while start < total {
        let end = (start + chunk).min(total);
        let mut found = None;
        pane::for_lines(src, name, info, start, end, &mut |l, t| {
            if found.is_none()
                && let Some(&(s, e)) = matcher.find(&t).iter().find(|(s, _)| (l, *s) > from)
            {
                found = Some(Match {
                    line: l,
                    start: s,
                    end: e,
                });
            }
        });
        if found.is_some() {
            return found;
        }
        start = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};

    use super::*;
    use crate::status::ProcState;
    use crate::tui::testing::{MemorySource, empty_status, process};

    fn key(c: KeyCode) -> Event {
        Event::Key(KeyEvent::new(c, KeyModifiers::NONE))
    }

    fn source() -> MemorySource {
        let mut st = empty_status("s");
        st.processes = vec![
            process("a", ProcState::Ready, 0),
            process("b", ProcState::Ready, 0),
        ];
        let mut src = MemorySource::new(st);
        for name in ["a", "b"] {
            src.add_terminal(name, 20, 60, 500);
            for i in 0..200 {
                src.feed(name, format!("{name} line {i}\r\n").as_bytes());
            }
        }
        src
    }

    #[test]
    fn resume_keeps_the_view_and_drops_the_moment() {
        let src = source();
        let mut app = App::new(&[]).unwrap();
        app.handle_event(Event::Resize(100, 30), &src);
        app.handle_event(key(KeyCode::Down), &src);
        app.handle_event(key(KeyCode::PageUp), &src);
        app.handle_event(key(KeyCode::Char('z')), &src);
        app.handle_event(key(KeyCode::Enter), &src);
        app.take_resizes(&src);
        assert_eq!(app.focused_process(), Some("b"));
        let offset = app.offset("b", src.scrollback_len("b"));
        assert!(offset > 0);

        app.resume();
        assert_eq!(app.selected(), Some("b"));
        assert!(app.zoom);
        assert_eq!(app.offset("b", src.scrollback_len("b")), offset);
        assert!(app.focused_process().is_none());
        assert!(!app.prefix_armed());
        // Even at the same size, the pane sizes are sent again: the client
        // that attaches takes the PTYs over.
        let resizes = app.take_resizes(&src);
        assert!(
            resizes
                .iter()
                .any(|a| matches!(a, Action::Resize { process, .. } if process == "b")),
            "{resizes:?}"
        );
    }
}
