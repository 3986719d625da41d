//! mew: a foreground TUI orchestrator for MEW spaces.
//!
//! The binary is a thin entry point (`src/main.rs`); everything lives here so
//! that tests and benchmarks can reach it.

pub mod check;
pub mod clean;
pub mod cli;
pub(crate) mod client;
pub mod cmd;
pub mod config;
pub mod envelopes;
pub mod export;
pub mod gateway;
pub mod headless;
pub mod human;
pub mod init;
pub mod logs;
pub mod participant;
pub mod procfs;
pub mod protocol;
pub(crate) mod recovery;
pub(crate) mod server;
pub(crate) mod signals;
pub mod space;
pub mod status;
pub mod supervisor;
pub mod sys;
pub mod terminal;
pub mod tui;
pub mod watch;
