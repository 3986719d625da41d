//! `${NAME}` interpolation.
//!
//! - `$$` is a literal `$`.
//! - `${NAME}` (NAME = `[A-Za-z_][A-Za-z0-9_]*`) is replaced by `lookup(NAME)`; when
//!   that is `None` the text stays as written and NAME is reported as unset.
//! - `${NAME:-default}` uses `default` when NAME is unset or empty (no warning).
//! - Anything else (`$HOME`, `${1}`, an unclosed `${`) is kept as written, so the
//!   shell can still see it.

fn is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Interpolate `s`. Returns the result and the names that were unset.
pub fn interpolate(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> (String, Vec<String>) {
    let mut out = String::with_capacity(s.len());
    let mut unset = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
            continue;
        }
        if let Some(body_and_rest) = after.strip_prefix('{')
            && let Some(end) = body_and_rest.find('}')
        {
            let body = &body_and_rest[..end];
            let (name, default) = match body.split_once(":-") {
                Some((n, d)) => (n, Some(d)),
                None => (body, None),
            };
            if is_name(name) {
                match (lookup(name), default) {
                    (Some(v), Some(d)) if v.is_empty() => out.push_str(d),
                    (Some(v), _) => out.push_str(&v),
                    (None, Some(d)) => out.push_str(d),
                    (None, None) => {
                        out.push_str(&rest[i..i + 3 + end]);
                        if !unset.iter().any(|u| u == name) {
                            unset.push(name.to_owned());
                        }
                    }
                }
                rest = &body_and_rest[end + 1..];
                continue;
            }
        }
        out.push('$');
        rest = after;
    }
    out.push_str(rest);
    (out, unset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "PORT" => Some("8080".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn run(s: &str) -> (String, Vec<String>) {
        interpolate(s, &vars)
    }

    #[test]
    fn replaces_known_names() {
        assert_eq!(run("ws://localhost:${PORT}/x").0, "ws://localhost:8080/x");
        assert_eq!(run("${PORT}${PORT}").0, "80808080");
        assert_eq!(run("no vars").0, "no vars");
        assert_eq!(run("").0, "");
    }

    #[test]
    fn dollar_dollar_escapes() {
        assert_eq!(run("$${PORT}").0, "${PORT}");
        assert_eq!(run("cost $$5").0, "cost $5");
        assert_eq!(run("$$$${PORT}").0, "$${PORT}");
        assert_eq!(run("$$${PORT}").0, "$8080");
    }

    #[test]
    fn unset_keeps_text_and_reports() {
        let (s, unset) = run("key=${OPENAI_API_KEY} again ${OPENAI_API_KEY} ${X}");
        assert_eq!(s, "key=${OPENAI_API_KEY} again ${OPENAI_API_KEY} ${X}");
        assert_eq!(unset, vec!["OPENAI_API_KEY".to_string(), "X".to_string()]);
    }

    #[test]
    fn defaults() {
        assert_eq!(run("${NOPE:-fallback}"), ("fallback".into(), vec![]));
        assert_eq!(run("${EMPTY:-fallback}").0, "fallback");
        assert_eq!(run("${PORT:-1}").0, "8080");
        assert_eq!(run("${EMPTY}").0, "");
    }

    #[test]
    fn other_dollars_are_kept() {
        assert_eq!(
            run("$HOME ${1} ${a b} ${unclosed $").0,
            "$HOME ${1} ${a b} ${unclosed $"
        );
        assert!(run("$HOME ${1}").1.is_empty());
        assert_eq!(run("é${PORT}ü").0, "é8080ü");
    }
}
