//! The `announcements` kind (the Duyuru relay). A stub until its issue lands:
//! it takes updates and ignores them, logging each at debug level.

use teloxide::types::{AllowedUpdate, Update};

use super::Context;
use crate::config::AnnouncementsSettings;

/// The update types this kind handles.
pub const ALLOWED_UPDATES: &[AllowedUpdate] =
    &[AllowedUpdate::Message, AllowedUpdate::MyChatMember];

/// A `announcements` bot.
pub struct Announcements {}

impl Announcements {
    pub fn new(_settings: &AnnouncementsSettings) -> Announcements {
        Announcements {}
    }

    /// Ignores the update: this kind is not implemented yet.
    pub async fn handle(&self, _ctx: &Context, update: &Update) {
        tracing::debug!(
            update_id = update.id.0,
            "update ignored: the announcements kind is not implemented yet"
        );
    }
}
