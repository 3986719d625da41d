//! `mew space export --format systemd`: one service unit per process, a
//! target for the space, a health-check unit per `health:`, the tokens in
//! owner-only environment files, and an `install.sh`.
//!
//! Decisions (docs/export.md, section systemd, says the same):
//! - User units by default (`~/.config/systemd/user`, the target
//!   `WantedBy=default.target`); `--system` for system units
//!   (`/etc/systemd/system`, `WantedBy=multi-user.target`, `User=` the
//!   exporting user unless root).
//! - Units are named `mew-<space>-<process>.service` and `mew-<space>.target`
//!   (`<space>`: the space id with every character other than a letter, a
//!   digit, `.`, `_` or `-` as `-`). The target `Wants=` every process that
//!   starts with the space; every unit is `PartOf=` the target.
//! - Readiness: `ExecStartPost=` a bash loop that probes every `period`
//!   (each attempt bounded by `timeout`) until the first success. `After=`
//!   waits for `ExecStartPost=`, so a dependent of a `ready` dependency
//!   starts once it is ready. bash (for `/dev/tcp`, no curl needed) and
//!   coreutils' `timeout` must be installed; mew has no probe command.
//! - Tokens: `tokens/<process>.env` (0600) in the output, installed by
//!   `install.sh` to `%E/mew/<space>/` (`~/.config/mew/<space>/`, or
//!   `/etc/mew/<space>/` for system units), which the unit reads with
//!   `EnvironmentFile=%E/mew/<space>/<process>.env`. `${TOKEN}` in a command
//!   line is `${MEW_TOKEN_<ID>}`, which systemd expands in `ExecStart=`.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Export, File, Input, TokenRef};
use crate::config::{
    DependCondition, HealthAction, HealthCheck, ProbeKind, ProcKind, ResolvedProcess, RestartPolicy,
};

/// How a command line refers to a token's variable.
pub(crate) const TOKEN_REF: TokenRef = |var| format!("${{{var}}}");

/// mew's default `scrollback` (config::build's, private there): another
/// value was written in the file, and is noted.
const DEFAULT_SCROLLBACK: usize = 2000;

/// The signals systemd counts as a clean exit of a service by default.
const CLEAN_SIGNALS: [&str; 4] = ["SIGHUP", "SIGINT", "SIGTERM", "SIGPIPE"];

/// One probe attempt as a bash command, on the positional parameters from
/// `$3` on (`$3` is the attempt's timeout; then tcp: host port; http: host
/// port path host-header; exec: command). Every attempt is bounded by
/// coreutils' `timeout`, which kills the attempt's whole process group;
/// `tcp` and `http` use bash's `/dev/tcp` (no curl needed).
fn probe_cmd(kind: &ProbeKind, run_as: Option<&str>) -> Option<String> {
    Some(match kind {
        ProbeKind::Tcp { .. } => {
            r#"timeout $3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$4" "$5" 2>/dev/null"#.to_owned()
        }
        ProbeKind::Http { .. } => concat!(
            r#"timeout $3 bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 1; "#,
            r#"printf "GET %s HTTP/1.0\r\nHost: %s\r\nConnection: close\r\n\r\n" "$2" "$3" >&3; "#,
            r#"read -r _ code _ <&3; case $code in 2??) exit 0;; esac; exit 1' "$4" "$5" "$6" "$7" 2>/dev/null"#
        )
        .to_owned(),
        ProbeKind::Exec { .. } => match run_as {
            Some(_) => r#"timeout $3 runuser -u "$MEW_PROBE_USER" -- /bin/sh -c "$4""#.to_owned(),
            None => r#"timeout $3 /bin/sh -c "$4""#.to_owned(),
        },
        ProbeKind::Log { .. } => return None,
    })
}

/// `ExecStartPost=`'s script, `mew-ready PERIOD DELAY TIMEOUT ARGS…`:
/// probe every PERIOD from DELAY on until the first success.
fn ready_script(probe: &str) -> String {
    format!("sleep $2; until {probe}; do sleep $1; done")
}

/// The health unit's script, `mew-health PERIOD DELAY TIMEOUT ARGS…` with
/// `MEW_HEALTH_UNIT`, `MEW_HEALTH_ACTION`, `MEW_HEALTH_THRESHOLD`,
/// `MEW_HEALTH_SCOPE` in its environment: mew's messages, and a restart
/// through systemctl after THRESHOLD failures in a row.
fn health_script(probe: &str) -> String {
    [
        "t=$MEW_HEALTH_THRESHOLD; n=0; sleep $2",
        "while :; do",
        &format!("if {probe}; then"),
        "if [ $n -ge $t ]; then echo \"healthy again\"; fi; n=0",
        "else n=$((n + 1)); echo \"health check failed ($n of $t)\"",
        "if [ $n -eq $t ]; then",
        "if [ \"$MEW_HEALTH_ACTION\" = restart ]; then",
        "echo \"health check failed $n times: restarting\"",
        "systemctl $MEW_HEALTH_SCOPE --no-block restart \"$MEW_HEALTH_UNIT\"; exec sleep infinity",
        "fi; echo \"unhealthy: health check failed $n times\"",
        "fi; fi; sleep $1; done",
    ]
    .join("; ")
    .replace("then;", "then")
    .replace("do;", "do")
    .replace("else;", "else")
}

/// Where the units are installed and started.
struct Mode {
    system: bool,
    /// `--user` or `--system`, for systemctl.
    scope: &'static str,
    unit_dir: &'static str,
    wanted_by: &'static str,
    /// `User=` of system units (the exporting user; `None` as root).
    user: Option<String>,
}

pub(crate) fn render(input: &Input<'_>) -> Export {
    let mut e = Export::default();
    let cfg = input.cfg;
    let slug = slug(&cfg.id);
    let target = format!("mew-{slug}.target");
    let unit = |name: &str| format!("mew-{slug}-{name}.service");
    let mode = if input.system {
        Mode {
            system: true,
            scope: "--system",
            unit_dir: "/etc/systemd/system",
            wanted_by: "multi-user.target",
            user: current_user(),
        }
    } else {
        Mode {
            system: false,
            scope: "--user",
            unit_dir: "~/.config/systemd/user",
            wanted_by: "default.target",
            user: None,
        }
    };
    let bash = which("bash").unwrap_or_else(|| PathBuf::from("/bin/bash"));
    let path_env = std::env::var("PATH").ok().filter(|p| !p.is_empty());

    // The space as a whole.
    for info in &cfg.participants {
        e.note(
            Some(&info.name),
            "participant",
            format!("not a process ({}): no unit", info.note),
        );
    }
    e.note(
        None,
        "logs",
        "output goes to the journal (`journalctl --user -u UNIT`, or without `--user` for system units), rotated by journald: `logs.dir`, `logs.rotate_size`, `logs.keep` and `logs.upstream_paths` are not used",
    );
    e.note(
        None,
        "terminal",
        "processes run without a terminal (stdin /dev/null, no TERM, no MEW_RUN_ID); of mew's own environment only PATH is kept (Environment=PATH=…)",
    );
    e.note(
        None,
        "shutdown_timeout",
        "each unit's stop is bounded by its own TimeoutStopSec= (stop_timeout); the space's stop as a whole has no bound",
    );
    for f in &cfg.fifos {
        e.note(
            Some(&f.name),
            "fifo",
            format!(
                "the client makes .mew/fifos/{}-in when it starts (0600); it is left in place when the unit stops",
                f.name
            ),
        );
    }

    let by_name = |n: &str| input.processes.iter().find(|p| p.name == n);
    let enabled: Vec<&ResolvedProcess> =
        input.enabled(&mut e, "no unit: a disabled process is never started");
    // Tasks: `one_shot`, or waited for with `completed_successfully`.
    let waited_for: HashSet<&str> = enabled
        .iter()
        .flat_map(|p| p.config.depends_on.iter())
        .filter(|d| d.condition == DependCondition::CompletedSuccessfully)
        .map(|d| d.name.as_str())
        .collect();
    let is_task = |p: &ResolvedProcess| p.config.one_shot || waited_for.contains(p.name.as_str());
    let has_wait = |p: &ResolvedProcess| {
        !is_task(p)
            && p.ready
                .as_ref()
                .is_some_and(|r| !matches!(r.kind, ProbeKind::Log { .. }))
    };
    let all_refs: Vec<(String, String)> = input
        .tokens
        .iter()
        .map(|(var, value)| (TOKEN_REF(var), value.clone()))
        .collect();

    let mut units = Vec::new();
    let mut token_files = Vec::new();
    for p in &enabled {
        let name = p.name.as_str();
        let c = &p.config;
        let own_var = crate::config::token_env_name(name);
        let own_ref: Vec<String> = input
            .tokens
            .iter()
            .filter(|(v, _)| *v == own_var)
            .map(|(v, _)| TOKEN_REF(v))
            .collect();
        let task = is_task(p);
        let mut u = String::new();
        let _ = writeln!(
            u,
            "# Generated by `mew space export --format systemd` from {}.",
            oneline(&cfg.config_path.display().to_string())
        );
        let _ = writeln!(
            u,
            "# {} `{name}` of the space `{}`; do not edit: export again.",
            c.kind.as_str(),
            oneline(&cfg.id)
        );
        u.push_str("[Unit]\n");
        let _ = writeln!(
            u,
            "Description={}",
            spec(&oneline(&format!("mew {}: {name}", cfg.id)))
        );
        let _ = writeln!(u, "PartOf={target}");

        // Dependencies.
        let mut requires = Vec::new();
        for d in &c.depends_on {
            let Some(dep) = by_name(&d.name) else {
                continue;
            };
            if dep.config.disabled {
                e.note(
                    Some(name),
                    &format!("depends_on.{}", d.name),
                    "dropped: the dependency is disabled and has no unit",
                );
                continue;
            }
            if !dep.config.auto_start && c.auto_start {
                e.note(
                    Some(name),
                    &format!("depends_on.{}", d.name),
                    format!(
                        "Requires= starts `{}` (auto_start: false) with its dependent; mew would wait until it is started by hand",
                        d.name
                    ),
                );
            }
            match d.condition {
                DependCondition::CompletedSuccessfully if !dep.config.one_shot => {
                    e.note(
                        Some(&d.name),
                        "one_shot",
                        format!(
                            "Type=oneshot (a task): `{name}` waits for it with completed_successfully"
                        ),
                    );
                }
                DependCondition::Ready | DependCondition::Started if is_task(dep) => {
                    e.note(
                        Some(name),
                        &format!("depends_on.{}", d.name),
                        format!(
                            "`{}` is a task (Type=oneshot): After= waits until it has finished",
                            d.name
                        ),
                    );
                }
                DependCondition::Started if has_wait(dep) => {
                    e.note(
                        Some(name),
                        &format!("depends_on.{}", d.name),
                        format!(
                            "`started` waits for `{}` to be ready: After= orders on its whole start, readiness wait included",
                            d.name
                        ),
                    );
                }
                _ => {}
            }
            requires.push(unit(&d.name));
        }
        if !requires.is_empty() {
            let _ = writeln!(u, "Requires={}", requires.join(" "));
            let _ = writeln!(u, "After={}", requires.join(" "));
        }
        let health = p.health.as_ref();
        let health_unit = format!("mew-{slug}-{name}-health.service");
        if health.is_some() {
            let _ = writeln!(u, "Wants={health_unit}");
        }
        let restart = match (c.restart_policy, task) {
            (RestartPolicy::No, _) => "no",
            (RestartPolicy::OnFailure, _) => "on-failure",
            (RestartPolicy::Always, false) => "always",
            (RestartPolicy::Always, true) => {
                if !c.one_shot {
                    e.note(
                        Some(name),
                        "restart_policy",
                        "on-failure instead of always: a oneshot unit cannot restart after a success",
                    );
                }
                "on-failure"
            }
        };
        if let Some(n) = c.max_restarts {
            let _ = writeln!(u, "StartLimitIntervalSec=infinity");
            let _ = writeln!(u, "StartLimitBurst={}", u64::from(n) + 1);
            e.note(
                Some(name),
                "max_restarts",
                format!(
                    "StartLimitBurst={} (the first start and {n} restarts) over StartLimitIntervalSec=infinity: counted until `systemctl reset-failed`, not since the last start by hand",
                    u64::from(n) + 1
                ),
            );
        }

        u.push_str("\n[Service]\n");
        if task {
            u.push_str("Type=oneshot\nRemainAfterExit=yes\n");
        } else {
            u.push_str("Type=exec\n");
        }
        match path_value(&p.cwd.display().to_string()) {
            Some(v) => {
                let _ = writeln!(u, "WorkingDirectory={v}");
            }
            None => e.note(
                Some(name),
                "cwd",
                "dropped: the path has a control character a unit file cannot hold",
            ),
        }

        // Environment: PATH, the env_file by path, `env` and mew's own;
        // entries that use the token go to the token file.
        let mut env_lines = String::new();
        if let Some(path) = &path_env {
            let _ = writeln!(env_lines, "Environment={}", env_assign("PATH", path));
        }
        let from_file = c
            .env_file_vars
            .iter()
            .filter(|(k, _)| !k.starts_with("MEW_TOKEN_"))
            .count()
            .min(p.env.len());
        let file_keys: HashSet<&str> = c.env_file_vars.iter().map(|(k, _)| k.as_str()).collect();
        let mut secret_env: Vec<(String, String)> = Vec::new();
        for (k, v) in &p.env[from_file..] {
            if all_refs.iter().any(|(r, _)| v.contains(r.as_str())) {
                let mut value = v.clone();
                for (r, t) in &all_refs {
                    value = value.replace(r.as_str(), t);
                }
                secret_env.push((k.clone(), value));
                continue;
            }
            if file_keys.contains(k.as_str()) {
                e.note(
                    Some(name),
                    &format!("env.{k}"),
                    "also set by env_file: systemd's EnvironmentFile= wins over Environment=, so the env_file's value is used",
                );
            }
            let _ = writeln!(env_lines, "Environment={}", env_assign(k, v));
        }
        u.push_str(&env_lines);
        if let Some(f) = &c.env_file {
            match path_value(&cfg.dir.join(f).display().to_string()) {
                Some(v) => {
                    let _ = writeln!(u, "EnvironmentFile={v}");
                }
                None => e.note(
                    Some(name),
                    "env_file",
                    "dropped: the path has a control character a unit file cannot hold",
                ),
            }
        }
        let mut tokens_here: Vec<(String, String)> = Vec::new();
        if p.kind == ProcKind::Participant {
            tokens_here.extend(input.tokens.iter().filter(|(v, _)| *v == own_var).cloned());
        } else if p.kind == ProcKind::Gateway && c.native {
            // mew's gateway authenticates every participant: their tokens
            // as the participants get them (its `$MEW_TOKEN_<ID>` wins
            // over `.mew/tokens/`).
            tokens_here.extend(input.tokens.iter().cloned());
        }
        tokens_here.extend(secret_env);
        if !tokens_here.is_empty() {
            let _ = writeln!(u, "EnvironmentFile=%E/mew/{slug}/{name}.env");
            let mut body = String::from(
                "# The tokens of one unit: installed by install.sh, owner-only (0600). Never commit it.\n",
            );
            for (k, v) in &tokens_here {
                let _ = writeln!(body, "{k}={}", env_file_value(v));
            }
            token_files.push(File {
                path: PathBuf::from("tokens").join(format!("{name}.env")),
                contents: body,
                mode: 0o600,
            });
        }
        if let Some(user) = &mode.user {
            let _ = writeln!(u, "User={user}");
        }

        // The command.
        let mut argv = p.argv.clone();
        if let Some(first) = argv.first_mut() {
            if let Some(resolved) = resolve_program(first, &p.cwd) {
                *first = resolved;
            } else if !first.contains('/') {
                e.note(
                    Some(name),
                    "command",
                    format!(
                        "`{}` is not in PATH here: left for systemd to find in its own search path",
                        oneline(first)
                    ),
                );
            }
        }
        let _ = writeln!(u, "ExecStart={}", exec_line(&argv, &own_ref));

        // Readiness.
        if let Some(r) = &p.ready {
            if task {
                e.note(
                    Some(name),
                    "ready",
                    "not used: a task (Type=oneshot) is ready when it has finished",
                );
            } else if let (Some(cmd), Some(args)) =
                (probe_cmd(&r.kind, None), probe_args(&r.kind, r.timeout))
            {
                let mut words = vec![
                    bash.display().to_string(),
                    "-c".to_owned(),
                    ready_script(&cmd),
                    "mew-ready".to_owned(),
                    secs(r.period),
                    secs(r.initial_delay),
                ];
                words.extend(args);
                let _ = writeln!(u, "ExecStartPost={}", exec_line(&words, &own_ref));
            } else {
                e.note(
                    Some(name),
                    "ready.log",
                    "not translated (a unit cannot watch its own output): ready as soon as it has started",
                );
            }
        }
        if task || has_wait(p) {
            u.push_str("TimeoutStartSec=infinity\n");
        }

        // Restarts.
        let _ = writeln!(u, "Restart={restart}");
        if restart != "no" {
            let b = &c.backoff;
            let _ = writeln!(u, "RestartSec={}", span(b.initial));
            if (b.multiplier - 1.0).abs() > f64::EPSILON && b.max > b.initial {
                let ratio = b.max.as_secs_f64() / b.initial.as_secs_f64().max(0.001);
                let steps = (ratio.ln() / b.multiplier.ln()).ceil().max(1.0);
                let _ = writeln!(
                    u,
                    "# mew's backoff (x{} up to {}) needs systemd 254 or later:",
                    b.multiplier,
                    span(b.max)
                );
                let _ = writeln!(u, "#RestartSteps={steps}");
                let _ = writeln!(u, "#RestartMaxDelaySec={}", span(b.max));
                e.note(
                    Some(name),
                    "backoff",
                    format!(
                        "constant RestartSec={}: the multiplier and max need RestartSteps=/RestartMaxDelaySec= (systemd 254), written commented in the unit",
                        span(b.initial)
                    ),
                );
            }
            if restart == "on-failure" {
                let mut sigs: Vec<&str> = CLEAN_SIGNALS.to_vec();
                if !sigs.contains(&c.stop_signal.name) {
                    sigs.push(c.stop_signal.name);
                }
                // mew restarts after a death by any signal.
                let _ = writeln!(u, "RestartForceExitStatus={}", sigs.join(" "));
            }
        }

        // Stop and memory.
        u.push_str("KillMode=control-group\n");
        let _ = writeln!(u, "KillSignal={}", c.stop_signal.name);
        if !CLEAN_SIGNALS.contains(&c.stop_signal.name) {
            let _ = writeln!(u, "SuccessExitStatus={}", c.stop_signal.name);
        }
        let _ = writeln!(u, "TimeoutStopSec={}", span(c.stop_timeout));
        if let Some(m) = c.max_memory {
            let _ = writeln!(u, "MemoryMax={m}");
            if c.restart_policy == RestartPolicy::No {
                e.note(
                    Some(name),
                    "max_memory",
                    "MemoryMax=: the kernel kills the unit above it, and Restart=no leaves it failed (mew restarts it)",
                );
            }
        }
        if c.scrollback != DEFAULT_SCROLLBACK {
            e.note(
                Some(name),
                "scrollback",
                "not used: the journal keeps the output (`journalctl -u UNIT`)",
            );
        }
        u.push_str("StandardInput=null\nStandardOutput=journal\nStandardError=journal\n");
        let _ = writeln!(u, "SyslogIdentifier={name}");

        if !c.auto_start {
            e.note(
                Some(name),
                "auto_start",
                format!(
                    "not wanted by {target}: start it by hand, `systemctl {} start {}`",
                    mode.scope,
                    unit(name)
                ),
            );
        }
        units.push(File {
            path: PathBuf::from(unit(name)),
            contents: u,
            mode: 0o644,
        });

        if let Some(h) = health {
            units.push(health_file(
                input,
                p,
                h,
                &HealthUnit {
                    target: &target,
                    unit: &unit(name),
                    name: &health_unit,
                    bash: &bash,
                    env: &env_lines,
                    own_ref: &own_ref,
                    tokens_file: !tokens_here.is_empty(),
                    slug: &slug,
                    mode: &mode,
                },
            ));
        }
    }

    // The target.
    let wanted: Vec<String> = enabled
        .iter()
        .filter(|p| p.config.auto_start)
        .map(|p| unit(&p.name))
        .collect();
    let mut t = String::new();
    let _ = writeln!(
        t,
        "# Generated by `mew space export --format systemd` from {}.",
        oneline(&cfg.config_path.display().to_string())
    );
    t.push_str("# The space: start and stop everything with it.\n[Unit]\n");
    let _ = writeln!(
        t,
        "Description={}",
        spec(&oneline(&format!("mew space {} ({})", cfg.id, cfg.name)))
    );
    if !wanted.is_empty() {
        let _ = writeln!(t, "Wants={}", wanted.join(" "));
    }
    let _ = writeln!(t, "\n[Install]\nWantedBy={}", mode.wanted_by);
    e.files.push(File {
        path: PathBuf::from(&target),
        contents: t,
        mode: 0o644,
    });
    e.files.extend(units);
    e.files.extend(token_files);
    e.files.push(File {
        path: PathBuf::from("install.sh"),
        contents: install_sh(&slug, &target, &mode),
        mode: 0o700,
    });
    e
}

struct HealthUnit<'a> {
    target: &'a str,
    unit: &'a str,
    name: &'a str,
    bash: &'a Path,
    env: &'a str,
    own_ref: &'a [String],
    tokens_file: bool,
    slug: &'a str,
    mode: &'a Mode,
}

/// `mew-<space>-<process>-health.service`: checks from readiness on
/// (`After=` the process, whose start includes its readiness wait), bound to
/// the process (stops and restarts with it); restarts it with systemctl.
fn health_file(
    input: &Input<'_>,
    p: &ResolvedProcess,
    h: &HealthCheck,
    hu: &HealthUnit<'_>,
) -> File {
    let cfg = input.cfg;
    let mut u = String::new();
    let _ = writeln!(
        u,
        "# Generated by `mew space export --format systemd` from {}.",
        oneline(&cfg.config_path.display().to_string())
    );
    let _ = writeln!(u, "# The health check of `{}`.", p.name);
    u.push_str("[Unit]\n");
    let _ = writeln!(
        u,
        "Description={}",
        spec(&oneline(&format!(
            "mew {}: {} health check",
            cfg.id, p.name
        )))
    );
    let _ = writeln!(
        u,
        "BindsTo={}\nAfter={}\nPartOf={}",
        hu.unit, hu.unit, hu.target
    );
    u.push_str("\n[Service]\nType=exec\n");
    if let Some(v) = path_value(&p.cwd.display().to_string()) {
        let _ = writeln!(u, "WorkingDirectory={v}");
    }
    u.push_str(hu.env);
    if let Some(f) = &p.config.env_file
        && let Some(v) = path_value(&cfg.dir.join(f).display().to_string())
    {
        let _ = writeln!(u, "EnvironmentFile={v}");
    }
    if hu.tokens_file {
        let _ = writeln!(u, "EnvironmentFile=%E/mew/{}/{}.env", hu.slug, p.name);
    }
    // System units: the check runs as root to restart the unit, its
    // `exec` command as the unit's user.
    let run_as = hu.mode.user.as_deref();
    if let Some(user) = run_as {
        let _ = writeln!(u, "Environment={}", env_assign("MEW_PROBE_USER", user));
    }
    let action = match h.action {
        HealthAction::Restart => "restart",
        HealthAction::None => "none",
    };
    let _ = writeln!(u, "Environment={}", env_assign("MEW_HEALTH_UNIT", hu.unit));
    let _ = writeln!(u, "Environment={}", env_assign("MEW_HEALTH_ACTION", action));
    let _ = writeln!(
        u,
        "Environment={}",
        env_assign(
            "MEW_HEALTH_THRESHOLD",
            &h.probe.failure_threshold.max(1).to_string()
        )
    );
    let _ = writeln!(
        u,
        "Environment={}",
        env_assign("MEW_HEALTH_SCOPE", hu.mode.scope)
    );
    let mut words = vec![
        hu.bash.display().to_string(),
        "-c".to_owned(),
        health_script(&probe_cmd(&h.probe.kind, run_as).unwrap_or_default()),
        "mew-health".to_owned(),
        secs(h.probe.period),
        secs(h.probe.initial_delay),
    ];
    words.extend(probe_args(&h.probe.kind, h.probe.timeout).unwrap_or_default());
    let _ = writeln!(u, "ExecStart={}", exec_line(&words, hu.own_ref));
    u.push_str("Restart=on-failure\nRestartSec=1s\nKillMode=control-group\n");
    u.push_str("StandardInput=null\nStandardOutput=journal\nStandardError=journal\n");
    let _ = writeln!(u, "SyslogIdentifier={}", p.name);
    File {
        path: PathBuf::from(hu.name),
        contents: u,
        mode: 0o644,
    }
}

/// The parameters `$3`… of [`probe_cmd`]; `None` for a `log` probe.
fn probe_args(kind: &ProbeKind, timeout: Duration) -> Option<Vec<String>> {
    let t = secs(timeout);
    Some(match kind {
        ProbeKind::Tcp { host, port } => vec![t, host.clone(), port.clone()],
        ProbeKind::Http { url } => {
            let (host, port, path, authority) = split_url(url);
            vec![t, host, port, path, authority]
        }
        ProbeKind::Exec { command } => vec![t, command.clone()],
        ProbeKind::Log { .. } => return None,
    })
}

/// `http://host:port/path?q` → (host, port, path, host header).
fn split_url(url: &str) -> (String, String, String, String) {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("HTTP://"))
        .unwrap_or(url);
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        match v6.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':').unwrap_or("")),
            None => (v6, ""),
        }
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, p),
            None => (hostport, ""),
        }
    };
    let port = if port.is_empty() { "80" } else { port };
    (host.to_owned(), port.to_owned(), path, hostport.to_owned())
}

/// The space id as part of a unit name.
fn slug(id: &str) -> String {
    let mut s = String::new();
    for c in id.chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '-'
        };
        if !(c == '-' && s.ends_with('-')) {
            s.push(c);
        }
    }
    let s: String = s.trim_matches(['-', '.']).chars().take(64).collect();
    let s = s.trim_end_matches(['-', '.']).to_owned();
    if s.is_empty() { "space".to_owned() } else { s }
}

/// The exporting user's name, for `User=` (`None` as root).
fn current_user() -> Option<String> {
    let uid = nix::unistd::Uid::current();
    if uid.is_root() {
        return None;
    }
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map(|u| u.name)
        .or_else(|| Some(uid.to_string()))
}

/// An executable named `name` in PATH.
fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .filter(|d| d.is_absolute())
        .map(|d| d.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// `ExecStart=` needs an absolute program: a relative path is relative to
/// the process's cwd (as when mew spawns it), a bare name is looked up in
/// PATH now. `None`: a bare name not found.
fn resolve_program(program: &str, cwd: &Path) -> Option<String> {
    if program.starts_with('/') {
        Some(program.to_owned())
    } else if program.contains('/') {
        Some(cwd.join(program).display().to_string())
    } else {
        which(program).map(|p| p.display().to_string())
    }
}

/// A duration for `sleep`/`timeout`: seconds, with a fraction when needed.
fn secs(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}", ms / 1000)
    } else {
        format!("{}.{:03}", ms / 1000, ms % 1000)
            .trim_end_matches('0')
            .to_owned()
    }
}

/// A duration for a unit setting (`500ms`, `30s`).
fn span(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Text for a comment or a description: on one line, control characters as spaces.
fn oneline(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `%` escaped for a setting that expands specifiers.
fn spec(s: &str) -> String {
    s.replace('%', "%%")
}

/// A path setting (`WorkingDirectory=`, `EnvironmentFile=`): taken as is
/// up to the end of the line, specifiers expanded. `None`: it cannot be
/// written (a control character).
fn path_value(p: &str) -> Option<String> {
    if p.chars().any(char::is_control) {
        None
    } else {
        Some(spec(p))
    }
}

/// C-style escapes of a quoted word (systemd.syntax(7), "Quoting").
fn c_escape(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '"' => out.push_str("\\\""),
        '\n' => out.push_str("\\n"),
        '\t' => out.push_str("\\t"),
        '\r' => out.push_str("\\r"),
        c if c.is_control() => {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
        c => out.push(c),
    }
}

/// `Environment="NAME=value"`: quoted, escaped, `%` doubled (no `$`
/// expansion happens in `Environment=`).
fn env_assign(name: &str, value: &str) -> String {
    let mut out = String::from("\"");
    for c in name
        .chars()
        .chain(std::iter::once('='))
        .chain(value.chars())
    {
        if c == '%' {
            out.push_str("%%");
        } else {
            c_escape(&mut out, c);
        }
    }
    out.push('"');
    out
}

/// One word of an `ExecStart=` line: bare when it is plain, else quoted;
/// `%` and `$` doubled except in the token references `refs`, which
/// systemd expands from the unit's environment.
fn exec_word(s: &str, refs: &[String], first: bool) -> String {
    if s == ";" {
        // A lone `;` separates commands, quoted or not.
        return "\\;".to_owned();
    }
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._+,:=@-".contains(c))
        && !(first && s.starts_with(['-', '@', '+', '!', ':']));
    if plain {
        return s.to_owned();
    }
    let mut out = String::from("\"");
    let mut rest = s;
    'outer: while let Some(c) = rest.chars().next() {
        for r in refs {
            if let Some(after) = rest.strip_prefix(r.as_str()) {
                out.push_str(r);
                rest = after;
                continue 'outer;
            }
        }
        match c {
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => c_escape(&mut out, c),
        }
        rest = &rest[c.len_utf8()..];
    }
    out.push('"');
    out
}

/// A whole command line.
fn exec_line(argv: &[String], refs: &[String]) -> String {
    argv.iter()
        .enumerate()
        .map(|(i, a)| exec_word(a, refs, i == 0))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A value of an environment file (read by systemd's `EnvironmentFile=`):
/// double-quoted, `\`, `"`, `$` and `` ` `` escaped.
fn env_file_value(v: &str) -> String {
    let mut out = String::from("\"");
    for c in v.chars() {
        if matches!(c, '\\' | '"' | '$' | '`') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// `install.sh`: the token files to `%E/mew/<space>/` (0600), the units
/// linked into the unit directory, the target enabled.
fn install_sh(slug: &str, target: &str, mode: &Mode) -> String {
    let (tokens_dir, sc) = if mode.system {
        ("/etc/mew/".to_owned() + slug, "--system")
    } else {
        (
            format!("${{XDG_CONFIG_HOME:-$HOME/.config}}/mew/{slug}"),
            "--user",
        )
    };
    let mut s = String::new();
    s.push_str("#!/bin/sh\n");
    s.push_str("# Generated by `mew space export --format systemd`: install the units of\n");
    let _ = writeln!(
        s,
        "# this directory ({}), then start the space with: systemctl {sc} start {target}",
        if mode.system {
            "system units: run it as root"
        } else {
            "user units"
        }
    );
    s.push_str("set -eu\n");
    s.push_str("here=$(cd \"$(dirname \"$0\")\" && pwd)\n");
    let _ = writeln!(s, "tokens=\"{tokens_dir}\"");
    s.push_str("umask 077\n");
    s.push_str("if [ -d \"$here/tokens\" ]; then\n");
    s.push_str("  mkdir -p \"$tokens\"\n  chmod 700 \"$tokens\"\n");
    s.push_str("  for f in \"$here\"/tokens/*.env; do\n");
    s.push_str("    [ -e \"$f\" ] || continue\n");
    s.push_str("    install -m 0600 \"$f\" \"$tokens/\"\n");
    s.push_str("  done\nfi\n");
    let _ = writeln!(
        s,
        "for u in \"$here\"/*.service \"$here\"/*.target; do\n  [ -e \"$u\" ] || continue\n  systemctl {sc} link \"$u\"\ndone"
    );
    let _ = writeln!(s, "systemctl {sc} daemon-reload");
    let _ = writeln!(s, "systemctl {sc} enable {target}");
    let _ = writeln!(
        s,
        "echo \"installed (units linked into {}); start: systemctl {sc} start {target}\"",
        mode.unit_dir
    );
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn exec_words_are_quoted_and_escaped() {
        let none: Vec<String> = Vec::new();
        assert_eq!(exec_word("/bin/sleep", &none, false), "/bin/sleep");
        assert_eq!(exec_word("100000", &none, false), "100000");
        assert_eq!(exec_word("", &none, false), "\"\"");
        assert_eq!(exec_word(";", &none, false), "\\;");
        assert_eq!(exec_word("-x", &none, false), "-x");
        assert_eq!(exec_word("-x", &none, true), "\"-x\"");
        assert_eq!(exec_word("a b", &none, false), "\"a b\"");
        assert_eq!(exec_word("50%", &none, false), "\"50%%\"");
        assert_eq!(exec_word("$HOME ${X}", &none, false), "\"$$HOME $${X}\"");
        assert_eq!(
            exec_word("say \"hi\"\\", &none, false),
            "\"say \\\"hi\\\"\\\\\""
        );
        assert_eq!(exec_word("l1\nl2\tx", &none, false), "\"l1\\nl2\\tx\"");
        assert_eq!(exec_word("bell\u{7}", &none, false), "\"bell\\x07\"");
        assert_eq!(exec_word("héllo", &none, false), "\"héllo\"");
    }

    #[test]
    fn token_references_are_kept_for_systemd() {
        let refs = vec!["${MEW_TOKEN_A}".to_owned()];
        assert_eq!(
            exec_word("--token=${MEW_TOKEN_A} $X", &refs, false),
            "\"--token=${MEW_TOKEN_A} $$X\""
        );
        // Another variable spelled the same way is literal.
        assert_eq!(
            exec_word("${MEW_TOKEN_B}", &refs, false),
            "\"$${MEW_TOKEN_B}\""
        );
    }

    #[test]
    fn environment_assignments() {
        assert_eq!(env_assign("G", "hello world"), "\"G=hello world\"");
        assert_eq!(env_assign("P", "50% $x"), "\"P=50%% $x\"");
        assert_eq!(env_assign("Q", "a\"b\\c\nd"), "\"Q=a\\\"b\\\\c\\nd\"");
    }

    #[test]
    fn environment_file_values() {
        assert_eq!(env_file_value("abc-_9"), "\"abc-_9\"");
        assert_eq!(env_file_value("a$b`c\"d\\e"), "\"a\\$b\\`c\\\"d\\\\e\"");
    }

    #[test]
    fn slugs_and_durations() {
        assert_eq!(slug("every-key"), "every-key");
        assert_eq!(slug("My Space!"), "My-Space");
        assert_eq!(slug("{{SPACE_NAME}}"), "SPACE_NAME");
        assert_eq!(slug("///"), "space");
        assert_eq!(slug(&"x".repeat(300)).len(), 64);
        assert_eq!(secs(Duration::from_millis(200)), "0.2");
        assert_eq!(secs(Duration::from_millis(1500)), "1.5");
        assert_eq!(secs(Duration::from_secs(2)), "2");
        assert_eq!(span(Duration::from_millis(500)), "500ms");
        assert_eq!(span(Duration::from_secs(60)), "60s");
    }

    #[test]
    fn urls_split_for_the_http_probe() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/health"),
            (
                "127.0.0.1".into(),
                "8080".into(),
                "/health".into(),
                "127.0.0.1:8080".into()
            )
        );
        assert_eq!(
            split_url("http://localhost"),
            (
                "localhost".into(),
                "80".into(),
                "/".into(),
                "localhost".into()
            )
        );
        assert_eq!(
            split_url("http://[::1]:9/x?y=1"),
            ("::1".into(), "9".into(), "/x?y=1".into(), "[::1]:9".into())
        );
        assert_eq!(split_url("http://h?q").2, "/?q".to_owned());
    }

    /// Run the probe function as the units do, with bash.
    fn probe(args: &[&str]) -> bool {
        let Some(bash) = which("bash") else {
            eprintln!("skipped: bash not installed");
            return true;
        };
        let kind = match args[0] {
            "tcp" => ProbeKind::Tcp {
                host: String::new(),
                port: String::new(),
            },
            "http" => ProbeKind::Http { url: String::new() },
            _ => ProbeKind::Exec {
                command: String::new(),
            },
        };
        // As ready_script runs it: `$1` period, `$2` delay, then the probe's.
        let script = probe_cmd(&kind, None).unwrap();
        std::process::Command::new(bash)
            .arg("-c")
            .arg(script)
            .args(["mew-probe", "1", "0"])
            .args(&args[1..])
            .status()
            .unwrap()
            .success()
    }

    #[test]
    fn probe_function_tcp_http_exec() {
        use std::io::{Read as _, Write as _};
        if which("timeout").is_none() {
            eprintln!("skipped: timeout not installed");
            return;
        }
        let t = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let tport = t.local_addr().unwrap().port().to_string();
        assert!(probe(&["tcp", "2", "127.0.0.1", &tport]));
        drop(t);
        assert!(!probe(&["tcp", "2", "127.0.0.1", &tport]));
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port().to_string();
        // Serve two HTTP answers: 200 then 503.
        let server = std::thread::spawn(move || {
            for status in ["200 OK", "503 Unavailable"] {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).unwrap();
                    if n == 0 {
                        break;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let req = String::from_utf8_lossy(&got).into_owned();
                assert!(req.starts_with("GET /health HTTP/1.0\r\n"), "{req}");
                write!(s, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").unwrap();
            }
        });
        let host = format!("127.0.0.1:{port}");
        assert!(probe(&["http", "2", "127.0.0.1", &port, "/health", &host]));
        assert!(!probe(&["http", "2", "127.0.0.1", &port, "/health", &host]));
        server.join().unwrap();
        assert!(probe(&["exec", "2", "exit 0"]));
        assert!(!probe(&["exec", "2", "exit 3"]));
        assert!(!probe(&["exec", "0.1", "exec sleep 5"]));
    }
}
