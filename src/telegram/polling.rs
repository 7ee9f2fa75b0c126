//! The long-polling loop: `getUpdates` with a timeout, the next offset kept
//! by the caller, every wait cancellable.
//!
//! This is botvisor's own loop rather than teloxide's dispatcher, which can
//! miss a shutdown, dies with a handler panic and confirms updates before
//! they are handled (see ARCHITECTURE.md).

use std::time::Duration;

use teloxide::RequestError;
use teloxide::payloads::GetUpdatesSetters;
use teloxide::requests::Requester;
use teloxide::types::{AllowedUpdate, Update};

use super::BotHandle;

/// One bot's position in its update stream.
pub struct Poller {
    bot: BotHandle,
    timeout: Duration,
    allowed_updates: Vec<AllowedUpdate>,
    /// The next update id to ask for; every update below it is handled.
    offset: Option<i32>,
}

impl Poller {
    pub fn new(bot: BotHandle, timeout: Duration, allowed_updates: Vec<AllowedUpdate>) -> Poller {
        Poller {
            bot,
            timeout,
            allowed_updates,
            offset: None,
        }
    }

    /// Long-polls once. The offset sent confirms every update handled so
    /// far. Cancel-safe: dropping the future loses nothing, since the offset
    /// only moves in [`Poller::handled`].
    ///
    /// # Errors
    /// The request's error, to be sorted with [`super::classify`].
    pub async fn poll(&self) -> Result<Vec<Update>, RequestError> {
        let timeout = u32::try_from(self.timeout.as_secs()).unwrap_or(50);
        let mut request = self
            .bot
            .api()
            .get_updates()
            .timeout(timeout)
            .allowed_updates(self.allowed_updates.clone());
        if let Some(offset) = self.offset {
            request = request.offset(offset);
        }
        request.await
    }

    /// Records that `update` has been handled, so the next poll confirms it.
    pub fn handled(&mut self, update: &Update) {
        let next = i32::try_from(update.id.0)
            .unwrap_or(i32::MAX)
            .saturating_add(1);
        if self.offset.is_none_or(|current| next > current) {
            self.offset = Some(next);
        }
    }

    /// The next update id to ask for, if any update has been handled.
    pub fn offset(&self) -> Option<i32> {
        self.offset
    }
}
