//! `mew gateway start`: the gateway of the space here (its own process;
//! the gateway module does the work).

use std::path::PathBuf;

use super::Outcome;
use crate::cli::{GatewayStartArgs, SpaceArgs};

pub fn run(space: &SpaceArgs, a: GatewayStartArgs) -> Outcome {
    let space_config = a
        .space_config
        .or_else(|| space.config.first().cloned())
        .unwrap_or_else(|| default_space_config(space));
    crate::gateway::run(crate::gateway::GatewayOptions {
        port: a.port,
        space_config,
        log_level: a.log_level,
        log_dir: a.log_dir,
        host: a.host,
    })
}

/// `.mew/space.yaml` when there is one, else `space.yaml`, in the space dir.
fn default_space_config(space: &SpaceArgs) -> PathBuf {
    let dir = &space.space_dir;
    let hidden = dir.join(".mew/space.yaml");
    if hidden.is_file() {
        hidden
    } else {
        dir.join("space.yaml")
    }
}
