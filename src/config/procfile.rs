//! Procfile (foreman format) and `.env` parsing.

use super::model::Loc;

/// A located problem in a line-based file.
pub type LineError = (Loc, String);

fn loc(line: usize, col: usize) -> Loc {
    Loc::new(
        u32::try_from(line).unwrap_or(u32::MAX),
        u32::try_from(col).unwrap_or(u32::MAX),
    )
}

/// Parse a `.env` file: `KEY=VALUE` lines, optional `export `, `#` comments,
/// single quotes (literal), double quotes (`\n`, `\t`, `\"`, `\\` escapes).
pub fn parse_dotenv(text: &str) -> Result<Vec<(String, String)>, Vec<LineError>> {
    let mut vars = Vec::new();
    let mut errors = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let indent = raw.len() - raw.trim_start().len();
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (line, indent) = match line.strip_prefix("export ") {
            Some(rest) => {
                let r = rest.trim_start();
                (r, indent + line.len() - r.len())
            }
            None => (line, indent),
        };
        // No message quotes the line: an env file holds secrets (a private
        // key's line has no `=`, or a name made of its base64).
        let Some((key, value)) = line.split_once('=') else {
            errors.push((
                loc(lineno, indent + 1),
                "expected `KEY=VALUE`: this line has no `=` (its content is not shown: an env file holds secrets)".to_owned(),
            ));
            continue;
        };
        let key = key.trim_end();
        if !super::interp_is_name(key) {
            errors.push((
                loc(lineno, indent + 1),
                "the name before `=` is not a valid variable name (letters, digits and `_`, not starting with a digit)".to_owned(),
            ));
            continue;
        }
        let value_col = indent + line.len() - value.len() + 1;
        match parse_value(value) {
            Ok(v) => vars.push((key.to_owned(), v)),
            Err((offset, msg)) => errors.push((loc(lineno, value_col + offset), msg)),
        }
    }
    if errors.is_empty() {
        Ok(vars)
    } else {
        Err(errors)
    }
}

/// Parse the right-hand side of a `.env` line. Errors carry a byte offset into `raw`.
fn parse_value(raw: &str) -> Result<String, (usize, String)> {
    let lead = raw.len() - raw.trim_start().len();
    let v = raw.trim_start();
    let (value, rest_start) = if let Some(body) = v.strip_prefix('\'') {
        let Some(end) = body.find('\'') else {
            return Err((lead, "unclosed single quote".to_owned()));
        };
        (body[..end].to_owned(), lead + end + 2)
    } else if let Some(body) = v.strip_prefix('"') {
        let mut out = String::new();
        let mut chars = body.char_indices();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    end = Some(i);
                    break;
                }
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, other)) => out.push(other),
                    None => out.push('\\'),
                },
                c => out.push(c),
            }
        }
        let Some(end) = end else {
            return Err((lead, "unclosed double quote".to_owned()));
        };
        (out, lead + end + 2)
    } else {
        // Unquoted: a `#` after whitespace starts a comment.
        let mut cut = v.len();
        let bytes = v.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
                cut = i;
                break;
            }
        }
        return Ok(v[..cut].trim_end().to_owned());
    };
    let tail = raw[rest_start..].trim_start();
    if !tail.is_empty() && !tail.starts_with('#') {
        return Err((
            rest_start,
            "unexpected text after the closing quote".to_owned(),
        ));
    }
    Ok(value)
}

/// One Procfile entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcfileEntry {
    pub name: String,
    pub command: String,
    pub loc: Loc,
}

/// Parse a Procfile: `name: command` lines, `#` comments, blank lines.
pub fn parse_procfile(text: &str) -> Result<Vec<ProcfileEntry>, Vec<LineError>> {
    let mut entries: Vec<ProcfileEntry> = Vec::new();
    let mut errors = Vec::new();
    for (idx, raw) in text.lines().enumerate() {
        let lineno = idx + 1;
        let indent = raw.len() - raw.trim_start().len();
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, command)) = line.split_once(':') else {
            errors.push((
                loc(lineno, indent + 1),
                format!("expected `name: command`, found `{}`", super::escape(line)),
            ));
            continue;
        };
        let name = name.trim_end();
        if let Err(why) = super::check_name(name) {
            errors.push((loc(lineno, indent + 1), why));
            continue;
        }
        let command = command.trim();
        if command.is_empty() {
            errors.push((
                loc(lineno, indent + name.len() + 2),
                format!("`{name}` has an empty command"),
            ));
            continue;
        }
        if let Some(first) = entries.iter().find(|e| e.name == name) {
            errors.push((
                loc(lineno, indent + 1),
                format!(
                    "duplicate process name `{name}` (first defined on line {})",
                    first.loc.line
                ),
            ));
            continue;
        }
        entries.push(ProcfileEntry {
            name: name.to_owned(),
            command: command.to_owned(),
            loc: loc(lineno, indent + 1),
        });
    }
    if errors.is_empty() {
        Ok(entries)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_basics() {
        let text = "# comment\n\nA=1\nexport B = two words \nC='single # kept'\nD=\"line\\nnext \\\"q\\\"\" # trailing\nE=x # comment\nF=a#b\nG=\n";
        let vars = parse_dotenv(text).unwrap();
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("A"), Some("1"));
        assert_eq!(get("B"), Some("two words"));
        assert_eq!(get("C"), Some("single # kept"));
        assert_eq!(get("D"), Some("line\nnext \"q\""));
        assert_eq!(get("E"), Some("x"));
        assert_eq!(get("F"), Some("a#b"));
        assert_eq!(get("G"), Some(""));
        assert_eq!(vars.len(), 7);
    }

    #[test]
    fn dotenv_errors_are_located_and_all_reported() {
        let errs =
            parse_dotenv("OK=1\nno equals here\n1BAD=x\nQ=\"open\nR='x' junk\n").unwrap_err();
        assert_eq!(errs.len(), 4);
        assert_eq!(errs[0].0, Loc::new(2, 1));
        assert!(errs[0].1.contains("KEY=VALUE"));
        assert_eq!(errs[1].0.line, 3);
        assert!(errs[1].1.contains("not a valid variable name"));
        assert_eq!(errs[2].0, Loc::new(4, 3));
        assert!(errs[2].1.contains("unclosed double quote"));
        assert_eq!(errs[3].0.line, 5);
        assert!(errs[3].1.contains("after the closing quote"));
    }

    #[test]
    fn procfile_basics() {
        let e = parse_procfile("# c\nweb: bundle exec rails s -p $PORT\n\n  worker:sh -c 'a: b'\n")
            .unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].name, "web");
        assert_eq!(e[0].command, "bundle exec rails s -p $PORT");
        assert_eq!(e[0].loc, Loc::new(2, 1));
        assert_eq!(e[1].name, "worker");
        assert_eq!(e[1].command, "sh -c 'a: b'");
        assert_eq!(e[1].loc, Loc::new(4, 3));
    }

    #[test]
    fn procfile_errors() {
        let errs =
            parse_procfile("web: ok\njust text\n../x: evil\nempty:   \nweb: again\n").unwrap_err();
        let lines: Vec<u32> = errs.iter().map(|(l, _)| l.line).collect();
        assert_eq!(lines, vec![2, 3, 4, 5]);
        assert!(errs[0].1.contains("name: command"));
        assert!(errs[1].1.contains("../x"));
        assert!(errs[2].1.contains("empty command"));
        assert!(
            errs[3]
                .1
                .contains("duplicate process name `web` (first defined on line 1)")
        );
    }
}
