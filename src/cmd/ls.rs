//! `mew space ls`: the spaces running on this machine.

use std::process::ExitCode;

use super::{Error, Outcome};
use crate::space::{self, RegistryEntry};
use crate::status::{Millis, now_millis};

pub fn run(json: bool) -> Outcome {
    let entries = space::list_running_checked()
        .map_err(|e| Error::Failed(format!("cannot list the running spaces: {e}")))?;
    if json {
        // The registry entries as they are: id, dir, pid, socket, started_at.
        println!(
            "{}",
            serde_json::to_string_pretty(&entries).unwrap_or_default()
        );
    } else {
        print!("{}", table(&entries, now_millis()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The human list.
fn table(entries: &[RegistryEntry], now: Millis) -> String {
    if entries.is_empty() {
        return "no spaces are running\n".into();
    }
    let w = entries.iter().map(|e| e.id.len()).max().unwrap_or(2).max(2);
    let mut out = format!("{:w$}  {:>7}  {:>8}  DIR\n", "ID", "PID", "UPTIME");
    for e in entries {
        out.push_str(&format!(
            "{:w$}  {:>7}  {:>8}  {}\n",
            e.id,
            e.pid,
            crate::human::uptime(now.saturating_sub(e.started_at) / 1000),
            e.dir.display()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_the_registry_entry_in_its_field_order() {
        let e = RegistryEntry {
            id: "demo".into(),
            dir: "/tmp/demo".into(),
            pid: 7,
            socket: "/tmp/demo/.mew/run/mew.sock".into(),
            started_at: 5,
        };
        let by_hand = serde_json::json!([{"id": e.id, "dir": e.dir, "pid": e.pid, "socket": e.socket, "started_at": e.started_at}]);
        assert_eq!(
            serde_json::to_string_pretty(std::slice::from_ref(&e)).unwrap(),
            serde_json::to_string_pretty(&by_hand).unwrap()
        );
        assert_eq!(table(&[], 0), "no spaces are running\n");
        let t = table(&[e], 65_005);
        assert_eq!(t.lines().nth(1), Some("demo        7     1m05s  /tmp/demo"));
    }
}
