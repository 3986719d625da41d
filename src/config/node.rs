//! A spanned YAML tree: every node knows where it was written.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::model::Loc;

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub loc: Loc,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Keys and values in file order.
    Map(Vec<(Node, Node)>),
}

impl NodeValue {
    /// "a string", "a list", ... for type-mismatch messages.
    pub fn describe(&self) -> &'static str {
        match self {
            NodeValue::Null => "nothing (null)",
            NodeValue::Bool(_) => "a boolean",
            NodeValue::Int(_) => "an integer",
            NodeValue::Float(_) => "a number",
            NodeValue::Str(_) => "a string",
            NodeValue::Seq(_) => "a list",
            NodeValue::Map(_) => "a mapping",
        }
    }
}

impl Node {
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.value {
            NodeValue::Map(m) => Some(m),
            _ => None,
        }
    }

    /// A scalar rendered as text (strings as is, numbers and booleans as written).
    pub fn scalar_text(&self) -> Option<String> {
        match &self.value {
            NodeValue::Str(s) => Some(s.clone()),
            NodeValue::Bool(b) => Some(b.to_string()),
            NodeValue::Int(i) => Some(i.to_string()),
            NodeValue::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }

    /// The value for `key` in a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }
}

impl<'de> Deserialize<'de> for NodeValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = Spanned::<NodeValue>::deserialize(d)?;
        let loc = Loc::new(
            u32::try_from(s.referenced.line()).unwrap_or(u32::MAX),
            u32::try_from(s.referenced.column()).unwrap_or(u32::MAX),
        );
        Ok(Node {
            value: s.value,
            loc,
        })
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = NodeValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<NodeValue, E> {
        Ok(NodeValue::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<NodeValue, E> {
        Ok(NodeValue::Int(v.into()))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<NodeValue, E> {
        Ok(i128::try_from(v).map_or(NodeValue::Float(v as f64), NodeValue::Int))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<NodeValue, E> {
        Ok(NodeValue::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<NodeValue, E> {
        Ok(NodeValue::Str(String::from_utf8_lossy(v).into_owned()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<NodeValue, E> {
        Ok(NodeValue::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<NodeValue, D::Error> {
        NodeValue::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<NodeValue, A::Error> {
        let mut out = Vec::new();
        while let Some(n) = seq.next_element::<Node>()? {
            out.push(n);
        }
        Ok(NodeValue::Seq(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NodeValue, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<Node, Node>()? {
            out.push((k, v));
        }
        Ok(NodeValue::Map(out))
    }
}

/// Parse a YAML document into a spanned tree. An empty document is `Null`.
pub fn parse(text: &str) -> Result<Node, serde_saphyr::Error> {
    if text.trim().is_empty()
        || text
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        return Ok(Node {
            value: NodeValue::Null,
            loc: Loc::new(1, 1),
        });
    }
    // YAML 1.2 booleans only: `command: y` or `restart_policy: no` stay strings.
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    serde_saphyr::from_str_with_options::<Node>(text, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_types_and_locations() {
        let n = parse("b: 1\na:\n  - x\n  - 'no'\n  - no\n  - ~\nc: { d: 1.5 }\n").unwrap();
        let m = n.as_map().unwrap();
        assert_eq!(m[0].0.as_str(), Some("b"));
        assert_eq!(m[0].1.value, NodeValue::Int(1));
        assert_eq!(m[0].1.loc, Loc::new(1, 4));
        let NodeValue::Seq(items) = &m[1].1.value else {
            panic!("not a seq")
        };
        assert_eq!(items[0].loc, Loc::new(3, 5));
        assert_eq!(items[1].value, NodeValue::Str("no".into()));
        assert_eq!(items[2].value, NodeValue::Str("no".into()));
        assert_eq!(items[3].value, NodeValue::Null);
        assert_eq!(
            n.get("c").unwrap().get("d").unwrap().value,
            NodeValue::Float(1.5)
        );
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("# nothing\n\n").unwrap().value, NodeValue::Null);
    }

    #[test]
    fn syntax_error_has_location() {
        let e = parse("a: [1,\nb: c\n").unwrap_err();
        let loc = e.location().unwrap();
        assert_eq!((loc.line(), loc.column()), (1, 4));
    }
}
