//! The bottom layer: everything that speaks HTTP to the Bot API. The shared
//! HTTP client, the per-bot handle, raw calls with capped answers
//! (`api`), the error classes (`errors`), `getUpdates` (`polling`), one
//! message sent or edited (`send`), and Telegram's text limits (`text`).
//!
//! No other module builds a request URL or sees a raw token; they get a
//! [`BotHandle`], whose `Debug` shows the bot's name and never its token.
//! This layer knows nothing of workers, stores or bots: it makes one
//! request and says how it went.

pub mod api;
pub mod call;
pub mod errors;
pub mod polling;
pub mod send;
pub mod text;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use teloxide::Bot;
use url::Url;

use crate::secret::{Redactor, Token};

pub use errors::{ErrorClass, classify};

/// Extra time the HTTP client allows a long poll beyond its own timeout, so
/// the server's empty answer arrives before the client gives up.
const LONG_POLL_GRACE: Duration = Duration::from_secs(15);

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client: {0}")]
pub struct ClientError(String);

/// The one HTTP client every bot shares: one connection pool and one TLS
/// set-up for the whole process.
///
/// # Errors
/// When the TLS backend cannot be initialised.
pub fn http_client(poll_timeout: Duration) -> Result<reqwest::Client, ClientError> {
    teloxide::net::default_reqwest_settings()
        .timeout(poll_timeout + LONG_POLL_GRACE)
        .pool_idle_timeout(Duration::from_secs(90))
        .build()
        .map_err(|err| ClientError(Redactor::global().redact(&err.to_string()).into_owned()))
}

/// One bot's connection to the Bot API.
#[derive(Clone)]
pub struct BotHandle {
    name: String,
    bot: Bot,
    client: reqwest::Client,
    /// `<api_url>/bot<token>/`: holds the token, never shown.
    base: Arc<str>,
    /// `<api_url>/file/bot<token>/`, where files are downloaded.
    file_base: Arc<str>,
    /// Messages sent through this handle (each part of a split message).
    sent: Arc<AtomicU64>,
}

impl BotHandle {
    /// A handle for bot `name` with `token`, sending to `api_url` through the
    /// shared `client`. The token is registered with the global redactor.
    pub fn new(name: &str, token: &Token, api_url: &Url, client: reqwest::Client) -> BotHandle {
        Redactor::global().learn(token);
        let bot = Bot::with_client(token.expose(), client.clone()).set_api_url(api_url.clone());
        let base = format!(
            "{}/bot{}/",
            api_url.as_str().trim_end_matches('/'),
            token.expose()
        );
        let file_base = format!(
            "{}/file/bot{}/",
            api_url.as_str().trim_end_matches('/'),
            token.expose()
        );
        BotHandle {
            name: name.to_owned(),
            bot,
            client,
            base: Arc::from(base),
            file_base: Arc::from(file_base),
            sent: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Counts the messages sent through this handle into `sent` (the
    /// bot's status).
    #[must_use]
    pub fn counting_into(mut self, sent: Arc<AtomicU64>) -> BotHandle {
        self.sent = sent;
        self
    }

    /// Records that `count` messages went out.
    pub(crate) fn count_sent(&self, count: u64) {
        self.sent.fetch_add(count, Ordering::Relaxed);
    }

    /// The bot's name in the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The teloxide bot, for building requests.
    pub fn api(&self) -> &Bot {
        &self.bot
    }

    fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The URL of `method` for this bot (holds the token: never shown).
    fn method_url(&self, method: &str) -> String {
        format!("{}{method}", self.base)
    }

    /// The URL of the file at `path` (holds the token: never shown).
    fn file_url(&self, path: &str) -> String {
        format!("{}{}", self.file_base, path.trim_start_matches('/'))
    }
}

/// Text that came from outside (a server's description, a network error),
/// made safe to show: no token, control characters escaped, bounded.
pub(crate) fn excerpt(text: &str) -> String {
    crate::sanitize::excerpt(text, crate::sanitize::EXCERPT)
}

impl fmt::Debug for BotHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BotHandle")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
