//! `mew bridge start`: an MCP server on stdio joined to a space.
//!
//! The bridge starts the server ([`super::mcp`]), initializes it, learns
//! its tools and resources, then joins the space through [`Link`]. An
//! `mcp/request` for the bridge becomes a JSON-RPC request to the server;
//! the answer goes back as `mcp/response` to the requester. See
//! `docs/bridge.md`.
//!
//! Exit status: 0 after SIGTERM/SIGINT or `participant/shutdown`; 1 when the
//! MCP server cannot start, does not initialize in time, or exits, and when
//! the gateway link ends for good; 2 for bad flags.

use std::collections::HashMap;
use std::ffi::OsString;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::time::Instant;

use super::mcp::{self, Incoming, Server, ServerSpec};
use super::{Link, LinkEnd, LinkEvent, LinkSender, Reconnect, Target};
use crate::cli::BridgeStartArgs;
use crate::cmd::{Error, Outcome, USAGE};
use crate::gateway::capability;

/// Who says the bridge's failures.
const WHO: &str = "mew bridge";
/// The MCP protocol version the bridge asks for (the server may answer with another).
const MCP_PROTOCOL_VERSION: &str = "2025-06-18";
/// Requests forwarded to the server and not yet answered, at most.
const MAX_PENDING: usize = 1024;
/// How long the server has to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// The longest chat text made from an MCP notification.
const MAX_CHAT: usize = 64 << 10;
/// The MEW protocol of the envelopes the bridge sends.
const MEW_PROTOCOL: &str = "mew/v0.4";
/// JSON-RPC error codes.
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INTERNAL_ERROR: i64 = -32603;
/// A request the bridge could not pass on (the server gone, too many in flight).
const SERVER_UNAVAILABLE: i64 = -32000;

/// Everything the flags say, checked. (No `Debug`: it holds the token.)
struct Config {
    target: Target,
    reconnect: Reconnect,
    server: ServerSpec,
    init_timeout: Duration,
    request_timeout: Option<Duration>,
    /// Advertised in the join (the gateway's welcome decides).
    capabilities: Vec<Value>,
}

/// `mew bridge start`; a failure to start is `mew bridge: <why>` (from
/// then on, what happens is the bridge's log on stderr).
pub fn run(args: BridgeStartArgs) -> Outcome {
    let config = Config::from_args(args).map_err(|e| Error::said(WHO, USAGE, e))?;
    let rt = super::command_runtime(WHO)?;
    rt.block_on(bridge(config))
}

impl Config {
    fn from_args(a: BridgeStartArgs) -> Result<Config, String> {
        let token =
            super::token_from(a.token.as_deref(), Some(&a.participant_id)).ok_or_else(|| {
                format!(
                    "no token: give --token, or set $MEW_TOKEN or ${}",
                    crate::config::token_env_name(&a.participant_id)
                )
            })?;
        // `-m CMD [--mcp-args a,b] [-- more args]`, or `-- CMD args`.
        let mut argv: Vec<String> = Vec::new();
        if let Some(cmd) = a.mcp_command {
            argv.push(cmd);
            if let Some(list) = a.mcp_args.as_deref().filter(|s| !s.is_empty()) {
                argv.extend(list.split(',').map(str::to_owned));
            }
            argv.extend(a.command);
        } else {
            if a.mcp_args.as_deref().is_some_and(|s| !s.is_empty()) {
                return Err("--mcp-args needs --mcp-command".into());
            }
            argv = a.command;
        }
        if argv.first().is_none_or(String::is_empty) {
            return Err(
                "no MCP server command: give --mcp-command CMD, or the command after `--`".into(),
            );
        }
        let mut env = Vec::new();
        if let Some(list) = a.mcp_env.as_deref().filter(|s| !s.is_empty()) {
            for pair in list.split(',') {
                match pair.split_once('=') {
                    Some((k, v)) if !k.is_empty() => env.push((k.into(), v.into())),
                    _ => return Err(format!("--mcp-env: `{pair}` is not KEY=VALUE")),
                }
            }
        }
        let capabilities = match a.capabilities.as_deref() {
            None => Vec::new(),
            Some(text) => match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(caps)) => caps,
                Ok(Value::Object(cap)) => vec![Value::Object(cap)],
                Ok(_) => return Err("--capabilities: expected a JSON array of capabilities".into()),
                Err(e) => return Err(format!("--capabilities is not JSON: {e}")),
            },
        };
        if let Some(bad) = capabilities.iter().find(|c| !capability::is_valid(c)) {
            return Err(format!(
                "--capabilities: {bad} is not a capability (an object with a string kind)"
            ));
        }
        let program: OsString = argv[0].clone().into();
        let args: Vec<OsString> = argv[1..].iter().map(Into::into).collect();
        // The bridge's own tokens are not the server's business.
        let env_remove = std::env::vars_os()
            .map(|(k, _)| k)
            .filter(|k| {
                k.to_str()
                    .is_some_and(|k| k == "MEW_TOKEN" || k.starts_with("MEW_TOKEN_"))
            })
            .collect();
        Ok(Config {
            target: Target {
                url: a.gateway,
                space: a.space,
                participant_id: Some(a.participant_id.clone()),
                token,
            },
            reconnect: Reconnect {
                enabled: a.reconnect,
                max_attempts: Some(a.max_reconnects),
            },
            server: ServerSpec {
                program,
                args,
                env,
                env_remove,
                cwd: a.mcp_cwd,
                stderr_prefix: format!("[{} mcp] ", a.participant_id),
            },
            init_timeout: Duration::from_millis(a.init_timeout.max(1)),
            request_timeout: (a.request_timeout > 0)
                .then(|| Duration::from_millis(a.request_timeout)),
            capabilities,
        })
    }

    /// What the join advertises: the flag's capabilities plus upstream's
    /// defaults (`chat`, `mcp/response`), deduplicated.
    fn join_capabilities(&self) -> Vec<Value> {
        let mut out: Vec<Value> = Vec::new();
        let defaults = [
            json!({"id": "chat", "kind": "chat"}),
            json!({"id": "mcp-response", "kind": "mcp/response"}),
        ];
        for c in self.capabilities.iter().chain(defaults.iter()) {
            if !out.contains(c) {
                out.push(c.clone());
            }
        }
        out
    }
}

/// How the bridge ends.
enum End {
    Signal(&'static str),
    ShutdownRequested(String),
    ServerExited(String),
    ServerStdoutClosed,
    Link(String),
}

/// Who is waiting for an answer from the server.
enum Waiter {
    /// A MEW participant's `mcp/request`.
    Mew { from: String, envelope_id: Value },
    /// The bridge itself (a refresh of the tool list).
    Bridge,
}

struct Pending {
    waiter: Waiter,
    method: String,
    deadline: Option<Instant>,
}

struct Bridge {
    me: String,
    link: LinkSender,
    /// From the latest welcome; empty until the first.
    caps: Vec<Value>,
    welcomed: bool,
    next_rpc: u64,
    pending: HashMap<u64, Pending>,
    request_timeout: Option<Duration>,
    id_prefix: String,
    seq: u64,
}

async fn bridge(config: Config) -> Outcome {
    let mut sigterm = signal(SignalKind::terminate());
    let mut sigint = signal(SignalKind::interrupt());
    let (Ok(sigterm), Ok(sigint)) = (sigterm.as_mut(), sigint.as_mut()) else {
        return Err(Error::said(WHO, 1, "cannot handle signals"));
    };
    let me = config.target.participant_id.clone().unwrap_or_default();
    let command = std::iter::once(&config.server.program)
        .chain(&config.server.args)
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    eprintln!("mew bridge: {me}: starting the MCP server: {command}");
    let (mut server, mut incoming) = Server::spawn(&config.server).map_err(|e| {
        let cwd = config
            .server
            .cwd
            .as_ref()
            .map(|d| format!(" (in {})", d.display()))
            .unwrap_or_default();
        Error::said(
            WHO,
            1,
            format!("cannot start the MCP server `{command}`{cwd}: {e}"),
        )
    })?;

    // Initialize: before joining, as upstream, so the space never sees a
    // bridge that cannot answer.
    let init = tokio::select! {
        r = initialize(&mut server, &mut incoming, config.init_timeout) => r,
        _ = sigterm.recv() => Err("interrupted by SIGTERM".to_owned()),
        _ = sigint.recv() => Err("interrupted by SIGINT".to_owned()),
    };
    let next_rpc = match init {
        Ok(next) => next,
        Err(e) => {
            eprintln!("mew bridge: {me}: the MCP server did not initialize: {e}");
            let how = server.stop(STOP_GRACE).await;
            eprintln!("mew bridge: {me}: the MCP server {how}");
            return Ok(ExitCode::FAILURE);
        }
    };

    let mut join = super::join_message(&config.target);
    join["capabilities"] = Value::Array(config.join_capabilities());
    eprintln!(
        "mew bridge: {me}: joining space {} at {}",
        config.target.space, config.target.url
    );
    let mut link = Link::start_with_join(config.target.clone(), config.reconnect, join);
    let mut b = Bridge {
        me: me.clone(),
        link: link.sender(),
        caps: Vec::new(),
        welcomed: false,
        next_rpc,
        pending: HashMap::new(),
        request_timeout: config.request_timeout,
        id_prefix: id_prefix(&me),
        seq: 0,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    let end = loop {
        tokio::select! {
            _ = sigterm.recv() => break End::Signal("SIGTERM"),
            _ = sigint.recv() => break End::Signal("SIGINT"),
            how = server.exited() => break End::ServerExited(how),
            msg = incoming.recv() => match msg {
                Some(m) => b.on_server_message(&server, m).await,
                None => break End::ServerStdoutClosed,
            },
            ev = link.next() => match ev {
                Some(LinkEvent::Connected { welcome }) => {
                    b.welcome(&welcome);
                    eprintln!("mew bridge: {}: joined; capabilities {}", b.me, Value::Array(b.caps.clone()));
                }
                Some(LinkEvent::Frame(text)) => {
                    if let Some(reason) = b.on_gateway_frame(&server, &text).await {
                        break End::ShutdownRequested(reason);
                    }
                }
                Some(LinkEvent::Disconnected { reason, retrying }) => {
                    let then = if retrying { "reconnecting" } else { "not reconnecting" };
                    eprintln!("mew bridge: {}: gateway connection lost ({reason}); {then}", b.me);
                }
                None => break End::Link(match link.end() {
                    Some(LinkEnd::Refused(why)) => why.clone(),
                    Some(LinkEnd::GaveUp(why)) => format!("gave up reconnecting: {why}"),
                    Some(LinkEnd::Closed) | None => "closed".to_owned(),
                }),
            },
            _ = tick.tick() => b.expire(&server).await,
        }
    };

    let code = match end {
        End::Signal(sig) => {
            eprintln!("mew bridge: {me}: {sig}: stopping");
            let how = server.stop(STOP_GRACE).await;
            eprintln!("mew bridge: {me}: the MCP server {how}");
            b.fail_all("the bridge is shutting down").await;
            ExitCode::SUCCESS
        }
        End::ShutdownRequested(by) => {
            eprintln!("mew bridge: {me}: participant/shutdown from {by}: stopping");
            let how = server.stop(STOP_GRACE).await;
            eprintln!("mew bridge: {me}: the MCP server {how}");
            b.fail_all("the bridge is shutting down").await;
            ExitCode::SUCCESS
        }
        End::ServerExited(how) => {
            // Its last answers may still be in the pipe: take them first.
            b.drain(&server, &mut incoming).await;
            server.reap_group();
            b.server_gone(&format!("the MCP server {how}")).await;
            ExitCode::FAILURE
        }
        End::ServerStdoutClosed => {
            let how = server.stop(STOP_GRACE).await;
            b.server_gone(&format!("the MCP server closed its stdout ({how})"))
                .await;
            ExitCode::FAILURE
        }
        End::Link(why) => {
            eprintln!("mew bridge: {me}: the gateway link ended: {why}");
            let how = server.stop(STOP_GRACE).await;
            eprintln!("mew bridge: {me}: the MCP server {how}");
            return Ok(ExitCode::FAILURE);
        }
    };
    // Send what is queued (the last responses), then close; bounded.
    b.link.close().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while link.next().await.is_some() {}
    })
    .await;
    Ok(code)
}

/// `initialize`, `notifications/initialized`, then learn the tools (and the
/// resources if the server has them). Returns the next free request id.
async fn initialize(
    server: &mut Server,
    incoming: &mut tokio::sync::mpsc::Receiver<Incoming>,
    timeout: Duration,
) -> Result<u64, String> {
    let deadline = Instant::now() + timeout;
    let params = json!({
        "protocolVersion": MCP_PROTOCOL_VERSION,
        "capabilities": {"roots": {"listChanged": false}},
        "clientInfo": {"name": "mew-bridge", "version": env!("CARGO_PKG_VERSION")},
    });
    let init = call(server, incoming, 1, "initialize", params, deadline)
        .await
        .map_err(|e| match e {
            CallError::Timeout => format!(
                "no answer to `initialize` within {} ms (--init-timeout)",
                timeout.as_millis()
            ),
            other => other.to_string(),
        })?
        .map_err(|err| format!("`initialize` failed: {err}"))?;
    server
        .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    let info = init.get("serverInfo").cloned().unwrap_or(Value::Null);
    let name = info.get("name").and_then(Value::as_str).unwrap_or("?");
    let version = info.get("version").and_then(Value::as_str).unwrap_or("?");
    let proto = init
        .get("protocolVersion")
        .and_then(Value::as_str)
        .unwrap_or("?");
    eprintln!("mew bridge: MCP server {name} {version} initialized (protocol {proto})");
    let caps = init.get("capabilities").cloned().unwrap_or(Value::Null);

    // Upstream lists tools whether or not they are advertised; so do we, and
    // a server that has none may say so with an error.
    let learn_deadline = Instant::now() + timeout;
    let mut next = 2;
    let mut learn = async |method: &str, key: &str, field: &str| {
        let id = next;
        next += 1;
        match call(server, incoming, id, method, json!({}), learn_deadline).await {
            Ok(Ok(r)) => {
                let names: Vec<&str> = r
                    .get(key)
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|t| t.get(field)?.as_str()).collect())
                    .unwrap_or_default();
                eprintln!("mew bridge: {} {key}: {}", names.len(), names.join(", "));
                Ok(())
            }
            Ok(Err(err)) => {
                eprintln!("mew bridge: {method}: {err}");
                Ok(())
            }
            Err(CallError::Timeout) => {
                eprintln!("mew bridge: no answer to {method}");
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    };
    learn("tools/list", "tools", "name").await?;
    if caps.get("resources").is_some_and(|r| !r.is_null()) {
        learn("resources/list", "resources", "uri").await?;
    }
    Ok(next)
}

#[derive(Debug)]
enum CallError {
    Timeout,
    Exited(String),
    StdoutClosed,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout => f.write_str("no answer in time"),
            CallError::Exited(how) => write!(f, "the MCP server {how}"),
            CallError::StdoutClosed => f.write_str("the MCP server closed its stdout"),
        }
    }
}

/// One request during start-up: `Ok(Ok(result))`, `Ok(Err(error))` (the
/// server's JSON-RPC error), or why there is no answer. Messages that are
/// not the answer are handled as they come.
async fn call(
    server: &mut Server,
    incoming: &mut tokio::sync::mpsc::Receiver<Incoming>,
    id: u64,
    method: &str,
    params: Value,
    deadline: Instant,
) -> Result<Result<Value, Value>, CallError> {
    let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
    if !server.send(&request).await {
        return Err(CallError::Exited(server.exited().await));
    }
    loop {
        let msg = tokio::select! {
            m = incoming.recv() => m,
            how = server.exited() => return Err(CallError::Exited(how)),
            () = tokio::time::sleep_until(deadline) => return Err(CallError::Timeout),
        };
        let Some(msg) = msg else {
            return Err(CallError::StdoutClosed);
        };
        let Incoming::Message(v) = msg else {
            note_bad_line(&msg);
            continue;
        };
        if v.get("method").is_none() && v.get("id").and_then(Value::as_u64) == Some(id) {
            return Ok(match v.get("error") {
                Some(err) if !err.is_null() => Err(err.clone()),
                _ => Ok(v.get("result").cloned().unwrap_or(Value::Null)),
            });
        }
        if let Some(answer) = answer_server_request(&v) {
            server.send(&answer).await;
        }
    }
}

fn note_bad_line(msg: &Incoming) {
    match msg {
        Incoming::Oversized(n) => eprintln!(
            "mew bridge: dropped a {n}-byte line from the MCP server (over {} MiB)",
            mcp::MAX_LINE >> 20
        ),
        Incoming::Invalid(text) => {
            eprintln!("mew bridge: the MCP server wrote a line that is not JSON: {text}")
        }
        Incoming::Message(_) => {}
    }
}

/// The client's answer to a request from the server (`roots/list`, `ping`);
/// `None` for anything that is not a request.
fn answer_server_request(v: &Value) -> Option<Value> {
    let method = v.get("method")?.as_str()?;
    let id = v.get("id").filter(|id| !id.is_null())?;
    Some(match method {
        "roots/list" => json!({"jsonrpc": "2.0", "id": id, "result": {"roots": []}}),
        "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        _ => json!({"jsonrpc": "2.0", "id": id, "error": {
            "code": METHOD_NOT_FOUND,
            "message": format!("the MEW bridge does not support {method}"),
        }}),
    })
}

/// A prefix for this bridge's envelope ids: its id and a random tag.
fn id_prefix(me: &str) -> String {
    let mut tag = [0u8; 6];
    let _ = getrandom::fill(&mut tag);
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("{me}-{hex}")
}

fn addressed_to(envelope: &Map<String, Value>, me: &str, broadcast_too: bool) -> bool {
    match envelope.get("to") {
        None | Some(Value::Null) => broadcast_too,
        Some(Value::Array(to)) if to.is_empty() => broadcast_too,
        Some(Value::Array(to)) => to.iter().any(|t| t.as_str() == Some(me)),
        Some(Value::String(to)) => to == me,
        Some(_) => false,
    }
}

impl Bridge {
    fn welcome(&mut self, welcome: &Value) {
        let you = welcome.pointer("/payload/you");
        if let Some(id) = you.and_then(|y| y.get("id")).and_then(Value::as_str) {
            self.me = id.to_owned();
        }
        self.caps = you
            .and_then(|y| y.get("capabilities"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        self.welcomed = true;
    }

    fn can_send(&self, kind: &str, payload: &Value) -> bool {
        let mut probe = Map::new();
        probe.insert("kind".into(), Value::String(kind.into()));
        probe.insert("payload".into(), payload.clone());
        capability::find(&self.caps, &probe).is_some()
    }

    fn envelope(
        &mut self,
        kind: &str,
        to: Option<&str>,
        correlation: Option<&Value>,
        payload: Value,
    ) -> Value {
        self.seq += 1;
        let mut e = json!({
            "protocol": MEW_PROTOCOL,
            "id": format!("{}-{}", self.id_prefix, self.seq),
            "ts": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "from": self.me,
        });
        if let Some(to) = to {
            e["to"] = json!([to]);
        }
        e["kind"] = Value::String(kind.into());
        if let Some(c) = correlation {
            e["correlation_id"] = json!([c]);
        }
        e["payload"] = payload;
        e
    }

    async fn send(&mut self, envelope: Value) {
        if self.link.send(&envelope).await.is_err() {
            // The link has ended; the main loop learns it from the link itself.
            tracing::debug!("not sent (link ended): {envelope}");
        }
    }

    async fn respond(&mut self, to: &str, request_id: &Value, payload: Value) {
        let e = self.envelope("mcp/response", Some(to), Some(request_id), payload);
        self.send(e).await;
    }

    async fn respond_error(&mut self, to: &str, request_id: &Value, code: i64, message: String) {
        self.respond(
            to,
            request_id,
            json!({"error": {"code": code, "message": message}}),
        )
        .await;
    }

    /// An envelope from the gateway. `Some(by)`: a `participant/shutdown` for us.
    async fn on_gateway_frame(&mut self, server: &Server, text: &str) -> Option<String> {
        if text.starts_with('#') {
            return None; // a stream data frame
        }
        let Ok(Value::Object(env)) = serde_json::from_str::<Value>(text) else {
            return None;
        };
        let from = env.get("from").and_then(Value::as_str).unwrap_or_default();
        let kind = env.get("kind").and_then(Value::as_str).unwrap_or_default();
        if kind == "system/welcome" {
            if addressed_to(&env, &self.me, false) {
                self.welcome(&Value::Object(env.clone()));
            }
            return None;
        }
        if from == self.me {
            return None; // our own, echoed back
        }
        match kind {
            "mcp/request" if addressed_to(&env, &self.me, true) => {
                self.mcp_request(server, &env).await;
            }
            "system/error" if addressed_to(&env, &self.me, false) => {
                let what = env.get("payload").map(Value::to_string).unwrap_or_default();
                eprintln!("mew bridge: {}: the gateway says: {what}", self.me);
            }
            "participant/request-status" if addressed_to(&env, &self.me, false) => {
                let payload = self.status_payload("active");
                if self.can_send("participant/status", &payload) {
                    let id = env.get("id").cloned().unwrap_or(Value::Null);
                    let e = self.envelope("participant/status", Some(from), Some(&id), payload);
                    self.send(e).await;
                }
            }
            "participant/shutdown" if addressed_to(&env, &self.me, false) => {
                let payload = self.status_payload("shutting_down");
                if self.can_send("participant/status", &payload) {
                    let id = env.get("id").cloned().unwrap_or(Value::Null);
                    let e = self.envelope("participant/status", None, Some(&id), payload);
                    self.send(e).await;
                }
                return Some(from.to_owned());
            }
            _ => {}
        }
        None
    }

    fn status_payload(&self, status: &str) -> Value {
        json!({
            "status": status,
            "tokens": 0,
            "max_tokens": 0,
            "messages_in_context": 0,
            "pending_requests": self.pending.len(),
        })
    }

    async fn mcp_request(&mut self, server: &Server, env: &Map<String, Value>) {
        let from = env
            .get("from")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let Some(request_id) = env.get("id").cloned() else {
            return; // nothing to correlate an answer with
        };
        let payload = env.get("payload").and_then(Value::as_object);
        let Some(method) = payload
            .and_then(|p| p.get("method"))
            .and_then(Value::as_str)
        else {
            self.respond_error(
                &from,
                &request_id,
                INVALID_REQUEST,
                "Invalid Request: an mcp/request needs a payload with a method".into(),
            )
            .await;
            return;
        };
        let method = method.to_owned();
        let params = payload.and_then(|p| p.get("params")).cloned();
        let mut rpc = json!({"jsonrpc": "2.0", "method": method});
        if let Some(p) = params {
            rpc["params"] = p;
        }
        if method.starts_with("notifications/") {
            // A notification: passed on, never answered.
            server.send(&rpc).await;
            return;
        }
        if self.pending.len() >= MAX_PENDING {
            self.respond_error(
                &from,
                &request_id,
                SERVER_UNAVAILABLE,
                format!("the bridge has {MAX_PENDING} requests in flight; try again later"),
            )
            .await;
            return;
        }
        let id = self.next_rpc;
        self.next_rpc += 1;
        rpc["id"] = json!(id);
        if !server.send(&rpc).await {
            self.respond_error(
                &from,
                &request_id,
                SERVER_UNAVAILABLE,
                "the MCP server is not accepting requests".into(),
            )
            .await;
            return;
        }
        self.pending.insert(
            id,
            Pending {
                waiter: Waiter::Mew {
                    from,
                    envelope_id: request_id,
                },
                method,
                deadline: self.request_timeout.map(|t| Instant::now() + t),
            },
        );
    }

    async fn on_server_message(&mut self, server: &Server, msg: Incoming) {
        let v = match msg {
            Incoming::Message(v) => v,
            other => return note_bad_line(&other),
        };
        if let Value::Array(batch) = v {
            for one in batch {
                Box::pin(self.on_server_message(server, Incoming::Message(one))).await;
            }
            return;
        }
        if let Some(answer) = answer_server_request(&v) {
            server.send(&answer).await;
            return;
        }
        if let Some(method) = v.get("method").and_then(Value::as_str) {
            self.notification(server, method, &v).await;
            return;
        }
        let Some(id) = v.get("id").and_then(Value::as_u64) else {
            eprintln!("mew bridge: an MCP message that is neither answer nor notification: {v}");
            return;
        };
        let Some(p) = self.pending.remove(&id) else {
            return; // answered too late (timed out) or not ours
        };
        let payload = match v.get("error") {
            Some(err) if !err.is_null() => json!({"error": err}),
            _ => json!({"result": v.get("result").cloned().unwrap_or(Value::Null)}),
        };
        match p.waiter {
            Waiter::Mew { from, envelope_id } => self.respond(&from, &envelope_id, payload).await,
            Waiter::Bridge => {
                let n = payload
                    .pointer("/result/tools")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                eprintln!("mew bridge: {}: the MCP server now has {n} tools", self.me);
            }
        }
    }

    async fn notification(&mut self, server: &Server, method: &str, v: &Value) {
        match method {
            "notifications/message" => {
                let params = v.get("params").cloned().unwrap_or(Value::Null);
                let mut text = format!("[MCP] {params}");
                if text.len() > MAX_CHAT {
                    let mut cut = MAX_CHAT;
                    while !text.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    text.truncate(cut);
                    text.push('…');
                }
                let payload = json!({"text": text, "format": "plain"});
                if self.welcomed && self.can_send("chat", &payload) {
                    let e = self.envelope("chat", None, None, payload);
                    self.send(e).await;
                } else {
                    eprintln!("mew bridge: {}: {text}", self.me);
                }
            }
            "notifications/tools/list_changed" => {
                if self.pending.len() < MAX_PENDING {
                    let id = self.next_rpc;
                    self.next_rpc += 1;
                    let rpc =
                        json!({"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": {}});
                    if server.send(&rpc).await {
                        self.pending.insert(
                            id,
                            Pending {
                                waiter: Waiter::Bridge,
                                method: "tools/list".into(),
                                deadline: self.request_timeout.map(|t| Instant::now() + t),
                            },
                        );
                    }
                }
            }
            _ => tracing::debug!("MCP notification {method}"),
        }
    }

    /// Answer, with an error, the requests whose time is up; tell the server.
    async fn expire(&mut self, server: &Server) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|d| d <= now))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            let Some(p) = self.pending.remove(&id) else {
                continue;
            };
            server
                .send(
                    &json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                    "params": {"requestId": id, "reason": "timed out"}}),
                )
                .await;
            if let Waiter::Mew { from, envelope_id } = p.waiter {
                let ms = self.request_timeout.map_or(0, |t| t.as_millis());
                self.respond_error(
                    &from,
                    &envelope_id,
                    INTERNAL_ERROR,
                    format!(
                        "MCP request timeout: {} (no answer within {ms} ms)",
                        p.method
                    ),
                )
                .await;
            }
        }
    }

    /// Take what the server wrote before it exited (bounded).
    async fn drain(
        &mut self,
        server: &Server,
        incoming: &mut tokio::sync::mpsc::Receiver<Incoming>,
    ) {
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, incoming.recv()).await {
            self.on_server_message(server, m).await;
        }
    }

    /// Every waiting requester gets an error.
    async fn fail_all(&mut self, why: &str) {
        let mut pending: Vec<(u64, Pending)> = self.pending.drain().collect();
        pending.sort_by_key(|(id, _)| *id);
        for (_, p) in pending {
            if let Waiter::Mew { from, envelope_id } = p.waiter {
                self.respond_error(
                    &from,
                    &envelope_id,
                    INTERNAL_ERROR,
                    format!("{why} before answering {}", p.method),
                )
                .await;
            }
        }
    }

    /// The server is gone: say so, answer the waiting with errors.
    async fn server_gone(&mut self, why: &str) {
        eprintln!("mew bridge: {}: {why}; exiting", self.me);
        self.fail_all(why).await;
        let mut payload = self.status_payload("error");
        payload["error"] = Value::String(why.to_owned());
        if self.welcomed && self.can_send("participant/status", &payload) {
            let e = self.envelope("participant/status", None, None, payload);
            self.send(e).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_requests_are_ours_only_when_asked() {
        let e = |v: Value| v.as_object().cloned().unwrap_or_default();
        assert!(addressed_to(&e(json!({"to": ["fs"]})), "fs", false));
        assert!(!addressed_to(&e(json!({"to": ["other"]})), "fs", true));
        assert!(addressed_to(&e(json!({})), "fs", true));
        assert!(!addressed_to(&e(json!({"to": []})), "fs", false));
    }

    #[test]
    fn the_client_answers_roots_and_ping_and_refuses_the_rest() {
        let r = answer_server_request(&json!({"jsonrpc":"2.0","id":7,"method":"roots/list"}));
        assert_eq!(
            r,
            Some(json!({"jsonrpc":"2.0","id":7,"result":{"roots":[]}}))
        );
        let r = answer_server_request(&json!({"id":"x","method":"sampling/createMessage"}));
        assert_eq!(
            r.and_then(|r| r.pointer("/error/code").cloned()),
            Some(json!(-32601))
        );
        assert_eq!(
            answer_server_request(&json!({"method":"notifications/message"})),
            None
        );
    }
}
