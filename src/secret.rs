//! Bot tokens and keeping them out of every line botvisor writes.
//!
//! A [`Token`] never shows its value through `Debug` or `Display`. The
//! [`Redactor`] is the last line of defence: the log writer passes every
//! formatted line through it, so a token that reaches a log by some other
//! road (an HTTP library's URL, an error text) is still replaced. Anything
//! printed to the user goes through it too.

use std::fmt;
use std::sync::{Arc, LazyLock, RwLock};

use regex::Regex;

/// A Bot API token. Only [`Token::expose`] gives the value, to build requests.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Token(Arc<str>);

impl Token {
    pub fn new(value: impl Into<String>) -> Token {
        Token(Arc::from(value.into()))
    }

    /// The token itself, for the HTTP client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The bot's user id, the part before `:`, which is public.
    pub fn bot_id(&self) -> Option<&str> {
        self.0
            .split_once(':')
            .map(|(id, _)| id)
            .filter(|id| !id.is_empty())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Anything shaped like a token, with or without the `bot` prefix of a
/// request path, its colon written plainly, percent-encoded (once or twice)
/// or JSON-escaped.
static TOKEN_SHAPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[0-9]{3,16}(?::|%(?:25)?(?i:3a)|\\{1,2}u(?i:003a))[A-Za-z0-9_-]{20,}")
        .expect("the token pattern is valid")
});

/// A secret part shorter than this is redacted only as part of its whole
/// token: replacing every `x` of a test token `1:x` would make logs unreadable
/// and protect nothing.
const MIN_SECRET_ALONE: usize = 8;

/// Replaces known tokens and token-shaped text with `<redacted>`.
///
/// Each learned token is matched in every form it can travel in: whole or
/// only its secret part (after the colon), and each character as itself,
/// percent-encoded (upper or lower hex, also encoded twice as `%253A`),
/// JSON-escaped (`\u003a`, `\/`, doubled backslashes when JSON sits inside
/// JSON) or as an HTML character reference. One regex covers every learned
/// token; it is built again on each [`Redactor::learn`] (a handful of times
/// per process), so a log line costs one scan.
#[derive(Clone, Default)]
pub struct Redactor {
    known: Arc<RwLock<Known>>,
}

#[derive(Default)]
struct Known {
    tokens: Vec<Arc<str>>,
    /// Shared, not cloned: a cloned `Regex` starts with an empty cache, and
    /// would build its automaton again on every line.
    pattern: Option<Arc<Regex>>,
}

impl Redactor {
    /// The process-wide redactor the logger and the CLI use.
    pub fn global() -> &'static Redactor {
        static GLOBAL: LazyLock<Redactor> = LazyLock::new(Redactor::default);
        &GLOBAL
    }

    /// Remembers a token so it is redacted even when it is not token-shaped
    /// (a self-hosted Bot API server or a test may use any string), and in
    /// every encoding of it.
    pub fn learn(&self, token: &Token) {
        if token.0.len() < 4 {
            return;
        }
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if known.tokens.iter().any(|t| **t == *token.0) {
            return;
        }
        known.tokens.push(token.0.clone());
        // Longest first, so a token that contains another is replaced whole.
        known.tokens.sort_by_key(|t| std::cmp::Reverse(t.len()));
        let alternatives: Vec<String> = known.tokens.iter().map(|t| token_pattern(t)).collect();
        // Built from escaped text only; should the regex still be refused
        // (too large), the previous one stays and the token shape still
        // catches real tokens.
        if let Ok(pattern) = Regex::new(&alternatives.join("|")) {
            known.pattern = Some(Arc::new(pattern));
        }
    }

    /// `text` with every token in it replaced.
    pub fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let pattern = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .pattern
            .clone();
        let mut out = std::borrow::Cow::Borrowed(text);
        if let Some(pattern) = pattern
            && pattern.is_match(&out)
        {
            out = std::borrow::Cow::Owned(pattern.replace_all(&out, "<redacted>").into_owned());
        }
        if TOKEN_SHAPE.is_match(&out) {
            out = std::borrow::Cow::Owned(TOKEN_SHAPE.replace_all(&out, "<redacted>").into_owned());
        }
        out
    }
}

/// The regex for one token: its secret part in any encoding, with the
/// `<id>:` before it when present; or the whole token in any encoding when
/// its secret part is too short to stand alone.
fn token_pattern(token: &str) -> String {
    match token.split_once(':') {
        Some((id, secret)) if secret.chars().count() >= MIN_SECRET_ALONE => {
            format!("(?:{}{})?{}", encoded(id), encoded(":"), encoded(secret))
        }
        _ => encoded(token),
    }
}

/// A regex matching `text` with each character in any of its encodings.
fn encoded(text: &str) -> String {
    text.chars().map(char_pattern).collect()
}

/// A regex group matching one character as itself or in any encoding it
/// can travel in through a URL, JSON or HTML.
fn char_pattern(c: char) -> String {
    let mut forms = vec![regex::escape(c.encode_utf8(&mut [0; 4]))];
    // Percent-encoded, each UTF-8 byte; `%25` is a percent sign encoded
    // once more (a URL quoted inside another URL).
    let mut bytes = [0; 4];
    let percent: String = c
        .encode_utf8(&mut bytes)
        .bytes()
        .map(|b| format!("%(?:25)?(?i:{b:02x})"))
        .collect();
    forms.push(percent);
    let code = u32::from(c);
    if code <= 0xFFFF {
        // JSON's `\u003a`, also with its backslash escaped once more.
        forms.push(format!(r"\\{{1,2}}u(?i:{code:04x})"));
    }
    if matches!(c, '/' | '"' | '\\') {
        // JSON's short escapes (`\/` is optional in JSON, and some servers
        // write it).
        forms.push(format!(r"\\{{1,2}}{}", regex::escape(&c.to_string())));
    }
    // HTML character references, decimal and hex.
    forms.push(format!("&#0*{code};"));
    forms.push(format!("&#(?i:x0*{code:x});"));
    format!("(?:{})", forms.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_never_shows_in_debug_or_display() {
        let token = Token::new("123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw");
        assert_eq!(format!("{token:?}"), "Token(<redacted>)");
        assert_eq!(format!("{token}"), "<redacted>");
        assert_eq!(token.bot_id(), Some("123456789"));
    }

    /// A learned token, shaped like Telegram's.
    const LEARNED: &str = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
    const SECRET: &str = "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";

    fn check(redactor: &Redactor, cases: &[(&str, &str)]) {
        for (input, expected) in cases {
            assert_eq!(redactor.redact(input), *expected, "input: {input}");
        }
    }

    #[test]
    fn redacts_known_and_token_shaped_text() {
        let redactor = Redactor::default();
        redactor.learn(&Token::new("not-a-real-shape"));
        check(
            &redactor,
            &[
                (
                    "error sending request for url (https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/GetUpdates)",
                    "error sending request for url (https://api.telegram.org/bot<redacted>/GetUpdates)",
                ),
                ("GET /botnot-a-real-shape/getMe", "GET /bot<redacted>/getMe"),
                ("nothing secret here: 12:30", "nothing secret here: 12:30"),
                // An unknown token with its colon encoded is still token-shaped.
                (
                    "raw: /bot987654321%3AAAFqW9dX3k2LmNoPqRsTuVwXyZ0123456_-/getMe",
                    "raw: /bot<redacted>/getMe",
                ),
                (
                    r#"{"path":"/bot987654321\u003aAAFqW9dX3k2LmNoPqRsTuVwXyZ0123456_-"}"#,
                    r#"{"path":"/bot<redacted>"}"#,
                ),
            ],
        );
    }

    #[test]
    fn redacts_every_encoding_of_a_learned_token() {
        let redactor = Redactor::default();
        redactor.learn(&Token::new(LEARNED));
        let secret_hex_lower: String = SECRET.bytes().map(|b| format!("%{b:02x}")).collect();
        let secret_hex_upper: String = SECRET.bytes().map(|b| format!("%{b:02X}")).collect();
        let secret_json: String = SECRET.bytes().map(|b| format!("\\u{b:04x}")).collect();
        let cases: Vec<(String, &str)> = vec![
            (format!("/bot{LEARNED}/getMe"), "/bot<redacted>/getMe"),
            (
                "raw: \"/bot123456789%3AAAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/GetMe\"".into(),
                "raw: \"/bot<redacted>/GetMe\"",
            ),
            (
                "/bot123456789%3aAAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/GetMe".into(),
                "/bot<redacted>/GetMe",
            ),
            (
                "/bot123456789%253AAAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/GetMe".into(),
                "/bot<redacted>/GetMe",
            ),
            // The secret on its own, without the bot id.
            (format!("secret={SECRET}&x=1"), "secret=<redacted>&x=1"),
            // Characters of the secret percent-encoded, one or all, either case.
            (
                "/bot123456789:AAH%64qTcvCH1vGWJxfSeofSAs0K5PALDsaw/".into(),
                "/bot<redacted>/",
            ),
            (format!("p={secret_hex_lower}."), "p=<redacted>."),
            (format!("p={secret_hex_upper}."), "p=<redacted>."),
            (
                format!("/bot%31%32%33456789%3A{secret_hex_upper}/getMe"),
                "/bot<redacted>/getMe",
            ),
            // JSON escapes: the colon, every character, doubled backslashes.
            (
                r#"{"description":"\/bot123456789\u003aAAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw\/getMe"}"#
                    .into(),
                r#"{"description":"\/bot<redacted>\/getMe"}"#,
            ),
            (
                r#"\"/bot123456789\\u003AAAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw\""#.into(),
                r#"\"/bot<redacted>\""#,
            ),
            (format!("\"{secret_json}\""), "\"<redacted>\""),
            // HTML character references.
            (
                "bot123456789&#58;AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw".into(),
                "bot<redacted>",
            ),
            // The public id alone is not a secret.
            ("bot 123456789 started".into(), "bot 123456789 started"),
        ];
        for (input, expected) in &cases {
            assert_eq!(redactor.redact(input), *expected, "input: {input}");
            assert!(!redactor.redact(input).contains("qTcv"), "input: {input}");
        }
    }

    #[test]
    fn a_short_secret_is_redacted_only_with_its_id() {
        let redactor = Redactor::default();
        redactor.learn(&Token::new("1:xyz"));
        redactor.learn(&Token::new("odd/shaped-secret"));
        check(
            &redactor,
            &[
                ("/bot1:xyz/getMe", "/bot<redacted>/getMe"),
                ("/bot1%3Axyz/getMe", "/bot<redacted>/getMe"),
                ("xyz is a fine word", "xyz is a fine word"),
                (r"path \/botodd\/shaped-secret\/", r"path \/bot<redacted>\/"),
                ("path /botodd%2Fshaped-secret/", "path /bot<redacted>/"),
            ],
        );
    }
}
