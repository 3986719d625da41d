//! The client side of the socket: connecting (with the checks that the
//! server is the user's own), the hello, requests and their answers. The
//! commands that use it are in `crate::cmd`; the attach proxy's plumbing is
//! in [`attach`].

pub mod attach;

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

use crate::protocol::{self, ClientKind, ClientMsg, Request, ResponseBody, ServerMsg, Versions};
use crate::space::{self, SpacePaths};
use crate::status::SpaceStatus;

/// A connected, greeted client.
pub struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    next_id: u64,
    pub server_pid: u32,
    pub space_id: String,
}

#[derive(Debug)]
pub enum ConnectError {
    /// No server answers (no socket, or a stale one).
    NotRunning,
    /// A server answered but the conversation failed.
    Failed(String),
    /// The run dir or the server is not this user's: nothing was said to
    /// it (a planted socket must never see a keystroke or draw a byte).
    Unsafe(String),
}

/// Permission denied means the space exists but is not ours: saying "not
/// running" would send the user the wrong way. Any other failure: no server.
fn denied(e: std::io::Error, what: &Path) -> ConnectError {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        ConnectError::Failed(format!(
            "{}: permission denied (the space belongs to another user)",
            what.display()
        ))
    } else {
        ConnectError::NotRunning
    }
}

/// The run dir (and the directory of an external socket) must be ours and
/// private before anything in it is believed, and the server at the other
/// end must run as us (or root), like tmux: in a shared, group-writable
/// project another member could otherwise replace `.mew/run` with her own
/// and put her server in front of the user's terminal.
fn trusted_socket(space_dir: &Path) -> Result<PathBuf, ConnectError> {
    let paths = SpacePaths::new(space_dir).map_err(|e| denied(e, space_dir))?;
    match std::fs::symlink_metadata(&paths.run_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConnectError::NotRunning);
        }
        _ => {}
    }
    let refuse = |e: std::io::Error| {
        ConnectError::Unsafe(format!("{e}; refusing to talk to the server it names"))
    };
    space::check_private_dir(&paths.run_dir).map_err(refuse)?;
    let socket = space::socket_path_for(space_dir).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            ConnectError::Failed(e.to_string())
        } else {
            ConnectError::NotRunning
        }
    })?;
    if !socket.starts_with(&paths.run_dir)
        && let Some(parent) = socket.parent()
    {
        space::check_private_dir(parent).map_err(refuse)?;
    }
    Ok(socket)
}

impl Conn {
    pub async fn connect(space_dir: &Path, kind: ClientKind) -> Result<Conn, ConnectError> {
        let socket = trusted_socket(space_dir)?;
        let stream = UnixStream::connect(&socket)
            .await
            .map_err(|e| denied(e, &socket))?;
        match space::peer_uid(&stream) {
            Ok(uid) if uid == nix::unistd::geteuid().as_raw() || uid == 0 => {}
            Ok(uid) => {
                return Err(ConnectError::Unsafe(format!(
                    "the server on {} runs as uid {uid}, not as you; refusing to talk to it",
                    socket.display()
                )));
            }
            Err(e) => {
                return Err(ConnectError::Unsafe(format!(
                    "cannot check who runs the server on {}: {e}",
                    socket.display()
                )));
            }
        }
        let (mut rd, mut wr) = stream.into_split();
        let ours = Versions::ours();
        let hello = ClientMsg::Hello {
            version: ours.protocol,
            mew_version: ours.mew.clone(),
            client: kind,
        };
        // A server that refuses us (another uid) says why and closes, maybe
        // before our hello is written: read its answer even if writing failed.
        let sent = protocol::write_msg(&mut wr, &hello).await;
        let reply = tokio::time::timeout(Duration::from_secs(10), protocol::read_frame(&mut rd))
            .await
            .map_err(|_| {
                ConnectError::Failed("the space server did not answer within 10s".into())
            })?;
        if let Err(e) = sent
            && !matches!(&reply, Ok(Some(_)))
        {
            return Err(ConnectError::Failed(format!(
                "cannot talk to the space server: {e}"
            )));
        }
        match reply {
            Ok(Some(f)) => match f.decode::<ServerMsg>() {
                Ok(ServerMsg::Hello {
                    version,
                    mew_version,
                    server_pid,
                    space_id,
                }) => {
                    let theirs = Versions {
                        protocol: version,
                        mew: mew_version,
                    };
                    protocol::check_hello(&ours, &theirs).map_err(ConnectError::Failed)?;
                    Ok(Conn {
                        rd,
                        wr,
                        next_id: 1,
                        server_pid,
                        space_id,
                    })
                }
                Ok(ServerMsg::Bye { reason }) => Err(ConnectError::Failed(reason)),
                Ok(other) => Err(ConnectError::Failed(format!(
                    "unexpected answer: {other:?}"
                ))),
                Err(e) => Err(ConnectError::Failed(e.to_string())),
            },
            Ok(None) => Err(ConnectError::NotRunning),
            Err(e) => Err(ConnectError::Failed(e.to_string())),
        }
    }

    pub async fn send(&mut self, msg: &ClientMsg) -> Result<(), String> {
        protocol::write_msg(&mut self.wr, msg)
            .await
            .map_err(|e| format!("lost the space server: {e}"))
    }

    /// Split into its halves (for a client that reads and writes at once).
    pub fn into_split(self) -> (OwnedReadHalf, OwnedWriteHalf) {
        (self.rd, self.wr)
    }

    pub async fn recv(&mut self) -> Result<Option<ServerMsg>, String> {
        match protocol::read_frame(&mut self.rd).await {
            Ok(Some(f)) => f.decode::<ServerMsg>().map(Some).map_err(|e| e.to_string()),
            Ok(None) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Send a request and wait for its response (skipping stream messages).
    pub async fn request(&mut self, req: Request) -> Result<ResponseBody, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.send(&ClientMsg::Request { id, req }).await?;
        loop {
            match self.recv().await? {
                Some(ServerMsg::Response { id: rid, result }) if rid == id => return result,
                Some(ServerMsg::Bye { reason }) => return Err(reason),
                Some(_) => continue,
                None => return Err("the space server closed the connection".into()),
            }
        }
    }

    pub async fn status(&mut self) -> Result<SpaceStatus, String> {
        match self.request(Request::Status).await? {
            ResponseBody::Status { status } => Ok(status),
            other => Err(format!("unexpected answer: {other:?}")),
        }
    }
}

/// The single-threaded runtime a client command runs on.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}
