//! Command-line interface: clap types only.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "mew",
    version,
    about = "Run MEW spaces (and any multi-process project) in the foreground, with a TUI, \
             detach/attach, and control from any shell.",
    long_about = None,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub space: SpaceArgs,
}

/// How a command finds its space.
#[derive(Debug, Clone, Args, Default)]
pub struct SpaceArgs {
    /// The space directory (holds `.mew/`).
    #[arg(long, global = true, value_name = "DIR", default_value = ".")]
    pub space_dir: PathBuf,

    /// The space config file [default: $MEW_SPACE_CONFIG, DIR/.mew/space.yaml, DIR/space.yaml];
    /// given again, an override file merged over it (in order). Without a second one,
    /// `NAME.override.yaml` beside it is merged when it exists.
    #[arg(short = 'c', long, global = true, value_name = "FILE", action = clap::ArgAction::Append)]
    pub config: Vec<PathBuf>,

    /// Run a Procfile instead of a space.yaml (one process per line, foreman format).
    #[arg(long, global = true, value_name = "FILE")]
    pub procfile: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a new `.mew/space.yaml` from a template.
    Init(InitArgs),
    /// Run and control a space.
    #[command(subcommand)]
    Space(SpaceCommand),
    /// The MEW protocol gateway (HTTP + WebSocket).
    #[command(subcommand)]
    Gateway(GatewayCommand),
    /// `mew space up` (as the upstream MEW CLI spells it).
    Up(UpArgs),
    /// `mew space down` (as the upstream MEW CLI spells it).
    Down(DownArgs),
    /// An MCP server (stdio) joined to a space as a participant.
    #[command(subcommand)]
    Bridge(BridgeCommand),
    /// A MEW participant client: JSON lines from a FIFO or stdin to the space, envelopes out.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Participant tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The space server itself (started by `mew space up`; not for direct use).
    #[command(name = "__serve", hide = true)]
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long)]
    pub port: Option<u16>,
    /// Reload when a config file changes (`up --watch-config`).
    #[arg(long)]
    pub watch_config: bool,
    /// `up NAME…`: start only these (and what they depend on).
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// `up --profile P`.
    #[arg(long, value_name = "P")]
    pub profile: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// Run a MEW gateway in the foreground (`mew space up` starts one for a space with participants).
    Start(GatewayStartArgs),
}

#[derive(Debug, Args)]
pub struct GatewayStartArgs {
    /// Port to listen on.
    #[arg(short, long, default_value_t = 8080)]
    pub port: u16,
    /// The space config [default: --config, else DIR/.mew/space.yaml, else DIR/space.yaml].
    #[arg(short = 's', long, value_name = "FILE")]
    pub space_config: Option<PathBuf>,
    /// Log level: debug, info, warn or error [`mew space up -l` passes it as $MEW_GATEWAY_LOG_LEVEL].
    #[arg(
        short = 'l',
        long,
        env = "MEW_GATEWAY_LOG_LEVEL",
        default_value = "info"
    )]
    pub log_level: String,
    /// Accepted for compatibility: mew's gateway never starts participants (mew's server does).
    #[arg(long)]
    pub no_auto_start: bool,
    /// Address to listen on [default: loopback, 127.0.0.1 and ::1]. `0.0.0.0` exposes the
    /// gateway to the network: every participant then needs a secret token.
    #[arg(long, value_name = "ADDR")]
    pub host: Option<std::net::IpAddr>,
    /// Directory for envelope-history.jsonl and capability-decisions.jsonl [default: <space>/.mew/logs].
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum BridgeCommand {
    /// Run an MCP server and join it to a space (`type: mcp-bridge` participants run this).
    Start(BridgeStartArgs),
}

/// `mew bridge start`: upstream's flags, plus the MCP command after `--`.
#[derive(Debug, Args)]
pub struct BridgeStartArgs {
    /// Gateway WebSocket URL (ws://host:port).
    #[arg(short, long, value_name = "URL")]
    pub gateway: String,
    /// Space to join.
    #[arg(short, long, value_name = "ID")]
    pub space: String,
    /// The participant id this bridge joins as.
    #[arg(short = 'p', long, value_name = "ID")]
    pub participant_id: String,
    /// Token [default: $MEW_TOKEN, else $MEW_TOKEN_<ID>]. On the command line it is
    /// visible to every user of the machine (`ps`): prefer the environment.
    #[arg(short, long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The MCP server's command (or give the command and its arguments after `--`).
    #[arg(short = 'm', long, value_name = "COMMAND")]
    pub mcp_command: Option<String>,
    /// The MCP server's arguments, comma-separated (upstream's form; `--` keeps commas).
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub mcp_args: Option<String>,
    /// Environment for the MCP server, comma-separated KEY=VALUE pairs.
    #[arg(long, value_name = "ENV")]
    pub mcp_env: Option<String>,
    /// Working directory of the MCP server.
    #[arg(long, value_name = "DIR")]
    pub mcp_cwd: Option<PathBuf>,
    /// How long the MCP server may take to answer `initialize`, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub init_timeout: u64,
    /// Reconnect to the gateway when the connection drops.
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set)]
    pub reconnect: bool,
    /// How many reconnects in a row before giving up.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_reconnects: u32,
    /// Capabilities to advertise when joining (a JSON array).
    #[arg(long, value_name = "JSON")]
    pub capabilities: Option<String>,
    /// How long a request may wait for the MCP server's answer before the
    /// requester gets an error, in milliseconds (0: no limit).
    #[arg(long, value_name = "MS", default_value_t = 30_000)]
    pub request_timeout: u64,
    /// The MCP server's command and arguments (with -m: more arguments).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Join a space; send JSON lines from --fifo-in (or stdin), write envelopes to
    /// --fifo-out / --output-file (or stdout).
    Connect(ClientConnectArgs),
}

#[derive(Debug, Args)]
pub struct ClientConnectArgs {
    /// Gateway WebSocket URL (ws://host:port).
    #[arg(short, long, value_name = "URL")]
    pub gateway: String,
    /// Space to join.
    #[arg(short, long, value_name = "ID")]
    pub space: String,
    /// Token [default: $MEW_TOKEN, else $MEW_TOKEN_<ID>]. On the command line it is
    /// visible to every user of the machine (`ps`): prefer the environment.
    #[arg(short, long, value_name = "TOKEN")]
    pub token: Option<String>,
    /// The participant id to join as [default: the token's participant].
    #[arg(short = 'p', long, value_name = "ID")]
    pub participant_id: Option<String>,
    /// Read JSON envelopes, one per line, from this FIFO (reopened at each writer's end).
    #[arg(long, value_name = "PATH")]
    pub fifo_in: Option<PathBuf>,
    /// Write every envelope received, one JSON line each, to this FIFO.
    #[arg(long, value_name = "PATH", conflicts_with = "output_file")]
    pub fifo_out: Option<PathBuf>,
    /// Append every envelope received, one JSON line each, to this file.
    #[arg(long, value_name = "PATH")]
    pub output_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make a new random token for a participant and print it.
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The participant the token is for.
    #[arg(short = 'p', long, value_name = "ID")]
    pub participant_id: String,
    /// Capabilities (a JSON array; checked, as upstream; the gateway takes
    /// capabilities from space.yaml).
    #[arg(long, value_name = "JSON")]
    pub capabilities: Option<String>,
    /// Also store the token as the participant's `.mew/tokens/<ID>.token`
    /// (a participant of the space; an existing file is kept unless --force).
    #[arg(long)]
    pub write: bool,
    /// With --write: replace an existing token file (its old token stops working).
    #[arg(long, requires = "write")]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The template: a directory DIR/templates/NAME/ or ./templates/NAME/
    /// (local), ~/.mew/templates/NAME/ (user), or built in (see --list-templates).
    #[arg(default_value = "demo")]
    pub template: String,
    /// The space name: SPACE_NAME [default: the template's, else the directory name].
    #[arg(long)]
    pub name: Option<String>,
    /// The space description: SPACE_DESCRIPTION.
    #[arg(long)]
    pub description: Option<String>,
    /// The gateway port: PORT [default: the template's, else 8080].
    #[arg(long)]
    pub port: Option<u16>,
    /// The AI model: AGENT_MODEL [default: the template's, else gpt-5].
    #[arg(long)]
    pub model: Option<String>,
    /// The UI theme: UI_THEME.
    #[arg(long, value_parser = ["neon-pulse", "retro-term", "deep-space", "neon-city"])]
    pub theme: Option<String>,
    /// Set any template variable (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE")]
    pub vars: Vec<String>,
    /// Never ask for a value, even in a terminal (flags, environment, defaults only).
    #[arg(long)]
    pub no_prompt: bool,
    /// Replace an existing space.yaml (and the template's files in .mew/).
    #[arg(long)]
    pub force: bool,
    /// List the templates (name, source, description) and exit.
    #[arg(long)]
    pub list_templates: bool,
    /// Show a template's description, variables and files, and exit.
    #[arg(long, value_name = "NAME")]
    pub template_info: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum SpaceCommand {
    /// Validate the config and print the resolved plan.
    Check(CheckArgs),
    /// Start the space (with the TUI; -d in the background; --no-tui for CI).
    Up(UpArgs),
    /// Attach this terminal to the running space.
    Attach,
    /// Show every process: state, pid, uptime, restarts, CPU, memory.
    Status(StatusArgs),
    /// Print process logs (from the log files; -f follows live).
    Logs(LogsArgs),
    /// Restart processes (no name: all, in dependency order).
    Restart(NamesArgs),
    /// Stop processes; they stay stopped until started.
    Stop(NamesArgs),
    /// Start stopped processes (no name: every auto-start process).
    Start(NamesArgs),
    /// Load the config again and apply what changed: start the added processes,
    /// stop the removed ones, restart the changed ones; the rest keeps running.
    Reload,
    /// Run N copies of a process: `mew space scale worker=3` (NAME-k copies).
    Scale(ScaleArgs),
    /// Stop every process and the space server.
    Down(DownArgs),
    /// List the spaces running on this machine.
    Ls(LsArgs),
    /// Remove logs and run state (and, on request, tokens).
    Clean(CleanArgs),
    /// Join the running space as a participant from this terminal (line mode).
    Connect(ConnectArgs),
    /// Translate the space for systemd, docker compose or Kubernetes.
    Export(ExportArgs),
    /// Run a one-off command with a process's environment, cwd and token, in this terminal.
    Run(RunArgs),
}

/// `mew space run NAME [-- CMD…]`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The process whose environment and cwd the command gets.
    pub name: String,
    /// The command and its arguments [default: the process's own command].
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// systemd units (user units; --system for system units) and a target.
    Systemd,
    /// A docker compose file.
    Compose,
    /// Kubernetes manifests.
    Kubernetes,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Systemd => "systemd",
            ExportFormat::Compose => "compose",
            ExportFormat::Kubernetes => "kubernetes",
        }
    }
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// What to export to.
    #[arg(long, value_enum)]
    pub format: ExportFormat,
    /// Where to write the files [default: .mew/export/FORMAT].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// The container image (compose, kubernetes).
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// systemd: system units (in /etc/systemd/system) instead of user units.
    #[arg(long)]
    pub system: bool,
    /// Print the files and notes as one JSON document instead of writing them.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The participant to join as [default: the first participant without a command].
    #[arg(long, value_name = "ID")]
    pub participant: Option<String>,
    /// Gateway URL [default: the running space's gateway].
    #[arg(long, value_name = "URL")]
    pub gateway: Option<String>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Print one JSON document (schema in docs/cli.md).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// Keep printing new lines as they come.
    #[arg(short, long)]
    pub follow: bool,
    /// Print only the last N lines (all processes together).
    #[arg(short = 'n', long = "lines", value_name = "N")]
    pub lines: Option<usize>,
    /// Only lines newer than this (e.g. 30s, 5m, 1h).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Print the text only, without time and process name.
    #[arg(long)]
    pub no_prefix: bool,
    /// Processes to show (default: all).
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct NamesArgs {
    /// Process names.
    pub names: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// Kill whatever has not stopped after this long (e.g. 10s).
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Print the plan as one JSON document.
    #[arg(long)]
    pub json: bool,
    /// Show environment values (masked as **** by default); values from
    /// env_file files and tokens stay masked.
    #[arg(long)]
    pub show_values: bool,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Run headless: prefixed output lines, exit code from the processes (for CI).
    #[arg(long)]
    pub no_tui: bool,
    /// Gateway port (default: gateway.port, else 8080; the next free port if taken).
    #[arg(short = 'p', long)]
    pub port: Option<u16>,
    /// Log level of mew's own gateway: debug, info, warn or error (upstream's `-l`).
    #[arg(short = 'l', long, value_name = "LEVEL", value_parser = ["debug", "info", "warn", "error"])]
    pub log_level: Option<String>,

    /// Prefix output lines with HH:MM:SS (--no-tui).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub timestamps: bool,
    /// Stop the space when a process fails for good, and exit with its code.
    #[arg(long)]
    pub exit_on_failure: bool,
    /// When NAME ends (with any code), stop the space and exit with NAME's code
    /// (docker compose's --exit-code-from; implies --no-tui).
    #[arg(long, value_name = "NAME", conflicts_with = "detach")]
    pub exit_code_from: Option<String>,
    /// Stop the space as soon as any process ends for good (a one_shot task that
    /// succeeded aside), and exit with its code (implies --no-tui).
    #[arg(long, conflicts_with_all = ["detach", "exit_code_from"])]
    pub abort_on_exit: bool,
    /// Also print the space's envelopes, one line each (`HH:MM:SS space > from → to kind: summary`),
    /// as the space's person sees them (implies --no-tui).
    #[arg(long, conflicts_with = "detach")]
    pub envelopes: bool,
    /// Start the space server in the background and return.
    #[arg(short, long, conflicts_with = "no_tui")]
    pub detach: bool,
    /// Reload the config by itself whenever one of its files changes
    /// (as `mew space reload` does).
    #[arg(long)]
    pub watch_config: bool,
    /// With -d: return only once every auto-start process is ready.
    #[arg(long, requires = "detach")]
    pub wait: bool,
    /// With --wait: give up after this long (e.g. 60s).
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub timeout: Option<String>,
    /// Also start the processes with this profile (`profiles:`); repeatable.
    /// Processes with `profiles:` start only when one of theirs is given.
    #[arg(long, value_name = "P")]
    pub profile: Vec<String>,
    /// Start only these processes and what they depend on (transitively);
    /// the others are listed and startable with `mew space start`.
    #[arg(value_name = "NAME")]
    pub names: Vec<String>,
}

impl UpArgs {
    /// `mew space up` with no option given (bare `mew`): the defaults
    /// written once, in the `#[arg]`s above.
    pub fn defaults() -> Result<UpArgs, clap::Error> {
        use clap::FromArgMatches as _;
        let matches =
            UpArgs::augment_args(clap::Command::new("up")).try_get_matches_from(["up"])?;
        UpArgs::from_arg_matches(&matches)
    }
}

/// `mew space scale NAME=N`.
#[derive(Debug, Args)]
pub struct ScaleArgs {
    /// NAME=N: the process and how many copies of it should run.
    #[arg(value_name = "NAME=N")]
    pub target: String,
}

/// What `mew space clean` removes. With no selector: logs and run state.
#[derive(Debug, Args)]
pub struct CleanArgs {
    /// Remove the log files only (.mew/logs, and mew's log files in a configured logs dir).
    #[arg(long)]
    pub logs: bool,
    /// Remove the participant tokens only (.mew/tokens); new ones are made at the next `up`.
    #[arg(long)]
    pub tokens: bool,
    /// Remove everything mew created in .mew/ (logs, run state, tokens); keeps space.yaml,
    /// agents/ and any other file.
    #[arg(long, conflicts_with_all = ["logs", "tokens"])]
    pub all: bool,
    /// Show what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Clean even when whether the space runs cannot be checked (never
    /// while it runs).
    #[arg(long)]
    pub force: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn up_defaults_are_clap_s() {
        let up = UpArgs::defaults().unwrap();
        assert!(up.timestamps, "--timestamps defaults to true");
        assert!(!up.no_tui && !up.detach && !up.wait && !up.envelopes);
        assert!(up.port.is_none() && up.timeout.is_none() && up.exit_code_from.is_none());
    }
}
