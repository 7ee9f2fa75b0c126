//! One session of a worker: it opens (`getMe`, the lease, the stored
//! offset, the outbox, what the inbox holds), starts its consumer, runs its
//! source until something ends it, and closes: the consumer finishes, what
//! it decided is committed, and the offset is confirmed.
//!
//! Where updates come from (the poll loop in `poll.rs`, the webhook loop in
//! `delivery.rs`) is kept apart from who consumes them (`consumer.rs`): a
//! source stores each new update in the inbox together with what confirms
//! it, and hands it over; it never waits for a handler. What a session
//! leaves in the inbox, the next one hands over first.

use std::sync::Arc;
use std::time::Duration;

use teloxide::types::Me;
use tracing::{info, warn};

use super::consumer::{Consumer, Start};
use super::decide::SessionEnd;
use super::guard::{SessionGuard, Tripped};
use super::{Kept, Worker};
use crate::bots::{Context, Kind};
use crate::outbox;
use crate::status::{Incident, WorkerState, short};
use crate::store::{BotStore, InboxRow, StoreError};
use crate::telegram::api::{self, CallError, network_cause};
use crate::telegram::{self, BotHandle, ErrorClass};

/// The most extra time added to a 429's `retry_after`.
const RATE_LIMIT_JITTER_MS: u64 = 250;
/// How long `getMe` may take.
const GET_ME_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a worker in standby tries to take its bot's lease.
const LEASE_RETRY: Duration = Duration::from_secs(1);

/// A little extra time after a 429's `retry_after`, never less than it.
pub(super) fn rate_limit_jitter() -> Duration {
    Duration::from_millis(rand::random_range(0..=RATE_LIMIT_JITTER_MS))
}

/// What a session holds once it is open.
struct Opened {
    me: Me,
    /// `getMe`'s answer as it came, for a process bot's gateway.
    me_raw: Arc<[u8]>,
    bot_id: String,
    /// The bot's store, fenced by the lease taken.
    store: BotStore,
    outbox: outbox::Session,
    /// Updates received before, not yet handled.
    inbox: Vec<InboxRow>,
}

impl Worker {
    pub(super) async fn session(
        &self,
        bot: &BotHandle,
        kind: &Arc<Kind>,
        kept: &mut Kept,
    ) -> SessionEnd {
        let Opened {
            me,
            me_raw,
            bot_id,
            store,
            mut outbox,
            inbox,
        } = match Box::pin(self.open(bot, kept)).await {
            Ok(opened) => opened,
            Err(end) => return end,
        };
        let ctx = Arc::new(Context {
            bot: bot.clone(),
            username: me.username().to_owned(),
            bot_id: bot_id.clone(),
            store,
            status: self.status.clone(),
            board: self.board.clone(),
            outbox: outbox.sink(),
        });
        let start = Start {
            ctx: ctx.clone(),
            outbox: &mut outbox,
            me: me_raw,
            gate: kept.gate.clone(),
        };
        let mut consumer = match Consumer::start(self, kind, start).await {
            Ok(consumer) => consumer,
            Err(end) => {
                outbox.stop().await;
                return end;
            }
        };
        self.status.set(
            WorkerState::Running,
            consumer.running_reason(self, &ctx.username),
            None,
        );

        // Everything the session runs stops when the worker is cancelled,
        // when the lease is lost, or when a poll hangs.
        let session = self.cancel.child_token();
        let _end_session = session.clone().drop_guard();
        let guard = SessionGuard::start(
            &self.guards,
            session.clone(),
            kept.lease.clone(),
            self.watchdog_after,
        );
        // What the last session received and did not handle goes first.
        kept.progress.with(|ledger| ledger.close_session());
        consumer.resume(inbox, &kept.progress, &outbox.sink());
        let end = match &self.webhook {
            Some(target) => {
                self.webhook_loop(
                    bot,
                    kind,
                    target,
                    &bot_id,
                    kept,
                    &session,
                    &mut consumer,
                    &mut outbox,
                )
                .await
            }
            None => {
                self.poll_loop(bot, kept, &session, &guard, &mut consumer, &mut outbox)
                    .await
            }
        };
        self.close(end, consumer, outbox, &guard, kept).await
    }

    /// Opens a session: `getMe`, a usable store, the lease (waiting in
    /// standby while another instance holds it), the stored offset, the
    /// outbox, and what the inbox holds.
    async fn open(&self, bot: &BotHandle, kept: &mut Kept) -> Result<Opened, SessionEnd> {
        let no_parameters = serde_json::json!({});
        let me = tokio::select! {
            () = self.cancel.cancelled() => return Err(SessionEnd::Stopped),
            me = api::call_raw(bot, "getMe", &no_parameters, GET_ME_TIMEOUT, api::ANSWER_CAP) => me,
        };
        let me_raw = me.map_err(|err| self.call_failed("getMe", &err))?;
        let me: Me = serde_json::from_slice(&me_raw).map_err(|err| {
            SessionEnd::Outage(format!(
                "getMe answered something that is not a bot ({:?} error at column {})",
                err.classify(),
                err.column()
            ))
        })?;
        let me_raw: Arc<[u8]> = Arc::from(me_raw);
        let bot_id = me.id.0.to_string();
        // A SQLite file deleted or replaced under botvisor is a store outage,
        // not a new empty store: nothing confirmed may be forgotten.
        if let Err(err) = self.store.health().await {
            return Err(SessionEnd::StoreDown(format!(
                "the store is not usable: {err}"
            )));
        }
        self.status.set_delivery(self.config.delivery.name());
        if self.webhook.is_some() {
            // From now on a request no session here takes (standby, a
            // restart) is stored for the session that holds the bot.
            self.webhooks
                .store_in(&self.config.name, self.store.clone(), bot_id.clone());
        }
        self.take_lease(&bot_id, kept).await?;
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
                return Err(SessionEnd::StoreDown(format!(
                    "pruning the handled updates failed: {err}"
                )));
            }
            kept.loaded = false;
        }
        if !kept.loaded {
            if let Err(err) = self.load_offset(&bot_id, kept).await {
                return Err(SessionEnd::StoreDown(format!(
                    "reading the stored offset failed: {err}"
                )));
            }
            kept.loaded = true;
        }
        let fence = kept.lease.as_ref().and_then(|lease| lease.fence());
        let store = BotStore::new(self.store.clone(), bot_id.clone(), fence.clone());
        let outbox = self
            .outbox
            .start(
                bot.clone(),
                store.clone(),
                kept.progress.clone(),
                webhook,
                fence,
            )
            .await
            .map_err(|err| {
                SessionEnd::StoreDown(format!("reading the queued messages failed: {err}"))
            })?;
        let inbox = match self.store.inbox_rows(&bot_id).await {
            Ok(rows) => rows,
            Err(err) => {
                outbox.stop().await;
                return Err(SessionEnd::StoreDown(format!(
                    "reading the received updates failed: {err}"
                )));
            }
        };
        // A store that reads but cannot write (a full disk) is still down.
        if let Err(err) = self.store.write_probe(&bot_id).await {
            outbox.stop().await;
            return Err(SessionEnd::StoreDown(format!(
                "writing to the store failed: {err}"
            )));
        }
        self.status.clear(Incident::StoreDown);
        Ok(Opened {
            me,
            me_raw,
            bot_id,
            store,
            outbox,
            inbox,
        })
    }

    /// Closes a session that ended with `end`: the consumer finishes (or is
    /// abandoned at the grace), what it decided is committed, and the
    /// offset is confirmed. With the lease lost, another instance may own
    /// the bot already: the outbox stops at once, sending and writing
    /// nothing more, and nothing is confirmed.
    async fn close(
        &self,
        end: SessionEnd,
        consumer: Consumer,
        outbox: outbox::Session,
        guard: &SessionGuard,
        kept: &mut Kept,
    ) -> SessionEnd {
        let webhook = self.webhook.is_some();
        if webhook {
            // New requests get 503 from now on: Telegram tries again later.
            self.webhooks.detach(&self.config.name);
        }
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
        let handover = end == SessionEnd::Stopped && tripped == Some(Tripped::Handover);
        if handover {
            self.status.set(
                WorkerState::Handover,
                "handing the bot over to another instance: finishing its handlers and sends",
                None,
            );
        }
        // A program stops with its bot, a park, a lost lease or a handover;
        // an outage or a store failure is botvisor's own, and the program
        // waits.
        let stop_program = matches!(end, SessionEnd::Stopped | SessionEnd::Park(_))
            || matches!(tripped, Some(Tripped::LeaseLost | Tripped::Handover));
        consumer.finish(self, self.stop_grace, stop_program).await;
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
                // A fleet lease goes back at its generation (a no-op if
                // another instance holds a newer one), so it is never
                // renewed unused.
                if let Some(lease) = kept.lease.take() {
                    lease.release_shared().await;
                }
                kept.loaded = false;
                return SessionEnd::StoreDown(
                    "lost the lease on this bot (it lapsed, or the store no longer gives it to this instance); stopped polling at once"
                        .to_owned(),
                );
            }
            Some(Tripped::Handover) | None => {}
        }
        // Only while the lease is still this instance's: the drain may have
        // taken long enough for another to take the bot.
        let still_held = kept.lease.as_ref().is_none_or(|lease| lease.is_held_now());
        if end == SessionEnd::Stopped && !webhook && still_held {
            self.confirm(&mut kept.poller, offset).await;
        }
        if handover {
            // After the last confirmation: the taker starts from the
            // offset stored by the last commit.
            if let Some(lease) = kept.lease.take() {
                lease.release_shared().await;
            }
            kept.loaded = false;
            info!("handed the bot over to another instance");
            return SessionEnd::HandedOver;
        }
        end
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
        let mut wanted = self.leases.fleet().map(|fleet| fleet.wanted_changed());
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
                    // A fleet's new plan is looked at at once.
                    let plan_changed = async {
                        match wanted.as_mut() {
                            Some(wanted) => {
                                let _ = wanted.changed().await;
                            }
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        () = self.cancel.cancelled() => return Err(SessionEnd::Stopped),
                        () = tokio::time::sleep(LEASE_RETRY) => {}
                        () = plan_changed => {}
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
    pub(super) fn call_failed(&self, method: &str, err: &CallError) -> SessionEnd {
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
}
