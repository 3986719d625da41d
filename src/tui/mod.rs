//! The TUI: per-client view state, input → actions, rendering.
//!
//! The space server keeps the only terminal emulators (one `vt100::Parser`
//! per process). For every attached client it keeps one [`App`] (selection,
//! focus, mode, scroll, search...) and one [`RemoteRenderer`], feeds the
//! client's input events (mew's own [`crate::protocol::input`] types, converted
//! from crossterm by the client) to [`App::handle_event`], executes the returned
//! [`Action`]s, and sends the bytes of [`RemoteRenderer::render`] back. The
//! client only holds a [`guard::TerminalGuard`] and copies bytes.

mod app;
mod draw;
pub mod guard;
pub mod input;
pub mod keys;
pub mod layout;
mod list;
mod merged;
mod pane;
mod remote;
mod space;
pub mod testing;
mod theme;

pub use app::App;
pub use keys::{Command, KeyMap, KeySpec};
pub use remote::{RemoteRenderer, osc52_copy};

use crate::status::SpaceStatus;

/// What the TUI reads from the server: the status and each process's screen.
pub trait PaneSource {
    fn status(&self) -> &SpaceStatus;
    /// Runs `f` on the process's screen with the view scrolled `offset` lines
    /// up into the scrollback (0 = live), then restores the live view. Does
    /// not call `f` when the process has no terminal.
    fn with_screen(&self, name: &str, offset: usize, f: &mut dyn FnMut(&vt100::Screen));
    /// Lines in the process's scrollback (0 when it has no terminal).
    fn scrollback_len(&self, name: &str) -> usize;
    /// Runs `f` on the space's conversation as the server's own participant
    /// sees it (held locked while `f` runs: keep it short). Does not call
    /// `f`, and returns `false`, when the space has none (no gateway, or no
    /// participant to join as).
    fn with_space(&self, _f: &mut dyn FnMut(&crate::envelopes::SpaceLog)) -> bool {
        false
    }
}

/// What the TUI shows of the space's configuration (space.yaml), which the
/// status does not carry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpaceNotes {
    /// `space.description`: what the space is, what to try.
    pub description: Option<String>,
    /// The config's warnings, one line each (`file:line:col: message`).
    pub warnings: Vec<String>,
    /// `stop_timeout` of each process: how long a stop waits before SIGKILL.
    pub stop_timeouts: std::collections::BTreeMap<String, std::time::Duration>,
    /// `space.shutdown_timeout`: when stopping the space kills what is left.
    pub shutdown_timeout: Option<std::time::Duration>,
    /// `profiles` of each process (for grouping the list by profile).
    pub profiles: std::collections::BTreeMap<String, Vec<String>>,
}

/// What the server must do after an event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the process's PTY.
    Input {
        process: String,
        bytes: Vec<u8>,
    },
    /// The size of the pane this client shows the process in (for TIOCSWINSZ).
    Resize {
        process: String,
        rows: u16,
        cols: u16,
    },
    Restart(String),
    Stop(String),
    Start(String),
    /// SIGKILL to the process group (the user confirmed).
    Kill(String),
    /// The user confirmed.
    RestartAll,
    /// Load the config again and apply what changed (`mew space reload`).
    Reload,
    /// This client leaves; everything keeps running.
    Detach,
    /// Stop the space (the user confirmed). The app is already showing the
    /// quitting view.
    Quit,
    /// Quit again while the space is stopping: kill every process now.
    QuitNow,
    /// Put this text on the client's clipboard: send [`osc52_copy`] to it.
    Copy(String),
    /// Send this envelope as the server's participant (chat, a proposal's
    /// fulfilment, grant or rejection: see [`crate::envelopes`]).
    Send(serde_json::Value),
}
