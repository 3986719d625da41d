//! User-facing rendering of configuration problems.

use std::fmt::Write as _;
use std::path::Path;

use super::ConfigError;
use super::model::Diagnostic;

/// A path as the user would type it: relative to the current directory when inside it.
pub fn display_path(p: &Path) -> String {
    if let Ok(cwd) = std::env::current_dir()
        && let Ok(rel) = p.strip_prefix(&cwd)
        && !rel.as_os_str().is_empty()
    {
        return rel.display().to_string();
    }
    p.display().to_string()
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

/// One diagnostic: `severity: file:line:col: headline`, the line with a caret,
/// then the message's further lines (`help: ...`).
pub fn render(severity: &str, d: &Diagnostic, source: Option<&str>) -> String {
    let mut out = String::new();
    let mut lines = d.message.lines();
    let head = lines.next().unwrap_or_default();
    let path = display_path(&d.file);
    match &d.loc {
        Some(l) => {
            let _ = writeln!(out, "{severity}: {path}:{}:{}: {head}", l.line, l.col);
        }
        None => {
            let _ = writeln!(out, "{severity}: {path}: {head}");
        }
    }
    if let (Some(l), Some(src)) = (&d.loc, source)
        && let Some(text) = src.lines().nth((l.line as usize).saturating_sub(1))
    {
        let num = l.line.to_string();
        let pad = " ".repeat(num.len());
        let caret: String = text
            .chars()
            .take((l.col as usize).saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let _ = writeln!(out, "{pad} |");
        let _ = writeln!(out, "{num} | {text}");
        let _ = writeln!(out, "{pad} | {caret}^");
    }
    for rest in lines {
        let _ = writeln!(out, "  = {rest}");
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
            write!(f, "error: cannot read {}: {message}", display_path(path))
        }
        ConfigError::Invalid {
            errors,
            warnings,
            sources,
        } => {
            let src = |d: &Diagnostic| {
                sources
                    .iter()
                    .find(|(p, _)| *p == d.file)
                    .map(|(_, t)| t.as_str())
            };
            for d in errors {
                writeln!(f, "{}", render("error", d, src(d)))?;
            }
            for d in warnings {
                writeln!(f, "{}", render("warning", d, src(d)))?;
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
