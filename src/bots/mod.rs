//! The bot kinds: what a bot does with the updates its worker receives.
//!
//! A kind is code, chosen by `kind` in the config. Each kind says which
//! update types it wants (sent to Telegram as `allowed_updates`) and handles
//! one update at a time. Kinds never poll and never see a token.

pub mod announcements;
pub mod faq;

use teloxide::types::{AllowedUpdate, Update};

use crate::config::KindSettings;
use crate::telegram::BotHandle;

/// A configured bot kind, ready to handle updates.
pub enum Kind {
    Faq(faq::Faq),
    Announcements(announcements::Announcements),
}

impl Kind {
    /// Builds the kind from its settings in the config.
    pub fn new(settings: &KindSettings) -> Kind {
        match settings {
            KindSettings::Faq(s) => Kind::Faq(faq::Faq::new(s)),
            KindSettings::Announcements(s) => {
                Kind::Announcements(announcements::Announcements::new(s))
            }
        }
    }

    /// The update types this kind handles.
    pub fn allowed_updates(&self) -> Vec<AllowedUpdate> {
        match self {
            Kind::Faq(_) => faq::ALLOWED_UPDATES.to_vec(),
            Kind::Announcements(_) => announcements::ALLOWED_UPDATES.to_vec(),
        }
    }

    /// Handles one update.
    pub async fn handle(&self, bot: &BotHandle, update: &Update) {
        match self {
            Kind::Faq(k) => k.handle(bot, update).await,
            Kind::Announcements(k) => k.handle(bot, update).await,
        }
    }
}
