//! botvisor: runs every Telegram bot of a `supervisor.toml` as a supervised,
//! restartable tokio task in one process.
//!
//! `main.rs` parses the command line and sets up logging; [`run`] is the
//! daemon. See ARCHITECTURE.md for the map of the modules.

pub mod alerts;
pub mod bots;
pub mod check;
pub mod config;
pub mod fleet;
pub mod gateway;
pub mod http;
pub mod limits;
pub mod logging;
pub mod outbox;
pub mod restart;
pub mod sandbox;
pub mod sanitize;
pub mod secret;
pub mod signals;
pub mod status;
pub mod store;
pub mod supervisor;
pub mod telegram;
pub mod webhook;
pub mod worker;

pub use status::StatusBoard;
pub use supervisor::{RunError, run, run_with_board};

/// Exit code after a clean shutdown.
pub const EXIT_OK: u8 = 0;
/// Exit code for any fatal error that is not a config error.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code for a wrong command line (clap's own code for usage errors).
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a config error (`EX_CONFIG` from sysexits.h).
pub const EXIT_CONFIG: u8 = 78;
