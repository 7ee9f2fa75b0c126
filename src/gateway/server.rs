//! The gateway's HTTP side: every request read, routed to its bot's gate by
//! the local token (401 `Unauthorized` for any other), and answered as
//! Telegram answers, with Telegram's status codes and JSON shapes. A method
//! the Bot API does not have is 404 `Not Found`, never forwarded.
//!
//! Nothing here logs a request's parameters (a user's text), and every
//! answer that came from Telegram is redacted before the child sees it:
//! the real token never reaches the child, whatever a server echoes.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, warn};

use super::methods::{self, Class};
use super::request::{self, Rejected, Route};
use super::updates::{Ask, MAX_LIMIT, MAX_TIMEOUT_SECS, answer_json};
use super::{Gate, Gateway};
use crate::outbox::{Body as OutBody, OutMessage, OutboxError};
use crate::secret::Redactor;
use crate::telegram::call::{self, Call};

/// How long a send waits for a session to queue it in (botvisor between
/// two sessions: an outage, a restart); then it is refused, not queued.
const LINK_WAIT: Duration = Duration::from_secs(30);
/// The largest forwarded answer read (a sticker set, fifty chat
/// administrators: far less).
const FORWARD_CAP: usize = 8 << 20;
/// The largest error answer to a download read and passed on.
const DOWNLOAD_ERROR_CAP: usize = 64 << 10;
/// How long a download may take.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(120);

/// Serves the gateway until `stop`.
pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    stop: CancellationToken,
) {
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(gateway.clone());
    let shutdown = async move {
        stop.cancelled().await;
        gateway.stop();
    };
    if let Err(err) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        warn!(error = %err, "the gateway stopped serving");
    }
}

/// Every request.
async fn handle(State(gateway): State<Gateway>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match request::route(parts.uri.path()) {
        Route::Unknown => {
            debug!(
                path = %crate::sanitize::excerpt(parts.uri.path(), 200),
                "the gateway got a request for no bot method"
            );
            error(404, "Not Found")
        }
        Route::File { token, path } => match gateway.gate(&token) {
            None => {
                debug!("the gateway got a download with an unknown token");
                error(401, "Unauthorized")
            }
            Some(gate) => {
                let span = tracing::info_span!("bot", bot = %gate.name);
                download(gate, &path).instrument(span).await
            }
        },
        Route::Method { token, method } => {
            let Some(gate) = gateway.gate(&token) else {
                return error(401, "Unauthorized");
            };
            let Some(found) = methods::lookup(&method) else {
                gate.figures.count_request("unknown", 404);
                return error(404, "Not Found");
            };
            let span = tracing::info_span!("bot", bot = %gate.name);
            let call = match request::read_call(
                found.name.to_owned(),
                parts.uri.query(),
                &parts.headers,
                body,
                &gate.spool,
            )
            .instrument(span.clone())
            .await
            {
                Ok(call) => call,
                Err(rejected) => {
                    let response = match rejected {
                        Rejected::TooLarge => error(413, "Request Entity Too Large"),
                        Rejected::Bad(description) => error(400, &description),
                        Rejected::Spool(why) => {
                            warn!(parent: &span, error = %why, "could not spool an upload");
                            error(
                                500,
                                "Internal Server Error: botvisor could not store the upload",
                            )
                        }
                    };
                    gate.figures
                        .count_request(found.name, response.status().as_u16());
                    return response;
                }
            };
            // Whatever ends this request (an answer, the caller gone), the
            // uploads go with it unless the outbox took them.
            let spooled = request::Spooled::of(&call);
            let response = answer(&gateway, &gate, found.class, call, spooled)
                .instrument(span)
                .await;
            gate.figures
                .count_request(found.name, response.status().as_u16());
            response
        }
    }
}

/// Answers one call by its method's class.
async fn answer(
    gateway: &Gateway,
    gate: &Arc<Gate>,
    class: Class,
    call: Call,
    spooled: request::Spooled,
) -> Response {
    match class {
        Class::Updates => get_updates(gateway, gate, &call).await,
        Class::Local => local(gate, &call).await,
        Class::Refused => error(
            400,
            &format!(
                "Bad Request: {} is not available: botvisor owns this bot's delivery and \
                     token; its updates come from getUpdates here",
                call.method
            ),
        ),
        Class::Send => send(gate, call, spooled).await,
        Class::Forward => forward(gate, &call).await,
    }
}

/// Reads `getUpdates`' parameters as Telegram does: a bad number is a
/// 400, whose description this gives.
fn ask_of(call: &Call) -> Result<Ask, String> {
    let number = |name: &str| -> Result<Option<i64>, String> {
        match call.param(name).map(str::trim) {
            None | Some("") => Ok(None),
            Some(text) => text
                .parse::<i64>()
                .or_else(|_| text.parse::<f64>().map(|f| f as i64))
                .map(Some)
                .map_err(|_| format!("Bad Request: wrong parameter {name} in request")),
        }
    };
    let limit = number("limit")?.map_or(MAX_LIMIT, |l| {
        usize::try_from(l.clamp(1, MAX_LIMIT as i64)).unwrap_or(MAX_LIMIT)
    });
    let timeout = number("timeout")?.map_or(0, |t| {
        u64::try_from(t.clamp(0, MAX_TIMEOUT_SECS as i64)).unwrap_or(0)
    });
    Ok(Ask {
        offset: number("offset")?,
        limit,
        timeout,
    })
}

/// `getUpdates`, from the inbox: what the offset confirms leaves it, and
/// what is offered comes back at once or as soon as it arrives.
async fn get_updates(gateway: &Gateway, gate: &Arc<Gate>, call: &Call) -> Response {
    let ask = match ask_of(call) {
        Ok(ask) => ask,
        Err(description) => return error(400, &description),
    };
    if let Some(allowed) = call.param("allowed_updates") {
        match serde_json::from_str::<Vec<String>>(allowed) {
            Ok(list) => gate.set_allowed(list),
            Err(_) if allowed.trim().is_empty() => {}
            Err(_) => {
                return error(400, "Bad Request: can't parse allowed_updates JSON array");
            }
        }
    }
    gate.polled();
    let stopping = || gateway.stopping() || gate.stopping.load(std::sync::atomic::Ordering::SeqCst);
    let (confirmed, from, updates) = {
        let mut feed = super::lock(&gate.feed);
        let offset = feed.effective(ask.offset);
        let confirmed = feed.confirm(offset);
        gate.figures.set_waiting(feed.len());
        let from = offset.filter(|offset| *offset > 0);
        let updates = feed.answer(from, ask.limit);
        (confirmed, from, updates)
    };
    gate.confirmed(confirmed);
    if !updates.is_empty() || ask.timeout == 0 || stopping() {
        return json(200, answer_json(&updates));
    }
    // About to wait: an older poll still waiting ends now (Telegram's 409;
    // a poll that answers at once ends none).
    let generation = super::lock(&gate.feed).begin();
    gate.changed.notify_waiters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(ask.timeout);
    loop {
        let changed = gate.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
            let mut feed = super::lock(&gate.feed);
            if !feed.is_current(generation) {
                return error(
                    409,
                    "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                );
            }
            let updates = feed.answer(from, ask.limit);
            if !updates.is_empty() || stopping() || tokio::time::Instant::now() >= deadline {
                return json(200, answer_json(&updates));
            }
        }
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep_until(deadline) => {}
        }
    }
}

/// The methods botvisor answers itself.
async fn local(gate: &Arc<Gate>, call: &Call) -> Response {
    match call.method.as_str() {
        "getMe" => {
            let me = super::lock(&gate.me).clone();
            match me {
                Some(me) => json(
                    200,
                    format!(
                        "{{\"ok\":true,\"result\":{}}}",
                        String::from_utf8_lossy(&me)
                    ),
                ),
                None => forward(gate, call).await,
            }
        }
        "getWebhookInfo" => {
            let pending = super::lock(&gate.feed).len();
            json(
                200,
                serde_json::json!({
                    "ok": true,
                    "result": {
                        "url": "",
                        "has_custom_certificate": false,
                        "pending_update_count": pending,
                    }
                })
                .to_string(),
            )
        }
        "deleteWebhook" => {
            let drop = call
                .param("drop_pending_updates")
                .is_some_and(|v| matches!(v.trim(), "true" | "True" | "1"));
            if drop {
                let dropped = {
                    let mut feed = super::lock(&gate.feed);
                    let dropped = feed.confirm_all();
                    gate.figures.set_waiting(feed.len());
                    dropped
                };
                debug!(
                    dropped = dropped.len(),
                    "deleteWebhook dropped the pending updates"
                );
                gate.confirmed(dropped);
            }
            json(
                200,
                "{\"ok\":true,\"result\":true,\"description\":\"Webhook is already deleted\"}"
                    .to_owned(),
            )
        }
        _ => forward(gate, call).await,
    }
}

/// A send: into the bot's outbox, answered with Telegram's answer once it
/// went out. The message goes out once even if the child stops waiting.
async fn send(gate: &Arc<Gate>, call: Call, spooled: request::Spooled) -> Response {
    let message = OutMessage {
        chat: chat_key(&call),
        body: OutBody::Call(call),
    };
    // A session's sink takes it; a session that ends meanwhile (an
    // outage, a restart) hands over to the next one, within LINK_WAIT.
    let deadline = tokio::time::Instant::now() + LINK_WAIT;
    let mut links = gate.link.subscribe();
    let answer = loop {
        let link = links.borrow_and_update().clone();
        if let Some(link) = link {
            match link.sink.call(message.clone()).await {
                Ok(answer) => {
                    // The outbox removes them once the message is gone.
                    spooled.keep();
                    break answer;
                }
                Err(OutboxError::Stopped) => {}
                Err(OutboxError::Unknown) => {
                    // Its row may need the files.
                    spooled.keep();
                    // Maybe stored, maybe not: queued again it could go
                    // twice; not queued again it may go once or not at all.
                    return error(
                        502,
                        "Bad Gateway: botvisor stopped while it stored the message; it may or may not be sent",
                    );
                }
                Err(err) => {
                    warn!(error = %err, "could not queue a message of the program's");
                    return error(
                        500,
                        "Internal Server Error: botvisor could not store the message; it was not queued",
                    );
                }
            }
        }
        let next = tokio::time::timeout_at(deadline, links.changed()).await;
        if !matches!(next, Ok(Ok(()))) {
            return error(
                502,
                "Bad Gateway: botvisor is not connected to Telegram right now; the message was not queued",
            );
        }
    };
    match answer.await {
        Ok(Ok(result)) => json(
            200,
            format!(
                "{{\"ok\":true,\"result\":{}}}",
                redact(&String::from_utf8_lossy(&result))
            ),
        ),
        Ok(Err(refusal)) => json(
            u16::try_from(refusal.code).unwrap_or(400),
            redact(&refusal.to_json()),
        ),
        Err(_) => error(
            502,
            "Bad Gateway: botvisor stopped before the message went out; it stays queued and goes out once",
        ),
    }
}

/// Any other method: to Telegram with the real token, its answer passed on
/// as it came (redacted).
async fn forward(gate: &Arc<Gate>, call: &Call) -> Response {
    let result = call::forward(&gate.bot, call, FORWARD_CAP).await;
    match result {
        Ok(forwarded) => {
            let body = match String::from_utf8(forwarded.body) {
                Ok(text) => redact(&text).into_bytes(),
                Err(bytes) => bytes.into_bytes(),
            };
            let mut response = Response::new(Body::from(body));
            *response.status_mut() =
                StatusCode::from_u16(forwarded.status).unwrap_or(StatusCode::BAD_GATEWAY);
            let kind = forwarded
                .content_type
                .and_then(|t| HeaderValue::from_str(&t).ok())
                .unwrap_or(HeaderValue::from_static("application/json"));
            response.headers_mut().insert(header::CONTENT_TYPE, kind);
            response
        }
        Err(err) => error(
            502,
            &format!(
                "Bad Gateway: botvisor could not reach the Bot API ({})",
                err.detail
            ),
        ),
    }
}

/// A file download, streamed through.
async fn download(gate: Arc<Gate>, path: &str) -> Response {
    let response = match call::download(&gate.bot, path, DOWNLOAD_TIMEOUT).await {
        Ok(response) => response,
        Err(err) => {
            gate.figures.count_request("file", 502);
            return error(
                502,
                &format!(
                    "Bad Gateway: botvisor could not reach the Bot API ({})",
                    err.detail
                ),
            );
        }
    };
    let status = response.status().as_u16();
    gate.figures.count_request("file", status);
    let kind = response.headers().get(header::CONTENT_TYPE).cloned();
    let length = response.headers().get(header::CONTENT_LENGTH).cloned();
    if status != 200 {
        // An error page may echo the URL, token and all.
        let body = crate::telegram::api::read_capped(response, DOWNLOAD_ERROR_CAP)
            .await
            .map(|bytes| redact(&String::from_utf8_lossy(&bytes)))
            .unwrap_or_default();
        let mut out = Response::new(Body::from(body));
        *out.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        if let Some(kind) = kind {
            out.headers_mut().insert(header::CONTENT_TYPE, kind);
        }
        return out;
    }
    let mut out = Response::new(Body::from_stream(response.bytes_stream()));
    if let Some(kind) = kind {
        out.headers_mut().insert(header::CONTENT_TYPE, kind);
    }
    if let Some(length) = length {
        out.headers_mut().insert(header::CONTENT_LENGTH, length);
    }
    out
}

/// The key a send is paced under: its numeric `chat_id`; for a channel's
/// `@username`, an inline message or a business connection, a stable key
/// of its own far outside Telegram's ids (negative, so paced as a group,
/// for a username; positive otherwise).
pub(crate) fn chat_key(call: &Call) -> i64 {
    if let Some(chat) = call.param("chat_id").map(str::trim) {
        if let Ok(id) = chat.parse::<i64>() {
            return id;
        }
        return -synthetic(chat);
    }
    for name in ["inline_message_id", "business_connection_id", "user_id"] {
        if let Some(value) = call.param(name) {
            return synthetic(value.trim());
        }
    }
    synthetic(&call.method)
}

/// A stable number from 2^60 to 2^61 for `text` (FNV-1a).
fn synthetic(text: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    (1 << 60) + i64::try_from(hash >> 4).unwrap_or(0)
}

/// Text that came from Telegram, with every learned token replaced, and
/// nothing else changed.
fn redact(text: &str) -> String {
    Redactor::global().redact_known(text).into_owned()
}

/// Telegram's error answer.
fn error(code: u16, description: &str) -> Response {
    json(
        code,
        serde_json::json!({
            "ok": false,
            "error_code": code,
            "description": description,
        })
        .to_string(),
    )
}

fn json(code: u16, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_GATEWAY);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(params: &[(&str, &str)]) -> Call {
        Call {
            method: "sendMessage".into(),
            params: params
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            files: Vec::new(),
        }
    }

    #[test]
    fn sends_are_paced_by_their_chat() {
        assert_eq!(chat_key(&call(&[("chat_id", "42")])), 42);
        assert_eq!(chat_key(&call(&[("chat_id", " -1001234 ")])), -1001234);
        let channel = chat_key(&call(&[("chat_id", "@news")]));
        assert!(channel < -(1 << 60), "{channel}");
        assert_eq!(channel, chat_key(&call(&[("chat_id", "@news")])));
        assert_ne!(channel, chat_key(&call(&[("chat_id", "@other")])));
        let inline = chat_key(&call(&[("inline_message_id", "AAQ")]));
        assert!(inline >= 1 << 60, "{inline}");
        assert!(chat_key(&call(&[])) >= 1 << 60);
    }
}
