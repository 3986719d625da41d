//! One file per `mew` command (or command group) that talks to a space:
//! each reads its arguments, does its job through `crate::client` (or the
//! server, for `up --no-tui` and `__serve`) and returns an [`Outcome`];
//! `main` prints the error, in one place. Output formatting is kept in pure
//! functions, apart from the IO.
//!
//! The participants (`client connect`, `space connect`, `bridge start`) and
//! the gateway's server keep their entry next to their session code (it
//! returns an [`Outcome`] too); `cmd/gateway.rs` calls the latter.

pub mod attach;
pub mod bare;
pub mod check;
pub mod clean;
pub mod common;
pub mod control;
pub mod down;
mod error;
pub mod export;
pub mod gateway;
pub mod init;
pub mod logs;
pub mod ls;
pub mod reload;
pub mod run;
pub mod scale;
pub mod serve;
pub mod status;
pub mod token;
pub mod up;

pub use error::{Error, NOT_RUNNING, Outcome, USAGE};
