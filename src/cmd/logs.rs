//! `mew space logs [-f] [-n N] [--since D] [NAME…]`: from the log files;
//! with `-f`, then live from the server.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use super::common::{block_on, process_names};
use super::{Error, Outcome};
use crate::client::{Conn, ConnectError};
use crate::config::SpaceConfig;
use crate::protocol::{ClientKind, Request, ServerMsg};
use crate::status::{Millis, now_millis};

pub struct LogsOptions {
    pub follow: bool,
    pub lines: Option<usize>,
    pub since: Option<Duration>,
    pub no_prefix: bool,
    pub names: Vec<String>,
}

/// How one line is printed: `HH:MM:SS.mmm name | text` (`*` for mew's own
/// lifecycle lines), or the text alone.
struct Format {
    width: usize,
    no_prefix: bool,
}

impl Format {
    fn line(&self, process: &str, at: Millis, event: bool, text: &str) -> String {
        if self.no_prefix {
            return text.to_owned();
        }
        let ts = chrono::DateTime::from_timestamp_millis(at as i64)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%H:%M:%S%.3f")
                    .to_string()
            })
            .unwrap_or_default();
        let sep = if event { '*' } else { '|' };
        let width = self.width;
        format!("{ts} {process:width$} {sep} {text}")
    }

    fn print(&self, out: &mut dyn Write, process: &str, at: Millis, event: bool, text: &str) {
        let _ = writeln!(out, "{}", self.line(process, at, event, text));
    }
}

pub fn run(cfg: &SpaceConfig, opts: LogsOptions) -> Outcome {
    let known = process_names(cfg);
    if let Some(msg) = crate::status::unknown_names(&opts.names, &known) {
        return Err(Error::Usage(msg));
    }
    let names = if opts.names.is_empty() {
        known
    } else {
        opts.names.clone()
    };
    let fmt = Format {
        width: names.iter().map(|n| n.len()).max().unwrap_or(0),
        no_prefix: opts.no_prefix,
    };
    let since = opts
        .since
        .map(|d| now_millis().saturating_sub(d.as_millis() as u64));
    let tail = opts.lines.or(if opts.follow { Some(10) } else { None });
    if opts.follow {
        return block_on(follow(cfg, &opts.names, &names, tail, since, &fmt));
    }
    // Streamed: memory stays bounded whatever the size of the logs.
    let dir = &cfg.logs.dir;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    crate::logs::each_log(dir, &names, tail, since, |r| {
        fmt.print(&mut out, &r.process, r.at, r.event, &r.text);
        true
    })
    .map_err(|e| Error::Failed(format!("cannot read logs in {}: {e}", dir.display())))?;
    Ok(ExitCode::SUCCESS)
}

/// `-f`: what the files hold, then what the server streams.
async fn follow(
    cfg: &SpaceConfig,
    asked: &[String],
    names: &[String],
    tail: Option<usize>,
    since: Option<Millis>,
    fmt: &Format,
) -> Outcome {
    let dir = &cfg.logs.dir;
    // Subscribe first so nothing falls between the files and the stream.
    let mut conn = match Conn::connect(&cfg.dir, ClientKind::Follow).await {
        Ok(c) => Some(c),
        Err(ConnectError::NotRunning) => None,
        Err(e) => return Err(Error::connect(&cfg.dir, e)),
    };
    if let Some(c) = conn.as_mut() {
        c.request(Request::Follow {
            names: asked.to_vec(),
            since_ms: None,
        })
        .await?;
    }
    let stdout = std::io::stdout();
    let mut seam = Seam::default();
    {
        let mut out = stdout.lock();
        match crate::logs::read_logs(dir, names, tail, since) {
            Ok(records) => {
                for r in records {
                    seam.printed(&r.process, r.at);
                    fmt.print(&mut out, &r.process, r.at, r.event, &r.text);
                }
            }
            Err(e) => eprintln!("mew: cannot read logs in {}: {e}", dir.display()),
        }
    }
    let Some(mut conn) = conn else {
        return Err(Error::NothingToFollow);
    };
    loop {
        match conn.recv().await? {
            Some(ServerMsg::Line { process, at, text }) => {
                if seam.is_new(&process, at) {
                    fmt.print(&mut stdout.lock(), &process, at, false, &text);
                }
            }
            Some(ServerMsg::Event { event }) => {
                let e = &event;
                if seam.is_new(&e.process, e.at) {
                    fmt.print(&mut stdout.lock(), &e.process, e.at, true, &e.message);
                }
            }
            Some(ServerMsg::Resync { dropped }) => {
                eprintln!("mew: fell behind; {dropped} messages skipped (see the log files)");
            }
            Some(ServerMsg::Bye { reason }) => {
                // The space went down: the end of the stream, not a failure.
                eprintln!("mew: {reason}");
                return Ok(ExitCode::SUCCESS);
            }
            Some(_) => {}
            None => return Ok(ExitCode::SUCCESS),
        }
    }
}

/// Where the files end and the stream begins, per process. The stream is
/// subscribed to before the files are read, so a record can come both ways:
/// what the files showed up to their last time is skipped in the stream,
/// and at that very millisecond as many records as the files had then (a
/// process's records come in order both ways; one millisecond may hold
/// several lines).
#[derive(Default)]
struct Seam(std::collections::HashMap<String, (Millis, usize)>);

impl Seam {
    /// A record of `process` at `at` was printed from the files.
    fn printed(&mut self, process: &str, at: Millis) {
        let e = self.0.entry(process.to_owned()).or_insert((at, 0));
        if at > e.0 {
            *e = (at, 0);
        }
        if at == e.0 {
            e.1 += 1;
        }
    }

    /// Whether a streamed record of `process` at `at` was not printed yet.
    fn is_new(&mut self, process: &str, at: Millis) -> bool {
        let Some(e) = self.0.get_mut(process) else {
            return true;
        };
        if at < e.0 {
            return false;
        }
        if at == e.0 && e.1 > 0 {
            e.1 -= 1;
            return false;
        }
        true
    }
}

#[cfg(test)]
mod seam_tests {
    use super::Seam;

    #[test]
    fn the_streams_copy_of_what_the_files_showed_is_skipped_once() {
        let mut s = Seam::default();
        s.printed("web", 10);
        s.printed("web", 12);
        s.printed("web", 12);
        // Older, and the two records of 12 the files had: skipped.
        assert!(!s.is_new("web", 11));
        assert!(!s.is_new("web", 12));
        assert!(!s.is_new("web", 12));
        // A third record at 12 and later ones are new.
        assert!(s.is_new("web", 12));
        assert!(s.is_new("web", 13));
        // Another process's own seam: the files showed nothing of it.
        assert!(s.is_new("db", 5));
    }
}
