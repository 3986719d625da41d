//! `mew space attach` (and the TUI of `mew space up`): this terminal on the
//! running space, through the proxy in `client::attach`.

use std::path::Path;
use std::process::ExitCode;

use super::Outcome;
use super::common::{block_on, connect};
use crate::client::attach::proxy;
use crate::protocol::ClientKind;

/// Attach this terminal to the running space; `owner`: this terminal ran
/// `up`, and the space stops if it goes away without detaching.
pub fn run(space_dir: &Path, owner: bool) -> Outcome {
    block_on(async {
        let conn = connect(space_dir, ClientKind::Attach).await?;
        let end = proxy(conn, owner).await?;
        if let Some(f) = end.farewell {
            println!("{f}");
        }
        if end.lost {
            // The server died under us (SIGKILL, OOM): nothing may outlive the
            // session, so clean up after it as `down` would.
            super::down::report_dead_server(space_dir).await;
        }
        Ok(ExitCode::from(end.code))
    })
}
