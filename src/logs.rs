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
//!
//! **Hostile directories.** A log directory may have been prepared by someone
//! else (a shared project dir, `logs.dir: log` in an app's tree), and mew may
//! run as root. So every file is opened relative to the directory's
//! descriptor with `O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK` and created 0600
//! whatever the umask; mew writes only to a regular file owned by its
//! effective uid with one link (anything else is refused and reported through
//! [`LogWriter::degraded`]), tightens such a file to 0600 when it finds it
//! wider, and follows a symlinked log directory only when the link and the
//! directory it points to are both the user's own. Rotation renames with
//! `renameat` (a link is renamed, never followed).
//!
//! **Files removed while in use.** At most once a second (and before each
//! rotation) the writer checks that its path still names the file it writes
//! (same device and inode, link count not 0). When the file was removed or
//! replaced it starts a new one, copies into it what it wrote since the last
//! check (when the old file was removed, so those lines are not lost), and
//! says so in a ` * ` line; [`LogWriter::degraded`] reports it for a while.
//!
//! **What mew created.** Each log directory holds a manifest, [`MANIFEST`]
//! (`.mew-logs`): one process name a line, for every `<name>.log` mew created
//! there (or found in mew's own format). `mew space clean` removes those
//! names' files (and `mew-server.log*`) from a logs dir that is not mew's own,
//! and nothing else.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::UnlinkatFlags;

use crate::status::Millis;
use crate::sys::euid;

const RETRY_EVERY: Duration = Duration::from_secs(1);
/// How often a writer checks that its file is still in place.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long "the log file was removed" stays in [`LogWriter::degraded`]
/// (and at least until it has been read once).
const NOTICE_FOR: Duration = Duration::from_secs(60);
/// At most this much is copied from a removed log file into its successor.
const MAX_RECOVER: u64 = 8 << 20;
/// Reading skips lines longer than this (mew writes at most 64 KiB a line).
const MAX_READ_LINE: usize = 1 << 20;
/// Tails are read from the end of a file in blocks of this size.
const BLOCK: usize = 64 * 1024;

/// The manifest of a log directory: the names whose `<name>.log` mew created.
pub(crate) const MANIFEST: &str = ".mew-logs";
const MANIFEST_HEADER: &str = "# Log files mew created here: <name>.log and <name>.log.N for each name below.\n# `mew space clean --logs` removes those (and mew-server.log*), nothing else.\n";

/// The log file of a process.
pub(crate) fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// Create the log directory (and missing parents) owner-only (0700): process
/// output may hold secrets, and other users have no business reading it. A
/// directory that already exists keeps its mode (the files in it are 0600
/// whatever it is).
pub(crate) fn create_log_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The upstream MEW CLI's log locations: for each process that has one
/// (`gateway.log`, `<name>.log`, `<name>-bridge.log`, `<name>-client.log`,
/// see [`crate::config::ProcessConfig::upstream_log`]), a symlink
/// `<space>/logs/<that>` to mew's own log, so the scripts written for the
/// upstream CLI (`grep … logs/agent.log`) read what mew writes. An existing
/// link or an empty file there is replaced (atomically); anything else is
/// left alone and named in the returned notes. `logs/` itself must be a
/// real directory (it is made when missing).
pub(crate) fn link_upstream_logs(cfg: &crate::config::SpaceConfig) -> Vec<String> {
    let mut notes = Vec::new();
    if !cfg.logs.upstream_paths || cfg.processes.iter().all(|p| p.upstream_log.is_none()) {
        return notes;
    }
    let dir = cfg.dir.join("logs");
    match fs::symlink_metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            notes.push(format!(
                "{} is not a directory: no upstream log links (logs.upstream_paths)",
                dir.display()
            ));
            return notes;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Err(e) = fs::create_dir(&dir) {
                notes.push(format!("cannot create {}: {e}", dir.display()));
                return notes;
            }
        }
        Err(e) => {
            notes.push(format!("cannot use {}: {e}", dir.display()));
            return notes;
        }
    }
    for p in &cfg.processes {
        let Some(name) = &p.upstream_log else {
            continue;
        };
        let target = log_path(&cfg.logs.dir, &p.name);
        let link = dir.join(name);
        if link == target {
            continue;
        }
        let replace = match fs::symlink_metadata(&link) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Ok(m) => m.file_type().is_symlink() || (m.is_file() && m.len() == 0),
            Err(_) => false,
        };
        if !replace {
            notes.push(format!(
                "{} exists and is not mew's: left as it is ({}'s output is in {})",
                link.display(),
                p.name,
                target.display()
            ));
            continue;
        }
        let tmp = dir.join(format!(".{name}.mew-link"));
        let _ = fs::remove_file(&tmp);
        if let Err(e) =
            std::os::unix::fs::symlink(&target, &tmp).and_then(|()| fs::rename(&tmp, &link))
        {
            let _ = fs::remove_file(&tmp);
            notes.push(format!("cannot link {}: {e}", link.display()));
        }
    }
    notes
}

/// mew's own log (the server's stdout and stderr).
pub(crate) fn server_log_path(dir: &Path) -> PathBuf {
    dir.join("mew-server.log")
}

fn rotated(dir: &Path, name: &str, n: u32) -> PathBuf {
    dir.join(format!("{name}.log.{n}"))
}

/// A name mew may have used for a log file (a process name, see
/// docs/space-yaml.md): 1 to 64 of `A-Z a-z 0-9 . _ -`, starting with a
/// letter or digit. Anything else in a manifest is ignored.
pub(crate) fn is_log_name(name: &str) -> bool {
    name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

// ---- opening files safely ------------------------------------------------------

/// Open the log directory `dir` for `*at` calls, creating it (0700) when
/// missing. A symbolic link is followed only when it and the directory it
/// points to are owned by the effective uid (the user's own choice, say a
/// bigger disk); otherwise it is refused (`PermissionDenied`).
pub(crate) fn open_log_dir(dir: &Path) -> io::Result<OwnedFd> {
    open_dir_checked(dir).map_err(|why| io::Error::new(io::ErrorKind::PermissionDenied, why))
}

/// [`open_log_dir`], its errors complete sentences.
fn open_dir_checked(dir: &Path) -> Result<OwnedFd, String> {
    create_log_dir(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let cannot = |e: Errno| format!("cannot open {}: {}", dir.display(), io::Error::from(e));
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    match nix::fcntl::open(dir, flags | OFlag::O_NOFOLLOW, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(e @ (Errno::ELOOP | Errno::ENOTDIR)) => {
            let md = fs::symlink_metadata(dir).map_err(|_| cannot(e))?;
            if !md.file_type().is_symlink() {
                return Err(cannot(e));
            }
            if md.uid() != euid() {
                return Err(format!(
                    "refusing the log directory {}: it is a symbolic link owned by uid {}, not by you (uid {})",
                    dir.display(),
                    md.uid(),
                    euid()
                ));
            }
            let fd = nix::fcntl::open(dir, flags, Mode::empty()).map_err(cannot)?;
            let st = nix::sys::stat::fstat(&fd).map_err(cannot)?;
            if st.st_uid != euid() {
                return Err(format!(
                    "refusing the log directory {}: it is a symbolic link to a directory owned by uid {}, not by you (uid {})",
                    dir.display(),
                    st.st_uid,
                    euid()
                ));
            }
            Ok(fd)
        }
        Err(e) => Err(cannot(e)),
    }
}

/// Why mew will not write to a file it opened, if it will not: only a regular
/// file owned by the effective uid with exactly one link is written (a hard
/// link could be any file of the user's, `/etc/shadow` for root).
fn refuse_reason(md: &fs::Metadata) -> Option<String> {
    if !md.file_type().is_file() {
        Some("it is not a regular file".into())
    } else if md.uid() != euid() {
        Some(format!(
            "it is owned by uid {}, not by you (uid {})",
            md.uid(),
            euid()
        ))
    } else if md.nlink() != 1 {
        Some(format!(
            "it has {} hard links (a hard link could be any file of yours)",
            md.nlink()
        ))
    } else {
        None
    }
}

/// A file opened for appending (and reading back).
struct Opened {
    file: File,
    id: (u64, u64),
    len: u64,
    created: bool,
    /// Created by mew, or in mew's format: a file mew may repair.
    mine: bool,
}

/// Open `name` in the directory `dir` for appending, creating it 0600.
/// Never through a symbolic link, never a FIFO or device (opening does not
/// block), never a file [`refuse_reason`] rejects; a wider mode than 0600 is
/// tightened. Errors are complete sentences naming `shown`.
fn open_at(dir: BorrowedFd<'_>, name: &str, shown: &Path) -> Result<Opened, String> {
    let flags = OFlag::O_RDWR
        | OFlag::O_APPEND
        | OFlag::O_NOFOLLOW
        | OFlag::O_CLOEXEC
        | OFlag::O_NOCTTY
        | OFlag::O_NONBLOCK;
    let cannot = |e: Errno| format!("cannot open {}: {}", shown.display(), io::Error::from(e));
    let mut attempt = 0;
    let (fd, created) = loop {
        attempt += 1;
        match nix::fcntl::openat(
            dir,
            name,
            flags | OFlag::O_CREAT | OFlag::O_EXCL,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => break (fd, true),
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(cannot(e)),
        }
        match nix::fcntl::openat(dir, name, flags, Mode::empty()) {
            Ok(fd) => break (fd, false),
            Err(Errno::ELOOP) => {
                return Err(format!(
                    "refusing to write {}: it is a symbolic link (mew never writes through one)",
                    shown.display()
                ));
            }
            // Removed in between: create it after all.
            Err(Errno::ENOENT) if attempt < 3 => {}
            Err(e) => return Err(cannot(e)),
        }
    };
    let file = File::from(fd);
    let md = file
        .metadata()
        .map_err(|e| format!("cannot inspect {}: {e}", shown.display()))?;
    if let Some(why) = refuse_reason(&md) {
        return Err(format!("refusing to write {}: {why}", shown.display()));
    }
    if md.mode() & 0o7777 != 0o600 {
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| format!("cannot make {} private: {e}", shown.display()))?;
    }
    Ok(Opened {
        id: (md.dev(), md.ino()),
        len: md.len(),
        created,
        mine: created,
        file,
    })
}

/// The file starts with a line in mew's format (a log of an older mew).
fn looks_like_mew_log(f: &File) -> bool {
    let mut head = [0u8; 512];
    let n = f.read_at(&mut head, 0).unwrap_or(0);
    let head = &head[..n];
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    parse_line("", &String::from_utf8_lossy(line)).is_some()
}

/// Make sure the manifest of `dir` exists, and lists `name` when given.
fn record_in_manifest(
    dir: BorrowedFd<'_>,
    shown_dir: &Path,
    name: Option<&str>,
) -> Result<(), String> {
    let shown = shown_dir.join(MANIFEST);
    let mut m = open_at(dir, MANIFEST, &shown)?;
    let mut text = Vec::new();
    if m.created || m.len == 0 {
        text.extend_from_slice(MANIFEST_HEADER.as_bytes());
    }
    if let Some(name) = name {
        let listed = m.len > 0 && {
            let len = m.len.min(1 << 20) as usize;
            let mut buf = vec![0u8; len];
            let n = m.file.read_at(&mut buf, 0).unwrap_or(0);
            buf[..n]
                .split(|&b| b == b'\n')
                .any(|l| l == name.as_bytes())
        };
        if !listed {
            text.extend_from_slice(name.as_bytes());
            text.push(b'\n');
        }
    }
    if text.is_empty() {
        return Ok(());
    }
    // One write with O_APPEND: writers of one server never interleave.
    m.file
        .write_all(&text)
        .map_err(|e| format!("cannot write {}: {e}", shown.display()))
}

/// The names a manifest lists: `Ok(None)` without a manifest; `Err` when
/// the manifest is not a regular file of the effective uid (then it says
/// nothing: someone else may have written it).
pub(crate) fn manifest_names(dir: BorrowedFd<'_>) -> Result<Option<Vec<String>>, String> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK;
    let fd = match nix::fcntl::openat(dir, MANIFEST, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(None),
        Err(Errno::ELOOP) => return Err(format!("{MANIFEST} is a symbolic link")),
        Err(e) => return Err(format!("cannot open {MANIFEST}: {}", io::Error::from(e))),
    };
    let file = File::from(fd);
    let md = file
        .metadata()
        .map_err(|e| format!("cannot inspect {MANIFEST}: {e}"))?;
    if let Some(why) = refuse_reason(&md) {
        return Err(format!("ignoring {MANIFEST}: {why}"));
    }
    let mut names = Vec::new();
    let mut line = Vec::new();
    let mut r = BufReader::new(file);
    while read_bounded_line(&mut r, &mut line, 4096)
        .map_err(|e| format!("cannot read {MANIFEST}: {e}"))?
        .is_some()
    {
        if let Ok(name) = std::str::from_utf8(&line)
            && is_log_name(name)
            && !names.iter().any(|n| n == name)
        {
            names.push(name.to_string());
        }
    }
    Ok(Some(names))
}

/// Open (append to) mew's own log, `mew-server.log` in `dir`, with the same
/// care as process logs: created 0600, no symlink, a regular file of the
/// effective uid with one link, recorded in the manifest.
pub(crate) fn open_server_log(dir: &Path) -> io::Result<File> {
    let path = server_log_path(dir);
    let d = open_log_dir(dir)?;
    let o = open_at(d.as_fd(), "mew-server.log", &path)
        .map_err(|why| io::Error::new(io::ErrorKind::PermissionDenied, why))?;
    if let Err(why) = record_in_manifest(d.as_fd(), dir, Some("mew-server")) {
        tracing::warn!("{why}");
    }
    Ok(o.file)
}

/// In `f` between `from` (a line boundary) and `len`: where the last whole
/// line ends, and how many whole lines there are.
fn whole_lines_after(f: &File, from: u64, len: u64) -> io::Result<(u64, u64)> {
    let mut tail = vec![0u8; usize::try_from(len - from).map_err(io::Error::other)?];
    f.read_exact_at(&mut tail, from)?;
    let lines = tail.iter().filter(|&&b| b == b'\n').count() as u64;
    let keep = tail
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(from, |i| from + i as u64 + 1);
    Ok((keep, lines))
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
    /// Device and inode of the file open now (or last): a file seen again
    /// after a failure is the same file, anything else is new to this writer.
    ident: Option<(u64, u64)>,
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
    /// When the file was last found in place, and its size then (a line
    /// boundary): what was written after it is copied if the file turns out
    /// to have been removed.
    last_check: Instant,
    checked: u64,
    /// The manifest lists this writer's name (or has been made sure of).
    recorded: bool,
    manifest_ensured: bool,
    /// "The log file was removed while in use", shown by `degraded()`.
    notice: Option<(String, Instant)>,
    notice_seen: AtomicBool,
    /// Tests: open this path (following links) instead of the log file.
    #[cfg(test)]
    test_device: Option<PathBuf>,
}

impl LogWriter {
    /// Open (append to) `<dir>/<name>.log`. Never fails: a writer that
    /// cannot open its file is degraded and retries later.
    pub fn open(dir: &Path, name: &str, rotate_size: u64, keep: u32) -> LogWriter {
        let mut w = LogWriter::closed(dir, name, rotate_size, keep);
        w.reopen();
        w
    }

    fn closed(dir: &Path, name: &str, rotate_size: u64, keep: u32) -> LogWriter {
        LogWriter {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            rotate_size: rotate_size.max(1024),
            keep,
            file: None,
            ident: None,
            size: 0,
            stamp: Stamp::new(),
            line: Vec::with_capacity(256),
            degraded: None,
            dropped: 0,
            last_try: None,
            pending: 0,
            synced: 0,
            last_check: Instant::now(),
            checked: 0,
            recorded: false,
            manifest_ensured: false,
            notice: None,
            notice_seen: AtomicBool::new(false),
            #[cfg(test)]
            test_device: None,
        }
    }

    fn path(&self) -> PathBuf {
        log_path(&self.dir, &self.name)
    }

    fn file_name(&self) -> String {
        format!("{}.log", self.name)
    }

    /// Open the log file, with every check of [`open_at`].
    fn open_current(&mut self) -> Result<Opened, String> {
        #[cfg(test)]
        if let Some(dev) = &self.test_device {
            let file = OpenOptions::new()
                .read(true)
                .append(true)
                .open(dev)
                .map_err(|e| format!("cannot open {}: {e}", dev.display()))?;
            let md = file.metadata().map_err(|e| e.to_string())?;
            return Ok(Opened {
                id: (md.dev(), md.ino()),
                len: 0,
                created: false,
                mine: true,
                file,
            });
        }
        let path = self.path();
        let dir = open_dir_checked(&self.dir)?;
        let mut o = open_at(dir.as_fd(), &self.file_name(), &path)?;
        let ours = o.created || (o.len > 0 && looks_like_mew_log(&o.file));
        o.mine = ours;
        if (ours && !self.recorded) || !self.manifest_ensured {
            match record_in_manifest(dir.as_fd(), &self.dir, ours.then_some(self.name.as_str())) {
                Ok(()) => {
                    self.manifest_ensured = true;
                    self.recorded |= ours;
                }
                Err(why) => tracing::warn!(process = %self.name, "{why}"),
            }
        }
        Ok(o)
    }

    /// The device and inode the log file's path names now.
    fn ident_at_path(&self) -> Option<(u64, u64)> {
        #[cfg(test)]
        if let Some(dev) = &self.test_device {
            return fs::metadata(dev).ok().map(|m| (m.dev(), m.ino()));
        }
        fs::symlink_metadata(self.path())
            .ok()
            .map(|m| (m.dev(), m.ino()))
    }

    fn reopen(&mut self) -> bool {
        self.last_try = Some(Instant::now());
        match self.open_current() {
            Ok(Opened {
                file: f,
                id,
                mut len,
                mine,
                ..
            }) => {
                let path = self.path();
                let same = self.ident == Some(id);
                if !same && len > 0 && mine {
                    // A server killed in the middle of a write can leave part
                    // of a line at the end: cut it, so every line stays whole.
                    // (Only ever on a regular file of ours with one link,
                    // `open_at` refused anything else, and in mew's format:
                    // another program's log is not mew's to cut.)
                    let from = len.saturating_sub(64 * 1024);
                    if let Ok((keep, _)) = whole_lines_after(&f, from, len)
                        && keep < len
                        && (keep > from || from == 0)
                        && f.set_len(keep).is_ok()
                    {
                        len = keep;
                    }
                }
                if same && self.degraded.is_some() && len > self.synced {
                    // A failed write may have left part of a line (and some
                    // whole ones) after the last good flush: keep the whole
                    // lines, cut the rest, and count only what is missing.
                    match whole_lines_after(&f, self.synced, len) {
                        Ok((keep, lines)) => {
                            if keep < len && f.set_len(keep).is_ok() {
                                len = keep;
                            }
                            self.dropped = self.dropped.saturating_sub(lines);
                        }
                        Err(e) => tracing::warn!("cannot check {}: {e}", path.display()),
                    }
                }
                self.ident = Some(id);
                self.size = len;
                self.synced = len;
                self.checked = len;
                self.last_check = Instant::now();
                self.file = Some(BufWriter::with_capacity(64 * 1024, f));
                true
            }
            Err(why) => {
                self.fail(why);
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
    /// Also, for [`NOTICE_FOR`] and at least until it has been returned once,
    /// that the log file was removed (or replaced) while in use and a new
    /// one was started.
    pub(crate) fn degraded(&self) -> Option<String> {
        if let Some(d) = &self.degraded {
            return Some(format!("{d} ({} lines dropped)", self.dropped));
        }
        let (text, at) = self.notice.as_ref()?;
        let seen = self.notice_seen.swap(true, Ordering::Relaxed);
        (!seen || at.elapsed() < NOTICE_FOR).then(|| text.clone())
    }

    /// Whether the file being written is still the one at its path; when it
    /// is not (removed, moved, replaced), write to a new one from now on,
    /// with a note, and the lines that went to a removed file since the last
    /// check copied over.
    fn check_in_place(&mut self, at: Millis) {
        self.last_check = Instant::now();
        let (Some(id), Some(f)) = (self.ident, self.file.as_ref()) else {
            return;
        };
        let links = f.get_ref().metadata().map_or(1, |m| m.nlink());
        if links > 0 && self.ident_at_path() == Some(id) {
            self.checked = self.size;
            return;
        }
        let removed = links == 0;
        let from = self.checked;
        // What is buffered belongs to the old file (and is copied with the rest).
        self.flush();
        let Some(old) = self.file.take() else {
            return;
        };
        let (old, _) = old.into_parts();
        let old_len = old.metadata().map_or(0, |m| m.len());
        if !self.reopen() || self.ident == Some(id) {
            // Degraded (it says so), or the very same file is back in place.
            return;
        }
        let mut recovered = 0u64;
        let mut lost = false;
        if removed && old_len > from {
            if old_len - from <= MAX_RECOVER {
                match self.copy_from(&old, from, old_len) {
                    Ok(lines) => recovered = lines,
                    Err(e) => {
                        lost = true;
                        tracing::warn!(process = %self.name, "cannot copy from the removed log: {e}");
                    }
                }
            } else {
                lost = true;
            }
        }
        let file = self.file_name();
        let mut note = if removed {
            format!("{file} was removed while in use; mew started a new one")
        } else {
            format!("{file} was moved or replaced while in use; mew reopened it")
        };
        if recovered > 0 {
            note.push_str(&format!(
                " (the {recovered} lines written since the last check were copied from the removed file)"
            ));
        }
        if lost {
            note.push_str(" (the lines written in the last second went with the removed file)");
        }
        self.append(at, b" * ", &note);
        self.flush();
        let when = chrono::Local::now().format("%H:%M:%S");
        self.notice = Some((format!("{note}, at {when}"), Instant::now()));
        self.notice_seen.store(false, Ordering::Relaxed);
    }

    /// Copy `[from, to)` of `old` (whole lines) to the current file.
    fn copy_from(&mut self, old: &File, from: u64, to: u64) -> io::Result<u64> {
        let Some(f) = self.file.as_mut() else {
            return Ok(0);
        };
        let mut buf = vec![0u8; BLOCK];
        let mut at = from;
        let mut lines = 0;
        while at < to {
            let want = ((to - at) as usize).min(BLOCK);
            let n = old.read_at(&mut buf[..want], at)?;
            if n == 0 {
                break;
            }
            f.write_all(&buf[..n])?;
            lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
            at += n as u64;
            self.size += n as u64;
        }
        Ok(lines)
    }

    fn rotate(&mut self, at: Millis) {
        // A file that is no longer at its path is not rotated: whatever is
        // there now is not ours to rename. A new file has been started.
        let before = self.ident;
        self.check_in_place(at);
        if self.file.is_none() || self.ident != before {
            return;
        }
        self.flush();
        let Some(w) = self.file.take() else {
            return;
        };
        let (file, _) = w.into_parts();
        let dir = match open_log_dir(&self.dir) {
            Ok(d) => d,
            Err(e) => {
                self.fail(format!("cannot rotate {}: {e}", self.path().display()));
                return;
            }
        };
        let current = self.file_name();
        let here = nix::sys::stat::fstatat(&dir, current.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| (st.st_dev, st.st_ino));
        if here == self.ident {
            let name = |n: u32| format!("{}.log.{n}", self.name);
            // `unlinkat` and `renameat` act on the names themselves: a
            // symbolic link planted among the rotated files is moved or
            // removed as a link, never followed.
            if self.keep == 0 {
                let _ = nix::unistd::unlinkat(&dir, current.as_str(), UnlinkatFlags::NoRemoveDir);
            } else {
                let _ = nix::unistd::unlinkat(
                    &dir,
                    name(self.keep).as_str(),
                    UnlinkatFlags::NoRemoveDir,
                );
                for n in (1..self.keep).rev() {
                    let _ =
                        nix::fcntl::renameat(&dir, name(n).as_str(), &dir, name(n + 1).as_str());
                }
                let _ = nix::fcntl::renameat(&dir, current.as_str(), &dir, name(1).as_str());
            }
        }
        drop(file);
        self.reopen();
    }

    /// Put one line in the buffer (no checks, no rotation).
    fn append(&mut self, at: Millis, sep: &[u8], text: &str) {
        let mut line = Vec::with_capacity(64 + text.len());
        self.stamp.write(at, &mut line);
        line.extend_from_slice(sep);
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n');
        self.put(&line);
    }

    /// Put one whole line (with its newline) in the buffer.
    fn put(&mut self, line: &[u8]) {
        let Some(f) = self.file.as_mut() else {
            self.dropped += 1;
            return;
        };
        match f.write_all(line) {
            Ok(()) => {
                self.size += line.len() as u64;
                self.pending += 1;
            }
            Err(e) => {
                self.dropped += 1;
                self.fail(format!("cannot write {}: {e}", self.path().display()));
            }
        }
    }

    fn write(&mut self, at: Millis, sep: &[u8], text: &str) {
        if self.file.is_none() {
            let due = self.last_try.is_none_or(|t| t.elapsed() >= RETRY_EVERY);
            if !due || !self.reopen() {
                self.dropped += 1;
                return;
            }
        } else if self.last_check.elapsed() >= CHECK_EVERY {
            self.check_in_place(at);
            if self.file.is_none() {
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
                    self.fail(format!("cannot write {}: {e}", self.path().display()));
                    return;
                }
            }
        }
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        self.stamp.write(at, &mut line);
        line.extend_from_slice(sep);
        line.extend_from_slice(text.as_bytes());
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.rotate_size {
            self.rotate(at);
        }
        self.put(&line);
        self.line = line;
    }

    /// One output line of the process.
    pub fn write_line(&mut self, at: Millis, text: &str) {
        self.write(at, b" | ", text);
    }

    /// A lifecycle event written by mew.
    pub(crate) fn write_event(&mut self, at: Millis, message: &str) {
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
            Err(e) => {
                let why = format!("cannot write {}: {e}", self.path().display());
                self.fail(why);
            }
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.flush();
    }
}

// ---- reading back ----------------------------------------------------------------

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
pub(crate) fn parse_line(process: &str, line: &str) -> Option<LogRecord> {
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

/// Open a log file for reading: `None` when it is missing, a symbolic link
/// or not a regular file (a FIFO would block the reader forever).
fn open_for_reading(path: &Path) -> io::Result<Option<File>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(file.metadata()?.file_type().is_file().then_some(file))
}

/// The files of one process, newest first: `name.log`, `name.log.1`, … (up
/// to the first number missing).
fn files_newest_first(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut files = vec![log_path(dir, name)];
    let mut n = 1;
    while fs::symlink_metadata(rotated(dir, name, n)).is_ok() {
        files.push(rotated(dir, name, n));
        n += 1;
    }
    files
}

/// Read one line (without its newline) into `line`, keeping at most `max`
/// bytes: `Some(true)` for a whole line, `Some(false)` for a line that was
/// longer (cut) or not terminated (the end of the file), `None` at the end.
fn read_bounded_line(
    r: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    line.clear();
    let mut whole = true;
    let mut any = false;
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(any.then_some(false));
        }
        any = true;
        let (part, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        let room = max.saturating_sub(line.len());
        if part.len() > room {
            whole = false;
        }
        line.extend_from_slice(&part[..part.len().min(room)]);
        let used = done.unwrap_or(buf.len());
        r.consume(used);
        if done.is_some() {
            return Ok(Some(whole));
        }
    }
}

/// Lines of a file from its end: each block is read once, memory is one
/// block plus the longest line (lines over [`MAX_READ_LINE`] are skipped).
/// An unterminated last line (being written) is left out.
struct Backward {
    file: File,
    /// Bytes before `pos` have not been read yet.
    pos: u64,
    /// Bytes from `pos` up to the start of the last line returned.
    buf: Vec<u8>,
    first: bool,
    /// The bytes in `buf` (or before them) belong to a line to leave out.
    skipping: bool,
    done: bool,
}

impl Backward {
    fn new(file: File) -> io::Result<Backward> {
        let pos = file.metadata()?.len();
        Ok(Backward {
            file,
            pos,
            buf: Vec::new(),
            first: true,
            skipping: false,
            done: false,
        })
    }

    /// The line before the last one returned (newest first), without its newline.
    fn prev(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(i) = self.buf.iter().rposition(|&b| b == b'\n') {
                let line = self.buf.split_off(i + 1);
                self.buf.truncate(i);
                if std::mem::take(&mut self.skipping) || line.len() > MAX_READ_LINE {
                    continue;
                }
                return Ok(Some(line));
            }
            if self.pos == 0 {
                if self.done {
                    return Ok(None);
                }
                self.done = true;
                let line = std::mem::take(&mut self.buf);
                if std::mem::take(&mut self.skipping)
                    || line.is_empty()
                    || line.len() > MAX_READ_LINE
                {
                    return Ok(None);
                }
                return Ok(Some(line));
            }
            let n = self.pos.min(BLOCK as u64) as usize;
            let start = self.pos - n as u64;
            let mut block = vec![0u8; n];
            match self.file.read_exact_at(&mut block, start) {
                Ok(()) => {}
                // Cut short under us (the file was truncated): stop here.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.pos = 0;
                    self.done = true;
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
            self.pos = start;
            if std::mem::take(&mut self.first) {
                if block.last() == Some(&b'\n') {
                    block.pop();
                } else {
                    // The last line is still being written (or was cut).
                    self.skipping = true;
                }
            }
            let has_newline = block.contains(&b'\n');
            block.extend_from_slice(&self.buf);
            self.buf = block;
            if !has_newline && self.buf.len() > MAX_READ_LINE {
                self.buf.clear();
                self.skipping = true;
            }
        }
    }
}

/// The newest records of one process (rotated files included), oldest
/// first: at most `tail`, none older than `since`. Reading goes backwards
/// from the end of each file and stops at the first record older than
/// `since`, so it costs what it returns, whatever the files' size.
fn newest_records(
    dir: &Path,
    name: &str,
    tail: Option<usize>,
    since: Option<Millis>,
) -> io::Result<Vec<LogRecord>> {
    let mut out = Vec::new();
    if tail == Some(0) {
        return Ok(out);
    }
    'files: for path in files_newest_first(dir, name) {
        let Some(file) = open_for_reading(&path)? else {
            continue;
        };
        let mut back = Backward::new(file)?;
        while let Some(line) = back.prev()? {
            let Some(r) = parse_line(name, &String::from_utf8_lossy(&line)) else {
                continue;
            };
            if since.is_some_and(|s| r.at < s) {
                break 'files;
            }
            out.push(r);
            if tail.is_some_and(|n| out.len() >= n) {
                break 'files;
            }
        }
    }
    out.reverse();
    Ok(out)
}

/// One process's records from its oldest file to its newest, read forward
/// a line at a time.
struct Forward {
    name: String,
    /// Files not opened yet, the next one last.
    files: Vec<PathBuf>,
    reader: Option<BufReader<File>>,
    line: Vec<u8>,
}

impl Forward {
    fn next(&mut self) -> io::Result<Option<LogRecord>> {
        loop {
            let Some(r) = self.reader.as_mut() else {
                let Some(path) = self.files.pop() else {
                    return Ok(None);
                };
                self.reader = open_for_reading(&path)?.map(|f| BufReader::with_capacity(BLOCK, f));
                continue;
            };
            match read_bounded_line(r, &mut self.line, MAX_READ_LINE)? {
                None => self.reader = None,
                // Too long, or not terminated (still being written).
                Some(false) => {}
                Some(true) => {
                    if let Some(rec) = parse_line(&self.name, &String::from_utf8_lossy(&self.line))
                    {
                        return Ok(Some(rec));
                    }
                }
            }
        }
    }
}

/// Visit the logs of `names` (rotated files included) merged by time (for
/// equal times, in the order of `names`, then of the files), newer than
/// `since`, the last `tail` records; `f` returns `false` to stop.
///
/// Memory is bounded whatever the size of the files: with `tail`, each
/// process's last `tail` records are read from the end of its files; with
/// `since` alone, what is newer is read from the end; with neither, the
/// files are streamed forward and merged one line per process at a time.
/// Lines are taken in file order (the order they were written); a process's
/// lines are merged by time with the others'.
pub(crate) fn each_log(
    dir: &Path,
    names: &[String],
    tail: Option<usize>,
    since: Option<Millis>,
    mut f: impl FnMut(LogRecord) -> bool,
) -> io::Result<()> {
    if tail.is_some() || since.is_some() {
        let mut all = Vec::new();
        for name in names {
            all.extend(newest_records(dir, name, tail, since)?);
        }
        // Stable: lines of one process keep their order within one millisecond.
        all.sort_by_key(|r| r.at);
        let skip = tail.map_or(0, |n| all.len().saturating_sub(n));
        for r in all.into_iter().skip(skip) {
            if !f(r) {
                break;
            }
        }
        return Ok(());
    }
    let mut streams: Vec<Forward> = names
        .iter()
        .map(|name| {
            // `pop` takes the next file: the newest first, the oldest last.
            let files = files_newest_first(dir, name);
            Forward {
                name: name.clone(),
                files,
                reader: None,
                line: Vec::new(),
            }
        })
        .collect();
    let mut heads: Vec<Option<LogRecord>> = Vec::with_capacity(streams.len());
    let mut heap = BinaryHeap::new();
    for (i, s) in streams.iter_mut().enumerate() {
        let r = s.next()?;
        if let Some(r) = &r {
            heap.push(Reverse((r.at, i)));
        }
        heads.push(r);
    }
    while let Some(Reverse((_, i))) = heap.pop() {
        let Some(r) = heads[i].take() else {
            continue;
        };
        if !f(r) {
            return Ok(());
        }
        if let Some(next) = streams[i].next()? {
            heap.push(Reverse((next.at, i)));
            heads[i] = Some(next);
        }
    }
    Ok(())
}

/// Read the logs of `names` (rotated files included), merged by time (in
/// file order for equal times), newer than `since`, the last `tail` records.
/// See [`each_log`], which does the same without collecting.
pub fn read_logs(
    dir: &Path,
    names: &[String],
    tail: Option<usize>,
    since: Option<Millis>,
) -> io::Result<Vec<LogRecord>> {
    let mut all = Vec::new();
    each_log(dir, names, tail, since, |r| {
        all.push(r);
        true
    })?;
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn mode(p: &Path) -> u32 {
        fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    fn root() -> bool {
        euid() == 0
    }

    /// A line in the log format at `at` (ms), as a test writes it by hand.
    fn raw(at: Millis, text: &str) -> String {
        let mut s = Stamp::new();
        let mut v = Vec::new();
        s.write(at, &mut v);
        format!("{} | {text}\n", String::from_utf8(v).unwrap())
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
            assert_eq!(mode(&path), 0o600);
        }
        let recs = read_logs(dir.path(), &names(&["p"]), None, None).unwrap();
        let nums: Vec<u64> = recs.iter().map(|r| r.text[5..].parse().unwrap()).collect();
        assert!(nums.windows(2).all(|w| w[1] == w[0] + 1), "{nums:?}");
        assert_eq!(*nums.last().unwrap(), 499);
        // The tail reads across the rotated files too.
        let tail = read_logs(dir.path(), &names(&["p"]), Some(100), None).unwrap();
        let got: Vec<u64> = tail.iter().map(|r| r.text[5..].parse().unwrap()).collect();
        assert!(nums.len() > 100, "{}", nums.len());
        assert_eq!(got, (400..500).collect::<Vec<u64>>());
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
        let both = read_logs(dir.path(), &names(&["a", "b"]), Some(1), Some(1_000_600)).unwrap();
        assert_eq!(both.len(), 1);
        assert_eq!(both[0].text, "b2");
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
        // (A log file is never a device: the test opens it in its place.)
        let mut w = LogWriter::closed(dir.path(), "p", 1 << 20, 1);
        w.test_device = Some("/dev/full".into());
        w.reopen();
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
        w.test_device = None;
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

    // ---- owner-only files ------------------------------------------------------

    #[test]
    fn files_are_owner_only_whatever_the_dir() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("logs");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        // A log of an earlier run, readable by everyone.
        let old = log_path(&dir, "old");
        fs::write(&old, raw(1_000, "from before")).unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o644)).unwrap();
        let mut a = LogWriter::open(&dir, "new", 1 << 20, 1);
        let mut b = LogWriter::open(&dir, "old", 1 << 20, 1);
        a.write_line(2_000, "x");
        b.write_line(2_000, "y");
        a.flush();
        b.flush();
        assert_eq!(mode(&log_path(&dir, "new")), 0o600);
        assert_eq!(mode(&old), 0o600, "a wider file is tightened");
        assert_eq!(mode(&dir.join(MANIFEST)), 0o600);
        assert_eq!(mode(&dir), 0o755, "the directory keeps its mode");
        let f = open_server_log(&dir).unwrap();
        drop(f);
        assert_eq!(mode(&server_log_path(&dir)), 0o600);
    }

    // ---- hostile files -----------------------------------------------------------

    #[test]
    fn a_symlinked_log_file_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        let before = b"important\nno newline at the end".to_vec();
        fs::write(&victim, &before).unwrap();
        symlink(&victim, log_path(dir.path(), "p")).unwrap();
        let mut w = LogWriter::open(dir.path(), "p", 1 << 20, 1);
        w.write_line(1_000, "evil");
        w.flush();
        let why = w.degraded().expect("degraded");
        assert!(why.contains("symbolic link"), "{why}");
        assert_eq!(fs::read(&victim).unwrap(), before);
        // Retrying changes nothing either.
        w.last_try = Some(Instant::now() - RETRY_EVERY);
        w.write_line(2_000, "evil");
        w.flush();
        assert_eq!(fs::read(&victim).unwrap(), before);
        assert!(w.degraded().unwrap().contains("2 lines dropped"));
    }

    #[test]
    fn a_hard_linked_log_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        let before = b"important\nno newline at the end".to_vec();
        fs::write(&victim, &before).unwrap();
        fs::hard_link(&victim, log_path(dir.path(), "p")).unwrap();
        let mut w = LogWriter::open(dir.path(), "p", 1 << 20, 1);
        w.write_line(1_000, "evil");
        w.flush();
        assert!(
            w.degraded().unwrap().contains("2 hard links"),
            "{:?}",
            w.degraded()
        );
        assert_eq!(fs::read(&victim).unwrap(), before);
    }

    #[test]
    fn a_fifo_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(&log_path(dir.path(), "p"), Mode::from_bits_truncate(0o600)).unwrap();
        let mut w = LogWriter::open(dir.path(), "p", 1 << 20, 1);
        w.write_line(1_000, "x");
        assert!(
            w.degraded().unwrap().contains("not a regular file"),
            "{:?}",
            w.degraded()
        );
        // Reading skips it too (instead of waiting for a writer).
        assert!(
            read_logs(dir.path(), &names(&["p"]), None, None)
                .unwrap()
                .is_empty()
        );
        assert!(
            read_logs(dir.path(), &names(&["p"]), Some(5), None)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn a_symlinked_dir_of_ones_own_is_followed() {
        let base = tempfile::tempdir().unwrap();
        let real = base.path().join("big-disk");
        fs::create_dir(&real).unwrap();
        let dir = base.path().join("logs");
        symlink(&real, &dir).unwrap();
        let mut w = LogWriter::open(&dir, "p", 1 << 20, 1);
        w.write_line(1_000, "here");
        w.flush();
        assert!(w.degraded().is_none(), "{:?}", w.degraded());
        assert!(
            fs::read_to_string(real.join("p.log"))
                .unwrap()
                .contains("| here")
        );
    }

    #[test]
    fn files_and_dirs_of_other_users_are_refused() {
        if !root() {
            eprintln!("SKIPPED: needs root to make files owned by another user");
            return;
        }
        let nobody = Some(nix::unistd::Uid::from_raw(65534));
        let base = tempfile::tempdir().unwrap();
        // A log file of someone else's.
        let victim = base.path().join("theirs.log");
        let before = raw(1_000, "theirs") + "partial";
        fs::write(&victim, &before).unwrap();
        nix::unistd::chown(&victim, nobody, None).unwrap();
        let mut w = LogWriter::open(base.path(), "theirs", 1 << 20, 1);
        w.write_line(2_000, "x");
        w.flush();
        assert!(w.degraded().unwrap().contains("owned by uid 65534"));
        assert_eq!(fs::read_to_string(&victim).unwrap(), before);
        // A symlinked log dir made by someone else.
        let real = base.path().join("real");
        fs::create_dir(&real).unwrap();
        let link = base.path().join("link");
        symlink(&real, &link).unwrap();
        nix::unistd::fchownat(
            nix::fcntl::AT_FDCWD,
            &link,
            nobody,
            None,
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .unwrap();
        let mut w = LogWriter::open(&link, "p", 1 << 20, 1);
        w.write_line(2_000, "x");
        assert!(
            w.degraded()
                .unwrap()
                .contains("symbolic link owned by uid 65534"),
            "{:?}",
            w.degraded()
        );
        // Our own link to a directory of someone else's.
        let theirs = base.path().join("their-dir");
        fs::create_dir(&theirs).unwrap();
        nix::unistd::chown(&theirs, nobody, None).unwrap();
        let link2 = base.path().join("link2");
        symlink(&theirs, &link2).unwrap();
        let mut w = LogWriter::open(&link2, "p", 1 << 20, 1);
        w.write_line(2_000, "x");
        assert!(
            w.degraded()
                .unwrap()
                .contains("directory owned by uid 65534"),
            "{:?}",
            w.degraded()
        );
        assert!(fs::read_dir(&real).unwrap().next().is_none());
        assert!(fs::read_dir(&theirs).unwrap().next().is_none());
    }

    #[test]
    fn rotation_never_follows_links() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep me\n").unwrap();
        symlink(&victim, rotated(dir.path(), "p", 1)).unwrap();
        let mut w = LogWriter::open(dir.path(), "p", 1024, 2);
        for i in 0..100u64 {
            w.write_line(1_000 + i, &format!("line {i:04} ................"));
        }
        w.flush();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep me\n");
        for n in 1..=2 {
            let md = fs::symlink_metadata(rotated(dir.path(), "p", n)).unwrap();
            assert!(md.file_type().is_file(), "p.log.{n} is a link still");
        }
    }

    // ---- removed while in use ------------------------------------------------------

    #[test]
    fn a_removed_log_file_is_noticed_and_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "p");
        let mut w = LogWriter::open(dir.path(), "p", 1 << 20, 1);
        w.write_line(1_000, "before");
        w.flush();
        // A check finds the file in place: what came before it is not copied.
        w.last_check = Instant::now() - CHECK_EVERY;
        w.write_line(1_001, "after the check");
        w.flush();
        fs::remove_file(&path).unwrap();
        // Lines written before the next check still reach the old file…
        w.write_line(1_002, "unseen 1");
        w.write_line(1_003, "unseen 2");
        w.flush();
        assert!(!path.exists());
        // …and are copied when the check finds the file gone.
        w.last_check = Instant::now() - CHECK_EVERY;
        w.write_line(1_004, "after");
        w.flush();
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(lines[0].ends_with("| after the check"), "{text}");
        assert!(lines[1].ends_with("| unseen 1"), "{text}");
        assert!(lines[2].ends_with("| unseen 2"), "{text}");
        assert!(
            lines[3]
                .contains(" * p.log was removed while in use; mew started a new one (the 3 lines"),
            "{text}"
        );
        assert!(lines[4].ends_with("| after"), "{text}");
        assert_eq!(mode(&path), 0o600);
        // Status shows it (for a while, and at least once).
        let why = w.degraded().expect("reported");
        assert!(why.contains("p.log was removed while in use"), "{why}");
        assert!(w.degraded().is_some(), "still within {NOTICE_FOR:?}");
        w.notice.as_mut().unwrap().1 = Instant::now() - NOTICE_FOR;
        assert!(w.degraded().is_none(), "seen, and old");
        // Not yet seen: shown however old.
        w.notice_seen.store(false, Ordering::Relaxed);
        assert!(w.degraded().is_some());
    }

    #[test]
    fn a_moved_log_file_is_not_copied() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "p");
        let mut w = LogWriter::open(dir.path(), "p", 1 << 20, 1);
        w.write_line(1_000, "one");
        w.flush();
        let away = dir.path().join("p.log.old");
        fs::rename(&path, &away).unwrap();
        w.write_line(1_001, "two");
        w.last_check = Instant::now() - CHECK_EVERY;
        w.write_line(1_002, "three");
        w.flush();
        let old = fs::read_to_string(&away).unwrap();
        assert!(old.contains("| one") && old.contains("| two"), "{old}");
        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(
            lines[0].contains("p.log was moved or replaced while in use"),
            "{text}"
        );
        assert!(lines[1].ends_with("| three"), "{text}");
    }

    #[test]
    fn a_removed_log_file_is_noticed_at_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = log_path(dir.path(), "p");
        let mut w = LogWriter::open(dir.path(), "p", 1024, 3);
        let mut i = 0u64;
        while fs::metadata(&path).unwrap().len() < 900 {
            w.write_line(1_000 + i, &format!("line {i:04} ....................."));
            w.flush();
            i += 1;
        }
        fs::remove_file(&path).unwrap();
        // The next line rotates (long before a timed check would come).
        w.write_line(5_000, &"z".repeat(200));
        w.flush();
        assert!(
            !rotated(dir.path(), "p", 1).exists(),
            "nothing was there to rotate"
        );
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains(" * p.log was removed while in use"), "{text}");
        assert!(text.ends_with(&format!("{}\n", "z".repeat(200))), "{text}");
    }

    // ---- the manifest --------------------------------------------------------------

    #[test]
    fn the_manifest_lists_what_mew_created() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("development.log"), "Started GET / for 127.0.0.1\n").unwrap();
        fs::write(d.join("older.log"), raw(1_000, "an older mew's log")).unwrap();
        for name in ["web", "development", "older"] {
            let mut w = LogWriter::open(d, name, 1 << 20, 1);
            w.write_line(2_000, "x");
        }
        let fd = open_log_dir(d).unwrap();
        let listed = manifest_names(fd.as_fd()).unwrap().unwrap();
        assert_eq!(listed, ["web", "older"]);
        // Again: listed once.
        drop(LogWriter::open(d, "web", 1 << 20, 1));
        assert_eq!(
            manifest_names(fd.as_fd()).unwrap().unwrap(),
            ["web", "older"]
        );
        let text = fs::read_to_string(d.join(MANIFEST)).unwrap();
        assert!(text.starts_with("# "), "{text}");
        // Nonsense in a manifest is ignored.
        fs::write(d.join(MANIFEST), "web\n../../etc/passwd\n.hidden\n\nx/y\n").unwrap();
        assert_eq!(manifest_names(fd.as_fd()).unwrap().unwrap(), ["web"]);
        // A manifest that is a link says nothing.
        fs::remove_file(d.join(MANIFEST)).unwrap();
        symlink("/etc/hostname", d.join(MANIFEST)).unwrap();
        assert!(manifest_names(fd.as_fd()).is_err());
        fs::remove_file(d.join(MANIFEST)).unwrap();
        assert_eq!(manifest_names(fd.as_fd()).unwrap(), None);
    }

    // ---- reading tails ---------------------------------------------------------------

    /// A tiny deterministic generator.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn backward_reading_matches_forward_reading() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for round in 0..40 {
            let path = dir.path().join("p.log");
            let mut text = Vec::new();
            let n = rng.next() % 60;
            for i in 0..n {
                match rng.next() % 10 {
                    0 => text.extend_from_slice(b"garbage line\n"),
                    1 => text.push(b'\n'),
                    2 => {
                        // Longer than a block, sometimes longer than any line kept.
                        let len = if rng.next().is_multiple_of(3) {
                            MAX_READ_LINE + 10
                        } else {
                            BLOCK + 7
                        };
                        text.extend_from_slice(raw(i, &"y".repeat(len)).as_bytes());
                    }
                    _ => text.extend_from_slice(raw(i, &format!("line {round} {i}")).as_bytes()),
                }
            }
            if rng.next().is_multiple_of(3) {
                text.extend_from_slice(b"2026-01-01T00:00:00.000+00:00 | being writ");
            }
            fs::write(&path, &text).unwrap();
            let all = read_logs(dir.path(), &names(&["p"]), None, None).unwrap();
            // Forward reading keeps whole, terminated lines of at most MAX_READ_LINE.
            let expect: Vec<LogRecord> = text
                .split_inclusive(|&b| b == b'\n')
                .filter(|l| l.ends_with(b"\n") && l.len() - 1 <= MAX_READ_LINE)
                .filter_map(|l| parse_line("p", &String::from_utf8_lossy(&l[..l.len() - 1])))
                .collect();
            assert_eq!(all, expect, "round {round}");
            for tail in [1, 2, 5, 1000] {
                let got = read_logs(dir.path(), &names(&["p"]), Some(tail), None).unwrap();
                let skip = expect.len().saturating_sub(tail);
                assert_eq!(got, expect[skip..], "round {round}, tail {tail}");
            }
        }
    }

    #[test]
    fn a_tail_reads_rotated_files_when_the_current_one_is_short() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let write = |p: PathBuf, range: std::ops::Range<u64>| {
            let text: String = range.map(|i| raw(1_000 + i, &format!("n{i}"))).collect();
            fs::write(p, text).unwrap();
        };
        write(rotated(d, "p", 2), 0..10);
        write(rotated(d, "p", 1), 10..20);
        write(log_path(d, "p"), 20..23);
        let got = read_logs(d, &names(&["p"]), Some(15), None).unwrap();
        let texts: Vec<String> = got.iter().map(|r| r.text.clone()).collect();
        let want: Vec<String> = (8..23).map(|i| format!("n{i}")).collect();
        assert_eq!(texts, want);
        // The current file missing: the rotated ones still count.
        fs::remove_file(log_path(d, "p")).unwrap();
        let got = read_logs(d, &names(&["p"]), Some(2), None).unwrap();
        assert_eq!(
            got.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
            ["n18", "n19"]
        );
        // --since stops at the first older line.
        let got = read_logs(d, &names(&["p"]), None, Some(1_015)).unwrap();
        assert_eq!(got.len(), 5);
        // Streaming everything: oldest file first.
        let all = read_logs(d, &names(&["p"]), None, None).unwrap();
        assert_eq!(all.len(), 20);
        assert_eq!(all[0].text, "n0");
    }

    #[test]
    fn streaming_merges_like_sorting() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut rng = Rng(12345);
        let mut expect = Vec::new();
        let procs = ["a", "b", "c"];
        for (k, name) in procs.iter().enumerate() {
            let mut at = 1_000u64;
            let mut text = String::new();
            for i in 0..200 {
                at += rng.next() % 3;
                text += &raw(at, &format!("{name}{i}"));
                expect.push((at, k, i));
            }
            fs::write(log_path(d, name), text).unwrap();
        }
        expect.sort();
        let got = read_logs(d, &names(&procs), None, None).unwrap();
        let want: Vec<String> = expect
            .iter()
            .map(|&(_, k, i)| format!("{}{i}", procs[k]))
            .collect();
        assert_eq!(got.iter().map(|r| r.text.clone()).collect::<Vec<_>>(), want);
        let mut n = 0;
        each_log(d, &names(&procs), None, None, |_| {
            n += 1;
            n < 7
        })
        .unwrap();
        assert_eq!(n, 7, "stops when asked");
    }
}
