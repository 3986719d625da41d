use std::ffi::OsStr;
use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use super::paths::MAX_SOCKET_PATH;
use super::private::{euid, runtime_dir_from, runtime_dir_path};
use super::registry::Registry;
use super::socket::check_uid;
use super::tokens::token_env_name;
use super::*;

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o777
}

fn space() -> (tempfile::TempDir, SpacePaths) {
    let t = tempfile::tempdir().unwrap();
    let rt = t.path().join("rt");
    let p = SpacePaths::with_runtime_dir(t.path(), &rt).unwrap();
    (t, p)
}

#[test]
fn paths_layout() {
    let (t, p) = space();
    let dir = fs::canonicalize(t.path()).unwrap();
    assert_eq!(p.dir, dir);
    assert_eq!(p.run_dir, dir.join(".mew/run"));
    assert_eq!(p.logs_dir, dir.join(".mew/logs"));
    assert_eq!(p.tokens_dir, dir.join(".mew/tokens"));
    assert_eq!(p.lock, dir.join(".mew/run/mew.lock"));
    assert_eq!(p.state, dir.join(".mew/run/state.json"));
    assert_eq!(p.socket, dir.join(".mew/run/mew.sock"));
    assert!(!p.socket_is_external());
    let p = p.with_logs_dir(PathBuf::from("/var/log/x"));
    assert_eq!(p.logs_dir, PathBuf::from("/var/log/x"));
    assert!(SpacePaths::new(&dir.join("missing")).is_err());
}

#[test]
fn relative_space_dir_becomes_absolute() {
    let p = SpacePaths::new(Path::new(".")).unwrap();
    assert!(p.dir.is_absolute());
}

#[test]
fn run_dir_is_private() {
    let (_t, p) = space();
    p.ensure_run_dir().unwrap();
    assert_eq!(mode(&p.run_dir), 0o700);
    // Idempotent.
    p.ensure_run_dir().unwrap();
}

#[test]
fn unsafe_run_dir_is_refused() {
    let (_t, p) = space();
    p.ensure_run_dir().unwrap();
    fs::set_permissions(&p.run_dir, fs::Permissions::from_mode(0o777)).unwrap();
    let err = p.ensure_run_dir().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("unsafe permissions"), "{err}");
    assert!(err.to_string().contains("chmod 700"), "{err}");
    fs::set_permissions(&p.run_dir, fs::Permissions::from_mode(0o750)).unwrap();
    assert!(p.ensure_run_dir().is_err());
    // bind_socket refuses it too.
    assert!(bind_socket(&p.socket).is_err());
}

#[test]
fn symlinked_run_dir_is_refused() {
    let (t, p) = space();
    fs::create_dir_all(&p.mew_dir).unwrap();
    let elsewhere = t.path().join("elsewhere");
    DirBuilder::new().mode(0o700).create(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &p.run_dir).unwrap();
    assert!(p.ensure_run_dir().is_err());
}

#[test]
fn long_space_dir_uses_runtime_socket() {
    let t = tempfile::tempdir().unwrap();
    let mut deep = fs::canonicalize(t.path()).unwrap();
    while deep.as_os_str().len() < 150 {
        deep.push("a-rather-long-directory-name");
    }
    fs::create_dir_all(&deep).unwrap();
    assert!(deep.as_os_str().len() >= 150);
    let rt = t.path().join("rt");
    let p = SpacePaths::with_runtime_dir(&deep, &rt).unwrap();
    assert!(p.socket_is_external());
    assert_eq!(p.socket, rt.join(format!("{}.sock", dir_hash(&p.dir))));
    assert!(p.socket.as_os_str().len() <= MAX_SOCKET_PATH);
    p.ensure_run_dir().unwrap();
    assert_eq!(mode(&rt), 0o700);
    let listener = bind_socket(&p.socket).unwrap();
    p.record_socket().unwrap();
    assert_eq!(socket_path_for(&deep).unwrap(), p.socket);
    let client = UnixStream::connect(socket_path_for(&deep).unwrap()).unwrap();
    let (server_side, _) = listener.accept().unwrap();
    assert_eq!(peer_uid(&server_side).unwrap(), euid());
    drop(client);
}

#[test]
fn long_space_dir_with_default_runtime_dir() {
    let t = tempfile::tempdir().unwrap();
    let deep = fs::canonicalize(t.path()).unwrap().join("x".repeat(150));
    fs::create_dir_all(&deep).unwrap();
    let p = SpacePaths::new(&deep).unwrap();
    assert!(p.socket_is_external());
    assert!(p.socket.starts_with(runtime_dir_path()));
}

#[test]
fn too_long_fallback_is_a_clear_error() {
    let t = tempfile::tempdir().unwrap();
    let deep = t.path().join("y".repeat(120));
    fs::create_dir_all(&deep).unwrap();
    let err = SpacePaths::with_runtime_dir(&deep, &deep).unwrap_err();
    assert!(err.to_string().contains("XDG_RUNTIME_DIR"), "{err}");
}

#[test]
fn runtime_dir_resolution() {
    let t = tempfile::tempdir().unwrap();
    let tmp = Path::new("/some/tmp");
    // Ours and absolute: used.
    assert_eq!(
        runtime_dir_from(Some(t.path().as_os_str()), tmp),
        t.path().join("mew")
    );
    // Relative, missing or unset: the per-uid temp dir.
    let fallback = tmp.join(format!("mew-{}", euid()));
    assert_eq!(runtime_dir_from(Some(OsStr::new("rel")), tmp), fallback);
    assert_eq!(
        runtime_dir_from(Some(OsStr::new("/nonexistent/x")), tmp),
        fallback
    );
    assert_eq!(runtime_dir_from(None, tmp), fallback);
    if euid() != 0 {
        // Owned by root, not us.
        assert_eq!(runtime_dir_from(Some(OsStr::new("/")), tmp), fallback);
    }
}

#[test]
fn socket_is_0600_and_stale_socket_is_replaced() {
    let (_t, p) = space();
    p.ensure_run_dir().unwrap();
    let l = bind_socket(&p.socket).unwrap();
    assert_eq!(mode(&p.socket), 0o600);
    // A live server: refused.
    let err = bind_socket(&p.socket).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    // The server dies, leaving its socket file behind: replaced.
    drop(l);
    assert!(p.socket.exists());
    assert_eq!(
        UnixStream::connect(&p.socket).unwrap_err().kind(),
        io::ErrorKind::ConnectionRefused
    );
    let l2 = bind_socket(&p.socket).unwrap();
    let _c = UnixStream::connect(&p.socket).unwrap();
    let (s, _) = l2.accept().unwrap();
    assert!(check_peer(&s).is_ok());
}

#[test]
fn non_socket_file_is_not_removed() {
    let (_t, p) = space();
    p.ensure_run_dir().unwrap();
    fs::write(&p.socket, "precious").unwrap();
    assert!(bind_socket(&p.socket).is_err());
    assert_eq!(fs::read_to_string(&p.socket).unwrap(), "precious");
}

#[test]
fn peer_rules() {
    assert!(check_uid(euid()).is_ok());
    assert!(check_uid(0).is_ok());
    let other = euid().wrapping_add(4242).max(1);
    let err = check_uid(other).unwrap_err();
    assert!(err.contains(&format!("uid {other}")), "{err}");
}

/// Only root can give a file to another user or run a process as one.
fn root_with_perl() -> bool {
    euid() == 0 && Path::new("/usr/bin/perl").exists()
}

#[test]
fn run_dir_of_another_user_is_refused() {
    if euid() != 0 {
        eprintln!("skipped: needs root to chown");
        return;
    }
    let (_t, p) = space();
    p.ensure_run_dir().unwrap();
    std::os::unix::fs::chown(&p.run_dir, Some(65534), Some(65534)).unwrap();
    let err = p.ensure_run_dir().unwrap_err();
    assert!(err.to_string().contains("owned by uid 65534"), "{err}");
    assert!(bind_socket(&p.socket).is_err());
}

#[test]
fn peer_of_another_uid_is_refused() {
    use std::io::Read as _;
    use std::os::unix::process::CommandExt;
    if !root_with_perl() {
        eprintln!("skipped: needs root and /usr/bin/perl");
        return;
    }
    // A deliberately public socket, so that another user can reach it.
    let t = tempfile::tempdir().unwrap();
    fs::set_permissions(t.path(), fs::Permissions::from_mode(0o711)).unwrap();
    let sock = t.path().join("s.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    fs::set_permissions(&sock, fs::Permissions::from_mode(0o777)).unwrap();
    let mut child = std::process::Command::new("/usr/bin/perl")
        .args([
            "-MIO::Socket::UNIX",
            "-e",
            "my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die \"connect: $!\"; print \"connected\\n\"; $| = 1; <STDIN>;",
        ])
        .arg(&sock)
        .uid(65534)
        .gid(65534)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (stream, _) = listener.accept().unwrap();
    assert_eq!(peer_uid(&stream).unwrap(), 65534);
    let err = check_peer(&stream).unwrap_err();
    assert!(err.contains("uid 65534"), "{err}");
    drop(child.stdin.take());
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(out, "connected\n");
}

#[test]
fn socket_path_for_without_record_computes_it() {
    let (t, p) = space();
    assert_eq!(socket_path_for(t.path()).unwrap(), p.socket);
    p.ensure_run_dir().unwrap();
    fs::write(&p.socket_record, "/elsewhere/s.sock\n").unwrap();
    assert_eq!(
        socket_path_for(t.path()).unwrap(),
        PathBuf::from("/elsewhere/s.sock")
    );
}

#[test]
fn lock_held_then_free() {
    let (_t, p) = space();
    p.ensure_run_dir().unwrap();
    let mut lock = try_lock(&p).unwrap();
    assert_eq!(mode(&p.lock), 0o600);
    let info = LockInfo {
        pid: std::process::id(),
        started_at: 5,
        run_id: new_run_id(),
        mew_version: "0.1.0".into(),
        socket: p.socket.clone(),
        space_id: Some("demo".into()),
        gateway_port: Some(8080),
    };
    lock.write_info(&info).unwrap();
    // A second open file description conflicts, even in this process.
    match try_lock(&p) {
        Err(LockError::Held { pid }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("expected Held, got {other:?}"),
    }
    assert_eq!(read_lock_info(&p), Some(info));
    drop(lock);
    // Free again; the stale content is not trusted and is cleared.
    let lock2 = try_lock(&p).unwrap();
    assert_eq!(fs::read_to_string(&p.lock).unwrap(), "");
    drop(lock2);
}

#[test]
fn is_locked_without_taking_the_lock() {
    let (_t, p) = space();
    assert_eq!(is_locked(&p), Some(false));
    p.ensure_run_dir().unwrap();
    let lock = try_lock(&p).unwrap();
    assert_eq!(is_locked(&p), Some(true));
    drop(lock);
    assert_eq!(is_locked(&p), Some(false));
}

#[test]
fn held_lock_without_info() {
    let (_t, p) = space();
    p.ensure_run_dir().unwrap();
    let _lock = try_lock(&p).unwrap();
    assert!(matches!(try_lock(&p), Err(LockError::Held { pid: None })));
}

#[test]
fn lock_needs_run_dir() {
    let (_t, p) = space();
    assert!(matches!(try_lock(&p), Err(LockError::Io(_))));
}

#[test]
fn state_round_trip() {
    let (_t, p) = space();
    p.ensure_run_dir().unwrap();
    assert_eq!(read_state(&p.state).unwrap(), None);
    let st = StateFile {
        server_pid: 1,
        run_id: "00ff00ff00ff00ff".into(),
        started_at: 3,
        processes: vec![ProcessRecord {
            name: "a".into(),
            pid: 10,
            pgid: 10,
        }],
    };
    write_state(&p.state, &st).unwrap();
    assert_eq!(read_state(&p.state).unwrap(), Some(st.clone()));
    assert_eq!(mode(&p.state), 0o600);
    let st2 = StateFile {
        processes: vec![],
        ..st
    };
    write_state(&p.state, &st2).unwrap();
    assert_eq!(read_state(&p.state).unwrap(), Some(st2));
    // No temp files left behind.
    let names: Vec<_> = fs::read_dir(&p.run_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![OsStr::new("state.json").to_owned()]);
    fs::write(&p.state, "{").unwrap();
    assert_eq!(
        read_state(&p.state).unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
}

#[test]
fn run_ids_are_hex_and_distinct() {
    let a = new_run_id();
    let b = new_run_id();
    assert_eq!(a.len(), 16);
    assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
}

#[test]
fn token_env_names() {
    assert_eq!(token_env_name("coder-agent"), "MEW_TOKEN_CODER_AGENT");
    assert_eq!(token_env_name("a.b c"), "MEW_TOKEN_A_B_C");
    assert_eq!(token_env_name("x9"), "MEW_TOKEN_X9");
}

#[test]
fn token_created_then_reused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join(".mew/tokens");
    let tok = load_or_create_token_with(&dir, "agent", None).unwrap();
    assert_eq!(tok.len(), 43); // 32 bytes base64url, no padding
    assert!(
        tok.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    );
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("agent.token")), 0o600);
    assert_eq!(fs::read_to_string(dir.join(".gitignore")).unwrap(), "*\n");
    assert_eq!(load_or_create_token_with(&dir, "agent", None).unwrap(), tok);
    assert_ne!(load_or_create_token_with(&dir, "other", None).unwrap(), tok);
    // A hand-written token file is trimmed.
    fs::write(dir.join("human.token"), "  secret \n").unwrap();
    assert_eq!(
        load_or_create_token_with(&dir, "human", None).unwrap(),
        "secret"
    );
}

#[test]
fn token_env_override() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tokens");
    assert_eq!(
        load_or_create_token_with(&dir, "agent", Some("from-env".into())).unwrap(),
        "from-env"
    );
    assert!(!dir.join("agent.token").exists());
    // Empty override: ignored.
    let tok = load_or_create_token_with(&dir, "agent", Some(String::new())).unwrap();
    assert_ne!(tok, "");
    assert!(dir.join("agent.token").exists());
    // The real-env entry point reads the file when the variable is unset.
    let name = "no-such-env-participant-4b1c";
    assert!(std::env::var(token_env_name(name)).is_err());
    let tok = load_or_create_token(&dir, name).unwrap();
    assert_eq!(
        fs::read_to_string(dir.join(format!("{name}.token")))
            .unwrap()
            .trim(),
        tok
    );
}

#[test]
fn loose_tokens_dir_is_tightened_and_bad_ids_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("tokens");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    load_or_create_token_with(&dir, "a", None).unwrap();
    assert_eq!(mode(&dir), 0o700);
    for bad in ["", "../x", ".hidden", "a/b"] {
        assert!(load_or_create_token_with(&dir, bad, None).is_err(), "{bad}");
    }
}

#[test]
fn registry_register_list_prune() {
    let t = tempfile::tempdir().unwrap();
    let reg = Registry::at(t.path().join("spaces")).unwrap();
    assert_eq!(mode(&reg.dir), 0o700);

    // A live space: this process holds its lock.
    let (_live_t, live) = space();
    live.ensure_run_dir().unwrap();
    let _lock = try_lock(&live).unwrap();
    let live_entry = RegistryEntry {
        id: "live".into(),
        dir: live.dir.clone(),
        pid: std::process::id(),
        socket: live.socket.clone(),
        started_at: 1,
    };
    reg.register(&live_entry).unwrap();

    // Its pid is alive but nobody holds its lock.
    let (_free_t, free) = space();
    free.ensure_run_dir().unwrap();
    drop(try_lock(&free).unwrap());
    let free_entry = RegistryEntry {
        id: "free".into(),
        dir: free.dir.clone(),
        ..live_entry.clone()
    };
    reg.register(&free_entry).unwrap();

    // A dead pid (a reaped child).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let (_dead_t, dead) = space();
    let dead_entry = RegistryEntry {
        id: "dead".into(),
        dir: dead.dir.clone(),
        pid: dead_pid,
        ..live_entry.clone()
    };
    reg.register(&dead_entry).unwrap();

    // Garbage.
    fs::write(reg.dir.join("junk.json"), "nope").unwrap();

    assert_eq!(reg.list_running(), vec![live_entry.clone()]);
    let left: Vec<_> = fs::read_dir(&reg.dir).unwrap().collect();
    assert_eq!(left.len(), 1, "pruned entries are removed");

    reg.unregister(&live.dir).unwrap();
    reg.unregister(&live.dir).unwrap();
    assert!(reg.list_running().is_empty());
}

#[test]
fn dir_hash_is_stable() {
    assert_eq!(dir_hash(Path::new("")), "cbf29ce484222325");
    assert_eq!(dir_hash(Path::new("/a")).len(), 16);
    assert_ne!(dir_hash(Path::new("/a")), dir_hash(Path::new("/b")));
}
