//! The config as the command line names it (`--space-dir`, `--config`,
//! `--procfile`), and how its diagnostics are printed.

use std::process::ExitCode;

use super::{ConfigError, Diagnostic, LoadOptions, SpaceConfig, escape, load};
use crate::cli::SpaceArgs;

impl From<&SpaceArgs> for LoadOptions {
    fn from(args: &SpaceArgs) -> LoadOptions {
        LoadOptions {
            space_dir: args.space_dir.clone(),
            procfile: args.procfile.clone(),
            ..Default::default()
        }
        .with_configs(&args.config)
    }
}

/// Load and validate the config the command line names. Nothing is spawned
/// or written.
pub fn load_args(args: &SpaceArgs) -> Result<SpaceConfig, ConfigError> {
    load(&LoadOptions::from(args))
}

/// [`load_args`], printing the error (for commands that return an exit
/// code): a config error yields exit code 2.
pub fn load_config(args: &SpaceArgs) -> Result<SpaceConfig, ExitCode> {
    load_args(args).map_err(|e| {
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), "{e}");
        ExitCode::from(e.exit_code())
    })
}

/// One diagnostic as a line: `warning: FILE:LINE:COL: message`.
pub fn format_diagnostic(level: &str, d: &Diagnostic) -> String {
    let file = d.file.display().to_string();
    let file = escape(&file);
    match &d.loc {
        Some(loc) => format!("{level}: {file}:{}:{}: {}", loc.line, loc.col, d.message),
        None => format!("{level}: {file}: {}", d.message),
    }
}
