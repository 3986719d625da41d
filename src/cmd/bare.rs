//! `mew` alone: attach to the space here if it runs, start it if not;
//! outside a space, a short help.

use std::process::ExitCode;

use super::{Error, Outcome};
use crate::cli::{SpaceArgs, UpArgs};
use crate::config::{ConfigError, LoadOptions};

pub fn run(args: &SpaceArgs) -> Outcome {
    let cfg = match crate::config::load(&LoadOptions::from(args)) {
        Err(ConfigError::NotFound { .. }) => {
            println!("{}", no_space_here(args));
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(Error::Config(e)),
        Ok(cfg) => cfg,
    };
    let running = crate::space::SpacePaths::new(&cfg.dir)
        .ok()
        .and_then(|p| crate::space::is_locked(&p))
        .unwrap_or(false);
    if running {
        super::attach::run(&cfg.dir, false)
    } else {
        let up = UpArgs::defaults().map_err(|e| Error::Failed(e.to_string()))?;
        super::up::run(up, args)
    }
}

fn no_space_here(args: &SpaceArgs) -> String {
    format!(
        "mew runs multi-process spaces. No space here ({}):\n  mew init            write .mew/space.yaml from a template\n  mew space up        start it\n  mew --help          everything else",
        args.space_dir.display()
    )
}
