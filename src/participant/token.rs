//! `mew token create`.

use std::process::ExitCode;

use crate::cli::{SpaceArgs, TokenCreateArgs};

pub fn create(_space: &SpaceArgs, _args: &TokenCreateArgs) -> ExitCode {
    eprintln!("mew token create: not built yet");
    ExitCode::from(2)
}
