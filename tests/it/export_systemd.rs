//! `mew space export --format systemd` on the shared spaces (the demo, a MEW
//! space, every key) and on spaces of its own (quoting, tokens in env),
//! each export checked with `systemd-analyze verify`.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{MEW, copy_dir, repo};

/// A temporary copy of a space (export makes `.mew/tokens` in it).
fn space_copy(rel: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&repo().join(rel), dir.path());
    dir
}

struct Exported {
    files: BTreeMap<String, (String, u32)>,
    stderr: String,
    out: PathBuf,
    _out_dir: tempfile::TempDir,
}

impl Exported {
    fn file(&self, name: &str) -> &str {
        match self.files.get(name) {
            Some((c, _)) => c,
            None => panic!("no {name} in {:?}", self.files.keys()),
        }
    }
    fn mode(&self, name: &str) -> u32 {
        self.files[name].1
    }
    /// Every line `Key=…` of a unit.
    fn lines<'a>(&'a self, name: &str, key: &str) -> Vec<&'a str> {
        let prefix = format!("{key}=");
        self.file(name)
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| &l[prefix.len()..])
            .collect()
    }
    fn one(&self, name: &str, key: &str) -> String {
        let l = self.lines(name, key);
        assert_eq!(l.len(), 1, "{name}: {key}= {l:?}\n{}", self.file(name));
        l[0].to_owned()
    }
    fn note(&self, what: &str) {
        assert!(
            self.stderr
                .contains(&format!("mew export: `{what}` is not translated as is")),
            "no note for {what}:\n{}",
            self.stderr
        );
    }
}

fn read_tree(root: &Path, dir: &Path, files: &mut BTreeMap<String, (String, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            read_tree(root, &path, files);
        } else {
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
            files.insert(rel, (std::fs::read_to_string(&path).unwrap(), mode));
        }
    }
}

fn export(space: &Path, extra: &[&str]) -> Exported {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("units");
    let o = Command::new(MEW)
        .args(["space", "export", "--format", "systemd", "--out"])
        .arg(&out)
        .args(extra)
        .current_dir(space)
        .env_remove("MEW_SPACE_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "export failed: {stderr}");
    let mut files = BTreeMap::new();
    read_tree(&out, &out, &mut files);
    Exported {
        files,
        stderr,
        out,
        _out_dir: out_dir,
    }
}

/// The tokens of a space, as `.mew/tokens/` holds them after the export.
fn tokens(space: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    let dir = space.join(".mew/tokens");
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "token") {
            let name = p.file_stem().unwrap().to_string_lossy().into_owned();
            v.push((name, std::fs::read_to_string(&p).unwrap().trim().to_owned()));
        }
    }
    v
}

/// Tokens only in the 0600 files under `tokens/`, never in a unit.
fn assert_tokens_only_in_secret_files(e: &Exported, tokens: &[(String, String)]) {
    for (path, (contents, mode)) in &e.files {
        if path.starts_with("tokens/") {
            assert_eq!(*mode, 0o600, "{path} is {mode:o}");
            continue;
        }
        for (name, value) in tokens {
            assert!(
                !contents.contains(value.as_str()),
                "the token of {name} is in {path}"
            );
        }
    }
    assert_eq!(e.mode("install.sh"), 0o700);
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `systemd-analyze`: `$MEW_SYSTEMD_ANALYZE`, else PATH. Missing: a failure
/// with `MEW_REQUIRE_VALIDATORS`, else a loud skip (`None`).
fn validator() -> Option<PathBuf> {
    let found = std::env::var_os("MEW_SYSTEMD_ANALYZE")
        .map(PathBuf::from)
        .or_else(|| which("systemd-analyze"));
    if found.is_none() {
        assert!(
            std::env::var_os("MEW_REQUIRE_VALIDATORS").is_none(),
            "systemd-analyze not installed and MEW_REQUIRE_VALIDATORS is set"
        );
        eprintln!("\n\n*** skipped: systemd-analyze not installed ***\n\n");
    }
    found
}

/// `systemd-analyze verify [--user]` on every unit of the export: it must
/// succeed without a word about our units (an unknown key, a bad value, a
/// missing executable or dependency).
fn verify(e: &Exported, user: bool) {
    let Some(sa) = validator() else { return };
    let units: Vec<PathBuf> = e
        .files
        .keys()
        .filter(|p| p.ends_with(".service") || p.ends_with(".target"))
        .map(|p| e.out.join(p))
        .collect();
    let runtime = tempfile::tempdir().unwrap();
    std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut cmd = Command::new(sa);
    cmd.arg("verify");
    if user {
        // The user manager's verify needs a runtime directory, even offline.
        cmd.arg("--user").env("XDG_RUNTIME_DIR", runtime.path());
    }
    let o = cmd.args(&units).current_dir(&e.out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let ours: Vec<&str> = stderr.lines().filter(|l| l.contains("mew-")).collect();
    assert!(
        o.status.success() && ours.is_empty(),
        "systemd-analyze verify: {}\n{stderr}",
        o.status
    );
}

#[test]
fn every_key() {
    let space = space_copy("tests/fixtures/export/every-key");
    let dir = space.path().canonicalize().unwrap();
    let e = export(&dir, &[]);
    let u = |n: &str| format!("mew-every-key-{n}.service");

    // The target wants what starts with the space, not `manual`, not `off`.
    let t = "mew-every-key.target";
    let wants = e.one(t, "Wants");
    for n in ["migrate", "db", "web", "worker", "probe-exec"] {
        assert!(wants.contains(&u(n)), "{wants}");
    }
    assert!(!wants.contains(&u("manual")), "{wants}");
    assert_eq!(e.one(t, "WantedBy"), "default.target");
    assert!(e.files.contains_key(&u("manual")));
    assert!(!e.files.contains_key(&u("off")));
    e.note("off.disabled");
    e.note("manual.auto_start");
    for n in ["migrate", "db", "web", "worker", "manual"] {
        assert_eq!(e.one(&u(n), "PartOf"), t);
        assert_eq!(e.one(&u(n), "KillMode"), "control-group");
        assert_eq!(e.one(&u(n), "StandardOutput"), "journal");
    }

    // A task.
    let m = u("migrate");
    assert_eq!(e.one(&m, "Type"), "oneshot");
    assert_eq!(e.one(&m, "RemainAfterExit"), "yes");
    assert_eq!(e.one(&m, "ExecStart"), "/bin/sh -c \"/bin/echo migrating\"");

    // db: cwd, env, env_file, tcp readiness, stop, memory, restarts.
    let db = u("db");
    assert_eq!(e.one(&db, "Type"), "exec");
    assert_eq!(
        e.one(&db, "WorkingDirectory"),
        dir.join("data").display().to_string()
    );
    let env = e.lines(&db, "Environment");
    assert!(env.contains(&"\"GREETING=hello world\""), "{env:?}");
    assert!(env.contains(&"\"PGDATA=./pg\""), "{env:?}");
    assert!(env.contains(&"\"MEW_PROCESS=db\""), "{env:?}");
    assert_eq!(
        e.one(&db, "EnvironmentFile"),
        dir.join("app.env").display().to_string()
    );
    assert_eq!(e.one(&db, "ExecStart"), "/bin/sleep 100000");
    let post = e.one(&db, "ExecStartPost");
    assert!(post.contains("/dev/tcp/"), "{post}");
    // period 2s, initial_delay 1s, timeout 1s, host, port.
    assert!(
        post.ends_with("\" mew-ready 2 1 1 127.0.0.1 5432"),
        "{post}"
    );
    assert_eq!(e.one(&db, "TimeoutStartSec"), "infinity");
    assert_eq!(e.one(&db, "KillSignal"), "SIGINT");
    assert_eq!(e.one(&db, "TimeoutStopSec"), "30s");
    assert_eq!(e.one(&db, "MemoryMax"), "536870912");
    assert_eq!(e.one(&db, "Restart"), "always");
    assert_eq!(e.one(&db, "RestartSec"), "2s");
    assert!(
        e.file(&db)
            .contains("\n#RestartSteps=4\n#RestartMaxDelaySec=60s\n")
    );
    e.note("db.backoff");

    // web: dependencies, http readiness, on-failure with max_restarts, health.
    let web = u("web");
    let deps = format!("{} {}", u("db"), u("migrate"));
    assert_eq!(e.one(&web, "Requires"), deps);
    assert_eq!(e.one(&web, "After"), deps);
    let post = e.one(&web, "ExecStartPost");
    assert!(
        post.ends_with("\" mew-ready 1 0 1 127.0.0.1 8080 /health 127.0.0.1:8080"),
        "{post}"
    );
    assert_eq!(e.one(&web, "Restart"), "on-failure");
    assert_eq!(
        e.one(&web, "RestartForceExitStatus"),
        "SIGHUP SIGINT SIGTERM SIGPIPE"
    );
    assert_eq!(e.one(&web, "StartLimitBurst"), "5");
    assert_eq!(e.one(&web, "StartLimitIntervalSec"), "infinity");
    e.note("web.max_restarts");
    let wh = "mew-every-key-web-health.service";
    assert_eq!(e.one(&web, "Wants"), wh);
    assert_eq!(e.one(wh, "BindsTo"), web);
    assert_eq!(e.one(wh, "After"), web);
    let env = e.lines(wh, "Environment");
    assert!(env.contains(&"\"MEW_HEALTH_ACTION=restart\""), "{env:?}");
    assert!(env.contains(&"\"MEW_HEALTH_THRESHOLD=2\""), "{env:?}");
    assert!(env.contains(&"\"MEW_HEALTH_SCOPE=--user\""), "{env:?}");
    let hs = e.one(wh, "ExecStart");
    assert!(hs.contains("--no-block restart"), "{hs}");
    assert!(
        hs.ends_with("\" mew-health 15 0 1 127.0.0.1 8080 /live 127.0.0.1:8080"),
        "{hs}"
    );

    // worker: a log probe (not translated), a health check that only reports.
    let w = u("worker");
    assert_eq!(e.one(&w, "Requires"), web);
    assert!(e.lines(&w, "ExecStartPost").is_empty());
    e.note("worker.ready.log");
    e.note("worker.scrollback");
    e.note("worker.depends_on.web");
    let whe = "mew-every-key-worker-health.service";
    assert!(
        e.lines(whe, "Environment")
            .contains(&"\"MEW_HEALTH_ACTION=none\"")
    );
    assert!(
        e.one(whe, "ExecStart")
            .ends_with("\" mew-health 10 0 1 /bin/true")
    );

    // probe-exec: an exec readiness probe.
    let pe = e.one(&u("probe-exec"), "ExecStartPost");
    assert!(pe.contains("/bin/sh -c"), "{pe}");
    assert!(pe.ends_with("\" mew-ready 1 0 1 /bin/true"), "{pe}");

    // The env_file's secret stays in the env_file.
    for (path, (contents, _)) in &e.files {
        assert!(!contents.contains("s3cr3t"), "SECRET_KEY's value in {path}");
    }
    e.note("logs");
    // No participant: no tokens.
    assert!(!e.files.keys().any(|k| k.starts_with("tokens/")));
    verify(&e, true);
}

#[test]
fn mew_space_gateway_agents_tokens() {
    let space = space_copy("tests/fixtures/export/mew-space");
    let dir = space.path().canonicalize().unwrap();
    let e = export(&dir, &[]);
    let u = |n: &str| format!("mew-export-demo-{n}.service");
    let toks = tokens(&dir);
    assert_eq!(toks.len(), 3, "{toks:?}");

    let gw = u("gateway");
    let start = e.one(&gw, "ExecStart");
    assert!(start.starts_with(MEW), "{start}");
    assert!(
        start.contains(" gateway start --port 8123 --space-config "),
        "{start}"
    );
    let post = e.one(&gw, "ExecStartPost");
    assert!(
        post.ends_with("\" mew-ready 1 0 1 127.0.0.1 8123 /health 127.0.0.1:8123"),
        "{post}"
    );
    assert_eq!(
        e.one(&gw, "EnvironmentFile"),
        "%E/mew/export-demo/gateway.env"
    );

    // Every participant waits for the gateway to be ready.
    for n in ["echo-agent", "files", "feed"] {
        assert_eq!(e.one(&u(n), "Requires"), gw);
        assert_eq!(e.one(&u(n), "After"), gw);
        assert_eq!(
            e.one(&u(n), "EnvironmentFile"),
            format!("%E/mew/export-demo/{n}.env")
        );
    }
    let ea = u("echo-agent");
    let start = e.one(&ea, "ExecStart");
    assert_eq!(
        start,
        "/bin/sh -c \"echo agent on $$MEW_GATEWAY; exec sleep 100000\" --token \"${MEW_TOKEN_ECHO_AGENT}\""
    );
    let env = e.lines(&ea, "Environment");
    assert!(
        env.contains(&"\"MEW_GATEWAY=ws://localhost:8123\""),
        "{env:?}"
    );
    assert!(env.contains(&"\"LOG_LEVEL=debug\""), "{env:?}");
    assert!(!env.iter().any(|l| l.contains("MEW_TOKEN")), "{env:?}");
    assert_eq!(e.one(&ea, "Restart"), "on-failure");
    assert!(e.one(&u("files"), "ExecStart").starts_with(MEW));
    let feed = e.one(&u("feed"), "ExecStart");
    assert!(feed.contains(" client connect "), "{feed}");
    assert!(feed.contains("/.mew/fifos/feed-in"), "{feed}");
    e.note("feed.fifo");
    e.note("human.participant");

    // The tokens: each participant its own, the gateway all of them.
    let value = |n: &str| toks.iter().find(|(k, _)| k == n).unwrap().1.clone();
    let own = e.file("tokens/echo-agent.env");
    assert!(own.contains(&format!("MEW_TOKEN_ECHO_AGENT=\"{}\"", value("echo-agent"))));
    assert!(!own.contains(&value("files")));
    let all = e.file("tokens/gateway.env");
    for n in ["echo-agent", "files", "feed"] {
        assert!(all.contains(&value(n)), "{n} missing in gateway.env");
    }
    assert_tokens_only_in_secret_files(&e, &toks);
    for (path, (contents, _)) in &e.files {
        assert!(
            !contents.contains("echo-token"),
            "a literal token in {path}"
        );
    }

    // install.sh: the tokens to %E, the units linked, the target enabled.
    let sh = e.file("install.sh");
    assert!(
        sh.contains("${XDG_CONFIG_HOME:-$HOME/.config}/mew/export-demo"),
        "{sh}"
    );
    assert!(sh.contains("install -m 0600"), "{sh}");
    assert!(sh.contains("systemctl --user link"), "{sh}");
    assert!(
        sh.contains("systemctl --user enable mew-export-demo.target"),
        "{sh}"
    );
    let n = Command::new("sh")
        .arg("-n")
        .arg(e.out.join("install.sh"))
        .status()
        .unwrap();
    assert!(n.success());
    verify(&e, true);
}

#[test]
fn demo() {
    let space = space_copy("assets/examples/demo");
    let dir = space.path().canonicalize().unwrap();
    let e = export(&dir, &[]);
    let u = |n: &str| format!("mew-demo-{n}.service");
    // The stand-in gateway's log probe: started is ready.
    assert!(e.lines(&u("gateway"), "ExecStartPost").is_empty());
    e.note("gateway.ready.log");
    assert_eq!(e.one(&u("prompt"), "Requires"), u("gateway"));
    assert_eq!(e.one(&u("setup"), "Type"), "oneshot");
    assert_eq!(e.one(&u("logger"), "Requires"), u("setup"));
    assert_eq!(e.one(&u("logger"), "After"), u("setup"));
    // A multi-line shell line on one ExecStart=, `%` and `$` doubled.
    let logger = e.one(&u("logger"), "ExecStart");
    assert!(
        logger.starts_with("/bin/sh -c \"i=0\\nwhile :; do\\n"),
        "{logger}"
    );
    assert!(logger.contains("cache hit ratio %%d%%%%\\\\n"), "{logger}");
    assert!(logger.contains("i=$$((i + 1))"), "{logger}");
    assert_eq!(e.one(&u("crasher"), "Restart"), "on-failure");
    assert_eq!(e.one(&u("crasher"), "RestartSec"), "1s");
    assert!(
        e.file(&u("crasher"))
            .contains("#RestartSteps=3\n#RestartMaxDelaySec=8s\n")
    );
    assert_eq!(e.one(&u("clock"), "KillSignal"), "SIGTERM");
    e.note("terminal");
    assert_tokens_only_in_secret_files(&e, &tokens(&dir));
    verify(&e, true);
}

/// Values a unit file must quote: `%` (specifiers), `$` (expansion),
/// quotes, backslashes, newlines, a lone `;`; a token used through `env`.
#[test]
fn quoting_and_tokens_in_env() {
    let space = tempfile::tempdir().unwrap();
    let dir = space.path().canonicalize().unwrap();
    std::fs::create_dir_all(dir.join(".mew")).unwrap();
    std::fs::write(
        dir.join(".mew/space.yaml"),
        r#"space: { id: "Quote me: 100%" }
gateway: false
participants:
  agent:
    command: /bin/echo
    args: ["50%", "$$HOME", "a \"b\" \\c", ";", "two\nlines", "${TOKEN}"]
    env: { PCT: "100%", DOLLAR: "$$x", NL: "a\nb", QUOTE: "say \"hi\"", AGENT_TOKEN: "tok=${TOKEN}" }
    auto_start: true
    depends_on_gateway: false
"#,
    )
    .unwrap();
    let e = export(&dir, &[]);
    let unit = "mew-Quote-me-100-agent.service";
    assert_eq!(
        e.one(unit, "ExecStart"),
        r#"/bin/echo "50%%" "$$HOME" "a \"b\" \\c" \; "two\nlines" "${MEW_TOKEN_AGENT}""#
    );
    let env = e.lines(unit, "Environment");
    for want in [
        r#""PCT=100%%""#,
        r#""DOLLAR=$x""#,
        r#""NL=a\nb""#,
        r#""QUOTE=say \"hi\"""#,
    ] {
        assert!(env.contains(&want), "{want} not in {env:?}");
    }
    assert!(!env.iter().any(|l| l.contains("AGENT_TOKEN")), "{env:?}");
    assert!(
        e.one("mew-Quote-me-100.target", "Description")
            .contains("100%%")
    );
    let toks = tokens(&dir);
    let secret = e.file("tokens/agent.env");
    assert!(
        secret.contains(&format!("MEW_TOKEN_AGENT=\"{}\"", toks[0].1)),
        "{secret}"
    );
    assert!(
        secret.contains(&format!("AGENT_TOKEN=\"tok={}\"", toks[0].1)),
        "{secret}"
    );
    assert_tokens_only_in_secret_files(&e, &toks);
    verify(&e, true);
}

/// `--system`: system units, the target wanted by multi-user.target, tokens
/// under /etc/mew, `User=` the exporting user unless root.
#[test]
fn system_units() {
    let space = space_copy("tests/fixtures/export/mew-space");
    let dir = space.path().canonicalize().unwrap();
    let e = export(&dir, &["--system"]);
    assert_eq!(
        e.one("mew-export-demo.target", "WantedBy"),
        "multi-user.target"
    );
    let ea = "mew-export-demo-echo-agent.service";
    let root = nix_is_root();
    assert_eq!(e.lines(ea, "User").is_empty(), root);
    let sh = e.file("install.sh");
    assert!(sh.contains("tokens=\"/etc/mew/export-demo\""), "{sh}");
    assert!(sh.contains("systemctl --system link"), "{sh}");
    verify(&e, false);
}

fn nix_is_root() -> bool {
    let o = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim() == "0"
}
