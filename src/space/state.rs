//! The state file (`.mew/run/state.json`) a later `up`/`down` recovers from.

use std::fs;
use std::io;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{with_context, write_atomic};
use crate::status::Millis;

/// One running process, as recorded for crash recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    pub name: String,
    pub pid: u32,
    pub pgid: u32,
}

/// `.mew/run/state.json`: what a later `up`/`down` needs to clean up after
/// a crashed server. `run_id` is the value of every child's `MEW_RUN_ID`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateFile {
    pub server_pid: u32,
    pub run_id: String,
    pub started_at: Millis,
    pub processes: Vec<ProcessRecord>,
}

/// Write the state file atomically (a 0600 temp file in the same dir, then
/// `rename`). Not fsynced: it guards against a crashed server, not a
/// crashed machine (after a reboot no process is left anyway).
pub fn write_state(path: &Path, state: &StateFile) -> io::Result<()> {
    let json = serde_json::to_vec_pretty(state).map_err(io::Error::other)?;
    write_atomic(path, &json)
}

/// Read the state file; `Ok(None)` when there is none.
pub fn read_state(path: &Path) -> io::Result<Option<StateFile>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("state file {} is corrupt: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(with_context(e, format!("cannot read {}", path.display()))),
    }
}
