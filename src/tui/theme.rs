//! mew's own colours (the chrome). Only the 16 basic ANSI colours are used,
//! and with `NO_COLOR` every style falls back to attributes (bold, reverse,
//! dim, underline). Process output keeps its own colours regardless.

use ratatui::style::{Color, Modifier, Style};

use crate::status::{Millis, ProcState, ProcessStatus};

/// A crash this recent makes a process that is up again look unstable.
pub(crate) const UNSTABLE_FOR: Millis = 60_000;

/// What the TUI calls a process's state. It is the supervisor's state, told
/// apart where that alone would mislead: `ready` without a readiness probe
/// only means "started" (`up`), and a process that crashed in the last
/// minute and is up again may be crash-looping (`unstable`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shown<'a> {
    /// Ready by its readiness probe.
    Ready,
    /// Running, no readiness probe: mew cannot tell whether it is healthy.
    Up,
    /// Up again after a crash less than [`UNSTABLE_FOR`] ago.
    Unstable {
        crashed_at: Millis,
    },
    State(&'a ProcState),
}

impl<'a> Shown<'a> {
    pub fn of(p: &'a ProcessStatus, now: Millis) -> Shown<'a> {
        if !matches!(p.state, ProcState::Ready) {
            return Shown::State(&p.state);
        }
        let crashed_at = p
            .history
            .iter()
            .rev()
            .find(|t| matches!(t.state, ProcState::Backoff { .. }))
            .map(|t| t.at);
        match crashed_at {
            Some(at) if now.saturating_sub(at) < UNSTABLE_FOR => Shown::Unstable { crashed_at: at },
            // The supervisor sets a probe result only for a process with a probe.
            _ if p.probe.is_some() => Shown::Ready,
            _ => Shown::Up,
        }
    }

    /// One word, as in the header's counts.
    pub fn name(&self) -> &'static str {
        match self {
            Shown::Ready => "ready",
            Shown::Up => "up",
            Shown::Unstable { .. } => "unstable",
            Shown::State(s) => s.name(),
        }
    }

    /// A short description, as in a pane's title.
    pub fn describe(&self, now: Millis) -> String {
        match self {
            Shown::Ready => "ready".into(),
            Shown::Up => "up (no probe)".into(),
            Shown::Unstable { crashed_at } => format!(
                "up, crashed {} ago",
                crate::human::uptime_ms(now.saturating_sub(*crashed_at))
            ),
            Shown::State(s) => s.describe(now),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct Theme {
    pub color: bool,
}

impl Theme {
    fn pick(&self, colored: Style, plain: Style) -> Style {
        if self.color { colored } else { plain }
    }

    pub fn header(&self) -> Style {
        self.pick(
            Style::new()
                .fg(Color::White)
                .bg(Color::Blue)
                .add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD),
        )
    }
    pub fn header_dim(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Gray).bg(Color::Blue),
            Style::new().add_modifier(Modifier::REVERSED),
        )
    }
    pub fn header_warn(&self) -> Style {
        self.pick(
            Style::new()
                .fg(Color::LightYellow)
                .bg(Color::Blue)
                .add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD),
        )
    }
    /// A process's label in the merged view: the colour `--no-tui` gives it.
    pub fn process_label(&self, name: &str) -> Style {
        let palette = crate::headless::PALETTE;
        let sgr = palette[crate::headless::color_index(name)];
        // The palette is SGR foreground codes 31..=36: the basic colours.
        let color = sgr
            .parse::<u8>()
            .map_or(Color::Reset, |c| Color::Indexed(c.saturating_sub(30)));
        self.pick(Style::new().fg(color), Style::new())
    }
    pub fn key(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
    pub fn text(&self) -> Style {
        Style::new()
    }
    pub fn dim(&self) -> Style {
        self.pick(
            Style::new().fg(Color::DarkGray),
            Style::new().add_modifier(Modifier::DIM),
        )
    }
    pub fn label(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Blue).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
    pub fn mode(&self) -> Style {
        self.pick(
            Style::new()
                .fg(Color::Black)
                .bg(Color::Yellow)
                .add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD),
        )
    }
    pub fn message(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Yellow),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
    pub fn error(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
    pub fn border(&self) -> Style {
        self.pick(Style::new().fg(Color::DarkGray), Style::new())
    }
    pub fn border_selected(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Cyan),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
    pub fn border_focused(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
    pub fn selected_row(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Black).bg(Color::Cyan),
            Style::new().add_modifier(Modifier::REVERSED),
        )
    }
    pub fn search_match(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Black).bg(Color::Yellow),
            Style::new().add_modifier(Modifier::REVERSED),
        )
    }
    pub fn search_current(&self) -> Style {
        self.pick(
            Style::new()
                .fg(Color::Black)
                .bg(Color::LightMagenta)
                .add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::REVERSED | Modifier::BOLD | Modifier::UNDERLINED),
        )
    }
    pub fn selection(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Black).bg(Color::White),
            Style::new().add_modifier(Modifier::REVERSED),
        )
    }
    pub fn copy_cursor(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Black).bg(Color::LightCyan),
            Style::new().add_modifier(Modifier::REVERSED | Modifier::UNDERLINED),
        )
    }

    /// A participant's colour in the space view: stable, from a hash of its
    /// id (the gateway's own bookkeeping is dim). No colour with `NO_COLOR`.
    pub fn participant(&self, id: &str) -> Style {
        if id.starts_with("system:") {
            return self.dim();
        }
        const PALETTE: [Color; 10] = [
            Color::Cyan,
            Color::Green,
            Color::Magenta,
            Color::Blue,
            Color::Yellow,
            Color::LightCyan,
            Color::LightGreen,
            Color::LightMagenta,
            Color::LightBlue,
            Color::LightYellow,
        ];
        // FNV-1a: the same colour on every run and every client.
        let mut h: u32 = 0x811c_9dc5;
        for b in id.bytes() {
            h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
        }
        let c = PALETTE[(h % PALETTE.len() as u32) as usize];
        self.pick(Style::new().fg(c), Style::new())
    }
    pub fn participant_glyph(&self, connected: bool) -> Style {
        if connected {
            self.pick(Style::new().fg(Color::Green), Style::new())
        } else {
            self.dim()
        }
    }
    /// A refusal in the space view (a failed capability check, a rejection).
    pub fn denied(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Red),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }
    /// A proposal waiting for an answer.
    pub fn proposal(&self) -> Style {
        self.pick(
            Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD),
            Style::new().add_modifier(Modifier::BOLD),
        )
    }

    /// The glyph and style of what the TUI calls a process's state.
    pub fn shown(&self, shown: Shown<'_>) -> (&'static str, Style) {
        let c = |color: Color| self.pick(Style::new().fg(color), Style::new());
        match shown {
            Shown::Ready => ("●", c(Color::Green)),
            Shown::Up => ("●", self.text()),
            Shown::Unstable { .. } => ("●", c(Color::Yellow)),
            Shown::State(s) => self.state(s),
        }
    }

    /// The glyph and style of a state in the process list.
    pub fn state(&self, state: &ProcState) -> (&'static str, Style) {
        let c = |color: Color| self.pick(Style::new().fg(color), Style::new());
        match state {
            ProcState::Pending { .. } => ("◌", self.dim()),
            ProcState::Starting => ("◐", c(Color::Yellow)),
            ProcState::Running => ("●", c(Color::Yellow)),
            ProcState::Ready => ("●", c(Color::Green)),
            ProcState::Stopping { escalated: false } => ("◑", c(Color::Magenta)),
            ProcState::Stopping { escalated: true } => ("◑", self.error()),
            ProcState::Exited { code: 0 } => ("✔", c(Color::Green)),
            ProcState::Exited { .. } => ("✖", c(Color::Red)),
            ProcState::Killed { .. } => ("✖", c(Color::Red)),
            ProcState::Failed { .. } => ("✖", self.error()),
            // It crashed: restarting is no reason to look fine.
            ProcState::Backoff { .. } => ("↻", c(Color::Red)),
            ProcState::Stopped => ("■", self.dim()),
            ProcState::Idle => ("○", self.dim()),
        }
    }
}
