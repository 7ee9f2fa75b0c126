//! One message sent or edited (or a process bot's call of any method),
//! once: no retries, no waiting, no splitting.
//! The outbox above decides when to send, what to do with each error class,
//! and splits long texts with [`super::text::split_message`] before they
//! get here.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::BotHandle;
use super::api::{self, CallError};
use super::call::Call;

/// How long one send may take before it counts as failed (and is tried
/// again): far above Telegram's usual fraction of a second, far below the
/// long-poll timeout a hung connection would otherwise hold a chat for.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(15);

/// Inline buttons: rows of (label, callback data).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Keyboard(pub Vec<Vec<(String, String)>>);

#[derive(Serialize)]
struct Button<'a> {
    text: &'a str,
    callback_data: &'a str,
}

#[derive(Serialize)]
struct Markup<'a> {
    inline_keyboard: Vec<Vec<Button<'a>>>,
}

impl Keyboard {
    fn markup(&self) -> Markup<'_> {
        Markup {
            inline_keyboard: self
                .0
                .iter()
                .map(|row| {
                    row.iter()
                        .map(|(text, data)| Button {
                            text,
                            callback_data: data,
                        })
                        .collect()
                })
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct LinkPreview {
    is_disabled: bool,
}

#[derive(Serialize)]
struct SendMessage<'a> {
    chat_id: i64,
    text: &'a str,
    link_preview_options: LinkPreview,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_markup: Option<Markup<'a>>,
}

#[derive(Serialize)]
struct EditMessageText<'a> {
    chat_id: i64,
    message_id: i32,
    text: &'a str,
    link_preview_options: LinkPreview,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply_markup: Option<Markup<'a>>,
}

#[derive(Deserialize)]
struct MessageId {
    message_id: i32,
}

/// Sends `text` (at most 4096 UTF-16 units) to `chat`, link previews off;
/// the id of the message sent.
///
/// # Errors
/// The call's [`CallError`]; a 400 with `migrate_to_chat_id` comes back
/// as [`super::ErrorClass::Migrated`] for the caller to follow.
pub async fn send_message(
    bot: &BotHandle,
    chat: i64,
    text: &str,
    keyboard: Option<&Keyboard>,
) -> Result<i32, CallError> {
    let body = SendMessage {
        chat_id: chat,
        text,
        link_preview_options: LinkPreview { is_disabled: true },
        reply_markup: keyboard.map(Keyboard::markup),
    };
    let sent: MessageId = api::call(bot, "sendMessage", &body, SEND_TIMEOUT).await?;
    bot.count_sent(1);
    Ok(sent.message_id)
}

/// Replaces the text (and buttons) of message `message_id` in `chat`.
///
/// # Errors
/// The call's [`CallError`].
pub async fn edit_message(
    bot: &BotHandle,
    chat: i64,
    message_id: i32,
    text: &str,
    keyboard: Option<&Keyboard>,
) -> Result<(), CallError> {
    let body = EditMessageText {
        chat_id: chat,
        message_id,
        text,
        link_preview_options: LinkPreview { is_disabled: true },
        reply_markup: keyboard.map(Keyboard::markup),
    };
    // The result is the edited message, or `true` for inline messages.
    let _: serde_json::Value = api::call(bot, "editMessageText", &body, SEND_TIMEOUT).await?;
    bot.count_sent(1);
    Ok(())
}

/// Sends a call of any method (a process bot's) to `chat`, once; the raw
/// `result` of Telegram's answer. A numeric `chat_id` is sent as `chat`,
/// which differs from the bot's when the group became a supergroup.
///
/// # Errors
/// The call's [`CallError`], with Telegram's refusal when it refused.
pub async fn call(bot: &BotHandle, chat: i64, call: &Call) -> Result<Vec<u8>, CallError> {
    let moved = call
        .param("chat_id")
        .and_then(|id| id.trim().parse::<i64>().ok())
        .is_some_and(|id| id != chat)
        .then(|| {
            let mut moved = call.clone();
            moved.set_param("chat_id", chat.to_string());
            moved
        });
    let result = super::call::send(bot, moved.as_ref().unwrap_or(call)).await?;
    bot.count_sent(1);
    Ok(result)
}
