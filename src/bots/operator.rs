//! `/durum`: any botvisor bot answers an operator's request for the status
//! table, whatever its kind.
//!
//! Only users listed in `[supervisor] operators` get an answer, and only in
//! a private chat: the table names every bot and its troubles, which is not
//! for a group. Everyone else gets no answer at all, so the command does
//! not even show that it exists.

use teloxide::types::{ChatKind, Update, UpdateKind};
use tracing::{info, warn};

use super::Context;
use crate::telegram::send;

/// The command operators send.
pub const STATUS_COMMAND: &str = "durum";

/// Answers `update` when it is a `/durum` command; true when it was one
/// (answered or not), so the kind does not see it.
pub async fn handle(ctx: &Context, update: &Update) -> bool {
    let UpdateKind::Message(message) = &update.kind else {
        return false;
    };
    let Some(text) = message.text() else {
        return false;
    };
    if !ctx
        .command(text)
        .is_some_and(|command| command.name.eq_ignore_ascii_case(STATUS_COMMAND))
    {
        return false;
    }
    let from = message.from.as_ref().map(|user| user.id.0);
    let private = matches!(message.chat.kind, ChatKind::Private(_));
    let allowed =
        from.is_some_and(|id| i64::try_from(id).is_ok_and(|id| ctx.board.is_operator(id)));
    if !(allowed && private) {
        info!(
            update_id = update.id.0,
            user = from.unwrap_or_default(),
            private,
            "/{STATUS_COMMAND} from someone who is not an operator, or outside a private chat; not answered"
        );
        return true;
    }
    let table = ctx.board.table();
    if let Err(err) = send::send_text(&ctx.bot, message.chat.id, &table, None).await {
        warn!(update_id = update.id.0, error_class = %err.class, error = %err.text, "could not send the status table");
    }
    true
}
