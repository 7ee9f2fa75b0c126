//! The Bot API methods the fake implements, except getUpdates (see
//! `polling`) and the media methods (see `media`): routing by lowercased
//! name, the token check (401), unknown methods (404), and each method's
//! validation and effect on the state; also what every sending method
//! shares (the 403 checks, the rate limits, recording a sent message).

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};

use crate::json;
use crate::media;
use crate::model::{BotCommand, CallbackAnswer, Chat, ChatKind, MemberStatus, SentMessage};
use crate::params::Params;
use crate::polling;
use crate::reply::{ApiError, MethodResult, Success};
use crate::state::{BotState, Shared, State, StoredMessage};
use crate::webhook::{self, DEFAULT_MAX_CONNECTIONS, Spec};

/// Longest message text, in UTF-16 code units.
const MAX_TEXT_LEN: usize = 4096;
const MAX_COMMANDS: usize = 100;
const MAX_COMMAND_LEN: usize = 32;
const MAX_COMMAND_DESCRIPTION_LEN: usize = 256;
const MAX_SECRET_TOKEN_LEN: usize = 256;
const MAX_WEBHOOK_CONNECTIONS: i64 = 100;

const CHAT_ACTIONS: [&str; 11] = [
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
];

/// The methods the fake knows (lowercased).
const METHODS: [&str; 32] = [
    "getme",
    "getupdates",
    "sendmessage",
    "editmessagetext",
    "answercallbackquery",
    "getchatmember",
    "setmycommands",
    "getmycommands",
    "deletemycommands",
    "setwebhook",
    "deletewebhook",
    "getwebhookinfo",
    "getchat",
    "sendchataction",
    "leavechat",
    "close",
    "sendphoto",
    "senddocument",
    "sendaudio",
    "sendvideo",
    "sendanimation",
    "sendvoice",
    "sendvideonote",
    "sendsticker",
    "sendmediagroup",
    "forwardmessage",
    "copymessage",
    "deletemessage",
    "deletemessages",
    "editmessagecaption",
    "editmessagereplymarkup",
    "getfile",
];

/// Answers one request to `method` (lowercased) of `token`.
pub(crate) async fn dispatch(
    shared: &Arc<Shared>,
    token: &str,
    method: &str,
    params: Result<Params, ApiError>,
) -> MethodResult {
    {
        let st = shared.lock();
        if !st.bots.contains_key(token) {
            return Err(ApiError::unauthorized());
        }
    }
    if !METHODS.contains(&method) {
        return Err(ApiError::method_not_found());
    }
    let params = params?;
    if method == "getupdates" {
        return polling::get_updates(shared, token, &params).await;
    }
    let result = {
        let mut st = shared.lock();
        if method == "setwebhook" {
            set_webhook(shared, &mut st, token, &params)
        } else {
            call(&mut st, token, method, &params)
        }
    };
    // Wake the test-side waiters: a message may have been sent or edited.
    shared.changed.notify_waiters();
    result
}

fn call(st: &mut State, token: &str, method: &str, p: &Params) -> MethodResult {
    match method {
        "getme" => {
            let bot = bot(st, token)?;
            Ok(Success::json(&json::me(&bot.info)))
        }
        "sendmessage" => send_message(st, token, p),
        "editmessagetext" => edit_message_text(st, token, p),
        "answercallbackquery" => answer_callback_query(st, token, p),
        "getchatmember" => get_chat_member(st, token, p),
        "setmycommands" => set_my_commands(st, token, p),
        "getmycommands" => {
            let key = commands_key(p)?;
            let cmds = bot(st, token)?.commands.get(&key);
            let list: Vec<Value> = cmds
                .into_iter()
                .flatten()
                .map(|c| json!({ "command": c.command, "description": c.description }))
                .collect();
            Ok(Success::json(&Value::Array(list)))
        }
        "deletemycommands" => {
            let key = commands_key(p)?;
            bot(st, token)?.commands.remove(&key);
            Ok(Success::r#true())
        }
        "deletewebhook" => {
            let bot = bot(st, token)?;
            Ok(delete_webhook(bot, p.bool("drop_pending_updates")))
        }
        "getwebhookinfo" => {
            let bot = bot(st, token)?;
            let hook = bot.webhook.as_ref();
            let mut info = json!({
                "url": hook.map_or("", |w| w.spec.url.as_str()),
                "has_custom_certificate": hook.is_some_and(|w| w.spec.has_custom_certificate),
                "pending_update_count": bot.queue.len(),
            });
            if let (Some(w), Value::Object(m)) = (hook, &mut info) {
                if let Some(d) = w.last_error_date {
                    m.insert("last_error_date".into(), json!(d));
                }
                if let Some(e) = &w.last_error_message {
                    m.insert("last_error_message".into(), json!(e));
                }
                m.insert("max_connections".into(), json!(w.spec.max_connections));
                if let Some(a) = &bot.allowed_updates {
                    m.insert("allowed_updates".into(), json!(a));
                }
            }
            Ok(Success::json(&info))
        }
        "getchat" => {
            let chat = st.resolve_chat(&p.chat_id()?)?;
            Ok(Success::json(&json::chat_full_info(&chat)))
        }
        "sendchataction" => {
            st.resolve_chat(&p.chat_id()?)?;
            let action = p.str("action").unwrap_or_default();
            if action.is_empty() {
                return Err(ApiError::bad_request("action is empty"));
            }
            if !CHAT_ACTIONS.contains(&action.as_ref()) {
                return Err(ApiError::bad_request("wrong parameter action in request"));
            }
            Ok(Success::r#true())
        }
        "leavechat" => {
            let chat = st.resolve_chat(&p.chat_id()?)?;
            let bot_id = bot(st, token)?.info.id;
            st.members.insert((chat.id, bot_id), MemberStatus::Left);
            Ok(Success::r#true())
        }
        "close" => Ok(Success::r#true()),
        _ => media::call(st, token, method, p).unwrap_or_else(|| Err(ApiError::method_not_found())),
    }
}

pub(crate) fn bot<'a>(st: &'a mut State, token: &str) -> Result<&'a mut BotState, ApiError> {
    st.bots.get_mut(token).ok_or_else(ApiError::unauthorized)
}

/// Checks a message text as Telegram does: trimmed, 1–4096 UTF-16 units.
/// `too_long` is the description for an over-long text (sendMessage and
/// editMessageText word it differently).
fn checked_text(p: &Params, too_long: &str) -> Result<String, ApiError> {
    let text = p.str("text").unwrap_or_default();
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::bad_request("message text is empty"));
    }
    if json::utf16_len(text) > MAX_TEXT_LEN {
        return Err(ApiError::bad_request(too_long));
    }
    Ok(text.to_owned())
}

/// 403 when the bot may not write to `chat` (it was blocked, kicked, or left).
pub(crate) fn check_can_write(st: &State, bot_id: u64, chat: &Chat) -> Result<(), ApiError> {
    let status = st.member_status(chat.id, bot_id);
    let place = match chat.kind {
        ChatKind::Private => {
            return if status == MemberStatus::Kicked {
                Err(ApiError::new(403, "Forbidden: bot was blocked by the user"))
            } else {
                Ok(())
            };
        }
        ChatKind::Group => "group chat",
        ChatKind::Supergroup => "supergroup chat",
        ChatKind::Channel => "channel chat",
    };
    match status {
        MemberStatus::Kicked => Err(ApiError::new(
            403,
            format!("Forbidden: bot was kicked from the {place}"),
        )),
        MemberStatus::Left => Err(ApiError::new(
            403,
            format!("Forbidden: bot is not a member of the {place}"),
        )),
        _ => Ok(()),
    }
}

/// Counts one message against the rate limits, or answers 429.
pub(crate) fn admit(st: &mut State, token: &str, chat_id: i64) -> Result<(), ApiError> {
    admit_n(st, token, chat_id, 1)
}

/// Counts `n` messages (a media group) against the rate limits, all or
/// none, or answers 429.
pub(crate) fn admit_n(st: &mut State, token: &str, chat_id: i64, n: usize) -> Result<(), ApiError> {
    match st.limiter.admit_n(token, chat_id, n, Instant::now()) {
        Ok(()) => Ok(()),
        Err(retry_after) => {
            if let Some(bot) = st.bots.get_mut(token) {
                bot.too_many_requests += 1;
            }
            Err(ApiError::too_many_requests(retry_after))
        }
    }
}

fn send_message(st: &mut State, token: &str, p: &Params) -> MethodResult {
    let chat = st.resolve_chat(&p.chat_id()?)?;
    let text = checked_text(p, "message is too long")?;
    let reply_markup = p.json("reply_markup")?;
    let entities = p.json("entities")?;
    let bot_id = bot(st, token)?.info.id;
    check_can_write(st, bot_id, &chat)?;
    admit(st, token, chat.id)?;
    let stored = StoredMessage {
        text,
        entities: entities.filter(|e| e.as_array().is_some_and(|a| !a.is_empty())),
        reply_markup,
        ..StoredMessage::default()
    };
    let posted = post(st, token, &chat, stored, Sent::new("sendmessage", p))?;
    Ok(Success::json(&posted.json))
}

/// How a message being posted is recorded in the bot's sent messages.
pub(crate) struct Sent {
    pub method: &'static str,
    pub parse_mode: Option<String>,
    pub body: Value,
    pub from_message: Option<(i64, i32)>,
}

impl Sent {
    /// `method` with the request's `parse_mode` and parameters.
    pub fn new(method: &'static str, p: &Params) -> Self {
        Sent {
            method,
            parse_mode: p.str("parse_mode").map(|s| s.into_owned()),
            body: p.to_value(),
            from_message: None,
        }
    }
}

/// A message just posted: its id and its JSON.
pub(crate) struct Posted {
    pub message_id: i32,
    pub json: Value,
}

/// Posts `stored` as the bot (`from` and `date` are set here) in `chat`:
/// gives it the next id there, keeps it, and records it as sent.
pub(crate) fn post(
    st: &mut State,
    token: &str,
    chat: &Chat,
    mut stored: StoredMessage,
    sent: Sent,
) -> Result<Posted, ApiError> {
    let bot = bot(st, token)?;
    stored.by_bot = true;
    stored.from = Some(bot.user.clone());
    stored.date = json::unix_now();
    let message_id = bot.next_message_id(chat.id);
    let json = stored.to_json(message_id, chat);
    bot.sent.push(record(&stored, chat.id, message_id, sent));
    bot.messages.insert((chat.id, message_id), stored);
    Ok(Posted { message_id, json })
}

/// The test-side record of a message (sent, or as just edited).
pub(crate) fn record(
    msg: &StoredMessage,
    chat_id: i64,
    message_id: i32,
    sent: Sent,
) -> SentMessage {
    SentMessage {
        chat_id,
        message_id,
        text: msg.visible_text().to_owned(),
        parse_mode: sent.parse_mode,
        reply_markup: msg.reply_markup.clone(),
        body: sent.body,
        at: Instant::now(),
        method: sent.method.to_owned(),
        caption: msg.caption.clone(),
        media: msg.media.as_ref().map(|m| m.file.clone()),
        media_kind: msg.media.as_ref().map(|m| m.kind),
        media_group_id: msg.media_group_id.clone(),
        from_message: sent.from_message,
    }
}

/// The record of an edit of an inline message (the fake does not keep
/// those messages): chat and message id 0.
pub(crate) fn inline_edit_record(
    method: &'static str,
    text: String,
    reply_markup: Option<Value>,
    p: &Params,
) -> SentMessage {
    let msg = StoredMessage {
        text,
        reply_markup,
        ..StoredMessage::default()
    };
    record(&msg, 0, 0, Sent::new(method, p))
}

/// The `message_id` parameter.
pub(crate) fn message_id_param(p: &Params) -> Result<i32, ApiError> {
    p.i64("message_id")?
        .and_then(|m| i32::try_from(m).ok())
        .ok_or_else(|| ApiError::bad_request("message identifier is not specified"))
}

/// The 400 for an edit that changes nothing.
pub(crate) fn not_modified() -> ApiError {
    ApiError::bad_request(
        "message is not modified: specified new message content and reply markup are \
         exactly the same as a current content and reply markup of the message",
    )
}

fn edit_message_text(st: &mut State, token: &str, p: &Params) -> MethodResult {
    let text = checked_text(p, "MESSAGE_TOO_LONG")?;
    let reply_markup = p.json("reply_markup")?;
    if p.get("inline_message_id").is_some() {
        let edit = inline_edit_record("editmessagetext", text, reply_markup, p);
        bot(st, token)?.edits.push(edit);
        return Ok(Success::r#true());
    }
    let chat = st.resolve_chat(&p.chat_id()?)?;
    let message_id = message_id_param(p)?;
    {
        let bot = bot(st, token)?;
        let Some(msg) = bot.messages.get(&(chat.id, message_id)) else {
            return Err(ApiError::bad_request("message to edit not found"));
        };
        if !msg.by_bot {
            return Err(ApiError::bad_request("message can't be edited"));
        }
        if msg.media.is_some() {
            return Err(ApiError::bad_request(
                "there is no text in the message to edit",
            ));
        }
        if msg.text == text && msg.reply_markup == reply_markup {
            return Err(not_modified());
        }
    }
    let entities = p.json("entities")?;
    admit(st, token, chat.id)?;
    let bot = bot(st, token)?;
    let Some(msg) = bot.messages.get_mut(&(chat.id, message_id)) else {
        return Err(ApiError::bad_request("message to edit not found"));
    };
    msg.text = text;
    msg.reply_markup = reply_markup;
    msg.entities = entities;
    msg.edit_date = Some(json::unix_now());
    let message = msg.to_json(message_id, &chat);
    let edit = record(msg, chat.id, message_id, Sent::new("editmessagetext", p));
    bot.edits.push(edit);
    Ok(Success::json(&message))
}

fn answer_callback_query(st: &mut State, token: &str, p: &Params) -> MethodResult {
    let bot = bot(st, token)?;
    let id = p.str("callback_query_id").unwrap_or_default();
    if !bot.callback_ids.contains(id.as_ref()) {
        return Err(ApiError::bad_request(
            "query is too old and response timeout expired or query ID is invalid",
        ));
    }
    bot.callback_answers.push(CallbackAnswer {
        callback_query_id: id.into_owned(),
        text: p.str("text").map(|s| s.into_owned()),
        show_alert: p.bool("show_alert"),
        body: p.to_value(),
    });
    Ok(Success::r#true())
}

fn get_chat_member(st: &mut State, token: &str, p: &Params) -> MethodResult {
    let chat = st.resolve_chat(&p.chat_id()?)?;
    let user_id = p
        .i64("user_id")
        .ok()
        .flatten()
        .and_then(|u| u64::try_from(u).ok())
        .filter(|u| *u > 0)
        .ok_or_else(|| ApiError::bad_request("invalid user_id specified"))?;
    let (bot_id, bot_user) = {
        let bot = bot(st, token)?;
        (bot.info.id, bot.user.clone())
    };
    let user = if user_id == bot_id {
        bot_user
    } else {
        st.user(user_id)
    };
    let status = st.member_status(chat.id, user_id);
    Ok(Success::json(&json::chat_member(&user, status)))
}

/// Where commands are stored: by scope (canonical JSON) and language.
fn commands_key(p: &Params) -> Result<String, ApiError> {
    let scope = p
        .json("scope")?
        .unwrap_or_else(|| json!({ "type": "default" }));
    let lang = p.str("language_code").unwrap_or_default();
    Ok(format!("{scope}|{lang}"))
}

/// The key of the default scope with no language.
pub(crate) fn default_commands_key() -> String {
    format!("{}|", json!({ "type": "default" }))
}

fn set_my_commands(st: &mut State, token: &str, p: &Params) -> MethodResult {
    let key = commands_key(p)?;
    let Some(list) = p.json("commands")? else {
        return Err(ApiError::bad_request("parameter \"commands\" is required"));
    };
    let Value::Array(items) = list else {
        return Err(ApiError::bad_request("can't parse commands JSON object"));
    };
    if items.len() > MAX_COMMANDS {
        return Err(ApiError::bad_request("BOT_COMMANDS_TOO_MUCH"));
    }
    let mut commands = Vec::with_capacity(items.len());
    for item in &items {
        let (Some(command), Some(description)) = (
            item.get("command").and_then(Value::as_str),
            item.get("description").and_then(Value::as_str),
        ) else {
            return Err(ApiError::bad_request("can't parse BotCommand"));
        };
        let command = command.strip_prefix('/').unwrap_or(command);
        if command.is_empty() {
            return Err(ApiError::bad_request("command must be non-empty"));
        }
        if command.chars().count() > MAX_COMMAND_LEN {
            return Err(ApiError::bad_request("command is too long"));
        }
        if !command
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(ApiError::bad_request("BOT_COMMAND_INVALID"));
        }
        let description = description.trim();
        if description.is_empty() {
            return Err(ApiError::bad_request(
                "command description must be non-empty",
            ));
        }
        if description.chars().count() > MAX_COMMAND_DESCRIPTION_LEN {
            return Err(ApiError::bad_request("command description is too long"));
        }
        commands.push(BotCommand {
            command: command.to_owned(),
            description: description.to_owned(),
        });
    }
    let bot = bot(st, token)?;
    if commands.is_empty() {
        bot.commands.remove(&key);
    } else {
        bot.commands.insert(key, commands);
    }
    Ok(Success::r#true())
}

/// setWebhook as Telegram's server checks it (`Client::process_set_webhook_query`
/// and `WebhookActor` in tdlib/telegram-bot-api), with one exception for
/// tests, which cannot do TLS and listen on ephemeral ports: an `http` URL on
/// a loopback host (`127.0.0.0/8`, `::1`, `localhost`) is accepted on any
/// port. `max_connections` is clamped to 1–100, as Telegram does, not refused.
fn set_webhook(shared: &Arc<Shared>, st: &mut State, token: &str, p: &Params) -> MethodResult {
    let url = p.str("url").unwrap_or_default().trim().to_owned();
    let allowed = polling::parse_allowed_updates(p)?;
    let drop_pending = p.bool("drop_pending_updates");
    if url.is_empty() {
        let bot = bot(st, token)?;
        return Ok(delete_webhook(bot, drop_pending));
    }
    check_webhook_url(&url)?;
    let secret_token = p.str("secret_token").unwrap_or_default().into_owned();
    if secret_token.len() > MAX_SECRET_TOKEN_LEN {
        return Err(ApiError::bad_request("secret token is too long"));
    }
    if !secret_token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::bad_request(
            "secret token contains unallowed characters",
        ));
    }
    let max_connections = p
        .i64("max_connections")?
        .unwrap_or(i64::from(DEFAULT_MAX_CONNECTIONS))
        .clamp(1, MAX_WEBHOOK_CONNECTIONS);
    let spec = Spec {
        url,
        secret_token: (!secret_token.is_empty()).then_some(secret_token),
        max_connections: u32::try_from(max_connections).unwrap_or(DEFAULT_MAX_CONNECTIONS),
        has_custom_certificate: p.get("certificate").is_some(),
    };
    let bot = bot(st, token)?;
    if let Some(a) = allowed {
        bot.allowed_updates = Some(a);
    }
    // The same webhook again changes nothing (Telegram: "Webhook is already
    // set"), unless it carries a certificate or drops the pending updates.
    let same = !drop_pending
        && !spec.has_custom_certificate
        && bot.webhook.as_ref().is_some_and(|w| w.spec == spec);
    if same {
        return Ok(Success::r#true().with_description("Webhook is already set"));
    }
    if drop_pending {
        bot.queue.clear();
    }
    webhook::install(shared, st, token, spec);
    Ok(Success::r#true().with_description("Webhook was set"))
}

/// Checks a webhook URL; see [`set_webhook`]. A URL without a scheme is
/// taken as `https`, as Telegram does.
fn check_webhook_url(url: &str) -> Result<(), ApiError> {
    let with_scheme = if url.contains("://") {
        url.to_owned()
    } else {
        format!("https://{url}")
    };
    let invalid = || ApiError::bad_request("invalid webhook URL specified");
    let parsed = url::Url::parse(&with_scheme).map_err(|_| invalid())?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => return Err(invalid()),
    };
    match parsed.scheme() {
        "http" if loopback => Ok(()),
        "http" => Err(ApiError::bad_request(
            "bad webhook: An HTTPS URL must be provided for webhook",
        )),
        "https" if matches!(parsed.port_or_known_default(), Some(80 | 88 | 443 | 8443)) => Ok(()),
        "https" => Err(ApiError::bad_request(
            "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
        )),
        _ => Err(invalid()),
    }
}

/// deleteWebhook (and setWebhook with an empty URL): removing the webhook
/// stops its deliveries at once.
fn delete_webhook(bot: &mut BotState, drop_pending: bool) -> Success {
    if drop_pending {
        bot.queue.clear();
    }
    let was_set = bot.webhook.take().is_some();
    Success::r#true().with_description(if was_set {
        "Webhook was deleted"
    } else {
        "Webhook is already deleted"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(body: &str) -> Params {
        Params::parse(
            None,
            Some("application/json"),
            &bytes::Bytes::copy_from_slice(body.as_bytes()),
        )
        .params
        .expect("valid JSON")
    }

    fn state() -> State {
        let mut st = State::default();
        st.add_bot("1:x", "bot");
        st
    }

    const TOO_LONG: &str = "message is too long";

    #[test]
    fn text_is_trimmed_and_measured_in_utf16() {
        assert!(checked_text(&params(r#"{"text":"   "}"#), TOO_LONG).is_err());
        let ok = "😀".repeat(2048);
        assert!(checked_text(&params(&format!(r#"{{"text":"{ok}"}}"#)), TOO_LONG).is_ok());
        let long = format!("{ok}a");
        let err = checked_text(&params(&format!(r#"{{"text":"{long}"}}"#)), TOO_LONG);
        assert_eq!(
            err.map_err(|e| e.description),
            Err("Bad Request: message is too long".into())
        );
    }

    #[test]
    fn commands_are_validated() {
        let mut st = state();
        let bad = params(r#"{"commands":[{"command":"Start","description":"x"}]}"#);
        assert!(set_my_commands(&mut st, "1:x", &bad).is_err());
        let good = params(r#"{"commands":[{"command":"start","description":"Go"}]}"#);
        assert!(set_my_commands(&mut st, "1:x", &good).is_ok());
        assert_eq!(
            st.bots["1:x"].commands[&default_commands_key()][0].command,
            "start"
        );
    }

    #[test]
    fn webhook_urls_are_checked_like_telegram_with_loopback_http_allowed() {
        let err = |url: &str| check_webhook_url(url).map_err(|e| e.description.into_owned());
        assert_eq!(err("https://example.com/hook"), Ok(()));
        assert_eq!(err("example.com:8443/hook"), Ok(()));
        assert_eq!(err("http://127.0.0.1:41234/hook"), Ok(()));
        assert_eq!(err("http://localhost:9/hook"), Ok(()));
        assert_eq!(err("http://[::1]:9/hook"), Ok(()));
        assert_eq!(
            err("http://example.com/hook"),
            Err("Bad Request: bad webhook: An HTTPS URL must be provided for webhook".into())
        );
        assert_eq!(
            err("https://127.0.0.1:9000/hook"),
            Err(
                "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443"
                    .into()
            )
        );
        assert_eq!(
            err("ftp://example.com/"),
            Err("Bad Request: invalid webhook URL specified".into())
        );
    }

    #[test]
    fn blocked_private_chat_is_forbidden() {
        let mut st = state();
        st.members.insert((5, 1), MemberStatus::Kicked);
        let r = send_message(&mut st, "1:x", &params(r#"{"chat_id":5,"text":"hi"}"#));
        assert_eq!(
            r.map_err(|e| e.description),
            Err("Forbidden: bot was blocked by the user".into())
        );
    }
}
