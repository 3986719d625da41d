//! The heavy tests: load (200 printing processes) and chaos (rounds of
//! random faults). Each was a binary of its own, so it ran alone: no other
//! test of the suite loaded the machine while it measured latencies and
//! counted lines. They stay apart from `tests/it/` for that reason, and take
//! [`common::alone`] so they do not run at the same time as each other.

#[path = "../common/mod.rs"]
mod common;

mod chaos;
mod load;
