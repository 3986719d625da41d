//! The gateway's files: `envelope-history.jsonl`, `capability-decisions.jsonl`
//! (upstream's record format, field for field) and each participant's
//! `output_log`. One thread writes them all, so a slow disk never stalls a
//! connection; it flushes whenever it has nothing more to write, so readers
//! (`tail -f`, the e2e checks) see a record as soon as it is made.
//!
//! Every file is created owner-only (0600) and opened with `O_NOFOLLOW`: a
//! symlink planted where a log goes is refused, not followed. Records wait in
//! one shared batch that the writer takes whole each time it wakes; past
//! 32 MiB waiting, the gateway waits for the disk (backpressure) rather than
//! grow without bound.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde_json::Value;

use super::config::LogSwitches;

/// Wake-ups and syncs in flight (at most one wake-up is ever queued).
const QUEUE: usize = 64;

pub(crate) const ENVELOPE_FILE: &str = "envelope-history.jsonl";
pub(crate) const CAPABILITY_FILE: &str = "capability-decisions.jsonl";

/// Records waiting for the writer. The hub appends to it; the writer takes
/// all of it whenever it wakes, so under load many messages go out in one
/// write and one wake-up (measured: one channel send per record made logging
/// the gateway's largest cost).
#[derive(Default)]
struct Batch {
    envelopes: String,
    capabilities: String,
    outputs: Vec<(Arc<PathBuf>, String)>,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.envelopes.is_empty() && self.capabilities.is_empty() && self.outputs.is_empty()
    }

    fn bytes(&self) -> usize {
        self.envelopes.len()
            + self.capabilities.len()
            + self.outputs.iter().map(|(_, t)| t.len()).sum::<usize>()
    }
}

/// Past this many waiting bytes the hub waits for the writer (a disk that
/// cannot keep up slows the gateway rather than growing its memory).
const BATCH_MAX: usize = 32 << 20;

#[derive(Default)]
struct Shared {
    batch: std::sync::Mutex<Batch>,
    /// Signalled each time the writer takes the batch.
    taken: std::sync::Condvar,
    /// A wake-up is on its way to the writer.
    woken: std::sync::atomic::AtomicBool,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Batch> {
        self.batch
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(&self) -> Batch {
        let b = std::mem::take(&mut *self.lock());
        self.taken.notify_all();
        b
    }
}

enum Msg {
    /// Records are waiting in the shared batch.
    Wake,
    Sync(std::sync::mpsc::Sender<()>),
}

/// The sending side; cheap to clone. Without a directory (logging off) the
/// JSONL records are dropped at once, output logs are still written.
#[derive(Clone)]
pub(crate) struct Journal {
    tx: SyncSender<Msg>,
    switches: LogSwitches,
    shared: Arc<Shared>,
}

impl Journal {
    /// Start the writer thread for logs in `dir`.
    pub(crate) fn start(dir: PathBuf, switches: LogSwitches) -> std::io::Result<Journal> {
        if switches.envelopes || switches.capabilities {
            crate::logs::create_log_dir(&dir)?;
        }
        let (tx, rx) = sync_channel(QUEUE);
        let shared = Arc::new(Shared::default());
        let theirs = shared.clone();
        std::thread::Builder::new()
            .name("mew-gateway-journal".into())
            .spawn(move || writer(&dir, &rx, &theirs))?;
        Ok(Journal {
            tx,
            switches,
            shared,
        })
    }

    fn with_batch(&self, f: impl FnOnce(&mut Batch)) {
        f(&mut self.shared.lock());
    }

    /// Wake the writer for what was gathered (the gateway calls this after
    /// every message it handles). One wake-up covers everything gathered
    /// until the writer takes it; past `BATCH_MAX` bytes this waits for it.
    pub(crate) fn flush(&self) {
        let mut b = self.shared.lock();
        if b.is_empty() {
            return;
        }
        if !self
            .shared
            .woken
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            // try_send: a wake-up already queued (full channel) is as good.
            let _ = self.tx.try_send(Msg::Wake);
        }
        while b.bytes() > BATCH_MAX {
            b = self
                .shared
                .taken
                .wait(b)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
    }

    pub(crate) fn envelopes_on(&self) -> bool {
        self.switches.envelopes
    }

    pub(crate) fn capabilities_on(&self) -> bool {
        self.switches.capabilities
    }

    /// Add envelope-history records: `f` appends whole lines to the batch.
    pub(crate) fn envelopes_with(&self, f: impl FnOnce(&mut String)) {
        if self.switches.envelopes {
            self.with_batch(|b| f(&mut b.envelopes));
        }
    }

    /// Add one capability-decisions record.
    pub(crate) fn capability(&self, line: &str) {
        if self.switches.capabilities {
            self.with_batch(|b| {
                b.capabilities.push_str(line);
                b.capabilities.push('\n');
            });
        }
    }

    /// Append `line` (one JSON document, no newline) to an output log.
    pub(crate) fn output(&self, path: &Arc<PathBuf>, line: &str) {
        self.with_batch(|b| match b.outputs.last_mut() {
            Some((p, text)) if Arc::ptr_eq(p, path) => {
                text.push_str(line);
                text.push('\n');
            }
            _ => b.outputs.push((path.clone(), format!("{line}\n"))),
        });
    }

    /// Wait until everything gathered or sent so far is written and flushed.
    pub(crate) fn sync(&self) {
        self.flush();
        let (tx, rx) = std::sync::mpsc::channel();
        if self.tx.send(Msg::Sync(tx)).is_ok() {
            let _ = rx.recv();
        }
    }
}

/// Open `path` for appending: created 0600, never through a symlink.
pub(crate) fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

struct Sink {
    file: Option<BufWriter<File>>,
    failed: bool,
}

impl Sink {
    fn new() -> Sink {
        Sink {
            file: None,
            failed: false,
        }
    }

    /// Append `text`: whole lines, each with its newline.
    fn write(&mut self, path: &Path, text: &str) {
        if self.file.is_none() && !self.failed {
            if let Some(parent) = path.parent() {
                let _ = crate::logs::create_log_dir(parent);
            }
            match open_append(path) {
                Ok(f) => self.file = Some(BufWriter::with_capacity(64 << 10, f)),
                Err(e) => {
                    self.failed = true;
                    tracing::warn!("cannot write {}: {e}", path.display());
                }
            }
        }
        if let Some(f) = &mut self.file {
            let ok = f.write_all(text.as_bytes());
            if let Err(e) = ok {
                tracing::warn!("cannot write {}: {e}", path.display());
                self.file = None;
                self.failed = true;
            }
        }
    }

    fn flush(&mut self) {
        if let Some(f) = &mut self.file {
            let _ = f.flush();
        }
    }
}

fn writer(dir: &Path, rx: &Receiver<Msg>, shared: &Shared) {
    let env_path = dir.join(ENVELOPE_FILE);
    let cap_path = dir.join(CAPABILITY_FILE);
    let mut env = Sink::new();
    let mut cap = Sink::new();
    let mut outputs: HashMap<Arc<PathBuf>, Sink> = HashMap::new();
    loop {
        let msg = rx.recv();
        // Everything waiting goes out now, whatever woke us (a wake-up that
        // arrives after this take finds the records gathered since).
        shared
            .woken
            .store(false, std::sync::atomic::Ordering::Release);
        let b = shared.take();
        if !b.envelopes.is_empty() {
            env.write(&env_path, &b.envelopes);
        }
        if !b.capabilities.is_empty() {
            cap.write(&cap_path, &b.capabilities);
        }
        for (path, text) in b.outputs {
            outputs
                .entry(path.clone())
                .or_insert_with(Sink::new)
                .write(&path, &text);
        }
        env.flush();
        cap.flush();
        outputs.values_mut().for_each(Sink::flush);
        match msg {
            Ok(Msg::Wake) => {}
            Ok(Msg::Sync(done)) => {
                let _ = done.send(());
            }
            Err(_) => return,
        }
    }
}

/// Upstream's envelope-history record: `timestamp, event, id, envelope,
/// participant, space_id, direction, transport, metadata`, absent fields
/// left out. `envelope` is already serialised (it is shared by every
/// delivery of one envelope).
pub(crate) struct EnvelopeRecord<'a> {
    pub event: &'a str,
    pub id: Option<&'a str>,
    pub envelope: &'a str,
    pub participant: &'a str,
    pub space: &'a str,
    pub direction: &'a str,
    pub transport: &'a str,
    /// Already serialised (a JSON object), shared by a fan-out's records.
    pub metadata: Option<&'a str>,
}

/// One record as a line (tests; the journal appends with [`push_envelope_line`]).
#[cfg(test)]
fn envelope_line(now: &str, r: &EnvelopeRecord<'_>) -> String {
    let mut s = String::with_capacity(r.envelope.len() + 200);
    push_envelope_line(&mut s, now, r);
    s
}

/// Append the record and its newline to `s`.
pub(crate) fn push_envelope_line(s: &mut String, now: &str, r: &EnvelopeRecord<'_>) {
    s.reserve(r.envelope.len() + 200);
    s.push_str("{\"timestamp\":");
    push_str(s, now);
    s.push_str(",\"event\":");
    push_str(s, r.event);
    if let Some(id) = r.id {
        s.push_str(",\"id\":");
        push_str(s, id);
    }
    s.push_str(",\"envelope\":");
    s.push_str(r.envelope);
    s.push_str(",\"participant\":");
    push_str(s, r.participant);
    s.push_str(",\"space_id\":");
    push_str(s, r.space);
    s.push_str(",\"direction\":");
    push_str(s, r.direction);
    s.push_str(",\"transport\":");
    push_str(s, r.transport);
    if let Some(m) = r.metadata.filter(|m| !m.is_empty() && *m != "{}") {
        s.push_str(",\"metadata\":");
        s.push_str(m);
    }
    s.push_str("}\n");
}

/// Upstream's capability-decisions record.
pub(crate) struct DecisionRecord<'a> {
    pub envelope_id: Option<&'a str>,
    pub participant: &'a str,
    pub space: &'a str,
    pub allowed: bool,
    pub required: &'a str,
    pub matched: Option<&'a Value>,
    pub matched_source: Option<&'a str>,
    pub granted: &'a [Value],
    pub metadata: &'a Value,
}

#[cfg(test)]
#[test]
fn decision_record_matches_upstreams_fields() {
    let granted = vec![serde_json::json!({"kind": "chat"})];
    let meta = serde_json::json!({"source": "websocket"});
    let line = decision_line(
        "T",
        &DecisionRecord {
            envelope_id: Some("e1"),
            participant: "p",
            space: "s",
            allowed: true,
            required: "chat",
            matched: Some(&granted[0]),
            matched_source: Some("static"),
            granted: &granted,
            metadata: &meta,
        },
    );
    assert_eq!(
        line,
        r#"{"timestamp":"T","event":"capability_check","envelope_id":"e1","participant":"p","space_id":"s","result":"allowed","required_capability":"chat","matched_capability":{"kind":"chat"},"matched_source":"static","granted_capabilities":[{"kind":"chat"}],"metadata":{"source":"websocket"}}"#
    );
}

pub(crate) fn decision_line(now: &str, r: &DecisionRecord<'_>) -> String {
    let mut s = String::with_capacity(256);
    s.push_str("{\"timestamp\":");
    push_str(&mut s, now);
    s.push_str(",\"event\":\"capability_check\"");
    if let Some(id) = r.envelope_id {
        s.push_str(",\"envelope_id\":");
        push_str(&mut s, id);
    }
    s.push_str(",\"participant\":");
    push_str(&mut s, r.participant);
    s.push_str(",\"space_id\":");
    push_str(&mut s, r.space);
    s.push_str(if r.allowed {
        ",\"result\":\"allowed\""
    } else {
        ",\"result\":\"denied\""
    });
    s.push_str(",\"required_capability\":");
    push_str(&mut s, r.required);
    if let Some(c) = r.matched {
        s.push_str(",\"matched_capability\":");
        push_json(&mut s, c);
    }
    if let Some(src) = r.matched_source {
        s.push_str(",\"matched_source\":");
        push_str(&mut s, src);
    }
    s.push_str(",\"granted_capabilities\":");
    push_json(&mut s, r.granted);
    if r.metadata.as_object().is_some_and(|o| !o.is_empty()) {
        s.push_str(",\"metadata\":");
        push_json(&mut s, r.metadata);
    }
    s.push('}');
    s
}

/// Serialise `v` onto the end of `s`, with no intermediate string.
fn push_json(s: &mut String, v: &(impl serde::Serialize + ?Sized)) {
    let mut bytes = std::mem::take(s).into_bytes();
    let _ = serde_json::to_writer(&mut bytes, v);
    // serde_json writes UTF-8 only; should that ever fail, keep what was there.
    *s = String::from_utf8(bytes).unwrap_or_else(|e| {
        let mut b = e.into_bytes();
        while std::str::from_utf8(&b).is_err() {
            b.pop();
        }
        String::from_utf8(b).unwrap_or_default()
    });
}

/// `v` as a JSON string. Ids, names and times need no escaping and are
/// copied as they are; anything else goes through serde_json.
fn push_str(s: &mut String, v: &str) {
    if v.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        s.push('"');
        s.push_str(v);
        s.push('"');
    } else {
        s.push_str(&Value::from(v).to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_record_field_order() {
        let meta = serde_json::json!({"type": "system/welcome"}).to_string();
        let line = envelope_line(
            "2026-01-01T00:00:00.000Z",
            &EnvelopeRecord {
                event: "delivered",
                id: Some("m\"1"),
                envelope: "{\"id\":\"m\\\"1\"}",
                participant: "p",
                space: "s",
                direction: "outbound",
                transport: "websocket",
                metadata: Some(meta.as_str()),
            },
        );
        assert_eq!(
            line,
            "{\"timestamp\":\"2026-01-01T00:00:00.000Z\",\"event\":\"delivered\",\"id\":\"m\\\"1\",\"envelope\":{\"id\":\"m\\\"1\"},\"participant\":\"p\",\"space_id\":\"s\",\"direction\":\"outbound\",\"transport\":\"websocket\",\"metadata\":{\"type\":\"system/welcome\"}}\n"
        );
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["envelope"]["id"], "m\"1");
    }

    #[test]
    fn files_are_private_and_symlinks_refused() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let j = Journal::start(
            t.path().to_path_buf(),
            LogSwitches {
                envelopes: true,
                capabilities: true,
            },
        )
        .unwrap();
        j.envelopes_with(|s| s.push_str("{\"a\":1}\n"));
        let target = t.path().join("target");
        std::fs::write(&target, "keep\n").unwrap();
        let link = Arc::new(t.path().join("out.log"));
        std::os::unix::fs::symlink(&target, &*link).unwrap();
        j.output(&link, "{\"b\":2}");
        j.sync();
        let p = t.path().join(ENVELOPE_FILE);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{\"a\":1}\n");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep\n");
    }
}
