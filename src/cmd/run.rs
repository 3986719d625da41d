//! `mew space run NAME [-- CMD…]`: a one-off command with the environment,
//! the cwd and the token of process NAME, attached to this terminal (like
//! `foreman run` or `docker compose run`). mew execs it, so its signals and
//! its exit code are the command's own. Without CMD, NAME's own command.
//!
//! The port is the running space's gateway port (from its lock file), else
//! the configured one. The command does not carry `MEW_RUN_ID`: it is not
//! part of a run, and a `down` leaves it alone.

use std::os::unix::process::CommandExt as _;

use super::common::load;
use super::{Error, Outcome};
use crate::cli::{RunArgs, SpaceArgs};
use crate::config::{self, ResolveContext, SpaceConfig};
use crate::space::{self, SpacePaths};

pub fn run(args: &SpaceArgs, run: RunArgs) -> Outcome {
    let cfg = load(args)?;
    if cfg.process(&run.name).is_none() {
        let names: Vec<&str> = cfg.processes.iter().map(|p| p.name.as_str()).collect();
        let hint = config::did_you_mean(&run.name, &names)
            .map(|n| format!(" (did you mean `{n}`?)"))
            .unwrap_or_default();
        return Err(Error::Usage(format!(
            "no process `{}` in this space{hint}; processes: {}",
            config::escape(&run.name),
            names.join(", ")
        )));
    }
    let paths = SpacePaths::new(&cfg.dir)
        .map_err(|e| Error::Failed(format!("{}: {e}", cfg.dir.display())))?;
    let ctx = context(&cfg, &paths)?;
    let (resolved, _warnings) = config::resolve(&cfg, &ctx);
    let Some(rp) = resolved.into_iter().find(|p| p.name == run.name) else {
        return Err(Error::Failed(format!("cannot resolve `{}`", run.name)));
    };
    let argv = if run.command.is_empty() {
        rp.argv.clone()
    } else {
        run.command.clone()
    };
    let Some((program, rest)) = argv.split_first() else {
        return Err(Error::Usage("no command to run".into()));
    };
    let err = std::process::Command::new(program)
        .args(rest)
        .envs(rp.env.iter().map(|(k, v)| (k, v)))
        .env_remove("MEW_RUN_ID")
        .current_dir(&rp.cwd)
        .exec();
    // Only reached when the exec failed: say why, with a shell's codes.
    let code = match err.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    Err(Error::said(
        "mew",
        code,
        format!(
            "cannot run `{}` in {}: {err}",
            config::escape(program),
            rp.cwd.display()
        ),
    ))
}

/// The port and the tokens `NAME`'s environment is resolved with: the
/// running space's gateway port, else the configured one.
fn context(cfg: &SpaceConfig, paths: &SpacePaths) -> Result<ResolveContext, Error> {
    let running = space::is_locked(paths) == Some(true);
    let port = running
        .then(|| space::read_lock_info(paths).and_then(|i| i.gateway_port))
        .flatten()
        .unwrap_or(cfg.gateway_port);
    let tokens = space::participant_tokens(cfg, &paths.tokens_dir).map_err(|e| {
        Error::Failed(format!(
            "cannot read the participants' tokens in {}: {e}",
            paths.tokens_dir.display()
        ))
    })?;
    Ok(ResolveContext { port, tokens })
}
