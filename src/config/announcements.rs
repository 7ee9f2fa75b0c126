//! The `announcements` kind's settings: where the announcements are read
//! from, how often, what the relay's commands are called, and who may list
//! the subscribed chats.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use url::Url;

use super::raw::Checker;

/// Settings of an `announcements` bot (the Duyuru relay).
#[derive(Clone, Debug, PartialEq)]
pub struct AnnouncementsSettings {
    /// The page listing the announcements.
    pub list_url: Url,
    /// CSS selector of the announcement links on the list page.
    pub link_selector: String,
    /// CSS selector of the text on an announcement's page.
    pub text_selector: String,
    /// A regex whose first group takes the id from a link; without it, the
    /// link's last path segment is the id.
    pub id_pattern: Option<String>,
    pub check_every: Duration,
    pub request_timeout: Duration,
    /// An announcement whose text contains this is not relayed.
    pub skip_marker: Option<String>,
    /// At most this many new announcements are relayed per check.
    pub max_per_check: u32,
    pub user_agent: String,
    /// Chats (e.g. channels) that always receive announcements.
    pub extra_chats: Vec<i64>,
    /// Users who may list the subscribed chats.
    pub admins: Vec<u64>,
    /// A chat told once when the link selector stops finding announcements
    /// (and once when it finds them again).
    pub alert_chat: Option<i64>,
    /// The credits (`/hakkinda`).
    pub about: String,
    /// The department's web site (`/web_sayfasi`).
    pub web_url: String,
    pub commands: CommandNames,
}

/// What the relay's commands are called (without `/`).
#[derive(Clone, Debug, PartialEq)]
pub struct CommandNames {
    pub start: String,
    pub stop: String,
    pub list: String,
    pub help: String,
    pub about: String,
    pub web: String,
}

impl Default for CommandNames {
    fn default() -> Self {
        CommandNames {
            start: "start".to_owned(),
            stop: "stop".to_owned(),
            list: "dict".to_owned(),
            help: "help".to_owned(),
            about: "hakkinda".to_owned(),
            web: "web_sayfasi".to_owned(),
        }
    }
}

/// The shortest `check_every` for a site on another machine.
pub const MIN_CHECK_EVERY: Duration = Duration::from_secs(30);
/// The shortest `check_every` for a site on this machine (tests).
pub const MIN_CHECK_EVERY_LOCAL: Duration = Duration::from_millis(100);
/// A `check_every` under this is legal, with a warning.
pub const WARN_CHECK_EVERY: Duration = Duration::from_secs(5 * 60);
/// The shortest `request_timeout`.
pub const MIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(1);

/// Defaults for the optional settings.
pub const DEFAULT_CHECK_EVERY: Duration = Duration::from_secs(600);
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
pub const DEFAULT_MAX_PER_CHECK: u32 = 10;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnnouncements {
    list_url: Spanned<String>,
    link_selector: Spanned<String>,
    text_selector: Spanned<String>,
    #[serde(default)]
    id_pattern: Option<Spanned<String>>,
    #[serde(default)]
    check_every: Option<Spanned<String>>,
    #[serde(default)]
    request_timeout: Option<Spanned<String>>,
    #[serde(default)]
    skip_marker: Option<String>,
    #[serde(default)]
    max_per_check: Option<Spanned<i64>>,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    extra_chats: Vec<i64>,
    #[serde(default)]
    admins: Vec<u64>,
    #[serde(default)]
    alert_chat: Option<i64>,
    #[serde(default)]
    about: Option<String>,
    #[serde(default)]
    web_url: Option<Spanned<String>>,
    #[serde(default)]
    commands: Option<RawCommandNames>,
}

#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct RawCommandNames {
    start: Option<Spanned<String>>,
    stop: Option<Spanned<String>>,
    list: Option<Spanned<String>>,
    help: Option<Spanned<String>>,
    about: Option<Spanned<String>>,
    web: Option<Spanned<String>>,
}

/// Validates the settings; `prefix` is the bot's dotted key.
pub(super) fn validate(
    check: &mut Checker<'_>,
    prefix: &str,
    raw: RawAnnouncements,
) -> Option<AnnouncementsSettings> {
    let before = check.problems.len();
    let key = |name: &str| format!("{prefix}.{name}");
    let list_url = check.url(&key("list_url"), &raw.list_url);
    for (name, selector) in [
        ("link_selector", &raw.link_selector),
        ("text_selector", &raw.text_selector),
    ] {
        if let Err(err) = scraper::Selector::parse(selector.get_ref()) {
            check.report(
                selector.span(),
                &key(name),
                format!(
                    "`{}` is not a CSS selector: {}; write e.g. \"div.ann-list ul li a\"",
                    shorten(selector.get_ref()),
                    describe_selector_error(&err)
                ),
            );
        }
    }
    if let Some(pattern) = &raw.id_pattern {
        match regex::Regex::new(pattern.get_ref()) {
            Ok(re) if re.captures_len() == 2 => {}
            Ok(_) => check.report(
                pattern.span(),
                &key("id_pattern"),
                "must have exactly one capture group `( )`",
            ),
            Err(err) => check.report(
                pattern.span(),
                &key("id_pattern"),
                format!("is not a regex: {err}"),
            ),
        }
    }
    let check_every = check.duration(&key("check_every"), &raw.check_every, DEFAULT_CHECK_EVERY);
    // A site on this machine is a test's or the benchmark's: it may be read
    // as often as they like. Anyone else's site gets a floor, so a typo
    // ("1ms") cannot turn the relay into a flood of requests.
    let local_site = list_url
        .as_ref()
        .and_then(Url::host_str)
        .is_some_and(|host| matches!(host, "127.0.0.1" | "localhost" | "[::1]"));
    if let Some(every) = &raw.check_every {
        let floor = if local_site {
            MIN_CHECK_EVERY_LOCAL
        } else {
            MIN_CHECK_EVERY
        };
        if check_every < floor {
            check.report(
                every.span(),
                &key("check_every"),
                format!(
                    "must be at least {}: the relay reads the site this often, and more \
                     often only loads the department's server",
                    humantime::format_duration(floor)
                ),
            );
        } else if !local_site && check_every < WARN_CHECK_EVERY {
            check.warn(
                every.span(),
                &key("check_every"),
                format!(
                    "reads the site {} times an hour; announcements appear a few times a week, \
                     so \"10m\" is plenty",
                    3600 / check_every.as_secs().max(1)
                ),
            );
        }
    }
    let request_timeout = check.duration(
        &key("request_timeout"),
        &raw.request_timeout,
        DEFAULT_REQUEST_TIMEOUT,
    );
    if let Some(timeout) = &raw.request_timeout
        && request_timeout < MIN_REQUEST_TIMEOUT
    {
        check.report(
            timeout.span(),
            &key("request_timeout"),
            "must be at least 1s: a page from a real server takes longer than that to arrive",
        );
    }
    let max_per_check = match &raw.max_per_check {
        Some(n) => match u32::try_from(*n.get_ref()) {
            Ok(value) if value > 0 => value,
            _ => {
                check.report(
                    n.span(),
                    &key("max_per_check"),
                    "must be a whole number of at least 1",
                );
                DEFAULT_MAX_PER_CHECK
            }
        },
        None => DEFAULT_MAX_PER_CHECK,
    };
    let web_url = match &raw.web_url {
        Some(url) => check.url(&key("web_url"), url).map(|u| u.to_string()),
        None => Some("https://mdbf.btu.edu.tr/bilgisayar".to_owned()),
    };
    let defaults = CommandNames::default();
    let names = raw.commands.unwrap_or_default();
    let mut name = |field: &str, value: &Option<Spanned<String>>, default: &str| -> String {
        let Some(value) = value else {
            return default.to_owned();
        };
        let text = value.get_ref().trim().trim_start_matches('/').to_owned();
        let valid = !text.is_empty()
            && text.len() <= 32
            && text
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
        if !valid {
            check.report(
                value.span(),
                &key(&format!("commands.{field}")),
                format!("`{text}` is not a command name: use 1 to 32 of a-z, 0-9 and _"),
            );
        }
        text
    };
    let commands = CommandNames {
        start: name("start", &names.start, &defaults.start),
        stop: name("stop", &names.stop, &defaults.stop),
        list: name("list", &names.list, &defaults.list),
        help: name("help", &names.help, &defaults.help),
        about: name("about", &names.about, &defaults.about),
        web: name("web", &names.web, &defaults.web),
    };
    let all = [
        &commands.start,
        &commands.stop,
        &commands.list,
        &commands.help,
        &commands.about,
        &commands.web,
    ];
    const FIELDS: [&str; 6] = ["start", "stop", "list", "help", "about", "web"];
    for (i, a) in all.iter().enumerate() {
        if let Some(first) = all[..i].iter().position(|b| b == a) {
            let span = [
                &names.start,
                &names.stop,
                &names.list,
                &names.help,
                &names.about,
                &names.web,
            ][i]
                .as_ref()
                .map_or(raw.list_url.span(), Spanned::span);
            check.report(
                span,
                &key(&format!("commands.{}", FIELDS[i])),
                format!(
                    "/{a} is already the name of commands.{}; each command needs its own name",
                    FIELDS[first]
                ),
            );
        }
    }
    (check.problems.len() == before).then_some(AnnouncementsSettings {
        list_url: list_url?,
        link_selector: raw.link_selector.get_ref().clone(),
        text_selector: raw.text_selector.get_ref().clone(),
        id_pattern: raw.id_pattern.map(|p| p.get_ref().clone()),
        check_every,
        request_timeout,
        skip_marker: raw.skip_marker.filter(|m| !m.trim().is_empty()),
        max_per_check,
        user_agent: raw
            .user_agent
            .unwrap_or_else(|| format!("botvisor/{} (announcement relay)", env!("CARGO_PKG_VERSION"))),
        extra_chats: raw.extra_chats,
        admins: raw.admins,
        alert_chat: raw.alert_chat,
        about: raw.about.unwrap_or_else(|| {
            "Bu bot, BTÜ Bilgisayar Mühendisliği Bölümü'nün web sayfasındaki duyuruları Telegram'a aktarır.".to_owned()
        }),
        web_url: web_url?,
        commands,
    })
}

/// At most 80 characters of `text`, for quoting a value in a message.
/// At most 80 characters of `text`, control characters escaped: the
/// message stays one line whatever the file holds.
fn shorten(text: &str) -> String {
    crate::sanitize::excerpt(text, 80)
}

/// What is wrong with a CSS selector, in plain words. scraper's own text
/// for most parser errors is "Unexpected error occurred. Please report
/// this to the developer", which helps nobody; its `Debug` names the case.
fn describe_selector_error(err: &scraper::error::SelectorErrorKind) -> &'static str {
    use scraper::error::SelectorErrorKind as Kind;
    match err {
        Kind::UnexpectedToken => "a character or word that does not belong there",
        Kind::EndOfLine => {
            "it ends too early (an unclosed `[` or `(`, or nothing after `>`, `+` or `~`)"
        }
        Kind::InvalidAtRule | Kind::InvalidAtRuleBody => "an @-rule is not a selector",
        Kind::QualRuleInvalid => "it is not a selector",
        Kind::TooManyNestedBlocks => "it nests too many brackets",
        Kind::ExpectedColonOnPseudoElement | Kind::ExpectedIdentityOnPseudoElement => {
            "a `::` pseudo-element needs a name"
        }
        Kind::UnexpectedSelectorParseError(inner) => {
            let name = format!("{inner:?}");
            match name.as_str() {
                "EmptySelector" => "it is empty",
                "DanglingCombinator" => "a `>`, `+` or `~` has nothing after it",
                "ClassNeedsIdent" => "a `.` must be followed by a class name",
                "NoIdentForPseudo" | "UnsupportedPseudoClassOrElement" => {
                    "it uses a pseudo-class (such as `:hover`) that cannot be used here"
                }
                "ExpectedBarInAttr"
                | "BadValueInAttr"
                | "InvalidQualNameInAttr"
                | "NoQualifiedNameInAttributeSelector"
                | "UnexpectedTokenInAttributeSelector" => {
                    "an attribute test in `[ ]` is malformed; write e.g. `a[href]` or `a[href=\"x\"]`"
                }
                _ => "it is not a selector this parser understands",
            }
        }
    }
}
