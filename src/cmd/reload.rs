//! `mew space reload`: the server loads the config again from the files it
//! was started with and applies what changed; this prints what it did, or
//! the new config's errors (exit 2, nothing changed).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use super::common::{block_on, connect, load};
use super::{Error, Outcome, USAGE};
use crate::cli::SpaceArgs;
use crate::protocol::{ClientKind, ReloadReport, Request, ResponseBody};

pub fn run(args: &SpaceArgs) -> Outcome {
    let dir = space_dir(args);
    let report = block_on(async {
        let mut conn = connect(&dir, ClientKind::Control).await?;
        match conn.request(Request::Reload).await? {
            ResponseBody::Reloaded { report } => Ok(report),
            other => Err(Error::Failed(format!("unexpected answer: {other:?}"))),
        }
    })?;
    Ok(print(&report))
}

/// The space's directory: from the config when it loads here, else the one
/// the command line names (the server says what is wrong with the config).
fn space_dir(args: &SpaceArgs) -> PathBuf {
    match load(args) {
        Ok(cfg) => cfg.dir,
        Err(_) => args.space_dir.clone(),
    }
}

/// Print what the reload did (errors to stderr); its exit code.
fn print(report: &ReloadReport) -> ExitCode {
    let mut err = std::io::stderr();
    if let Some(errors) = &report.errors {
        let _ = writeln!(err, "{}", errors.trim_end());
        if !errors.contains("nothing was changed") {
            let _ = writeln!(err, "mew: the config has errors: nothing was changed");
        }
        return ExitCode::from(USAGE);
    }
    for w in &report.warnings {
        let _ = writeln!(err, "{w}");
    }
    for line in report.lines() {
        println!("{line}");
    }
    if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
