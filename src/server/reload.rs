//! The config of a running space changes: `mew space reload` (and the
//! TUI's key, and `up --watch-config`) and `mew space scale NAME=N`.
//!
//! [`Devloop`] keeps the config the space runs now (the one it started
//! with, then each reloaded one, with the copies `scale` added). A reload
//! loads the config again from the same files (override discovery runs
//! again: a `space.override.yaml` may have appeared or gone), compares it
//! with [`config::diff`] and tells the supervisor: add what is new, remove
//! what is gone, replace (restart) what changed in what runs, update in
//! place what changed only in `watch`, `profiles`… The rest keeps running.
//! A config with errors changes nothing.

use std::path::{Path, PathBuf};

use tokio::sync::Mutex;

use crate::config::{
    self, ConfigSource, LoadOptions, ProcKind, ProcessConfig, ResolvedProcess, SpaceConfig,
    load_cli::format_diagnostic,
};
use crate::protocol::ReloadReport;
use crate::space::SpacePaths;
use crate::supervisor::Handle;

/// The part of the server that changes the running space's config.
pub(super) struct Devloop {
    /// The config the space runs now.
    cfg: Mutex<SpaceConfig>,
    paths: SpacePaths,
    /// The gateway's port (what `${PORT}` resolves to).
    port: u16,
    handle: Handle,
    /// What attached TUIs show of the config, kept in step with `cfg`.
    notes: std::sync::Mutex<crate::tui::SpaceNotes>,
    /// What `up NAME…` / `--profile` selected: kept for the reloaded config.
    part: super::part::Part,
    /// The `watch:` task, told what a reload or a scale changed.
    watch: super::part::WatchControl,
}

impl Devloop {
    pub(super) fn new(
        cfg: SpaceConfig,
        paths: SpacePaths,
        port: u16,
        handle: Handle,
        notes: crate::tui::SpaceNotes,
        part: super::part::Part,
        watch: super::part::WatchControl,
    ) -> Devloop {
        Devloop {
            cfg: Mutex::new(cfg),
            paths,
            port,
            handle,
            notes: std::sync::Mutex::new(notes),
            part,
            watch,
        }
    }

    /// Tell the watch task that process `name` now runs as `rp` says.
    fn watch_as(&self, name: &str, rp: &ResolvedProcess) {
        if let Some(i) = self.handle.shared.index_of(name) {
            self.watch.set(i, rp);
        }
    }

    /// What the TUI shows of the config now (after the last reload).
    pub(super) fn notes(&self) -> crate::tui::SpaceNotes {
        self.notes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The config files a change of which means a reload: the ones loaded,
    /// and the override file that may appear beside the config.
    pub(super) async fn watched_files(&self) -> Vec<PathBuf> {
        let cfg = self.cfg.lock().await;
        watched_files(&cfg)
    }

    /// Load the config again and apply what changed (see the module doc).
    pub(super) async fn reload(&self) -> ReloadReport {
        let mut cur = self.cfg.lock().await;
        let opts = reload_options(&cur);
        let new = match config::load(&opts) {
            Ok(c) => c,
            Err(e) => {
                let mut error_lines: Vec<String> = e
                    .errors()
                    .iter()
                    .map(|d| format_diagnostic("error", d))
                    .collect();
                if error_lines.is_empty() {
                    error_lines = e.to_string().lines().take(1).map(str::to_owned).collect();
                }
                // `check`'s report, said of a reload.
                let text = e
                    .to_string()
                    .replace("; nothing was started", "; nothing was changed");
                return ReloadReport {
                    errors: Some(text),
                    error_lines,
                    ..ReloadReport::default()
                };
            }
        };
        let diff = config::diff(&cur, &new);
        let (resolved, warnings) = match self.resolve(&new) {
            Ok((mut resolved, warnings)) => {
                super::part::apply_again(&new, &mut resolved, &self.part);
                (resolved, warnings)
            }
            Err(why) => {
                return ReloadReport {
                    error_lines: vec![format!("error: {why}")],
                    errors: Some(format!("error: {why}")),
                    ..ReloadReport::default()
                };
            }
        };
        let mut new = new;
        let mut report = ReloadReport {
            unchanged: diff.unchanged.len(),
            warnings: new
                .warnings
                .iter()
                .chain(warnings.iter())
                .map(|w| format_diagnostic("warning", w))
                .collect(),
            ..ReloadReport::default()
        };
        let spec = |name: &str| resolved.iter().find(|rp| rp.name == name).cloned();
        // Dependencies before their dependents: an added process that
        // depends on another added one finds it.
        let mut not_added: Vec<String> = Vec::new();
        for i in config::start_order(&new) {
            let name = &new.processes[i].name;
            if !diff.added.contains(name) {
                continue;
            }
            let Some(rp) = spec(name) else { continue };
            match self.handle.add(rp.clone()).await {
                Ok(()) => {
                    self.watch_as(name, &rp);
                    report.added.push(name.clone());
                }
                // Not running: the next reload tries again (e.g. the old
                // process of that name was still stopping).
                Err(e) => {
                    report.failed.push(format!("{name}: {e}"));
                    not_added.push(name.clone());
                }
            }
        }
        new.processes.retain(|p| !not_added.contains(&p.name));
        for c in &diff.changed {
            let Some(rp) = spec(&c.name) else { continue };
            self.watch_as(&c.name, &rp);
            let done = if c.restart {
                self.handle.replace(rp).await
            } else {
                self.handle.update(rp).await
            };
            match done {
                Ok(()) if c.restart => report.restarted.push((c.name.clone(), c.fields.clone())),
                Ok(()) => report.updated.push((c.name.clone(), c.fields.clone())),
                Err(e) => report.failed.push(format!("{}: {e}", c.name)),
            }
        }
        for name in &diff.removed {
            let index = self.handle.shared.index_of(name);
            match self.handle.remove(name.clone()).await {
                Ok(()) => {
                    if let Some(i) = index {
                        self.watch.remove(i);
                    }
                    report.removed.push(name.clone());
                }
                Err(e) => report.failed.push(format!("{name}: {e}")),
            }
        }
        {
            let mut notes = self.notes.lock().unwrap_or_else(|e| e.into_inner());
            *notes = super::startup::space_notes(&new, &warnings);
        }
        *cur = new;
        report
    }

    /// Run `count` copies of `base` (see [`scale_plan`]); the names started
    /// and stopped.
    pub(super) async fn scale(
        &self,
        base: &str,
        count: u32,
    ) -> Result<(Vec<String>, Vec<String>), String> {
        let mut cur = self.cfg.lock().await;
        let plan = scale_plan(&cur, base, count)?;
        let mut next = cur.clone();
        next.processes.extend(plan.add.iter().cloned());
        let (resolved, _) = self.resolve(&next)?;
        let (mut started, mut stopped) = (Vec::new(), Vec::new());
        let mut failed = Vec::new();
        for p in &plan.add {
            let Some(rp) = resolved.iter().find(|rp| rp.name == p.name).cloned() else {
                continue;
            };
            match self.handle.add(rp.clone()).await {
                Ok(()) => {
                    self.watch_as(&p.name, &rp);
                    started.push(p.name.clone());
                    cur.processes.push(p.clone());
                }
                Err(e) => failed.push(format!("{}: {e}", p.name)),
            }
        }
        for name in &plan.remove {
            let index = self.handle.shared.index_of(name);
            match self.handle.remove(name.clone()).await {
                Ok(()) => {
                    if let Some(i) = index {
                        self.watch.remove(i);
                    }
                    stopped.push(name.clone());
                    cur.processes.retain(|p| p.name != *name);
                }
                Err(e) => failed.push(format!("{name}: {e}")),
            }
        }
        if failed.is_empty() {
            Ok((started, stopped))
        } else {
            Err(failed.join("; "))
        }
    }

    /// The processes of `cfg` resolved as at `up` (tokens of new
    /// participants are made now).
    fn resolve(
        &self,
        cfg: &SpaceConfig,
    ) -> Result<(Vec<ResolvedProcess>, Vec<config::Diagnostic>), String> {
        let ctx = super::startup::resolve_context(cfg, &self.paths, self.port).map_err(|e| {
            format!(
                "cannot prepare tokens in {}: {e}",
                self.paths.tokens_dir.display()
            )
        })?;
        Ok(config::resolve(cfg, &ctx))
    }
}

/// `up --watch-config`: reload whenever one of the config files changes
/// (debounced by the watcher: a burst of writes is one reload). What each
/// reload did goes to the server's stderr (the terminal with `--no-tui`,
/// the server log otherwise) and to the TUIs' notes.
pub(super) async fn watch_config(devloop: std::sync::Arc<Devloop>) {
    use crate::watch::{Notice, Watcher};
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = match Watcher::with_channel(tx) {
        Ok(w) => w,
        Err(e) => {
            say!("mew: --watch-config: {e}");
            return;
        }
    };
    let mut files = devloop.watched_files().await;
    let mut groups = watch(&watcher, &files);
    while let Some(notice) = rx.recv().await {
        let ev = match notice {
            Notice::Changed(ev) => ev,
            Notice::Error { error, .. } => {
                say!("mew: --watch-config: {error}");
                continue;
            }
        };
        let dir = groups.get(ev.key).cloned().unwrap_or_default();
        if !ev.paths.is_empty() && !ev.paths.iter().any(|p| is_watched(&dir, p, &files)) {
            continue;
        }
        let report = devloop.reload().await;
        match &report.errors {
            Some(errors) => say!(
                "mew: the config changed but has errors; nothing changed:
{errors}"
            ),
            None => {
                tracing::info!("config reloaded: {}", report.lines().join("; "));
                say!("mew: config reloaded: {}", report.lines().join("; "));
            }
        }
        // The files may be others now (an override file came or went).
        let now = devloop.watched_files().await;
        if now != files {
            for key in 0..groups.len() {
                watcher.remove(key);
            }
            files = now;
            groups = watch(&watcher, &files);
        }
    }
}

/// Watch `files` (grouped by directory, a key each); the directories by key.
fn watch(watcher: &crate::watch::Watcher, files: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for (k, (dir, patterns)) in watch_groups(files).into_iter().enumerate() {
        let spec = config::WatchSpec {
            paths: patterns,
            ignore: Vec::new(),
            gitignore: false,
            debounce: std::time::Duration::from_millis(300),
            action: config::WatchAction::Restart,
        };
        if let Err(e) = watcher.update(k, &spec, &dir) {
            say!("mew: --watch-config: {e}");
        }
        dirs.push(dir);
    }
    dirs
}

/// How to load `cfg` again: from its files, with the override file found
/// again when it was not named. The server is started with every merged
/// file named (`--config space.yaml --config space.override.yaml`): a
/// second file that is the config's own override file counts as found, so
/// that it may go away (and one that was not there may appear).
pub(crate) fn reload_options(cfg: &SpaceConfig) -> LoadOptions {
    match cfg.source {
        ConfigSource::Procfile => LoadOptions {
            space_dir: cfg.dir.clone(),
            procfile: Some(cfg.config_path.clone()),
            ..Default::default()
        },
        ConfigSource::SpaceYaml => {
            let own = config::override_path(&cfg.config_path);
            let rest: Vec<PathBuf> = cfg
                .sources
                .iter()
                .filter(|s| **s != cfg.config_path)
                .cloned()
                .collect();
            let found = rest.is_empty() || (rest.len() == 1 && own.as_ref() == rest.first());
            LoadOptions {
                space_dir: cfg.dir.clone(),
                config: Some(cfg.config_path.clone()),
                procfile: None,
                overrides: if found { Vec::new() } else { rest },
            }
        }
    }
}

/// The files whose change means a reload: what `cfg` was loaded from and,
/// when override files are found (not named), the config's own override
/// file even if it does not exist yet.
pub(crate) fn watched_files(cfg: &SpaceConfig) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = vec![cfg.config_path.clone()];
    for s in &cfg.sources {
        if !files.contains(s) {
            files.push(s.clone());
        }
    }
    if cfg.source == ConfigSource::SpaceYaml
        && reload_options(cfg).overrides.is_empty()
        && let Some(own) = config::override_path(&cfg.config_path)
        && !files.contains(&own)
    {
        files.push(own);
    }
    files
}

/// A `watch:` pattern that matches exactly the file `name` in its
/// directory, whether or not it exists yet (a glob, so the watcher waits
/// for it instead of refusing a missing file).
pub(crate) fn exact_glob(name: &str) -> String {
    let escaped = globset::escape(name);
    let mut chars = escaped.chars();
    match chars.next() {
        // Already a glob (it escapes a special character with `[…]`).
        _ if escaped.contains('[') => escaped,
        Some(c) => format!("[{c}]{}", chars.as_str()),
        None => escaped,
    }
}

/// The files of `files` grouped by directory, each as an [`exact_glob`].
pub(crate) fn watch_groups(files: &[PathBuf]) -> Vec<(PathBuf, Vec<String>)> {
    let mut groups: Vec<(PathBuf, Vec<String>)> = Vec::new();
    for f in files {
        let (Some(dir), Some(name)) = (f.parent(), f.file_name().and_then(|n| n.to_str())) else {
            continue;
        };
        let pattern = exact_glob(name);
        match groups.iter_mut().find(|(d, _)| d == dir) {
            Some((_, names)) => names.push(pattern),
            None => groups.push((dir.to_path_buf(), vec![pattern])),
        }
    }
    groups
}

/// What `scale base=count` does to `cfg`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct ScalePlan {
    /// The copies to start, in order.
    pub add: Vec<ProcessConfig>,
    /// The copies to stop and remove, the highest first.
    pub remove: Vec<String>,
}

/// The copies of `base` in `cfg`, by index: a process with `replicas:` has
/// `base-1` … `base-N`; a plain process is its own copy 1 (its copies
/// `base-2` … come from `scale`).
fn copies(cfg: &SpaceConfig, base: &str) -> Vec<(u32, String)> {
    let mut out: Vec<(u32, String)> = cfg
        .processes
        .iter()
        .filter_map(|p| match &p.replica {
            Some(r) if r.of == base && p.name != base => Some((r.index, p.name.clone())),
            _ if p.name == base => Some((1, p.name.clone())),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// `scale base=count`: copies `base-k` (by [`config::replica_of`]: the
/// `PORT` offset and `${REPLICA}` apply) up to `count`, or the highest ones
/// removed down to it. A plain process (no `replicas:`) counts as copy 1 and
/// is never removed by `scale`: `web=3` adds `web-2` and `web-3`. At least 1
/// copy stays (`mew space stop` stops them all).
pub(crate) fn scale_plan(cfg: &SpaceConfig, base: &str, count: u32) -> Result<ScalePlan, String> {
    let have = copies(cfg, base);
    let Some(template) = have
        .first()
        .and_then(|(_, name)| cfg.processes.iter().find(|p| p.name == *name))
    else {
        let names: Vec<&str> = cfg
            .processes
            .iter()
            .map(|p| {
                p.replica
                    .as_ref()
                    .map_or(p.name.as_str(), |r| r.of.as_str())
            })
            .collect();
        let hint = config::did_you_mean(base, &names)
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        return Err(format!("no process `{base}` in this space{hint}"));
    };
    if template.kind != ProcKind::Process {
        return Err(format!(
            "`{base}` is a {}: only processes can be scaled",
            kind_name(template.kind)
        ));
    }
    if count == 0 {
        return Err(format!(
            "at least 1 copy of `{base}` stays (\"mew space stop\" stops them)"
        ));
    }
    if count > 1000 {
        return Err(format!("{count} copies of `{base}`: at most 1000"));
    }
    let mut plan = ScalePlan::default();
    for index in 1..=count {
        if have.iter().any(|(i, _)| *i == index) {
            continue;
        }
        let Some(mut p) = config::replica_of(cfg, base, index, count) else {
            continue;
        };
        if cfg.process(&p.name).is_some() {
            return Err(format!(
                "the copy `{}` would have the name of another process",
                p.name
            ));
        }
        // `scale` starts the copies it adds, whatever the template says.
        p.auto_start = true;
        plan.add.push(p);
    }
    for (index, name) in have.iter().rev() {
        if *index > count && name != base {
            plan.remove.push(name.clone());
        }
    }
    Ok(plan)
}

fn kind_name(kind: ProcKind) -> &'static str {
    match kind {
        ProcKind::Process => "process",
        ProcKind::Participant => "participant",
        ProcKind::Gateway => "gateway",
    }
}

/// The text `mew space scale` prints for what was done.
pub fn scale_lines(base: &str, started: &[String], stopped: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if !started.is_empty() {
        out.push(format!("started: {}", started.join(", ")));
    }
    if !stopped.is_empty() {
        out.push(format!("stopped: {}", stopped.join(", ")));
    }
    if out.is_empty() {
        out.push(format!("{base}: nothing to do"));
    }
    out
}

/// Whether `path` is one of `files` (the watcher reports paths relative to
/// the directory it watches).
pub(crate) fn is_watched(dir: &Path, path: &Path, files: &[PathBuf]) -> bool {
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    };
    files.contains(&full)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> SpaceConfig {
        match config::parse_yaml(yaml, Path::new("/s/space.yaml"), Path::new("/s")) {
            Ok(c) => c,
            Err(e) => panic!("bad test config:\n{e}"),
        }
    }

    #[test]
    fn a_found_override_file_is_found_again_a_named_one_stays_named() {
        let mut c = cfg("processes:\n  a:\n    command: x\n");
        c.config_path = "/s/space.yaml".into();
        c.sources = vec!["/s/space.yaml".into()];
        let o = reload_options(&c);
        assert_eq!(o.config.as_deref(), Some(Path::new("/s/space.yaml")));
        assert!(o.overrides.is_empty());
        assert_eq!(
            watched_files(&c),
            [
                PathBuf::from("/s/space.yaml"),
                PathBuf::from("/s/space.override.yaml")
            ]
        );
        c.sources.push("/s/space.override.yaml".into());
        assert!(reload_options(&c).overrides.is_empty());
        c.sources = vec!["/s/space.yaml".into(), "/s/ci.yaml".into()];
        assert_eq!(reload_options(&c).overrides, [PathBuf::from("/s/ci.yaml")]);
        assert_eq!(
            watched_files(&c),
            [PathBuf::from("/s/space.yaml"), PathBuf::from("/s/ci.yaml")]
        );
    }

    #[test]
    fn exact_globs_match_one_name_and_group_by_directory() {
        assert_eq!(exact_glob("space.yaml"), "[s]pace.yaml");
        assert_eq!(exact_glob("a*b.yaml"), "a[*]b.yaml");
        let m = globset::Glob::new(&exact_glob("space.override.yaml"))
            .unwrap()
            .compile_matcher();
        assert!(m.is_match("space.override.yaml"));
        assert!(!m.is_match("space.yaml"));
        let groups = watch_groups(&[
            "/s/space.yaml".into(),
            "/s/space.override.yaml".into(),
            "/t/ci.yaml".into(),
        ]);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].1, ["[s]pace.yaml", "[s]pace.override.yaml"]);
        assert!(is_watched(
            Path::new("/s"),
            Path::new("space.yaml"),
            &["/s/space.yaml".into()]
        ));
        assert!(!is_watched(
            Path::new("/s"),
            Path::new("other.yaml"),
            &["/s/space.yaml".into()]
        ));
    }

    #[test]
    fn scale_adds_copies_and_removes_the_highest() {
        let c = cfg(
            "processes:\n  web:\n    command: x\n  worker:\n    command: y\n    replicas: 2\n    env: { PORT: \"9000\" }\n",
        );
        let p = scale_plan(&c, "worker", 4).unwrap();
        let names: Vec<&str> = p.add.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["worker-3", "worker-4"]);
        assert_eq!(p.add[0].replica.as_ref().map(|r| r.index), Some(3));
        assert!(p.remove.is_empty());
        let p = scale_plan(&c, "worker", 1).unwrap();
        assert!(p.add.is_empty());
        assert_eq!(p.remove, ["worker-2"]);
        // A plain process is copy 1; it is never removed.
        let p = scale_plan(&c, "web", 2).unwrap();
        assert_eq!(p.add.len(), 1);
        assert_eq!(p.add[0].name, "web-2");
        assert_eq!(scale_plan(&c, "web", 1).unwrap(), ScalePlan::default());
        assert!(scale_plan(&c, "web", 0).is_err());
        let e = scale_plan(&c, "wrker", 2).unwrap_err();
        assert!(e.contains("did you mean `worker`"), "{e}");
    }

    #[test]
    fn a_report_says_what_changed_and_the_footer_gets_one_line() {
        let r = ReloadReport {
            added: vec!["new".into()],
            removed: vec!["gone".into()],
            restarted: vec![("api".into(), vec!["command".into(), "env.PORT".into()])],
            unchanged: 2,
            ..ReloadReport::default()
        };
        assert_eq!(
            r.lines(),
            [
                "added: new",
                "removed: gone",
                "restarted: api (command, env.PORT)",
                "unchanged: 2"
            ]
        );
        assert_eq!(
            r.summary(),
            "reloaded: added: new; removed: gone; restarted: api (command, env.PORT); unchanged: 2"
        );
        let bad = ReloadReport {
            errors: Some("…".into()),
            error_lines: vec!["error: /s/space.yaml:3:5: bad".into(), "error: two".into()],
            ..ReloadReport::default()
        };
        assert_eq!(
            bad.summary(),
            "reload: nothing changed, error: /s/space.yaml:3:5: bad (and 1 more: see the notes)"
        );
    }

    #[test]
    fn scale_lines_say_what_was_done() {
        assert_eq!(
            scale_lines("w", &["w-3".into()], &[]),
            ["started: w-3".to_string()]
        );
        assert_eq!(scale_lines("w", &[], &[]), ["w: nothing to do".to_string()]);
    }
}
