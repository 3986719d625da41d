//! `mew space export`: a space translated for the engines that run it
//! beyond one machine — systemd units, a docker compose file, Kubernetes
//! manifests. Each format is a pure function of [`Input`] (the space as
//! `check` resolves it, with the real environment) returning [`Export`]:
//! the files to write and a [`Note`] for everything it could not translate
//! and what it did instead. Nothing is dropped silently.

pub(crate) mod compose;
pub(crate) mod kubernetes;
pub(crate) mod systemd;

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::config::{self, ProcKind, ResolveContext, ResolvedProcess, SpaceConfig};

/// The space, resolved for export.
pub(crate) struct Input<'a> {
    pub cfg: &'a SpaceConfig,
    /// Every process, interpolated as `check` does (configured port, the
    /// real environment), in start order (dependencies first). A token
    /// never appears in them: `${TOKEN}` is resolved to the format's
    /// reference to the variable `MEW_TOKEN_<ID>` (see [`TokenRef`]), and
    /// `MEW_TOKEN_*` entries are removed from `env`: each format provides
    /// them from [`Input::tokens`] as a secret.
    pub processes: Vec<ResolvedProcess>,
    /// `(MEW_TOKEN_<ID>, value)` for every participant process, in order.
    pub tokens: Vec<(String, String)>,
    /// `--image`, for the container formats.
    pub image: Option<String>,
    /// `--system` (systemd: system units instead of user units).
    pub system: bool,
}

impl Input<'_> {
    /// The processes that are exported (every one that is not `disabled`),
    /// in start order; each disabled one is noted with `instead`.
    pub(crate) fn enabled(&self, e: &mut Export, instead: &str) -> Vec<&ResolvedProcess> {
        self.processes
            .iter()
            .filter(|p| {
                if p.config.disabled {
                    e.note(Some(&p.name), "disabled", instead);
                }
                !p.config.disabled
            })
            .collect()
    }
}

/// How a format spells "the value of environment variable NAME" inside a
/// command line, for `${TOKEN}` (systemd `${NAME}`, Kubernetes `$(NAME)`…).
pub(crate) type TokenRef = fn(&str) -> String;

/// One file of an export, relative to `--out`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct File {
    pub path: PathBuf,
    pub contents: String,
    /// Unix mode (0o600 for a file holding tokens).
    pub mode: u32,
}

/// Something of the space that the format cannot express, and what was done.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub(crate) struct Note {
    /// The process (`None`: the space as a whole).
    pub process: Option<String>,
    /// The key, e.g. `ready.log`, `max_memory`, `watch`.
    pub key: String,
    /// What was done instead (or "dropped: …" with the reason).
    pub instead: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Export {
    pub files: Vec<File>,
    pub notes: Vec<Note>,
}

impl Export {
    pub(crate) fn note(&mut self, process: Option<&str>, key: &str, instead: impl Into<String>) {
        self.notes.push(Note {
            process: process.map(str::to_owned),
            key: key.to_owned(),
            instead: instead.into(),
        });
    }
}

/// A character a YAML reader would not keep as is inside a double-quoted
/// scalar: controls (C0, DEL, C1), line and paragraph separators, the BOM,
/// the non-characters U+FFFE and U+FFFF.
pub(crate) fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
}

/// A YAML double-quoted scalar, which is also a JSON string: `"`, `\` and
/// every [`needs_escape`] character escaped (compose and Kubernetes write
/// every string this way).
pub(crate) fn yaml_quote(s: &str) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Build the [`Input`] of a loaded space: tokens from `.mew/tokens` (made
/// when missing, as `up` makes them), processes resolved with `token_ref`.
pub(crate) fn input<'a>(
    cfg: &'a SpaceConfig,
    token_ref: TokenRef,
    image: Option<String>,
    system: bool,
) -> std::io::Result<(Input<'a>, Vec<config::Diagnostic>)> {
    let tokens_dir = cfg.dir.join(".mew").join("tokens");
    let mut tokens = Vec::new();
    let mut refs = HashMap::new();
    for p in cfg
        .processes
        .iter()
        .filter(|p| p.kind == ProcKind::Participant)
    {
        let value = crate::space::load_or_create_token(&tokens_dir, &p.name)?;
        let var = config::token_env_name(&p.name);
        refs.insert(p.name.clone(), token_ref(&var));
        tokens.push((var, value));
    }
    let ctx = ResolveContext {
        port: cfg.gateway_port,
        tokens: refs,
    };
    let (resolved, warnings) = config::resolve(cfg, &ctx);
    let order = config::start_order(cfg);
    let mut processes: Vec<ResolvedProcess> = order
        .iter()
        .filter_map(|&i| resolved.get(i).cloned())
        .collect();
    for p in &mut processes {
        p.env.retain(|(k, _)| !k.starts_with("MEW_TOKEN_"));
    }
    Ok((
        Input {
            cfg,
            processes,
            tokens,
            image,
            system,
        },
        warnings,
    ))
}

/// Write every file under `out` (created 0700 when missing): each through
/// a temporary file and a rename, never through a symlink, with its mode.
pub(crate) fn write_files(out: &Path, files: &[File]) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)
        .map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    for f in files {
        if f.path.is_absolute()
            || f.path
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            return Err(format!(
                "refusing to write outside {}: {}",
                out.display(),
                f.path.display()
            ));
        }
        let path = out.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.mew-tmp"));
        let _ = std::fs::remove_file(&tmp);
        let result = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(f.mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)
            .and_then(|mut h| h.write_all(f.contents.as_bytes()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(format!("cannot write {}: {e}", path.display()));
        }
    }
    Ok(())
}
