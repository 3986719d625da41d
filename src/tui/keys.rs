//! Key bindings: the commands of the process list, their default keys, the
//! `ui.keys` remapping and the key-string syntax (`C-b`, `M-x`, `F5`, `PageUp`).

use std::fmt;

use crate::protocol::input::{KeyCode, KeyEvent, KeyModifiers};

/// A command the user can bind a key to (outside focus mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Command {
    Up,
    Down,
    Left,
    Right,
    Focus,
    Prefix,
    Restart,
    RestartAll,
    StopStart,
    Kill,
    Grid,
    Zoom,
    Mark,
    Details,
    Search,
    NextMatch,
    PrevMatch,
    CopyMode,
    ScrollUp,
    ScrollDown,
    ScrollTop,
    ScrollBottom,
    Help,
    Detach,
    Quit,
    /// Select the space view (and back to the process).
    Space,
    /// All processes' output (the marked ones' if any) in one pane.
    Merged,
    /// Type to narrow the process list.
    Filter,
    /// Group the list: by kind, by profile, not at all.
    Group,
    /// Load the config again and apply what changed.
    Reload,
}

/// Every command with its `ui.keys` name, default keys and help text, in help order.
pub const COMMANDS: &[(Command, &str, &str, &str)] = &[
    (Command::Up, "up", "k Up", "previous process"),
    (Command::Down, "down", "j Down", "next process"),
    (Command::Left, "left", "h Left", "grid: tile to the left"),
    (
        Command::Right,
        "right",
        "l Right",
        "grid: tile to the right",
    ),
    (Command::Focus, "focus", "Enter i", "type into the process"),
    (Command::Prefix, "prefix", "C-b", "leave focus"),
    (Command::Restart, "restart", "r", "restart"),
    (
        Command::RestartAll,
        "restart-all",
        "R",
        "restart all (asks)",
    ),
    (Command::StopStart, "stop-start", "s", "stop / start"),
    (Command::Kill, "kill", "x", "kill (asks)"),
    (Command::Grid, "grid", "g", "grid of running/marked"),
    (Command::Zoom, "zoom", "z", "zoom to full screen"),
    (Command::Mark, "mark", "m", "mark for the grid"),
    (Command::Details, "details", "Tab", "process details"),
    (Command::Search, "search", "/", "search the output"),
    (Command::NextMatch, "next-match", "n", "next (older) match"),
    (
        Command::PrevMatch,
        "prev-match",
        "N",
        "previous (newer) match",
    ),
    (Command::CopyMode, "copy", "v", "copy mode"),
    (Command::ScrollUp, "scroll-up", "PageUp", "scroll up a page"),
    (
        Command::ScrollDown,
        "scroll-down",
        "PageDown",
        "scroll down a page",
    ),
    (Command::ScrollTop, "scroll-top", "Home", "oldest line"),
    (Command::ScrollBottom, "scroll-bottom", "End", "live output"),
    (Command::Help, "help", "?", "this help"),
    (Command::Detach, "detach", "d", "detach (keeps running)"),
    (Command::Quit, "quit", "q C-c", "stop all and quit (asks)"),
    (Command::Space, "space", "e", "space view (and back)"),
    (Command::Merged, "merged", "a", "all output merged"),
    (Command::Filter, "filter", "f", "filter the list"),
    (Command::Group, "group", "G", "group by kind/profile"),
    (Command::Reload, "reload", "c", "reload the config"),
];

impl Command {
    /// The `ui.keys` name of the command.
    pub fn name(self) -> &'static str {
        COMMANDS
            .iter()
            .find(|c| c.0 == self)
            .map(|c| c.1)
            .unwrap_or("?")
    }

    /// The command named `name` in `ui.keys` (`_` and `-` are interchangeable).
    pub fn from_name(name: &str) -> Option<Command> {
        let norm = name.trim().replace('_', "-").to_ascii_lowercase();
        COMMANDS.iter().find(|c| c.1 == norm).map(|c| c.0)
    }
}

/// One key with its modifiers, normalised so that a parsed key string and a
/// crossterm event compare equal (`R` == Shift+`r` as the terminal reports it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KeySpec {
    pub code: KeyCode,
    pub mods: KeyModifiers,
}

impl KeySpec {
    pub fn new(code: KeyCode, mods: KeyModifiers) -> KeySpec {
        let mut mods = mods & (KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT);
        let mut code = code;
        match code {
            // The character already carries the shift; terminals disagree on the flag.
            KeyCode::Char(c) => {
                mods.remove(KeyModifiers::SHIFT);
                if mods.contains(KeyModifiers::CONTROL) && c.is_ascii_uppercase() {
                    code = KeyCode::Char(c.to_ascii_lowercase());
                }
            }
            KeyCode::BackTab => mods.remove(KeyModifiers::SHIFT),
            KeyCode::Tab if mods.contains(KeyModifiers::SHIFT) => {
                mods.remove(KeyModifiers::SHIFT);
                code = KeyCode::BackTab;
            }
            _ => {}
        }
        KeySpec { code, mods }
    }

    pub fn from_event(ev: &KeyEvent) -> KeySpec {
        KeySpec::new(ev.code, ev.modifiers)
    }

    /// Parses a key string: `r`, `R`, `?`, `C-b`, `M-x`, `S-Up`, `C-M-a`, `F5`,
    /// `Enter`, `Esc`, `Tab`, `BackTab`, `Space`, `Backspace`, `Delete`,
    /// `Insert`, `Up`, `Down`, `Left`, `Right`, `Home`, `End`, `PageUp`,
    /// `PageDown`. mprocs-style angle brackets (`<C-b>`) are accepted.
    pub fn parse(s: &str) -> Result<KeySpec, String> {
        let t = s.trim();
        let t = t
            .strip_prefix('<')
            .and_then(|x| x.strip_suffix('>'))
            .unwrap_or(t);
        if t.is_empty() {
            return Err("empty key".into());
        }
        let mut mods = KeyModifiers::NONE;
        let mut rest = t;
        // Modifier prefixes: C- (control), M- / A- (alt), S- (shift).
        loop {
            let b = rest.as_bytes();
            if b.len() > 2 && b[1] == b'-' {
                let m = match b[0] {
                    b'C' | b'c' => KeyModifiers::CONTROL,
                    b'M' | b'm' | b'A' | b'a' => KeyModifiers::ALT,
                    b'S' | b's' => KeyModifiers::SHIFT,
                    _ => break,
                };
                mods |= m;
                rest = &rest[2..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(c),
            _ => match rest.to_ascii_lowercase().as_str() {
                "enter" | "return" | "cr" => KeyCode::Enter,
                "esc" | "escape" => KeyCode::Esc,
                "tab" => KeyCode::Tab,
                "backtab" => KeyCode::BackTab,
                "space" => KeyCode::Char(' '),
                "backspace" | "bs" => KeyCode::Backspace,
                "delete" | "del" => KeyCode::Delete,
                "insert" | "ins" => KeyCode::Insert,
                "up" => KeyCode::Up,
                "down" => KeyCode::Down,
                "left" => KeyCode::Left,
                "right" => KeyCode::Right,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                "pageup" | "pgup" => KeyCode::PageUp,
                "pagedown" | "pgdn" | "pgdown" => KeyCode::PageDown,
                f if f.starts_with('f') && f.len() > 1 => match f[1..].parse::<u8>() {
                    Ok(n) if (1..=24).contains(&n) => KeyCode::F(n),
                    _ => return Err(format!("unknown key {s:?}: function keys are F1 to F24")),
                },
                _ => {
                    return Err(format!(
                        "unknown key {s:?}: expected a character, a name such as Enter, Esc, \
                         Tab, Space, Up, PageDown, F5, optionally with C- (ctrl), M- (alt) or \
                         S- (shift), e.g. \"C-b\""
                    ));
                }
            },
        };
        if let KeyCode::Char(c) = code
            && c.is_control()
        {
            return Err(format!("unknown key {s:?}: write control keys as C-x"));
        }
        Ok(KeySpec::new(code, mods))
    }
}

impl fmt::Display for KeySpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.mods.contains(KeyModifiers::CONTROL) {
            f.write_str("C-")?;
        }
        if self.mods.contains(KeyModifiers::ALT) {
            f.write_str("M-")?;
        }
        if self.mods.contains(KeyModifiers::SHIFT) {
            f.write_str("S-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("Space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::F(n) => write!(f, "F{n}"),
            KeyCode::Enter => f.write_str("Enter"),
            KeyCode::Esc => f.write_str("Esc"),
            KeyCode::Tab => f.write_str("Tab"),
            KeyCode::BackTab => f.write_str("BackTab"),
            KeyCode::Backspace => f.write_str("Backspace"),
            KeyCode::Delete => f.write_str("Delete"),
            KeyCode::Insert => f.write_str("Insert"),
            KeyCode::Up => f.write_str("Up"),
            KeyCode::Down => f.write_str("Down"),
            KeyCode::Left => f.write_str("Left"),
            KeyCode::Right => f.write_str("Right"),
            KeyCode::Home => f.write_str("Home"),
            KeyCode::End => f.write_str("End"),
            KeyCode::PageUp => f.write_str("PageUp"),
            KeyCode::PageDown => f.write_str("PageDown"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// The bindings of one client: command → keys.
#[derive(Clone, Debug)]
pub struct KeyMap {
    bindings: Vec<(Command, Vec<KeySpec>)>,
}

impl KeyMap {
    /// The default bindings.
    pub fn defaults() -> KeyMap {
        let bindings = COMMANDS
            .iter()
            .map(|(cmd, _, keys, _)| {
                let specs = keys
                    .split_whitespace()
                    .filter_map(|k| KeySpec::parse(k).ok())
                    .collect();
                (*cmd, specs)
            })
            .collect();
        KeyMap { bindings }
    }

    /// The defaults with `ui.keys` applied. Each entry is `command → keys`
    /// (several keys separated by spaces); it replaces that command's default
    /// keys, and takes the keys away from any other command that had them by
    /// default. Two entries that bind the same key are an error.
    pub fn from_config(entries: &[(String, String)]) -> Result<KeyMap, String> {
        let mut map = KeyMap::defaults();
        let mut user: Vec<(Command, KeySpec, &str)> = Vec::new();
        for (action, keys) in entries {
            let Some(cmd) = Command::from_name(action) else {
                let names: Vec<&str> = COMMANDS.iter().map(|c| c.1).collect();
                let hint = did_you_mean(action, &names)
                    .map(|n| format!(" (did you mean {n:?}?)"))
                    .unwrap_or_default();
                return Err(format!(
                    "ui.keys: unknown action {action:?}{hint}; actions are: {}",
                    names.join(", ")
                ));
            };
            let mut specs = Vec::new();
            for k in keys.split_whitespace() {
                let spec = KeySpec::parse(k).map_err(|e| format!("ui.keys.{action}: {e}"))?;
                if let Some((other, _, _)) = user.iter().find(|(c, s, _)| *s == spec && *c != cmd) {
                    return Err(format!(
                        "ui.keys: key {spec} is bound to both {:?} and {:?}",
                        other.name(),
                        cmd.name()
                    ));
                }
                user.push((cmd, spec, action));
                specs.push(spec);
            }
            if specs.is_empty() {
                return Err(format!("ui.keys.{action}: no key given"));
            }
            if cmd == Command::Prefix && specs.len() > 1 {
                return Err("ui.keys.prefix: the prefix is a single key".into());
            }
            for (c, existing) in map.bindings.iter_mut() {
                if *c == cmd {
                    *existing = specs.clone();
                } else {
                    existing.retain(|s| !specs.contains(s));
                }
            }
        }
        if map.keys(Command::Prefix).is_empty() {
            return Err(
                "ui.keys: the prefix key was taken by another action; bind prefix too".into(),
            );
        }
        Ok(map)
    }

    /// The command bound to a key, if any.
    pub fn lookup(&self, key: &KeySpec) -> Option<Command> {
        self.bindings
            .iter()
            .find(|(_, keys)| keys.contains(key))
            .map(|(c, _)| *c)
    }

    pub fn keys(&self, cmd: Command) -> &[KeySpec] {
        self.bindings
            .iter()
            .find(|(c, _)| *c == cmd)
            .map(|(_, k)| k.as_slice())
            .unwrap_or(&[])
    }

    /// The first key of a command as text, `-` when unbound (for the footer).
    pub fn first(&self, cmd: Command) -> String {
        self.keys(cmd)
            .first()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "-".into())
    }

    /// All keys of a command, e.g. `q, C-c` (for the help overlay).
    pub fn all(&self, cmd: Command) -> String {
        let keys: Vec<String> = self.keys(cmd).iter().map(|k| k.to_string()).collect();
        if keys.is_empty() {
            "(unbound)".into()
        } else {
            keys.join(", ")
        }
    }

    pub fn prefix(&self) -> KeySpec {
        self.keys(Command::Prefix)
            .first()
            .copied()
            .unwrap_or(KeySpec::new(KeyCode::Char('b'), KeyModifiers::CONTROL))
    }

    pub fn is(&self, key: &KeySpec, cmd: Command) -> bool {
        self.keys(cmd).contains(key)
    }
}

/// The closest name by edit distance, when close enough to be a typo.
fn did_you_mean<'a>(word: &str, names: &[&'a str]) -> Option<&'a str> {
    let w = word.to_ascii_lowercase().replace('_', "-");
    names
        .iter()
        .map(|n| (strsim::levenshtein(&w, n), *n))
        .filter(|(d, n)| *d <= 2.max(n.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::input::KeyEventKind;

    fn ev(code: KeyCode, mods: KeyModifiers) -> KeySpec {
        KeySpec::from_event(&KeyEvent {
            code,
            modifiers: mods,
            kind: KeyEventKind::Press,
        })
    }

    #[test]
    fn parses_key_strings() {
        let cases = [
            ("r", KeyCode::Char('r'), KeyModifiers::NONE),
            ("R", KeyCode::Char('R'), KeyModifiers::NONE),
            ("C-b", KeyCode::Char('b'), KeyModifiers::CONTROL),
            ("<C-a>", KeyCode::Char('a'), KeyModifiers::CONTROL),
            ("C-B", KeyCode::Char('b'), KeyModifiers::CONTROL),
            ("M-x", KeyCode::Char('x'), KeyModifiers::ALT),
            (
                "C-M-x",
                KeyCode::Char('x'),
                KeyModifiers::CONTROL.union(KeyModifiers::ALT),
            ),
            ("F5", KeyCode::F(5), KeyModifiers::NONE),
            ("S-Up", KeyCode::Up, KeyModifiers::SHIFT),
            ("PageUp", KeyCode::PageUp, KeyModifiers::NONE),
            ("pgdn", KeyCode::PageDown, KeyModifiers::NONE),
            ("Space", KeyCode::Char(' '), KeyModifiers::NONE),
            ("Enter", KeyCode::Enter, KeyModifiers::NONE),
            ("-", KeyCode::Char('-'), KeyModifiers::NONE),
            ("C--", KeyCode::Char('-'), KeyModifiers::CONTROL),
            ("BackTab", KeyCode::BackTab, KeyModifiers::NONE),
        ];
        for (s, code, mods) in cases {
            assert_eq!(KeySpec::parse(s), Ok(KeySpec::new(code, mods)), "{s}");
        }
    }

    #[test]
    fn parse_errors_are_explained() {
        for bad in ["", "Ctrl+b", "F0", "F99", "C-", "hello"] {
            let err = KeySpec::parse(bad).unwrap_err();
            assert!(err.contains("key"), "{bad}: {err}");
        }
    }

    #[test]
    fn events_match_parsed_keys() {
        // Terminals report `R` with or without SHIFT; Ctrl+B may come uppercase.
        assert_eq!(
            ev(KeyCode::Char('R'), KeyModifiers::SHIFT),
            KeySpec::parse("R").unwrap()
        );
        assert_eq!(
            ev(KeyCode::Char('R'), KeyModifiers::NONE),
            KeySpec::parse("R").unwrap()
        );
        assert_eq!(
            ev(
                KeyCode::Char('B'),
                KeyModifiers::CONTROL | KeyModifiers::SHIFT
            ),
            KeySpec::parse("C-b").unwrap()
        );
        assert_eq!(
            ev(KeyCode::BackTab, KeyModifiers::SHIFT),
            KeySpec::parse("BackTab").unwrap()
        );
        assert_ne!(
            ev(KeyCode::Char('b'), KeyModifiers::NONE),
            KeySpec::parse("C-b").unwrap()
        );
    }

    #[test]
    fn display_round_trips() {
        for s in ["r", "C-b", "M-x", "F12", "PageUp", "Space", "S-Tab", "?"] {
            let k = KeySpec::parse(s).unwrap();
            assert_eq!(KeySpec::parse(&k.to_string()).unwrap(), k, "{s}");
        }
    }

    #[test]
    fn defaults_bind_the_documented_keys() {
        let m = KeyMap::defaults();
        let k = |s: &str| KeySpec::parse(s).unwrap();
        assert_eq!(m.lookup(&k("j")), Some(Command::Down));
        assert_eq!(m.lookup(&k("Up")), Some(Command::Up));
        assert_eq!(m.lookup(&k("Enter")), Some(Command::Focus));
        assert_eq!(m.lookup(&k("i")), Some(Command::Focus));
        assert_eq!(m.lookup(&k("C-c")), Some(Command::Quit));
        assert_eq!(m.lookup(&k("q")), Some(Command::Quit));
        assert_eq!(m.lookup(&k("x")), Some(Command::Kill));
        assert_eq!(m.lookup(&k("N")), Some(Command::PrevMatch));
        assert_eq!(m.prefix(), k("C-b"));
        // No key is bound twice.
        let mut seen = Vec::new();
        for (c, keys) in &m.bindings {
            for key in keys {
                assert!(!seen.contains(key), "{key} bound twice ({c:?})");
                seen.push(*key);
            }
        }
    }

    #[test]
    fn remap_replaces_and_steals() {
        let entries = vec![
            ("prefix".to_string(), "C-a".to_string()),
            ("restart".to_string(), "F5 r".to_string()),
            ("stop_start".to_string(), "x".to_string()),
        ];
        let m = KeyMap::from_config(&entries).unwrap();
        let k = |s: &str| KeySpec::parse(s).unwrap();
        assert_eq!(m.prefix(), k("C-a"));
        assert_eq!(m.lookup(&k("C-b")), None);
        assert_eq!(m.lookup(&k("F5")), Some(Command::Restart));
        assert_eq!(m.lookup(&k("r")), Some(Command::Restart));
        assert_eq!(m.lookup(&k("x")), Some(Command::StopStart));
        assert_eq!(m.lookup(&k("s")), None);
        // kill lost its only key
        assert_eq!(m.all(Command::Kill), "(unbound)");
    }

    #[test]
    fn remap_errors() {
        let e = KeyMap::from_config(&[("restrat".into(), "r".into())]).unwrap_err();
        assert!(e.contains("unknown action \"restrat\""), "{e}");
        assert!(e.contains("did you mean \"restart\""), "{e}");
        let e = KeyMap::from_config(&[("restart".into(), "Ctrl+r".into())]).unwrap_err();
        assert!(
            e.starts_with("ui.keys.restart: unknown key \"Ctrl+r\""),
            "{e}"
        );
        let e = KeyMap::from_config(&[("restart".into(), "".into())]).unwrap_err();
        assert!(e.contains("no key"), "{e}");
        let e = KeyMap::from_config(&[
            ("restart".into(), "F5".into()),
            ("kill".into(), "F5".into()),
        ])
        .unwrap_err();
        assert!(e.contains("bound to both \"restart\" and \"kill\""), "{e}");
        let e = KeyMap::from_config(&[("quit".into(), "C-b".into())]).unwrap_err();
        assert!(e.contains("prefix"), "{e}");
    }
}
