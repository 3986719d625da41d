//! Unit tests for the validation rules, defaults and interpolation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

fn dir() -> PathBuf {
    PathBuf::from("/space/demo")
}

fn parse(yaml: &str) -> Result<SpaceConfig, ConfigError> {
    parse_yaml(yaml, Path::new("/space/demo/.mew/space.yaml"), &dir())
}

fn ok(yaml: &str) -> SpaceConfig {
    match parse(yaml) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error:\n{e}"),
    }
}

/// The errors as `line:col message` strings.
fn errs(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e
            .errors()
            .iter()
            .map(|d| {
                let l = d.loc.clone().unwrap_or_default();
                format!("{}:{} {}", l.line, l.col, d.message)
            })
            .collect(),
    }
}

fn one_err(yaml: &str) -> String {
    let e = errs(yaml);
    assert_eq!(e.len(), 1, "{e:#?}");
    e.into_iter().next().unwrap_or_default()
}

fn warnings(cfg: &SpaceConfig) -> Vec<String> {
    cfg.warnings.iter().map(|d| d.message.clone()).collect()
}

#[test]
fn defaults_are_applied() {
    let c = ok("processes:\n  web:\n    command: ./serve\n");
    assert_eq!(c.id, "demo");
    assert_eq!(c.name, "demo");
    assert_eq!(c.gateway_port, 8080);
    assert_eq!(c.source, ConfigSource::SpaceYaml);
    assert_eq!(c.logs.dir, dir().join(".mew/logs"));
    assert_eq!(c.logs.rotate_size, 10 << 20);
    assert_eq!(c.logs.keep, 5);
    assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
    let p = &c.processes[0];
    assert_eq!(p.kind, ProcKind::Process);
    assert_eq!(p.restart_policy, RestartPolicy::No);
    assert_eq!(p.max_restarts, None);
    assert_eq!(p.backoff, Backoff::default());
    assert_eq!(p.stop_signal, StopSignal::default());
    assert_eq!(p.stop_timeout, Duration::from_secs(5));
    assert_eq!(p.scrollback, 2000);
    assert!(p.auto_start && !p.disabled && !p.one_shot);
    assert_eq!(p.ready, None);
    assert!(p.depends_on.is_empty());
    assert_eq!(p.loc, Loc::new(2, 3));
}

#[test]
fn default_id_is_a_valid_name() {
    let c = parse_yaml(
        "processes: { a: { command: x } }\n",
        Path::new("/p/my project/space.yaml"),
        Path::new("/p/my project"),
    )
    .unwrap();
    assert_eq!(c.id, "my-project");
    assert_eq!(slug("..x"), "x");
    assert_eq!(slug(""), "space");
}

#[test]
fn every_key_is_read() {
    let c = ok(r#"
space: { id: s1, name: "Space One", description: d }
gateway: { command: gw, port: 9000, args: [--port, "${PORT}"], stop_signal: INT }
logs: { dir: var/logs, rotate_size: 1M, keep: 2 }
shutdown_timeout: 3s
ui: { keys: { quit: q, restart: R } }
processes:
  db:
    command: postgres
    ready: { tcp: "127.0.0.1:5432", initial_delay: 1s, period: 500ms, timeout: 2s, failure_threshold: 5 }
  web:
    command: npm run dev
    cwd: web
    env: { A: 1, B: "two", C: true, D: }
    depends_on: { db: ready }
    restart_policy: always
    max_restarts: 0
    backoff: { initial: 1s, max: 1m, multiplier: 1.5 }
    stop_signal: 2
    stop_timeout: 1m
    max_memory: 500M
    scrollback: 100
    auto_start: false
  task:
    command: make
    one_shot: true
    disabled: true
"#);
    assert_eq!((c.id.as_str(), c.name.as_str()), ("s1", "Space One"));
    assert_eq!(c.description.as_deref(), Some("d"));
    assert_eq!(c.gateway_port, 9000);
    assert_eq!(c.logs.dir, dir().join("var/logs"));
    assert_eq!((c.logs.rotate_size, c.logs.keep), (1 << 20, 2));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(3));
    assert_eq!(
        c.ui_keys,
        vec![("quit".into(), "q".into()), ("restart".into(), "R".into())]
    );
    let names: Vec<&str> = c.processes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["gateway", "db", "web", "task"]);
    let gw = c.gateway().unwrap();
    assert_eq!(gw.stop_signal.name, "SIGINT");
    assert_eq!(
        gw.args.as_deref(),
        Some(&["--port".to_string(), "${PORT}".to_string()][..])
    );
    let db = c.process("db").unwrap();
    let probe = db.ready.clone().unwrap();
    assert_eq!(
        probe.kind,
        ProbeKind::Tcp {
            host: "127.0.0.1".into(),
            port: "5432".into()
        }
    );
    assert_eq!(probe.initial_delay, Duration::from_secs(1));
    assert_eq!(probe.period, Duration::from_millis(500));
    assert_eq!(probe.timeout, Duration::from_secs(2));
    assert_eq!(probe.failure_threshold, 5);
    let web = c.process("web").unwrap();
    assert_eq!(web.cwd.as_deref(), Some("web"));
    assert_eq!(
        web.env,
        vec![
            ("A".into(), "1".into()),
            ("B".into(), "two".into()),
            ("C".into(), "true".into()),
            ("D".into(), String::new())
        ]
    );
    assert_eq!(
        web.depends_on,
        vec![Dependency {
            name: "db".into(),
            condition: DependCondition::Ready
        }]
    );
    assert_eq!(web.restart_policy, RestartPolicy::Always);
    assert_eq!(web.max_restarts, Some(0));
    assert_eq!(web.backoff.initial, Duration::from_secs(1));
    assert_eq!(web.backoff.max, Duration::from_secs(60));
    assert_eq!(web.backoff.multiplier, 1.5);
    assert_eq!(web.stop_signal.number, libc::SIGINT);
    assert_eq!(web.stop_timeout, Duration::from_secs(60));
    assert_eq!(web.max_memory, Some(500 << 20));
    assert_eq!(web.scrollback, 100);
    assert!(!web.auto_start);
    let task = c.process("task").unwrap();
    assert!(task.one_shot && task.disabled);
    // Processes do not wait for the gateway unless they ask to.
    assert!(c.process("db").unwrap().depends_on.is_empty());
}

#[test]
fn gateway_defaults() {
    let c = ok(
        "gateway: { command: gw }\nparticipants:\n  a: { command: agent }\n  b: { command: agent, depends_on_gateway: false }\n  c: { command: agent, depends_on: { gateway: started } }\n",
    );
    let gw = c.gateway().unwrap();
    assert_eq!(gw.name, "gateway");
    assert_eq!(
        gw.ready.as_ref().map(|p| p.kind.clone()),
        Some(ProbeKind::Http {
            url: "http://127.0.0.1:${PORT}/health".into()
        })
    );
    let dep = |n: &str| c.process(n).unwrap().depends_on.clone();
    assert_eq!(
        dep("a"),
        vec![Dependency {
            name: "gateway".into(),
            condition: DependCondition::Ready
        }]
    );
    assert!(dep("b").is_empty());
    assert_eq!(
        dep("c"),
        vec![Dependency {
            name: "gateway".into(),
            condition: DependCondition::Started
        }]
    );
    let c = ok("gateway: { command: gw, ready: false }\n");
    assert_eq!(c.gateway().unwrap().ready, None);
    let c = ok("gateway: { command: gw, ready: none }\n");
    assert_eq!(c.gateway().unwrap().ready, None);
    // A gateway block without a command runs mew's own gateway on its port.
    let c = ok("gateway: { port: 9100 }\nparticipants: { a: { command: x } }\n");
    let g = c.gateway().unwrap();
    assert!(g.native);
    assert_eq!(g.args.as_ref().unwrap()[..2], ["gateway", "start"]);
    assert_eq!(c.gateway_port, 9100);
    assert_eq!(c.process("a").unwrap().depends_on[0].name, "gateway");
    // Participants and no gateway block: mew's own gateway, restarted on failure.
    let c = ok("participants: { a: { command: x }, h: { tokens: [t] } }\n");
    let g = c.gateway().unwrap();
    assert!(g.native);
    assert_eq!(g.restart_policy, RestartPolicy::OnFailure);
    assert!(matches!(
        g.ready.as_ref().unwrap().kind,
        ProbeKind::Http { .. }
    ));
    assert_eq!(c.processes[0].name, "gateway");
    assert_eq!(c.process("a").unwrap().depends_on[0].name, "gateway");
    // `gateway: false`: none, and a warning for participants that need one.
    let c = ok("gateway: false\nparticipants: { a: { command: x } }\n");
    assert!(c.gateway().is_none());
    assert!(c.process("a").unwrap().depends_on.is_empty());
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("nothing in this space runs a gateway"))
    );
    // Processes only: no gateway.
    let c = ok("processes: { a: { command: x } }\n");
    assert!(c.gateway().is_none());
}

#[test]
fn depends_on_list_defaults() {
    let c = ok(
        "gateway: { command: gw }\nprocesses:\n  a: { command: x }\n  b: { command: y, depends_on: [a, gateway] }\n",
    );
    assert_eq!(
        c.process("b").unwrap().depends_on,
        vec![
            Dependency {
                name: "a".into(),
                condition: DependCondition::Started
            },
            Dependency {
                name: "gateway".into(),
                condition: DependCondition::Ready
            },
        ]
    );
}

#[test]
fn participants_that_are_not_processes() {
    let c = ok(r#"
participants:
  agent: { command: node, args: [a.js], tokens: [t1], capabilities: [ { kind: chat } ], auto_start: true }
  human: { capabilities: [ { kind: "*" } ] }
  nothing:
  listener: { fifo: true }
  watcher: { auto_connect: true, output_log: ./w.log }
  lonely: { auto_connect: true }
"#);
    assert_eq!(c.processes.len(), 2);
    assert!(c.processes[0].native);
    assert_eq!(c.processes[1].kind, ProcKind::Participant);
    assert_eq!(c.processes[1].tokens, vec!["t1".to_string()]);
    let notes: Vec<(&str, &str)> = c
        .participants
        .iter()
        .map(|p| (p.name.as_str(), p.note.as_str()))
        .collect();
    assert_eq!(notes[0], ("human", "no command"));
    assert_eq!(notes[1], ("nothing", "no command"));
    assert_eq!(
        notes[2],
        (
            "listener",
            "FIFOs .mew/fifos/listener-in, listener-out (connect with `mew client connect`)"
        )
    );
    assert_eq!(notes[3], ("watcher", "output log ./w.log (from the start)"));
    assert_eq!(notes[4].0, "lonely");
    let w = warnings(&c);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(w[0].contains("participant `lonely` (auto_connect) is not connected"));
    assert_eq!(
        c.fifos,
        vec![FifoSpec {
            name: "listener".into(),
            output: true
        }]
    );
}

#[test]
fn a_participant_command_starts_only_with_auto_start_as_upstream() {
    let c = ok(
        "participants:\n  a: { command: x }\n  b: { command: y, auto_start: true }\nprocesses:\n  p: { command: z }\n",
    );
    assert!(!c.process("a").unwrap().auto_start);
    assert!(c.process("b").unwrap().auto_start);
    // `processes:` are mew's: they start by default.
    assert!(c.process("p").unwrap().auto_start);
    let w = warnings(&c);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].contains("participant `a` has a command but no `auto_start: true`")
            && w[0].contains("mew space start a"),
        "{w:#?}"
    );
    // The upstream log names: `logs/<name>.log`, the gateway's, none for processes.
    assert_eq!(
        c.process("a").unwrap().upstream_log.as_deref(),
        Some("a.log")
    );
    assert_eq!(
        c.gateway().unwrap().upstream_log.as_deref(),
        Some("gateway.log")
    );
    assert_eq!(c.process("p").unwrap().upstream_log, None);
    assert!(c.logs.upstream_paths);
    let c = ok(
        "logs: { upstream_paths: false }\nparticipants: { a: { command: x, auto_start: true } }\n",
    );
    assert!(!c.logs.upstream_paths);
}

#[test]
fn an_mcp_bridge_participant_runs_mews_bridge() {
    let c = ok(r#"
space: { id: s1 }
participants:
  fs:
    type: mcp-bridge
    auto_start: true
    tokens: [fs-token]
    mcp_server:
      command: node
      args: ["./server.js", "a,b", "--flag"]
      env: { ROOT: /tmp }
      cwd: ./tools
    bridge_config: { init_timeout: 5000, reconnect: false, max_reconnects: 7 }
"#);
    let b = c.process("fs").unwrap();
    assert!(b.native);
    assert!(b.auto_start);
    assert_eq!(b.kind, ProcKind::Participant);
    assert_eq!(b.cwd.as_deref(), Some("./tools"));
    assert_eq!(b.env, vec![("ROOT".to_string(), "/tmp".to_string())]);
    assert_eq!(b.upstream_log.as_deref(), Some("fs-bridge.log"));
    let args = b.args.as_ref().unwrap();
    assert_eq!(
        args[..],
        [
            "bridge",
            "start",
            "--gateway",
            "ws://127.0.0.1:${PORT}",
            "--space",
            "${SPACE}",
            "--participant-id",
            "fs",
            "--init-timeout",
            "5000",
            "--reconnect",
            "false",
            "--max-reconnects",
            "7",
            "--",
            "node",
            "./server.js",
            "a,b",
            "--flag"
        ]
    );
    // It waits for the gateway, like any participant.
    assert_eq!(b.depends_on[0].name, "gateway");
    // Without auto_start it is not started (upstream).
    let c = ok("participants:\n  fs: { type: mcp-bridge, mcp_server: { command: x } }\n");
    assert!(!c.process("fs").unwrap().auto_start);
    // No mcp_server: an error at its line.
    let e = one_err("participants:\n  fs: { type: mcp-bridge }\n");
    assert!(
        e.starts_with("2:3 participant `fs` (type mcp-bridge) has no `mcp_server`"),
        "{e}"
    );
    let e = one_err("participants:\n  fs: { type: mcp-bridge, mcp_server: { args: [a] } }\n");
    assert!(e.contains("`fs.mcp_server` has no `command`"), "{e}");
    let e = one_err(
        "participants:\n  fs: { type: mcp-bridge, mcp_server: { command: x }, bridge_config: { init_timeout: soon } }\n",
    );
    assert!(e.contains("fs.bridge_config.init_timeout"), "{e}");
}

#[test]
fn a_connected_fifo_participant_runs_mews_client() {
    let c = ok(r#"
participants:
  tc: { fifo: true, auto_connect: true, output_log: ./logs/tc.log, tokens: [t] }
  duplex: { fifo: true, auto_connect: true }
"#);
    let tc = c.process("tc").unwrap();
    assert!(tc.native && tc.auto_start);
    assert_eq!(tc.upstream_log.as_deref(), Some("tc-client.log"));
    let args = tc.args.as_ref().unwrap();
    assert_eq!(args[..2], ["client", "connect"]);
    let tail: Vec<&str> = args[8..].iter().map(String::as_str).collect();
    assert_eq!(
        tail,
        [
            "--fifo-in",
            "${SPACE_DIR}/.mew/fifos/tc-in",
            "--output-file",
            "./logs/tc.log"
        ]
    );
    let d = c.process("duplex").unwrap().args.as_ref().unwrap();
    assert_eq!(
        d[d.len() - 2..],
        ["--fifo-out", "${SPACE_DIR}/.mew/fifos/duplex-out"]
    );
    assert_eq!(
        c.fifos,
        vec![
            FifoSpec {
                name: "tc".into(),
                output: false
            },
            FifoSpec {
                name: "duplex".into(),
                output: true
            }
        ]
    );
    assert_eq!(
        c.fifos[0].input_path(Path::new("/sp")),
        Path::new("/sp/.mew/fifos/tc-in")
    );
}

#[test]
fn type_mismatches() {
    let e = one_err("processes:\n  a:\n    command: [node, x]\n");
    assert!(
        e.starts_with("3:14 `a.command`: expected a string, found a list"),
        "{e}"
    );
    assert!(e.contains("args"));
    let e = one_err("processes:\n  a: { command: x, args: x }\n");
    assert!(
        e.contains("`a.args`: expected a list of strings, found a string"),
        "{e}"
    );
    let e = one_err("processes:\n  a: { command: x, disabled: maybe }\n");
    assert!(
        e.contains("`a.disabled`: expected `true` or `false`, found a string"),
        "{e}"
    );
    let e = one_err("processes: [a, b]\n");
    assert!(e.starts_with("1:12 `processes`: expected a mapping"), "{e}");
    let e = one_err("- a\n");
    assert!(
        e.contains("expected a mapping at the top level, found a list"),
        "{e}"
    );
    let e = one_err("processes:\n  a: { command: x, scrollback: -1 }\n");
    assert!(e.contains("out of range"), "{e}");
}

#[test]
fn empty_command() {
    assert!(
        one_err("processes:\n  a: { command: \"  \" }\n")
            .contains("`a.command`: the command is empty")
    );
    assert!(one_err("processes:\n  a: { command: }\n").contains("the command is empty"));
    assert!(one_err("processes:\n  a: { cwd: x }\n").contains("process `a` has no `command`"));
}

#[test]
fn bad_values_are_located() {
    let e = one_err("processes:\n  a:\n    command: x\n    stop_signal: SIGFOO\n");
    assert!(
        e.starts_with("4:18 `a.stop_signal`: `SIGFOO` is not a supported stop signal"),
        "{e}"
    );
    let e = one_err("processes:\n  a:\n    command: x\n    stop_timeout: 10\n");
    assert!(
        e.starts_with("4:19 `a.stop_timeout`: `10` has no unit"),
        "{e}"
    );
    let e = one_err("processes:\n  a:\n    command: x\n    max_memory: 5X\n");
    assert!(
        e.starts_with("4:17 `a.max_memory`: `5X` is not a size"),
        "{e}"
    );
    let e = one_err("processes:\n  a:\n    command: x\n    restart_policy: on-failur\n");
    assert!(
        e.starts_with("4:21 `a.restart_policy`: unknown restart policy `on-failur`"),
        "{e}"
    );
    assert!(e.contains("did you mean `on-failure`?"), "{e}");
    let e = one_err("processes:\n  a: { command: x, backoff: { initial: 1m, max: 1s } }\n");
    assert!(
        e.contains("`initial` (60000 ms) is longer than `max`"),
        "{e}"
    );
    let e = one_err("processes:\n  a: { command: x, backoff: { multiplier: 0.5 } }\n");
    assert!(e.contains("a.backoff.multiplier"), "{e}");
    let e = one_err("gateway: { command: x, port: 70000 }\n");
    assert!(
        e.contains("`gateway.port`: expected a port number (1-65535), found `70000`"),
        "{e}"
    );
    let e = one_err("shutdown_timeout: forever\n");
    assert!(
        e.contains("`shutdown_timeout`: `forever` is not a duration"),
        "{e}"
    );
    let e = one_err(
        "processes:\n  a: { command: x, depends_on: { b: healthy } }\n  b: { command: y }\n",
    );
    assert!(e.contains("unknown condition `healthy`"), "{e}");
}

#[test]
fn restart_policy_values() {
    for (text, want) in [
        ("no", RestartPolicy::No),
        ("'no'", RestartPolicy::No),
        ("on-failure", RestartPolicy::OnFailure),
        ("on_failure", RestartPolicy::OnFailure),
        ("always", RestartPolicy::Always),
    ] {
        let c = ok(&format!(
            "processes:\n  a: {{ command: x, restart_policy: {text} }}\n"
        ));
        assert_eq!(c.processes[0].restart_policy, want, "{text}");
    }
    assert!(
        one_err("processes:\n  a: { command: x, restart_policy: true }\n")
            .contains("expected `no`, `on-failure` or `always`")
    );
    let c = ok("processes:\n  a: { command: y, disabled: false }\n");
    assert_eq!(c.processes[0].command, "y");
}

#[test]
fn probes() {
    let probe = |ready: &str| {
        let c = ok(&format!(
            "processes:\n  a: {{ command: x, ready: {ready} }}\n"
        ));
        c.processes[0].ready.clone().map(|p| p.kind)
    };
    assert_eq!(
        probe("{ http: \"http://localhost:3000/\" }"),
        Some(ProbeKind::Http {
            url: "http://localhost:3000/".into()
        })
    );
    assert_eq!(
        probe("{ tcp: 5432 }"),
        Some(ProbeKind::Tcp {
            host: "127.0.0.1".into(),
            port: "5432".into()
        })
    );
    assert_eq!(
        probe("{ tcp: \"db:${PORT}\" }"),
        Some(ProbeKind::Tcp {
            host: "db".into(),
            port: "${PORT}".into()
        })
    );
    assert_eq!(
        probe("{ exec: pg_isready }"),
        Some(ProbeKind::Exec {
            command: "pg_isready".into()
        })
    );
    assert_eq!(
        probe("{ log: \"listening on \\\\d+\" }"),
        Some(ProbeKind::Log {
            regex: "listening on \\d+".into()
        })
    );
    assert_eq!(probe("false"), None);

    let e = one_err("processes:\n  a: { command: x, ready: { period: 2s } }\n");
    assert!(
        e.starts_with("2:27 `a.ready`: the probe has no target"),
        "{e}"
    );
    let e = one_err("processes:\n  a: { command: x, ready: { http: \"http://x/\", tcp: 80 } }\n");
    assert!(e.contains("found both `http` and `tcp`"), "{e}");
    assert!(
        one_err("processes:\n  a: { command: x, ready: { log: \"(\" } }\n")
            .contains("invalid regex")
    );
    assert!(
        one_err("processes:\n  a: { command: x, ready: { http: \"https://x/\" } }\n")
            .contains("only `http://`")
    );
    assert!(
        one_err("processes:\n  a: { command: x, ready: { tcp: \"host\" } }\n")
            .contains("HOST:PORT")
    );
    assert!(
        one_err("processes:\n  a: { command: x, ready: { exec: x, period: 0s } }\n")
            .contains("longer than 0")
    );
    assert!(
        one_err("processes:\n  a: { command: x, ready: { exec: x, failure_threshold: 0 } }\n")
            .contains("at least 1")
    );
    assert!(one_err("processes:\n  a: { command: x, ready: true }\n").contains("expected a probe"));
}

#[test]
fn names_are_safe_file_names() {
    for bad in ["../x", "/etc/passwd", "a b", ".hidden", "-x", "é"] {
        let e = one_err(&format!("processes:\n  \"{bad}\": {{ command: x }}\n"));
        assert!(e.contains("is not a valid name"), "{bad}: {e}");
        assert!(e.starts_with("2:3 "), "{e}");
    }
    let long = "a".repeat(65);
    assert!(one_err(&format!("processes:\n  {long}: {{ command: x }}\n")).contains("too long"));
    assert!(one_err("processes:\n  \"\": { command: x }\n").contains("cannot be empty"));
    assert!(one_err("processes:\n  \"a\\0b\": { command: x }\n").contains("not a valid name"));
    ok(&format!(
        "processes:\n  {}: {{ command: x }}\n  a.b_c-D9: {{ command: x }}\n",
        "a".repeat(64)
    ));
}

#[test]
fn duplicate_names() {
    let e = one_err("participants:\n  web: { command: x }\nprocesses:\n  web: { command: y }\n");
    assert!(
        e.starts_with(
            "4:3 duplicate name `web` in processes: already defined in participants on line 2"
        ),
        "{e}"
    );
    let e = one_err("gateway: { command: x }\nprocesses:\n  gateway: { command: y }\n");
    assert!(e.contains("duplicate name `gateway`"), "{e}");
    // A participant without a command still owns its name.
    assert!(
        one_err("participants:\n  human: {}\nprocesses:\n  human: { command: y }\n")
            .contains("duplicate name `human`")
    );
    // Duplicate keys inside one mapping are a YAML error.
    assert!(
        one_err("processes:\n  a: { command: x }\n  a: { command: y }\n")
            .contains("invalid YAML: duplicate key: a")
    );
}

#[test]
fn unknown_dependency_with_suggestion() {
    let e = one_err(
        "processes:\n  database: { command: x }\n  web:\n    command: y\n    depends_on: [databse]\n",
    );
    assert!(
        e.starts_with("5:18 `web` depends on `databse`, which is not defined"),
        "{e}"
    );
    assert!(e.contains("did you mean `database`?"), "{e}");
    let e = one_err(
        "participants:\n  human: {}\nprocesses:\n  web: { command: y, depends_on: [human] }\n",
    );
    assert!(e.contains("participant without a process"), "{e}");
    assert!(
        one_err("processes:\n  a: { command: x, depends_on: [a] }\n").contains("depends on itself")
    );
}

#[test]
fn dependency_cycles() {
    let e = one_err(
        "processes:\n  a: { command: x, depends_on: [b] }\n  b: { command: x, depends_on: [c] }\n  c: { command: x, depends_on: [a] }\n",
    );
    assert_eq!(e, "2:33 dependency cycle: a -> b -> c -> a");
    let e = errs(
        "processes:\n  a: { command: x, depends_on: [b] }\n  b: { command: x, depends_on: [a] }\n  c: { command: x, depends_on: [d] }\n  d: { command: x, depends_on: { c: ready } }\n",
    );
    assert_eq!(
        e,
        vec![
            "2:33 dependency cycle: a -> b -> a".to_string(),
            "4:33 dependency cycle: c -> d -> c".to_string()
        ]
    );
}

#[test]
fn disabled_dependencies() {
    let e = one_err(
        "processes:\n  a: { command: x, disabled: true }\n  b: { command: y, depends_on: [a] }\n",
    );
    assert!(
        e.starts_with("3:33 `b` starts with the space but depends on `a`, which is disabled"),
        "{e}"
    );
    // Fine when the dependent does not start by itself.
    ok(
        "processes:\n  a: { command: x, disabled: true }\n  b: { command: y, auto_start: false, depends_on: [a] }\n",
    );
    let e = one_err(
        "gateway: { command: x, disabled: true }\nparticipants:\n  p: { command: y, auto_start: true }\n",
    );
    assert!(
        e.contains("implicitly") && e.contains("depends_on_gateway: false"),
        "{e}"
    );
    let c = ok(
        "processes:\n  a: { command: x, auto_start: false }\n  b: { command: y, depends_on: [a] }\n",
    );
    assert!(warnings(&c)[0].contains("`b` waits for `a`, which has `auto_start: false`"));
}

#[test]
fn all_errors_at_once() {
    let e = errs(
        r#"
processes:
  a: { command: "", stop_signal: NOPE }
  b: { command: y, depends_on: [zzz], stop_timeout: 5 }
  c: { command: z, max_memory: lots, ready: {} }
"#,
    );
    assert_eq!(e.len(), 6, "{e:#?}");
}

#[test]
fn typo_warnings() {
    let c = ok(
        "procesess:\n  x: 1\nprocesses:\n  a:\n    command: x\n    autostart: false\n    restart-policy: always\n    env-file: .env\n    depends-on: [b]\n  b:\n    command: y\n    comand: z\n    ready: { exec: x, perod: 1s }\n",
    );
    let w = warnings(&c);
    let want = [
        "`procesess` in the top level is ignored\nhelp: did you mean `processes`?",
        "`autostart` in process `a` is ignored\nhelp: did you mean `auto_start`?",
        "did you mean `restart_policy`?",
        "did you mean `env_file`?",
        "did you mean `depends_on`?",
        "did you mean `command`?",
        "did you mean `period`?",
    ];
    assert_eq!(w.len(), want.len(), "{w:#?}");
    for (got, want) in w.iter().zip(want) {
        assert!(got.contains(want), "{got:?} lacks {want:?}");
    }
    // Misspelled keys are ignored, so defaults stay.
    assert_eq!(c.process("a").unwrap().restart_policy, RestartPolicy::No);
    assert!(c.warnings[1].loc == Some(Loc::new(6, 5)));
    // Upstream keys are not typos.
    let c = ok(
        "participants:\n  a: { command: x, auto_start: true, capabilities: [], fifo: false, output_log: x, mcp_server: {}, bridge_config: {}, default_to: {}, type: local }\ndefaults: {}\n",
    );
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn syntax_errors_are_located() {
    let e = one_err("processes:\n  a: { command: [x }\n");
    assert!(e.starts_with("2:"), "{e}");
    assert!(e.contains("invalid YAML"), "{e}");
    let e = one_err("");
    assert!(e.contains("the file is empty"), "{e}");
    let e = one_err("a: 1\n---\nb: 2\n");
    assert!(e.contains("one document"), "{e}");
    assert!(!e.contains("from_str"), "{e}");
}

#[test]
fn start_order_is_topological_gateway_first() {
    let c = ok(
        "gateway: { command: gw }\nparticipants:\n  agent: { command: a, depends_on: [db] }\nprocesses:\n  web: { command: w, depends_on: { agent: ready } }\n  db: { command: d }\n",
    );
    let order: Vec<&str> = start_order(&c)
        .into_iter()
        .map(|i| c.processes[i].name.as_str())
        .collect();
    assert_eq!(order, ["gateway", "db", "agent", "web"]);
}

fn ctx() -> ResolveContext {
    ResolveContext {
        port: 8123,
        tokens: HashMap::from([("agent".to_string(), "tok-123".to_string())]),
    }
}

fn env_of(r: &ResolvedProcess, k: &str) -> Option<String> {
    r.env
        .iter()
        .rev()
        .find(|(n, _)| n == k)
        .map(|(_, v)| v.clone())
}

#[test]
fn resolve_interpolates_everything() {
    let c = ok(r#"
space: { id: sp }
gateway: { command: "gw --port ${PORT}", ready: { http: "http://127.0.0.1:${PORT}/h" } }
participants:
  agent:
    command: node
    args: ["a.js", "--gateway", "ws://localhost:${PORT}", "--space", "${SPACE}", "--token", "${TOKEN}", "$${PORT}"]
    env: { ME: "${PARTICIPANT}", KEY: "${OPENAI_API_KEY}", HOME_DIR: "${HOME}", BOTH: "${ME}-${SPACE_DIR}" }
    cwd: "sub/${PARTICIPANT}"
processes:
  db:
    command: "echo ${SPACE_CONFIG}"
    cwd: /abs
    ready: { tcp: "localhost:${PORT}" }
"#);
    let env = |k: &str| {
        if k == "HOME" {
            Some("/home/u".to_string())
        } else {
            None
        }
    };
    let (rs, warns) = resolve_with_env(&c, &ctx(), &env);
    let gw = &rs[0];
    assert_eq!(gw.argv, ["/bin/sh", "-c", "gw --port 8123"]);
    assert_eq!(
        gw.ready.as_ref().map(|p| p.kind.clone()),
        Some(ProbeKind::Http {
            url: "http://127.0.0.1:8123/h".into()
        })
    );
    assert_eq!(gw.cwd, dir());
    let a = &rs[1];
    assert_eq!(
        a.argv,
        [
            "node",
            "a.js",
            "--gateway",
            "ws://localhost:8123",
            "--space",
            "sp",
            "--token",
            "tok-123",
            "${PORT}"
        ]
    );
    assert_eq!(a.cwd, dir().join("sub/agent"));
    assert_eq!(env_of(a, "ME").as_deref(), Some("agent"));
    assert_eq!(env_of(a, "KEY").as_deref(), Some("${OPENAI_API_KEY}"));
    assert_eq!(env_of(a, "HOME_DIR").as_deref(), Some("/home/u"));
    assert_eq!(env_of(a, "BOTH").as_deref(), Some("agent-/space/demo"));
    assert_eq!(env_of(a, "MEW_SPACE").as_deref(), Some("sp"));
    assert_eq!(env_of(a, "MEW_SPACE_DIR").as_deref(), Some("/space/demo"));
    assert_eq!(env_of(a, "MEW_PROCESS").as_deref(), Some("agent"));
    assert_eq!(env_of(a, "MEW_TOKEN_AGENT").as_deref(), Some("tok-123"));
    let keys: Vec<&str> = a.env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "ME",
            "KEY",
            "HOME_DIR",
            "BOTH",
            "MEW_SPACE",
            "MEW_SPACE_DIR",
            "MEW_PROCESS",
            "MEW_TOKEN_AGENT"
        ]
    );
    let db = &rs[2];
    assert_eq!(db.argv[2], "echo /space/demo/.mew/space.yaml");
    assert_eq!(db.cwd, PathBuf::from("/abs"));
    assert_eq!(
        db.ready.as_ref().map(|p| p.kind.clone()),
        Some(ProbeKind::Tcp {
            host: "localhost".into(),
            port: "8123".into()
        })
    );
    assert!(env_of(db, "MEW_TOKEN_DB").is_none());
    assert_eq!(warns.len(), 1, "{warns:#?}");
    assert_eq!(
        warns[0].message,
        "`${OPENAI_API_KEY}` in `agent.env.KEY` is left as written: it is not set in the environment"
    );
    assert_eq!(warns[0].loc, Some(Loc::new(5, 3)));
}

#[test]
fn resolve_token_missing_is_a_warning() {
    let c = ok("processes:\n  p: { command: \"x ${TOKEN}\" }\n");
    let (rs, warns) = resolve_with_env(&c, &ctx(), &|_| None);
    assert_eq!(rs[0].argv[2], "x ${TOKEN}");
    assert!(warns[0].message.contains("`p` has no token"));
}

#[test]
fn token_env_names() {
    assert_eq!(token_env_name("echo-agent"), "MEW_TOKEN_ECHO_AGENT");
    assert_eq!(token_env_name("a.b"), "MEW_TOKEN_A_B");
}

#[test]
fn env_file_is_read_at_load() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("app.env"), "A=1\nB='two'\n").unwrap();
    let path = tmp.path().join("space.yaml");
    let c = parse_yaml(
        "processes:\n  a: { command: x, env_file: app.env, env: { B: three, C: \"${A}\" } }\n",
        &path,
        tmp.path(),
    )
    .unwrap();
    let (rs, _) = resolve_with_env(&c, &ctx(), &|_| None);
    let keys: Vec<(&str, &str)> = rs[0]
        .env
        .iter()
        .take(4)
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(keys, [("A", "1"), ("B", "two"), ("B", "three"), ("C", "1")]);
    let e = parse_yaml(
        "processes:\n  a: { command: x, env_file: missing.env }\n",
        &path,
        tmp.path(),
    )
    .unwrap_err();
    assert!(e.errors()[0].message.contains("cannot read"), "{e}");
    std::fs::write(tmp.path().join("bad.env"), "OK=1\nnot a line\n").unwrap();
    let e = parse_yaml(
        "processes:\n  a: { command: x, env_file: bad.env }\n",
        &path,
        tmp.path(),
    )
    .unwrap_err();
    assert_eq!(e.errors()[0].file, tmp.path().join("bad.env"));
    assert_eq!(e.errors()[0].loc, Some(Loc::new(2, 1)));
    assert!(
        e.to_string().contains("bad.env:2:1: expected `KEY=VALUE`"),
        "{e}"
    );
}

#[test]
fn procfile_loading() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("Procfile"),
        "web: serve -p $PORT\nworker: work\n",
    )
    .unwrap();
    std::fs::write(tmp.path().join(".env"), "PORT=6000\nSECRET=s\n").unwrap();
    let opts = LoadOptions {
        space_dir: tmp.path().to_path_buf(),
        ..Default::default()
    };
    let c = load_with_env(&opts, &|_| None).unwrap();
    assert_eq!(c.source, ConfigSource::Procfile);
    let (rs, _) = resolve_with_env(&c, &ctx(), &|_| None);
    assert_eq!(rs[0].argv, ["/bin/sh", "-c", "serve -p $PORT"]);
    assert_eq!(env_of(&rs[0], "PORT").as_deref(), Some("6000"));
    assert_eq!(env_of(&rs[1], "PORT").as_deref(), Some("6100"));
    assert_eq!(env_of(&rs[1], "SECRET").as_deref(), Some("s"));
    std::fs::remove_file(tmp.path().join(".env")).unwrap();
    let c = load_with_env(&opts, &|k| (k == "PORT").then(|| "7000".to_string())).unwrap();
    assert_eq!(
        c.processes[1].env_file_vars,
        vec![("PORT".to_string(), "7100".to_string())]
    );
    let c = load_with_env(&opts, &|_| None).unwrap();
    assert_eq!(
        c.processes[0].env_file_vars,
        vec![("PORT".to_string(), "5000".to_string())]
    );
}

#[test]
fn discovery_order() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let opts = LoadOptions {
        space_dir: d.to_path_buf(),
        ..Default::default()
    };
    let none = |_: &str| None;
    match load_with_env(&opts, &none) {
        Err(ConfigError::NotFound { searched }) => assert_eq!(searched.len(), 3),
        other => panic!("{other:?}"),
    }
    std::fs::write(d.join("Procfile"), "a: x\n").unwrap();
    assert_eq!(
        load_with_env(&opts, &none).unwrap().source,
        ConfigSource::Procfile
    );
    std::fs::write(
        d.join("space.yaml"),
        "space: { id: plain }\nprocesses: { a: { command: x } }\n",
    )
    .unwrap();
    assert_eq!(load_with_env(&opts, &none).unwrap().id, "plain");
    std::fs::create_dir(d.join(".mew")).unwrap();
    std::fs::write(
        d.join(".mew/space.yaml"),
        "space: { id: dotmew }\nprocesses: { a: { command: x } }\n",
    )
    .unwrap();
    assert_eq!(load_with_env(&opts, &none).unwrap().id, "dotmew");
    std::fs::write(
        d.join("other.yaml"),
        "space: { id: other }\nprocesses: { a: { command: x } }\n",
    )
    .unwrap();
    let env =
        |k: &str| (k == "MEW_SPACE_CONFIG").then(|| d.join("other.yaml").display().to_string());
    assert_eq!(load_with_env(&opts, &env).unwrap().id, "other");
    let explicit = LoadOptions {
        config: Some(d.join(".mew/space.yaml")),
        ..opts.clone()
    };
    let c = load_with_env(&explicit, &env).unwrap();
    assert_eq!(c.id, "dotmew");
    assert_eq!(c.dir, d.canonicalize().unwrap());
    let pf = LoadOptions {
        procfile: Some(d.join("Procfile")),
        ..opts.clone()
    };
    assert_eq!(
        load_with_env(&pf, &none).unwrap().source,
        ConfigSource::Procfile
    );
    let missing = LoadOptions {
        config: Some(d.join("nope.yaml")),
        ..opts
    };
    assert!(matches!(
        load_with_env(&missing, &none),
        Err(ConfigError::NotFound { .. })
    ));
}

#[test]
fn error_report_format() {
    let e = parse("processes:\n  web:\n    command: y\n    depends_on: [databse]\n  database: { command: x }\n").unwrap_err();
    assert_eq!(e.exit_code(), 2);
    let text = e.to_string();
    let want = "error: /space/demo/.mew/space.yaml:4:18: `web` depends on `databse`, which is not defined\n  |\n4 |     depends_on: [databse]\n  |                  ^\n  = help: did you mean `database`?\n";
    assert!(text.starts_with(want), "{text}");
    assert!(
        text.ends_with("1 configuration error in /space/demo/.mew/space.yaml; nothing was started"),
        "{text}"
    );
}

#[test]
fn health_checks_have_their_defaults_and_every_key() {
    let c = ok(r#"
processes:
  a: { command: x, health: { http: "http://127.0.0.1:${PORT}/live" } }
  b:
    command: x
    health: { tcp: 5432, period: 2s, timeout: 500ms, failure_threshold: 5, initial_delay: 1m, action: none }
  c: { command: x, health: { exec: "pg_isready" }, ready: { exec: "true" } }
  d: { command: x, health: false }
  e: { command: x }
"#);
    assert!(c.warnings.is_empty(), "{:#?}", warnings(&c));
    let a = c.process("a").unwrap().health.clone().unwrap();
    assert_eq!(
        a.probe.kind,
        ProbeKind::Http {
            url: "http://127.0.0.1:${PORT}/live".into()
        }
    );
    assert_eq!(a.probe.period, Duration::from_secs(10));
    assert_eq!(a.probe.timeout, Duration::from_secs(1));
    assert_eq!(a.probe.failure_threshold, 3);
    assert_eq!(a.probe.initial_delay, Duration::ZERO);
    assert_eq!(a.action, HealthAction::Restart);
    let b = c.process("b").unwrap().health.clone().unwrap();
    assert_eq!(
        b.probe.kind,
        ProbeKind::Tcp {
            host: "127.0.0.1".into(),
            port: "5432".into()
        }
    );
    assert_eq!(b.probe.period, Duration::from_secs(2));
    assert_eq!(b.probe.timeout, Duration::from_millis(500));
    assert_eq!(b.probe.failure_threshold, 5);
    assert_eq!(b.probe.initial_delay, Duration::from_secs(60));
    assert_eq!(b.action, HealthAction::None);
    let cc = c.process("c").unwrap();
    assert!(cc.ready.is_some());
    assert_eq!(
        cc.health.as_ref().map(|h| h.probe.kind.clone()),
        Some(ProbeKind::Exec {
            command: "pg_isready".into()
        })
    );
    assert_eq!(c.process("d").unwrap().health, None);
    assert_eq!(c.process("e").unwrap().health, None);
}

#[test]
fn bad_health_checks_are_located_errors() {
    let e = one_err("processes:\n  a: { command: x, health: { log: ready } }\n");
    assert!(
        e.starts_with("2:30 `a.health.log`: a health check cannot watch the output"),
        "{e}"
    );
    assert!(e.contains("help: `log` matches one line once"), "{e}");
    let e = one_err("processes:\n  a: { command: x, health: { exec: x, action: restrat } }\n");
    assert!(
        e.starts_with("2:47 `a.health.action`: unknown action `restrat`"),
        "{e}"
    );
    assert!(e.contains("did you mean `restart`?"), "{e}");
    let e = one_err("processes:\n  a: { command: x, health: { period: 2s } }\n");
    assert!(
        e.starts_with("2:28 `a.health`: the check has no target"),
        "{e}"
    );
    assert!(e.contains("`health: false`"), "{e}");
    assert!(!e.contains("`log`"), "{e}");
    let e = one_err("processes:\n  a: { command: x, health: { exec: x, tcp: 80 } }\n");
    assert!(
        e.contains("a check has one target, found both `exec` and `tcp`"),
        "{e}"
    );
    for (bad, want) in [
        (
            "{ exec: x, period: 0s }",
            "`a.health.period`: must be longer than 0",
        ),
        (
            "{ exec: x, timeout: 0ms }",
            "`a.health.timeout`: must be longer than 0",
        ),
        ("{ exec: x, failure_threshold: 0 }", "at least 1"),
        ("{ exec: x, initial_delay: 10 }", "`a.health.initial_delay`"),
        ("{ http: \"https://x/\" }", "only `http://`"),
        ("{ tcp: \"host\" }", "HOST:PORT"),
        ("{ exec: \" \" }", "the command is empty"),
        (
            "{ exec: x, action: 3 }",
            "`a.health.action`: expected a string",
        ),
        ("true", "expected a check like"),
    ] {
        let e = one_err(&format!(
            "processes:\n  a: {{ command: x, health: {bad} }}\n"
        ));
        assert!(e.contains(want), "{bad}: {e}");
        assert!(e.starts_with("2:"), "{bad}: {e}");
    }
    // A typo is a warning with a suggestion, as everywhere.
    let c = ok("processes:\n  a: { command: x, health: { exec: x, perod: 2s } }\n");
    let w = warnings(&c);
    assert_eq!(w.len(), 1, "{w:#?}");
    assert!(
        w[0].contains("unknown key `perod` in `a.health` is ignored"),
        "{w:?}"
    );
    assert!(w[0].contains("did you mean `period`?"), "{w:?}");
    let c = ok("processes:\n  a: { command: x, helth: { exec: x } }\n");
    assert!(warnings(&c)[0].contains("did you mean `health`?"));
}

#[test]
fn a_readiness_failure_threshold_warns_that_it_has_no_effect() {
    let c = ok("processes:\n  a: { command: x, ready: { exec: x, failure_threshold: 2 } }\n");
    assert_eq!(c.warnings.len(), 1, "{:#?}", warnings(&c));
    let w = &c.warnings[0];
    assert_eq!(w.loc, Some(Loc::new(2, 38)));
    assert!(
        w.message
            .starts_with("`a.ready.failure_threshold` has no effect: a readiness probe stops once the process is ready"),
        "{}",
        w.message
    );
    assert!(w.message.contains("`health:`"), "{}", w.message);
}

#[test]
fn resolve_interpolates_health_checks() {
    let c = ok(r#"
processes:
  web:
    command: x
    env: { LIVE: /live }
    health: { http: "http://127.0.0.1:${PORT}${LIVE}", action: none }
  db:
    command: x
    health: { exec: "check ${PARTICIPANT} ${NOPE}" }
  tcp:
    command: x
    health: { tcp: "localhost:${PORT}" }
"#);
    let (rs, warns) = resolve_with_env(&c, &ctx(), &|_| None);
    let h = |i: usize| rs[i].health.clone().unwrap();
    assert_eq!(
        h(0).probe.kind,
        ProbeKind::Http {
            url: "http://127.0.0.1:8123/live".into()
        }
    );
    assert_eq!(h(0).action, HealthAction::None);
    assert_eq!(
        h(1).probe.kind,
        ProbeKind::Exec {
            command: "check db ${NOPE}".into()
        }
    );
    assert_eq!(
        h(2).probe.kind,
        ProbeKind::Tcp {
            host: "localhost".into(),
            port: "8123".into()
        }
    );
    assert_eq!(warns.len(), 1, "{warns:#?}");
    assert!(
        warns[0].message.contains("`db.health.exec`"),
        "{}",
        warns[0].message
    );
}

#[test]
fn mews_own_names_are_reserved() {
    let e = one_err("processes:\n  mew-server: { command: x }\n");
    assert!(e.contains("`mew-server` is reserved"), "{e}");
}

#[test]
fn escape_shows_every_hidden_character() {
    assert_eq!(escape("plain text, é 空"), "plain text, é 空");
    assert!(matches!(escape("plain"), std::borrow::Cow::Borrowed(_)));
    assert_eq!(
        escape("\x1b]52;c;Zm9v\x07"),
        r"\x1b]52;c;Zm9v\x07",
        "OSC 52"
    );
    assert_eq!(escape("a\rb\tc\nd\0\x7f"), r"a\rb\tc\nd\x00\x7f");
    assert_eq!(
        escape("\u{9b}2A\u{85}\u{80}\u{9f}"),
        r"\u{9b}2A\u{85}\u{80}\u{9f}"
    );
    for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}'] {
        assert_eq!(escape(&c.to_string()), format!("\\u{{{:x}}}", u32::from(c)));
    }
    for c in [
        '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{200e}', '\u{200f}',
    ] {
        assert_eq!(escape(&c.to_string()), format!("\\u{{{:x}}}", u32::from(c)));
    }
    // Only the newlines of mew's own messages survive `escape_lines`.
    assert_eq!(
        escape_lines("head `\x1b[2A`\nhelp: \r"),
        "head `\\x1b[2A`\nhelp: \\r"
    );
    // Escaping is idempotent: escaped text has nothing left to escape.
    let once = escape("\x1b[2A\u{202e}").into_owned();
    assert_eq!(escape(&once), once);
}

#[test]
fn diagnostics_escape_values_even_newlines() {
    // A key (YAML allows anything in a quoted key) with a newline and an
    // escape: one line, visible, in the message and the JSON.
    let c = ok("processes:\n  web:\n    command: x\n    \"comman\\nd\\e\": 1\n");
    let w = warnings(&c);
    assert!(
        w.iter()
            .any(|m| m.starts_with("unknown key `comman\\nd\\x1b` in process `web`")),
        "{w:#?}"
    );
    let e = one_err("processes:\n  web: { command: x, depends_on: [\"db\\n\\e[2A\"] }\n");
    assert!(
        e.contains("depends on `db\\n\\x1b[2A`, which is not defined"),
        "{e}"
    );
    let e = one_err("processes:\n  web: { command: x, restart_policy: \"\\e]0;x\\a\" }\n");
    assert!(e.contains("unknown restart policy `\\x1b]0;x\\x07`"), "{e}");
}

#[test]
fn excerpts_are_escaped_and_aligned() {
    let d = Diagnostic::new(
        Path::new("/s/space.yaml"),
        Some(Loc::new(2, 8)),
        "bad\nhelp: fix \x1b[2A it",
    );
    let src = Source {
        path: PathBuf::from("/s/space.yaml"),
        text: "a: 1\nb: \"\x1b\t\u{202e}x\" # s3cret\n".to_owned(),
        yaml: true,
        secrets: vec!["s3cret".to_owned()],
    };
    let out = report::render("error", &d, Some(&src));
    assert_eq!(
        out,
        "error: /s/space.yaml:2:8: bad\n  |\n2 | b: \"\\x1b\\t\\u{202e}x\" # ****\n  |                   ^\n  = help: fix \\x1b[2A it\n"
    );
    // Another file (an env_file) is never quoted.
    let other = Diagnostic::new(Path::new("/s/creds"), Some(Loc::new(2, 1)), "bad");
    assert_eq!(
        report::render("error", &other, Some(&src)),
        "error: /s/creds:2:1: bad\n"
    );
}

#[test]
fn yaml_lines_end_at_a_lone_cr() {
    let t = "a\rb\r\nc\nd";
    assert_eq!(report::source_line(t, 1, true), Some("a"));
    assert_eq!(report::source_line(t, 2, true), Some("b"));
    assert_eq!(report::source_line(t, 3, true), Some("c"));
    assert_eq!(report::source_line(t, 4, true), Some("d"));
    assert_eq!(report::source_line(t, 5, true), None);
    assert_eq!(report::source_line(t, 0, true), None);
    assert_eq!(report::source_line(t, 1, false), Some("a\rb"));
    assert_eq!(report::source_line("x\n", 2, true), None);
}

#[test]
fn bad_utf8_is_located_as_the_parser_counts_lines() {
    assert_eq!(text_loc("", true), Loc::new(1, 1));
    assert_eq!(text_loc("ab\ncé", true), Loc::new(2, 3));
    assert_eq!(text_loc("a\rb\r\nc", true), Loc::new(3, 2));
    assert_eq!(text_loc("a\rb\r\nc", false), Loc::new(2, 2));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let f = dir.path().join("space.yaml");
    std::fs::write(&f, b"a: 1\nb: \"\xe2\x82\"\n").unwrap_or_else(|e| panic!("{e}"));
    match read_text(&f, true) {
        Err(TextError::NotUtf8 { loc, offset, lossy }) => {
            assert_eq!((loc, offset), (Loc::new(2, 5), 9));
            assert_eq!(lossy, "a: 1\nb: \"\u{fffd}\"\n");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn reading_is_bounded_even_on_an_endless_stream() {
    // A file that grows while read (or a stream) stops at the limit + 1.
    let endless = std::io::repeat(b'a');
    assert_eq!(read_limited(endless, 1000).ok(), Some(None));
    assert_eq!(
        read_limited(&b"12345"[..], 5).ok(),
        Some(Some(b"12345".to_vec()))
    );
    assert_eq!(read_limited(&b"123456"[..], 5).ok(), Some(None));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let f = dir.path().join("big.yaml");
    std::fs::File::create(&f)
        .and_then(|h| h.set_len(MAX_CONFIG_BYTES + 1))
        .unwrap_or_else(|e| panic!("{e}"));
    match read_text(&f, true) {
        Err(TextError::Unreadable(m)) => assert_eq!(
            m,
            "it is 8388609 bytes (8.0 MiB); a config file may be at most 8 MiB (8388608 bytes)"
        ),
        other => panic!("{other:?}"),
    }
    match read_text(dir.path(), true) {
        Err(TextError::Unreadable(m)) => assert_eq!(m, "it is a directory, not a regular file"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn dotenv_errors_never_quote_the_line() {
    let secret = "MIIEvQIBADANBgkq";
    let text = format!("{secret}\n{secret}+/=x\nK=\"{secret}\nL='x' {secret}\n");
    let errs = parse_dotenv(&text).unwrap_err();
    assert_eq!(errs.len(), 4);
    for (loc, msg) in &errs {
        assert!(
            !msg.contains(secret) && !msg.contains("MII"),
            "{loc:?}: {msg}"
        );
    }
}

/// `(line, col, message)` of each warning about `ps`.
fn ps_warnings(c: &SpaceConfig) -> Vec<(u32, u32, String)> {
    c.warnings
        .iter()
        .filter(|d| d.message.contains("`ps`"))
        .map(|d| {
            let l = d.loc.clone().unwrap_or_default();
            (l.line, l.col, d.message.clone())
        })
        .collect()
}

#[test]
fn tokens_on_command_lines_are_warned_about() {
    let c = ok(r#"participants:
  a:
    command: "run --token ${TOKEN}"
  b:
    command: run
    args: ["--token=${TOKEN:-none}", "$${TOKEN}"]
    ready: { exec: "probe ${TOKEN}" }
    health: { exec: "check ${TOKEN}", period: 5s }
  c:
    command: "run $${TOKEN}"
    args: ["${TOKENS}", "${PARTICIPANT}"]
    env: { T: "${TOKEN}" }
    ready: { http: "http://127.0.0.1:1/?t=${TOKEN}" }
    tokens: ["lit-token-1"]
processes:
  p:
    command: "x ${TOKEN}"
  q:
    command: "use lit-token-1"
"#);
    let w = ps_warnings(&c);
    let at: Vec<(u32, u32)> = w.iter().map(|(l, c, _)| (*l, *c)).collect();
    // Not: `$${TOKEN}`, `${TOKENS}`, env, an http probe (mew's own request),
    // a process without a token (its `${TOKEN}` is left as written).
    assert_eq!(at, [(3, 14), (6, 12), (7, 20), (8, 21), (19, 14)], "{w:#?}");
    assert_eq!(
        w[0].2,
        "`a.command` puts `${TOKEN}` on its command line: every user of this machine can read it in `ps`\nhelp: pass it in the environment: `a` already has its token in `$MEW_TOKEN_A`; a program that reads another variable can get it with `env: { NAME: \"${TOKEN}\" }`"
    );
    assert!(w[2].2.contains(
        "`b.ready.exec` puts `${TOKEN}` on the command line of an exec probe, run every period"
    ));
    assert!(w[3].2.starts_with("`b.health.exec` puts `${TOKEN}`"));
    assert!(
        w[4].2
            .starts_with("`q.command` puts a token written in `tokens:` on its command line")
    );
    assert!(!w[4].2.contains("lit-token-1"), "{}", w[4].2);
    assert!(w[4].2.contains("help: pass it in the environment (`env:`)"));
}

#[test]
fn any_space_id_text_is_accepted_but_control_characters() {
    // Upstream accepts any string; a template's `{{SPACE_NAME}}` left as is.
    for id in ["{{SPACE_NAME}}", "my space", "../x", "café"] {
        let c = ok(&format!(
            "space: {{ id: {} }}\nprocesses:\n  a: {{ command: x }}\n",
            serde_json::to_string(id).unwrap()
        ));
        assert_eq!(c.id, id);
    }
    let e = parse("space: { id: \"a\\tb\" }\nprocesses:\n  a: { command: x }\n").unwrap_err();
    assert!(e.to_string().contains("control characters"), "{e}");
}
