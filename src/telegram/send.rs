//! Sending a text message the way Telegram wants it: split at 4096 UTF-16
//! units (never inside a character), waited out on 429, followed to the new
//! id when a group became a supergroup.

use std::time::Duration;

use teloxide::payloads::SendMessageSetters;
use teloxide::requests::Requester;
use teloxide::types::{ChatId, InlineKeyboardMarkup, LinkPreviewOptions};

use super::{BotHandle, ErrorClass, classify, errors::describe};
use crate::config::faq::{MESSAGE_LIMIT, telegram_len};

/// How many times one part is tried before giving up.
const ATTEMPTS: u32 = 4;
/// A `retry_after` longer than this is not waited out inside a handler.
const LONGEST_RETRY_WAIT: Duration = Duration::from_secs(60);

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
#[error("{class}: {text}")]
pub struct SendError {
    pub class: ErrorClass,
    /// Telegram's description, with no token in it.
    pub text: String,
}

/// What a successful send did.
#[derive(Debug, PartialEq, Eq)]
pub struct Sent {
    /// Where the message went: the chat asked for, or the supergroup it
    /// migrated to (callers that store chat ids should update them).
    pub chat: ChatId,
    /// How many messages it took.
    pub parts: usize,
}

/// Sends `text` to `chat`, split into as many messages as Telegram's limit
/// needs; `keyboard` goes on the last one. Link previews are off.
///
/// # Errors
/// The first part that could not be sent; parts before it were sent.
pub async fn send_text(
    bot: &BotHandle,
    chat: ChatId,
    text: &str,
    keyboard: Option<InlineKeyboardMarkup>,
) -> Result<Sent, SendError> {
    send(bot, chat, text, keyboard, true).await
}

/// Like [`send_text`], but a 429 is returned at once rather than waited
/// out, for a caller that paces many chats and must pause them all.
///
/// # Errors
/// As [`send_text`], and [`ErrorClass::RateLimited`] on a 429.
pub async fn send_text_paced(bot: &BotHandle, chat: ChatId, text: &str) -> Result<Sent, SendError> {
    send(bot, chat, text, None, false).await
}

async fn send(
    bot: &BotHandle,
    chat: ChatId,
    text: &str,
    keyboard: Option<InlineKeyboardMarkup>,
    wait_out_429: bool,
) -> Result<Sent, SendError> {
    let parts = split_message(text, MESSAGE_LIMIT);
    let count = parts.len();
    let mut chat = chat;
    for (i, part) in parts.into_iter().enumerate() {
        let markup = if i + 1 == count {
            keyboard.clone()
        } else {
            None
        };
        chat = send_part(bot, chat, part, markup, wait_out_429).await?;
    }
    Ok(Sent { chat, parts: count })
}

async fn send_part(
    bot: &BotHandle,
    mut chat: ChatId,
    text: String,
    keyboard: Option<InlineKeyboardMarkup>,
    wait_out_429: bool,
) -> Result<ChatId, SendError> {
    let mut last = None;
    for _ in 0..ATTEMPTS {
        let mut request = bot
            .api()
            .send_message(chat, text.clone())
            .link_preview_options(LinkPreviewOptions {
                is_disabled: true,
                url: None,
                prefer_small_media: false,
                prefer_large_media: false,
                show_above_text: false,
            });
        if let Some(keyboard) = &keyboard {
            request = request.reply_markup(keyboard.clone());
        }
        match request.await {
            Ok(_) => {
                bot.count_sent(1);
                return Ok(chat);
            }
            Err(err) => {
                let class = classify(&err);
                match class {
                    ErrorClass::RateLimited(wait) if wait_out_429 && wait <= LONGEST_RETRY_WAIT => {
                        tokio::time::sleep(wait).await;
                    }
                    ErrorClass::Migrated(new_chat) if new_chat != chat => chat = new_chat,
                    class => {
                        return Err(SendError {
                            class,
                            text: describe(&err),
                        });
                    }
                }
                last = Some(err);
            }
        }
    }
    let text = last.as_ref().map(describe).unwrap_or_default();
    let class = last.as_ref().map_or(ErrorClass::Transient, classify);
    Err(SendError { class, text })
}

/// Splits `text` into parts of at most `limit` UTF-16 units: at line breaks
/// where it can, inside a line only when one line is longer than the limit,
/// and never inside a character.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    if telegram_len(text) <= limit {
        return vec![text.to_owned()];
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    for line in text.split_inclusive('\n') {
        let line_len = telegram_len(line);
        if current_len + line_len <= limit {
            current.push_str(line);
            current_len += line_len;
            continue;
        }
        if !current.is_empty() {
            parts.push(std::mem::take(&mut current));
            current_len = 0;
        }
        if line_len <= limit {
            current.push_str(line);
            current_len = line_len;
            continue;
        }
        for ch in line.chars() {
            let ch_len = ch.len_utf16();
            if current_len + ch_len > limit {
                parts.push(std::mem::take(&mut current));
                current_len = 0;
            }
            current.push(ch);
            current_len += ch_len;
        }
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
        .into_iter()
        .map(|p| p.trim_start_matches(['\n', '\r']).trim_end().to_owned())
        .filter(|p| !p.trim().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_lines_then_characters_never_inside_one() {
        let cases: &[(&str, usize, &[&str])] = &[
            ("short", 10, &["short"]),
            ("one\ntwo\nthree", 8, &["one\ntwo", "three"]),
            ("abcdefghij", 4, &["abcd", "efgh", "ij"]),
            // ğ is one UTF-16 unit; 😀 is two, and is never cut in half.
            ("ğğğğğ", 2, &["ğğ", "ğğ", "ğ"]),
            ("a😀b😀", 2, &["a", "😀", "b", "😀"]),
            ("line one\n\nline two", 9, &["line one", "line two"]),
        ];
        for (text, limit, expected) in cases {
            let parts = split_message(text, *limit);
            assert_eq!(parts, *expected, "text {text:?} limit {limit}");
            assert!(parts.iter().all(|p| telegram_len(p) <= *limit));
        }
    }

    #[test]
    fn a_long_answer_fits_telegram_in_whole_characters() {
        let text = "Bölüm hakkında bilgi 😀\n".repeat(400);
        let parts = split_message(&text, MESSAGE_LIMIT);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| telegram_len(p) <= MESSAGE_LIMIT));
        assert_eq!(parts.concat().replace('\n', ""), text.replace('\n', ""));
    }
}
