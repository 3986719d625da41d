//! The space server: owns the supervisor (and so every process), serves
//! clients on the space's unix socket, records its state for crash recovery.
//!
//! The same code runs in the foreground for `mew space up --no-tui` (with the
//! headless printer attached) and as the daemon behind `up -d` and the TUI.
//!
//! - `startup`: from the config to a running space and back (lock, recovery,
//!   port, tokens, FIFOs, socket, supervisor; the main loop; the teardown);
//! - `conns`: the control thread, accepting, connection limits (`Conns`);
//! - `outbox`: what goes to one client, bounded;
//! - `requests`: one connection's hello and requests, attach, streams;
//! - `session`: one attached client's view;
//! - `state_file`: `.mew/run/state.json`, kept in step with the processes.

/// `eprintln!` that cannot panic: a closed stderr (`up --no-tui 2>&1 | head`)
/// must never take the server, and so its processes, down.
macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}

mod conns;
mod outbox;
mod part;
mod reload;
mod requests;
mod session;
mod startup;
mod state_file;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::SpaceConfig;
use crate::supervisor::Handle;

pub(crate) use outbox::Outbox;
pub use part::Part;
pub use reload::scale_lines;

// Kept at their old paths for the callers outside the server.
pub use crate::config::load_cli::{format_diagnostic, load_config};

/// What `up` asked for.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub port: Option<u16>,
    /// `Some`: run in the foreground with the line printer (`--no-tui`).
    pub headless: Option<HeadlessOptions>,
    /// `--watch-config`: reload when a config file changes.
    pub watch_config: bool,
    /// `up NAME…` / `--profile`: what starts (the rest stays idle).
    pub part: Part,
}

#[derive(Clone, Debug)]
pub struct HeadlessOptions {
    pub timestamps: bool,
    pub exit_on_failure: bool,
    /// `--exit-code-from NAME`: when NAME ends, stop the space and exit with its code.
    pub exit_code_from: Option<String>,
    /// `--abort-on-exit`: the first process that ends for good (a task that
    /// succeeded aside) stops the space; exit with its code.
    pub abort_on_exit: bool,
    /// `--envelopes`: also print the space's envelopes (the space view's lines).
    pub envelopes: bool,
}

/// Run the server until the space is down. Creates the async runtime.
pub fn run(cfg: SpaceConfig, opts: ServeOptions) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            say!("mew: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(startup::serve(cfg, opts));
    rt.shutdown_timeout(Duration::from_millis(200));
    ExitCode::from(code)
}

struct Ctx {
    handle: Handle,
    space_id: String,
    /// `ui.keys` from the config, for every attached client's key map.
    ui_keys: Vec<(String, String)>,
    /// Set when a client asked the space to go down.
    down_tx: watch::Sender<bool>,
    /// Set once the space is down (all processes gone).
    gone_tx: watch::Sender<bool>,
    /// The server's own participant in the space (the TUI's space view).
    space: Option<Arc<crate::participant::observer::Plan>>,
    /// Reload and scale: the config the space runs now.
    devloop: Arc<reload::Devloop>,
}
