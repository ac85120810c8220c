//! Klipper's Linux host MCU, in Rust: the library behind the `klipper_mcu`
//! binary (and its tests and benchmarks).
//!
//! - [`clock`]: the 50 MHz clock;
//! - [`sched`]: timers and load statistics;
//! - [`command`]: command and response declarations, ids, dictionary;
//! - [`mcu`]: the MCU's state, shutdown and block dispatch;
//! - [`console`]: the pseudo-terminal klippy talks to;
//! - [`commands`]: the command families, one module each;
//! - [`hw`]: hardware traits, Linux and simulated backends;
//! - [`moveq`]: the move queue;
//! - [`pins`]: pin names and numbers;
//! - [`health`]: the `--check` health check;
//! - [`log`]: stdout and stderr writes that never panic;
//! - [`restart`]: real-time set-up, watchdog, re-execution.

// First, so its macros (`elog!`, `out!`) are in scope in every module.
#[macro_use]
pub mod log;

pub mod clock;
pub mod command;
pub mod commands;
pub mod console;
pub mod health;
pub mod hw;
pub mod mcu;
pub mod moveq;
pub mod objects;
pub mod pages;
pub mod pins;
pub mod restart;
pub mod runtime;
pub mod sched;
pub mod shutdown;

#[cfg(test)]
mod layering;
