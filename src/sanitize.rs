//! Short, safe excerpts of text that came from outside: an upstream error
//! body, a web page, a server's description.
//!
//! Such text may be megabytes long, hold a user's message, a token in some
//! encoding, newlines that forge log lines, ANSI escapes that repaint a
//! terminal or bidi overrides that reorder what an operator reads.
//! [`excerpt`] is the one way such text reaches a log line, a status reason
//! or an error: redacted through [`Redactor::global`], every control and
//! invisible formatting character escaped visibly, cut at a character
//! boundary and marked when cut. It does not decide *whether* a text may be
//! shown (a user's message text never should be); its callers do.

use std::fmt::Write as _;

use crate::secret::Redactor;
use crate::telegram::text::splits_cluster;

/// The default length of an excerpt, in characters: enough to recognise an
/// error page or a Bot API description, short enough that a status, an
/// alert and a log line stay small whatever a server sends.
pub const EXCERPT: usize = 200;

/// How much text past the cut is redacted with it: a token written out in
/// its longest encoding (every character as a doubled JSON escape) is under
/// this, so a token that starts inside the excerpt is redacted whole
/// before the excerpt is cut.
const REDACT_MARGIN: usize = 1024;

/// `text` reduced to at most `max_chars` characters (escapes counted as
/// the characters they print), tokens redacted, control characters escaped
/// (`\n`, `\r`, `\t`, `\u{1b}` …), and `… (N more bytes)` appended when
/// something was cut. The cut never falls inside a grapheme cluster (a
/// letter and its accent, an emoji and its modifier, a flag).
pub fn excerpt(text: &str, max_chars: usize) -> String {
    // Redact only what can be shown (plus a margin), so a 10 MB body costs
    // no more than a short one.
    let window_end = floor_char_boundary(
        text,
        max_chars
            .saturating_mul(4)
            .saturating_add(REDACT_MARGIN)
            .min(text.len()),
    );
    let window = Redactor::global().redact(&text[..window_end]);
    // Where the shown part ends: the last character that still fits, moved
    // back so the cut never falls inside what a reader sees as one character.
    let mut cut = window.len();
    let mut shown = 0usize;
    let mut escape = String::new();
    for (at, c) in window.char_indices() {
        escape.clear();
        push_visible(&mut escape, c);
        let width = escape.chars().count();
        if shown + width > max_chars {
            cut = at;
            break;
        }
        shown += width;
    }
    while cut > 0 && cut < window.len() && splits_cluster(&window[..cut], &window[cut..]) {
        cut = window[..cut]
            .char_indices()
            .next_back()
            .map_or(0, |(at, _)| at);
    }
    let mut out = String::with_capacity(cut + 32);
    for c in window[..cut].chars() {
        push_visible(&mut out, c);
    }
    let more = (window.len() - cut) + (text.len() - window_end);
    if more > 0 {
        let _ = write!(out, "… ({more} more bytes)");
    }
    out
}

/// Appends `c`, or a visible escape for it when it could change how the
/// surrounding text is read: control characters (C0, DEL, C1, which include
/// newlines and the ESC of ANSI sequences), bidi controls, zero-width
/// characters and line separators.
fn push_visible(out: &mut String, c: char) {
    match c {
        '\n' => out.push_str("\\n"),
        '\r' => out.push_str("\\r"),
        '\t' => out.push_str("\\t"),
        c if c.is_control() || is_invisible_format(c) => {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        }
        c => out.push(c),
    }
}

/// Unicode format characters that reorder or hide text: the bidi marks,
/// embeddings, overrides and isolates, zero-width characters, the line and
/// paragraph separators, and the byte-order mark.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// The largest character boundary of `text` at or below `at`.
fn floor_char_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Token;

    fn check(cases: &[(&str, usize, &str)]) {
        for (input, max, expected) in cases {
            assert_eq!(
                excerpt(input, *max),
                *expected,
                "input: {input:?}, max {max}"
            );
        }
    }

    #[test]
    fn escapes_control_and_invisible_characters() {
        check(&[
            ("", EXCERPT, ""),
            ("short", EXCERPT, "short"),
            ("a\nb\r\n", EXCERPT, r"a\nb\r\n"),
            (
                "forged\n2026-01-01 INFO ok",
                EXCERPT,
                r"forged\n2026-01-01 INFO ok",
            ),
            ("\x1b[31mred\x1b[0m", EXCERPT, r"\u{1b}[31mred\u{1b}[0m"),
            ("tab\there\0nul\x7f", EXCERPT, r"tab\there\u{0}nul\u{7f}"),
            ("c1\u{85}", EXCERPT, r"c1\u{85}"),
            (
                "abc\u{202e}fed\u{2066}x",
                EXCERPT,
                r"abc\u{202e}fed\u{2066}x",
            ),
            (
                "zero\u{200b}width\u{feff}",
                EXCERPT,
                r"zero\u{200b}width\u{feff}",
            ),
            ("línea\u{2028}dos", EXCERPT, r"línea\u{2028}dos"),
            ("çğıöşü Türkçe", EXCERPT, "çğıöşü Türkçe"),
        ]);
    }

    #[test]
    fn cuts_at_a_character_and_says_how_much_is_left() {
        let accents = "é".repeat(300);
        let expected = format!("{}… (200 more bytes)", "é".repeat(200));
        let emoji = "🙂".repeat(3);
        check(&[
            ("abcdef", 3, "abc… (3 more bytes)"),
            ("abcdef", 6, "abcdef"),
            ("abcdef", 0, "… (6 more bytes)"),
            (&accents, 200, &expected),
            (&emoji, 2, "🙂🙂… (4 more bytes)"),
            // An escape is never cut in half.
            ("ab\ncd", 3, "ab… (3 more bytes)"),
            ("ab\ncd", 4, r"ab\n… (2 more bytes)"),
            // A letter keeps its accent, a flag its second half, an emoji
            // its skin tone: the cut moves back to before the cluster.
            ("ae\u{301}x", 2, "a… (4 more bytes)"),
            ("x🇹🇷", 2, "x… (8 more bytes)"),
            ("👍\u{1F3FD}!", 1, "… (9 more bytes)"),
            ("👍\u{1F3FD}!", 2, "👍\u{1F3FD}… (1 more bytes)"),
        ]);
    }

    #[test]
    fn a_huge_body_gives_a_short_excerpt() {
        let body = "x".repeat(10 * 1024 * 1024);
        let out = excerpt(&body, EXCERPT);
        assert!(out.len() < 300, "{} bytes", out.len());
        assert!(out.ends_with(&format!("… ({} more bytes)", body.len() - EXCERPT)));
    }

    #[test]
    fn redacts_tokens_even_where_the_cut_falls() {
        // Built at run time: no token-shaped literal sits in the source.
        let token = format!(
            "555000111:{}{}",
            "AAsanitizeTestSecretPart_", "0123456789ab"
        );
        Redactor::global().learn(&Token::new(token.clone()));
        let encoded = token.replace(':', "%3A");
        for prefix in [0, 150, 195, 199] {
            let text = format!("{}{encoded}/getMe trailing text", "x".repeat(prefix));
            let out = excerpt(&text, EXCERPT);
            assert!(!out.contains("sanitize"), "prefix {prefix}: {out}");
            assert!(!out.contains("Secret"), "prefix {prefix}: {out}");
        }
        assert_eq!(
            excerpt(&format!("GET /bot{encoded}/getMe\n"), EXCERPT),
            r"GET /bot<redacted>/getMe\n"
        );
    }
}
