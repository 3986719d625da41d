//! `mew space check` (and every config report) on hostile or careless
//! configs: the real binary. Control characters are escaped, env_file
//! values are never printed, tokens on command lines are warned about, and
//! huge, non-regular or non-UTF-8 files get clear located errors.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Space, run};

const DEADLINE: Duration = Duration::from_secs(30);

/// What must never reach a terminal as is (but the newlines of mew's own
/// output): C0 controls, DEL, C1 controls, bidi overrides and isolates.
fn hidden(c: char) -> bool {
    (c != '\n' && c < ' ')
        || ('\u{7f}'..='\u{9f}').contains(&c)
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

fn assert_clean(what: &str, s: &str) {
    if let Some((i, c)) = s.char_indices().find(|(_, c)| hidden(*c)) {
        panic!(
            "{what}: raw {c:?} at byte {i}:\n{}",
            s.escape_debug().to_string().replace("\\n", "\n")
        );
    }
}

fn check(space: &Space, args: &[&str]) -> common::Output {
    let mut c = space.mew();
    c.args(["space", "check"]).args(args);
    run(c, DEADLINE)
}

/// Escapes written in YAML double quotes reach every field of the plan.
const ESCAPES: &str = r#"
space:
  id: hostile
  name: "shop\e]52;c;ZWNobyBwd25lZA==\a"
  description: "all good\rnothing to see\e[2A\u009b\u202egnp.exe"
logs: { dir: "logs\e[2J" }
participants:
  viewer: { output_log: "out\e[1A.log" }
processes:
  web:
    command: "echo harmless\r\e[2Krm -rf ~"
    args: ["a\e[2Ab", "\u2066x\u2069", "tab\there", "del\x7f"]
    env: { "K\e[1m": "v\u202eal" }
    cwd: "dir\e[2A"
    ready: { exec: "true\e[2A" }
    health: { http: "http://127.0.0.1:1/\u009b" }
    "comman\e": x
  job:
    command: "echo one\necho \e[2Atwo\n"
"#;

#[test]
fn plan_escapes_control_characters() {
    let space = Space::new(ESCAPES);
    for args in [&[][..], &["--show-values"][..]] {
        let out = check(&space, args);
        assert_eq!(out.code(), Some(0), "{}", out.stderr);
        let s = &out.stdout;
        assert_clean("check stdout", s);
        assert_clean("check stderr", &out.stderr);
        for want in [
            r"shop\x1b]52;c;ZWNobyBwd25lZA==\x07",
            r"all good\rnothing to see\x1b[2A\u{9b}\u{202e}gnp.exe",
            r"logs\x1b[2J",
            r"out\x1b[1A.log",
            r"'echo harmless\r\x1b[2Krm -rf ~'",
            r"'a\x1b[2Ab' '\u{2066}x\u{2069}' 'tab\there' 'del\x7f'",
            r"env      K\x1b[1m=",
            r"dir\x1b[2A",
            r"exec true\x1b[2A",
            r"http GET http://127.0.0.1:1/\u{9b}",
            // The warning's headline and its excerpt.
            r"unknown key `comman\x1b` in process `web` is ignored",
            r"| echo \x1b[2Atwo",
        ] {
            assert!(s.contains(want), "{want:?} not in\n{s}");
        }
    }
    let s = check(&space, &["--show-values"]).stdout;
    assert!(s.contains(r"K\x1b[1m='v\u{202e}al'"), "{s}");
    // JSON escapes by itself; it carries the values as they are.
    let out = check(&space, &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["space"]["name"], "shop\x1b]52;c;ZWNobyBwd25lZA==\x07");
}

#[test]
fn error_reports_escape_values_and_excerpts() {
    // Raw bytes in the file itself: a bidi override (valid YAML) in a bad
    // value, and a hidden OSC 52 in a comment (invalid YAML) elsewhere.
    let space = Space::new(
        "processes:\n  web:\n    command: ./x\n    stop_signal: \"TERM\u{202e}LLIK\"\n    restart_policy: \"\\e]52;c;cGF5bG9hZA==\\a\"\n    depends_on: [\"db\\e[2A\"]\n    env: [\"\\e[2A\"]\n",
    );
    for cmd in [&["space", "check"][..], &["space", "up", "--no-tui"][..]] {
        let mut c = space.mew();
        c.args(cmd);
        let out = run(c, DEADLINE);
        assert_eq!(out.code(), Some(2), "{cmd:?}: {}", out.stderr);
        let e = &out.stderr;
        assert_clean("stderr", e);
        for want in [
            r".mew/space.yaml:4:18: `web.stop_signal`: `TERM\u{202e}LLIK` is not a supported stop signal",
            "4 |     stop_signal: \"TERM\\u{202e}LLIK\"\n  |                  ^",
            r"unknown restart policy `\x1b]52;c;cGF5bG9hZA==\x07`",
            r"`web` depends on `db\x1b[2A`, which is not defined",
            r"expected `NAME=value`, found `\x1b[2A`",
        ] {
            assert!(e.contains(want), "{want:?} not in\n{e}");
        }
    }

    let raw = Space::new("processes:\n  web:\n    command: ./x # \x1b]52;c;cGF5\x07 hidden\n");
    let out = check(&raw, &[]);
    assert_eq!(out.code(), Some(2));
    assert_clean("stderr", &out.stderr);
    assert!(
        out.stderr.contains(
            "3 |     command: ./x # \\x1b]52;c;cGF5\\x07 hidden\n  |                    ^"
        ),
        "{}",
        out.stderr
    );

    // A lone CR ends a YAML line: the excerpt is the line the parser meant.
    let cr = Space::new("processes:\r  web:\r    command: ./x\r    stop_signal: NOPE\r");
    let out = check(&cr, &[]);
    assert_clean("stderr", &out.stderr);
    assert!(
        out.stderr
            .contains(".mew/space.yaml:4:18: `web.stop_signal`: `NOPE`",)
            && out.stderr.contains("4 |     stop_signal: NOPE\n"),
        "{}",
        out.stderr
    );
}

const SECRET: &str = "hunter2-aws-secret";
const OS_SECRET: &str = "os-secret-value";
const LITERAL: &str = "literal-env-value";

#[test]
fn env_file_values_are_never_printed() {
    let space = Space::new(&format!(
        r#"
processes:
  web:
    command: ./serve
    args: ["--key", "${{AWS_SECRET_ACCESS_KEY}}", "--os", "${{MEW_TEST_OS_SECRET}}", "--port", "${{PORT:-1}}"]
    env_file: creds
    env: {{ URL: "http://x/${{AWS_SECRET_ACCESS_KEY}}", LIT: {LITERAL}, EMPTY: "" }}
    ready: {{ exec: "probe ${{AWS_SECRET_ACCESS_KEY}}" }}
"#
    ));
    std::fs::write(
        space.path().join("creds"),
        format!("AWS_SECRET_ACCESS_KEY={SECRET}\nREGION=eu-west-1\n"),
    )
    .unwrap();
    let cases: [(&[&str], bool); 4] = [
        (&[], false),
        (&["--json"], false),
        (&["--show-values"], true),
        (&["--show-values", "--json"], true),
    ];
    for (args, shown) in cases {
        let mut c = space.mew();
        c.env("MEW_TEST_OS_SECRET", OS_SECRET);
        c.args(["space", "check"]).args(args);
        let out = run(c, DEADLINE);
        assert_eq!(out.code(), Some(0), "{args:?}: {}", out.stderr);
        let all = format!("{}{}", out.stdout, out.stderr);
        assert!(
            !all.contains(SECRET),
            "{args:?}: env_file value printed:\n{all}"
        );
        assert!(!all.contains("eu-west-1"), "{args:?}:\n{all}");
        assert!(
            all.contains("AWS_SECRET_ACCESS_KEY"),
            "{args:?}: keys are shown:\n{all}"
        );
        assert_eq!(all.contains(OS_SECRET), shown, "{args:?}:\n{all}");
        assert_eq!(all.contains(LITERAL), shown, "{args:?}:\n{all}");
        assert!(all.contains("****"), "{all}");
        if args.contains(&"--json") {
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
            let web = &v["processes"][0];
            assert_eq!(web["argv"][2], "****");
            assert_eq!(web["argv"][6], "8080");
            assert_eq!(web["ready"]["command"], "probe ****");
            let env = web["env"].as_array().unwrap();
            assert!(env.contains(&serde_json::json!(["AWS_SECRET_ACCESS_KEY", "****"])));
            assert!(env.contains(&serde_json::json!([
                "URL",
                if shown { "http://x/****" } else { "****" }
            ])));
            assert!(env.contains(&serde_json::json!(["EMPTY", ""])));
            assert!(env.contains(&serde_json::json!(["MEW_PROCESS", "web"])));
        } else {
            assert!(
                out.stdout.contains("AWS_SECRET_ACCESS_KEY='****'"),
                "{}",
                out.stdout
            );
        }
    }
}

const PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nabcDEF+/ghi=jklMNO\nKEY=\"opensecret\nOK='x' trailing-secret\n-----END PRIVATE KEY-----\n";

#[test]
fn env_file_errors_are_located_but_never_quoted() {
    let space = Space::new("processes:\n  web:\n    command: ./serve\n    env_file: id_rsa\n");
    std::fs::write(space.path().join("id_rsa"), PRIVATE_KEY).unwrap();
    let fragments = [
        "BEGIN PRIVATE",
        "MIIEvQ",
        "abcDEF",
        "jklMNO",
        "opensecret",
        "trailing-secret",
        "END PRIVATE",
    ];
    for args in [&[][..], &["--json"][..]] {
        let out = check(&space, args);
        assert_eq!(out.code(), Some(2), "{}", out.stderr);
        let all = format!("{}{}", out.stdout, out.stderr);
        for f in fragments {
            assert!(!all.contains(f), "{args:?}: {f:?} quoted:\n{all}");
        }
        if args.is_empty() {
            for want in [
                "id_rsa:1:1: expected `KEY=VALUE`",
                "id_rsa:2:1:",
                "id_rsa:3:1: the name before `=` is not a valid variable name",
                "id_rsa:4:5: unclosed double quote",
                "id_rsa:5:7: unexpected text after the closing quote",
                "id_rsa:6:1:",
            ] {
                assert!(out.stderr.contains(want), "{want:?} not in\n{}", out.stderr);
            }
            // Located, but no excerpt of the file.
            assert!(!out.stderr.contains("1 |"), "{}", out.stderr);
        }
    }

    // The same for a Procfile's `.env`.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Procfile"), "web: ./serve\n").unwrap();
    std::fs::write(dir.path().join(".env"), PRIVATE_KEY).unwrap();
    let out = mew_at(dir.path(), &["space", "check"]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains(".env:2:1: expected `KEY=VALUE`"),
        "{}",
        out.stderr
    );
    for f in fragments {
        assert!(!out.stderr.contains(f), "{f:?} quoted:\n{}", out.stderr);
    }

    // Not UTF-8: where, not what.
    std::fs::write(space.path().join("id_rsa"), b"A=1\nB=se\xffcret\n").unwrap();
    let out = check(&space, &[]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains("id_rsa:2:5: the file is not valid UTF-8"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("cret"), "{}", out.stderr);
}

fn mew_at(dir: &Path, args: &[&str]) -> common::Output {
    let mut c = Command::new(common::MEW);
    c.arg("--space-dir").arg(dir).args(args);
    c.env_remove("MEW_SPACE_CONFIG").env_remove("PORT");
    run(c, DEADLINE)
}

#[test]
fn tokens_on_command_lines_are_located_warnings() {
    let space = Space::new(
        r#"participants:
  shell-agent:
    command: "node agent.js --token ${TOKEN}"
  argv-agent:
    command: node
    args: [agent.js, --token, "${TOKEN}"]
    ready: { exec: "curl -H 'Authorization: ${TOKEN}' http://127.0.0.1:1/" }
  quiet-agent:
    command: "node agent.js --literal $${TOKEN}"
    env: { AGENT_TOKEN: "${TOKEN}" }
    tokens: [s3cr3t-token-value]
processes:
  pinger:
    command: ./pinger
    health: { exec: "ping-gateway --token s3cr3t-token-value" }
"#,
    );
    let out = check(&space, &["--json"]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let ps: Vec<(u64, u64, String)> = v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["message"].as_str().unwrap().contains("`ps`"))
        .map(|w| {
            (
                w["line"].as_u64().unwrap(),
                w["col"].as_u64().unwrap(),
                w["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let at: Vec<(u64, u64)> = ps.iter().map(|(l, c, _)| (*l, *c)).collect();
    assert_eq!(at, [(3, 14), (6, 31), (7, 20), (15, 21)], "{ps:#?}");
    assert!(ps[0].2.starts_with("`shell-agent.command` puts `${TOKEN}` on its command line: every user of this machine can read it in `ps`"), "{}", ps[0].2);
    assert!(ps[0].2.contains("`$MEW_TOKEN_SHELL_AGENT`"), "{}", ps[0].2);
    assert!(
        ps[1].2.starts_with("`argv-agent.args[2]` puts `${TOKEN}`"),
        "{}",
        ps[1].2
    );
    assert!(ps[2].2.starts_with("`argv-agent.ready.exec` puts `${TOKEN}` on the command line of an exec probe, run every period"), "{}", ps[2].2);
    assert!(
        ps[3]
            .2
            .starts_with("`pinger.health.exec` puts a token written in `tokens:`"),
        "{}",
        ps[3].2
    );
    let all = format!("{}{}", out.stdout, out.stderr);
    assert!(!all.contains("s3cr3t-token-value"), "{all}");

    // The text report: located, with the excerpt (the literal token masked).
    let out = check(&space, &[]);
    let s = &out.stdout;
    assert!(
        s.contains(
            "/.mew/space.yaml:6:31: `argv-agent.args[2]` puts `${TOKEN}` on its command line"
        ),
        "{s}"
    );
    assert!(
        s.contains("15 |     health: { exec: \"ping-gateway --token ****\" }"),
        "{s}"
    );
    assert!(!s.contains("s3cr3t-token-value"), "{s}");
}

/// A sparse file of `len` bytes at `path`.
fn sparse(path: &Path, len: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
}

#[test]
fn huge_files_are_refused_before_reading() {
    let space = Space::new("");
    let yaml = space.path().join(".mew/space.yaml");
    sparse(&yaml, 5 << 30);
    let started = std::time::Instant::now();
    let out = check(&space, &[]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(
        out.stderr.contains(".mew/space.yaml: it is 5368709120 bytes (5.0 GiB); a config file may be at most 8 MiB (8388608 bytes)"),
        "{}",
        out.stderr
    );
    // One byte over the limit is over it; the limit itself is read.
    sparse(&yaml, (8 << 20) + 1);
    let out = check(&space, &[]);
    assert!(
        out.stderr.contains("it is 8388609 bytes (8.0 MiB)"),
        "{}",
        out.stderr
    );
    let mut text = b"processes: { web: { command: ./x } }\n".to_vec();
    text.resize(8 << 20, b'\n');
    std::fs::write(&yaml, text).unwrap();
    let out = check(&space, &[]);
    assert_eq!(out.code(), Some(0), "{}", out.stderr);

    // An env_file too, located at the `env_file` value.
    std::fs::write(
        &yaml,
        "processes:\n  web:\n    command: ./x\n    env_file: big.env\n",
    )
    .unwrap();
    sparse(&space.path().join("big.env"), 5 << 30);
    let out = check(&space, &[]);
    assert_eq!(out.code(), Some(2));
    assert!(
        out.stderr
            .contains(".mew/space.yaml:4:15: `web.env_file`: cannot read ")
            && out
                .stderr
                .contains("big.env: it is 5368709120 bytes (5.0 GiB)"),
        "{}",
        out.stderr
    );
}

#[test]
fn non_regular_env_file_does_not_hang() {
    // Not a `Space`: its clean-up (`mew space down`) reads the config too.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(".mew")).unwrap();
    std::fs::write(
        dir.path().join(".mew/space.yaml"),
        "processes:\n  web:\n    command: ./x\n    env_file: pipe\n",
    )
    .unwrap();
    let fifo = dir.path().join("pipe");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success());
    // Nobody ever writes to the FIFO: reading it would block forever.
    let mut c = Command::new(common::MEW);
    c.arg("--space-dir")
        .arg(dir.path())
        .args(["space", "check"]);
    c.env_remove("MEW_SPACE_CONFIG");
    let child = c
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let unblock = std::thread::spawn(move || {
        // Should the check hang, open the FIFO's other end so it ends.
        std::thread::sleep(Duration::from_secs(10));
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    });
    let started = std::time::Instant::now();
    let out = common::wait_output(child, Duration::from_secs(30));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "check (pid {pid}) blocked on the FIFO"
    );
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("`web.env_file`: cannot read")
            && out.stderr.contains("it is a FIFO, not a regular file"),
        "{}",
        out.stderr
    );
    drop(unblock);
}

#[test]
fn config_not_utf8_is_located() {
    let space = Space::new("");
    std::fs::write(
        space.path().join(".mew/space.yaml"),
        b"processes:\n  web:\n    command: \"caf\xc3\xa9 \xff\"\n",
    )
    .unwrap();
    let out = check(&space, &[]);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert_clean("stderr", &out.stderr);
    assert!(
        out.stderr.contains(".mew/space.yaml:3:20: the file is not valid UTF-8 (first invalid byte at byte offset 38)"),
        "{}",
        out.stderr
    );
    // The excerpt shows the line, the bad byte replaced, the caret under it.
    assert!(
        out.stderr
            .contains("3 |     command: \"café \u{fffd}\"\n  |                    ^"),
        "{}",
        out.stderr
    );
    let out = check(&space, &["--json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (
            v["errors"][0]["line"].as_u64(),
            v["errors"][0]["col"].as_u64()
        ),
        (Some(3), Some(20))
    );
}
