//! Closed-loop load generator for a MEW gateway (protocol MEW v0.4).
//!
//! Connects `--clients` WebSocket clients to one space, joins each with its
//! own participant id and token, then sends `--warmup` + `--messages` chat
//! envelopes round-robin from the senders, with at most `--window` envelopes
//! in flight (sent, not yet received by every receiver). Every receiver reads
//! every envelope (the gateway broadcasts); the send time rides in the
//! payload text (`bench:<seq>:<ns since start>:xxxx`) and is compared with
//! the receive time on the same monotonic clock, in the same process.
//!
//! Which deliveries count: with `--count-self auto` (the default) a probe
//! envelope finds out whether the gateway echoes an envelope to its sender;
//! if it does, the sender is one of the receivers (N receivers per envelope),
//! else only the others are (N - 1). `yes`/`no` force it. The latency
//! percentiles are over every counted delivery.
//!
//! Prints one JSON line on stdout (with `--phases`, also a line per phase:
//! `{"phase":"idle_start"}`, `idle_end`, `load_start`, before it). Every run is
//! bounded: `--timeout-secs` overall, `--stall-secs` without progress; a
//! disconnect ends the run. Not a test: it asserts nothing.
//!
//! ```text
//! cargo run --release --example gateway_load -- --url ws://127.0.0.1:8080/ \
//!     --clients 10 --messages 10000 --window 64 --payload 128
//! ```

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Sink = SplitSink<Ws, Message>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum CountSelf {
    /// Probe whether the gateway echoes to the sender.
    Auto,
    /// The sender is one of the receivers (fails if there is no echo).
    Yes,
    /// Only the other participants are receivers; an echo is ignored.
    No,
}

#[derive(Parser, Debug)]
#[command(about = "Closed-loop load generator for a MEW gateway")]
struct Args {
    /// Gateway WebSocket URL (loopback).
    #[arg(long, default_value = "ws://127.0.0.1:8080/")]
    url: String,
    /// WebSocket clients, all in one space.
    #[arg(long, default_value_t = 10)]
    clients: usize,
    /// Measured envelopes (sent in total, not per client); with
    /// `--duration-secs`, the most that are sent.
    #[arg(long, default_value_t = 10_000)]
    messages: u64,
    /// Stop sending this long after the measurement started (then wait for
    /// the envelopes in flight); 0: send all `--messages`.
    #[arg(long, default_value_t = 0.0)]
    duration_secs: f64,
    /// Envelopes sent and delivered before the measurement starts.
    #[arg(long, default_value_t = 0)]
    warmup: u64,
    /// At most this many envelopes in flight (sent, not yet received by all).
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Bytes of padding in each envelope's payload text.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Space id sent in the join.
    #[arg(long, default_value = "bench")]
    space: String,
    /// Client i joins as <participant-prefix><first-index + i> ...
    #[arg(long, default_value = "bench-")]
    participant_prefix: String,
    /// ... with the token <token-prefix><first-index + i>.
    #[arg(long, default_value = "tok-")]
    token_prefix: String,
    #[arg(long, default_value_t = 0)]
    first_index: usize,
    /// Clients that send (round-robin), the first ones; 0: all of them.
    #[arg(long, default_value_t = 0)]
    senders: usize,
    /// Whether the sender's own copy counts as a delivery.
    #[arg(long, value_enum, default_value_t = CountSelf::Auto)]
    count_self: CountSelf,
    /// Seconds to stay connected and idle after the joins (phases idle_start/idle_end).
    #[arg(long, default_value_t = 0.0)]
    idle_secs: f64,
    /// Print a JSON line at each phase (for a driver sampling the gateway).
    #[arg(long)]
    phases: bool,
    /// Hard limit on the whole run.
    #[arg(long, default_value_t = 120.0)]
    timeout_secs: f64,
    /// Give up when no envelope completes for this long.
    #[arg(long, default_value_t = 10.0)]
    stall_secs: f64,
    /// Tokio worker threads (1: a current-thread runtime, one core).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Free text copied into the output.
    #[arg(long)]
    label: Option<String>,
}

/// What one reader collected.
#[derive(Default)]
struct ReaderStats {
    /// Delivery latency (ns) of the measured envelopes this client received.
    latency: Vec<u64>,
    /// Send to last receiver (ns), for the envelopes this client completed.
    completion: Vec<u64>,
}

struct Shared {
    start: Instant,
    total: u64,
    warmup: u64,
    clients: usize,
    senders: usize,
    /// Receivers per envelope; 0 until the load starts.
    expected: AtomicU32,
    count_self: AtomicBool,
    counts: Vec<AtomicU32>,
    completed: AtomicU64,
    /// The reader that completes this many envelopes wakes the sender up.
    target: AtomicU64,
    last_completion_ns: AtomicU64,
    window: Semaphore,
    progress: Notify,
    errors: AtomicU64,
    disconnects: AtomicU64,
    duplicates: AtomicU64,
    closing: AtomicBool,
    probe_others: AtomicU32,
    probe_self: AtomicBool,
    notes: Mutex<Vec<String>>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn note(&self, s: String) {
        if let Ok(mut n) = self.notes.lock()
            && n.len() < 10
        {
            n.push(s);
        }
    }
}

/// `bench:<seq>:<ns>:` at the start of the payload text.
fn parse_marker(text: &str) -> Option<(u64, u64)> {
    let at = text.find("\"bench:")? + 7;
    let mut it = text[at..].splitn(3, ':');
    let seq = it.next()?.parse().ok()?;
    let ts = it.next()?.parse().ok()?;
    Some((seq, ts))
}

async fn reader(
    me: usize,
    mut stream: SplitStream<Ws>,
    sh: Arc<Shared>,
    stats: Arc<Mutex<ReaderStats>>,
) {
    let why = loop {
        let msg = match stream.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => break format!("read error: {e}"),
            None => break "stream ended".to_string(),
        };
        let text = match &msg {
            Message::Text(t) => t.as_str(),
            Message::Close(f) => break format!("close frame from the gateway: {f:?}"),
            _ => continue,
        };
        if text.contains("system/error") {
            sh.errors.fetch_add(1, Ordering::Relaxed);
            sh.note(format!("client {me}: {}", &text[..text.len().min(300)]));
            continue;
        }
        if let Some((seq, ts)) = parse_marker(text) {
            let now = sh.now_ns();
            let expected = sh.expected.load(Ordering::Acquire);
            if expected == 0 || seq >= sh.total {
                continue;
            }
            let sender = (seq % sh.senders as u64) as usize;
            if sender == me && !sh.count_self.load(Ordering::Relaxed) {
                continue;
            }
            let n = sh.counts[seq as usize].fetch_add(1, Ordering::AcqRel) + 1;
            let lat = now.saturating_sub(ts);
            if n > expected {
                sh.duplicates.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let measured = seq >= sh.warmup;
            if n == expected || measured {
                let mut st = match stats.lock() {
                    Ok(g) => g,
                    Err(p) => p.into_inner(),
                };
                if measured {
                    st.latency.push(lat);
                }
                if n == expected && measured {
                    st.completion.push(lat);
                }
            }
            if n == expected {
                sh.last_completion_ns.fetch_max(now, Ordering::AcqRel);
                let done = sh.completed.fetch_add(1, Ordering::AcqRel) + 1;
                sh.window.add_permits(1);
                if done == sh.warmup || done == sh.target.load(Ordering::Acquire) {
                    sh.progress.notify_one();
                }
            }
        } else if text.contains("\"probe:") {
            if me == 0 {
                sh.probe_self.store(true, Ordering::Release);
            } else {
                sh.probe_others.fetch_add(1, Ordering::AcqRel);
            }
        }
    };
    if !sh.closing.load(Ordering::Acquire) {
        sh.disconnects.fetch_add(1, Ordering::AcqRel);
        sh.note(format!("client {me} disconnected: {why}"));
        sh.progress.notify_one();
    }
}

async fn join(args: &Args, i: usize) -> Result<Ws, String> {
    let id = args.first_index + i;
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(args.url.as_str(), None, true)
        .await
        .map_err(|e| format!("client {i}: connect to {}: {e}", args.url))?;
    let join = json!({
        "type": "join",
        "participantId": format!("{}{id}", args.participant_prefix),
        "space": args.space,
        "token": format!("{}{id}", args.token_prefix),
    });
    ws.send(Message::text(join.to_string()))
        .await
        .map_err(|e| format!("client {i}: send join: {e}"))?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => {
                if t.as_str().contains("system/welcome") {
                    return Ok(ws);
                }
                if t.as_str().contains("system/error") {
                    return Err(format!("client {i}: join refused: {}", t.as_str()));
                }
            }
            Some(Ok(Message::Close(f))) => {
                return Err(format!("client {i}: closed on join: {f:?}"));
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => return Err(format!("client {i}: waiting for welcome: {e}")),
            None => return Err(format!("client {i}: connection ended before the welcome")),
        }
    }
}

fn phase(on: bool, name: &str) {
    if on {
        let mut out = std::io::stdout().lock();
        // a driver that went away is not this program's problem
        let _ = writeln!(out, "{}", json!({ "phase": name }));
        let _ = out.flush();
    }
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1e3)
}

fn lat_summary(mut v: Vec<u64>) -> Value {
    v.sort_unstable();
    let mean = if v.is_empty() {
        None
    } else {
        Some(v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64 / 1e3)
    };
    json!({
        "n": v.len(),
        "p50": percentile(&v, 50.0),
        "p90": percentile(&v, 90.0),
        "p99": percentile(&v, 99.0),
        "p999": percentile(&v, 99.9),
        "max": v.last().map(|&x| x as f64 / 1e3),
        "mean": mean,
    })
}

enum Wait {
    Done,
    Abort(&'static str),
}

struct Limits {
    deadline: Instant,
    stall: Duration,
}

impl Limits {
    /// Why the run must stop now, if it must.
    fn check(&self, sh: &Shared, last_progress: &mut (u64, Instant)) -> Option<&'static str> {
        if sh.disconnects.load(Ordering::Acquire) > 0 {
            return Some("disconnect");
        }
        let now = Instant::now();
        if now >= self.deadline {
            return Some("timeout");
        }
        let done = sh.completed.load(Ordering::Acquire);
        if done != last_progress.0 {
            *last_progress = (done, now);
        } else if now.duration_since(last_progress.1) >= self.stall {
            return Some("stalled");
        }
        None
    }
}

async fn wait_completed(sh: &Shared, target: u64, lim: &Limits) -> Wait {
    let mut last = (sh.completed.load(Ordering::Acquire), Instant::now());
    loop {
        if sh.completed.load(Ordering::Acquire) >= target {
            return Wait::Done;
        }
        if let Some(why) = lim.check(sh, &mut last) {
            return Wait::Abort(why);
        }
        let _ = tokio::time::timeout(Duration::from_millis(100), sh.progress.notified()).await;
    }
}

async fn run(args: Args) -> Value {
    let started = Instant::now();
    let lim = Limits {
        deadline: started + Duration::from_secs_f64(args.timeout_secs),
        stall: Duration::from_secs_f64(args.stall_secs),
    };
    let mut out = json!({
        "label": args.label,
        "url": args.url,
        "clients": args.clients,
        "messages": args.messages,
        "warmup": args.warmup,
        "duration_secs": args.duration_secs,
        "window": args.window,
        "payload_bytes": args.payload,
    });
    let fail = |mut out: Value, e: String| {
        out["error"] = json!(e);
        out
    };
    if args.clients == 0 || args.window == 0 {
        return fail(out, "--clients and --window must be at least 1".into());
    }
    let senders = if args.senders == 0 {
        args.clients
    } else {
        args.senders.min(args.clients)
    };
    let total = args.warmup + args.messages;
    let sh = Arc::new(Shared {
        start: Instant::now(),
        total,
        warmup: args.warmup,
        clients: args.clients,
        senders,
        expected: AtomicU32::new(0),
        count_self: AtomicBool::new(false),
        counts: (0..total).map(|_| AtomicU32::new(0)).collect(),
        completed: AtomicU64::new(0),
        target: AtomicU64::new(total),
        last_completion_ns: AtomicU64::new(0),
        window: Semaphore::new(args.window),
        progress: Notify::new(),
        errors: AtomicU64::new(0),
        disconnects: AtomicU64::new(0),
        duplicates: AtomicU64::new(0),
        closing: AtomicBool::new(false),
        probe_others: AtomicU32::new(0),
        probe_self: AtomicBool::new(false),
        notes: Mutex::new(Vec::new()),
    });

    // -- join, one client at a time (each join is broadcast to the others)
    let mut sinks: Vec<Sink> = Vec::with_capacity(args.clients);
    let mut stats = Vec::with_capacity(args.clients);
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let left = lim.deadline.saturating_duration_since(Instant::now());
        let ws = match tokio::time::timeout(left.min(Duration::from_secs(15)), join(&args, i)).await
        {
            Ok(Ok(ws)) => ws,
            Ok(Err(e)) => return fail(out, e),
            Err(_) => return fail(out, format!("client {i}: no welcome within 15 s")),
        };
        let (sink, stream) = ws.split();
        sinks.push(sink);
        let st = Arc::new(Mutex::new(ReaderStats::default()));
        stats.push(st.clone());
        tasks.push(tokio::spawn(reader(i, stream, sh.clone(), st)));
    }
    out["connect_s"] = json!(started.elapsed().as_secs_f64());

    // -- probe: does the sender get its own envelope back?
    let probe = json!({"protocol": "mew/v0.4", "id": "probe-1", "kind": "chat",
                       "payload": {"text": format!("probe:{}", std::process::id())}});
    if let Err(e) = sinks[0].send(Message::text(probe.to_string())).await {
        return fail(out, format!("client 0: send probe: {e}"));
    }
    let others = (args.clients - 1) as u32;
    let probe_deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < probe_deadline
        && (sh.probe_others.load(Ordering::Acquire) < others
            || !sh.probe_self.load(Ordering::Acquire))
    {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    if sh.probe_others.load(Ordering::Acquire) >= others && !sh.probe_self.load(Ordering::Acquire) {
        // everyone else has it: give a late echo a little longer
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let echo = sh.probe_self.load(Ordering::Acquire);
    let got = sh.probe_others.load(Ordering::Acquire);
    out["echo_to_sender"] = json!(echo);
    out["probe_receivers_other_than_sender"] = json!(got);
    if got < others {
        return fail(
            out,
            format!("probe reached {got} of the {others} other clients in 5 s"),
        );
    }
    let count_self = match args.count_self {
        CountSelf::Auto => echo,
        CountSelf::Yes => true,
        CountSelf::No => false,
    };
    if count_self && !echo {
        return fail(
            out,
            "--count-self yes, but the gateway does not echo to the sender".into(),
        );
    }
    let expected = args.clients as u32 - u32::from(!count_self);
    if expected == 0 {
        return fail(
            out,
            "no receivers: one client and the gateway does not echo to it".into(),
        );
    }
    out["receivers_per_msg"] = json!(expected);
    out["deliveries_counted"] = json!(if count_self {
        "every participant, the sender included"
    } else {
        "the participants other than the sender"
    });

    // -- idle
    if args.idle_secs > 0.0 {
        phase(args.phases, "idle_start");
        tokio::time::sleep(Duration::from_secs_f64(args.idle_secs)).await;
        phase(args.phases, "idle_end");
    }
    if sh.disconnects.load(Ordering::Acquire) > 0 {
        out["disconnects"] = json!(sh.disconnects.load(Ordering::Acquire));
        out["notes"] = json!(*sh.notes.lock().unwrap_or_else(|p| p.into_inner()));
        return fail(out, "a client was disconnected while idle".into());
    }

    // -- load
    sh.count_self.store(count_self, Ordering::Release);
    sh.expected.store(expected, Ordering::Release);
    let pad = "x".repeat(args.payload);
    let mut abort: Option<&'static str> = None;
    let mut t0 = sh.now_ns();
    let mut sent = 0u64;
    let mut stop_at = None;
    let duration = (args.duration_secs > 0.0).then(|| Duration::from_secs_f64(args.duration_secs));
    if args.warmup == 0 {
        phase(args.phases, "load_start");
        stop_at = duration.map(|d| Instant::now() + d);
    }
    let mut last = (0u64, Instant::now());
    'send: for seq in 0..total {
        if seq == args.warmup && args.warmup > 0 {
            if let Wait::Abort(why) = wait_completed(&sh, args.warmup, &lim).await {
                abort = Some(why);
                break;
            }
            phase(args.phases, "load_start");
            t0 = sh.now_ns();
            stop_at = duration.map(|d| Instant::now() + d);
        }
        if stop_at.is_some_and(|t| Instant::now() >= t) {
            break;
        }
        loop {
            match tokio::time::timeout(Duration::from_millis(100), sh.window.acquire()).await {
                Ok(Ok(p)) => {
                    p.forget();
                    break;
                }
                Ok(Err(_)) => unreachable!("the window semaphore is never closed"),
                Err(_) => {
                    if let Some(why) = lim.check(&sh, &mut last) {
                        abort = Some(why);
                        break 'send;
                    }
                }
            }
        }
        let from = (seq % senders as u64) as usize;
        let text = format!("bench:{seq}:{}:{pad}", sh.now_ns());
        let env = json!({"protocol": "mew/v0.4", "id": format!("m-{seq}"), "kind": "chat",
                         "payload": {"text": text}});
        if let Err(e) = sinks[from].send(Message::text(env.to_string())).await {
            sh.note(format!("client {from}: send: {e}"));
            sh.errors.fetch_add(1, Ordering::Relaxed);
            abort = Some("send failed");
            break;
        }
        sent += 1;
    }
    sh.target.store(sent, Ordering::Release);
    if abort.is_none()
        && let Wait::Abort(why) = wait_completed(&sh, sent, &lim).await
    {
        abort = Some(why);
    }
    let end = if abort.is_none() {
        sh.last_completion_ns.load(Ordering::Acquire)
    } else {
        sh.now_ns()
    };

    // -- results (before closing: a close is not a disconnect)
    sh.closing.store(true, Ordering::Release);
    let completed = sh.completed.load(Ordering::Acquire);
    let measured_done = completed.saturating_sub(args.warmup);
    let elapsed = end.saturating_sub(t0) as f64 / 1e9;
    let mut lat = Vec::new();
    let mut comp = Vec::new();
    for st in &stats {
        let mut g = st.lock().unwrap_or_else(|p| p.into_inner());
        lat.append(&mut g.latency);
        comp.append(&mut g.completion);
    }
    let delivered: u64 = sh.counts[..sent as usize]
        .iter()
        .map(|c| u64::from(c.load(Ordering::Acquire).min(expected)))
        .sum();
    let measured_deliveries = lat.len() as u64;
    out["sent"] = json!(sent);
    out["measured"] = json!(measured_done);
    out["completed"] = json!(completed);
    out["missing_deliveries"] = json!(sent * u64::from(expected) - delivered);
    out["duplicates"] = json!(sh.duplicates.load(Ordering::Acquire));
    out["elapsed_s"] = json!(elapsed);
    out["msgs_per_s"] = json!(if elapsed > 0.0 {
        measured_done as f64 / elapsed
    } else {
        0.0
    });
    out["deliveries_per_s"] = json!(if elapsed > 0.0 {
        measured_deliveries as f64 / elapsed
    } else {
        0.0
    });
    out["latency_us"] = lat_summary(lat);
    out["completion_us"] = lat_summary(comp);
    out["errors"] = json!(sh.errors.load(Ordering::Acquire));
    out["disconnects"] = json!(sh.disconnects.load(Ordering::Acquire));
    out["aborted"] = json!(abort);
    out["notes"] = json!(*sh.notes.lock().unwrap_or_else(|p| p.into_inner()));
    out["clients_connected"] = json!(sh.clients);

    // -- close politely, briefly
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        for s in sinks.iter_mut() {
            let _ = s.send(Message::Close(None)).await;
        }
    })
    .await;
    for t in tasks {
        t.abort();
    }
    out
}

fn main() {
    let args = Args::parse();
    let rt = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()
    }
    .expect("cannot build the tokio runtime");
    let out = rt.block_on(run(args));
    let failed = out.get("error").is_some();
    println!("{out}");
    rt.shutdown_timeout(Duration::from_millis(500));
    std::process::exit(if failed { 1 } else { 0 });
}
