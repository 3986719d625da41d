//! Run ids and participant tokens (`.mew/tokens/`).

use std::collections::hash_map::DefaultHasher;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::private::euid;
use super::with_context;

/// A fresh run id: 16 hex chars (8 random bytes). Unique per run of a space;
/// children carry it as `MEW_RUN_ID`.
pub fn new_run_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Uniqueness, not secrecy, is what matters here.
        use std::hash::{Hash, Hasher};
        let mut h = DefaultHasher::new();
        std::process::id().hash(&mut h);
        std::time::SystemTime::now().hash(&mut h);
        bytes = h.finish().to_be_bytes();
    }
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub use crate::config::token_env_name;

/// A participant's token: `$MEW_TOKEN_<ID>` when set and not empty (the file
/// is then neither read nor written); else `.mew/tokens/<participant>.token`
/// (trimmed); else a new one (32 random bytes, base64url without padding)
/// written there with mode 0600. The tokens dir is kept 0700 with a
/// `.gitignore` of `*`.
/// A fresh token: 32 random bytes, base64url without padding (43 characters).
/// Every token mew makes (space tokens, invites, `mew token create`) is one.
pub fn new_token() -> io::Result<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| io::Error::other(format!("no randomness for a token: {e}")))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Every participant's token (made now if it has none yet), by name: what
/// `${TOKEN}` and `MEW_TOKEN_<ID>` resolve to.
pub(crate) fn participant_tokens(
    cfg: &crate::config::SpaceConfig,
    tokens_dir: &Path,
) -> io::Result<std::collections::HashMap<String, String>> {
    let mut tokens = std::collections::HashMap::new();
    for p in &cfg.processes {
        if p.kind == crate::config::ProcKind::Participant {
            tokens.insert(p.name.clone(), load_or_create_token(tokens_dir, &p.name)?);
        }
    }
    Ok(tokens)
}

pub fn load_or_create_token(tokens_dir: &Path, participant: &str) -> io::Result<String> {
    let env = std::env::var(token_env_name(participant)).ok();
    load_or_create_token_with(tokens_dir, participant, env)
}

/// [`load_or_create_token`] with the environment override passed in.
pub fn load_or_create_token_with(
    tokens_dir: &Path,
    participant: &str,
    env_value: Option<String>,
) -> io::Result<String> {
    if let Some(v) = env_value {
        let v = v.trim();
        if !v.is_empty() {
            return Ok(v.to_string());
        }
    }
    if participant.is_empty() || participant.starts_with('.') || participant.contains(['/', '\0']) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("participant id {participant:?} cannot name a token file"),
        ));
    }
    ensure_tokens_dir(tokens_dir)?;
    let path = tokens_dir.join(format!("{participant}.token"));
    if let Some(token) = read_token(&path)? {
        return Ok(token);
    }
    let token = new_token()?;
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(token.as_bytes())?;
            f.write_all(b"\n")?;
            Ok(token)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => read_token(&path)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is empty", path.display()),
            )
        }),
        Err(e) => Err(with_context(e, format!("cannot create {}", path.display()))),
    }
}

fn read_token(path: &Path) -> io::Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(text) if !text.trim().is_empty() => Ok(Some(text.trim().to_string())),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(with_context(e, format!("cannot read {}", path.display()))),
    }
}

fn ensure_tokens_dir(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| with_context(e, format!("cannot create {}", parent.display())))?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let md = fs::metadata(dir)?;
            if md.uid() == euid() && md.mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            }
        }
        Err(e) => return Err(with_context(e, format!("cannot create {}", dir.display()))),
    }
    let gitignore = dir.join(".gitignore");
    if !gitignore.exists() {
        fs::write(&gitignore, "*\n")
            .map_err(|e| with_context(e, format!("cannot write {}", gitignore.display())))?;
    }
    Ok(())
}
