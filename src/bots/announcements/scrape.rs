//! Reading the department's announcement pages: fetching a page over HTTP
//! (status, size and time limits), decoding its bytes to text whatever
//! charset the site declares, finding the announcement links on the list
//! page, extracting the readable text of one announcement page, and shaping
//! the relay message that will be posted. Everything here is about the web
//! site only: no Telegram, no SQL, no state. The selectors and the id
//! pattern come from the config, because the site's layout changes.
//!
//! Parsing is the costly part, and a hostile page can make it very costly
//! (html5ever is quadratic in nesting depth): [`parse_off_thread`] runs it
//! on tokio's blocking pool within [`PARSE_BUDGET`], after a linear
//! pre-pass has refused pages nested deeper than [`MAX_DEPTH`], so a bad
//! page costs its own bot one failed check and never another bot's latency.

use std::collections::HashSet;
use std::error::Error as _;
use std::sync::LazyLock;
use std::time::Duration;

use crate::telegram::text::{cut_to_units, shorten, telegram_len};
use encoding_rs::{Encoding, UTF_8};
use scraper::{ElementRef, Html, Node, Selector};
use url::Url;

/// The most bytes of a page body [`fetch`] reads.
const MAX_BODY: usize = 5 * 1024 * 1024;

/// How far into a page [`decode_body`] looks for a `<meta>` charset.
const META_SCAN: usize = 2048;

/// The deepest element nesting a page may have before it is parsed. Real
/// pages nest a few dozen levels; a page nested thousands deep is an
/// attack or a broken generator, and would cost html5ever seconds to hours.
pub const MAX_DEPTH: usize = 512;

/// How long parsing one page may take. The depth cap keeps real parsing far
/// under this; the budget is the backstop, so a check never waits longer.
pub const PARSE_BUDGET: Duration = Duration::from_secs(10);

/// What every relay message starts with.
const PREFIX: &str = "DUYURU: ";

/// What stands between the text and the link in a relay message.
const LINK_LABEL: &str = "\n\nİncelemek için: ";

/// What ends a shortened text.
const ELLIPSIS: &str = "…";

/// One announcement link found on the list page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The announcement's id: what the cursor of sent announcements stores.
    pub id: String,
    /// The link's text, whitespace tidied (may be empty).
    pub title: String,
    /// The announcement page, resolved against the list page.
    pub link: Url,
}

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The site answered with a status outside 200-299.
    #[error("the site answered HTTP {0}")]
    Http(u16),
    /// The request failed before a complete answer arrived (DNS, connection
    /// refused or reset, TLS, a malformed answer, an invalid user agent).
    #[error("could not read the page: {0}")]
    Network(String),
    /// No complete answer within the timeout.
    #[error("the site did not answer in time")]
    Timeout,
    /// The body is larger than 5 MB.
    #[error("the page is larger than 5 MB")]
    TooLarge,
    /// The page nests elements deeper than [`MAX_DEPTH`]; it is not parsed.
    #[error("the page nests elements deeper than {MAX_DEPTH} levels; it is not parsed")]
    TooDeep,
    /// Parsing took longer than [`PARSE_BUDGET`].
    #[error("parsing the page took longer than {} s", PARSE_BUDGET.as_secs())]
    ParseTimeout,
    /// The parsing task failed (a panic inside the parser).
    #[error("parsing the page failed")]
    ParseFailed,
}

/// Runs `parse` over `html` on tokio's blocking pool, once the page has
/// passed the depth check, and waits at most [`PARSE_BUDGET`] for it.
///
/// A parse that outlives the budget cannot be stopped (it is plain CPU
/// work); it finishes on its own thread and its result is dropped. The
/// depth check makes that rare: what remains is linear in the page's size,
/// which [`fetch`] caps at 5 MB.
///
/// # Errors
/// [`FetchError::TooDeep`], [`FetchError::ParseTimeout`] or
/// [`FetchError::ParseFailed`].
pub async fn parse_off_thread<T, F>(html: String, parse: F) -> Result<T, FetchError>
where
    T: Send + 'static,
    F: FnOnce(&str) -> T + Send + 'static,
{
    let task = tokio::task::spawn_blocking(move || {
        if nesting_exceeds(&html, MAX_DEPTH) {
            return Err(FetchError::TooDeep);
        }
        Ok(parse(&html))
    });
    match tokio::time::timeout(PARSE_BUDGET, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(FetchError::ParseFailed),
        Err(_) => Err(FetchError::ParseTimeout),
    }
}

/// Elements that never have content.
const VOID: &[&[u8]] = &[
    b"area", b"base", b"br", b"col", b"embed", b"hr", b"img", b"input", b"keygen", b"link",
    b"meta", b"param", b"source", b"track", b"wbr", b"image",
];
/// Elements whose content is text up to their own end tag.
const RAW_TEXT: &[&[u8]] = &[
    b"script",
    b"style",
    b"textarea",
    b"title",
    b"xmp",
    b"iframe",
    b"noembed",
    b"noframes",
    b"noscript",
];
/// Elements a later sibling closes implicitly (`<li>` closes an open
/// `<li>`): not counted, since their nesting is bounded by the counted
/// elements around them, and counting them would refuse ordinary lists.
const IMPLIED_END: &[&[u8]] = &[
    b"p",
    b"li",
    b"dt",
    b"dd",
    b"option",
    b"optgroup",
    b"tr",
    b"td",
    b"th",
    b"thead",
    b"tbody",
    b"tfoot",
    b"rb",
    b"rt",
    b"rtc",
    b"rp",
    b"colgroup",
    b"caption",
    b"html",
    b"head",
    b"body",
];

/// True when `html` opens more than `max` elements inside one another, by a
/// linear scan of its tags that errs on the deep side: an end tag closes
/// only an element it names (and those opened inside it), `<x/>` closes
/// nothing outside SVG and MathML (HTML ignores the slash), and elements
/// with implied end tags are not counted. O(n) in the page's length.
fn nesting_exceeds(html: &str, max: usize) -> bool {
    let bytes = html.as_bytes();
    let mut open: Vec<Vec<u8>> = Vec::new();
    let mut open_count: std::collections::HashMap<Vec<u8>, usize> =
        std::collections::HashMap::new();
    let mut foreign = 0usize;
    let mut at = 0;
    while let Some(found) = bytes[at..].iter().position(|&b| b == b'<') {
        let start = at + found;
        let rest = &bytes[start..];
        if rest.starts_with(b"<!--") {
            at = find(bytes, start + 4, b"-->").map_or(bytes.len(), |end| end + 3);
            continue;
        }
        if rest.starts_with(b"<!") || rest.starts_with(b"<?") {
            at = find(bytes, start, b">").map_or(bytes.len(), |end| end + 1);
            continue;
        }
        let closing = rest.starts_with(b"</");
        let name_start = start + if closing { 2 } else { 1 };
        if !bytes.get(name_start).is_some_and(u8::is_ascii_alphabetic) {
            at = start + 1;
            continue;
        }
        let name_end = bytes[name_start..]
            .iter()
            .position(|b| b.is_ascii_whitespace() || matches!(b, b'/' | b'>'))
            .map_or(bytes.len(), |n| name_start + n);
        let name = bytes[name_start..name_end].to_ascii_lowercase();
        let (tag_end, self_closing) = tag_end(bytes, name_end);
        at = tag_end;
        if closing {
            if open_count.get(&name).copied().unwrap_or(0) > 0 {
                while let Some(popped) = open.pop() {
                    if let Some(n) = open_count.get_mut(&popped) {
                        *n -= 1;
                    }
                    if matches!(popped.as_slice(), b"svg" | b"math") {
                        foreign = foreign.saturating_sub(1);
                    }
                    if popped == name {
                        break;
                    }
                }
            }
            continue;
        }
        let name_ref = name.as_slice();
        if VOID.contains(&name_ref) || IMPLIED_END.contains(&name_ref) {
            continue;
        }
        if self_closing && foreign > 0 {
            continue;
        }
        if RAW_TEXT.contains(&name_ref) {
            let mut end_tag = b"</".to_vec();
            end_tag.extend_from_slice(name_ref);
            at = find_ascii_case_insensitive(bytes, at, &end_tag).unwrap_or(bytes.len());
            continue;
        }
        if name_ref == b"plaintext" {
            break;
        }
        if matches!(name_ref, b"svg" | b"math") {
            foreign += 1;
        }
        *open_count.entry(name.clone()).or_insert(0) += 1;
        open.push(name);
        if open.len() > max {
            return true;
        }
    }
    false
}

/// Where the tag whose attributes start at `from` ends (one past its `>`,
/// quotes respected), and whether it ends with `/>`.
fn tag_end(bytes: &[u8], from: usize) -> (usize, bool) {
    let mut quote = None;
    let mut at = from;
    while at < bytes.len() {
        let b = bytes[at];
        match quote {
            Some(q) if b == q => quote = None,
            Some(_) => {}
            None if b == b'"' || b == b'\'' => quote = Some(b),
            None if b == b'>' => return (at + 1, at > from && bytes[at - 1] == b'/'),
            None => {}
        }
        at += 1;
    }
    (bytes.len(), false)
}

/// The position of `needle` in `bytes` at or after `from`.
fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|n| from + n)
}

/// Like [`find`], ignoring ASCII case.
fn find_ascii_case_insensitive(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|window| window.eq_ignore_ascii_case(needle))
        .map(|n| from + n)
}

/// Fetches `url` with the given client, per-request `timeout` and
/// `user_agent`; any non-2xx status is an error; the body (at most 5 MB) is
/// decoded with [`decode_body`], using the answer's `Content-Type` header.
///
/// The timeout bounds the whole exchange, body included. Redirects are
/// followed as the client is configured to.
pub async fn fetch(
    client: &reqwest::Client,
    url: &Url,
    timeout: Duration,
    user_agent: &str,
) -> Result<String, FetchError> {
    match tokio::time::timeout(timeout, fetch_within(client, url, timeout, user_agent)).await {
        Ok(result) => result,
        Err(_) => Err(FetchError::Timeout),
    }
}

async fn fetch_within(
    client: &reqwest::Client,
    url: &Url,
    timeout: Duration,
    user_agent: &str,
) -> Result<String, FetchError> {
    let mut response = client
        .get(url.clone())
        .timeout(timeout)
        .header(reqwest::header::USER_AGENT, user_agent)
        .send()
        .await
        .map_err(request_error)?;
    let status = response.status();
    if !status.is_success() {
        return Err(FetchError::Http(status.as_u16()));
    }
    if response
        .content_length()
        .is_some_and(|length| length > MAX_BODY as u64)
    {
        return Err(FetchError::TooLarge);
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(request_error)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(FetchError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(decode_body(&body, content_type.as_deref()))
}

/// A reqwest error as a [`FetchError`], with its chain of causes (reqwest's
/// own message alone says little); the URL is left out, the caller has it.
fn request_error(error: reqwest::Error) -> FetchError {
    if error.is_timeout() {
        return FetchError::Timeout;
    }
    let error = error.without_url();
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    // The causes may quote the server (a TLS alert, a malformed answer).
    FetchError::Network(crate::sanitize::excerpt(&message, crate::sanitize::EXCERPT))
}

/// Decodes a page: the charset of the Content-Type header wins, then a
/// `<meta charset=...>` or `<meta http-equiv="Content-Type" content="...;
/// charset=...">` in the first 2 KB, else UTF-8; invalid bytes become U+FFFD.
///
/// A byte order mark (UTF-8, or UTF-16 LE/BE) overrides all of these, as in
/// browsers: a page that starts with one is certainly in that encoding, and
/// the mark itself is removed. Labels are the WHATWG ones, so `iso-8859-9`,
/// `latin5` and `windows-1254` all decode Turkish as windows-1254.
pub fn decode_body(bytes: &[u8], content_type: Option<&str>) -> String {
    let encoding = content_type
        .and_then(charset_parameter)
        .and_then(|label| Encoding::for_label(label.as_bytes()))
        .or_else(|| meta_charset(&bytes[..bytes.len().min(META_SCAN)]))
        .unwrap_or(UTF_8);
    let (text, _, _) = encoding.decode(bytes);
    text.into_owned()
}

/// The `charset` parameter of a Content-Type value, unquoted.
fn charset_parameter(content_type: &str) -> Option<&str> {
    content_type.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches(|c| c == '"' || c == '\''))
            .filter(|value| !value.is_empty())
    })
}

/// The encoding a `<meta>` tag in `head` declares, if any. As browsers do,
/// a declared UTF-16 means UTF-8 (the bytes were read as ASCII to find it).
fn meta_charset(head: &[u8]) -> Option<&'static Encoding> {
    static META: LazyLock<regex::bytes::Regex> = LazyLock::new(|| {
        regex::bytes::Regex::new(r#"(?i-u)<meta\b[^>]*?\bcharset\s*=\s*["']?\s*([a-z0-9_.:\-]+)"#)
            .expect("the meta charset pattern is valid")
    });
    META.captures_iter(head).find_map(|captures| {
        let label = captures.get(1)?.as_bytes();
        Encoding::for_label(label).map(Encoding::output_encoding)
    })
}

/// The announcement links on a list page, in page order, each once (first
/// occurrence wins).
///
/// Every element matching `link_selector` that has an href counts (if the
/// selected element is not an `<a>`, the first `<a href>` inside it is
/// used). The href is resolved against `page_url`, so relative links work;
/// links that do not resolve to `http`/`https` (`javascript:`, `mailto:`)
/// and empty hrefs are skipped. The id is the first capture group of
/// `id_pattern` applied to the resolved link (the whole match if the pattern
/// has no group), or, without a pattern, the last non-empty path segment of
/// the link (the whole link if there is none). Links whose id cannot be
/// found are skipped; a link whose id was already listed is skipped too, so
/// the same announcement linked twice is listed once. The title is the
/// selected element's text, whitespace tidied to single spaces.
pub fn parse_list(
    html: &str,
    page_url: &Url,
    link_selector: &Selector,
    id_pattern: Option<&regex::Regex>,
) -> Vec<Listed> {
    let document = Html::parse_document(html);
    let mut seen = HashSet::new();
    let mut listed = Vec::new();
    for element in document.select(link_selector) {
        let anchor = if element.value().name() == "a" {
            Some(element)
        } else {
            element
                .descendent_elements()
                .find(|inner| inner.value().name() == "a" && inner.value().attr("href").is_some())
        };
        let Some(href) = anchor.and_then(|anchor| anchor.value().attr("href")) else {
            continue;
        };
        let href = href.trim();
        if href.is_empty() {
            continue;
        }
        let Ok(link) = page_url.join(href) else {
            continue;
        };
        if !matches!(link.scheme(), "http" | "https") {
            continue;
        }
        let Some(id) = announcement_id(&link, id_pattern) else {
            continue;
        };
        if !seen.insert(id.clone()) {
            continue;
        }
        let title = tidy(&element_text(element));
        listed.push(Listed { id, title, link });
    }
    listed
}

/// The id of an announcement link (see [`parse_list`]).
fn announcement_id(link: &Url, id_pattern: Option<&regex::Regex>) -> Option<String> {
    let id = match id_pattern {
        Some(pattern) => {
            let captures = pattern.captures(link.as_str())?;
            let found = if pattern.captures_len() > 1 {
                captures.get(1)?
            } else {
                captures.get(0)?
            };
            found.as_str().to_owned()
        }
        None => match link
            .path_segments()
            .and_then(|mut segments| segments.rfind(|segment| !segment.is_empty()))
        {
            Some(segment) => segment.to_owned(),
            None => link.as_str().to_owned(),
        },
    };
    (!id.is_empty()).then_some(id)
}

/// All whitespace runs (line breaks included) as single spaces, trimmed.
fn tidy(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The text of an announcement page: the text of the first element matching
/// `text_selector`, with paragraph breaks kept.
///
/// Block elements (p, div, h1-h6, table, ul, ol, blockquote, pre, section,
/// ...) are separated by a blank line; li, tr, dt, dd and each `<br>` start a
/// new line (two `<br>` in a row make a blank line); table cells are
/// separated by a space. Consecutive blank lines collapse to one, runs of
/// spaces and tabs (and no-break spaces) collapse to one space, lines are
/// trimmed, entities are decoded, and the contents of script, style,
/// noscript and template are dropped. None when nothing matches or the
/// text is empty.
pub fn extract_text(html: &str, text_selector: &Selector) -> Option<String> {
    let document = Html::parse_document(html);
    let element = document.select(text_selector).next()?;
    let text = element_text(element);
    (!text.is_empty()).then_some(text)
}

/// How an element affects the text layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    /// Not text: skipped with everything inside.
    Hidden,
    /// Separated from its surroundings by a blank line.
    Paragraph,
    /// Like [`Layout::Paragraph`], and keeps its own line breaks.
    Preformatted,
    /// On a line of its own.
    Line,
    /// A forced line break.
    Break,
    /// Separated from its neighbours by a space.
    Cell,
    /// Flows with the text around it.
    Inline,
}

fn layout(name: &str) -> Layout {
    match name {
        "script" | "style" | "noscript" | "template" | "head" | "title" => Layout::Hidden,
        "pre" | "listing" | "xmp" | "textarea" => Layout::Preformatted,
        "p" | "div" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "table" | "ul" | "ol" | "dl"
        | "blockquote" | "section" | "article" | "header" | "footer" | "nav" | "aside" | "main"
        | "figure" | "figcaption" | "form" | "fieldset" | "address" | "hr" | "details"
        | "center" | "body" | "html" => Layout::Paragraph,
        "li" | "tr" | "dt" | "dd" | "caption" | "summary" | "legend" | "option" => Layout::Line,
        "br" => Layout::Break,
        "td" | "th" => Layout::Cell,
        _ => Layout::Inline,
    }
}

/// The text inside `root`, laid out as [`extract_text`] describes. The tree
/// is walked with an explicit stack, so deeply nested pages cannot overflow
/// the call stack.
fn element_text(root: ElementRef<'_>) -> String {
    enum Step<N> {
        Enter(N),
        Leave(Layout),
    }
    let mut text = TextBuilder::default();
    let mut stack = vec![Step::Enter(*root)];
    while let Some(step) = stack.pop() {
        let node = match step {
            Step::Enter(node) => node,
            Step::Leave(layout) => {
                text.leave(layout);
                continue;
            }
        };
        match node.value() {
            Node::Text(content) => text.push_text(content),
            Node::Element(element) => {
                let layout = layout(element.name());
                if layout == Layout::Hidden {
                    continue;
                }
                text.enter(layout);
                stack.push(Step::Leave(layout));
                stack.extend(node.children().rev().map(Step::Enter));
            }
            _ => {}
        }
    }
    text.finish()
}

/// Collects text and line breaks; breaks are held back until more text
/// comes, so nested blocks and leading or trailing blocks add nothing.
#[derive(Default)]
struct TextBuilder {
    out: String,
    /// Line breaks owed before the next text: 0, 1 (new line) or 2 (blank
    /// line).
    pending: usize,
    /// How many preformatted elements we are inside.
    preformatted: usize,
}

impl TextBuilder {
    fn enter(&mut self, layout: Layout) {
        match layout {
            Layout::Paragraph => self.want(2),
            Layout::Preformatted => {
                self.want(2);
                self.preformatted += 1;
            }
            Layout::Line => self.want(1),
            Layout::Break => self.pending = (self.pending + 1).min(2),
            Layout::Cell => self.space(),
            Layout::Hidden | Layout::Inline => {}
        }
    }

    fn leave(&mut self, layout: Layout) {
        match layout {
            Layout::Paragraph => self.want(2),
            Layout::Preformatted => {
                self.want(2);
                self.preformatted = self.preformatted.saturating_sub(1);
            }
            Layout::Line => self.want(1),
            Layout::Cell => self.space(),
            Layout::Break | Layout::Hidden | Layout::Inline => {}
        }
    }

    fn want(&mut self, breaks: usize) {
        self.pending = self.pending.max(breaks);
    }

    /// A space, unless a line break is owed or nothing was written yet.
    fn space(&mut self) {
        if self.pending == 0 && !self.out.is_empty() && !self.out.ends_with(' ') {
            self.out.push(' ');
        }
    }

    fn push_text(&mut self, content: &str) {
        if self.preformatted > 0 {
            for (index, line) in content.split('\n').enumerate() {
                if index > 0 {
                    self.pending = (self.pending + 1).min(2);
                }
                self.push_words(line);
            }
        } else {
            self.push_words(content);
        }
    }

    fn push_words(&mut self, content: &str) {
        if content.chars().all(char::is_whitespace) {
            if !content.is_empty() {
                self.space();
            }
            return;
        }
        if !self.out.is_empty() {
            for _ in 0..self.pending {
                self.out.push('\n');
            }
        }
        self.pending = 0;
        self.out.extend(
            content
                .chars()
                .map(|c| if c.is_whitespace() { ' ' } else { c }),
        );
    }

    /// Lines trimmed with spaces collapsed, at most one blank line in a row,
    /// none at either end.
    fn finish(self) -> String {
        let mut lines: Vec<String> = Vec::new();
        for line in self.out.split('\n') {
            let line = tidy(line);
            if !line.is_empty() || lines.last().is_some_and(|last| !last.is_empty()) {
                lines.push(line);
            }
        }
        while lines.last().is_some_and(String::is_empty) {
            lines.pop();
        }
        lines.join("\n")
    }
}

/// The relay message: "DUYURU: " + text + "\n\nİncelemek için: " + link.
///
/// When that is longer than `limit` UTF-16 code units (how Telegram counts),
/// the text is shortened at a word boundary and ends with "…" so that the
/// whole message, still ending with the link, fits `limit`. A word is cut
/// only when the last word boundary would drop more than half of the room
/// for the text (one very long word or link); such a cut never splits a
/// character, an emoji sequence or a letter from its combining mark. The
/// text is trimmed first. If even "DUYURU: …" and the link do not fit, the
/// message is cut at `limit` instead: the only case where it does not end
/// with the link.
pub fn format_message(text: &str, link: &str, limit: usize) -> String {
    let text = text.trim();
    let suffix = format!("{LINK_LABEL}{link}");
    let full = format!("{PREFIX}{text}{suffix}");
    if telegram_len(&full) <= limit {
        return full;
    }
    let fixed = telegram_len(PREFIX) + telegram_len(ELLIPSIS) + telegram_len(&suffix);
    let Some(room) = limit.checked_sub(fixed) else {
        return cut_to_units(&full, limit).to_owned();
    };
    let kept = shorten(text, room);
    format!("{PREFIX}{kept}{ELLIPSIS}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telegram::text::splits_cluster;

    const PAGE: &str = "https://mdbf.btu.edu.tr/tr/bilgisayar/duyuru/birim/193";

    fn page_url() -> Url {
        Url::parse(PAGE).expect("a valid test URL")
    }

    fn selector(css: &str) -> Selector {
        Selector::parse(css).expect("a valid test selector")
    }

    #[test]
    fn the_depth_check_refuses_deep_pages_only() {
        let deep = |open: &str, n: usize| format!("<html><body>{}</body></html>", open.repeat(n));
        let nested_closed =
            |n: usize| format!("<body>{}x{}</body>", "<div>".repeat(n), "</div>".repeat(n));
        let list = format!(
            "<ul>{}</ul>",
            "<li><a href=\"/d/1\">Duyuru</a>".repeat(5000)
        );
        let svg = format!(
            "<div><svg>{}</svg></div>",
            "<path d=\"M0 0\"/>".repeat(2000)
        );
        let siblings = "<div><p>a</p><br><img src=x></div>".repeat(5000);
        let comment = format!("<!--{}--><div></div>", "<div>".repeat(2000));
        let script = format!("<script>{}</script>", "<div>".repeat(2000));
        let cases: Vec<(&str, String, bool)> = vec![
            ("flat siblings", siblings, false),
            ("500 levels", nested_closed(500), false),
            ("513 levels", nested_closed(513), true),
            ("unclosed divs", deep("<div>", 600), true),
            ("self-closing divs nest in HTML", deep("<div/>", 600), true),
            (
                "stray end tags close nothing",
                deep("<div></span>", 600),
                true,
            ),
            ("li without end tags", list, false),
            ("svg paths close themselves", svg, false),
            ("tags in a comment", comment, false),
            ("tags in a script", script, false),
            ("quoted >", deep("<div title='>'>", 600), true),
        ];
        for (name, html, expected) in cases {
            assert_eq!(nesting_exceeds(&html, MAX_DEPTH), expected, "{name}");
        }
    }

    #[tokio::test]
    async fn a_million_levels_deep_page_fails_fast_off_the_runtime() {
        let html = format!("<html><body>{}</body></html>", "<div>".repeat(1_000_000));
        assert!(html.len() <= MAX_BODY);
        let started = std::time::Instant::now();
        let result = parse_off_thread(html, |html| {
            Html::parse_document(html).root_element().children().count()
        })
        .await;
        assert!(matches!(result, Err(FetchError::TooDeep)), "{result:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let parsed = parse_off_thread("<p>ok</p>".to_owned(), |html| html.len()).await;
        assert_eq!(parsed.expect("a plain page parses"), 9);
    }

    fn pairs(listed: &[Listed]) -> Vec<(String, String, String)> {
        listed
            .iter()
            .map(|item| {
                (
                    item.id.clone(),
                    item.title.clone(),
                    item.link.as_str().to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn parse_list_cases() {
        struct Case {
            name: &'static str,
            html: &'static str,
            selector: &'static str,
            pattern: Option<&'static str>,
            want: &'static [(&'static str, &'static str, &'static str)],
        }
        let cases = [
            Case {
                name: "the 2023 layout",
                html: r#"<html><body><div class="ann-list"><ul>
                    <li><a href="/tr/bilgisayar/duyuru/goster/12345">Sınav   takvimi
                        açıklandı</a></li>
                    <li><a href="/tr/bilgisayar/duyuru/goster/12344">Staj &amp; iş</a></li>
                    </ul></div><ul><li><a href="/tr/elsewhere/1">not in the list</a></li></ul>
                    </body></html>"#,
                selector: "div.ann-list ul li a",
                pattern: None,
                want: &[
                    (
                        "12345",
                        "Sınav takvimi açıklandı",
                        "https://mdbf.btu.edu.tr/tr/bilgisayar/duyuru/goster/12345",
                    ),
                    (
                        "12344",
                        "Staj & iş",
                        "https://mdbf.btu.edu.tr/tr/bilgisayar/duyuru/goster/12344",
                    ),
                ],
            },
            Case {
                name: "relative and absolute links",
                html: r#"<a href="goster/7">relative</a>
                    <a href="../x/8/">parent, trailing slash</a>
                    <a href="//other.example/y/9">scheme-relative</a>
                    <a href="http://other.example/z/10?a=b#top">absolute</a>
                    <a href=" /trimmed/11 ">spaces</a>"#,
                selector: "a",
                pattern: None,
                want: &[
                    (
                        "7",
                        "relative",
                        "https://mdbf.btu.edu.tr/tr/bilgisayar/duyuru/birim/goster/7",
                    ),
                    (
                        "8",
                        "parent, trailing slash",
                        "https://mdbf.btu.edu.tr/tr/bilgisayar/duyuru/x/8/",
                    ),
                    ("9", "scheme-relative", "https://other.example/y/9"),
                    ("10", "absolute", "http://other.example/z/10?a=b#top"),
                    ("11", "spaces", "https://mdbf.btu.edu.tr/trimmed/11"),
                ],
            },
            Case {
                name: "id from a pattern",
                html: r#"<table><tr><td><a href="index.php?page=duyuru&amp;id=41">a</a></td></tr>
                    <tr><td><a href="index.php?page=duyuru&amp;id=40">b</a></td></tr>
                    <tr><td><a href="index.php?page=hakkinda">no id</a></td></tr></table>"#,
                selector: "a",
                pattern: Some(r"[?&]id=(\d+)"),
                want: &[
                    (
                        "41",
                        "a",
                        "https://mdbf.btu.edu.tr/tr/bilgisayar/duyuru/birim/index.php?page=duyuru&id=41",
                    ),
                    (
                        "40",
                        "b",
                        "https://mdbf.btu.edu.tr/tr/bilgisayar/duyuru/birim/index.php?page=duyuru&id=40",
                    ),
                ],
            },
            Case {
                name: "a pattern without a group uses the whole match",
                html: r#"<a href="/d/5-x">x</a><a href="/d/y">y</a>"#,
                selector: "a",
                pattern: Some(r"\d+"),
                want: &[("5", "x", "https://mdbf.btu.edu.tr/d/5-x")],
            },
            Case {
                name: "duplicates listed once, first wins",
                html: r#"<a href="/d/1">first</a><a href="/d/2">two</a>
                    <a href="https://mdbf.btu.edu.tr/d/1">again</a><a href="/d/1/">slash</a>"#,
                selector: "a",
                pattern: None,
                want: &[
                    ("1", "first", "https://mdbf.btu.edu.tr/d/1"),
                    ("2", "two", "https://mdbf.btu.edu.tr/d/2"),
                ],
            },
            Case {
                name: "links without a usable href skipped",
                html: r#"<a name="top">anchor</a><a href="">empty</a>
                    <a href="javascript:void(0)">script</a><a href="mailto:a@b.c">mail</a>
                    <a href="/d/3">kept</a>"#,
                selector: "a",
                pattern: None,
                want: &[("3", "kept", "https://mdbf.btu.edu.tr/d/3")],
            },
            Case {
                name: "selector on li containing a",
                html: r#"<ul class="l">
                    <li><span>12.03.2024</span> <a href="/d/20">Yeni <b>duyuru</b></a></li>
                    <li>no link here</li>
                    <li><a>no href</a> <a href="/d/19">second anchor</a></li>
                    </ul>"#,
                selector: "ul.l li",
                pattern: None,
                want: &[
                    (
                        "20",
                        "12.03.2024 Yeni duyuru",
                        "https://mdbf.btu.edu.tr/d/20",
                    ),
                    (
                        "19",
                        "no href second anchor",
                        "https://mdbf.btu.edu.tr/d/19",
                    ),
                ],
            },
            Case {
                name: "no path segment uses the whole link",
                html: r#"<a href="https://example.org/">home</a>"#,
                selector: "a",
                pattern: None,
                want: &[("https://example.org/", "home", "https://example.org/")],
            },
            Case {
                name: "nothing matches",
                html: "<p>Bakım çalışması</p>",
                selector: "div.ann-list ul li a",
                pattern: None,
                want: &[],
            },
        ];
        for case in cases {
            let pattern = case
                .pattern
                .map(|p| regex::Regex::new(p).expect("a valid test pattern"));
            let got = parse_list(
                case.html,
                &page_url(),
                &selector(case.selector),
                pattern.as_ref(),
            );
            let want: Vec<_> = case
                .want
                .iter()
                .map(|(id, title, link)| (id.to_string(), title.to_string(), link.to_string()))
                .collect();
            assert_eq!(pairs(&got), want, "case: {}", case.name);
        }
    }

    #[test]
    fn extract_text_cases() {
        let cases: &[(&str, &str, &str, Option<&str>)] = &[
            (
                "paragraphs kept, whitespace collapsed",
                r#"<div class="page-about">
                    <p>  Sevgili   öğrenciler,
                       yarın	ders   yok. </p>

                    <p>Bölüm Başkanlığı</p></div>"#,
                "div.page-about",
                Some("Sevgili öğrenciler, yarın ders yok.\n\nBölüm Başkanlığı"),
            ),
            (
                "entities decoded",
                r#"<div class="page-about"><p>Ar&amp;Ge &ouml;d&uuml;l&uuml; ba&#351;vurusu&nbsp;&nbsp;a&ccedil;&#305;k &lt;3&gt;</p></div>"#,
                "div.page-about",
                Some("Ar&Ge ödülü başvurusu açık <3>"),
            ),
            (
                "script and style dropped",
                r#"<div class="page-about"><script>var x = "gizli";</script><style>p{}</style>
                    <p>Görünen</p><noscript>js yok</noscript></div>"#,
                "div.page-about",
                Some("Görünen"),
            ),
            (
                "br, lists, headings and tables",
                r#"<div class="page-about"><h2>Başlık</h2>satır 1<br>satır 2<br/><br/>satır 3
                    <ul><li>bir</li><li>iki</li></ul>
                    <table><tr><td>Ad</td><td>Saat</td></tr><tr><td>Sınav</td><td>10:00</td></tr></table>
                    <div><div><p>iç içe</p></div></div>son <b>kalın</b> <i>eğik</i></div>"#,
                "div.page-about",
                Some(
                    "Başlık\n\nsatır 1\nsatır 2\n\nsatır 3\n\nbir\niki\n\nAd Saat\nSınav 10:00\n\niç içe\n\nson kalın eğik",
                ),
            ),
            (
                "blank lines collapsed to one",
                r#"<div class="page-about"><p>a</p><p>&nbsp;</p><p> </p><br><br><br><p>b</p></div>"#,
                "div.page-about",
                Some("a\n\nb"),
            ),
            (
                "preformatted keeps its lines",
                "<div class=\"page-about\"><pre>x  1\ny 2</pre></div>",
                "div.page-about",
                Some("x 1\ny 2"),
            ),
            (
                "first match only",
                r#"<div class="page-about">birinci</div><div class="page-about">ikinci</div>"#,
                "div.page-about",
                Some("birinci"),
            ),
            (
                "nothing matches",
                "<div class=\"other\">x</div>",
                "div.page-about",
                None,
            ),
            (
                "empty text",
                "<div class=\"page-about\"> <p> </p><script>x</script></div>",
                "div.page-about",
                None,
            ),
        ];
        for (name, html, css, want) in cases {
            assert_eq!(
                extract_text(html, &selector(css)).as_deref(),
                *want,
                "case: {name}"
            );
        }
    }

    #[test]
    fn extract_text_survives_deep_nesting() {
        let depth = 20_000;
        let html = format!(
            "<div class=\"page-about\">{}derin{}</div>",
            "<span>".repeat(depth),
            "</span>".repeat(depth)
        );
        assert_eq!(
            extract_text(&html, &selector("div.page-about")).as_deref(),
            Some("derin")
        );
    }

    #[test]
    fn decode_body_cases() {
        let words = "Öğrenci işleri";
        let (cp1254, _, _) = encoding_rs::WINDOWS_1254.encode(words);
        let cp1254 = cp1254.into_owned();
        assert_ne!(cp1254, words.as_bytes(), "the test bytes are not UTF-8");
        // A page with `head` in its head and `body` (raw bytes) as its body.
        let page = |head: &str, body: &[u8]| -> Vec<u8> {
            let mut page = format!("<html><head>{head}</head><body>").into_bytes();
            page.extend_from_slice(body);
            page.extend_from_slice(b"</body></html>");
            page
        };
        // The same page as text, with `body` as its body.
        let text =
            |head: &str, body: &str| format!("<html><head>{head}</head><body>{body}</body></html>");
        let meta = r#"<meta charset="windows-1254">"#;
        let equiv = r#"<META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=iso-8859-9">"#;
        let utf8_meta = r#"<meta charset="utf-8">"#;
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(words.as_bytes());
        let far_head = format!("{}{meta}", " ".repeat(3000));

        let cases: Vec<(&str, Vec<u8>, Option<&str>, String)> = vec![
            (
                "charset in the header",
                page("", &cp1254),
                Some("text/html; charset=windows-1254"),
                text("", words),
            ),
            (
                "quoted, upper-case ISO-8859-9 in the header",
                page("", &cp1254),
                Some("text/html;Charset=\"ISO-8859-9\""),
                text("", words),
            ),
            ("meta charset", page(meta, &cp1254), None, text(meta, words)),
            (
                "meta http-equiv",
                page(equiv, &cp1254),
                Some("text/html"),
                text(equiv, words),
            ),
            (
                "the header wins over meta",
                page(utf8_meta, &cp1254),
                Some("text/html; charset=windows-1254"),
                text(utf8_meta, words),
            ),
            (
                "an unknown header label falls through to meta",
                page(meta, &cp1254),
                Some("text/html; charset=nonsense"),
                text(meta, words),
            ),
            (
                "no charset: UTF-8",
                page("", words.as_bytes()),
                None,
                text("", words),
            ),
            (
                "no charset and not UTF-8: lossy",
                page("", &cp1254),
                Some("text/html"),
                text("", "\u{FFFD}\u{FFFD}renci i\u{FFFD}leri"),
            ),
            (
                "a UTF-8 BOM is removed",
                bom.clone(),
                None,
                words.to_owned(),
            ),
            (
                "a UTF-8 BOM wins over a wrong header",
                bom,
                Some("text/html; charset=windows-1254"),
                words.to_owned(),
            ),
            (
                "meta beyond 2 KB is ignored",
                page(&far_head, words.as_bytes()),
                None,
                text(&far_head, words),
            ),
        ];
        for (name, bytes, content_type, want) in cases {
            assert_eq!(decode_body(&bytes, content_type), want, "case: {name}");
        }
    }

    fn units(text: &str) -> usize {
        text.encode_utf16().count()
    }

    const LINK: &str = "https://mdbf.btu.edu.tr/tr/bilgisayar/duyuru/goster/12345";

    #[test]
    fn format_message_short_and_exact() {
        let text = "Yarın ders yok.";
        let whole = format!("DUYURU: {text}\n\nİncelemek için: {LINK}");
        assert_eq!(format_message(text, LINK, 4096), whole);
        assert_eq!(format_message(text, LINK, units(&whole)), whole);
        assert_eq!(format_message("  Yarın ders yok.\n", LINK, 4096), whole);
        let shorter = format_message(text, LINK, units(&whole) - 1);
        assert_ne!(shorter, whole);
        assert!(units(&shorter) < units(&whole));
    }

    /// The text part of a shortened message (between "DUYURU: " and "…").
    fn kept(message: &str) -> &str {
        let body = message.strip_prefix("DUYURU: ").unwrap_or(message);
        body.split('…').next().unwrap_or_default()
    }

    #[test]
    fn format_message_long_cases() {
        let suffix = format!("…\n\nİncelemek için: {LINK}");
        let fixed = units("DUYURU: ") + units(&suffix);
        let sentence =
            "Sevgili öğrenciler, bu dönemin final sınavları aşağıdaki tarihlerde yapılacaktır. ";
        // (name, text, room for the text after "DUYURU: " and before "…")
        let cases: Vec<(&str, String, usize)> = vec![
            (
                "Turkish words at Telegram's limit",
                sentence.repeat(100),
                4096 - fixed,
            ),
            ("emoji words", "🎓📚 ".repeat(50), 41),
            ("emoji words, odd room", "🎓📚 ".repeat(50), 42),
            ("one long word: hard cut", "a".repeat(500), 60),
            ("ZWJ emoji in one word", "👩\u{200D}💻".repeat(40), 31),
            ("flags in one word", "🇹🇷".repeat(40), 30),
            ("combining marks in one word", "e\u{301}".repeat(100), 31),
            ("skin tones in one word", "👍🏽".repeat(40), 30),
            (
                "surrogate pair at the cut",
                format!("{}😀😀😀", "x".repeat(40)),
                41,
            ),
        ];
        for (name, text, room) in cases {
            let limit = fixed + room;
            let message = format_message(&text, LINK, limit);
            assert!(
                units(&message) <= limit,
                "case {name}: {} > {limit}",
                units(&message)
            );
            assert!(message.starts_with("DUYURU: "), "case {name}");
            assert!(message.ends_with(&suffix), "case {name}: {message:?}");
            let kept = kept(&message);
            assert!(text.starts_with(kept), "case {name}: {kept:?}");
            assert!(!kept.ends_with(char::is_whitespace), "case {name}");
            assert!(
                units(kept) * 2 >= room.saturating_sub(4),
                "case {name}: wasteful {kept:?}"
            );
            assert!(
                !splits_cluster(kept, &text[kept.len()..]),
                "case {name}: {kept:?}"
            );
        }
    }

    #[test]
    fn format_message_cuts_at_spaces_not_inside_words() {
        let text = "Sınav programı güncellenmiştir lütfen kontrol ediniz";
        let fixed = units("DUYURU: …\n\nİncelemek için: ") + units(LINK);
        // With one unit more the whole text fits (the "…" is not needed).
        for room in 0..units(text) - 1 {
            let message = format_message(text, LINK, fixed + room);
            assert!(units(&message) <= fixed + room, "room {room}");
            let kept = kept(&message);
            // The longest whole-word prefix that fits.
            let boundary = text
                .match_indices(' ')
                .map(|(index, _)| &text[..index])
                .rfind(|prefix| units(prefix) <= room)
                .unwrap_or("");
            if units(boundary) * 2 >= room && !boundary.is_empty() {
                assert_eq!(kept, boundary, "room {room}");
            } else {
                // A hard cut: as much as fits.
                assert_eq!(units(kept), room, "room {room}: {kept:?}");
            }
        }
    }

    #[test]
    fn format_message_link_too_long() {
        let link = format!("https://example.org/{}", "x".repeat(200));
        let message = format_message("metin", &link, 50);
        assert_eq!(units(&message), 50);
        assert!(message.starts_with("DUYURU: metin"));
    }

    #[test]
    fn format_message_emoji_at_the_cut() {
        // "😀" is two UTF-16 units: a limit that leaves one unit of room
        // for it must drop it, not split it.
        let fixed = units("DUYURU: …\n\nİncelemek için: ") + units(LINK);
        for extra in 0..4 {
            let message = format_message("ab😀😀cd", LINK, fixed + 2 + extra);
            assert!(units(&message) <= fixed + 2 + extra);
            let kept = message["DUYURU: ".len()..]
                .split('…')
                .next()
                .unwrap_or_default();
            let want = ["ab", "ab", "ab😀", "ab😀"][extra];
            assert_eq!(kept, want, "extra {extra}");
        }
    }

    /// A one-shot HTTP server on 127.0.0.1: answers the first request with
    /// `answer` (or never, if None) and returns the request head it read.
    async fn serve_once(answer: Option<Vec<u8>>) -> (Url, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a test port");
        let addr = listener.local_addr().expect("the test port");
        let url = Url::parse(&format!("http://{addr}/list")).expect("a test URL");
        let task = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("a test connection");
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.expect("read the request");
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            match answer {
                Some(answer) => {
                    let _ = stream.write_all(&answer).await;
                    let _ = stream.shutdown().await;
                }
                None => std::future::pending::<()>().await,
            }
            String::from_utf8_lossy(&head).into_owned()
        });
        (url, task)
    }

    fn answer(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
        let mut answer = format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        answer.extend_from_slice(body);
        answer
    }

    #[tokio::test]
    async fn fetch_decodes_and_sends_the_user_agent() {
        let (body, _, _) = encoding_rs::WINDOWS_1254.encode("Öğrenci işleri");
        let (url, server) = serve_once(Some(answer(
            "200 OK",
            "Content-Type: text/html; charset=windows-1254\r\n",
            &body,
        )))
        .await;
        let client = reqwest::Client::new();
        let page = fetch(&client, &url, Duration::from_secs(5), "duyuru-test/1.0").await;
        assert_eq!(page.expect("the page"), "Öğrenci işleri");
        let head = server.await.expect("the server task");
        assert!(head.starts_with("GET /list HTTP/1.1\r\n"), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("user-agent: duyuru-test/1.0\r\n"),
            "{head}"
        );
    }

    #[tokio::test]
    async fn fetch_errors() {
        let client = reqwest::Client::new();
        let timeout = Duration::from_secs(5);

        let (url, _server) = serve_once(Some(answer("503 Service Unavailable", "", b"down"))).await;
        let error = fetch(&client, &url, timeout, "t").await.expect_err("503");
        assert!(matches!(error, FetchError::Http(503)), "{error:?}");
        assert_eq!(error.to_string(), "the site answered HTTP 503");

        let (url, _server) = serve_once(Some(answer("404 Not Found", "", b""))).await;
        let error = fetch(&client, &url, timeout, "t").await.expect_err("404");
        assert!(matches!(error, FetchError::Http(404)), "{error:?}");

        let big = vec![b'a'; MAX_BODY + 1];
        let (url, _server) = serve_once(Some(answer("200 OK", "", &big))).await;
        let error = fetch(&client, &url, timeout, "t")
            .await
            .expect_err("too large");
        assert!(matches!(error, FetchError::TooLarge), "{error:?}");

        // No Content-Length: the limit is enforced while reading.
        let mut streamed = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
        streamed.extend_from_slice(&big);
        let (url, _server) = serve_once(Some(streamed)).await;
        let error = fetch(&client, &url, timeout, "t")
            .await
            .expect_err("too large");
        assert!(matches!(error, FetchError::TooLarge), "{error:?}");

        let exact = vec![b'a'; MAX_BODY];
        let (url, _server) = serve_once(Some(answer("200 OK", "", &exact))).await;
        let page = fetch(&client, &url, timeout, "t")
            .await
            .expect("exactly 5 MB");
        assert_eq!(page.len(), MAX_BODY);

        let (url, _server) = serve_once(None).await;
        let started = std::time::Instant::now();
        let error = fetch(&client, &url, Duration::from_millis(200), "t")
            .await
            .expect_err("timeout");
        assert!(matches!(error, FetchError::Timeout), "{error:?}");
        assert!(started.elapsed() < Duration::from_secs(5));

        // A port nobody listens on: bind one, then free it.
        let closed = {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a test port");
            listener.local_addr().expect("the test port")
        };
        let url = Url::parse(&format!("http://{closed}/")).expect("a test URL");
        let error = fetch(&client, &url, timeout, "t")
            .await
            .expect_err("refused");
        match error {
            FetchError::Network(message) => assert!(!message.is_empty()),
            other => panic!("expected a network error, got {other:?}"),
        }
    }
}
