//! The `announcements` kind: the Duyuru relay. It copies the department's
//! web announcements into the Telegram chats that switched it on.
//!
//! This file answers the commands (switching the relay on and off for a
//! chat, listing the chats, help, credits, the web site); `scrape` reads
//! the site; `relay` runs the periodic check and the broadcast. Everything
//! that must survive a restart (subscriptions, announcements seen,
//! deliveries) is in the store.

pub mod relay;
pub mod scrape;

use std::time::Duration;

use regex::Regex;
use scraper::Selector;
use teloxide::requests::Requester;
use teloxide::types::{AllowedUpdate, ChatMemberKind, Message, Update, UpdateKind};
use tracing::{info, warn};

use super::Context;
use crate::config::AnnouncementsSettings;
use crate::outbox::{ChatEvent, OutMessage};
use crate::telegram;

/// The update types this kind handles.
pub const ALLOWED_UPDATES: &[AllowedUpdate] = &[AllowedUpdate::Message];

const ON: &str =
    "Duyurular bu sohbette açıldı. Bölümün web sayfasındaki yeni duyurular buraya gönderilecek.";
const ALREADY_ON: &str = "Duyurular bu sohbette zaten açık.";
const OFF: &str = "Duyurular bu sohbette kapatıldı.";
const WAS_OFF: &str = "Duyurular bu sohbette zaten kapalıydı.";
const ADMINS_ONLY: &str =
    "Bu komutu bu grupta yalnızca grubun kurucusu ve yöneticileri kullanabilir.";
const BOT_ADMINS_ONLY: &str = "Sohbetlerin listesini yalnızca botun yöneticileri görebilir.";
const THIS_CHAT_ON: &str = "Duyurular bu sohbette açık. Diğer sohbetlerin listesini yalnızca botun yöneticileri görebilir.";
const THIS_CHAT_OFF: &str = "Duyurular bu sohbette kapalı. Diğer sohbetlerin listesini yalnızca botun yöneticileri görebilir.";
/// How long a `getChatMember` may take before the user is asked to try later.
const CHAT_MEMBER_TIMEOUT: Duration = Duration::from_secs(10);
const TRY_LATER: &str = "Şu anda bir sorun var; lütfen biraz sonra tekrar deneyin.";

/// An `announcements` bot.
pub struct Announcements {
    settings: AnnouncementsSettings,
    /// Parsed at start (the config checked they parse).
    link_selector: Option<Selector>,
    text_selector: Option<Selector>,
    id_pattern: Option<Regex>,
    /// The HTTP client for the web site (not for Telegram).
    site: Option<reqwest::Client>,
    /// The checks in a row in which an announcement's page failed, by
    /// announcement id: the memory that bounds its retries. Kept for the
    /// worker's life (lost at a restart, which only means a few more tries).
    page_failures: std::sync::Mutex<std::collections::HashMap<String, u32>>,
}

/// What a command asks the relay to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Start,
    Stop,
    List,
    Help,
    About,
    Web,
}

impl Announcements {
    /// Builds the relay from validated settings.
    pub fn new(settings: &AnnouncementsSettings) -> Announcements {
        let site = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| warn!(error = %err, "cannot build the HTTP client for the web site"))
            .ok();
        Announcements {
            link_selector: Selector::parse(&settings.link_selector).ok(),
            text_selector: Selector::parse(&settings.text_selector).ok(),
            id_pattern: settings
                .id_pattern
                .as_deref()
                .and_then(|p| Regex::new(p).ok()),
            settings: settings.clone(),
            site,
            page_failures: std::sync::Mutex::default(),
        }
    }

    /// The failures of announcement pages, by id.
    fn page_failures(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, u32>> {
        self.page_failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The relay's settings.
    pub fn settings(&self) -> &AnnouncementsSettings {
        &self.settings
    }

    fn action(&self, name: &str) -> Option<Action> {
        let c = &self.settings.commands;
        let name = name.to_ascii_lowercase();
        [
            (&c.start, Action::Start),
            (&c.stop, Action::Stop),
            (&c.list, Action::List),
            (&c.help, Action::Help),
            (&c.about, Action::About),
            (&c.web, Action::Web),
        ]
        .into_iter()
        .find(|(command, _)| **command == name)
        .map(|(_, action)| action)
    }

    /// The help text, with the commands as configured.
    pub fn help_text(&self) -> String {
        let c = &self.settings.commands;
        format!(
            "Bu bot, BTÜ Bilgisayar Mühendisliği Bölümü'nün web sayfasındaki duyuruları bu sohbete aktarır.\n\n\
             /{} - Duyuruları bu sohbette aç\n\
             /{} - Duyuruları bu sohbette kapat\n\
             /{} - Duyuruların açık olduğu sohbetleri listele (botun yöneticileri)\n\
             /{} - Bu yardım metni\n\
             /{} - Botu kimler hazırladı?\n\
             /{} - Bölümün web sayfası\n\n\
             Gruplarda duyuruları yalnızca grubun kurucusu ve yöneticileri açıp kapatabilir.",
            c.start, c.stop, c.list, c.help, c.about, c.web
        )
    }

    /// Answers a command: the reply to send.
    pub async fn handle(&self, ctx: &Context, update: &Update) -> Vec<OutMessage> {
        let UpdateKind::Message(message) = &update.kind else {
            return Vec::new();
        };
        let Some(command) = message.text().and_then(|text| ctx.command(text)) else {
            return Vec::new();
        };
        let Some(action) = self.action(command.name) else {
            return Vec::new();
        };
        let reply = match action {
            Action::Start | Action::Stop => match self.may_switch(ctx, message).await {
                Ok(true) => self.switch(ctx, message, action == Action::Start).await,
                Ok(false) => ADMINS_ONLY.to_owned(),
                Err(()) => TRY_LATER.to_owned(),
            },
            Action::List => self.list_chats(ctx, message).await,
            Action::Help => self.help_text(),
            Action::About => self.settings.about.clone(),
            Action::Web => format!("Bölümün web sayfası: {}", self.settings.web_url),
        };
        vec![OutMessage::text(message.chat.id.0, reply)]
    }

    /// A chat refused the relay for good: its subscription goes. A group
    /// that became a supergroup keeps its subscription under the new id.
    pub async fn chat_event(&self, ctx: &Context, event: ChatEvent) {
        match event {
            ChatEvent::Refused { chat } if !self.settings.extra_chats.contains(&chat) => {
                match ctx.store.unsubscribe(chat).await {
                    Ok(true) => info!(
                        chat,
                        "a chat blocked or removed the bot; it is unsubscribed"
                    ),
                    Ok(false) => {}
                    Err(err) => {
                        warn!(chat, error = %err, "could not unsubscribe a chat that refuses the bot")
                    }
                }
            }
            ChatEvent::Refused { .. } => {}
            ChatEvent::Migrated { from, to } => {
                if let Err(err) = ctx.store.move_chat(from, to).await {
                    warn!(from, to, error = %err, "could not move a migrated group's subscription");
                }
            }
        }
    }

    /// In a group only its creator and administrators may switch the relay;
    /// in a private chat the user may.
    async fn may_switch(&self, ctx: &Context, message: &Message) -> Result<bool, ()> {
        if message.chat.is_private() {
            return Ok(true);
        }
        let Some(user) = message.from.as_ref() else {
            return Ok(false);
        };
        // Bounded: a hung answer holds up this chat only, and not for long.
        let asked = ctx.bot.api().get_chat_member(message.chat.id, user.id);
        match tokio::time::timeout(CHAT_MEMBER_TIMEOUT, asked).await {
            Ok(Ok(member)) => Ok(matches!(
                member.kind,
                ChatMemberKind::Owner(_) | ChatMemberKind::Administrator(_)
            )),
            Ok(Err(err)) => {
                warn!(error = %telegram::errors::describe(&err), "could not check the user's status in the chat");
                Err(())
            }
            Err(_) => {
                warn!("could not check the user's status in the chat in time");
                Err(())
            }
        }
    }

    async fn switch(&self, ctx: &Context, message: &Message, on: bool) -> String {
        let chat = message.chat.id.0;
        let result = if on {
            ctx.store.subscribe(chat).await
        } else {
            ctx.store.unsubscribe(chat).await
        };
        match (result, on) {
            (Ok(true), true) => {
                tracing::info!(chat, "the relay was switched on in a chat");
                ON.to_owned()
            }
            (Ok(false), true) => ALREADY_ON.to_owned(),
            (Ok(true), false) => {
                tracing::info!(chat, "the relay was switched off in a chat");
                OFF.to_owned()
            }
            (Ok(false), false) => WAS_OFF.to_owned(),
            (Err(err), _) => {
                warn!(error = %err, "could not change the subscription");
                TRY_LATER.to_owned()
            }
        }
    }

    async fn list_chats(&self, ctx: &Context, message: &Message) -> String {
        // Only the bot's own admins see every subscribed chat, and only in
        // a private chat: the list holds private users' ids. In a group,
        // its creator or administrators (the bot's admins too) learn
        // whether this group is subscribed, nothing more.
        let bot_admin = message
            .from
            .as_ref()
            .is_some_and(|user| self.settings.admins.contains(&user.id.0));
        if !(bot_admin && message.chat.is_private()) {
            if message.chat.is_private()
                || !(bot_admin || self.may_switch(ctx, message).await == Ok(true))
            {
                return BOT_ADMINS_ONLY.to_owned();
            }
            let chat = message.chat.id.0;
            return match ctx.store.subscriptions().await {
                Ok(subscriptions)
                    if subscriptions.iter().any(|s| s.chat_id == chat)
                        || self.settings.extra_chats.contains(&chat) =>
                {
                    THIS_CHAT_ON.to_owned()
                }
                Ok(_) => THIS_CHAT_OFF.to_owned(),
                Err(err) => {
                    warn!(error = %err, "could not list the subscriptions");
                    TRY_LATER.to_owned()
                }
            };
        }
        match ctx.store.subscriptions().await {
            Ok(subscriptions) => {
                let mut text = format!(
                    "Duyuruların açık olduğu sohbetler ({}):",
                    subscriptions.len()
                );
                for subscription in &subscriptions {
                    text.push_str(&format!("\n{}", subscription.chat_id));
                }
                for chat in &self.settings.extra_chats {
                    text.push_str(&format!("\n{chat} (her zaman)"));
                }
                text
            }
            Err(err) => {
                warn!(error = %err, "could not list the subscriptions");
                TRY_LATER.to_owned()
            }
        }
    }
}
