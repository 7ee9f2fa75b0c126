//! The session guard: once a second (one task, `Guards`, for every
//! session) it checks that the worker still holds its bot's lease and that
//! no `getUpdates` has gone unanswered past `watchdog_after`, and ends the
//! session at once when either fails, or gracefully when the fleet hands
//! the bot to another instance. It is an owned value: dropping it stops
//! the watching.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::error;

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
    /// The session to end when the guard trips.
    session: CancellationToken,
    watchdog_after: Duration,
    /// The bot's span, for the watchdog's line.
    span: tracing::Span,
}

/// Every running session's guard, checked once a second by one task
/// ([`Guards::run`]): ten thousand bots are one wake-up a second, not ten
/// thousand timers.
#[derive(Clone, Default)]
pub struct Guards {
    watched: Arc<std::sync::Mutex<Vec<Weak<Shared>>>>,
}

impl Guards {
    /// Checks every guard each second until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(CHECK_EVERY) => {}
            }
            self.check_all();
        }
    }

    fn check_all(&self) {
        let now = Instant::now();
        // One pass under the lock, no copy: a look is a few atomic reads.
        self.watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|watched| match watched.upgrade() {
                Some(shared) => {
                    shared.check(now);
                    true
                }
                None => false,
            });
    }

    fn watch(&self, shared: &Arc<Shared>) {
        self.watched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Arc::downgrade(shared));
    }
}

impl Shared {
    /// One look at `now`: the lease, a handover, the poll clock. A session
    /// that has ended already is left alone (asked only when something
    /// trips: the token's check takes a lock).
    fn check(&self, now: Instant) {
        let ended = || self.session.is_cancelled();
        if let Some(lease) = &self.lease {
            if !lease.is_held_now() {
                if !ended() {
                    self.lease_lost.store(true, Ordering::SeqCst);
                    self.session.cancel();
                }
                return;
            }
            if lease.handover_wanted() {
                if !ended() {
                    self.handover.store(true, Ordering::SeqCst);
                    self.session.cancel();
                }
                return;
            }
        }
        let sent = self.poll_sent.load(Ordering::SeqCst);
        if sent == NOT_POLLING {
            return;
        }
        let waited = now
            .saturating_duration_since(self.epoch)
            .saturating_sub(Duration::from_millis(sent));
        if waited >= self.watchdog_after && !ended() {
            self.stalled.store(true, Ordering::SeqCst);
            self.span.in_scope(|| {
                error!(
                    waited = %short(waited),
                    "watchdog: getUpdates has not answered for {} (watchdog_after is {}); restarting the worker",
                    short(waited),
                    short(self.watchdog_after)
                );
            });
            self.session.cancel();
        }
    }
}

/// Watches a session; cancels `session` when it trips. Dropping it stops
/// the watching.
pub struct SessionGuard {
    shared: Arc<Shared>,
}

impl SessionGuard {
    /// Starts watching, among `guards`: `lease` (when the store has
    /// leases) and polls longer than `watchdog_after`.
    pub fn start(
        guards: &Guards,
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
            session,
            watchdog_after,
            span: tracing::Span::current(),
        });
        guards.watch(&shared);
        SessionGuard { shared }
    }

    /// True while the lease is held; when not, the session counts as
    /// having lost it. Checked before each poll, so a process woken from a
    /// pause never polls a bot that is no longer its own.
    pub async fn lease_held(&self) -> bool {
        let Some(lease) = &self.shared.lease else {
            return true;
        };
        if lease.is_held_now() {
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
