//! SIGINT, SIGTERM and SIGHUP as one stream, for the server (stop the space)
//! and the attach proxy (leave it).

/// SIGINT, SIGTERM and SIGHUP, as the signal number.
pub struct Signals {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    /// Handle the three from now on (inside a tokio runtime).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    /// The next one to arrive.
    pub async fn recv(&mut self) -> i32 {
        async fn one(s: &mut Option<tokio::signal::unix::Signal>) {
            match s {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            _ = one(&mut self.int) => libc::SIGINT,
            _ = one(&mut self.term) => libc::SIGTERM,
            _ = one(&mut self.hup) => libc::SIGHUP,
        }
    }
}
