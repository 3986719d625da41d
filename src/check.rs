//! `mew space check [--json]`: validate the config and print the resolved plan.
//! Nothing is spawned and nothing is written.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde_json::Value;

use crate::cli::SpaceArgs;
use crate::config::{
    self, ConfigError, ConfigSource, Diagnostic, LoadOptions, Probe, ProbeKind, ProcKind,
    ResolveContext, ResolvedProcess, SpaceConfig, escape,
};

pub use crate::config::TOKEN_MASK;

/// The load options for a command's `SpaceArgs`.
pub fn load_options(space: &SpaceArgs) -> LoadOptions {
    LoadOptions::from(space)
}

/// Which keys an override file set, for the plan.
fn overridden(keys: &[crate::config::KeyOrigin]) -> Vec<view::Overridden<'_>> {
    keys.iter()
        .map(|o| view::Overridden {
            key: &o.key,
            file: o.file.display().to_string(),
        })
        .collect()
}

/// The resolved plan: processes in start order, secrets masked.
pub struct Plan {
    pub cfg: SpaceConfig,
    pub order: Vec<usize>,
    pub resolved: Vec<ResolvedProcess>,
    pub warnings: Vec<Diagnostic>,
    /// Some value was shown as [`TOKEN_MASK`] (besides tokens).
    pub masked: bool,
    pub options: PlanOptions,
}

/// What the plan reveals. Whatever it says, tokens (`${TOKEN}`,
/// `MEW_TOKEN_<ID>`, literal `tokens:` values) and every value read from an
/// `env_file` (or a Procfile's `.env`) are shown as `****`: such a file may
/// be any file of the user's (`~/.aws/credentials`).
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanOptions {
    /// Show environment values: those of `env:` and what `${NAME}` takes
    /// from mew's environment. Without it both are `****` (keys shown), so
    /// that checking a config (an untrusted one, in a CI log) never prints
    /// the user's secrets.
    pub show_values: bool,
}

/// Resolve `cfg` for display with the default [`PlanOptions`].
pub fn plan(cfg: SpaceConfig) -> Plan {
    plan_with(cfg, PlanOptions::default())
}

/// Replace every non-empty secret of `secrets` in `s` by [`TOKEN_MASK`].
fn mask_secrets(s: &mut String, secrets: &[String]) {
    for t in secrets.iter().filter(|t| !t.is_empty()) {
        if s.contains(t.as_str()) {
            *s = s.replace(t.as_str(), TOKEN_MASK);
        }
    }
}

/// Resolve `cfg` for display: the configured port, placeholder tokens, and
/// masked values (see [`PlanOptions`]). Masked values are masked before
/// interpolation, so `${NAME}` of an env_file variable is `****` wherever it
/// is used (argv, cwd, probes, env).
pub fn plan_with(cfg: SpaceConfig, options: PlanOptions) -> Plan {
    let tokens: HashMap<String, String> = cfg
        .processes
        .iter()
        .filter(|p| p.kind == ProcKind::Participant)
        .map(|p| (p.name.clone(), TOKEN_MASK.to_owned()))
        .collect();
    let ctx = ResolveContext {
        port: cfg.gateway_port,
        tokens,
    };
    let mut masked = false;
    let mut shown = cfg.clone();
    for p in &mut shown.processes {
        let n = p.env_file_vars.len();
        for (i, (k, v)) in p.env_file_vars.iter_mut().enumerate() {
            // A Procfile's last `PORT` is mew's own (base + 100 per line).
            let mews = cfg.source == ConfigSource::Procfile && i + 1 == n && k == "PORT";
            if !mews && !v.is_empty() {
                *v = TOKEN_MASK.to_owned();
                masked = true;
            }
        }
    }
    let os_env = |k: &str| {
        std::env::var(k).ok().map(|v| {
            if options.show_values || v.is_empty() {
                v
            } else {
                TOKEN_MASK.to_owned()
            }
        })
    };
    let (mut resolved, resolve_warnings) = config::resolve_with_env(&shown, &ctx, &os_env);
    // Literal `tokens:` values written anywhere are secrets too.
    let secrets = &cfg.secret_tokens;
    let mask = |s: &mut String| mask_secrets(s, secrets);
    for r in &mut resolved {
        let from_file = r.config.env_file_vars.len();
        let written = from_file + r.config.env.len();
        for (i, (_, v)) in r.env.iter_mut().enumerate() {
            if (from_file..written).contains(&i) && !options.show_values && !v.is_empty() {
                *v = TOKEN_MASK.to_owned();
                masked = true;
            }
            mask(v);
        }
        r.argv.iter_mut().for_each(mask);
        let mut cwd = r.cwd.display().to_string();
        if secrets
            .iter()
            .any(|t| !t.is_empty() && cwd.contains(t.as_str()))
        {
            mask(&mut cwd);
            r.cwd = cwd.into();
        }
        let probes = r
            .ready
            .iter_mut()
            .chain(r.health.iter_mut().map(|h| &mut h.probe));
        for probe in probes {
            match &mut probe.kind {
                ProbeKind::Http { url } => mask(url),
                ProbeKind::Tcp { host, port } => {
                    mask(host);
                    mask(port);
                }
                ProbeKind::Exec { command } => mask(command),
                ProbeKind::Log { .. } => {}
            }
        }
    }
    let order = config::start_order(&cfg);
    let mut warnings = cfg.warnings.clone();
    warnings.extend(resolve_warnings);
    Plan {
        cfg,
        order,
        resolved,
        warnings,
        masked,
        options,
    }
}

/// Quote an argument for display as a shell word, [`escape`]d: a control
/// character is shown as `\x1b` and so on (even inside quotes).
pub fn shell_quote(s: &str) -> String {
    let s = &*escape(s);
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn probe_target(p: &Probe) -> String {
    match &p.kind {
        ProbeKind::Http { url } => format!("http GET {}", escape(url)),
        ProbeKind::Tcp { host, port } => format!("tcp {}:{}", escape(host), escape(port)),
        ProbeKind::Exec { command } => format!("exec {}", escape(command)),
        ProbeKind::Log { regex } => format!("log /{}/", escape(regex)),
    }
}

/// A path for the plan, [`escape`]d.
fn path(p: &std::path::Path) -> String {
    escape(&p.display().to_string()).into_owned()
}

/// `check --json` views: the documented schema (docs/cli.md), field order
/// included, derived from the structs. Paths are shown with `display()`.
mod view {
    use serde::Serialize;

    use crate::config::{
        Dependency, Diagnostic, HealthAction, ParticipantInfo, Probe, ProbeKind, Replica,
        WatchAction, WatchSpec,
    };

    use super::ms;

    #[derive(Serialize)]
    pub struct Diag<'a> {
        pub file: Option<String>,
        pub line: Option<u32>,
        pub col: Option<u32>,
        pub message: &'a str,
    }

    impl<'a> From<&'a Diagnostic> for Diag<'a> {
        fn from(d: &'a Diagnostic) -> Self {
            Diag {
                file: Some(d.file.display().to_string()),
                line: d.loc.as_ref().map(|l| l.line),
                col: d.loc.as_ref().map(|l| l.col),
                message: &d.message,
            }
        }
    }

    #[derive(Serialize)]
    pub struct ErrorDoc<'a> {
        pub ok: bool,
        pub errors: Vec<Diag<'a>>,
        pub warnings: Vec<Diag<'a>>,
    }

    #[derive(Serialize)]
    pub struct PlanDoc<'a> {
        pub ok: bool,
        pub space: Space<'a>,
        pub gateway_port: u16,
        pub processes: Vec<Process<'a>>,
        pub participants: &'a [ParticipantInfo],
        pub logs: Logs,
        pub shutdown_timeout_ms: u64,
        pub ui_keys: &'a [(String, String)],
        pub warnings: Vec<Diag<'a>>,
    }

    #[derive(Serialize)]
    pub struct Space<'a> {
        pub id: &'a str,
        pub name: &'a str,
        pub description: Option<&'a str>,
        pub dir: String,
        pub config: String,
        pub source: crate::config::ConfigSource,
        /// Every file merged, the config first (then its override files).
        pub sources: Vec<String>,
        /// Top-level keys an override file set.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub overridden: Vec<Overridden<'a>>,
    }

    #[derive(Serialize)]
    pub struct Logs {
        pub dir: String,
        pub rotate_size: u64,
        pub keep: u32,
    }

    #[derive(Serialize)]
    pub struct Process<'a> {
        pub name: &'a str,
        pub kind: &'static str,
        pub argv: &'a [String],
        pub cwd: String,
        pub env: &'a [(String, String)],
        pub depends_on: &'a [Dependency],
        pub ready: Option<ProbeView<'a>>,
        pub health: Option<ProbeView<'a>>,
        pub restart_policy: crate::config::RestartPolicy,
        pub max_restarts: Option<u32>,
        pub backoff: Backoff,
        pub stop_signal: &'static str,
        pub stop_timeout_ms: u64,
        pub max_memory: Option<u64>,
        pub scrollback: usize,
        pub auto_start: bool,
        pub disabled: bool,
        pub one_shot: bool,
        pub line: u32,
        /// The file the process is defined in.
        pub source: String,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        pub overridden: Vec<Overridden<'a>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub watch: Option<Watch<'a>>,
        #[serde(skip_serializing_if = "<[String]>::is_empty")]
        pub profiles: &'a [String],
        #[serde(skip_serializing_if = "Option::is_none")]
        pub replica: Option<&'a Replica>,
    }

    #[derive(Serialize)]
    pub struct Overridden<'a> {
        pub key: &'a str,
        pub file: String,
    }

    #[derive(Serialize)]
    pub struct ProbeView<'a> {
        #[serde(flatten)]
        pub kind: &'a ProbeKind,
        pub initial_delay_ms: u64,
        pub period_ms: u64,
        pub timeout_ms: u64,
        pub failure_threshold: u32,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub action: Option<HealthAction>,
    }

    impl<'a> ProbeView<'a> {
        pub fn new(p: &'a Probe, action: Option<HealthAction>) -> Self {
            ProbeView {
                kind: &p.kind,
                initial_delay_ms: ms(p.initial_delay),
                period_ms: ms(p.period),
                timeout_ms: ms(p.timeout),
                failure_threshold: p.failure_threshold,
                action,
            }
        }
    }

    #[derive(Serialize)]
    pub struct Backoff {
        pub initial_ms: u64,
        pub max_ms: u64,
        pub multiplier: f64,
    }

    #[derive(Serialize)]
    pub struct Watch<'a> {
        pub paths: &'a [String],
        pub ignore: &'a [String],
        pub gitignore: bool,
        pub debounce_ms: u64,
        /// `restart` or the signal's name (`SIGHUP`).
        pub action: &'static str,
    }

    impl<'a> From<&'a WatchSpec> for Watch<'a> {
        fn from(w: &'a WatchSpec) -> Self {
            Watch {
                paths: &w.paths,
                ignore: &w.ignore,
                gitignore: w.gitignore,
                debounce_ms: ms(w.debounce),
                action: match w.action {
                    WatchAction::Restart => "restart",
                    WatchAction::Signal { signal } => signal.name,
                },
            }
        }
    }
}

/// The `--json` document for a config error (schema in docs/cli.md).
pub fn error_json(e: &ConfigError) -> Value {
    let other;
    let doc = match e {
        ConfigError::Invalid {
            errors, warnings, ..
        } => view::ErrorDoc {
            ok: false,
            errors: errors.iter().map(view::Diag::from).collect(),
            warnings: warnings.iter().map(view::Diag::from).collect(),
        },
        e => {
            other = e.to_string();
            view::ErrorDoc {
                ok: false,
                errors: vec![view::Diag {
                    file: None,
                    line: None,
                    col: None,
                    message: &other,
                }],
                warnings: Vec::new(),
            }
        }
    };
    serde_json::to_value(doc).unwrap_or(Value::Null)
}

/// The `--json` document for a valid config (schema in docs/cli.md).
pub fn plan_json(plan: &Plan) -> Value {
    let cfg = &plan.cfg;
    let shown = |p: &std::path::Path| p.display().to_string();
    let processes = plan
        .order
        .iter()
        .map(|&i| {
            let r = &plan.resolved[i];
            let p = &r.config;
            view::Process {
                name: &r.name,
                kind: r.kind.as_str(),
                argv: &r.argv,
                cwd: shown(&r.cwd),
                env: &r.env,
                depends_on: &p.depends_on,
                ready: r
                    .ready
                    .as_ref()
                    .map(|probe| view::ProbeView::new(probe, None)),
                health: r
                    .health
                    .as_ref()
                    .map(|h| view::ProbeView::new(&h.probe, Some(h.action))),
                restart_policy: p.restart_policy,
                max_restarts: p.max_restarts,
                backoff: view::Backoff {
                    initial_ms: ms(p.backoff.initial),
                    max_ms: ms(p.backoff.max),
                    multiplier: p.backoff.multiplier,
                },
                stop_signal: p.stop_signal.name,
                stop_timeout_ms: ms(p.stop_timeout),
                max_memory: p.max_memory,
                scrollback: p.scrollback,
                auto_start: p.auto_start,
                disabled: p.disabled,
                one_shot: p.one_shot,
                line: p.loc.line,
                source: shown(cfg.file_of(&p.loc)),
                overridden: overridden(&p.overridden),
                watch: p.watch.as_ref().map(view::Watch::from),
                profiles: &p.profiles,
                replica: p.replica.as_ref(),
            }
        })
        .collect();
    let doc = view::PlanDoc {
        ok: true,
        space: view::Space {
            id: &cfg.id,
            name: &cfg.name,
            description: cfg.description.as_deref(),
            dir: shown(&cfg.dir),
            config: shown(&cfg.config_path),
            source: cfg.source,
            sources: cfg.sources.iter().map(|s| shown(s)).collect(),
            overridden: overridden(&cfg.overridden),
        },
        gateway_port: cfg.gateway_port,
        processes,
        participants: &cfg.participants,
        logs: view::Logs {
            dir: shown(&cfg.logs.dir),
            rotate_size: cfg.logs.rotate_size,
            keep: cfg.logs.keep,
        },
        shutdown_timeout_ms: ms(cfg.shutdown_timeout),
        ui_keys: &cfg.ui_keys,
        warnings: plan.warnings.iter().map(view::Diag::from).collect(),
    };
    serde_json::to_value(doc).unwrap_or(Value::Null)
}

/// The human-readable plan. Every value from the config (or the
/// environment) is [`escape`]d: this text goes to a terminal.
pub fn plan_text(plan: &Plan) -> String {
    let cfg = &plan.cfg;
    let mut o = String::new();
    let _ = writeln!(o, "space    {} ({})", escape(&cfg.id), escape(&cfg.name));
    if let Some(d) = &cfg.description {
        let _ = writeln!(o, "         {}", escape(d));
    }
    let _ = writeln!(o, "dir      {}", path(&cfg.dir));
    let _ = writeln!(o, "config   {}", path(&cfg.config_path));
    for f in cfg.sources.iter().skip(1) {
        let keys: Vec<&str> = cfg
            .overridden
            .iter()
            .filter(|k| k.file == *f)
            .map(|k| k.key.as_str())
            .collect();
        let sets = if keys.is_empty() {
            String::new()
        } else {
            format!(": {}", keys.join(", "))
        };
        let _ = writeln!(o, "         + {} (override){sets}", path(f));
    }
    if cfg.source == config::ConfigSource::SpaceYaml {
        let _ = writeln!(
            o,
            "port     {} (gateway; --port overrides)",
            cfg.gateway_port
        );
    }
    let _ = writeln!(
        o,
        "logs     {} (rotate at {} bytes, keep {})",
        path(&cfg.logs.dir),
        cfg.logs.rotate_size,
        cfg.logs.keep
    );
    let _ = writeln!(
        o,
        "shutdown {}",
        crate::human::duration_exact(cfg.shutdown_timeout)
    );
    let _ = writeln!(o);
    let _ = writeln!(o, "start order:");
    for (n, &i) in plan.order.iter().enumerate() {
        let r = &plan.resolved[i];
        let p = &r.config;
        let mut flags = Vec::new();
        if p.disabled {
            flags.push("disabled");
        } else if !p.auto_start {
            flags.push("not auto-started");
        }
        if p.one_shot {
            flags.push("one-shot");
        }
        let replica = p
            .replica
            .as_ref()
            .filter(|r| r.count > 1)
            .map(|r| format!("replica {} of {} of {}", r.index, r.count, r.of));
        if let Some(r) = &replica {
            flags.push(r);
        }
        let flags = if flags.is_empty() {
            String::new()
        } else {
            format!(", {}", flags.join(", "))
        };
        let _ = writeln!(o, "  {}. {} ({}{flags})", n + 1, r.name, r.kind.as_str());
        match r.argv.as_slice() {
            [sh, c, script] if sh == "/bin/sh" && c == "-c" && script.trim_end().contains('\n') => {
                let _ = writeln!(o, "       argv     /bin/sh -c SCRIPT");
                for line in script.trim_end().split('\n') {
                    let _ = writeln!(o, "                | {}", escape(line));
                }
            }
            _ => {
                let argv: Vec<String> = r.argv.iter().map(|a| shell_quote(a)).collect();
                let _ = writeln!(o, "       argv     {}", argv.join(" "));
            }
        }
        let _ = writeln!(o, "       cwd      {}", path(&r.cwd));
        if p.loc.file > 0 {
            let _ = writeln!(
                o,
                "       from     {} (defined there)",
                path(cfg.file_of(&p.loc))
            );
        }
        let mut by_file: Vec<(&std::path::Path, Vec<&str>)> = Vec::new();
        for k in &p.overridden {
            match by_file.iter_mut().find(|(f, _)| *f == k.file.as_path()) {
                Some((_, keys)) => keys.push(&k.key),
                None => by_file.push((&k.file, vec![&k.key])),
            }
        }
        for (f, keys) in by_file {
            let _ = writeln!(o, "       from     {}: {}", path(f), keys.join(", "));
        }
        if !p.profiles.is_empty() {
            let _ = writeln!(o, "       profiles {}", p.profiles.join(", "));
        }
        if let Some(w) = &p.watch {
            let paths: Vec<String> = w.paths.iter().map(|x| shell_quote(x)).collect();
            let mut extra = Vec::new();
            if !w.ignore.is_empty() {
                let ignore: Vec<String> = w.ignore.iter().map(|x| shell_quote(x)).collect();
                extra.push(format!("ignore {}", ignore.join(" ")));
            }
            if !w.gitignore {
                extra.push("not .gitignore".to_owned());
            }
            extra.push(format!(
                "debounce {}",
                crate::human::duration_exact(w.debounce)
            ));
            extra.push(match w.action {
                config::WatchAction::Restart => "then restart".to_owned(),
                config::WatchAction::Signal { signal } => format!("then {}", signal.name),
            });
            let _ = writeln!(
                o,
                "       watch    {} ({})",
                paths.join(" "),
                extra.join(", ")
            );
        }
        for (k, v) in &r.env {
            let _ = writeln!(o, "       env      {}={}", escape(k), shell_quote(v));
        }
        if !p.depends_on.is_empty() {
            let deps: Vec<String> = p
                .depends_on
                .iter()
                .map(|d| {
                    let c = serde_json::to_value(d.condition)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    format!("{} {c}", d.name)
                })
                .collect();
            let _ = writeln!(o, "       after    {}", deps.join(", "));
        }
        match &r.ready {
            Some(probe) => {
                let _ = writeln!(
                    o,
                    "       ready    {} (every {}, timeout {}, first after {}, {} failures)",
                    probe_target(probe),
                    crate::human::duration_exact(probe.period),
                    crate::human::duration_exact(probe.timeout),
                    crate::human::duration_exact(probe.initial_delay),
                    probe.failure_threshold
                );
            }
            None => {
                let _ = writeln!(o, "       ready    when started (no probe)");
            }
        }
        if let Some(h) = &r.health {
            let action = serde_json::to_value(h.action)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let _ = writeln!(
                o,
                "       health   {} (every {}, timeout {}, after {} failures: {action})",
                probe_target(&h.probe),
                crate::human::duration_exact(h.probe.period),
                crate::human::duration_exact(h.probe.timeout),
                h.probe.failure_threshold
            );
        }
        let restart = serde_json::to_value(p.restart_policy)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        if restart == "no" {
            let _ = writeln!(o, "       restart  no");
        } else {
            let limit = match p.max_restarts {
                Some(n) => format!(" (at most {n} times)"),
                None => String::new(),
            };
            let _ = writeln!(
                o,
                "       restart  {restart}{limit}, backoff {} x{} up to {}",
                crate::human::duration_exact(p.backoff.initial),
                p.backoff.multiplier,
                crate::human::duration_exact(p.backoff.max)
            );
        }
        let _ = writeln!(
            o,
            "       stop     {}, SIGKILL after {}",
            p.stop_signal.name,
            crate::human::duration_exact(p.stop_timeout)
        );
        if let Some(m) = p.max_memory {
            let _ = writeln!(o, "       memory   restart above {m} bytes");
        }
    }
    if plan.order.is_empty() {
        let _ = writeln!(o, "  (no processes)");
    }
    if !cfg.participants.is_empty() {
        let _ = writeln!(o);
        let _ = writeln!(o, "participants without a process:");
        for p in &cfg.participants {
            let _ = writeln!(o, "  {}: {}", escape(&p.name), escape(&p.note));
        }
    }
    if plan.masked {
        let _ = writeln!(o);
        if plan.options.show_values {
            let _ = writeln!(
                o,
                "note: values read from env_file files are shown as {TOKEN_MASK} (never printed)"
            );
        } else {
            let _ = writeln!(
                o,
                "note: environment values are shown as {TOKEN_MASK}; `mew space check --show-values` shows those of `env:` and mew's environment (never tokens or env_file values)"
            );
        }
    }
    if !plan.warnings.is_empty() {
        let _ = writeln!(o);
        for w in &plan.warnings {
            let _ = write!(o, "{}", config::render_diagnostic("warning", w, cfg));
        }
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "ok: {} process{}, {} warning{}",
        plan.order.len(),
        if plan.order.len() == 1 { "" } else { "es" },
        plan.warnings.len(),
        if plan.warnings.len() == 1 { "" } else { "s" }
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("ws://localhost:8080"), "ws://localhost:8080");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn quoting_escapes_control_characters() {
        assert_eq!(shell_quote("a\x1b[2Ab"), r"'a\x1b[2Ab'");
        assert_eq!(shell_quote("\r"), r"'\r'");
        assert_eq!(shell_quote("x\u{202e}y"), r"'x\u{202e}y'");
    }
}
