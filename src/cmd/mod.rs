//! One file per `mew` command (or command group) that talks to a space:
//! each reads its arguments, does its job through `crate::client` (or the
//! server, for `up --no-tui` and `__serve`) and returns an [`Outcome`];
//! `main` prints the error, in one place. Output formatting is kept in pure
//! functions, apart from the IO.
//!
//! Commands with a module of their own elsewhere (`init`, `check`,
//! `export`, `clean`, the participants, the gateway) keep their `run`.

pub mod attach;
pub mod bare;
pub mod common;
pub mod control;
pub mod down;
mod error;
pub mod gateway;
pub mod logs;
pub mod ls;
pub mod run;
pub mod serve;
pub mod status;
pub mod up;

pub use error::{Error, NOT_RUNNING, Outcome, USAGE};
