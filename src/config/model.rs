//! The validated, typed model of a space: what the rest of mew consumes.
//!
//! `load` (in `config::mod`) produces a [`SpaceConfig`] whose strings are still
//! uninterpolated; [`crate::config::resolve`] turns it into [`ResolvedProcess`]es
//! once the gateway port and tokens are known.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// A position in a source file (1-based line and column).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
    /// Which of the merged files ([`SpaceConfig::sources`]) it is in: 0 for
    /// the config itself, 1… for the override files.
    #[serde(skip)]
    pub file: usize,
}

impl Loc {
    /// Line and column in the config file itself.
    pub const fn new(line: u32, col: u32) -> Self {
        Loc { line, col, file: 0 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProcKind {
    Gateway,
    Participant,
    Process,
}

impl ProcKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProcKind::Gateway => "gateway",
            ProcKind::Participant => "participant",
            ProcKind::Process => "process",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    No,
    OnFailure,
    Always,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DependCondition {
    /// The dependency has been spawned.
    Started,
    /// The dependency passed its readiness probe (or is running, without one).
    Ready,
    /// The dependency exited with status 0.
    CompletedSuccessfully,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Dependency {
    pub name: String,
    pub condition: DependCondition,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProbeKind {
    /// HTTP GET; any 2xx answer is success. Only `http://` URLs.
    Http { url: String },
    /// A TCP connect succeeds.
    Tcp { host: String, port: String },
    /// `sh -c command` exits 0.
    Exec { command: String },
    /// A regex matches one of the process's output lines.
    Log { regex: String },
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Probe {
    #[serde(flatten)]
    pub kind: ProbeKind,
    #[serde(with = "ser_duration")]
    pub initial_delay: Duration,
    #[serde(with = "ser_duration")]
    pub period: Duration,
    #[serde(with = "ser_duration")]
    pub timeout: Duration,
    pub failure_threshold: u32,
}

/// What a failing health check does once it reached its `failure_threshold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthAction {
    /// Restart the process (counted by the restart policy like any restart).
    Restart,
    /// Only report it: the process is marked unhealthy in the status.
    None,
}

/// A liveness check (`health:`): runs from readiness on, for as long as the
/// process runs. Its probe is never `log`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthCheck {
    #[serde(flatten)]
    pub probe: Probe,
    pub action: HealthAction,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Backoff {
    #[serde(with = "ser_duration")]
    pub initial: Duration,
    #[serde(with = "ser_duration")]
    pub max: Duration,
    pub multiplier: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
        }
    }
}

/// A signal by number with the name the user wrote (normalised, e.g. `SIGTERM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StopSignal {
    pub number: i32,
    pub name: &'static str,
}

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal {
            number: libc::SIGTERM,
            name: "SIGTERM",
        }
    }
}

/// One process as configured (uninterpolated strings).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProcessConfig {
    pub name: String,
    pub kind: ProcKind,
    /// The program (with `args`) or a shell command line (without `args`).
    pub command: String,
    /// `Some`: exec `command` with these arguments directly. `None`: run
    /// `command` through `/bin/sh -c`.
    pub args: Option<Vec<String>>,
    /// Environment added by the config, in file order (after `env_file`).
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub env_file: Option<String>,
    /// The variables read from `env_file` when the config was loaded (not interpolated).
    pub env_file_vars: Vec<(String, String)>,
    pub depends_on: Vec<Dependency>,
    pub ready: Option<Probe>,
    /// Checked from readiness on (`initial_delay` counts from readiness).
    pub health: Option<HealthCheck>,
    pub restart_policy: RestartPolicy,
    /// `None`: unlimited.
    pub max_restarts: Option<u32>,
    pub backoff: Backoff,
    pub stop_signal: StopSignal,
    #[serde(with = "ser_duration")]
    pub stop_timeout: Duration,
    pub max_memory: Option<u64>,
    /// Lines of scrollback kept in memory for the TUI.
    pub scrollback: usize,
    pub disabled: bool,
    pub auto_start: bool,
    /// A task: exiting 0 is its success, not a failure of the space.
    pub one_shot: bool,
    /// Token names declared by a participant (`tokens:`); informational.
    pub tokens: Vec<String>,
    /// mew's own binary (its gateway, an MCP bridge, a FIFO client), not a
    /// command from the file.
    pub native: bool,
    /// Where the upstream MEW CLI put this process's output, under the space's
    /// `logs/` (`gateway.log`, `<name>.log`, `<name>-bridge.log`,
    /// `<name>-client.log`): mew links that name to its own log, for the
    /// scripts that read it there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_log: Option<String>,
    /// `watch:`: restart (or signal) the process when its files change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub watch: Option<WatchSpec>,
    /// `profiles:`: the process starts only when one of these is asked for
    /// (`--profile`); empty means always.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profiles: Vec<String>,
    /// `replicas: N` made this process one of N copies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replica: Option<Replica>,
    /// The keys of this process that an override file set (or changed part
    /// of), with that file: what `check` shows as "from …". Empty without
    /// override files.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<KeyOrigin>,
    /// Where the process is defined: in the config file, or (with
    /// `loc.file` > 0) in an override file that added it.
    pub loc: Loc,
}

/// A key of a process set by an override file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyOrigin {
    pub key: String,
    pub file: PathBuf,
}

/// `watch:` of a process: what to watch, what to leave out, what to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WatchSpec {
    /// Paths or globs, relative to the process's `cwd` (uninterpolated).
    pub paths: Vec<String>,
    /// Patterns left out, added to the defaults (`.git`, `.mew`, `target`,
    /// `node_modules`) and, with `gitignore`, to what `.gitignore` says.
    pub ignore: Vec<String>,
    /// Honour `.gitignore` files (default true).
    pub gitignore: bool,
    /// A burst of changes within this time is one change (default 300 ms).
    #[serde(with = "ser_duration")]
    pub debounce: Duration,
    pub action: WatchAction,
}

/// What a change under `watch:` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum WatchAction {
    /// Stop the process (its stop signal, then SIGKILL) and start it again.
    Restart,
    /// Send this signal and leave it running (e.g. SIGHUP to reload).
    Signal { signal: StopSignal },
}

/// One of the `replicas: N` copies of a process: `worker-2` is
/// `{ of: "worker", index: 2, count: N }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Replica {
    pub of: String,
    /// 1-based: `${REPLICA}` in the copy's strings.
    pub index: u32,
    pub count: u32,
}

/// A `fifo: true` participant: `<name>-in` (what is written to it is sent
/// to the space) and, without an `output_log`, `<name>-out` (what it receives).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FifoSpec {
    pub name: String,
    pub output: bool,
}

impl FifoSpec {
    pub fn input_path(&self, space_dir: &Path) -> PathBuf {
        fifo_dir(space_dir).join(format!("{}-in", self.name))
    }
    pub fn output_path(&self, space_dir: &Path) -> PathBuf {
        fifo_dir(space_dir).join(format!("{}-out", self.name))
    }
}

/// `.mew/fifos` of a space.
pub fn fifo_dir(space_dir: &Path) -> PathBuf {
    space_dir.join(".mew").join("fifos")
}

/// A participant that is not a process (no `command`), or one mew cannot run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ParticipantInfo {
    pub name: String,
    /// Why it is not a process, e.g. "no command" or "type mcp-bridge needs the MEW CLI".
    pub note: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogConfig {
    /// Absolute directory for log files (default `<space>/.mew/logs`).
    pub dir: PathBuf,
    /// Rotate a log file when it grows past this many bytes.
    pub rotate_size: u64,
    /// Rotated files kept per process (`name.log.1` … `name.log.N`).
    pub keep: u32,
    /// `logs.upstream_paths`: link the upstream CLI's log names (`logs/<name>.log` …) to mew's logs.
    pub upstream_paths: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigSource {
    SpaceYaml,
    Procfile,
}

/// A warning or error about the configuration, with a location when there is one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub loc: Option<Loc>,
    pub message: String,
}

impl Diagnostic {
    /// A diagnostic whose message is made safe to print: every control
    /// character but the newlines between its lines is escaped (see
    /// [`crate::config::escape`]). Values quoted in `message` should be
    /// escaped already (with their newlines); this is the safety net.
    pub fn new(file: &std::path::Path, loc: Option<Loc>, message: impl Into<String>) -> Self {
        let message = message.into();
        Diagnostic {
            file: file.to_path_buf(),
            loc,
            message: super::report::escape_lines(&message).into_owned(),
        }
    }
}

/// The whole validated space.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpaceConfig {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    /// The space directory (absolute).
    pub dir: PathBuf,
    /// The config file that was read (absolute); with override files, the first.
    pub config_path: PathBuf,
    /// Every file merged into this config, in merge order (the config
    /// itself first, then `space.override.yaml` or the further `--config`s).
    pub sources: Vec<PathBuf>,
    pub source: ConfigSource,
    /// The configured gateway port (before `--port` and free-port search).
    pub gateway_port: u16,
    /// Processes: the gateway first (if any), then participants, then
    /// `processes:`, each in file order.
    pub processes: Vec<ProcessConfig>,
    pub participants: Vec<ParticipantInfo>,
    /// The `fifo: true` participants: mew makes their FIFOs under
    /// `.mew/fifos/` at `up` and removes them at `down`.
    pub fifos: Vec<FifoSpec>,
    pub logs: LogConfig,
    #[serde(with = "ser_duration")]
    pub shutdown_timeout: Duration,
    /// Every participant's `tokens:` values: secrets, masked wherever mew shows a command.
    pub secret_tokens: Vec<String>,
    /// `ui.keys`: action name → key, as written.
    pub ui_keys: Vec<(String, String)>,
    /// Top-level keys (`space`, `logs`, `shutdown_timeout`, `ui` …; not
    /// `gateway`, `participants` and `processes`, whose processes say it
    /// themselves) that an override file set or changed part of.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overridden: Vec<KeyOrigin>,
    pub warnings: Vec<Diagnostic>,
}

impl SpaceConfig {
    pub fn process(&self, name: &str) -> Option<&ProcessConfig> {
        self.processes.iter().find(|p| p.name == name)
    }

    /// The file a location is in (one of [`SpaceConfig::sources`]).
    pub fn file_of(&self, loc: &Loc) -> &Path {
        self.sources
            .get(loc.file)
            .map_or(self.config_path.as_path(), PathBuf::as_path)
    }

    pub fn gateway(&self) -> Option<&ProcessConfig> {
        self.processes.iter().find(|p| p.kind == ProcKind::Gateway)
    }
}

/// A process ready to spawn: every string interpolated.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ResolvedProcess {
    pub name: String,
    pub kind: ProcKind,
    /// Program and arguments (`["/bin/sh", "-c", line]` for shell commands).
    pub argv: Vec<String>,
    /// Environment mew adds on top of its own (config env, env_file, MEW_*).
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
    pub ready: Option<Probe>,
    pub health: Option<HealthCheck>,
    pub config: ProcessConfig,
}

pub(crate) mod ser_duration {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }
}
