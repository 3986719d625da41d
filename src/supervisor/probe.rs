//! Readiness probes and health checks: `http`, `tcp` and `exec` run here;
//! `log` is matched by the output reader. Each check is bounded by the
//! probe's `timeout`.
//!
//! A readiness probe ([`until_ready`]) stops at its first success; a health
//! check ([`every_period`]) runs until its task is aborted (the process stops
//! or exits). An `exec` check's process group is killed when the check ends,
//! times out or is abandoned, so a probe that forks leaves nothing behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::{Probe, ProbeKind};
use crate::supervisor::reaper::reaper;
use crate::sys::{self, Exit};

/// Check from `initial_delay` on, every `period`, until the first success.
/// Every result goes to `report`; `report` returning `false` (nobody is
/// listening any more) ends the loop too.
pub async fn until_ready(
    probe: Probe,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    report: impl FnMut(Result<(), String>) -> bool,
) {
    repeat(probe, env, cwd, true, report).await;
}

/// Check from `initial_delay` on, every `period`, for as long as the task
/// lives (or until `report` returns `false`).
pub async fn every_period(
    probe: Probe,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    report: impl FnMut(Result<(), String>) -> bool,
) {
    repeat(probe, env, cwd, false, report).await;
}

async fn repeat(
    probe: Probe,
    env: Vec<(String, String)>,
    cwd: PathBuf,
    until_success: bool,
    mut report: impl FnMut(Result<(), String>) -> bool,
) {
    tokio::time::sleep(probe.initial_delay).await;
    loop {
        let result = check(&probe.kind, probe.timeout, &env, &cwd).await;
        let done = until_success && result.is_ok();
        if !report(result) || done {
            return;
        }
        tokio::time::sleep(probe.period).await;
    }
}

/// Run one check. `Ok(())` is success; `Err` says why it failed.
pub async fn check(
    kind: &ProbeKind,
    timeout: Duration,
    env: &[(String, String)],
    cwd: &Path,
) -> Result<(), String> {
    match kind {
        ProbeKind::Http { url } => with_timeout(timeout, http_get(url)).await,
        ProbeKind::Tcp { host, port } => {
            let addr = format!("{host}:{port}");
            with_timeout(timeout, async {
                TcpStream::connect(&addr)
                    .await
                    .map(drop)
                    .map_err(|e| format!("connect {addr}: {e}"))
            })
            .await
        }
        ProbeKind::Exec { command } => exec(command, timeout, env, cwd).await,
        // Matched on output lines by the reader, never polled.
        ProbeKind::Log { .. } => Err("waiting for a matching output line".into()),
    }
}

async fn with_timeout<F>(timeout: Duration, fut: F) -> Result<(), String>
where
    F: std::future::Future<Output = Result<(), String>>,
{
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {}ms", timeout.as_millis())),
    }
}

/// Split `http://host:port/path` into its parts. Only plain HTTP is supported.
pub fn parse_http_url(url: &str) -> Result<(String, u16, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs can be probed"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port = p
                .parse::<u16>()
                .map_err(|_| format!("{url}: bad port {p:?}"))?;
            (h.trim_start_matches('[').trim_end_matches(']'), port)
        }
        _ => (authority, 80),
    };
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok((host.to_string(), port, path.to_string()))
}

async fn http_get(url: &str) -> Result<(), String> {
    let (host, port, path) = parse_http_url(url)?;
    let mut stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: mew-probe\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("GET {url}: not an HTTP answer"))?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!("GET {url}: status {status}"))
    }
}

/// Kills an exec probe's process group when dropped: after the check's shell
/// exited (what it started in the background goes too), on a timeout, and
/// when the check is abandoned (its task aborted because the process stopped).
struct ProbeGroup(u32);

impl Drop for ProbeGroup {
    fn drop(&mut self) {
        // The group outlives its leader while members are left, and the
        // kernel does not reuse the id while the group exists.
        let _ = sys::signal_group(self.0, libc::SIGKILL);
    }
}

async fn exec(
    command: &str,
    timeout: Duration,
    env: &[(String, String)],
    cwd: &Path,
) -> Result<(), String> {
    let pid = sys::spawn_helper(command, env, cwd).map_err(|e| format!("{command}: {e}"))?;
    let exit = reaper().watch(pid);
    let _group = ProbeGroup(pid);
    match tokio::time::timeout(timeout, exit).await {
        Ok(Ok(Exit::Code(0))) => Ok(()),
        Ok(Ok(Exit::Code(c))) => Err(format!("{command}: exit {c}")),
        Ok(Ok(Exit::Signal(s))) => Err(format!("{command}: {}", crate::status::signal_name(s))),
        Ok(Err(_)) => Err(format!("{command}: lost track of the probe")),
        Err(_) => Err(format!(
            "{command}: timed out after {}ms",
            timeout.as_millis()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_http_urls() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:8080/health").unwrap(),
            ("127.0.0.1".into(), 8080, "/health".into())
        );
        assert_eq!(
            parse_http_url("http://localhost").unwrap(),
            ("localhost".into(), 80, "/".into())
        );
        assert_eq!(
            parse_http_url("http://[::1]:9000/x?y=1").unwrap(),
            ("::1".into(), 9000, "/x?y=1".into())
        );
        assert!(parse_http_url("https://x").is_err());
        assert!(parse_http_url("http://h:notaport/").is_err());
    }

    #[tokio::test]
    async fn http_probe_accepts_2xx_and_rejects_others() {
        use tokio::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        let url = format!("http://127.0.0.1:{port}/health");
        let kind = ProbeKind::Http { url };
        let t = Duration::from_secs(5);
        assert_eq!(check(&kind, t, &[], Path::new("/")).await, Ok(()));
        let err = check(&kind, t, &[], Path::new("/")).await.unwrap_err();
        assert!(err.contains("503"), "{err}");
    }

    #[tokio::test]
    async fn tcp_probe_fails_on_a_closed_port() {
        // Bind then drop to find a port nobody listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let kind = ProbeKind::Tcp {
            host: "127.0.0.1".into(),
            port: port.to_string(),
        };
        assert!(
            check(&kind, Duration::from_secs(5), &[], Path::new("/"))
                .await
                .is_err()
        );
    }
}
