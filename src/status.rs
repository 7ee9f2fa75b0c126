//! Each worker's visible state, and the snapshot the supervisor reads.
//!
//! A worker owns a [`StatusSender`] and is the only writer of its status;
//! the supervisor holds the matching `watch` receiver. Every state change is
//! logged once here, with its reason and, for waits, when the next attempt
//! will be, so callers never log transitions themselves.

use std::fmt;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::telegram::ErrorClass;

/// Where a worker is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkerState {
    /// Connecting: `getMe` and the kind's start-up.
    Starting,
    /// Polling and handling updates.
    Running,
    /// Another botvisor process holds this bot's lease; waiting to take over.
    Standby,
    /// Telegram answers 409: another process polls with this token.
    Conflict,
    /// Waiting before the next attempt after an error.
    BackingOff,
    /// Failing too often, or the token was rejected: held back for a cool-down.
    Parked,
    /// Finishing the handlers that were running when the stop came.
    Stopping,
    Stopped,
}

impl WorkerState {
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Running => "running",
            WorkerState::Standby => "standby",
            WorkerState::Conflict => "conflict",
            WorkerState::BackingOff => "backing_off",
            WorkerState::Parked => "parked",
            WorkerState::Stopping => "stopping",
            WorkerState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One bot's status, as the supervisor and (later) the status endpoint see it.
#[derive(Clone, Debug)]
pub struct BotStatus {
    pub name: String,
    pub kind: &'static str,
    pub state: WorkerState,
    /// Why the worker is in this state.
    pub reason: String,
    /// When it entered this state.
    pub since: SystemTime,
    pub since_instant: Instant,
    /// When the next attempt is due, for waiting states.
    pub next_attempt: Option<SystemTime>,
    /// How many times the worker was restarted after a failure.
    pub restarts: u64,
    pub last_error_class: Option<ErrorClass>,
    pub last_successful_poll: Option<SystemTime>,
    pub updates_handled: u64,
}

impl BotStatus {
    fn new(name: &str, kind: &'static str) -> BotStatus {
        BotStatus {
            name: name.to_owned(),
            kind,
            state: WorkerState::Starting,
            reason: "starting".to_owned(),
            since: SystemTime::now(),
            since_instant: Instant::now(),
            next_attempt: None,
            restarts: 0,
            last_error_class: None,
            last_successful_poll: None,
            updates_handled: 0,
        }
    }

    /// A compact `name=state` form for the SIGUSR1 status line.
    pub fn compact(&self) -> String {
        let age = self.since_instant.elapsed();
        let mut out = format!("{}={}({}", self.name, self.state, short(age));
        if self.restarts > 0 {
            out.push_str(&format!(", restarts={}", self.restarts));
        }
        if let Some(class) = &self.last_error_class {
            out.push_str(&format!(", last_error={class}"));
        }
        out.push_str(&format!(", handled={})", self.updates_handled));
        out
    }
}

/// A duration rounded for people: `850ms`, `12s`, `3m`, `2h`.
pub fn short(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs < 120 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 7200 {
        format!("{}m", secs / 60)
    } else {
        format!("{}h", secs / 3600)
    }
}

/// The writing side of a worker's status.
pub struct StatusSender {
    tx: watch::Sender<BotStatus>,
}

impl StatusSender {
    /// A status for bot `name`, starting in `starting`, and its receiver.
    pub fn new(name: &str, kind: &'static str) -> (StatusSender, watch::Receiver<BotStatus>) {
        let (tx, rx) = watch::channel(BotStatus::new(name, kind));
        (StatusSender { tx }, rx)
    }

    pub fn state(&self) -> WorkerState {
        self.tx.borrow().state
    }

    /// How long the worker has been in its current state.
    pub fn in_state_for(&self) -> Duration {
        self.tx.borrow().since_instant.elapsed()
    }

    /// Moves to `state` for `reason` and logs the change once. A move to
    /// the state the worker is already in is logged only when the reason
    /// changed (a new error while backing off), and never while in conflict,
    /// whose own log policy lives in the worker.
    pub fn set(&self, state: WorkerState, reason: impl Into<String>, wait: Option<Duration>) {
        let reason = reason.into();
        let mut changed = false;
        self.tx.send_modify(|status| {
            status.next_attempt = wait.map(|w| SystemTime::now() + w);
            if status.state != state {
                changed = true;
                status.state = state;
                status.since = SystemTime::now();
                status.since_instant = Instant::now();
            }
            if status.reason != reason {
                if state != WorkerState::Conflict {
                    changed = true;
                }
                status.reason.clone_from(&reason);
            }
        });
        if !changed {
            return;
        }
        let retry_in = wait.map(short);
        match state {
            WorkerState::Parked => match retry_in {
                Some(retry_in) => {
                    error!(state = %state, %retry_in, "parked: {reason}; next attempt in {retry_in}")
                }
                None => error!(state = %state, "parked: {reason}"),
            },
            WorkerState::BackingOff | WorkerState::Conflict => match retry_in {
                Some(retry_in) => {
                    warn!(state = %state, %retry_in, "{state}: {reason}; next attempt in {retry_in}")
                }
                None => warn!(state = %state, "{state}: {reason}"),
            },
            _ => info!(state = %state, "{state}: {reason}"),
        }
    }

    pub fn error(&self, class: &ErrorClass) {
        let class = class.clone();
        self.tx
            .send_modify(|status| status.last_error_class = Some(class));
    }

    pub fn restarted(&self) {
        self.tx.send_modify(|status| status.restarts += 1);
    }

    pub fn polled(&self) {
        self.tx
            .send_modify(|status| status.last_successful_poll = Some(SystemTime::now()));
    }

    pub fn handled(&self, count: u64) {
        if count > 0 {
            self.tx
                .send_modify(|status| status.updates_handled += count);
        }
    }
}
