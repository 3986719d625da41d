//! `mew __serve`: the space server itself, as `up -d` and the TUI start it.

use super::Outcome;
use super::common::load;
use crate::cli::{ServeArgs, SpaceArgs};
use crate::server;

pub fn run(space: &SpaceArgs, args: &ServeArgs) -> Outcome {
    let cfg = load(space)?;
    Ok(server::run(
        cfg,
        server::ServeOptions {
            port: args.port,
            headless: None,
            watch_config: args.watch_config,
            part: server::Part {
                names: args.only.clone(),
                profiles: args.profile.clone(),
            },
        },
    ))
}
