//! The space server's own participant: it joins the space's gateway as the
//! space's person (`space.default_participant`, else a participant without
//! a command, …: as `mew space connect` chooses, never one the gateway or
//! mew already connects) once someone looks (see [`Plan`]), and keeps what
//! it sees in a [`SpaceLog`] that every attached TUI (and `--no-tui
//! --envelopes`) reads. One connection for every client: they all see, and
//! speak in, the same conversation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::watch;

use super::{Link, LinkEnd, LinkEvent, LinkSender, Reconnect, Target};
use crate::config::SpaceConfig;
use crate::envelopes::{self, SpaceLog};

/// Envelopes kept for the space view.
pub(crate) const HISTORY: usize = 5000;

pub(crate) struct Observer {
    log: Mutex<SpaceLog>,
    sender: LinkSender,
    /// Bumped after every change of the log.
    changed: watch::Sender<u64>,
    /// JSON-RPC ids of the requests this participant sends.
    next_rpc: AtomicU64,
}

/// Who the server's participant would join as, and where: decided at
/// start-up (from the config), joined only when someone first looks (an
/// attached TUI, `--envelopes`): a space run by scripts (`up -d`) never
/// sees mew's participant, which could otherwise take a participant id the
/// scripts mean to join as.
pub(crate) struct Plan {
    target: Target,
    default_to: Vec<String>,
    started: std::sync::OnceLock<Arc<Observer>>,
}

impl Plan {
    /// The space's person and its token, when the space has a gateway and
    /// such a participant. `Err`: why there is no space view.
    pub(crate) fn new(cfg: &SpaceConfig, port: u16) -> Result<Plan, String> {
        if cfg.gateway().is_none() {
            return Err("the space has no gateway".to_owned());
        }
        let mut doc = super::connect::raw_config(cfg)?;
        // A participant with an `output_log` is the gateway's own
        // connection: joining as it would replace that one.
        if let Some(parts) = doc.get_mut("participants").and_then(Value::as_object_mut) {
            parts.retain(|_, p| p.get("output_log").is_none_or(Value::is_null));
        }
        let (id, _) = super::connect::resolve_participant(&doc, None)?;
        let def = doc
            .pointer("/participants")
            .and_then(|p| p.get(&id))
            .cloned()
            .unwrap_or(Value::Null);
        let paths = crate::space::SpacePaths::new(&cfg.dir).map_err(|e| e.to_string())?;
        // The server owns the token files: make this participant's as `up`
        // makes every other one.
        let token = match super::connect::token_for(&paths, &id, &def) {
            Some(t) => t,
            None => crate::space::load_or_create_token(&paths.tokens_dir, &id)
                .map_err(|e| format!("no token for {id}: {e}"))?,
        };
        let default_to = def
            .pointer("/default_to/chat")
            .or_else(|| doc.pointer("/defaults/routing/default_to/chat"))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Plan {
            target: Target {
                url: format!("ws://127.0.0.1:{port}"),
                space: cfg.id.clone(),
                participant_id: Some(id),
                token,
            },
            default_to,
            started: std::sync::OnceLock::new(),
        })
    }

    /// Who it joins as.
    pub(crate) fn participant(&self) -> &str {
        self.target.participant_id.as_deref().unwrap_or("")
    }

    /// The observer, joining now if nobody looked before. Must run inside
    /// the server's runtime.
    pub(crate) fn observer(&self) -> Arc<Observer> {
        self.started
            .get_or_init(|| Observer::start(self.target.clone(), self.default_to.clone()))
            .clone()
    }

    /// The observer, if someone has looked.
    pub(crate) fn started(&self) -> Option<Arc<Observer>> {
        self.started.get().cloned()
    }
}

impl Observer {
    fn start(target: Target, default_to: Vec<String>) -> Arc<Observer> {
        let mut log = SpaceLog::new(HISTORY);
        log.link = envelopes::Link::Connecting;
        log.default_to = default_to;
        let mut link = Link::start(
            target,
            Reconnect {
                enabled: true,
                max_attempts: None,
            },
        );
        let (changed, _) = watch::channel(0);
        let obs = Arc::new(Observer {
            log: Mutex::new(log),
            sender: link.sender(),
            changed,
            next_rpc: AtomicU64::new(1),
        });
        let me = Arc::downgrade(&obs);
        tokio::spawn(async move {
            while let Some(ev) = link.next().await {
                let Some(obs) = me.upgrade() else { return };
                let now = crate::status::now_millis();
                obs.update(|log| match ev {
                    LinkEvent::Connected { welcome } => log.push(&welcome.to_string(), now),
                    LinkEvent::Frame(text) => log.push(&text, now),
                    LinkEvent::Disconnected { reason, retrying } => {
                        log.link = envelopes::Link::Lost(if retrying {
                            format!("{reason}; reconnecting")
                        } else {
                            reason
                        });
                        for m in log.members.values_mut() {
                            m.connected = false;
                        }
                    }
                });
            }
            if let Some(obs) = me.upgrade() {
                let why = match link.end() {
                    Some(LinkEnd::Refused(r) | LinkEnd::GaveUp(r)) => r.clone(),
                    _ => "closed".to_owned(),
                };
                obs.update(|log| log.link = envelopes::Link::Lost(why));
            }
        });
        obs
    }

    fn update(&self, f: impl FnOnce(&mut SpaceLog)) {
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut log);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// Run `f` on the log (locked while it runs).
    pub(crate) fn with_log<R>(&self, f: impl FnOnce(&SpaceLog) -> R) -> R {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        f(&log)
    }

    /// A receiver that changes after every change of the log.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Send an envelope as this participant. An `mcp/request` without a
    /// JSON-RPC id gets a fresh one.
    pub(crate) async fn send(&self, envelope: &Value) -> Result<(), String> {
        let mut env = envelope.clone();
        if env.get("kind").and_then(Value::as_str) == Some("mcp/request")
            && let Some(p) = env.get_mut("payload").and_then(Value::as_object_mut)
            && !p.contains_key("id")
        {
            p.insert(
                "id".into(),
                Value::from(self.next_rpc.fetch_add(1, Ordering::Relaxed)),
            );
        }
        self.sender.send(&env).await.map_err(|e| e.to_string())
    }
}
