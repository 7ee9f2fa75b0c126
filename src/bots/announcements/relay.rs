//! The relay's periodic work: check the list page, record new
//! announcements, and hand each to the bot's outbox as one broadcast to
//! every subscribed chat. The outbox paces it within Telegram's limits
//! (one pacer per bot, shared with command answers and alerts) and
//! delivers it exactly once, resuming after a crash where it stopped: the
//! broadcast's messages and the announcement's end are one transaction.

use std::collections::HashSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::Announcements;
use super::scrape::{self, FetchError, Listed};
use crate::bots::Context;
use crate::outbox::{OutMessage, OutboxError};
use crate::sanitize::{EXCERPT, excerpt};
use crate::status::{Incident, short};
use crate::store::{NewAnnouncement, StoreError};
use crate::telegram::text::MESSAGE_LIMIT;

/// Announcements remembered as seen, at least (the newest are kept, and
/// never one the list page still shows, however many it shows).
const SEEN_KEPT: usize = 1000;
/// Checks in which an announcement's page may fail (time out, 5xx, refuse
/// the connection, be unparsable) before it is relayed with its title only.
const PAGE_ATTEMPTS: u32 = 3;
/// How many announcement pages the preview reads: the list may hold
/// thousands, and a preview is for a person to read.
const PREVIEW_PAGES: usize = 10;
/// The first wait after a failed check; it doubles up to `check_every`.
const FIRST_RETRY: Duration = Duration::from_secs(30);
/// How many lines of each announcement the preview prints.
const PREVIEW_LINES: usize = 3;

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("{url}: {source}")]
    Fetch { url: String, source: FetchError },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the relay cannot read the site: {0}")]
    Unusable(&'static str),
}

impl Announcements {
    /// Checks the site and broadcasts, every `check_every`, until `stop`.
    pub async fn run(&self, ctx: &Context, stop: &CancellationToken) {
        let every = self.settings.check_every;
        let mut failures = 0u32;
        let mut selector_empty = false;
        loop {
            // Cancel-safe: an unfinished check writes nothing (its writes
            // are one transaction) and is simply done again.
            let checked = tokio::select! {
                () = stop.cancelled() => return,
                checked = Box::pin(self.check(ctx, &mut selector_empty)) => checked,
            };
            let wait = match checked {
                Ok(()) => {
                    failures = 0;
                    every
                }
                Err(err) => {
                    let wait = FIRST_RETRY
                        .saturating_mul(2u32.saturating_pow(failures.min(16)))
                        .min(every);
                    failures = failures.saturating_add(1);
                    warn!(error = %err, retry_in = %short(wait), "the announcement check failed; trying again later");
                    wait
                }
            };
            let delivered = tokio::select! {
                () = stop.cancelled() => return,
                delivered = self.deliver(ctx) => delivered,
            };
            if let Err(err) = delivered {
                warn!(error = %err, "queueing the broadcast failed; it is tried again at the next check");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Tells the operator chat, when one is configured.
    async fn alert(&self, ctx: &Context, text: &str) {
        let Some(chat) = self.settings.alert_chat else {
            return;
        };
        if let Err(err) = ctx.outbox.enqueue(vec![OutMessage::text(chat, text)]).await {
            warn!(chat, error = %err, "could not queue an alert to the operator chat");
        }
    }

    /// Reads the list page and records what is new.
    async fn check(&self, ctx: &Context, selector_empty: &mut bool) -> Result<(), CheckError> {
        let listed = self.list_page().await?;
        let settings = &self.settings;
        if listed.is_empty() {
            if !*selector_empty {
                error!(
                    selector = %settings.link_selector,
                    url = %settings.list_url,
                    "the link selector found nothing on the list page; has the site's layout changed?"
                );
                *selector_empty = true;
                ctx.status.raise(
                    Incident::SelectorEmpty,
                    format!(
                        "the link selector `{}` finds nothing on {}; has the site's layout changed?",
                        settings.link_selector, settings.list_url
                    ),
                );
                self.alert(
                    ctx,
                    &format!(
                        "Duyuru botu: duyuru listesinde `{}` seçicisi hiçbir bağlantı bulamadı ({}). \
                         Sitenin düzeni değişmiş olabilir; ayarlardaki seçicileri kontrol edin.",
                        settings.link_selector, settings.list_url
                    ),
                )
                .await;
            }
            return Ok(());
        }
        // Also closes an incident a previous worker of this bot left open.
        ctx.status.clear(Incident::SelectorEmpty);
        if *selector_empty {
            info!(selector = %settings.link_selector, "the link selector finds announcements again");
            *selector_empty = false;
            self.alert(ctx, "Duyuru botu: duyuru listesi yeniden okunabiliyor.")
                .await;
        }
        let seen = ctx.store.seen_announcements().await?;
        // The site lists the newest first; relay the oldest first.
        let oldest_first: Vec<&Listed> = listed.iter().rev().collect();
        if seen.is_empty() {
            let items: Vec<NewAnnouncement> = oldest_first
                .iter()
                .map(|l| NewAnnouncement {
                    id: l.id.clone(),
                    link: l.link.to_string(),
                    message: None,
                })
                .collect();
            ctx.store.record_announcements(&items).await?;
            info!(
                count = items.len(),
                "first check: the listed announcements are marked as seen; nothing is sent"
            );
            return Ok(());
        }
        let mut new: Vec<&Listed> = oldest_first
            .into_iter()
            .filter(|l| !seen.contains(&l.id))
            .collect();
        let max = settings.max_per_check as usize;
        if new.len() > max {
            warn!(
                new = new.len(),
                max, "more new announcements than max_per_check; the rest wait for the next check"
            );
            new.truncate(max);
        }
        // Forget failures of pages no longer waiting (relayed, or gone from
        // the list), so the memory stays as small as the list.
        {
            let waiting: HashSet<&str> = new.iter().map(|l| l.id.as_str()).collect();
            self.page_failures()
                .retain(|id, _| waiting.contains(id.as_str()));
        }
        let mut items = Vec::new();
        let mut failed = None;
        for listed in new {
            let before = self.page_failures().get(&listed.id).copied().unwrap_or(0);
            let last_try = before + 1 >= PAGE_ATTEMPTS;
            match self.announcement(listed, last_try).await {
                Ok(item) => {
                    self.page_failures().remove(&listed.id);
                    items.push(item);
                }
                Err(err) => {
                    self.page_failures().insert(listed.id.clone(), before + 1);
                    let first_failure = before == 0;
                    failed.get_or_insert(err);
                    if first_failure {
                        // Keep the order for one check: this one and those
                        // after it wait. From its second failure on, the
                        // newer ones go ahead of it.
                        break;
                    }
                }
            }
        }
        ctx.store.record_announcements(&items).await?;
        let listed_ids: HashSet<String> = listed.iter().map(|l| l.id.clone()).collect();
        let keep = i64::try_from(SEEN_KEPT.max(listed.len())).unwrap_or(i64::MAX);
        ctx.store.prune_announcements(keep, &listed_ids).await?;
        for item in &items {
            match &item.message {
                Some(_) => info!(announcement = %item.id, link = %item.link, "a new announcement"),
                None => {
                    info!(announcement = %item.id, "a new announcement with the skip marker; not relayed")
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// Fetches a page of the site with the configured timeout and user
    /// agent. Its error texts are sanitised excerpts (see `scrape`).
    async fn fetch(&self, url: &url::Url) -> Result<String, CheckError> {
        let Some(client) = &self.site else {
            return Err(CheckError::Unusable("no HTTP client"));
        };
        let settings = &self.settings;
        scrape::fetch(client, url, settings.request_timeout, &settings.user_agent)
            .await
            .map_err(|source| CheckError::Fetch {
                url: url.to_string(),
                source,
            })
    }

    /// The announcements on the list page, in page order.
    async fn list_page(&self) -> Result<Vec<Listed>, CheckError> {
        let Some(selector) = &self.link_selector else {
            return Err(CheckError::Unusable("no link selector"));
        };
        let list_url = &self.settings.list_url;
        let html = self.fetch(list_url).await?;
        let (url, selector, pattern) =
            (list_url.clone(), selector.clone(), self.id_pattern.clone());
        scrape::parse_off_thread(html, move |html| {
            scrape::parse_list(html, &url, &selector, pattern.as_ref())
        })
        .await
        .map_err(|source| CheckError::Fetch {
            url: list_url.to_string(),
            source,
        })
    }

    /// Reads one announcement's page and formats its message. On its
    /// `last_try`, a page that cannot be read for any reason is relayed
    /// with its title only, with one warning line.
    async fn announcement(
        &self,
        listed: &Listed,
        last_try: bool,
    ) -> Result<NewAnnouncement, CheckError> {
        let text = match self.text_of(listed).await {
            Ok(text) => text,
            // A page that is gone or forbidden will not come back: relay the
            // title rather than hold up every newer announcement.
            Err(CheckError::Fetch {
                source: FetchError::Http(status),
                url,
            }) if (400..500).contains(&status) => {
                warn!(url = %url, status, "an announcement's page cannot be read; relaying its title");
                listed.title.clone()
            }
            Err(CheckError::Fetch { source, url }) if last_try => {
                warn!(
                    url = %url,
                    error = %source,
                    attempts = PAGE_ATTEMPTS,
                    "an announcement's page failed at every try; relaying its title"
                );
                listed.title.clone()
            }
            Err(err) => return Err(err),
        };
        let skip = self
            .settings
            .skip_marker
            .as_deref()
            .is_some_and(|marker| text.contains(marker) || listed.title.contains(marker));
        Ok(NewAnnouncement {
            id: listed.id.clone(),
            link: listed.link.to_string(),
            message: (!skip)
                .then(|| scrape::format_message(&text, listed.link.as_str(), MESSAGE_LIMIT)),
        })
    }

    async fn text_of(&self, listed: &Listed) -> Result<String, CheckError> {
        let Some(selector) = &self.text_selector else {
            return Err(CheckError::Unusable("no text selector"));
        };
        let settings = &self.settings;
        let page = self.fetch(&listed.link).await?;
        let selector = selector.clone();
        let text =
            scrape::parse_off_thread(page, move |html| scrape::extract_text(html, &selector))
                .await
                .map_err(|source| CheckError::Fetch {
                    url: listed.link.to_string(),
                    source,
                })?;
        Ok(text.unwrap_or_else(|| {
            warn!(
                selector = %settings.text_selector,
                link = %listed.link,
                "the text selector found nothing on an announcement's page; relaying its title"
            );
            listed.title.clone()
        }))
    }

    /// Queues every pending announcement for the chats that have not had
    /// it, each as one broadcast that also ends the announcement.
    async fn deliver(&self, ctx: &Context) -> Result<(), OutboxError> {
        let pending = ctx.store.pending_announcements().await?;
        if pending.is_empty() {
            return Ok(());
        }
        let subscriptions = ctx.store.subscriptions().await?;
        for announcement in pending {
            // Chats an earlier botvisor (before the outbox) delivered to.
            let delivered = ctx.store.delivered_to(&announcement.id).await?;
            let mut unique = HashSet::new();
            let messages: Vec<OutMessage> = subscriptions
                .iter()
                .filter(|s| s.since <= announcement.first_seen)
                .map(|s| s.chat_id)
                .chain(self.settings.extra_chats.iter().copied())
                .filter(|chat| !delivered.contains(chat) && unique.insert(*chat))
                .map(|chat| OutMessage::text(chat, announcement.message.clone()))
                .collect();
            let chats = messages.len();
            ctx.outbox
                .broadcast(announcement.id.clone(), messages)
                .await?;
            info!(announcement = %announcement.id, chats, "the announcement is queued for every chat");
        }
        Ok(())
    }

    /// What `botvisor announcements-preview` prints: the announcements the
    /// list page shows now, with the first lines of each one's text.
    ///
    /// # Errors
    /// When the list page cannot be read.
    pub async fn preview(&self) -> Result<String, CheckError> {
        let listed = self.list_page().await?;
        let mut out = format!(
            "{}: {} announcement(s) found with `{}`\n",
            self.settings.list_url,
            listed.len(),
            self.settings.link_selector
        );
        if listed.is_empty() {
            out.push_str("(the link selector found nothing: has the site's layout changed?)\n");
        }
        if listed.len() > PREVIEW_PAGES {
            out.push_str(&format!(
                "(only the first {PREVIEW_PAGES} announcement pages are read; {} more are listed)\n",
                listed.len() - PREVIEW_PAGES
            ));
        }
        // Everything below comes from the site and goes to a terminal:
        // control characters (ANSI escapes, bidi overrides) are escaped and
        // each piece is bounded.
        let clean = |text: &str| excerpt(text, EXCERPT);
        for item in listed.iter().take(PREVIEW_PAGES) {
            out.push_str(&format!(
                "\n── {} ── {}\n{}\n",
                clean(&item.id),
                clean(&item.title),
                clean(item.link.as_str())
            ));
            match self.text_of(item).await {
                Ok(text) => {
                    for line in text
                        .lines()
                        .filter(|l| !l.trim().is_empty())
                        .take(PREVIEW_LINES)
                    {
                        out.push_str(&format!("  {}\n", clean(line)));
                    }
                }
                Err(err) => out.push_str(&format!("  (could not read it: {err})\n")),
            }
        }
        Ok(out.trim_end().to_owned())
    }
}
