//! Bot tokens and keeping them out of every line botvisor writes.
//!
//! A [`Token`] never shows its value through `Debug` or `Display`. The
//! [`Redactor`] is the last line of defence: the log writer passes every
//! formatted line through it, so a token that reaches a log by some other
//! road (an HTTP library's URL, an error text) is still replaced. Anything
//! printed to the user goes through it too.

use std::fmt;
use std::sync::{Arc, LazyLock, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
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

/// Whether `text` holds something shaped like a bot token.
pub fn looks_like_token(text: &str) -> bool {
    TOKEN_SHAPE.is_match(text)
}

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
/// JSON) or as an HTML character reference. The text is decoded once (each
/// encoded character to itself, remembering where it came from), the
/// learned tokens are found in the decoded text with one Aho-Corasick scan,
/// and what they came from is replaced. Learning marks the automaton
/// stale and the next use builds it again, in time linear in the tokens'
/// length: learning 10,000 tokens at start costs one build (the
/// supervisor learns them all at once), not 10,000, and a log line one
/// pass, however many bots run.
#[derive(Clone, Default)]
pub struct Redactor {
    known: Arc<RwLock<Known>>,
}

#[derive(Default)]
struct Known {
    tokens: Vec<Arc<str>>,
    seen: std::collections::HashSet<Arc<str>>,
    /// Every form to find, over the decoded text.
    finder: Option<Arc<AhoCorasick>>,
    /// A token was learned since the finder was built: it is built again
    /// at the next use, so learning n tokens one after another costs one
    /// build, not n.
    stale: bool,
}

impl Known {
    /// Adds a token; true when it is new.
    fn add(&mut self, token: &Arc<str>) -> bool {
        if token.len() < 4 || self.seen.contains(token) {
            return false;
        }
        self.seen.insert(token.clone());
        self.tokens.push(token.clone());
        self.stale = true;
        true
    }

    /// The finder over every learned token, built now if it is stale.
    fn finder(&mut self) -> Option<Arc<AhoCorasick>> {
        if self.stale {
            self.stale = false;
            let mut forms: Vec<&str> = Vec::with_capacity(self.tokens.len() * 2);
            for token in &self.tokens {
                forms.push(token);
                if let Some((_, secret)) = token.split_once(':')
                    && secret.chars().count() >= MIN_SECRET_ALONE
                {
                    forms.push(secret);
                }
            }
            // Leftmost-longest: `<id>:<secret>` wins over the secret alone.
            // A build that fails (too large) keeps the one before.
            if let Ok(finder) = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&forms)
            {
                self.finder = Some(Arc::new(finder));
            }
        }
        self.finder.clone()
    }
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
        // The automaton is built at its next use.
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .add(&token.0);
    }

    /// [`learn`](Self::learn) for many tokens at once (the supervisor's
    /// start with thousands of bots): one build of the automaton for all.
    pub fn learn_all<'t>(&self, tokens: impl IntoIterator<Item = &'t Token>) {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        let mut added = false;
        for token in tokens {
            added |= known.add(&token.0);
        }
        if added {
            known.finder();
        }
    }

    /// The current finder, built first if a token was learned since.
    fn finder(&self) -> Option<Arc<AhoCorasick>> {
        {
            let known = self.known.read().unwrap_or_else(|e| e.into_inner());
            if !known.stale {
                return known.finder.clone();
            }
        }
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .finder()
    }

    /// `text` with every token in it replaced.
    pub fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let mut out = self.redact_learned(text);
        if TOKEN_SHAPE.is_match(&out) {
            out = std::borrow::Cow::Owned(TOKEN_SHAPE.replace_all(&out, "<redacted>").into_owned());
        }
        out
    }

    /// `text` with every learned token replaced, in every encoding.
    fn redact_learned<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let Some(finder) = self.finder() else {
            return std::borrow::Cow::Borrowed(text);
        };
        let decoded = Decoded::of(text);
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for found in finder.find_iter(&decoded.bytes) {
            let (start, end) = decoded.origin(found.start(), found.end());
            match ranges.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => ranges.push((start, end)),
            }
        }
        if ranges.is_empty() {
            return std::borrow::Cow::Borrowed(text);
        }
        let mut replaced = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end) in ranges {
            replaced.push_str(&text[at..start]);
            replaced.push_str("<redacted>");
            at = end;
        }
        replaced.push_str(&text[at..]);
        std::borrow::Cow::Owned(replaced)
    }
}

impl Redactor {
    /// `text` with every learned token replaced, and nothing else changed:
    /// for answers passed on to a process bot's program, which must see
    /// Telegram's data as it came (a `callback_data` shaped like a token
    /// is not one). Up to [`DECODED_UP_TO`] every encoding is found; past
    /// it (a large answer), the learned forms as they stand, without the
    /// decoding's memory: a token's secret part is plain URL-safe text in
    /// every usual encoding a server could echo it in.
    pub fn redact_known<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        if text.len() <= DECODED_UP_TO {
            return self.redact_learned(text);
        }
        let Some(finder) = self.finder() else {
            return std::borrow::Cow::Borrowed(text);
        };
        let mut replaced = String::new();
        let mut at = 0;
        for found in finder.find_iter(text.as_bytes()) {
            if found.start() < at
                || !text.is_char_boundary(found.start())
                || !text.is_char_boundary(found.end())
            {
                continue;
            }
            replaced.push_str(&text[at..found.start()]);
            replaced.push_str("<redacted>");
            at = found.end();
        }
        if at == 0 {
            return std::borrow::Cow::Borrowed(text);
        }
        replaced.push_str(&text[at..]);
        std::borrow::Cow::Owned(replaced)
    }
}

/// The longest text [`Redactor::redact_known`] decodes first (its decoding
/// keeps 16 bytes per byte).
pub const DECODED_UP_TO: usize = 256 << 10;

/// A text with each encoded character decoded, and for each decoded byte
/// the range of the text it came from (always on character boundaries).
struct Decoded {
    bytes: Vec<u8>,
    /// `(start, end)` in the original text, per decoded byte; empty when the
    /// text holds nothing encoded (the bytes are the text's own).
    spans: Vec<(usize, usize)>,
}

impl Decoded {
    fn of(text: &str) -> Decoded {
        let raw = text.as_bytes();
        if !raw.iter().any(|b| matches!(b, b'%' | b'\\' | b'&')) {
            return Decoded {
                bytes: raw.to_vec(),
                spans: Vec::new(),
            };
        }
        let mut bytes = Vec::with_capacity(raw.len());
        let mut spans = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            if let Some((decoded, len)) = decode_at(raw, i) {
                let mut buf = [0; 4];
                for b in decoded.encode(&mut buf) {
                    bytes.push(*b);
                    spans.push((i, i + len));
                }
                i += len;
            } else {
                // A whole character, so a span never splits one.
                let len = utf8_len(raw[i]);
                for k in 0..len.min(raw.len() - i) {
                    bytes.push(raw[i + k]);
                    spans.push((i, i + len.min(raw.len() - i)));
                }
                i += len.max(1);
            }
        }
        Decoded { bytes, spans }
    }

    /// The original range of decoded bytes `start..end`.
    fn origin(&self, start: usize, end: usize) -> (usize, usize) {
        if self.spans.is_empty() {
            return (start, end);
        }
        (self.spans[start].0, self.spans[end - 1].1)
    }
}

/// One decoded unit: a byte (percent-encoding) or a character (JSON and
/// HTML escapes).
enum Unit {
    Byte(u8),
    Char(char),
}

impl Unit {
    fn encode<'b>(&self, buf: &'b mut [u8; 4]) -> &'b [u8] {
        match self {
            Unit::Byte(b) => {
                buf[0] = *b;
                &buf[..1]
            }
            Unit::Char(c) => c.encode_utf8(buf).as_bytes(),
        }
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xF7 => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

fn hex(b: u8) -> Option<u32> {
    char::from(b).to_digit(16)
}

/// The encoded unit starting at `raw[i]`, and its length: `%HH` (also
/// `%25HH`), `\uXXXX` or `\\uXXXX`, `\/` `\"` `\\` (also doubled), `&#DDD;`
/// and `&#xHH;`.
fn decode_at(raw: &[u8], i: usize) -> Option<(Unit, usize)> {
    let at = |k: usize| raw.get(i + k).copied();
    match raw[i] {
        b'%' => {
            let skip = if at(1) == Some(b'2')
                && at(2) == Some(b'5')
                && at(3).and_then(hex).is_some()
                && at(4).and_then(hex).is_some()
            {
                2
            } else {
                0
            };
            let high = at(1 + skip).and_then(hex)?;
            let low = at(2 + skip).and_then(hex)?;
            Some((Unit::Byte(u8::try_from(high * 16 + low).ok()?), 3 + skip))
        }
        b'\\' => {
            let slashes = if at(1) == Some(b'\\') { 2 } else { 1 };
            match at(slashes)? {
                b'u' => {
                    let mut code = 0;
                    for k in 1..=4 {
                        code = code * 16 + at(slashes + k).and_then(hex)?;
                    }
                    Some((Unit::Char(char::from_u32(code)?), slashes + 5))
                }
                c @ (b'/' | b'"') => Some((Unit::Char(char::from(c)), slashes + 1)),
                b'\\' if slashes == 1 => Some((Unit::Char('\\'), 2)),
                _ => None,
            }
        }
        b'&' if at(1) == Some(b'#') => {
            let (radix, start) = match at(2) {
                Some(b'x' | b'X') => (16, 3),
                _ => (10, 2),
            };
            let mut code: u32 = 0;
            let mut k = start;
            while let Some(d) = at(k).and_then(|b| char::from(b).to_digit(radix)) {
                code = code.checked_mul(radix)?.checked_add(d)?;
                k += 1;
                if k - start > 10 {
                    return None;
                }
            }
            if k == start || at(k) != Some(b';') {
                return None;
            }
            Some((Unit::Char(char::from_u32(code)?), k + 1))
        }
        _ => None,
    }
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

    #[test]
    fn answers_passed_on_lose_learned_tokens_only() {
        let redactor = Redactor::default();
        redactor.learn(&Token::new(LEARNED));
        let shaped_data = format!("{}:{}", 12_345, "abcdefghijklmnopqrstuvwxyz");
        let answer = format!(
            r#"{{"ok":false,"description":"Bad Request: /bot{LEARNED}/x","callback_data":"{shaped_data}"}}"#
        );
        let passed = redactor.redact_known(&answer);
        assert!(!passed.contains(SECRET), "{passed}");
        assert!(
            passed.contains(&shaped_data),
            "data shaped like a token was changed: {passed}"
        );
        // A large answer: found as it stands, without decoding.
        let large = format!("{}{SECRET}{}", "x".repeat(DECODED_UP_TO), "y".repeat(10));
        let passed = redactor.redact_known(&large);
        assert!(!passed.contains(SECRET));
        assert!(passed.ends_with("<redacted>yyyyyyyyyy"));
    }
}
