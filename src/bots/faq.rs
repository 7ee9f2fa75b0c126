//! The `faq` kind: the Tanıtım bot. Every text it sends comes from the
//! operator's content ([`FaqContent`]); this file only decides which text
//! answers which command or button.
//!
//! The decision is a pure function ([`Faq::reply_to_command`],
//! [`Faq::reply_to_button`]) returning [`Reply`] values, shared by the
//! handler and by `botvisor faq-preview`, so a preview shows exactly what
//! the bot would send.

use std::sync::Arc;

use teloxide::payloads::AnswerCallbackQuerySetters;
use teloxide::requests::Requester;
use teloxide::types::{AllowedUpdate, BotCommand, Update, UpdateKind};
use tracing::{debug, warn};

use super::{Context, StartError};
use crate::config::FaqSettings;
use crate::config::faq::FaqContent;
use crate::outbox::{Keyboard, OutMessage};
use crate::telegram::{self, text};

/// The update types this kind handles.
pub const ALLOWED_UPDATES: &[AllowedUpdate] =
    &[AllowedUpdate::Message, AllowedUpdate::CallbackQuery];

/// Callback data of the two buttons under every answer (well under
/// Telegram's 64 bytes).
pub const YES: &str = "faq:yes";
pub const NO: &str = "faq:no";

/// One message the bot would send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    /// Inline buttons as (label, callback data), in one row.
    pub buttons: Vec<(String, String)>,
}

impl Reply {
    fn text(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            buttons: Vec::new(),
        }
    }

    /// The message to `chat`, the buttons in one row.
    fn to(&self, chat: i64) -> OutMessage {
        OutMessage::with_keyboard(
            chat,
            self.text.clone(),
            Keyboard(vec![self.buttons.clone()]),
        )
    }
}

/// A `faq` bot.
pub struct Faq {
    content: Arc<FaqContent>,
}

impl Faq {
    pub fn new(settings: &FaqSettings) -> Faq {
        Faq {
            content: Arc::new(settings.content.clone()),
        }
    }

    /// The content this bot answers with.
    pub fn content(&self) -> &FaqContent {
        &self.content
    }

    /// The `/help` text: the header and every command with its description.
    pub fn help_text(&self) -> String {
        let mut text = self.content.help_header.clone();
        text.push_str("\n\n");
        for command in &self.content.commands {
            text.push_str(&format!("/{} - {}\n", command.name, command.description));
        }
        text.trim_end().to_owned()
    }

    /// What the bot answers to command `name` (without `/`), in a private
    /// chat or in a group.
    pub fn reply_to_command(&self, name: &str, private: bool) -> Vec<Reply> {
        let name = name.to_ascii_lowercase();
        match name.as_str() {
            "start" => vec![Reply::text(self.content.greeting.clone())],
            "help" => vec![Reply::text(self.help_text())],
            _ => match self.content.command(&name) {
                Some(command) => vec![Reply {
                    text: format!("{}\n\n{}", command.answer, self.content.closing_question),
                    buttons: vec![
                        (self.content.yes_label.clone(), YES.to_owned()),
                        (self.content.no_label.clone(), NO.to_owned()),
                    ],
                }],
                // In a group, silence: the command may be another bot's.
                None if private => vec![Reply::text(self.content.unknown_command.clone())],
                None => Vec::new(),
            },
        }
    }

    /// What the bot answers to a button; `None` for data it does not know
    /// (a stale keyboard), which is still acknowledged.
    pub fn reply_to_button(&self, data: &str) -> Option<Vec<Reply>> {
        match data {
            YES => Some(vec![Reply::text(self.help_text())]),
            NO => Some(vec![Reply::text(self.content.goodbye.clone())]),
            _ => None,
        }
    }

    /// What `botvisor faq-preview` prints: the replies to `command` (with
    /// or without `/`), or to `/start`, `/help`, every command and both
    /// buttons when `command` is `None`.
    pub fn preview(&self, command: Option<&str>) -> String {
        let mut out = String::new();
        let mut show = |title: String, replies: &[Reply]| {
            out.push_str(&format!("── {title} ──\n"));
            if replies.is_empty() {
                out.push_str("(no answer)\n");
            }
            for reply in replies {
                for (i, part) in text::split_message(&reply.text, text::MESSAGE_LIMIT)
                    .iter()
                    .enumerate()
                {
                    if i > 0 {
                        out.push_str("· · · (next message)\n");
                    }
                    out.push_str(part);
                    out.push('\n');
                }
                if !reply.buttons.is_empty() {
                    let labels: Vec<String> = reply
                        .buttons
                        .iter()
                        .map(|(label, _)| format!("[ {label} ]"))
                        .collect();
                    out.push_str(&labels.join(" "));
                    out.push('\n');
                }
            }
            out.push('\n');
        };
        match command {
            Some(command) => {
                let name = command.trim().trim_start_matches('/');
                let private = self.reply_to_command(name, true);
                let group = self.reply_to_command(name, false);
                if private == group {
                    show(format!("/{name}"), &private);
                } else {
                    show(format!("/{name} in a private chat"), &private);
                    show(format!("/{name} in a group"), &group);
                }
            }
            None => {
                show("/start".to_owned(), &self.reply_to_command("start", true));
                show("/help".to_owned(), &self.reply_to_command("help", true));
                for c in &self.content.commands {
                    show(
                        format!("/{}", c.name),
                        &self.reply_to_command(&c.name, true),
                    );
                }
                let yes = self.reply_to_button(YES).unwrap_or_default();
                show(format!("button \"{}\"", self.content.yes_label), &yes);
                let no = self.reply_to_button(NO).unwrap_or_default();
                show(format!("button \"{}\"", self.content.no_label), &no);
                show(
                    "an unknown command in a private chat".to_owned(),
                    &self.reply_to_command("no_such_command", true),
                );
            }
        }
        out.trim_end().to_owned()
    }

    /// Registers the command menu: `/help`, then every content command.
    ///
    /// # Errors
    /// When Telegram refuses the list.
    pub async fn start(&self, ctx: &Context) -> Result<(), StartError> {
        let mut commands = vec![BotCommand::new(
            "help",
            self.content.help_description.clone(),
        )];
        commands.extend(
            self.content
                .commands
                .iter()
                .map(|c| BotCommand::new(c.name.clone(), c.description.clone())),
        );
        ctx.bot
            .api()
            .set_my_commands(commands)
            .await
            .map_err(|err| {
                StartError(format!(
                    "setMyCommands failed: {}",
                    telegram::errors::describe(&err)
                ))
            })?;
        Ok(())
    }

    /// Answers one update: the messages to send.
    pub async fn handle(&self, ctx: &Context, update: &Update) -> Vec<OutMessage> {
        match &update.kind {
            UpdateKind::Message(message) => {
                let Some(command) = message.text().and_then(|text| ctx.command(text)) else {
                    return Vec::new();
                };
                let replies = self.reply_to_command(command.name, message.chat.is_private());
                replies.iter().map(|r| r.to(message.chat.id.0)).collect()
            }
            UpdateKind::CallbackQuery(query) => {
                // Answer first, whatever the data, so the button never spins.
                let answer = ctx
                    .bot
                    .api()
                    .answer_callback_query(query.id.clone())
                    .cache_time(0);
                match tokio::time::timeout(telegram::send::SEND_TIMEOUT, answer).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(err)) => {
                        warn!(update_id = update.id.0, error = %telegram::errors::describe(&err), "could not answer a button press");
                    }
                    Err(_) => {
                        warn!(
                            update_id = update.id.0,
                            "could not answer a button press in time"
                        );
                    }
                }
                let replies = query
                    .data
                    .as_deref()
                    .and_then(|data| self.reply_to_button(data));
                let chat = query.message.as_ref().map(|m| m.chat().id);
                match (replies, chat) {
                    (Some(replies), Some(chat)) => replies.iter().map(|r| r.to(chat.0)).collect(),
                    _ => {
                        debug!(
                            update_id = update.id.0,
                            "a stale or unknown button; acknowledged only"
                        );
                        Vec::new()
                    }
                }
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::parse_command;

    #[test]
    fn parses_commands_as_users_type_them() {
        type Parsed<'a> = Option<(&'a str, Option<&'a str>)>;
        let cases: &[(&str, Parsed)] = &[
            ("/help", Some(("help", None))),
            ("/help@Tanitim_Bot", Some(("help", Some("Tanitim_Bot")))),
            ("/erasmus lütfen", Some(("erasmus", None))),
            ("/", None),
            ("/@bot", None),
            ("merhaba /help", None),
            ("", None),
        ];
        for (text, expected) in cases {
            let got = parse_command(text).map(|c| (c.name, c.addressee));
            assert_eq!(got, *expected, "text {text:?}");
        }
    }
}
