//! One bot's life: connect, poll, handle, and when something fails, back off,
//! restart, or park, without touching any other bot.
//!
//! A worker is a restart loop around a *session* (`getMe`, the kind's start,
//! then the polling loop). Telegram's conditions that are states rather than
//! crashes (409 Conflict, 429, a webhook) are handled inside the session;
//! anything else that ends a session, a panic included, is a failure that
//! the restart loop answers with exponential backoff, and with a park when
//! failures come faster than the restart intensity allows. A rejected token
//! parks the bot at once. Every wait sits in a `select!` with the worker's
//! cancellation token.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::FutureExt;
use teloxide::payloads::DeleteWebhookSetters;
use teloxide::requests::Requester;
use teloxide::types::Update;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, warn};

use crate::bots::{Context, Kind};
use crate::config::{BotConfig, OnWebhook};
use crate::restart::{Backoff, Intensity, conflict_delay};
use crate::secret::Token;
use crate::status::{Incident, StatusBoard, StatusSender, WorkerState, short};
use crate::store::{Lease, Leases, OFFSET_MAX_AGE, Store, StoreError};
use crate::telegram::polling::{Dispatcher, Journal, Poller, panic_message};
use crate::telegram::{self, BotHandle, ErrorClass};

/// How long the last offset confirmation may take when a worker stops.
const CONFIRM_TIMEOUT: Duration = Duration::from_millis(1500);
/// How often a conflict that goes on is logged again.
const CONFLICT_REMINDER: Duration = Duration::from_secs(300);
/// The most extra time added to a 429's `retry_after`.
const RATE_LIMIT_JITTER_MS: u64 = 250;

/// Everything a worker needs, decided by the supervisor.
pub struct Worker {
    pub config: BotConfig,
    pub token: Token,
    pub client: reqwest::Client,
    pub poll_timeout: Duration,
    /// How long running handlers may go on after a stop is requested.
    pub stop_grace: Duration,
    pub status: StatusSender,
    pub cancel: CancellationToken,
    /// Where handled offsets and updates are recorded.
    pub store: Store,
    /// Where this bot's lease is taken.
    pub leases: Arc<Leases>,
    /// A `getUpdates` unanswered this long restarts the worker.
    pub watchdog_after: Duration,
    /// Every bot's status, for `/durum`.
    pub board: StatusBoard,
}

/// The poll clock's value while no `getUpdates` is outstanding.
const NOT_POLLING: u64 = u64::MAX;

/// How often a running worker checks that it still holds its lease.
const LEASE_CHECK: Duration = Duration::from_secs(1);
/// How often a worker in standby tries to take its bot's lease.
const LEASE_RETRY: Duration = Duration::from_secs(1);

/// What a worker keeps across sessions.
struct Kept {
    /// The offset: a restart after a failed poll must not ask again for the
    /// updates already handled.
    poller: Poller,
    /// The lease on the bot, once taken; given back when the worker stops.
    lease: Option<Arc<Lease>>,
    /// Updates handled above the offset (the journal after an unclean
    /// stop): delivered again by Telegram, they are skipped.
    handled: HashSet<u32>,
    /// Whether the stored offset has been read (once per worker).
    loaded: bool,
    /// When the offset was last saved: an offset saved within six days
    /// means an update below it was handled already.
    offset_saved: Option<SystemTime>,
    /// The conflict going on, if any: it outlives a session, so a restart
    /// in the middle of one neither ends it nor alerts twice.
    conflict: ConflictLog,
}

/// How a session ended.
enum SessionEnd {
    /// The worker was asked to stop.
    Stopped,
    /// A failure: restart with backoff (counted against the intensity).
    Failed(String),
    /// Not worth retrying soon: park at once.
    Park(String),
    /// Telegram asked to wait (429 outside the polling loop): wait exactly
    /// that long, not counted as a failure.
    Wait(Duration, String),
    /// The store failed: back off and try again, not counted as a failure,
    /// so the bot is back as soon as the store is.
    StoreDown(String),
}

/// A little extra time after a 429's `retry_after`, never less than it.
fn rate_limit_jitter() -> Duration {
    Duration::from_millis(rand::random_range(0..=RATE_LIMIT_JITTER_MS))
}

/// Conflict bookkeeping for the log policy: warn when it starts, remind
/// every few minutes, raise to an error once it lasts too long.
#[derive(Default)]
struct ConflictLog {
    started: Option<Instant>,
    last_409: Option<Instant>,
    count: u32,
    last_reminder: Option<Instant>,
    alerted: bool,
}

impl Worker {
    /// Runs the bot until its cancellation token is cancelled.
    pub async fn run(self) {
        let bot = BotHandle::new(
            &self.config.name,
            &self.token,
            &self.config.api_url,
            self.client.clone(),
        )
        .counting_into(self.status.sent_counter());
        let kind = Arc::new(Kind::new(&self.config.kind));
        // The offset outlives a session: a restart after a failed poll must
        // not ask again for the updates already handled.
        let mut kept = Kept {
            poller: Poller::new(bot.clone(), self.poll_timeout, kind.allowed_updates()),
            lease: None,
            handled: HashSet::new(),
            loaded: false,
            offset_saved: None,
            conflict: ConflictLog::default(),
        };
        let policy = self.config.restart.clone();
        let mut backoff = Backoff::new(policy.clone());
        let mut intensity = Intensity::new(&policy);
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            self.status
                .set(WorkerState::Starting, "connecting to Telegram", None);
            let started = Instant::now();
            let end = AssertUnwindSafe(self.session(&bot, &kind, &mut kept))
                .catch_unwind()
                .await;
            let end = end.unwrap_or_else(|panic| {
                SessionEnd::Failed(format!("the worker panicked: {}", panic_message(&panic)))
            });
            let wait = match end {
                SessionEnd::Stopped => break,
                SessionEnd::Wait(wait, reason) => {
                    self.status.set(WorkerState::BackingOff, reason, Some(wait));
                    wait
                }
                SessionEnd::StoreDown(reason) => {
                    self.status.raise(Incident::StoreDown, reason.clone());
                    if started.elapsed() >= policy.window {
                        backoff.reset();
                    }
                    let wait = backoff.next_delay();
                    self.status.set(WorkerState::BackingOff, reason, Some(wait));
                    wait
                }
                SessionEnd::Park(reason) => {
                    self.status
                        .set(WorkerState::Parked, reason, Some(policy.park_for));
                    intensity.clear();
                    backoff.reset();
                    policy.park_for
                }
                SessionEnd::Failed(reason) => {
                    self.status.restarted();
                    if started.elapsed() >= policy.window {
                        // It ran long enough to count as healthy.
                        backoff.reset();
                    }
                    if intensity.record(Instant::now()) {
                        let reason = format!(
                            "more than {} restarts within {}; last failure: {reason}",
                            policy.max_restarts,
                            short(policy.window)
                        );
                        self.status
                            .set(WorkerState::Parked, reason, Some(policy.park_for));
                        intensity.clear();
                        backoff.reset();
                        policy.park_for
                    } else {
                        let wait = backoff.next_delay();
                        self.status.set(WorkerState::BackingOff, reason, Some(wait));
                        wait
                    }
                }
            };
            if !self.sleep(wait).await {
                break;
            }
        }
        if let Some(lease) = kept
            .lease
            .take()
            .and_then(|lease| Arc::try_unwrap(lease).ok())
        {
            // After the last poll: the next instance may take over at once.
            lease.release().await;
        }
        self.status.set(WorkerState::Stopped, "stopped", None);
    }

    /// Sleeps unless cancelled first; false when cancelled.
    async fn sleep(&self, wait: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    async fn session(&self, bot: &BotHandle, kind: &Arc<Kind>, kept: &mut Kept) -> SessionEnd {
        let me = tokio::select! {
            () = self.cancel.cancelled() => return SessionEnd::Stopped,
            me = bot.api().get_me() => me,
        };
        let me = match me {
            Ok(me) => me,
            Err(err) => return self.request_failed("getMe", &err),
        };
        let bot_id = me.id.0.to_string();
        if let Err(end) = self.take_lease(&bot_id, kept).await {
            return end;
        }
        if !kept.loaded {
            if let Err(err) = self.load_offset(&bot_id, kept).await {
                return SessionEnd::StoreDown(format!("reading the stored offset failed: {err}"));
            }
            kept.loaded = true;
        } else if self.status.has(Incident::StoreDown) {
            // A read shows the store answers again (the offset in memory
            // stays: it may be ahead of the stored one).
            if let Err(err) = self.store.offset(&bot_id).await {
                return SessionEnd::StoreDown(format!("the store still fails: {err}"));
            }
        }
        self.status.clear(Incident::StoreDown);
        let ctx = Arc::new(Context {
            bot: bot.clone(),
            username: me.username().to_owned(),
            bot_id: bot_id.clone(),
            store: self.store.clone(),
            status: self.status.clone(),
            board: self.board.clone(),
        });
        let started = tokio::select! {
            () = self.cancel.cancelled() => return SessionEnd::Stopped,
            started = kind.start(&ctx) => started,
        };
        if let Err(err) = started {
            return SessionEnd::Failed(format!(
                "the {} kind could not start: {err}",
                self.config.kind.name()
            ));
        }
        self.status.set(
            WorkerState::Running,
            format!("polling as @{} ({})", ctx.username, self.config.kind.name()),
            None,
        );

        let journal = Journal {
            store: self.store.clone(),
            bot_id: bot_id.clone(),
        };
        let dispatcher = Dispatcher::new(kind.clone(), ctx.clone(), Some(journal));
        let poller = &mut kept.poller;
        // Everything the session runs stops when the worker is cancelled,
        // when the lease is lost, or when a poll hangs: a guard checks both
        // every second, so a lost lease stops the long poll, the batch and
        // the kind's work at once, before another instance can take the
        // bot, and polling that died silently is restarted.
        let session = self.cancel.child_token();
        let _end_session = session.clone().drop_guard();
        let lease_lost = Arc::new(AtomicBool::new(false));
        let stalled = Arc::new(AtomicBool::new(false));
        // When the outstanding getUpdates was sent, in ms since `epoch`.
        let epoch = Instant::now();
        let poll_sent = Arc::new(AtomicU64::new(NOT_POLLING));
        {
            let session = session.clone();
            let lease = kept.lease.clone();
            let lost = lease_lost.clone();
            let stalled = stalled.clone();
            let poll_sent = poll_sent.clone();
            let limit = self.watchdog_after;
            tokio::spawn(
                async move {
                    loop {
                        tokio::select! {
                            () = session.cancelled() => return,
                            () = tokio::time::sleep(LEASE_CHECK) => {}
                        }
                        if let Some(lease) = &lease
                            && !lease.is_held().await
                        {
                            lost.store(true, Ordering::SeqCst);
                            session.cancel();
                            return;
                        }
                        let sent = poll_sent.load(Ordering::SeqCst);
                        if sent == NOT_POLLING {
                            continue;
                        }
                        let waited = epoch.elapsed().saturating_sub(Duration::from_millis(sent));
                        if waited >= limit {
                            stalled.store(true, Ordering::SeqCst);
                            error!(
                                waited = %short(waited),
                                "watchdog: getUpdates has not answered for {} (watchdog_after is {}); restarting the worker",
                                short(waited),
                                short(limit)
                            );
                            session.cancel();
                            return;
                        }
                    }
                }
                .in_current_span(),
            );
        }
        // The kind's own work (the relay's checks) runs beside the polling
        // loop and stops with it, within the stop grace.
        let background_stop = session.child_token();
        let background = kind
            .background(ctx.clone(), background_stop.clone())
            .map(|work| tokio::spawn(work.in_current_span()));
        let _stop_background = background_stop.clone().drop_guard();
        let mut webhook_deleted = false;
        loop {
            if let Some(task) = &background
                && task.is_finished()
            {
                return SessionEnd::Failed(format!(
                    "the {} kind's background work stopped",
                    self.config.kind.name()
                ));
            }
            // Cancel-safe: an abandoned poll loses nothing, the offset only
            // moves after a batch has been handled.
            let sent_at = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(NOT_POLLING - 1);
            poll_sent.store(sent_at, Ordering::SeqCst);
            let result = tokio::select! {
                biased;
                () = session.cancelled() => break,
                result = poller.poll() => result,
            };
            poll_sent.store(NOT_POLLING, Ordering::SeqCst);
            let updates = match result {
                Ok(updates) => updates,
                Err(err) => {
                    let class = telegram::classify(&err);
                    self.status.error(&class);
                    let wait = match class {
                        ErrorClass::ConflictOtherPoller => self.conflict_wait(&mut kept.conflict),
                        ErrorClass::ConflictWebhook => match self.config.restart.on_webhook {
                            OnWebhook::Park => {
                                return SessionEnd::Park(
                                    "a webhook is set for this token (on_webhook = \"park\")"
                                        .to_owned(),
                                );
                            }
                            OnWebhook::Delete if webhook_deleted => {
                                return SessionEnd::Failed(
                                    "a webhook was set again after botvisor deleted it".to_owned(),
                                );
                            }
                            OnWebhook::Delete => {
                                webhook_deleted = true;
                                if let Err(end) = self.delete_webhook(bot).await {
                                    return end;
                                }
                                continue;
                            }
                        },
                        ErrorClass::RateLimited(retry_after) => {
                            let jitter =
                                Duration::from_millis(rand::random_range(0..=RATE_LIMIT_JITTER_MS));
                            let wait = retry_after + jitter;
                            self.status.set(
                                WorkerState::BackingOff,
                                format!(
                                    "Telegram asked to wait {} (429) before polling again",
                                    short(retry_after)
                                ),
                                Some(wait),
                            );
                            wait
                        }
                        _ => return self.request_failed("getUpdates", &err),
                    };
                    if !self.sleep(wait).await {
                        break;
                    }
                    continue;
                }
            };
            self.status.polled();
            if let Some(started) = kept.conflict.started {
                // A real second poller makes polls fail and succeed by turns;
                // the conflict is over only once no 409 came for longer than
                // the other side's longest wait plus one long poll.
                let quiet = self.config.restart.conflict_max_backoff + self.poll_timeout;
                if kept
                    .conflict
                    .last_409
                    .is_none_or(|last| last.elapsed() >= quiet)
                {
                    let lasted = short(started.elapsed());
                    self.status.set(
                        WorkerState::Running,
                        format!("the conflict is over after {lasted}; polling again"),
                        None,
                    );
                    kept.conflict = ConflictLog::default();
                    self.status.clear(Incident::Conflict);
                }
            } else if self.status.state() != WorkerState::Running {
                self.status.set(WorkerState::Running, "polling again", None);
            }
            if updates.is_empty() {
                continue;
            }
            let last = updates.iter().map(|u| u.id.0).max().unwrap_or(0);
            // Handled already: in the journal, or below a recent offset
            // (two pollers can receive one batch). After six days without
            // a saved offset, Telegram may have restarted its ids lower,
            // and lower ids are new.
            let below = kept
                .offset_saved
                .is_some_and(|at| at.elapsed().is_ok_and(|age| age < OFFSET_MAX_AGE))
                .then(|| poller.next_offset())
                .flatten();
            let (skipped, updates): (Vec<Update>, Vec<Update>) =
                updates.into_iter().partition(|u| {
                    kept.handled.contains(&u.id.0) || below.is_some_and(|offset| u.id.0 < offset)
                });
            if !skipped.is_empty() {
                info!(
                    count = skipped.len(),
                    "skipping updates already handled before a restart"
                );
            }
            let batch = dispatcher.run_batch(updates, &session, self.stop_grace);
            tokio::pin!(batch);
            let outcome = tokio::select! {
                outcome = &mut batch => outcome,
                () = session.cancelled() => {
                    self.status.set(WorkerState::Stopping, "finishing the handlers that are running", None);
                    batch.await
                }
            };
            self.status.handled(outcome.handled);
            let next = outcome.lowest_open.unwrap_or(last.saturating_add(1));
            kept.handled.extend(&outcome.handled_ids);
            kept.handled.retain(|id| *id >= next);
            poller.advance(next);
            if let Some(err) = outcome.store_error {
                return SessionEnd::StoreDown(format!("recording handled updates failed: {err}"));
            }
            if let Err(err) = self.store.save_offset(&bot_id, next).await {
                return SessionEnd::StoreDown(format!("saving the offset failed: {err}"));
            }
            self.status.clear(Incident::StoreDown);
            kept.offset_saved = Some(SystemTime::now());
        }
        let lost = lease_lost.load(Ordering::SeqCst);
        let stalled = stalled.load(Ordering::SeqCst);
        if !lost && !stalled {
            self.status
                .set(WorkerState::Stopping, "stop requested", None);
        }
        if let Some(mut task) = background {
            background_stop.cancel();
            if tokio::time::timeout(self.stop_grace, &mut task)
                .await
                .is_err()
            {
                // Aborted, not detached: nothing of it may run once the
                // lease is given back.
                task.abort();
                let _ = task.await;
                error!(
                    "the {} kind's background work did not stop in time; abandoned",
                    self.config.kind.name()
                );
            }
        }
        if stalled {
            return SessionEnd::Failed(format!(
                "watchdog: getUpdates went unanswered for {}",
                short(self.watchdog_after)
            ));
        }
        if lost {
            // No last getUpdates: another instance may be polling already.
            kept.lease = None;
            return SessionEnd::StoreDown(
                "lost the lease on this bot (the store connection closed); stopped polling at once"
                    .to_owned(),
            );
        }
        self.confirm(poller).await;
        SessionEnd::Stopped
    }

    /// Takes the lease on the bot, waiting in standby while another process
    /// holds it.
    async fn take_lease(&self, bot_id: &str, kept: &mut Kept) -> Result<(), SessionEnd> {
        if let Some(lease) = &kept.lease {
            if lease.is_held().await {
                return Ok(());
            }
            kept.lease = None;
        }
        loop {
            match self.leases.try_acquire(bot_id).await {
                Ok(Some(lease)) => {
                    if self.status.state() == WorkerState::Standby {
                        info!("took over the bot from another botvisor instance");
                    }
                    kept.lease = Some(Arc::new(lease));
                    // Another instance may have handled updates meanwhile.
                    kept.loaded = false;
                    return Ok(());
                }
                Ok(None) => {
                    self.status.set(
                        WorkerState::Standby,
                        "another botvisor instance holds this bot; waiting to take over",
                        None,
                    );
                    if !self.sleep(LEASE_RETRY).await {
                        return Err(SessionEnd::Stopped);
                    }
                }
                Err(err) => {
                    return Err(SessionEnd::StoreDown(format!(
                        "taking the lease failed: {err}"
                    )));
                }
            }
        }
    }

    /// Resumes after the stored offset, unless it is too old to trust.
    async fn load_offset(&self, bot_id: &str, kept: &mut Kept) -> Result<(), StoreError> {
        match self.store.offset(bot_id).await? {
            Some(stored) if stored.is_fresh() => {
                kept.poller.advance(stored.next_offset);
                kept.offset_saved = Some(stored.updated_at);
                kept.handled = self.store.handled_above(bot_id, stored.next_offset).await?;
                info!(
                    offset = stored.next_offset,
                    handled_above = kept.handled.len(),
                    "resuming after the stored offset"
                );
            }
            Some(stored) => {
                warn!(
                    offset = stored.next_offset,
                    "ignoring a stored offset older than six days: Telegram restarts update ids after a week"
                );
                self.store.forget(bot_id).await?;
            }
            None => {
                // No batch finished yet, but handlers may have: a crash
                // in the first batch leaves only the journal.
                kept.handled = self.store.handled_above(bot_id, 0).await?;
            }
        }
        Ok(())
    }

    /// Sorts a failed request into how the session ends.
    fn request_failed(&self, method: &str, err: &teloxide::RequestError) -> SessionEnd {
        let class = telegram::classify(err);
        self.status.error(&class);
        match class {
            ErrorClass::RateLimited(retry_after) => SessionEnd::Wait(
                retry_after + rate_limit_jitter(),
                format!(
                    "Telegram asked to wait {} (429) after {method}",
                    short(retry_after)
                ),
            ),
            ErrorClass::Unauthorized => SessionEnd::Park(format!(
                "Telegram rejected the token in {} ({method}: unauthorized): it is wrong or revoked; \
                 set a valid token and send SIGHUP, or wait for the next attempt",
                self.config.token_env
            )),
            class => SessionEnd::Failed(format!(
                "{method} failed ({class}): {}",
                telegram::errors::describe(err)
            )),
        }
    }

    /// The wait after a 409 from another poller, logging as the conflict
    /// policy says.
    fn conflict_wait(&self, conflict: &mut ConflictLog) -> Duration {
        let now = Instant::now();
        let started = *conflict.started.get_or_insert(now);
        conflict.last_409 = Some(now);
        let lasted = now.duration_since(started);
        let wait = conflict_delay(
            conflict.count,
            self.config.restart.conflict_max_backoff,
            rand::random(),
        );
        conflict.count = conflict.count.saturating_add(1);
        let reason = format!(
            "another process is polling with this bot's token ({}); conflict for {}",
            self.config.token_env,
            short(lasted)
        );
        if self.status.state() != WorkerState::Conflict {
            conflict.last_reminder = Some(now);
            self.status.set(WorkerState::Conflict, reason, Some(wait));
            return wait;
        }
        self.status
            .set(WorkerState::Conflict, reason.clone(), Some(wait));
        if !conflict.alerted && lasted >= self.config.restart.conflict_alert_after {
            conflict.alerted = true;
            self.status.raise(
                Incident::Conflict,
                format!(
                    "for {}; stop the other copy of this bot ({})",
                    short(lasted),
                    self.config.token_env
                ),
            );
            conflict.last_reminder = Some(now);
            error!(
                state = "conflict",
                lasted = %short(lasted),
                "{reason}: stop the other copy of this bot (another botvisor, a laptop, an old script)"
            );
        } else if conflict
            .last_reminder
            .is_none_or(|last| now.duration_since(last) >= CONFLICT_REMINDER)
        {
            conflict.last_reminder = Some(now);
            warn!(state = "conflict", lasted = %short(lasted), retry_in = %short(wait), "still in conflict: {reason}");
        }
        wait
    }

    /// Deletes the webhook that blocks polling, keeping pending updates.
    async fn delete_webhook(&self, bot: &BotHandle) -> Result<(), SessionEnd> {
        let request = bot.api().delete_webhook().drop_pending_updates(false);
        let result = tokio::select! {
            () = self.cancel.cancelled() => return Err(SessionEnd::Stopped),
            result = request => result,
        };
        match result {
            Ok(_) => {
                warn!(
                    "a webhook was set for this token; deleted it (pending updates kept) and polling again"
                );
                Ok(())
            }
            Err(err) => Err(self.request_failed("deleteWebhook", &err)),
        }
    }

    /// Confirms the handled updates at a stop, bounded in time.
    async fn confirm(&self, poller: &mut Poller) {
        let Some(offset) = poller.unconfirmed() else {
            return;
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, poller.confirm()).await {
            Ok(Ok(())) => info!(offset, "confirmed the handled updates"),
            Ok(Err(err)) => warn!(
                offset,
                error = %telegram::errors::describe(&err),
                "could not confirm the handled updates; Telegram will deliver them again"
            ),
            Err(_) => warn!(
                offset,
                "could not confirm the handled updates in time; Telegram will deliver them again"
            ),
        }
    }
}
