//! The development loop's config with the real binary: `mew space check`
//! (text and `--json`) on spaces with override files, replicas, profiles
//! and `watch:`, and their errors at `file:line:col`.

use std::path::Path;

use crate::common::{mew_in, text};

fn space(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (name, text) in files {
        let p = dir.path().join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(p, text).expect("write");
    }
    dir
}

fn check_json(dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["space", "check", "--json"];
    a.extend_from_slice(args);
    let out = mew_in(dir, &a);
    assert_eq!(out.status.code(), Some(0), "stderr:\n{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("valid JSON")
}

fn process<'v>(v: &'v serde_json::Value, name: &str) -> &'v serde_json::Value {
    v["processes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no process {name} in {v:#}"))
}

const BASE: &str = "processes:
  web:
    command: ./serve
    env:
      MODE: dev
    depends_on: [db]
  db:
    command: ./db
";

#[test]
fn override_file_is_merged_and_shown() {
    let dir = space(&[
        ("space.yaml", BASE),
        (
            "space.override.yaml",
            "processes:\n  web:\n    env:\n      MODE: prod\n    stop_timeout: 9s\n  cache:\n    command: ./cache\n",
        ),
    ]);
    let out = mew_in(dir.path(), &["space", "check", "--show-values"]);
    let t = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(t.contains("space.override.yaml (override)"), "{t}");
    assert!(t.contains("space.override.yaml: env, stop_timeout"), "{t}");
    assert!(t.contains("env      MODE=prod"), "{t}");
    assert!(t.contains("stop     SIGTERM, SIGKILL after 9s"), "{t}");
    assert!(t.contains("space.override.yaml (defined there)"), "{t}");

    let v = check_json(dir.path(), &[]);
    let root = std::fs::canonicalize(dir.path()).expect("canonical");
    let base = root.join("space.yaml").display().to_string();
    let over = root.join("space.override.yaml").display().to_string();
    assert_eq!(v["space"]["sources"], serde_json::json!([base, over]));
    assert_eq!(v["space"]["config"], serde_json::json!(base));
    let web = process(&v, "web");
    assert_eq!(web["source"], serde_json::json!(base));
    assert_eq!(
        web["overridden"],
        serde_json::json!([{"key": "env", "file": over}, {"key": "stop_timeout", "file": over}])
    );
    assert_eq!(web["stop_timeout_ms"], 9000);
    assert_eq!(process(&v, "cache")["source"], serde_json::json!(over));
    assert!(process(&v, "db").get("overridden").is_none());
}

#[test]
fn error_in_override_points_at_it() {
    let dir = space(&[
        (".mew/space.yaml", BASE),
        (
            ".mew/space.override.yaml",
            "processes:\n  web:\n    depends_on: [dbb]\n",
        ),
    ]);
    let out = mew_in(dir.path(), &["space", "check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(".mew/space.override.yaml:3:18: `web` depends on `dbb`, which is not defined"),
        "{err}"
    );
    assert!(err.contains("3 |     depends_on: [dbb]"), "{err}");
    assert!(err.contains("= help: did you mean `db`?"), "{err}");

    let out = mew_in(dir.path(), &["space", "check", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false);
    let e = &v["errors"][0];
    assert!(
        e["file"]
            .as_str()
            .is_some_and(|f| f.ends_with(".mew/space.override.yaml")),
        "{v:#}"
    );
    assert_eq!((e["line"].as_u64(), e["col"].as_u64()), (Some(3), Some(18)));
}

#[test]
fn explicit_config_takes_its_own_override() {
    let dir = space(&[
        ("dev.yaml", BASE),
        (
            "dev.override.yaml",
            "processes:\n  db:\n    command: ./db --fast\n",
        ),
    ]);
    let v = check_json(dir.path(), &["--config", "dev.yaml"]);
    assert_eq!(process(&v, "db")["argv"][2], "./db --fast");
    assert_eq!(v["space"]["sources"].as_array().map(Vec::len), Some(2));
}

#[test]
fn replicas_profiles_and_watch_in_check() {
    let dir = space(&[(
        "space.yaml",
        "processes:
  worker:
    command: ./work --n ${REPLICA}
    replicas: 3
    env: { PORT: \"7000\" }
  web:
    command: ./web
    depends_on: [worker]
    profiles: [front]
    watch:
      paths: [src]
      ignore: [\"*.tmp\"]
      debounce: 1s
      action: SIGHUP
",
    )]);
    let v = check_json(dir.path(), &["--show-values"]);
    let names: Vec<&str> = v["processes"]
        .as_array()
        .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(names, ["worker-1", "worker-2", "worker-3", "web"]);
    let w3 = process(&v, "worker-3");
    assert_eq!(w3["argv"][2], "./work --n 3");
    assert_eq!(w3["env"][0], serde_json::json!(["PORT", "7002"]));
    assert_eq!(
        w3["replica"],
        serde_json::json!({"of": "worker", "index": 3, "count": 3})
    );
    let web = process(&v, "web");
    assert_eq!(web["profiles"], serde_json::json!(["front"]));
    assert_eq!(
        web["watch"],
        serde_json::json!({"paths": ["src"], "ignore": ["*.tmp"], "gitignore": true, "debounce_ms": 1000, "action": "SIGHUP"})
    );
    let deps: Vec<&str> = web["depends_on"]
        .as_array()
        .map(|d| d.iter().filter_map(|x| x["name"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(deps, ["worker-1", "worker-2", "worker-3"]);

    let out = mew_in(dir.path(), &["space", "check"]);
    let t = text(&out.stdout);
    assert!(
        t.contains("worker-2 (process, replica 2 of 3 of worker)"),
        "{t}"
    );
    assert!(t.contains("profiles front"), "{t}");
    assert!(
        t.contains("watch    src (ignore '*.tmp', debounce 1s, then SIGHUP)"),
        "{t}"
    );
}

#[test]
fn devloop_keys_are_validated_before_anything_runs() {
    let dir = space(&[(
        "space.yaml",
        "processes:
  web:
    command: ./web
    watch: { debounce: soon, action: SIGNOPE }
    replicas: 0
",
    )]);
    let out = mew_in(dir.path(), &["space", "check"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("space.yaml:4:24: `web.watch.debounce`"),
        "{err}"
    );
    assert!(
        err.contains("space.yaml:4:38: `web.watch.action`: expected `restart` or a signal"),
        "{err}"
    );
    assert!(
        err.contains("space.yaml:5:15: `web.replicas`: must be at least 1"),
        "{err}"
    );
    assert!(err.contains("3 configuration errors"), "{err}");
}

#[test]
fn override_of_space_keys_and_two_configs() {
    let dir = space(&[
        ("space.yaml", BASE),
        ("space.override.yaml", "shutdown_timeout: 3s\n"),
        ("ci.yaml", "processes:\n  db:\n    command: ./db --ci\n"),
    ]);
    let out = mew_in(dir.path(), &["space", "check"]);
    let t = text(&out.stdout);
    assert!(
        t.contains("space.override.yaml (override): shutdown_timeout"),
        "{t}"
    );
    assert!(t.contains("shutdown 3s"), "{t}");
    let v = check_json(dir.path(), &[]);
    assert_eq!(v["space"]["overridden"][0]["key"], "shutdown_timeout");
    // The library's list of override files (what `--config` given twice passes)
    // replaces the own override file.
    let cfg = mew::config::load(&mew::config::LoadOptions {
        space_dir: dir.path().to_path_buf(),
        config: Some(dir.path().join("space.yaml")),
        overrides: vec![dir.path().join("ci.yaml")],
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.sources.len(), 2);
    assert!(cfg.sources[1].ends_with("ci.yaml"));
    assert_eq!(
        cfg.process("db").map(|p| p.command.as_str()),
        Some("./db --ci")
    );
    assert_eq!(cfg.shutdown_timeout, std::time::Duration::from_secs(10));
    let missing = mew::config::load(&mew::config::LoadOptions {
        space_dir: dir.path().to_path_buf(),
        config: Some(dir.path().join("space.yaml")),
        overrides: vec![dir.path().join("nope.yaml")],
        ..Default::default()
    });
    assert!(matches!(
        missing,
        Err(mew::config::ConfigError::NotFound { .. })
    ));
}
