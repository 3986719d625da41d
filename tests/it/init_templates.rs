//! `mew init` with upstream-format template directories: the real binary in
//! temporary directories, with HOME pointed at a temporary directory too.
#![allow(clippy::unwrap_used)] // helpers are not #[test] fns

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{MEW, text};

/// A work directory and a HOME, both temporary.
struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("proj");
        let home = tmp.path().join("home");
        std::fs::create_dir(&dir).unwrap();
        std::fs::create_dir(&home).unwrap();
        Env {
            _tmp: tmp,
            dir,
            home,
        }
    }

    fn mew(&self, args: &[&str]) -> Output {
        self.mew_env(args, &[])
    }

    fn mew_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = Command::new(MEW);
        c.args(args)
            .current_dir(&self.dir)
            .env("HOME", &self.home)
            .env_remove("MEW_SPACE_CONFIG")
            .env_remove("MEW_T_B")
            .env_remove("OPENAI_API_KEY")
            .stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run mew")
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }
}

fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// Write a template directory: `files` are (relative path, contents).
fn template(root: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = root.join(name);
    for (rel, body) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, body).unwrap();
    }
    dir
}

const SIMPLE_SPACE: &str = "space:\n  id: \"{{SPACE_NAME}}\"\n  name: \"{{SPACE_NAME}}\"\n  description: {{SPACE_DESCRIPTION_JSON}}\n\nparticipants:\n  human:\n    tokens: [\"human-token\"]\n    capabilities:\n      - kind: chat\n";

/// A template in the shape of the upstream e2e scenarios: one agent, a
/// package.json, SPACE_NAME with a default.
fn scenario_like(root: &Path, name: &str) -> PathBuf {
    template(
        root,
        name,
        &[
            (
                "template.json",
                r#"{"name": "echo-test", "description": "an echo agent for tests", "version": "0.1.0",
                    "variables": [{"name": "SPACE_NAME", "description": "Space identifier", "default": "echo-default"}]}"#,
            ),
            (
                "space.yaml",
                "space:\n  id: \"{{SPACE_NAME}}\"\n  name: \"Echo test\"\n\nparticipants:\n  echo:\n    type: local\n    tokens: [\"echo-token\"]\n    auto_start: true\n    command: \"node\"\n    args: [\"./.mew/agents/echo.cjs\", \"--gateway\", \"ws://localhost:${PORT}\", \"--space\", \"{{SPACE_NAME}}\"]\n    capabilities:\n      - kind: chat\n  client:\n    tokens: [\"client-token\"]\n    capabilities:\n      - kind: chat\n",
            ),
            (
                "package.json",
                "{\n  \"name\": \"echo-{{SPACE_NAME}}\",\n  \"private\": true,\n  \"dependencies\": { \"ws\": \"^8\" }\n}\n",
            ),
            ("agents/echo.cjs", "// echo\nconsole.log('hi');\n"),
            ("agents/lib/data.txt", "not a script\n"),
            ("agents/run-me", "#!/bin/sh\necho run\n"),
            ("README.md", "# Echo test\nRead me.\n"),
        ],
    )
}

#[test]
fn variables_come_from_flags_then_env_then_defaults() {
    let e = Env::new();
    template(
        &e.dir.join("templates"),
        "vars",
        &[
            (
                "template.json",
                r#"{"name": "vars", "description": "variables", "variables": [
                    {"name": "SPACE_NAME", "default": "${dirname}-space"},
                    {"name": "A", "default": "a-default"},
                    {"name": "B", "env_sources": ["MEW_T_UNSET", "MEW_T_B"], "default": "b-default"},
                    {"name": "AGENT_MODEL", "default": "model-default"}
                ]}"#,
            ),
            (
                "space.yaml",
                "# A={{A}} B={{B}} BJ={{B_JSON}} P={{PORT}} M={{AGENT_MODEL}} ID={{SPACE_ID}} T={{UI_THEME}}\n",
            ),
        ],
    );
    std::fs::write(e.dir.join("templates/vars/space.yaml"), {
        let mut s = std::fs::read_to_string(e.dir.join("templates/vars/space.yaml")).unwrap();
        s.push_str(SIMPLE_SPACE);
        s
    })
    .unwrap();

    // Defaults only (`${dirname}` is the space directory's name).
    ok(&e.mew(&["init", "vars"]));
    let y = e.read(".mew/space.yaml");
    assert!(
        y.starts_with(
            "# A=a-default B=b-default BJ=\"b-default\" P=8080 M=model-default ID=proj-space T=neon-pulse\n"
        ),
        "{y}"
    );
    assert!(y.contains("id: \"proj-space\""), "{y}");
    assert!(y.contains("description: \"\""), "{y}");

    // The environment beats the default; flags beat both.
    ok(&e.mew_env(
        &[
            "init",
            "vars",
            "--force",
            "--name",
            "Flag Name",
            "--description",
            "Says \"hi\"",
            "--port",
            "9123",
            "--model",
            "m-flag",
            "--var",
            "A=a-flag",
        ],
        &[("MEW_T_B", "b \"env\"")],
    ));
    let y = e.read(".mew/space.yaml");
    assert!(
        y.starts_with(
            "# A=a-flag B=b \"env\" BJ=\"b \\\"env\\\"\" P=9123 M=m-flag ID=Flag-Name T=neon-pulse\n"
        ),
        "{y}"
    );
    assert!(y.contains(r#"description: "Says \"hi\"""#), "{y}");
    let check = e.mew(&["space", "check"]);
    ok(&check);

    // --var sets a flag-backed name too, but not two different values.
    let out = e.mew(&[
        "init",
        "vars",
        "--force",
        "--name",
        "x",
        "--var",
        "SPACE_NAME=y",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("SPACE_NAME is given twice"));
    let out = e.mew(&["init", "vars", "--force", "--var", "no-equals"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("expected NAME=VALUE"));
}

#[test]
fn a_variable_without_a_value_is_an_error_and_nothing_is_written() {
    let e = Env::new();
    template(
        &e.dir.join("templates"),
        "needy",
        &[
            (
                "template.json",
                r#"{"name": "needy", "variables": [
                    {"name": "SPACE_NAME", "default": "n"},
                    {"name": "ENDPOINT", "description": "where the agent connects", "env_sources": ["MEW_T_B"]},
                    {"name": "OPTIONAL", "required": false}
                ]}"#,
            ),
            ("space.yaml", SIMPLE_SPACE),
            ("agents/a.cjs", "x\n"),
        ],
    );
    let out = e.mew(&["init", "needy"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("no value for `ENDPOINT` (where the agent connects)")
            && err.contains("--var ENDPOINT=VALUE")
            && err.contains("$MEW_T_B")
            && err.contains("nothing was written"),
        "{err}"
    );
    assert!(!err.contains("OPTIONAL"), "{err}");
    assert!(!e.dir.join(".mew").exists());
    assert!(!e.dir.join(".gitignore").exists());

    // Given through its env source, it works.
    ok(&e.mew_env(&["init", "needy"], &[("MEW_T_B", "ws://x")]));
    assert!(e.dir.join(".mew/space.yaml").exists());
}

#[test]
fn force_is_needed_to_replace_and_replaces_only_the_templates_files() {
    let e = Env::new();
    scenario_like(&e.dir.join("templates"), "echo");
    std::fs::create_dir_all(e.dir.join(".mew/logs")).unwrap();
    std::fs::write(e.dir.join(".mew/space.yaml"), "# mine\n").unwrap();
    std::fs::write(e.dir.join(".mew/logs/keep.log"), "log\n").unwrap();

    let out = e.mew(&["init", "echo"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(e.read(".mew/space.yaml"), "# mine\n");
    assert!(!e.dir.join(".mew/agents").exists(), "nothing written");
    assert!(!e.dir.join(".mew/package.json").exists());
    assert!(!e.dir.join(".gitignore").exists());

    std::fs::create_dir_all(e.dir.join(".mew/agents")).unwrap();
    std::fs::write(e.dir.join(".mew/agents/echo.cjs"), "old\n").unwrap();
    std::fs::write(e.dir.join(".mew/agents/mine.cjs"), "mine\n").unwrap();
    ok(&e.mew(&["init", "echo", "--force"]));
    assert!(e.read(".mew/space.yaml").contains("id: \"echo-default\""));
    assert_eq!(
        e.read(".mew/agents/echo.cjs"),
        "// echo\nconsole.log('hi');\n"
    );
    assert_eq!(e.read(".mew/agents/mine.cjs"), "mine\n", "other files stay");
    assert_eq!(e.read(".mew/logs/keep.log"), "log\n");
    let leftovers: Vec<_> = std::fs::read_dir(e.dir.join(".mew"))
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().contains("mew-init"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary files: {leftovers:?}");

    // A top-level space.yaml (mew's other config place) also counts.
    let e = Env::new();
    std::fs::write(e.dir.join("space.yaml"), "# top\n").unwrap();
    let out = e.mew(&["init"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("space.yaml already exists"));
    assert!(!e.dir.join(".mew").exists());
    let s = ok(&e.mew(&["init", "--force"]));
    assert!(s.contains("takes precedence"), "{s}");
    assert_eq!(e.read("space.yaml"), "# top\n");
}

#[test]
fn a_local_template_shadows_a_user_one_which_shadows_a_built_in() {
    let e = Env::new();
    let user = e.home.join(".mew/templates");
    let local = e.dir.join("templates");
    for (root, who) in [(&user, "user"), (&local, "local")] {
        template(
            root,
            "shared",
            &[
                (
                    "template.json",
                    &format!(r#"{{"name": "shared", "description": "the {who} one"}}"#),
                ),
                ("space.yaml", &format!("# from {who}\n{SIMPLE_SPACE}")),
            ],
        );
    }
    template(
        &user,
        "only-user",
        &[("space.yaml", &format!("# only user\n{SIMPLE_SPACE}"))],
    );
    template(
        &user,
        "demo",
        &[("space.yaml", &format!("# user demo\n{SIMPLE_SPACE}"))],
    );
    // Not a template: no space.yaml (a project's own templates/ folder).
    std::fs::create_dir_all(local.join("html-partials")).unwrap();

    let list = ok(&e.mew(&["init", "--list-templates"]));
    let lines: Vec<&str> = list.lines().collect();
    let find = |pre: &str| {
        lines
            .iter()
            .position(|l| l.starts_with(pre))
            .unwrap_or_else(|| panic!("no line starting {pre:?} in:\n{list}"))
    };
    let l = find("shared  ");
    assert!(lines[l].contains("local") && lines[l].contains("the local one"));
    assert!(
        lines[l + 1].contains("user") && lines[l + 1].contains("(shadowed by local) the user one")
    );
    assert!(
        lines[find("only-user ")].contains("user      (no template.json)"),
        "{list}"
    );
    let d = find("demo ");
    assert!(lines[d].contains("user"), "{list}");
    assert!(lines[d + 1].contains("built-in") && lines[d + 1].contains("(shadowed by user)"));
    assert!(!list.contains("html-partials"), "{list}");

    let s = ok(&e.mew(&["init", "shared"]));
    assert!(s.contains("local"), "{s}");
    assert!(e.read(".mew/space.yaml").starts_with("# from local\n"));
    ok(&e.mew(&["init", "only-user", "--force"]));
    assert!(e.read(".mew/space.yaml").starts_with("# only user\n"));
    ok(&e.mew(&["init", "--force"]));
    assert!(e.read(".mew/space.yaml").starts_with("# user demo\n"));

    let info = ok(&e.mew(&["init", "--template-info", "shared"]));
    assert!(info.contains("Shadows: user"), "{info}");
}

#[test]
fn templates_in_the_space_dir_are_found() {
    let e = Env::new();
    let sub = e.dir.join("sub");
    scenario_like(&sub.join("templates"), "echo");
    ok(&e.mew(&["--space-dir", "sub", "init", "echo", "--name", "s"]));
    assert!(
        std::fs::read_to_string(sub.join(".mew/space.yaml"))
            .unwrap()
            .contains("id: \"s\"")
    );
    assert!(sub.join(".mew/agents/echo.cjs").exists());
    assert!(sub.join(".gitignore").exists());
}

#[test]
fn agents_are_copied_executable_and_package_json_is_rendered() {
    let e = Env::new();
    scenario_like(&e.dir.join("templates"), "echo");
    let s = ok(&e.mew(&["init", "echo", "--name", "t1"]));
    assert!(s.contains("npm install --prefix .mew"), "{s}");
    let mode = |rel: &str| {
        std::fs::metadata(e.dir.join(rel))
            .unwrap_or_else(|err| panic!("{rel}: {err}"))
            .permissions()
            .mode()
    };
    assert_ne!(
        mode(".mew/agents/echo.cjs") & 0o111,
        0,
        "a .cjs is executable"
    );
    assert_ne!(
        mode(".mew/agents/run-me") & 0o111,
        0,
        "a #! script is executable"
    );
    assert_eq!(mode(".mew/agents/lib/data.txt") & 0o111, 0);
    assert_eq!(e.read(".mew/agents/lib/data.txt"), "not a script\n");
    let pkg: serde_json::Value = serde_json::from_str(&e.read(".mew/package.json")).unwrap();
    assert_eq!(pkg["name"], "echo-t1");
    assert_eq!(mode(".mew/tokens") & 0o777, 0o700);
    assert_eq!(e.read(".mew/tokens/.gitignore"), "*\n");
    assert_eq!(
        e.read(".gitignore"),
        ".mew/logs/\n.mew/run/\n.mew/tokens/\n.mew/export/\n.mew/node_modules/\n"
    );
    // template.json and the README stay behind, as upstream.
    assert!(!e.dir.join(".mew/template.json").exists());
    assert!(!e.dir.join(".mew/README.md").exists());
    let check = e.mew(&["space", "check", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    assert_eq!(v["processes"][1]["name"], "echo");
}

#[test]
fn list_templates_and_template_info() {
    let e = Env::new();
    scenario_like(&e.dir.join("templates"), "echo");
    let list = ok(&e.mew(&["init", "--list-templates"]));
    assert!(
        list.lines().any(|l| l.starts_with("echo ")
            && l.contains("local")
            && l.ends_with("an echo agent for tests")),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("demo ") && l.contains("built-in"))
    );
    assert!(
        list.lines()
            .any(|l| l.starts_with("mew ") && l.contains("built-in"))
    );

    let info = ok(&e.mew(&["init", "--template-info", "echo"]));
    for want in [
        "Template: echo",
        "Source: local, ",
        "Name (template.json): echo-test",
        "Description: an echo agent for tests",
        "Version: 0.1.0",
        "  SPACE_NAME: Space identifier [default: \"echo-default\"]",
        "  .mew/space.yaml (rendered)",
        "  .mew/package.json (rendered)",
        "  .mew/agents/echo.cjs (copied, executable)",
        "  .mew/agents/lib/data.txt (copied)",
        "--- README ---",
        "Read me.",
    ] {
        assert!(info.contains(want), "missing {want:?} in:\n{info}");
    }
    let info = ok(&e.mew(&["init", "--template-info", "demo"]));
    assert!(
        info.contains("Source: built-in") && info.contains("SPACE_NAME"),
        "{info}"
    );
    assert!(!e.dir.join(".mew").exists(), "info writes nothing");

    // Listing works in an initialised space (upstream refuses).
    ok(&e.mew(&["init"]));
    ok(&e.mew(&["init", "--list-templates"]));
}

#[test]
fn an_unknown_template_lists_the_available_ones_and_suggests() {
    let e = Env::new();
    scenario_like(&e.dir.join("templates"), "scenario-1-basic");
    for args in [
        &["init", "scenario-1-basci"][..],
        &["init", "--template-info", "scenario-1-basci"][..],
    ] {
        let out = e.mew(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(
                "unknown template `scenario-1-basci`; available: demo, mew, scenario-1-basic"
            ) && err.contains("did you mean `scenario-1-basic`?")
                && err.contains("templates/"),
            "{err}"
        );
    }
    assert!(!e.dir.join(".mew").exists());
}

#[test]
fn symlinks_in_a_template_are_never_followed() {
    let e = Env::new();
    let t = scenario_like(&e.dir.join("templates"), "linky");
    let secret = e.home.join("secret.txt");
    std::fs::write(&secret, "top secret\n").unwrap();
    std::os::unix::fs::symlink("/etc/passwd", t.join("agents/passwd")).unwrap();
    std::os::unix::fs::symlink(&secret, t.join("agents/secret.cjs")).unwrap();
    std::fs::create_dir(e.home.join("elsewhere")).unwrap();
    std::fs::write(e.home.join("elsewhere/x.cjs"), "outside\n").unwrap();
    std::os::unix::fs::symlink(e.home.join("elsewhere"), t.join("agents/dir")).unwrap();

    let out = e.mew(&["init", "linky"]);
    ok(&out);
    let err = text(&out.stderr);
    assert!(
        err.contains("not copied: agents/passwd (a symlink (not followed))"),
        "{err}"
    );
    assert!(err.contains("agents/secret.cjs"), "{err}");
    assert!(err.contains("agents/dir"), "{err}");
    for rel in [
        ".mew/agents/passwd",
        ".mew/agents/secret.cjs",
        ".mew/agents/dir",
    ] {
        assert!(
            std::fs::symlink_metadata(e.dir.join(rel)).is_err(),
            "{rel} must not exist"
        );
    }
    assert!(e.dir.join(".mew/agents/echo.cjs").exists());
    let info = ok(&e.mew(&["init", "--template-info", "linky"]));
    assert!(info.contains("not copied: agents/passwd"), "{info}");

    // A symlinked space.yaml or template.json: the template is refused.
    let e = Env::new();
    let t = template(&e.dir.join("templates"), "bad", &[("template.json", "{}")]);
    std::os::unix::fs::symlink("/etc/passwd", t.join("space.yaml")).unwrap();
    let out = e.mew(&["init", "bad"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(!e.dir.join(".mew").exists());
    let t = template(
        &e.dir.join("templates"),
        "bad2",
        &[("space.yaml", SIMPLE_SPACE)],
    );
    std::os::unix::fs::symlink("/etc/passwd", t.join("template.json")).unwrap();
    let out = e.mew(&["init", "bad2"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("refusing template `bad2`") && err.contains("symlink"),
        "{err}"
    );
    assert!(!e.dir.join(".mew").exists());
}

#[test]
fn without_a_terminal_nothing_is_asked() {
    let e = Env::new();
    template(
        &e.dir.join("templates"),
        "ask",
        &[
            (
                "template.json",
                r#"{"variables": [
                    {"name": "SPACE_NAME", "default": "asked", "prompt": true},
                    {"name": "GREETING", "description": "a greeting", "prompt": true, "default": "hello"}
                ]}"#,
            ),
            ("space.yaml", &format!("# {{{{GREETING}}}}\n{SIMPLE_SPACE}")),
        ],
    );
    // stdin is /dev/null and stdout a pipe: the defaults are used.
    ok(&e.mew(&["init", "ask"]));
    assert!(e.read(".mew/space.yaml").starts_with("# hello\n"));
    assert!(e.read(".mew/space.yaml").contains("id: \"asked\""));

    // A prompt variable with no default: a clear error, not a hang.
    template(
        &e.dir.join("templates"),
        "ask2",
        &[
            (
                "template.json",
                r#"{"variables": [{"name": "GREETING", "prompt": true}]}"#,
            ),
            ("space.yaml", SIMPLE_SPACE),
        ],
    );
    let out = e.mew(&["init", "ask2", "--force"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("no value for `GREETING`"));
    assert!(
        e.read(".mew/space.yaml").starts_with("# hello\n"),
        "unchanged"
    );
}

#[test]
fn in_a_terminal_prompt_variables_are_asked() {
    use portable_pty::{CommandBuilder, PtySize, native_pty_system};
    use std::io::{Read as _, Write as _};
    let e = Env::new();
    template(
        &e.dir.join("templates"),
        "ask",
        &[
            (
                "template.json",
                r#"{"variables": [
                    {"name": "GREETING", "description": "a greeting", "prompt": true, "default": "hello"},
                    {"name": "OTHER", "description": "other", "prompt": true, "default": "kept"}
                ]}"#,
            ),
            (
                "space.yaml",
                &format!("# {{{{GREETING}}}} {{{{OTHER}}}}\n{SIMPLE_SPACE}"),
            ),
        ],
    );
    let pty = native_pty_system()
        .openpty(PtySize {
            rows: 24,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        })
        .unwrap();
    let mut cmd = CommandBuilder::new(MEW);
    cmd.args(["init", "ask"]);
    cmd.cwd(&e.dir);
    cmd.env("HOME", &e.home);
    cmd.env_remove("MEW_SPACE_CONFIG");
    let mut child = pty.slave.spawn_command(cmd).unwrap();
    drop(pty.slave);
    let mut reader = pty.master.try_clone_reader().unwrap();
    let mut writer = pty.master.take_writer().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut wait_for = |want: &str| {
        let limit = std::time::Duration::from_secs(30);
        while !seen.contains(want) {
            let chunk = rx
                .recv_timeout(limit)
                .unwrap_or_else(|_| panic!("no {want:?} in {seen:?}"));
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    wait_for("? a greeting (hello): ");
    writer.write_all(b"howdy\r").unwrap();
    wait_for("? other (kept): ");
    writer.write_all(b"\r").unwrap();
    wait_for("next:");
    assert!(child.wait().unwrap().success());
    assert!(e.read(".mew/space.yaml").starts_with("# howdy kept\n"));
}

#[test]
fn unknown_placeholders_are_kept_and_reported_by_line() {
    let e = Env::new();
    template(
        &e.dir.join("templates"),
        "odd",
        &[
            (
                "template.json",
                r#"{"variables": [{"name": "SPACE_NAME", "default": "odd"}]}"#,
            ),
            (
                "space.yaml",
                &format!(
                    "{SIMPLE_SPACE}# {{{{NOT_DECLARED}}}} {{{{ SPACED }}}}\n# key: '{{{{MY_API_KEY}}}}'\n"
                ),
            ),
        ],
    );
    let out = e.mew(&["init", "odd"]);
    ok(&out);
    let err = text(&out.stderr);
    assert!(
        err.contains("warning: .mew/space.yaml:11: {{NOT_DECLARED}} has no value; left as is"),
        "{err}"
    );
    assert!(
        !err.contains("SPACED") && !err.contains("MY_API_KEY"),
        "{err}"
    );
    let y = e.read(".mew/space.yaml");
    assert!(
        y.contains("# {{NOT_DECLARED}} {{ SPACED }}\n# key: ''\n"),
        "{y}"
    );
}

#[test]
fn a_template_without_space_yaml_or_with_bad_json_is_refused() {
    let e = Env::new();
    template(
        &e.dir.join("templates"),
        "broken",
        &[
            ("template.json", "{\n  \"variables\": [\n"),
            ("space.yaml", SIMPLE_SPACE),
        ],
    );
    let out = e.mew(&["init", "broken"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("template.json:3:") && err.contains("not valid JSON"),
        "{err}"
    );
    assert!(!e.dir.join(".mew").exists());
    let list = ok(&e.mew(&["init", "--list-templates"]));
    assert!(list.contains("(unusable: "), "{list}");
}
