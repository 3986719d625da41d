//! `mew token create`: a fresh random participant token (the token module
//! makes, checks and stores it).

use std::io::{self, Write as _};
use std::process::ExitCode;

use super::{Error, Outcome, USAGE};
use crate::cli::{SpaceArgs, TokenCreateArgs};
use crate::config::escape;
use crate::participant::token;

const WHO: &str = "mew token create";

/// `mew token create`: the token on stdout (and, with `--write`, in the
/// participant's token file).
pub fn run(space: &SpaceArgs, args: &TokenCreateArgs) -> Outcome {
    let mut space = space.clone();
    // Upstream spells `--capabilities` `-c`, which is mew's global `--config`.
    let caps_text = match (&args.capabilities, space.config.first()) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(cfg)) if cfg.to_string_lossy().trim_start().starts_with('[') => {
            eprintln!(
                "mew token create: note: `-c` is `--config` in mew; taking its value as \
                 --capabilities (write `--capabilities JSON`)"
            );
            let text = cfg.to_string_lossy().into_owned();
            space.config.clear();
            Some(text)
        }
        (None, _) => None,
    };
    if let Some(text) = &caps_text {
        token::check_capabilities(text)
            .map_err(|e| Error::said(WHO, USAGE, format!("--capabilities: {e}")))?;
    }
    let id = &args.participant_id;
    if id.is_empty() || id.chars().any(char::is_control) {
        return Err(Error::said(
            WHO,
            USAGE,
            format!("invalid participant id {:?}", escape(id).as_ref()),
        ));
    }
    let token = token::new_token().map_err(|e| Error::said(WHO, 1, e.to_string()))?;
    if args.write {
        token::write_for_space(&space, id, &token, args.force)
            .map_err(|(code, e)| Error::said(WHO, code, e))?;
    }
    let mut out = io::stdout().lock();
    if writeln!(out, "{token}").and_then(|()| out.flush()).is_err() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
