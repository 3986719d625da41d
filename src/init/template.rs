//! Templates for `mew init`: where they are found, their `template.json`, and
//! reading a template directory without following a symlink out of it.

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Where a template was found. Earlier sources shadow later ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Source {
    /// `DIR/templates/<name>/` (and `./templates/<name>/`).
    Local,
    /// `$HOME/.mew/templates/<name>/`.
    User,
    /// Embedded in the binary.
    BuiltIn,
}

impl Source {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::User => "user",
            Source::BuiltIn => "built-in",
        }
    }
}

/// A template mew ships: one `space.yaml`.
pub(crate) struct BuiltIn {
    pub name: &'static str,
    pub description: &'static str,
    pub text: &'static str,
}

pub(crate) const BUILT_INS: &[BuiltIn] = &[
    BuiltIn {
        name: "demo",
        description: "shows off mew with nothing but a POSIX shell: readiness, colours, crashes and restarts, a prompt, a full-screen clock",
        text: include_str!("../../assets/templates/demo.yaml"),
    },
    BuiltIn {
        name: "mew",
        description: "a MEW space: a gateway and an agent participant (upstream format, tokens, capabilities)",
        text: include_str!("../../assets/templates/mew.yaml"),
    },
];

/// One template found by [`discover`].
#[derive(Debug, Clone)]
pub(crate) struct Found {
    pub name: String,
    pub source: Source,
    /// The template directory; `None` for a built-in.
    pub path: Option<PathBuf>,
}

/// The directories searched, in precedence order.
pub(crate) fn search_dirs(space_dir: &Path, home: Option<&Path>) -> Vec<(Source, PathBuf)> {
    let mut dirs = vec![(Source::Local, space_dir.join("templates"))];
    let cwd_templates = PathBuf::from("templates");
    let same = match (
        fs::canonicalize(&dirs[0].1),
        fs::canonicalize(&cwd_templates),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => space_dir == Path::new("."),
    };
    if !same {
        dirs.push((Source::Local, cwd_templates));
    }
    if let Some(h) = home.filter(|h| !h.as_os_str().is_empty()) {
        dirs.push((Source::User, h.join(".mew").join("templates")));
    }
    dirs
}

/// Every template, best first: for each name the first one is the one used,
/// the others are shadowed. A directory is a template when it holds a
/// regular file `space.yaml` (so a project's unrelated `templates/` folder
/// adds nothing). A template directory may itself be a symlink.
pub(crate) fn discover(space_dir: &Path, home: Option<&Path>) -> Vec<Found> {
    let mut all = Vec::new();
    for (source, dir) in search_dirs(space_dir, home) {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        let mut here: Vec<Found> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                if name.starts_with('.') {
                    return None;
                }
                let path = e.path();
                if !fs::metadata(&path).ok()?.is_dir() {
                    return None;
                }
                let yaml = fs::symlink_metadata(path.join("space.yaml")).ok()?;
                yaml.is_file().then_some(Found {
                    name,
                    source,
                    path: Some(path),
                })
            })
            .collect();
        here.sort_by(|a, b| a.name.cmp(&b.name));
        all.extend(here);
    }
    all.extend(BUILT_INS.iter().map(|b| Found {
        name: b.name.to_owned(),
        source: Source::BuiltIn,
        path: None,
    }));
    // Stable: equal names keep precedence order.
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}

/// The distinct names, sorted.
pub(crate) fn names(found: &[Found]) -> Vec<&str> {
    let mut v: Vec<&str> = found.iter().map(|f| f.name.as_str()).collect();
    v.dedup();
    v
}

/// One entry of `template.json`'s `variables`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct VarSpec {
    pub name: String,
    pub description: String,
    /// `None`: no `default` key (or `null`).
    pub default: Option<String>,
    pub prompt: bool,
    pub env_sources: Vec<String>,
    pub sensitive: bool,
    /// `Some(false)`: may be left empty.
    pub required: Option<bool>,
}

/// `template.json`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meta {
    pub name: String,
    pub description: String,
    pub version: Option<String>,
    pub author: Option<String>,
    pub tags: Vec<String>,
    pub variables: Vec<VarSpec>,
}

/// A valid variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub(crate) fn is_var_name(s: &str) -> bool {
    let mut c = s.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn scalar(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parse `template.json` (`file` names it in errors).
pub(crate) fn parse_meta(text: &str, file: &str, dir_name: &str) -> Result<Meta, String> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("{file}:{}:{}: not valid JSON: {e}", e.line(), e.column()))?;
    let obj = v
        .as_object()
        .ok_or_else(|| format!("{file}: must be a JSON object"))?;
    let str_field = |k: &str| -> Result<Option<String>, String> {
        match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => scalar(v)
                .map(Some)
                .ok_or_else(|| format!("{file}: `{k}` must be a string")),
        }
    };
    let mut meta = Meta {
        name: str_field("name")?.unwrap_or_else(|| dir_name.to_owned()),
        description: str_field("description")?.unwrap_or_default(),
        version: str_field("version")?,
        author: str_field("author")?,
        ..Meta::default()
    };
    if let Some(tags) = obj.get("tags").and_then(|t| t.as_array()) {
        meta.tags = tags.iter().filter_map(scalar).collect();
    }
    let vars = match obj.get("variables") {
        None | Some(serde_json::Value::Null) => &Vec::new(),
        Some(serde_json::Value::Array(a)) => a,
        Some(_) => return Err(format!("{file}: `variables` must be an array")),
    };
    for (i, v) in vars.iter().enumerate() {
        let at = format!("{file}: variables[{i}]");
        let o = v
            .as_object()
            .ok_or_else(|| format!("{at}: must be an object"))?;
        let name = o
            .get("name")
            .and_then(|n| n.as_str())
            .ok_or_else(|| format!("{at}: needs a string `name`"))?;
        if !is_var_name(name) {
            return Err(format!(
                "{at}: `{name}` is not a variable name ([A-Za-z_][A-Za-z0-9_]*)"
            ));
        }
        if meta.variables.iter().any(|s| s.name == name) {
            return Err(format!("{at}: `{name}` is declared twice"));
        }
        let default = match o.get("default") {
            None | Some(serde_json::Value::Null) => None,
            Some(d) => Some(
                scalar(d).ok_or_else(|| format!("{at} ({name}): `default` must be a string"))?,
            ),
        };
        let flag = |k: &str| o.get(k).and_then(|b| b.as_bool());
        let env_sources = match o.get("env_sources") {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(a)) => a
                .iter()
                .map(|e| {
                    e.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| format!("{at} ({name}): `env_sources` must be strings"))
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(format!(
                    "{at} ({name}): `env_sources` must be an array of names"
                ));
            }
        };
        meta.variables.push(VarSpec {
            name: name.to_owned(),
            description: o.get("description").and_then(scalar).unwrap_or_default(),
            default,
            prompt: flag("prompt").unwrap_or(false),
            env_sources,
            sensitive: flag("sensitive").unwrap_or(false),
            required: flag("required"),
        });
    }
    Ok(meta)
}

/// How a template file ends up in `.mew/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `{{VAR}}` substituted (space.yaml, package.json).
    Rendered,
    /// Copied byte for byte (agents/).
    Copied,
}

/// A file to write, relative to `.mew/`.
#[derive(Debug, Clone)]
pub(crate) struct File {
    pub dest: PathBuf,
    pub bytes: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
}

/// A template read into memory: nothing on disk is touched after this.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    pub meta: Meta,
    /// `space.yaml` first.
    pub files: Vec<File>,
    pub readme: Option<String>,
    /// What was not copied, and why.
    pub skipped: Vec<String>,
}

/// Limits on what a template may hold.
pub(crate) const MAX_FILES: usize = 10_000;
pub(crate) const MAX_BYTES: u64 = 64 << 20;
pub(crate) const MAX_DEPTH: usize = 16;

/// The built-in templates' variables.
fn built_in_meta(b: &BuiltIn) -> Meta {
    Meta {
        name: b.name.to_owned(),
        description: b.description.to_owned(),
        variables: vec![
            VarSpec {
                name: "SPACE_NAME".into(),
                description: "the space name".into(),
                default: Some("${dirname}".into()),
                ..VarSpec::default()
            },
            VarSpec {
                name: "PORT".into(),
                description: "the gateway port".into(),
                default: Some(crate::config::DEFAULT_PORT.to_string()),
                ..VarSpec::default()
            },
        ],
        ..Meta::default()
    }
}

/// A template's `template.json` (for a built-in, its variables).
pub(crate) fn meta(found: &Found) -> Result<Meta, String> {
    match &found.path {
        None => BUILT_INS
            .iter()
            .find(|b| b.name == found.name)
            .map(built_in_meta)
            .ok_or_else(|| format!("no built-in template `{}`", found.name)),
        Some(dir) => read_meta(found, dir, &mut Budget::default()),
    }
}

fn read_meta(found: &Found, dir: &Path, budget: &mut Budget) -> Result<Meta, String> {
    let file = dir.join("template.json");
    match read_regular(&file, budget)? {
        Read::File(bytes, _) => {
            let text =
                String::from_utf8(bytes).map_err(|_| format!("{}: not UTF-8", file.display()))?;
            parse_meta(&text, &file.display().to_string(), &found.name)
        }
        Read::Missing => Ok(Meta {
            name: found.name.clone(),
            description: "(no template.json)".into(),
            ..Meta::default()
        }),
        Read::Skipped(why) => Err(format!(
            "refusing template `{}`: {} is {why}",
            found.name,
            file.display()
        )),
    }
}

/// Read a template into memory.
pub(crate) fn load(found: &Found) -> Result<Loaded, String> {
    let Some(dir) = &found.path else {
        let b = BUILT_INS
            .iter()
            .find(|b| b.name == found.name)
            .ok_or_else(|| format!("no built-in template `{}`", found.name))?;
        return Ok(Loaded {
            meta: built_in_meta(b),
            files: vec![File {
                dest: "space.yaml".into(),
                bytes: b.text.as_bytes().to_vec(),
                kind: Kind::Rendered,
                mode: 0o644,
            }],
            readme: None,
            skipped: Vec::new(),
        });
    };
    let mut budget = Budget::default();
    let mut skipped = Vec::new();
    let show = |p: &str| format!("{}/{p}", dir.display());

    let meta = read_meta(found, dir, &mut budget)?;

    let mut files = Vec::new();
    for (name, required) in [("space.yaml", true), ("package.json", false)] {
        match read_regular(&dir.join(name), &mut budget)? {
            Read::File(bytes, _) => {
                if std::str::from_utf8(&bytes).is_err() {
                    return Err(format!("{}: not UTF-8", show(name)));
                }
                files.push(File {
                    dest: name.into(),
                    bytes,
                    kind: Kind::Rendered,
                    mode: 0o644,
                });
            }
            Read::Missing if required => {
                return Err(format!("template `{}` has no {}", found.name, show(name)));
            }
            Read::Missing => {}
            Read::Skipped(why) => {
                return Err(format!(
                    "refusing template `{}`: {} is {why}",
                    found.name,
                    show(name)
                ));
            }
        }
    }

    let readme = match read_regular(&dir.join("README.md"), &mut budget)? {
        Read::File(bytes, _) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        _ => None,
    };

    let agents = dir.join("agents");
    match fs::symlink_metadata(&agents) {
        Ok(md) if md.is_dir() => {
            copy_tree(
                &agents,
                Path::new("agents"),
                0,
                &mut budget,
                &mut files,
                &mut skipped,
            )?;
        }
        Ok(md) if md.file_type().is_symlink() => {
            skipped.push("agents (a symlink; not followed)".into());
        }
        Ok(_) => skipped.push("agents (not a directory)".into()),
        Err(_) => {}
    }
    Ok(Loaded {
        meta,
        files,
        readme,
        skipped,
    })
}

#[derive(Default)]
struct Budget {
    files: usize,
    bytes: u64,
}

enum Read {
    File(Vec<u8>, u32),
    Missing,
    Skipped(&'static str),
}

/// Read `path` if it is a regular file, never following a symlink (the
/// check and the open both refuse one).
fn read_regular(path: &Path, budget: &mut Budget) -> Result<Read, String> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Read::Missing),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    if md.file_type().is_symlink() {
        return Ok(Read::Skipped("a symlink (not followed)"));
    }
    if !md.is_file() {
        return Ok(Read::Skipped("not a regular file"));
    }
    budget.files += 1;
    budget.bytes += md.len();
    if budget.files > MAX_FILES || budget.bytes > MAX_BYTES {
        return Err(format!(
            "refusing template: more than {MAX_FILES} files or {} MiB (at {})",
            MAX_BYTES >> 20,
            path.display()
        ));
    }
    let mut f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let md = f
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if !md.is_file() {
        return Ok(Read::Skipped("not a regular file"));
    }
    let mut bytes = Vec::new();
    (&mut f)
        .take(MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    Ok(Read::File(bytes, md.permissions().mode()))
}

/// A copied agent file's mode: executable when it is in the template, starts
/// with `#!`, or is JavaScript (upstream runs `chmod +x agents/*.js`).
pub(crate) fn agent_mode(name: &str, bytes: &[u8], src_mode: u32) -> u32 {
    let script = [".js", ".cjs", ".mjs"].iter().any(|e| name.ends_with(e));
    if src_mode & 0o111 != 0 || bytes.starts_with(b"#!") || script {
        0o755
    } else {
        0o644
    }
}

fn copy_tree(
    src: &Path,
    rel: &Path,
    depth: usize,
    budget: &mut Budget,
    files: &mut Vec<File>,
    skipped: &mut Vec<String>,
) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "refusing template: {} is nested more than {MAX_DEPTH} deep",
            src.display()
        ));
    }
    let entries = fs::read_dir(src).map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    let mut entries: Vec<_> = entries
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read {}: {e}", src.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name();
        let r = rel.join(&name);
        let path = e.path();
        let md = fs::symlink_metadata(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        if md.is_dir() {
            copy_tree(&path, &r, depth + 1, budget, files, skipped)?;
            continue;
        }
        match read_regular(&path, budget)? {
            Read::File(bytes, mode) => {
                let mode = agent_mode(&name.to_string_lossy(), &bytes, mode);
                files.push(File {
                    dest: r,
                    bytes,
                    kind: Kind::Copied,
                    mode,
                });
            }
            Read::Missing => {}
            Read::Skipped(why) => skipped.push(format!("{} ({why})", r.display())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_fields() {
        let m = parse_meta(
            r#"{"name":"t","description":"d","version":"1","tags":["a"],
                "variables":[{"name":"A","default":"x","prompt":true,"env_sources":["E"]},
                             {"name":"K","sensitive":true,"required":false},
                             {"name":"N","default":3}]}"#,
            "t.json",
            "dir",
        )
        .unwrap();
        assert_eq!(m.name, "t");
        assert_eq!(m.tags, vec!["a"]);
        assert_eq!(m.variables[0].default.as_deref(), Some("x"));
        assert!(m.variables[0].prompt);
        assert_eq!(m.variables[0].env_sources, vec!["E"]);
        assert!(m.variables[1].sensitive);
        assert_eq!(m.variables[1].required, Some(false));
        assert_eq!(m.variables[1].default, None);
        assert_eq!(m.variables[2].default.as_deref(), Some("3"));
    }

    #[test]
    fn meta_errors_name_the_place() {
        let e = parse_meta("{\n  \"name\": ", "t.json", "d").unwrap_err();
        assert!(e.starts_with("t.json:2:"), "{e}");
        let e = parse_meta(r#"{"variables":[{"name":"a-b"}]}"#, "t.json", "d").unwrap_err();
        assert!(e.contains("variables[0]") && e.contains("a-b"), "{e}");
        let e = parse_meta(
            r#"{"variables":[{"name":"A"},{"name":"A"}]}"#,
            "t.json",
            "d",
        )
        .unwrap_err();
        assert!(e.contains("twice"), "{e}");
        assert_eq!(parse_meta("{}", "t.json", "d").unwrap().name, "d");
    }

    #[test]
    fn var_names() {
        assert!(is_var_name("SPACE_NAME"));
        assert!(is_var_name("_x1"));
        assert!(!is_var_name("1X"));
        assert!(!is_var_name(""));
        assert!(!is_var_name("A B"));
    }

    #[test]
    fn agent_modes() {
        assert_eq!(agent_mode("a.cjs", b"x", 0o644), 0o755);
        assert_eq!(agent_mode("run", b"#!/bin/sh\n", 0o644), 0o755);
        assert_eq!(agent_mode("bin", b"", 0o700), 0o755);
        assert_eq!(agent_mode("data.json", b"{}", 0o600), 0o644);
    }
}
