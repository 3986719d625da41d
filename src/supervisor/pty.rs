//! Reading and writing a process's PTY master without blocking a thread.
//!
//! Each master is non-blocking and registered with tokio (`AsyncFd`), so 200
//! processes cost 200 small tasks, not 200 OS threads. The reader drains
//! continuously into the terminal emulator, the line capture, the log file
//! and the subscribers, whether anyone watches or not.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::task::Poll;

use tokio::io::unix::AsyncFd;
use tokio::sync::Notify;

use crate::sys;

/// The master side of one process's PTY.
pub struct Pty {
    fd: AsyncFd<OwnedFd>,
}

impl Pty {
    pub fn new(master: OwnedFd) -> io::Result<Pty> {
        sys::set_nonblocking(&master)?;
        Ok(Pty {
            fd: sys::async_fd(master)?,
        })
    }

    /// Read what is available (`Ok(0)` at end of file: slave closed), and
    /// say whether the read had to wait for it: `false` means the output was
    /// already there (the program writes faster than it is read).
    pub async fn read_waited(&self, buf: &mut [u8]) -> io::Result<(usize, bool)> {
        let mut waited = false;
        loop {
            let ready = std::future::poll_fn(|cx| Poll::Ready(self.fd.poll_read_ready(cx))).await;
            let mut guard = match ready {
                Poll::Ready(guard) => guard?,
                Poll::Pending => {
                    waited = true;
                    self.fd.readable().await?
                }
            };
            match guard.try_io(|fd| sys::read_fd(fd.get_ref(), buf)) {
                Ok(result) => {
                    // A PTY read returns all that is there: a short one
                    // drained it. Clearing the readiness now saves the read
                    // that would only say EAGAIN (one of four syscalls per
                    // line of a quiet program). Output arriving later is a
                    // new edge of the edge-triggered registration, so it is
                    // never missed.
                    if matches!(result, Ok(n) if n > 0 && n < buf.len()) {
                        guard.clear_ready_matching(tokio::io::Ready::READABLE);
                    }
                    return result.map(|n| (n, waited));
                }
                Err(_would_block) => continue,
            }
        }
    }

    /// Read without waiting: `Ok(None)` when nothing is available now.
    pub fn try_read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match sys::read_fd(self.fd.get_ref(), buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write all of `bytes` (input typed by a user, terminal query answers).
    pub async fn write_all(&self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| sys::write_fd(fd.get_ref(), bytes)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    pub fn resize(&self, rows: u16, cols: u16) -> io::Result<()> {
        sys::set_winsize(self.fd.get_ref(), rows, cols)
    }
}

/// Tells a reader that its process has exited: drain what is buffered, then stop.
#[derive(Default)]
pub struct Finish {
    notify: Notify,
}

impl Finish {
    pub fn new() -> Arc<Finish> {
        Arc::new(Finish::default())
    }

    pub fn finish(&self) {
        self.notify.notify_one();
    }

    pub async fn wait(&self) {
        self.notify.notified().await;
    }
}
