//! Per-process log files: `.mew/logs/<name>.log`.
//!
//! One line per output line, `<timestamp> | <text>`, and one per lifecycle
//! event written by mew, `<timestamp> * <message>`. The timestamp is RFC 3339
//! local time with milliseconds and offset (`2026-11-26T12:34:56.789+01:00`),
//! so files sort and parse unambiguously. Text is already free of escape
//! sequences (see `terminal::capture`).
//!
//! Files rotate by size: `name.log` → `name.log.1` → … → `name.log.<keep>`.
//! Writing never fails the caller: when the disk is full or the directory
//! unwritable, the writer turns *degraded*, counts what it drops, retries at
//! most once a second, and notes the gap in the file when it recovers.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::status::Millis;

const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The log file of a process.
pub fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// Create the log directory (and missing parents) owner-only (0700): process
/// output may hold secrets, and other users have no business reading it. A
/// directory that already exists keeps its mode.
pub fn create_log_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// In `path` between `from` (a line boundary) and `len`: where the last
/// whole line ends, and how many whole lines there are.
fn whole_lines_after(path: &Path, from: u64, len: u64) -> io::Result<(u64, u64)> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    f.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::new();
    (&mut f).take(len - from).read_to_end(&mut tail)?;
    let lines = tail.iter().filter(|&&b| b == b'\n').count() as u64;
    let keep = tail
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(from, |i| from + i as u64 + 1);
    Ok((keep, lines))
}

/// mew's own log (the server's stdout and stderr).
pub fn server_log_path(dir: &Path) -> PathBuf {
    dir.join("mew-server.log")
}

fn rotated(dir: &Path, name: &str, n: u32) -> PathBuf {
    dir.join(format!("{name}.log.{n}"))
}

/// Formats timestamps fast: the part up to the second is cached.
struct Stamp {
    second: i64,
    head: String,
    offset: String,
}

impl Stamp {
    fn new() -> Stamp {
        Stamp {
            second: i64::MIN,
            head: String::new(),
            offset: String::new(),
        }
    }

    fn write(&mut self, at: Millis, out: &mut Vec<u8>) {
        let second = (at / 1000) as i64;
        if second != self.second {
            self.second = second;
            let t = chrono::DateTime::from_timestamp(second, 0)
                .unwrap_or_default()
                .with_timezone(&chrono::Local);
            self.head = t.format("%Y-%m-%dT%H:%M:%S").to_string();
            self.offset = t.format("%:z").to_string();
        }
        out.extend_from_slice(self.head.as_bytes());
        let ms = (at % 1000) as u16;
        out.extend_from_slice(&[
            b'.',
            b'0' + (ms / 100) as u8,
            b'0' + (ms / 10 % 10) as u8,
            b'0' + (ms % 10) as u8,
        ]);
        out.extend_from_slice(self.offset.as_bytes());
    }
}

/// Appends lines to one process's log file, rotating by size.
pub struct LogWriter {
    dir: PathBuf,
    name: String,
    rotate_size: u64,
    keep: u32,
    file: Option<BufWriter<File>>,
    size: u64,
    stamp: Stamp,
    line: Vec<u8>,
    degraded: Option<String>,
    dropped: u64,
    last_try: Option<Instant>,
    /// Lines handed to the buffer since the last successful flush: lost
    /// (and counted as dropped) if that data never reaches the kernel.
    pending: u64,
    /// Length of the file at the last successful flush: everything before
    /// it is whole lines. After a failed write (a full disk may take part of
    /// a line), the file is cut back to its last whole line.
    synced: u64,
    /// The file has not been opened by this writer yet (it may end with
    /// part of a line left by a killed server).
    file_unseen: bool,
}

impl LogWriter {
    /// Open (append to) `<dir>/<name>.log`. Never fails: a writer that
    /// cannot open its file is degraded and retries later.
    pub fn open(dir: &Path, name: &str, rotate_size: u64, keep: u32) -> LogWriter {
        let mut w = LogWriter {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            rotate_size: rotate_size.max(1024),
            keep,
            file: None,
            size: 0,
            stamp: Stamp::new(),
            line: Vec::with_capacity(256),
            degraded: None,
            dropped: 0,
            last_try: None,
            pending: 0,
            synced: 0,
            file_unseen: true,
        };
        w.reopen();
        w
    }

    fn reopen(&mut self) -> bool {
        self.last_try = Some(Instant::now());
        let path = log_path(&self.dir, &self.name);
        let opened = create_log_dir(&self.dir)
            .and_then(|_| OpenOptions::new().create(true).append(true).open(&path));
        match opened {
            Ok(f) => {
                let mut len = f.metadata().map(|m| m.len()).unwrap_or(0);
                if self.file_unseen && len > 0 {
                    // A server killed in the middle of a write can leave part
                    // of a line at the end: cut it, so every line stays whole.
                    let from = len.saturating_sub(64 * 1024);
                    if let Ok((keep, _)) = whole_lines_after(&path, from, len)
                        && keep < len
                        && (keep > from || from == 0)
                        && f.set_len(keep).is_ok()
                    {
                        len = keep;
                    }
                }
                self.file_unseen = false;
                if self.degraded.is_some() && len > self.synced {
                    // A failed write may have left part of a line (and some
                    // whole ones) after the last good flush: keep the whole
                    // lines, cut the rest, and count only what is missing.
                    match whole_lines_after(&path, self.synced, len) {
                        Ok((keep, lines)) => {
                            if keep < len && f.set_len(keep).is_ok() {
                                len = keep;
                            }
                            self.dropped = self.dropped.saturating_sub(lines);
                        }
                        Err(e) => tracing::warn!("cannot check {}: {e}", path.display()),
                    }
                }
                self.size = len;
                self.synced = len;
                self.file = Some(BufWriter::with_capacity(64 * 1024, f));
                true
            }
            Err(e) => {
                self.fail(format!("cannot open {}: {e}", path.display()));
                false
            }
        }
    }

    fn fail(&mut self, why: String) {
        if self.degraded.is_none() {
            tracing::warn!(process = %self.name, "logging degraded: {why}");
        }
        self.degraded = Some(why);
        // Whatever was buffered never reached the file: it is dropped. The
        // buffer is discarded without another write attempt (dropping a
        // BufWriter would retry the flush behind our back).
        self.dropped += std::mem::take(&mut self.pending);
        if let Some(w) = self.file.take() {
            let _ = w.into_parts();
        }
    }

    /// Why logging is degraded (with the number of lines dropped), if it is.
    pub fn degraded(&self) -> Option<String> {
        self.degraded
            .as_ref()
            .map(|d| format!("{d} ({} lines dropped)", self.dropped))
    }

    fn rotate(&mut self) {
        self.flush();
        self.file = None;
        let moved = if self.keep == 0 {
            fs::remove_file(log_path(&self.dir, &self.name)).is_ok()
        } else {
            let _ = fs::remove_file(rotated(&self.dir, &self.name, self.keep));
            for n in (1..self.keep).rev() {
                let from = rotated(&self.dir, &self.name, n);
                if from.exists() {
                    let _ = fs::rename(&from, rotated(&self.dir, &self.name, n + 1));
                }
            }
            fs::rename(
                log_path(&self.dir, &self.name),
                rotated(&self.dir, &self.name, 1),
            )
            .is_ok()
        };
        if moved {
            // A new file: nothing in it to check after a failure.
            self.synced = 0;
        }
        self.reopen();
    }

    fn write(&mut self, at: Millis, sep: &[u8], text: &str) {
        if self.file.is_none() {
            let due = self.last_try.is_none_or(|t| t.elapsed() >= RETRY_EVERY);
            if !due || !self.reopen() {
                self.dropped += 1;
                return;
            }
        }
        if self.degraded.is_some() {
            // Opening is not writing (a full disk still opens files): only
            // call it resumed once the note has reached the kernel.
            let note = format!("logging resumed; {} lines were dropped", self.dropped);
            let mut line = Vec::new();
            self.stamp.write(at, &mut line);
            line.extend_from_slice(b" * ");
            line.extend_from_slice(note.as_bytes());
            line.push(b'\n');
            let written = match self.file.as_mut() {
                Some(f) => f.write_all(&line).and_then(|_| f.flush()),
                None => Err(io::Error::other("no file")),
            };
            match written {
                Ok(()) => {
                    self.size += line.len() as u64;
                    self.synced = self.size;
                    self.degraded = None;
                    self.dropped = 0;
                    self.pending = 0;
                }
                Err(e) => {
                    // Not resumed after all: take back any part of the note.
                    if let Some(f) = self.file.as_ref() {
                        let _ = f.get_ref().set_len(self.synced);
                    }
                    self.dropped += 1;
                    self.fail(format!(
                        "cannot write {}: {e}",
                        log_path(&self.dir, &self.name).display()
                    ));
                    return;
                }
            }
        }
        self.line.clear();
        self.stamp.write(at, &mut self.line);
        self.line.extend_from_slice(sep);
        self.line.extend_from_slice(text.as_bytes());
        self.line.push(b'\n');
        if self.size > 0 && self.size + self.line.len() as u64 > self.rotate_size {
            self.rotate();
            if self.file.is_none() {
                self.dropped += 1;
                return;
            }
        }
        let Some(f) = self.file.as_mut() else {
            self.dropped += 1;
            return;
        };
        match f.write_all(&self.line) {
            Ok(()) => {
                self.size += self.line.len() as u64;
                self.pending += 1;
            }
            Err(e) => {
                self.dropped += 1;
                self.fail(format!(
                    "cannot write {}: {e}",
                    log_path(&self.dir, &self.name).display()
                ));
            }
        }
    }

    /// One output line of the process.
    pub fn write_line(&mut self, at: Millis, text: &str) {
        self.write(at, b" | ", text);
    }

    /// A lifecycle event written by mew.
    pub fn write_event(&mut self, at: Millis, message: &str) {
        self.write(at, b" * ", message);
    }

    /// Hand buffered lines to the kernel.
    pub fn flush(&mut self) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        match f.flush() {
            Ok(()) => {
                self.pending = 0;
                self.synced = self.size;
            }
            Err(e) => self.fail(format!(
                "cannot write {}: {e}",
                log_path(&self.dir, &self.name).display()
            )),
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

/// One line read back from a log file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRecord {
    pub at: Millis,
    pub process: String,
    /// Written by mew (a lifecycle event), not by the process.
    pub event: bool,
    pub text: String,
}

/// Parse one line of a log file.
pub fn parse_line(process: &str, line: &str) -> Option<LogRecord> {
    let (stamp, rest) = line.split_once(' ')?;
    let at = chrono::DateTime::parse_from_rfc3339(stamp)
        .ok()?
        .timestamp_millis();
    let (event, text) = if let Some(t) = rest.strip_prefix("| ") {
        (false, t)
    } else if let Some(t) = rest.strip_prefix("* ") {
        (true, t)
    } else if rest == "|" || rest == "*" {
        (rest == "*", "")
    } else {
        return None;
    };
    Some(LogRecord {
        at: u64::try_from(at).ok()?,
        process: process.to_string(),
        event,
        text: text.to_string(),
    })
}

fn read_file(
    path: &Path,
    process: &str,
    since: Option<Millis>,
    out: &mut Vec<LogRecord>,
) -> io::Result<()> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        let line = String::from_utf8_lossy(&line);
        if let Some(r) = parse_line(process, &line)
            && since.is_none_or(|s| r.at >= s)
        {
            out.push(r);
        }
    }
    Ok(())
}

/// Read the logs of `names` (rotated files included), merged by time (in
/// file order for equal times), newer than `since`, the last `tail` records.
pub fn read_logs(
    dir: &Path,
    names: &[String],
    tail: Option<usize>,
    since: Option<Millis>,
) -> io::Result<Vec<LogRecord>> {
    let mut all: Vec<LogRecord> = Vec::new();
    for name in names {
        let mut own = Vec::new();
        let mut n = 1;
        let mut old = Vec::new();
        while rotated(dir, name, n).exists() {
            old.push(rotated(dir, name, n));
            n += 1;
        }
        for path in old.iter().rev() {
            read_file(path, name, since, &mut own)?;
        }
        read_file(&log_path(dir, name), name, since, &mut own)?;
        all.extend(own);
    }
    // Stable: lines of one process keep their order within one millisecond.
    all.sort_by_key(|r| r.at);
    if let Some(n) = tail {
        let skip = all.len().saturating_sub(n);
        all.drain(..skip);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn lines_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), "web", 1 << 20, 3);
        w.write_line(1_700_000_000_123, "hello | world");
        w.write_event(1_700_000_000_999, "started pid 42");
        w.write_line(1_700_000_001_000, "");
        w.flush();
        let recs = read_logs(dir.path(), &names(&["web"]), None, None).unwrap();
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[0].at, 1_700_000_000_123);
        assert_eq!(recs[0].text, "hello | world");
        assert!(!recs[0].event);
        assert!(recs[1].event);
        assert_eq!(recs[1].text, "started pid 42");
        assert_eq!(recs[2].text, "");
        let raw = fs::read_to_string(log_path(dir.path(), "web")).unwrap();
        let first = raw.lines().next().unwrap();
        assert!(first.contains(".123"), "{first}");
        assert!(first.ends_with(" | hello | world"), "{first}");
    }

    #[test]
    fn timestamps_cross_second_boundaries() {
        let mut s = Stamp::new();
        let mut a = Vec::new();
        let mut b = Vec::new();
        s.write(1_700_000_000_999, &mut a);
        s.write(1_700_000_001_001, &mut b);
        let (a, b) = (String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
        assert!(a < b, "{a} {b}");
        assert!(a.contains(".999") && b.contains(".001"));
    }

    #[test]
    fn rotation_keeps_n_files_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = LogWriter::open(dir.path(), "p", 2048, 2);
        for i in 0..500u64 {
            w.write_line(1_700_000_000_000 + i, &format!("line {i:04}"));
        }
        w.flush();
        assert!(rotated(dir.path(), "p", 1).exists());
        assert!(rotated(dir.path(), "p", 2).exists());
        assert!(!rotated(dir.path(), "p", 3).exists());
        for path in [log_path(dir.path(), "p"), rotated(dir.path(), "p", 1)] {
            assert!(fs::metadata(&path).unwrap().len() <= 2048);
        }
        let recs = read_logs(dir.path(), &names(&["p"]), None, None).unwrap();
        let nums: Vec<u64> = recs.iter().map(|r| r.text[5..].parse().unwrap()).collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert_eq!(*nums.last().unwrap(), 499);
    }

    #[test]
    fn merges_processes_by_time_with_tail_and_since() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = LogWriter::open(dir.path(), "a", 1 << 20, 1);
        let mut b = LogWriter::open(dir.path(), "b", 1 << 20, 1);
        a.write_line(1_000_000, "a1");
        b.write_line(1_000_500, "b1");
        a.write_line(1_001_000, "a2");
        b.write_line(1_002_000, "b2");
        a.flush();
        b.flush();
        let all = read_logs(dir.path(), &names(&["a", "b"]), None, None).unwrap();
        let texts: Vec<&str> = all.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(texts, ["a1", "b1", "a2", "b2"]);
        let tail = read_logs(dir.path(), &names(&["a", "b"]), Some(2), None).unwrap();
        assert_eq!(
            tail.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
            ["a2", "b2"]
        );
        let since = read_logs(dir.path(), &names(&["a", "b"]), None, Some(1_000_600)).unwrap();
        assert_eq!(since.len(), 2);
    }

    #[test]
    fn an_unwritable_dir_degrades_and_recovers() {
        let base = tempfile::tempdir().unwrap();
        // A file where the log directory should be: every open fails, even as root.
        let dir = base.path().join("logs");
        fs::write(&dir, b"not a dir").unwrap();
        let mut w = LogWriter::open(&dir, "p", 1 << 20, 1);
        assert!(w.degraded().is_some());
        w.write_line(1_000_000, "lost");
        assert!(
            w.degraded().unwrap().contains("1 lines dropped"),
            "{:?}",
            w.degraded()
        );
        fs::remove_file(&dir).unwrap();
        w.last_try = Some(Instant::now() - RETRY_EVERY);
        w.write_line(1_000_100, "kept");
        w.flush();
        assert!(w.degraded().is_none());
        let recs = read_logs(&dir, &names(&["p"]), None, None).unwrap();
        assert_eq!(recs.len(), 2);
        assert!(
            recs[0].event && recs[0].text.contains("1 lines were dropped"),
            "{recs:?}"
        );
        assert_eq!(recs[1].text, "kept");
    }

    #[test]
    fn a_full_disk_counts_every_lost_line_and_resumes_only_when_writes_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "p");
        // Every write to /dev/full fails with ENOSPC, yet opening it succeeds.
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let mut w = LogWriter::open(dir.path(), "p", 1 << 20, 1);
        assert!(w.degraded().is_none(), "opening alone is fine");
        for n in 0..5 {
            w.write_line(1_000_000 + n, "lost");
        }
        w.flush();
        assert!(
            w.degraded().unwrap().contains("5 lines dropped"),
            "{:?}",
            w.degraded()
        );
        // Retrying opens /dev/full again: that is not a recovery.
        w.last_try = Some(Instant::now() - RETRY_EVERY);
        w.write_line(1_000_010, "lost too");
        w.flush();
        assert!(
            w.degraded().unwrap().contains("6 lines dropped"),
            "{:?}",
            w.degraded()
        );
        // Space is back.
        fs::remove_file(&path).unwrap();
        w.last_try = Some(Instant::now() - RETRY_EVERY);
        w.write_line(1_000_020, "kept");
        w.flush();
        assert!(w.degraded().is_none());
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].ends_with(" * logging resumed; 6 lines were dropped"),
            "{text}"
        );
        assert!(lines[1].ends_with(" | kept"), "{text}");
    }

    #[test]
    fn a_partial_line_left_by_a_failed_write_is_cut_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "p");
        let mut w = LogWriter::open(dir.path(), "p", 1 << 20, 1);
        w.write_line(1_000_000, "one");
        w.flush();
        // As if a full disk took one more whole line and half of the next
        // before failing the flush of three buffered lines.
        w.write_line(1_000_001, "two");
        w.write_line(1_000_002, "three");
        w.write_line(1_000_003, "four");
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"2026-01-01T00:00:00.000+00:00 | two\n2026-01-01T00:0")
            .unwrap();
        w.fail("cannot write: No space left on device".into());
        assert!(w.degraded().unwrap().contains("3 lines dropped"));
        w.last_try = Some(Instant::now() - RETRY_EVERY);
        w.write_line(1_000_004, "five");
        w.flush();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4, "{text}");
        assert!(lines[1].ends_with(" | two"), "{text}");
        assert!(
            lines[2].ends_with(" * logging resumed; 2 lines were dropped"),
            "{text}"
        );
        assert!(lines[3].ends_with(" | five"), "{text}");
    }

    #[test]
    fn a_partial_line_left_by_a_killed_writer_is_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "p");
        fs::write(
            &path,
            b"2026-01-01T00:00:00.000+00:00 | whole\n2026-01-01T00:0",
        )
        .unwrap();
        let mut w = LogWriter::open(dir.path(), "p", 1 << 20, 1);
        w.write_line(1_700_000_000_000, "next");
        w.flush();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with("| whole"));
        assert!(lines[1].ends_with("| next"));
    }

    #[test]
    fn garbage_lines_are_skipped() {
        assert!(parse_line("p", "no timestamp here").is_none());
        assert!(parse_line("p", "2026-01-01T00:00:00.000+00:00 ? odd").is_none());
        assert!(parse_line("p", "").is_none());
    }
}
