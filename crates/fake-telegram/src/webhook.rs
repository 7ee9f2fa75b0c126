//! Webhook delivery, modelled on Telegram's server (tdlib/telegram-bot-api,
//! `WebhookActor`): while a bot has a webhook, one task per bot POSTs the
//! bot's pending updates to the URL (`Content-Type: application/json`, plus
//! `X-Telegram-Bot-Api-Secret-Token` when a secret is set) over at most
//! `max_connections` keep-alive connections, one request in flight on each.
//!
//! Updates go oldest first, but, as in Telegram, updates that share a queue
//! (a chat's messages, a user's callback queries) go one at a time and in
//! order; other updates overtake one that is waiting for a retry. A 2xx
//! answer confirms an update (it leaves the queue); anything else is retried
//! later, with a delay that doubles from [`Settings::first_delay`] up to a
//! minute (or as the answer's `Retry-After` says), until
//! [`Settings::max_attempts`] failed attempts, after which the update is
//! dropped. Each attempt is recorded as a [`WebhookDelivery`].
//!
//! The task belongs to the [`Webhook`] value in the bot's state: replacing or
//! deleting the webhook drops it, which aborts the task together with its
//! requests and connections; server shutdown ends it too. This module never
//! answers Bot API requests (`methods` does) and speaks plain HTTP only: an
//! `https` URL can be stored, but each delivery to it fails after connecting.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinSet};
use url::{Host, Url};

use crate::json;
use crate::model::WebhookDelivery;
use crate::state::{BotState, PollEnd, Shared, State, update_allowed};

/// The header carrying the webhook's secret token.
pub(crate) const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
/// `max_connections` when setWebhook does not give one (Telegram's default).
pub(crate) const DEFAULT_MAX_CONNECTIONS: u32 = 40;
/// Telegram's longest wait between two attempts (it picks 60–120 s at random).
const MAX_DELAY: Duration = Duration::from_secs(60);
/// Telegram's ceiling on a webhook's `Retry-After`.
const MAX_RETRY_AFTER_SECS: u64 = 3600;
/// The most of a webhook's answer read (to keep the connection usable).
const MAX_ANSWER_BODY: usize = 1024 * 1024;

/// How deliveries are timed; one setting for the whole fake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    /// The wait before the first retry; each later wait doubles, up to a
    /// minute (or up to this, if it is longer).
    pub first_delay: Duration,
    /// Failed attempts after which an update is dropped.
    pub max_attempts: u32,
    /// How long one attempt may take, connecting included.
    pub timeout: Duration,
}

impl Default for Settings {
    /// Telegram-like: retries after 1, 2, 4, … s, then every minute, for
    /// about a day (1440 attempts; Telegram drops an update 24 h after it was
    /// made, whatever the count); a 60 s answer timeout (Telegram's idle
    /// timeout for webhook connections, after which it reports `Read timeout
    /// expired`).
    fn default() -> Self {
        Settings {
            first_delay: Duration::from_secs(1),
            max_attempts: 1440,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What setWebhook (or the test side) asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Spec {
    pub url: String,
    pub secret_token: Option<String>,
    pub max_connections: u32,
    pub has_custom_certificate: bool,
}

/// A bot's webhook: its settings, delivery progress and delivery task.
pub(crate) struct Webhook {
    /// Distinguishes this webhook from the ones set before and after it.
    pub id: u64,
    pub spec: Spec,
    pub last_error_date: Option<i64>,
    pub last_error_message: Option<String>,
    /// Delivery progress of the updates tried at least once, by update id.
    progress: HashMap<u32, Progress>,
    /// Aborts the delivery task when the webhook is dropped.
    _task: Option<TaskGuard>,
}

/// Where one update stands.
#[derive(Clone, Copy, Debug, Default)]
struct Progress {
    attempts: u32,
    /// The last backoff wait (zero before the first failure).
    delay: Duration,
    not_before: Option<Instant>,
    in_flight: bool,
}

/// Aborts a task when dropped.
struct TaskGuard(AbortHandle);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sets `spec` as the bot's webhook, replacing (and stopping) any previous
/// one, ends a held getUpdates with 409, and starts delivering.
///
/// # Panics
/// If the token is not registered.
pub(crate) fn install(shared: &Arc<Shared>, st: &mut State, token: &str, spec: Spec) {
    st.next_webhook_id += 1;
    let id = st.next_webhook_id;
    let bot = st.bot_mut(token);
    // The task waits for the state lock, which the caller holds, so it sees
    // this webhook in place when it starts.
    let task = shared
        .runtime
        .spawn(run(Arc::clone(shared), token.to_owned(), id));
    bot.webhook = Some(Webhook {
        id,
        spec,
        last_error_date: None,
        last_error_message: None,
        progress: HashMap::new(),
        _task: Some(TaskGuard(task.abort_handle())),
    });
    bot.end_held_poll(PollEnd::SetWebhook);
}

/// The queue an update is delivered in, as Telegram keys them: updates of
/// one queue go one at a time, in order. Messages queue by chat, callback
/// queries by user, member updates by chat or user; other updates each have
/// a queue of their own (`None`).
pub(crate) fn queue_of(kind: &str, update: &Value) -> Option<i64> {
    let body = update.get(kind)?;
    let id = |path: &[&str]| {
        path.iter()
            .try_fold(body, |v, k| v.get(k))
            .and_then(Value::as_i64)
    };
    // Telegram adds `n << 33` to tell the kinds of queue apart.
    match kind {
        "message" | "edited_message" | "channel_post" | "edited_channel_post" => {
            id(&["chat", "id"])
        }
        "callback_query" => id(&["from", "id"]).map(|u| u + (3 << 33)),
        "my_chat_member" => id(&["chat", "id"]).map(|c| c + (5 << 33)),
        "chat_member" => id(&["new_chat_member", "user", "id"]).map(|u| u + (6 << 33)),
        _ => None,
    }
}

/// One attempt to start.
struct Attempt {
    update_id: u32,
    attempt: u32,
    body: Arc<str>,
}

/// Picks the updates to send now (marking them in flight) and returns them
/// with the instant the next waiting one becomes due. Updates of a type the
/// bot did not ask for are dropped first, as getUpdates does.
fn plan(bot: &mut BotState, now: Instant) -> (Vec<Attempt>, Option<Instant>) {
    let allowed = bot.allowed_updates.as_deref();
    bot.queue.retain(|u| update_allowed(&u.kind, allowed));
    let Some(hook) = bot.webhook.as_mut() else {
        return (Vec::new(), None);
    };
    let queued: HashSet<u32> = bot.queue.iter().map(|u| u.id).collect();
    hook.progress
        .retain(|id, p| p.in_flight || queued.contains(id));
    let limit = usize::try_from(hook.spec.max_connections.max(1)).unwrap_or(usize::MAX);
    let mut in_flight = hook.progress.values().filter(|p| p.in_flight).count();
    let mut busy_queues = HashSet::new();
    let mut attempts = Vec::new();
    let mut wake: Option<Instant> = None;
    for u in &bot.queue {
        // An older update of the same queue is still pending: wait for it.
        if let Some(q) = u.webhook_queue
            && !busy_queues.insert(q)
        {
            continue;
        }
        let p = hook.progress.entry(u.id).or_default();
        if p.in_flight {
            continue;
        }
        if let Some(t) = p.not_before
            && t > now
        {
            wake = Some(wake.map_or(t, |w| w.min(t)));
            continue;
        }
        if in_flight >= limit {
            break;
        }
        p.in_flight = true;
        p.attempts += 1;
        in_flight += 1;
        attempts.push(Attempt {
            update_id: u.id,
            attempt: p.attempts,
            body: Arc::clone(&u.json),
        });
    }
    (attempts, wake)
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Outcome {
    /// The webhook answered with this status.
    Answered {
        status: u16,
        reason: String,
        retry_after: Option<u64>,
    },
    /// No answer. `public`: Telegram shows the message in getWebhookInfo
    /// (it does not for a connection closed without an answer).
    Failed { message: String, public: bool },
}

impl Outcome {
    fn failed(message: impl Into<String>) -> Self {
        Outcome::Failed {
            message: message.into(),
            public: true,
        }
    }
}

/// A finished attempt.
struct Done {
    update_id: u32,
    attempt: u32,
    started: Instant,
    at: Instant,
    outcome: Outcome,
    conn: Option<Conn>,
}

/// Applies a finished attempt to the bot's queue and webhook, and records it.
fn record(bot: &mut BotState, settings: &Settings, done: &Done) {
    let Some(hook) = bot.webhook.as_mut() else {
        return;
    };
    let id = done.update_id;
    let (status, error, public, retry_after) = match &done.outcome {
        Outcome::Answered {
            status,
            reason,
            retry_after,
        } => {
            let error = (!(200..300).contains(status)).then(|| {
                format!("Wrong response from the webhook: {status} {reason}")
                    .trim_end()
                    .to_owned()
            });
            (Some(*status), error, true, *retry_after)
        }
        Outcome::Failed { message, public } => (None, Some(message.clone()), *public, None),
    };
    let mut drop_update = false;
    match &error {
        None => {
            hook.progress.remove(&id);
            drop_update = true;
        }
        Some(message) => {
            if public {
                hook.last_error_date = Some(json::unix_now());
                hook.last_error_message = Some(message.clone());
            }
            let p = hook.progress.entry(id).or_default();
            p.in_flight = false;
            if p.attempts >= settings.max_attempts {
                hook.progress.remove(&id);
                drop_update = true;
            } else {
                let wait = match retry_after {
                    Some(secs) => Duration::from_secs(secs.min(MAX_RETRY_AFTER_SECS)),
                    None => {
                        p.delay = if p.delay.is_zero() {
                            settings.first_delay
                        } else {
                            p.delay
                                .saturating_mul(2)
                                .min(MAX_DELAY.max(settings.first_delay))
                        };
                        p.delay
                    }
                };
                p.not_before = Some(done.at + wait);
            }
        }
    }
    if drop_update {
        bot.queue.retain(|u| u.id != id);
    }
    let secret = hook.spec.secret_token.clone();
    bot.webhook_deliveries.push(WebhookDelivery {
        update_id: i64::from(id),
        attempt: done.attempt,
        status,
        error,
        secret,
        started: done.started,
        at: done.at,
    });
}

/// Where to deliver: the parts of the webhook URL.
struct Target {
    https: bool,
    host: String,
    port: u16,
    /// Path and query.
    path: String,
    /// The `Host` header.
    authority: String,
}

impl Target {
    fn parse(url: &str) -> Option<Target> {
        let with_scheme = if url.contains("://") {
            url.to_owned()
        } else {
            format!("https://{url}")
        };
        let parsed = Url::parse(&with_scheme).ok()?;
        let https = match parsed.scheme() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let host = match parsed.host()? {
            Host::Domain(d) => d.to_owned(),
            Host::Ipv4(a) => a.to_string(),
            Host::Ipv6(a) => a.to_string(),
        };
        let port = parsed.port_or_known_default()?;
        let host_str = parsed.host_str()?;
        let authority = match parsed.port() {
            Some(p) => format!("{host_str}:{p}"),
            None => host_str.to_owned(),
        };
        let mut path = parsed.path().to_owned();
        if let Some(q) = parsed.query() {
            path.push('?');
            path.push_str(q);
        }
        Some(Target {
            https,
            host,
            port,
            path,
            authority,
        })
    }
}

/// An open HTTP/1 connection to the webhook; dropping it closes it.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    _driver: TaskGuard,
}

async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // Err means every handle is gone: stop as well.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Delivers the bot's updates to webhook `hook_id` until that webhook is
/// replaced or deleted (which also aborts this task) or the server stops.
async fn run(shared: Arc<Shared>, token: String, hook_id: u64) {
    let mut shutdown = shared.shutdown.clone();
    let (target, mut signal) = {
        let st = shared.lock();
        let Some(bot) = st.bots.get(&token) else {
            return;
        };
        let Some(hook) = bot.webhook.as_ref().filter(|h| h.id == hook_id) else {
            return;
        };
        (Target::parse(&hook.spec.url), bot.update_signal.subscribe())
    };
    // A URL only the test side could set (it skips the checks): nothing to
    // deliver to.
    let Some(target) = target.map(Arc::new) else {
        return;
    };
    let mut requests: JoinSet<Done> = JoinSet::new();
    let mut idle: Vec<Conn> = Vec::new();
    loop {
        let (attempts, wake, settings, secret) = {
            let mut st = shared.lock();
            let settings = st.webhook_settings;
            let Some(bot) = st.bots.get_mut(&token) else {
                return;
            };
            let Some(secret) = bot
                .webhook
                .as_ref()
                .filter(|h| h.id == hook_id)
                .map(|h| h.spec.secret_token.clone())
            else {
                return;
            };
            let (attempts, wake) = plan(bot, Instant::now());
            (attempts, wake, settings, secret)
        };
        for a in attempts {
            idle.retain(|c| !c.sender.is_closed());
            let conn = idle.pop();
            let target = Arc::clone(&target);
            let secret = secret.clone();
            requests.spawn(async move {
                let started = Instant::now();
                let (outcome, conn) =
                    deliver(&target, &a.body, secret.as_deref(), conn, settings.timeout).await;
                Done {
                    update_id: a.update_id,
                    attempt: a.attempt,
                    started,
                    at: Instant::now(),
                    outcome,
                    conn,
                }
            });
        }
        let due = async {
            match wake {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stopped(&mut shutdown) => return,
            joined = requests.join_next(), if !requests.is_empty() => {
                // An attempt never panics; were one to, its update would stay
                // "in flight" and simply not be retried.
                let Some(Ok(mut done)) = joined else { continue };
                if let Some(conn) = done.conn.take() {
                    idle.push(conn);
                }
                {
                    let mut st = shared.lock();
                    let settings = st.webhook_settings;
                    let Some(bot) = st.bots.get_mut(&token) else { return };
                    if bot.webhook.as_ref().is_none_or(|h| h.id != hook_id) {
                        return;
                    }
                    record(bot, &settings, &done);
                }
                shared.changed.notify_waiters();
            }
            changed = signal.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            () = due => {}
        }
    }
}

/// One attempt: POSTs `body` over `idle` (if it is still open) or a new
/// connection. Returns how it went and the connection, if it can carry the
/// next update.
async fn deliver(
    target: &Target,
    body: &str,
    secret: Option<&str>,
    idle: Option<Conn>,
    timeout: Duration,
) -> (Outcome, Option<Conn>) {
    let deadline = tokio::time::Instant::now() + timeout;
    let reusable = match idle {
        Some(mut c) => {
            // An idle connection the webhook has closed meanwhile is replaced.
            match tokio::time::timeout_at(deadline, c.sender.ready()).await {
                Ok(Ok(())) => Some(c),
                _ => None,
            }
        }
        None => None,
    };
    let mut conn = match reusable {
        Some(c) => c,
        None => match connect(target, deadline).await {
            Ok(c) => c,
            Err(outcome) => return (outcome, None),
        },
    };
    let mut req = Request::new(Full::new(Bytes::copy_from_slice(body.as_bytes())));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = match target.path.parse() {
        Ok(uri) => uri,
        Err(_) => return (Outcome::failed("URL is too long"), None),
    };
    let headers = req.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&target.authority) {
        headers.insert(HOST, v);
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(v) = secret.and_then(|s| HeaderValue::from_str(s).ok()) {
        headers.insert(SECRET_HEADER, v);
    }
    let answer = match tokio::time::timeout_at(deadline, conn.sender.send_request(req)).await {
        Err(_) => return (Outcome::failed("Read timeout expired"), None),
        Ok(Err(e)) => return (classify(&e), None),
        Ok(Ok(answer)) => answer,
    };
    let status = answer.status();
    let reason = answer
        .extensions()
        .get::<hyper::ext::ReasonPhrase>()
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned())
        .or_else(|| status.canonical_reason().map(str::to_owned))
        .unwrap_or_default();
    let retry_after = answer
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Read the body so the connection can carry the next update. Telegram
    // would also run a Bot API method given in it; the fake ignores it.
    let read = tokio::time::timeout_at(
        deadline,
        Limited::new(answer.into_body(), MAX_ANSWER_BODY).collect(),
    )
    .await;
    let keep = matches!(read, Ok(Ok(_))) && !conn.sender.is_closed();
    let outcome = Outcome::Answered {
        status: status.as_u16(),
        reason,
        retry_after,
    };
    (outcome, keep.then_some(conn))
}

/// Opens a connection to the webhook, failing with Telegram's words.
async fn connect(target: &Target, deadline: tokio::time::Instant) -> Result<Conn, Outcome> {
    let addrs: Vec<SocketAddr> = match tokio::time::timeout_at(
        deadline,
        tokio::net::lookup_host((target.host.as_str(), target.port)),
    )
    .await
    {
        Err(_) => return Err(Outcome::failed("Connection timed out")),
        Ok(Err(_)) => {
            return Err(Outcome::failed(
                "Failed to resolve host: Name or service not known",
            ));
        }
        Ok(Ok(addrs)) => addrs.collect(),
    };
    let mut last_error = None;
    let mut stream = None;
    for addr in addrs {
        match tokio::time::timeout_at(deadline, TcpStream::connect(addr)).await {
            Err(_) => return Err(Outcome::failed("Connection timed out")),
            Ok(Ok(s)) => {
                stream = Some(s);
                break;
            }
            Ok(Err(e)) => last_error = Some(e),
        }
    }
    let Some(stream) = stream else {
        return Err(Outcome::failed(last_error.map_or_else(
            || "Failed to resolve host: no addresses".to_owned(),
            |e| io_message(&e),
        )));
    };
    if target.https {
        return Err(Outcome::failed(
            "SSL error: fake-telegram delivers over plain HTTP only; set an http URL on 127.0.0.1",
        ));
    }
    let _ = stream.set_nodelay(true);
    let (sender, connection) =
        match tokio::time::timeout_at(deadline, http1::handshake(TokioIo::new(stream))).await {
            Err(_) => return Err(Outcome::failed("Connection timed out")),
            Ok(Err(e)) => return Err(classify(&e)),
            Ok(Ok(pair)) => pair,
        };
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(Conn {
        sender,
        _driver: TaskGuard(driver.abort_handle()),
    })
}

/// Telegram's words for a failed request.
fn classify(e: &hyper::Error) -> Outcome {
    if e.is_incomplete_message() {
        return Outcome::Failed {
            message: "Webhook connection closed".to_owned(),
            public: false,
        };
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            return Outcome::failed(io_message(io));
        }
        source = s.source();
    }
    if e.is_parse() {
        return Outcome::failed(format!("Wrong response from the webhook: {e}"));
    }
    Outcome::failed(e.to_string())
}

/// An I/O error as Telegram reports it: the system's text, without Rust's
/// ` (os error N)` suffix.
fn io_message(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "Connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "Connection reset by peer".to_owned(),
        io::ErrorKind::TimedOut => "Connection timed out".to_owned(),
        _ => {
            let text = e.to_string();
            match text.find(" (os error") {
                Some(i) => text[..i].to_owned(),
                None => text,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bot_with_hook(max_connections: u32) -> BotState {
        let mut st = State::default();
        st.add_bot("1:x", "bot");
        let mut bot = st.bots.remove("1:x").expect("bot");
        bot.webhook = Some(Webhook {
            id: 1,
            spec: Spec {
                url: "http://127.0.0.1:1/hook".into(),
                secret_token: None,
                max_connections,
                has_custom_certificate: false,
            },
            last_error_date: None,
            last_error_message: None,
            progress: HashMap::new(),
            _task: None,
        });
        bot
    }

    fn message(bot: &mut BotState, chat: i64) -> u32 {
        let Value::Object(m) = json!({"message": {"chat": {"id": chat}, "text": "x"}}) else {
            unreachable!()
        };
        bot.enqueue(m)
    }

    fn ids(a: &[Attempt]) -> Vec<u32> {
        a.iter().map(|a| a.update_id).collect()
    }

    fn fail(bot: &mut BotState, s: &Settings, id: u32, attempt: u32, at: Instant) {
        let done = Done {
            update_id: id,
            attempt,
            started: at,
            at,
            outcome: Outcome::Answered {
                status: 503,
                reason: "Service Unavailable".into(),
                retry_after: None,
            },
            conn: None,
        };
        record(bot, s, &done);
    }

    #[test]
    fn queues_follow_telegram() {
        let m = json!({"message": {"chat": {"id": -5}}});
        assert_eq!(queue_of("message", &m), Some(-5));
        let c = json!({"callback_query": {"from": {"id": 7}}});
        assert_eq!(queue_of("callback_query", &c), Some(7 + (3 << 33)));
        assert_eq!(queue_of("poll", &json!({"poll": {}})), None);
    }

    #[test]
    fn one_chat_goes_in_order_others_overtake() {
        let mut bot = bot_with_hook(10);
        let a1 = message(&mut bot, 1);
        let a2 = message(&mut bot, 1);
        let b1 = message(&mut bot, 2);
        let now = Instant::now();
        let (sent, _) = plan(&mut bot, now);
        assert_eq!(ids(&sent), [a1, b1]);
        let s = Settings::default();
        fail(&mut bot, &s, a1, 1, now);
        // a1 waits for its retry; a2 still waits behind it.
        let (sent, wake) = plan(&mut bot, now);
        assert!(sent.is_empty());
        assert_eq!(wake, Some(now + s.first_delay));
        let (sent, _) = plan(&mut bot, now + s.first_delay);
        assert_eq!(ids(&sent), [a1]);
        assert!(bot.queue.iter().any(|u| u.id == a2));
    }

    #[test]
    fn max_connections_caps_attempts_in_flight() {
        let mut bot = bot_with_hook(2);
        for chat in 1..=5 {
            message(&mut bot, chat);
        }
        let (sent, _) = plan(&mut bot, Instant::now());
        assert_eq!(sent.len(), 2);
        let (sent, _) = plan(&mut bot, Instant::now());
        assert!(sent.is_empty());
    }

    #[test]
    fn delays_double_up_to_a_minute_then_the_update_is_dropped() {
        let s = Settings {
            first_delay: Duration::from_secs(10),
            max_attempts: 5,
            timeout: Duration::from_secs(1),
        };
        let mut bot = bot_with_hook(1);
        let id = message(&mut bot, 1);
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for attempt in 1..=5 {
            let (sent, _) = plan(&mut bot, now);
            assert_eq!(ids(&sent), [id], "attempt {attempt}");
            fail(&mut bot, &s, id, attempt, now);
            if let (_, Some(wake)) = plan(&mut bot, now) {
                waits.push(wake - now);
                now = wake;
            }
        }
        let secs: Vec<u64> = waits.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [10, 20, 40, 60]);
        assert!(bot.queue.is_empty(), "dropped after 5 failed attempts");
        assert_eq!(bot.webhook_deliveries.len(), 5);
        let hook = bot.webhook.as_ref().expect("hook");
        assert_eq!(
            hook.last_error_message.as_deref(),
            Some("Wrong response from the webhook: 503 Service Unavailable")
        );
    }

    #[test]
    fn urls_parse_into_targets() {
        let t = Target::parse("http://127.0.0.1:8080/hook?a=1").expect("target");
        assert!(!t.https);
        assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 8080));
        assert_eq!(t.path, "/hook?a=1");
        assert_eq!(t.authority, "127.0.0.1:8080");
        let t = Target::parse("example.com/x").expect("https by default");
        assert!(t.https);
        assert_eq!(t.port, 443);
        assert_eq!(Target::parse("http://[::1]:9/").expect("v6").host, "::1");
        assert!(Target::parse("ftp://x/").is_none());
    }
}
