//! An in-memory [`PaneSource`]: a status plus one real terminal emulator per
//! process (the server's own [`LazyScreen`], so resizes reflow as they do in
//! the server), fed with real bytes. Used by the TUI's tests and benchmarks,
//! and a reference for the server's own implementation.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::PaneSource;
use crate::config::ProcKind;
use crate::envelopes::SpaceLog;
use crate::status::{ProcState, ProcessStatus, SpaceInfo, SpaceStatus};
use crate::terminal::LazyScreen;

pub struct MemorySource {
    pub status: SpaceStatus,
    parsers: BTreeMap<String, RefCell<LazyScreen>>,
    /// The space's conversation, when it has a space view.
    pub space: Option<RefCell<SpaceLog>>,
}

impl MemorySource {
    pub fn new(status: SpaceStatus) -> MemorySource {
        MemorySource {
            status,
            parsers: BTreeMap::new(),
            space: None,
        }
    }

    /// Gives the source a space view with this log.
    pub fn set_space(&mut self, log: SpaceLog) {
        self.space = Some(RefCell::new(log));
    }

    /// A frame received by the space's participant at `at` (a space view is
    /// made if there was none).
    pub fn envelope(&mut self, frame: &str, at: crate::status::Millis) {
        self.space
            .get_or_insert_with(Default::default)
            .borrow_mut()
            .push(frame, at);
    }

    /// Gives `name` a terminal of `rows`×`cols` keeping `scrollback` lines.
    pub fn add_terminal(&mut self, name: &str, rows: u16, cols: u16, scrollback: usize) {
        self.parsers.insert(
            name.to_string(),
            RefCell::new(LazyScreen::new(rows.max(1), cols.max(1), scrollback)),
        );
    }

    /// Feeds PTY output to `name`'s terminal (answers to queries are dropped).
    pub fn feed(&self, name: &str, bytes: &[u8]) {
        if let Some(p) = self.parsers.get(name) {
            p.borrow_mut().push(bytes);
        }
    }

    /// Resizes `name`'s terminal, as TIOCSWINSZ would.
    pub fn resize(&self, name: &str, rows: u16, cols: u16) {
        if let Some(p) = self.parsers.get(name)
            && rows > 0
            && cols > 0
        {
            p.borrow_mut().resize(rows, cols);
        }
    }

    /// `name`'s screen contents as text (rows joined by newlines).
    pub fn contents(&self, name: &str) -> Option<String> {
        self.parsers
            .get(name)
            .map(|p| p.borrow_mut().screen().vt().contents())
    }
}

impl PaneSource for MemorySource {
    fn status(&self) -> &SpaceStatus {
        &self.status
    }

    fn with_screen(&self, name: &str, offset: usize, f: &mut dyn FnMut(&vt100::Screen)) {
        if let Some(p) = self.parsers.get(name) {
            let mut p = p.borrow_mut();
            let screen = p.screen();
            screen.set_view_offset(offset);
            f(screen.vt());
            screen.set_view_offset(0);
        }
    }

    fn scrollback_len(&self, name: &str) -> usize {
        self.parsers
            .get(name)
            .map_or(0, |p| p.borrow_mut().screen().scrollback_len())
    }

    fn with_space(&self, f: &mut dyn FnMut(&SpaceLog)) -> bool {
        match &self.space {
            Some(log) => {
                f(&log.borrow());
                true
            }
            None => false,
        }
    }
}

/// A status with no processes, for building test fixtures.
pub fn empty_status(space: &str) -> SpaceStatus {
    SpaceStatus {
        space: SpaceInfo {
            id: format!("{space}-0001"),
            name: space.into(),
            dir: format!("/srv/{space}"),
        },
        server_pid: 4242,
        gateway_url: None,
        processes: Vec::new(),
        participants: Vec::new(),
        logging_degraded: None,
    }
}

/// A process status in `state`, started at `started_at`.
pub fn process(name: &str, state: ProcState, started_at: u64) -> ProcessStatus {
    let alive = state.is_alive();
    ProcessStatus {
        name: name.into(),
        kind: ProcKind::Process,
        ready: state == ProcState::Ready,
        exit_code: match state {
            ProcState::Exited { code } => Some(code),
            _ => None,
        },
        state,
        pid: alive.then_some(1000 + name.len() as u32),
        started_at: Some(started_at),
        restarts: 0,
        cpu_percent: None,
        rss_bytes: None,
        command: format!("./bin/{name}"),
        cwd: "/srv/app".into(),
        history: Vec::new(),
        probe: None,
        one_shot: false,
        healthy: None,
        last_restart_reason: None,
    }
}
