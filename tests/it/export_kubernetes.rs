//! `mew space export --format kubernetes`, with the real binary, in temp
//! copies of the export fixtures (an export makes `.mew/tokens`), each
//! result checked by `kubernetes-validate --strict`.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{MEW, copy_dir, repo};

/// A temp copy of a fixture space (the tokens a previous run left are not copied).
fn space_copy(rel: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    copy_dir(&repo().join(rel), tmp.path());
    let tokens = tmp.path().join(".mew").join("tokens");
    if tokens.is_dir() {
        std::fs::remove_dir_all(&tokens).unwrap();
    }
    tmp
}

/// A temp space from a space.yaml text.
fn space_from(yaml: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tmp.path().join(".mew")).unwrap();
    std::fs::write(tmp.path().join(".mew").join("space.yaml"), yaml).unwrap();
    tmp
}

struct Out {
    dir: tempfile::TempDir,
    stderr: String,
    space: Vec<Value>,
    secrets: Vec<Value>,
}

impl Out {
    fn text(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
    fn deployment(&self) -> &Value {
        self.space
            .iter()
            .find(|d| d["kind"] == "Deployment")
            .unwrap()
    }
    fn pod(&self) -> &Value {
        &self.deployment()["spec"]["template"]["spec"]
    }
    fn container(&self, name: &str) -> &Value {
        let pod = self.pod();
        pod["initContainers"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(pod["containers"].as_array().unwrap())
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name}"))
    }
    fn names(&self, list: &str) -> Vec<String> {
        self.pod()[list]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    }
    fn note(&self, what: &str) -> bool {
        self.stderr
            .lines()
            .any(|l| l.starts_with(&format!("mew export: `{what}` is not translated as is")))
    }
    fn files(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn parse_docs(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| {
            d.lines()
                .any(|l| !l.starts_with('#') && !l.trim().is_empty())
        })
        .map(|d| serde_saphyr::from_str::<Value>(d).unwrap_or_else(|e| panic!("{e}\n{d}")))
        .collect()
}

fn export(space: &Path, extra: &[&str]) -> Out {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(MEW)
        .args(["space", "export", "--format", "kubernetes", "--space-dir"])
        .arg(space)
        .arg("--out")
        .arg(dir.path())
        .args(extra)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "export failed: {stderr}");
    let space = parse_docs(&std::fs::read_to_string(dir.path().join("space.yaml")).unwrap());
    let secrets = std::fs::read_to_string(dir.path().join("secret.yaml"))
        .map(|t| parse_docs(&t))
        .unwrap_or_default();
    Out {
        dir,
        stderr,
        space,
        secrets,
    }
}

/// `kubernetes-validate`: `$MEW_KUBERNETES_VALIDATE`, else on PATH, else
/// /tmp/kv/bin. Missing: a failure with `MEW_REQUIRE_VALIDATORS`, else a
/// loud skip.
fn validator() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MEW_KUBERNETES_VALIDATE") {
        return Some(PathBuf::from(p));
    }
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("kubernetes-validate"))
            .find(|p| p.is_file())
    });
    on_path.or_else(|| {
        let p = PathBuf::from("/tmp/kv/bin/kubernetes-validate");
        p.is_file().then_some(p)
    })
}

/// Validate every file of an export (strict: unknown fields are errors),
/// against the validator's default Kubernetes version, or `version`.
fn validate(out: &Out, version: Option<&str>) {
    let Some(v) = validator() else {
        assert!(
            std::env::var_os("MEW_REQUIRE_VALIDATORS").is_none(),
            "kubernetes-validate not installed and MEW_REQUIRE_VALIDATORS is set"
        );
        eprintln!(
            "!!!!! skipped: kubernetes-validate not installed (set MEW_KUBERNETES_VALIDATE) !!!!!"
        );
        return;
    };
    let mut cmd = Command::new(&v);
    cmd.arg("--strict");
    if let Some(k) = version {
        cmd.args(["-k", k]);
    }
    for f in out.files() {
        cmd.arg(out.dir.path().join(f));
    }
    let o = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "kubernetes-validate failed:\n{text}");
    assert!(!text.contains("ERROR"), "{text}");
    assert!(text.contains("passed"), "{text}");
}

/// The participants' tokens are in the 0600 secret.yaml and nowhere else.
fn tokens_only_in_secret(space: &Path, out: &Out) -> HashMap<String, String> {
    let mut tokens = HashMap::new();
    let dir = space.join(".mew").join("tokens");
    for e in std::fs::read_dir(&dir).into_iter().flatten() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = name.strip_suffix(".token") {
            let v = std::fs::read_to_string(e.path()).unwrap().trim().to_owned();
            tokens.insert(id.to_owned(), v);
        }
    }
    let secret = out.text("secret.yaml");
    let manifest = out.text("space.yaml");
    for (id, t) in &tokens {
        assert!(
            secret.contains(t.as_str()),
            "token of {id} not in secret.yaml"
        );
        assert!(
            !manifest.contains(t.as_str()),
            "token of {id} in space.yaml"
        );
        assert!(!out.stderr.contains(t.as_str()), "token of {id} on stderr");
    }
    let mode = std::fs::metadata(out.dir.path().join("secret.yaml"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    tokens
}

fn str_list(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn env_of<'a>(c: &'a Value, name: &str) -> Option<&'a Value> {
    c["env"].as_array()?.iter().find(|e| e["name"] == name)
}

/// What Kubernetes makes of `$(NAME)` and `$$` in a command, arg or env value.
fn k8s_expand(s: &str, vars: &HashMap<&str, &str>) -> String {
    let b: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == '$' && i + 1 < b.len() {
            if b[i + 1] == '$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == '('
                && let Some(end) = b[i + 2..].iter().position(|c| *c == ')')
            {
                let name: String = b[i + 2..i + 2 + end].iter().collect();
                match vars.get(name.as_str()) {
                    Some(v) => out.push_str(v),
                    None => out.push_str(&format!("$({name})")),
                }
                i += 3 + end;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

#[test]
fn mew_space_is_one_pod_with_the_gateway_as_a_sidecar_and_a_service() {
    let space = space_copy("tests/fixtures/export/mew-space");
    let out = export(space.path(), &["--image", "example.org/mew:1"]);
    assert_eq!(out.files(), ["secret.yaml", "space.yaml"]);
    validate(&out, None);
    validate(&out, Some("1.29.0"));
    let tokens = tokens_only_in_secret(space.path(), &out);
    assert_eq!(tokens.len(), 3, "{tokens:?}");

    let d = out.deployment();
    assert_eq!(d["metadata"]["name"], "export-demo");
    assert_eq!(d["spec"]["replicas"], 1);
    assert_eq!(d["spec"]["strategy"]["type"], "Recreate");
    let pod = out.pod();
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["terminationGracePeriodSeconds"], 10);
    assert_eq!(pod["shareProcessNamespace"], true);
    assert_eq!(pod["enableServiceLinks"], false);
    let dir = space.path().display().to_string();
    assert_eq!(pod["volumes"][0]["hostPath"]["path"], dir.as_str());
    // The FIFOs first, then the gateway (a sidecar: participants wait for it).
    assert_eq!(out.names("initContainers"), ["mew-fifos", "gateway"]);
    assert_eq!(out.names("containers"), ["echo-agent", "files", "feed"]);
    let fifos = out.container("mew-fifos");
    let script = fifos["command"][2].as_str().unwrap();
    assert!(
        script.contains(&format!("'{dir}/.mew/fifos/feed-in'")),
        "{script}"
    );
    assert!(script.contains("mkfifo -m 600"), "{script}");

    let gw = out.container("gateway");
    assert_eq!(gw["restartPolicy"], "Always");
    assert_eq!(gw["image"], "example.org/mew:1");
    assert_eq!(str_list(&gw["command"]), ["mew"]);
    let args = str_list(&gw["args"]);
    assert_eq!(args[..4], ["gateway", "start", "--port", "8123"]);
    assert_eq!(args[args.len() - 2..], ["--host", "0.0.0.0"]);
    // `ready` is the startupProbe the participants wait for, and a readinessProbe.
    let sp = &gw["startupProbe"];
    assert_eq!(sp["httpGet"]["port"], 8123);
    assert_eq!(sp["httpGet"]["path"], "/health");
    assert!(sp["httpGet"].get("host").is_none());
    assert_eq!(sp["periodSeconds"], 1);
    assert_eq!(sp["failureThreshold"], i64::from(i32::MAX));
    assert_eq!(gw["readinessProbe"]["httpGet"]["port"], 8123);
    assert_eq!(gw["readinessProbe"]["failureThreshold"], 3);
    assert_eq!(gw["ports"][0]["containerPort"], 8123);
    // The gateway knows every participant's token, from the Secret.
    for v in ["MEW_TOKEN_ECHO_AGENT", "MEW_TOKEN_FILES", "MEW_TOKEN_FEED"] {
        let e = env_of(gw, v).unwrap();
        assert_eq!(e["valueFrom"]["secretKeyRef"]["name"], "export-demo-tokens");
        assert_eq!(e["valueFrom"]["secretKeyRef"]["key"], v);
    }

    let agent = out.container("echo-agent");
    assert_eq!(str_list(&agent["command"]), ["/bin/sh"]);
    let args = str_list(&agent["args"]);
    assert_eq!(args[3], "$(MEW_TOKEN_ECHO_AGENT)");
    let vars = HashMap::from([("MEW_TOKEN_ECHO_AGENT", tokens["echo-agent"].as_str())]);
    assert_eq!(k8s_expand(&args[3], &vars), tokens["echo-agent"]);
    assert_eq!(
        env_of(agent, "MEW_GATEWAY").unwrap()["value"],
        "ws://localhost:8123"
    );
    assert!(env_of(agent, "MEW_TOKEN_FILES").is_none());
    assert_eq!(agent["stdin"], true);
    assert_eq!(agent["tty"], true);
    assert_eq!(agent["workingDir"], dir.as_str());
    let files = out.container("files");
    assert_eq!(str_list(&files["command"]), ["mew"]);
    assert!(str_list(&files["args"]).contains(&"ws://127.0.0.1:8123".to_owned()));

    let svc = out.space.iter().find(|d| d["kind"] == "Service").unwrap();
    assert_eq!(svc["metadata"]["name"], "export-demo-gateway");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8123);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], "gateway");
    assert_eq!(
        svc["spec"]["selector"],
        d["spec"]["selector"]["matchLabels"]
    );
    let secret = &out.secrets[0];
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["name"], "export-demo-tokens");

    for n in [
        "feed.fifo",
        "gateway.command",
        "echo-agent.restart_policy",
        "space.dir",
        "logs",
        "restart_policy",
    ] {
        assert!(out.note(n), "no note for {n}:\n{}", out.stderr);
    }
    // --image given: no note about the default image lacking mew.
    assert!(!out.note("image"), "{}", out.stderr);
}

#[test]
fn every_key_is_translated_or_noted() {
    let space = space_copy("tests/fixtures/export/every-key");
    let out = export(space.path(), &[]);
    assert_eq!(out.files(), ["secret.yaml", "space.yaml"]);
    validate(&out, None);
    let pod = out.pod();
    assert_eq!(pod["terminationGracePeriodSeconds"], 20);
    assert_eq!(pod["os"]["name"], "linux");
    // migrate: a task; db and web: sidecars (something depends on them).
    assert_eq!(out.names("initContainers"), ["migrate", "db", "web"]);
    assert_eq!(out.names("containers"), ["worker", "probe-exec"]);
    let migrate = out.container("migrate");
    assert!(migrate.get("restartPolicy").is_none());
    assert_eq!(str_list(&migrate["args"]), ["-c", "/bin/echo migrating"]);
    assert_eq!(migrate["image"], "debian:stable-slim");

    let db = out.container("db");
    assert_eq!(db["restartPolicy"], "Always");
    assert_eq!(str_list(&db["command"]), ["/bin/sleep"]);
    assert_eq!(
        db["workingDir"],
        space.path().join("data").display().to_string().as_str()
    );
    assert_eq!(db["resources"]["limits"]["memory"], "512Mi");
    assert_eq!(db["lifecycle"]["stopSignal"], "SIGINT");
    let sp = &db["startupProbe"];
    assert_eq!(sp["tcpSocket"]["port"], 5432);
    assert_eq!(
        (
            &sp["periodSeconds"],
            &sp["timeoutSeconds"],
            &sp["initialDelaySeconds"]
        ),
        (&2.into(), &1.into(), &1.into())
    );
    assert_eq!(db["readinessProbe"]["failureThreshold"], 5);
    assert_eq!(env_of(db, "GREETING").unwrap()["value"], "hello world");
    assert_eq!(env_of(db, "PGDATA").unwrap()["value"], "./pg");
    let sk = &env_of(db, "SECRET_KEY").unwrap()["valueFrom"]["secretKeyRef"];
    assert_eq!(sk["name"], "every-key-env");
    assert_eq!(sk["key"], "db.SECRET_KEY");
    // env_file values only in the 0600 secret.
    assert!(!out.text("space.yaml").contains("s3cr3t"));
    assert!(!out.text("space.yaml").contains("production"));
    assert!(out.text("secret.yaml").contains("s3cr3t"));
    assert_eq!(out.secrets.len(), 1);
    assert_eq!(out.secrets[0]["stringData"]["db.SECRET_KEY"], "s3cr3t");
    assert_eq!(out.secrets[0]["stringData"]["db.APP_MODE"], "production");

    let web = out.container("web");
    assert_eq!(web["startupProbe"]["httpGet"]["port"], 8080);
    assert_eq!(web["startupProbe"]["httpGet"]["path"], "/health");
    let lp = &web["livenessProbe"];
    assert_eq!(lp["httpGet"]["path"], "/live");
    assert_eq!(lp["periodSeconds"], 15);
    assert_eq!(lp["failureThreshold"], 2);
    assert_eq!(lp["terminationGracePeriodSeconds"], 5);

    let worker = out.container("worker");
    assert!(worker.get("readinessProbe").is_none());
    assert!(worker.get("livenessProbe").is_none());
    let pe = out.container("probe-exec");
    assert_eq!(
        str_list(&pe["readinessProbe"]["exec"]["command"]),
        ["/bin/sh", "-c", "/bin/true"]
    );
    assert!(pe.get("startupProbe").is_none());
    for absent in ["manual", "off"] {
        assert!(!out.names("containers").contains(&absent.to_owned()));
    }
    assert!(!out.space.iter().any(|d| d["kind"] == "Service"));

    for n in [
        "manual.auto_start",
        "off.disabled",
        "migrate.restart_policy",
        "db.stop_signal",
        "db.stop_timeout",
        "db.backoff",
        "db.ready.tcp",
        "db.depends_on",
        "web.max_restarts",
        "web.restart_policy",
        "web.ready.http",
        "worker.ready.log",
        "worker.health.action",
        "worker.scrollback",
        "probe-exec.depends_on",
        "logs",
        "space.dir",
        "environment",
    ] {
        assert!(out.note(n), "no note for {n}:\n{}", out.stderr);
    }
}

#[test]
fn demo_scripts_survive_kubernetes_expansion() {
    let space = space_copy("assets/examples/demo");
    let out = export(space.path(), &[]);
    validate(&out, None);
    validate(&out, Some("1.29.0"));
    tokens_only_in_secret(space.path(), &out);
    assert_eq!(out.names("initContainers"), ["gateway", "setup"]);
    assert_eq!(
        out.names("containers"),
        ["prompt", "logger", "crasher", "clock"]
    );
    // The scripts as `check` resolves them, after Kubernetes' `$(…)`/`$$` expansion.
    let check = Command::new(MEW)
        .args(["space", "check", "--json", "--space-dir"])
        .arg(space.path())
        .output()
        .unwrap();
    let plan: Value = serde_json::from_slice(&check.stdout).unwrap();
    let vars = HashMap::new();
    for p in plan["processes"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let c = out.container(name);
        let mut argv = str_list(&c["command"]);
        argv.extend(str_list(&c["args"]));
        let argv: Vec<String> = argv.iter().map(|a| k8s_expand(a, &vars)).collect();
        assert_eq!(argv, str_list(&p["argv"]), "{name}");
    }
    let gw = out.text("space.yaml");
    assert!(gw.contains("$$(date +%H:%M:%S)"), "{gw}");
    assert!(gw.contains("i=$$((i + 1))"), "{gw}");
    // A literal block for each script.
    assert!(gw.contains("            - |\n              echo \"gateway: warming up...\"\n"));
    assert!(out.note("gateway.ready.log"));
    assert!(out.note("prompt.depends_on.gateway"));
    assert!(out.note("crasher.backoff"));
    // No native process: the default image needs no mew.
    assert!(!out.note("image"));
    assert!(out.space.iter().any(|d| d["kind"] == "Service"));
}

#[test]
fn quoting_tokens_and_names() {
    let space = space_from(
        r#"
space: { id: "Quoting: Space!", name: "Quoting \"space\"" }
gateway: { port: 8234 }
participants:
  Agent_One:
    auto_start: true
    command: /bin/printf
    args: ["%s $HOME $(date) $$ 'q' \"dq\" 100%%\n", "--token=${TOKEN}", "${SPACE_DIR}"]
    env: { TOKEN_COPY: "${TOKEN}", PCT: "100% $(not) $$ $", MULTI: "line1\n  line2\n" }
    ready: { exec: "test -n \"${TOKEN}\"", period: 200ms, timeout: 1500ms }
    health: { tcp: "db.internal:5432" }
    max_memory: 1000000
"#,
    );
    let out = export(space.path(), &[]);
    validate(&out, None);
    let tokens = tokens_only_in_secret(space.path(), &out);
    let token = tokens["Agent_One"].as_str();
    assert_eq!(out.deployment()["metadata"]["name"], "quoting-space");
    assert_eq!(
        out.deployment()["metadata"]["annotations"]["mew/space"],
        "Quoting: Space!"
    );
    assert_eq!(
        out.deployment()["metadata"]["annotations"]["mew/name"],
        "Quoting \"space\""
    );
    assert!(out.note("Agent_One.name"), "{}", out.stderr);
    let c = out.container("agent-one");
    let vars = HashMap::from([("MEW_TOKEN_AGENT_ONE", token)]);
    let args: Vec<String> = str_list(&c["args"])
        .iter()
        .map(|a| k8s_expand(a, &vars))
        .collect();
    assert_eq!(
        args,
        [
            // mew's own `$$` is a `$`.
            "%s $HOME $(date) $ 'q' \"dq\" 100%%\n".to_owned(),
            format!("--token={token}"),
            space.path().display().to_string(),
        ]
    );
    // Env: the token first (a value refers to it), then the values.
    assert_eq!(c["env"][0]["name"], "MEW_TOKEN_AGENT_ONE");
    let value = |n: &str| k8s_expand(env_of(c, n).unwrap()["value"].as_str().unwrap(), &vars);
    assert_eq!(value("TOKEN_COPY"), token);
    assert_eq!(value("PCT"), "100% $(not) $ $");
    assert_eq!(value("MULTI"), "line1\n  line2\n");
    // An exec probe is a shell: the token by its variable.
    let rp = &c["readinessProbe"];
    assert_eq!(
        str_list(&rp["exec"]["command"]),
        ["/bin/sh", "-c", "test -n \"${MEW_TOKEN_AGENT_ONE}\""]
    );
    assert_eq!(rp["periodSeconds"], 1);
    assert_eq!(rp["timeoutSeconds"], 2);
    assert!(out.note("Agent_One.ready.period"), "{}", out.stderr);
    assert!(out.note("Agent_One.ready.timeout"), "{}", out.stderr);
    // A health check: a startupProbe holds the liveness back until ready.
    assert!(c.get("startupProbe").is_some());
    assert_eq!(c["livenessProbe"]["tcpSocket"]["host"], "db.internal");
    assert_eq!(c["livenessProbe"]["tcpSocket"]["port"], 5432);
    assert_eq!(c["resources"]["limits"]["memory"], "1000000");
}

#[test]
fn a_pod_always_has_a_regular_container() {
    // Every long-running process is depended on: the last one is the regular container.
    let space = space_from(
        "space: { id: chain }\nprocesses:\n  a: { command: 'sleep 100' }\n  b: { command: 'sleep 100', depends_on: [a] }\n  t: { command: 'true', one_shot: true, depends_on: [b] }\n",
    );
    let out = export(space.path(), &[]);
    validate(&out, None);
    assert_eq!(out.names("initContainers"), ["a", "b", "t"]);
    // b is needed by t, which is an init container after it: b stays a sidecar.
    assert_eq!(out.names("containers"), ["idle"]);
    assert!(out.note("processes"), "{}", out.stderr);
    assert_eq!(out.files(), ["space.yaml"]);

    let space = space_from(
        "space: { id: chain2 }\nprocesses:\n  a: { command: 'sleep 100' }\n  b: { command: 'sleep 100', depends_on: { a: ready } }\n",
    );
    let out = export(space.path(), &[]);
    validate(&out, None);
    assert_eq!(out.names("initContainers"), ["a"]);
    assert_eq!(out.names("containers"), ["b"]);
    assert!(!out.note("processes"));

    let space = space_from(
        "space: { id: chain3 }\nprocesses:\n  a: { command: 'sleep 100' }\n  b: { command: 'sleep 100', depends_on: [a] }\n  c: { command: 'sleep 100', depends_on: [b] }\n",
    );
    let out = export(space.path(), &[]);
    validate(&out, None);
    // c depends on b, b on a: a and b are sidecars, c the regular container.
    assert_eq!(out.names("initContainers"), ["a", "b"]);
    assert_eq!(out.names("containers"), ["c"]);
}

#[test]
fn json_plan_has_the_files_and_notes() {
    let space = space_copy("tests/fixtures/export/mew-space");
    let out = Command::new(MEW)
        .args([
            "space",
            "export",
            "--format",
            "kubernetes",
            "--json",
            "--space-dir",
        ])
        .arg(space.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["format"], "kubernetes");
    let files = v["files"].as_array().unwrap();
    assert_eq!(files[0]["path"], "space.yaml");
    assert_eq!(files[1]["path"], "secret.yaml");
    assert_eq!(files[1]["mode"], 0o600);
    assert!(!files[0]["contents"].as_str().unwrap().contains('\u{0}'));
    assert!(
        v["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["key"] == "space.dir")
    );
}
