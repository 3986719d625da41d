//! mew's own colours (the chrome). Only the 16 basic ANSI colours are used,
//! and with `NO_COLOR` every style falls back to attributes (bold, reverse,
//! dim, underline). Process output keeps its own colours regardless.

use ratatui::style::{Color, Modifier, Style};

use crate::status::ProcState;

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
            ProcState::Backoff { .. } => ("↻", c(Color::Yellow)),
            ProcState::Stopped => ("■", self.dim()),
            ProcState::Idle => ("○", self.dim()),
        }
    }
}
