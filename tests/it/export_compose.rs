//! `mew space export --format compose`: the real binary on temp copies of
//! the export fixtures (and spaces of its own), the result read back as
//! YAML and checked with docker-compose's own validator.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

use crate::common::{MEW, copy_dir, repo};

/// A temp copy of a space directory of the repo.
fn space_copy(rel: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("space");
    copy_dir(&repo().join(rel), &dir);
    (tmp, dir)
}

struct Out {
    dir: PathBuf,
    stderr: String,
    compose: Value,
    text: String,
}

impl Out {
    fn service(&self, name: &str) -> &Value {
        let s = &self.compose["services"][name];
        assert!(s.is_object(), "no service {name}:\n{}", self.text);
        s
    }
    /// A variable as the process gets it (compose's `$$` read back).
    fn env(&self, service: &str, var: &str) -> Option<String> {
        self.service(service)["environment"][var]
            .as_str()
            .map(|v| v.replace("$$", "$"))
    }
    fn noted(&self, what: &str) {
        assert!(
            self.stderr
                .contains(&format!("mew export: `{what}` is not translated as is:")),
            "no note for {what}:\n{}",
            self.stderr
        );
    }
    fn mode(&self, rel: &str) -> u32 {
        std::fs::metadata(self.dir.join(rel))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    }
}

fn export(space: &Path, extra: &[&str]) -> Out {
    let dir = space.parent().unwrap().join("out");
    let out = Command::new(MEW)
        .args(["space", "export", "--format", "compose", "--space-dir"])
        .arg(space)
        .arg("--out")
        .arg(&dir)
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "export failed:\n{stderr}");
    let text = std::fs::read_to_string(dir.join("compose.yaml")).unwrap();
    let compose: Value = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("compose.yaml is not YAML: {e}\n{text}"));
    Out {
        dir,
        stderr,
        compose,
        text,
    }
}

/// docker-compose, from `MEW_DOCKER_COMPOSE` or PATH (None: not installed,
/// which fails the test under `MEW_REQUIRE_VALIDATORS`).
fn docker_compose() -> Option<PathBuf> {
    let found = match std::env::var_os("MEW_DOCKER_COMPOSE") {
        Some(p) => Some(PathBuf::from(p)),
        None => std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("docker-compose"))
                .find(|p| p.is_file())
        }),
    };
    if found.is_none() {
        assert!(
            std::env::var_os("MEW_REQUIRE_VALIDATORS").is_none(),
            "docker-compose not installed and MEW_REQUIRE_VALIDATORS is set"
        );
        eprintln!("\n*** skipped: docker-compose not installed: the export is not validated ***\n");
    }
    found
}

/// `docker-compose -f compose.yaml config -q` passes, and `config` says
/// nothing of unset variables (every `$` is escaped).
fn validate(out: &Out) {
    let Some(dc) = docker_compose() else { return };
    for args in [&["config", "-q"][..], &["config"][..]] {
        let r = Command::new(&dc)
            .arg("-f")
            .arg(out.dir.join("compose.yaml"))
            .args(args)
            .current_dir(&out.dir)
            .env_remove("COMPOSE_PROJECT_NAME")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert!(
            r.status.success(),
            "docker-compose {args:?} refused the export:\n{stderr}\n{}",
            out.text
        );
        assert!(
            !stderr.contains("WARNING"),
            "docker-compose warns:\n{stderr}"
        );
    }
}

/// Every token of the space: only in its own 0600 secret file.
fn tokens_only_in_secrets(space: &Path, out: &Out, participants: &[&str]) {
    for p in participants {
        let token = std::fs::read_to_string(space.join(format!(".mew/tokens/{p}.token")))
            .unwrap()
            .trim()
            .to_owned();
        assert!(!token.is_empty());
        let secret = format!("mew_token_{}", p.replace('-', "_"));
        let file = format!("secrets/{secret}");
        assert_eq!(std::fs::read_to_string(out.dir.join(&file)).unwrap(), token);
        assert_eq!(out.mode(&file), 0o600, "{file}");
        assert_eq!(out.service(p)["secrets"], json!([secret]));
        assert_eq!(
            out.compose["secrets"][&secret]["file"],
            json!(format!("./{file}"))
        );
        for f in ["compose.yaml", ".env"] {
            let text = std::fs::read_to_string(out.dir.join(f)).unwrap();
            assert!(!text.contains(&token), "the token of {p} is in {f}");
        }
        assert!(!out.stderr.contains(&token));
    }
}

/// A service's command with compose's `$$` read back, for running.
fn command(out: &Out, service: &str) -> Vec<String> {
    out.service(service)["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace("$$", "$"))
        .collect()
}

#[test]
fn a_mew_space_gateway_agents_bridge_fifo_client() {
    let (_tmp, space) = space_copy("tests/fixtures/export/mew-space");
    let out = export(&space, &[]);
    let dir = space.display().to_string();
    let names: Vec<&String> = out.compose["services"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(names, ["gateway", "echo-agent", "files", "feed"]);
    assert_eq!(
        std::fs::read_to_string(out.dir.join(".env")).unwrap(),
        "COMPOSE_PROJECT_NAME=export-demo\n"
    );
    assert_eq!(out.mode("compose.yaml"), 0o644);
    for name in &names {
        let s = out.service(name);
        assert_eq!(s["image"], "debian:stable-slim");
        assert_eq!(s["network_mode"], "host");
        assert_eq!(s["working_dir"], json!(dir));
        assert_eq!(
            s["volumes"][0],
            json!({"type": "bind", "source": dir, "target": dir})
        );
        assert_eq!(s["tty"], json!(true));
    }
    // mew's own processes: its binary, mounted read-only at its path.
    let gw = out.service("gateway");
    let exe = gw["command"][0].as_str().unwrap();
    assert!(Path::new(exe).is_absolute());
    assert_eq!(gw["command"][1], "gateway");
    assert_eq!(gw["command"][2], "start");
    for s in ["gateway", "files", "feed"] {
        assert_eq!(
            out.service(s)["volumes"][1],
            json!({"type": "bind", "source": exe, "target": exe, "read_only": true}),
            "{s}"
        );
    }
    assert!(out.service("echo-agent")["volumes"].get(1).is_none());
    // The gateway's readiness probe is the healthcheck the agents wait for.
    let hc = &gw["healthcheck"];
    assert_eq!(
        hc["test"].as_array().unwrap()[..3],
        [json!("CMD"), json!("bash"), json!("-c")]
    );
    let probe = hc["test"][3].as_str().unwrap();
    assert!(probe.contains("/dev/tcp/127.0.0.1/8123"), "{probe}");
    assert!(probe.contains("GET /health HTTP/1.0"), "{probe}");
    assert_eq!(hc["interval"], "1s");
    assert_eq!(hc["retries"], 3);
    for s in ["echo-agent", "files", "feed"] {
        assert_eq!(
            out.service(s)["depends_on"],
            json!({"gateway": {"condition": "service_healthy"}})
        );
    }
    assert_eq!(out.service("echo-agent")["restart"], "on-failure");
    assert_eq!(out.service("files")["restart"], "no");
    assert_eq!(
        out.env("echo-agent", "MEW_GATEWAY").as_deref(),
        Some("ws://localhost:8123")
    );
    assert_eq!(out.env("echo-agent", "LOG_LEVEL").as_deref(), Some("debug"));
    assert_eq!(
        out.env("files", "MEW_SPACE").as_deref(),
        Some("export-demo")
    );
    // The token: read from the secret by the wrapper, spliced where the
    // command line had `${TOKEN}`.
    let cmd = command(&out, "echo-agent");
    assert_eq!(cmd[..2], ["/bin/sh", "-c"]);
    assert!(cmd[2].starts_with(
        "MEW_TOKEN_ECHO_AGENT=\"$(cat /run/secrets/mew_token_echo_agent)\" && export MEW_TOKEN_ECHO_AGENT && exec '/bin/sh' '-c' "
    ));
    assert!(cmd[2].ends_with(" '--token' \"${MEW_TOKEN_ECHO_AGENT}\""));
    let bridge = command(&out, "files");
    assert_eq!(bridge[3..5], ["sh".to_owned(), exe.to_owned()]);
    assert!(bridge[2].ends_with("exec \"$@\""));
    tokens_only_in_secrets(&space, &out, &["echo-agent", "files", "feed"]);
    for n in [
        "feed.fifo",
        "human.participant",
        "echo-agent.backoff",
        "shutdown_timeout",
        "logs.dir",
    ] {
        out.noted(n);
    }
    validate(&out);
}

#[test]
fn a_space_with_every_key() {
    let (_tmp, space) = space_copy("tests/fixtures/export/every-key");
    let out = export(&space, &["--image", "example.com/app:1"]);
    let names: Vec<&String> = out.compose["services"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    // Start order, without the disabled process.
    assert_eq!(
        names,
        ["migrate", "db", "web", "worker", "probe-exec", "manual"]
    );
    out.noted("off.disabled");
    assert_eq!(out.service("db")["image"], "example.com/app:1");
    // A task.
    assert_eq!(out.service("migrate")["restart"], "no");
    assert_eq!(
        out.service("migrate")["command"],
        json!(["/bin/sh", "-c", "/bin/echo migrating"])
    );
    // db: cwd, env and env_file, tcp probe, memory, stop, restart.
    let db = out.service("db");
    assert_eq!(
        db["working_dir"],
        json!(space.join("data").display().to_string())
    );
    assert_eq!(db["command"], json!(["/bin/sleep", "100000"]));
    assert_eq!(out.env("db", "GREETING").as_deref(), Some("hello world"));
    assert_eq!(out.env("db", "PGDATA").as_deref(), Some("./pg"));
    assert_eq!(out.env("db", "APP_MODE").as_deref(), Some("production"));
    assert_eq!(out.env("db", "SECRET_KEY").as_deref(), Some("s3cr3t"));
    out.noted("db.env_file");
    assert_eq!(out.mode("compose.yaml"), 0o600, "it holds env_file values");
    assert_eq!(
        db["healthcheck"],
        json!({
            "test": ["CMD", "bash", "-c", "exec 3<>'/dev/tcp/127.0.0.1/5432'"],
            "interval": "2s", "timeout": "1s", "retries": 5, "start_period": "1s"
        })
    );
    assert_eq!(db["mem_limit"], 512 * 1024 * 1024);
    assert_eq!(db["stop_signal"], "SIGINT");
    assert_eq!(db["stop_grace_period"], "30s");
    assert_eq!(db["restart"], "always");
    out.noted("db.backoff");
    out.noted("db.max_memory");
    assert!(out.stderr.contains("initial 2s, max 60s, multiplier 3"));
    // logs.rotate_size 1M, keep 3 (+ the current file).
    assert_eq!(
        db["logging"],
        json!({"driver": "json-file", "options": {"max-size": "1m", "max-file": "4"}})
    );
    // web: conditions, http probe, its health check not translated.
    let web = out.service("web");
    assert_eq!(
        web["depends_on"],
        json!({
            "db": {"condition": "service_healthy"},
            "migrate": {"condition": "service_completed_successfully"}
        })
    );
    let probe = web["healthcheck"]["test"][3].as_str().unwrap();
    assert!(probe.contains("/dev/tcp/127.0.0.1/8080") && probe.contains("GET /health "));
    assert_eq!(web["restart"], "on-failure:4");
    assert_eq!(web["stop_grace_period"], "5s");
    out.noted("web.health");
    // worker: a log probe (noted), its health check is the healthcheck.
    let worker = out.service("worker");
    out.noted("worker.ready");
    out.noted("worker.scrollback");
    assert_eq!(
        worker["healthcheck"]["test"],
        json!(["CMD-SHELL", "/bin/true"])
    );
    assert_eq!(worker["healthcheck"]["interval"], "10s");
    assert_eq!(
        worker["depends_on"],
        json!({"web": {"condition": "service_started"}})
    );
    assert!(worker.get("mem_limit").is_none());
    assert_eq!(
        out.service("probe-exec")["healthcheck"]["test"],
        json!(["CMD-SHELL", "/bin/true"])
    );
    // auto_start: false.
    assert_eq!(out.service("manual")["profiles"], json!(["manual"]));
    out.noted("manual.auto_start");
    assert!(out.service("db").get("profiles").is_none());
    out.noted("shutdown_timeout");
    // No participant: no secret.
    assert!(out.compose.get("secrets").is_none());
    assert!(!out.dir.join("secrets").exists());
    validate(&out);
}

#[test]
fn the_demo_space() {
    let (_tmp, space) = space_copy("assets/examples/demo");
    let out = export(&space, &[]);
    // A log-probed gateway: no healthcheck, its dependents wait for its start.
    assert!(out.service("gateway").get("healthcheck").is_none());
    out.noted("gateway.ready");
    out.noted("prompt.depends_on");
    assert_eq!(
        out.service("prompt")["depends_on"],
        json!({"gateway": {"condition": "service_started"}})
    );
    assert_eq!(out.service("prompt")["stdin_open"], json!(true));
    assert_eq!(
        out.service("logger")["depends_on"],
        json!({"setup": {"condition": "service_completed_successfully"}})
    );
    assert_eq!(out.service("crasher")["restart"], "on-failure");
    out.noted("crasher.backoff");
    assert_eq!(out.service("clock")["stop_signal"], "SIGTERM");
    // Shell lines with `$`, `%` and quotes, as written (`$` escaped for compose).
    let logger = command(&out, "logger");
    assert!(logger[2].contains("i=$((i + 1))"));
    assert!(logger[2].contains("cache hit ratio %d%%"));
    assert!(out.text.contains("i=$$((i + 1))"));
    tokens_only_in_secrets(&space, &out, &["prompt"]);
    validate(&out);
}

/// Values compose or YAML would misread: `$`, `%`, quotes, newlines, a
/// backslash; `${TOKEN}` in an argument and in a variable. The wrapper is
/// run with the secret at a temp path: the process sees every value as
/// written and the token where `${TOKEN}` was.
#[test]
fn quoting_and_the_token_wrapper() {
    let tmp = tempfile::tempdir().unwrap();
    let space = tmp.path().join("space");
    std::fs::create_dir_all(space.join(".mew")).unwrap();
    std::fs::write(
        space.join(".mew/space.yaml"),
        r#"space: { id: "Quoting Space" }
gateway: false
participants:
  agent:
    command: /bin/sh
    args:
      - "-c"
      - "printf '<%s>' \"$0\" \"$1\" \"$2\" \"$URL\" \"$PCT\" \"$LIT\" \"$MULTI\" \"$MEW_TOKEN_AGENT\""
      - "--token=${TOKEN}"
      - "100% $HOME 'q' \"dq\" \\ end"
      - "a\nb"
    env:
      URL: "ws://localhost:${PORT}/?t=${TOKEN}"
      PCT: "50%"
      LIT: "$$HOME ${NOPE_UNSET_X:-dflt}"
      MULTI: "line1\nline2 \"x\""
    ready: { exec: "test \"${TOKEN}\" = \"$MEW_TOKEN_AGENT\" && test -n \"$URL\"" }
processes:
  task:
    command: /bin/true
    one_shot: true
    restart_policy: always
    max_memory: 1M
  tool:
    command: "echo \"$HOME\" 100% | tr a-z A-Z"
    ready: { exec: "test -n \"$HOME\"" }
"#,
    )
    .unwrap();
    let out = export(&space, &[]);
    assert_eq!(
        std::fs::read_to_string(out.dir.join(".env")).unwrap(),
        "COMPOSE_PROJECT_NAME=quoting-space\n"
    );
    assert_eq!(out.env("agent", "PCT").as_deref(), Some("50%"));
    assert_eq!(out.env("agent", "LIT").as_deref(), Some("$HOME dflt"));
    assert_eq!(
        out.env("agent", "MULTI").as_deref(),
        Some("line1\nline2 \"x\"")
    );
    assert!(out.text.contains("\"LIT\": \"$$HOME dflt\""));
    // The variable holding the token is the wrapper's, not compose's.
    assert_eq!(out.env("agent", "URL").as_deref(), None);
    assert_eq!(
        command(&out, "tool"),
        ["/bin/sh", "-c", "echo \"$HOME\" 100% | tr a-z A-Z"]
    );
    assert_eq!(
        out.service("tool")["healthcheck"]["test"],
        json!(["CMD-SHELL", "test -n \"$$HOME\""])
    );
    // A task restarted by `always` only after a failure.
    assert_eq!(out.service("task")["restart"], "on-failure");
    assert_eq!(out.service("task")["mem_limit"], 1 << 20);
    out.noted("task.max_memory");
    tokens_only_in_secrets(&space, &out, &["agent"]);
    let token = std::fs::read_to_string(space.join(".mew/tokens/agent.token")).unwrap();
    let token = token.trim();

    // Run the wrapper as the container would, the secret at a temp path.
    let secrets = tmp.path().join("run-secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::copy(
        out.dir.join("secrets/mew_token_agent"),
        secrets.join("mew_token_agent"),
    )
    .unwrap();
    let mut cmd = command(&out, "agent");
    cmd[2] = cmd[2].replace("/run/secrets/", &format!("{}/", secrets.display()));
    let env = out.service("agent")["environment"].as_object().unwrap();
    let run = Command::new(&cmd[0])
        .args(&cmd[1..])
        .env_clear()
        .env("HOME", "/home/h")
        .envs(
            env.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().replace("$$", "$"))),
        )
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8(run.stdout).unwrap(),
        format!(
            "<--token={token}><100% $HOME 'q' \"dq\" \\ end><a\nb><ws://localhost:8080/?t={token}><50%><$HOME dflt><line1\nline2 \"x\"><{token}>"
        )
    );
    // Its exec probe uses the token: the healthcheck reads the secret too.
    let test = &out.service("agent")["healthcheck"]["test"];
    assert_eq!(test[0], "CMD-SHELL");
    let probe = test[1]
        .as_str()
        .unwrap()
        .replace("$$", "$")
        .replace("/run/secrets/", &format!("{}/", secrets.display()));
    let ok = Command::new("/bin/sh")
        .args(["-c", &probe])
        .env_clear()
        .status()
        .unwrap();
    assert!(ok.success(), "{probe}");
    validate(&out);
}
