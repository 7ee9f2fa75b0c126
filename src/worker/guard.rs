//! The session guard: a task that checks once a second that the worker
//! still holds its bot's lease and that no `getUpdates` has gone unanswered
//! past `watchdog_after`, and ends the session at once when either fails,
//! or gracefully when the fleet hands the bot to another instance.
//! It is an owned value: dropping it stops the task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::{Instrument, error};

use crate::status::short;
use crate::store::Lease;

/// How often the lease and the poll clock are checked.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// The poll clock's value while no `getUpdates` is outstanding.
const NOT_POLLING: u64 = u64::MAX;

/// Why the guard ended a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tripped {
    /// The lease is gone (the store connection closed).
    LeaseLost,
    /// A `getUpdates` went unanswered past the limit.
    PollStalled,
    /// The fleet gives the bot to another instance: the session ends as at
    /// a stop (the outbox drains, the offset is confirmed), then the lease
    /// is released.
    Handover,
}

struct Shared {
    lease: Option<Arc<Lease>>,
    lease_lost: AtomicBool,
    handover: AtomicBool,
    stalled: AtomicBool,
    epoch: Instant,
    /// When the outstanding getUpdates was sent, in ms since `epoch`.
    poll_sent: AtomicU64,
}

/// Watches a session; cancels `session` when it trips.
pub struct SessionGuard {
    shared: Arc<Shared>,
    _stop: DropGuard,
}

impl SessionGuard {
    /// Starts watching: `lease` (when the store has leases) and polls longer
    /// than `watchdog_after`.
    pub fn start(
        session: CancellationToken,
        lease: Option<Arc<Lease>>,
        watchdog_after: Duration,
    ) -> SessionGuard {
        let shared = Arc::new(Shared {
            lease,
            lease_lost: AtomicBool::new(false),
            handover: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            epoch: Instant::now(),
            poll_sent: AtomicU64::new(NOT_POLLING),
        });
        let stop = CancellationToken::new();
        {
            let shared = shared.clone();
            let stop = stop.clone();
            tokio::spawn(
                async move {
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => return,
                            () = session.cancelled() => return,
                            () = tokio::time::sleep(CHECK_EVERY) => {}
                        }
                        if let Some(lease) = &shared.lease {
                            if !lease.is_held().await {
                                shared.lease_lost.store(true, Ordering::SeqCst);
                                session.cancel();
                                return;
                            }
                            if lease.handover_wanted() {
                                shared.handover.store(true, Ordering::SeqCst);
                                session.cancel();
                                return;
                            }
                        }
                        let sent = shared.poll_sent.load(Ordering::SeqCst);
                        if sent == NOT_POLLING {
                            continue;
                        }
                        let waited = shared
                            .epoch
                            .elapsed()
                            .saturating_sub(Duration::from_millis(sent));
                        if waited >= watchdog_after {
                            shared.stalled.store(true, Ordering::SeqCst);
                            error!(
                                waited = %short(waited),
                                "watchdog: getUpdates has not answered for {} (watchdog_after is {}); restarting the worker",
                                short(waited),
                                short(watchdog_after)
                            );
                            session.cancel();
                            return;
                        }
                    }
                }
                .in_current_span(),
            );
        }
        SessionGuard {
            shared,
            _stop: stop.drop_guard(),
        }
    }

    /// True while the lease is held; when not, the session counts as
    /// having lost it. Checked before each poll, so a process woken from a
    /// pause never polls a bot that is no longer its own.
    pub async fn lease_held(&self) -> bool {
        let Some(lease) = &self.shared.lease else {
            return true;
        };
        if lease.is_held().await {
            return true;
        }
        self.shared.lease_lost.store(true, Ordering::SeqCst);
        false
    }

    /// A `getUpdates` was sent now.
    pub fn polling(&self) {
        let sent =
            u64::try_from(self.shared.epoch.elapsed().as_millis()).unwrap_or(NOT_POLLING - 1);
        self.shared.poll_sent.store(sent, Ordering::SeqCst);
    }

    /// The outstanding `getUpdates` was answered (or dropped).
    pub fn polled(&self) {
        self.shared.poll_sent.store(NOT_POLLING, Ordering::SeqCst);
    }

    /// Why the guard ended the session, if it did.
    pub fn tripped(&self) -> Option<Tripped> {
        if self.shared.lease_lost.load(Ordering::SeqCst) {
            Some(Tripped::LeaseLost)
        } else if self.shared.stalled.load(Ordering::SeqCst) {
            Some(Tripped::PollStalled)
        } else if self.shared.handover.load(Ordering::SeqCst) {
            Some(Tripped::Handover)
        } else {
            None
        }
    }
}
