//! The `faq` kind's content: every text the bot sends, from its
//! `[bot.<name>.content]` table or from the file `content_file` names.
//!
//! Validated like the rest of the config, with positions in whichever file
//! the content came from, against Telegram's limits: command names 1–32 of
//! `[a-z0-9_]`, descriptions 1–256 characters, every message at most 4096
//! (an answer counted with the closing question appended), at most 99
//! commands (the menu holds 100 and `/help` takes one). Lengths are counted
//! in UTF-16 units, as Telegram counts them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::raw::Checker;

pub use crate::telegram::text::{DESCRIPTION_LIMIT, MESSAGE_LIMIT, telegram_len};
/// Content commands at most: the menu holds 100 and `/help` takes one.
pub const MAX_COMMANDS: usize = 99;
/// Commands the bot answers itself, which content may not redefine
/// (`durum` is botvisor's own, for operators).
pub const BUILT_IN: &[&str] = &["start", "help", "durum"];
/// The placeholder replaced by `contact` in every text.
pub const CONTACT_PLACEHOLDER: &str = "{contact}";

static COMMAND_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9_]{1,32}$").expect("the command pattern is valid"));

/// Everything a FAQ bot says.
#[derive(Clone, Debug, PartialEq)]
pub struct FaqContent {
    /// The answer to `/start`.
    pub greeting: String,
    /// The first part of the `/help` answer, before the command list.
    pub help_header: String,
    /// The `/help` entry's description in Telegram's command menu.
    pub help_description: String,
    /// Appended to every answer, above the Yes / No buttons.
    pub closing_question: String,
    pub yes_label: String,
    pub no_label: String,
    /// The answer to the No button.
    pub goodbye: String,
    /// The answer to an unknown command in a private chat.
    pub unknown_command: String,
    pub commands: Vec<FaqCommand>,
}

/// One answer command.
#[derive(Clone, Debug, PartialEq)]
pub struct FaqCommand {
    /// Without the slash: `erasmus`.
    pub name: String,
    /// One line, for `/help` and the command menu.
    pub description: String,
    pub answer: String,
}

impl FaqContent {
    /// The command called `name`, if the content has one.
    pub fn command(&self, name: &str) -> Option<&FaqCommand> {
        self.commands.iter().find(|c| c.name == name)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawContent {
    greeting: Spanned<String>,
    help_header: Spanned<String>,
    #[serde(default)]
    help_description: Option<Spanned<String>>,
    closing_question: Spanned<String>,
    yes_label: Spanned<String>,
    no_label: Spanned<String>,
    goodbye: Spanned<String>,
    unknown_command: Spanned<String>,
    #[serde(default)]
    contact: Option<Spanned<String>>,
    #[serde(default, rename = "command")]
    commands: Vec<RawCommand>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    name: Spanned<String>,
    description: Spanned<String>,
    answer: Spanned<String>,
}

/// Reads and validates a content file, reporting its problems (with the
/// file's own positions) into `check`.
pub(super) fn load_file(
    check: &mut Checker<'_>,
    key: &str,
    value: &Spanned<String>,
    config_path: &Path,
) -> Option<FaqContent> {
    let path: PathBuf = super::raw::resolve(config_path, value.get_ref());
    let text = match super::read_text(&path) {
        Ok(text) => text,
        // A file that cannot be opened is reported where the config names it.
        Err(super::ReadError::Io(err)) => {
            check.report(
                value.span(),
                key,
                format!("cannot read the content file {}: {err}", path.display()),
            );
            return None;
        }
        // A file that is too large or not UTF-8 is reported in that file.
        Err(err) => {
            check.problems.push(err.problem(Some(path)));
            return None;
        }
    };
    let mut file_check = Checker::new(&text, Some(path.clone()));
    file_check.scan_for_tokens();
    let content = match DeTable::parse(&text) {
        Ok(root) => {
            let span = root.span();
            file_check
                .table::<RawContent>("", span, root.into_inner())
                .and_then(|raw| validate(&mut file_check, "", &raw))
        }
        Err(err) => {
            file_check.syntax_error(&err);
            None
        }
    };
    let failed = !file_check.problems.is_empty();
    check.absorb(file_check);
    if failed { None } else { content }
}

/// Deserializes an inline `[bot.<name>.content]` table.
pub(super) fn inline(
    check: &mut Checker<'_>,
    key: &str,
    value: Spanned<DeValue<'_>>,
) -> Option<FaqContent> {
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        check.report(
            span,
            key,
            "must be a table: write `[bot.<name>.content]`, or name a file with `content_file`",
        );
        return None;
    };
    let raw = check.table::<RawContent>(key, span, table)?;
    validate(check, key, &raw)
}

/// Checks the content against Telegram's limits; `prefix` is the dotted key
/// of the content table (empty for a content file).
fn validate(check: &mut Checker<'_>, prefix: &str, raw: &RawContent) -> Option<FaqContent> {
    let before = check.problems.len();
    let key = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        }
    };
    let contact = raw.contact.as_ref().map(|c| c.get_ref().trim().to_owned());
    if let Some(c) = &raw.contact
        && c.get_ref().trim().is_empty()
    {
        check.report(c.span(), &key("contact"), "must not be empty");
    }
    let text =
        |check: &mut Checker<'_>, name: &str, value: &Spanned<String>, limit: usize| -> String {
            let expanded = expand(value.get_ref(), contact.as_deref());
            if expanded.contains(CONTACT_PLACEHOLDER) {
                check.report(
                    value.span(),
                    &key(name),
                    "uses {contact} but the content sets no `contact`",
                );
            }
            let trimmed = expanded.trim().to_owned();
            let len = telegram_len(&trimmed);
            if len == 0 {
                check.report(value.span(), &key(name), "must not be empty");
            } else if len > limit {
                check.report(
                    value.span(),
                    &key(name),
                    format!("is {len} characters long; the limit is {limit}"),
                );
            }
            trimmed
        };
    let greeting = text(check, "greeting", &raw.greeting, MESSAGE_LIMIT);
    let help_header = text(check, "help_header", &raw.help_header, MESSAGE_LIMIT);
    let help_description = match &raw.help_description {
        Some(d) => text(check, "help_description", d, DESCRIPTION_LIMIT),
        None => "Komutların listesi".to_owned(),
    };
    let closing_question = text(
        check,
        "closing_question",
        &raw.closing_question,
        MESSAGE_LIMIT,
    );
    let yes_label = text(check, "yes_label", &raw.yes_label, 64);
    let no_label = text(check, "no_label", &raw.no_label, 64);
    let goodbye = text(check, "goodbye", &raw.goodbye, MESSAGE_LIMIT);
    let unknown_command = text(
        check,
        "unknown_command",
        &raw.unknown_command,
        MESSAGE_LIMIT,
    );

    if raw.commands.len() > MAX_COMMANDS {
        check.report(
            raw.commands[MAX_COMMANDS].name.span(),
            &key("command"),
            format!(
                "{} commands; at most {MAX_COMMANDS} (Telegram's menu holds 100 and /help takes one)",
                raw.commands.len()
            ),
        );
    }
    // Each name with the index and position of its first definition.
    let mut seen: HashMap<String, (usize, super::Location)> = HashMap::new();
    let mut commands = Vec::new();
    for (i, command) in raw.commands.iter().enumerate() {
        let at = |field: &str| key(&format!("command[{i}].{field}"));
        let name = command
            .name
            .get_ref()
            .trim()
            .trim_start_matches('/')
            .to_owned();
        if !COMMAND_NAME.is_match(&name) {
            check.report(
                command.name.span(),
                &at("name"),
                format!("`{name}` is not a command name: use 1 to 32 of a-z, 0-9 and _"),
            );
        } else if BUILT_IN.contains(&name.as_str()) {
            check.report(
                command.name.span(),
                &at("name"),
                if name == "durum" {
                    "/durum is botvisor's status command for operators; choose another name"
                        .to_owned()
                } else {
                    format!("/{name} is built in; its text comes from `greeting` or `help_header`")
                },
            );
        } else if let Some((first, first_at)) = seen.get(&name) {
            let message = format!(
                "/{name} is defined twice; the first definition is {} at line {}",
                key(&format!("command[{first}]")),
                first_at.line
            );
            check.report(command.name.span(), &at("name"), message);
        } else {
            seen.insert(name.clone(), (i, check.at(command.name.span())));
        }
        let description = text(
            check,
            &format!("command[{i}].description"),
            &command.description,
            DESCRIPTION_LIMIT,
        );
        let answer = text(
            check,
            &format!("command[{i}].answer"),
            &command.answer,
            MESSAGE_LIMIT,
        );
        let full = telegram_len(&answer) + 2 + telegram_len(&closing_question);
        if !answer.is_empty() && full > MESSAGE_LIMIT {
            check.report(
                command.answer.span(),
                &at("answer"),
                format!(
                    "is {full} characters long with the closing question appended; the limit is {MESSAGE_LIMIT}"
                ),
            );
        }
        commands.push(FaqCommand {
            name,
            description,
            answer,
        });
    }
    (check.problems.len() == before).then_some(FaqContent {
        greeting,
        help_header,
        help_description,
        closing_question,
        yes_label,
        no_label,
        goodbye,
        unknown_command,
        commands,
    })
}

/// `text` with `{contact}` replaced, when a contact is set.
fn expand(text: &str, contact: Option<&str>) -> String {
    match contact {
        Some(contact) => text.replace(CONTACT_PLACEHOLDER, contact),
        None => text.to_owned(),
    }
}
