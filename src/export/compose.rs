//! `mew space export --format compose`: one compose file, one service per
//! process.
//!
//! - `compose.yaml`: the services in start order. Every string scalar is a
//!   YAML double-quoted string, and every `$` in a value is written `$$`:
//!   compose interpolates the whole file, and a space is exported already
//!   resolved (as `check` resolves it), so nothing in it is compose's to
//!   interpolate.
//! - `.env`: `COMPOSE_PROJECT_NAME=<the space id as a project name>` (the
//!   compose spec's top-level `name:` is refused by docker-compose 1.x).
//! - `secrets/mew_token_<id>` (0600): one participant's token each, a
//!   compose file-based secret mounted at `/run/secrets/mew_token_<id>` in
//!   that participant's container only. A compose secret is a file, not a
//!   variable: the service's command is wrapped in `/bin/sh -c` that reads
//!   it into `MEW_TOKEN_<ID>` and execs the process, so the token is in no
//!   container's configuration (`docker inspect`) and in no file but its
//!   secret.
//!
//! Every container shares the host's network (`network_mode: host`): a
//! space's processes talk to each other on `localhost` (a MEW space's
//! participants join `ws://localhost:${PORT}`), which separate network
//! namespaces would break. The space directory is bind-mounted at its own
//! path and each process runs in its own cwd, as the user owning the space
//! directory, so every path of the space keeps working; each has a
//! terminal (`tty`, `stdin_open`) as under mew, which runs it in a pty.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Export, File, Input, TokenRef};
use crate::config::{
    DependCondition, HealthAction, ProbeKind, ProcKind, ResolvedProcess, RestartPolicy,
};

/// How a command line refers to a token's variable: `${MEW_TOKEN_<ID>}`,
/// which the service's wrapper replaces by the token read from its secret.
pub(crate) const TOKEN_REF: TokenRef = |var| format!("${{{var}}}");

/// The image when `--image` is not given: it has `/bin/sh` and `bash` (the
/// probes), and glibc (mew's own binary, bind-mounted, runs in it).
pub(crate) const DEFAULT_IMAGE: &str = "debian:stable-slim";

/// Where compose mounts a service's secrets.
const SECRETS_DIR: &str = "/run/secrets";

/// mew's default `scrollback` (not worth a note when unchanged).
const DEFAULT_SCROLLBACK: usize = 2000;

/// A process's healthcheck, and whether it is its readiness probe (then
/// `depends_on: ready` is `service_healthy`).
struct Check {
    test: Vec<String>,
    probe: crate::config::Probe,
    from_ready: bool,
}

/// A participant's token as the wrapper provides it.
struct Token {
    var: String,
    secret: String,
}

pub(crate) fn render(input: &Input<'_>) -> Export {
    let mut e = Export::default();
    let cfg = input.cfg;
    let image = input
        .image
        .clone()
        .unwrap_or_else(|| DEFAULT_IMAGE.to_owned());
    let user = owner(&cfg.dir);
    if user.is_none() {
        e.note(
            None,
            "user",
            format!(
                "the owner of {} is unknown: no `user:`, the containers run as the image's user",
                cfg.dir.display()
            ),
        );
    }
    let exported: Vec<&ResolvedProcess> =
        input.enabled(&mut e, "skipped: no service (as `up` skips it)");

    // The healthcheck of every exported process, first (dependents need them).
    let checks: Vec<Option<Check>> = exported.iter().map(|p| check(p, &mut e)).collect();
    let healthy = |name: &str| {
        exported
            .iter()
            .zip(&checks)
            .any(|(p, c)| p.name == name && c.as_ref().is_some_and(|c| c.from_ready))
    };

    let mut secret_files = Vec::new();
    let mut has_env_file = false;
    let mut y = String::new();
    let _ = writeln!(
        y,
        "# docker compose file of the space {} ({}), made by `mew space export --format compose`",
        escape_comment(&cfg.name),
        escape_comment(&cfg.id)
    );
    let _ = writeln!(
        y,
        "# from {}. Run it with `docker compose up -d` in this directory",
        escape_comment(&cfg.config_path.display().to_string())
    );
    let _ = writeln!(
        y,
        "# (the project name is in .env; the tokens are in secrets/, owner-only)."
    );
    y.push_str("services:\n");
    for (p, chk) in exported.iter().zip(&checks) {
        let c = &p.config;
        let token = (p.kind == ProcKind::Participant)
            .then(|| crate::config::token_env_name(&p.name))
            .and_then(|var| {
                let (_, value) = input.tokens.iter().find(|(v, _)| *v == var)?;
                let secret = var.to_ascii_lowercase();
                secret_files.push(File {
                    path: PathBuf::from("secrets").join(&secret),
                    contents: value.clone(),
                    mode: 0o600,
                });
                Some(Token { var, secret })
            });
        let _ = writeln!(y, "  {}:", q(&p.name));
        let _ = writeln!(y, "    image: {}", v(&image));
        if let Some(u) = &user {
            let _ = writeln!(y, "    user: {}", v(u));
        }
        y.push_str(
            "    network_mode: \"host\"\n    init: true\n    tty: true\n    stdin_open: true\n",
        );
        let _ = writeln!(y, "    working_dir: {}", v(&p.cwd.display().to_string()));

        // Environment: the variables that hold the token are set by the wrapper.
        let mut env = Vec::new();
        let mut wrapped_env = Vec::new();
        for (k, val) in &p.env {
            match &token {
                Some(t) if val.contains(&TOKEN_REF(&t.var)) => wrapped_env.push((k, val)),
                _ => env.push((k, val)),
            }
        }
        let argv = match &token {
            Some(t) => wrap(&p.argv, t, &wrapped_env),
            None => p.argv.clone(),
        };
        let _ = writeln!(y, "    command: {}", flow(&argv));
        if !env.is_empty() {
            y.push_str("    environment:\n");
            for (k, val) in env {
                let _ = writeln!(y, "      {}: {}", q(k), v(val));
            }
        }
        if let Some(f) = &c.env_file {
            has_env_file = true;
            e.note(
                Some(&p.name),
                "env_file",
                format!(
                    "its variables are written in `environment:` as `check` resolves them \
                     (compose's env_file syntax differs from mew's); compose.yaml is owner-only \
                     (0600) for them ({})",
                    crate::config::escape(f)
                ),
            );
        }

        // Mounts: the space (and a cwd outside it), mew's own binary, the config.
        let mut mounts = vec![(cfg.dir.clone(), false)];
        if !p.cwd.starts_with(&cfg.dir) {
            mounts.push((p.cwd.clone(), false));
        }
        if c.native
            && let Some(exe) = p.argv.first()
        {
            mounts.push((PathBuf::from(exe), true));
            if p.kind == ProcKind::Gateway && !cfg.config_path.starts_with(&cfg.dir) {
                mounts.push((cfg.config_path.clone(), true));
            }
        }
        y.push_str("    volumes:\n");
        for (path, ro) in &mounts {
            let path = v(&path.display().to_string());
            let _ = writeln!(
                y,
                "      - {{ type: \"bind\", source: {path}, target: {path}{} }}",
                if *ro { ", read_only: true" } else { "" }
            );
        }
        if let Some(t) = &token {
            let _ = writeln!(y, "    secrets: [{}]", v(&t.secret));
        }

        // Dependencies.
        let mut deps = Vec::new();
        for d in &c.depends_on {
            let Some(dep) = exported.iter().find(|x| x.name == d.name) else {
                e.note(
                    Some(&p.name),
                    "depends_on",
                    format!(
                        "`{}` is disabled (no service): the dependency is dropped",
                        d.name
                    ),
                );
                continue;
            };
            let condition = match d.condition {
                DependCondition::Started => "service_started",
                DependCondition::CompletedSuccessfully => "service_completed_successfully",
                DependCondition::Ready if healthy(&d.name) => "service_healthy",
                DependCondition::Ready => {
                    if dep
                        .ready
                        .as_ref()
                        .is_some_and(|r| matches!(r.kind, ProbeKind::Log { .. }))
                    {
                        e.note(
                            Some(&p.name),
                            "depends_on",
                            format!(
                                "`{}: ready`: its readiness probe is not a healthcheck: \
                                 `service_started` (it waits for the start only)",
                                d.name
                            ),
                        );
                    }
                    "service_started"
                }
            };
            if !dep.config.auto_start {
                e.note(
                    Some(&p.name),
                    "depends_on",
                    format!(
                        "`{}` is in the `manual` profile: start this service with \
                         `--profile manual` too",
                        d.name
                    ),
                );
            }
            deps.push((d.name.as_str(), condition));
        }
        if !deps.is_empty() {
            y.push_str("    depends_on:\n");
            for (name, condition) in deps {
                let _ = writeln!(y, "      {}: {{ condition: \"{condition}\" }}", q(name));
            }
        }

        // Probes.
        if let Some(check) = chk {
            let pr = &check.probe;
            let mut test = check.test.clone();
            if let Some(t) = &token
                && test.iter().any(|a| a.contains(&TOKEN_REF(&t.var)))
            {
                // An exec probe using the token: read it as the wrapper does.
                let line = test.last().cloned().unwrap_or_default();
                test = vec![
                    "CMD-SHELL".to_owned(),
                    format!(
                        "{}exec /bin/sh -c {}",
                        prelude(t, &wrapped_env),
                        sh_word(&line, &t.var)
                    ),
                ];
            }
            y.push_str("    healthcheck:\n");
            let _ = writeln!(y, "      test: {}", flow(&test));
            let _ = writeln!(y, "      interval: \"{}\"", duration(pr.period));
            let _ = writeln!(y, "      timeout: \"{}\"", duration(pr.timeout));
            let _ = writeln!(y, "      retries: {}", pr.failure_threshold.max(1));
            if !pr.initial_delay.is_zero() {
                let _ = writeln!(y, "      start_period: \"{}\"", duration(pr.initial_delay));
            }
        }

        // Restart, memory, stop, profile, logs.
        // A one-shot task is not restarted by `always` after a success:
        // that is compose's `on-failure`.
        let policy = match c.restart_policy {
            RestartPolicy::Always if c.one_shot => RestartPolicy::OnFailure,
            r => r,
        };
        let restart = match policy {
            RestartPolicy::No => "no".to_owned(),
            RestartPolicy::OnFailure => match c.max_restarts {
                Some(n) => format!("on-failure:{n}"),
                None => "on-failure".to_owned(),
            },
            RestartPolicy::Always => {
                if let Some(n) = c.max_restarts {
                    e.note(
                        Some(&p.name),
                        "max_restarts",
                        format!("{n} with `always`: compose's `always` has no limit"),
                    );
                }
                "always".to_owned()
            }
        };
        let _ = writeln!(y, "    restart: {}", v(&restart));
        if c.restart_policy != RestartPolicy::No {
            e.note(
                Some(&p.name),
                "backoff",
                format!(
                    "docker's own restart delay (doubling from 100 ms, reset after 10 s up) \
                     instead of initial {}, max {}, multiplier {}",
                    duration(c.backoff.initial),
                    duration(c.backoff.max),
                    c.backoff.multiplier
                ),
            );
        }
        if let Some(m) = c.max_memory {
            let _ = writeln!(y, "    mem_limit: {m}");
            e.note(
                Some(&p.name),
                "max_memory",
                format!(
                    "mem_limit: the kernel kills it above the limit (mew restarts it); docker \
                     then restarts it by its restart policy ({})",
                    if policy == RestartPolicy::No {
                        "`no`: it stays stopped"
                    } else {
                        "it does"
                    }
                ),
            );
        }
        let _ = writeln!(y, "    stop_signal: {}", v(c.stop_signal.name));
        let _ = writeln!(y, "    stop_grace_period: \"{}\"", duration(c.stop_timeout));
        if !c.auto_start {
            y.push_str("    profiles: [\"manual\"]\n");
            e.note(
                Some(&p.name),
                "auto_start",
                format!(
                    "false: in the `manual` profile, not started by `docker compose up`; \
                     start it with `docker compose --profile manual up -d {}`",
                    p.name
                ),
            );
        }
        let _ = writeln!(
            y,
            "    logging: {{ driver: \"json-file\", options: {{ max-size: \"{}\", max-file: \"{}\" }} }}",
            size(cfg.logs.rotate_size),
            cfg.logs.keep.saturating_add(1)
        );
        if c.scrollback != DEFAULT_SCROLLBACK {
            e.note(
                Some(&p.name),
                "scrollback",
                "dropped: compose has no TUI; `docker compose logs` reads the whole log",
            );
        }
    }

    if !secret_files.is_empty() {
        y.push_str("secrets:\n");
        for f in &secret_files {
            let name = f
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let _ = writeln!(y, "  {}:", q(&name));
            let _ = writeln!(y, "    file: {}", v(&format!("./secrets/{name}")));
        }
    }

    // The space as a whole.
    e.note(
        None,
        "shutdown_timeout",
        format!(
            "{}: each service has its own stop_grace_period; `docker compose down --timeout N` \
             bounds them all",
            duration(cfg.shutdown_timeout)
        ),
    );
    e.note(
        None,
        "logs.dir",
        format!(
            "docker keeps the logs (json-file, rotated at logs.rotate_size, logs.keep kept): \
             `docker compose logs`, not {}",
            cfg.logs.dir.display()
        ),
    );
    if cfg.logs.upstream_paths {
        e.note(
            None,
            "logs.upstream_paths",
            "dropped: no log files to link (docker keeps the logs)",
        );
    }
    for f in &cfg.fifos {
        e.note(
            Some(&f.name),
            "fifo",
            format!(
                "the client makes {} in the mounted space when it starts; `docker compose down` \
                 does not remove it (`mew space down` does)",
                f.input_path(&cfg.dir).display()
            ),
        );
    }
    for part in &cfg.participants {
        e.note(
            Some(&part.name),
            "participant",
            format!("not a service ({}): it joins the gateway itself", part.note),
        );
    }

    e.files.push(File {
        path: PathBuf::from("compose.yaml"),
        contents: y,
        mode: if has_env_file { 0o600 } else { 0o644 },
    });
    e.files.push(File {
        path: PathBuf::from(".env"),
        contents: format!("COMPOSE_PROJECT_NAME={}\n", project_name(&cfg.id)),
        mode: 0o644,
    });
    e.files.extend(secret_files);
    e
}

/// The healthcheck of a process: its readiness probe, else its health
/// check; notes for what does not fit.
fn check(p: &ResolvedProcess, e: &mut Export) -> Option<Check> {
    let mut out = None;
    if let Some(r) = &p.ready {
        match test(&r.kind) {
            Ok(t) => {
                out = Some(Check {
                    test: t,
                    probe: r.clone(),
                    from_ready: true,
                });
            }
            Err(why) => e.note(Some(&p.name), "ready", why),
        }
    }
    if let Some(h) = &p.health {
        if out.is_some() {
            e.note(
                Some(&p.name),
                "health",
                "not translated: a service has one healthcheck, its readiness probe (docker \
                 keeps running it: a failing one marks the service unhealthy)",
            );
        } else {
            match test(&h.probe.kind) {
                Ok(t) => {
                    out = Some(Check {
                        test: t,
                        probe: h.probe.clone(),
                        from_ready: false,
                    });
                    if h.action == HealthAction::Restart {
                        e.note(
                            Some(&p.name),
                            "health.action",
                            "restart: docker does not restart an unhealthy container; it is \
                             shown unhealthy in `docker compose ps`",
                        );
                    }
                }
                Err(why) => e.note(Some(&p.name), "health", why),
            }
        }
    }
    out
}

/// `healthcheck.test` for a probe. HTTP and TCP probes use bash's
/// `/dev/tcp` (no curl or wget in a slim image); exec probes run through
/// `/bin/sh -c` as mew runs them.
fn test(kind: &ProbeKind) -> Result<Vec<String>, String> {
    let bash = |script: String| vec!["CMD".to_owned(), "bash".to_owned(), "-c".to_owned(), script];
    match kind {
        ProbeKind::Exec { command } => Ok(vec!["CMD-SHELL".to_owned(), command.clone()]),
        ProbeKind::Tcp { host, port } => Ok(bash(format!(
            "exec 3<>{}",
            crate::human::shell_quote(&format!("/dev/tcp/{}/{port}", unbracket(host)))
        ))),
        ProbeKind::Http { url } => {
            let (host, port, path) = parse_http(url)
                .ok_or_else(|| format!("`{url}` is not an http:// URL: no healthcheck"))?;
            let request = format!("GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n");
            Ok(bash(format!(
                "exec 3<>{} && printf %s {} >&3 && IFS= read -r status <&3 && case \"$status\" in \"HTTP/\"*\" 2\"[0-9][0-9]*) exit 0;; esac; exit 1",
                crate::human::shell_quote(&format!("/dev/tcp/{}/{port}", unbracket(&host))),
                crate::human::shell_quote(&request)
            )))
        }
        ProbeKind::Log { regex } => Err(format!(
            "`log: {}` has no healthcheck (docker cannot watch a container's output): \
             no healthcheck; `depends_on: ready` on it waits for its start only",
            crate::config::escape(regex)
        )),
    }
}

fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

/// `http://host[:port][/path]` → (host, port, path).
fn parse_http(url: &str) -> Option<(String, u16, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_owned()
    };
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    let (host, port) = if let Some(end) = authority.strip_prefix('[').and_then(|a| a.find(']')) {
        let host = &authority[..end + 2];
        match &authority[end + 2..] {
            "" => (host, 80),
            p => (host, p.strip_prefix(':')?.parse().ok()?),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, 80),
        }
    };
    if host.is_empty() || path.contains(['\r', '\n', ' ']) {
        return None;
    }
    Some((host.to_owned(), port, path))
}

/// The command of a participant with a token: `/bin/sh -c` reading the
/// secret into the variable, then exec'ing the process. An argument using
/// the token gets its value spliced in (as mew splices `${TOKEN}`);
/// otherwise the argv follows the script unchanged (`exec "$@"`).
fn wrap(argv: &[String], t: &Token, env: &[(&String, &String)]) -> Vec<String> {
    let r = TOKEN_REF(&t.var);
    let mut script = prelude(t, env);
    if argv.iter().any(|a| a.contains(&r)) {
        script.push_str("exec");
        for a in argv {
            script.push(' ');
            script.push_str(&sh_word(a, &t.var));
        }
        vec!["/bin/sh".to_owned(), "-c".to_owned(), script]
    } else {
        script.push_str("exec \"$@\"");
        let mut out = vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            script,
            "sh".to_owned(),
        ];
        out.extend(argv.iter().cloned());
        out
    }
}

/// `VAR="$(cat /run/secrets/name)" && export VAR && export K=… && ` for
/// a token and the variables that use it.
fn prelude(t: &Token, env: &[(&String, &String)]) -> String {
    let mut s = format!(
        "{var}=\"$(cat {SECRETS_DIR}/{secret})\" && export {var} && ",
        var = t.var,
        secret = t.secret
    );
    for (k, val) in env {
        let _ = write!(s, "export {k}={} && ", sh_word(val, &t.var));
    }
    s
}

/// One shell word for `s`, literal except each `${var}`, which the shell
/// expands (double-quoted: no splitting, no globbing).
fn sh_word(s: &str, var: &str) -> String {
    let r = TOKEN_REF(var);
    let mut out = String::new();
    for (i, part) in s.split(r.as_str()).enumerate() {
        if i > 0 {
            let _ = write!(out, "\"${{{var}}}\"");
        }
        if !part.is_empty() {
            out.push_str(&crate::human::shell_quote(part));
        }
    }
    if out.is_empty() {
        out.push_str("''");
    }
    out
}

use super::yaml_quote as q;

/// A value compose must take literally: `$` doubled, then quoted.
fn v(s: &str) -> String {
    q(&s.replace('$', "$$"))
}

/// A flow sequence of values: `["a", "b"]`.
fn flow(items: &[String]) -> String {
    let items: Vec<String> = items.iter().map(|s| v(s)).collect();
    format!("[{}]", items.join(", "))
}

/// A compose duration: `30s`, `200ms`.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A size for docker's json-file `max-size`: `10m`, `512k` or bytes.
fn size(n: u64) -> String {
    if n >= 1 << 20 && n.is_multiple_of(1 << 20) {
        format!("{}m", n >> 20)
    } else if n >= 1 << 10 && n.is_multiple_of(1 << 10) {
        format!("{}k", n >> 10)
    } else {
        n.max(1).to_string()
    }
}

/// A compose project name (`[a-z0-9_-]`, starting with a letter or digit).
fn project_name(id: &str) -> String {
    let s: String = id
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_start_matches(['_', '-']);
    if s.is_empty() {
        "mew".to_owned()
    } else {
        s.to_owned()
    }
}

/// A comment's text on one line.
fn escape_comment(s: &str) -> String {
    crate::config::escape(s).replace(['\n', '\r'], " ")
}

/// `uid:gid` of the space directory's owner.
fn owner(dir: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let md = std::fs::metadata(dir).ok()?;
    Some(format!("{}:{}", md.uid(), md.gid()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn yaml_quoting_escapes_what_yaml_and_compose_would_read() {
        assert_eq!(q("hello world"), "\"hello world\"");
        assert_eq!(q("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(q("l1\nl2\tx"), "\"l1\\nl2\\tx\"");
        assert_eq!(q("\u{1b}[1m\u{7f}\u{85}"), "\"\\u001b[1m\\u007f\\u0085\"");
        assert_eq!(q("100% é"), "\"100% é\"");
        assert_eq!(v("$HOME ${X} $$"), "\"$$HOME $${X} $$$$\"");
        assert_eq!(
            flow(&["/bin/sh".into(), "-c".into(), "echo $1 '%d'".into()]),
            "[\"/bin/sh\", \"-c\", \"echo $$1 '%d'\"]"
        );
    }

    #[test]
    fn yaml_quoted_strings_read_back_as_written() {
        // JSON is YAML: every string q() writes is a JSON string too.
        for s in [
            "plain",
            "a \"q\" \\ b",
            "tab\tnl\n",
            "\u{1}\u{7f}\u{9f}",
            "ü ✓",
        ] {
            let back: String = serde_json::from_str(&q(s)).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn shell_words_are_literal_but_the_token() {
        assert_eq!(sh_word("", "V"), "''");
        assert_eq!(sh_word("${V}", "V"), "\"${V}\"");
        assert_eq!(sh_word("a ${V}-$x", "V"), "'a '\"${V}\"'-$x'");
        // Run them: the shell sees each word as written, the token expanded.
        let words = ["it's $HOME %s", "--token=${T}", "", "\"${T}\"*", "${T}${T}"];
        let script = format!(
            "T=v4lue; exec printf '<%s>' {}",
            words.map(|w| sh_word(w, "T")).join(" ")
        );
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &script])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "<it's $HOME %s><--token=v4lue><><\"v4lue\"*><v4luev4lue>"
        );
    }

    #[test]
    fn the_wrapper_reads_the_secret_and_keeps_argv() {
        let t = Token {
            var: "MEW_TOKEN_A".into(),
            secret: "mew_token_a".into(),
        };
        let argv = vec!["/bin/prog".to_owned(), "x y".to_owned()];
        assert_eq!(
            wrap(&argv, &t, &[]),
            [
                "/bin/sh",
                "-c",
                "MEW_TOKEN_A=\"$(cat /run/secrets/mew_token_a)\" && export MEW_TOKEN_A && exec \"$@\"",
                "sh",
                "/bin/prog",
                "x y"
            ]
        );
        let argv = vec![
            "/bin/prog".to_owned(),
            "--token".to_owned(),
            "${MEW_TOKEN_A}".to_owned(),
        ];
        let (k, val) = ("URL".to_owned(), "ws://h?t=${MEW_TOKEN_A}".to_owned());
        assert_eq!(
            wrap(&argv, &t, &[(&k, &val)]),
            [
                "/bin/sh",
                "-c",
                "MEW_TOKEN_A=\"$(cat /run/secrets/mew_token_a)\" && export MEW_TOKEN_A && \
                 export URL='ws://h?t='\"${MEW_TOKEN_A}\" && exec '/bin/prog' '--token' \"${MEW_TOKEN_A}\""
            ]
        );
    }

    #[test]
    fn probes_durations_sizes_names() {
        assert_eq!(
            parse_http("http://127.0.0.1:8123/health"),
            Some(("127.0.0.1".into(), 8123, "/health".into()))
        );
        assert_eq!(
            parse_http("http://localhost"),
            Some(("localhost".into(), 80, "/".into()))
        );
        assert_eq!(
            parse_http("http://[::1]:9/x?y"),
            Some(("[::1]".into(), 9, "/x?y".into()))
        );
        assert_eq!(parse_http("https://x/"), None);
        assert_eq!(parse_http("http://x:bad/"), None);
        assert_eq!(duration(Duration::from_millis(200)), "200ms");
        assert_eq!(duration(Duration::from_secs(90)), "90s");
        assert_eq!(size(10 << 20), "10m");
        assert_eq!(size(1536), "1536");
        assert_eq!(size(2048), "2k");
        assert_eq!(project_name("Export demo.1"), "export-demo-1");
        assert_eq!(project_name("__"), "mew");
    }

    #[test]
    fn an_http_probe_is_one_bash_command() {
        let t = test(&ProbeKind::Http {
            url: "http://127.0.0.1:8080/health".into(),
        })
        .unwrap();
        assert_eq!(t[..3], ["CMD", "bash", "-c"]);
        assert!(t[3].starts_with(
            "exec 3<>'/dev/tcp/127.0.0.1/8080' && printf %s 'GET /health HTTP/1.0\r\n"
        ));
        assert!(test(&ProbeKind::Log { regex: "x".into() }).is_err());
    }
}
