//! `mew space check [--json]`: the resolved plan of the config, or its
//! error (the check module builds and renders the plan).

use std::process::ExitCode;

use super::Outcome;
use crate::check;
use crate::cli::{CheckArgs, SpaceArgs};

/// `mew space check`: the plan, or the config's error (with `--json`, also
/// as JSON on stdout).
pub fn run(space: &SpaceArgs, args: &CheckArgs) -> Outcome {
    match crate::config::load(&check::load_options(space)) {
        Ok(cfg) => {
            let options = check::PlanOptions {
                show_values: args.show_values,
            };
            let plan = check::plan_with(cfg, options);
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&check::plan_json(&plan)).unwrap_or_default()
                );
            } else {
                print!("{}", check::plan_text(&plan));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&check::error_json(&e)).unwrap_or_default()
                );
            }
            Err(e.into())
        }
    }
}
