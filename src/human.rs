//! Every number, duration and command line mew shows a person, written once.
//!
//! Each function is one spelling with one use; a new place that shows a size
//! or a duration picks one of these instead of writing its own. (Formats a
//! machine reads, such as compose durations or Kubernetes quantities, belong
//! to their exporters.)

use std::time::Duration;

const K: u64 = 1024;
const IEC: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];

/// A size in the binary units, one decimal: `512 B`, `1.5 KiB`, `612.0 MiB`.
pub fn size(bytes: u64) -> String {
    if bytes < K {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / K as f64;
    let mut unit = 0;
    while v >= K as f64 && unit < IEC.len() - 1 {
        v /= K as f64;
        unit += 1;
    }
    format!("{v:.1} {}", IEC[unit])
}

/// A size for a narrow column: `612M`, `2K`, `1.5G`, `100B`.
pub fn size_compact(bytes: u64) -> String {
    if bytes >= K * K * K {
        format!("{:.1}G", bytes as f64 / (K * K * K) as f64)
    } else if bytes >= K * K {
        format!("{}M", bytes / (K * K))
    } else if bytes >= K {
        format!("{}K", bytes / K)
    } else {
        format!("{bytes}B")
    }
}

/// A size in a message where the exact count matters too:
/// `5368709120 bytes (5.0 GiB)`, `12 bytes`.
pub fn size_with_bytes(bytes: u64) -> String {
    if bytes < K {
        format!("{bytes} bytes")
    } else {
        format!("{bytes} bytes ({})", size(bytes))
    }
}

/// A duration in a message: `500ms`, `4s`, `1.5s`.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// A duration as a config file would spell it, in the largest unit that
/// keeps it exact: `0s`, `500ms`, `30s`, `2m`, `1h`, `1500ms`.
pub fn duration_exact(d: Duration) -> String {
    let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    if ms == 0 {
        "0s".to_owned()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// How long something has been up, two units at most, the second padded so
/// a column of them lines up: `45s`, `5m02s`, `3h04m`, `2d03h`.
pub fn uptime(secs: u64) -> String {
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        3600..86400 => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
        _ => format!("{}d{:02}h", secs / 86400, (secs % 86400) / 3600),
    }
}

/// [`uptime`] of a span given in milliseconds.
pub fn uptime_ms(ms: u64) -> String {
    uptime(ms / 1000)
}

/// One POSIX shell word, always single-quoted: `'it'\''s'`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A command line as a person would type it: each word quoted only when
/// the shell needs it (`/bin/sh -c 'echo hi'`).
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            let plain = !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
            if plain { a.clone() } else { shell_quote(a) }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(size(5 << 40), "5.0 TiB");
        assert_eq!(size_compact(612 * 1024 * 1024), "612M");
        assert_eq!(size_compact(2048), "2K");
        assert_eq!(size_compact(3 << 29), "1.5G");
        assert_eq!(size_compact(100), "100B");
        assert_eq!(size_with_bytes(5 << 30), "5368709120 bytes (5.0 GiB)");
        assert_eq!(size_with_bytes(12), "12 bytes");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(Duration::from_millis(500)), "500ms");
        assert_eq!(duration(Duration::from_secs(4)), "4s");
        assert_eq!(duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(duration_exact(Duration::from_millis(500)), "500ms");
        assert_eq!(duration_exact(Duration::from_secs(30)), "30s");
        assert_eq!(duration_exact(Duration::from_secs(120)), "2m");
        assert_eq!(duration_exact(Duration::from_secs(7200)), "2h");
        assert_eq!(duration_exact(Duration::from_millis(1500)), "1500ms");
        assert_eq!(duration_exact(Duration::ZERO), "0s");
    }

    #[test]
    fn uptimes() {
        assert_eq!(uptime(45), "45s");
        assert_eq!(uptime(5 * 60 + 2), "5m02s");
        assert_eq!(uptime(3 * 3600 + 4 * 60), "3h04m");
        assert_eq!(uptime(2 * 86400 + 3 * 3600), "2d03h");
        assert_eq!(uptime_ms(61_500), "1m01s");
    }

    #[test]
    fn shell() {
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        let argv = vec!["/bin/sh".to_string(), "-c".into(), "echo 'hi' there".into()];
        assert_eq!(shell_words(&argv), r#"/bin/sh -c 'echo '\''hi'\'' there'"#);
        assert_eq!(shell_words(&[String::new()]), "''");
    }
}
