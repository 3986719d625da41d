//! `mew init`: write `.mew/space.yaml` from a template (the init module
//! does the work); a failure is `error: <why>`.

use std::process::ExitCode;

use super::{Error, Outcome};
use crate::cli::{InitArgs, SpaceArgs};
use crate::init::Fail;

pub fn run(space: &SpaceArgs, args: &InitArgs) -> Outcome {
    crate::init::run(space, args)
        .map(|()| ExitCode::SUCCESS)
        .map_err(|Fail(code, why)| Error::said("error", code, why))
}
