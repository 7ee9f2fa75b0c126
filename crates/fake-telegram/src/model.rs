//! Plain data the test side works with: bots, users, chats, member statuses,
//! and the records the fake keeps of what bots did (requests, sent messages,
//! callback answers). Nothing here talks to the network or holds a lock.

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::files::{MediaKind, StoredFile};

/// A bot registered with [`FakeTelegram::add_bot`](crate::FakeTelegram::add_bot).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotInfo {
    /// The bot's user id: the digits before `:` in its token when they parse,
    /// otherwise an id the fake generated.
    pub id: u64,
    /// The token the bot authenticates with (`<digits>:<secret>`).
    pub token: String,
    /// The bot's `@username`, without the `@`.
    pub username: String,
    /// The bot's display name (the fake uses the username).
    pub first_name: String,
}

impl BotInfo {
    /// This bot as a [`User`] (`is_bot = true`), as it appears in `from` of
    /// the messages it sends.
    pub fn user(&self) -> User {
        User {
            id: self.id,
            is_bot: true,
            first_name: self.first_name.clone(),
            last_name: None,
            username: Some(self.username.clone()),
            language_code: None,
        }
    }
}

/// A Telegram user (a person, or another bot) who sends updates to a bot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct User {
    /// Unique user id (positive).
    pub id: u64,
    /// `true` for bots.
    pub is_bot: bool,
    /// First name; Telegram always has one.
    pub first_name: String,
    /// Optional last name.
    pub last_name: Option<String>,
    /// Optional `@username`, without the `@`.
    pub username: Option<String>,
    /// Optional IETF language tag, e.g. `en`.
    pub language_code: Option<String>,
}

impl User {
    /// A human user with an id and a first name and nothing else.
    pub fn new(id: u64, first_name: impl Into<String>) -> Self {
        User {
            id,
            is_bot: false,
            first_name: first_name.into(),
            last_name: None,
            username: None,
            language_code: None,
        }
    }

    /// The same user with a `@username` (give it without the `@`).
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// The same user with a last name.
    pub fn with_last_name(mut self, last_name: impl Into<String>) -> Self {
        self.last_name = Some(last_name.into());
        self
    }

    /// The same user with a language code, e.g. `en`.
    pub fn with_language_code(mut self, code: impl Into<String>) -> Self {
        self.language_code = Some(code.into());
        self
    }
}

/// The four kinds of Telegram chat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChatKind {
    /// A one-to-one chat between a user and the bot (`"private"`, id > 0).
    Private,
    /// A basic group (`"group"`, negative id).
    Group,
    /// A supergroup (`"supergroup"`, id `-100…`).
    Supergroup,
    /// A channel (`"channel"`, id `-100…`).
    Channel,
}

impl ChatKind {
    /// The Bot API's `type` string for this kind.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatKind::Private => "private",
            ChatKind::Group => "group",
            ChatKind::Supergroup => "supergroup",
            ChatKind::Channel => "channel",
        }
    }
}

/// A chat as plain data. Build one with [`Chat::private`], [`Chat::group`],
/// [`Chat::supergroup`] or [`Chat::channel`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chat {
    /// The chat id: positive for private chats, negative for groups,
    /// `-100…` for supergroups and channels.
    pub id: i64,
    /// What kind of chat this is.
    pub kind: ChatKind,
    /// Title (groups, supergroups and channels).
    pub title: Option<String>,
    /// Public `@username`, without the `@` (private chats, supergroups, channels).
    pub username: Option<String>,
    /// The other party's first name (private chats).
    pub first_name: Option<String>,
    /// The other party's last name (private chats).
    pub last_name: Option<String>,
}

/// The smallest supergroup/channel id magnitude: their ids are `-100` followed
/// by ten or more digits.
const SUPERGROUP_ID_LIMIT: i64 = -1_000_000_000_000;

impl Chat {
    /// The private chat between `user` and the bot (its id is the user's id).
    pub fn private(user: &User) -> Self {
        Chat {
            id: i64::try_from(user.id).unwrap_or(i64::MAX),
            kind: ChatKind::Private,
            title: None,
            username: user.username.clone(),
            first_name: Some(user.first_name.clone()),
            last_name: user.last_name.clone(),
        }
    }

    /// A basic group with a negative `id` (e.g. `-4012345678`) and a title.
    ///
    /// # Panics
    /// If `id` is not negative.
    pub fn group(id: i64, title: impl Into<String>) -> Self {
        assert!(id < 0, "a group's chat id must be negative, got {id}");
        Self::public(id, ChatKind::Group, title.into())
    }

    /// A supergroup; `id` is the full Bot API id, `-100` followed by digits
    /// (e.g. `-1001234567890`).
    ///
    /// # Panics
    /// If `id` does not look like `-100…`.
    pub fn supergroup(id: i64, title: impl Into<String>) -> Self {
        assert!(
            id <= SUPERGROUP_ID_LIMIT,
            "a supergroup's chat id must be -100 followed by digits, got {id}"
        );
        Self::public(id, ChatKind::Supergroup, title.into())
    }

    /// A channel; `id` is the full Bot API id, `-100` followed by digits.
    ///
    /// # Panics
    /// If `id` does not look like `-100…`.
    pub fn channel(id: i64, title: impl Into<String>) -> Self {
        assert!(
            id <= SUPERGROUP_ID_LIMIT,
            "a channel's chat id must be -100 followed by digits, got {id}"
        );
        Self::public(id, ChatKind::Channel, title.into())
    }

    /// The same chat with a public `@username` (give it without the `@`).
    pub fn with_username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    fn public(id: i64, kind: ChatKind, title: String) -> Self {
        Chat {
            id,
            kind,
            title: Some(title),
            username: None,
            first_name: None,
            last_name: None,
        }
    }

    /// A chat the fake has never been told about, guessed from its id alone:
    /// positive → private, `-100…` → supergroup, other negative → group.
    pub(crate) fn guess_from_id(id: i64) -> Self {
        if id > 0 {
            Chat {
                id,
                kind: ChatKind::Private,
                title: None,
                username: None,
                first_name: Some(format!("User {id}")),
                last_name: None,
            }
        } else if id <= SUPERGROUP_ID_LIMIT {
            Self::public(id, ChatKind::Supergroup, format!("Supergroup {id}"))
        } else {
            Self::public(id, ChatKind::Group, format!("Group {id}"))
        }
    }
}

/// A member's status in a chat, as `getChatMember` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MemberStatus {
    /// The chat's owner (`"creator"`).
    Creator,
    /// An administrator.
    Administrator,
    /// An ordinary member (the default).
    #[default]
    Member,
    /// A restricted member (still in the chat, with restrictions).
    Restricted,
    /// Not a member any more (left, or never joined).
    Left,
    /// Banned (`"kicked"`).
    Kicked,
}

impl MemberStatus {
    /// The Bot API's `status` string.
    pub fn as_str(self) -> &'static str {
        match self {
            MemberStatus::Creator => "creator",
            MemberStatus::Administrator => "administrator",
            MemberStatus::Member => "member",
            MemberStatus::Restricted => "restricted",
            MemberStatus::Left => "left",
            MemberStatus::Kicked => "kicked",
        }
    }
}

/// How a recorded request was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not answered yet (e.g. a long poll that is being held).
    Pending,
    /// Answered with this HTTP status.
    Status(u16),
    /// The connection was closed without a response (a scripted fault).
    Dropped,
    /// The client went away before the fake answered.
    Abandoned,
}

impl Outcome {
    /// The HTTP status answered, if there was one.
    pub fn status(self) -> Option<u16> {
        match self {
            Outcome::Status(s) => Some(s),
            _ => None,
        }
    }
}

/// One HTTP request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Position in the log of all requests since the server started
    /// (0-based; not reset by [`clear_requests`](crate::FakeTelegram::clear_requests)).
    pub seq: u64,
    /// The token from the URL (empty for a path that is not `/bot<TOKEN>/<method>`).
    pub token: String,
    /// The method name, lowercased (`getupdates`, `sendmessage`, …).
    pub method: String,
    /// The parameters: the JSON body, or form/query fields as a JSON object of
    /// strings; a body that is not valid JSON is kept as a JSON string.
    pub body: Value,
    /// When the request arrived.
    pub at: Instant,
    /// How it was answered (so far).
    pub outcome: Outcome,
}

impl RecordedRequest {
    /// The HTTP status answered, if any.
    pub fn status(&self) -> Option<u16> {
        self.outcome.status()
    }
}

/// What happened to a request, as broadcast by
/// [`FakeTelegram::subscribe`](crate::FakeTelegram::subscribe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestEvent {
    /// A request arrived (its `seq` indexes [`RecordedRequest::seq`]).
    Arrived {
        /// The request's sequence number.
        seq: u64,
        /// Its token.
        token: String,
        /// Its lowercased method.
        method: String,
    },
    /// A request was answered, dropped or abandoned.
    Finished {
        /// The request's sequence number.
        seq: u64,
        /// Its token.
        token: String,
        /// Its lowercased method.
        method: String,
        /// How it ended.
        outcome: Outcome,
    },
}

/// A message a bot sent (`sendMessage`, `sendPhoto` and the other media
/// methods, one per item of `sendMediaGroup`, `forwardMessage`,
/// `copyMessage`), or an edit it made (`editMessageText`,
/// `editMessageCaption`, `editMessageReplyMarkup`).
#[derive(Clone, Debug)]
pub struct SentMessage {
    /// The chat it went to.
    pub chat_id: i64,
    /// Its id in that chat (0 for an edit of an inline message).
    pub message_id: i32,
    /// The text as delivered (leading and trailing whitespace trimmed); for
    /// a media message, its caption (empty without one).
    pub text: String,
    /// `parse_mode` as given, if any.
    pub parse_mode: Option<String>,
    /// `reply_markup` as given, if any.
    pub reply_markup: Option<Value>,
    /// The full request parameters (a file part as `{"file_name", "size"}`).
    pub body: Value,
    /// When the fake accepted it.
    pub at: Instant,
    /// The method that made it, lowercased (`sendmessage`, `sendphoto`,
    /// `sendmediagroup`, `forwardmessage`, `editmessagecaption`, …).
    pub method: String,
    /// The caption of a media message, if it has one.
    pub caption: Option<String>,
    /// The file of a media message, bytes included (empty for a file sent
    /// by URL).
    pub media: Option<StoredFile>,
    /// What the message carries the file as (`photo`, `document`, …): the
    /// method's kind, which may differ from `media.kind` when a bot re-sends
    /// a stored file by its `file_id` as another kind.
    pub media_kind: Option<MediaKind>,
    /// The `media_group_id` shared by the messages of one `sendMediaGroup`.
    pub media_group_id: Option<String>,
    /// For `forwardMessage` and `copyMessage`: the chat and message id of
    /// the original.
    pub from_message: Option<(i64, i32)>,
}

impl SentMessage {
    /// Whether it is a media message carrying `kind`.
    pub fn is(&self, kind: MediaKind) -> bool {
        self.media_kind == Some(kind)
    }
}

/// An `answerCallbackQuery` a bot made.
#[derive(Clone, Debug)]
pub struct CallbackAnswer {
    /// The callback query answered.
    pub callback_query_id: String,
    /// The notification text, if any.
    pub text: Option<String>,
    /// Whether an alert was requested.
    pub show_alert: bool,
    /// The full request parameters.
    pub body: Value,
}

/// One attempt of the fake to deliver an update to a bot's webhook, as
/// [`FakeTelegram::webhook_deliveries`](crate::FakeTelegram::webhook_deliveries)
/// lists them (in the order the attempts completed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookDelivery {
    /// The update delivered.
    pub update_id: i64,
    /// Which attempt for this update it was (1 for the first).
    pub attempt: u32,
    /// The HTTP status the webhook answered; `None` when there was no answer
    /// (connection refused or reset, timeout, connection closed).
    pub status: Option<u16>,
    /// Why the attempt failed, in Telegram's words (`Wrong response from the
    /// webhook: 503 Service Unavailable`, `Connection refused`, `Read timeout
    /// expired`, …); `None` for a 2xx, which confirmed the update.
    pub error: Option<String>,
    /// The `X-Telegram-Bot-Api-Secret-Token` header sent, if any.
    pub secret: Option<String>,
    /// When the attempt started (before connecting).
    pub started: Instant,
    /// When the attempt completed.
    pub at: Instant,
}

impl WebhookDelivery {
    /// Whether the webhook confirmed the update (a 2xx answer).
    pub fn confirmed(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// A bot's webhook as the fake holds it, from
/// [`FakeTelegram::webhook_info`](crate::FakeTelegram::webhook_info).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookInfoView {
    /// The URL updates are POSTed to.
    pub url: String,
    /// The `secret_token` given to setWebhook, if any.
    pub secret_token: Option<String>,
    /// Most requests in flight at once (1–100, default 40).
    pub max_connections: u32,
    /// The bot's `allowed_updates` setting (`None`: the default set).
    pub allowed_updates: Option<Vec<String>>,
    /// Updates not yet confirmed.
    pub pending_update_count: usize,
    /// When the last delivery failed (Unix seconds), if one did.
    pub last_error_date: Option<i64>,
    /// Why the last delivery failed, in Telegram's words.
    pub last_error_message: Option<String>,
}

/// One bot command, as stored by `setMyCommands`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BotCommand {
    /// The command without the `/`.
    pub command: String,
    /// Its description.
    pub description: String,
}

/// A wait ([`wait_for_sent`](crate::FakeTelegram::wait_for_sent),
/// [`wait_for_request`](crate::FakeTelegram::wait_for_request)) ran out of time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WaitTimeout {
    /// What was awaited.
    pub waiting_for: String,
    /// How many matching items had been seen by the deadline.
    pub seen: usize,
    /// How many were wanted.
    pub wanted: usize,
    /// How long the wait lasted.
    pub timeout: Duration,
}

impl fmt::Display for WaitTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}: saw {} of {}",
            self.timeout, self.waiting_for, self.seen, self.wanted
        )
    }
}

impl std::error::Error for WaitTimeout {}
