//! The methods about files and existing messages: sendPhoto, sendDocument,
//! sendAudio, sendVideo, sendAnimation, sendVoice, sendVideoNote,
//! sendSticker, sendMediaGroup, forwardMessage, copyMessage, deleteMessage,
//! deleteMessages, editMessageCaption, editMessageReplyMarkup and getFile.
//!
//! A media parameter is found as Telegram's server finds it: a file part
//! named after the parameter (python-telegram-bot), a string
//! `attach://<name>` naming a file part (aiogram, grammY, teloxide), an
//! `http(s)` URL (stored without bytes), or the `file_id` of a stored file
//! (a text field, a form field or JSON).

use serde_json::{Value, json};

use crate::files::{self, MediaDetails, MediaKind, NewFile, StoredFile};
use crate::json;
use crate::methods::{
    Sent, admit, admit_n, bot, check_can_write, inline_edit_record, message_id_param, not_modified,
    post, record,
};
use crate::model::{Chat, ChatKind};
use crate::params::{FilePart, Params};
use crate::reply::{ApiError, MethodResult, Success};
use crate::state::{MessageMedia, State, StoredMessage};

/// Longest caption, in UTF-16 code units.
const MAX_CAPTION_LEN: usize = 1024;
/// Fewest and most items of a media group.
const MEDIA_GROUP_SIZE: std::ops::RangeInclusive<usize> = 2..=10;
/// Most message ids one deleteMessages takes.
const MAX_DELETE_IDS: usize = 100;
/// Largest file getFile hands out (Telegram's 20 MB download limit).
const MAX_DOWNLOAD_SIZE: u64 = 20 * 1024 * 1024;

const WRONG_FILE: &str = "wrong file identifier/HTTP URL specified";

/// Answers `method` if it is one of this module's; `None` otherwise.
pub(crate) fn call(st: &mut State, token: &str, method: &str, p: &Params) -> Option<MethodResult> {
    if let Some(kind) = MediaKind::from_method(method) {
        return Some(send_media(st, token, kind, p));
    }
    Some(match method {
        "sendmediagroup" => send_media_group(st, token, p),
        "forwardmessage" => forward_or_copy(st, token, p, false),
        "copymessage" => forward_or_copy(st, token, p, true),
        "deletemessage" => delete_message(st, token, p),
        "deletemessages" => delete_messages(st, token, p),
        "editmessagecaption" => edit_message_caption(st, token, p),
        "editmessagereplymarkup" => edit_message_reply_markup(st, token, p),
        "getfile" => get_file(st, p),
        _ => return None,
    })
}

/// A media parameter, resolved.
enum Input {
    /// A file part of the request, not stored yet.
    Upload(FilePart),
    /// A stored file, by its `file_id`.
    Stored(StoredFile),
    /// An `http(s)` URL.
    Url(String),
}

/// The media parameter `key`: `None` when the request has none (or an
/// `attach://` naming no part); 400 for an unknown `file_id`.
fn media_param(st: &State, p: &Params, key: &str) -> Result<Option<Input>, ApiError> {
    if let Some(part) = p.file(key) {
        return Ok(Some(Input::Upload(part.clone())));
    }
    match p.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => media_value(st, p, s),
        Some(Value::Number(n)) => media_value(st, p, &n.to_string()),
        Some(_) => Err(ApiError::bad_request(WRONG_FILE)),
    }
}

/// A media value given as a string: `attach://<part>`, a URL or a `file_id`.
fn media_value(st: &State, p: &Params, value: &str) -> Result<Option<Input>, ApiError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    if let Some(name) = value.strip_prefix("attach://") {
        return Ok(p.file(name).cloned().map(Input::Upload));
    }
    let lower = value.get(..8).unwrap_or(value).to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        return Ok(Some(Input::Url(value.to_owned())));
    }
    st.files
        .get(value)
        .cloned()
        .map(|f| Some(Input::Stored(f)))
        .ok_or_else(|| ApiError::bad_request(WRONG_FILE))
}

/// The stored file for an input (storing an upload or a URL now).
fn materialize(st: &mut State, input: Input, kind: MediaKind) -> StoredFile {
    match input {
        Input::Stored(file) => file,
        Input::Upload(part) => st.files.add(NewFile {
            kind,
            bytes: part.bytes,
            file_name: part.file_name.as_deref(),
            content_type: part.content_type.as_deref(),
            url: None,
        }),
        Input::Url(url) => st.files.add(NewFile {
            kind,
            bytes: bytes::Bytes::new(),
            file_name: None,
            content_type: None,
            url: Some(url),
        }),
    }
}

/// A caption checked as Telegram does: trimmed, at most 1024 UTF-16 units;
/// empty is none.
fn checked_caption(caption: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(caption) = caption.map(str::trim).filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    if json::utf16_len(caption) > MAX_CAPTION_LEN {
        return Err(ApiError::bad_request("message caption is too long"));
    }
    Ok(Some(caption.to_owned()))
}

/// A non-empty array of entities, if given.
fn entities(v: Option<Value>) -> Option<Value> {
    v.filter(|e| e.as_array().is_some_and(|a| !a.is_empty()))
}

/// A non-negative whole number, from a JSON value or a numeric string.
fn small_number(v: Option<&Value>, key: &str) -> Result<Option<u32>, ApiError> {
    let wrong = || ApiError::bad_request(format!("wrong parameter {key} in request"));
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(|n| Some(u32::try_from(n).unwrap_or(u32::MAX)))
            .ok_or_else(wrong),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| wrong()),
        Some(_) => Err(wrong()),
    }
}

/// `duration`, `width`, … from an object of parameters (`get` looks one up).
fn details<'a>(get: impl Fn(&str) -> Option<&'a Value>) -> Result<MediaDetails, ApiError> {
    let text = |key: &str| match get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    };
    Ok(MediaDetails {
        duration: small_number(get("duration"), "duration")?,
        width: small_number(get("width"), "width")?,
        height: small_number(get("height"), "height")?,
        length: small_number(get("length"), "length")?,
        performer: text("performer"),
        title: text("title"),
        emoji: text("emoji"),
    })
}

/// sendPhoto, sendDocument, sendAudio, sendVideo, sendAnimation, sendVoice,
/// sendVideoNote and sendSticker.
fn send_media(st: &mut State, token: &str, kind: MediaKind, p: &Params) -> MethodResult {
    let chat = st.resolve_chat(&p.chat_id()?)?;
    let caption = if kind == MediaKind::Sticker || kind == MediaKind::VideoNote {
        None
    } else {
        checked_caption(p.str("caption").as_deref())?
    };
    let caption_entities = entities(p.json("caption_entities")?);
    let reply_markup = p.json("reply_markup")?;
    p.json("reply_parameters")?;
    let details = details(|k| p.get(k))?;
    let input = media_param(st, p, kind.as_str())?.ok_or_else(|| {
        ApiError::bad_request(format!("there is no {} in the request", kind.noun()))
    })?;
    let bot_id = bot(st, token)?.info.id;
    check_can_write(st, bot_id, &chat)?;
    admit(st, token, chat.id)?;
    let file = materialize(st, input, kind);
    let stored = StoredMessage {
        media: Some(MessageMedia::new(kind, file, &details)),
        caption_entities: caption_entities.filter(|_| caption.is_some()),
        caption,
        reply_markup,
        ..StoredMessage::default()
    };
    let posted = post(st, token, &chat, stored, Sent::new(kind.method(), p))?;
    Ok(Success::json(&posted.json))
}

/// One checked item of a media group.
struct GroupItem {
    kind: MediaKind,
    input: Input,
    caption: Option<String>,
    caption_entities: Option<Value>,
    parse_mode: Option<String>,
    details: MediaDetails,
}

/// sendMediaGroup: 2–10 photos, videos, documents or audios (documents and
/// audios only among themselves), sent as messages sharing a
/// `media_group_id`; each counts against the rate limits.
fn send_media_group(st: &mut State, token: &str, p: &Params) -> MethodResult {
    let chat = st.resolve_chat(&p.chat_id()?)?;
    p.json("reply_parameters")?;
    let Some(media) = p.json("media")? else {
        return Err(ApiError::bad_request("parameter \"media\" is required"));
    };
    let Value::Array(list) = media else {
        return Err(ApiError::bad_request("expected an Array of InputMedia"));
    };
    if list.is_empty() {
        return Err(ApiError::bad_request("there are no messages to send"));
    }
    if list.len() > *MEDIA_GROUP_SIZE.end() {
        return Err(ApiError::bad_request(
            "too many messages to send as an album",
        ));
    }
    if !MEDIA_GROUP_SIZE.contains(&list.len()) {
        return Err(ApiError::bad_request("wrong number of media in the group"));
    }
    let mut items = Vec::with_capacity(list.len());
    for item in &list {
        items.push(group_item(st, p, item)?);
    }
    for alone in [MediaKind::Document, MediaKind::Audio] {
        if items.iter().any(|i| i.kind == alone) && items.iter().any(|i| i.kind != alone) {
            return Err(ApiError::bad_request(format!(
                "{} can't be mixed with other media types",
                alone.as_str()
            )));
        }
    }
    let bot_id = bot(st, token)?.info.id;
    check_can_write(st, bot_id, &chat)?;
    admit_n(st, token, chat.id, items.len())?;
    let group_id = st.next_media_group_id();
    let mut messages = Vec::with_capacity(items.len());
    for item in items {
        let file = materialize(st, item.input, item.kind);
        let stored = StoredMessage {
            media: Some(MessageMedia::new(item.kind, file, &item.details)),
            caption_entities: item.caption_entities.filter(|_| item.caption.is_some()),
            caption: item.caption,
            media_group_id: Some(group_id.clone()),
            ..StoredMessage::default()
        };
        let mut sent = Sent::new("sendmediagroup", p);
        sent.parse_mode = item.parse_mode;
        messages.push(post(st, token, &chat, stored, sent)?.json);
    }
    Ok(Success::json(&Value::Array(messages)))
}

/// One InputMedia of a media group, checked.
fn group_item(st: &State, p: &Params, item: &Value) -> Result<GroupItem, ApiError> {
    let bad = |what: &str| ApiError::bad_request(format!("can't parse InputMedia: {what}"));
    let Value::Object(obj) = item else {
        return Err(bad("object expected"));
    };
    let type_ = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let kind = match type_ {
        "photo" => MediaKind::Photo,
        "video" => MediaKind::Video,
        "document" => MediaKind::Document,
        "audio" => MediaKind::Audio,
        _ => return Err(bad(&format!("type \"{type_}\" is unsupported"))),
    };
    let media = match obj.get("media") {
        Some(Value::String(s)) => s.as_str(),
        _ => "",
    };
    let input = media_value(st, p, media)?.ok_or_else(|| bad("media not found"))?;
    let text = |key: &str| obj.get(key).and_then(Value::as_str);
    Ok(GroupItem {
        kind,
        input,
        caption: checked_caption(text("caption"))?,
        caption_entities: entities(obj.get("caption_entities").cloned()),
        parse_mode: text("parse_mode").map(str::to_owned),
        details: details(|k| obj.get(k))?,
    })
}

/// The `forward_origin` of a forward of `source` (message `message_id` in
/// `from_chat`): a forward of a forward keeps the first origin.
fn forward_origin(source: &StoredMessage, from_chat: &Chat, message_id: i32) -> Value {
    if let Some(o) = &source.forward_origin {
        return o.clone();
    }
    if from_chat.kind == ChatKind::Channel {
        return json!({
            "type": "channel",
            "date": source.date,
            "chat": json::chat(from_chat),
            "message_id": message_id,
        });
    }
    match &source.from {
        Some(user) => json!({
            "type": "user",
            "date": source.date,
            "sender_user": json::user(user),
        }),
        None => json!({
            "type": "hidden_user",
            "date": source.date,
            "sender_user_name": "Unknown",
        }),
    }
}

/// forwardMessage (answers the new Message) and copyMessage (answers
/// `{"message_id": N}`; a copy has no `forward_origin`, and its caption and
/// reply markup may be replaced).
fn forward_or_copy(st: &mut State, token: &str, p: &Params, copy: bool) -> MethodResult {
    let chat = st.resolve_chat(&p.chat_id()?)?;
    let from_chat = st.resolve_chat(&p.chat_ref("from_chat_id")?)?;
    let message_id = message_id_param(p)?;
    let what = if copy { "copy" } else { "forward" };
    let Some(source) = bot(st, token)?
        .messages
        .get(&(from_chat.id, message_id))
        .cloned()
    else {
        return Err(ApiError::bad_request(format!(
            "message to {what} not found"
        )));
    };
    let new_caption = if copy && p.get("caption").is_some() {
        Some(checked_caption(p.str("caption").as_deref())?)
    } else {
        None
    };
    let new_entities = entities(p.json("caption_entities")?);
    let reply_markup = if copy { p.json("reply_markup")? } else { None };
    let bot_id = bot(st, token)?.info.id;
    check_can_write(st, bot_id, &chat)?;
    admit(st, token, chat.id)?;
    let mut stored = StoredMessage {
        text: source.text.clone(),
        entities: source.entities.clone(),
        media: source.media.clone(),
        caption: source.caption.clone(),
        caption_entities: source.caption_entities.clone(),
        reply_markup,
        forward_origin: (!copy).then(|| forward_origin(&source, &from_chat, message_id)),
        ..StoredMessage::default()
    };
    if let (Some(caption), Some(_)) = (new_caption, &stored.media) {
        stored.caption_entities = new_entities.filter(|_| caption.is_some());
        stored.caption = caption;
    }
    let method = if copy {
        "copymessage"
    } else {
        "forwardmessage"
    };
    let mut sent = Sent::new(method, p);
    sent.from_message = Some((from_chat.id, message_id));
    let posted = post(st, token, &chat, stored, sent)?;
    if copy {
        Ok(Success::json(&json!({ "message_id": posted.message_id })))
    } else {
        Ok(Success::json(&posted.json))
    }
}

/// deleteMessage: a message the fake knows in that chat, else 400. Counted
/// against the rate limits like an edit.
fn delete_message(st: &mut State, token: &str, p: &Params) -> MethodResult {
    let chat = st.resolve_chat(&p.chat_id()?)?;
    let message_id = message_id_param(p)?;
    if !bot(st, token)?
        .messages
        .contains_key(&(chat.id, message_id))
    {
        return Err(ApiError::bad_request("message to delete not found"));
    }
    admit(st, token, chat.id)?;
    let bot = bot(st, token)?;
    bot.messages.remove(&(chat.id, message_id));
    bot.deleted.push((chat.id, message_id));
    Ok(Success::r#true())
}

/// deleteMessages: 1–100 ids; unknown ones are skipped, as in Telegram.
fn delete_messages(st: &mut State, token: &str, p: &Params) -> MethodResult {
    let chat = st.resolve_chat(&p.chat_id()?)?;
    let Some(ids) = p.json("message_ids")? else {
        return Err(ApiError::bad_request(
            "message identifiers are not specified",
        ));
    };
    let Value::Array(ids) = ids else {
        return Err(ApiError::bad_request(
            "expected an Array of message identifiers",
        ));
    };
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "message identifiers are not specified",
        ));
    }
    if ids.len() > MAX_DELETE_IDS {
        return Err(ApiError::bad_request(
            "too many message identifiers specified",
        ));
    }
    let mut message_ids = Vec::with_capacity(ids.len());
    for id in &ids {
        let parsed = match id {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let id = parsed
            .and_then(|i| i32::try_from(i).ok())
            .ok_or_else(|| ApiError::bad_request("can't parse message identifier"))?;
        message_ids.push(id);
    }
    admit(st, token, chat.id)?;
    let bot = bot(st, token)?;
    for id in message_ids {
        if bot.messages.remove(&(chat.id, id)).is_some() {
            bot.deleted.push((chat.id, id));
        }
    }
    Ok(Success::r#true())
}

/// The message of an edit: it exists, the bot sent it.
fn editable<'a>(
    st: &'a mut State,
    token: &str,
    chat_id: i64,
    message_id: i32,
) -> Result<&'a mut StoredMessage, ApiError> {
    let msg = bot(st, token)?
        .messages
        .get_mut(&(chat_id, message_id))
        .ok_or_else(|| ApiError::bad_request("message to edit not found"))?;
    if !msg.by_bot {
        return Err(ApiError::bad_request("message can't be edited"));
    }
    Ok(msg)
}

/// editMessageCaption: a media message's caption (none given removes it)
/// and reply markup.
fn edit_message_caption(st: &mut State, token: &str, p: &Params) -> MethodResult {
    let caption = checked_caption(p.str("caption").as_deref())?;
    let caption_entities = entities(p.json("caption_entities")?).filter(|_| caption.is_some());
    let reply_markup = p.json("reply_markup")?;
    if p.get("inline_message_id").is_some() {
        let text = caption.unwrap_or_default();
        let edit = inline_edit_record("editmessagecaption", text, reply_markup, p);
        bot(st, token)?.edits.push(edit);
        return Ok(Success::r#true());
    }
    let chat = st.resolve_chat(&p.chat_id()?)?;
    let message_id = message_id_param(p)?;
    {
        let msg = editable(st, token, chat.id, message_id)?;
        if msg.media.is_none() {
            return Err(ApiError::bad_request(
                "there is no caption in the message to edit",
            ));
        }
        if msg.caption == caption && msg.reply_markup == reply_markup {
            return Err(not_modified());
        }
    }
    admit(st, token, chat.id)?;
    let msg = editable(st, token, chat.id, message_id)?;
    msg.caption = caption;
    msg.caption_entities = caption_entities;
    msg.reply_markup = reply_markup;
    msg.edit_date = Some(json::unix_now());
    let message = msg.to_json(message_id, &chat);
    let edit = record(msg, chat.id, message_id, Sent::new("editmessagecaption", p));
    bot(st, token)?.edits.push(edit);
    Ok(Success::json(&message))
}

/// editMessageReplyMarkup: the inline keyboard of a message (none given
/// removes it).
fn edit_message_reply_markup(st: &mut State, token: &str, p: &Params) -> MethodResult {
    let reply_markup = p.json("reply_markup")?;
    if p.get("inline_message_id").is_some() {
        let edit = inline_edit_record("editmessagereplymarkup", String::new(), reply_markup, p);
        bot(st, token)?.edits.push(edit);
        return Ok(Success::r#true());
    }
    let chat = st.resolve_chat(&p.chat_id()?)?;
    let message_id = message_id_param(p)?;
    if editable(st, token, chat.id, message_id)?.reply_markup == reply_markup {
        return Err(not_modified());
    }
    admit(st, token, chat.id)?;
    let msg = editable(st, token, chat.id, message_id)?;
    msg.reply_markup = reply_markup;
    msg.edit_date = Some(json::unix_now());
    let message = msg.to_json(message_id, &chat);
    let edit = record(
        msg,
        chat.id,
        message_id,
        Sent::new("editmessagereplymarkup", p),
    );
    bot(st, token)?.edits.push(edit);
    Ok(Success::json(&message))
}

/// getFile: a stored file's File object; files over 20 MB cannot be
/// downloaded, as in Telegram.
fn get_file(st: &mut State, p: &Params) -> MethodResult {
    let file_id = p.str("file_id").unwrap_or_default();
    let file_id = file_id.trim();
    if file_id.is_empty() {
        return Err(ApiError::bad_request("file_id not specified"));
    }
    let file = st
        .files
        .get(file_id)
        .ok_or_else(|| ApiError::bad_request("invalid file_id"))?;
    if file.size > MAX_DOWNLOAD_SIZE {
        return Err(ApiError::bad_request("file is too big"));
    }
    Ok(Success::json(&files::file_json(file)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn state() -> State {
        let mut st = State::default();
        st.add_bot("1:x", "bot");
        st
    }

    fn json_params(body: &str) -> Params {
        Params::parse(
            None,
            Some("application/json"),
            &Bytes::copy_from_slice(body.as_bytes()),
        )
        .params
        .expect("valid JSON")
    }

    fn err(r: MethodResult) -> String {
        r.map(|s| s.result)
            .expect_err("an error")
            .description
            .into_owned()
    }

    #[test]
    fn media_parameter_errors() {
        let mut st = state();
        let r = send_media(
            &mut st,
            "1:x",
            MediaKind::VideoNote,
            &json_params(r#"{"chat_id":5}"#),
        );
        assert_eq!(err(r), "Bad Request: there is no video note in the request");
        let r = send_media(
            &mut st,
            "1:x",
            MediaKind::Photo,
            &json_params(r#"{"chat_id":5,"photo":"AgACnope"}"#),
        );
        assert_eq!(err(r), format!("Bad Request: {WRONG_FILE}"));
        let r = send_media(
            &mut st,
            "1:x",
            MediaKind::Photo,
            &json_params(r#"{"chat_id":5,"photo":"attach://missing"}"#),
        );
        assert_eq!(err(r), "Bad Request: there is no photo in the request");
        let long = "я".repeat(1025);
        let r = send_media(
            &mut st,
            "1:x",
            MediaKind::Photo,
            &json_params(&format!(
                r#"{{"chat_id":5,"photo":"https://e.x/a.jpg","caption":"{long}"}}"#
            )),
        );
        assert_eq!(err(r), "Bad Request: message caption is too long");
        let r = get_file(&mut st, &json_params(r#"{"file_id":"nope"}"#));
        assert_eq!(err(r), "Bad Request: invalid file_id");
        assert!(st.bots["1:x"].sent.is_empty());
    }

    #[test]
    fn url_media_is_stored_without_bytes() {
        let mut st = state();
        let ok = send_media(
            &mut st,
            "1:x",
            MediaKind::Document,
            &json_params(r#"{"chat_id":5,"document":"HTTPS://e.x/r.pdf","caption":" hi "}"#),
        )
        .expect("sent");
        let msg: Value = serde_json::from_str(&ok.result).expect("json");
        assert_eq!(msg["caption"], "hi");
        assert_eq!(msg["document"]["file_name"], "r.pdf");
        assert_eq!(msg["document"]["mime_type"], "application/pdf");
        let sent = &st.bots["1:x"].sent[0];
        let file = sent.media.as_ref().expect("media");
        assert_eq!(file.url.as_deref(), Some("HTTPS://e.x/r.pdf"));
        assert!(file.bytes.is_empty());
        assert_eq!(sent.text, "hi");
    }
}
