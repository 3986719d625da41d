//! mew: a foreground TUI orchestrator for MEW spaces.
//!
//! The binary is a thin entry point (`src/main.rs`); everything lives here so
//! that tests and benchmarks can reach it.

pub mod cli;
pub mod config;
pub mod logs;
pub mod status;
pub mod terminal;
