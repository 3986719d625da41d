//! `mew init`: write `.mew/space.yaml` (and a template's agents and
//! `package.json`) from a template: local `templates/<name>/`, the user's
//! `~/.mew/templates/<name>/`, or one built into the binary. Templates are
//! in the upstream MEW CLI's format (`template.json`, `space.yaml`,
//! `agents/`, `package.json`); docs/cli.md lists the rules.

pub(crate) mod template;
pub(crate) mod vars;

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use indexmap::IndexMap;

use crate::cli::{InitArgs, SpaceArgs};
use template::{Found, Kind};

#[cfg(test)]
use template::BUILT_INS;

/// Lines `mew init` makes sure `.gitignore` has.
pub(crate) const GITIGNORE_LINES: &[&str] =
    &[".mew/logs/", ".mew/run/", ".mew/tokens/", ".mew/export/"];
/// Added too when the template has a `package.json`.
pub(crate) const GITIGNORE_NODE: &str = ".mew/node_modules/";

/// Render a built-in template with the defaults for everything but the
/// space name and port (tests: every built-in renders and checks).
#[cfg(test)]
fn render(template: &str, name: &str, port: u16) -> Result<String, String> {
    let b = BUILT_INS
        .iter()
        .find(|t| t.name == template)
        .ok_or_else(|| {
            let names: Vec<&str> = BUILT_INS.iter().map(|t| t.name).collect();
            unknown_template(template, &names)
        })?;
    let env = |_: &str| None;
    let mut inputs = vars::Inputs {
        explicit: IndexMap::from([
            ("SPACE_NAME".to_owned(), name.to_owned()),
            ("PORT".to_owned(), port.to_string()),
        ]),
        env: &env,
        dirname: String::new(),
        date: String::new(),
        ask: None,
    };
    let values = vars::resolve(&[], &mut inputs)?;
    Ok(vars::substitute(b.text, &values).0)
}

fn unknown_template(name: &str, names: &[&str]) -> String {
    let mut msg = format!("unknown template `{name}`; available: {}", names.join(", "));
    if let Some(s) = crate::config::did_you_mean(name, names) {
        msg.push_str(&format!(" (did you mean `{s}`?)"));
    }
    msg
}

/// Append the missing lines of [`GITIGNORE_LINES`] (and `extra`). Returns
/// the lines added.
pub(crate) fn update_gitignore(
    dir: &Path,
    extra: &[&'static str],
) -> std::io::Result<Vec<&'static str>> {
    let path = dir.join(".gitignore");
    let existing = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let have: Vec<&str> = existing.lines().map(str::trim).collect();
    let missing: Vec<&'static str> = GITIGNORE_LINES
        .iter()
        .chain(extra)
        .copied()
        .filter(|l| !have.contains(l) && !have.contains(&l.trim_end_matches('/')))
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let mut add = String::new();
    if !existing.is_empty() && !existing.ends_with('\n') {
        add.push('\n');
    }
    for l in &missing {
        add.push_str(l);
        add.push('\n');
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    f.write_all(add.as_bytes())?;
    Ok(missing)
}

/// `mew init`'s failures: the exit code and the message.
pub(crate) struct Fail(pub(crate) u8, pub(crate) String);

fn usage(msg: impl Into<String>) -> Fail {
    Fail(2, msg.into())
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME").map(PathBuf::from)
}

fn find<'a>(all: &'a [Found], name: &str, dir: &Path) -> Result<&'a Found, Fail> {
    all.iter().find(|f| f.name == name).ok_or_else(|| {
        let searched: Vec<String> = template::search_dirs(dir, home().as_deref())
            .iter()
            .map(|(_, d)| format!("{}/", d.display()))
            .collect();
        usage(format!(
            "{}\nhelp: templates are directories with a space.yaml, in {} (in that order), then built in",
            unknown_template(name, &template::names(all)),
            searched.join(", ")
        ))
    })
}

fn where_from(f: &Found) -> String {
    match &f.path {
        Some(p) => format!("{}, {}", f.source.label(), p.display()),
        None => f.source.label().to_owned(),
    }
}

fn list(all: &[Found]) {
    let w = all.iter().map(|f| f.name.len()).max().unwrap_or(0);
    let mut prev: Option<&Found> = None;
    for f in all {
        let desc = match template::meta(f) {
            Ok(m) => m.description,
            Err(e) => format!("(unusable: {e})"),
        };
        let shadow = match prev {
            Some(p) if p.name == f.name => format!("(shadowed by {}) ", p.source.label()),
            _ => {
                prev = Some(f);
                String::new()
            }
        };
        println!("{:<w$}  {:<8}  {shadow}{desc}", f.name, f.source.label());
    }
}

fn info(all: &[Found], name: &str, dir: &Path) -> Result<(), Fail> {
    let found = find(all, name, dir)?;
    let t = template::load(found).map_err(usage)?;
    let m = &t.meta;
    println!("Template: {}", found.name);
    println!("Source: {}", where_from(found));
    if m.name != found.name {
        println!("Name (template.json): {}", m.name);
    }
    println!("Description: {}", m.description);
    if let Some(v) = &m.version {
        println!("Version: {v}");
    }
    if let Some(a) = &m.author {
        println!("Author: {a}");
    }
    if !m.tags.is_empty() {
        println!("Tags: {}", m.tags.join(", "));
    }
    for other in all.iter().filter(|f| f.name == found.name).skip(1) {
        println!("Shadows: {}", where_from(other));
    }
    println!("Variables:");
    if m.variables.is_empty() {
        println!("  (none declared)");
    }
    for v in &m.variables {
        let mut line = format!("  {}", v.name);
        if !v.description.is_empty() {
            line.push_str(&format!(": {}", v.description));
        }
        let mut notes = Vec::new();
        match &v.default {
            Some(d) => notes.push(format!("default: {d:?}")),
            None if v.required == Some(false) => notes.push("default: empty".into()),
            None if !v.sensitive => notes.push("no default: required".into()),
            None => {}
        }
        if !v.env_sources.is_empty() {
            let env: Vec<String> = v.env_sources.iter().map(|e| format!("${e}")).collect();
            notes.push(format!("env: {}", env.join(", ")));
        }
        if v.prompt {
            notes.push("asked in a terminal".into());
        }
        if v.sensitive {
            notes.push("sensitive: never written".into());
        }
        if v.required == Some(true) {
            notes.push("required".into());
        }
        if !notes.is_empty() {
            line.push_str(&format!(" [{}]", notes.join("; ")));
        }
        println!("{line}");
    }
    let builtin: Vec<String> = vars::BUILT_IN_VARS
        .iter()
        .filter(|(n, _, _)| !m.variables.iter().any(|v| v.name == *n))
        .map(|(n, flag, _)| format!("{n} ({flag})"))
        .collect();
    if !builtin.is_empty() {
        println!(
            "  also: {}, SPACE_ID (slug of SPACE_NAME); NAME_JSON for any NAME",
            builtin.join(", ")
        );
    }
    println!("Files:");
    for f in &t.files {
        let how = match f.kind {
            Kind::Rendered => "rendered",
            Kind::Copied if f.mode & 0o111 != 0 => "copied, executable",
            Kind::Copied => "copied",
        };
        println!("  .mew/{} ({how})", f.dest.display());
    }
    for s in &t.skipped {
        println!("  not copied: {s}");
    }
    if let Some(r) = &t.readme {
        println!("\n--- README ---\n");
        println!("{}", r.trim_end());
    }
    Ok(())
}

/// Values from the flags.
fn explicit(args: &InitArgs) -> Result<IndexMap<String, String>, Fail> {
    let mut m = IndexMap::new();
    let named = [
        ("SPACE_NAME", args.name.clone()),
        ("SPACE_DESCRIPTION", args.description.clone()),
        ("PORT", args.port.map(|p| p.to_string())),
        ("AGENT_MODEL", args.model.clone()),
        ("UI_THEME", args.theme.clone()),
    ];
    for (k, v) in named {
        if let Some(v) = v {
            m.insert(k.to_owned(), v);
        }
    }
    for kv in &args.vars {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| usage(format!("--var {kv:?}: expected NAME=VALUE")))?;
        if !template::is_var_name(k) {
            return Err(usage(format!(
                "--var {kv:?}: `{k}` is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
            )));
        }
        if let Some(old) = m.get(k)
            && old != v
        {
            return Err(usage(format!("{k} is given twice ({old:?} and {v:?})")));
        }
        m.insert(k.to_owned(), v.to_owned());
    }
    Ok(m)
}

fn ask_line(spec: &template::VarSpec, default: &str) -> std::io::Result<String> {
    let label = if spec.description.is_empty() {
        &spec.name
    } else {
        &spec.description
    };
    let hint = if default.is_empty() {
        String::new()
    } else {
        format!(" ({default})")
    };
    let mut out = std::io::stdout().lock();
    write!(out, "? {label}{hint}: ")?;
    out.flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}

fn space_dir_name(dir: &Path) -> String {
    std::fs::canonicalize(dir)
        .ok()
        .as_deref()
        .or(Some(dir))
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "space".to_owned())
}

/// `mew init` (its entry, printing the failure, is `cmd::init`).
pub(crate) fn run(space: &SpaceArgs, args: &InitArgs) -> Result<(), Fail> {
    let dir = &space.space_dir;
    let all = template::discover(dir, home().as_deref());
    if args.list_templates {
        list(&all);
        return Ok(());
    }
    if let Some(name) = &args.template_info {
        return info(&all, name, dir);
    }
    let found = find(&all, &args.template, dir)?;
    let t = template::load(found).map_err(usage)?;
    let explicit = explicit(args)?;

    let mew_dir = dir.join(".mew");
    let target = mew_dir.join("space.yaml");
    let top = dir.join("space.yaml");
    let existing = [&target, &top]
        .into_iter()
        .find(|p| std::fs::symlink_metadata(p).is_ok());
    if let Some(p) = existing
        && !args.force
    {
        return Err(Fail(
            1,
            format!(
                "{} already exists; not overwriting it\nhelp: pass --force to replace it with the `{}` template",
                p.display(),
                args.template
            ),
        ));
    }

    let interactive =
        !args.no_prompt && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let env = |k: &str| std::env::var(k).ok();
    let mut ask = ask_line;
    let mut inputs = vars::Inputs {
        explicit,
        env: &env,
        dirname: space_dir_name(dir),
        date: chrono::Utc::now().format("%Y-%m-%d").to_string(),
        ask: if interactive { Some(&mut ask) } else { None },
    };
    let values = vars::resolve(&t.meta.variables, &mut inputs).map_err(|e| {
        usage(format!(
            "template `{}`: {e}\nnothing was written",
            found.name
        ))
    })?;
    for k in inputs.explicit.keys() {
        let known = t.meta.variables.iter().any(|v| &v.name == k)
            || vars::BUILT_IN_VARS.iter().any(|(n, _, _)| n == k);
        if !known {
            eprintln!(
                "warning: template `{}` declares no variable {k}; {{{{{k}}}}} is still substituted",
                found.name
            );
        }
    }

    // Render everything before writing anything.
    let mut plan: Vec<(PathBuf, Vec<u8>, u32)> = Vec::new();
    for f in &t.files {
        let rel = Path::new(".mew").join(&f.dest);
        let bytes = match f.kind {
            Kind::Copied => f.bytes.clone(),
            Kind::Rendered => {
                let text = String::from_utf8_lossy(&f.bytes);
                let (out, unknown) = vars::substitute(&text, &values);
                for u in unknown {
                    eprintln!(
                        "warning: {}:{}: {{{{{}}}}} has no value; left as is (give one with --var {}=VALUE)",
                        rel.display(),
                        u.line,
                        u.name,
                        u.name
                    );
                }
                if f.dest == Path::new("package.json")
                    && let Err(e) = serde_json::from_str::<serde_json::Value>(&out)
                {
                    eprintln!(
                        "warning: the rendered {} is not valid JSON ({}:{}: {e})",
                        rel.display(),
                        e.line(),
                        e.column()
                    );
                }
                out.into_bytes()
            }
        };
        plan.push((rel, bytes, f.mode));
    }
    for s in &t.skipped {
        eprintln!("warning: template `{}`: not copied: {s}", found.name);
    }
    // space.yaml last: a failure part-way leaves no new space.yaml.
    plan.sort_by_key(|(rel, _, _)| rel == Path::new(".mew/space.yaml"));

    let mut written: Vec<PathBuf> = Vec::new();
    for (rel, bytes, mode) in &plan {
        let path = dir.join(rel);
        if let Err(e) = write_atomic(&path, bytes, *mode) {
            let mut msg = format!("cannot write {}: {e}", path.display());
            if written.is_empty() {
                msg.push_str("\nnothing was written");
            } else {
                let w: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
                msg.push_str(&format!(
                    "\nalready written: {}\n{} was not written",
                    w.join(", "),
                    target.display()
                ));
            }
            return Err(Fail(1, msg));
        }
        written.push(path);
    }
    let tokens = mew_dir.join("tokens");
    secure_tokens_dir(&tokens)
        .map_err(|e| Fail(1, format!("cannot set up {}: {e}", tokens.display())))?;
    let has_package = t.files.iter().any(|f| f.dest == Path::new("package.json"));
    let extra: &[&'static str] = if has_package { &[GITIGNORE_NODE] } else { &[] };
    let added = update_gitignore(dir, extra).map_err(|e| {
        Fail(
            1,
            format!("cannot update {}: {e}", dir.join(".gitignore").display()),
        )
    })?;

    println!(
        "wrote {} (template `{}`, {})",
        target.display(),
        found.name,
        where_from(found)
    );
    for (p, (_, _, mode)) in written.iter().zip(&plan) {
        if p != &target {
            let x = if mode & 0o111 != 0 {
                " (executable)"
            } else {
                ""
            };
            println!("wrote {}{x}", p.display());
        }
    }
    println!("token storage: {}/ (mode 0700)", tokens.display());
    if !added.is_empty() {
        println!(
            "added {} to {}",
            added.join(" "),
            dir.join(".gitignore").display()
        );
    }
    if existing.is_some_and(|p| p == &top) {
        println!(
            "note: {} takes precedence over {} from now on",
            target.display(),
            top.display()
        );
    }
    for s in &values.sensitive {
        let spec = t.meta.variables.iter().find(|v| &v.name == s);
        let env = spec
            .map(|v| v.env_sources.join(" or $"))
            .unwrap_or_default();
        let from = if env.is_empty() {
            String::new()
        } else {
            format!(": ${env}")
        };
        println!(
            "note: {s} is sensitive and was not written; the space reads it from the environment at run time{from}"
        );
    }
    // Does it load? A warning, not a failure: the files are the template's.
    if let Ok(text) = std::fs::read_to_string(&target)
        && let Err(e) = crate::config::parse_yaml(&text, &target, dir)
    {
        eprintln!(
            "warning: {} does not pass `mew space check` yet:\n{e}",
            target.display()
        );
    }
    if has_package {
        println!(
            "note: `npm install --prefix .mew` installs the agents' dependencies (.mew/package.json)"
        );
    }
    println!("next: `mew space check` shows the plan; `mew space up` runs it");
    Ok(())
}

/// Write `path` by writing a temporary file beside it and renaming it over
/// (a symlink at `path` is replaced, not followed).
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(std::io::Error::other("a directory is in the way"));
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = parent.join(format!(".{name}.mew-init-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `.mew/tokens/`, mode 0700 (tightened if it exists), with a `.gitignore`
/// of `*` (as the space server keeps it).
fn secure_tokens_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let md = std::fs::symlink_metadata(dir)?;
            if !md.is_dir() {
                return Err(std::io::Error::other("exists and is not a directory"));
            }
            if md.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        Err(e) => return Err(e),
    }
    let gitignore = dir.join(".gitignore");
    if std::fs::symlink_metadata(&gitignore).is_err() {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&gitignore)?
            .write_all(b"*\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::slug;

    #[test]
    fn slugs() {
        assert_eq!(slug("my space"), "my-space");
        assert_eq!(slug("demo"), "demo");
        assert_eq!(slug("..x"), "x");
        assert_eq!(slug("ü"), "space");
    }

    #[test]
    fn render_substitutes() {
        let t = render("mew", "My \"space\"", 9001).unwrap();
        assert!(t.contains("id: My--space-"), "{t}");
        assert!(t.contains(r#"name: "My \"space\"""#));
        assert!(t.contains("port: 9001"));
        assert!(!t.contains("{{"));
        assert!(
            render("dem", "x", 1)
                .unwrap_err()
                .contains("did you mean `demo`?")
        );
    }

    #[test]
    fn every_template_passes_check() {
        for t in BUILT_INS {
            let text = render(t.name, "tpl", 8080).unwrap();
            let dir = std::path::Path::new("/tmp/tpl");
            let cfg = crate::config::parse_yaml(&text, &dir.join(".mew/space.yaml"), dir)
                .unwrap_or_else(|e| panic!("template {}:\n{e}", t.name));
            assert!(cfg.warnings.is_empty(), "{}: {:?}", t.name, cfg.warnings);
        }
    }

    #[test]
    fn gitignore_lines_added_once() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(".gitignore"), "target\n.mew/run").unwrap();
        assert_eq!(
            update_gitignore(tmp.path(), &[]).unwrap(),
            vec![".mew/logs/", ".mew/tokens/", ".mew/export/"]
        );
        assert!(update_gitignore(tmp.path(), &[]).unwrap().is_empty());
        let text = std::fs::read_to_string(tmp.path().join(".gitignore")).unwrap();
        assert_eq!(
            text,
            "target\n.mew/run\n.mew/logs/\n.mew/tokens/\n.mew/export/\n"
        );
        assert_eq!(
            update_gitignore(tmp.path(), &[GITIGNORE_NODE]).unwrap(),
            vec![GITIGNORE_NODE]
        );
    }

    #[test]
    fn atomic_write_replaces_a_symlink_instead_of_following_it() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::write(&outside, "keep").unwrap();
        let p = tmp.path().join("d/f");
        std::fs::create_dir(tmp.path().join("d")).unwrap();
        std::os::unix::fs::symlink(&outside, &p).unwrap();
        write_atomic(&p, b"new", 0o644).unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new");
        assert!(
            !std::fs::symlink_metadata(&p)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("d")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left");
    }

    #[test]
    fn tokens_dir_is_private() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("tokens");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        secure_tokens_dir(&d).unwrap();
        let mode = std::fs::metadata(&d).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(
            std::fs::read_to_string(d.join(".gitignore")).unwrap(),
            "*\n"
        );
    }
}
