//! The validated configuration: what `supervisor.toml` means once it has been
//! read, checked and given its defaults.
//!
//! Loading is two passes. `raw` turns the TOML text into loosely typed,
//! span-carrying structs; `validate` turns those into the types below,
//! collecting every problem with its file, line and column. Nothing outside
//! this module sees TOML. Every default lives in the `Default` impls in this
//! file (README.md documents the same values, and a test keeps the two
//! honest). Tokens are not part of the config: a bot names the environment
//! variable that holds its token, resolved by [`env::Environment`].

pub mod announcements;
pub mod env;
pub mod faq;
mod include;
pub mod process;
mod raw;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

pub use env::Environment;
pub use raw::public_url_problem;

/// Telegram's own Bot API server, the default `api_url`.
pub const TELEGRAM_API_URL: &str = "https://api.telegram.org";

/// The largest config or content file botvisor reads. The shipped config is
/// about 4 KB and the department's FAQ content about 15 KB; even 99 answers
/// of Telegram's longest message fit in 1 MiB. The cap keeps a wrong path
/// (`/dev/zero`, a log file, a database) from being read without end.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// A parsed, validated `supervisor.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub supervisor: SupervisorSettings,
    /// Every `[bot.<name>]` table, enabled or not, in the file's order.
    pub bots: Vec<BotConfig>,
    /// Settings that are legal but probably a mistake (a `shutdown_timeout`
    /// Heroku would cut short): printed by `check`, logged by the daemon.
    pub warnings: Vec<Problem>,
}

impl Config {
    /// Reads and validates the config file at `path`.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the file cannot be read, and
    /// [`ConfigError::Invalid`] listing every problem found in it.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = match read_text(path) {
            Ok(text) => text,
            Err(ReadError::Io(source)) => {
                return Err(ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
            Err(err) => {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    problems: vec![err.problem(None)],
                });
            }
        };
        Config::from_str(&text, path)
    }

    /// Validates config text as if it had been read from `path` (relative
    /// paths in it resolve against `path`'s folder).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing every problem found.
    pub fn from_str(text: &str, path: &Path) -> Result<Config, ConfigError> {
        raw::parse(&normalize(text), path).map_err(|problems| ConfigError::Invalid {
            path: path.to_path_buf(),
            problems,
        })
    }

    /// The folder relative paths resolve against.
    pub fn dir(&self) -> &Path {
        config_dir(&self.path)
    }

    /// Where the state lives: the PostgreSQL URL in the variable
    /// `store_env` names when it is set, else `store`, with a SQLite path
    /// resolved against the config's folder.
    ///
    /// # Errors
    /// When that variable holds something other than a PostgreSQL URL.
    pub fn store_spec(&self, env: &Environment) -> Result<crate::store::StoreSpec, String> {
        use crate::store::StoreSpec;
        if let Some(url) = env.var(&self.supervisor.store_env) {
            return if is_postgres_url(&url) {
                Ok(StoreSpec::Postgres(url))
            } else {
                Err(format!(
                    "{} is set but is not a postgres:// URL; unset it to use `store`",
                    self.supervisor.store_env
                ))
            };
        }
        let store = &self.supervisor.store;
        match store.strip_prefix("sqlite:") {
            Some(path) => Ok(StoreSpec::Sqlite(
                self.dir().join(path.trim_start_matches("//")),
            )),
            None => Ok(StoreSpec::Postgres(store.clone())),
        }
    }

    /// The bot called `name`, if the config has one.
    pub fn bot(&self, name: &str) -> Option<&BotConfig> {
        self.bots.iter().find(|bot| bot.name == name)
    }
}

/// Why a config or content file could not be read as text.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The file cannot be opened or read (missing, a folder, no permission).
    Io(std::io::Error),
    /// The file is larger than [`MAX_FILE_BYTES`].
    TooLarge,
    /// The file is not UTF-8; `at` is the first bad byte.
    NotUtf8 { at: Location },
}

impl ReadError {
    /// The problem an operator sees, in the file that holds it (`None`:
    /// the config file itself).
    pub(crate) fn problem(&self, file: Option<PathBuf>) -> Problem {
        let (at, message) = match self {
            ReadError::Io(err) => (Location::start(), format!("cannot read the file: {err}")),
            ReadError::TooLarge => (
                Location::start(),
                format!(
                    "the file is larger than {} KiB, far more than any config or content needs: \
                     is this the right file?",
                    MAX_FILE_BYTES / 1024
                ),
            ),
            ReadError::NotUtf8 { at } => (
                *at,
                "the file is not valid UTF-8 here; save it as UTF-8 (Turkish letters such as \
                 ı, ş and ğ are fine in UTF-8)"
                    .to_owned(),
            ),
        };
        Problem {
            at,
            file,
            key: String::new(),
            message,
        }
    }
}

/// Reads a config or content file as text: at most [`MAX_FILE_BYTES`],
/// UTF-8, with a byte-order mark dropped and CRLF line ends made LF (files
/// saved by Windows editors), so no `\r` reaches a message.
///
/// # Errors
/// [`ReadError`] saying what is wrong, with the position of a bad byte.
pub(crate) fn read_text(path: &Path) -> Result<String, ReadError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let mut bytes = Vec::new();
    // One byte past the cap tells "exactly at the cap" from "larger".
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(ReadError::TooLarge);
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(normalize(&text).into_owned()),
        Err(err) => {
            let valid = err.utf8_error().valid_up_to();
            let bytes = err.into_bytes();
            // The valid prefix is UTF-8 by definition; lossy only guards it.
            let prefix = String::from_utf8_lossy(&bytes[..valid]);
            let prefix = prefix.strip_prefix('\u{feff}').unwrap_or(&prefix);
            Err(ReadError::NotUtf8 {
                at: Location::of_offset(prefix, prefix.len()),
            })
        }
    }
}

/// `text` without a leading byte-order mark and with CRLF line ends made
/// LF. Positions stay right: a line's characters keep their columns.
pub(crate) fn normalize(text: &str) -> std::borrow::Cow<'_, str> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.contains("\r\n") {
        std::borrow::Cow::Owned(text.replace("\r\n", "\n"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// True for a `postgres://` or `postgresql://` URL.
pub fn is_postgres_url(text: &str) -> bool {
    text.starts_with("postgres://") || text.starts_with("postgresql://")
}

/// The folder of a config file; `.` for a bare file name.
pub fn config_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The `[supervisor]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct SupervisorSettings {
    /// How long a shutdown may take before running handlers are abandoned.
    pub shutdown_timeout: Duration,
    /// A tracing filter directive such as `info` or `botvisor=debug,info`.
    pub log_level: String,
    pub log_format: LogFormat,
    /// When set, logs are also written to rolling files in this folder.
    pub log_dir: Option<PathBuf>,
    pub log_rotation: LogRotation,
    /// The Bot API base URL, without a trailing slash.
    pub api_url: Url,
    /// The long-poll timeout sent with every `getUpdates`.
    pub poll_timeout: Duration,
    /// Restart defaults; each bot may override any of them.
    pub restart: RestartPolicy,
    /// Where the state lives: `sqlite:<path>` (relative to the config's
    /// folder) or a `postgres://` URL.
    pub store: String,
    /// The environment variable whose PostgreSQL URL, when set, wins over
    /// `store` (Heroku's `DATABASE_URL`).
    pub store_env: String,
    /// Telegram user ids that may ask any bot for `/durum` in a private chat.
    pub operators: Vec<i64>,
    /// A `getUpdates` unanswered this long restarts the worker; `None`
    /// means [`SupervisorSettings::watchdog_limit`]'s default.
    pub watchdog_after: Option<Duration>,
    /// The status endpoint, off unless `[supervisor.http]` is given.
    pub http: Option<HttpSettings>,
    /// Where alerts go, off unless `[supervisor.alerts]` is given.
    pub alerts: Option<AlertSettings>,
    /// How every bot's outbox paces and bounds what it sends.
    pub outbox: OutboxSettings,
    /// Where Telegram sends the updates of webhook bots; needed once any
    /// bot has `delivery = "webhook"`.
    pub webhook: Option<WebhookSettings>,
    /// Where process bots reach botvisor's Bot API gateway.
    pub gateway: GatewaySettings,
    /// How this instance shares the bots with others on one PostgreSQL.
    pub fleet: FleetSettings,
}

/// The `[supervisor.fleet]` table: instances on one PostgreSQL store share
/// the bots by weight; each bot's lease lasts `lease_ttl`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetSettings {
    /// This instance's share relative to the others' (0 holds no bot).
    pub weight: u32,
    /// How long a lease lasts unrenewed: how long a dead instance's bots
    /// wait for another instance.
    pub lease_ttl: Duration,
}

impl Default for FleetSettings {
    fn default() -> Self {
        FleetSettings {
            weight: 1,
            lease_ttl: Duration::from_secs(10),
        }
    }
}

/// The `[supervisor.webhook]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The public base URL Telegram calls (each bot at
    /// `<public_url>/telegram/<bot name>`), with `$VAR` standing for an
    /// environment variable: `"https://$HEROKU_APP_NAME.herokuapp.com"`.
    pub public_url: String,
    /// Requests Telegram may have in flight per bot (1 to 100).
    pub max_connections: u32,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            public_url: String::new(),
            max_connections: 10,
        }
    }
}

/// How a bot's updates arrive.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Delivery {
    /// botvisor asks for them with long polls (`getUpdates`).
    #[default]
    Polling,
    /// Telegram sends them to botvisor's endpoint (`setWebhook`).
    Webhook,
}

impl Delivery {
    pub fn name(self) -> &'static str {
        match self {
            Delivery::Polling => "polling",
            Delivery::Webhook => "webhook",
        }
    }
}

/// The `[supervisor.outbox]` table: Telegram's sending limits, kept by
/// each bot's outbox before Telegram has to answer 429, and the caps on
/// what may wait in it. A limit of 0 switches that limit off.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxSettings {
    /// False switches every limit off (a local Bot API server, a benchmark).
    pub pacing: bool,
    /// Messages to one chat per second (Telegram: about 1).
    pub per_chat_per_second: u32,
    /// Messages to one group, supergroup or channel per minute (Telegram: 20).
    pub per_group_per_minute: u32,
    /// Messages from one bot per second, all chats together (Telegram: about 30).
    pub per_bot_per_second: u32,
    /// Messages waiting for one chat at most; replies past it are dropped
    /// (and counted, and logged once per chat).
    pub max_per_chat: u32,
    /// A message still unsent this long after it was queued is dropped.
    pub max_age: Duration,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        OutboxSettings {
            pacing: true,
            per_chat_per_second: 1,
            per_group_per_minute: 20,
            per_bot_per_second: 30,
            max_per_chat: 100,
            // As long as Telegram keeps an update nobody fetched.
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

impl SupervisorSettings {
    /// How long a `getUpdates` may go unanswered before the watchdog
    /// restarts the worker: `watchdog_after`, by default three long polls
    /// and never under 30 s.
    pub fn watchdog_limit(&self) -> Duration {
        self.watchdog_after
            .unwrap_or_else(|| (self.poll_timeout * 3).max(Duration::from_secs(30)))
    }
}

/// The `[supervisor.http]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpSettings {
    /// `host:port`, where `$PORT` stands for the `PORT` variable (Heroku's
    /// web process): `"127.0.0.1:9090"`, `"0.0.0.0:$PORT"`.
    pub listen: String,
}

/// The `[supervisor.alerts]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlertSettings {
    /// The chat alerts go to.
    pub chat_id: i64,
    /// The bot that sends them.
    pub via_bot: String,
    /// At most this many alert messages per hour; the rest are logged only.
    pub max_per_hour: u32,
}

impl Default for SupervisorSettings {
    fn default() -> Self {
        SupervisorSettings {
            shutdown_timeout: Duration::from_secs(25),
            log_level: "info".to_owned(),
            log_format: LogFormat::Text,
            log_dir: None,
            log_rotation: LogRotation::Daily,
            api_url: Url::parse(TELEGRAM_API_URL).expect("the default API URL is valid"),
            poll_timeout: Duration::from_secs(30),
            restart: RestartPolicy::default(),
            store: "sqlite:botvisor.db".to_owned(),
            store_env: "DATABASE_URL".to_owned(),
            operators: Vec::new(),
            watchdog_after: None,
            http: None,
            alerts: None,
            outbox: OutboxSettings::default(),
            webhook: None,
            gateway: GatewaySettings::default(),
            fleet: FleetSettings::default(),
        }
    }
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How often the log file in `log_dir` is rotated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogRotation {
    Hourly,
    Daily,
    Never,
}

/// When and how often a failing bot is restarted.
#[derive(Clone, Debug, PartialEq)]
pub struct RestartPolicy {
    /// The wait before the first restart.
    pub initial_backoff: Duration,
    /// The longest wait between restarts.
    pub max_backoff: Duration,
    /// Each wait is the previous one times this (at least 1).
    pub multiplier: f64,
    /// Each wait is varied at random by up to this fraction (0 to 1).
    pub jitter: f64,
    /// More restarts than this within `window` park the bot.
    pub max_restarts: u32,
    pub window: Duration,
    /// How long a parked bot waits before it is tried again.
    pub park_for: Duration,
    /// The longest wait between two polls while Telegram answers 409
    /// Conflict (the first wait is about 3 s).
    pub conflict_max_backoff: Duration,
    /// A conflict lasting longer than this is logged as an error.
    pub conflict_alert_after: Duration,
    /// What to do when Telegram says a webhook is set.
    pub on_webhook: OnWebhook,
}

/// What a bot does when `getUpdates` fails because a webhook is set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnWebhook {
    /// Call `deleteWebhook` (keeping pending updates) and poll again.
    Delete,
    /// Park the bot: someone else wants this token on a webhook.
    Park,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        RestartPolicy {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            multiplier: 2.0,
            jitter: 0.2,
            max_restarts: 5,
            window: Duration::from_secs(60),
            park_for: Duration::from_secs(600),
            conflict_max_backoff: Duration::from_secs(60),
            conflict_alert_after: Duration::from_secs(300),
            on_webhook: OnWebhook::Delete,
        }
    }
}

/// One `[bot.<name>]` table.
#[derive(Clone, Debug, PartialEq)]
pub struct BotConfig {
    /// The table's name: `[a-z0-9_-]+`.
    pub name: String,
    pub kind: KindSettings,
    /// The environment variable that holds the bot's token (empty when
    /// `token_file` holds it).
    pub token_env: String,
    /// A file that holds the bot's token (Docker secrets, systemd
    /// credentials), instead of `token_env`.
    pub token_file: Option<PathBuf>,
    pub enabled: bool,
    /// The Bot API base URL for this bot (the supervisor's unless overridden).
    pub api_url: Url,
    /// The supervisor's restart policy with this bot's overrides applied.
    pub restart: RestartPolicy,
    /// How its updates arrive.
    pub delivery: Delivery,
    /// Where `token_env` (or `token_file`) is written, for errors about it.
    pub token_env_at: Location,
    /// Where the table's name is written.
    pub at: Location,
    /// The included file the table is in; `None` for the config file.
    pub file: Option<PathBuf>,
}

impl BotConfig {
    /// True when `other` would run exactly like this bot: every setting is
    /// equal. Where the table sits in the file does not matter.
    pub fn runs_like(&self, other: &BotConfig) -> bool {
        let BotConfig {
            name,
            kind,
            token_env,
            token_file,
            enabled,
            api_url,
            restart,
            delivery,
            token_env_at: _,
            at: _,
            file: _,
        } = self;
        *name == other.name
            && *kind == other.kind
            && *token_env == other.token_env
            && *token_file == other.token_file
            && *enabled == other.enabled
            && *api_url == other.api_url
            && *restart == other.restart
            && *delivery == other.delivery
    }
}

impl BotConfig {
    /// The key the token is given by: `token_env` or `token_file`.
    pub fn token_key(&self) -> &'static str {
        if self.token_file.is_some() {
            "token_file"
        } else {
            "token_env"
        }
    }

    /// Where the token comes from, for messages: the variable's name, or
    /// `the token file <path>`.
    pub fn token_source(&self) -> String {
        match &self.token_file {
            Some(file) => format!("the token file {}", file.display()),
            None => self.token_env.clone(),
        }
    }
}

/// What a bot does, with the kind's own settings.
#[derive(Clone, Debug, PartialEq)]
pub enum KindSettings {
    /// The FAQ bot (answers commands from content in the config).
    Faq(FaqSettings),
    /// The announcement relay.
    Announcements(Box<AnnouncementsSettings>),
    /// A diagnostic bot that echoes text back.
    Echo(EchoSettings),
    /// A program of its own (python-telegram-bot, aiogram, teloxide…),
    /// run as a child process that talks to botvisor's Bot API gateway.
    Process(ProcessSettings),
}

impl KindSettings {
    /// The kind's name as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            KindSettings::Faq(_) => "faq",
            KindSettings::Announcements(_) => "announcements",
            KindSettings::Echo(_) => "echo",
            KindSettings::Process(_) => "process",
        }
    }
}

/// The names accepted for `kind`.
pub const KINDS: &[&str] = &["faq", "announcements", "echo", "process"];

/// Settings of a `faq` bot.
#[derive(Clone, Debug, PartialEq)]
pub struct FaqSettings {
    pub content: faq::FaqContent,
    /// The file the content was read from, if not inline.
    pub content_file: Option<PathBuf>,
}

pub use announcements::{AnnouncementsSettings, CommandNames};
pub use process::{GatewaySettings, ProcessSettings};

/// Settings of an `echo` bot, a diagnostic kind that replies to each text
/// message with the same text. The two fault settings make it misbehave on
/// purpose, to try supervision; they are off unless set.
#[derive(Clone, Debug, PartialEq)]
pub struct EchoSettings {
    /// A message with exactly this text makes the handler panic.
    pub panic_on: Option<String>,
    /// A message with exactly this text makes the handler take `slow_for`
    /// before it replies.
    pub slow_on: Option<String>,
    pub slow_for: Duration,
}

impl Default for EchoSettings {
    fn default() -> Self {
        EchoSettings {
            panic_on: None,
            slow_on: None,
            slow_for: Duration::from_secs(3),
        }
    }
}

/// A position in the config file, 1-based.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The start of a file, for problems about the file as a whole.
    pub fn start() -> Location {
        Location { line: 1, column: 1 }
    }

    /// The line and column of byte `offset` in `text` (columns count
    /// characters, not bytes).
    pub fn of_offset(text: &str, offset: usize) -> Location {
        let offset = offset.min(text.len());
        let before = text.get(..offset).unwrap_or(text);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location { line, column }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One thing wrong with a config file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub at: Location,
    /// The file it is in, when not the config file itself (a content file).
    pub file: Option<PathBuf>,
    /// The dotted key it concerns (`bot.duyuru.token_env`), or empty for the
    /// file as a whole.
    pub key: String,
    pub message: String,
}

/// Why a config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl Problem {
    /// `file:line:column: key: message`, the file being `config_path`
    /// unless the problem is in another file (a content file). A problem
    /// about no place in particular (line 0) is `file: message`.
    pub fn render(&self, config_path: &Path) -> String {
        let file = self.file.as_deref().unwrap_or(config_path);
        let mut out = if self.at.line == 0 {
            format!("{}: ", file.display())
        } else {
            format!("{}:{}: ", file.display(), self.at)
        };
        if !self.key.is_empty() {
            out.push_str(&self.key);
            out.push_str(": ");
        }
        out.push_str(&self.message);
        out
    }
}

/// Formats problems one per line as `file:line:column: key: message`.
pub fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(|p| p.render(path)).collect();
    lines.join("\n")
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
