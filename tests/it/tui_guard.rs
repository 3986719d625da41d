//! The client's terminal guard, in a real PTY: the test binary re-runs itself
//! as the child (`MEW_GUARD_CHILD`), the parent reads what it wrote to the
//! terminal and checks the terminal state it left behind.
#![allow(clippy::unwrap_used)] // tests may unwrap (helpers are not #[test] fns)

use std::io::Read;

use mew::tui::guard::{TerminalGuard, install_panic_hook};
use nix::sys::termios::{LocalFlags, tcgetattr};
use portable_pty::{CommandBuilder, PtySize, native_pty_system};

/// Prints whether the terminal is in cooked mode (canonical input and echo).
fn print_termios(when: &str) {
    let t = tcgetattr(std::io::stdin()).unwrap();
    let cooked = t
        .local_flags
        .contains(LocalFlags::ICANON | LocalFlags::ECHO);
    println!("\r\n{when}: cooked={cooked}\r");
}

/// The child side. Does nothing unless run by `run_child`.
#[test]
fn guard_child() {
    let Ok(mode) = std::env::var("MEW_GUARD_CHILD") else {
        return;
    };
    install_panic_hook();
    let guard = TerminalGuard::enter().unwrap();
    print_termios("inside");
    match mode.as_str() {
        "drop" => drop(guard),
        "panic" => {
            let hook = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                hook(info);
                print_termios("after panic");
            }));
            panic!("boom in the client");
        }
        _ => unreachable!(),
    }
    print_termios("after drop");
}

fn run_child(mode: &str) -> String {
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 80,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "tui_guard::guard_child",
        "--nocapture",
        "--test-threads=1",
    ]);
    cmd.env("MEW_GUARD_CHILD", mode);
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Reads until the child closes the terminal (EOF or EIO on Linux).
    while let Ok(n) = reader.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    child.wait().unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn pos(out: &str, needle: &str) -> usize {
    out.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in {out:?}"))
}

#[test]
fn guard_enters_and_restores_on_drop() {
    let out = run_child("drop");
    // entered: alternate screen, mouse capture, bracketed paste, hidden cursor, raw mode
    let enter = pos(&out, "\x1b[?1049h");
    assert!(pos(&out, "\x1b[?1000h") > enter);
    assert!(pos(&out, "\x1b[?2004h") > enter);
    assert!(pos(&out, "\x1b[?25l") > enter);
    assert!(out.contains("inside: cooked=false"), "{out:?}");
    // restored, in that order, before the program went on
    let leave = pos(&out, "\x1b[?1049l");
    assert!(pos(&out, "\x1b[?2004l") < leave);
    assert!(pos(&out, "\x1b[?1000l") < leave);
    assert!(pos(&out, "\x1b[?25h") > leave);
    assert!(pos(&out, "after drop: cooked=true") > leave, "{out:?}");
}

#[test]
fn guard_restores_before_the_panic_message() {
    let out = run_child("panic");
    let leave = pos(&out, "\x1b[?1049l");
    assert!(
        pos(&out, "boom in the client") > leave,
        "the message is printed on the main screen"
    );
    assert!(pos(&out, "\x1b[?25h") < pos(&out, "boom in the client"));
    assert!(out.contains("after panic: cooked=true"), "{out:?}");
}
