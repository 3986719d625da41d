//! `mew space connect`: join the running space from this terminal, line mode.
//!
//! The gateway is the running space's (its port from the space lock), or
//! `--gateway`. The participant is `--participant`, else the space's
//! `space.default_participant`, else a participant without a `command`
//! (not a FIFO or bridge participant, which mew connects itself): the one
//! named as the user when there is one, else the first. Its token:
//! `$MEW_TOKEN_<ID>`, else `.mew/tokens/<ID>.token`, else the first of its
//! `tokens:` (the gateway accepts each of these).
//!
//! Each envelope received is one line on stdout, `HH:MM:SS from → to kind:
//! summary` (chat shown as its text), every control character escaped:
//! nothing from the network reaches the terminal raw. A typed line is sent
//! as a chat message; a line starting with `{` as a raw JSON envelope;
//! `/quit` or the end of input ends (after what is queued is sent). Works
//! with a pipe for stdin as well as a terminal.

use std::io::{self, Write as _};
use std::process::ExitCode;

use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::client::{In, Parsed, begin_close, parse_line, recv, say, spawn_reader, wait_until};
use super::{LinkEnd, LinkEvent, LinkSender, Target};
use crate::cli::ConnectArgs;
use crate::cmd::{Error, Outcome};
use crate::config::{SpaceConfig, escape};

const WHO: &str = "mew space connect";

/// `mew space connect`; a failure to start is `mew space connect: <why>`
/// (the session's own ending is its log's last line).
pub fn run(cfg: &SpaceConfig, args: &ConnectArgs) -> Outcome {
    let (target, note) = prepare(cfg, args).map_err(|(code, e)| Error::said(WHO, code, e))?;
    if let Some(n) = note {
        say(&format!("{WHO}: {n}"));
    }
    let rt = super::command_runtime(WHO)?;
    let code = rt.block_on(session(target));
    rt.shutdown_background();
    Ok(code)
}

/// Where to connect, as whom; and a note on the choice. `Err((code, why))`.
fn prepare(
    cfg: &SpaceConfig,
    args: &ConnectArgs,
) -> Result<(Target, Option<String>), (u8, String)> {
    let paths = crate::space::SpacePaths::new(&cfg.dir).map_err(|e| (1, e.to_string()))?;
    let lock = crate::space::read_lock_info(&paths);
    let url = match &args.gateway {
        Some(u) => {
            super::client::check_url(u).map_err(|e| (2, format!("--gateway: {e}")))?;
            u.clone()
        }
        None => {
            let running = crate::space::running_server(&paths).is_some();
            let port = lock.as_ref().and_then(|l| l.gateway_port);
            match (running, port) {
                (false, _) => {
                    // 3: not running, as `status`, `logs -f`, `attach`.
                    return Err((
                        3,
                        "the space is not running — `mew space up -d` first".to_owned(),
                    ));
                }
                (true, None) => {
                    return Err((
                        1,
                        "the running space has no gateway (its config has no participants)"
                            .to_owned(),
                    ));
                }
                (true, Some(p)) => format!("ws://127.0.0.1:{p}"),
            }
        }
    };
    let doc = raw_config(cfg).map_err(|e| (2, e))?;
    let (id, note) = resolve_participant(&doc, args.participant.as_deref()).map_err(|e| (2, e))?;
    let def = doc
        .pointer("/participants")
        .and_then(|p| p.get(&id))
        .cloned()
        .unwrap_or(Value::Null);
    let token = token_for(&paths, &id, &def).ok_or_else(|| {
        (
            1,
            format!(
                "no token for {}: none in ${}, .mew/tokens/{}.token or its `tokens:` (`mew space up` makes the file)",
                escape(&id),
                crate::config::token_env_name(&id),
                escape(&id)
            ),
        )
    })?;
    let space = lock
        .and_then(|l| l.space_id)
        .unwrap_or_else(|| cfg.id.clone());
    Ok((
        Target {
            url,
            space,
            participant_id: Some(id),
            token,
        },
        note,
    ))
}

/// The config file as plain JSON (the validated [`SpaceConfig`] keeps no
/// tokens or types of participants without a command).
pub(crate) fn raw_config(cfg: &SpaceConfig) -> Result<Value, String> {
    let shown = super::client::shown(&cfg.config_path);
    let text = crate::config::read_text(&cfg.config_path, true).map_err(|e| match e {
        crate::config::TextError::Unreadable(why) => format!("{shown}: {why}"),
        crate::config::TextError::NotUtf8 { .. } => format!("{shown}: not UTF-8"),
    })?;
    if text.trim().is_empty() {
        return Ok(Value::Null);
    }
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options(&text, options)
        .map_err(|e| format!("{shown}: invalid YAML: {}", crate::config::yaml_message(&e)))
}

/// Which participant to join as (see the module docs), and a note when it
/// was chosen among several.
pub(crate) fn resolve_participant(
    doc: &Value,
    flag: Option<&str>,
) -> Result<(String, Option<String>), String> {
    let parts = doc
        .get("participants")
        .and_then(Value::as_object)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| "the space has no participants to join as".to_owned())?;
    let all = || {
        escape(
            &parts
                .keys()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        )
        .into_owned()
    };
    if let Some(id) = flag {
        if parts.contains_key(id) {
            return Ok((id.to_owned(), None));
        }
        return Err(format!(
            "no participant {} in the space; its participants: {}",
            escape(id),
            all()
        ));
    }
    if let Some(d) = doc
        .pointer("/space/default_participant")
        .and_then(Value::as_str)
        && parts.contains_key(d)
    {
        return Ok((d.to_owned(), None));
    }
    let humans: Vec<&str> = parts
        .iter()
        .filter(|(_, p)| {
            p.get("command").is_none_or(Value::is_null)
                && p.get("fifo") != Some(&Value::Bool(true))
                && p.get("type").and_then(Value::as_str) != Some("mcp-bridge")
        })
        .map(|(id, _)| id.as_str())
        .collect();
    match humans.as_slice() {
        [] => Err(format!(
            "every participant is run by mew (a command, a FIFO or a bridge); choose one with --participant: {}",
            all()
        )),
        [one] => Ok(((*one).to_owned(), None)),
        many => {
            let user = std::env::var("USER").ok();
            let pick = user
                .as_deref()
                .and_then(|u| many.iter().find(|h| **h == u))
                .unwrap_or(&many[0]);
            let others: Vec<&str> = many.iter().filter(|h| *h != pick).copied().collect();
            Ok((
                (*pick).to_owned(),
                Some(format!(
                    "joining as {} (also without a command: {}; choose with --participant)",
                    escape(pick),
                    escape(&others.join(", "))
                )),
            ))
        }
    }
}

pub(crate) fn token_for(paths: &crate::space::SpacePaths, id: &str, def: &Value) -> Option<String> {
    let env = std::env::var(crate::config::token_env_name(id))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    let file = || {
        if id.starts_with('.') || id.contains(['/', '\0']) {
            return None;
        }
        std::fs::read_to_string(paths.tokens_dir.join(format!("{id}.token")))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty())
    };
    let listed = || {
        def.get("tokens")
            .and_then(Value::as_array)
            .and_then(|ts| ts.iter().find_map(Value::as_str))
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    };
    env.or_else(file).or_else(listed)
}

// ---------------------------------------------------------------------------
// Showing envelopes
// ---------------------------------------------------------------------------

/// One received frame as a line (without the time), escaped for a terminal.
pub(crate) fn describe(frame: &str) -> String {
    crate::envelopes::summarize(frame).line()
}

/// What a typed line does.
#[derive(Debug, PartialEq)]
enum Typed {
    Nothing,
    Quit,
    Help,
    Send(String),
    Bad(String),
}

fn typed(bytes: &[u8]) -> Typed {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Typed::Bad("not UTF-8: not sent".to_owned());
    };
    let t = text.trim_end_matches(['\r', '\n']);
    let trimmed = t.trim();
    if trimmed.is_empty() {
        return Typed::Nothing;
    }
    if trimmed.starts_with('{') {
        return match parse_line(bytes) {
            Parsed::Object(o) => Typed::Send(o),
            Parsed::Bad(why) => Typed::Bad(format!("{why}: not sent")),
            Parsed::Blank => Typed::Nothing,
        };
    }
    match trimmed {
        "/quit" | "/exit" => return Typed::Quit,
        "/help" => return Typed::Help,
        _ => {}
    }
    if trimmed.starts_with('/') && !trimmed.starts_with("//") {
        return Typed::Bad(format!(
            "unknown command {} (/help lists them; start with // to send a chat line beginning with /)",
            escape(trimmed.split_whitespace().next().unwrap_or(trimmed))
        ));
    }
    let text = trimmed
        .strip_prefix('/')
        .filter(|_| trimmed.starts_with("//"))
        .unwrap_or(t);
    Typed::Send(json!({"kind": "chat", "payload": {"text": text}}).to_string())
}

const HELP: &str = "a line is sent as chat; a line starting with { is sent as a JSON envelope; \
                    /quit (or end of input) leaves; //text sends /text";

async fn typing(mut rx: mpsc::Receiver<In>, sender: LinkSender) {
    while let Some(item) = rx.recv().await {
        match item {
            In::Line(bytes) => match typed(&bytes) {
                Typed::Nothing => {}
                Typed::Quit => break,
                Typed::Help => say(&format!("{WHO}: {HELP}")),
                Typed::Bad(why) => say(&format!("{WHO}: {why}")),
                Typed::Send(text) => {
                    if sender.send_text(text).await.is_err() {
                        return;
                    }
                }
            },
            In::TooLong => say(&format!("{WHO}: that line is too long: not sent")),
            In::End => break,
            In::Failed(e) => {
                say(&format!("{WHO}: cannot read the input: {e}"));
                break;
            }
        }
    }
    sender.close().await;
}

async fn session(target: Target) -> ExitCode {
    let mut term = signal(SignalKind::terminate()).ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut link = super::client::connect_announced(WHO, target);
    let sender = link.sender();
    let (tx, rx) = mpsc::channel(64);
    spawn_reader(Box::new(io::stdin()), tx);
    tokio::spawn(typing(rx, sender.clone()));
    let mut closing: Option<tokio::time::Instant> = None;
    let mut first = true;
    loop {
        let shown = tokio::select! {
            ev = link.next() => match ev {
                Some(LinkEvent::Connected { welcome }) => {
                    if std::mem::take(&mut first) {
                        say(&format!("{WHO}: connected; type to chat, /help for more, /quit to leave"));
                    } else {
                        say(&format!("{WHO}: reconnected"));
                    }
                    Some(describe(&welcome.to_string()))
                }
                Some(LinkEvent::Frame(text)) => Some(describe(&text)),
                Some(LinkEvent::Disconnected { reason, retrying }) => {
                    let then = if retrying { "; reconnecting" } else { "" };
                    say(&format!("{WHO}: disconnected: {}{then}", escape(&reason)));
                    None
                }
                None => break,
            },
            Some(()) = recv(&mut term) => {
                if !begin_close(&sender, &mut closing, "SIGTERM") {
                    return ExitCode::SUCCESS;
                }
                None
            }
            Some(()) = recv(&mut int) => {
                if !begin_close(&sender, &mut closing, "SIGINT") {
                    return ExitCode::SUCCESS;
                }
                None
            }
            () = wait_until(closing) => return ExitCode::SUCCESS,
        };
        if let Some(line) = shown {
            let time = chrono::Local::now().format("%H:%M:%S");
            let mut out = io::stdout().lock();
            if writeln!(out, "{time} {line}")
                .and_then(|()| out.flush())
                .is_err()
            {
                break;
            }
        }
    }
    match link.end() {
        Some(LinkEnd::Refused(why) | LinkEnd::GaveUp(why)) => {
            say(&format!("{WHO}: {}", escape(why)));
            ExitCode::FAILURE
        }
        _ => ExitCode::SUCCESS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_are_one_escaped_line() {
        let chat = r#"{"from":"bob","to":["me"],"kind":"chat","payload":{"text":"hi\u001b]52;c;x\u0007\nthere"}}"#;
        let line = describe(chat);
        assert_eq!(line, "bob → me chat: hi\\x1b]52;c;x\\x07\\nthere");
        assert!(!line.chars().any(char::is_control));
        let w = r#"{"from":"system:gateway","kind":"system/welcome","payload":{"you":{"id":"me"},"participants":[{"id":"a"}]}}"#;
        assert_eq!(
            describe(w),
            "system:gateway → * system/welcome: joined as me; here: a"
        );
        assert_eq!(describe("#s1#abc"), "stream s1: 3 bytes");
        let long = format!(r#"{{"kind":"x","payload":{{"d":"{}"}}}}"#, "a".repeat(1000));
        assert!(describe(&long).chars().count() < crate::envelopes::SUMMARY + 40);
    }

    #[test]
    fn typed_lines() {
        assert_eq!(
            typed(b"hello"),
            Typed::Send(r#"{"kind":"chat","payload":{"text":"hello"}}"#.into())
        );
        assert_eq!(
            typed(b"{\"kind\":\"x\"}"),
            Typed::Send("{\"kind\":\"x\"}".into())
        );
        assert!(matches!(typed(b"{nope"), Typed::Bad(_)));
        assert_eq!(typed(b"/quit"), Typed::Quit);
        assert!(matches!(typed(b"/nope"), Typed::Bad(_)));
        assert_eq!(
            typed(b"//etc"),
            Typed::Send(r#"{"kind":"chat","payload":{"text":"/etc"}}"#.into())
        );
        assert_eq!(typed(b"  "), Typed::Nothing);
    }

    #[test]
    fn participant_resolution() {
        let doc: Value = serde_json::from_str(
            r#"{"participants":{"agent":{"command":"x"},"pipe":{"fifo":true},"human":{},"other":{}}}"#,
        )
        .unwrap();
        let (id, note) = resolve_participant(&doc, None).unwrap();
        assert!(id == "human" || std::env::var("USER").as_deref() == Ok("other"));
        assert!(note.unwrap().contains("--participant"));
        assert_eq!(resolve_participant(&doc, Some("agent")).unwrap().0, "agent");
        let e = resolve_participant(&doc, Some("nobody")).unwrap_err();
        assert!(e.contains("agent, pipe, human, other"), "{e}");
        let only: Value =
            serde_json::from_str(r#"{"participants":{"agent":{"command":"x"},"h":{}}}"#).unwrap();
        assert_eq!(
            resolve_participant(&only, None).unwrap(),
            ("h".to_owned(), None)
        );
        let none: Value =
            serde_json::from_str(r#"{"participants":{"agent":{"command":"x"}}}"#).unwrap();
        assert!(
            resolve_participant(&none, None)
                .unwrap_err()
                .contains("agent")
        );
        let dflt: Value = serde_json::from_str(
            r#"{"space":{"default_participant":"b"},"participants":{"a":{},"b":{}}}"#,
        )
        .unwrap();
        assert_eq!(resolve_participant(&dflt, None).unwrap().0, "b");
    }
}
