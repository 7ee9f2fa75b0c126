//! Unix signals turned into one closed enum the supervisor acts on.
//!
//! SIGTERM and SIGINT ask for a shutdown; SIGHUP asks for a reload; SIGUSR1
//! asks for a status line. signal-hook registers the handlers, so nothing
//! here runs inside a signal handler.

use futures::StreamExt;
use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
use signal_hook_tokio::Signals;

/// What a signal asks the supervisor to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Shutdown,
    Reload,
    Status,
}

/// The process's signals as a stream of [`Signal`]s.
///
/// # Errors
/// When the handlers cannot be registered.
pub fn listen() -> std::io::Result<impl futures::Stream<Item = Signal> + Unpin> {
    let signals = Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])?;
    Ok(signals.map(|raw| match raw {
        SIGHUP => Signal::Reload,
        SIGUSR1 => Signal::Status,
        _ => Signal::Shutdown,
    }))
}
