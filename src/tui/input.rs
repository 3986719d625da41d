//! Everything that turns a client's input into bytes for a process's PTY:
//! keys (xterm encoding, application-cursor aware), paste (bracketed when the
//! program asked for it) and mouse reports (when the program enabled them).
//! Kept in one module, with one table of tests, because key encoding is where
//! terminal multiplexers grow bugs.

use crate::protocol::input::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};
use vt100::{MouseProtocolEncoding, MouseProtocolMode};

/// xterm's modifier parameter: 1 + shift(1) + alt(2) + ctrl(4).
fn modifier_param(mods: KeyModifiers) -> u8 {
    1 + u8::from(mods.contains(KeyModifiers::SHIFT))
        + 2 * u8::from(mods.contains(KeyModifiers::ALT))
        + 4 * u8::from(mods.contains(KeyModifiers::CONTROL))
}

/// The bytes a terminal sends for a key. `application_cursor` is the
/// program's DECCKM mode (`vt100::Screen::application_cursor()`). `None` for
/// key releases and keys a terminal cannot send (Caps Lock, media keys...).
pub fn key_to_pty_bytes(key: &KeyEvent, application_cursor: bool) -> Option<Vec<u8>> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    let mods = key.modifiers;
    let m = modifier_param(mods);
    let alt = mods.contains(KeyModifiers::ALT);
    let ctrl = mods.contains(KeyModifiers::CONTROL);
    // A CSI sequence with the modifier parameter when modified: `ESC [ 1 ; m X`.
    let cursor_key = |final_byte: u8| -> Vec<u8> {
        if m > 1 {
            format!("\x1b[1;{m}{}", final_byte as char).into_bytes()
        } else if application_cursor {
            vec![0x1b, b'O', final_byte]
        } else {
            vec![0x1b, b'[', final_byte]
        }
    };
    let tilde_key = |n: u8| -> Vec<u8> {
        if m > 1 {
            format!("\x1b[{n};{m}~").into_bytes()
        } else {
            format!("\x1b[{n}~").into_bytes()
        }
    };
    let with_alt = |mut bytes: Vec<u8>| -> Vec<u8> {
        if alt {
            bytes.insert(0, 0x1b);
        }
        bytes
    };
    let bytes = match key.code {
        KeyCode::Char(c) => {
            if ctrl {
                with_alt(vec![ctrl_byte(c)?])
            } else {
                let mut buf = [0u8; 4];
                with_alt(c.encode_utf8(&mut buf).as_bytes().to_vec())
            }
        }
        KeyCode::Enter => with_alt(vec![b'\r']),
        KeyCode::Tab => {
            if mods.contains(KeyModifiers::SHIFT) {
                b"\x1b[Z".to_vec()
            } else {
                with_alt(vec![b'\t'])
            }
        }
        KeyCode::BackTab => b"\x1b[Z".to_vec(),
        KeyCode::Backspace => with_alt(vec![if ctrl { 0x08 } else { 0x7f }]),
        KeyCode::Esc => with_alt(vec![0x1b]),
        KeyCode::Null => vec![0],
        KeyCode::Up => cursor_key(b'A'),
        KeyCode::Down => cursor_key(b'B'),
        KeyCode::Right => cursor_key(b'C'),
        KeyCode::Left => cursor_key(b'D'),
        KeyCode::Home => cursor_key(b'H'),
        KeyCode::End => cursor_key(b'F'),
        KeyCode::Insert => tilde_key(2),
        KeyCode::Delete => tilde_key(3),
        KeyCode::PageUp => tilde_key(5),
        KeyCode::PageDown => tilde_key(6),
        KeyCode::F(n @ 1..=4) => {
            let fin = b"PQRS"[usize::from(n - 1)];
            if m > 1 {
                format!("\x1b[1;{m}{}", fin as char).into_bytes()
            } else {
                vec![0x1b, b'O', fin]
            }
        }
        KeyCode::F(n @ 5..=12) => {
            let code = [15, 17, 18, 19, 20, 21, 23, 24][usize::from(n - 5)];
            tilde_key(code)
        }
        _ => return None,
    };
    Some(bytes)
}

/// The control byte for Ctrl+`c`, as xterm sends it.
fn ctrl_byte(c: char) -> Option<u8> {
    let c = c.to_ascii_lowercase();
    Some(match c {
        'a'..='z' => c as u8 - b'a' + 1,
        '@' | ' ' | '2' => 0,
        '[' | '3' => 0x1b,
        '\\' | '4' => 0x1c,
        ']' | '5' => 0x1d,
        '^' | '6' => 0x1e,
        '_' | '-' | '7' | '/' => 0x1f,
        '?' | '8' => 0x7f,
        _ => return None,
    })
}

/// The bytes for pasted text. When the program enabled bracketed paste
/// (`vt100::Screen::bracketed_paste()`), the text is wrapped in
/// `ESC[200~ … ESC[201~` and any end marker inside it is removed, so a paste
/// cannot smuggle keystrokes out of the bracket. Line feeds become carriage
/// returns, as a terminal sends them.
pub fn paste_to_pty_bytes(text: &str, bracketed: bool) -> Vec<u8> {
    let mut body = text.replace("\r\n", "\r").replace('\n', "\r");
    if bracketed {
        while body.contains("\x1b[201~") {
            body = body.replace("\x1b[201~", "");
        }
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(b"\x1b[200~");
        out.extend_from_slice(body.as_bytes());
        out.extend_from_slice(b"\x1b[201~");
        out
    } else {
        body.into_bytes()
    }
}

/// The mouse report for an event at pane-relative cell (`col`, `row`), both
/// 0-based, given the mouse mode the program enabled. `None` when the mode
/// does not report this kind of event or the position cannot be encoded.
pub fn mouse_to_pty_bytes(
    ev: &MouseEvent,
    col: u16,
    row: u16,
    mode: MouseProtocolMode,
    encoding: MouseProtocolEncoding,
) -> Option<Vec<u8>> {
    let button_code = |b: MouseButton| match b {
        MouseButton::Left => 0u16,
        MouseButton::Middle => 1,
        MouseButton::Right => 2,
    };
    // (button code, is a release)
    let (mut cb, release) = match ev.kind {
        MouseEventKind::Down(b) => (button_code(b), false),
        MouseEventKind::Up(b) => {
            if mode == MouseProtocolMode::Press {
                return None;
            }
            (button_code(b), true)
        }
        MouseEventKind::Drag(b) => {
            if !matches!(
                mode,
                MouseProtocolMode::ButtonMotion | MouseProtocolMode::AnyMotion
            ) {
                return None;
            }
            (button_code(b) + 32, false)
        }
        MouseEventKind::Moved => {
            if mode != MouseProtocolMode::AnyMotion {
                return None;
            }
            (3 + 32, false)
        }
        MouseEventKind::ScrollUp => (64, false),
        MouseEventKind::ScrollDown => (65, false),
        MouseEventKind::ScrollLeft => (66, false),
        MouseEventKind::ScrollRight => (67, false),
    };
    if mode == MouseProtocolMode::None {
        return None;
    }
    if mode != MouseProtocolMode::Press {
        let mods = ev.modifiers;
        cb += 4 * u16::from(mods.contains(KeyModifiers::SHIFT))
            + 8 * u16::from(mods.contains(KeyModifiers::ALT))
            + 16 * u16::from(mods.contains(KeyModifiers::CONTROL));
    }
    let (x, y) = (u32::from(col) + 1, u32::from(row) + 1);
    match encoding {
        MouseProtocolEncoding::Sgr => {
            Some(format!("\x1b[<{cb};{x};{y}{}", if release { 'm' } else { 'M' }).into_bytes())
        }
        MouseProtocolEncoding::Default | MouseProtocolEncoding::Utf8 => {
            // Legacy encodings cannot say which button was released.
            let cb = if release { 3 + (cb & !3) } else { cb };
            let mut out = b"\x1b[M".to_vec();
            out.push(u8::try_from(32 + cb).ok()?);
            for v in [x, y] {
                let v = 32 + v;
                if encoding == MouseProtocolEncoding::Default {
                    out.push(u8::try_from(v).ok()?);
                } else {
                    let c = char::from_u32(v).filter(|_| v < 2048)?;
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
            Some(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode, mods: KeyModifiers) -> KeyEvent {
        KeyEvent {
            code,
            modifiers: mods,
            kind: KeyEventKind::Press,
        }
    }

    #[test]
    fn key_table() {
        use KeyCode as K;
        let n = KeyModifiers::NONE;
        let c = KeyModifiers::CONTROL;
        let a = KeyModifiers::ALT;
        let s = KeyModifiers::SHIFT;
        let table: Vec<(KeyCode, KeyModifiers, bool, &[u8])> = vec![
            (K::Char('a'), n, false, b"a"),
            (K::Char('A'), s, false, b"A"),
            (K::Char('é'), n, false, "é".as_bytes()),
            (K::Char(' '), n, false, b" "),
            (K::Char('a'), c, false, b"\x01"),
            (K::Char('b'), c, false, b"\x02"),
            (K::Char('c'), c, false, b"\x03"),
            (K::Char('z'), c, false, b"\x1a"),
            (K::Char('B'), c | s, false, b"\x02"),
            (K::Char(' '), c, false, b"\x00"),
            (K::Char('['), c, false, b"\x1b"),
            (K::Char('\\'), c, false, b"\x1c"),
            (K::Char(']'), c, false, b"\x1d"),
            (K::Char('_'), c, false, b"\x1f"),
            (K::Char('x'), a, false, b"\x1bx"),
            (K::Char('X'), a | s, false, b"\x1bX"),
            (K::Char('c'), c | a, false, b"\x1b\x03"),
            (K::Enter, n, false, b"\r"),
            (K::Enter, a, false, b"\x1b\r"),
            (K::Tab, n, false, b"\t"),
            (K::BackTab, s, false, b"\x1b[Z"),
            (K::Tab, s, false, b"\x1b[Z"),
            (K::Backspace, n, false, b"\x7f"),
            (K::Backspace, c, false, b"\x08"),
            (K::Backspace, a, false, b"\x1b\x7f"),
            (K::Esc, n, false, b"\x1b"),
            (K::Up, n, false, b"\x1b[A"),
            (K::Down, n, false, b"\x1b[B"),
            (K::Right, n, false, b"\x1b[C"),
            (K::Left, n, false, b"\x1b[D"),
            (K::Up, n, true, b"\x1bOA"),
            (K::Left, n, true, b"\x1bOD"),
            (K::Up, c, false, b"\x1b[1;5A"),
            (K::Up, c, true, b"\x1b[1;5A"),
            (K::Right, s, false, b"\x1b[1;2C"),
            (K::Left, a, false, b"\x1b[1;3D"),
            (K::Right, c | s, false, b"\x1b[1;6C"),
            (K::Home, n, false, b"\x1b[H"),
            (K::End, n, false, b"\x1b[F"),
            (K::Home, n, true, b"\x1bOH"),
            (K::End, n, true, b"\x1bOF"),
            (K::End, c, false, b"\x1b[1;5F"),
            (K::Insert, n, false, b"\x1b[2~"),
            (K::Delete, n, false, b"\x1b[3~"),
            (K::PageUp, n, false, b"\x1b[5~"),
            (K::PageDown, n, false, b"\x1b[6~"),
            (K::PageUp, s, false, b"\x1b[5;2~"),
            (K::F(1), n, false, b"\x1bOP"),
            (K::F(2), n, false, b"\x1bOQ"),
            (K::F(3), n, false, b"\x1bOR"),
            (K::F(4), n, false, b"\x1bOS"),
            (K::F(1), c, false, b"\x1b[1;5P"),
            (K::F(5), n, false, b"\x1b[15~"),
            (K::F(6), n, false, b"\x1b[17~"),
            (K::F(7), n, false, b"\x1b[18~"),
            (K::F(8), n, false, b"\x1b[19~"),
            (K::F(9), n, false, b"\x1b[20~"),
            (K::F(10), n, false, b"\x1b[21~"),
            (K::F(11), n, false, b"\x1b[23~"),
            (K::F(12), n, false, b"\x1b[24~"),
            (K::F(5), s, false, b"\x1b[15;2~"),
        ];
        for (code, mods, app, want) in table {
            let got = key_to_pty_bytes(&key(code, mods), app);
            assert_eq!(got.as_deref(), Some(want), "{code:?} {mods:?} app={app}");
        }
    }

    #[test]
    fn unencodable_keys_and_releases_send_nothing() {
        assert_eq!(
            key_to_pty_bytes(&key(KeyCode::Other, KeyModifiers::NONE), false),
            None
        );
        assert_eq!(
            key_to_pty_bytes(&key(KeyCode::F(13), KeyModifiers::NONE), false),
            None
        );
        assert_eq!(
            key_to_pty_bytes(&key(KeyCode::Char('é'), KeyModifiers::CONTROL), false),
            None
        );
        let mut release = key(KeyCode::Char('a'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(key_to_pty_bytes(&release, false), None);
    }

    #[test]
    fn paste_encoding() {
        assert_eq!(paste_to_pty_bytes("a\nb\r\nc", false), b"a\rb\rc");
        assert_eq!(paste_to_pty_bytes("ls\n", true), b"\x1b[200~ls\r\x1b[201~");
        // An embedded end marker cannot close the bracket early, even when nested.
        assert_eq!(
            paste_to_pty_bytes("x\x1b[201~rm -rf\x1b[20\x1b[201~1~", true),
            b"\x1b[200~xrm -rf\x1b[201~"
        );
    }

    fn mouse(kind: MouseEventKind, mods: KeyModifiers) -> MouseEvent {
        MouseEvent {
            kind,
            column: 99,
            row: 99,
            modifiers: mods,
        }
    }

    #[test]
    fn mouse_reports() {
        use MouseProtocolEncoding as E;
        use MouseProtocolMode as M;
        let n = KeyModifiers::NONE;
        let down = mouse(MouseEventKind::Down(MouseButton::Left), n);
        let up = mouse(MouseEventKind::Up(MouseButton::Left), n);
        let drag = mouse(MouseEventKind::Drag(MouseButton::Left), n);
        let moved = mouse(MouseEventKind::Moved, n);
        let wheel = mouse(MouseEventKind::ScrollUp, n);
        let right_ctrl = mouse(
            MouseEventKind::Down(MouseButton::Right),
            KeyModifiers::CONTROL,
        );

        // (event, column, row, mode, encoding, bytes; "" = nothing sent)
        let cases = [
            (&down, 0, 0, M::None, E::Sgr, ""),
            (&down, 4, 2, M::PressRelease, E::Sgr, "\x1b[<0;5;3M"),
            (&up, 4, 2, M::PressRelease, E::Sgr, "\x1b[<0;5;3m"),
            (&wheel, 0, 0, M::PressRelease, E::Sgr, "\x1b[<64;1;1M"),
            (&right_ctrl, 0, 0, M::PressRelease, E::Sgr, "\x1b[<18;1;1M"),
            (&drag, 1, 1, M::PressRelease, E::Sgr, ""),
            (&drag, 1, 1, M::ButtonMotion, E::Sgr, "\x1b[<32;2;2M"),
            (&moved, 1, 1, M::ButtonMotion, E::Sgr, ""),
            (&moved, 1, 1, M::AnyMotion, E::Sgr, "\x1b[<35;2;2M"),
            // X10 (press only): no releases, no modifiers.
            (&up, 0, 0, M::Press, E::Default, ""),
            (
                &right_ctrl,
                0,
                0,
                M::Press,
                E::Default,
                "\x1b[M\x22\x21\x21",
            ),
            // Default encoding: 32 + value, releases are button 3.
            (
                &down,
                4,
                2,
                M::PressRelease,
                E::Default,
                "\x1b[M\x20\x25\x23",
            ),
            (&up, 4, 2, M::PressRelease, E::Default, "\x1b[M\x23\x25\x23"),
            // Too far right for the default encoding; UTF-8 and SGR still work.
            (&down, 300, 0, M::PressRelease, E::Default, ""),
            (&down, 300, 0, M::PressRelease, E::Utf8, "\x1b[M \u{14d}!"),
            (&down, 300, 0, M::PressRelease, E::Sgr, "\x1b[<0;301;1M"),
        ];
        for (ev, col, row, mode, enc, want) in cases {
            let got = mouse_to_pty_bytes(ev, col, row, mode, enc);
            let want = (!want.is_empty()).then(|| want.as_bytes().to_vec());
            assert_eq!(got, want, "{ev:?} at {col},{row} in {mode:?}/{enc:?}");
        }
    }
}
