//! Override files (`space.override.yaml`, a second `--config`): merged into
//! the config's spanned tree key by key, as docker compose merges its
//! override file, before anything is built. Every node keeps the file it
//! came from ([`Loc::file`]), so a problem in a value an override set is
//! reported at that file's `file:line:col`.
//!
//! The rules (documented in docs/space-yaml.md):
//! - mappings merge recursively, key by key (processes and participants by
//!   name, `ready:` by field, `depends_on:` in its mapping form by name);
//! - scalars and lists replace (`args`, `watch.paths`, `profiles`,
//!   `depends_on` as a list);
//! - `env` merges by variable name, whether either side is written as a
//!   mapping or as a `NAME=value` list;
//! - `null` replaces a scalar or a list, but leaves a mapping as it is (an
//!   empty `web:` block in an override changes nothing).

use super::node::{Node, NodeValue};

/// Mark every node of `n` as coming from file `file`.
pub fn set_file(n: &mut Node, file: usize) {
    n.loc.file = file;
    match &mut n.value {
        NodeValue::Seq(items) => items.iter_mut().for_each(|i| set_file(i, file)),
        NodeValue::Map(m) => {
            for (k, v) in m {
                set_file(k, file);
                set_file(v, file);
            }
        }
        _ => {}
    }
}

/// Merge `over` into `base` (see the module's rules).
pub fn merge(base: &mut Node, over: Node) {
    let Node {
        value: over_value,
        loc: over_loc,
    } = over;
    match (&mut base.value, over_value) {
        (NodeValue::Map(bm), NodeValue::Map(om)) => {
            for (k, mut v) in om {
                let key = k.scalar_text();
                let found = key.as_deref().and_then(|key| {
                    bm.iter_mut()
                        .find(|(bk, _)| bk.scalar_text().as_deref() == Some(key))
                });
                match found {
                    Some((_, bv)) => {
                        if key.as_deref() == Some("env") {
                            env_as_map(bv);
                            env_as_map(&mut v);
                        }
                        merge(bv, v);
                    }
                    None => bm.push((k, v)),
                }
            }
        }
        (NodeValue::Map(_), NodeValue::Null) => {}
        (_, v) => {
            base.value = v;
            base.loc = over_loc;
        }
    }
}

/// An `env:` list of `NAME=value` strings as the equivalent mapping (each
/// key and value located at its item), so that two files' `env` merge by
/// name. Anything else is left as it is (and reported by the builder).
fn env_as_map(n: &mut Node) {
    let NodeValue::Seq(items) = &n.value else {
        return;
    };
    let mut m = Vec::with_capacity(items.len());
    for item in items {
        let Some((k, v)) = item.as_str().and_then(|s| s.split_once('=')) else {
            return;
        };
        if k.is_empty() {
            return;
        }
        let at = |value: NodeValue| Node {
            value,
            loc: item.loc.clone(),
        };
        m.push((
            at(NodeValue::Str(k.to_owned())),
            at(NodeValue::Str(v.to_owned())),
        ));
    }
    n.value = NodeValue::Map(m);
}

/// Every file (by index) that some node of `n` comes from, once each.
pub fn files_in(n: &Node, out: &mut Vec<usize>) {
    if !out.contains(&n.loc.file) {
        out.push(n.loc.file);
    }
    match &n.value {
        NodeValue::Seq(items) => items.iter().for_each(|i| files_in(i, out)),
        NodeValue::Map(m) => {
            for (k, v) in m {
                files_in(k, out);
                files_in(v, out);
            }
        }
        _ => {}
    }
}
