//! `mew space restart|stop|start [NAME…]`: one request, one line of answer.

use std::path::Path;
use std::process::ExitCode;

use super::common::{block_on, connect};
use super::{Error, Outcome};
use crate::protocol::{ClientKind, Request, ResponseBody};

/// Which of the three.
#[derive(Clone, Copy, Debug)]
pub enum Action {
    Restart,
    Stop,
    Start,
}

impl Action {
    fn request(self, names: Vec<String>) -> Request {
        match self {
            Action::Restart => Request::Restart { names },
            Action::Stop => Request::Stop { names },
            Action::Start => Request::Start { names },
        }
    }

    /// The verb of the answer: `restarted: api, web`.
    fn done(self) -> &'static str {
        match self {
            Action::Restart => "restarted",
            Action::Stop => "stopped",
            Action::Start => "started",
        }
    }
}

pub fn run(space_dir: &Path, action: Action, names: Vec<String>) -> Outcome {
    let done = block_on(async {
        let mut conn = connect(space_dir, ClientKind::Control).await?;
        if !names.is_empty() {
            // A usage error, like `logs` with an unknown name: exit 2.
            let known: Vec<String> = conn
                .status()
                .await?
                .processes
                .into_iter()
                .map(|p| p.name)
                .collect();
            if let Some(msg) = crate::status::unknown_names(&names, &known) {
                return Err(Error::Usage(msg));
            }
        }
        match conn.request(action.request(names)).await? {
            ResponseBody::Done { names } => Ok(Some(names)),
            _ => Ok(None),
        }
    })?;
    if let Some(names) = done {
        println!("{}", answer(action, &names));
    }
    Ok(ExitCode::SUCCESS)
}

/// `restarted: all processes`, `stopped: api, web`.
fn answer(action: Action, names: &[String]) -> String {
    if names.is_empty() {
        format!("{}: all processes", action.done())
    } else {
        format!("{}: {}", action.done(), names.join(", "))
    }
}
