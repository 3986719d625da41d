//! User-facing rendering of configuration problems, and [`escape`]: the one
//! place that makes config-derived text safe to print on a terminal.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::path::Path;

use super::ConfigError;
use super::model::Diagnostic;

/// Whether `c` must not reach a terminal as is: C0 controls (tab and newline
/// included), DEL, C1 controls (U+0080–U+009F), the bidi overrides, embeddings
/// and isolates (U+202A–U+202E, U+2066–U+2069), the bidi marks (U+200E,
/// U+200F, U+061C) and the Unicode line and paragraph separators (U+2028,
/// U+2029). A space is plain text.
pub fn needs_escape(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{200e}' | '\u{200f}' | '\u{61c}' | '\u{2028}' | '\u{2029}')
}

fn push_escaped(out: &mut String, c: char) {
    match c {
        '\t' => out.push_str("\\t"),
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\u{0}'..='\u{1f}' | '\u{7f}' => {
            let _ = write!(out, "\\x{:02x}", u32::from(c));
        }
        _ => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
    }
}

/// `s` with every character of [`needs_escape`] shown visibly: `\t`, `\n`,
/// `\r`, `\x1b`, `\x7f`, `\u{9b}`, `\u{202e}`. Every value that comes
/// from a config file (or its directory's name) goes through this before mew
/// prints it, so a hidden escape sequence (OSC 52, a cursor move, a carriage
/// return, a bidi override) cannot redraw what the user reads. Backslashes
/// are kept as they are (a regex stays readable), so the output is not
/// reversible; it is only for reading.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`escape`], keeping `\n`: for mew's own multi-line messages (a headline
/// and `help:` lines) once their config-derived values have been escaped.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && needs_escape(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c != '\n' && needs_escape(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A path for a message: [`escape`]d.
pub fn shown_path(p: &Path) -> String {
    escape(&p.display().to_string()).into_owned()
}

/// A path as the user would type it: relative to the current directory when inside it.
pub fn display_path(p: &Path) -> String {
    if let Ok(cwd) = std::env::current_dir()
        && let Ok(rel) = p.strip_prefix(&cwd)
        && !rel.as_os_str().is_empty()
    {
        return escape(&rel.display().to_string()).into_owned();
    }
    shown_path(p)
}

/// The message of a YAML error without serde-saphyr's location suffix and hints.
pub fn syntax_message(e: &serde_saphyr::Error) -> String {
    let s = e.without_snippet().to_string();
    let s = s
        .replace(", set DuplicateKeyPolicy in Options if acceptable", "")
        .replace("duplicate mapping key: ", "duplicate key: ")
        .replace("duplicate mapping key", "duplicate key")
        .replace(
            "; use from_str_multiple or from_str_multiple_with_options",
            "; a space config is one document (remove the `---` separator)",
        );
    let s = match s.rfind(" at line ") {
        Some(i) if s[i..].contains(", column ") => s[..i].to_owned(),
        _ => s,
    };
    let s = match s.strip_prefix("line ") {
        Some(rest) => match rest.find(": ") {
            Some(i) if rest[..i].contains(" column ") => rest[i + 2..].to_owned(),
            _ => s,
        },
        None => s,
    };
    s.trim().to_owned()
}

/// The text of the config file itself, for the excerpts under its
/// diagnostics. Only the config file (space.yaml or Procfile) is ever
/// quoted: a file named by `env_file` (or a Procfile's `.env`) holds secrets,
/// so its diagnostics give a location and never its lines.
#[derive(Clone, Debug)]
pub struct Source {
    pub path: std::path::PathBuf,
    pub text: String,
    /// YAML: a lone CR ends a line too (as the parser counts lines).
    pub yaml: bool,
    /// Literal `tokens:` values: shown as `****` in excerpts too.
    pub secrets: Vec<String>,
}

impl Source {
    /// `text` with every secret masked (as `check` masks them everywhere).
    fn masked<'t>(&self, text: &'t str) -> Cow<'t, str> {
        let mut out = Cow::Borrowed(text);
        for t in self.secrets.iter().filter(|t| !t.is_empty()) {
            if out.contains(t.as_str()) {
                out = Cow::Owned(out.replace(t.as_str(), "****"));
            }
        }
        out
    }
}

/// Line `n` (1-based) of `text`, as the parser that located it counts lines:
/// `\n` and `\r\n` always, a lone `\r` too in YAML.
pub fn source_line(text: &str, n: u32, yaml: bool) -> Option<&str> {
    let n = usize::try_from(n).ok()?.checked_sub(1)?;
    if !yaml {
        return text.lines().nth(n);
    }
    let mut rest = text;
    let mut i = 0;
    loop {
        let end = rest.find(['\r', '\n']).unwrap_or(rest.len());
        if i == n {
            return Some(&rest[..end]);
        }
        if end == rest.len() {
            return None;
        }
        let skip = if rest[end..].starts_with("\r\n") {
            2
        } else {
            1
        };
        rest = &rest[end + skip..];
        if rest.is_empty() {
            return None;
        }
        i += 1;
    }
}

/// One diagnostic: `severity: file:line:col: headline`, the line with a caret,
/// then the message's further lines (`help: ...`). Every part is
/// [`escape`]d; the excerpt comes only from `source`, the config file.
pub fn render(severity: &str, d: &Diagnostic, source: Option<&Source>) -> String {
    let mut out = String::new();
    let mut lines = d.message.lines();
    let head = escape(lines.next().unwrap_or_default());
    let path = display_path(&d.file);
    match &d.loc {
        Some(l) => {
            let _ = writeln!(out, "{severity}: {path}:{}:{}: {head}", l.line, l.col);
        }
        None => {
            let _ = writeln!(out, "{severity}: {path}: {head}");
        }
    }
    if let (Some(l), Some(src)) = (&d.loc, source.filter(|s| s.path == d.file))
        && let Some(text) = source_line(&src.text, l.line, src.yaml)
    {
        let num = l.line.to_string();
        let pad = " ".repeat(num.len());
        // The caret sits under the text as shown (escaped, secrets masked).
        let before: String = text
            .chars()
            .take((l.col as usize).saturating_sub(1))
            .collect();
        let caret = " ".repeat(escape(&src.masked(&before)).chars().count());
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{num} | {}", escape(&src.masked(text)));
        let _ = writeln!(out, "{pad} | {caret}^");
    }
    for rest in lines {
        let _ = writeln!(out, "  = {}", escape(rest));
    }
    out
}

pub fn render_error(e: &ConfigError, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match e {
        ConfigError::NotFound { searched } => {
            writeln!(f, "error: no space config found; looked for:")?;
            for p in searched {
                writeln!(f, "  {}", display_path(p))?;
            }
            write!(
                f,
                "help: run `mew init` to create .mew/space.yaml, or pass --config FILE, --procfile FILE or --space-dir DIR"
            )
        }
        ConfigError::Io { path, message } => {
            write!(
                f,
                "error: cannot read {}: {}",
                display_path(path),
                escape_lines(message)
            )
        }
        ConfigError::Invalid {
            errors,
            warnings,
            source,
            overrides,
        } => {
            let source_of = |d: &Diagnostic| {
                std::iter::once(&**source)
                    .chain(overrides.iter())
                    .find(|s| s.path == d.file)
            };
            for d in errors {
                writeln!(f, "{}", render("error", d, source_of(d)))?;
            }
            for d in warnings {
                writeln!(f, "{}", render("warning", d, source_of(d)))?;
            }
            let file = errors
                .first()
                .map(|d| display_path(&d.file))
                .unwrap_or_default();
            let n = errors.len();
            write!(
                f,
                "mew: {n} configuration error{} in {file}; nothing was started",
                if n == 1 { "" } else { "s" }
            )
        }
    }
}
