//! `mew space status`: the table, or `--json` (docs/cli.md documents its
//! shape, which stays stable).

use std::path::Path;
use std::process::ExitCode;

use serde::Serialize;

use super::common::{block_on, connect};
use super::{Error, Outcome};
use crate::protocol::ClientKind;
use crate::status::{Millis, ProcessStatus, SpaceStatus, now_millis};

pub fn run(space_dir: &Path, json: bool) -> Outcome {
    let status = block_on(async {
        let mut conn = connect(space_dir, ClientKind::Control).await?;
        Ok::<_, Error>(conn.status().await?)
    })?;
    if json {
        println!("{}", status_json(&status, now_millis()));
    } else {
        print!("{}", status_table(&status, now_millis()));
    }
    Ok(ExitCode::SUCCESS)
}

/// The documented, stable JSON shape of `status --json` (docs/cli.md): the
/// keys in this order.
#[derive(Serialize)]
struct StatusJson<'a> {
    space: SpaceJson<'a>,
    server_pid: u32,
    gateway_url: &'a Option<String>,
    logging_degraded: &'a Option<String>,
    processes: Vec<ProcessJson<'a>>,
    participants: Vec<ParticipantJson<'a>>,
}

#[derive(Serialize)]
struct SpaceJson<'a> {
    id: &'a str,
    name: &'a str,
    dir: &'a str,
}

#[derive(Serialize)]
struct ProcessJson<'a> {
    name: &'a str,
    kind: &'static str,
    state: &'static str,
    detail: String,
    pid: Option<u32>,
    restarts: u32,
    exit_code: Option<i32>,
    ready: bool,
    healthy: Option<bool>,
    uptime_s: Option<u64>,
    /// As `f64`, as the hand-built JSON had it (`12.300000190734863`, not `12.3`).
    cpu_percent: Option<f64>,
    rss_bytes: Option<u64>,
    command: &'a str,
    /// Why mew last restarted it for a reason ("src/main.rs changed");
    /// the key is absent when it never was.
    #[serde(skip_serializing_if = "Option::is_none")]
    last_restart_reason: Option<&'a str>,
}

#[derive(Serialize)]
struct ParticipantJson<'a> {
    name: &'a str,
    note: &'a str,
}

impl<'a> ProcessJson<'a> {
    fn new(p: &'a ProcessStatus, now: Millis) -> ProcessJson<'a> {
        ProcessJson {
            name: &p.name,
            kind: p.kind.as_str(),
            state: p.state.name(),
            detail: p.state.describe(now),
            pid: p.pid,
            restarts: p.restarts,
            exit_code: p.exit_code,
            ready: p.ready,
            healthy: p.healthy,
            uptime_s: uptime_secs(p, now),
            cpu_percent: p.cpu_percent.map(f64::from),
            rss_bytes: p.rss_bytes,
            command: &p.command,
            last_restart_reason: p.last_restart_reason.as_deref(),
        }
    }
}

/// Seconds a live process has run; `None` when it does not run.
fn uptime_secs(p: &ProcessStatus, now: Millis) -> Option<u64> {
    match (&p.state, p.started_at) {
        (st, Some(t)) if st.is_alive() => Some(now.saturating_sub(t) / 1000),
        _ => None,
    }
}

/// `status --json` at `now`.
fn status_json(s: &SpaceStatus, now: Millis) -> String {
    let doc = StatusJson {
        space: SpaceJson {
            id: &s.space.id,
            name: &s.space.name,
            dir: &s.space.dir,
        },
        server_pid: s.server_pid,
        gateway_url: &s.gateway_url,
        logging_degraded: &s.logging_degraded,
        processes: s
            .processes
            .iter()
            .map(|p| ProcessJson::new(p, now))
            .collect(),
        participants: s
            .participants
            .iter()
            .map(|p| ParticipantJson {
                name: &p.name,
                note: &p.note,
            })
            .collect(),
    };
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The STATE column at most: a long failure reason must not widen the table
/// past a terminal (`status --json` has it whole, in `detail`).
const STATE_WIDTH: usize = 40;

/// `s` cut to `max` characters, with `…` when something was cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The STATE column: the state, and why mew last restarted it.
fn state_text(p: &ProcessStatus, now: Millis) -> String {
    match &p.last_restart_reason {
        Some(why) => format!("{} ({why})", p.state.describe(now)),
        None => p.state.describe(now),
    }
}

/// The human status table.
fn status_table(s: &SpaceStatus, now: Millis) -> String {
    let mut out = String::new();
    out.push_str(&format!("space {} ({})", s.space.id, s.space.dir));
    if let Some(url) = &s.gateway_url {
        out.push_str(&format!("  gateway {url}"));
    }
    out.push_str(&format!("  server pid {}\n", s.server_pid));
    if let Some(d) = &s.logging_degraded {
        out.push_str(&format!("logging degraded: {d}\n"));
    }
    let header = [
        "NAME", "KIND", "STATE", "PID", "UPTIME", "RESTARTS", "EXIT", "READY", "CPU", "RSS",
    ];
    let mut rows: Vec<[String; 10]> = Vec::new();
    for p in &s.processes {
        let uptime = uptime_secs(p, now).map_or("-".into(), crate::human::uptime);
        rows.push([
            p.name.clone(),
            p.kind.as_str().into(),
            clip(&state_text(p, now), STATE_WIDTH),
            p.pid.map_or("-".into(), |x| x.to_string()),
            uptime,
            p.restarts.to_string(),
            p.exit_code.map_or("-".into(), |c| c.to_string()),
            if p.ready { "yes".into() } else { "no".into() },
            p.cpu_percent.map_or("-".into(), |c| format!("{c:.1}%")),
            p.rss_bytes.map_or("-".into(), crate::human::size_compact),
        ]);
    }
    for p in &s.participants {
        rows.push([
            p.name.clone(),
            "participant".into(),
            clip(&format!("no process ({})", p.note), STATE_WIDTH),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
        ]);
    }
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths.iter()).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:w$}  "));
            }
        }
        l.trim_end().to_string() + "\n"
    };
    out.push_str(&line(&header.map(String::from)));
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProcKind;
    use crate::status::{ParticipantStatus, ProcState, SpaceInfo};

    /// The hand-built document `status --json` printed before it was
    /// derived: the derived one must match it byte for byte.
    fn by_hand(s: &SpaceStatus, now: Millis) -> String {
        let processes: Vec<serde_json::Value> = s
            .processes
            .iter()
            .map(|p| {
                let uptime = match (&p.state, p.started_at) {
                    (st, Some(t)) if st.is_alive() => Some(now.saturating_sub(t) / 1000),
                    _ => None,
                };
                serde_json::json!({
                    "name": p.name,
                    "kind": p.kind.as_str(),
                    "state": p.state.name(),
                    "detail": p.state.describe(now),
                    "pid": p.pid,
                    "restarts": p.restarts,
                    "exit_code": p.exit_code,
                    "ready": p.ready,
                    "healthy": p.healthy,
                    "uptime_s": uptime,
                    "cpu_percent": p.cpu_percent,
                    "rss_bytes": p.rss_bytes,
                    "command": p.command,
                })
            })
            .collect();
        let participants: Vec<serde_json::Value> = s
            .participants
            .iter()
            .map(|p| serde_json::json!({"name": p.name, "note": p.note}))
            .collect();
        let doc = serde_json::json!({
            "space": {"id": s.space.id, "name": s.space.name, "dir": s.space.dir},
            "server_pid": s.server_pid,
            "gateway_url": s.gateway_url,
            "logging_degraded": s.logging_degraded,
            "processes": processes,
            "participants": participants,
        });
        serde_json::to_string_pretty(&doc).unwrap()
    }

    fn sample() -> SpaceStatus {
        let mut web = ProcessStatus::new("web", ProcKind::Process, ProcState::Ready);
        web.pid = Some(4242);
        web.started_at = Some(1_000);
        web.restarts = 2;
        web.ready = true;
        web.healthy = Some(true);
        web.cpu_percent = Some(12.3);
        web.rss_bytes = Some(612 * 1024 * 1024);
        web.command = "python -m http.server \"$PORT\"".into();
        let mut job = ProcessStatus::new(
            "job",
            ProcKind::Process,
            ProcState::Failed {
                reason: "exit 1, \"gave up\" after 5 restarts".into(),
            },
        );
        job.exit_code = Some(1);
        job.cpu_percent = Some(f32::NAN);
        SpaceStatus {
            space: SpaceInfo {
                id: "demo".into(),
                name: "Demo space".into(),
                dir: "/tmp/demo".into(),
            },
            server_pid: 17,
            gateway_url: Some("ws://localhost:8080".into()),
            processes: vec![
                web,
                job,
                ProcessStatus::new("idle", ProcKind::Process, ProcState::Idle),
            ],
            participants: vec![ParticipantStatus {
                name: "human".into(),
                note: "joins from the TUI".into(),
            }],
            logging_degraded: Some("disk full".into()),
        }
    }

    #[test]
    fn status_json_is_the_documented_shape_byte_for_byte() {
        let s = sample();
        let now = 66_500;
        assert_eq!(status_json(&s, now), by_hand(&s, now));
        let empty = SpaceStatus {
            processes: Vec::new(),
            participants: Vec::new(),
            gateway_url: None,
            logging_degraded: None,
            ..sample()
        };
        assert_eq!(status_json(&empty, now), by_hand(&empty, now));
    }

    #[test]
    fn the_table_shows_uptime_only_for_live_processes() {
        let t = status_table(&sample(), 66_500);
        let web = t.lines().find(|l| l.starts_with("web")).unwrap();
        assert!(web.contains("1m05s"), "{t}");
        let idle = t.lines().find(|l| l.starts_with("idle")).unwrap();
        assert!(!idle.contains('m'), "{t}");
    }

    #[test]
    fn why_it_restarted_is_in_the_table_and_the_json_only_when_known() {
        let mut s = sample();
        s.processes[0].last_restart_reason = Some("src/main.rs changed".into());
        let t = status_table(&s, 66_500);
        let web = t.lines().find(|l| l.starts_with("web")).unwrap();
        assert!(web.contains("ready (src/main.rs changed)"), "{t}");
        let doc: serde_json::Value = serde_json::from_str(&status_json(&s, 66_500)).unwrap();
        assert_eq!(
            doc["processes"][0]["last_restart_reason"],
            "src/main.rs changed"
        );
        assert!(doc["processes"][1].get("last_restart_reason").is_none());
    }
}
