//! The poll loop: a polling bot's source of updates. It long-polls
//! `getUpdates` with the stored offset, admits what is new, stores it in
//! the inbox together with the offset that confirms it, hands it to the
//! session's consumer, and polls again. It never waits for a handler or a
//! send, only for the commit that stores what it received; at most
//! [`MAX_OPEN`] updates are open at once, and past that it waits for the
//! consumer before asking for more. Telegram's states that are not crashes
//! (409 Conflict, 429, a webhook set) are handled here.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use teloxide::payloads::DeleteWebhookSetters;
use teloxide::requests::Requester;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::consumer::Consumer;
use super::decide::SessionEnd;
use super::guard::SessionGuard;
use super::progress::{Ledger, Progress};
use super::session::rate_limit_jitter;
use super::{Kept, Worker};
use crate::config::OnWebhook;
use crate::outbox::{self, OutboxError, Sink};
use crate::restart::conflict_delay;
use crate::status::{Incident, WorkerState, short};
use crate::store::InboxRow;
use crate::telegram::api::CallError;
use crate::telegram::polling::{Delivered, Poller, Rejected};
use crate::telegram::{BotHandle, ErrorClass};

/// How often a conflict that goes on is logged again.
const CONFLICT_REMINDER: Duration = Duration::from_secs(300);
/// At most this many polls per second while polls come back at once
/// without anything new (open updates sent again, or a server that
/// answers empty batches much faster than the long-poll timeout).
const MIN_FAST_POLL_INTERVAL: Duration = Duration::from_millis(334);
/// The longest wait between two polls while the Bot API is unreachable
/// (or answers 5xx): it is asked again this often, not after a restart
/// backoff grown to `max_backoff`.
const OUTAGE_PROBE: Duration = Duration::from_secs(5);
/// Rejected update ids remembered, so each is logged once.
const REJECTED_KEPT: usize = 1_000;
/// Updates received and not yet handled, at most: ten full `getUpdates`
/// answers. Each lane holds at most [`super::dispatch::MAX_PER_LANE`] of
/// them, so one stuck chat cannot fill it.
pub const MAX_OPEN: usize = 1_000;

/// The commit that stores a batch.
type Stored = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), OutboxError>> + Send>>;

/// Conflict bookkeeping for the log policy: warn when it starts, remind
/// every few minutes, raise to an error once it lasts too long.
#[derive(Default)]
pub(super) struct ConflictLog {
    started: Option<Instant>,
    last_409: Option<Instant>,
    count: u32,
    last_reminder: Option<Instant>,
    alerted: bool,
}

impl Worker {
    /// Polls until the session ends; how it ended.
    pub(super) async fn poll_loop(
        &self,
        bot: &BotHandle,
        kept: &mut Kept,
        session: &CancellationToken,
        guard: &SessionGuard,
        consumer: &mut Consumer,
        outbox: &mut outbox::Session,
    ) -> SessionEnd {
        let progress = kept.progress.clone();
        let mut webhook_deleted = false;
        // Failed polls in a row while the Bot API is unreachable.
        let mut outage = 0u32;
        let mut rejected_logged: BTreeSet<u32> = BTreeSet::new();
        let mut wait_until: Option<tokio::time::Instant> = None;
        let mut moved = progress.watch();
        let sink = outbox.sink();
        // A program's own `allowed_updates`, which a new poll carries.
        let mut allowed = consumer.allowed_updates();
        loop {
            if let Some(end) = consumer.ended(self) {
                return end;
            }
            // Bounded: with MAX_OPEN updates waiting for handlers, ask for
            // more only once some are handled.
            moved.borrow_and_update();
            if progress.with(|ledger| ledger.open_count()) >= MAX_OPEN {
                tokio::select! {
                    biased;
                    () = session.cancelled() => return SessionEnd::Stopped,
                    reason = outbox.failed() => return store_down(&reason),
                    end = consumer.failed(self) => return end,
                    _ = moved.changed() => {}
                }
                continue;
            }
            if let Some(until) = wait_until {
                tokio::select! {
                    biased;
                    () = session.cancelled() => return SessionEnd::Stopped,
                    reason = outbox.failed() => return store_down(&reason),
                    end = consumer.failed(self) => return end,
                    () = tokio::time::sleep_until(until) => {}
                }
            }
            if let Some(allowed) = allowed.as_mut() {
                let asked = allowed.borrow_and_update().clone();
                if asked.is_some() {
                    kept.poller.set_allowed_updates(asked);
                }
            }
            wait_until = None;
            if !guard.lease_held().await {
                return SessionEnd::Stopped;
            }
            let offset = progress.with(|ledger| ledger.offset());
            guard.polling();
            // Cancel-safe: an abandoned poll loses nothing; the offset only
            // moves when the committer records handled updates.
            let result = tokio::select! {
                biased;
                () = session.cancelled() => {
                    guard.polled();
                    return SessionEnd::Stopped;
                }
                reason = outbox.failed() => return store_down(&reason),
                end = consumer.failed(self) => {
                    guard.polled();
                    return end;
                }
                // The program asked for other update types: poll anew with them.
                () = changed(&mut allowed) => {
                    guard.polled();
                    continue;
                }
                result = kept.poller.poll(offset, |id| progress.with(|ledger| ledger.knows(id))) => result,
            };
            guard.polled();
            let batch = match result {
                Ok(batch) => batch,
                Err(err) => {
                    match self
                        .poll_failed(bot, kept, &err, &mut webhook_deleted, &mut outage)
                        .await
                    {
                        Ok(None) => {}
                        Ok(Some(wait)) => {
                            tokio::select! {
                                () = session.cancelled() => return SessionEnd::Stopped,
                                () = tokio::time::sleep(wait) => {}
                            }
                        }
                        Err(end) => return end,
                    }
                    continue;
                }
            };
            outage = 0;
            self.status.polled();
            self.after_good_poll(kept);
            // New updates are stored with the offset that confirms them
            // before the next poll sends it. Their handlers start at once:
            // a handler's decision is queued behind this job, so it cannot
            // be committed first.
            let received = batch.updates.len();
            let (admitted, next, stored) =
                admit(&progress, &sink, batch.updates, batch.highest, offset);
            log_rejected(&batch.rejected, &mut rejected_logged);
            let new = admitted.len();
            let skipped = batch.known + received - new;
            if skipped > 0 {
                debug!(skipped, "skipped updates open or handled already");
            }
            if let Some(stored) = stored {
                let handed = consumer.take(admitted, stored);
                tokio::select! {
                    biased;
                    () = session.cancelled() => return SessionEnd::Stopped,
                    reason = outbox.failed() => return store_down(&reason),
                    result = handed => {
                        if let Err(err) = result {
                            return store_down(&err.to_string());
                        }
                    }
                }
            }
            // Nothing new, long before the long poll's timeout, and the
            // offset has not moved since this poll was sent: asking again
            // now would get the same answer. A server that answers at once
            // must not make this spin. (When the offset moved, the next
            // poll confirms more and may long-poll: it goes at once.)
            if new == 0 && batch.took < self.poll_timeout / 2 && next.is_none() {
                wait_until = Some(tokio::time::Instant::now() + MIN_FAST_POLL_INTERVAL);
            }
        }
    }

    /// What follows a failed poll: poll again at once (`None`), after a
    /// wait, or end the session. A 409 from another poller is a conflict
    /// state, a webhook is deleted (or parks the bot, as `on_webhook`
    /// says), a 429 waits exactly `retry_after`. An outage (the network, a
    /// timeout, a 5xx) keeps the session, and its outbox, and polls again
    /// a few seconds apart at most ([`OUTAGE_PROBE`]), so the bot is back
    /// within seconds of the Bot API and a process bot's sends are queued
    /// meanwhile.
    async fn poll_failed(
        &self,
        bot: &BotHandle,
        kept: &mut Kept,
        err: &CallError,
        webhook_deleted: &mut bool,
        outage: &mut u32,
    ) -> Result<Option<Duration>, SessionEnd> {
        self.status.error(&err.class);
        match err.class {
            ErrorClass::ConflictOtherPoller => Ok(Some(self.conflict_wait(&mut kept.conflict))),
            ErrorClass::ConflictWebhook if !*webhook_deleted && self.own_webhook(bot).await => {
                // botvisor set it when this bot had webhook delivery:
                // switching back to polling removes it.
                info!("deleting the webhook botvisor set for this bot: it polls now");
                *webhook_deleted = true;
                self.delete_webhook(bot).await.map(|()| None)
            }
            ErrorClass::ConflictWebhook => match self.config.restart.on_webhook {
                OnWebhook::Park => Err(SessionEnd::Park(
                    "a webhook is set for this token (on_webhook = \"park\")".to_owned(),
                )),
                OnWebhook::Delete if *webhook_deleted => Err(SessionEnd::Failed(
                    "a webhook was set again after botvisor deleted it".to_owned(),
                )),
                OnWebhook::Delete => {
                    *webhook_deleted = true;
                    self.delete_webhook(bot).await.map(|()| None)
                }
            },
            ErrorClass::RateLimited(retry_after) => {
                let wait = retry_after + rate_limit_jitter();
                self.status.set(
                    WorkerState::BackingOff,
                    format!(
                        "Telegram asked to wait {} (429) before polling again",
                        short(retry_after)
                    ),
                    Some(wait),
                );
                Ok(Some(wait))
            }
            ErrorClass::Transient => {
                let policy = crate::config::RestartPolicy {
                    max_backoff: self.config.restart.max_backoff.min(OUTAGE_PROBE),
                    ..self.config.restart.clone()
                };
                let wait = crate::restart::delay_for(&policy, *outage, rand::random());
                *outage = outage.saturating_add(1);
                self.status.set(
                    WorkerState::BackingOff,
                    format!("getUpdates failed ({}): {}", err.class, err.detail),
                    Some(wait),
                );
                Ok(Some(wait))
            }
            _ => Err(self.call_failed("getUpdates", err)),
        }
    }

    /// A poll succeeded: a conflict may be over, the state is running.
    fn after_good_poll(&self, kept: &mut Kept) {
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
            Err(err) => Err(self.teloxide_failed("deleteWebhook", &err)),
        }
    }

    /// Confirms the handled updates at a stop, bounded in time.
    pub(super) async fn confirm(&self, poller: &mut Poller, offset: Option<u32>) {
        let Some(offset) = offset.filter(|_| poller.unconfirmed(offset)) else {
            return;
        };
        match poller.confirm(offset).await {
            Ok(()) => info!(offset, "confirmed the handled updates"),
            Err(err) => warn!(
                offset,
                error = %err,
                "could not confirm the handled updates; Telegram will deliver them again"
            ),
        }
    }
}

/// The updates of an answer that are new (now open), the offset that
/// confirms the answer when it moved past `offset`, and the commit that
/// stores both (none when there is nothing to store).
fn admit(
    progress: &Progress,
    sink: &Sink,
    updates: Vec<Delivered>,
    highest: Option<u32>,
    offset: Option<u32>,
) -> (Vec<Delivered>, Option<u32>, Option<Stored>) {
    let admitted: Vec<Delivered> = progress.with(|ledger| {
        updates
            .into_iter()
            .filter(|delivered| ledger.admit(delivered.id()))
            .collect()
    });
    let next = highest
        .map(Ledger::next_offset)
        .filter(|next| Some(*next) != offset);
    let stored = (next.is_some() || !admitted.is_empty()).then(|| -> Stored {
        Box::pin(
            sink.receive(
                admitted
                    .iter()
                    .map(|delivered| InboxRow {
                        update_id: delivered.id(),
                        body: delivered.raw.clone(),
                    })
                    .collect(),
                next,
            ),
        )
    });
    (admitted, next, stored)
}

/// One line per update the parser rejected, once per id.
fn log_rejected(rejected: &[Rejected], logged: &mut BTreeSet<u32>) {
    for rejected in rejected {
        if rejected.id.is_none_or(|id| logged.insert(id)) {
            match rejected.id {
                Some(update_id) => {
                    warn!(update_id, why = %rejected.why, "skipping an update that cannot be read");
                }
                None => {
                    warn!(why = %rejected.why, "skipping an update that cannot be read and has no usable id");
                }
            }
        }
    }
    if logged.len() > REJECTED_KEPT {
        logged.clear();
    }
}

/// Resolves when `allowed` changes (never without one).
pub(super) async fn changed(
    allowed: &mut Option<tokio::sync::watch::Receiver<Option<Vec<String>>>>,
) {
    let Some(allowed) = allowed else {
        return std::future::pending().await;
    };
    if allowed.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

fn store_down(reason: &str) -> SessionEnd {
    SessionEnd::StoreDown(format!("recording updates and messages failed: {reason}"))
}
