//! Strict parsing of durations, sizes and signal names.

use std::time::Duration;

use super::model::StopSignal;

/// `500ms`, `10s`, `2m`, `1h`: a whole number and a unit, nothing else.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
    let (num, unit) = t.split_at(digits);
    if num.is_empty() {
        return Err(format!(
            "`{s}` is not a duration: expected a whole number and a unit (ms, s, m, h), like `500ms` or `10s`"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: the number is too large"))?;
    let ms_per = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => {
            return Err(format!(
                "`{s}` has no unit: write `{n}s` for seconds or `{n}ms` for milliseconds"
            ));
        }
        _ => {
            return Err(format!(
                "`{s}` is not a duration: unknown unit `{unit}` (expected ms, s, m or h), like `500ms` or `10s`"
            ));
        }
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too long a duration"))
}

/// `512K`, `500M`, `1G`, `2T` (powers of 1024; `KB`/`KiB` spellings accepted), or plain bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
    let (num, unit) = t.split_at(digits);
    if num.is_empty() {
        return Err(format!(
            "`{s}` is not a size: expected a whole number of bytes, optionally with K, M or G, like `512K` or `500M`"
        ));
    }
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size: the number is too large"))?;
    let upper = unit.to_ascii_uppercase();
    let base = upper
        .strip_suffix("IB")
        .or_else(|| upper.strip_suffix('B'))
        .unwrap_or(&upper);
    let mult: u64 = match base {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => {
            return Err(format!(
                "`{s}` is not a size: unknown unit `{unit}` (expected K, M, G or T), like `512K` or `500M`"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too large a size"))
}

const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGTERM", libc::SIGTERM),
];

fn signal_names() -> String {
    SIGNALS
        .iter()
        .map(|(n, _)| &n[3..])
        .collect::<Vec<_>>()
        .join(", ")
}

/// `TERM`, `SIGTERM`, `term`, or a number of one of the supported signals.
pub fn parse_signal(s: &str) -> Result<StopSignal, String> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return SIGNALS
            .iter()
            .find(|(_, num)| *num == n)
            .map(|&(name, number)| StopSignal { number, name })
            .ok_or_else(|| {
                format!(
                    "signal number {n} is not supported as a stop signal (expected one of {})",
                    signal_names()
                )
            });
    }
    let upper = t.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    SIGNALS
        .iter()
        .find(|(name, _)| *name == full)
        .map(|&(name, number)| StopSignal { number, name })
        .ok_or_else(|| {
            format!(
                "`{s}` is not a supported stop signal (expected one of {}, with or without SIG, or its number)",
                signal_names()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 3s "), Ok(Duration::from_secs(3)));
        for bad in [
            "",
            "s",
            "10",
            "1.5s",
            "10 s",
            "10sec",
            "-1s",
            "1m30s",
            "10S",
            "99999999999999999999s",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_duration("10").unwrap_err().contains("`10s`"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512K"), Ok(512 * 1024));
        assert_eq!(parse_size("500M"), Ok(500 * 1024 * 1024));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1gb"), Ok(1 << 30));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1234"), Ok(1234));
        assert_eq!(parse_size("10B"), Ok(10));
        for bad in ["", "M", "1.5G", "10X", "-1M", "1 G", "99999999999T"] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn signals() {
        for (s, n) in [
            ("TERM", libc::SIGTERM),
            ("SIGTERM", libc::SIGTERM),
            ("int", libc::SIGINT),
            ("HUP", libc::SIGHUP),
            ("QUIT", libc::SIGQUIT),
            ("KILL", libc::SIGKILL),
            ("USR1", libc::SIGUSR1),
            ("SIGUSR2", libc::SIGUSR2),
            ("9", libc::SIGKILL),
            ("15", libc::SIGTERM),
        ] {
            assert_eq!(parse_signal(s).map(|x| x.number), Ok(n), "{s}");
        }
        assert_eq!(parse_signal("term").unwrap().name, "SIGTERM");
        for bad in ["TERMINATE", "SIGFOO", "", "0", "999"] {
            assert!(parse_signal(bad).is_err(), "{bad:?} accepted");
        }
    }
}
