//! The `faq` kind (the Tanıtım bot). A stub until its issue lands: it takes
//! updates and ignores them, logging each at debug level.

use teloxide::types::{AllowedUpdate, Update};

use super::Context;
use crate::config::FaqSettings;

/// The update types this kind handles.
pub const ALLOWED_UPDATES: &[AllowedUpdate] =
    &[AllowedUpdate::Message, AllowedUpdate::CallbackQuery];

/// A `faq` bot.
pub struct Faq {}

impl Faq {
    pub fn new(_settings: &FaqSettings) -> Faq {
        Faq {}
    }

    /// Ignores the update: this kind is not implemented yet.
    pub async fn handle(&self, _ctx: &Context, update: &Update) {
        tracing::debug!(
            update_id = update.id.0,
            "update ignored: the faq kind is not implemented yet"
        );
    }
}
