//! What the commands share: the config as the command line names it,
//! duration arguments, the runtime, connecting to the space server.

use std::ffi::OsString;
use std::path::Path;
use std::time::Duration;

use super::Error;
use crate::cli::SpaceArgs;
use crate::client::Conn;
use crate::config::{ConfigSource, SpaceConfig, load_cli, parse_duration};
use crate::protocol::ClientKind;

/// The config the command line names, validated.
pub fn load(args: &SpaceArgs) -> Result<SpaceConfig, Error> {
    Ok(load_cli::load_args(args)?)
}

/// A duration option (`--since 5m`, `--timeout 30s`): a usage error when it
/// does not parse.
pub fn duration_arg(what: &str, value: &Option<String>) -> Result<Option<Duration>, Error> {
    match value {
        None => Ok(None),
        Some(v) => parse_duration(v)
            .map(Some)
            .map_err(|e| Error::Usage(format!("{what}: {e}"))),
    }
}

/// Arguments that make the server read exactly the config this command read.
pub fn config_args(cfg: &SpaceConfig) -> Vec<OsString> {
    let flag = match cfg.source {
        ConfigSource::SpaceYaml => "--config",
        ConfigSource::Procfile => "--procfile",
    };
    let mut args: Vec<OsString> = vec!["--space-dir".into(), cfg.dir.clone().into_os_string()];
    // Every merged file, so the server loads the config this command checked.
    for file in &cfg.sources {
        args.push(flag.into());
        args.push(file.clone().into_os_string());
    }
    args
}

/// The runtime a client command runs on.
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    crate::client::runtime().map_err(|e| Error::Failed(format!("cannot start the runtime: {e}")))
}

/// Run `f` to completion on a fresh client runtime.
pub fn block_on<T>(f: impl Future<Output = Result<T, Error>>) -> Result<T, Error> {
    runtime()?.block_on(f)
}

/// Connect to the space server of `space_dir` (not running: exit 3).
pub async fn connect(space_dir: &Path, kind: ClientKind) -> Result<Conn, Error> {
    Conn::connect(space_dir, kind)
        .await
        .map_err(|e| Error::connect(space_dir, e))
}

/// The names of the processes a config defines.
pub fn process_names(cfg: &SpaceConfig) -> Vec<String> {
    cfg.processes.iter().map(|p| p.name.clone()).collect()
}
