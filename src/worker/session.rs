//! One session of a worker: `getMe`, the lease, the stored offset, the
//! outbox, the kind's start, then the poll loop, and the stop that lets
//! running handlers finish, commits what they decided and confirms the
//! offset.
//!
//! The poll loop never waits for a handler: each batch's new updates are
//! stored in the bot's inbox together with the offset that confirms them
//! (one commit), each goes to its chat's lane, and the loop polls again
//! with that offset. A handler's decision takes its update out of the inbox
//! as its messages enter the outbox; what a session leaves unhandled, the
//! next one takes from the inbox first. At most [`MAX_OPEN`] updates are
//! open at once: past that the loop waits for handlers before asking for
//! more.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use teloxide::payloads::DeleteWebhookSetters;
use teloxide::requests::Requester;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, warn};

use super::decide::SessionEnd;
use super::dispatch::Dispatcher;
use super::guard::{SessionGuard, Tripped};
use super::progress::Ledger;
use super::{Kept, Worker};
use crate::bots::{Context, Kind};
use crate::config::OnWebhook;
use crate::outbox;
use crate::restart::conflict_delay;
use crate::status::{Incident, WorkerState, short};
use crate::store::InboxRow;
use crate::store::StoreError;
use crate::telegram::api::{CallError, network_cause};
use crate::telegram::polling::{Delivered, Poller};
use crate::telegram::{self, BotHandle, ErrorClass};

/// How often a conflict that goes on is logged again.
const CONFLICT_REMINDER: Duration = Duration::from_secs(300);
/// The most extra time added to a 429's `retry_after`.
const RATE_LIMIT_JITTER_MS: u64 = 250;
/// How often a worker in standby tries to take its bot's lease.
const LEASE_RETRY: Duration = Duration::from_secs(1);
/// At most this many polls per second while polls come back at once
/// without anything new (open updates sent again, or a server that
/// answers empty batches much faster than the long-poll timeout).
const MIN_FAST_POLL_INTERVAL: Duration = Duration::from_millis(334);
/// Rejected update ids remembered, so each is logged once.
const REJECTED_KEPT: usize = 1_000;
/// Updates received and not yet handled, at most: ten full `getUpdates`
/// answers. Each lane holds at most [`super::dispatch::MAX_PER_LANE`] of
/// them, so one stuck chat cannot fill it.
pub const MAX_OPEN: usize = 1_000;

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

/// A little extra time after a 429's `retry_after`, never less than it.
fn rate_limit_jitter() -> Duration {
    Duration::from_millis(rand::random_range(0..=RATE_LIMIT_JITTER_MS))
}

impl Worker {
    pub(super) async fn session(
        &self,
        bot: &BotHandle,
        kind: &Arc<Kind>,
        kept: &mut Kept,
    ) -> SessionEnd {
        let me = tokio::select! {
            () = self.cancel.cancelled() => return SessionEnd::Stopped,
            me = bot.api().get_me() => me,
        };
        let me = match me {
            Ok(me) => me,
            Err(err) => return self.teloxide_failed("getMe", &err),
        };
        let bot_id = me.id.0.to_string();
        // A SQLite file deleted or replaced under botvisor is a store outage,
        // not a new empty store: nothing confirmed may be forgotten.
        if let Err(err) = self.store.health().await {
            return SessionEnd::StoreDown(format!("the store is not usable: {err}"));
        }
        self.status.set_delivery(self.config.delivery.name());
        if self.webhook.is_some() {
            // From now on a request no session here takes (standby, a
            // restart) is stored for the session that holds the bot.
            self.webhooks
                .store_in(&self.config.name, self.store.clone(), bot_id.clone());
        }
        if let Err(end) = self.take_lease(&bot_id, kept).await {
            return end;
        }
        let webhook = self.webhook.is_some();
        kept.progress.with(|ledger| ledger.keep_handled(webhook));
        if webhook {
            // Telegram repeats a webhook delivery within a day at most.
            let day_ago = i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            )
            .unwrap_or(0)
                - 24 * 3600;
            if let Err(err) = self.store.forget_marks_before(&bot_id, day_ago).await {
                return SessionEnd::StoreDown(format!("pruning the handled updates failed: {err}"));
            }
            kept.loaded = false;
        }
        if !kept.loaded {
            if let Err(err) = self.load_offset(&bot_id, kept).await {
                return SessionEnd::StoreDown(format!("reading the stored offset failed: {err}"));
            }
            kept.loaded = true;
        }
        let mut outbox = match self
            .outbox
            .start(
                bot.clone(),
                self.store.clone(),
                bot_id.clone(),
                kept.progress.clone(),
                webhook,
            )
            .await
        {
            Ok(outbox) => outbox,
            Err(err) => {
                return SessionEnd::StoreDown(format!("reading the queued messages failed: {err}"));
            }
        };
        let inbox = match self.store.inbox_rows(&bot_id).await {
            Ok(rows) => rows,
            Err(err) => {
                outbox.stop().await;
                return SessionEnd::StoreDown(format!(
                    "reading the received updates failed: {err}"
                ));
            }
        };
        // A store that reads but cannot write (a full disk) is still down.
        if let Err(err) = self.store.write_probe(&bot_id).await {
            outbox.stop().await;
            return SessionEnd::StoreDown(format!("writing to the store failed: {err}"));
        }
        self.status.clear(Incident::StoreDown);
        let ctx = Arc::new(Context {
            bot: bot.clone(),
            username: me.username().to_owned(),
            bot_id: bot_id.clone(),
            store: self.store.clone(),
            status: self.status.clone(),
            board: self.board.clone(),
            outbox: outbox.sink(),
        });
        let started = tokio::select! {
            () = self.cancel.cancelled() => {
                outbox.stop().await;
                return SessionEnd::Stopped;
            }
            started = kind.start(&ctx) => started,
        };
        if let Err(err) = started {
            outbox.stop().await;
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

        // Everything the session runs stops when the worker is cancelled,
        // when the lease is lost, or when a poll hangs.
        let session = self.cancel.child_token();
        let _end_session = session.clone().drop_guard();
        let guard = SessionGuard::start(session.clone(), kept.lease.clone(), self.watchdog_after);
        // The kind's own work (the relay's checks) runs beside the poll
        // loop, and hears what the outbox learns about chats.
        let background_stop = CancellationToken::new();
        let _stop_background = background_stop.clone().drop_guard();
        let background = kind
            .background(ctx.clone(), background_stop.clone())
            .map(|work| tokio::spawn(work.in_current_span()));
        if let Some(mut events) = outbox.take_events() {
            let kind = kind.clone();
            let ctx = ctx.clone();
            let stop = background_stop.clone();
            tokio::spawn(
                async move {
                    loop {
                        let event = tokio::select! {
                            () = stop.cancelled() => return,
                            event = events.recv() => event,
                        };
                        match event {
                            Some(event) => kind.chat_event(&ctx, event).await,
                            None => return,
                        }
                    }
                }
                .in_current_span(),
            );
        }
        let lanes_stop = CancellationToken::new();
        let mut dispatcher = Dispatcher::new(kind.clone(), ctx.clone(), outbox.sink(), lanes_stop);
        // What the last session received and did not handle goes first.
        kept.progress.with(|ledger| ledger.close_session());
        if !inbox.is_empty() {
            info!(
                count = inbox.len(),
                "handling the updates received before the restart"
            );
        }
        for row in inbox {
            match Delivered::parse(&row.body) {
                Some(delivered) if kept.progress.with(|l| l.reopen(delivered.id())) => {
                    dispatcher.resume(delivered.update);
                }
                Some(_) => {}
                None => {
                    warn!(
                        update_id = row.update_id,
                        "skipping a stored update this version cannot read"
                    );
                    kept.progress.with(|l| l.reopen(row.update_id));
                    outbox.sink().handled(row.update_id, Vec::new());
                }
            }
        }
        let end = match &self.webhook {
            Some(target) => {
                self.webhook_loop(
                    bot,
                    kind,
                    target,
                    &bot_id,
                    kept,
                    &session,
                    &mut dispatcher,
                    &mut outbox,
                    background.as_ref(),
                )
                .await
            }
            None => {
                self.poll_loop(
                    bot,
                    kept,
                    &session,
                    &guard,
                    &mut dispatcher,
                    &mut outbox,
                    background.as_ref(),
                )
                .await
            }
        };
        if webhook {
            // New requests get 503 from now on: Telegram tries again later.
            self.webhooks.detach(&self.config.name);
        }

        // The stop: running handlers finish (or are abandoned at the grace),
        // the kind's work stops, what they decided is committed. With the
        // lease lost, another instance may own the bot already: the outbox
        // stops at once, sending and writing nothing more.
        let tripped = guard.tripped();
        let mut outbox = Some(outbox);
        if tripped == Some(Tripped::LeaseLost)
            && let Some(outbox) = outbox.take()
        {
            outbox.abandon();
        }
        if end == SessionEnd::Stopped && tripped.is_none() {
            self.status.set(
                WorkerState::Stopping,
                "finishing the handlers that are running",
                None,
            );
        }
        background_stop.cancel();
        let (_unfinished, ()) = tokio::join!(
            dispatcher.finish(self.stop_grace),
            self.stop_background(background)
        );
        if let Some(outbox) = outbox {
            outbox.stop().await;
        }
        let offset = kept.progress.with(|ledger| {
            ledger.close_session();
            ledger.offset()
        });
        match tripped {
            Some(Tripped::PollStalled) => {
                return SessionEnd::Outage(format!(
                    "watchdog: getUpdates went unanswered for {}",
                    short(self.watchdog_after)
                ));
            }
            Some(Tripped::LeaseLost) => {
                // No last getUpdates: another instance may be polling already.
                kept.lease = None;
                kept.loaded = false;
                return SessionEnd::StoreDown(
                    "lost the lease on this bot (the store connection closed); stopped polling at once"
                        .to_owned(),
                );
            }
            None => {}
        }
        if end == SessionEnd::Stopped && !webhook {
            self.confirm(&mut kept.poller, offset).await;
        }
        end
    }

    /// Polls until the session ends; how it ended.
    #[allow(clippy::too_many_arguments)]
    async fn poll_loop(
        &self,
        bot: &BotHandle,
        kept: &mut Kept,
        session: &CancellationToken,
        guard: &SessionGuard,
        dispatcher: &mut Dispatcher,
        outbox: &mut outbox::Session,
        background: Option<&tokio::task::JoinHandle<()>>,
    ) -> SessionEnd {
        let progress = kept.progress.clone();
        let mut webhook_deleted = false;
        let mut rejected_logged: BTreeSet<u32> = BTreeSet::new();
        let mut wait_until: Option<tokio::time::Instant> = None;
        let mut moved = progress.watch();
        let sink = outbox.sink();
        loop {
            if background.is_some_and(tokio::task::JoinHandle::is_finished) {
                return SessionEnd::Failed(format!(
                    "the {} kind's background work stopped",
                    self.config.kind.name()
                ));
            }
            // Bounded: with MAX_OPEN updates waiting for handlers, ask for
            // more only once some are handled.
            moved.borrow_and_update();
            if progress.with(|ledger| ledger.open_count()) >= MAX_OPEN {
                tokio::select! {
                    biased;
                    () = session.cancelled() => return SessionEnd::Stopped,
                    reason = outbox.failed() => return store_down(&reason),
                    _ = moved.changed() => {}
                }
                continue;
            }
            if let Some(until) = wait_until {
                tokio::select! {
                    biased;
                    () = session.cancelled() => return SessionEnd::Stopped,
                    reason = outbox.failed() => return store_down(&reason),
                    () = tokio::time::sleep_until(until) => {}
                }
            }
            wait_until = None;
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
                result = kept.poller.poll(offset, |id| progress.with(|ledger| ledger.knows(id))) => result,
            };
            guard.polled();
            let batch = match result {
                Ok(batch) => batch,
                Err(err) => {
                    self.status.error(&err.class);
                    let wait = match err.class {
                        ErrorClass::ConflictOtherPoller => self.conflict_wait(&mut kept.conflict),
                        ErrorClass::ConflictWebhook
                            if !webhook_deleted && self.own_webhook(bot).await =>
                        {
                            // botvisor set it when this bot had webhook
                            // delivery: switching back to polling removes it.
                            info!("deleting the webhook botvisor set for this bot: it polls now");
                            webhook_deleted = true;
                            if let Err(end) = self.delete_webhook(bot).await {
                                return end;
                            }
                            continue;
                        }
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
                            let wait = retry_after + rate_limit_jitter();
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
                        _ => return self.call_failed("getUpdates", &err),
                    };
                    tokio::select! {
                        () = session.cancelled() => return SessionEnd::Stopped,
                        () = tokio::time::sleep(wait) => {}
                    }
                    continue;
                }
            };
            self.status.polled();
            self.after_good_poll(kept);
            // New updates are stored with the offset that confirms them
            // before the next poll sends it. Their handlers start at once:
            // a handler's decision is queued behind this job, so it cannot
            // be committed first.
            let total = batch.updates.len() + batch.known;
            let admitted: Vec<Delivered> = progress.with(|ledger| {
                batch
                    .updates
                    .into_iter()
                    .filter(|delivered| ledger.admit(delivered.id()))
                    .collect()
            });
            let next = batch
                .highest
                .map(Ledger::next_offset)
                .filter(|next| Some(*next) != offset);
            let stored = (next.is_some() || !admitted.is_empty()).then(|| {
                sink.receive(
                    admitted
                        .iter()
                        .map(|delivered| InboxRow {
                            update_id: delivered.id(),
                            body: delivered.raw.clone(),
                        })
                        .collect(),
                    next,
                )
            });
            for rejected in &batch.rejected {
                let first_time = rejected.id.is_none_or(|id| rejected_logged.insert(id));
                if first_time {
                    match rejected.id {
                        Some(update_id) => {
                            warn!(update_id, why = %rejected.why, "skipping an update that cannot be read")
                        }
                        None => {
                            warn!(why = %rejected.why, "skipping an update that cannot be read and has no usable id")
                        }
                    }
                }
            }
            if rejected_logged.len() > REJECTED_KEPT {
                rejected_logged.clear();
            }
            let new = admitted.len();
            let skipped = total - new;
            for delivered in admitted {
                dispatcher.dispatch(delivered.update);
            }
            if skipped > 0 {
                debug!(skipped, "skipped updates open or handled already");
            }
            if let Some(stored) = stored {
                tokio::select! {
                    biased;
                    () = session.cancelled() => return SessionEnd::Stopped,
                    reason = outbox.failed() => return store_down(&reason),
                    result = stored => {
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

    /// Waits for the kind's background work to stop, within the grace.
    async fn stop_background(&self, background: Option<tokio::task::JoinHandle<()>>) {
        let Some(mut task) = background else {
            return;
        };
        if tokio::time::timeout(self.stop_grace, &mut task)
            .await
            .is_err()
        {
            // Aborted, not detached: nothing of it may run once the lease
            // is given back.
            task.abort();
            let _ = task.await;
            error!(
                "the {} kind's background work did not stop in time; abandoned",
                self.config.kind.name()
            );
        }
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
        let (offset, recorded) = match self.store.offset(bot_id).await? {
            Some(stored) if stored.is_fresh() => {
                let recorded = self.store.handled_above(bot_id, stored.next_offset).await?;
                info!(
                    offset = stored.next_offset,
                    handled_above = recorded.len(),
                    "resuming after the stored offset"
                );
                (Some((stored.next_offset, stored.updated_at)), recorded)
            }
            Some(stored) => {
                warn!(
                    offset = stored.next_offset,
                    "ignoring a stored offset older than six days: Telegram restarts update ids after a week"
                );
                self.store.forget(bot_id).await?;
                (None, Default::default())
            }
            // No offset yet, but handlers may have recorded updates: a
            // crash in the first batch leaves only the journal.
            None => (None, self.store.handled_above(bot_id, 0).await?),
        };
        kept.progress
            .with(|ledger| ledger.load(offset, recorded.into_iter().collect()));
        Ok(())
    }

    /// Sorts a failed raw call into how the session ends.
    fn call_failed(&self, method: &str, err: &CallError) -> SessionEnd {
        self.status.error(&err.class);
        self.failed_with(method, err.class.clone(), &err.detail)
    }

    /// Sorts a failed teloxide request into how the session ends.
    pub(super) fn teloxide_failed(&self, method: &str, err: &teloxide::RequestError) -> SessionEnd {
        let class = telegram::classify(err);
        self.status.error(&class);
        let detail = match err {
            teloxide::RequestError::Network(cause) => network_cause(cause),
            other => telegram::errors::describe(other),
        };
        self.failed_with(method, class, &detail)
    }

    fn failed_with(&self, method: &str, class: ErrorClass, detail: &str) -> SessionEnd {
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
            ErrorClass::Transient => {
                SessionEnd::Outage(format!("{method} failed ({class}): {detail}"))
            }
            class => SessionEnd::Failed(format!("{method} failed ({class}): {detail}")),
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
    async fn confirm(&self, poller: &mut Poller, offset: Option<u32>) {
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

fn store_down(reason: &str) -> SessionEnd {
    SessionEnd::StoreDown(format!("recording updates and messages failed: {reason}"))
}
