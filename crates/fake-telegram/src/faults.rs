//! Scripted faults: answers a test arranges in advance for the next requests
//! of a token (to one method or to any), such as a 429 with `retry_after`, a
//! 409 from "another poller", a migrated group, a 5xx, an nginx HTML 502
//! page, or a connection closed without any response.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::reply::ResponseParameters;

/// How a fault answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FaultKind {
    /// A Telegram-shaped JSON error with the fault's status and description.
    #[default]
    JsonError,
    /// The connection is closed without any response.
    DropConnection,
    /// A non-JSON body: an nginx-style HTML error page
    /// (`Content-Type: text/html`) with the fault's status.
    HtmlPage,
    /// A success, `{"ok":true,"result":…}`, with the fault's description as
    /// the raw JSON result: a server or proxy that answers what it likes
    /// (say, an empty getUpdates batch at once).
    Ok,
    /// A Telegram-shaped JSON error whose `description` echoes the request
    /// path, token included, as some proxies and gateways do: the fault's
    /// description, then the path with its `:` percent-encoded (`%3A`, and
    /// `%3a` in a second copy), then JSON-escaped in the body (`\u003a` and
    /// `\/`, which a JSON reader turns back into `:` and `/`), then escaped
    /// twice (a literal `\u003a` in the description).
    EchoPath,
    /// The same echoes of the path in a non-JSON (`text/html`) body, which
    /// a client can only show raw.
    EchoPathPage,
}

/// How many matching requests a fault answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repeat {
    /// This many, then the fault is used up.
    Times(u32),
    /// Every matching request until [`clear_faults`](crate::FakeTelegram::clear_faults).
    Forever,
}

/// A scripted answer. Build one with a constructor such as
/// [`Fault::retry_after`] and adjust it with [`times`](Fault::times),
/// [`forever`](Fault::forever) and [`delay`](Fault::delay). By default a fault
/// answers one request, at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// The HTTP status (and `error_code`).
    pub status: u16,
    /// The `description` of the JSON error.
    pub description: String,
    /// The `parameters` of the JSON error (`retry_after`, `migrate_to_chat_id`).
    pub parameters: ResponseParameters,
    /// How many matching requests it answers.
    pub repeat: Repeat,
    /// How long to wait before answering (or dropping the connection).
    pub delay: Option<Duration>,
    /// How it answers.
    pub kind: FaultKind,
}

impl Fault {
    /// A successful answer with this `result`, once, whatever the request
    /// asked (e.g. `Fault::ok(json!([]))` for an empty batch at once).
    pub fn ok(result: serde_json::Value) -> Self {
        Fault {
            kind: FaultKind::Ok,
            ..Fault::api_error(200, result.to_string())
        }
    }

    /// A JSON error with this status and description, once.
    pub fn api_error(status: u16, description: impl Into<String>) -> Self {
        Fault {
            status,
            description: description.into(),
            parameters: ResponseParameters::default(),
            repeat: Repeat::Times(1),
            delay: None,
            kind: FaultKind::JsonError,
        }
    }

    /// 409 `Conflict: terminated by other getUpdates request; make sure that
    /// only one bot instance is running`.
    pub fn conflict_other_poller() -> Self {
        Self::api_error(409, crate::conflicts::OTHER_POLLER)
    }

    /// 429 `Too Many Requests: retry after N` with `parameters.retry_after = N`.
    pub fn retry_after(secs: u32) -> Self {
        Self::api_error(429, format!("Too Many Requests: retry after {secs}"))
            .with_retry_after(secs)
    }

    /// 401 `Unauthorized` (a revoked token).
    pub fn unauthorized() -> Self {
        Self::api_error(401, "Unauthorized")
    }

    /// 400 `Bad Request: group chat was upgraded to a supergroup chat` with
    /// `parameters.migrate_to_chat_id = new_chat_id`.
    pub fn migrate(new_chat_id: i64) -> Self {
        Self::api_error(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
        )
        .with_migrate_to(new_chat_id)
    }

    /// 500 `Internal Server Error: restart`.
    pub fn server_error() -> Self {
        Self::api_error(500, "Internal Server Error: restart")
    }

    /// 502 with an nginx HTML page instead of JSON.
    pub fn bad_gateway_html() -> Self {
        Fault {
            kind: FaultKind::HtmlPage,
            ..Self::api_error(502, "Bad Gateway")
        }
    }

    /// A JSON error with this status whose description is `description`
    /// followed by the request path in several encodings
    /// ([`FaultKind::EchoPath`]), once.
    pub fn echo_path(status: u16, description: impl Into<String>) -> Self {
        Fault {
            kind: FaultKind::EchoPath,
            ..Self::api_error(status, description)
        }
    }

    /// A non-JSON page with this status echoing the request path in several
    /// encodings ([`FaultKind::EchoPathPage`]), once.
    pub fn echo_path_page(status: u16) -> Self {
        Fault {
            kind: FaultKind::EchoPathPage,
            ..Self::api_error(status, "upstream error")
        }
    }

    /// The connection is closed without a response.
    pub fn drop_connection() -> Self {
        Fault {
            kind: FaultKind::DropConnection,
            ..Self::api_error(0, "connection dropped")
        }
    }

    /// 403 with this description, e.g. `Forbidden: bot was blocked by the user`.
    pub fn forbidden(description: impl Into<String>) -> Self {
        Self::api_error(403, description)
    }

    /// Answer `n` matching requests (at least 1).
    pub fn times(mut self, n: u32) -> Self {
        self.repeat = Repeat::Times(n.max(1));
        self
    }

    /// Answer every matching request until the faults are cleared.
    pub fn forever(mut self) -> Self {
        self.repeat = Repeat::Forever;
        self
    }

    /// Wait this long before answering.
    pub fn delay(mut self, d: Duration) -> Self {
        self.delay = Some(d);
        self
    }

    /// Add `parameters.retry_after`.
    pub fn with_retry_after(mut self, secs: u32) -> Self {
        self.parameters.retry_after = Some(secs);
        self
    }

    /// Add `parameters.migrate_to_chat_id`.
    pub fn with_migrate_to(mut self, chat_id: i64) -> Self {
        self.parameters.migrate_to_chat_id = Some(chat_id);
        self
    }
}

/// Which requests of a token a fault applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MethodFilter {
    /// Every method.
    Any,
    /// One method (matched case-insensitively).
    Method(String),
}

impl From<&str> for MethodFilter {
    /// A method name; `"*"` means any method.
    fn from(s: &str) -> Self {
        if s == "*" {
            MethodFilter::Any
        } else {
            MethodFilter::Method(s.to_ascii_lowercase())
        }
    }
}

impl From<String> for MethodFilter {
    fn from(s: String) -> Self {
        MethodFilter::from(s.as_str())
    }
}

#[derive(Default)]
struct TokenFaults {
    by_method: HashMap<String, VecDeque<Fault>>,
    any: VecDeque<Fault>,
}

/// The queued faults of every token. Faults for a named method are used
/// before faults for any method; each queue is first in, first out.
#[derive(Default)]
pub(crate) struct FaultBook {
    tokens: HashMap<String, TokenFaults>,
}

impl FaultBook {
    pub fn add(&mut self, token: &str, filter: MethodFilter, fault: Fault) {
        let entry = self.tokens.entry(token.to_owned()).or_default();
        match filter {
            MethodFilter::Any => entry.any.push_back(fault),
            MethodFilter::Method(m) => entry.by_method.entry(m).or_default().push_back(fault),
        }
    }

    /// Removes every fault of `token`, or of every token when `None`.
    pub fn clear(&mut self, token: Option<&str>) {
        match token {
            Some(t) => {
                self.tokens.remove(t);
            }
            None => self.tokens.clear(),
        }
    }

    /// The fault that answers this request, if any, using up one repeat.
    pub fn take(&mut self, token: &str, method_lower: &str) -> Option<Fault> {
        if self.tokens.is_empty() {
            return None;
        }
        let tf = self.tokens.get_mut(token)?;
        if let Some(f) = tf.by_method.get_mut(method_lower).and_then(take_front) {
            return Some(f);
        }
        take_front(&mut tf.any)
    }
}

fn take_front(q: &mut VecDeque<Fault>) -> Option<Fault> {
    let front = q.front_mut()?;
    match &mut front.repeat {
        Repeat::Forever => Some(front.clone()),
        Repeat::Times(n) if *n > 1 => {
            *n -= 1;
            Some(front.clone())
        }
        Repeat::Times(_) => q.pop_front(),
    }
}

/// The nginx-style HTML page a [`FaultKind::HtmlPage`] fault answers with.
pub(crate) fn html_page(status: u16) -> String {
    let reason = hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    format!(
        "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
         <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n\
         </body>\r\n</html>\r\n"
    )
}

/// The body of a [`FaultKind::EchoPath`] fault for a request to `path`.
pub(crate) fn echo_path_body(status: u16, description: &str, path: &str) -> String {
    const RAW: &str = "@@raw@@";
    const ESCAPED: &str = "@@escaped@@";
    let text = format!(
        "{description}: upstream request {} failed (again: {}; raw {RAW}; escaped {ESCAPED})",
        path.replace(':', "%3A"),
        path.replace(':', "%3a"),
    );
    let body = serde_json::json!({
        "ok": false,
        "error_code": status,
        "description": text,
    })
    .to_string();
    body.replace(RAW, &path.replace(':', "\\u003a").replace('/', "\\/"))
        .replace(ESCAPED, &path.replace(':', "\\\\u003a"))
}

/// The body of a [`FaultKind::EchoPathPage`] fault for a request to `path`.
pub(crate) fn echo_path_page(status: u16, path: &str) -> String {
    format!(
        "<html><body><h1>{status}</h1><p>upstream request {} failed</p>\r\n\
         <pre>{{\"path\":\"{}\",\"again\":\"{}\"}}</pre></body></html>\r\n",
        path.replace(':', "%3A"),
        path.replace(':', "\\u003a"),
        path.replace(':', "%3a"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_echoed_path_comes_back_in_every_encoding() {
        // Built at run time: no token-shaped literal sits in the source.
        let path = &format!("/bot{}:{}/getMe", 12, "secret-part");
        let body: serde_json::Value =
            serde_json::from_str(&echo_path_body(502, "Bad Gateway", path)).expect("JSON");
        assert_eq!(body["error_code"], 502);
        let description = body["description"].as_str().expect("a description");
        assert!(
            description.starts_with("Bad Gateway: upstream request /bot12%3Asecret-part/getMe")
        );
        assert!(description.contains("/bot12%3asecret-part/getMe"));
        // `\u003a` in the body: a plain colon once read.
        assert!(description.contains(&format!("raw {path}")));
        assert!(description.contains("escaped /bot12\\u003asecret-part/getMe"));
        let raw = echo_path_body(502, "x", path);
        assert!(raw.contains("\\/bot12\\u003asecret-part\\/getMe"), "{raw}");
        let page = echo_path_page(502, path);
        assert!(page.contains("/bot12%3Asecret-part/getMe"));
        assert!(page.contains("/bot12\\u003asecret-part/getMe"));
    }

    #[test]
    fn method_faults_come_before_any_and_count_down() {
        let mut book = FaultBook::default();
        book.add("t", MethodFilter::Any, Fault::server_error());
        book.add("t", "SendMessage".into(), Fault::retry_after(3).times(2));
        assert_eq!(book.take("t", "sendmessage").map(|f| f.status), Some(429));
        assert_eq!(book.take("t", "sendmessage").map(|f| f.status), Some(429));
        assert_eq!(book.take("t", "sendmessage").map(|f| f.status), Some(500));
        assert_eq!(book.take("t", "sendmessage"), None);
        assert_eq!(book.take("other", "sendmessage"), None);
    }

    #[test]
    fn forever_stays_until_cleared() {
        let mut book = FaultBook::default();
        book.add("t", MethodFilter::Any, Fault::unauthorized().forever());
        for _ in 0..5 {
            assert!(book.take("t", "getme").is_some());
        }
        book.clear(Some("t"));
        assert!(book.take("t", "getme").is_none());
    }
}
