//! The attach proxy's plumbing: this terminal's keys, mouse, paste and
//! resizes go to the server, what the server renders comes back to stdout.
//! What to say when it ends (and the clean-up after a server that died) is
//! `cmd::attach`'s.

use std::io::Write;
use std::time::Duration;

use crossterm::event::Event;

use super::Conn;
use crate::protocol::{self, ClientMsg, Request, ServerMsg};

/// How an attached session ended.
pub struct Ended {
    /// The exit code for the command (the space's, `128 + signal`, or 1).
    pub code: u8,
    /// What to tell the user, once the terminal is restored.
    pub farewell: Option<String>,
    /// The server died under us (no `Ended` first).
    pub lost: bool,
}

/// Attach `conn` to this terminal until the client detaches, the space
/// ends, the server is lost, or a signal arrives. `Err` before anything was
/// shown (the server refused, the terminal could not be set up).
pub async fn proxy(mut conn: Conn, owner: bool) -> Result<Ended, String> {
    let (cols, rows) = crossterm::terminal::size().unwrap_or((80, 24));
    let no_color = std::env::var_os("NO_COLOR").is_some();
    conn.request(Request::Attach {
        cols,
        rows,
        owner,
        no_color,
    })
    .await?;
    let space_id = conn.space_id.clone();
    let (mut rd, mut wr) = conn.into_split();
    crate::tui::guard::install_panic_hook();
    let guard = crate::tui::guard::TerminalGuard::enter()
        .map_err(|e| format!("cannot set up the terminal: {e}"))?;
    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    std::thread::spawn(move || {
        while let Ok(ev) = crossterm::event::read() {
            if ev_tx.send(ev).is_err() {
                break;
            }
        }
    });
    let (frame_tx, mut frame_rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        loop {
            let f = protocol::read_frame(&mut rd).await;
            let done = !matches!(f, Ok(Some(_)));
            if frame_tx.send(f).await.is_err() || done {
                break;
            }
        }
    });
    let mut signals = crate::signals::Signals::new();
    let mut stdout = std::io::stdout();
    let mut farewell: Option<String> = None;
    let mut code: u8 = 0;
    let mut ended = false;
    let mut lost = false;
    // The size the server renders for. A SIGWINCH can be missed (seen
    // once under load: the view stayed at the old size); the size is
    // also checked every second and a change sent, so a lost signal
    // costs at most a second, never the rest of the session.
    let mut sent_size = (cols, rows);
    let mut size_check = tokio::time::interval(Duration::from_secs(1));
    size_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let msg = tokio::select! {
            _ = size_check.tick() => match crossterm::terminal::size() {
                Ok(now) if now != sent_size => {
                    sent_size = now;
                    ClientMsg::Resize { cols: now.0, rows: now.1 }
                }
                _ => continue,
            },
            ev = ev_rx.recv() => match ev {
                Some(Event::Resize(cols, rows)) => {
                    sent_size = (cols, rows);
                    ClientMsg::Resize { cols, rows }
                }
                Some(event) => ClientMsg::Input {
                    event: event.into(),
                },
                None => break,
            },
            frame = frame_rx.recv() => {
                match frame {
                    Some(Ok(Some(protocol::Frame::Output(bytes)))) => {
                        if stdout.write_all(&bytes).and_then(|_| stdout.flush()).is_err() {
                            break;
                        }
                    }
                    Some(Ok(Some(f))) => match f.decode::<ServerMsg>() {
                        Ok(ServerMsg::Ended { exit_code }) => {
                            code = exit_code.clamp(0, 255) as u8;
                            ended = true;
                        }
                        Ok(ServerMsg::Bye { reason }) => {
                            farewell = Some(reason);
                            break;
                        }
                        _ => {}
                    },
                    Some(Ok(None)) | None => {
                        // Without `Ended` first, the server died under us.
                        if ended {
                            farewell.get_or_insert_with(|| format!("space \"{space_id}\" stopped"));
                        } else {
                            farewell = Some(format!("lost the server of space \"{space_id}\""));
                            code = 1;
                            lost = true;
                        }
                        break;
                    }
                    Some(Err(e)) => {
                        farewell = Some(format!("lost the space server: {e}"));
                        code = 1;
                        lost = true;
                        break;
                    }
                }
                continue;
            }
            sig = signals.recv() => {
                code = 128 + sig as u8;
                // The server stops the space when its owner leaves without detaching.
                let what = if owner { "stopping" } else { "left" };
                farewell = Some(format!(
                    "{} received: {what} space \"{space_id}\"",
                    crate::status::signal_name(sig)
                ));
                break;
            }
        };
        if protocol::write_msg(&mut wr, &msg).await.is_err() {
            farewell = Some("lost the space server".into());
            code = 1;
            break;
        }
    }
    drop(guard);
    Ok(Ended {
        code,
        farewell,
        lost,
    })
}
