//! From the spanned YAML tree to the typed model, collecting every problem.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model::*;
use super::node::{Node, NodeValue};
use super::report::escape;
use super::suggest::did_you_mean;
use super::units::{parse_duration, parse_signal, parse_size};

pub const TOP_KEYS: &[&str] = &[
    "space",
    "participants",
    "gateway",
    "processes",
    "logs",
    "shutdown_timeout",
    "ui",
    "defaults",
    "gateway_logging",
];
const SPACE_KEYS: &[&str] = &["id", "name", "description", "default_participant"];
pub const PROC_KEYS: &[&str] = &[
    "command",
    "args",
    "env",
    "cwd",
    "env_file",
    "depends_on",
    "depends_on_gateway",
    "ready",
    "health",
    "restart_policy",
    "max_restarts",
    "backoff",
    "stop_signal",
    "stop_timeout",
    "max_memory",
    "scrollback",
    "disabled",
    "auto_start",
    "one_shot",
    "watch",
    "profiles",
    "replicas",
];
/// Keys of a `watch:` mapping.
const WATCH_KEYS: &[&str] = &["paths", "ignore", "gitignore", "debounce", "action"];
/// The default `watch.debounce`.
pub const DEFAULT_WATCH_DEBOUNCE: Duration = Duration::from_millis(300);
/// What a watcher always leaves out (besides `ignore:` and `.gitignore`).
pub const DEFAULT_WATCH_IGNORE: &[&str] = &[".git", ".mew", "target", "node_modules"];
/// The most copies `replicas:` may ask for.
pub const MAX_REPLICAS: u64 = 1000;
/// Upstream MEW participant keys mew accepts and keeps but does not act on
/// (also candidates for did-you-mean).
const UPSTREAM_PARTICIPANT_KEYS: &[&str] = &[
    "type",
    "tokens",
    "capabilities",
    "fifo",
    "output_log",
    "auto_connect",
    "mcp_server",
    "bridge_config",
    "default_to",
    "ui_theme",
];
const READY_TARGETS: &[&str] = &["http", "tcp", "exec", "log"];
const READY_KEYS: &[&str] = &[
    "http",
    "tcp",
    "exec",
    "log",
    "initial_delay",
    "period",
    "timeout",
    "failure_threshold",
];
const HEALTH_TARGETS: &[&str] = &["http", "tcp", "exec"];
/// `log` is listed so that it gets its own error (not a typo warning).
const HEALTH_KEYS: &[&str] = &[
    "http",
    "tcp",
    "exec",
    "log",
    "initial_delay",
    "period",
    "timeout",
    "failure_threshold",
    "action",
];
const BACKOFF_KEYS: &[&str] = &["initial", "max", "multiplier"];
const LOGS_KEYS: &[&str] = &["dir", "rotate_size", "keep", "upstream_paths"];
const MCP_SERVER_KEYS: &[&str] = &["command", "args", "env", "cwd"];
const BRIDGE_CONFIG_KEYS: &[&str] = &["init_timeout", "reconnect", "max_reconnects"];
const UI_KEYS: &[&str] = &["keys"];

pub const GATEWAY_NAME: &str = "gateway";
/// Names mew's own files use under the logs dir: no process may take them.
pub const RESERVED_NAMES: &[&str] = &["mew-server"];
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_GATEWAY_PROBE_URL: &str = "http://127.0.0.1:${PORT}/health";
pub const DEFAULT_SCROLLBACK: usize = 2000;
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_ROTATE_SIZE: u64 = 10 << 20;
pub const DEFAULT_KEEP: u32 = 5;

/// Probe defaults: no initial delay, every 1s, 1s timeout, 3 failures.
pub fn probe(kind: ProbeKind) -> Probe {
    Probe {
        kind,
        initial_delay: Duration::ZERO,
        period: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        failure_threshold: 3,
    }
}

/// Health check defaults: from readiness on, every 10s, 1s timeout, 3
/// failures. A liveness check runs for the whole life of the process, so it
/// is ten times less frequent than a readiness probe.
pub fn health_probe(kind: ProbeKind) -> Probe {
    Probe {
        kind,
        initial_delay: Duration::ZERO,
        period: Duration::from_secs(10),
        timeout: Duration::from_secs(1),
        failure_threshold: 3,
    }
}

/// A process config with every default applied.
pub fn default_process(name: &str, kind: ProcKind, command: String, loc: Loc) -> ProcessConfig {
    ProcessConfig {
        name: name.to_owned(),
        kind,
        command,
        args: None,
        env: Vec::new(),
        cwd: None,
        env_file: None,
        env_file_vars: Vec::new(),
        depends_on: Vec::new(),
        ready: None,
        health: None,
        restart_policy: RestartPolicy::No,
        max_restarts: None,
        backoff: Backoff::default(),
        stop_signal: StopSignal::default(),
        stop_timeout: DEFAULT_STOP_TIMEOUT,
        max_memory: None,
        scrollback: DEFAULT_SCROLLBACK,
        disabled: false,
        auto_start: true,
        one_shot: false,
        tokens: Vec::new(),
        native: false,
        upstream_log: None,
        watch: None,
        profiles: Vec::new(),
        replica: None,
        overridden: Vec::new(),
        loc,
    }
}

/// Names must be usable as file names under `.mew/logs/`.
/// A space id is a label (shown, passed to participants as `${SPACE}` and
/// `MEW_SPACE`, the gateway's space name), never part of a path: any text
/// the upstream CLI accepts is accepted (`{{SPACE_NAME}}` left literal by
/// an upstream template included), except control characters, which no
/// terminal or log should receive.
pub fn check_space_id(id: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        Err("a space id cannot be empty".to_owned())
    } else if id.chars().count() > 256 {
        Err(format!(
            "the id is too long ({} characters, at most 256)",
            id.chars().count()
        ))
    } else if id.chars().any(char::is_control) {
        Err(format!("`{}` contains control characters", escape(id)))
    } else {
        Ok(())
    }
}

pub fn check_name(name: &str) -> Result<(), String> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if name.is_empty() {
        Err("a name cannot be empty".to_owned())
    } else if name.len() > 64 {
        Err(format!(
            "the name `{}…` is too long ({} characters, at most 64)",
            escape(&name.chars().take(20).collect::<String>()),
            name.chars().count()
        ))
    } else if !ok_first || !ok_rest {
        Err(format!(
            "`{}` is not a valid name: use letters, digits, `.`, `_` and `-`, starting with a letter or digit (names become log file names)",
            escape(name)
        ))
    } else {
        Ok(())
    }
}

/// What the builder learnt about one process beyond the model.
#[derive(Clone)]
pub struct Extra {
    /// Location of each `depends_on` entry (parallel to `depends_on`).
    pub dep_locs: Vec<Loc>,
    pub depends_on_gateway: Option<bool>,
    /// `depends_on[0]` is the gateway dependency added by mew.
    pub implicit_gateway: bool,
    /// What becomes a command line (visible in `ps`): `command`, each of
    /// `args`, an `exec` probe or check, as (field, where, text).
    pub command_lines: Vec<(String, Loc, String)>,
    /// `replicas: N` and where it was written.
    pub replicas: Option<(u32, Loc)>,
}

impl Extra {
    pub fn new() -> Self {
        Extra {
            dep_locs: Vec::new(),
            depends_on_gateway: None,
            implicit_gateway: false,
            command_lines: Vec::new(),
            replicas: None,
        }
    }
}

pub struct Builder<'a> {
    /// The config file.
    pub file: PathBuf,
    /// Every merged file, the config first: `Loc::file` indexes it.
    pub files: Vec<PathBuf>,
    pub space_dir: &'a Path,
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
    /// Same order as the processes built.
    pub extras: Vec<Extra>,
    /// Every defined name (processes and non-process participants) with its location.
    pub names: Vec<(String, Loc, &'static str)>,
    /// Every participant's `tokens:` values (masked wherever mew shows a command).
    pub secret_tokens: Vec<String>,
}

impl<'a> Builder<'a> {
    pub fn new(file: PathBuf, space_dir: &'a Path) -> Self {
        Builder {
            files: vec![file.clone()],
            file,
            space_dir,
            errors: Vec::new(),
            warnings: Vec::new(),
            extras: Vec::new(),
            names: Vec::new(),
            secret_tokens: Vec::new(),
        }
    }

    /// An error in the config file. Values quoted in `msg` must be
    /// [`escape`]d; the rest is escaped but for its line breaks.
    pub fn err(&mut self, loc: &Loc, msg: impl Into<String>) {
        let d = Diagnostic::new(&self.file_of(Some(loc)), Some(loc.clone()), msg);
        self.errors.push(d);
    }

    /// A warning in the config file (see [`Builder::err`]).
    pub fn warn(&mut self, loc: Option<&Loc>, msg: impl Into<String>) {
        let d = Diagnostic::new(&self.file_of(loc), loc.cloned(), msg);
        self.warnings.push(d);
    }

    /// The file `loc` is in (the config file without one).
    fn file_of(&self, loc: Option<&Loc>) -> PathBuf {
        loc.and_then(|l| self.files.get(l.file))
            .unwrap_or(&self.file)
            .clone()
    }

    fn mismatch(&mut self, n: &Node, what: &str, expected: &str) {
        self.err(
            &n.loc,
            format!(
                "`{what}`: expected {expected}, found {}",
                n.value.describe()
            ),
        );
    }

    /// A mapping, or an error. `Null` counts as an empty mapping.
    fn map<'n>(&mut self, n: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &n.value {
            NodeValue::Map(m) => Some(m),
            NodeValue::Null => Some(&[]),
            _ => {
                self.mismatch(n, what, "a mapping (`key: value` lines)");
                None
            }
        }
    }

    /// Iterate a mapping's entries with string keys; warns about likely typos.
    fn entries<'n>(
        &mut self,
        m: &'n [(Node, Node)],
        known: &[&str],
        context: &str,
    ) -> Vec<(&'n str, &'n Node, &'n Node)> {
        let mut out = Vec::new();
        for (k, v) in m {
            let Some(key) = k.as_str() else {
                self.err(
                    &k.loc,
                    format!(
                        "{context}: expected a key name, found {}",
                        k.value.describe()
                    ),
                );
                continue;
            };
            if !known.contains(&key)
                && let Some(s) = did_you_mean(key, known)
            {
                self.warn(
                    Some(&k.loc),
                    format!(
                        "unknown key `{}` in {context} is ignored\nhelp: did you mean `{s}`?",
                        escape(key)
                    ),
                );
            }
            out.push((key, k, v));
        }
        out
    }

    fn string(&mut self, n: &Node, what: &str) -> Option<String> {
        match &n.value {
            NodeValue::Str(s) => Some(s.clone()),
            _ => {
                self.mismatch(n, what, "a string");
                None
            }
        }
    }

    /// Strings, numbers and booleans as text.
    fn scalar(&mut self, n: &Node, what: &str) -> Option<String> {
        n.scalar_text().or_else(|| {
            self.mismatch(n, what, "a string");
            None
        })
    }

    fn bool(&mut self, n: &Node, what: &str) -> Option<bool> {
        match &n.value {
            NodeValue::Bool(b) => Some(*b),
            _ => {
                self.mismatch(n, what, "`true` or `false`");
                None
            }
        }
    }

    fn uint(&mut self, n: &Node, what: &str, max: u64) -> Option<u64> {
        match &n.value {
            NodeValue::Int(i) if *i >= 0 && *i <= i128::from(max) => u64::try_from(*i).ok(),
            NodeValue::Int(i) => {
                self.err(
                    &n.loc,
                    format!("`{what}`: {i} is out of range (0 to {max})"),
                );
                None
            }
            _ => {
                self.mismatch(n, what, "a whole number");
                None
            }
        }
    }

    fn duration(&mut self, n: &Node, what: &str) -> Option<Duration> {
        let text = match &n.value {
            NodeValue::Str(s) => s.clone(),
            NodeValue::Int(i) => i.to_string(),
            _ => {
                self.mismatch(n, what, "a duration like `500ms`, `10s` or `2m`");
                return None;
            }
        };
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(&n.loc, format!("`{what}`: {}", escape(&e)));
                None
            }
        }
    }

    fn size(&mut self, n: &Node, what: &str) -> Option<u64> {
        let text = match &n.value {
            NodeValue::Str(s) => s.clone(),
            NodeValue::Int(i) => i.to_string(),
            _ => {
                self.mismatch(n, what, "a size like `512K`, `500M` or `1G`");
                return None;
            }
        };
        match parse_size(&text) {
            Ok(s) => Some(s),
            Err(e) => {
                self.err(&n.loc, format!("`{what}`: {}", escape(&e)));
                None
            }
        }
    }

    fn string_list(&mut self, n: &Node, what: &str) -> Option<Vec<String>> {
        let NodeValue::Seq(items) = &n.value else {
            self.mismatch(n, what, "a list of strings");
            return None;
        };
        let mut out = Vec::new();
        for item in items {
            out.push(self.scalar(item, what)?);
        }
        Some(out)
    }

    /// Record a name and report a duplicate.
    pub fn define(&mut self, name: &str, loc: &Loc, section: &'static str) {
        if let Some((_, first, first_section)) = self.names.iter().find(|(n, _, _)| n == name) {
            let msg = format!(
                "duplicate name `{name}` in {section}: already defined in {first_section} on line {}\nhelp: names must be unique across gateway, participants and processes",
                first.line
            );
            let loc = loc.clone();
            self.err(&loc, msg);
        } else {
            self.names.push((name.to_owned(), loc.clone(), section));
        }
    }

    /// Parse the keys shared by every process. Returns `None` for the command
    /// when it is absent.
    pub fn process(
        &mut self,
        name: &str,
        name_loc: &Loc,
        node: &Node,
        kind: ProcKind,
    ) -> (ProcessConfig, Option<String>, Extra) {
        let mut p = default_process(name, kind, String::new(), name_loc.clone());
        let mut extra = Extra::new();
        let mut command = None;
        let mut ready_set = false;
        let section = match kind {
            ProcKind::Gateway => "the gateway".to_owned(),
            ProcKind::Participant => format!("participant `{name}`"),
            ProcKind::Process => format!("process `{name}`"),
        };
        let Some(m) = self.map(node, name) else {
            return (p, None, extra);
        };
        let mut known: Vec<&str> = PROC_KEYS.to_vec();
        match kind {
            ProcKind::Gateway => known.push("port"),
            ProcKind::Participant => known.extend_from_slice(UPSTREAM_PARTICIPANT_KEYS),
            ProcKind::Process => {}
        }
        for (key, k, v) in self.entries(m, &known, &section) {
            let what = format!("{name}.{key}");
            let mut files = Vec::new();
            super::merge::files_in(k, &mut files);
            super::merge::files_in(v, &mut files);
            for f in files.into_iter().filter(|&f| f != name_loc.file) {
                if let Some(file) = self.files.get(f) {
                    p.overridden.push(KeyOrigin {
                        key: key.to_owned(),
                        file: file.clone(),
                    });
                }
            }
            match key {
                "command" => match &v.value {
                    NodeValue::Str(s) if s.trim().is_empty() => {
                        self.err(&v.loc, format!("`{what}`: the command is empty"));
                        command = Some(String::new());
                    }
                    NodeValue::Str(s) => {
                        extra
                            .command_lines
                            .push((what.clone(), v.loc.clone(), s.clone()));
                        command = Some(s.clone());
                    }
                    NodeValue::Null => {
                        self.err(&v.loc, format!("`{what}`: the command is empty"));
                        command = Some(String::new());
                    }
                    NodeValue::Seq(_) => {
                        self.mismatch(v, &what, "a string");
                        if let Some(d) = self.errors.last_mut() {
                            d.message.push_str(
                                "\nhelp: write the program in `command` and its arguments in `args: [...]`",
                            );
                        }
                        command = Some(String::new());
                    }
                    _ => {
                        self.mismatch(v, &what, "a string");
                        command = Some(String::new());
                    }
                },
                "args" => {
                    p.args = self.string_list(v, &what);
                    if let (Some(args), NodeValue::Seq(items)) = (&p.args, &v.value) {
                        for (i, (a, item)) in args.iter().zip(items).enumerate() {
                            extra.command_lines.push((
                                format!("{what}[{i}]"),
                                item.loc.clone(),
                                a.clone(),
                            ));
                        }
                    }
                }
                "env" => p.env = self.env(v, &what),
                "cwd" => p.cwd = self.string(v, &what),
                "env_file" => {
                    if let Some(f) = self.string(v, &what) {
                        p.env_file_vars = self.env_file(&f, v, &what);
                        p.env_file = Some(f);
                    }
                }
                "depends_on" => {
                    let (deps, locs) = self.depends_on(v, &what);
                    p.depends_on = deps;
                    extra.dep_locs = locs;
                }
                "depends_on_gateway" => extra.depends_on_gateway = self.bool(v, &what),
                "ready" => {
                    ready_set = true;
                    p.ready = self.ready(v, &what);
                    if let Some((loc, c)) = exec_target(p.ready.as_ref(), v) {
                        extra.command_lines.push((format!("{what}.exec"), loc, c));
                    }
                }
                "health" => {
                    p.health = self.health(v, &what);
                    let probe = p.health.as_ref().map(|h| &h.probe);
                    if let Some((loc, c)) = exec_target(probe, v) {
                        extra.command_lines.push((format!("{what}.exec"), loc, c));
                    }
                }
                "restart_policy" => {
                    if let Some(r) = self.restart_policy(v, &what) {
                        p.restart_policy = r;
                    }
                }
                "max_restarts" => {
                    p.max_restarts = self
                        .uint(v, &what, u64::from(u32::MAX))
                        .and_then(|n| u32::try_from(n).ok());
                }
                "backoff" => {
                    if let Some(b) = self.backoff(v, &what) {
                        p.backoff = b;
                    }
                }
                "stop_signal" => {
                    if let Some(text) = self.scalar(v, &what) {
                        match parse_signal(&text) {
                            Ok(s) => p.stop_signal = s,
                            Err(e) => self.err(&v.loc, format!("`{what}`: {}", escape(&e))),
                        }
                    }
                }
                "stop_timeout" => {
                    if let Some(d) = self.duration(v, &what) {
                        p.stop_timeout = d;
                    }
                }
                "max_memory" => p.max_memory = self.size(v, &what),
                "scrollback" => {
                    if let Some(n) = self.uint(v, &what, 10_000_000) {
                        p.scrollback = usize::try_from(n).unwrap_or(DEFAULT_SCROLLBACK);
                    }
                }
                "disabled" => p.disabled = self.bool(v, &what).unwrap_or(false),
                "auto_start" => p.auto_start = self.bool(v, &what).unwrap_or(true),
                "one_shot" => p.one_shot = self.bool(v, &what).unwrap_or(false),
                "watch" => p.watch = self.watch(v, &what),
                "profiles" => {
                    if let Some(list) = self.string_list(v, &what) {
                        p.profiles = self.profiles(list, v, &what);
                    }
                }
                "replicas" => {
                    if kind != ProcKind::Process {
                        self.err(
                            &v.loc,
                            format!("`{what}`: only a process under `processes:` can have replicas (a participant or the gateway is one identity)"),
                        );
                    } else if let Some(n) = self.uint(v, &what, MAX_REPLICAS) {
                        if n == 0 {
                            self.err(&v.loc, format!("`{what}`: must be at least 1\nhelp: to keep a process from starting, use `disabled: true` or `auto_start: false`"));
                        } else {
                            extra.replicas = Some((u32::try_from(n).unwrap_or(1), v.loc.clone()));
                        }
                    }
                }
                "tokens" => {
                    if let NodeValue::Seq(items) = &v.value {
                        p.tokens = items.iter().filter_map(Node::scalar_text).collect();
                        self.secret_tokens.extend(p.tokens.iter().cloned());
                    }
                }
                _ => {}
            }
        }
        if kind == ProcKind::Gateway && !ready_set {
            p.ready = Some(probe(ProbeKind::Http {
                url: DEFAULT_GATEWAY_PROBE_URL.to_owned(),
            }));
        }
        if let Some(c) = &command {
            p.command = c.clone();
        }
        (p, command, extra)
    }

    /// `profiles: [a, b]`: names (as process names), duplicates dropped.
    fn profiles(&mut self, list: Vec<String>, n: &Node, what: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let items = match &n.value {
            NodeValue::Seq(items) => items.as_slice(),
            _ => &[],
        };
        for (i, name) in list.into_iter().enumerate() {
            let loc = items.get(i).map_or(&n.loc, |it| &it.loc).clone();
            if let Err(e) = check_name(&name) {
                self.err(&loc, format!("`{what}`: profile {e}"));
            } else if !out.contains(&name) {
                out.push(name);
            }
        }
        out
    }

    /// `watch:` as a list of paths (or one path), or a mapping of
    /// `paths`, `ignore`, `gitignore`, `debounce`, `action`.
    fn watch(&mut self, n: &Node, what: &str) -> Option<WatchSpec> {
        let mut spec = WatchSpec {
            paths: Vec::new(),
            ignore: Vec::new(),
            gitignore: true,
            debounce: DEFAULT_WATCH_DEBOUNCE,
            action: WatchAction::Restart,
        };
        match &n.value {
            NodeValue::Seq(_) => spec.paths = self.watch_paths(n, what)?,
            NodeValue::Str(_) => spec.paths = self.watch_paths(n, what)?,
            NodeValue::Map(m) => {
                let mut paths_set = false;
                let mut ok = true;
                for (key, _k, v) in self.entries(m, WATCH_KEYS, &format!("`{what}`")) {
                    let w = format!("{what}.{key}");
                    match key {
                        "paths" => {
                            paths_set = true;
                            match self.watch_paths(v, &w) {
                                Some(p) => spec.paths = p,
                                None => ok = false,
                            }
                        }
                        "ignore" => match &v.value {
                            NodeValue::Str(s) => spec.ignore = vec![s.clone()],
                            NodeValue::Null => {}
                            _ => match self.string_list(v, &w) {
                                Some(l) => spec.ignore = l,
                                None => ok = false,
                            },
                        },
                        "gitignore" => match self.bool(v, &w) {
                            Some(b) => spec.gitignore = b,
                            None => ok = false,
                        },
                        "debounce" => match self.duration(v, &w) {
                            Some(d) => spec.debounce = d,
                            None => ok = false,
                        },
                        "action" => match self.watch_action(v, &w) {
                            Some(a) => spec.action = a,
                            None => ok = false,
                        },
                        _ => {}
                    }
                }
                if !paths_set {
                    // `watch: { action: SIGHUP }` watches the whole cwd.
                    spec.paths = vec![".".to_owned()];
                }
                if !ok {
                    return None;
                }
            }
            _ => {
                self.mismatch(
                    n,
                    what,
                    "a list of paths or a mapping (`paths`, `ignore`, `gitignore`, `debounce`, `action`)",
                );
                return None;
            }
        }
        Some(spec)
    }

    fn watch_paths(&mut self, n: &Node, what: &str) -> Option<Vec<String>> {
        let paths = match &n.value {
            NodeValue::Str(s) => vec![s.clone()],
            _ => self.string_list(n, what)?,
        };
        if paths.is_empty() {
            self.err(
                &n.loc,
                format!("`{what}`: no path to watch\nhelp: list paths or globs relative to the process's `cwd`, e.g. `[src, \"*.toml\"]`"),
            );
            return None;
        }
        if let Some(p) = paths.iter().find(|p| p.trim().is_empty()) {
            self.err(&n.loc, format!("`{what}`: an empty path (`{}`)", escape(p)));
            return None;
        }
        Some(paths)
    }

    fn watch_action(&mut self, n: &Node, what: &str) -> Option<WatchAction> {
        let text = self.scalar(n, what)?;
        if text.trim() == "restart" {
            return Some(WatchAction::Restart);
        }
        match parse_signal(&text) {
            Ok(signal) => Some(WatchAction::Signal { signal }),
            Err(e) => {
                let mut msg = format!("`{what}`: expected `restart` or a signal; {}", escape(&e));
                if let Some(s) = did_you_mean(text.trim(), &["restart"]) {
                    msg.push_str(&format!("\nhelp: did you mean `{s}`?"));
                }
                self.err(&n.loc, msg);
                None
            }
        }
    }

    fn env(&mut self, n: &Node, what: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        match &n.value {
            NodeValue::Map(m) => {
                for (k, v) in m {
                    let Some(key) = k.scalar_text() else {
                        self.mismatch(k, what, "a variable name");
                        continue;
                    };
                    if key.is_empty() || key.contains('=') || key.contains('\0') {
                        self.err(
                            &k.loc,
                            format!(
                                "`{what}`: `{}` is not a valid environment variable name",
                                escape(&key)
                            ),
                        );
                        continue;
                    }
                    let value = match &v.value {
                        NodeValue::Null => Some(String::new()),
                        _ => self.scalar(v, &format!("{what}.{}", escape(&key))),
                    };
                    if let Some(value) = value {
                        out.push((key, value));
                    }
                }
            }
            NodeValue::Seq(items) => {
                for item in items {
                    let Some(s) = self.string(item, what) else {
                        continue;
                    };
                    match s.split_once('=') {
                        Some((k, v)) if !k.is_empty() => out.push((k.to_owned(), v.to_owned())),
                        _ => self.err(
                            &item.loc,
                            format!("`{what}`: expected `NAME=value`, found `{}`", escape(&s)),
                        ),
                    }
                }
            }
            NodeValue::Null => {}
            _ => self.mismatch(n, what, "a mapping of NAME: value"),
        }
        out
    }

    /// Read an `env_file`. Its values are secrets (it may be any file, say
    /// `~/.aws/credentials`): its errors give `file:line:col` and what is
    /// wrong, never the content of a line.
    fn env_file(&mut self, f: &str, n: &Node, what: &str) -> Vec<(String, String)> {
        let path = self.space_dir.join(f);
        match super::read_env_file(&path) {
            Ok(vars) => vars,
            Err(super::EnvFileError::Unreadable(e)) => {
                self.err(
                    &n.loc,
                    format!(
                        "`{what}`: cannot read {}: {e}",
                        super::report::shown_path(&path)
                    ),
                );
                Vec::new()
            }
            Err(super::EnvFileError::Invalid(errs)) => {
                for (loc, msg) in errs {
                    let d = Diagnostic::new(&path, Some(loc), msg);
                    self.errors.push(d);
                }
                Vec::new()
            }
        }
    }

    fn condition(&mut self, n: &Node, what: &str) -> Option<DependCondition> {
        const CONDS: &[&str] = &["started", "ready", "completed_successfully"];
        let s = self.string(n, what)?;
        match s.as_str() {
            "started" => Some(DependCondition::Started),
            "ready" => Some(DependCondition::Ready),
            "completed_successfully" => Some(DependCondition::CompletedSuccessfully),
            other => {
                let mut msg = format!(
                    "`{what}`: unknown condition `{}`; expected `started`, `ready` or `completed_successfully`",
                    escape(other)
                );
                if let Some(s) = did_you_mean(other, CONDS) {
                    msg.push_str(&format!("\nhelp: did you mean `{s}`?"));
                }
                self.err(&n.loc, msg);
                None
            }
        }
    }

    fn depends_on(&mut self, n: &Node, what: &str) -> (Vec<Dependency>, Vec<Loc>) {
        let mut deps = Vec::new();
        let mut locs = Vec::new();
        let default_cond = |name: &str| {
            if name == GATEWAY_NAME {
                DependCondition::Ready
            } else {
                DependCondition::Started
            }
        };
        match &n.value {
            NodeValue::Seq(items) => {
                for item in items {
                    if let Some(name) = self.string(item, what) {
                        deps.push(Dependency {
                            condition: default_cond(&name),
                            name,
                        });
                        locs.push(item.loc.clone());
                    }
                }
            }
            NodeValue::Map(m) => {
                for (k, v) in m {
                    let Some(name) = self.string(k, what) else {
                        continue;
                    };
                    let condition = match &v.value {
                        NodeValue::Null => Some(default_cond(&name)),
                        _ => self.condition(v, &format!("{what}.{}", escape(&name))),
                    };
                    if let Some(condition) = condition {
                        deps.push(Dependency { name, condition });
                        locs.push(k.loc.clone());
                    }
                }
            }
            NodeValue::Str(s) => {
                deps.push(Dependency {
                    condition: default_cond(s),
                    name: s.clone(),
                });
                locs.push(n.loc.clone());
            }
            NodeValue::Null => {}
            _ => self.mismatch(n, what, "a list of names or a mapping of name: condition"),
        }
        (deps, locs)
    }

    fn restart_policy(&mut self, n: &Node, what: &str) -> Option<RestartPolicy> {
        const POLICIES: &[&str] = &["no", "on-failure", "always"];
        let text = match &n.value {
            // YAML 1.1 reads a bare `no` as false.
            NodeValue::Bool(false) => "no".to_owned(),
            NodeValue::Str(s) => s.clone(),
            _ => {
                self.mismatch(n, what, "`no`, `on-failure` or `always`");
                return None;
            }
        };
        match text.replace('_', "-").as_str() {
            "no" => Some(RestartPolicy::No),
            "on-failure" => Some(RestartPolicy::OnFailure),
            "always" => Some(RestartPolicy::Always),
            other => {
                let mut msg = format!(
                    "`{what}`: unknown restart policy `{}`; expected `no`, `on-failure` or `always`",
                    escape(other)
                );
                if let Some(s) = did_you_mean(other, POLICIES) {
                    msg.push_str(&format!("\nhelp: did you mean `{s}`?"));
                }
                self.err(&n.loc, msg);
                None
            }
        }
    }

    fn backoff(&mut self, n: &Node, what: &str) -> Option<Backoff> {
        let m = self.map(n, what)?;
        let mut b = Backoff::default();
        let mut ok = true;
        for (key, _, v) in self.entries(m, BACKOFF_KEYS, &format!("`{what}`")) {
            let w = format!("{what}.{key}");
            match key {
                "initial" => match self.duration(v, &w) {
                    Some(d) => b.initial = d,
                    None => ok = false,
                },
                "max" => match self.duration(v, &w) {
                    Some(d) => b.max = d,
                    None => ok = false,
                },
                "multiplier" => match &v.value {
                    NodeValue::Int(i) if *i >= 1 && *i <= 1000 => b.multiplier = *i as f64,
                    NodeValue::Float(f) if *f >= 1.0 && *f <= 1000.0 => b.multiplier = *f,
                    _ => {
                        self.err(
                            &v.loc,
                            format!("`{w}`: expected a number from 1 to 1000 (like `2` or `1.5`)"),
                        );
                        ok = false;
                    }
                },
                _ => {}
            }
        }
        if ok && b.initial > b.max {
            self.err(
                &n.loc,
                format!(
                    "`{what}`: `initial` ({} ms) is longer than `max` ({} ms)",
                    b.initial.as_millis(),
                    b.max.as_millis()
                ),
            );
        }
        Some(b)
    }

    fn ready(&mut self, n: &Node, what: &str) -> Option<Probe> {
        match &n.value {
            NodeValue::Null | NodeValue::Bool(false) => return None,
            NodeValue::Str(s) if s == "none" => return None,
            NodeValue::Map(_) => {}
            _ => {
                self.mismatch(
                    n,
                    what,
                    "a probe like `{ http: URL }`, `{ tcp: HOST:PORT }`, `{ exec: COMMAND }` or `{ log: REGEX }`, or `false`",
                );
                return None;
            }
        }
        self.probe_spec(n, what, false).map(|(p, _)| p)
    }

    /// `health:`: a liveness check, `false`/`none` for none.
    fn health(&mut self, n: &Node, what: &str) -> Option<HealthCheck> {
        match &n.value {
            NodeValue::Null | NodeValue::Bool(false) => return None,
            NodeValue::Str(s) if s == "none" => return None,
            NodeValue::Map(_) => {}
            _ => {
                self.mismatch(
                    n,
                    what,
                    "a check like `{ http: URL }`, `{ tcp: HOST:PORT }` or `{ exec: COMMAND }`, or `false`",
                );
                return None;
            }
        }
        self.probe_spec(n, what, true)
            .map(|(probe, action)| HealthCheck { probe, action })
    }

    /// The mapping of a `ready:` probe or (with `health`) a `health:` check.
    fn probe_spec(&mut self, n: &Node, what: &str, health: bool) -> Option<(Probe, HealthAction)> {
        let m = self.map(n, what)?;
        let mut kinds: Vec<(ProbeKind, Loc, &str)> = Vec::new();
        let blank = ProbeKind::Exec {
            command: String::new(),
        };
        let (mut p, keys, targets) = if health {
            (health_probe(blank), HEALTH_KEYS, HEALTH_TARGETS)
        } else {
            (probe(blank), READY_KEYS, READY_TARGETS)
        };
        let mut action = HealthAction::Restart;
        let mut target_seen = false;
        for (key, k, v) in self.entries(m, keys, &format!("`{what}`")) {
            let w = format!("{what}.{key}");
            target_seen |= READY_TARGETS.contains(&key);
            match key {
                "log" if health => {
                    self.err(
                        &k.loc,
                        format!("`{w}`: a health check cannot watch the output\nhelp: `log` matches one line once, which suits `ready`; a health check asks again every `period`: use `http`, `tcp` or `exec`"),
                    );
                }
                "action" => action = self.health_action(v, &w).unwrap_or(action),
                "http" => {
                    if let Some(url) = self.string(v, &w) {
                        if url.starts_with("https://") {
                            self.err(&v.loc, format!("`{w}`: only `http://` URLs can be probed"));
                        } else if !url.starts_with("http://") && !url.starts_with('$') {
                            self.err(
                                &v.loc,
                                format!(
                                    "`{w}`: expected a URL starting with `http://`, found `{}`",
                                    escape(&url)
                                ),
                            );
                        }
                        kinds.push((ProbeKind::Http { url }, k.loc.clone(), "http"));
                    }
                }
                "tcp" => {
                    let parsed = match &v.value {
                        NodeValue::Int(port) => Some(("127.0.0.1".to_owned(), port.to_string())),
                        NodeValue::Str(s) => match s.rsplit_once(':') {
                            Some((h, port)) if !port.is_empty() => Some((
                                if h.is_empty() {
                                    "127.0.0.1".to_owned()
                                } else {
                                    h.to_owned()
                                },
                                port.to_owned(),
                            )),
                            _ => None,
                        },
                        _ => None,
                    };
                    match parsed {
                        Some((host, port)) => {
                            if !port.starts_with('$') && port.parse::<u16>().map_or(true, |p| p == 0) {
                                self.err(&v.loc, format!("`{w}`: `{}` is not a port number (1-65535)", escape(&port)));
                            }
                            kinds.push((ProbeKind::Tcp { host, port }, k.loc.clone(), "tcp"));
                        }
                        None => self.err(
                            &v.loc,
                            format!("`{w}`: expected `HOST:PORT` (like `127.0.0.1:5432`) or a port number"),
                        ),
                    }
                }
                "exec" => {
                    if let Some(command) = self.string(v, &w) {
                        if command.trim().is_empty() {
                            self.err(&v.loc, format!("`{w}`: the command is empty"));
                        }
                        kinds.push((ProbeKind::Exec { command }, k.loc.clone(), "exec"));
                    }
                }
                "log" => {
                    if let Some(regex) = self.string(v, &w) {
                        if let Err(e) = regex::Regex::new(&regex) {
                            let first = e.to_string().lines().last().unwrap_or_default().to_owned();
                            self.err(&v.loc, format!("`{w}`: invalid regex: {}", escape(&first)));
                        }
                        kinds.push((ProbeKind::Log { regex }, k.loc.clone(), "log"));
                    }
                }
                "initial_delay" => {
                    if let Some(d) = self.duration(v, &w) {
                        p.initial_delay = d;
                    }
                }
                "period" | "timeout" => {
                    if let Some(d) = self.duration(v, &w) {
                        if d.is_zero() {
                            self.err(&v.loc, format!("`{w}`: must be longer than 0"));
                        } else if key == "period" {
                            p.period = d;
                        } else {
                            p.timeout = d;
                        }
                    }
                }
                "failure_threshold" => {
                    if let Some(t) = self.uint(v, &w, u64::from(u32::MAX)) {
                        if t == 0 {
                            self.err(&v.loc, format!("`{w}`: must be at least 1"));
                        } else {
                            p.failure_threshold = u32::try_from(t).unwrap_or(u32::MAX);
                            if !health {
                                self.warn(
                                    Some(&k.loc),
                                    format!("`{w}` has no effect: a readiness probe stops once the process is ready\nhelp: to keep checking a ready process, add a `health:` check (it has its own `failure_threshold`)"),
                                );
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        match kinds.len() {
            // A target was written but is invalid: already reported.
            0 if target_seen => None,
            0 => {
                self.err(
                    &n.loc,
                    format!(
                        "`{what}`: the {} has no target\nhelp: add one of {} (e.g. `http: \"http://127.0.0.1:${{PORT}}/health\"`), or write `{}: false`",
                        if health { "check" } else { "probe" },
                        targets.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "),
                        if health { "health" } else { "ready" },
                    ),
                );
                None
            }
            1 => {
                let (kind, _, _) = kinds.remove(0);
                p.kind = kind;
                Some((p, action))
            }
            _ => {
                let (_, loc, second) = &kinds[1];
                let first = kinds[0].2;
                let loc = loc.clone();
                self.err(
                    &loc,
                    format!(
                        "`{what}`: a {} has one target, found both `{first}` and `{second}`",
                        if health { "check" } else { "probe" }
                    ),
                );
                None
            }
        }
    }

    fn health_action(&mut self, n: &Node, what: &str) -> Option<HealthAction> {
        const ACTIONS: &[&str] = &["restart", "none"];
        let s = self.string(n, what)?;
        match s.as_str() {
            "restart" => Some(HealthAction::Restart),
            "none" => Some(HealthAction::None),
            other => {
                let mut msg = format!(
                    "`{what}`: unknown action `{}`; expected `restart` or `none`",
                    escape(other)
                );
                if let Some(s) = did_you_mean(other, ACTIONS) {
                    msg.push_str(&format!("\nhelp: did you mean `{s}`?"));
                }
                self.err(&n.loc, msg);
                None
            }
        }
    }

    /// Parse the whole document. Returns the partially built config; the
    /// caller checks `errors`.
    pub fn space(&mut self, root: &Node) -> Parsed {
        let mut out = Parsed::default();
        let m = match &root.value {
            NodeValue::Map(m) => m.as_slice(),
            NodeValue::Null => {
                self.err(
                    &root.loc,
                    "the file is empty\nhelp: define `participants:` or `processes:` (see `mew init`)",
                );
                return out;
            }
            _ => {
                self.mismatch(root, "space.yaml", "a mapping at the top level");
                return out;
            }
        };
        let entries = self.entries(m, TOP_KEYS, "the top level");
        // The gateway first, so its name is taken before participants'.
        for (key, _k, v) in &entries {
            if *key == "gateway" {
                self.gateway(v, &mut out);
            }
        }
        let gateway_block = entries
            .iter()
            .find(|(key, _, _)| *key == "gateway")
            .map(|(_, k, v)| (k.loc.clone(), *v));
        // Then participants, then processes, whatever their order in the file.
        for section in ["participants", "processes"] {
            for (key, _k, v) in &entries {
                if *key == section {
                    let kind = if section == "participants" {
                        ProcKind::Participant
                    } else {
                        ProcKind::Process
                    };
                    self.group(v, kind, &mut out);
                }
            }
        }
        // A space with participants and no gateway command runs mew's own
        // gateway (unless `gateway: false`).
        let participants = entries
            .iter()
            .find(|(key, _, _)| *key == "participants")
            .map(|(_, k, v)| (k.loc.clone(), *v));
        let has_participants = participants
            .as_ref()
            .is_some_and(|(_, v)| v.as_map().is_some_and(|m| !m.is_empty()));
        let disabled = gateway_block
            .as_ref()
            .is_some_and(|(_, v)| matches!(v.value, NodeValue::Bool(false)));
        out.gateway_disabled = disabled;
        let has_gateway = out.processes.iter().any(|p| p.kind == ProcKind::Gateway);
        if has_participants && !has_gateway && !disabled && gateway_block.is_none() {
            if self.names.iter().any(|(n, _, _)| n == GATEWAY_NAME) {
                let loc = participants.as_ref().map(|(l, _)| l.clone());
                self.warn(
                    loc.as_ref(),
                    format!("mew's own gateway is not started: the name `{GATEWAY_NAME}` is taken by a participant\nhelp: rename that participant, or add a `gateway:` block"),
                );
            } else {
                let loc = participants.map(|(l, _)| l).unwrap_or_default();
                let mut p = default_process(GATEWAY_NAME, ProcKind::Gateway, String::new(), loc);
                native_gateway(&mut p);
                p.restart_policy = RestartPolicy::OnFailure;
                p.ready = Some(probe(ProbeKind::Http {
                    url: DEFAULT_GATEWAY_PROBE_URL.to_owned(),
                }));
                out.processes.insert(0, p);
                self.extras.insert(0, Extra::new());
            }
        }
        for (key, _k, v) in entries {
            match key {
                "space" => {
                    let Some(sm) = self.map(v, "space") else {
                        continue;
                    };
                    for (sk, _, sv) in self.entries(sm, SPACE_KEYS, "`space`") {
                        match sk {
                            "id" => {
                                if let Some(id) = self.scalar(sv, "space.id") {
                                    if let Err(e) = check_space_id(&id) {
                                        self.err(&sv.loc, format!("`space.id`: {e}"));
                                    }
                                    out.id = Some(id);
                                }
                            }
                            "name" => out.name = self.scalar(sv, "space.name"),
                            "description" => out.description = self.scalar(sv, "space.description"),
                            _ => {}
                        }
                    }
                }
                "logs" => {
                    let Some(lm) = self.map(v, "logs") else {
                        continue;
                    };
                    for (lk, _, lv) in self.entries(lm, LOGS_KEYS, "`logs`") {
                        match lk {
                            "dir" => out.log_dir = self.string(lv, "logs.dir"),
                            "rotate_size" => {
                                if let Some(s) = self.size(lv, "logs.rotate_size") {
                                    if s == 0 {
                                        self.err(
                                            &lv.loc,
                                            "`logs.rotate_size`: must be more than 0",
                                        );
                                    }
                                    out.rotate_size = Some(s);
                                }
                            }
                            "keep" => {
                                out.keep = self
                                    .uint(lv, "logs.keep", 1000)
                                    .and_then(|n| u32::try_from(n).ok());
                            }
                            "upstream_paths" => {
                                out.upstream_paths = self.bool(lv, "logs.upstream_paths");
                            }
                            _ => {}
                        }
                    }
                }
                "shutdown_timeout" => out.shutdown_timeout = self.duration(v, "shutdown_timeout"),
                "ui" => {
                    let Some(um) = self.map(v, "ui") else {
                        continue;
                    };
                    for (uk, _, uv) in self.entries(um, UI_KEYS, "`ui`") {
                        if uk == "keys"
                            && let Some(km) = self.map(uv, "ui.keys")
                        {
                            for (ak, av) in km {
                                if let (Some(a), Some(key)) =
                                    (self.scalar(ak, "ui.keys"), self.scalar(av, "ui.keys"))
                                {
                                    out.ui_keys.push((a, key));
                                }
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn gateway(&mut self, v: &Node, out: &mut Parsed) {
        if matches!(v.value, NodeValue::Bool(false)) {
            return;
        }
        let (mut p, command, extra) = self.process(GATEWAY_NAME, &v.loc, v, ProcKind::Gateway);
        if let Some(port) = v.get("port") {
            match &port.value {
                NodeValue::Int(i) if (1..=65535).contains(i) => {
                    out.port = u16::try_from(*i).ok();
                }
                NodeValue::Str(s) if s.parse::<u16>().is_ok_and(|p| p > 0) => {
                    out.port = s.parse().ok();
                }
                _ => self.err(
                    &port.loc,
                    format!(
                        "`gateway.port`: expected a port number (1-65535), found {}",
                        match port.scalar_text() {
                            Some(t) => format!("`{}`", escape(&t)),
                            None => port.value.describe().to_owned(),
                        }
                    ),
                ),
            }
        }
        if command.is_none() {
            // A `gateway:` block without a command: mew's own gateway, with
            // the block's settings (port, restart policy, env …).
            native_gateway(&mut p);
        }
        self.define(GATEWAY_NAME, &v.loc, "gateway");
        out.processes.push(p);
        self.extras.push(extra);
    }

    fn group(&mut self, v: &Node, kind: ProcKind, out: &mut Parsed) {
        let section: &'static str = if kind == ProcKind::Participant {
            "participants"
        } else {
            "processes"
        };
        let Some(m) = self.map(v, section) else {
            return;
        };
        for (nk, nv) in m {
            let Some(name) = nk.scalar_text() else {
                self.mismatch(nk, section, "a name");
                continue;
            };
            if let Err(e) = check_name(&name) {
                self.err(&nk.loc, format!("{section}: {e}"));
                continue;
            }
            if RESERVED_NAMES.contains(&name.as_str()) {
                self.err(
                    &nk.loc,
                    format!("{section}: `{name}` is reserved for mew itself (its own log is `.mew/logs/{name}.log`)\nhelp: choose another name"),
                );
                continue;
            }
            self.define(&name, &nk.loc, section);
            let (p, command, extra) = self.process(&name, &nk.loc, nv, kind);
            if kind == ProcKind::Process {
                if command.is_none() {
                    self.err(
                        &nk.loc,
                        format!("process `{name}` has no `command`\nhelp: add `command: ...`, or move it under `participants:` if it is not a process"),
                    );
                }
                out.processes.push(p);
                self.extras.push(extra);
                continue;
            }
            let ptype = nv.get("type").and_then(Node::as_str);
            let flag =
                |key: &str| matches!(nv.get(key).map(|n| &n.value), Some(NodeValue::Bool(true)));
            let mut p = p;
            // As in the upstream CLI, a participant's command starts with
            // the space only with `auto_start: true`.
            if nv.get("auto_start").is_none() {
                p.auto_start = false;
            }
            if flag("fifo") {
                out.fifos.push(FifoSpec {
                    name: name.clone(),
                    output: nv.get("output_log").and_then(Node::as_str).is_none(),
                });
            }
            if ptype == Some("mcp-bridge") {
                if command.is_some() {
                    self.warn(
                        Some(&nk.loc),
                        format!("participant `{name}` (type mcp-bridge): its `command` is not run; the bridge runs `mcp_server.command`"),
                    );
                }
                if self.mcp_bridge(&name, &nk.loc, nv, &mut p) {
                    p.upstream_log = Some(format!("{name}-bridge.log"));
                    out.processes.push(p);
                    self.extras.push(extra);
                } else {
                    out.participants.push(ParticipantInfo {
                        name,
                        note: "mcp-bridge without `mcp_server.command`".to_owned(),
                    });
                }
            } else if command.is_none() && flag("fifo") {
                if flag("auto_connect") {
                    let output = nv.get("output_log").and_then(Node::as_str);
                    fifo_client(&mut p, &name, output);
                    p.auto_start = true;
                    p.upstream_log = Some(format!("{name}-client.log"));
                    out.processes.push(p);
                    self.extras.push(extra);
                } else {
                    out.participants.push(ParticipantInfo {
                        name: name.clone(),
                        note: format!(
                            "FIFOs .mew/fifos/{name}-in{} (connect with `mew client connect`)",
                            if nv.get("output_log").and_then(Node::as_str).is_some() {
                                String::new()
                            } else {
                                format!(", {name}-out")
                            }
                        ),
                    });
                }
            } else if command.is_none()
                && nv.get("output_log").is_some_and(|o| o.as_str().is_some())
            {
                let when = if flag("auto_connect") {
                    "from the start"
                } else {
                    "from its first HTTP message"
                };
                let file = nv
                    .get("output_log")
                    .and_then(Node::as_str)
                    .unwrap_or_default();
                out.participants.push(ParticipantInfo {
                    name,
                    note: format!("output log {file} ({when})"),
                });
            } else if command.is_none() && flag("auto_connect") {
                self.warn(
                    Some(&nk.loc),
                    format!("participant `{name}` (auto_connect) is not connected: auto_connect needs an `output_log` for mew's gateway to write to, or `fifo: true`"),
                );
                out.participants.push(ParticipantInfo {
                    name,
                    note: "auto_connect without output_log or fifo".to_owned(),
                });
            } else if command.is_none() {
                out.participants.push(ParticipantInfo {
                    name,
                    note: "no command".to_owned(),
                });
            } else {
                if !p.auto_start && nv.get("auto_start").is_none() && !p.disabled {
                    self.warn(
                        Some(&nk.loc),
                        format!("participant `{name}` has a command but no `auto_start: true`: as in the upstream MEW CLI it is not started with the space\nhelp: add `auto_start: true`, or start it when needed with `mew space start {name}`"),
                    );
                }
                p.upstream_log = Some(format!("{name}.log"));
                out.processes.push(p);
                self.extras.push(extra);
            }
        }
    }

    /// A `type: mcp-bridge` participant becomes mew's bridge
    /// (`mew bridge start … -- COMMAND ARGS…`) running `mcp_server`.
    /// `false` when there is no `mcp_server.command` (reported).
    fn mcp_bridge(&mut self, name: &str, loc: &Loc, nv: &Node, p: &mut ProcessConfig) -> bool {
        let Some(server) = nv.get("mcp_server") else {
            self.err(
                loc,
                format!("participant `{name}` (type mcp-bridge) has no `mcp_server`\nhelp: add `mcp_server: {{command: ..., args: [...]}}`: the MCP server the bridge runs"),
            );
            return false;
        };
        let what = format!("{name}.mcp_server");
        let Some(m) = self.map(server, &what) else {
            return false;
        };
        let mut mcp_command = None;
        let mut mcp_args = Vec::new();
        for (key, _k, v) in self.entries(m, MCP_SERVER_KEYS, &format!("`{what}`")) {
            let field = format!("{what}.{key}");
            match key {
                "command" => match self.string(v, &field) {
                    Some(c) if c.trim().is_empty() => {
                        self.err(&v.loc, format!("`{field}`: the command is empty"));
                    }
                    Some(c) => mcp_command = Some(c),
                    None => {}
                },
                "args" => mcp_args = self.string_list(v, &field).unwrap_or_default(),
                "env" => {
                    let env = self.env(v, &field);
                    p.env.extend(env);
                }
                "cwd" => p.cwd = self.string(v, &field),
                _ => {}
            }
        }
        let Some(mcp_command) = mcp_command else {
            if !self
                .errors
                .iter()
                .any(|e| e.message.contains(&format!("`{what}.command`")))
            {
                self.err(
                    &server.loc,
                    format!("`{what}` has no `command`\nhelp: the MCP server to run, e.g. `command: npx` with `args: [...]`"),
                );
            }
            return false;
        };
        let mut args = joined_as(&["bridge", "start"], name);
        if let Some(bc) = nv.get("bridge_config") {
            let what = format!("{name}.bridge_config");
            if let Some(bm) = self.map(bc, &what) {
                for (key, _k, v) in self.entries(bm, BRIDGE_CONFIG_KEYS, &format!("`{what}`")) {
                    let field = format!("{what}.{key}");
                    match key {
                        "init_timeout" => {
                            if let Some(ms) = self.uint(v, &field, 86_400_000) {
                                args.extend(["--init-timeout".to_owned(), ms.to_string()]);
                            }
                        }
                        "reconnect" => {
                            if let Some(b) = self.bool(v, &field) {
                                args.extend(["--reconnect".to_owned(), b.to_string()]);
                            }
                        }
                        "max_reconnects" => {
                            if let Some(n) = self.uint(v, &field, u64::from(u32::MAX)) {
                                args.extend(["--max-reconnects".to_owned(), n.to_string()]);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        args.push("--".to_owned());
        args.push(mcp_command);
        args.extend(mcp_args);
        p.command = mew_exe();
        p.args = Some(args);
        p.native = true;
        true
    }
}

/// `mew <command…>` joined to this space's gateway as participant `name`
/// (its token comes in `MEW_TOKEN_<NAME>`, never on the command line).
fn joined_as(command: &[&str], name: &str) -> Vec<String> {
    let mut args: Vec<String> = command.iter().map(|c| (*c).to_owned()).collect();
    for a in [
        "--gateway",
        "ws://127.0.0.1:${PORT}",
        "--space",
        "${SPACE}",
        "--participant-id",
        name,
    ] {
        args.push(a.to_owned());
    }
    args
}

/// A connected `fifo: true` participant: `mew client connect` reading
/// `.mew/fifos/<name>-in`, writing to its `output_log` or `<name>-out`.
fn fifo_client(p: &mut ProcessConfig, name: &str, output_log: Option<&str>) {
    let mut args = joined_as(&["client", "connect"], name);
    args.push("--fifo-in".to_owned());
    args.push(format!("${{SPACE_DIR}}/.mew/fifos/{name}-in"));
    match output_log {
        Some(log) => {
            args.push("--output-file".to_owned());
            args.push(log.to_owned());
        }
        None => {
            args.push("--fifo-out".to_owned());
            args.push(format!("${{SPACE_DIR}}/.mew/fifos/{name}-out"));
        }
    }
    p.command = mew_exe();
    p.args = Some(args);
    p.native = true;
}

/// This binary, for the processes mew runs itself.
fn mew_exe() -> String {
    std::env::current_exe()
        .ok()
        .map(|e| e.display().to_string())
        .unwrap_or_else(|| "mew".to_owned())
}

/// Where an `exec` target was written in a probe's mapping, and its command.
fn exec_target(probe: Option<&Probe>, n: &Node) -> Option<(Loc, String)> {
    let ProbeKind::Exec { command } = &probe?.kind else {
        return None;
    };
    let loc = n
        .get("exec")
        .map_or_else(|| n.loc.clone(), |e| e.loc.clone());
    Some((loc, command.clone()))
}

/// The command of mew's own gateway: this binary, `gateway start` on the
/// space's port and config. It restarts when it crashes.
fn native_gateway(p: &mut ProcessConfig) {
    p.command = mew_exe();
    p.args = Some(
        [
            "gateway",
            "start",
            "--port",
            "${PORT}",
            "--space-config",
            "${SPACE_CONFIG}",
            "--no-auto-start",
        ]
        .map(str::to_owned)
        .to_vec(),
    );
    p.native = true;
    p.upstream_log = Some("gateway.log".to_owned());
}

/// The document's contents before defaults that need the space dir.
#[derive(Default)]
pub struct Parsed {
    pub id: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub port: Option<u16>,
    pub processes: Vec<ProcessConfig>,
    pub participants: Vec<ParticipantInfo>,
    pub log_dir: Option<String>,
    pub rotate_size: Option<u64>,
    pub keep: Option<u32>,
    pub shutdown_timeout: Option<Duration>,
    pub ui_keys: Vec<(String, String)>,
    /// `gateway: false`: nothing in this space runs a gateway.
    pub gateway_disabled: bool,
    pub fifos: Vec<FifoSpec>,
    pub upstream_paths: Option<bool>,
}
