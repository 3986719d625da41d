use std::ffi::OsString;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use mew::cli::{
    BridgeCommand, Cli, ClientCommand, Command, GatewayCommand, SpaceArgs, SpaceCommand,
    TokenCommand, UpArgs,
};
use mew::config::{ConfigSource, SpaceConfig, parse_duration};
use mew::protocol::Request;
use mew::{client, server};

fn main() -> ExitCode {
    let cli = parse_cli();
    // Commands that print and end die quietly of SIGPIPE when their reader
    // goes away; the server (also `up --no-tui`, `up` with its TUI) and the
    // gateway handle a closed output themselves.
    let handles_pipe = match &cli.command {
        Some(Command::Serve(_) | Command::Gateway(_)) => true,
        Some(Command::Space(SpaceCommand::Up(up)) | Command::Up(up)) => !up.detach,
        None => true,
        _ => false,
    };
    if !handles_pipe {
        mew::sys::default_sigpipe();
    }
    if let Some(Command::Space(SpaceCommand::Up(up)) | Command::Up(up)) = &cli.command
        && let Some(level) = &up.log_level
    {
        // The gateway process inherits it (its `--log-level` default).
        mew::sys::set_env_at_startup("MEW_GATEWAY_LOG_LEVEL", level);
    }
    if !matches!(cli.command, Some(Command::Gateway(_))) {
        init_tracing(matches!(cli.command, Some(Command::Serve(_))));
    }
    match cli.command {
        None => bare_mew(&cli.space),
        Some(Command::Init(args)) => mew::init::run(&cli.space, &args),
        Some(Command::Serve(args)) => match server::load_config(&cli.space) {
            Ok(cfg) => server::run(
                cfg,
                server::ServeOptions {
                    port: args.port,
                    headless: None,
                },
            ),
            Err(code) => code,
        },
        Some(Command::Space(cmd)) => space(cmd, &cli.space),
        Some(Command::Up(up)) => space(SpaceCommand::Up(up), &cli.space),
        Some(Command::Down(down)) => space(SpaceCommand::Down(down), &cli.space),
        Some(Command::Bridge(BridgeCommand::Start(args))) => mew::participant::bridge::run(args),
        Some(Command::Client(ClientCommand::Connect(args))) => mew::participant::client::run(args),
        Some(Command::Token(TokenCommand::Create(args))) => {
            mew::participant::token::create(&cli.space, &args)
        }
        Some(Command::Gateway(GatewayCommand::Start(a))) => {
            let space_config = a
                .space_config
                .or_else(|| cli.space.config.clone())
                .unwrap_or_else(|| {
                    let dir = &cli.space.space_dir;
                    let hidden = dir.join(".mew/space.yaml");
                    if hidden.is_file() {
                        hidden
                    } else {
                        dir.join("space.yaml")
                    }
                });
            mew::gateway::run(mew::gateway::GatewayOptions {
                port: a.port,
                space_config,
                log_level: a.log_level,
                log_dir: a.log_dir,
                host: a.host,
            })
        }
    }
}

/// Parse the command line; a space command typed without `space` (`mew up`,
/// `mew status` …, the upstream CLI's habit) gets a hint.
fn parse_cli() -> Cli {
    match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            if e.kind() == clap::error::ErrorKind::InvalidSubcommand {
                let word = match e.get(clap::error::ContextKind::InvalidSubcommand) {
                    Some(clap::error::ContextValue::String(w)) => Some(w.clone()),
                    _ => None,
                };
                const SPACE_COMMANDS: &[&str] = &[
                    "check", "attach", "status", "logs", "restart", "stop", "start", "ls", "clean",
                ];
                if let Some(w) = word.filter(|w| SPACE_COMMANDS.contains(&w.as_str())) {
                    let _ = e.print();
                    let _ = writeln!(
                        std::io::stderr(),
                        "\nhelp: `{w}` is a space command: `mew space {w}`"
                    );
                    std::process::exit(2);
                }
            }
            // Upstream's `-d` is `--space-dir`; mew's is `--detach`, as in
            // docker compose: `mew space up -d ./dir` says so.
            let args: Vec<String> = std::env::args().collect();
            if e.kind() == clap::error::ErrorKind::UnknownArgument && args.iter().any(|a| a == "-d")
            {
                let _ = e.print();
                let _ = writeln!(
                    std::io::stderr(),
                    "\nhelp: `-d` means `--detach` in mew (as in docker compose); the upstream MEW CLI's `-d DIR` is `--space-dir DIR` here"
                );
                std::process::exit(2);
            }
            e.exit()
        }
    }
}

/// mew's own diagnostics go to stderr (for the server: its log file),
/// filtered by `MEW_LOG` (default: warnings; the server logs info).
fn init_tracing(server: bool) {
    let default = if server { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("MEW_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_target(false)
        .try_init();
}

fn duration_arg(
    what: &str,
    value: &Option<String>,
) -> Result<Option<std::time::Duration>, ExitCode> {
    match value {
        None => Ok(None),
        Some(v) => parse_duration(v).map(Some).map_err(|e| {
            eprintln!("mew: {what}: {e}");
            ExitCode::from(2)
        }),
    }
}

/// Arguments that make the server read exactly the config this command read.
fn config_args(cfg: &SpaceConfig) -> Vec<OsString> {
    let flag = match cfg.source {
        ConfigSource::SpaceYaml => "--config",
        ConfigSource::Procfile => "--procfile",
    };
    vec![
        "--space-dir".into(),
        cfg.dir.clone().into_os_string(),
        flag.into(),
        cfg.config_path.clone().into_os_string(),
    ]
}

fn space(cmd: SpaceCommand, args: &SpaceArgs) -> ExitCode {
    let load = || server::load_config(args);
    match cmd {
        SpaceCommand::Check(a) => mew::check::run(args, &a),
        SpaceCommand::Export(a) => mew::export::run(args, &a),
        SpaceCommand::Connect(a) => match load() {
            Ok(cfg) => mew::participant::connect::run(&cfg, &a),
            Err(code) => code,
        },
        SpaceCommand::Up(up) => space_up(up, args),
        SpaceCommand::Status(a) => match load() {
            Ok(cfg) => client::status(&cfg.dir, a.json),
            Err(code) => code,
        },
        SpaceCommand::Logs(a) => {
            let since = match duration_arg("--since", &a.since) {
                Ok(s) => s,
                Err(code) => return code,
            };
            match load() {
                Ok(cfg) => client::logs(
                    &cfg,
                    client::LogsOptions {
                        follow: a.follow,
                        lines: a.lines,
                        since,
                        no_prefix: a.no_prefix,
                        names: a.names,
                    },
                ),
                Err(code) => code,
            }
        }
        SpaceCommand::Restart(a) => match load() {
            Ok(cfg) => client::control(&cfg.dir, Request::Restart { names: a.names }, "restarted"),
            Err(code) => code,
        },
        SpaceCommand::Stop(a) => match load() {
            Ok(cfg) => client::control(&cfg.dir, Request::Stop { names: a.names }, "stopped"),
            Err(code) => code,
        },
        SpaceCommand::Start(a) => match load() {
            Ok(cfg) => client::control(&cfg.dir, Request::Start { names: a.names }, "started"),
            Err(code) => code,
        },
        SpaceCommand::Down(a) => {
            let timeout = match duration_arg("--timeout", &a.timeout) {
                Ok(t) => t,
                Err(code) => return code,
            };
            // `down` must work even when the config is broken: it only needs the dir.
            // Patience: the longest a clean stop can take, plus a margin.
            let margin = std::time::Duration::from_secs(10);
            let (dir, patience) = match load() {
                Ok(cfg) => {
                    let stop = cfg
                        .processes
                        .iter()
                        .map(|p| p.stop_timeout)
                        .max()
                        .unwrap_or_default();
                    let longest = timeout.unwrap_or(stop).max(cfg.shutdown_timeout);
                    (cfg.dir, longest + margin)
                }
                Err(_) => (
                    args.space_dir.clone(),
                    timeout.unwrap_or_default() + margin * 2,
                ),
            };
            client::down(&dir, timeout, patience)
        }
        SpaceCommand::Ls(a) => client::ls(a.json),
        SpaceCommand::Attach => match load() {
            Ok(cfg) => client::attach(&cfg.dir, false),
            Err(code) => code,
        },
        SpaceCommand::Clean(a) => mew::clean::run(args, &a),
    }
}

fn space_up(up: UpArgs, args: &SpaceArgs) -> ExitCode {
    let timeout = match duration_arg("--timeout", &up.timeout) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let cfg = match server::load_config(args) {
        Ok(cfg) => cfg,
        Err(code) => return code,
    };
    if let Some(name) = &up.exit_code_from
        && cfg.process(name).is_none()
    {
        let names: Vec<&str> = cfg.processes.iter().map(|p| p.name.as_str()).collect();
        let hint = mew::config::did_you_mean(name, &names)
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        eprintln!(
            "mew: --exit-code-from: no process `{name}`{hint}; processes: {}",
            names.join(", ")
        );
        return ExitCode::from(2);
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let ci_mode = up.exit_code_from.is_some() || up.abort_on_exit || up.envelopes;
    let tui = !up.no_tui && !ci_mode && interactive;
    if up.detach || tui {
        // The server's stderr is its log file in these modes: say the
        // warnings here, where the user looks (`--no-tui` prints its own).
        for w in mew::check::plan(cfg.clone()).warnings {
            eprintln!("{}", server::format_diagnostic("warning", &w));
        }
    }
    if up.detach {
        let extra = config_args(&cfg);
        return client::up_detached(
            &cfg,
            &extra,
            client::DetachOptions {
                wait: up.wait,
                timeout,
                port: up.port,
            },
        );
    }
    if tui {
        return client::up_attached(&cfg, &config_args(&cfg), up.port);
    }
    if !up.no_tui && !ci_mode {
        eprintln!("mew: stdin or stdout is not a terminal: running as --no-tui");
    }
    server::run(
        cfg,
        server::ServeOptions {
            port: up.port,
            headless: Some(server::HeadlessOptions {
                timestamps: up.timestamps,
                exit_on_failure: up.exit_on_failure,
                exit_code_from: up.exit_code_from,
                abort_on_exit: up.abort_on_exit,
                envelopes: up.envelopes,
            }),
        },
    )
}

/// `mew` alone: attach to the space here if it runs, start it if not; outside
/// a space, a short help.
fn bare_mew(args: &SpaceArgs) -> ExitCode {
    let opts = mew::check::load_options(args);
    let found = mew::config::load(&opts);
    match found {
        Err(mew::config::ConfigError::NotFound { .. }) => {
            println!(
                "mew runs multi-process spaces. No space here ({}):\n  mew init            write .mew/space.yaml from a template\n  mew space up        start it\n  mew --help          everything else",
                args.space_dir.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.exit_code())
        }
        Ok(cfg) => {
            let running = mew::space::SpacePaths::new(&cfg.dir)
                .ok()
                .and_then(|p| mew::space::is_locked(&p))
                .unwrap_or(false);
            if running {
                client::attach(&cfg.dir, false)
            } else {
                space_up(
                    UpArgs {
                        no_tui: false,
                        port: None,
                        log_level: None,
                        envelopes: false,
                        timestamps: true,
                        exit_on_failure: false,
                        exit_code_from: None,
                        abort_on_exit: false,
                        detach: false,
                        wait: false,
                        timeout: None,
                    },
                    args,
                )
            }
        }
    }
}
