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
use tracing::{Instrument, info, warn};

use super::Kept;
use super::Worker;
use super::decide::SessionEnd;
use super::dispatch::Dispatcher;
use crate::bots::Kind;
use crate::outbox;
use crate::status::WorkerState;
use crate::store::InboxRow;
use crate::telegram::BotHandle;
use crate::telegram::polling::Delivered;
use crate::webhook::{Secret, Target};

impl Worker {
    /// Sets the webhook and takes its requests until the session ends.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn webhook_loop(
        &self,
        bot: &BotHandle,
        kind: &Arc<Kind>,
        target: &Target,
        kept: &mut Kept,
        session: &tokio_util::sync::CancellationToken,
        dispatcher: &mut Dispatcher,
        outbox: &mut outbox::Session,
        background: Option<&tokio::task::JoinHandle<()>>,
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
        let request = bot
            .api()
            .set_webhook(url)
            .secret_token(Secret::of(&self.token).expose().to_owned())
            .allowed_updates(kind.allowed_updates())
            .max_connections(u8::try_from(target.max_connections).unwrap_or(40))
            .drop_pending_updates(false);
        let result = tokio::select! {
            () = session.cancelled() => return SessionEnd::Stopped,
            result = request => result,
        };
        if let Err(err) = result {
            return self.teloxide_failed("setWebhook", &err);
        }
        info!(url = %target.url, "webhook set; Telegram sends the updates");
        self.status.set(
            WorkerState::Running,
            format!("receiving by webhook ({})", self.config.kind.name()),
            None,
        );
        let progress = kept.progress.clone();
        let sink = outbox.sink();
        loop {
            if background.is_some_and(tokio::task::JoinHandle::is_finished) {
                return SessionEnd::Failed(format!(
                    "the {} kind's background work stopped",
                    self.config.kind.name()
                ));
            }
            let incoming = tokio::select! {
                biased;
                () = session.cancelled() => return SessionEnd::Stopped,
                reason = outbox.failed() => {
                    return SessionEnd::StoreDown(format!(
                        "recording updates and messages failed: {reason}"
                    ));
                }
                incoming = requests.recv() => incoming,
            };
            let Some(incoming) = incoming else {
                return SessionEnd::Failed("the webhook's requests stopped".to_owned());
            };
            self.status.polled();
            let Some(delivered) = Delivered::parse(&incoming.body) else {
                // Answered 200: Telegram would repeat it for a day otherwise.
                warn!("skipping a webhook update that cannot be read");
                let _ = incoming.ack.send(true);
                continue;
            };
            let id = delivered.id();
            if !progress.with(|ledger| ledger.admit(id)) {
                // Stored or handled already: a repeat after a lost answer.
                let _ = incoming.ack.send(true);
                continue;
            }
            let stored = sink.receive(
                vec![InboxRow {
                    update_id: id,
                    body: delivered.raw,
                }],
                None,
            );
            dispatcher.dispatch(delivered.update);
            let ack = incoming.ack;
            tokio::spawn(
                async move {
                    let _ = ack.send(stored.await.is_ok());
                }
                .in_current_span(),
            );
        }
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
