//! The client's terminal: raw mode, alternate screen, mouse capture,
//! bracketed paste and a hidden cursor while attached, and always restored on
//! the way out (drop, panic; the client calls [`restore`] from its signal
//! handling for SIGTERM/SIGHUP).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::cursor::{Hide, Show};
use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use crossterm::terminal::{self, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{execute, style::ResetColor};

/// Whether a guard currently holds the terminal (restore is idempotent).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Holds the terminal in TUI mode; restores it when dropped.
#[derive(Debug)]
pub struct TerminalGuard {
    _private: (),
}

impl TerminalGuard {
    /// Enters raw mode, the alternate screen, mouse capture and bracketed
    /// paste, and hides the cursor. On error, whatever was entered is undone.
    pub fn enter() -> io::Result<TerminalGuard> {
        terminal::enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = io::stdout();
        let entered = execute!(
            out,
            EnterAlternateScreen,
            EnableMouseCapture,
            EnableBracketedPaste,
            Hide
        );
        if let Err(e) = entered {
            restore();
            return Err(e);
        }
        Ok(TerminalGuard { _private: () })
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Puts the terminal back: attributes reset, cursor shown, bracketed paste
/// and mouse capture off, main screen, cooked mode. Safe to call more than
/// once and when nothing was entered.
pub fn restore() {
    if !ACTIVE.swap(false, Ordering::SeqCst) {
        return;
    }
    let mut out = io::stdout();
    // Each step is independent: one failing (a closed tty) must not skip the rest.
    let _ = execute!(out, ResetColor);
    let _ = execute!(out, DisableBracketedPaste);
    let _ = execute!(out, DisableMouseCapture);
    let _ = execute!(out, LeaveAlternateScreen);
    let _ = execute!(out, Show);
    let _ = terminal::disable_raw_mode();
    let _ = out.flush();
}

/// Installs a panic hook that restores the terminal before the default hook
/// prints the panic message (so the message is readable and the shell usable).
pub fn install_panic_hook() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        previous(info);
    }));
}
