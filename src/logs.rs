//! Per-process log files: writing (timestamps, rotation, surviving a full or
//! unwritable disk) and reading back (`mew space logs`).
//!
//! # Format
//!
//! `.mew/logs/<name>.log` holds one record per line:
//!
//! ```text
//! 2026-11-26T12:34:56.789+01:00 | an output line of the process
//! 2026-11-26T12:34:56.790+01:00 * started pid 123
//! ```
//!
//! - The timestamp is RFC 3339 local time with milliseconds and the UTC
//!   offset (`+00:00`, never `Z`); it contains no space.
//! - ` | ` introduces an output line (escape sequences already removed by
//!   [`crate::terminal::LineCapture`]); ` * ` introduces a lifecycle event
//!   written by mew (started, ready, exited, restarting, memory limit…).
//! - The text runs to the end of the line. A text containing `\n` is written
//!   as several records with the same timestamp, so every line of the file
//!   is a record and [`parse_line`] never has to guess.
//!
//! Files are appended to, never truncated at start. If a file does not end
//! with a newline when it is opened (mew was killed mid-write), a newline is
//! added first so the next record starts on a line of its own.
//!
//! # Rotation
//!
//! When a record would take the current file past `rotate_size` bytes,
//! `name.log.(keep-1)` → `name.log.keep` … `name.log` → `name.log.1`, the file
//! beyond `keep` is deleted, and a new `name.log` is started. `rotate_size`
//! 0 never rotates; `keep` 0 keeps no old file.
//!
//! # Speed
//!
//! Records go to a 64 KiB buffer; the caller calls [`LogWriter::flush`] when
//! its input is drained. The formatted timestamp up to the second is cached,
//! so formatting one costs three digits while the second does not change.
//!
//! # Degraded logging
//!
//! Logging never stops a process. If the file cannot be opened or written
//! (disk full, directory gone or unwritable), the writer becomes *degraded*:
//! [`LogWriter::degraded`] says why, lines are counted and dropped, and a
//! later write (at most one attempt per second of record time) reopens the
//! file. When that succeeds, a `* logging resumed, N lines dropped (reason)`
//! event is written first. Lines that were in the buffer when a write failed
//! are counted as dropped.
//!
//! # File names
//!
//! A process name becomes a file name by keeping ASCII letters, digits, `_`,
//! `-` and non-leading `.`, and writing every other byte as `%XX`; a name
//! longer than 200 bytes once encoded is cut and suffixed with `~` and a hash
//! of the whole name. Distinct names give distinct files, and no name can
//! leave the log directory or take the server log's name.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{Local, TimeZone, Utc};

use crate::status::{Millis, now_millis};

/// Buffered bytes that trigger a write.
const BUF_CAP: usize = 64 * 1024;
/// Least record time between two attempts to reopen a degraded log.
const RETRY_MS: Millis = 1000;
/// Longest encoded file stem before it is cut and hashed.
const MAX_STEM: usize = 200;
const SERVER_LOG: &str = "mew-server.log";

/// One record read back from a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    /// When it was written (ms since the Unix epoch).
    pub at: Millis,
    /// The process whose log it came from.
    pub process: String,
    /// A lifecycle event written by mew (`*`), not output of the process.
    pub event: bool,
    pub text: String,
}

/// The log file of one process. See the module documentation.
pub struct LogWriter {
    dir: PathBuf,
    path: PathBuf,
    rotate_size: u64,
    keep: u32,
    file: Option<File>,
    /// Bytes in the current file, buffered ones included.
    size: u64,
    buf: Vec<u8>,
    record: Vec<u8>,
    stamp: StampCache,
    degraded: Option<Degraded>,
    total_dropped: u64,
    /// The latest record time seen (for retries started by `flush`).
    last_at: Millis,
}

struct Degraded {
    reason: String,
    dropped: u64,
    last_attempt: Millis,
}

impl LogWriter {
    /// Open (or create) the log of process `name` in `dir`, creating `dir`
    /// if needed. Never fails: on error the writer starts degraded.
    pub fn open(dir: &Path, name: &str, rotate_size: u64, keep: u32) -> LogWriter {
        let mut writer = LogWriter {
            dir: dir.to_path_buf(),
            path: log_path(dir, name),
            rotate_size,
            keep,
            file: None,
            size: 0,
            buf: Vec::with_capacity(BUF_CAP),
            record: Vec::new(),
            stamp: StampCache::default(),
            degraded: None,
            total_dropped: 0,
            last_at: now_millis(),
        };
        match writer.open_file() {
            Ok(()) => {}
            Err(e) => writer.degrade(e, 0),
        }
        writer
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Write an output line of the process.
    pub fn write_line(&mut self, at: Millis, text: &str) {
        self.write_record(at, b" | ", text);
    }

    /// Write a lifecycle event (`* message`).
    pub fn write_event(&mut self, at: Millis, message: &str) {
        self.write_record(at, b" * ", message);
    }

    /// Write out the buffer. Call it when the input is drained.
    pub fn flush(&mut self) {
        self.flush_buf();
    }

    /// Why logging is degraded, or `None` when it works.
    pub fn degraded(&self) -> Option<&str> {
        self.degraded.as_ref().map(|d| d.reason.as_str())
    }

    /// Lines dropped in the current degraded period (0 when healthy).
    pub fn dropped(&self) -> u64 {
        self.degraded.as_ref().map_or(0, |d| d.dropped)
    }

    /// Lines dropped since this writer was opened.
    pub fn total_dropped(&self) -> u64 {
        self.total_dropped
    }

    fn write_record(&mut self, at: Millis, marker: &[u8; 3], text: &str) {
        self.last_at = at;
        if self.degraded.is_some() && !self.try_resume(at) {
            let lines = 1 + text.bytes().filter(|&b| b == b'\n').count() as u64;
            self.total_dropped += lines;
            if let Some(d) = &mut self.degraded {
                d.dropped += lines;
            }
            return;
        }
        if text.as_bytes().contains(&b'\n') {
            for piece in text.split('\n') {
                self.append(at, marker, piece.strip_suffix('\r').unwrap_or(piece));
            }
        } else {
            self.append(at, marker, text);
        }
    }

    fn append(&mut self, at: Millis, marker: &[u8; 3], text: &str) {
        if self.degraded.is_some() {
            self.total_dropped += 1;
            if let Some(d) = &mut self.degraded {
                d.dropped += 1;
            }
            return;
        }
        self.record.clear();
        self.stamp.write(at, &mut self.record);
        self.record.extend_from_slice(marker);
        self.record.extend_from_slice(text.as_bytes());
        self.record.push(b'\n');
        let len = self.record.len() as u64;
        if self.rotate_size > 0 && self.size > 0 && self.size + len > self.rotate_size {
            self.rotate();
            if self.degraded.is_some() {
                self.total_dropped += 1;
                if let Some(d) = &mut self.degraded {
                    d.dropped += 1;
                }
                return;
            }
        }
        self.buf.extend_from_slice(&self.record);
        self.size += len;
        if self.buf.len() >= BUF_CAP {
            self.flush_buf();
        }
    }

    /// Open `self.path` for appending; sets `file` and `size`, and queues a
    /// newline if the file ends in the middle of a line.
    fn open_file(&mut self) -> io::Result<()> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.dir.display())))?;
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", self.path.display())))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let mut torn = false;
        if size > 0 && file.seek(SeekFrom::End(-1)).is_ok() {
            let mut last = [0u8; 1];
            torn = file.read_exact(&mut last).is_ok() && last[0] != b'\n';
        }
        self.file = Some(file);
        self.size = size;
        if torn {
            self.buf.push(b'\n');
            self.size += 1;
        }
        Ok(())
    }

    fn flush_buf(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let Some(file) = &mut self.file else {
            // Only reachable with an empty buffer; keep it that way.
            self.buf.clear();
            return;
        };
        let mut written = 0;
        while written < self.buf.len() {
            match file.write(&self.buf[written..]) {
                Ok(0) => {
                    self.degrade(io::ErrorKind::WriteZero.into(), written);
                    return;
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.degrade(e, written);
                    return;
                }
            }
        }
        self.buf.clear();
    }

    /// Enter (or stay in) degraded mode; the unwritten part of the buffer
    /// (from `written`) is dropped and counted.
    fn degrade(&mut self, error: io::Error, written: usize) {
        let unwritten = self.buf.get(written..).unwrap_or_default();
        let lost = unwritten.iter().filter(|&&b| b == b'\n').count() as u64;
        self.buf.clear();
        self.file = None;
        self.total_dropped += lost;
        let reason = error.to_string();
        match &mut self.degraded {
            Some(d) => {
                d.reason = reason;
                d.dropped += lost;
                d.last_attempt = self.last_at;
            }
            None => {
                self.degraded = Some(Degraded {
                    reason,
                    dropped: lost,
                    last_attempt: self.last_at,
                });
            }
        }
    }

    /// Try to leave degraded mode (at most once per second of record time).
    fn try_resume(&mut self, at: Millis) -> bool {
        let Some(d) = &mut self.degraded else {
            return true;
        };
        let due = at >= d.last_attempt.saturating_add(RETRY_MS) || at < d.last_attempt;
        if !due {
            return false;
        }
        d.last_attempt = at;
        let (dropped, reason) = (d.dropped, d.reason.clone());
        if let Err(e) = self.open_file() {
            self.degrade(e, 0);
            return false;
        }
        // Write the resume event straight through, to test the disk.
        let mut event = std::mem::take(&mut self.buf);
        self.stamp.write(at, &mut event);
        let message = format!(" * logging resumed, {dropped} lines dropped ({reason})\n");
        event.extend_from_slice(message.as_bytes());
        self.size += event.len() as u64;
        self.buf = event;
        self.degraded = None;
        self.flush_buf();
        if let Some(d) = &mut self.degraded {
            // The event itself is not a dropped line; the earlier ones still are.
            d.dropped = (d.dropped + dropped).saturating_sub(1);
            self.total_dropped = self.total_dropped.saturating_sub(1);
            return false;
        }
        true
    }

    fn rotate(&mut self) {
        self.flush_buf();
        if self.degraded.is_some() {
            return;
        }
        self.file = None;
        let result = self.shift_files().and_then(|()| self.open_file());
        if let Err(e) = result {
            self.degrade(e, 0);
        }
    }

    fn shift_files(&self) -> io::Result<()> {
        let ignore_missing = |r: io::Result<()>| match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        if self.keep == 0 {
            return ignore_missing(fs::remove_file(&self.path));
        }
        ignore_missing(fs::remove_file(rotated_path(&self.path, self.keep)))?;
        for i in (1..self.keep).rev() {
            ignore_missing(fs::rename(
                rotated_path(&self.path, i),
                rotated_path(&self.path, i + 1),
            ))?;
        }
        ignore_missing(fs::rename(&self.path, rotated_path(&self.path, 1)))
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.flush_buf();
    }
}

/// The formatted timestamp of the current second.
#[derive(Default)]
struct StampCache {
    second: Option<Millis>,
    /// `2026-11-26T12:34:56.`
    prefix: String,
    /// `+01:00`
    offset: String,
}

impl StampCache {
    fn write(&mut self, at: Millis, out: &mut Vec<u8>) {
        let second = at / 1000;
        if self.second != Some(second) {
            self.second = Some(second);
            self.prefix.clear();
            self.offset.clear();
            let secs = i64::try_from(second).unwrap_or(i64::MAX);
            if let Some(local) = Local.timestamp_opt(secs, 0).earliest() {
                let _ = write!(self.prefix, "{}", local.format("%Y-%m-%dT%H:%M:%S."));
                let _ = write!(self.offset, "{}", local.format("%:z"));
            } else if let Some(utc) = Utc.timestamp_opt(secs, 0).earliest() {
                let _ = write!(self.prefix, "{}", utc.format("%Y-%m-%dT%H:%M:%S."));
                self.offset.push_str("+00:00");
            } else {
                self.prefix.push_str("9999-12-31T23:59:59.");
                self.offset.push_str("+00:00");
            }
        }
        let ms = (at % 1000) as u32;
        out.extend_from_slice(self.prefix.as_bytes());
        out.extend_from_slice(&[
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
        ]);
        out.extend_from_slice(self.offset.as_bytes());
    }
}

/// Parse one line of a log file written by [`LogWriter`].
pub fn parse_line(process: &str, line: &str) -> Option<LogRecord> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    let (stamp, rest) = line.split_once(' ')?;
    let at = chrono::DateTime::parse_from_rfc3339(stamp)
        .ok()?
        .timestamp_millis();
    let at = Millis::try_from(at).ok()?;
    let (event, text) = if let Some(text) = rest.strip_prefix("| ") {
        (false, text)
    } else if let Some(text) = rest.strip_prefix("* ") {
        (true, text)
    } else if rest == "|" || rest == "*" {
        (rest == "*", "")
    } else {
        return None;
    };
    Some(LogRecord {
        at,
        process: process.to_owned(),
        event,
        text: text.to_owned(),
    })
}

/// Records of the processes `names`, across rotated files, merged by
/// timestamp (each process's records keep their file order; equal times
/// follow the order of `names`). With `since`, only records at or after it;
/// with `tail`, only the last `tail` records overall. Lines that are not
/// records are skipped. A missing log is no records.
pub fn read_logs(
    dir: &Path,
    names: &[String],
    tail: Option<usize>,
    since: Option<Millis>,
) -> io::Result<Vec<LogRecord>> {
    let mut per_process = Vec::with_capacity(names.len());
    for name in names {
        per_process.push(read_process(dir, name, tail, since)?);
    }
    // Merge: repeatedly take the earliest head (ties: order of `names`).
    let total: usize = per_process.iter().map(Vec::len).sum();
    let mut merged = Vec::with_capacity(total);
    let mut iters: Vec<_> = per_process.into_iter().map(Vec::into_iter).collect();
    let mut heads: Vec<Option<LogRecord>> = iters.iter_mut().map(Iterator::next).collect();
    let mut heap: BinaryHeap<Reverse<(Millis, usize)>> = heads
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.as_ref().map(|r| Reverse((r.at, i))))
        .collect();
    while let Some(Reverse((_, i))) = heap.pop() {
        if let Some(record) = heads[i].take() {
            merged.push(record);
        }
        heads[i] = iters[i].next();
        if let Some(r) = &heads[i] {
            heap.push(Reverse((r.at, i)));
        }
    }
    if let Some(tail) = tail {
        let skip = merged.len().saturating_sub(tail);
        merged.drain(..skip);
    }
    Ok(merged)
}

/// One process's records, oldest first (only the last `tail` with `tail`).
fn read_process(
    dir: &Path,
    name: &str,
    tail: Option<usize>,
    since: Option<Millis>,
) -> io::Result<Vec<LogRecord>> {
    let current = log_path(dir, name);
    let mut files = rotated_files(dir, &current)?;
    files.sort_unstable_by_key(|(n, _)| *n);
    // Newest first: the current file, then .1, .2, ...
    let newest_first = std::iter::once(current).chain(files.into_iter().map(|(_, p)| p));
    let mut chunks: Vec<Vec<LogRecord>> = Vec::new();
    let mut count = 0;
    for path in newest_first {
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        };
        let text = String::from_utf8_lossy(&bytes);
        let mut records: Vec<LogRecord> = text
            .lines()
            .filter_map(|line| parse_line(name, line))
            .collect();
        let reaches_before_since = since.is_some_and(|s| records.first().is_some_and(|r| r.at < s));
        if let Some(since) = since {
            records.retain(|r| r.at >= since);
        }
        count += records.len();
        chunks.push(records);
        if reaches_before_since || tail.is_some_and(|t| count >= t) {
            break;
        }
    }
    chunks.reverse();
    let mut records = chunks.concat();
    if let Some(tail) = tail {
        let skip = records.len().saturating_sub(tail);
        records.drain(..skip);
    }
    Ok(records)
}

/// `name.log.N` files beside `current`, with their N.
fn rotated_files(dir: &Path, current: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let Some(base) = current.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{base}.");
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let Some(n) = file_name.strip_prefix(&prefix) else {
            continue;
        };
        if !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
            && let Ok(n) = n.parse::<u32>()
        {
            files.push((n, entry.path()));
        }
    }
    Ok(files)
}

fn rotated_path(path: &Path, n: u32) -> PathBuf {
    let mut os = path.as_os_str().to_owned();
    os.push(format!(".{n}"));
    PathBuf::from(os)
}

/// The log file of process `name` in `dir` (see "File names" above).
pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}.log", file_stem(name)))
}

/// The space server's own log (its stdout and stderr).
pub fn server_log_path(dir: &Path) -> PathBuf {
    dir.join(SERVER_LOG)
}

fn file_stem(name: &str) -> String {
    let mut stem = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        // `mew-server` would collide with the server log.
        let reserved = i == 0 && name == "mew-server";
        if keep && !reserved {
            stem.push(char::from(b));
        } else {
            let _ = write!(stem, "%{b:02X}");
        }
    }
    if stem.is_empty() {
        // `%` alone is never produced by the encoding above.
        stem.push('%');
    }
    if stem.len() > MAX_STEM {
        // FNV-1a of the whole name keeps cut names distinct.
        let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        stem.truncate(MAX_STEM - 17);
        let _ = write!(stem, "~{hash:016x}");
    }
    stem
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::SecondsFormat;

    /// 2026-11-26T12:00:00Z
    const T0: Millis = 1_795_694_400_000;

    fn reference_stamp(at: Millis) -> String {
        let dt = Local.timestamp_millis_opt(at as i64).unwrap();
        dt.to_rfc3339_opts(SecondsFormat::Millis, false)
    }

    fn stamp(cache: &mut StampCache, at: Millis) -> String {
        let mut out = Vec::new();
        cache.write(at, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn read_file(path: &Path) -> String {
        fs::read_to_string(path).unwrap()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn timestamps_match_rfc3339_across_second_boundaries() {
        let mut cache = StampCache::default();
        let times = [
            T0,
            T0 + 1,
            T0 + 999,
            T0 + 1000,
            T0 + 1001,
            T0 + 59_999,
            T0 + 60_000,
            T0 + 5,
            0,
        ];
        let mut previous: Option<(Millis, String)> = None;
        for at in times {
            let s = stamp(&mut cache, at);
            assert_eq!(s, reference_stamp(at), "at {at}");
            let parsed = chrono::DateTime::parse_from_rfc3339(&s).unwrap();
            assert_eq!(parsed.timestamp_millis() as u64, at);
            assert!(!s.contains(' '));
            // Within one UTC offset, later times sort later as text.
            if let Some((p_at, p)) = &previous
                && at > *p_at
                && s.ends_with(&p[p.len() - 6..])
            {
                assert!(s.as_str() > p.as_str(), "{s} after {p}");
            }
            previous = Some((at, s));
        }
    }

    #[test]
    fn parse_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), "api", 0, 0);
        let texts = [
            "plain",
            "",
            "with | bar and * star",
            "  leading spaces",
            "ünïcödé 世界",
            "|",
            "*",
        ];
        for (i, t) in texts.iter().enumerate() {
            w.write_line(T0 + i as u64, t);
        }
        w.write_event(T0 + 100, "started pid 123");
        w.write_line(T0 + 101, "two\nlines\r\n");
        w.flush();
        let content = read_file(&dir.path().join("api.log"));
        let records: Vec<LogRecord> = content
            .lines()
            .map(|l| parse_line("api", l).unwrap())
            .collect();
        assert_eq!(records.len(), texts.len() + 1 + 3);
        for (i, t) in texts.iter().enumerate() {
            assert_eq!(records[i].text, *t);
            assert_eq!(records[i].at, T0 + i as u64);
            assert!(!records[i].event);
            assert_eq!(records[i].process, "api");
        }
        let event = &records[texts.len()];
        assert!(event.event);
        assert_eq!(event.text, "started pid 123");
        let split: Vec<&str> = records[texts.len() + 1..]
            .iter()
            .map(|r| r.text.as_str())
            .collect();
        assert_eq!(split, ["two", "lines", ""]);
        assert!(content.contains(" * started pid 123\n"));
        assert_eq!(parse_line("x", "not a record"), None);
        assert_eq!(
            parse_line("x", "2026-11-26T12:00:00.000+00:00 ? what"),
            None
        );
        assert_eq!(parse_line("x", ""), None);
    }

    #[test]
    fn appends_and_repairs_a_torn_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.log");
        fs::write(
            &path,
            format!(
                "{} | whole\n{} | torn",
                reference_stamp(T0),
                reference_stamp(T0)
            ),
        )
        .unwrap();
        let mut w = LogWriter::open(dir.path(), "p", 0, 0);
        w.write_line(T0 + 5, "next");
        drop(w);
        let records = read_logs(dir.path(), &names(&["p"]), None, None).unwrap();
        let texts: Vec<&str> = records.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["whole", "torn", "next"]);
    }

    #[test]
    fn rotation_keeps_sizes_count_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let line_len = reference_stamp(T0).len() as u64 + 3 + 8 + 1; // "line 000"
        let rotate = line_len * 10;
        let mut w = LogWriter::open(dir.path(), "svc", rotate, 3);
        for i in 0..95 {
            w.write_line(T0 + i, &format!("line {i:03}"));
        }
        w.flush();
        let log = dir.path().join("svc.log");
        for (path, lines) in [
            (log.clone(), 5),
            (rotated_path(&log, 1), 10),
            (rotated_path(&log, 2), 10),
            (rotated_path(&log, 3), 10),
        ] {
            let content = read_file(&path);
            assert_eq!(content.lines().count(), lines, "{}", path.display());
            assert!(content.len() as u64 <= rotate);
        }
        assert!(!rotated_path(&log, 4).exists());
        // The newest 35 lines survive, in order.
        let records = read_logs(dir.path(), &names(&["svc"]), None, None).unwrap();
        let texts: Vec<String> = records.iter().map(|r| r.text.clone()).collect();
        let expected: Vec<String> = (60..95).map(|i| format!("line {i:03}")).collect();
        assert_eq!(texts, expected);
        // Tail and since read only what they need but give the same answer.
        let tail = read_logs(dir.path(), &names(&["svc"]), Some(12), None).unwrap();
        assert_eq!(tail.len(), 12);
        assert_eq!(tail[0].text, "line 083");
        let since = read_logs(dir.path(), &names(&["svc"]), None, Some(T0 + 70)).unwrap();
        assert_eq!(since.len(), 25);
        assert_eq!(since[0].text, "line 070");
    }

    #[test]
    fn rotation_with_keep_zero_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), "k", 100, 0);
        for i in 0..20 {
            w.write_line(T0 + i, &format!("line {i}"));
        }
        w.flush();
        let files: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        let records = read_logs(dir.path(), &names(&["k"]), None, None).unwrap();
        assert!(!records.is_empty());
        assert_eq!(records.last().unwrap().text, "line 19");
    }

    #[test]
    fn merge_orders_by_time_and_keeps_each_process_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = LogWriter::open(dir.path(), "a", 0, 0);
        let mut b = LogWriter::open(dir.path(), "b", 0, 0);
        a.write_line(T0 + 10, "a1");
        b.write_line(T0 + 5, "b1");
        a.write_line(T0 + 20, "a2");
        b.write_line(T0 + 20, "b2");
        // The clock went back for b: b3 still follows b2.
        b.write_line(T0 + 15, "b3");
        a.write_event(T0 + 30, "exited 0");
        a.flush();
        b.flush();
        let all = read_logs(dir.path(), &names(&["a", "b"]), None, None).unwrap();
        let order: Vec<String> = all
            .iter()
            .map(|r| format!("{}:{}", r.process, r.text))
            .collect();
        assert_eq!(
            order,
            ["b:b1", "a:a1", "a:a2", "b:b2", "b:b3", "a:exited 0"]
        );
        let swapped = read_logs(dir.path(), &names(&["b", "a"]), None, None).unwrap();
        let order: Vec<&str> = swapped.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(order, ["b1", "a1", "b2", "b3", "a2", "exited 0"]);
        let tail = read_logs(dir.path(), &names(&["a", "b"]), Some(2), None).unwrap();
        let order: Vec<&str> = tail.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(order, ["b3", "exited 0"]);
        let since = read_logs(dir.path(), &names(&["a", "b"]), None, Some(T0 + 20)).unwrap();
        let order: Vec<&str> = since.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(order, ["a2", "b2", "exited 0"]);
        // A process without a log has no records; a missing directory neither.
        let none = read_logs(dir.path(), &names(&["nobody"]), None, None).unwrap();
        assert!(none.is_empty());
        let none = read_logs(&dir.path().join("missing"), &names(&["a"]), None, None).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn degraded_when_the_directory_cannot_exist_then_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("blocker");
        fs::write(&blocker, "a file where a directory should be").unwrap();
        let logs = blocker.join("logs");
        let mut w = LogWriter::open(&logs, "p", 0, 0);
        let reason = w.degraded().expect("degraded").to_owned();
        assert!(
            reason.contains("ot a directory") || reason.contains("exists"),
            "{reason}"
        );
        // Within the retry interval nothing is attempted; lines are counted.
        let start = now_millis();
        w.write_line(start + 1, "lost 1");
        w.write_line(start + 2, "lost 2\nlost 3");
        w.flush();
        assert_eq!(w.dropped(), 3);
        // Still broken at the next attempt.
        w.write_line(start + 2000, "lost 4");
        assert_eq!(w.dropped(), 4);
        fs::remove_file(&blocker).unwrap();
        // Not due yet (attempted at +2000).
        w.write_line(start + 2500, "lost 5");
        assert!(w.degraded().is_some());
        w.write_line(start + 3000, "back");
        w.flush();
        assert_eq!(w.degraded(), None);
        assert_eq!(w.total_dropped(), 5);
        let records = read_logs(&logs, &names(&["p"]), None, None).unwrap();
        assert_eq!(records.len(), 2);
        assert!(records[0].event);
        assert!(
            records[0]
                .text
                .starts_with("logging resumed, 5 lines dropped ("),
            "{}",
            records[0].text
        );
        assert_eq!(records[1].text, "back");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn degraded_when_the_disk_is_full_then_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.log");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let mut w = LogWriter::open(dir.path(), "full", 0, 0);
        assert_eq!(
            w.degraded(),
            None,
            "opening /dev/full works; writing does not"
        );
        let start = now_millis();
        for i in 0..10 {
            w.write_line(start + i, &format!("line {i}"));
        }
        w.flush();
        let reason = w.degraded().expect("degraded").to_owned();
        assert!(reason.contains("No space left"), "{reason}");
        assert_eq!(w.dropped(), 10);
        // Retrying against the full disk fails again and keeps counting.
        w.write_line(start + 1500, "still full");
        assert!(w.degraded().is_some());
        assert_eq!(w.dropped(), 11);
        // Space comes back.
        fs::remove_file(&path).unwrap();
        w.write_line(start + 3000, "resumed line");
        w.flush();
        assert_eq!(w.degraded(), None);
        let content = read_file(&path);
        let lines: Vec<&str> = content.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].contains(" * logging resumed, 11 lines dropped (No space left"),
            "{}",
            lines[0]
        );
        assert!(lines[1].ends_with(" | resumed line"));
    }

    #[test]
    fn buffered_until_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), "b", 0, 0);
        w.write_line(T0, "buffered");
        assert_eq!(read_file(w.path()), "");
        w.flush();
        assert!(read_file(w.path()).ends_with(" | buffered\n"));
        // A large burst is written without waiting for flush.
        for i in 0..10_000 {
            w.write_line(T0 + i, "0123456789");
        }
        assert!(read_file(w.path()).lines().count() > 1000);
    }

    #[test]
    fn hostile_names_stay_in_the_directory_and_stay_distinct() {
        let dir = Path::new("/base/logs");
        let long = "x".repeat(1000);
        let long2 = format!("{}y", "x".repeat(999));
        let hostile = [
            "../x",
            "/etc/passwd",
            "a\0b",
            "..",
            ".",
            "",
            "a/b",
            "a%2Fb",
            ".hidden",
            "mew-server",
            "sp ace",
            "ünï",
            &long,
            &long2,
        ];
        let mut seen = std::collections::HashSet::new();
        for name in hostile {
            let path = log_path(dir, name);
            assert_eq!(path.parent(), Some(dir), "{name:?} -> {}", path.display());
            let file = path.file_name().unwrap().to_str().unwrap();
            assert!(file.len() <= 255 - 6, "{name:?}");
            assert!(!file.starts_with('.'), "{name:?}");
            assert!(file.ends_with(".log"));
            assert_ne!(path, server_log_path(dir));
            assert!(seen.insert(path.clone()), "{name:?} collides");
        }
        assert_eq!(log_path(dir, "web-api_2.v1"), dir.join("web-api_2.v1.log"));
        assert_eq!(server_log_path(dir), dir.join("mew-server.log"));
    }
}
