//! The bot kinds: what a bot does with the updates its worker receives.
//!
//! A kind is code, chosen by `kind` in the config. Each kind says which
//! update types it wants (sent to Telegram as `allowed_updates`), may do
//! something once at start (register its commands), and handles one update
//! at a time. Kinds never poll and never see a token: they get a
//! [`Context`] holding the bot's handle.

pub mod announcements;
pub mod echo;
pub mod faq;
pub mod operator;
pub mod process;

use teloxide::types::{AllowedUpdate, Update};

use crate::config::KindSettings;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::outbox::{ChatEvent, OutMessage, Sink};
use crate::status::{StatusBoard, StatusSender};
use crate::store::BotStore;
use crate::telegram::BotHandle;

/// What a handler knows about the bot it runs for.
#[derive(Debug)]
pub struct Context {
    pub bot: BotHandle,
    /// The bot's username from `getMe`, without `@` (for `/cmd@name`).
    pub username: String,
    /// The bot's Telegram id, its key in the store.
    pub bot_id: String,
    /// The bot's store, fenced by the session's lease.
    pub store: BotStore,
    /// The bot's status, for the kind to raise and clear its incidents.
    pub status: StatusSender,
    /// Every bot's status, and who may ask for it with `/durum`.
    pub board: StatusBoard,
    /// The session's outbox, for messages not in reply to an update.
    pub outbox: Sink,
}

/// A command as a user typed it: `/help@SomeBot extra words`.
#[derive(Debug, PartialEq, Eq)]
pub struct Command<'a> {
    /// The command without `/` or `@bot`.
    pub name: &'a str,
    /// The bot it is addressed to, without `@`.
    pub addressee: Option<&'a str>,
}

/// Reads the command at the start of a message's text, if there is one.
pub fn parse_command(text: &str) -> Option<Command<'_>> {
    let rest = text.strip_prefix('/')?;
    let word = rest.split_whitespace().next()?;
    let (name, addressee) = match word.split_once('@') {
        Some((name, bot)) => (name, Some(bot)),
        None => (word, None),
    };
    if name.is_empty() {
        return None;
    }
    Some(Command { name, addressee })
}

impl Context {
    /// The command in `text`, unless it is addressed to another bot.
    pub fn command<'a>(&self, text: &'a str) -> Option<Command<'a>> {
        let command = parse_command(text)?;
        match command.addressee {
            Some(addressee) if !addressee.eq_ignore_ascii_case(&self.username) => None,
            _ => Some(command),
        }
    }
}

/// Why a kind could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// A configured bot kind, ready to handle updates.
pub enum Kind {
    Faq(faq::Faq),
    Announcements(Box<announcements::Announcements>),
    Echo(echo::Echo),
    /// A program of its own, run as a child; its updates go to the gateway,
    /// not to handlers here.
    Process(process::Process),
}

impl Kind {
    /// Builds the kind from its settings in the config.
    pub fn new(settings: &KindSettings) -> Kind {
        match settings {
            KindSettings::Faq(s) => Kind::Faq(faq::Faq::new(s)),
            KindSettings::Announcements(s) => {
                Kind::Announcements(Box::new(announcements::Announcements::new(s)))
            }
            KindSettings::Echo(s) => Kind::Echo(echo::Echo::new(s)),
            KindSettings::Process(s) => Kind::Process(process::Process::new(s)),
        }
    }

    /// The update types this kind handles.
    pub fn allowed_updates(&self) -> Vec<AllowedUpdate> {
        match self {
            Kind::Faq(_) => faq::ALLOWED_UPDATES.to_vec(),
            Kind::Announcements(_) => announcements::ALLOWED_UPDATES.to_vec(),
            Kind::Echo(_) => echo::ALLOWED_UPDATES.to_vec(),
            // The program says in its own getUpdates.
            Kind::Process(_) => Vec::new(),
        }
    }

    /// Runs once each time the worker (re)connects, before polling.
    ///
    /// # Errors
    /// When the kind cannot work; the worker is then restarted with backoff.
    pub async fn start(&self, ctx: &Context) -> Result<(), StartError> {
        match self {
            Kind::Faq(k) => k.start(ctx).await,
            Kind::Announcements(_) | Kind::Echo(_) | Kind::Process(_) => Ok(()),
        }
    }

    /// Work the kind does besides answering updates (the relay's periodic
    /// check), run while the worker polls and stopped through `stop`.
    pub fn background(
        self: &Arc<Self>,
        ctx: Arc<Context>,
        stop: CancellationToken,
    ) -> Option<impl Future<Output = ()> + Send + 'static> {
        match &**self {
            Kind::Announcements(_) => {
                let kind = self.clone();
                Some(async move {
                    if let Kind::Announcements(relay) = &*kind {
                        relay.run(&ctx, &stop).await;
                    }
                })
            }
            Kind::Faq(_) | Kind::Echo(_) | Kind::Process(_) => None,
        }
    }

    /// Handles one update; the messages to send.
    pub async fn handle(&self, ctx: &Context, update: &Update) -> Vec<OutMessage> {
        // `/durum` belongs to botvisor, whatever the kind.
        if let Some(replies) = operator::handle(ctx, update) {
            return replies;
        }
        match self {
            Kind::Faq(k) => k.handle(ctx, update).await,
            Kind::Announcements(k) => k.handle(ctx, update).await,
            Kind::Echo(k) => k.handle(update).await,
            Kind::Process(_) => Vec::new(),
        }
    }

    /// Stops a process bot's program, if one runs (SIGTERM, then SIGKILL
    /// after `grace`); nothing for the other kinds.
    pub async fn stop_program(&self, grace: std::time::Duration) {
        if let Kind::Process(process) = self {
            process.stop(grace).await;
        }
    }

    /// What the outbox learned about a chat (it refuses the bot, it moved).
    pub async fn chat_event(&self, ctx: &Context, event: ChatEvent) {
        if let Kind::Announcements(relay) = self {
            relay.chat_event(ctx, event).await;
        }
    }
}
