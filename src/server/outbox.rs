//! What goes to one client: encoded frames in a bounded queue (frames and
//! bytes) that one writer task drains, so that a slow client never holds up
//! the supervisor.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::protocol::{self, ServerMsg};

/// Frames queued for one client before it counts as slow.
pub(super) const CLIENT_QUEUE: usize = 1024;
/// Bytes queued for one client before senders wait (or, for streams of
/// lines and events, skip and count a resync). One frame is always let in.
pub(super) const CLIENT_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// One encoded message frame; `None` if it cannot be encoded (never for
/// mew's own messages).
pub(super) fn encode_msg(msg: &ServerMsg) -> Option<Vec<u8>> {
    let payload = serde_json::to_vec(msg).ok()?;
    protocol::encode_frame(protocol::KIND_MSG, &payload).ok()
}

/// Why a frame could not be queued without waiting.
pub(crate) enum TrySend {
    Full,
    Closed,
}

/// What goes to one client: encoded frames in a bounded queue (frames and
/// bytes) that one writer task drains.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Out>,
    state: Arc<OutState>,
}

struct OutState {
    queued: std::sync::atomic::AtomicUsize,
    drained: tokio::sync::Notify,
}

struct Out {
    bytes: Vec<u8>,
    written: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Outbox {
    pub(super) fn start(
        mut wr: tokio::net::unix::OwnedWriteHalf,
    ) -> (Outbox, tokio::task::JoinHandle<()>) {
        use std::sync::atomic::Ordering;
        use tokio::io::AsyncWriteExt;
        let (tx, mut rx) = mpsc::channel::<Out>(CLIENT_QUEUE);
        let state = Arc::new(OutState {
            queued: std::sync::atomic::AtomicUsize::new(0),
            drained: tokio::sync::Notify::new(),
        });
        let st = state.clone();
        let writer = tokio::spawn(async move {
            while let Some(out) = rx.recv().await {
                let ok = wr.write_all(&out.bytes).await.is_ok();
                st.queued.fetch_sub(out.bytes.len(), Ordering::AcqRel);
                st.drained.notify_waiters();
                if !ok {
                    break;
                }
                if let Some(w) = out.written {
                    let _ = w.send(());
                }
            }
            rx.close();
            st.drained.notify_waiters();
        });
        (Outbox { tx, state }, writer)
    }

    async fn bytes(
        &self,
        bytes: Vec<u8>,
        written: Option<tokio::sync::oneshot::Sender<()>>,
    ) -> bool {
        use std::sync::atomic::Ordering;
        let len = bytes.len();
        loop {
            let drained = self.state.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            let queued = self.state.queued.load(Ordering::Acquire);
            if queued == 0 || queued + len <= CLIENT_QUEUE_BYTES || self.tx.is_closed() {
                break;
            }
            drained.await;
        }
        self.state.queued.fetch_add(len, Ordering::AcqRel);
        if self.tx.send(Out { bytes, written }).await.is_err() {
            self.state.queued.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Queue a message (waiting while the client is behind); `false` once
    /// the connection is gone.
    pub(crate) async fn msg(&self, msg: &ServerMsg) -> bool {
        match encode_msg(msg) {
            Some(b) => self.bytes(b, None).await,
            None => false,
        }
    }

    /// Queue rendered terminal output.
    pub(crate) async fn output(&self, bytes: &[u8]) -> bool {
        match protocol::encode_frame(protocol::KIND_OUTPUT, bytes) {
            Ok(b) => self.bytes(b, None).await,
            Err(_) => false,
        }
    }

    /// Queue a message and wait until it is written to the socket: a stream
    /// where only the latest value matters (watch) holds one at a time.
    pub(super) async fn msg_written(&self, msg: &ServerMsg) -> bool {
        let Some(b) = encode_msg(msg) else {
            return false;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.bytes(b, Some(tx)).await && rx.await.is_ok()
    }

    /// Queue a message if there is room now.
    pub(super) fn try_msg(&self, msg: &ServerMsg) -> Result<(), TrySend> {
        use std::sync::atomic::Ordering;
        let bytes = encode_msg(msg).ok_or(TrySend::Closed)?;
        let len = bytes.len();
        let queued = self.state.queued.load(Ordering::Acquire);
        if queued > 0 && queued + len > CLIENT_QUEUE_BYTES {
            return Err(TrySend::Full);
        }
        self.state.queued.fetch_add(len, Ordering::AcqRel);
        match self.tx.try_send(Out {
            bytes,
            written: None,
        }) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.state.queued.fetch_sub(len, Ordering::AcqRel);
                Err(match e {
                    mpsc::error::TrySendError::Full(_) => TrySend::Full,
                    mpsc::error::TrySendError::Closed(_) => TrySend::Closed,
                })
            }
        }
    }
}
