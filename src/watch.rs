//! The file watcher behind `watch:` (issue #17).
//!
//! One [`Watcher`] serves every process of a space: one inotify instance (via
//! `notify`, never polling), one notify thread, and one debounce thread of
//! ours. Each process is a *key* (its index) with its own [`WatchSpec`] and
//! `cwd`; a change under it becomes, after the debounce, one
//! [`Notice::Changed`] handed to the caller's sink (a closure, or a tokio
//! unbounded channel via [`Watcher::with_channel`]). Neither thread ever
//! touches the caller's runtime.
//!
//! Directories are watched one by one, non-recursively, from a walk of our
//! own: ignored directories (`.git`, `.mew`, `target`, `node_modules`, the
//! spec's `ignore:` and, with `gitignore`, what the `.gitignore` files say)
//! are never entered, so a `target/` of 10,000 files costs nothing.
//! Directories created later get their watch when inotify reports them, and
//! the files already in them count as changed. A plain file is watched
//! through its parent directory, so editors that save by rename still count.
//! A glob (`src/**/*.rs`) watches the directory of its literal prefix
//! (`src`), as deep as the glob can reach, and filters paths by the glob.
//!
//! For the server (its runtime is current-thread: nothing here blocks it,
//! except `update`, which walks the trees it adds):
//!
//! ```text
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let watcher = Watcher::with_channel(tx)?;        // once, when a process has `watch:`
//! watcher.update(index, &spec, &cwd)?;             // per process; Err: show it, go on
//! // in the select loop:
//! //   Notice::Changed(ev)         → restart ev.key (or its signal), why: ev.describe()
//! //   Notice::Error { key, error } → show it for that process
//! watcher.update(index, &new_spec, &cwd)?;         // reload (the old watch stays on Err)
//! watcher.remove(index);                           // process removed / watch: dropped
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ignore::Match;
use ignore::gitignore::{Gitignore, GitignoreBuilder};
use notify::event::{
    AccessKind, AccessMode, CreateKind, EventKind, ModifyKind, RemoveKind, RenameMode,
};
use notify::{RecursiveMode, Watcher as _};

use crate::config::WatchSpec;

/// What is always left out, before the spec's `ignore:` (gitignore lines).
pub const DEFAULT_IGNORES: [&str; 4] = [".git", ".mew", "target", "node_modules"];

/// A constant stream of changes still fires after this many debounce periods.
pub const MAX_WAIT_FACTOR: u32 = 10;

/// One debounced burst of changes under a process's `watch:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchEvent {
    /// The key the caller gave (the process index).
    pub key: usize,
    /// The changed paths, relative to the process's cwd when under it,
    /// sorted, each once. Empty when the kernel dropped events (its queue
    /// overflowed): something changed, but not known what.
    pub paths: Vec<PathBuf>,
}

impl WatchEvent {
    /// "src/main.rs changed", "src/a.rs and 3 more changed": why a restart.
    pub fn describe(&self) -> String {
        match self.paths.as_slice() {
            [] => "files changed".to_string(),
            [one] => format!("{} changed", one.display()),
            [first, rest @ ..] => format!("{} and {} more changed", first.display(), rest.len()),
        }
    }
}

/// What the watcher tells its caller.
#[derive(Debug)]
pub enum Notice {
    /// Files changed (debounced).
    Changed(WatchEvent),
    /// A watch could not be kept up after start (a new directory hit the
    /// inotify limit, the kernel queue broke): show it; the rest goes on.
    Error { key: usize, error: WatchError },
}

/// Why a watch could not be set up; every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot start the file watcher (inotify): {0}")]
    Init(String),
    #[error("watch: {} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error(
        "watch: {} was removed or moved away: it is no longer watched (reload to watch it again)",
        .0.display()
    )]
    Gone(PathBuf),
    #[error(
        "watch: the inotify watch limit is reached ({}); raise it with `sysctl fs.inotify.max_user_watches=524288`, or ignore more directories",
        limit_text()
    )]
    Limit,
    #[error("watch: bad glob `{pattern}`: {message}")]
    Glob { pattern: String, message: String },
    #[error("watch: bad ignore pattern `{pattern}`: {message}")]
    Ignore { pattern: String, message: String },
    #[error("watch: {}: {message}", path.display())]
    Io { path: PathBuf, message: String },
}

fn limit_text() -> String {
    match crate::procfs::inotify_max_user_watches() {
        Some(n) => format!("fs.inotify.max_user_watches = {n}"),
        None => "fs.inotify.max_user_watches".to_string(),
    }
}

fn notify_error(path: &Path, e: notify::Error) -> WatchError {
    match e.kind {
        notify::ErrorKind::MaxFilesWatch => WatchError::Limit,
        notify::ErrorKind::PathNotFound => WatchError::NotFound(path.to_path_buf()),
        notify::ErrorKind::Io(io) if io.kind() == std::io::ErrorKind::NotFound => {
            WatchError::NotFound(path.to_path_buf())
        }
        notify::ErrorKind::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => WatchError::Limit,
        notify::ErrorKind::Io(io) => WatchError::Io {
            path: path.to_path_buf(),
            message: io.to_string(),
        },
        other => WatchError::Io {
            path: path.to_path_buf(),
            message: format!("{other:?}"),
        },
    }
}

/// The file watcher of a space. Dropping it stops its threads.
pub struct Watcher {
    inner: Arc<Mutex<Inner>>,
    tx: mpsc::Sender<Msg>,
    worker: Option<JoinHandle<()>>,
}

enum Msg {
    Fs(notify::Event),
    Stop,
}

impl Watcher {
    /// A watcher with nothing to watch yet; `sink` gets every notice, on the
    /// watcher's own thread (it must not block for long).
    pub fn new(sink: impl FnMut(Notice) + Send + 'static) -> Result<Self, WatchError> {
        let (tx, rx) = mpsc::channel();
        let fs_tx = tx.clone();
        let notify = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            match res {
                // Opens and reads are not changes: keep them off our thread.
                Ok(ev) if is_access(&ev.kind) && !ev.need_rescan() => {}
                Ok(ev) => {
                    let _ = fs_tx.send(Msg::Fs(ev));
                }
                Err(e) => tracing::warn!("watch: {e}"),
            }
        })
        .map_err(|e| WatchError::Init(e.to_string()))?;
        let inner = Arc::new(Mutex::new(Inner {
            notify,
            dirs: BTreeMap::new(),
            keys: HashMap::new(),
            pending: HashMap::new(),
        }));
        let worker_inner = Arc::clone(&inner);
        let worker = std::thread::Builder::new()
            .name("mew-watch".into())
            .spawn(move || worker(worker_inner, rx, sink))
            .map_err(|e| WatchError::Init(e.to_string()))?;
        Ok(Watcher {
            inner,
            tx,
            worker: Some(worker),
        })
    }

    /// A watcher whose notices go into a tokio channel (never blocks).
    pub fn with_channel(
        tx: tokio::sync::mpsc::UnboundedSender<Notice>,
    ) -> Result<Self, WatchError> {
        Self::new(move |n| {
            let _ = tx.send(n);
        })
    }

    /// A watcher for `(key, spec, cwd)` items; the keys that could not be
    /// watched come back with their error, the others are watched.
    pub fn start<'a>(
        items: impl IntoIterator<Item = (usize, &'a WatchSpec, &'a Path)>,
        sink: impl FnMut(Notice) + Send + 'static,
    ) -> Result<(Self, Vec<(usize, WatchError)>), WatchError> {
        let watcher = Self::new(sink)?;
        let mut errors = Vec::new();
        for (key, spec, cwd) in items {
            if let Err(e) = watcher.update(key, spec, cwd) {
                errors.push((key, e));
            }
        }
        Ok((watcher, errors))
    }

    /// Watch `key` per `spec` (paths relative to `cwd`), replacing what it
    /// watched before. On error the old watch of `key` stays as it was.
    pub fn update(&self, key: usize, spec: &WatchSpec, cwd: &Path) -> Result<(), WatchError> {
        let mut state = KeyState::new(spec, cwd)?;
        let mut inner = self.lock();
        let Inner {
            notify, dirs, keys, ..
        } = &mut *inner;
        // The directories this key did not watch before: undone on error.
        let mut fresh: Vec<PathBuf> = Vec::new();
        let result = state.watch_all(&mut |d| {
            if watch_dir(notify, dirs, d, key)? {
                fresh.push(d.to_path_buf());
            }
            Ok(())
        });
        if let Err(e) = result {
            for d in &fresh {
                unwatch_dir(notify, dirs, d, key);
            }
            return Err(e);
        }
        if let Some(old) = keys.remove(&key) {
            for d in old.dirs.difference(&state.dirs) {
                unwatch_dir(notify, dirs, d, key);
            }
        }
        keys.insert(key, state);
        Ok(())
    }

    /// Stop watching for `key`; a change already pending for it is dropped.
    pub fn remove(&self, key: usize) {
        let mut inner = self.lock();
        inner.pending.remove(&key);
        if let Some(old) = inner.keys.remove(&key) {
            let Inner { notify, dirs, .. } = &mut *inner;
            for d in &old.dirs {
                unwatch_dir(notify, dirs, d, key);
            }
        }
    }

    /// How many directories have an inotify watch (for tests and `status`).
    pub fn watched_dirs(&self) -> usize {
        self.lock().dirs.len()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.tx.send(Msg::Stop);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

fn lock(inner: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    // A panic while holding the lock leaves plain data behind: go on with it.
    inner.lock().unwrap_or_else(|p| p.into_inner())
}

fn is_access(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Access(a) if !matches!(a, AccessKind::Close(AccessMode::Write)))
}

fn worker(inner: Arc<Mutex<Inner>>, rx: mpsc::Receiver<Msg>, mut sink: impl FnMut(Notice)) {
    loop {
        let deadline = lock(&inner).next_deadline();
        let msg = match deadline {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(d) => rx.recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        let mut notices = Vec::new();
        match msg {
            Ok(Msg::Fs(ev)) => lock(&inner).handle(&ev, &mut notices),
            Ok(Msg::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        lock(&inner).take_due(Instant::now(), &mut notices);
        for n in notices {
            sink(n);
        }
    }
}

struct Inner {
    notify: notify::RecommendedWatcher,
    /// Watched directory → the keys that need it.
    dirs: BTreeMap<PathBuf, BTreeSet<usize>>,
    keys: HashMap<usize, KeyState>,
    pending: HashMap<usize, Pending>,
}

/// Watches one directory for the key being walked.
type WatchFn<'a> = dyn FnMut(&Path) -> Result<(), WatchError> + 'a;

/// Adds a watch of `dir` for `key`: true when the key did not have it.
fn watch_dir(
    notify: &mut notify::RecommendedWatcher,
    dirs: &mut BTreeMap<PathBuf, BTreeSet<usize>>,
    dir: &Path,
    key: usize,
) -> Result<bool, WatchError> {
    if let Some(keys) = dirs.get_mut(dir) {
        return Ok(keys.insert(key));
    }
    notify
        .watch(dir, RecursiveMode::NonRecursive)
        .map_err(|e| notify_error(dir, e))?;
    dirs.insert(dir.to_path_buf(), BTreeSet::from([key]));
    Ok(true)
}

fn unwatch_dir(
    notify: &mut notify::RecommendedWatcher,
    dirs: &mut BTreeMap<PathBuf, BTreeSet<usize>>,
    dir: &Path,
    key: usize,
) {
    let Some(keys) = dirs.get_mut(dir) else {
        return;
    };
    keys.remove(&key);
    if keys.is_empty() {
        dirs.remove(dir);
        // Fails when the directory is gone (its watch went with it).
        let _ = notify.unwatch(dir);
    }
}

struct Pending {
    first: Instant,
    last: Instant,
    paths: BTreeSet<PathBuf>,
}

impl Inner {
    /// Forget the watches of `gone` and everything under it (deleted or
    /// moved away: inotify dropped or keeps a stale watch for them).
    fn forget_tree(&mut self, gone: &Path) {
        let under: Vec<PathBuf> = self
            .dirs
            .range(gone.to_path_buf()..)
            .take_while(|(d, _)| d.starts_with(gone))
            .map(|(d, _)| d.clone())
            .collect();
        for d in under {
            if let Some(keys) = self.dirs.remove(&d) {
                let _ = self.notify.unwatch(&d);
                for k in keys {
                    if let Some(state) = self.keys.get_mut(&k) {
                        state.dirs.remove(&d);
                    }
                }
            }
        }
    }

    fn handle(&mut self, ev: &notify::Event, notices: &mut Vec<Notice>) {
        let now = Instant::now();
        if ev.need_rescan() {
            let keys: Vec<usize> = self.keys.keys().copied().collect();
            for k in keys {
                self.mark(k, None, now);
            }
            return;
        }
        let gone = matches!(
            ev.kind,
            EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From))
        );
        let appeared = matches!(
            ev.kind,
            EventKind::Create(_)
                | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Any))
                | EventKind::Any
        );
        if matches!(
            ev.kind,
            EventKind::Modify(ModifyKind::Name(RenameMode::Both))
        ) {
            // inotify's backend also reports the From and the To on their own.
            return;
        }
        for path in ev.paths.iter().map(|p| normalize(p)) {
            let is_dir = match ev.kind {
                EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder) => {
                    true
                }
                _ if gone => self.dirs.contains_key(&path),
                _ => std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()),
            };
            if gone {
                self.forget_tree(&path);
            }
            let keys: Vec<usize> = self.keys.keys().copied().collect();
            for k in keys {
                if gone && self.keys[&k].is_root_dir(&path) {
                    // Its parent is not watched: it cannot be seen coming back.
                    notices.push(Notice::Error {
                        key: k,
                        error: WatchError::Gone(path.clone()),
                    });
                    self.mark(k, None, now);
                }
                self.handle_path(k, &path, is_dir, appeared, now, notices);
            }
        }
    }

    fn handle_path(
        &mut self,
        key: usize,
        path: &Path,
        is_dir: bool,
        appeared: bool,
        now: Instant,
        notices: &mut Vec<Notice>,
    ) {
        let Inner {
            notify, dirs, keys, ..
        } = self;
        let Some(state) = keys.get_mut(&key) else {
            return;
        };
        if path.file_name().is_some_and(|n| n == ".gitignore")
            && state.rules.use_git
            && let Some(dir) = path.parent()
        {
            state.rules.reload_gitignore(dir);
        }
        let Some(hit) = state.matches(path, is_dir) else {
            return;
        };
        let mut changed = Vec::new();
        if hit.report {
            changed.push(path.to_path_buf());
        }
        if is_dir && appeared && hit.enter {
            // A new directory: watch it and what is under it, and count the
            // files already in it (they may predate the watch).
            let result = state.walk(path, hit.depth, Some(&mut changed), &mut |d| {
                watch_dir(notify, dirs, d, key).map(drop)
            });
            if let Err(error) = result {
                notices.push(Notice::Error { key, error });
            }
        }
        for p in changed {
            self.mark(key, Some(p), now);
        }
    }

    fn mark(&mut self, key: usize, path: Option<PathBuf>, now: Instant) {
        let Some(state) = self.keys.get(&key) else {
            return;
        };
        let rel = path.map(|p| match p.strip_prefix(&state.cwd) {
            Ok(r) if !r.as_os_str().is_empty() => r.to_path_buf(),
            _ => p,
        });
        let pending = self.pending.entry(key).or_insert_with(|| Pending {
            first: now,
            last: now,
            paths: BTreeSet::new(),
        });
        pending.last = now;
        pending.paths.extend(rel);
    }

    fn deadline(&self, key: usize, p: &Pending) -> Instant {
        let debounce = self.keys.get(&key).map_or(Duration::ZERO, |s| s.debounce);
        (p.last + debounce).min(p.first + debounce * MAX_WAIT_FACTOR)
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.pending.iter().map(|(k, p)| self.deadline(*k, p)).min()
    }

    fn take_due(&mut self, now: Instant, notices: &mut Vec<Notice>) {
        let due: Vec<usize> = self
            .pending
            .iter()
            .filter(|(k, p)| self.deadline(**k, p) <= now)
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            if let Some(p) = self.pending.remove(&key) {
                notices.push(Notice::Changed(WatchEvent {
                    key,
                    paths: p.paths.into_iter().collect(),
                }));
            }
        }
    }
}

/// What a key watches.
enum Root {
    /// A file, watched through its parent directory.
    File(PathBuf),
    /// A directory and what is under it, down to `max_depth` directories
    /// (None: all), filtered by `glob`.
    Tree {
        dir: PathBuf,
        glob: Option<Glob>,
        max_depth: Option<usize>,
    },
}

/// Matched against absolute paths (the prefix escaped).
struct Glob {
    matcher: globset::GlobMatcher,
}

/// How a path relates to a key's roots.
struct Hit {
    /// It is a change to report.
    report: bool,
    /// It is a directory to watch (when new), at this depth below its root.
    enter: bool,
    depth: usize,
}

struct KeyState {
    cwd: PathBuf,
    roots: Vec<Root>,
    rules: Rules,
    debounce: Duration,
    dirs: BTreeSet<PathBuf>,
}

impl KeyState {
    fn new(spec: &WatchSpec, cwd: &Path) -> Result<Self, WatchError> {
        let cwd = normalize(&std::path::absolute(cwd).map_err(|e| WatchError::Io {
            path: cwd.to_path_buf(),
            message: e.to_string(),
        })?);
        let mut roots = Vec::new();
        let dot = [".".to_string()];
        let paths = if spec.paths.is_empty() {
            &dot[..]
        } else {
            &spec.paths[..]
        };
        for p in paths {
            roots.push(root_of(p, &cwd)?);
        }
        let rules = Rules::new(&cwd, &spec.ignore, spec.gitignore)?;
        Ok(KeyState {
            cwd,
            roots,
            rules,
            debounce: spec.debounce,
            dirs: BTreeSet::new(),
        })
    }

    fn is_root_dir(&self, path: &Path) -> bool {
        self.roots
            .iter()
            .any(|r| matches!(r, Root::Tree { dir, .. } if dir == path))
    }

    /// Watches every directory it needs at start (walks the trees).
    fn watch_all(&mut self, watch: &mut WatchFn<'_>) -> Result<(), WatchError> {
        let mut trees = Vec::new();
        for root in &self.roots {
            match root {
                Root::File(f) => {
                    if let Some(parent) = f.parent() {
                        watch(parent)?;
                        self.dirs.insert(parent.to_path_buf());
                    }
                }
                Root::Tree { dir, .. } => trees.push(dir.clone()),
            }
        }
        for dir in trees {
            if self.rules.use_git {
                let cwd = self.cwd.clone();
                self.rules.load_ancestors(&dir, &cwd);
            }
            self.walk(&dir, 0, None, watch)?;
        }
        Ok(())
    }

    /// Watches the directories from `start` (at `depth` below its root)
    /// down, skipping ignored ones, each before it is listed (so a file
    /// created meanwhile is either listed or reported); with `files`, the
    /// files found that match.
    fn walk(
        &mut self,
        start: &Path,
        depth: usize,
        mut files: Option<&mut Vec<PathBuf>>,
        watch: &mut WatchFn<'_>,
    ) -> Result<(), WatchError> {
        let max_depth = self.max_depth_for(start);
        let mut stack = vec![(start.to_path_buf(), depth)];
        while let Some((dir, depth)) = stack.pop() {
            match watch(&dir) {
                Ok(()) => {}
                // Gone since it was listed.
                Err(WatchError::NotFound(_)) => continue,
                Err(e) => return Err(e),
            }
            self.dirs.insert(dir.clone());
            if self.rules.use_git {
                self.rules.load_gitignore(&dir);
            }
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(ft) = entry.file_type() else { continue };
                let path = dir.join(entry.file_name());
                if ft.is_dir() {
                    if !self.rules.is_ignored(&path, true) && max_depth.is_none_or(|m| depth < m) {
                        stack.push((path, depth + 1));
                    }
                } else if let Some(files) = files.as_deref_mut()
                    && self.matches(&path, false).is_some_and(|h| h.report)
                {
                    files.push(path);
                }
            }
        }
        Ok(())
    }

    fn max_depth_for(&self, path: &Path) -> Option<usize> {
        self.roots
            .iter()
            .filter_map(|r| match r {
                Root::Tree { dir, max_depth, .. } if path.starts_with(dir) => Some(*max_depth),
                _ => None,
            })
            .max_by_key(|m| m.unwrap_or(usize::MAX))
            .flatten()
    }

    /// Whether `path` is watched by this key (None: not at all).
    fn matches(&self, path: &Path, is_dir: bool) -> Option<Hit> {
        let mut hit: Option<Hit> = None;
        for root in &self.roots {
            match root {
                Root::File(f) if f == path => {
                    hit.get_or_insert(Hit {
                        report: true,
                        enter: false,
                        depth: 0,
                    })
                    .report = true;
                }
                Root::File(_) => {}
                Root::Tree {
                    dir,
                    glob,
                    max_depth,
                } => {
                    let Ok(below) = path.strip_prefix(dir) else {
                        continue;
                    };
                    let depth = below.components().count();
                    if depth == 0 || self.ignored_below(dir, path, is_dir) {
                        continue;
                    }
                    let report = glob.as_ref().is_none_or(|g| g.matcher.is_match(path));
                    let enter = is_dir && max_depth.is_none_or(|m| depth <= m);
                    let h = hit.get_or_insert(Hit {
                        report: false,
                        enter: false,
                        depth,
                    });
                    h.report |= report;
                    if enter && !h.enter {
                        h.enter = true;
                        h.depth = depth;
                    }
                }
            }
        }
        hit.filter(|h| h.report || h.enter)
    }

    /// `path` or a directory between `root` (exclusive) and it is ignored.
    fn ignored_below(&self, root: &Path, path: &Path, is_dir: bool) -> bool {
        if self.rules.is_ignored(path, is_dir) {
            return true;
        }
        let mut a = path.parent();
        while let Some(dir) = a {
            if dir == root || !dir.starts_with(root) {
                return false;
            }
            if self.rules.is_ignored(dir, true) {
                return true;
            }
            a = dir.parent();
        }
        false
    }
}

/// A `watch:` entry: a file, a directory or a glob, relative to `cwd`.
fn root_of(pattern: &str, cwd: &Path) -> Result<Root, WatchError> {
    let components: Vec<&str> = pattern.split('/').collect();
    let literal = components
        .iter()
        .take_while(|c| !c.contains(['*', '?', '[', '{', '\\']))
        .count();
    if literal == components.len() {
        let path = normalize(&cwd.join(pattern));
        let meta = std::fs::metadata(&path).map_err(|_| WatchError::NotFound(path.clone()))?;
        return Ok(if meta.is_dir() {
            Root::Tree {
                dir: path,
                glob: None,
                max_depth: None,
            }
        } else {
            Root::File(path)
        });
    }
    let prefix = components[..literal].join("/");
    // "/x/*" splits as ["", "x", "*"]: its prefix "/x" is absolute.
    let dir = normalize(&cwd.join(if prefix.is_empty() { "." } else { &prefix }));
    if !dir.is_dir() {
        return Err(WatchError::NotFound(dir));
    }
    let rest = &components[literal..];
    let full = format!(
        "{}/{}",
        globset::escape(&dir.to_string_lossy()).trim_end_matches('/'),
        rest.join("/")
    );
    let matcher = globset::GlobBuilder::new(&full)
        .literal_separator(true)
        .build()
        .map_err(|e| WatchError::Glob {
            pattern: pattern.to_string(),
            message: e.kind().to_string(),
        })?
        .compile_matcher();
    let max_depth = if rest.iter().any(|c| c.contains("**") || c.contains('{')) {
        None
    } else {
        Some(rest.len().saturating_sub(1))
    };
    Ok(Root::Tree {
        dir,
        glob: Some(Glob { matcher }),
        max_depth,
    })
}

/// The ignore rules of one key: defaults + `ignore:` (one matcher rooted at
/// cwd), then the `.gitignore` files, the deepest deciding first.
struct Rules {
    spec: Gitignore,
    use_git: bool,
    /// `.gitignore` (and `.git/info/exclude`) matchers by directory.
    git: BTreeMap<PathBuf, Vec<Gitignore>>,
}

impl Rules {
    fn new(cwd: &Path, ignore: &[String], use_git: bool) -> Result<Self, WatchError> {
        let mut b = GitignoreBuilder::new(cwd);
        for line in DEFAULT_IGNORES
            .iter()
            .copied()
            .chain(ignore.iter().map(String::as_str))
        {
            b.add_line(None, line).map_err(|e| WatchError::Ignore {
                pattern: line.to_string(),
                message: e.to_string(),
            })?;
        }
        let spec = b.build().map_err(|e| WatchError::Ignore {
            pattern: ignore.join(", "),
            message: e.to_string(),
        })?;
        let mut rules = Rules {
            spec,
            use_git,
            git: BTreeMap::new(),
        };
        if use_git {
            rules.load_ancestors(cwd, cwd);
        }
        Ok(rules)
    }

    /// The `.gitignore` files of `dir` and above it, up to the repository's
    /// root (outside a repository: up to `cwd`).
    fn load_ancestors(&mut self, dir: &Path, cwd: &Path) {
        let mut chain = Vec::new();
        let mut repo = false;
        let mut a = Some(dir);
        while let Some(d) = a {
            chain.push(d.to_path_buf());
            if d.join(".git").exists() {
                repo = true;
                break;
            }
            a = d.parent();
        }
        for d in chain {
            if repo || d.starts_with(cwd) {
                self.load_gitignore(&d);
            }
        }
    }

    fn load_gitignore(&mut self, dir: &Path) {
        if self.git.contains_key(dir) {
            return;
        }
        self.reload_gitignore(dir);
    }

    fn reload_gitignore(&mut self, dir: &Path) {
        let mut found = Vec::new();
        let file = dir.join(".gitignore");
        if file.is_file() {
            // Bad lines are skipped, as git does.
            found.push(Gitignore::new(&file).0);
        }
        let exclude = dir.join(".git/info/exclude");
        if exclude.is_file() {
            let mut b = GitignoreBuilder::new(dir);
            b.add(&exclude);
            if let Ok(g) = b.build() {
                found.push(g);
            }
        }
        if found.is_empty() {
            self.git.remove(dir);
        } else {
            self.git.insert(dir.to_path_buf(), found);
        }
    }

    fn is_ignored(&self, path: &Path, is_dir: bool) -> bool {
        match self.spec.matched(path, is_dir) {
            Match::Ignore(_) => return true,
            Match::Whitelist(_) => return false,
            Match::None => {}
        }
        if !self.use_git {
            return false;
        }
        // Deepest first: a nested .gitignore overrides its parents.
        for (dir, matchers) in self.git.iter().rev() {
            if !path.starts_with(dir) || path == dir {
                continue;
            }
            for g in matchers {
                match g.matched(path, is_dir) {
                    Match::Ignore(_) => return true,
                    Match::Whitelist(_) => return false,
                    Match::None => {}
                }
            }
        }
        false
    }
}

/// `a/./b/../c` → `a/c`, lexically (symlinks are left alone).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::WatchAction;
    use std::fs;

    /// Generous: the machine is shared and busy.
    const WAIT: Duration = Duration::from_secs(30);

    fn spec(paths: &[&str], debounce_ms: u64) -> WatchSpec {
        WatchSpec {
            paths: paths.iter().map(|p| p.to_string()).collect(),
            ignore: Vec::new(),
            gitignore: true,
            debounce: Duration::from_millis(debounce_ms),
            action: WatchAction::Restart,
        }
    }

    struct Rig {
        watcher: Watcher,
        rx: mpsc::Receiver<Notice>,
        dir: tempfile::TempDir,
    }

    impl Rig {
        fn new() -> Rig {
            let (tx, rx) = mpsc::channel();
            let watcher = Watcher::new(move |n| {
                let _ = tx.send(n);
            })
            .unwrap();
            Rig {
                watcher,
                rx,
                dir: tempfile::tempdir().unwrap(),
            }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.dir.path().join(rel)
        }

        fn write(&self, rel: &str) {
            let p = self.path(rel);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, b"x").unwrap();
        }

        fn watch(&self, key: usize, spec: &WatchSpec) {
            self.watcher.update(key, spec, self.dir.path()).unwrap();
        }

        /// The next change, waiting for it.
        fn next(&self) -> WatchEvent {
            match self.rx.recv_timeout(WAIT) {
                Ok(Notice::Changed(ev)) => ev,
                Ok(Notice::Error { key, error }) => panic!("key {key}: {error}"),
                Err(e) => panic!("no change within {WAIT:?}: {e}"),
            }
        }

        /// Proves that nothing else is pending: writes `marker` and expects
        /// the next event to be that write alone.
        fn only_marker_next(&self, key: usize, marker: &str) {
            self.write(marker);
            let ev = self.next();
            assert_eq!(
                ev,
                WatchEvent {
                    key,
                    paths: vec![PathBuf::from(marker)]
                }
            );
        }
    }

    fn rels(paths: &[&str]) -> Vec<PathBuf> {
        paths.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn one_write_is_exactly_one_event() {
        let rig = Rig::new();
        rig.write("src/main.rs");
        rig.watch(0, &spec(&["src"], 100));
        rig.write("src/main.rs");
        let ev = rig.next();
        assert_eq!(
            ev,
            WatchEvent {
                key: 0,
                paths: rels(&["src/main.rs"])
            }
        );
        assert_eq!(ev.describe(), "src/main.rs changed");
        rig.only_marker_next(0, "src/marker");
    }

    #[test]
    fn a_burst_of_fifty_writes_is_one_event() {
        let rig = Rig::new();
        fs::create_dir(rig.path("src")).unwrap();
        rig.watch(3, &spec(&["."], 1000));
        for i in 0..50 {
            rig.write(&format!("src/f{}.rs", i % 5));
        }
        let ev = rig.next();
        assert_eq!(ev.key, 3);
        assert_eq!(ev.paths.len(), 5, "{ev:?}");
        assert_eq!(ev.describe(), "src/f0.rs and 4 more changed");
        rig.only_marker_next(3, "marker");
    }

    #[test]
    fn ignored_paths_make_no_event_and_are_not_watched() {
        let rig = Rig::new();
        for d in [
            "target/debug/deps",
            ".git/objects",
            "node_modules/x",
            ".mew/logs",
            "build/out",
            "secret",
            "src",
        ] {
            fs::create_dir_all(rig.path(d)).unwrap();
        }
        fs::write(rig.path(".gitignore"), "secret/\n*.tmp\n").unwrap();
        let mut s = spec(&["."], 100);
        s.ignore = vec!["build/".into(), "*.log".into()];
        rig.watch(0, &s);
        // The root and src only: nothing under the ignored directories.
        assert_eq!(rig.watcher.watched_dirs(), 2);
        for f in [
            "target/debug/deps/a.o",
            ".git/objects/x",
            "node_modules/x/i.js",
            ".mew/logs/l",
            "build/out/b",
            "secret/key",
            "src/a.tmp",
            "src/run.log",
            "b.log",
        ] {
            rig.write(f);
        }
        rig.only_marker_next(0, "src/marker.rs");
    }

    #[test]
    fn gitignore_off_watches_what_it_lists() {
        let rig = Rig::new();
        fs::write(rig.path(".gitignore"), "*.tmp\n").unwrap();
        let mut s = spec(&["."], 100);
        s.gitignore = false;
        rig.watch(0, &s);
        rig.write("a.tmp");
        assert_eq!(rig.next().paths, rels(&["a.tmp"]));
    }

    #[test]
    fn a_nested_gitignore_counts_below_its_directory() {
        let rig = Rig::new();
        fs::create_dir_all(rig.path("web/dist")).unwrap();
        fs::create_dir_all(rig.path("api/dist")).unwrap();
        fs::write(rig.path("web/.gitignore"), "dist/\n").unwrap();
        rig.watch(0, &spec(&["web", "api"], 100));
        rig.write("web/dist/bundle.js");
        rig.write("api/dist/x");
        assert_eq!(rig.next().paths, rels(&["api/dist/x"]));
    }

    #[test]
    fn a_glob_watches_its_prefix_and_filters() {
        let rig = Rig::new();
        fs::create_dir_all(rig.path("src/deep")).unwrap();
        fs::create_dir_all(rig.path("docs")).unwrap();
        rig.watch(0, &spec(&["src/**/*.rs"], 100));
        rig.write("docs/a.rs");
        rig.write("src/notes.txt");
        rig.write("src/deep/b.rs");
        assert_eq!(rig.next().paths, rels(&["src/deep/b.rs"]));
        rig.only_marker_next(0, "src/marker.rs");
    }

    #[test]
    fn a_glob_without_double_star_watches_only_as_deep_as_it_reaches() {
        let rig = Rig::new();
        fs::create_dir_all(rig.path("src/deep/er")).unwrap();
        rig.watch(0, &spec(&["src/*.rs"], 100));
        assert_eq!(rig.watcher.watched_dirs(), 1);
        rig.write("src/deep/x.rs");
        rig.write("src/lib.rs");
        assert_eq!(rig.next().paths, rels(&["src/lib.rs"]));
        // `*` does not cross a `/`: `*.rs` is the top level only.
        rig.watch(0, &spec(&["*.rs"], 100));
        rig.write("src/lib.rs");
        rig.only_marker_next(0, "main.rs");
    }

    #[test]
    fn a_single_file_survives_a_save_by_rename() {
        let rig = Rig::new();
        rig.write("app.toml");
        rig.write("other");
        rig.watch(0, &spec(&["app.toml"], 100));
        rig.write("other");
        rig.write("app.toml.swp");
        fs::rename(rig.path("app.toml.swp"), rig.path("app.toml")).unwrap();
        assert_eq!(rig.next().paths, rels(&["app.toml"]));
        rig.write("app.toml");
        assert_eq!(rig.next().paths, rels(&["app.toml"]));
    }

    #[test]
    fn files_in_new_directories_are_seen() {
        let rig = Rig::new();
        rig.watch(0, &spec(&["."], 100));
        // Created at once: the files may exist before their directory's watch.
        rig.write("new/a/b/early.rs");
        let ev = rig.next();
        assert!(
            ev.paths.contains(&PathBuf::from("new/a/b/early.rs")),
            "{ev:?}"
        );
        // Now the watch exists: a later write is seen on its own.
        rig.write("new/a/b/late.rs");
        assert_eq!(rig.next().paths, rels(&["new/a/b/late.rs"]));
        // An ignored new directory is not entered.
        let before = rig.watcher.watched_dirs();
        rig.write("new/target/x.o");
        rig.only_marker_next(0, "marker");
        assert_eq!(rig.watcher.watched_dirs(), before);
    }

    #[test]
    fn a_deleted_directory_is_forgotten_and_can_come_back() {
        let rig = Rig::new();
        rig.write("gen/a");
        rig.watch(0, &spec(&["."], 100));
        assert_eq!(rig.watcher.watched_dirs(), 2);
        fs::remove_dir_all(rig.path("gen")).unwrap();
        let ev = rig.next();
        assert!(ev.paths.contains(&PathBuf::from("gen")), "{ev:?}");
        assert_eq!(rig.watcher.watched_dirs(), 1);
        rig.write("gen/b");
        assert!(rig.next().paths.contains(&PathBuf::from("gen/b")));
        rig.write("gen/c");
        assert_eq!(rig.next().paths, rels(&["gen/c"]));
    }

    #[test]
    fn remove_stops_events_and_update_moves_them() {
        let rig = Rig::new();
        for d in ["a", "b", "c"] {
            fs::create_dir(rig.path(d)).unwrap();
        }
        rig.watch(0, &spec(&["a"], 100));
        rig.watch(1, &spec(&["b"], 100));
        rig.watcher.remove(0);
        rig.write("a/x");
        rig.only_marker_next(1, "b/y");
        // Key 1 moves from b to c: b is no longer watched.
        rig.watch(1, &spec(&["c"], 100));
        assert_eq!(rig.watcher.watched_dirs(), 1);
        rig.write("b/x");
        rig.only_marker_next(1, "c/y");
    }

    #[test]
    fn a_failed_update_keeps_the_old_watch() {
        let rig = Rig::new();
        fs::create_dir(rig.path("a")).unwrap();
        rig.watch(0, &spec(&["a"], 100));
        let err = rig
            .watcher
            .update(0, &spec(&["a", "missing/dir"], 100), rig.dir.path())
            .unwrap_err();
        assert!(matches!(err, WatchError::NotFound(_)));
        assert!(
            err.to_string().ends_with("missing/dir does not exist"),
            "{err}"
        );
        rig.only_marker_next(0, "a/x");
    }

    #[test]
    fn start_reports_each_key_that_cannot_be_watched() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("src")).unwrap();
        let good = spec(&["src"], 100);
        let missing = spec(&["nope/**/*.rs"], 100);
        let mut bad_glob = spec(&["src/[z-a].rs"], 100);
        bad_glob.debounce = Duration::from_millis(5);
        let (tx, _rx) = mpsc::channel();
        let (w, errors) = Watcher::start(
            [
                (0, &good, dir.path()),
                (1, &missing, dir.path()),
                (2, &bad_glob, dir.path()),
            ],
            move |n| {
                let _ = tx.send(n);
            },
        )
        .unwrap();
        let keys: Vec<usize> = errors.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, [1, 2], "{errors:?}");
        assert!(
            errors[0].1.to_string().contains("nope does not exist"),
            "{}",
            errors[0].1
        );
        assert!(
            errors[1]
                .1
                .to_string()
                .starts_with("watch: bad glob `src/[z-a].rs`"),
            "{}",
            errors[1].1
        );
        assert_eq!(w.watched_dirs(), 1);
    }

    #[test]
    fn the_watch_limit_says_what_to_do() {
        let e = notify_error(
            Path::new("/x"),
            notify::Error::new(notify::ErrorKind::MaxFilesWatch),
        );
        let text = e.to_string();
        assert!(text.contains("fs.inotify.max_user_watches"), "{text}");
        assert!(text.contains("sysctl"), "{text}");
    }

    #[test]
    fn a_constant_stream_still_fires() {
        let rig = Rig::new();
        rig.watch(0, &spec(&["."], 100));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = {
            let stop = Arc::clone(&stop);
            let path = rig.path("hot");
            std::thread::spawn(move || {
                let started = Instant::now();
                // Every 20 ms (under the 100 ms debounce) for up to the wait.
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed() < WAIT {
                    fs::write(&path, b"x").unwrap();
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let ev = rig.next();
        let still_writing = !writer.is_finished();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        writer.join().unwrap();
        assert_eq!(ev.paths, rels(&["hot"]));
        assert!(still_writing, "the event only came when the stream stopped");
    }

    #[test]
    fn the_tokio_channel_gets_the_events() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let w = Watcher::with_channel(tx).unwrap();
        w.update(7, &spec(&["."], 50), dir.path()).unwrap();
        fs::write(dir.path().join("f"), b"x").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let n = rt
            .block_on(async { tokio::time::timeout(WAIT, rx.recv()).await })
            .unwrap();
        assert!(
            matches!(n, Some(Notice::Changed(WatchEvent { key: 7, .. }))),
            "{n:?}"
        );
        drop(w);
        // Dropping the watcher ends its thread, which held the sender.
        let end = rt
            .block_on(async { tokio::time::timeout(WAIT, rx.recv()).await })
            .unwrap();
        assert!(end.is_none());
    }

    #[test]
    fn a_removed_root_is_reported() {
        let rig = Rig::new();
        fs::create_dir(rig.path("gen")).unwrap();
        rig.watch(0, &spec(&["gen"], 50));
        fs::remove_dir(rig.path("gen")).unwrap();
        match rig.rx.recv_timeout(WAIT) {
            Ok(Notice::Error { key: 0, error }) => {
                assert!(error.to_string().contains("gen was removed"), "{error}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rig.next().paths, Vec::<PathBuf>::new());
        assert_eq!(rig.watcher.watched_dirs(), 0);
    }

    #[test]
    fn the_watcher_can_live_in_the_servers_state() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Watcher>();
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
        assert_eq!(normalize(Path::new("/a/b/")), PathBuf::from("/a/b"));
    }
}
