//! Raw Bot API calls for the hot paths (`getUpdates`, `sendMessage`,
//! `editMessageText`): one POST with a JSON body, a per-request timeout, an
//! answer read up to a size cap, and every failure sorted into an
//! [`ErrorClass`] with a short, token-free detail.
//!
//! teloxide's client is kept for the rare calls (getMe, setMyCommands,
//! answerCallbackQuery, getChatMember, deleteWebhook). These three are raw
//! because the daemon needs what teloxide does not give: a timeout per
//! request (a hung send must not hold a chat for the long-poll timeout), a
//! cap on the body (a hostile server cannot grow memory), updates parsed
//! one by one (one bad update must not fail its batch), and no sleep
//! before reading a 5xx body.

use std::error::Error as _;
use std::time::Duration;

use serde::Deserialize;
use serde::Serialize;
use serde_json::value::RawValue;

use super::errors::{ErrorClass, classify_description};
use super::{BotHandle, excerpt};

/// The largest answer to a call other than `getUpdates`: a sent message
/// echoed back is a few KB.
pub const ANSWER_CAP: usize = 1 << 20;

/// Why a call failed: its class and a short detail safe to show anywhere,
/// and Telegram's own answer when it refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {detail}")]
pub struct CallError {
    pub class: ErrorClass,
    /// Telegram's description or the network's cause, bounded, with no
    /// token and no control characters.
    pub detail: String,
    /// Telegram's refusal as it came (a JSON answer with `ok: false`);
    /// `None` for a network failure or an answer that was not the Bot
    /// API's JSON.
    pub refusal: Option<Refusal>,
}

/// Telegram's answer to a call it refused, as a bot would read it:
/// `error_code`, `description` and `parameters`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: i64,
    /// The description, redacted and at most [`DESCRIPTION_CAP`] bytes.
    pub description: String,
    /// `parameters` as JSON text (`retry_after`, `migrate_to_chat_id`).
    pub parameters: Option<String>,
}

/// The longest description a refusal keeps: Telegram's are a line.
pub const DESCRIPTION_CAP: usize = 1024;

impl Refusal {
    /// The answer's JSON: `{"ok":false,"error_code":…,"description":…}`.
    pub fn to_json(&self) -> String {
        let mut answer = serde_json::json!({
            "ok": false,
            "error_code": self.code,
            "description": self.description,
        });
        if let Some(parameters) = self
            .parameters
            .as_deref()
            .and_then(|p| serde_json::from_str::<serde_json::Value>(p).ok())
            && let Some(map) = answer.as_object_mut()
        {
            map.insert("parameters".to_owned(), parameters);
        }
        answer.to_string()
    }
}

impl CallError {
    pub(crate) fn transient(detail: impl Into<String>) -> CallError {
        CallError {
            class: ErrorClass::Transient,
            detail: detail.into(),
            refusal: None,
        }
    }
}

#[derive(Deserialize)]
struct Answer<'a> {
    ok: bool,
    #[serde(borrow)]
    result: Option<&'a RawValue>,
    error_code: Option<i64>,
    description: Option<String>,
    parameters: Option<Parameters>,
}

#[derive(Deserialize, Serialize)]
struct Parameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    migrate_to_chat_id: Option<i64>,
}

/// Calls `method` with `body` and returns the raw `result` of a successful
/// answer (for the caller to parse).
///
/// # Errors
/// A [`CallError`] for a network failure, a timeout, an answer over `cap`,
/// an answer that is not the Bot API's JSON, or Telegram's refusal.
pub async fn call_raw(
    bot: &BotHandle,
    method: &str,
    body: &impl Serialize,
    timeout: Duration,
    cap: usize,
) -> Result<Vec<u8>, CallError> {
    let request = bot
        .client()
        .post(bot.method_url(method))
        .json(body)
        .timeout(timeout);
    execute(request, cap).await
}

/// Sends a request to the Bot API and reads its answer: the raw `result`
/// of a successful answer, or the failure sorted into its class.
///
/// # Errors
/// As [`call_raw`].
pub(crate) async fn execute(
    request: reqwest::RequestBuilder,
    cap: usize,
) -> Result<Vec<u8>, CallError> {
    let response = request
        .send()
        .await
        .map_err(|err| CallError::transient(network_cause(&err)))?;
    let status = response.status().as_u16();
    let bytes = read_capped(response, cap).await?;
    let answer: Answer<'_> = match serde_json::from_slice(&bytes) {
        Ok(answer) => answer,
        Err(_) => {
            let class = match status {
                401 | 404 => ErrorClass::Unauthorized,
                400..=499 => ErrorClass::BadRequest,
                _ => ErrorClass::Transient,
            };
            return Err(CallError {
                class,
                refusal: None,
                detail: format!(
                    "HTTP {status}, an answer that is not the Bot API's JSON: {}",
                    excerpt(&String::from_utf8_lossy(&bytes[..bytes.len().min(400)]))
                ),
            });
        }
    };
    if answer.ok {
        return Ok(answer
            .result
            .map(|raw| raw.get().as_bytes().to_vec())
            .unwrap_or_else(|| b"null".to_vec()));
    }
    let description = answer.description.unwrap_or_default();
    let code = answer.error_code.unwrap_or(i64::from(status));
    let refusal = Refusal {
        code,
        description: bounded(&crate::secret::Redactor::global().redact(&description)),
        parameters: answer
            .parameters
            .as_ref()
            .and_then(|p| serde_json::to_string(p).ok())
            .filter(|p| p != "{}"),
    };
    let class = match answer.parameters {
        // An hour at most: a larger `retry_after` is a broken server, and
        // must not overflow the clock.
        Some(Parameters {
            retry_after: Some(secs),
            ..
        }) => ErrorClass::RateLimited(Duration::from_secs(secs.min(3600))),
        Some(Parameters {
            migrate_to_chat_id: Some(chat),
            ..
        }) => ErrorClass::Migrated(teloxide::types::ChatId(chat)),
        _ => classify_code(code, &description),
    };
    Err(CallError {
        class,
        detail: excerpt(&if description.is_empty() {
            format!("HTTP {status}")
        } else {
            description
        }),
        refusal: Some(refusal),
    })
}

/// `text` cut to at most [`DESCRIPTION_CAP`] bytes, at a character boundary.
fn bounded(text: &str) -> String {
    if text.len() <= DESCRIPTION_CAP {
        return text.to_owned();
    }
    let mut end = DESCRIPTION_CAP;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Like [`call_raw`], with the result parsed as `T`.
///
/// # Errors
/// As [`call_raw`], and a transient error when the result is not a `T`.
pub async fn call<T: serde::de::DeserializeOwned>(
    bot: &BotHandle,
    method: &str,
    body: &impl Serialize,
    timeout: Duration,
) -> Result<T, CallError> {
    let raw = call_raw(bot, method, body, timeout, ANSWER_CAP).await?;
    serde_json::from_slice(&raw).map_err(|err| {
        CallError::transient(format!(
            "an unexpected {method} result ({:?} error at column {})",
            err.classify(),
            err.column()
        ))
    })
}

/// The class of a refusal from its code and description.
fn classify_code(code: i64, description: &str) -> ErrorClass {
    match classify_description(description) {
        // A description the table does not know: the code decides.
        ErrorClass::BadRequest => match code {
            401 | 404 => ErrorClass::Unauthorized,
            403 => ErrorClass::Forbidden,
            429 => ErrorClass::RateLimited(Duration::from_secs(1)),
            500..=599 => ErrorClass::Transient,
            _ => ErrorClass::BadRequest,
        },
        class => class,
    }
}

/// Reads a body up to `cap` bytes.
pub(crate) async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, CallError> {
    if response
        .content_length()
        .is_some_and(|len| len > cap as u64)
    {
        return Err(CallError::transient(format!(
            "an answer larger than {} KB; not read",
            cap / 1024
        )));
    }
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > cap {
                    return Err(CallError::transient(format!(
                        "an answer larger than {} KB; not read",
                        cap / 1024
                    )));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(bytes),
            Err(err) => return Err(CallError::transient(network_cause(&err))),
        }
    }
}

/// The root cause of a request error in a few words (`timed out`,
/// `connection refused`, `dns error: …`), without the URL.
pub fn network_cause(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "the request timed out".to_owned();
    }
    let mut cause = String::new();
    let mut source = err.source();
    while let Some(next) = source {
        cause = next.to_string();
        source = next.source();
    }
    let what = if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    // First, so that the excerpt keeps it: a bot that cannot open a
    // socket says why in its state.
    let what = if crate::limits::out_of_descriptors(err) {
        format!("out of file descriptors (raise `ulimit -n`, systemd's LimitNOFILE); {what}")
    } else {
        what.to_owned()
    };
    if cause.is_empty() {
        what
    } else {
        excerpt(&format!("{what}: {cause}"))
    }
}
