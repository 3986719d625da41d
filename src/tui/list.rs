//! The process list's filter and grouping: which processes the list shows,
//! in which order, under which headings. Navigation, clicks and drawing all
//! walk [`App::list_rows`], so they agree on what is where.

use super::app::{App, Mode};
use super::pane::Matcher;
use crate::config::ProcKind;
use crate::protocol::input::{KeyCode, KeyEvent, KeyModifiers};
use crate::status::{ProcessStatus, SpaceStatus};

/// How the list is grouped (`G` cycles: none → kind → profile → none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Grouping {
    #[default]
    None,
    /// Gateway, participants, processes.
    Kind,
    /// By `profiles:` (a process with several is listed under all of them
    /// joined; one without under "no profile").
    Profile,
}

/// One row of the process list.
pub(crate) enum Row<'a> {
    Heading(String),
    Process(&'a ProcessStatus),
}

impl App {
    /// Whether `p` passes the list's filter (smart case, as the search).
    pub(crate) fn passes_filter(&self, name: &str) -> bool {
        Matcher::new(&self.filter).is_none_or(|m| m.matches_str(name))
    }

    fn group_of(&self, p: &ProcessStatus) -> (u8, String) {
        match self.group {
            Grouping::None => (0, String::new()),
            Grouping::Kind => match p.kind {
                ProcKind::Gateway => (0, "gateway".into()),
                ProcKind::Participant => (1, "participants".into()),
                ProcKind::Process => (2, "processes".into()),
            },
            Grouping::Profile => match self.notes.profiles.get(&p.name) {
                Some(v) if !v.is_empty() => (0, v.join(", ")),
                _ => (1, "no profile".into()),
            },
        }
    }

    /// The list's rows: the processes passing the filter, under a heading
    /// per group when grouped (groups in a stable order, processes in the
    /// space's order within each).
    pub(crate) fn list_rows<'a>(&self, st: &'a SpaceStatus) -> Vec<Row<'a>> {
        let shown = st.processes.iter().filter(|p| self.passes_filter(&p.name));
        if self.group == Grouping::None {
            return shown.map(Row::Process).collect();
        }
        let mut groups: Vec<((u8, String), Vec<&ProcessStatus>)> = Vec::new();
        for p in shown {
            let g = self.group_of(p);
            match groups.iter_mut().find(|(k, _)| *k == g) {
                Some((_, v)) => v.push(p),
                None => groups.push((g, vec![p])),
            }
        }
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        let mut rows = Vec::new();
        for ((_, heading), procs) in groups {
            rows.push(Row::Heading(heading));
            rows.extend(procs.into_iter().map(Row::Process));
        }
        rows
    }

    /// The processes of the list, in the order it shows them.
    pub(crate) fn list_names(&self, st: &SpaceStatus) -> Vec<String> {
        self.list_rows(st)
            .into_iter()
            .filter_map(|r| match r {
                Row::Process(p) => Some(p.name.clone()),
                Row::Heading(_) => None,
            })
            .collect()
    }

    /// The row of the selected process in [`App::list_rows`] (0 when it
    /// is not shown).
    pub(crate) fn selected_row(&self, st: &SpaceStatus) -> usize {
        let cur = self.current_name(st);
        self.list_rows(st)
            .iter()
            .position(|r| matches!(r, Row::Process(p) if Some(&p.name) == cur.as_ref()))
            .unwrap_or(0)
    }

    /// Keeps the selection in the list: when the filter hides the selected
    /// process, the first one shown is selected.
    pub(crate) fn fit_selection(&mut self, st: &SpaceStatus) {
        let names = self.list_names(st);
        let cur = self.current_name(st);
        if !cur.is_some_and(|c| names.contains(&c))
            && let Some(first) = names.first()
        {
            self.selected = Some(first.clone());
        }
    }

    /// Starts typing the filter.
    pub(crate) fn start_filter(&mut self) {
        self.mode = Mode::Filter;
    }

    /// Cycles the grouping: none → kind → profile → none.
    pub(crate) fn cycle_group(&mut self) {
        self.group = match self.group {
            Grouping::None => Grouping::Kind,
            Grouping::Kind => Grouping::Profile,
            Grouping::Profile => Grouping::None,
        };
        self.message = Some(
            match self.group {
                Grouping::None => "list not grouped",
                Grouping::Kind => "list grouped by kind",
                Grouping::Profile => "list grouped by profile",
            }
            .into(),
        );
    }

    /// A key while typing the filter: the list narrows as it is typed;
    /// Enter keeps it, Esc clears it.
    pub(crate) fn filter_key(&mut self, k: KeyEvent, st: &SpaceStatus) {
        let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
        match k.code {
            KeyCode::Esc => {
                self.filter.clear();
                self.mode = Mode::Normal;
            }
            KeyCode::Char('c') if ctrl => {
                self.filter.clear();
                self.mode = Mode::Normal;
            }
            KeyCode::Enter => self.mode = Mode::Normal,
            KeyCode::Backspace if self.filter.is_empty() => self.mode = Mode::Normal,
            KeyCode::Backspace => {
                self.filter.pop();
            }
            KeyCode::Char('u') if ctrl => self.filter.clear(),
            KeyCode::Char(c) if !ctrl => self.filter.push(c),
            _ => {}
        }
        self.fit_selection(st);
    }

    /// The filter from a paste (one line).
    pub(crate) fn filter_paste(&mut self, text: &str, st: &SpaceStatus) {
        self.filter.push_str(&text.replace(['\n', '\r'], " "));
        self.fit_selection(st);
    }
}
