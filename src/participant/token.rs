//! `mew token create`: a fresh random participant token.
//!
//! Upstream prints a base64 JSON blob (participant, capabilities, time) that
//! its gateway never checks, so anyone can forge one. mew's gateway checks
//! tokens against space.yaml's `tokens:` and `.mew/tokens/<id>.token`, so
//! `token create` makes what those hold: 32 random bytes, base64url without
//! padding (the generator of [`crate::space::load_or_create_token`]).
//! Capabilities are checked (a JSON array of objects with a string `kind`)
//! but not part of the token: the gateway takes them from space.yaml.
//!
//! With `--write` the token is also stored as the participant's token file
//! (a participant of the space only; an existing file is kept unless
//! `--force`; created 0600 with `O_NOFOLLOW`, replaced by rename).

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt,
};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::cli::SpaceArgs;
use crate::config::escape;

pub(crate) use crate::space::new_token;

/// `text` is a JSON array of capabilities: objects with a string `kind`.
pub(crate) fn check_capabilities(text: &str) -> Result<Vec<Value>, String> {
    let v: Value = serde_json::from_str(text).map_err(|e| format!("not valid JSON ({e})"))?;
    let Value::Array(items) = v else {
        return Err(
            "expected a JSON array of capabilities, e.g. '[{\"kind\":\"chat\"}]'".to_owned(),
        );
    };
    for (i, c) in items.iter().enumerate() {
        if !c.is_object() || !crate::gateway::capability::is_valid(c) {
            return Err(format!(
                "capability {i} is not an object with a string `kind` (e.g. {{\"kind\":\"chat\"}})"
            ));
        }
    }
    Ok(items)
}

/// Store `token` as `<space>/.mew/tokens/<id>.token`. `Err((exit code, message))`.
pub(crate) fn write_for_space(
    space: &SpaceArgs,
    id: &str,
    token: &str,
    force: bool,
) -> Result<PathBuf, (u8, String)> {
    if id.starts_with('.') || id.contains(['/', '\0']) {
        return Err((
            2,
            format!(
                "participant id {:?} cannot name a token file",
                escape(id).as_ref()
            ),
        ));
    }
    let cfg = crate::server::load_config(space)
        .map_err(|_| (2, "cannot read the space config".to_owned()))?;
    let known = cfg.participants.iter().any(|p| p.name == id)
        || cfg
            .processes
            .iter()
            .any(|p| p.name == id && p.kind == crate::config::ProcKind::Participant);
    if !known {
        let mut names: Vec<&str> = cfg.participants.iter().map(|p| p.name.as_str()).collect();
        names.extend(
            cfg.processes
                .iter()
                .filter(|p| p.kind == crate::config::ProcKind::Participant)
                .map(|p| p.name.as_str()),
        );
        let list = if names.is_empty() {
            "it has none".to_owned()
        } else {
            format!("its participants: {}", escape(&names.join(", ")))
        };
        return Err((
            2,
            format!(
                "{} is not a participant of the space ({list}); without --write the token is only printed",
                escape(id)
            ),
        ));
    }
    let paths = crate::space::SpacePaths::new(&cfg.dir).map_err(|e| (1, e.to_string()))?;
    let path = store(&paths.tokens_dir, id, token, force).map_err(|e| (1, e))?;
    eprintln!("mew token create: wrote {}", super::client::shown(&path));
    if crate::space::running_server(&paths).is_some() {
        eprintln!(
            "mew token create: the running space's gateway read its tokens when it started: \
             restart it (`mew space restart gateway`) for the new token to be accepted"
        );
    }
    Ok(path)
}

/// Write `token` to `<dir>/<id>.token` (0600, never through a symlink). An
/// existing file is an error unless `force`, which replaces it by rename.
pub(crate) fn store(dir: &Path, id: &str, token: &str, force: bool) -> Result<PathBuf, String> {
    ensure_dir(dir)?;
    let path = dir.join(format!("{id}.token"));
    let open_new = |p: &Path| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(p)
    };
    let write = |mut f: fs::File| -> io::Result<()> {
        f.write_all(token.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()
    };
    let shown = super::client::shown(&path);
    match open_new(&path) {
        Ok(f) => {
            write(f).map_err(|e| format!("cannot write {shown}: {e}"))?;
            return Ok(path);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !force {
                return Err(format!(
                    "{shown} exists: keeping it (--force replaces it; the old token then stops working)"
                ));
            }
        }
        Err(e) => return Err(format!("cannot create {shown}: {e}")),
    }
    let md = fs::symlink_metadata(&path).map_err(|e| format!("{shown}: {e}"))?;
    if !md.file_type().is_file() {
        return Err(format!("{shown} is not a regular file: not replacing it"));
    }
    let tmp = dir.join(format!(".{id}.token.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&tmp);
    let f = open_new(&tmp).map_err(|e| format!("cannot create {}: {e}", tmp.display()))?;
    if let Err(e) = write(f).and_then(|()| fs::rename(&tmp, &path)) {
        let _ = fs::remove_file(&tmp);
        return Err(format!("cannot replace {shown}: {e}"));
    }
    Ok(path)
}

/// The tokens dir: 0700 (tightened when it is ours and open to others), with
/// a `.gitignore` of `*`, as `mew space up` keeps it.
fn ensure_dir(dir: &Path) -> Result<(), String> {
    let shown = super::client::shown(dir);
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let md = fs::symlink_metadata(dir).map_err(|e| format!("{shown}: {e}"))?;
            if !md.is_dir() {
                return Err(format!("{shown} is not a directory"));
            }
            if md.uid() != crate::sys::uid() {
                return Err(format!("{shown} belongs to another user"));
            }
            if md.mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| format!("cannot make {shown} private: {e}"))?;
            }
        }
        Err(e) => return Err(format!("cannot create {shown}: {e}")),
    }
    let gitignore = dir.join(".gitignore");
    if fs::symlink_metadata(&gitignore).is_err() {
        let _ = fs::write(&gitignore, "*\n");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_must_be_an_array_of_kinds() {
        assert!(check_capabilities(r#"[{"kind":"chat"},{"kind":"mcp/*","payload":{}}]"#).is_ok());
        assert!(check_capabilities("[]").is_ok());
        assert!(check_capabilities("{").is_err());
        assert!(check_capabilities(r#"{"kind":"chat"}"#).is_err());
        assert!(check_capabilities(r#"["chat"]"#).is_err());
        assert!(check_capabilities(r#"[{"kind":1}]"#).is_err());
        assert!(check_capabilities(r#"[{}]"#).is_err());
    }

    #[test]
    fn tokens_are_43_base64url_characters_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
        assert_ne!(a, b);
    }

    #[test]
    fn store_keeps_an_existing_file_unless_forced_and_never_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = dir.path().join(".mew/tokens");
        let p = store(&tokens, "a", "one", false).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "one\n");
        assert_eq!(fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&tokens).unwrap().mode() & 0o777, 0o700);
        assert!(store(&tokens, "a", "two", false).is_err());
        assert_eq!(fs::read_to_string(&p).unwrap(), "one\n");
        store(&tokens, "a", "two", true).unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two\n");
        let target = dir.path().join("target");
        fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, tokens.join("b.token")).unwrap();
        assert!(store(&tokens, "b", "x", false).is_err());
        assert!(store(&tokens, "b", "x", true).is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    }
}
