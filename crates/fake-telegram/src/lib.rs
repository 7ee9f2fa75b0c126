//! `fake-telegram`: a fake Telegram Bot API server on `127.0.0.1`, for
//! botvisor's tests, benchmarks and interactive sandbox.
//!
//! It answers `POST /bot<TOKEN>/<method>` (JSON, form, multipart or query
//! parameters; method names case-insensitive; bodies up to 52 MB, chunked
//! or not, larger ones get 413) in Telegram's shapes, which teloxide-core
//! 0.13 parses: getMe, getUpdates (offsets, limit, long polling,
//! `allowed_updates`, the 409 conflicts), sendMessage, editMessageText,
//! answerCallbackQuery, getChatMember, set/get/deleteMyCommands, the webhook
//! methods, getChat, sendChatAction, leaveChat and close; the media methods
//! sendPhoto, sendDocument, sendAudio, sendVideo, sendAnimation, sendVoice,
//! sendVideoNote, sendSticker and sendMediaGroup; forwardMessage,
//! copyMessage, deleteMessage, deleteMessages, editMessageCaption,
//! editMessageReplyMarkup and getFile. While a webhook is set, it
//! POSTs the pending updates to it as Telegram does (retries, give-up,
//! `max_connections`, the secret header; see
//! [`FakeTelegram::webhook_deliveries`]). A test injects updates,
//! scripts faults (error answers, delays, dropped connections, HTML 502
//! pages), turns on Telegram-like rate limits, and reads or waits for what the
//! bots did, all through the [`FakeTelegram`] handle.
//!
//! Files: a media parameter may be a file part named after it
//! (python-telegram-bot), `attach://<part>` (aiogram, grammY, teloxide), a
//! stored `file_id` or an `http(s)` URL. Every file is kept in the fake's
//! file store with its bytes ([`FakeTelegram::file`], [`StoredFile`]), and
//! `GET /file/bot<TOKEN>/<file_path>` downloads it (the path may have its
//! `/` escaped as `%2F`; the request is recorded as method `file`). A test
//! sees what was sent in [`SentMessage::media`] and injects a user's photo
//! or document with [`FakeTelegram::inject_photo`] and
//! [`FakeTelegram::inject_document`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use fake_telegram::{Chat, FakeTelegram, User};
//! let tg = FakeTelegram::start().await?;
//! let bot = tg.add_bot("123456:TEST-token", "test_bot");
//! let alice = User::new(42, "Alice");
//! tg.inject_message(&bot.token, &Chat::private(&alice), &alice, "/start");
//! // point the bot under test at tg.url(), then:
//! let sent = tg
//!     .wait_for_sent(&bot.token, 1, std::time::Duration::from_secs(5))
//!     .await;
//! # let _ = sent;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod faults;
mod files;
mod handle;
mod json;
mod media;
mod methods;
mod model;
mod params;
mod polling;
mod ratelimit;
mod reply;
mod server;
mod state;
mod webhook;

pub use faults::{Fault, FaultKind, MethodFilter, Repeat};
pub use files::{MediaKind, StoredFile};
pub use handle::FakeTelegram;
pub use model::{
    BotCommand, BotInfo, CallbackAnswer, Chat, ChatKind, MemberStatus, Outcome, RecordedRequest,
    RequestEvent, SentMessage, User, WaitTimeout, WebhookDelivery, WebhookInfoView,
};
pub use ratelimit::RateLimits;
pub use reply::ResponseParameters;

/// The exact 409 descriptions Telegram uses for polling conflicts.
pub mod conflicts {
    /// A newer getUpdates ended the held one.
    pub const OTHER_POLLER: &str = "Conflict: terminated by other getUpdates request; make sure \
         that only one bot instance is running";
    /// getUpdates while a webhook is set.
    pub const WEBHOOK_ACTIVE: &str = "Conflict: can't use getUpdates method while webhook is \
         active; use deleteWebhook to delete the webhook first";
    /// setWebhook ended the held getUpdates.
    pub const SET_WEBHOOK: &str = "Conflict: terminated by setWebhook request";
}
