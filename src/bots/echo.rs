//! The `echo` kind: a diagnostic bot that answers each text message with the
//! same text. Operators use it to check a token and a deployment; the tests
//! use its opt-in faults (`panic_on`, `slow_on`) to try supervision.

use teloxide::types::{AllowedUpdate, Update, UpdateKind};

use crate::config::EchoSettings;
use crate::outbox::OutMessage;

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
    pub async fn handle(&self, update: &Update) -> Vec<OutMessage> {
        let UpdateKind::Message(message) = &update.kind else {
            return Vec::new();
        };
        let Some(text) = message.text() else {
            return Vec::new();
        };
        if self.settings.panic_on.as_deref() == Some(text) {
            panic!("echo: received the configured panic_on text");
        }
        if self.settings.slow_on.as_deref() == Some(text) {
            tokio::time::sleep(self.settings.slow_for).await;
        }
        vec![OutMessage::text(message.chat.id.0, text)]
    }
}
