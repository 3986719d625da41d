//! Unit tests of the development loop's config: `watch:`, `profiles:`,
//! `replicas:`, override files, [`select`], [`diff`], [`replica_of`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const CFG: &str = "/space/demo/space.yaml";
const OVR: &str = "/space/demo/space.override.yaml";

fn dir() -> PathBuf {
    PathBuf::from("/space/demo")
}

fn parse(yaml: &str) -> Result<SpaceConfig, ConfigError> {
    parse_yaml(yaml, Path::new(CFG), &dir())
}

fn ok(yaml: &str) -> SpaceConfig {
    match parse(yaml) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error:\n{e}"),
    }
}

fn merged(base: &str, over: &str) -> Result<SpaceConfig, ConfigError> {
    parse_yaml_files(
        &[
            (PathBuf::from(CFG), base.to_owned()),
            (PathBuf::from(OVR), over.to_owned()),
        ],
        &dir(),
    )
}

/// Errors as `file:line:col message`.
fn errs(r: Result<SpaceConfig, ConfigError>) -> Vec<String> {
    match r {
        Ok(_) => panic!("expected errors"),
        Err(e) => e
            .errors()
            .iter()
            .map(|d| {
                let l = d.loc.clone().unwrap_or_default();
                format!("{}:{}:{} {}", d.file.display(), l.line, l.col, d.message)
            })
            .collect(),
    }
}

fn names(c: &SpaceConfig) -> Vec<&str> {
    c.processes.iter().map(|p| p.name.as_str()).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

// ---- watch ----

#[test]
fn watch_shorthand_and_defaults() {
    let c = ok("processes:\n  web:\n    command: ./serve\n    watch: [src, \"*.toml\"]\n");
    let w = c.processes[0].watch.clone().expect("watch");
    assert_eq!(w.paths, strings(&["src", "*.toml"]));
    assert!(w.ignore.is_empty());
    assert!(w.gitignore);
    assert_eq!(w.debounce, Duration::from_millis(300));
    assert_eq!(w.action, WatchAction::Restart);
    let c = ok("processes:\n  web:\n    command: ./serve\n    watch: src\n");
    assert_eq!(
        c.processes[0].watch.as_ref().map(|w| w.paths.clone()),
        Some(strings(&["src"]))
    );
    let c = ok("processes:\n  web:\n    command: ./serve\n");
    assert_eq!(c.processes[0].watch, None);
}

#[test]
fn watch_mapping() {
    let c = ok(
        "processes:\n  web:\n    command: ./serve\n    watch:\n      paths: [src]\n      ignore: [\"*.log\"]\n      gitignore: false\n      debounce: 1s\n      action: HUP\n",
    );
    let w = c.processes[0].watch.clone().expect("watch");
    assert_eq!(w.paths, strings(&["src"]));
    assert_eq!(w.ignore, strings(&["*.log"]));
    assert!(!w.gitignore);
    assert_eq!(w.debounce, Duration::from_secs(1));
    match w.action {
        WatchAction::Signal { signal } => assert_eq!(signal.name, "SIGHUP"),
        WatchAction::Restart => panic!("expected a signal"),
    }
    // Without `paths`, the whole cwd.
    let c = ok("processes:\n  web:\n    command: ./serve\n    watch: { action: restart }\n");
    assert_eq!(
        c.processes[0].watch.as_ref().map(|w| w.paths.clone()),
        Some(strings(&["."]))
    );
}

#[test]
fn watch_errors_are_located() {
    let base = "processes:\n  web:\n    command: ./serve\n";
    let e = errs(parse(&format!("{base}    watch: {{ debounce: soon }}\n")));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with(&format!("{CFG}:4:24 `web.watch.debounce`")),
        "{e:#?}"
    );
    let e = errs(parse(&format!("{base}    watch: {{ action: SIGNOPE }}\n")));
    assert!(
        e[0].contains(":4:22 `web.watch.action`: expected `restart` or a signal"),
        "{e:#?}"
    );
    let e = errs(parse(&format!("{base}    watch: {{ action: restrat }}\n")));
    assert!(e[0].contains("did you mean `restart`?"), "{e:#?}");
    let e = errs(parse(&format!("{base}    watch: {{ gitignore: 3 }}\n")));
    assert!(
        e[0].contains("`web.watch.gitignore`: expected `true` or `false`"),
        "{e:#?}"
    );
    let e = errs(parse(&format!("{base}    watch: []\n")));
    assert!(
        e[0].contains(":4:12 `web.watch`: no path to watch"),
        "{e:#?}"
    );
    let e = errs(parse(&format!("{base}    watch: 3\n")));
    assert!(
        e[0].contains("`web.watch`: expected a list of paths or a mapping"),
        "{e:#?}"
    );
    // An unknown key is a did-you-mean warning.
    let c = ok(&format!("{base}    watch: {{ pathz: [src] }}\n"));
    assert!(
        c.warnings
            .iter()
            .any(|w| w.message.contains("unknown key `pathz`")
                && w.message.contains("did you mean `paths`?")),
        "{:#?}",
        c.warnings
    );
}

// ---- profiles and select ----

const PROFILED: &str = "processes:
  db:
    command: ./db
  api:
    command: ./api
    depends_on: [db]
  web:
    command: ./web
    depends_on: [api]
  debug:
    command: ./debugger
    profiles: [debug]
  seed:
    command: ./seed
    profiles: [tools, debug]
    depends_on: [db]
  lonely:
    command: ./lonely
";

#[test]
fn profiles_are_parsed_and_checked() {
    let c = ok(PROFILED);
    assert_eq!(
        c.process("seed").map(|p| p.profiles.clone()),
        Some(strings(&["tools", "debug"]))
    );
    assert_eq!(profiles(&c), strings(&["debug", "tools"]));
    let e = errs(parse(
        "processes:\n  a:\n    command: x\n    profiles: [\"no way\"]\n",
    ));
    assert!(e[0].contains(":4:16 `a.profiles`: profile"), "{e:#?}");
    let e = errs(parse(
        "processes:\n  a:\n    command: x\n    profiles: debug\n",
    ));
    assert!(
        e[0].contains("`a.profiles`: expected a list of strings"),
        "{e:#?}"
    );
}

#[test]
fn select_without_names_honours_profiles() {
    let c = ok(PROFILED);
    let all = select(&c, &[], &[]).expect("select");
    assert_eq!(all, strings(&["db", "api", "web", "lonely"]));
    let dbg = select(&c, &[], &strings(&["debug"])).expect("select");
    assert_eq!(
        dbg,
        strings(&["db", "api", "web", "debug", "seed", "lonely"])
    );
    let tools = select(&c, &[], &strings(&["tools"])).expect("select");
    assert_eq!(tools, strings(&["db", "api", "web", "seed", "lonely"]));
}

#[test]
fn select_names_with_their_dependencies() {
    let c = ok(PROFILED);
    assert_eq!(
        select(&c, &strings(&["web"]), &[]).expect("web"),
        strings(&["db", "api", "web"])
    );
    // Named explicitly, a profiled process starts without its profile.
    assert_eq!(
        select(&c, &strings(&["seed"]), &[]).expect("seed"),
        strings(&["db", "seed"])
    );
    assert_eq!(
        select(&c, &strings(&["lonely"]), &[]).expect("lonely"),
        strings(&["lonely"])
    );
}

#[test]
fn select_unknown_names_suggest() {
    let c = ok(PROFILED);
    let e = select(&c, &strings(&["wbe"]), &[]).expect_err("unknown");
    assert_eq!(
        e,
        SelectError::UnknownProcess {
            name: "wbe".into(),
            suggestion: Some("web".into())
        }
    );
    assert_eq!(
        e.to_string(),
        "no process `wbe` in this space\nhelp: did you mean `web`?"
    );
    let e = select(&c, &[], &strings(&["degub"])).expect_err("unknown profile");
    assert!(e.to_string().contains("did you mean `debug`?"), "{e}");
    let e = select(&c, &[], &strings(&["zzzzzz"])).expect_err("unknown profile");
    assert!(
        e.to_string()
            .contains("profiles of this space: debug, tools"),
        "{e}"
    );
}

#[test]
fn select_a_dependency_on_an_inactive_profile_is_started() {
    let c = ok(
        "processes:\n  tool:\n    command: ./t\n    profiles: [x]\n  app:\n    command: ./a\n    depends_on: [tool]\n",
    );
    assert_eq!(
        select(&c, &[], &[]).expect("select"),
        strings(&["tool", "app"])
    );
}

// ---- replicas ----

const REPLICATED: &str = "processes:
  worker:
    command: ./work --id ${REPLICA}
    replicas: 3
    env:
      PORT: \"9000\"
  web:
    command: ./web
    depends_on: [worker]
  single:
    command: ./one ${REPLICA}
    replicas: 1
";

#[test]
fn replicas_expand_with_names_and_dependencies() {
    let c = ok(REPLICATED);
    assert_eq!(
        names(&c),
        ["worker-1", "worker-2", "worker-3", "web", "single"]
    );
    let w2 = c.process("worker-2").expect("worker-2");
    assert_eq!(
        w2.replica,
        Some(Replica {
            of: "worker".into(),
            index: 2,
            count: 3
        })
    );
    let web = c.process("web").expect("web");
    let deps: Vec<&str> = web.depends_on.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deps, ["worker-1", "worker-2", "worker-3"]);
    assert_eq!(
        c.process("single").and_then(|p| p.replica.clone()),
        Some(Replica {
            of: "single".into(),
            index: 1,
            count: 1
        })
    );
    assert_eq!(
        select(&c, &strings(&["worker"]), &[])
            .expect("select")
            .len(),
        3
    );
    assert_eq!(
        select(&c, &strings(&["web"]), &[]).expect("select").len(),
        4
    );
}

#[test]
fn replicas_interpolate_and_offset_the_port() {
    let c = ok(REPLICATED);
    let ctx = ResolveContext {
        port: 8080,
        tokens: Default::default(),
    };
    let (resolved, warnings) = resolve_with_env(&c, &ctx, &|_| None);
    assert!(warnings.is_empty(), "{warnings:#?}");
    let by = |n: &str| resolved.iter().find(|r| r.name == n).expect("resolved");
    let port = |n: &str| {
        by(n)
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "PORT")
            .map(|(_, v)| v.clone())
    };
    assert_eq!(by("worker-3").argv[2], "./work --id 3");
    assert_eq!(port("worker-1").as_deref(), Some("9000"));
    assert_eq!(port("worker-2").as_deref(), Some("9001"));
    assert_eq!(port("worker-3").as_deref(), Some("9002"));
    assert_eq!(by("single").argv[2], "./one 1");
}

#[test]
fn replicas_errors() {
    let e = errs(parse("processes:\n  w:\n    command: x\n    replicas: 0\n"));
    assert!(
        e[0].contains(":4:15 `w.replicas`: must be at least 1"),
        "{e:#?}"
    );
    let e = errs(parse(
        "processes:\n  w:\n    command: x\n    replicas: two\n",
    ));
    assert!(
        e[0].contains("`w.replicas`: expected a whole number"),
        "{e:#?}"
    );
    let e = errs(parse(
        "processes:\n  w:\n    command: x\n    replicas: 2\n  w-2:\n    command: y\n",
    ));
    assert!(
        e.iter()
            .any(|m| m.contains("the copy `w-2` would have the name of another process")),
        "{e:#?}"
    );
    let many: String = (0..11)
        .map(|i| format!("  w{i}:\n    command: x\n    replicas: 1000\n"))
        .collect();
    let e = errs(parse(&format!("processes:\n{many}")));
    assert!(
        e[0].contains(":4:15 `replicas:` would make 11000 processes in all; at most 10000"),
        "{e:#?}"
    );
    let e = errs(parse(
        "participants:\n  bot:\n    command: x\n    auto_start: true\n    replicas: 2\n",
    ));
    assert!(
        e[0].contains("only a process under `processes:` can have replicas"),
        "{e:#?}"
    );
}

#[test]
fn replica_of_makes_a_copy_at_runtime() {
    let c = ok(REPLICATED);
    let w5 = replica_of(&c, "worker", 5, 5).expect("copy");
    assert_eq!(w5.name, "worker-5");
    assert_eq!(
        w5.replica.as_ref().map(|r| (r.index, r.count)),
        Some((5, 5))
    );
    assert_eq!(w5.command, "./work --id ${REPLICA}");
    let web2 = replica_of(&c, "web", 2, 2).expect("a plain process scales too");
    assert_eq!(web2.name, "web-2");
    assert!(replica_of(&c, "nope", 1, 2).is_none());
    assert!(replica_of(&c, "worker", 0, 2).is_none());
    assert!(replica_of(&c, "worker", 3, 2).is_none());
}

// ---- override files ----

const BASE: &str = "processes:
  web:
    command: ./serve
    env:
      PORT: \"3000\"
      MODE: dev
    depends_on: [db]
  db:
    command: ./db
";

#[test]
fn overrides_merge_key_by_key() {
    let c = merged(
        BASE,
        "processes:\n  web:\n    env:\n      MODE: prod\n      EXTRA: \"1\"\n    restart_policy: always\n  cache:\n    command: ./cache\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.sources, [PathBuf::from(CFG), PathBuf::from(OVR)]);
    assert_eq!(names(&c), ["web", "db", "cache"]);
    let web = c.process("web").expect("web");
    assert_eq!(web.command, "./serve");
    assert_eq!(
        web.env,
        [
            ("PORT".to_owned(), "3000".to_owned()),
            ("MODE".to_owned(), "prod".to_owned()),
            ("EXTRA".to_owned(), "1".to_owned())
        ]
    );
    assert_eq!(web.restart_policy, RestartPolicy::Always);
    let keys: Vec<(&str, &Path)> = web
        .overridden
        .iter()
        .map(|o| (o.key.as_str(), o.file.as_path()))
        .collect();
    assert_eq!(
        keys,
        [("env", Path::new(OVR)), ("restart_policy", Path::new(OVR))]
    );
    let cache = c.process("cache").expect("cache");
    assert_eq!(c.file_of(&cache.loc), Path::new(OVR));
    assert!(cache.overridden.is_empty());
    assert_eq!(c.file_of(&web.loc), Path::new(CFG));
}

#[test]
fn overrides_lists_replace_and_env_lists_merge_by_name() {
    let c = merged(
        "processes:\n  web:\n    command: ./serve\n    args: [a, b]\n    env: [\"A=1\", \"B=2\"]\n    depends_on: [db]\n  db:\n    command: ./db\n  cache:\n    command: ./c\n",
        "processes:\n  web:\n    args: [c]\n    env:\n      B: \"3\"\n    depends_on: [cache]\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let web = c.process("web").expect("web");
    assert_eq!(web.args, Some(strings(&["c"])));
    assert_eq!(
        web.env,
        [
            ("A".to_owned(), "1".to_owned()),
            ("B".to_owned(), "3".to_owned())
        ]
    );
    let deps: Vec<&str> = web.depends_on.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(deps, ["cache"]);
    // An empty block in an override changes nothing.
    let c = merged(BASE, "processes:\n  web:\n").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        c.process("web").map(|p| p.command.as_str()),
        Some("./serve")
    );
}

#[test]
fn override_errors_point_at_the_override_file() {
    let e = errs(merged(
        BASE,
        "processes:\n  web:\n    stop_timeout: forever\n",
    ));
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(
        e[0].starts_with(&format!("{OVR}:3:19 `web.stop_timeout`")),
        "{e:#?}"
    );
    let e = errs(merged(BASE, "processes:\n  web:\n    depends_on: [dbb]\n"));
    assert!(
        e[0].starts_with(&format!("{OVR}:3:18 `web` depends on `dbb`")),
        "{e:#?}"
    );
    let e = errs(merged(BASE, "processes: [\n"));
    assert!(
        e[0].starts_with(&format!("{OVR}:")) && e[0].contains("invalid YAML"),
        "{e:#?}"
    );
    // The rendered report quotes the override file's line.
    let Err(err) = merged(BASE, "processes:\n  web:\n    stop_timeout: forever\n") else {
        panic!("expected an error")
    };
    let text = err.to_string();
    assert!(text.contains("3 |     stop_timeout: forever"), "{text}");
}

#[test]
fn override_path_names() {
    assert_eq!(
        override_path(Path::new("/s/space.yaml")),
        Some(PathBuf::from("/s/space.override.yaml"))
    );
    assert_eq!(
        override_path(Path::new("/s/.mew/dev.yml")),
        Some(PathBuf::from("/s/.mew/dev.override.yml"))
    );
    assert_eq!(override_path(Path::new("/s/space.override.yaml")), None);
    assert_eq!(override_path(Path::new("/s/Procfile")), None);
}

// ---- diff ----

#[test]
fn diff_by_name_says_what_changed() {
    let old = ok("processes:
  same:
    command: ./same
  cmd:
    command: ./a
  envy:
    command: ./e
    env: { PORT: \"1\", KEEP: x }
  gone:
    command: ./g
  watched:
    command: ./w
");
    let new = ok("processes:
  same:
    command: ./same
  cmd:
    command: ./b
    stop_signal: INT
  envy:
    command: ./e
    env: { KEEP: x, PORT: \"2\", NEW: y }
  watched:
    command: ./w
    watch: [src]
  fresh:
    command: ./f
");
    let d = diff(&old, &new);
    assert_eq!(d.added, strings(&["fresh"]));
    assert_eq!(d.removed, strings(&["gone"]));
    assert_eq!(d.unchanged, strings(&["same"]));
    assert_eq!(
        d.changed,
        [
            Changed {
                name: "cmd".into(),
                fields: strings(&["command", "stop_signal"]),
                restart: true
            },
            Changed {
                name: "envy".into(),
                fields: strings(&["env.NEW", "env.PORT"]),
                restart: true
            },
            Changed {
                name: "watched".into(),
                fields: strings(&["watch"]),
                restart: false
            },
        ]
    );
    assert_eq!(diff(&old, &old).unchanged.len(), old.processes.len());
    // Moving a process in the file (its location) is no change.
    let moved = ok("processes:\n\n  same:\n    command: ./same\n");
    assert_eq!(diff(&old, &moved).unchanged, strings(&["same"]));
}

#[test]
fn diff_of_dependencies_alone_needs_no_restart() {
    let a = ok("processes:\n  x:\n    command: ./x\n  y:\n    command: ./y\n");
    let b = ok("processes:\n  x:\n    command: ./x\n    depends_on: [y]\n  y:\n    command: ./y\n");
    let d = diff(&a, &b);
    assert_eq!(d.changed.len(), 1);
    assert_eq!(d.changed[0].fields, strings(&["depends_on"]));
    assert!(!d.changed[0].restart);
}

#[test]
fn load_options_with_configs() {
    let o =
        LoadOptions::default().with_configs(&[PathBuf::from("a.yaml"), PathBuf::from("b.yaml")]);
    assert_eq!(o.config, Some(PathBuf::from("a.yaml")));
    assert_eq!(o.overrides, [PathBuf::from("b.yaml")]);
}

#[test]
fn diff_of_the_port_marks_everyone() {
    let a = ok("processes:\n  x:\n    command: ./x\n");
    let mut b = a.clone();
    b.gateway_port = 9999;
    let d = diff(&a, &b);
    assert_eq!(d.changed[0].fields, strings(&["gateway_port"]));
}

#[test]
fn overrides_of_the_space_itself_are_named() {
    let c = merged(BASE, "shutdown_timeout: 3s\nspace:\n  name: Mine\n")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.shutdown_timeout, Duration::from_secs(3));
    assert_eq!(c.name, "Mine");
    let keys: Vec<&str> = c.overridden.iter().map(|k| k.key.as_str()).collect();
    assert_eq!(keys, ["shutdown_timeout", "space"]);
    assert!(ok(BASE).overridden.is_empty());
}

#[test]
fn merging_a_config_over_itself_or_nothing_changes_nothing() {
    let one = ok(BASE);
    for over in [BASE, "", "# only a comment\n", "processes:\n"] {
        let mut two = merged(BASE, over).unwrap_or_else(|e| panic!("{over:?}: {e}"));
        assert_eq!(two.sources.len(), 2);
        two.sources.truncate(1);
        for p in &mut two.processes {
            p.overridden.clear();
        }
        two.overridden.clear();
        assert_eq!(two, one, "{over:?}");
    }
}
