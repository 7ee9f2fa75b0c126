//! Telegram's text limits and the one way botvisor cuts text to fit them.
//!
//! Telegram measures a message in UTF-16 code units (4096 at most). Every
//! cut here ends at a character boundary and never inside what a reader
//! sees as one character (a grapheme cluster): a letter and its combining
//! mark, an emoji and its modifier or variation selector, a
//! zero-width-joiner sequence, a flag. The config's content checks, the
//! outbox's splitting of long replies and the relay's shortening of long
//! announcements all use these functions, so they agree on what fits.

/// Telegram's longest message, in UTF-16 units.
pub const MESSAGE_LIMIT: usize = 4096;
/// Telegram's longest command description.
pub const DESCRIPTION_LIMIT: usize = 256;

/// Telegram's length of a text: UTF-16 code units.
pub fn telegram_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// The longest prefix of `text` of at most `units` UTF-16 code units that
/// ends at a character boundary and does not split a grapheme cluster.
pub fn cut_to_units(text: &str, units: usize) -> &str {
    let mut used = 0;
    let mut end = text.len();
    for (index, c) in text.char_indices() {
        used += c.len_utf16();
        if used > units {
            end = index;
            break;
        }
    }
    while end > 0 && end < text.len() && splits_cluster(&text[..end], &text[end..]) {
        end = text[..end]
            .char_indices()
            .next_back()
            .map_or(0, |(index, _)| index);
    }
    &text[..end]
}

/// `text` shortened to at most `room` UTF-16 code units, preferably at a
/// word boundary, with trailing whitespace removed. A word is cut only when
/// the last word boundary would drop more than half of the room.
pub fn shorten(text: &str, room: usize) -> &str {
    let head = cut_to_units(text, room);
    let rest = &text[head.len()..];
    if rest.is_empty() || rest.starts_with(char::is_whitespace) {
        return head.trim_end();
    }
    if let Some(space) = head.rfind(char::is_whitespace) {
        let before = head[..space].trim_end();
        if !before.is_empty() && telegram_len(before) * 2 >= room {
            return before;
        }
    }
    head.trim_end()
}

/// Splits `text` into parts of at most `limit` UTF-16 units: at line breaks
/// where it can, inside a line only when one line is longer than the limit
/// (then at a space where one is near, else between grapheme clusters).
/// Parts are trimmed; empty parts are dropped.
pub fn split_message(text: &str, limit: usize) -> Vec<String> {
    if telegram_len(text) <= limit {
        return vec![text.to_owned()];
    }
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut current_len = 0;
    for line in text.split_inclusive('\n') {
        let line_len = telegram_len(line);
        if current_len + line_len <= limit {
            current.push_str(line);
            current_len += line_len;
            continue;
        }
        if !current.is_empty() {
            parts.push(std::mem::take(&mut current));
        }
        if line_len <= limit {
            current.push_str(line);
            current_len = line_len;
            continue;
        }
        let mut rest = line;
        while telegram_len(rest) > limit {
            let mut head = shorten(rest, limit);
            if head.is_empty() {
                // One cluster longer than the limit: cut it at a character.
                head = cut_chars(rest, limit);
            }
            if head.is_empty() {
                break;
            }
            parts.push(head.to_owned());
            rest = rest[head.len()..].trim_start_matches([' ', '\t']);
        }
        current.push_str(rest);
        current_len = telegram_len(rest);
    }
    if !current.is_empty() {
        parts.push(current);
    }
    parts
        .into_iter()
        .map(|p| p.trim_start_matches(['\n', '\r']).trim_end().to_owned())
        .filter(|p| !p.trim().is_empty())
        .collect()
}

/// The longest prefix of at most `units` UTF-16 units ending at a character
/// boundary (used only when a single grapheme cluster exceeds the limit).
fn cut_chars(text: &str, units: usize) -> &str {
    let mut used = 0;
    for (index, c) in text.char_indices() {
        used += c.len_utf16();
        if used > units {
            return &text[..index];
        }
    }
    text
}

/// Whether cutting between `before` and `after` would split what is shown as
/// one character.
pub fn splits_cluster(before: &str, after: &str) -> bool {
    let (Some(last), Some(next)) = (before.chars().next_back(), after.chars().next()) else {
        return false;
    };
    if last == '\u{200D}' || extends(next) {
        return true;
    }
    if is_regional_indicator(last) && is_regional_indicator(next) {
        let run = before
            .chars()
            .rev()
            .take_while(|c| is_regional_indicator(*c))
            .count();
        return run % 2 == 1;
    }
    false
}

/// Characters that attach to the one before them.
fn extends(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{1AB0}'..='\u{1AFF}'
        | '\u{1DC0}'..='\u{1DFF}'
        | '\u{200C}'..='\u{200D}'
        | '\u{20D0}'..='\u{20FF}'
        | '\u{FE00}'..='\u{FE0F}'
        | '\u{FE20}'..='\u{FE2F}'
        | '\u{1F3FB}'..='\u{1F3FF}'
        | '\u{E0020}'..='\u{E007F}'
        | '\u{E0100}'..='\u{E01EF}')
}

fn is_regional_indicator(c: char) -> bool {
    ('\u{1F1E6}'..='\u{1F1FF}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_lines_then_words_never_inside_a_cluster() {
        let cases: &[(&str, usize, &[&str])] = &[
            ("short", 10, &["short"]),
            ("one\ntwo\nthree", 8, &["one\ntwo", "three"]),
            ("abcdefghij", 4, &["abcd", "efgh", "ij"]),
            ("aaa bbb ccc", 8, &["aaa bbb", "ccc"]),
            // ğ is one UTF-16 unit; 😀 is two, and is never cut in half.
            ("ğğğğğ", 2, &["ğğ", "ğğ", "ğ"]),
            ("a😀b😀", 2, &["a", "😀", "b", "😀"]),
            // A letter and its combining mark stay together.
            (
                "e\u{301}e\u{301}e\u{301}",
                3,
                &["e\u{301}", "e\u{301}", "e\u{301}"],
            ),
            // A flag (two regional indicators) stays whole.
            ("🇹🇷🇹🇷", 5, &["🇹🇷", "🇹🇷"]),
            ("line one\n\nline two", 9, &["line one", "line two"]),
        ];
        for (text, limit, expected) in cases {
            let parts = split_message(text, *limit);
            assert_eq!(parts, *expected, "text {text:?} limit {limit}");
            assert!(parts.iter().all(|p| telegram_len(p) <= *limit));
        }
    }

    #[test]
    fn a_long_answer_fits_telegram_in_whole_characters() {
        let text = "Bölüm hakkında bilgi 😀\n".repeat(400);
        let parts = split_message(&text, MESSAGE_LIMIT);
        assert!(parts.len() > 1);
        assert!(parts.iter().all(|p| telegram_len(p) <= MESSAGE_LIMIT));
        assert_eq!(parts.concat().replace('\n', ""), text.replace('\n', ""));
    }

    #[test]
    fn cuts_keep_clusters_whole() {
        let cases: &[(&str, usize, &str)] = &[
            ("abc", 2, "ab"),
            ("a😀", 2, "a"),
            ("ae\u{301}", 2, "a"),
            ("👍\u{1F3FD}x", 3, ""),
            ("👍\u{1F3FD}x", 4, "👍\u{1F3FD}"),
            ("ab", 10, "ab"),
        ];
        for (text, units, expected) in cases {
            assert_eq!(cut_to_units(text, *units), *expected, "text {text:?}");
        }
    }
}
