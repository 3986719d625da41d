//! Did-you-mean: edit distance (strsim's optimal string alignment) with `-`/`_` normalisation.

fn normalise(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// Edit distance over chars, a swap of two neighbours counting as one edit
/// (optimal string alignment: `wbe` is one edit from `web`).
pub fn distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

/// The candidate `word` most likely misspells, if any is close enough.
/// `word` itself being a candidate gives `None`.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    if candidates.contains(&word) {
        return None;
    }
    let w = normalise(word);
    if let Some(c) = candidates.iter().find(|c| normalise(c) == w) {
        return Some(c);
    }
    // A word that is the start of exactly one key (`restart` for
    // `restart_policy`) means that key.
    if w.chars().count() >= 4 {
        let mut starts = candidates.iter().filter(|c| normalise(c).starts_with(&w));
        if let (Some(c), None) = (starts.next(), starts.next()) {
            return Some(c);
        }
    }
    let limit = if w.chars().count() <= 4 { 1 } else { 2 };
    candidates
        .iter()
        .map(|c| (distance(&w, &normalise(c)), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_start_of_one_key_means_it() {
        assert_eq!(did_you_mean("restart", KEYS), Some("restart_policy"));
        assert_eq!(did_you_mean("stop", KEYS), None, "two keys start so");
    }

    const KEYS: &[&str] = &[
        "command",
        "args",
        "env",
        "cwd",
        "env_file",
        "depends_on",
        "auto_start",
        "restart_policy",
        "ready",
        "tokens",
        "type",
        "disabled",
    ];

    #[test]
    fn distances() {
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("abc", "abc"), 0);
        assert_eq!(distance("wbe", "web"), 1);
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("autostart", KEYS), Some("auto_start"));
        assert_eq!(did_you_mean("restart-policy", KEYS), Some("restart_policy"));
        assert_eq!(did_you_mean("comand", KEYS), Some("command"));
        assert_eq!(did_you_mean("depends-on", KEYS), Some("depends_on"));
        assert_eq!(did_you_mean("env-file", KEYS), Some("env_file"));
        assert_eq!(did_you_mean("Command", KEYS), Some("command"));
        assert_eq!(did_you_mean("dependson", KEYS), Some("depends_on"));
        assert_eq!(did_you_mean("disable", KEYS), Some("disabled"));
        assert_eq!(did_you_mean("token", KEYS), Some("tokens"));
    }

    #[test]
    fn no_false_friends() {
        assert_eq!(did_you_mean("command", KEYS), None);
        assert_eq!(did_you_mean("capabilities", KEYS), None);
        assert_eq!(did_you_mean("tags", KEYS), None);
        assert_eq!(did_you_mean("fifo", KEYS), None);
        assert_eq!(did_you_mean("output_log", KEYS), None);
        assert_eq!(did_you_mean("mcp_server", KEYS), None);
        assert_eq!(did_you_mean("x", KEYS), None);
    }
}
