//! space.yaml (and Procfile): discovery, parsing, validation, interpolation.
//!
//! [`load`] reads and validates (nothing is spawned or written); [`resolve`]
//! interpolates once the gateway port and tokens are known.

mod build;
mod devloop;
mod interp;
pub mod load_cli;
mod merge;
mod model;
mod node;
mod procfile;
mod report;
mod suggest;
mod units;
mod validate;

pub use build::{
    DEFAULT_GATEWAY_PROBE_URL, DEFAULT_PORT, DEFAULT_WATCH_DEBOUNCE, DEFAULT_WATCH_IGNORE,
    GATEWAY_NAME, MAX_REPLICAS, check_name,
};
pub use devloop::{
    Changed, ConfigDiff, SelectError, changed_fields, diff, profiles, replica_of, select,
};
pub use interp::interpolate;
pub use model::*;
pub use procfile::{parse_dotenv, parse_procfile};
pub use report::syntax_message as yaml_message;
pub use report::{Source, escape, escape_lines};
pub use suggest::did_you_mean;
pub use units::{parse_duration, parse_signal, parse_size};
pub use validate::start_order;

/// What mew shows in place of a token or a masked value (`check`, `status`,
/// the TUI): one constant for every place that shows a config's secrets.
pub const TOKEN_MASK: &str = "****";

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

pub(crate) fn interp_is_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Where to look for the config.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    pub space_dir: PathBuf,
    pub config: Option<PathBuf>,
    pub procfile: Option<PathBuf>,
    /// Override files merged over the config, in order (`--config` given
    /// again). Empty: the config's own override file (`space.override.yaml`
    /// next to `space.yaml`, `X.override.yaml` next to `X.yaml`) if it exists.
    pub overrides: Vec<PathBuf>,
}

impl LoadOptions {
    /// The config files of a repeated `--config`: the first is the config,
    /// the others its override files, in order.
    pub fn with_configs(mut self, files: &[PathBuf]) -> Self {
        self.config = files.first().cloned();
        self.overrides = files.iter().skip(1).cloned().collect();
        self
    }
}

/// Why a config could not be loaded. `Display` renders the full, user-facing report.
#[derive(Debug)]
pub enum ConfigError {
    /// No config file in any of the places searched.
    NotFound { searched: Vec<PathBuf> },
    /// A file exists (or was named) but cannot be read.
    Io { path: PathBuf, message: String },
    /// The file was read and has problems: every one of them, located.
    Invalid {
        errors: Vec<Diagnostic>,
        warnings: Vec<Diagnostic>,
        /// The config file's text, for the excerpts under its diagnostics
        /// (the only file ever quoted, with the override files: never an `env_file`).
        source: Box<Source>,
        /// The override files' texts, for their diagnostics' excerpts.
        overrides: Vec<Source>,
    },
}

impl std::error::Error for ConfigError {}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        report::render_error(self, f)
    }
}

impl ConfigError {
    /// The process exit code for this error: 2, like every configuration error.
    pub fn exit_code(&self) -> u8 {
        2
    }

    /// The located problems (empty for `NotFound` and `Io`).
    pub fn errors(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// Render one diagnostic (`warning` or `error`) of `cfg` as `Display` does:
/// escaped, with an excerpt when it points into the config file itself.
pub fn render_diagnostic(severity: &str, d: &Diagnostic, cfg: &SpaceConfig) -> String {
    let yaml = cfg.source == ConfigSource::SpaceYaml;
    let source = (d.file == cfg.config_path || cfg.sources.contains(&d.file))
        .then(|| read_text(&d.file, yaml).ok())
        .flatten()
        .map(|text| Source {
            path: d.file.clone(),
            text,
            yaml,
            secrets: cfg.secret_tokens.clone(),
        });
    report::render(severity, d, source.as_ref())
}

/// Why an env file (`env_file`, a Procfile's `.env`) could not be used.
pub(crate) enum EnvFileError {
    /// A sentence: cannot be read, not a regular file, too large.
    Unreadable(String),
    /// Located problems, none of which quotes the file's content.
    Invalid(Vec<procfile::LineError>),
}

/// Read and parse an env file. Its values are secrets: no error says what
/// a line contains, only where it is and what is wrong.
pub(crate) fn read_env_file(path: &Path) -> Result<Vec<(String, String)>, EnvFileError> {
    match read_text(path, false) {
        Ok(text) => procfile::parse_dotenv(&text).map_err(EnvFileError::Invalid),
        Err(TextError::Unreadable(m)) => Err(EnvFileError::Unreadable(m)),
        Err(TextError::NotUtf8 { loc, offset, .. }) => Err(EnvFileError::Invalid(vec![(
            loc,
            TextError::utf8_message(offset),
        )])),
    }
}

/// The largest file mew reads as configuration (space.yaml, a Procfile, a
/// `.env` or an `env_file`): 8 MiB. A real space.yaml is a few KiB; without
/// a bound a 5 GB file (or `/dev/zero`) would be read whole into memory.
pub const MAX_CONFIG_BYTES: u64 = 8 << 20;

/// Why a config file could not be read as text.
#[derive(Debug)]
pub(crate) enum TextError {
    /// Cannot be opened or read, is not a regular file, or is over
    /// [`MAX_CONFIG_BYTES`]: a sentence saying which.
    Unreadable(String),
    /// Not UTF-8: where the first invalid byte is (in the file's own line
    /// counting), and the text with invalid bytes replaced (for an excerpt).
    NotUtf8 {
        loc: Loc,
        offset: usize,
        lossy: String,
    },
}

impl TextError {
    /// The diagnostic message for [`TextError::NotUtf8`] (no byte of the content).
    pub(crate) fn utf8_message(offset: usize) -> String {
        format!(
            "the file is not valid UTF-8 (first invalid byte at byte offset {offset})\nhelp: a config file must be UTF-8 text; save it as UTF-8"
        )
    }
}

/// Read at most `cap` bytes of `r`; `None` when there is more.
pub(crate) fn read_limited(r: impl std::io::Read, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    r.take(cap.saturating_add(1)).read_to_end(&mut buf)?;
    Ok((buf.len() as u64 <= cap).then_some(buf))
}

/// What a file that is not a regular file is, for messages.
fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() || t.is_block_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Read a config file as text, bounded by [`MAX_CONFIG_BYTES`]: opened
/// without blocking (a FIFO cannot hang mew), refused unless it is a regular
/// file, its size checked before reading and the read itself bounded (a
/// file that grows meanwhile cannot exceed the limit either). `yaml`: count
/// lines as YAML does (a lone CR ends one) for the location of bad UTF-8.
pub(crate) fn read_text(path: &Path, yaml: bool) -> Result<String, TextError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let unreadable = |e: std::io::Error| TextError::Unreadable(e.to_string());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(unreadable)?;
    let meta = file.metadata().map_err(unreadable)?;
    if !meta.is_file() {
        return Err(TextError::Unreadable(format!(
            "it is {}, not a regular file",
            file_kind(meta.file_type())
        )));
    }
    let limit = format!(
        "a config file may be at most {} MiB ({MAX_CONFIG_BYTES} bytes)",
        MAX_CONFIG_BYTES >> 20
    );
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(TextError::Unreadable(format!(
            "it is {}; {limit}",
            crate::human::size_with_bytes(meta.len())
        )));
    }
    let Some(bytes) = read_limited(&file, MAX_CONFIG_BYTES).map_err(unreadable)? else {
        return Err(TextError::Unreadable(format!(
            "it grew past the limit while being read; {limit}"
        )));
    };
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.into_bytes();
        let valid = std::str::from_utf8(&bytes[..offset]).unwrap_or_default();
        TextError::NotUtf8 {
            loc: text_loc(valid, yaml),
            offset,
            lossy: String::from_utf8_lossy(&bytes).into_owned(),
        }
    })
}

/// The location just after `prefix`: its line (1-based, lines counted as
/// the parser counts them) and the column of the next character.
fn text_loc(prefix: &str, yaml: bool) -> Loc {
    let is_break = |c: char| c == '\n' || (yaml && c == '\r');
    let line_start = prefix.rfind(is_break).map_or(0, |i| i + 1);
    let mut line = 1u32;
    let mut prev = '\0';
    for c in prefix.chars() {
        if c == '\n' {
            if !(yaml && prev == '\r') {
                line = line.saturating_add(1);
            }
        } else if yaml && c == '\r' {
            line = line.saturating_add(1);
        }
        prev = c;
    }
    let col = prefix[line_start..].chars().count() + 1;
    Loc::new(line, u32::try_from(col).unwrap_or(u32::MAX))
}

/// What interpolation needs that only exists at run time.
#[derive(Clone, Debug, Default)]
pub struct ResolveContext {
    /// The gateway port actually used.
    pub port: u16,
    /// Participant name → token.
    pub tokens: HashMap<String, String>,
}

/// Discover, parse and validate the space config. Nothing is spawned or written.
pub fn load(opts: &LoadOptions) -> Result<SpaceConfig, ConfigError> {
    load_with_env(opts, &|k| std::env::var(k).ok())
}

/// [`load`] with an explicit environment (`MEW_SPACE_CONFIG`, `PORT` for Procfiles).
pub fn load_with_env(
    opts: &LoadOptions,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SpaceConfig, ConfigError> {
    if let Some(p) = &opts.procfile {
        let dir = absolute(&opts.space_dir)?;
        return load_procfile(p, &dir, env);
    }
    let explicit = opts.config.clone().or_else(|| {
        env("MEW_SPACE_CONFIG")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
    });
    if let Some(path) = explicit {
        if let Ok(meta) = std::fs::metadata(&path)
            && !meta.is_file()
        {
            return Err(ConfigError::Io {
                message: format!("it is {}, not a regular file", file_kind(meta.file_type())),
                path,
            });
        }
        if !path.is_file() {
            return Err(ConfigError::NotFound {
                searched: vec![path],
            });
        }
        let path = absolute(&path)?;
        let dir = space_dir_of(&path);
        let overrides = override_files(&path, opts)?;
        return load_yaml_with(&path, &overrides, &dir);
    }
    let dir = &opts.space_dir;
    let candidates = [dir.join(".mew/space.yaml"), dir.join("space.yaml")];
    for c in &candidates {
        if c.is_file() {
            let path = absolute(c)?;
            let dir = absolute(dir)?;
            let overrides = override_files(&path, opts)?;
            return load_yaml_with(&path, &overrides, &dir);
        }
    }
    let procfile = dir.join("Procfile");
    if procfile.is_file() {
        let dir = absolute(dir)?;
        return load_procfile(&procfile, &dir, env);
    }
    let mut searched = candidates.to_vec();
    searched.push(procfile);
    Err(ConfigError::NotFound { searched })
}

/// The space dir of an explicitly named config: its directory, or the one
/// above when the file is inside `.mew/`.
fn space_dir_of(path: &Path) -> PathBuf {
    let parent = path.parent().unwrap_or(Path::new("/"));
    if parent.file_name().is_some_and(|n| n == ".mew") {
        parent.parent().unwrap_or(parent).to_path_buf()
    } else {
        parent.to_path_buf()
    }
}

fn absolute(p: &Path) -> Result<PathBuf, ConfigError> {
    std::fs::canonicalize(p).map_err(|e| ConfigError::Io {
        path: p.to_path_buf(),
        message: e.to_string(),
    })
}

/// Read the config file at `path` (space.yaml with `yaml`, else a Procfile).
fn read(path: &Path, yaml: bool) -> Result<String, ConfigError> {
    match read_text(path, yaml) {
        Ok(t) => Ok(t),
        Err(TextError::Unreadable(message)) => Err(ConfigError::Io {
            path: path.to_path_buf(),
            message,
        }),
        Err(TextError::NotUtf8 { loc, offset, lossy }) => Err(invalid(
            vec![Diagnostic::new(
                path,
                Some(loc),
                TextError::utf8_message(offset),
            )],
            Vec::new(),
            Source {
                path: path.to_path_buf(),
                text: lossy,
                yaml,
                secrets: Vec::new(),
            },
        )),
    }
}

/// The default space id: the directory's name, made a valid name by [`slug`].
fn dir_name(dir: &Path) -> String {
    slug(
        &dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
    )
}

/// A valid name from free text: characters outside `[A-Za-z0-9._-]` become
/// `-`, leading punctuation is dropped, at most 64 characters; `space` if
/// nothing is left.
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let s = s.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let s: String = s.chars().take(64).collect();
    if s.is_empty() { "space".to_owned() } else { s }
}

fn invalid(errors: Vec<Diagnostic>, warnings: Vec<Diagnostic>, source: Source) -> ConfigError {
    invalid_in(errors, warnings, source, Vec::new())
}

fn invalid_in(
    mut errors: Vec<Diagnostic>,
    mut warnings: Vec<Diagnostic>,
    source: Source,
    overrides: Vec<Source>,
) -> ConfigError {
    let key = |d: &Diagnostic| {
        (
            d.file.clone(),
            d.loc.as_ref().map(|l| (l.line, l.col)).unwrap_or_default(),
        )
    };
    errors.sort_by_key(key);
    warnings.sort_by_key(key);
    ConfigError::Invalid {
        errors,
        warnings,
        source: Box::new(source),
        overrides,
    }
}

/// Parse and validate a space.yaml at `path` (absolute) for the space in `dir` (absolute).
pub fn load_yaml(path: &Path, dir: &Path) -> Result<SpaceConfig, ConfigError> {
    load_yaml_with(path, &[], dir)
}

/// [`load_yaml`] with override files (absolute) merged over it, in order.
pub fn load_yaml_with(
    path: &Path,
    overrides: &[PathBuf],
    dir: &Path,
) -> Result<SpaceConfig, ConfigError> {
    let mut files = vec![(path.to_path_buf(), read(path, true)?)];
    for o in overrides {
        files.push((o.clone(), read(o, true)?));
    }
    parse_yaml_files(&files, dir)
}

/// The override file of a config named `X.yaml` (or `X.yml`):
/// `X.override.yaml` (`.yml`) beside it.
pub fn override_path(config: &Path) -> Option<PathBuf> {
    let name = config.file_name()?.to_str()?;
    let (stem, ext) = name.rsplit_once('.')?;
    if !matches!(ext, "yaml" | "yml") || stem.is_empty() || stem.ends_with(".override") {
        return None;
    }
    Some(config.with_file_name(format!("{stem}.override.{ext}")))
}

/// The override files to merge over `config`: those asked for (each must
/// exist), else its own override file if it exists.
fn override_files(config: &Path, opts: &LoadOptions) -> Result<Vec<PathBuf>, ConfigError> {
    if opts.overrides.is_empty() {
        return Ok(override_path(config)
            .filter(|p| p.is_file())
            .into_iter()
            .collect());
    }
    let mut out = Vec::new();
    for p in &opts.overrides {
        if let Ok(meta) = std::fs::metadata(p)
            && !meta.is_file()
        {
            return Err(ConfigError::Io {
                message: format!("it is {}, not a regular file", file_kind(meta.file_type())),
                path: p.clone(),
            });
        }
        if !p.is_file() {
            return Err(ConfigError::NotFound {
                searched: vec![p.clone()],
            });
        }
        out.push(absolute(p)?);
    }
    Ok(out)
}

fn yaml_sources(files: &[(PathBuf, String)], secrets: &[String]) -> (Source, Vec<Source>) {
    let mut all = files
        .iter()
        .map(|(p, t)| yaml_source(p, t, secrets.to_vec()));
    let first = all
        .next()
        .unwrap_or_else(|| yaml_source(Path::new(""), "", Vec::new()));
    (first, all.collect())
}

fn yaml_source(path: &Path, text: &str, secrets: Vec<String>) -> Source {
    Source {
        path: path.to_path_buf(),
        text: text.to_owned(),
        yaml: true,
        secrets,
    }
}

/// Parse and validate space.yaml text. `path` is used for messages.
pub fn parse_yaml(text: &str, path: &Path, dir: &Path) -> Result<SpaceConfig, ConfigError> {
    parse_yaml_files(&[(path.to_path_buf(), text.to_owned())], dir)
}

/// Parse, merge (see `config::merge`) and validate space.yaml texts: the
/// config first, then its override files. Paths are used for messages.
pub fn parse_yaml_files(
    files: &[(PathBuf, String)],
    dir: &Path,
) -> Result<SpaceConfig, ConfigError> {
    let mut root: Option<node::Node> = None;
    for (i, (path, text)) in files.iter().enumerate() {
        let mut n = match node::parse(text) {
            Ok(n) => n,
            Err(e) => return Err(syntax_error(files, path, &e)),
        };
        merge::set_file(&mut n, i);
        match &mut root {
            None => root = Some(n),
            Some(r) => merge::merge(r, n),
        }
    }
    let Some(root) = root else {
        return Err(invalid(
            Vec::new(),
            Vec::new(),
            yaml_source(Path::new(""), "", Vec::new()),
        ));
    };
    let path = files[0].0.as_path();
    let mut b = build::Builder::new(path.to_path_buf(), dir);
    b.files = files.iter().map(|(p, _)| p.clone()).collect();
    let parsed = b.space(&root);
    let mut processes = parsed.processes;
    devloop::expand_replicas(&mut b, &mut processes);
    if processes.is_empty() && b.errors.is_empty() {
        // A typo (`procesess:`) must not run a space of nothing, "ready" forever.
        b.err(
            &Loc::new(1, 1),
            "nothing to run: no `processes:`, no participant with a `command`, no gateway\nhelp: define `processes:` or `participants:` (see `mew init`); a misspelt key is named in a warning",
        );
    }
    validate::dependencies(&mut b, &mut processes, &parsed.participants);
    validate::token_exposure(&mut b, &processes);
    if !b.errors.is_empty() {
        let secrets = std::mem::take(&mut b.secret_tokens);
        let (source, overrides) = yaml_sources(files, &secrets);
        return Err(invalid_in(b.errors, b.warnings, source, overrides));
    }
    let id = parsed.id.unwrap_or_else(|| dir_name(dir));
    let log_dir = match parsed.log_dir {
        Some(d) => dir.join(d),
        None => dir.join(".mew/logs"),
    };
    // mew's own gateway writes its JSONL logs beside the process logs.
    for p in processes
        .iter_mut()
        .filter(|p| p.native && p.kind == ProcKind::Gateway)
    {
        if let Some(args) = &mut p.args {
            args.push("--log-dir".to_owned());
            args.push(log_dir.display().to_string());
        }
    }
    if parsed.gateway_disabled
        && let Some(p) = processes.iter().find(|p| p.kind == ProcKind::Participant)
    {
        b.warn(
            Some(&p.loc),
            format!(
                "nothing in this space runs a gateway (`gateway: false`), but participant `{}` is started and will look for one\nhelp: remove `gateway: false` to run mew's own gateway, or make sure one runs on the port it connects to",
                p.name
            ),
        );
    }
    Ok(SpaceConfig {
        name: parsed.name.unwrap_or_else(|| id.clone()),
        id,
        description: parsed.description,
        dir: dir.to_path_buf(),
        config_path: path.to_path_buf(),
        sources: b.files.clone(),
        source: ConfigSource::SpaceYaml,
        gateway_port: parsed.port.unwrap_or(DEFAULT_PORT),
        processes,
        participants: parsed.participants,
        fifos: parsed.fifos,
        logs: LogConfig {
            dir: log_dir,
            rotate_size: parsed.rotate_size.unwrap_or(build::DEFAULT_ROTATE_SIZE),
            keep: parsed.keep.unwrap_or(build::DEFAULT_KEEP),
            upstream_paths: parsed.upstream_paths.unwrap_or(true),
        },
        shutdown_timeout: parsed
            .shutdown_timeout
            .unwrap_or(build::DEFAULT_SHUTDOWN_TIMEOUT),
        ui_keys: parsed.ui_keys,
        overridden: top_level_overrides(&root, &b.files),
        secret_tokens: b.secret_tokens,
        warnings: b.warnings,
    })
}

/// The top-level keys (but the process sections) an override file touched.
fn top_level_overrides(root: &node::Node, files: &[PathBuf]) -> Vec<KeyOrigin> {
    let mut out = Vec::new();
    for (k, v) in root.as_map().unwrap_or_default() {
        let Some(key) = k.as_str() else { continue };
        if matches!(key, "gateway" | "participants" | "processes") {
            continue;
        }
        let mut found = Vec::new();
        merge::files_in(k, &mut found);
        merge::files_in(v, &mut found);
        for f in found.into_iter().filter(|&f| f > 0) {
            if let Some(file) = files.get(f) {
                out.push(KeyOrigin {
                    key: key.to_owned(),
                    file: file.clone(),
                });
            }
        }
    }
    out
}

/// A YAML syntax error in one of `files` (at `path`).
fn syntax_error(files: &[(PathBuf, String)], path: &Path, e: &serde_saphyr::Error) -> ConfigError {
    let loc = e.location().map(|l| {
        Loc::new(
            u32::try_from(l.line()).unwrap_or(u32::MAX),
            u32::try_from(l.column()).unwrap_or(u32::MAX),
        )
    });
    let d = Diagnostic::new(
        path,
        loc,
        format!("invalid YAML: {}", escape(&report::syntax_message(e))),
    );
    let (source, overrides) = yaml_sources(files, &[]);
    invalid_in(vec![d], Vec::new(), source, overrides)
}

/// The first Procfile port: `PORT` from `.env`, else from the environment, else 5000.
pub const PROCFILE_BASE_PORT: u16 = 5000;
/// The port step between Procfile lines.
pub const PROCFILE_PORT_STEP: u16 = 100;

fn load_procfile(
    path: &Path,
    dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<SpaceConfig, ConfigError> {
    let path = absolute(path)?;
    let text = read(&path, false)?;
    let mut errors = Vec::new();
    let entries = match procfile::parse_procfile(&text) {
        Ok(e) => e,
        Err(errs) => {
            for (loc, message) in errs {
                errors.push(Diagnostic::new(&path, Some(loc), message));
            }
            Vec::new()
        }
    };
    // The `.env` holds secrets: its errors are located, never quoted.
    let dotenv_path = dir.join(".env");
    let mut dotenv = Vec::new();
    if dotenv_path.exists() {
        match read_env_file(&dotenv_path) {
            Ok(v) => dotenv = v,
            Err(EnvFileError::Unreadable(m)) => {
                errors.push(Diagnostic::new(
                    &dotenv_path,
                    None,
                    format!("cannot read {}: {m}", report::shown_path(&dotenv_path)),
                ));
            }
            Err(EnvFileError::Invalid(errs)) => {
                for (loc, message) in errs {
                    errors.push(Diagnostic::new(&dotenv_path, Some(loc), message));
                }
            }
        }
    }
    if entries.is_empty() && errors.is_empty() {
        errors.push(Diagnostic::new(
            &path,
            Some(Loc::new(1, 1)),
            "the Procfile defines no process\nhelp: add lines like `web: python -m http.server $PORT`",
        ));
    }
    let from_dotenv = dotenv
        .iter()
        .rev()
        .find(|(k, _)| k == "PORT")
        .map(|(_, v)| v.clone());
    let in_dotenv = from_dotenv.is_some();
    let base = match from_dotenv.or_else(|| env("PORT")) {
        None => PROCFILE_BASE_PORT,
        Some(t) => match t.trim().parse::<u16>() {
            Ok(p) if p > 0 => p,
            // A value of the `.env` is never quoted; mew's own environment's is.
            _ if in_dotenv => {
                errors.push(Diagnostic::new(
                    &dotenv_path,
                    None,
                    "`PORT` is not a port number (1-65535), so Procfile ports cannot be assigned",
                ));
                PROCFILE_BASE_PORT
            }
            _ => {
                errors.push(Diagnostic::new(
                    &path,
                    None,
                    format!(
                        "PORT=`{}` in the environment is not a port number (1-65535), so Procfile ports cannot be assigned",
                        escape(&t)
                    ),
                ));
                PROCFILE_BASE_PORT
            }
        },
    };
    let mut processes = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let port = u32::from(base) + u32::from(PROCFILE_PORT_STEP) * u32::try_from(i).unwrap_or(0);
        let Ok(port) = u16::try_from(port) else {
            errors.push(Diagnostic::new(
                &path,
                Some(e.loc.clone()),
                format!(
                    "`{}` would get PORT {port}, beyond 65535 (base port {base})",
                    e.name
                ),
            ));
            continue;
        };
        let mut p =
            build::default_process(&e.name, ProcKind::Process, e.command.clone(), e.loc.clone());
        p.env_file_vars = dotenv
            .iter()
            .filter(|(k, _)| k != "PORT")
            .cloned()
            .collect();
        p.env_file_vars.push(("PORT".to_owned(), port.to_string()));
        processes.push(p);
    }
    if !errors.is_empty() {
        return Err(invalid(
            errors,
            Vec::new(),
            Source {
                path: path.clone(),
                text,
                yaml: false,
                secrets: Vec::new(),
            },
        ));
    }
    let id = dir_name(dir);
    Ok(SpaceConfig {
        name: id.clone(),
        id,
        description: None,
        dir: dir.to_path_buf(),
        sources: vec![path.clone()],
        config_path: path,
        source: ConfigSource::Procfile,
        gateway_port: DEFAULT_PORT,
        processes,
        participants: Vec::new(),
        fifos: Vec::new(),
        logs: LogConfig {
            dir: dir.join(".mew/logs"),
            rotate_size: build::DEFAULT_ROTATE_SIZE,
            keep: build::DEFAULT_KEEP,
            upstream_paths: false,
        },
        shutdown_timeout: build::DEFAULT_SHUTDOWN_TIMEOUT,
        ui_keys: Vec::new(),
        overridden: Vec::new(),
        secret_tokens: Vec::new(),
        warnings: Vec::new(),
    })
}

/// The environment variable carrying a participant's token: `MEW_TOKEN_<ID>`,
/// upper-cased, `-` and `.` as `_`.
pub fn token_env_name(participant: &str) -> String {
    let id: String = participant
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("MEW_TOKEN_{id}")
}

/// Interpolate every process (see `docs/space-yaml.md`). Warnings name the
/// process and field of each unset variable.
pub fn resolve(cfg: &SpaceConfig, ctx: &ResolveContext) -> (Vec<ResolvedProcess>, Vec<Diagnostic>) {
    resolve_with_env(cfg, ctx, &|k| std::env::var(k).ok())
}

/// `${NAME}` in interpolation: a built-in, then the process's own env (later
/// entries win), then mew's environment.
fn lookup_var(
    name: &str,
    builtin: &dyn Fn(&str) -> Option<String>,
    env: &[(String, String)],
    os_env: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    builtin(name)
        .or_else(|| {
            env.iter()
                .rev()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        })
        .or_else(|| os_env(name))
}

/// Copy `r.index` of a replicated process gets `PORT + (index - 1)` for each
/// `PORT` of its environment (`env:` or `env_file`) that is a number; a
/// `PORT` that is not one is left as is, with a warning (the copies would
/// share it).
fn replica_port(
    cfg: &SpaceConfig,
    p: &ProcessConfig,
    r: &Replica,
    env: &mut [(String, String)],
    warnings: &mut Vec<Diagnostic>,
) {
    if r.count < 2 {
        return;
    }
    for (k, v) in env.iter_mut().filter(|(k, _)| k == "PORT") {
        let shifted = v
            .trim()
            .parse::<u32>()
            .ok()
            .map(|base| base + (r.index - 1))
            .filter(|&n| (1..=65535).contains(&n));
        match shifted {
            Some(n) => *v = n.to_string(),
            None if v == TOKEN_MASK => {}
            None => warnings.push(Diagnostic::new(
                cfg.file_of(&p.loc),
                Some(p.loc.clone()),
                format!(
                    "`{}.env.{k}` is not a port number below 65536 once offset, so the {} copies of `{}` share it",
                    p.name, r.count, r.of
                ),
            )),
        }
    }
}

/// [`resolve`] with an explicit environment lookup.
pub fn resolve_with_env(
    cfg: &SpaceConfig,
    ctx: &ResolveContext,
    os_env: &dyn Fn(&str) -> Option<String>,
) -> (Vec<ResolvedProcess>, Vec<Diagnostic>) {
    let mut out = Vec::new();
    let mut warnings = Vec::new();
    for p in &cfg.processes {
        out.push(resolve_one(cfg, ctx, p, os_env, &mut warnings));
    }
    (out, warnings)
}

fn resolve_one(
    cfg: &SpaceConfig,
    ctx: &ResolveContext,
    p: &ProcessConfig,
    os_env: &dyn Fn(&str) -> Option<String>,
    warnings: &mut Vec<Diagnostic>,
) -> ResolvedProcess {
    let token = ctx.tokens.get(&p.name).cloned();
    let builtin = |name: &str| -> Option<String> {
        match name {
            "PORT" if cfg.source == ConfigSource::SpaceYaml => Some(ctx.port.to_string()),
            "SPACE" => Some(cfg.id.clone()),
            "SPACE_DIR" => Some(cfg.dir.display().to_string()),
            "SPACE_CONFIG" => Some(cfg.config_path.display().to_string()),
            "PARTICIPANT" => Some(p.name.clone()),
            "TOKEN" => token.clone(),
            "REPLICA" => p.replica.as_ref().map(|r| r.index.to_string()),
            _ => None,
        }
    };
    let mut env: Vec<(String, String)> = p.env_file_vars.clone();
    let mut warn = |field: &str, unset: Vec<String>| {
        for name in unset {
            let why = if name == "TOKEN" {
                format!("`{}` has no token", p.name)
            } else {
                "it is not set in the environment".to_owned()
            };
            warnings.push(Diagnostic::new(
                cfg.file_of(&p.loc),
                Some(p.loc.clone()),
                format!(
                    "`${{{name}}}` in `{}.{}` is left as written: {why}",
                    p.name,
                    escape(field)
                ),
            ));
        }
    };
    // Config env: each value may use the built-ins, env_file, earlier entries, the OS.
    for (k, v) in &p.env {
        let (value, unset) = {
            let lookup = |name: &str| lookup_var(name, &builtin, &env, os_env);
            interpolate(v, &lookup)
        };
        warn(&format!("env.{k}"), unset);
        env.push((k.clone(), value));
    }
    let mut port_warnings = Vec::new();
    if let Some(r) = &p.replica {
        replica_port(cfg, p, r, &mut env, &mut port_warnings);
    }
    let lookup = |name: &str| lookup_var(name, &builtin, &env, os_env);
    let mut field = |what: &str, s: &str| {
        let (v, unset) = interpolate(s, &lookup);
        warn(what, unset);
        v
    };
    let command = field("command", &p.command);
    let argv = match &p.args {
        Some(args) => {
            let mut argv = vec![command];
            for (i, a) in args.iter().enumerate() {
                argv.push(field(&format!("args[{i}]"), a));
            }
            argv
        }
        None => vec!["/bin/sh".to_owned(), "-c".to_owned(), command],
    };
    let cwd = match &p.cwd {
        Some(c) => cfg.dir.join(field("cwd", c)),
        None => cfg.dir.clone(),
    };
    let mut resolve_probe = |key: &str, probe: &Probe| {
        let kind = match &probe.kind {
            ProbeKind::Http { url } => ProbeKind::Http {
                url: field(&format!("{key}.http"), url),
            },
            ProbeKind::Tcp { host, port } => ProbeKind::Tcp {
                host: field(&format!("{key}.tcp"), host),
                port: field(&format!("{key}.tcp"), port),
            },
            ProbeKind::Exec { command } => ProbeKind::Exec {
                command: field(&format!("{key}.exec"), command),
            },
            ProbeKind::Log { regex } => ProbeKind::Log {
                regex: regex.clone(),
            },
        };
        Probe {
            kind,
            ..probe.clone()
        }
    };
    let ready = p.ready.as_ref().map(|probe| resolve_probe("ready", probe));
    let health = p.health.as_ref().map(|h| HealthCheck {
        probe: resolve_probe("health", &h.probe),
        action: h.action,
    });
    // `watch:` paths are interpolated like the rest (`${SPACE_DIR}/src`).
    let mut config = p.clone();
    if let Some(w) = &mut config.watch {
        for (i, path) in w.paths.iter_mut().enumerate() {
            *path = field(&format!("watch.paths[{i}]"), path);
        }
    }
    warnings.extend(port_warnings);
    env.push(("MEW_SPACE".to_owned(), cfg.id.clone()));
    env.push(("MEW_SPACE_DIR".to_owned(), cfg.dir.display().to_string()));
    env.push(("MEW_PROCESS".to_owned(), p.name.clone()));
    if p.kind == ProcKind::Participant
        && let Some(t) = &token
    {
        env.push((token_env_name(&p.name), t.clone()));
    }
    ResolvedProcess {
        name: p.name.clone(),
        kind: p.kind,
        argv,
        env,
        cwd,
        ready,
        health,
        config,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod tests_devloop;
