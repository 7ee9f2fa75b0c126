//! The sandbox's terminal chat as pure functions: what a typed line asks
//! for, which buttons a message carries, and how a bot's message, the
//! prompt and the command list are shown. Nothing here does I/O or talks to
//! the fake, so all of it is tested as tables.

use fake_telegram::MemberStatus;
use serde_json::Value;

/// The group `:chat group` picks when no id is given.
pub const DEFAULT_GROUP: i64 = -4_012_345_678;

/// Supergroup (and channel) ids are `-100` followed by ten or more digits.
const SUPERGROUP_ID_LIMIT: i64 = -1_000_000_000_000;

/// The commands, as `:help` and the banner list them.
pub const HELP: &str =
    "  TEXT               send TEXT to the current bot as the current user (e.g. /help);
                     start it with :: to send a text that starts with :
  :bot NAME          talk to another bot
  :bots              list the bots and their state
  :chat private      the current user's private chat with the bot
  :chat group [ID]   a group chat (default -4012345678; a negative id)
  :user ID           act as another user (a positive id)
  :status STATUS     the user's status in the current chat: member, administrator or creator
  :press N|LABEL     press a button of the bot's latest message with buttons in this chat
  :help              this list
  :quit              stop the bots and exit (Ctrl-D and Ctrl-C too)";

/// What one typed line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    /// An empty line.
    Nothing,
    /// A message for the current bot.
    Text(String),
    Bot(String),
    Bots,
    Chat(ChatChoice),
    User(u64),
    Status(MemberStatus),
    Press(ButtonRef),
    Help,
    Quit,
}

/// The chat the user writes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatChoice {
    /// The current user's private chat with the bot.
    Private,
    /// A group (or, for a `-100…` id, a supergroup) with this id.
    Group(i64),
}

impl ChatChoice {
    /// The chat as the fake Telegram takes it, for `user_id`'s messages.
    pub fn chat(self, user: &fake_telegram::User) -> fake_telegram::Chat {
        match self {
            ChatChoice::Private => fake_telegram::Chat::private(user),
            // Built field by field: the fake's constructors assert on the
            // id, and `parse` has checked it already.
            ChatChoice::Group(id) => fake_telegram::Chat {
                id,
                kind: if id <= SUPERGROUP_ID_LIMIT {
                    fake_telegram::ChatKind::Supergroup
                } else {
                    fake_telegram::ChatKind::Group
                },
                title: Some("Sandbox group".to_owned()),
                username: None,
                first_name: None,
                last_name: None,
            },
        }
    }
}

/// A button named by its number (1-based) or its label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ButtonRef {
    Number(usize),
    Label(String),
}

/// Reads one typed line.
///
/// # Errors
/// A one-line message saying what is wrong with the line.
pub fn parse(line: &str) -> Result<Input, String> {
    let line = line.trim();
    if line.is_empty() {
        return Ok(Input::Nothing);
    }
    if let Some(text) = line.strip_prefix("::") {
        return Ok(Input::Text(format!(":{text}")));
    }
    let Some(command) = line.strip_prefix(':') else {
        return Ok(Input::Text(line.to_owned()));
    };
    let mut words = command.split_whitespace();
    let name = words.next().unwrap_or("").to_ascii_lowercase();
    let args: Vec<&str> = words.collect();
    let no_args = |input: Input| {
        if args.is_empty() {
            Ok(input)
        } else {
            Err(format!(":{name} takes no argument"))
        }
    };
    match name.as_str() {
        "quit" | "q" | "exit" => no_args(Input::Quit),
        "help" | "h" | "?" => no_args(Input::Help),
        "bots" => no_args(Input::Bots),
        "bot" => match args.as_slice() {
            [bot] => Ok(Input::Bot((*bot).to_owned())),
            _ => Err("usage: :bot NAME (:bots lists them)".to_owned()),
        },
        "chat" => match args.as_slice() {
            ["private"] => Ok(Input::Chat(ChatChoice::Private)),
            ["group"] => Ok(Input::Chat(ChatChoice::Group(DEFAULT_GROUP))),
            ["group", id] => match id.parse::<i64>() {
                Ok(id) if id < 0 => Ok(Input::Chat(ChatChoice::Group(id))),
                _ => Err(format!(
                    "a group's id is a negative number (e.g. {DEFAULT_GROUP}), not `{id}`"
                )),
            },
            _ => Err("usage: :chat private, or :chat group [ID]".to_owned()),
        },
        "user" => match args.as_slice() {
            [id] => match id.parse::<i64>() {
                Ok(id) if id > 0 => Ok(Input::User(id.unsigned_abs())),
                _ => Err(format!(
                    "a user's id is a positive number (e.g. 1002), not `{id}`"
                )),
            },
            _ => Err("usage: :user ID".to_owned()),
        },
        "status" => match args.as_slice() {
            [status] => member_status(status).map(Input::Status).ok_or_else(|| {
                format!("unknown status `{status}`; use member, administrator or creator")
            }),
            _ => Err("usage: :status member|administrator|creator".to_owned()),
        },
        "press" => {
            let which = args.join(" ");
            match which.parse::<usize>() {
                _ if which.is_empty() => {
                    Err("usage: :press N or :press LABEL (e.g. :press 1)".to_owned())
                }
                Ok(0) => Err("buttons are numbered from 1".to_owned()),
                Ok(n) => Ok(Input::Press(ButtonRef::Number(n))),
                Err(_) => Ok(Input::Press(ButtonRef::Label(which))),
            }
        }
        "" => Err("a command follows the colon, e.g. :help".to_owned()),
        other => Err(format!(
            "unknown command :{other}; :help lists the commands"
        )),
    }
}

/// The statuses `:status` accepts.
fn member_status(word: &str) -> Option<MemberStatus> {
    match word.to_ascii_lowercase().as_str() {
        "member" => Some(MemberStatus::Member),
        "administrator" | "admin" => Some(MemberStatus::Administrator),
        "creator" | "owner" => Some(MemberStatus::Creator),
        _ => None,
    }
}

/// One inline button of a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    pub label: String,
    pub action: ButtonAction,
}

/// What pressing a button does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ButtonAction {
    /// Sends this callback data to the bot.
    Callback(String),
    /// Opens this link (nothing reaches the bot).
    Url(String),
    /// Something the sandbox does not simulate (a web app, a game, …).
    Other,
}

/// The inline buttons of a `reply_markup`, row by row, left to right.
pub fn buttons(markup: Option<&Value>) -> Vec<Button> {
    // A form-encoded request carries the markup as a JSON string.
    let parsed;
    let markup = match markup {
        Some(Value::String(text)) => {
            parsed = serde_json::from_str::<Value>(text).ok();
            parsed.as_ref()
        }
        other => other,
    };
    let Some(rows) = markup
        .and_then(|m| m.get("inline_keyboard"))
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    rows.iter()
        .filter_map(Value::as_array)
        .flatten()
        .map(|button| {
            let field = |name: &str| button.get(name).and_then(Value::as_str);
            let action = match (field("callback_data"), field("url")) {
                (Some(data), _) => ButtonAction::Callback(data.to_owned()),
                (None, Some(url)) => ButtonAction::Url(url.to_owned()),
                (None, None) => ButtonAction::Other,
            };
            Button {
                label: field("text").unwrap_or("").to_owned(),
                action,
            }
        })
        .collect()
}

/// The button `which` names among `buttons`.
///
/// # Errors
/// A one-line message when there is no such button.
pub fn pick<'a>(buttons: &'a [Button], which: &ButtonRef) -> Result<&'a Button, String> {
    let found = match which {
        ButtonRef::Number(n) => n.checked_sub(1).and_then(|i| buttons.get(i)),
        ButtonRef::Label(label) => buttons.iter().find(|b| b.label == *label).or_else(|| {
            buttons
                .iter()
                .find(|b| b.label.to_lowercase() == label.to_lowercase())
        }),
    };
    found.ok_or_else(|| {
        let which = match which {
            ButtonRef::Number(n) => format!("no button {n}"),
            ButtonRef::Label(label) => format!("no button `{label}`"),
        };
        format!("{which}; the buttons are: {}", button_row(buttons))
    })
}

/// `[1] Evet  [2] Hayır`.
pub fn button_row(buttons: &[Button]) -> String {
    let labels: Vec<String> = buttons
        .iter()
        .enumerate()
        .map(|(i, button)| match &button.action {
            ButtonAction::Url(url) => format!("[{}] {} ({url})", i + 1, button.label),
            _ => format!("[{}] {}", i + 1, button.label),
        })
        .collect();
    labels.join("  ")
}

/// A bot's message as the chat shows it: `bot: ` before the first line,
/// the other lines indented under it, then the buttons, numbered. A
/// message to another chat than the current one says so.
pub fn render_message(
    bot: &str,
    text: &str,
    buttons: &[Button],
    other_chat: Option<i64>,
) -> String {
    let prefix = match other_chat {
        Some(chat) => format!("{bot} (to chat {chat}): "),
        None => format!("{bot}: "),
    };
    let indent = " ".repeat(prefix.chars().count());
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        if line.is_empty() {
            continue;
        }
        out.push_str(if i == 0 { &prefix } else { &indent });
        out.push_str(line);
    }
    if text.lines().next().is_none() {
        out.push_str(prefix.trim_end());
    }
    if !buttons.is_empty() {
        out.push('\n');
        out.push_str(&indent);
        out.push_str(&button_row(buttons));
    }
    out
}

/// The prompt: who writes to which bot where.
pub fn prompt(bot: &str, chat: ChatChoice, user: u64, status: MemberStatus) -> String {
    match chat {
        ChatChoice::Private => format!("{bot} · private chat · user {user}> "),
        ChatChoice::Group(id) => {
            format!("{bot} · group {id} · user {user} ({})> ", status.as_str())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_typed_lines() {
        let label = |s: &str| Ok(Input::Press(ButtonRef::Label(s.to_owned())));
        let cases: Vec<(&str, Result<Input, &str>)> = vec![
            ("", Ok(Input::Nothing)),
            ("   ", Ok(Input::Nothing)),
            ("/help", Ok(Input::Text("/help".to_owned()))),
            (
                "  merhaba dünya \r",
                Ok(Input::Text("merhaba dünya".to_owned())),
            ),
            ("::-)", Ok(Input::Text(":-)".to_owned()))),
            (":quit", Ok(Input::Quit)),
            (":Q", Ok(Input::Quit)),
            (":quit now", Err(":quit takes no argument")),
            (":help", Ok(Input::Help)),
            (":bots", Ok(Input::Bots)),
            (":bot duyuru", Ok(Input::Bot("duyuru".to_owned()))),
            (":bot", Err("usage: :bot NAME (:bots lists them)")),
            (":chat private", Ok(Input::Chat(ChatChoice::Private))),
            (
                ":chat group",
                Ok(Input::Chat(ChatChoice::Group(DEFAULT_GROUP))),
            ),
            (
                ":chat group -1001234567890",
                Ok(Input::Chat(ChatChoice::Group(-1_001_234_567_890))),
            ),
            (
                ":chat group 5",
                Err("a group's id is a negative number (e.g. -4012345678), not `5`"),
            ),
            (
                ":chat group x",
                Err("a group's id is a negative number (e.g. -4012345678), not `x`"),
            ),
            (
                ":chat channel",
                Err("usage: :chat private, or :chat group [ID]"),
            ),
            (":user 1002", Ok(Input::User(1002))),
            (
                ":user 0",
                Err("a user's id is a positive number (e.g. 1002), not `0`"),
            ),
            (
                ":user -3",
                Err("a user's id is a positive number (e.g. 1002), not `-3`"),
            ),
            (
                ":user 99999999999999999999",
                Err("a user's id is a positive number (e.g. 1002), not `99999999999999999999`"),
            ),
            (
                ":status administrator",
                Ok(Input::Status(MemberStatus::Administrator)),
            ),
            (":status Creator", Ok(Input::Status(MemberStatus::Creator))),
            (":status member", Ok(Input::Status(MemberStatus::Member))),
            (
                ":status boss",
                Err("unknown status `boss`; use member, administrator or creator"),
            ),
            (":press 2", Ok(Input::Press(ButtonRef::Number(2)))),
            (":press Evet", label("Evet")),
            (":press Daha  fazla", label("Daha fazla")),
            (":press 0", Err("buttons are numbered from 1")),
            (
                ":press",
                Err("usage: :press N or :press LABEL (e.g. :press 1)"),
            ),
            (":", Err("a command follows the colon, e.g. :help")),
            (
                ":dance",
                Err("unknown command :dance; :help lists the commands"),
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(
                parse(line),
                expected.map_err(str::to_owned),
                "line {line:?}"
            );
        }
    }

    #[test]
    fn finds_the_buttons_of_a_message() {
        let markup = json!({"inline_keyboard": [
            [{"text": "Evet", "callback_data": "faq:yes"}, {"text": "Hayır", "callback_data": "faq:no"}],
            [{"text": "Web", "url": "https://example.org"}, {"text": "Oyun", "callback_game": {}}],
        ]});
        let found = buttons(Some(&markup));
        let expected = vec![
            Button {
                label: "Evet".into(),
                action: ButtonAction::Callback("faq:yes".into()),
            },
            Button {
                label: "Hayır".into(),
                action: ButtonAction::Callback("faq:no".into()),
            },
            Button {
                label: "Web".into(),
                action: ButtonAction::Url("https://example.org".into()),
            },
            Button {
                label: "Oyun".into(),
                action: ButtonAction::Other,
            },
        ];
        assert_eq!(found, expected);
        let as_string = Value::String(markup.to_string());
        assert_eq!(buttons(Some(&as_string)), expected);
        for nothing in [
            None,
            Some(json!({})),
            Some(json!({"keyboard": [[{"text": "x"}]]})),
            Some(json!("not json")),
        ] {
            assert!(buttons(nothing.as_ref()).is_empty(), "{nothing:?}");
        }

        assert_eq!(
            pick(&found, &ButtonRef::Number(2)).map(|b| &b.label),
            Ok(&"Hayır".to_owned())
        );
        assert_eq!(
            pick(&found, &ButtonRef::Label("evet".into())).map(|b| &b.label),
            Ok(&"Evet".to_owned())
        );
        assert_eq!(
            pick(&found, &ButtonRef::Number(5)),
            Err("no button 5; the buttons are: [1] Evet  [2] Hayır  [3] Web (https://example.org)  [4] Oyun".to_owned())
        );
        assert!(pick(&found, &ButtonRef::Label("Belki".into())).is_err());
    }

    #[test]
    fn shows_messages_prompts_and_buttons() {
        let yes_no = buttons(Some(&json!({"inline_keyboard": [[
            {"text": "Evet", "callback_data": "faq:yes"}, {"text": "Hayır", "callback_data": "faq:no"}
        ]]})));
        let cases: Vec<(&str, &[Button], Option<i64>, &str)> = vec![
            ("Merhaba", &[], None, "tanitim: Merhaba"),
            ("Bir\n\nİki", &[], None, "tanitim: Bir\n\n         İki"),
            (
                "Soru?",
                &yes_no,
                None,
                "tanitim: Soru?\n         [1] Evet  [2] Hayır",
            ),
            ("", &[], None, "tanitim:"),
            ("Açıldı", &[], Some(-5), "tanitim (to chat -5): Açıldı"),
        ];
        for (text, buttons, other, expected) in cases {
            assert_eq!(
                render_message("tanitim", text, buttons, other),
                expected,
                "text {text:?}"
            );
        }
        assert_eq!(
            prompt(
                "duyuru",
                ChatChoice::Group(-7),
                1001,
                MemberStatus::Administrator
            ),
            "duyuru · group -7 · user 1001 (administrator)> "
        );
        assert_eq!(
            prompt("tanitim", ChatChoice::Private, 1001, MemberStatus::Member),
            "tanitim · private chat · user 1001> "
        );
    }

    #[test]
    fn builds_the_chat_the_fake_takes() {
        let user = fake_telegram::User::new(1001, "Ayşe");
        let private = ChatChoice::Private.chat(&user);
        assert_eq!(
            (private.id, private.kind),
            (1001, fake_telegram::ChatKind::Private)
        );
        let group = ChatChoice::Group(-42).chat(&user);
        assert_eq!(
            (group.id, group.kind),
            (-42, fake_telegram::ChatKind::Group)
        );
        let supergroup = ChatChoice::Group(-1_001_234_567_890).chat(&user);
        assert_eq!(supergroup.kind, fake_telegram::ChatKind::Supergroup);
    }
}
