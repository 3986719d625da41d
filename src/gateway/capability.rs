//! Capability patterns (MEW v0.4 §4.1): does a capability allow an envelope,
//! and does one capability cover another (for delegation). Pure; no IO.
//!
//! A capability is a JSON object with a `kind` pattern and an optional
//! `payload` pattern:
//! - `kind`: `*` (anything), `prefix/*` (any kind under `prefix/`), or an exact kind;
//! - `payload`: matched recursively against the envelope's payload. A string
//!   pattern `!x` allows anything but `x`; a trailing `*` is a prefix match
//!   (`*` alone: any value that is present); other strings, numbers and
//!   booleans must be equal; objects match key by key; arrays element by
//!   element; `null` allows anything.
//!
//! Other keys of a capability (`id`, `to`, `description`) are kept and shown
//! but do not restrict (as upstream).

use serde_json::{Map, Value};

/// The kind every participant may send, whatever its configuration (as the
/// upstream gateway: a participant must always be able to answer a request).
pub(crate) fn baseline() -> Value {
    serde_json::json!({"id": "mcp-response", "kind": "mcp/response"})
}

/// Valid capabilities only (objects with a string `kind`), deduplicated, the
/// baseline added.
pub(crate) fn with_baseline(caps: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(caps.len() + 1);
    for c in caps.iter().chain(std::iter::once(&baseline())) {
        if !is_valid(c) {
            continue;
        }
        if c == &baseline() && out.iter().any(|o| o.get("kind") == c.get("kind")) {
            continue;
        }
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

/// An object with a string `kind`.
pub(crate) fn is_valid(cap: &Value) -> bool {
    cap.get("kind").is_some_and(Value::is_string)
}

/// Does `kind_pattern` allow the kind `kind`?
pub(crate) fn kind_matches(kind_pattern: &str, kind: &str) -> bool {
    if kind_pattern == "*" {
        return true;
    }
    match kind_pattern.strip_suffix("/*") {
        Some(prefix) => {
            kind.len() > prefix.len() + 1
                && kind.starts_with(prefix)
                && kind.as_bytes()[prefix.len()] == b'/'
        }
        None => kind_pattern == kind,
    }
}

/// Does `cap` allow `envelope` (an object with `kind` and maybe `payload`)?
pub(crate) fn allows(cap: &Value, envelope: &Map<String, Value>) -> bool {
    let (Some(pattern), Some(kind)) = (
        cap.get("kind").and_then(Value::as_str),
        envelope.get("kind").and_then(Value::as_str),
    ) else {
        return false;
    };
    if !kind_matches(pattern, kind) {
        return false;
    }
    match cap.get("payload") {
        None | Some(Value::Null) => true,
        Some(p) => value_matches(p, envelope.get("payload")),
    }
}

/// The first capability of `caps` that allows `envelope`.
pub(crate) fn find<'a>(caps: &'a [Value], envelope: &Map<String, Value>) -> Option<&'a Value> {
    caps.iter().find(|c| allows(c, envelope))
}

fn value_matches(pattern: &Value, value: Option<&Value>) -> bool {
    match pattern {
        Value::Null => true,
        Value::String(s) => {
            if let Some(not) = s.strip_prefix('!') {
                return value.and_then(Value::as_str) != Some(not);
            }
            if let Some(prefix) = s.strip_suffix('*') {
                return match value {
                    None | Some(Value::Null) => false,
                    Some(Value::String(v)) => v.starts_with(prefix),
                    Some(_) => prefix.is_empty(),
                };
            }
            value.and_then(Value::as_str) == Some(s.as_str())
        }
        Value::Object(pm) => match value {
            Some(Value::Object(vm)) => pm.iter().all(|(k, p)| value_matches(p, vm.get(k))),
            _ => false,
        },
        Value::Array(pa) => match value {
            Some(Value::Array(va)) => pa
                .iter()
                .enumerate()
                .all(|(i, p)| value_matches(p, va.get(i))),
            _ => false,
        },
        other => value == Some(other),
    }
}

/// Does `held` cover `wanted`: is every envelope `wanted` allows also allowed
/// by `held`? Conservative: `false` when that cannot be shown.
pub(crate) fn covers(held: &Value, wanted: &Value) -> bool {
    let (Some(hk), Some(wk)) = (
        held.get("kind").and_then(Value::as_str),
        wanted.get("kind").and_then(Value::as_str),
    ) else {
        return false;
    };
    let kind_ok = hk == "*"
        || hk == wk
        || match (hk.strip_suffix("/*"), wk.strip_suffix("/*")) {
            (Some(h), Some(w)) => {
                w == h || (w.starts_with(h) && w.as_bytes().get(h.len()) == Some(&b'/'))
            }
            (Some(_), None) => kind_matches(hk, wk),
            _ => false,
        };
    if !kind_ok {
        return false;
    }
    match held.get("payload") {
        None | Some(Value::Null) => true,
        Some(hp) => match wanted.get("payload") {
            None | Some(Value::Null) => false,
            Some(wp) => pattern_covers(hp, wp),
        },
    }
}

fn pattern_covers(held: &Value, wanted: &Value) -> bool {
    match (held, wanted) {
        (Value::Null, _) => true,
        (Value::String(h), Value::String(w)) => {
            if h == w {
                return true;
            }
            if let Some(hp) = h.strip_suffix('*') {
                // `w` is a literal or a narrower prefix pattern.
                return !w.starts_with('!') && w.starts_with(hp);
            }
            if let Some(not) = h.strip_prefix('!') {
                // Any literal other than the excluded value.
                return !w.starts_with('!') && !w.ends_with('*') && w != not;
            }
            false
        }
        (Value::Object(h), Value::Object(w)) => h.iter().all(|(k, hp)| match w.get(k) {
            Some(wp) => pattern_covers(hp, wp),
            None => matches!(hp, Value::Null) || hp.as_str().is_some_and(|s| s.starts_with('!')),
        }),
        (Value::Array(h), Value::Array(w)) => {
            h.len() <= w.len() && h.iter().zip(w).all(|(hp, wp)| pattern_covers(hp, wp))
        }
        (h, w) => h == w,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn kinds() {
        assert!(kind_matches("*", "chat"));
        assert!(kind_matches("chat", "chat"));
        assert!(!kind_matches("chat", "chat/acknowledge"));
        assert!(kind_matches("mcp/*", "mcp/request"));
        assert!(kind_matches("mcp/*", "mcp/x/y"));
        assert!(!kind_matches("mcp/*", "mcp"));
        assert!(!kind_matches("mcp/*", "mcp/"));
        assert!(!kind_matches("mcp/*", "mcpx/request"));
        assert!(!kind_matches("mcp/*", "chat"));
    }

    #[test]
    fn payload_patterns() {
        let cap = json!({"kind": "mcp/request", "payload": {"method": "tools/*", "params": {"name": "read_*"}}});
        let ok = env(
            json!({"kind": "mcp/request", "payload": {"method": "tools/call", "params": {"name": "read_file"}}}),
        );
        let wrong_tool = env(
            json!({"kind": "mcp/request", "payload": {"method": "tools/call", "params": {"name": "write_file"}}}),
        );
        let no_params = env(json!({"kind": "mcp/request", "payload": {"method": "tools/call"}}));
        let no_payload = env(json!({"kind": "mcp/request"}));
        assert!(allows(&cap, &ok));
        assert!(!allows(&cap, &wrong_tool));
        assert!(!allows(&cap, &no_params));
        assert!(!allows(&cap, &no_payload));

        let not = json!({"kind": "mcp/request", "payload": {"method": "!tools/call"}});
        assert!(allows(
            &not,
            &env(json!({"kind": "mcp/request", "payload": {"method": "tools/list"}}))
        ));
        assert!(allows(
            &not,
            &env(json!({"kind": "mcp/request", "payload": {}}))
        ));
        assert!(!allows(
            &not,
            &env(json!({"kind": "mcp/request", "payload": {"method": "tools/call"}}))
        ));

        // Exact strings, numbers, booleans; a non-string value never matches a prefix.
        let exact = json!({"kind": "chat", "payload": {"text": "hi", "n": 3, "b": true}});
        assert!(allows(
            &exact,
            &env(json!({"kind": "chat", "payload": {"text": "hi", "n": 3, "b": true, "x": 1}}))
        ));
        assert!(!allows(
            &exact,
            &env(json!({"kind": "chat", "payload": {"text": "hi", "n": 4, "b": true}}))
        ));
        let prefix = json!({"kind": "chat", "payload": {"text": "a*"}});
        assert!(!allows(
            &prefix,
            &env(json!({"kind": "chat", "payload": {"text": 5}}))
        ));
        let any = json!({"kind": "chat", "payload": {"text": "*"}});
        assert!(allows(
            &any,
            &env(json!({"kind": "chat", "payload": {"text": 5}}))
        ));
        assert!(!allows(&any, &env(json!({"kind": "chat", "payload": {}}))));
        // Arrays element by element.
        let arr = json!({"kind": "x", "payload": {"a": ["p*", null]}});
        assert!(allows(
            &arr,
            &env(json!({"kind": "x", "payload": {"a": ["pq", 9]}}))
        ));
        assert!(!allows(
            &arr,
            &env(json!({"kind": "x", "payload": {"a": ["q"]}}))
        ));
    }

    #[test]
    fn wildcard_kinds_with_payload() {
        let cap = json!({"kind": "mcp/*", "payload": {"method": "tools/list"}});
        assert!(allows(
            &cap,
            &env(json!({"kind": "mcp/request", "payload": {"method": "tools/list"}}))
        ));
        assert!(!allows(
            &cap,
            &env(json!({"kind": "mcp/request", "payload": {"method": "tools/call"}}))
        ));
        assert!(allows(
            &json!({"kind": "*"}),
            &env(json!({"kind": "anything"}))
        ));
        assert!(!allows(&json!({"kind": "*"}), &env(json!({"payload": {}}))));
    }

    #[test]
    fn baseline_is_added_once_and_invalid_dropped() {
        let caps = with_baseline(&[
            json!({"kind": "chat"}),
            json!("bogus"),
            json!({"kind": "chat"}),
            json!({"no": "kind"}),
        ]);
        assert_eq!(caps, vec![json!({"kind": "chat"}), baseline()]);
        let caps = with_baseline(&[json!({"kind": "mcp/response"})]);
        assert_eq!(caps, vec![json!({"kind": "mcp/response"})]);
    }

    #[test]
    fn coverage() {
        let star = json!({"kind": "*"});
        let mcp = json!({"kind": "mcp/*"});
        let req_tools = json!({"kind": "mcp/request", "payload": {"method": "tools/*"}});
        let call = json!({"kind": "mcp/request", "payload": {"method": "tools/call", "params": {"name": "write_file"}}});
        assert!(covers(&star, &mcp));
        assert!(covers(&mcp, &req_tools));
        assert!(covers(&mcp, &json!({"kind": "mcp/x/*"})));
        assert!(!covers(&mcp, &star));
        assert!(covers(&req_tools, &call));
        assert!(!covers(&call, &req_tools));
        assert!(!covers(&req_tools, &json!({"kind": "mcp/request"})));
        assert!(!covers(
            &req_tools,
            &json!({"kind": "mcp/request", "payload": {"method": "!tools/call"}})
        ));
        assert!(covers(
            &json!({"kind": "chat"}),
            &json!({"kind": "chat", "payload": {"text": "x"}})
        ));
        assert!(!covers(
            &json!({"kind": "chat"}),
            &json!({"kind": "chat/acknowledge"})
        ));
    }
}
