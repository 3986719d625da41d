//! `mew space clean`: remove the space's logs, run files, tokens or
//! exports (the clean module decides and removes; this prints).

use std::process::ExitCode;

use super::{Error, Outcome};
use crate::cli::{CleanArgs, SpaceArgs};

/// `mew space clean`: what was removed on stdout, even when a later
/// removal failed; a failure is `mew: <why>`.
pub fn run(space: &SpaceArgs, args: &CleanArgs) -> Outcome {
    let mut out = String::new();
    let result = crate::clean::clean(space, args, &mut out);
    print!("{out}");
    result.map(|()| ExitCode::SUCCESS).map_err(Error::Failed)
}
