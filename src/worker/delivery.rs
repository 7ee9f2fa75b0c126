//! A webhook bot's session loop: `setWebhook`, then every update Telegram
//! POSTs (through [`crate::webhook::Webhooks`]) is stored in the inbox,
//! answered 200 once stored, and handed to its chat's lane, as the poll
//! loop does for a polled batch.
//!
//! Telegram delivers an update again when it did not get a 200 (a crash
//! between the store and the answer, a timeout): the ledger knows it, from
//! the inbox or from the handled marks a webhook bot keeps for a day, and
//! it is answered 200 without being handled twice.

use std::sync::Arc;

use teloxide::payloads::SetWebhookSetters;
use teloxide::requests::Requester;
use teloxide::types::AllowedUpdate;
use tracing::{Instrument, info, warn};

use super::Kept;
use super::Worker;
use super::consumer::Consumer;
use super::decide::SessionEnd;
use crate::bots::Kind;
use crate::outbox;
use crate::status::WorkerState;
use crate::store::InboxRow;
use crate::telegram::BotHandle;
use crate::telegram::polling::Delivered;
use crate::webhook::{Secret, Target};

/// The update types the webhook asks for: the kind's, or those a process
/// bot's program asked for in its last `getUpdates` (types this version
/// does not know are left out; none given is Telegram's default set).
fn update_types(
    kind: &Kind,
    allowed: Option<&mut tokio::sync::watch::Receiver<Option<Vec<String>>>>,
) -> Vec<AllowedUpdate> {
    match allowed {
        Some(allowed) => allowed
            .borrow_and_update()
            .iter()
            .flatten()
            .filter_map(|name| {
                serde_json::from_value::<AllowedUpdate>(serde_json::Value::String(name.clone()))
                    .ok()
            })
            .collect(),
        None => kind.allowed_updates(),
    }
}

/// How often Telegram is asked how delivery goes: as often as a polling
/// bot's idle long poll comes back, twice over, within 5 s and a minute.
fn info_every(poll_timeout: std::time::Duration) -> std::time::Duration {
    (poll_timeout * 2).clamp(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(60),
    )
}

impl Worker {
    /// Sets the webhook and takes its requests until the session ends.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn webhook_loop(
        &self,
        bot: &BotHandle,
        kind: &Arc<Kind>,
        target: &Target,
        bot_id: &str,
        kept: &mut Kept,
        session: &tokio_util::sync::CancellationToken,
        consumer: &mut Consumer,
        outbox: &mut outbox::Session,
    ) -> SessionEnd {
        let Ok(url) = target.url.parse::<url::Url>() else {
            return SessionEnd::Failed(format!(
                "the webhook URL {} is not a URL",
                crate::sanitize::excerpt(&target.url, 200)
            ));
        };
        // Requests may come as soon as Telegram has the URL: attach first.
        let Some(mut requests) = self.webhooks.attach(&self.config.name) else {
            return SessionEnd::Failed("the webhook bot is not registered".to_owned());
        };
        // A program's own `allowed_updates`, which the webhook follows.
        let mut allowed = consumer.allowed_updates();
        let mut types = update_types(kind, allowed.as_mut());
        if let Err(end) = self.set_webhook(bot, &types, target, url).await {
            return end;
        }
        // Telegram's errors from before this are history.
        let mut set_at = std::time::SystemTime::now();
        info!(url = %target.url, "webhook set; Telegram sends the updates");
        self.status.set(
            WorkerState::Running,
            format!("receiving by webhook ({})", self.config.kind.name()),
            None,
        );
        let progress = kept.progress.clone();
        let sink = outbox.sink();
        // Telegram's view: at once, then every period from a point drawn
        // in the second period, so that thousands of bots started together
        // do not all ask in the same second; updates another instance
        // stored for this bot, when the one shared scan finds some.
        let every = info_every(self.poll_timeout);
        let mut check = tokio::time::interval(every);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut staggered = false;
        let scan = self.webhooks.scan_for(self.store.clone(), bot_id);
        loop {
            if let Some(end) = consumer.ended(self) {
                return end;
            }
            let incoming = tokio::select! {
                biased;
                () = session.cancelled() => return SessionEnd::Stopped,
                end = consumer.failed(self) => return end,
                reason = outbox.failed() => {
                    return SessionEnd::StoreDown(format!(
                        "recording updates and messages failed: {reason}"
                    ));
                }
                () = super::poll::changed(&mut allowed) => {
                    types = update_types(kind, allowed.as_mut());
                    if let Ok(url) = target.url.parse::<url::Url>() {
                        if let Err(end) = self.set_webhook(bot, &types, target, url).await {
                            return end;
                        }
                        set_at = std::time::SystemTime::now();
                    }
                    continue;
                }
                _ = check.tick() => {
                    if !staggered {
                        staggered = true;
                        let spread = every.mul_f64(rand::random::<f64>());
                        check.reset_at(tokio::time::Instant::now() + every + spread);
                    }
                    match self.check_webhook(bot, &types, target, set_at).await {
                        Ok(true) => set_at = std::time::SystemTime::now(),
                        Ok(false) => {}
                        Err(end) => return end,
                    }
                    continue;
                }
                () = scan.found() => {
                    match self.store.inbox_rows(bot_id).await {
                        Ok(rows) => consumer.resume(rows, &progress, &sink),
                        Err(err) => {
                            return SessionEnd::StoreDown(format!(
                                "reading the received updates failed: {err}"
                            ));
                        }
                    }
                    continue;
                }
                incoming = requests.recv() => incoming,
            };
            let Some(incoming) = incoming else {
                return SessionEnd::Failed("the webhook's requests stopped".to_owned());
            };
            self.status.webhook_request();
            let Some(delivered) = Delivered::read(&incoming.body, consumer.reading()) else {
                // Answered 200: Telegram would repeat it for a day otherwise.
                warn!("skipping a webhook update that cannot be read");
                let _ = incoming.ack.send(true);
                continue;
            };
            let id = delivered.id();
            let (known, full) = progress.with(|ledger| {
                (
                    ledger.knows(id),
                    ledger.open_count() >= super::poll::MAX_OPEN,
                )
            });
            if !known && full {
                // As many waiting as a poll loop would take (a program
                // that does not poll, stuck handlers): Telegram keeps the
                // rest and sends them again later.
                let _ = incoming.ack.send(false);
                continue;
            }
            if !progress.with(|ledger| ledger.admit(id)) {
                // Stored or handled already: a repeat after a lost answer.
                let _ = incoming.ack.send(true);
                continue;
            }
            let stored = sink.receive(
                vec![InboxRow {
                    update_id: id,
                    body: delivered.raw.clone(),
                }],
                None,
            );
            let handed = consumer.take(vec![delivered], stored);
            let ack = incoming.ack;
            tokio::spawn(
                async move {
                    let _ = ack.send(handed.await.is_ok());
                }
                .in_current_span(),
            );
        }
    }

    /// Asks Telegram how delivery goes (`getWebhookInfo`): its pending
    /// count and last error for the status board, which raises or clears
    /// the `webhook_failing` incident. A failed ask changes nothing. When
    /// Telegram's webhook is not this bot's, it is set again (true).
    async fn check_webhook(
        &self,
        bot: &BotHandle,
        types: &[AllowedUpdate],
        target: &Target,
        set_at: std::time::SystemTime,
    ) -> Result<bool, SessionEnd> {
        let request = bot.api().get_webhook_info();
        let info = tokio::select! {
            () = self.cancel.cancelled() => return Ok(false),
            info = request => info,
        };
        match info {
            Ok(info) => {
                let theirs = info.url.as_ref().map(ToString::to_string);
                let at = info.last_error_date.and_then(|date| {
                    u64::try_from(date.timestamp())
                        .ok()
                        .map(|secs| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
                });
                self.status.webhook_checked(
                    info.pending_update_count,
                    info.last_error_message,
                    at,
                    set_at,
                );
                if theirs.as_deref() != Some(target.url.as_str())
                    && let Ok(url) = target.url.parse::<url::Url>()
                {
                    // Changed or deleted elsewhere (another program with
                    // this token): this bot's updates go astray. Set ours.
                    warn!(
                        "Telegram has another webhook (or none) for this bot; setting botvisor's again"
                    );
                    self.set_webhook(bot, types, target, url).await?;
                    return Ok(true);
                }
            }
            Err(err) => {
                warn!(error = %crate::telegram::errors::describe(&err), "getWebhookInfo failed");
            }
        }
        Ok(false)
    }

    /// `setWebhook` with this bot's URL, secret, update types and
    /// connections; pending updates are kept.
    async fn set_webhook(
        &self,
        bot: &BotHandle,
        types: &[AllowedUpdate],
        target: &Target,
        url: url::Url,
    ) -> Result<(), SessionEnd> {
        let request = bot
            .api()
            .set_webhook(url)
            .secret_token(Secret::of(&self.token).expose().to_owned())
            .allowed_updates(types.to_vec())
            .max_connections(u8::try_from(target.max_connections).unwrap_or(40))
            .drop_pending_updates(false);
        let result = tokio::select! {
            () = self.cancel.cancelled() => return Err(SessionEnd::Stopped),
            result = request => result,
        };
        result
            .map(|_| ())
            .map_err(|err| self.teloxide_failed("setWebhook", &err))
    }

    /// Whether the webhook Telegram has for this bot is one botvisor set
    /// (its path is this bot's): a bot switched back to polling removes it.
    pub(super) async fn own_webhook(&self, bot: &BotHandle) -> bool {
        let request = bot.api().get_webhook_info();
        let info = tokio::select! {
            () = self.cancel.cancelled() => return false,
            info = request => info,
        };
        let suffix = format!("/telegram/{}", self.config.name);
        info.ok()
            .and_then(|info| info.url)
            .is_some_and(|url| url.path().trim_end_matches('/').ends_with(&suffix))
    }
}
