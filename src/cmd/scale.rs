//! `mew space scale NAME=N`: run N copies of a process (`NAME-k`, the
//! `PORT` offset and `${REPLICA}` as with `replicas:`), starting new ones or
//! stopping the highest; prints what was started and stopped.

use std::process::ExitCode;

use super::common::{block_on, connect, load};
use super::{Error, Outcome};
use crate::cli::SpaceArgs;
use crate::protocol::{ClientKind, Request, ResponseBody};

pub fn run(args: &SpaceArgs, target: &str) -> Outcome {
    let (name, count) = parse_target(target).map_err(Error::Usage)?;
    let dir = load(args)?.dir;
    let lines = block_on(async {
        let mut conn = connect(&dir, ClientKind::Control).await?;
        match conn
            .request(Request::Scale {
                name: name.clone(),
                count,
            })
            .await?
        {
            ResponseBody::Scaled { started, stopped } => {
                Ok(crate::server::scale_lines(&name, &started, &stopped))
            }
            other => Err(Error::Failed(format!("unexpected answer: {other:?}"))),
        }
    })?;
    for l in lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `worker=3` → (`worker`, 3).
fn parse_target(target: &str) -> Result<(String, u32), String> {
    let usage = || format!("scale: expected NAME=N (e.g. worker=3), got `{target}`");
    let (name, n) = target.split_once('=').ok_or_else(usage)?;
    let name = name.trim();
    if name.is_empty() {
        return Err(usage());
    }
    let count = n.trim().parse::<u32>().map_err(|_| usage())?;
    Ok((name.to_owned(), count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_as_name_and_count() {
        assert_eq!(parse_target("worker=3"), Ok(("worker".into(), 3)));
        assert!(parse_target("worker").is_err());
        assert!(parse_target("=3").is_err());
        assert!(parse_target("worker=-1").is_err());
        assert!(parse_target("worker=x").is_err());
    }
}
