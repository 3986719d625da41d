//! The integration and end-to-end tests, in one binary: one link instead of
//! one per file. Each module was a file of its own under `tests/`; the
//! helpers they share are in `tests/common/`.
//!
//! Tests here run in parallel with each other (the harness's threads), so a
//! test must not change what the whole process shares (signal handlers, a
//! controlling terminal, the environment, `waitpid(-1)`, a subreaper) or
//! measure the process itself. Those live in binaries of their own:
//! `tests/reaper.rs` (its `waitpid(-1)` would reap the children other tests
//! wait for), `tests/terminal_memory.rs` (measures this process's resident
//! memory) and `tests/heavy/` (load and chaos, each alone on the machine).

#[path = "../common/mod.rs"]
mod common;

mod bridge;
mod clean;
mod cli;
mod config_check;
mod config_init;
mod devloop_config;
mod devloop_part;
mod devloop_reload;
mod dropin;
mod export_compose;
mod export_kubernetes;
mod export_systemd;
mod faults;
mod gateway;
mod hostile_config;
mod init_templates;
mod logs_hostile;
mod participants;
mod prop_config;
mod reliability;
mod security;
mod server;
mod socket_faults;
mod supervisor;
mod tui_app;
mod tui_e2e;
mod tui_guard;
mod tui_remote;
mod tui_render;
