//! `mew space export --format kubernetes`.

use super::{Export, Input, TokenRef};

/// How a command line refers to a token's variable.
pub const TOKEN_REF: TokenRef = |var| format!("${{{var}}}");

pub fn render(_input: &Input<'_>) -> Export {
    let mut e = Export::default();
    e.note(None, "format", "not built yet");
    e
}
