//! Builders for the Bot API's JSON objects (User, Chat, Message, ChatMember,
//! ChatFullInfo, the getMe result). Every shape here is checked by the tests
//! to deserialize with teloxide-core 0.13's types, so fields teloxide requires
//! (e.g. `has_main_web_app` in getMe, all the `can_*` flags of an
//! administrator) are always present.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use crate::model::{BotInfo, Chat, ChatKind, MemberStatus, User};

/// Seconds since the Unix epoch (never 0: teloxide reads a message dated 0 as
/// "inaccessible").
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(1)
        .max(1)
}

/// Length in UTF-16 code units, the unit Telegram measures text and entity
/// offsets in.
pub(crate) fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

/// The `User` object.
pub(crate) fn user(u: &User) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(u.id));
    m.insert("is_bot".into(), json!(u.is_bot));
    m.insert("first_name".into(), json!(u.first_name));
    if let Some(v) = &u.last_name {
        m.insert("last_name".into(), json!(v));
    }
    if let Some(v) = &u.username {
        m.insert("username".into(), json!(v));
    }
    if let Some(v) = &u.language_code {
        m.insert("language_code".into(), json!(v));
    }
    Value::Object(m)
}

/// The `Chat` object.
pub(crate) fn chat(c: &Chat) -> Value {
    let mut m = Map::new();
    m.insert("id".into(), json!(c.id));
    m.insert("type".into(), json!(c.kind.as_str()));
    match c.kind {
        ChatKind::Private => {
            if let Some(v) = &c.first_name {
                m.insert("first_name".into(), json!(v));
            }
            if let Some(v) = &c.last_name {
                m.insert("last_name".into(), json!(v));
            }
        }
        ChatKind::Group | ChatKind::Supergroup | ChatKind::Channel => {
            if let Some(v) = &c.title {
                m.insert("title".into(), json!(v));
            }
        }
    }
    if let (true, Some(v)) = (c.kind != ChatKind::Group, &c.username) {
        m.insert("username".into(), json!(v));
    }
    Value::Object(m)
}

/// The `ChatFullInfo` object `getChat` returns.
pub(crate) fn chat_full_info(c: &Chat) -> Value {
    let mut v = chat(c);
    if let Value::Object(m) = &mut v {
        m.insert(
            "accepted_gift_types".into(),
            json!({
                "unlimited_gifts": false,
                "limited_gifts": false,
                "unique_gifts": false,
                "premium_subscription": false
            }),
        );
        m.insert("max_reaction_count".into(), json!(11));
    }
    v
}

/// The `getMe` result (teloxide's `Me`).
pub(crate) fn me(bot: &BotInfo) -> Value {
    json!({
        "id": bot.id,
        "is_bot": true,
        "first_name": bot.first_name,
        "username": bot.username,
        "can_join_groups": true,
        "can_read_all_group_messages": false,
        "supports_inline_queries": false,
        "can_connect_to_business": false,
        "has_main_web_app": false
    })
}

/// The `ChatMember` object for `user` with `status`.
pub(crate) fn chat_member(u: &User, status: MemberStatus) -> Value {
    let user = user(u);
    match status {
        MemberStatus::Creator => json!({
            "user": user, "status": "creator", "is_anonymous": false
        }),
        MemberStatus::Administrator => json!({
            "user": user,
            "status": "administrator",
            "can_be_edited": false,
            "is_anonymous": false,
            "can_manage_chat": true,
            "can_delete_messages": true,
            "can_manage_video_chats": true,
            "can_restrict_members": true,
            "can_promote_members": false,
            "can_change_info": true,
            "can_invite_users": true,
            "can_post_stories": false,
            "can_edit_stories": false,
            "can_delete_stories": false,
            "can_pin_messages": true
        }),
        MemberStatus::Member => json!({ "user": user, "status": "member" }),
        MemberStatus::Restricted => json!({
            "user": user,
            "status": "restricted",
            "until_date": 0,
            "is_member": true,
            "can_send_messages": false,
            "can_send_audios": false,
            "can_send_documents": false,
            "can_send_photos": false,
            "can_send_videos": false,
            "can_send_video_notes": false,
            "can_send_voice_notes": false,
            "can_send_polls": false,
            "can_send_other_messages": false,
            "can_add_web_page_previews": false,
            "can_change_info": false,
            "can_invite_users": false,
            "can_pin_messages": false,
            "can_manage_topics": false
        }),
        MemberStatus::Left => json!({ "user": user, "status": "left" }),
        MemberStatus::Kicked => json!({ "user": user, "status": "kicked", "until_date": 0 }),
    }
}

/// The `bot_command` entity for a text that starts with `/`: it covers the
/// command and any `@botname` (the run of `[A-Za-z0-9_@]` after the slash).
/// `None` when the text is not a command.
pub(crate) fn command_entity(text: &str) -> Option<Value> {
    let rest = text.strip_prefix('/')?;
    let len = rest
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '@')
        .count();
    if len == 0 {
        return None;
    }
    // All ASCII, so chars == UTF-16 units; +1 for the slash.
    Some(json!({ "type": "bot_command", "offset": 0, "length": len + 1 }))
}

/// Parts of a text `Message` object.
pub(crate) struct TextMessage<'a> {
    pub message_id: i32,
    pub from: Option<&'a User>,
    pub chat: &'a Chat,
    pub date: i64,
    pub text: &'a str,
    pub entities: Option<Value>,
    pub reply_markup: Option<&'a Value>,
}

/// A text `Message` object. A channel post gets `sender_chat` = the channel.
/// Only an inline keyboard is echoed as `reply_markup` (Telegram never returns
/// reply keyboards in a Message, and teloxide only accepts inline ones there).
pub(crate) fn text_message(p: TextMessage<'_>) -> Value {
    let mut m = message_head(p.message_id, p.from, p.chat, p.date);
    m.insert("text".into(), json!(p.text));
    if let Some(e) = p.entities {
        m.insert("entities".into(), e);
    }
    insert_reply_markup(&mut m, p.reply_markup);
    Value::Object(m)
}

/// The fields every `Message` has: `message_id`, `from` (if any),
/// `sender_chat` (channel posts), `chat` and `date`.
pub(crate) fn message_head(
    message_id: i32,
    from: Option<&User>,
    in_chat: &Chat,
    date: i64,
) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("message_id".into(), json!(message_id));
    if let Some(from) = from {
        m.insert("from".into(), user(from));
    }
    if in_chat.kind == ChatKind::Channel {
        m.insert("sender_chat".into(), chat(in_chat));
    }
    m.insert("chat".into(), chat(in_chat));
    m.insert("date".into(), json!(date));
    m
}

/// Adds `reply_markup` to a Message when it is an inline keyboard.
pub(crate) fn insert_reply_markup(m: &mut Map<String, Value>, markup: Option<&Value>) {
    if let Some(markup) = markup.filter(|r| is_inline_keyboard(r)) {
        m.insert("reply_markup".into(), markup.clone());
    }
}

/// Whether a `reply_markup` value is an inline keyboard.
pub(crate) fn is_inline_keyboard(markup: &Value) -> bool {
    markup.get("inline_keyboard").is_some_and(Value::is_array)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_entity_covers_bot_name() {
        let e = command_entity("/help@MyBot please").expect("entity");
        assert_eq!(e["length"], 11);
        assert!(command_entity("/").is_none());
        assert!(command_entity("hello").is_none());
        assert_eq!(command_entity("/start").expect("entity")["length"], 6);
    }

    #[test]
    fn utf16_counts_surrogate_pairs() {
        assert_eq!(utf16_len("a"), 1);
        assert_eq!(utf16_len("é"), 1);
        assert_eq!(utf16_len("😀"), 2);
    }
}
