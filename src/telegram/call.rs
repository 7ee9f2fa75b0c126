//! A call of any Bot API method, as a process bot makes it through the
//! gateway: the method, its parameters as Telegram reads them (every value
//! is text: Telegram's server reads a JSON body into the same text
//! arguments a form gives), and the files uploaded with it, spooled to
//! disk. Sent once, as a form without files or as multipart with them, the
//! files streamed from disk so an upload is never held in memory.
//!
//! [`send`] reads the answer as the outbox needs it (the raw `result`, or
//! the failure sorted into its class with Telegram's refusal); [`forward`]
//! gives the answer back as it came, for the gateway to pass on; and
//! [`download`] fetches a file from `/file/bot<token>/<path>`.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};

use super::BotHandle;
use super::ErrorClass;
use super::api::{self, ANSWER_CAP, CallError, network_cause, read_capped};

/// A Bot API call of any method.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Call {
    /// The method's name as the bot wrote it (any case).
    pub method: String,
    /// Each parameter's text, in the order the bot sent them.
    pub params: Vec<(String, String)>,
    /// Files uploaded with the call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<Upload>,
}

/// Parameters may hold a user's text: only the method is shown.
impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("method", &self.method)
            .field("params", &self.params.len())
            .field("files", &self.files.len())
            .finish()
    }
}

/// One file of a multipart call, spooled to disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The multipart part's name: the parameter (`photo`) or the name an
    /// `attach://<name>` refers to.
    pub part: String,
    pub file_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Where the bytes wait.
    pub path: PathBuf,
    pub size: u64,
}

impl Call {
    /// The text of parameter `name` (the last one given wins, as in a form).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// How many messages Telegram counts this call as: the items of an
    /// album, the messages forwarded or copied at once; 1 otherwise.
    pub fn weight(&self) -> u32 {
        let list = match self.method.as_str() {
            "sendMediaGroup" => self.param("media"),
            "forwardMessages" | "copyMessages" => self.param("message_ids"),
            _ => None,
        };
        list.and_then(|text| serde_json::from_str::<Vec<serde::de::IgnoredAny>>(text).ok())
            .map_or(1, |items| {
                u32::try_from(items.len().clamp(1, 100)).unwrap_or(1)
            })
    }

    /// Sets parameter `name` to `value`, replacing what it held.
    pub fn set_param(&mut self, name: &str, value: String) {
        self.params.retain(|(key, _)| key != name);
        self.params.push((name.to_owned(), value));
    }
}

/// How long a call with files may take per MB, on top of [`BASE_TIMEOUT`]:
/// 50 MB at a slow 1 MB/s.
const PER_MB: Duration = Duration::from_secs(1);
/// How long a call without files may take.
pub const BASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The timeout for `call`: longer the more it uploads.
pub fn timeout_for(call: &Call) -> Duration {
    let bytes: u64 = call.files.iter().map(|f| f.size).sum();
    BASE_TIMEOUT + PER_MB * u32::try_from(bytes / (1 << 20)).unwrap_or(u32::MAX)
}

/// Sends `call` once; the raw `result` of Telegram's answer.
///
/// # Errors
/// The call's [`CallError`], with Telegram's refusal when it refused. A
/// spooled file that is gone (botvisor restarted on another machine) is a
/// bad request: sending again cannot help.
pub async fn send(bot: &BotHandle, call: &Call) -> Result<Vec<u8>, CallError> {
    let request = build(bot, call).await?.timeout(timeout_for(call));
    api::execute(request, ANSWER_CAP).await
}

/// Telegram's answer as it came.
#[derive(Debug)]
pub struct Forwarded {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// Forwards `call` once and gives back Telegram's answer as it came, read
/// up to `cap` bytes.
///
/// # Errors
/// A transient [`CallError`] when no answer came (network, timeout, an
/// answer over `cap`); a bad request when a spooled file is gone.
pub async fn forward(bot: &BotHandle, call: &Call, cap: usize) -> Result<Forwarded, CallError> {
    let request = build(bot, call).await?.timeout(timeout_for(call));
    let response = request
        .send()
        .await
        .map_err(|err| CallError::transient(network_cause(&err)))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = read_capped(response, cap).await?;
    Ok(Forwarded {
        status,
        content_type,
        body,
    })
}

/// Starts downloading the file at `path` (as `getFile` gave it) from
/// `/file/bot<token>/<path>`; the response, for the caller to stream.
///
/// # Errors
/// A transient [`CallError`] when no answer came.
pub async fn download(
    bot: &BotHandle,
    path: &str,
    timeout: Duration,
) -> Result<reqwest::Response, CallError> {
    bot.client()
        .get(bot.file_url(path))
        .timeout(timeout)
        .send()
        .await
        .map_err(|err| CallError::transient(network_cause(&err)))
}

/// A content type simple enough to pass on as it is.
static CONTENT_TYPE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9!#$&^_.+-]{1,64}/[A-Za-z0-9!#$&^_.+-]{1,64}$")
        .expect("the content type pattern is valid")
});

/// The request for `call`: a form, or multipart streaming its files.
async fn build(bot: &BotHandle, call: &Call) -> Result<reqwest::RequestBuilder, CallError> {
    let url = bot.method_url(&call.method);
    if call.files.is_empty() {
        return Ok(bot.client().post(url).form(&call.params));
    }
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in &call.params {
        form = form.text(name.clone(), value.clone());
    }
    for upload in &call.files {
        let file = tokio::fs::File::open(&upload.path)
            .await
            .map_err(|err| CallError {
                class: ErrorClass::BadRequest,
                detail: format!(
                    "the file uploaded as `{}` is no longer in botvisor's spool ({}): \
                     botvisor restarted on another machine",
                    crate::sanitize::excerpt(&upload.part, 64),
                    err.kind()
                ),
                refusal: None,
            })?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
        let part = reqwest::multipart::Part::stream_with_length(body, upload.size)
            .file_name(upload.file_name.clone());
        let part = match upload.content_type.as_deref() {
            Some(kind) if CONTENT_TYPE.is_match(kind) => part
                .mime_str(kind)
                .map_err(|_| CallError::transient("a content type reqwest refused"))?,
            _ => part,
        };
        form = form.part(upload.part.clone(), part);
    }
    Ok(bot.client().post(url).multipart(form))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_read_and_replaced_as_a_form_would() {
        let mut call = Call {
            method: "sendMessage".into(),
            params: vec![
                ("chat_id".into(), "5".into()),
                ("text".into(), "a".into()),
                ("text".into(), "b".into()),
            ],
            files: Vec::new(),
        };
        assert_eq!(call.param("text"), Some("b"));
        assert_eq!(call.weight(), 1);
        let album = Call {
            method: "sendMediaGroup".into(),
            params: vec![(
                "media".into(),
                r#"[{"type":"photo"},{"type":"photo"},{"type":"photo"}]"#.into(),
            )],
            files: Vec::new(),
        };
        assert_eq!(album.weight(), 3);
        call.set_param("chat_id", "-100".into());
        assert_eq!(call.param("chat_id"), Some("-100"));
        assert_eq!(call.params.len(), 3);
        // Debug never shows a parameter's value.
        assert!(!format!("{call:?}").contains("-100"));
        let uploaded = Call {
            files: vec![Upload {
                part: "photo".into(),
                file_name: "a.png".into(),
                content_type: None,
                path: "/nowhere".into(),
                size: 20 << 20,
            }],
            ..call
        };
        assert_eq!(timeout_for(&uploaded), BASE_TIMEOUT + PER_MB * 20);
    }
}
