//! The first pass over `supervisor.toml`: TOML text to span-carrying raw
//! structs, then the validation pass that turns them into [`Config`].
//!
//! The document is parsed once into toml's spanned tree (`DeTable`), so that
//! every table can be deserialized on its own and every error keeps the
//! position it came from. Serde (with `deny_unknown_fields`) checks key names
//! and types; the validation functions here check values. Problems are
//! collected, not returned at the first one, so an operator sees them all.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};
use url::Url;

use super::{
    BotConfig, Config, EchoSettings, FaqSettings, KINDS, KindSettings, Location, LogFormat,
    LogRotation, OnWebhook, Problem, RestartPolicy, SupervisorSettings,
};
use super::{announcements, faq};

/// Something shaped like a Bot API token: digits, a colon, and a long tail of
/// URL-safe characters.
static TOKEN_SHAPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"\b[0-9]{5,16}:[A-Za-z0-9_-]{30,}").expect("the token pattern is valid")
});
static BOT_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9_-]{1,64}$").expect("the name pattern is valid"));
pub(super) static ENV_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$").expect("the env pattern is valid")
});
/// A bare or quoted TOML key, as written before `=`.
static KEY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"^"?[A-Za-z0-9_-]+"?$"#).expect("the key pattern is valid"));

/// A `shutdown_timeout` at or above this is cut short on Heroku, which
/// sends SIGKILL 30 s after SIGTERM.
const HEROKU_KILL_AFTER: Duration = Duration::from_secs(30);
/// The last segments of keys that hold durations, for the hint in a type
/// error.
const DURATION_KEYS: &[&str] = &[
    "shutdown_timeout",
    "poll_timeout",
    "watchdog_after",
    "initial_backoff",
    "max_backoff",
    "window",
    "park_for",
    "conflict_max_backoff",
    "conflict_alert_after",
    "slow_for",
    "check_every",
    "request_timeout",
    "lease_ttl",
];

/// No setting needs a longer duration, and much longer ones overflow the
/// clock arithmetic.
const LONGEST_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// The keys of a `[bot.<name>]` table common to every kind; the others belong
/// to the kind.
const COMMON_BOT_KEYS: &[&str] = &[
    "kind",
    "token_env",
    "token_file",
    "enabled",
    "api_url",
    "restart",
    "delivery",
];

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawSupervisor {
    shutdown_timeout: Option<Spanned<String>>,
    log_level: Option<Spanned<String>>,
    log_format: Option<Spanned<String>>,
    log_dir: Option<Spanned<String>>,
    log_rotation: Option<Spanned<String>>,
    api_url: Option<Spanned<String>>,
    poll_timeout: Option<Spanned<String>>,
    restart: Option<RawRestart>,
    store: Option<Spanned<String>>,
    store_env: Option<Spanned<String>>,
    operators: Option<Vec<Spanned<i64>>>,
    watchdog_after: Option<Spanned<String>>,
    http: Option<RawHttp>,
    alerts: Option<Spanned<RawAlerts>>,
    outbox: Option<RawOutbox>,
    webhook: Option<Spanned<RawWebhook>>,
    gateway: Option<super::process::RawGateway>,
    fleet: Option<RawFleet>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawFleet {
    weight: Option<Spanned<i64>>,
    lease_ttl: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    public_url: Spanned<String>,
    #[serde(default)]
    max_connections: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawOutbox {
    pacing: Option<bool>,
    per_chat_per_second: Option<Spanned<i64>>,
    per_group_per_minute: Option<Spanned<i64>>,
    per_bot_per_second: Option<Spanned<i64>>,
    max_per_chat: Option<Spanned<i64>>,
    max_age: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    chat_id: Spanned<i64>,
    via_bot: Spanned<String>,
    #[serde(default)]
    max_per_hour: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawRestart {
    initial_backoff: Option<Spanned<String>>,
    max_backoff: Option<Spanned<String>>,
    multiplier: Option<Spanned<Number>>,
    jitter: Option<Spanned<Number>>,
    max_restarts: Option<Spanned<i64>>,
    window: Option<Spanned<String>>,
    park_for: Option<Spanned<String>>,
    conflict_max_backoff: Option<Spanned<String>>,
    conflict_alert_after: Option<Spanned<String>>,
    on_webhook: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBot {
    kind: Spanned<String>,
    #[serde(default)]
    token_env: Option<Spanned<String>>,
    #[serde(default)]
    token_file: Option<Spanned<String>>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    api_url: Option<Spanned<String>>,
    #[serde(default)]
    restart: Option<RawRestart>,
    #[serde(default)]
    delivery: Option<Spanned<String>>,
}

/// A kind's own settings, besides what is taken out by hand.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFaq {
    content_file: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEcho {
    panic_on: Option<String>,
    slow_on: Option<String>,
    slow_for: Option<Spanned<String>>,
}

/// TOML keeps integers and floats apart; an operator writing `2` for a
/// multiplier means `2.0`.
#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Number {
    Int(i64),
    Float(f64),
}

impl Number {
    fn get(self) -> f64 {
        match self {
            Number::Int(i) => i as f64,
            Number::Float(f) => f,
        }
    }
}

/// Collects problems while the validation pass walks a document.
pub(super) struct Checker<'a> {
    text: &'a str,
    /// Where each line starts: a position is a binary search, not a count
    /// of the newlines before it (10,000 bots have some 30,000 positions).
    line_starts: Vec<usize>,
    /// The file this text came from, when it is not the config file itself.
    file: Option<PathBuf>,
    pub(super) problems: Vec<Problem>,
    /// Legal but probably mistaken settings; they do not fail the check.
    pub(super) warnings: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(text: &'a str, file: Option<PathBuf>) -> Checker<'a> {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Checker {
            text,
            line_starts,
            file,
            problems: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Reports every token-shaped string in the text, naming the kind of
    /// file it is in (the line starts with the file's path).
    pub(super) fn scan_for_tokens(&mut self) {
        let message = if self.file.is_some() {
            "a bot token is written in this content file; delete it: tokens belong in \
             environment variables, and content is shown to everyone"
        } else {
            "a bot token is written in the config file; put it in an environment variable \
             and name that variable with `token_env`"
        };
        for found in TOKEN_SHAPE.find_iter(self.text) {
            self.report(found.range(), "", message);
        }
    }

    /// Takes over the problems (and warnings) another checker found.
    pub(super) fn absorb(&mut self, other: Checker<'_>) {
        self.problems.extend(other.problems);
        self.warnings.extend(other.warnings);
    }

    /// Records a warning: the value is accepted, and the operator told why
    /// it is probably a mistake.
    pub(super) fn warn(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let at = self.at(span);
        self.warnings.push(Problem {
            at,
            file: self.file.clone(),
            key: key.to_owned(),
            message: message.into(),
        });
    }

    /// Reports a TOML syntax error; a duplicate key or table names the line
    /// of its first definition.
    pub(super) fn syntax_error(&mut self, err: &toml::de::Error) {
        let span = err.span().unwrap_or(0..0);
        let mut message = tidy_toml_message(err.message());
        if err.message().trim().trim_end_matches('.') == "duplicate key"
            && let Some(line) = first_definition(self.text, span.start)
        {
            message = format!("duplicate key: this table or key is already defined at line {line}");
        }
        self.report(span, "", message);
    }

    pub(super) fn at(&self, span: Range<usize>) -> Location {
        let offset = span.start.min(self.text.len());
        if !self.text.is_char_boundary(offset) {
            return Location::of_offset(self.text, offset);
        }
        // The lines that start at or before the offset.
        let line = self.line_starts.partition_point(|start| *start <= offset);
        let line_start = self
            .line_starts
            .get(line.wrapping_sub(1))
            .copied()
            .unwrap_or(0);
        let column = self.text[line_start..offset].chars().count() + 1;
        Location { line, column }
    }

    pub(super) fn report(&mut self, span: Range<usize>, key: &str, message: impl Into<String>) {
        let at = self.at(span);
        // One line per problem, whatever a message quotes from the file.
        let message: String = message.into();
        let message = if message.contains(['\n', '\r']) {
            message.replace('\r', "\\r").replace('\n', "\\n")
        } else {
            message
        };
        self.problems.push(Problem {
            at,
            file: self.file.clone(),
            key: key.to_owned(),
            message,
        });
    }

    /// Deserializes one table of the document, reporting a serde error (an
    /// unknown key, a wrong type, a missing key) at its position.
    pub(super) fn table<T: DeserializeOwned>(
        &mut self,
        key: &str,
        span: Range<usize>,
        table: DeTable<'_>,
    ) -> Option<T> {
        let value = Spanned::new(span.clone(), DeValue::Table(table));
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(parsed) => Some(parsed),
            Err(err) => {
                let at = err.span().unwrap_or(span);
                let message = err.message();
                match plain_type_message(message) {
                    // A wrong type: name the key itself, not its table.
                    Some((expected, found)) => {
                        let key = key_before(self.text, at.start).unwrap_or_else(|| key.to_owned());
                        let is_duration = DURATION_KEYS
                            .iter()
                            .any(|d| key.rsplit('.').next() == Some(d));
                        let expected = if is_duration && expected == "text in double quotes" {
                            "a duration in double quotes with its unit, e.g. \"25s\" or \"10m\""
                                .to_owned()
                        } else {
                            expected
                        };
                        let message = match found {
                            Some(found) => format!("must be {expected}, not {found}"),
                            None => format!("must be {expected}"),
                        };
                        self.report(at, &key, message);
                    }
                    None => self.report(at, key, tidy_serde_message(message)),
                }
                None
            }
        }
    }

    pub(super) fn duration(
        &mut self,
        key: &str,
        value: &Option<Spanned<String>>,
        default: Duration,
    ) -> Duration {
        let Some(value) = value else { return default };
        match humantime::parse_duration(value.get_ref().trim()) {
            Ok(d) if d.is_zero() => {
                self.report(value.span(), key, "must be longer than zero");
                default
            }
            Ok(d) if d > LONGEST_DURATION => {
                self.report(value.span(), key, "must be at most a year");
                default
            }
            Ok(d) => d,
            Err(err) => {
                self.report(
                    value.span(),
                    key,
                    format!(
                        "`{}` is not a duration ({err}); write e.g. \"500ms\", \"25s\", \"10m\"",
                        value.get_ref()
                    ),
                );
                default
            }
        }
    }

    pub(super) fn url(&mut self, key: &str, value: &Spanned<String>) -> Option<Url> {
        match Url::parse(value.get_ref().trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                Some(without_trailing_slash(url))
            }
            Ok(_) => {
                self.report(value.span(), key, "must be an http:// or https:// URL");
                None
            }
            Err(err) => {
                self.report(value.span(), key, format!("is not a URL: {err}"));
                None
            }
        }
    }

    fn restart(&mut self, prefix: &str, raw: &RawRestart, base: &RestartPolicy) -> RestartPolicy {
        let key = |name: &str| format!("{prefix}.{name}");
        let mut policy = RestartPolicy {
            initial_backoff: self.duration(
                &key("initial_backoff"),
                &raw.initial_backoff,
                base.initial_backoff,
            ),
            max_backoff: self.duration(&key("max_backoff"), &raw.max_backoff, base.max_backoff),
            multiplier: base.multiplier,
            jitter: base.jitter,
            max_restarts: base.max_restarts,
            window: self.duration(&key("window"), &raw.window, base.window),
            park_for: self.duration(&key("park_for"), &raw.park_for, base.park_for),
            conflict_max_backoff: self.duration(
                &key("conflict_max_backoff"),
                &raw.conflict_max_backoff,
                base.conflict_max_backoff,
            ),
            conflict_alert_after: self.duration(
                &key("conflict_alert_after"),
                &raw.conflict_alert_after,
                base.conflict_alert_after,
            ),
            on_webhook: base.on_webhook,
        };
        if let Some(on_webhook) = &raw.on_webhook {
            match on_webhook.get_ref().as_str() {
                "delete" => policy.on_webhook = OnWebhook::Delete,
                "park" => policy.on_webhook = OnWebhook::Park,
                other => self.report(
                    on_webhook.span(),
                    &key("on_webhook"),
                    format!("`{other}` is not a choice; use \"delete\" or \"park\""),
                ),
            }
        }
        if let Some(m) = &raw.multiplier {
            let value = m.get_ref().get();
            if value.is_finite() && value >= 1.0 {
                policy.multiplier = value;
            } else {
                self.report(
                    m.span(),
                    &key("multiplier"),
                    "must be a number of at least 1",
                );
            }
        }
        if let Some(j) = &raw.jitter {
            let value = j.get_ref().get();
            if (0.0..=1.0).contains(&value) {
                policy.jitter = value;
            } else {
                self.report(j.span(), &key("jitter"), "must be between 0 and 1");
            }
        }
        if let Some(n) = &raw.max_restarts {
            match u32::try_from(*n.get_ref()) {
                Ok(value) if value > 0 => policy.max_restarts = value,
                _ => self.report(
                    n.span(),
                    &key("max_restarts"),
                    "must be a whole number of at least 1",
                ),
            }
        }
        if policy.initial_backoff > policy.max_backoff {
            let span = raw
                .initial_backoff
                .as_ref()
                .or(raw.max_backoff.as_ref())
                .map(Spanned::span);
            if let Some(span) = span {
                self.report(
                    span,
                    &key("initial_backoff"),
                    "must not be longer than max_backoff",
                );
            }
        }
        policy
    }
}

/// Parses and validates config text; the problems on failure.
pub(super) fn parse(text: &str, path: &Path) -> Result<Config, Vec<Problem>> {
    let mut check = Checker::new(text, None);
    check.scan_for_tokens();
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(err) => {
            check.syntax_error(&err);
            return Err(check.problems);
        }
    };
    let root = root.into_inner();

    let mut supervisor_table = None;
    let mut bot_table = None;
    let mut include = None;
    for (key, value) in root {
        let span = value.span();
        match (key.get_ref().as_ref(), value.into_inner()) {
            ("supervisor", DeValue::Table(table)) => supervisor_table = Some((span, table)),
            ("bot", DeValue::Table(table)) => bot_table = Some((span, table)),
            ("include", value) => include = Some((span, value)),
            ("supervisor" | "bot", _) => check.report(span, key.get_ref(), "must be a table"),
            (other, _) => check.report(
                key.span(),
                other,
                format!(
                    "unknown key `{other}`; the top level has `include`, `[supervisor]` and \
                     `[bot.<name>]` tables"
                ),
            ),
        }
    }

    let raw_supervisor = match supervisor_table {
        Some((span, table)) => check.table::<RawSupervisor>("supervisor", span, table),
        None => Some(RawSupervisor::default()),
    };
    let supervisor = raw_supervisor
        .as_ref()
        .map(|raw| supervisor_settings(&mut check, raw, path));
    let supervisor_ok = supervisor.clone().unwrap_or_default();

    let mut bots = Vec::new();
    if let Some((_, table)) = bot_table {
        for (name, value) in table {
            if let Some(bot) = bot_config(&mut check, &supervisor_ok, name, value, path) {
                bots.push(bot);
            }
        }
    }

    // Bots from included files.
    if let Some((span, value)) = include {
        include_files(&mut check, &supervisor_ok, path, span, value, &mut bots);
    }

    // One name, one bot, whichever file defines it (a map: thousands of
    // bots are checked at each SIGHUP).
    let mut by_name: std::collections::HashMap<&str, &BotConfig> =
        std::collections::HashMap::with_capacity(bots.len());
    for bot in &bots {
        if let Some(first) = by_name.get(bot.name.as_str()).copied() {
            let there = first.file.as_deref().unwrap_or(path).display().to_string();
            check.problems.push(Problem {
                at: bot.at,
                file: bot.file.clone(),
                key: format!("bot.{}", bot.name),
                message: format!(
                    "bot {} is already defined at {there}:{}",
                    bot.name, first.at
                ),
            });
        } else {
            by_name.insert(bot.name.as_str(), bot);
        }
    }

    // Two running bots with one token would end each other's long polls.
    // By the file, or by the variable for a bot without a file.
    let mut by_token: std::collections::HashMap<(Option<&Path>, &str), &BotConfig> =
        std::collections::HashMap::with_capacity(bots.len());
    for bot in bots.iter().filter(|b| b.enabled) {
        let key = match bot.token_file.as_deref() {
            Some(file) => (Some(file), ""),
            None => (None, bot.token_env.as_str()),
        };
        if let Some(first) = by_token.get(&key).copied() {
            check.problems.push(Problem {
                at: bot.token_env_at,
                file: bot.file.clone(),
                key: format!("bot.{}.{}", bot.name, bot.token_key()),
                message: format!(
                    "{} is already the token of bot {}; two bots polling with one token end each other's polls",
                    bot.token_source(),
                    first.name
                ),
            });
        } else {
            by_token.insert(key, bot);
        }
    }

    // Alerts need a bot that runs to send them.
    if let Some(alerts) = raw_supervisor.as_ref().and_then(|raw| raw.alerts.as_ref()) {
        let via = alerts.get_ref().via_bot.get_ref();
        match bots.iter().find(|bot| &bot.name == via) {
            Some(bot) if bot.enabled => {}
            Some(_) => check.report(
                alerts.get_ref().via_bot.span(),
                "supervisor.alerts.via_bot",
                format!("bot {via} is disabled; alerts need an enabled bot to send them"),
            ),
            None => check.report(
                alerts.get_ref().via_bot.span(),
                "supervisor.alerts.via_bot",
                format!("there is no [bot.{via}] in this file"),
            ),
        }
    }

    match supervisor {
        Some(supervisor) if check.problems.is_empty() => Ok(Config {
            path: path.to_path_buf(),
            supervisor,
            bots,
            warnings: check.warnings,
        }),
        _ => {
            check.problems.sort_by(|a, b| {
                (&a.file, a.at.line, a.at.column).cmp(&(&b.file, b.at.line, b.at.column))
            });
            Err(check.problems)
        }
    }
}

fn supervisor_settings(
    check: &mut Checker<'_>,
    raw: &RawSupervisor,
    path: &Path,
) -> SupervisorSettings {
    let default = SupervisorSettings::default();
    let mut settings = SupervisorSettings {
        shutdown_timeout: check.duration(
            "supervisor.shutdown_timeout",
            &raw.shutdown_timeout,
            default.shutdown_timeout,
        ),
        poll_timeout: check.duration(
            "supervisor.poll_timeout",
            &raw.poll_timeout,
            default.poll_timeout,
        ),
        ..default.clone()
    };
    if let Some(timeout) = &raw.shutdown_timeout
        && settings.shutdown_timeout >= HEROKU_KILL_AFTER
    {
        check.warn(
            timeout.span(),
            "supervisor.shutdown_timeout",
            format!(
                "{} is not under 30s: Heroku (and systemd's TimeoutStopSec=35 in README's unit) \
                 kill the process before botvisor has finished stopping; keep it at \"25s\"",
                humantime::format_duration(settings.shutdown_timeout)
            ),
        );
    }
    if let Some(poll) = &raw.poll_timeout {
        if settings.poll_timeout > Duration::from_secs(50) {
            check.report(
                poll.span(),
                "supervisor.poll_timeout",
                "must be at most 50s (Telegram's longest long poll)",
            );
        } else if settings.poll_timeout < Duration::from_secs(1) && !settings.poll_timeout.is_zero()
        {
            check.report(
                poll.span(),
                "supervisor.poll_timeout",
                "must be at least 1s (shorter polls are not long polling)",
            );
        }
    }
    if let Some(level) = &raw.log_level {
        match tracing_subscriber::EnvFilter::builder().parse(level.get_ref()) {
            Ok(_) => settings.log_level = level.get_ref().clone(),
            Err(err) => check.report(
                level.span(),
                "supervisor.log_level",
                format!(
                    "is not a log filter ({err}); write e.g. \"info\" or \"botvisor=debug,info\""
                ),
            ),
        }
    }
    if let Some(format) = &raw.log_format {
        match format.get_ref().as_str() {
            "text" => settings.log_format = LogFormat::Text,
            "json" => settings.log_format = LogFormat::Json,
            other => check.report(
                format.span(),
                "supervisor.log_format",
                format!("`{other}` is not a log format; use \"text\" or \"json\""),
            ),
        }
    }
    if let Some(rotation) = &raw.log_rotation {
        match rotation.get_ref().as_str() {
            "hourly" => settings.log_rotation = LogRotation::Hourly,
            "daily" => settings.log_rotation = LogRotation::Daily,
            "never" => settings.log_rotation = LogRotation::Never,
            other => check.report(
                rotation.span(),
                "supervisor.log_rotation",
                format!("`{other}` is not a rotation; use \"hourly\", \"daily\" or \"never\""),
            ),
        }
    }
    if let Some(dir) = &raw.log_dir {
        if dir.get_ref().trim().is_empty() {
            check.report(dir.span(), "supervisor.log_dir", "must not be empty");
        } else {
            settings.log_dir = Some(resolve(path, dir.get_ref()));
        }
    }
    if let Some(url) = &raw.api_url
        && let Some(url) = check.url("supervisor.api_url", url)
    {
        settings.api_url = url;
    }
    if let Some(restart) = &raw.restart {
        settings.restart = check.restart("supervisor.restart", restart, &default.restart);
    }
    if let Some(store) = &raw.store {
        let value = store.get_ref().trim();
        let sqlite_path = value
            .strip_prefix("sqlite:")
            .map(|p| p.trim_start_matches("//"));
        match sqlite_path {
            Some("") => check.report(store.span(), "supervisor.store", "names no SQLite file"),
            Some(_) => settings.store = value.to_owned(),
            None if super::is_postgres_url(value) => match url::Url::parse(value) {
                Ok(_) => settings.store = value.to_owned(),
                Err(err) => check.report(
                    store.span(),
                    "supervisor.store",
                    format!("is not a URL: {err}"),
                ),
            },
            None => check.report(
                store.span(),
                "supervisor.store",
                "must be \"sqlite:<file>\" or a postgres:// URL",
            ),
        }
    }
    for id in raw.operators.iter().flatten() {
        if *id.get_ref() > 0 {
            settings.operators.push(*id.get_ref());
        } else {
            check.report(
                id.span(),
                "supervisor.operators",
                "must be Telegram user ids (positive whole numbers)",
            );
        }
    }
    if let Some(after) = &raw.watchdog_after {
        let limit = check.duration(
            "supervisor.watchdog_after",
            &raw.watchdog_after,
            Duration::ZERO,
        );
        if !limit.is_zero() && limit < settings.poll_timeout + Duration::from_secs(5) {
            check.report(
                after.span(),
                "supervisor.watchdog_after",
                "must be at least poll_timeout + 5s: an idle long poll takes poll_timeout, \
                 and the network some more",
            );
        } else if !limit.is_zero() {
            settings.watchdog_after = Some(limit);
        }
    }
    if let Some(http) = &raw.http {
        let listen = http.listen.get_ref().trim();
        let probe = listen.replace("$PORT", "0");
        match probe.parse::<std::net::SocketAddr>() {
            Ok(_) => {
                settings.http = Some(super::HttpSettings {
                    listen: listen.to_owned(),
                });
            }
            Err(_) => check.report(
                http.listen.span(),
                "supervisor.http.listen",
                "must be an address and port such as \"127.0.0.1:9090\" or \"0.0.0.0:$PORT\"",
            ),
        }
    }
    if let Some(webhook) = &raw.webhook {
        let raw_webhook = webhook.get_ref();
        let mut settings_webhook = super::WebhookSettings::default();
        let url = raw_webhook
            .public_url
            .get_ref()
            .trim()
            .trim_end_matches('/');
        match public_url_problem(url) {
            None => settings_webhook.public_url = url.to_owned(),
            Some(problem) => check.report(
                raw_webhook.public_url.span(),
                "supervisor.webhook.public_url",
                problem,
            ),
        }
        if let Some(max) = &raw_webhook.max_connections {
            match u32::try_from(*max.get_ref()) {
                Ok(value) if (1..=100).contains(&value) => {
                    settings_webhook.max_connections = value;
                }
                _ => check.report(
                    max.span(),
                    "supervisor.webhook.max_connections",
                    "must be a whole number from 1 to 100 (Telegram's range)",
                ),
            }
        }
        settings.webhook = Some(settings_webhook);
    }
    if let Some(alerts) = &raw.alerts {
        let raw_alerts = alerts.get_ref();
        let mut max_per_hour = 20;
        if let Some(max) = &raw_alerts.max_per_hour {
            match u32::try_from(*max.get_ref()) {
                Ok(value) if value > 0 => max_per_hour = value,
                _ => check.report(
                    max.span(),
                    "supervisor.alerts.max_per_hour",
                    "must be a whole number of at least 1",
                ),
            }
        }
        if *raw_alerts.chat_id.get_ref() == 0 {
            check.report(
                raw_alerts.chat_id.span(),
                "supervisor.alerts.chat_id",
                "must be a chat id (a user id, or a group's negative id)",
            );
        }
        settings.alerts = Some(super::AlertSettings {
            chat_id: *raw_alerts.chat_id.get_ref(),
            via_bot: raw_alerts.via_bot.get_ref().clone(),
            max_per_hour,
        });
    }
    if let Some(outbox) = &raw.outbox {
        settings.outbox = outbox_settings(check, outbox, &default.outbox);
    }
    if let Some(gateway) = &raw.gateway {
        settings.gateway = super::process::gateway(check, gateway, path);
    }
    if let Some(fleet) = &raw.fleet {
        settings.fleet = fleet_settings(check, fleet);
    }
    if let Some(store_env) = &raw.store_env {
        if ENV_NAME.is_match(store_env.get_ref()) {
            settings.store_env = store_env.get_ref().clone();
        } else {
            check.report(
                store_env.span(),
                "supervisor.store_env",
                "must be the name of an environment variable",
            );
        }
    }
    settings
}

fn outbox_settings(
    check: &mut Checker<'_>,
    raw: &RawOutbox,
    default: &super::OutboxSettings,
) -> super::OutboxSettings {
    let mut count = |key: &str, value: &Option<Spanned<i64>>, default: u32, min: u32| match value {
        None => default,
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(v) if v >= min => v,
            _ => {
                let what = if min == 0 {
                    "must be a whole number, 0 or more (0 switches the limit off)"
                } else {
                    "must be a whole number of at least 1"
                };
                check.report(n.span(), &format!("supervisor.outbox.{key}"), what);
                default
            }
        },
    };
    let settings = super::OutboxSettings {
        pacing: raw.pacing.unwrap_or(default.pacing),
        per_chat_per_second: count(
            "per_chat_per_second",
            &raw.per_chat_per_second,
            default.per_chat_per_second,
            0,
        ),
        per_group_per_minute: count(
            "per_group_per_minute",
            &raw.per_group_per_minute,
            default.per_group_per_minute,
            0,
        ),
        per_bot_per_second: count(
            "per_bot_per_second",
            &raw.per_bot_per_second,
            default.per_bot_per_second,
            0,
        ),
        max_per_chat: count("max_per_chat", &raw.max_per_chat, default.max_per_chat, 1),
        max_age: default.max_age,
    };
    super::OutboxSettings {
        max_age: check.duration("supervisor.outbox.max_age", &raw.max_age, default.max_age),
        ..settings
    }
}

fn bot_config(
    check: &mut Checker<'_>,
    supervisor: &SupervisorSettings,
    name: Spanned<toml::de::DeString<'_>>,
    value: Spanned<DeValue<'_>>,
    path: &Path,
) -> Option<BotConfig> {
    let name_span = name.span();
    let name = name.into_inner().into_owned();
    // Keys in messages show at most the start of a name too long to be one.
    let prefix = if name.chars().count() > 64 {
        format!("bot.{}…", name.chars().take(20).collect::<String>())
    } else {
        format!("bot.{name}")
    };
    if !BOT_NAME.is_match(&name) {
        // A very long name is not repeated: the message must stay one line.
        let shown = if name.chars().count() > 64 {
            format!("a name of {} characters", name.chars().count())
        } else {
            format!("`{name}`")
        };
        check.report(
            name_span.clone(),
            &prefix,
            format!(
                "{shown} is not a bot name; use 1 to 64 lowercase letters, digits, `_` and `-`"
            ),
        );
    }
    let span = value.span();
    let DeValue::Table(table) = value.into_inner() else {
        check.report(span, &prefix, "must be a table: write `[bot.<name>]`");
        return None;
    };
    // Split the common keys from the kind's own, so each half can be checked
    // strictly by serde with `deny_unknown_fields`.
    let mut common = DeTable::new();
    let mut own = DeTable::new();
    for (key, value) in table {
        if COMMON_BOT_KEYS.contains(&key.get_ref().as_ref()) {
            common.insert(key, value);
        } else {
            own.insert(key, value);
        }
    }
    let raw: RawBot = check.table(&prefix, name_span.clone(), common)?;

    let kind_name = raw.kind.get_ref().as_str();
    let kind_key = format!("{prefix}.kind");
    let kind = match kind_name {
        "faq" => faq_settings(check, &prefix, span.clone(), name_span.clone(), own, path),
        "announcements" => check
            .table::<announcements::RawAnnouncements>(&prefix, span.clone(), own)
            .and_then(|raw| announcements::validate(check, &prefix, raw))
            .map(|settings| KindSettings::Announcements(Box::new(settings))),
        "process" => check
            .table::<super::process::RawProcess>(&prefix, span.clone(), own)
            .and_then(|raw| super::process::validate(check, &prefix, raw, path))
            .map(KindSettings::Process),
        "echo" => check
            .table::<RawEcho>(&prefix, span.clone(), own)
            .map(|raw| {
                let default = EchoSettings::default();
                KindSettings::Echo(EchoSettings {
                    slow_for: check.duration(
                        &format!("{prefix}.slow_for"),
                        &raw.slow_for,
                        default.slow_for,
                    ),
                    panic_on: raw.panic_on,
                    slow_on: raw.slow_on,
                })
            }),
        other => {
            check.report(
                raw.kind.span(),
                &kind_key,
                format!("unknown kind `{other}`; the kinds are {}", KINDS.join(", ")),
            );
            None
        }
    };

    // The token: an environment variable, or a file (Docker secrets,
    // systemd credentials), never both.
    let (token_env, token_file, token_at) = match (&raw.token_env, &raw.token_file) {
        (Some(env), None) => {
            let token_env = env.get_ref().trim().to_owned();
            // A token written here is already reported by the whole-file scan.
            if !ENV_NAME.is_match(&token_env) && !TOKEN_SHAPE.is_match(&token_env) {
                check.report(
                    env.span(),
                    &format!("{prefix}.token_env"),
                    "must be the name of an environment variable (1 to 128 letters, digits and `_`), not the token itself",
                );
            }
            (token_env, None, check.at(env.span()))
        }
        (None, Some(file)) => {
            let value = file.get_ref().trim();
            if value.is_empty() {
                check.report(
                    file.span(),
                    &format!("{prefix}.token_file"),
                    "must name a file",
                );
            }
            (
                String::new(),
                Some(resolve(path, value)),
                check.at(file.span()),
            )
        }
        (Some(_), Some(file)) => {
            check.report(
                file.span(),
                &format!("{prefix}.token_file"),
                "give token_env or token_file, not both",
            );
            return None;
        }
        (None, None) => {
            check.report(
                name_span.clone(),
                &prefix,
                "needs token_env (the environment variable that holds its token) or token_file \
                 (a file that holds it)",
            );
            return None;
        }
    };
    let api_url = match &raw.api_url {
        Some(url) => check.url(&format!("{prefix}.api_url"), url),
        None => Some(supervisor.api_url.clone()),
    };
    let restart = match &raw.restart {
        Some(restart) => check.restart(&format!("{prefix}.restart"), restart, &supervisor.restart),
        None => supervisor.restart.clone(),
    };
    let delivery = match raw.delivery.as_ref().map(|d| (d, d.get_ref().trim())) {
        None | Some((_, "polling")) => super::Delivery::Polling,
        Some((spanned, "webhook")) => {
            let ready = supervisor.http.is_some()
                && supervisor
                    .webhook
                    .as_ref()
                    .is_some_and(|w| !w.public_url.is_empty());
            if !ready {
                check.report(
                    spanned.span(),
                    &format!("{prefix}.delivery"),
                    "a webhook bot needs [supervisor.http] listen (where Telegram's requests \
                     arrive) and [supervisor.webhook] public_url (the address Telegram calls)",
                );
            }
            super::Delivery::Webhook
        }
        Some((spanned, other)) => {
            check.report(
                spanned.span(),
                &format!("{prefix}.delivery"),
                format!(
                    "`{}` is not a delivery; use \"polling\" or \"webhook\"",
                    crate::sanitize::excerpt(other, 40)
                ),
            );
            super::Delivery::Polling
        }
    };
    Some(BotConfig {
        name,
        kind: kind?,
        delivery,
        token_env_at: token_at,
        token_env,
        token_file,
        at: check.at(name_span),
        file: None,
        enabled: raw.enabled.unwrap_or(true),
        api_url: api_url?,
        restart,
    })
}

/// Included config files at most: enough for every bot in a file of its
/// own at the scale botvisor aims at.
const MAX_INCLUDED: usize = 20_000;

/// Reads the bots of the files `include` names (a list of paths, each
/// relative to the config's folder, with `*` and `?` in the file name:
/// `"bots.d/*.toml"`), in the order of the list and, within a pattern, of
/// the file names. Each file holds `[bot.<name>]` tables only, checked with
/// its own positions; relative paths in it resolve against its folder.
fn include_files(
    check: &mut Checker<'_>,
    supervisor: &SupervisorSettings,
    config_path: &Path,
    span: Range<usize>,
    value: DeValue<'_>,
    bots: &mut Vec<BotConfig>,
) {
    let DeValue::Array(items) = value else {
        check.report(
            span,
            "include",
            "must be a list of file patterns, e.g. [\"bots.d/*.toml\"]",
        );
        return;
    };
    let mut read = 0usize;
    for item in items {
        let item_span = item.span();
        let DeValue::String(pattern) = item.into_inner() else {
            check.report(
                item_span,
                "include",
                "must be a list of text, e.g. [\"bots.d/*.toml\"]",
            );
            continue;
        };
        let files = match super::include::expand(config_path, &pattern) {
            Ok(files) => files,
            Err(problem) => {
                check.report(item_span, "include", problem);
                continue;
            }
        };
        for file in files {
            read += 1;
            if read > MAX_INCLUDED {
                check.report(
                    item_span.clone(),
                    "include",
                    format!("includes more than {MAX_INCLUDED} files"),
                );
                return;
            }
            if same_file(&file, config_path) {
                continue;
            }
            include_file(check, supervisor, &file, bots);
        }
    }
}

/// Whether two paths name one file (`./supervisor.toml` and
/// `supervisor.toml`, a symlink), so the config never includes itself.
pub(super) fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => a == b,
    }
}

/// The bots of one included file.
fn include_file(
    outer: &mut Checker<'_>,
    supervisor: &SupervisorSettings,
    file: &Path,
    bots: &mut Vec<BotConfig>,
) {
    let text = match super::read_text(file) {
        Ok(text) => text,
        Err(err) => {
            outer.problems.push(err.problem(Some(file.to_path_buf())));
            return;
        }
    };
    let mut check = Checker::new(&text, Some(file.to_path_buf()));
    check.scan_for_tokens();
    match DeTable::parse(&text) {
        Err(err) => check.syntax_error(&err),
        Ok(root) => {
            for (key, value) in root.into_inner() {
                let span = value.span();
                match (key.get_ref().as_ref(), value.into_inner()) {
                    ("bot", DeValue::Table(table)) => {
                        for (name, value) in table {
                            if let Some(mut bot) =
                                bot_config(&mut check, supervisor, name, value, file)
                            {
                                bot.file = Some(file.to_path_buf());
                                bots.push(bot);
                            }
                        }
                    }
                    ("bot", _) => check.report(span, "bot", "must be a table"),
                    (other, _) => check.report(
                        key.span(),
                        other,
                        "an included file holds `[bot.<name>]` tables only",
                    ),
                }
            }
        }
    }
    outer.absorb(check);
}

/// What is wrong with a webhook `public_url` (after `$VAR`s stand for a
/// plain name), if anything: it must be an https URL with a host, or http
/// on a loopback address (a local test). Telegram calls it.
pub fn public_url_problem(url: &str) -> Option<String> {
    static VAR: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\$[A-Za-z_][A-Za-z0-9_]*").expect("the pattern is valid"));
    let probe = VAR.replace_all(url, "placeholder");
    let Ok(parsed) = Url::parse(&probe) else {
        return Some(
            "must be a URL such as \"https://<app>.herokuapp.com\" (without a path)".to_owned(),
        );
    };
    let loopback = match parsed.host() {
        Some(url::Host::Domain(name)) => name == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Some("must name a host".to_owned()),
    };
    match parsed.scheme() {
        "https" => None,
        "http" if loopback => None,
        "http" => Some(
            "must be https: Telegram calls webhooks over https only (http is allowed on a \
             loopback address, for local tests)"
                .to_owned(),
        ),
        _ => Some("must be an https:// URL".to_owned()),
    }
    .or_else(|| {
        (parsed.query().is_some() || parsed.fragment().is_some())
            .then(|| "must not have a query or a fragment".to_owned())
    })
}

/// A path from the config, resolved against the config file's folder.
pub(super) fn resolve(config_path: &Path, value: &str) -> PathBuf {
    let value = Path::new(value.trim());
    if value.is_absolute() {
        value.to_path_buf()
    } else {
        super::config_dir(config_path).join(value)
    }
}

fn without_trailing_slash(url: Url) -> Url {
    let text = url.as_str().trim_end_matches('/').to_owned();
    Url::parse(&text).unwrap_or(url)
}

/// toml's messages end with a newline and sometimes repeat the position.
pub(super) fn tidy_toml_message(message: &str) -> String {
    let message = message.trim().trim_end_matches('.');
    if message == "duplicate key" {
        "duplicate key: this table or key is defined twice".to_owned()
    } else {
        message.to_owned()
    }
}

fn tidy_serde_message(message: &str) -> String {
    let message = tidy_toml_message(message);
    match message.strip_prefix("unknown field ") {
        Some(rest) => format!("unknown key {rest}"),
        None => match message.strip_prefix("missing field ") {
            Some(rest) => format!("missing key {rest}"),
            None => message,
        },
    }
}

/// serde's type errors (`invalid type: integer `25`, expected a string`,
/// `data did not match any variant of untagged enum Number`) in plain
/// words: what the key must be and, when serde says, what was written.
/// `None` for other messages.
fn plain_type_message(message: &str) -> Option<(String, Option<String>)> {
    let message = message.trim().trim_end_matches('.');
    if message.contains("untagged enum Number") {
        return Some(("a number, e.g. 2 or 1.5".to_owned(), None));
    }
    let rest = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))?;
    let (found, expected) = rest.rsplit_once(", expected ")?;
    let expected = match expected.trim() {
        "a string" | "a borrowed string" | "string" => "text in double quotes".to_owned(),
        "a boolean" | "bool" => "true or false".to_owned(),
        "u64" | "u32" | "u16" | "u8" | "usize" => "a positive whole number".to_owned(),
        "i64" | "i32" | "i16" | "i8" | "isize" | "an integer" => "a whole number".to_owned(),
        "f64" | "f32" | "a float" => "a number".to_owned(),
        "a sequence" => "a list in square brackets, e.g. [1, 2]".to_owned(),
        other if other.starts_with("struct ") || other == "a map" || other == "a table" => {
            "a table".to_owned()
        }
        other => other.to_owned(),
    };
    Some((expected, Some(describe_found(found.trim()))))
}

/// serde's description of a value (`integer `25``, `string "yes"`) in
/// plain words.
fn describe_found(found: &str) -> String {
    let quoted = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .map(|v| v.trim().trim_matches('`').to_owned())
    };
    if let Some(n) = quoted("integer ").or_else(|| quoted("floating point ")) {
        format!("the number {n}")
    } else if let Some(b) = quoted("boolean ") {
        b
    } else if let Some(s) = found.strip_prefix("string ") {
        format!("the text {s}")
    } else if found == "sequence" {
        "a list".to_owned()
    } else if found == "map" {
        "a table".to_owned()
    } else {
        found.to_owned()
    }
}

/// The dotted key a value at `offset` belongs to, read back from the text:
/// the key before its `=` (for a list spread over lines, the line that
/// opens it), under the nearest `[table]` header. `None` when the text does
/// not show it plainly.
fn key_before(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let mut key = None;
    for (i, line) in before.rsplit('\n').enumerate().take(200) {
        let trimmed = line.trim();
        if let Some(header) = trimmed.strip_prefix('[') {
            let header = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            // A value on the header's own line is an inline table's; give up.
            if i == 0 {
                return None;
            }
            return key.map(|k: String| {
                if header.is_empty() {
                    k
                } else {
                    format!("{header}.{k}")
                }
            });
        }
        if key.is_none()
            && let Some((name, _)) = line.split_once('=')
        {
            let name = name.trim();
            if !KEY.is_match(name) {
                return None;
            }
            key = Some(name.trim_matches('"').to_owned());
        }
    }
    key
}

/// The line where the table header or key defined again at `offset` was
/// first defined, if the text shows it.
fn first_definition(text: &str, offset: usize) -> Option<usize> {
    let line_start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..]
        .find('\n')
        .map_or(text.len(), |i| line_start + i);
    let this = text[line_start..line_end].trim();
    let lines: Vec<&str> = text[..line_start].lines().collect();
    if this.starts_with('[') {
        let header = this.split(']').next()?;
        return lines
            .iter()
            .position(|l| l.trim().split(']').next() == Some(header))
            .map(|i| i + 1);
    }
    let (name, _) = this.split_once('=')?;
    let name = name.trim();
    // The first definition is in the same table: look back to its header.
    for (i, line) in lines.iter().enumerate().rev() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            return None;
        }
        if let Some((other, _)) = trimmed.split_once('=')
            && other.trim() == name
        {
            return Some(i + 1);
        }
    }
    None
}

/// A `faq` bot's settings: its content, inline or from a file.
fn faq_settings(
    check: &mut Checker<'_>,
    prefix: &str,
    span: Range<usize>,
    name_span: Range<usize>,
    own: DeTable<'_>,
    path: &Path,
) -> Option<KindSettings> {
    // The inline content table is taken out before serde sees the rest, so
    // it can be validated with its own positions.
    let mut rest = DeTable::new();
    let mut inline = None;
    for (key, value) in own {
        if key.get_ref() == "content" {
            inline = Some(value);
        } else {
            rest.insert(key, value);
        }
    }
    let raw: RawFaq = check.table(prefix, span, rest)?;
    let content_key = format!("{prefix}.content");
    let content = match (inline, &raw.content_file) {
        (Some(_), Some(file)) => {
            check.report(
                file.span(),
                &format!("{prefix}.content_file"),
                "give the content either inline in `[bot.<name>.content]` or in `content_file`, not both",
            );
            None
        }
        (Some(value), None) => faq::inline(check, &content_key, value),
        (None, Some(file)) => faq::load_file(check, &format!("{prefix}.content_file"), file, path),
        (None, None) => {
            check.report(
                name_span,
                prefix,
                "a faq bot needs its content: `content_file = \"<file>\"` or a `[bot.<name>.content]` table",
            );
            None
        }
    }?;
    Some(KindSettings::Faq(FaqSettings {
        content,
        content_file: raw.content_file.map(|f| resolve(path, f.get_ref())),
    }))
}

/// The `[supervisor.fleet]` table.
fn fleet_settings(check: &mut Checker<'_>, raw: &RawFleet) -> super::FleetSettings {
    let default = super::FleetSettings::default();
    let mut settings = super::FleetSettings {
        weight: default.weight,
        lease_ttl: check.duration(
            "supervisor.fleet.lease_ttl",
            &raw.lease_ttl,
            default.lease_ttl,
        ),
    };
    if let Some(weight) = &raw.weight {
        match u32::try_from(*weight.get_ref()) {
            Ok(value) if value <= 1000 => settings.weight = value,
            _ => check.report(
                weight.span(),
                "supervisor.fleet.weight",
                "must be a whole number from 0 (this instance holds no bot) to 1000",
            ),
        }
    }
    if let Some(ttl) = &raw.lease_ttl
        && !(Duration::from_secs(3)..=Duration::from_secs(300)).contains(&settings.lease_ttl)
    {
        check.report(
            ttl.span(),
            "supervisor.fleet.lease_ttl",
            "must be from 3s to 5m: a bot of an instance that died waits this long for another",
        );
        settings.lease_ttl = default.lease_ttl;
    }
    settings
}
