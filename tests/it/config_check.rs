//! `mew space check` on fixture spaces: the real binary, exit codes, messages.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{mew_in, text};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/config")
        .join(name)
}

/// Check a fixture that must fail: exit 2, nothing on stdout, every `want` on stderr.
fn fails(name: &str, want: &[&str]) -> String {
    let out = mew_in(&fixture(name), &["space", "check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{name}: stderr:\n{err}");
    assert!(
        out.stdout.is_empty(),
        "{name}: stdout: {}",
        text(&out.stdout)
    );
    for w in want {
        assert!(err.contains(w), "{name}: stderr lacks {w:?}:\n{err}");
    }
    err
}

#[test]
fn syntax_error() {
    let err = fails(
        "err-syntax",
        &[
            "error: .mew/space.yaml:3:14: invalid YAML: unclosed quote",
            "3 |     command: \"npm start\n  |              ^",
        ],
    );
    assert!(
        err.ends_with("1 configuration error in .mew/space.yaml; nothing was started\n"),
        "{err}"
    );
}

#[test]
fn unknown_dependency() {
    fails(
        "err-unknown-dep",
        &[
            ".mew/space.yaml:6:18: `web` depends on `databse`, which is not defined",
            "6 |     depends_on: [databse]\n  |                  ^",
            "= help: did you mean `database`?",
        ],
    );
}

#[test]
fn cycle() {
    fails(
        "err-cycle",
        &[".mew/space.yaml:4:18: dependency cycle: a -> b -> a"],
    );
}

#[test]
fn duplicate_name() {
    fails(
        "err-duplicate",
        &[
            ".mew/space.yaml:5:3: duplicate name `web` in processes: already defined in participants on line 2",
        ],
    );
}

#[test]
fn empty_command() {
    fails(
        "err-empty-command",
        &[".mew/space.yaml:3:14: `web.command`: the command is empty"],
    );
}

#[test]
fn bad_signal() {
    fails(
        "err-bad-signal",
        &[
            ".mew/space.yaml:4:18: `web.stop_signal`: `SIGSTOPPLEASE` is not a supported stop signal",
        ],
    );
}

#[test]
fn bad_duration() {
    fails(
        "err-bad-duration",
        &[".mew/space.yaml:4:19: `web.stop_timeout`: `10` has no unit: write `10s` for seconds"],
    );
}

#[test]
fn bad_size() {
    fails(
        "err-bad-size",
        &[".mew/space.yaml:4:17: `web.max_memory`: `500X` is not a size"],
    );
}

#[test]
fn disabled_dependency() {
    fails(
        "err-disabled-dep",
        &[
            ".mew/space.yaml:7:18: `web` starts with the space but depends on `db`, which is disabled",
        ],
    );
}

#[test]
fn probe_without_target() {
    fails(
        "err-probe-no-target",
        &[".mew/space.yaml:4:12: `web.ready`: the probe has no target"],
    );
}

#[test]
fn bad_health_checks() {
    let err = fails(
        "err-health",
        &[
            "error: .mew/space.yaml:4:15: `web.health.log`: a health check cannot watch the output",
            "4 |     health: { log: \"listening\", period: 5s }\n  |               ^",
            "= help: `log` matches one line once, which suits `ready`; a health check asks again every `period`: use `http`, `tcp` or `exec`",
            "error: .mew/space.yaml:7:34: `db.health.action`: unknown action `restat`; expected `restart` or `none`",
            "= help: did you mean `restart`?",
            "warning: .mew/space.yaml:10:39: unknown key `perod` in `cache.health` is ignored",
            "2 configuration errors in .mew/space.yaml; nothing was started",
        ],
    );
    // One error for `log`, not a second one for a missing target.
    assert!(!err.contains("has no target"), "{err}");
}

#[test]
fn bad_restart_policy() {
    fails(
        "err-restart-policy",
        &[
            ".mew/space.yaml:4:21: `web.restart_policy`: unknown restart policy `on-failur`",
            "did you mean `on-failure`?",
        ],
    );
}

#[test]
fn type_mismatch() {
    fails(
        "err-type-mismatch",
        &[".mew/space.yaml:3:14: `web.command`: expected a string, found a list"],
    );
}

#[test]
fn unsafe_name() {
    fails(
        "err-bad-name",
        &[".mew/space.yaml:2:3: processes: `../escape` is not a valid name"],
    );
}

#[test]
fn all_errors_reported_at_once_in_file_order() {
    let err = fails(
        "err-many",
        &[
            "7 configuration errors",
            ":3:9: `gateway.port`",
            ":6:14: `a.command`: the command is empty",
            ":7:18: `a.stop_signal`",
            ":10:18: `b` depends on `zzz`",
            ":11:19: `b.stop_timeout`",
            ":12:17: `b.max_memory`",
            ":15:12: `c.ready`: the probe has no target",
        ],
    );
    let lines: Vec<u32> = err
        .lines()
        .filter_map(|l| l.strip_prefix("error: .mew/space.yaml:"))
        .filter_map(|l| l.split(':').next()?.parse().ok())
        .collect();
    assert_eq!(lines, [3, 6, 7, 10, 11, 12, 15]);
}

#[test]
fn procfile_errors() {
    fails(
        "err-procfile",
        &[
            "Procfile:2:1: expected `name: command`, found `this line has no colon`",
            "Procfile:3:1: `../bad` is not a valid name",
        ],
    );
}

#[test]
fn nothing_found_suggests_init() {
    let err = fails(
        "empty-dir",
        &[
            "no space config found",
            ".mew/space.yaml",
            "space.yaml",
            "Procfile",
            "mew init",
        ],
    );
    assert!(err.contains("help:"), "{err}");
}

#[test]
fn missing_explicit_config() {
    let out = mew_in(
        &fixture("good-basic"),
        &["--config", "nope.yaml", "space", "check"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("nope.yaml"));
}

#[test]
fn good_space_plan() {
    let out = mew_in(&fixture("good-basic"), &["space", "check"]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let pos = |needle: &str| {
        s.find(needle)
            .unwrap_or_else(|| panic!("no {needle:?} in\n{s}"))
    };
    // Start order: gateway, db, migrate, web.
    assert!(pos("1. gateway (gateway)") < pos("2. db (process)"));
    assert!(pos("2. db (process)") < pos("3. migrate (process, one-shot)"));
    assert!(pos("3. migrate") < pos("4. web (process)"));
    assert!(
        s.contains("argv     /bin/sh -c './gateway --port 9100'"),
        "{s}"
    );
    assert!(s.contains("argv     npm run dev -- --port 3000"), "{s}");
    // Environment values are masked unless --show-values; mew's own are not.
    assert!(s.contains("env      API_URL='****'"), "{s}");
    assert!(s.contains("env      MEW_PROCESS=web"), "{s}");
    assert!(s.contains("--show-values"), "{s}");
    assert!(
        s.contains("ready    http GET http://127.0.0.1:9100/health"),
        "{s}"
    );
    assert!(
        s.contains("ready    tcp 127.0.0.1:5432 (every 500ms"),
        "{s}"
    );
    assert!(
        s.contains("after    migrate completed_successfully, gateway ready"),
        "{s}"
    );
    assert!(s.contains("restart  on-failure (at most 5 times)"), "{s}");
    assert!(s.contains("stop     SIGINT, SIGKILL after 20s"), "{s}");
    assert!(s.ends_with("ok: 4 processes, 0 warnings\n"), "{s}");

    let out = mew_in(&fixture("good-basic"), &["space", "check", "--show-values"]);
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(s.contains("env      API_URL=http://127.0.0.1:9100"), "{s}");
    assert!(!s.contains("****"), "{s}");
}

#[test]
fn good_space_json() {
    let out = mew_in(&fixture("good-basic"), &["space", "check", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["ok"], true);
    assert_eq!(v["space"]["id"], "shop");
    assert_eq!(v["space"]["name"], "Shop (dev)");
    assert_eq!(v["space"]["source"], "space_yaml");
    assert_eq!(v["gateway_port"], 9100);
    let names: Vec<&str> = v["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gateway", "db", "migrate", "web"]);
    let gw = &v["processes"][0];
    assert_eq!(gw["kind"], "gateway");
    assert_eq!(gw["ready"]["kind"], "http");
    assert_eq!(gw["ready"]["url"], "http://127.0.0.1:9100/health");
    assert_eq!(gw["ready"]["period_ms"], 1000);
    assert_eq!(gw["ready"]["failure_threshold"], 3);
    let web = &v["processes"][3];
    assert_eq!(
        web["argv"],
        serde_json::json!(["npm", "run", "dev", "--", "--port", "3000"])
    );
    assert!(web["cwd"].as_str().unwrap().ends_with("good-basic/web"));
    assert_eq!(web["env"][0], serde_json::json!(["API_URL", "****"]));
    assert_eq!(web["env"][3], serde_json::json!(["MEW_PROCESS", "web"]));
    assert_eq!(
        web["depends_on"][0],
        serde_json::json!({"name": "migrate", "condition": "completed_successfully"})
    );
    assert_eq!(web["restart_policy"], "on-failure");
    assert_eq!(web["max_restarts"], 5);
    assert_eq!(web["max_memory"], 1u64 << 30);
    assert_eq!(
        web["backoff"],
        serde_json::json!({"initial_ms": 500, "max_ms": 30000, "multiplier": 2.0})
    );
    assert_eq!(web["stop_signal"], "SIGTERM");
    assert_eq!(web["stop_timeout_ms"], 5000);
    assert_eq!(web["scrollback"], 2000);
    assert_eq!(web["auto_start"], true);
    assert_eq!(v["processes"][2]["one_shot"], true);
    assert_eq!(v["shutdown_timeout_ms"], 10000);
    assert_eq!(v["logs"]["keep"], 5);
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert_eq!(v["participants"], serde_json::json!([]));
}

#[test]
fn error_json_and_report() {
    let out = mew_in(&fixture("err-unknown-dep"), &["space", "check", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["line"], 6);
    assert_eq!(v["errors"][0]["col"], 18);
    assert!(
        v["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("databse")
    );
    assert!(text(&out.stderr).contains(".mew/space.yaml:6:18"));
}

#[test]
fn upstream_mew_file_loads_with_warnings() {
    let out = mew_in(&fixture("upstream-mew"), &["space", "check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["space"]["id"], "my-space");
    let procs = v["processes"].as_array().unwrap();
    assert_eq!(procs.len(), 4);
    // No `gateway:` block: mew runs its own, first.
    let gw = &procs[0];
    assert_eq!(gw["name"], "gateway");
    assert_eq!(gw["kind"], "gateway");
    assert_eq!(
        (gw["argv"][1].as_str(), gw["argv"][2].as_str()),
        (Some("gateway"), Some("start"))
    );
    assert_eq!(gw["ready"]["kind"], "http");
    let agent = &procs[1];
    assert_eq!(agent["name"], "echo-agent");
    assert_eq!(agent["kind"], "participant");
    assert_eq!(
        agent["argv"],
        serde_json::json!([
            "node",
            "./.mew/agents/echo.js",
            "--gateway",
            "ws://localhost:8080",
            "--space",
            "my-space",
            "--token",
            "****"
        ])
    );
    let env = agent["env"].as_array().unwrap();
    assert!(
        env.contains(&serde_json::json!(["MEW_TOKEN_ECHO_AGENT", "****"])),
        "{env:?}"
    );
    assert!(
        env.contains(&serde_json::json!(["API_KEY", "****"])),
        "{env:?}"
    );
    assert_eq!(agent["restart_policy"], "on-failure");
    // Every upstream participant kind runs: the FIFO client and the MCP
    // bridge are mew's own binary, their tokens in the environment.
    let client = &procs[2];
    assert_eq!(client["name"], "test-client");
    assert_eq!(
        (client["argv"][1].as_str(), client["argv"][2].as_str()),
        (Some("client"), Some("connect"))
    );
    let bridge = &procs[3];
    assert_eq!(bridge["name"], "fs-bridge");
    let argv: Vec<&str> = bridge["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(argv[1..3], ["bridge", "start"]);
    assert!(
        argv.ends_with(&[
            "--",
            "npx",
            "-y",
            "@modelcontextprotocol/server-filesystem",
            "."
        ]),
        "{argv:?}"
    );
    for p in [client, bridge] {
        assert!(!p.to_string().contains("--token"), "{p}");
        assert!(
            p["env"].as_array().unwrap().iter().any(|e| e[0]
                .as_str()
                .unwrap()
                .starts_with("MEW_TOKEN_")
                && e[1] == "****"),
            "{p}"
        );
    }
    let parts: Vec<(&str, &str)> = v["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["name"].as_str().unwrap(), p["note"].as_str().unwrap()))
        .collect();
    assert_eq!(parts, [("human", "no command")]);
    let warnings: Vec<&str> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["message"].as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:#?}");
    // Upstream's `--token ${TOKEN}` puts the token in `ps`.
    assert!(warnings[0].contains("`echo-agent.args[6]` puts `${TOKEN}` on its command line"));
    assert!(warnings[1].contains("`${MEW_TEST_SURELY_UNSET_KEY}` in `echo-agent.env.API_KEY`"));
}

#[test]
fn upstream_mew_file_text_plan() {
    let out = mew_in(&fixture("upstream-mew"), &["space", "check"]);
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    assert!(
        s.contains("participants without a process:\n  human: no command"),
        "{s}"
    );
    assert!(s.contains("bridge start --gateway"), "{s}");
    assert!(s.contains("--token '****'"), "{s}");
    assert!(s.contains("1. gateway (gateway)"), "{s}");
    assert!(s.contains("after    gateway ready"), "{s}");
    assert!(s.ends_with("ok: 4 processes, 2 warnings\n"), "{s}");
}

#[test]
fn typo_warnings_do_not_fail() {
    let out = mew_in(&fixture("warn-typos"), &["space", "check"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    for (line, key, want) in [
        (3, "comand", "command"),
        (5, "autostart", "auto_start"),
        (6, "restart-policy", "restart_policy"),
        (7, "depends-on", "depends_on"),
        (8, "env-file", "env_file"),
    ] {
        let head = format!(
            "warning: .mew/space.yaml:{line}:5: unknown key `{key}` in process `web` is ignored"
        );
        assert!(s.contains(&head), "{head:?} not in\n{s}");
        assert!(
            s.contains(&format!("help: did you mean `{want}`?")),
            "{want}"
        );
    }
}

#[test]
fn procfile_plan() {
    let out = mew_in(&fixture("procfile"), &["space", "check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["space"]["source"], "procfile");
    assert_eq!(v["space"]["id"], "procfile");
    let p = &v["processes"];
    assert_eq!(p[0]["name"], "web");
    assert_eq!(
        p[0]["argv"],
        serde_json::json!(["/bin/sh", "-c", "python3 -m http.server $PORT"])
    );
    // `.env` values are never shown; the PORT mew assigns is.
    assert_eq!(p[0]["env"][0], serde_json::json!(["GREETING", "****"]));
    assert_eq!(p[0]["env"][1], serde_json::json!(["PORT", "6000"]));
    assert_eq!(p[1]["name"], "worker");
    assert_eq!(p[1]["env"][1], serde_json::json!(["PORT", "6100"]));
}

#[test]
fn explicit_procfile_and_config_flags() {
    let dir = fixture("good-basic");
    let procfile = fixture("procfile").join("Procfile");
    let out = mew_in(
        &dir,
        &[
            "--procfile",
            procfile.to_str().unwrap(),
            "space",
            "check",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["space"]["source"], "procfile");
    // The .env comes from the space dir, here good-basic which has none.
    assert_eq!(
        v["processes"][0]["env"][0],
        serde_json::json!(["PORT", "5000"])
    );

    let cfg = fixture("upstream-mew").join(".mew/space.yaml");
    let out = mew_in(
        &dir,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "space",
            "check",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["space"]["id"], "my-space");
    assert!(
        v["space"]["dir"]
            .as_str()
            .unwrap()
            .ends_with("upstream-mew")
    );

    let out = Command::new(env!("CARGO_BIN_EXE_mew"))
        .args(["space", "check", "--json"])
        .current_dir(&dir)
        .env("MEW_SPACE_CONFIG", &cfg)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["space"]["id"], "my-space");

    let out = mew_in(
        Path::new("/"),
        &[
            "--space-dir",
            dir.to_str().unwrap(),
            "space",
            "check",
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["space"]["id"], "shop");
}

#[test]
fn demo_example_checks_clean() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/examples/demo");
    let out = mew_in(&dir, &["space", "check", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["warnings"], serde_json::json!([]));
    assert_eq!(v["processes"][0]["name"], "gateway");
    assert_eq!(v["processes"][0]["ready"]["kind"], "log");
}

/// The `--json` schema's keys and their order (issue #15: written from
/// structs, the schema stays what docs/cli.md says).
#[test]
fn json_schema_keys_in_order() {
    let out = mew_in(&fixture("good-basic"), &["space", "check", "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    let keys = |v: &serde_json::Value| -> Vec<String> {
        v.as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    assert_eq!(
        keys(&v),
        [
            "ok",
            "space",
            "gateway_port",
            "processes",
            "participants",
            "logs",
            "shutdown_timeout_ms",
            "ui_keys",
            "warnings"
        ]
    );
    assert_eq!(
        keys(&v["space"]),
        [
            "id",
            "name",
            "description",
            "dir",
            "config",
            "source",
            "sources"
        ]
    );
    let web = v["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "web"))
        .expect("web");
    assert_eq!(
        keys(web),
        [
            "name",
            "kind",
            "argv",
            "cwd",
            "env",
            "depends_on",
            "ready",
            "health",
            "restart_policy",
            "max_restarts",
            "backoff",
            "stop_signal",
            "stop_timeout_ms",
            "max_memory",
            "scrollback",
            "auto_start",
            "disabled",
            "one_shot",
            "line",
            "source"
        ]
    );
    assert_eq!(
        keys(&web["backoff"]),
        ["initial_ms", "max_ms", "multiplier"]
    );
    assert_eq!(keys(&v["logs"]), ["dir", "rotate_size", "keep"]);
    let err = mew_in(&fixture("err-unknown-dep"), &["space", "check", "--json"]);
    let e: serde_json::Value = serde_json::from_slice(&err.stdout).expect("valid JSON");
    assert_eq!(keys(&e), ["ok", "errors", "warnings"]);
    assert_eq!(keys(&e["errors"][0]), ["file", "line", "col", "message"]);
}
