//! The `echo` kind: a diagnostic bot that answers each text message with the
//! same text. Operators use it to check a token and a deployment; the tests
//! use its opt-in faults (`panic_on`, `slow_on`) to try supervision.

use teloxide::types::{AllowedUpdate, Update, UpdateKind};
use tracing::warn;

use super::Context;
use crate::config::EchoSettings;
use crate::telegram::send;

/// The update types this kind handles.
pub const ALLOWED_UPDATES: &[AllowedUpdate] = &[AllowedUpdate::Message];

/// An `echo` bot.
pub struct Echo {
    settings: EchoSettings,
}

impl Echo {
    pub fn new(settings: &EchoSettings) -> Echo {
        Echo {
            settings: settings.clone(),
        }
    }

    /// Replies to a text message with its text.
    pub async fn handle(&self, ctx: &Context, update: &Update) {
        let UpdateKind::Message(message) = &update.kind else {
            return;
        };
        let Some(text) = message.text() else { return };
        if self.settings.panic_on.as_deref() == Some(text) {
            panic!("echo: received the configured panic_on text");
        }
        if self.settings.slow_on.as_deref() == Some(text) {
            tokio::time::sleep(self.settings.slow_for).await;
        }
        if let Err(err) = send::send_text(&ctx.bot, message.chat.id, text, None).await {
            warn!(update_id = update.id.0, error_class = %err.class, error = %err.text, "could not send the reply");
        }
    }
}
