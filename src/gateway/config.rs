//! What the gateway needs from space.yaml: the space id, each participant's
//! tokens, capabilities and output log, the defaults and the logging switches.
//!
//! The gateway reads the file itself (it also runs alone, on upstream files
//! that `mew space check` may be stricter about) into plain JSON, and checks
//! only the fields it uses. Tokens: a participant's `tokens:` from the file,
//! plus its token file `.mew/tokens/<id>.token` (or `$MEW_TOKEN_<ID>`), made
//! when missing, exactly as `mew space up` makes them.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::capability;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ParticipantDef {
    pub id: String,
    /// Every token that authenticates this participant.
    pub tokens: Vec<String>,
    /// As configured (or the defaults), with the baseline added.
    pub capabilities: Vec<Value>,
    /// Absolute path of the file that receives every envelope delivered to it.
    pub output_log: Option<PathBuf>,
    /// Connect the output log when the gateway starts (else at its first POST).
    pub auto_connect: bool,
}

/// The JSONL logs of the gateway (`gateway_logging:`, with upstream's
/// environment overrides `GATEWAY_LOGGING`, `ENVELOPE_HISTORY`, `CAPABILITY_DECISIONS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogSwitches {
    pub envelopes: bool,
    pub capabilities: bool,
}

#[derive(Clone, Debug)]
pub(crate) struct GatewayConfig {
    pub space_id: String,
    pub participants: Vec<ParticipantDef>,
    /// `defaults.capabilities`, with the baseline (for invited participants without any).
    pub default_capabilities: Vec<Value>,
    pub logging: LogSwitches,
}

impl GatewayConfig {
    /// A gateway with no configuration: one space, `default`, nobody known.
    pub(crate) fn empty() -> GatewayConfig {
        GatewayConfig {
            space_id: "default".to_owned(),
            participants: Vec::new(),
            default_capabilities: capability::with_baseline(&[serde_json::json!({"kind": "chat"})]),
            logging: LogSwitches {
                envelopes: true,
                capabilities: true,
            },
        }
    }
}

/// Read and check `path`. `space_dir` anchors relative `output_log` paths;
/// `token_for(id)` gives each participant's generated token (file or env).
pub(crate) fn load(
    path: &Path,
    space_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    token_for: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<GatewayConfig, String> {
    let shown = path.display();
    // The same bounded, non-blocking read as `mew space check` and `up`.
    let text = crate::config::read_text(path, true).map_err(|e| match e {
        crate::config::TextError::Unreadable(why) => format!("{shown}: {why}"),
        crate::config::TextError::NotUtf8 { loc, offset, .. } => format!(
            "{shown}:{}:{}: {}",
            loc.line,
            loc.col,
            crate::config::TextError::utf8_message(offset)
        ),
    })?;
    parse(&text, path, space_dir, env, token_for)
}

/// [`load`] on text already read.
pub(crate) fn parse(
    text: &str,
    path: &Path,
    space_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    token_for: &mut dyn FnMut(&str) -> Result<String, String>,
) -> Result<GatewayConfig, String> {
    let shown = path.display();
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    let doc: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_saphyr::from_str_with_options(text, options).map_err(|e| match e.location() {
            Some(l) => format!(
                "{shown}:{}:{}: invalid YAML: {}",
                l.line(),
                l.column(),
                crate::config::yaml_message(&e)
            ),
            None => format!("{shown}: invalid YAML: {e}"),
        })?
    };
    let mut cfg = GatewayConfig::empty();
    cfg.logging = switches(None, env);
    let Value::Object(root) = doc else {
        return if doc.is_null() {
            Ok(cfg)
        } else {
            Err(format!("{shown}: expected a mapping at the top level"))
        };
    };
    if let Some(id) = root.get("space").and_then(|s| s.get("id")) {
        match id {
            Value::String(s) if !s.is_empty() => cfg.space_id = s.clone(),
            Value::Number(n) => cfg.space_id = n.to_string(),
            _ => return Err(format!("{shown}: `space.id` must be a non-empty string")),
        }
    }
    let caps_of = |v: Option<&Value>, what: &str| -> Result<Option<Vec<Value>>, String> {
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => {
                for (i, c) in items.iter().enumerate() {
                    if !capability::is_valid(c) {
                        return Err(format!(
                            "{shown}: `{what}[{i}]`: a capability is a mapping with a string `kind` (e.g. `kind: chat`)"
                        ));
                    }
                }
                Ok(Some(items.clone()))
            }
            Some(_) => Err(format!("{shown}: `{what}` must be a list of capabilities")),
        }
    };
    let defaults = caps_of(
        root.get("defaults").and_then(|d| d.get("capabilities")),
        "defaults.capabilities",
    )?;
    if let Some(d) = &defaults {
        cfg.default_capabilities = capability::with_baseline(d);
    }
    cfg.logging = switches(root.get("gateway_logging"), env);
    if let Some(parts) = root.get("participants") {
        let Value::Object(parts) = parts else {
            return Err(format!(
                "{shown}: `participants` must be a mapping of names to participants"
            ));
        };
        for (id, p) in parts {
            let what = format!("participants.{id}");
            let caps = caps_of(p.get("capabilities"), &format!("{what}.capabilities"))?;
            let mut tokens = Vec::new();
            match p.get("tokens") {
                None | Some(Value::Null) => {}
                Some(Value::Array(ts)) => {
                    for t in ts {
                        match t {
                            Value::String(s) if !s.is_empty() => tokens.push(s.clone()),
                            _ => {
                                return Err(format!(
                                    "{shown}: `{what}.tokens`: every token must be a non-empty string"
                                ));
                            }
                        }
                    }
                }
                Some(_) => {
                    return Err(format!(
                        "{shown}: `{what}.tokens` must be a list of strings"
                    ));
                }
            }
            let generated = token_for(id)?;
            if !tokens.contains(&generated) {
                tokens.push(generated);
            }
            // A `fifo: true` participant's own client (`mew client connect`)
            // writes its output_log: the gateway does not connect it.
            let fifo = matches!(p.get("fifo"), Some(Value::Bool(true)));
            let output_log = match p.get("output_log") {
                _ if fifo => None,
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if !s.is_empty() => Some(space_dir.join(s)),
                Some(_) => return Err(format!("{shown}: `{what}.output_log` must be a path")),
            };
            let auto_connect = !fifo && matches!(p.get("auto_connect"), Some(Value::Bool(true)));
            let capabilities = caps
                .or_else(|| defaults.clone())
                .map(|c| capability::with_baseline(&c))
                .unwrap_or_else(|| capability::with_baseline(&[]));
            cfg.participants.push(ParticipantDef {
                id: id.clone(),
                tokens,
                capabilities,
                output_log,
                auto_connect,
            });
        }
    }
    Ok(cfg)
}

fn flag(v: Option<&Value>) -> Option<bool> {
    match v? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => parse_bool(s),
        _ => None,
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn switches(v: Option<&Value>, env: &dyn Fn(&str) -> Option<String>) -> LogSwitches {
    let env_flag = |name: &str| env(name).as_deref().and_then(parse_bool);
    let mut all = v.and_then(|v| flag(v.get("enabled"))).unwrap_or(true);
    if let Some(e) = env_flag("GATEWAY_LOGGING") {
        all = e;
    }
    let sub = |key: &str, var: &str| {
        let mut on = v
            .and_then(|v| v.get(key))
            .and_then(|s| flag(s.get("enabled")))
            .unwrap_or(true);
        if let Some(e) = env_flag(var) {
            on = e;
        }
        on && all
    };
    LogSwitches {
        envelopes: sub("envelope_history", "ENVELOPE_HISTORY"),
        capabilities: sub("capability_decisions", "CAPABILITY_DECISIONS"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_str(text: &str, env: &[(&str, &str)]) -> Result<GatewayConfig, String> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let lookup = move |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        parse(
            text,
            Path::new("space.yaml"),
            Path::new("/sp"),
            &lookup,
            &mut |id| Ok(format!("gen-{id}")),
        )
    }

    #[test]
    fn participants_tokens_capabilities_defaults() {
        let cfg = parse_str(
            "space: {id: s1}\nparticipants:\n  a:\n    tokens: [ta]\n    capabilities: [{kind: chat}]\n    output_log: ./logs/a.log\n    auto_connect: true\n  b: {}\ndefaults:\n  capabilities: [{kind: 'mcp/*'}]\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.space_id, "s1");
        let a = &cfg.participants[0];
        assert_eq!(a.tokens, vec!["ta", "gen-a"]);
        assert_eq!(
            a.capabilities,
            vec![json!({"kind": "chat"}), capability::baseline()]
        );
        assert_eq!(a.output_log.as_deref(), Some(Path::new("/sp/./logs/a.log")));
        assert!(a.auto_connect);
        let b = &cfg.participants[1];
        assert_eq!(b.tokens, vec!["gen-b"]);
        assert_eq!(
            b.capabilities,
            vec![json!({"kind": "mcp/*"}), capability::baseline()]
        );
        assert!(!b.auto_connect);
    }

    #[test]
    fn a_fifo_participant_is_left_to_its_own_client() {
        let cfg = parse_str(
            "participants:\n  f:\n    fifo: true\n    output_log: ./logs/f.log\n    auto_connect: true\n",
            &[],
        )
        .unwrap();
        let f = &cfg.participants[0];
        assert_eq!(f.output_log, None);
        assert!(!f.auto_connect);
    }

    #[test]
    fn logging_switches_and_env_overrides() {
        let cfg = parse_str(
            "gateway_logging:\n  envelope_history: {enabled: false}\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            cfg.logging,
            LogSwitches {
                envelopes: false,
                capabilities: true
            }
        );
        let cfg = parse_str(
            "gateway_logging: {enabled: true}\n",
            &[("GATEWAY_LOGGING", "off")],
        )
        .unwrap();
        assert_eq!(
            cfg.logging,
            LogSwitches {
                envelopes: false,
                capabilities: false
            }
        );
        let cfg = parse_str("", &[("CAPABILITY_DECISIONS", "0")]).unwrap();
        assert_eq!(
            cfg.logging,
            LogSwitches {
                envelopes: true,
                capabilities: false
            }
        );
    }

    #[test]
    fn bad_fields_are_named() {
        let e = parse_str("participants:\n  a:\n    capabilities: [chat]\n", &[]).unwrap_err();
        assert!(e.contains("participants.a.capabilities[0]"), "{e}");
        let e = parse_str("participants:\n  a:\n    tokens: [1]\n", &[]).unwrap_err();
        assert!(e.contains("participants.a.tokens"), "{e}");
        let e = parse_str("a: [1,\nb: c\n", &[]).unwrap_err();
        assert!(e.starts_with("space.yaml:1:4: invalid YAML"), "{e}");
        let e = parse_str("- 1\n", &[]).unwrap_err();
        assert!(e.contains("mapping at the top level"), "{e}");
    }

    #[test]
    fn invalid_utf8_has_a_location() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("space.yaml");
        std::fs::write(&p, b"space:\n  id: a\xffb\n").unwrap();
        let e = load(&p, t.path(), &|_| None, &mut |_| Ok("x".into())).unwrap_err();
        assert!(e.contains(":2:8: the file is not valid UTF-8"), "{e}");
    }
}
