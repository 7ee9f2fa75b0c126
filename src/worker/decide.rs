//! What a worker does after a session ends: a pure function of how it
//! ended, how long it ran and whether failures came too fast, tested as a
//! table like `restart.rs`.
//!
//! - A stop request stops.
//! - Telegram's "wait" (429 outside the poll loop) waits exactly that long.
//! - An outage (the network, a timeout, a 5xx) and a store outage back off
//!   up to `max_backoff` and keep trying for as long as they last: retrying
//!   is all that helps, and parking would keep the bot offline long after
//!   the outage ended. They never count towards parking.
//! - A rejected token (401) or a webhook someone wants parks at once.
//! - Anything else (a panic, a bad request, the kind failing to start) backs
//!   off and counts; more than `max_restarts` within `window` parks.

use std::time::Duration;

use crate::config::RestartPolicy;
use crate::status::WorkerState;
use crate::status::short;

/// How a session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEnd {
    /// The worker was asked to stop.
    Stopped,
    /// A failure a retry may not cure: back off, counted towards parking.
    Failed(String),
    /// The network, a timeout, a 5xx: back off, not counted.
    Outage(String),
    /// Not worth retrying soon: park at once.
    Park(String),
    /// Telegram asked to wait (429 outside the poll loop).
    Wait(Duration, String),
    /// The store failed: back off, not counted.
    StoreDown(String),
    /// The fleet gave the bot to another instance and the lease went back:
    /// stand by at once, not counted.
    HandedOver,
}

/// How long the next wait is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delay {
    Exactly(Duration),
    /// The next exponential backoff.
    Backoff,
    /// `park_for`.
    Park,
}

/// What the restart loop does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub state: WorkerState,
    pub reason: String,
    pub delay: Delay,
    /// Counted as a restart after a failure (the status's `restarts`).
    pub restarted: bool,
    /// The backoff starts again from `initial_backoff` first.
    pub reset_backoff: bool,
    /// The store-down incident is open.
    pub store_down: bool,
}

/// The decision after `end`, for a session that ran `ran`. `record` counts
/// this failure (once, and only for counted failures) and says how many
/// there are within `window`, this one included; more than
/// `max_restarts` parks. `None` means stop.
pub fn decide(
    end: SessionEnd,
    ran: Duration,
    policy: &RestartPolicy,
    record: impl FnOnce() -> u32,
) -> Option<Decision> {
    // A session that ran a whole window was healthy: back off from the start.
    let healthy = ran >= policy.window;
    let backing_off = |reason: String, restarted: bool, store_down: bool| Decision {
        state: WorkerState::BackingOff,
        reason,
        delay: Delay::Backoff,
        restarted,
        reset_backoff: healthy,
        store_down,
    };
    let parked = |reason: String| Decision {
        state: WorkerState::Parked,
        reason,
        delay: Delay::Park,
        restarted: false,
        reset_backoff: true,
        store_down: false,
    };
    Some(match end {
        SessionEnd::Stopped => return None,
        SessionEnd::Wait(wait, reason) => Decision {
            state: WorkerState::BackingOff,
            reason,
            delay: Delay::Exactly(wait),
            restarted: false,
            reset_backoff: false,
            store_down: false,
        },
        SessionEnd::HandedOver => Decision {
            state: WorkerState::Standby,
            reason: "handed over to another instance".to_owned(),
            delay: Delay::Exactly(Duration::ZERO),
            restarted: false,
            reset_backoff: true,
            store_down: false,
        },
        SessionEnd::Outage(reason) => backing_off(reason, false, false),
        SessionEnd::StoreDown(reason) => backing_off(reason, false, true),
        SessionEnd::Park(reason) => parked(reason),
        SessionEnd::Failed(reason) => {
            let within = record();
            if within > policy.max_restarts {
                Decision {
                    restarted: true,
                    ..parked(format!(
                        "more than {} restarts within {}; last failure: {reason}",
                        policy.max_restarts,
                        short(policy.window)
                    ))
                }
            } else {
                backing_off(
                    format!(
                        "{reason} (restart {within} of {} within {})",
                        policy.max_restarts,
                        short(policy.window)
                    ),
                    true,
                    false,
                )
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ending_leads_where_it_should() {
        let policy = RestartPolicy::default();
        let short_run = Duration::from_secs(1);
        let long_run = policy.window;
        let wait = Duration::from_secs(3);
        // (end, ran, over the limit, expected (state, delay, restarted, reset, store_down))
        type Expected = Option<(WorkerState, Delay, bool, bool, bool)>;
        let cases: Vec<(SessionEnd, Duration, bool, Expected)> = vec![
            (SessionEnd::Stopped, short_run, true, None),
            (
                SessionEnd::Wait(wait, "429".into()),
                short_run,
                true,
                Some((
                    WorkerState::BackingOff,
                    Delay::Exactly(wait),
                    false,
                    false,
                    false,
                )),
            ),
            // Outages never park, however often they come.
            (
                SessionEnd::Outage("connection refused".into()),
                short_run,
                true,
                Some((WorkerState::BackingOff, Delay::Backoff, false, false, false)),
            ),
            (
                SessionEnd::Outage("connection refused".into()),
                long_run,
                true,
                Some((WorkerState::BackingOff, Delay::Backoff, false, true, false)),
            ),
            (
                SessionEnd::StoreDown("disk".into()),
                short_run,
                true,
                Some((WorkerState::BackingOff, Delay::Backoff, false, false, true)),
            ),
            (
                SessionEnd::Park("401".into()),
                short_run,
                false,
                Some((WorkerState::Parked, Delay::Park, false, true, false)),
            ),
            (
                SessionEnd::Failed("panic".into()),
                short_run,
                false,
                Some((WorkerState::BackingOff, Delay::Backoff, true, false, false)),
            ),
            (
                SessionEnd::Failed("panic".into()),
                short_run,
                true,
                Some((WorkerState::Parked, Delay::Park, true, true, false)),
            ),
        ];
        for (end, ran, over, expected) in cases {
            let asked = std::cell::Cell::new(false);
            let got = decide(end.clone(), ran, &policy, || {
                asked.set(true);
                if over { policy.max_restarts + 1 } else { 2 }
            })
            .map(|d| (d.state, d.delay, d.restarted, d.reset_backoff, d.store_down));
            assert_eq!(got, expected, "{end:?}");
            assert_eq!(
                asked.get(),
                matches!(end, SessionEnd::Failed(_)),
                "only counted failures are counted: {end:?}"
            );
        }
        let parked = decide(
            SessionEnd::Failed("boom".into()),
            short_run,
            &policy,
            || policy.max_restarts + 1,
        )
        .expect("a decision");
        assert_eq!(
            parked.reason,
            "more than 5 restarts within 60.0s; last failure: boom"
        );
        let again = decide(
            SessionEnd::Failed("the program exited with status 1".into()),
            short_run,
            &policy,
            || 2,
        )
        .expect("a decision");
        assert_eq!(
            again.reason,
            "the program exited with status 1 (restart 2 of 5 within 60.0s)"
        );
    }
}
