//! Everything behind a process's PTY output: the terminal emulator the TUI
//! renders from ([`screen::Screen`]) and the line capture that feeds the log
//! files and the `--no-tui` printer ([`capture::LineCapture`]).
//!
//! Both are synchronous and do no IO: the supervisor feeds them the bytes it
//! reads and writes back whatever [`screen::Screen::process`] returns.

pub(crate) mod capture;
pub(crate) mod lazy;
pub(crate) mod screen;

pub use capture::{CapturedLine, LineCapture};
pub(crate) use lazy::LazyScreen;
pub use screen::{Match, Screen};
