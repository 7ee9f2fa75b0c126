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
/// request path.
static TOKEN_SHAPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[0-9]{3,16}:[A-Za-z0-9_-]{20,}").expect("the token pattern is valid")
});

/// Replaces known tokens and token-shaped text with `<redacted>`.
#[derive(Clone, Default)]
pub struct Redactor {
    known: Arc<RwLock<Vec<Arc<str>>>>,
}

impl Redactor {
    /// The process-wide redactor the logger and the CLI use.
    pub fn global() -> &'static Redactor {
        static GLOBAL: LazyLock<Redactor> = LazyLock::new(Redactor::default);
        &GLOBAL
    }

    /// Remembers a token so it is redacted even when it is not token-shaped
    /// (a self-hosted Bot API server or a test may use any string).
    pub fn learn(&self, token: &Token) {
        if token.0.len() < 4 {
            return;
        }
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        if !known.iter().any(|t| **t == *token.0) {
            known.push(token.0.clone());
            // Longest first, so a token that contains another is replaced whole.
            known.sort_by_key(|t| std::cmp::Reverse(t.len()));
        }
    }

    /// `text` with every token in it replaced.
    pub fn redact<'a>(&self, text: &'a str) -> std::borrow::Cow<'a, str> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        let mut out = std::borrow::Cow::Borrowed(text);
        for token in known.iter() {
            if out.contains(&**token) {
                out = std::borrow::Cow::Owned(out.replace(&**token, "<redacted>"));
            }
        }
        drop(known);
        if TOKEN_SHAPE.is_match(&out) {
            out = std::borrow::Cow::Owned(TOKEN_SHAPE.replace_all(&out, "<redacted>").into_owned());
        }
        out
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

    #[test]
    fn redacts_known_and_token_shaped_text() {
        let redactor = Redactor::default();
        redactor.learn(&Token::new("not-a-real-shape"));
        let cases = [
            (
                "error sending request for url (https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/GetUpdates)",
                "error sending request for url (https://api.telegram.org/bot<redacted>/GetUpdates)",
            ),
            ("GET /botnot-a-real-shape/getMe", "GET /bot<redacted>/getMe"),
            ("nothing secret here: 12:30", "nothing secret here: 12:30"),
        ];
        for (input, expected) in cases {
            assert_eq!(redactor.redact(input), expected, "input: {input}");
        }
    }
}
