//! `/durum`: any botvisor bot answers an operator's request for the status
//! table, whatever its kind.
//!
//! Only users listed in `[supervisor] operators` get an answer, and only in
//! a private chat: the table names every bot and its troubles, which is not
//! for a group. Everyone else gets no answer at all, so the command does
//! not even show that it exists. The answer is always one Telegram message:
//! [`StatusBoard::table`](crate::status::StatusBoard::table) summarises a
//! table that would not fit one.

use teloxide::types::{ChatKind, Update, UpdateKind};
use tracing::info;

use super::Context;
use crate::outbox::OutMessage;

/// The command operators send.
pub const STATUS_COMMAND: &str = "durum";

/// The answer to `update` when it is a `/durum` command (no message for
/// someone not allowed); `None` when it is not one, for the kind to handle.
pub fn handle(ctx: &Context, update: &Update) -> Option<Vec<OutMessage>> {
    let UpdateKind::Message(message) = &update.kind else {
        return None;
    };
    let text = message.text()?;
    if !ctx
        .command(text)
        .is_some_and(|command| command.name.eq_ignore_ascii_case(STATUS_COMMAND))
    {
        return None;
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
        return Some(Vec::new());
    }
    Some(vec![OutMessage::text(message.chat.id.0, ctx.board.table())])
}
