//! `mew init`: the real binary writing into temporary directories.

use std::path::Path;

use crate::common::{mew_in, text};

#[test]
fn init_writes_the_demo_and_gitignore() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    std::fs::create_dir(&dir).unwrap();
    let out = mew_in(&dir, &["init"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(dir.join(".mew/space.yaml")).unwrap();
    // Rendered with the defaults (directory `demo`, port 8080), the demo
    // template is exactly the shipped example space: they cannot drift.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/examples/demo/.mew/space.yaml"),
    )
    .unwrap();
    assert_eq!(written, example);
    assert_eq!(
        std::fs::read_to_string(dir.join(".gitignore")).unwrap(),
        ".mew/logs/\n.mew/run/\n.mew/tokens/\n.mew/export/\n"
    );
    let check = mew_in(&dir, &["space", "check"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    assert!(text(&check.stdout).contains("ok: 6 processes, 0 warnings"));
}

#[test]
fn init_refuses_to_overwrite_without_force() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::create_dir(dir.join(".mew")).unwrap();
    std::fs::write(dir.join(".mew/space.yaml"), "# mine\n").unwrap();
    let out = mew_in(dir, &["init"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join(".mew/space.yaml")).unwrap(),
        "# mine\n"
    );
    assert!(
        !dir.join(".gitignore").exists(),
        "nothing is written when refusing"
    );

    let out = mew_in(
        dir,
        &[
            "init", "mew", "--force", "--name", "My Space", "--port", "9300",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let written = std::fs::read_to_string(dir.join(".mew/space.yaml")).unwrap();
    assert!(written.contains("id: My-Space"));
    assert!(written.contains("name: \"My Space\""));
    assert!(written.contains("port: 9300"));
    let check = mew_in(dir, &["space", "check", "--json"]);
    assert_eq!(check.status.code(), Some(0), "{}", text(&check.stderr));
    let v: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(v["gateway_port"], 9300);
    assert_eq!(v["processes"][0]["name"], "gateway");
    assert_eq!(v["processes"][1]["name"], "echo-agent");
    assert_eq!(v["processes"][1]["depends_on"][0]["name"], "gateway");
    assert_eq!(v["warnings"], serde_json::json!([]));
}

#[test]
fn init_appends_only_missing_gitignore_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join(".gitignore"), "target/\n.mew/logs/").unwrap();
    let out = mew_in(dir, &["init", "--space-dir", "."]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(dir.join(".gitignore")).unwrap(),
        "target/\n.mew/logs/\n.mew/run/\n.mew/tokens/\n.mew/export/\n"
    );
    let again = mew_in(dir, &["init", "--force"]);
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(
        std::fs::read_to_string(dir.join(".gitignore")).unwrap(),
        "target/\n.mew/logs/\n.mew/run/\n.mew/tokens/\n.mew/export/\n"
    );
}

#[test]
fn init_into_another_space_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("proj");
    std::fs::create_dir(&dir).unwrap();
    let out = mew_in(tmp.path(), &["init", "--space-dir", "proj", "mew"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        std::fs::read_to_string(dir.join(".mew/space.yaml"))
            .unwrap()
            .contains("id: proj")
    );
    assert!(dir.join(".gitignore").exists());
}

#[test]
fn list_templates_and_unknown_template() {
    let tmp = tempfile::tempdir().unwrap();
    let out = mew_in(tmp.path(), &["init", "--list-templates"]);
    assert_eq!(out.status.code(), Some(0));
    let s = text(&out.stdout);
    assert!(s.lines().any(|l| l.starts_with("demo ")), "{s}");
    assert!(s.lines().any(|l| l.starts_with("mew ")), "{s}");
    assert!(!tmp.path().join(".mew").exists());

    let out = mew_in(tmp.path(), &["init", "dem"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("unknown template `dem`") && err.contains("did you mean `demo`?"),
        "{err}"
    );
    assert!(!tmp.path().join(".mew").exists());
}
