//! The status endpoint, off unless `[supervisor.http] listen` is set:
//! `GET /healthz`, `GET /status` (JSON) and `GET /metrics` (Prometheus).
//!
//! Every answer is computed from the [`StatusBoard`] at request time; the
//! endpoint keeps no state of its own, so it can never disagree with the
//! SIGUSR1 line or `/durum`. Nothing here can reach a token: the board holds
//! none.
//!
//! The endpoint must never cost the bots anything, whoever connects to it:
//! at most [`MAX_CONNECTIONS`] connections are served at once (more are
//! closed as soon as they are accepted, so idle clients cannot use up the
//! process's file descriptors, which the bots need for Telegram); a request
//! must arrive within [`HEADER_READ_TIMEOUT`] and a kept-alive connection
//! may idle for [`IDLE_TIMEOUT`]; failed accepts are logged, a few seconds
//! apart, instead of being retried silently.

use std::fmt::Write as _;
use std::future::Future as _;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::{DefaultBodyLimit, Path};
use axum::http::HeaderMap;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::{Environment, HttpSettings};
use crate::status::{BotStatus, Incident, StatusBoard, WorkerState};
use crate::webhook::{Answer, Webhooks};

/// Every state, for the one-hot `botvisor_bot_state` gauge.
const STATES: [WorkerState; 9] = [
    WorkerState::Starting,
    WorkerState::Running,
    WorkerState::Standby,
    WorkerState::Conflict,
    WorkerState::BackingOff,
    WorkerState::Parked,
    WorkerState::Stopping,
    WorkerState::Handover,
    WorkerState::Stopped,
];
const INCIDENTS: [Incident; 5] = [
    Incident::Parked,
    Incident::Conflict,
    Incident::StoreDown,
    Incident::SelectorEmpty,
    Incident::WebhookFailing,
];
/// How long open connections may take to finish at shutdown: well inside
/// the 250 ms the supervisor keeps back from the deadline.
pub const CLOSE_GRACE: Duration = Duration::from_millis(100);
/// Connections served at once, at most. A monitor needs one or two; the
/// cap keeps what strangers can hold open far below the descriptor limit.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request, from its connection (or,
/// on a kept-alive connection, from the request's first byte): long enough
/// for any real client, too short to hold a slot with a trickle.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a kept-alive connection may wait for its next request, and a
/// response may wait for its client to read.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The least time between two log lines about refused or failed accepts.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(5);
/// The pause after a failed accept (out of descriptors, say), so the loop
/// does not spin while the condition lasts.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Why the endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("[supervisor.http] listen = \"{0}\" needs the PORT variable, which is not set")]
    NoPort(String),
    #[error("[supervisor.http] listen = \"{listen}\" is not an address and port")]
    Address { listen: String },
    #[error("cannot listen on {addr} for the status endpoint: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The address `listen` names, with `$PORT` taken from the environment.
///
/// # Errors
/// When `$PORT` is used but not set, or the result is not an address.
pub fn address(settings: &HttpSettings, env: &Environment) -> Result<SocketAddr, HttpError> {
    let listen = if settings.listen.contains("$PORT") {
        let port = env
            .var("PORT")
            .ok_or_else(|| HttpError::NoPort(settings.listen.clone()))?;
        settings.listen.replace("$PORT", port.trim())
    } else {
        settings.listen.clone()
    };
    listen.parse().map_err(|_| HttpError::Address {
        listen: settings.listen.clone(),
    })
}

/// Binds the endpoint's socket (before any bot starts, so a taken port is
/// an error at start, not a surprise later).
///
/// # Errors
/// [`HttpError::Bind`] when the address cannot be bound.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serves the endpoint on `listener` until `stop` is cancelled.
pub async fn serve(
    listener: TcpListener,
    board: StatusBoard,
    webhooks: Webhooks,
    stop: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "status endpoint listening: /healthz /status /metrics");
    }
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .route("/metrics", get(metrics))
        .with_state(board)
        .merge(
            Router::new()
                .route("/telegram/{bot}", post(webhook))
                .layer(DefaultBodyLimit::max(crate::webhook::BODY_CAP))
                .with_state(webhooks),
        );
    let closing = stop.clone();
    let listener = Guarded::new(listener);
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        closing.cancelled().await;
    });
    let server = server.into_future();
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => {
            if let Err(err) = result {
                warn!(error = %err, "the status endpoint stopped");
            }
        }
        // A client holding a connection open must not hold up the exit.
        () = async {
            stop.cancelled().await;
            tokio::time::sleep(CLOSE_GRACE).await;
        } => {}
    }
}

/// `POST /telegram/<bot>`: one update from Telegram for a webhook bot.
async fn webhook(
    State(webhooks): State<Webhooks>,
    Path(bot): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let secret = headers
        .get(crate::webhook::SECRET_HEADER)
        .map(|value| value.as_bytes());
    let Ok(body) = String::from_utf8(body.to_vec()) else {
        return StatusCode::BAD_REQUEST;
    };
    match webhooks.deliver(&bot, secret, body).await {
        Answer::Stored => StatusCode::OK,
        Answer::Refused => StatusCode::UNAUTHORIZED,
        Answer::Unknown => StatusCode::NOT_FOUND,
        Answer::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// The endpoint's listener: caps connections, puts timeouts on each one
/// and logs accept failures (rate-limited).
struct Guarded {
    listener: TcpListener,
    slots: Arc<Semaphore>,
    log: AcceptLog,
}

impl Guarded {
    fn new(listener: TcpListener) -> Guarded {
        Guarded {
            listener,
            slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            log: AcceptLog::default(),
        }
    }
}

impl axum::serve::Listener for Guarded {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        loop {
            match self.listener.accept().await {
                Ok((stream, addr)) => match self.slots.clone().try_acquire_owned() {
                    Ok(slot) => return (Connection::new(stream, slot), addr),
                    Err(_) => {
                        // Closed at once: a descriptor held for a client we
                        // will not serve is one a bot may lack.
                        drop(stream);
                        self.log.refused();
                    }
                },
                Err(err) => {
                    self.log.failed(&err);
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// Counts refused and failed accepts and logs them at most once per
/// [`ACCEPT_LOG_EVERY`], with how many happened since the last line.
#[derive(Default)]
struct AcceptLog {
    last: Option<Instant>,
    refused: u64,
    failed: u64,
}

impl AcceptLog {
    fn due(&mut self) -> bool {
        let now = Instant::now();
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= ACCEPT_LOG_EVERY);
        if due {
            self.last = Some(now);
        }
        due
    }

    fn refused(&mut self) {
        self.refused += 1;
        if self.due() {
            warn!(
                max = MAX_CONNECTIONS,
                refused = std::mem::take(&mut self.refused),
                "the status endpoint has all its connections open; closing new ones"
            );
        }
    }

    fn failed(&mut self, err: &io::Error) {
        self.failed += 1;
        if self.due() {
            warn!(
                error = %err,
                failed = std::mem::take(&mut self.failed),
                "the status endpoint cannot accept connections"
            );
        }
    }
}

/// One accepted connection, holding its slot until it is dropped, with a
/// deadline: while a request is awaited, [`HEADER_READ_TIMEOUT`] from the
/// connection or the request's first byte; while idle after a response,
/// or while a response waits for its client, [`IDLE_TIMEOUT`] from the
/// last byte written. Past it, reads and writes fail and hyper closes the
/// connection.
struct Connection {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
    deadline: Pin<Box<Sleep>>,
    /// True from a request's first byte (or the connection's start) until
    /// its response is written.
    in_request: bool,
}

impl Connection {
    fn new(stream: TcpStream, slot: OwnedSemaphorePermit) -> Connection {
        Connection {
            stream,
            _slot: slot,
            deadline: Box::pin(tokio::time::sleep(HEADER_READ_TIMEOUT)),
            in_request: true,
        }
    }

    fn timed_out(&mut self, cx: &mut Context<'_>) -> bool {
        self.deadline.as_mut().poll(cx).is_ready()
    }

    fn wrote(&mut self, n: usize) {
        if n > 0 {
            self.in_request = false;
            self.deadline.as_mut().reset(Instant::now() + IDLE_TIMEOUT);
        }
    }
}

fn timed_out() -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        "the status endpoint's client was too slow",
    )
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before && !this.in_request {
                    // A new request on a kept-alive connection: its head
                    // must arrive within the header timeout from here.
                    this.in_request = true;
                    this.deadline
                        .as_mut()
                        .reset(Instant::now() + HEADER_READ_TIMEOUT);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if this.timed_out(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(Ok(n)) => {
                this.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Pending if this.timed_out(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(Ok(n)) => {
                this.wrote(n);
                Poll::Ready(Ok(n))
            }
            Poll::Pending if this.timed_out(cx) => Poll::Ready(Err(timed_out())),
            other => other,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// 200 when every enabled bot is running or in standby; 503 naming the
/// others.
async fn healthz(State(board): State<StatusBoard>) -> Response {
    let bots = board.snapshot();
    let mut failing: Vec<String> = bots
        .iter()
        .filter(|bot| !bot.is_healthy())
        .map(|bot| format!("{}: {}: {}", bot.name, bot.state, bot.reason))
        .collect();
    for (name, reason) in board.not_running() {
        failing.push(format!("{name}: not running: {reason}"));
    }
    if board.is_stopping() {
        failing.insert(0, "botvisor is shutting down".to_owned());
    }
    let (code, body) = if failing.is_empty() && !bots.is_empty() {
        (
            StatusCode::OK,
            format!("ok: {} bot(s) running or in standby\n", bots.len()),
        )
    } else if failing.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "no bot runs\n".to_owned())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("unhealthy:\n{}\n", failing.join("\n")),
        )
    };
    (code, [(header::CACHE_CONTROL, "no-store")], body).into_response()
}

fn rfc3339(at: SystemTime) -> String {
    humantime::format_rfc3339_millis(at).to_string()
}

fn bot_json(bot: &BotStatus) -> serde_json::Value {
    let incidents: serde_json::Map<String, serde_json::Value> = bot
        .incidents
        .iter()
        .map(|(incident, detail)| (incident.name().to_owned(), detail.clone().into()))
        .collect();
    serde_json::json!({
        "name": bot.name,
        "kind": bot.kind,
        "state": bot.state.name(),
        "healthy": bot.is_healthy(),
        "reason": bot.reason,
        "since": rfc3339(bot.since),
        "next_attempt": bot.next_attempt.map(rfc3339),
        "restarts": bot.restarts,
        "last_successful_poll": bot.last_successful_poll.map(rfc3339),
        "last_error_class": bot.last_error_class.as_ref().map(ToString::to_string),
        "updates_handled": bot.updates_handled,
        "messages_sent": bot.messages_sent,
        "outbox": {
            "pending": bot.outbox.pending,
            "oldest_age_seconds": bot.outbox.oldest_age.map(|age| age.as_secs_f64()),
            "dropped": bot.outbox.dropped,
            "rate_limited": bot.outbox.rate_limited,
            "paced": bot.outbox.paced,
        },
        "incidents": incidents,
        "delivery": bot.delivery,
        "webhook": bot.webhook.as_ref().map(|hook| serde_json::json!({
            "last_request": hook.last_request.map(rfc3339),
            "telegram_checked": hook.checked.map(rfc3339),
            "telegram_pending": hook.pending,
            "telegram_last_error": hook.last_error,
            "telegram_last_error_at": hook.last_error_at.map(rfc3339),
        })),
        "process": bot.process.as_ref().map(|process| serde_json::json!({
            "pid": process.pid,
            "starts": process.starts,
            "last_get_updates": process.last_poll.map(rfc3339),
            "updates_offered": process.offered,
            "updates_confirmed": process.confirmed,
            "updates_waiting": process.waiting,
            "rss_bytes": process.rss_bytes,
            "cpu_seconds": process.cpu_seconds,
        })),
    })
}

/// The fleet's part of `/status`: each instance with its bots (name, lease
/// generation, seconds held) and the bots moving between instances.
fn fleet_json(fleet: &crate::status::FleetStatus) -> serde_json::Value {
    let instances: Vec<serde_json::Value> = fleet
        .instances
        .iter()
        .map(|instance| {
            let bots: Vec<serde_json::Value> = instance
                .bots
                .iter()
                .map(|(name, generation, age_ms)| {
                    serde_json::json!({
                        "name": name,
                        "generation": generation,
                        "held_seconds": age_ms / 1000,
                    })
                })
                .collect();
            serde_json::json!({
                "id": instance.id,
                "host": instance.host,
                "this": instance.id == fleet.me,
                "weight": instance.weight,
                "share": instance.share,
                "heard_seconds_ago": instance.silent_ms.max(0) as f64 / 1000.0,
                "bots": bots,
            })
        })
        .collect();
    serde_json::json!({
        "instance": fleet.me,
        "instances": instances,
        "moving": fleet.moving,
        "handovers": fleet.handovers,
        "fencing_refusals": fleet.fencing_refusals,
    })
}

async fn status(State(board): State<StatusBoard>) -> Response {
    let bots: Vec<serde_json::Value> = board.snapshot().iter().map(bot_json).collect();
    let not_running: Vec<serde_json::Value> = board
        .not_running()
        .into_iter()
        .map(|(name, reason)| serde_json::json!({ "name": name, "reason": reason }))
        .collect();
    let body = serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "stopping": board.is_stopping(),
        "bots": bots,
        "not_running": not_running,
        "fleet": board.fleet().map(|fleet| fleet_json(&fleet)),
    });
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BotLabels {
    bot: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    bot: String,
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateOnlyLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IncidentOnlyLabels {
    incident: String,
}

/// Up to this many bots, `/metrics` has every bot's series; past it, only
/// those of the bots that are not fine (not running, an open incident, a
/// message waiting in the outbox), beside the counts by state and by
/// incident that it always has: 10,000 bots would be over 200,000 lines
/// a scrape, nearly all of them saying "running, nothing new".
pub const METRICS_EVERY_BOT_UP_TO: usize = 1_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    bot: String,
    method: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IncidentLabels {
    bot: String,
    incident: String,
}

/// The board as Prometheus metrics (OpenMetrics text).
pub fn render_metrics(board: &StatusBoard) -> String {
    let mut registry = Registry::with_prefix("botvisor");
    let state = Family::<StateLabels, Gauge>::default();
    let restarts = Family::<BotLabels, Counter>::default();
    let handled = Family::<BotLabels, Counter>::default();
    let sent = Family::<BotLabels, Counter>::default();
    let last_poll = Family::<BotLabels, Gauge<f64, AtomicU64>>::default();
    let incidents = Family::<IncidentLabels, Gauge>::default();
    let not_running = Gauge::<i64>::default();
    let outbox_pending = Family::<BotLabels, Gauge>::default();
    let webhook_pending = Family::<BotLabels, Gauge>::default();
    let webhook_last = Family::<BotLabels, Gauge<f64, AtomicU64>>::default();
    registry.register(
        "webhook_pending_updates",
        "Updates Telegram holds for a webhook bot, not yet delivered (getWebhookInfo)",
        webhook_pending.clone(),
    );
    registry.register(
        "webhook_last_request_timestamp_seconds",
        "When a webhook request last reached the bot, in Unix seconds",
        webhook_last.clone(),
    );
    let outbox_oldest = Family::<BotLabels, Gauge<f64, AtomicU64>>::default();
    let outbox_dropped = Family::<BotLabels, Counter>::default();
    let outbox_429 = Family::<BotLabels, Counter>::default();
    let outbox_paced = Family::<BotLabels, Counter>::default();
    registry.register(
        "outbox_paced",
        "Messages that waited for the pacer (Telegram's limits) before they went",
        outbox_paced.clone(),
    );
    let program_starts = Family::<BotLabels, Counter>::default();
    let program_offered = Family::<BotLabels, Counter>::default();
    let program_confirmed = Family::<BotLabels, Counter>::default();
    let program_waiting = Family::<BotLabels, Gauge>::default();
    let program_running = Family::<BotLabels, Gauge>::default();
    let gateway_requests = Family::<RequestLabels, Counter>::default();
    registry.register(
        "process_starts",
        "Times a process bot's program was started",
        program_starts.clone(),
    );
    registry.register(
        "process_running",
        "1 while a process bot's program runs",
        program_running.clone(),
    );
    registry.register(
        "process_updates_offered",
        "Updates offered to a process bot's program through the gateway's getUpdates",
        program_offered.clone(),
    );
    registry.register(
        "process_updates_confirmed",
        "Updates a process bot's program confirmed (asked past them)",
        program_confirmed.clone(),
    );
    registry.register(
        "process_updates_waiting",
        "Updates in a process bot's inbox, offered and not yet confirmed",
        program_waiting.clone(),
    );
    registry.register(
        "gateway_requests",
        "Requests a process bot's program made to the gateway, by method and HTTP status",
        gateway_requests.clone(),
    );
    registry.register(
        "outbox_pending",
        "Messages waiting in the bot's outbox",
        outbox_pending.clone(),
    );
    registry.register(
        "outbox_oldest_age_seconds",
        "How long the oldest message in the bot's outbox has waited (0 when empty)",
        outbox_oldest.clone(),
    );
    registry.register(
        "outbox_dropped",
        "Messages the outbox dropped: past a cap, past max_age, or refused for good",
        outbox_dropped.clone(),
    );
    registry.register(
        "outbox_rate_limited",
        "429 answers Telegram gave the bot's outbox",
        outbox_429.clone(),
    );
    registry.register(
        "bot_state",
        "1 for the state each bot is in, 0 for the others",
        state.clone(),
    );
    registry.register(
        "bot_restarts",
        "Restarts of the bot's worker after a failure",
        restarts.clone(),
    );
    registry.register(
        "updates_handled",
        "Updates the bot handled",
        handled.clone(),
    );
    registry.register(
        "messages_sent",
        "Messages the bot sent (each part of a split message)",
        sent.clone(),
    );
    registry.register(
        "last_successful_poll_timestamp_seconds",
        "When the bot's last getUpdates succeeded, in Unix seconds",
        last_poll.clone(),
    );
    registry.register(
        "bot_incident",
        "1 while the incident is open for the bot",
        incidents.clone(),
    );
    registry.register(
        "bots_not_running",
        "Enabled bots that cannot run (a token variable is not set)",
        not_running.clone(),
    );
    let by_state = Family::<StateOnlyLabels, Gauge>::default();
    let by_incident = Family::<IncidentOnlyLabels, Gauge>::default();
    registry.register("bots", "Bots in each state", by_state.clone());
    registry.register(
        "bots_with_incident",
        "Bots with each incident open",
        by_incident.clone(),
    );
    let bots = board.snapshot();
    for s in STATES {
        let count = bots.iter().filter(|b| b.state == s).count();
        by_state
            .get_or_create(&StateOnlyLabels {
                state: s.name().to_owned(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    for i in INCIDENTS {
        let count = bots.iter().filter(|b| b.incidents.contains_key(&i)).count();
        by_incident
            .get_or_create(&IncidentOnlyLabels {
                incident: i.name().to_owned(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    let every_bot = bots.len() <= METRICS_EVERY_BOT_UP_TO;
    let fine = |bot: &crate::status::BotStatus| {
        // A bot in standby runs on another instance, which reports it.
        matches!(bot.state, WorkerState::Running | WorkerState::Standby)
            && bot.incidents.is_empty()
            && bot.outbox.pending == 0
    };
    for bot in bots.into_iter().filter(|b| every_bot || !fine(b)) {
        let labels = BotLabels {
            bot: bot.name.clone(),
        };
        for s in STATES {
            state
                .get_or_create(&StateLabels {
                    bot: bot.name.clone(),
                    state: s.name().to_owned(),
                })
                .set(i64::from(bot.state == s));
        }
        for i in INCIDENTS {
            incidents
                .get_or_create(&IncidentLabels {
                    bot: bot.name.clone(),
                    incident: i.name().to_owned(),
                })
                .set(i64::from(bot.incidents.contains_key(&i)));
        }
        restarts.get_or_create(&labels).inc_by(bot.restarts);
        handled.get_or_create(&labels).inc_by(bot.updates_handled);
        sent.get_or_create(&labels).inc_by(bot.messages_sent);
        outbox_pending
            .get_or_create(&labels)
            .set(i64::try_from(bot.outbox.pending).unwrap_or(i64::MAX));
        outbox_oldest
            .get_or_create(&labels)
            .set(bot.outbox.oldest_age.map_or(0.0, |age| age.as_secs_f64()));
        outbox_dropped
            .get_or_create(&labels)
            .inc_by(bot.outbox.dropped);
        outbox_429
            .get_or_create(&labels)
            .inc_by(bot.outbox.rate_limited);
        outbox_paced.get_or_create(&labels).inc_by(bot.outbox.paced);
        if let Some(process) = &bot.process {
            program_starts.get_or_create(&labels).inc_by(process.starts);
            program_running
                .get_or_create(&labels)
                .set(i64::from(process.pid.is_some()));
            program_offered
                .get_or_create(&labels)
                .inc_by(process.offered);
            program_confirmed
                .get_or_create(&labels)
                .inc_by(process.confirmed);
            program_waiting
                .get_or_create(&labels)
                .set(i64::try_from(process.waiting).unwrap_or(i64::MAX));
            for (method, code, count) in &process.requests {
                gateway_requests
                    .get_or_create(&RequestLabels {
                        bot: bot.name.clone(),
                        method: (*method).to_owned(),
                        status: code.to_string(),
                    })
                    .inc_by(*count);
            }
        }
        if let Some(hook) = &bot.webhook {
            webhook_pending
                .get_or_create(&labels)
                .set(i64::from(hook.pending));
            if let Some(at) = hook.last_request
                && let Ok(since_epoch) = at.duration_since(SystemTime::UNIX_EPOCH)
            {
                webhook_last
                    .get_or_create(&labels)
                    .set(since_epoch.as_secs_f64());
            }
        }
        if let Some(at) = bot.last_successful_poll
            && let Ok(since_epoch) = at.duration_since(SystemTime::UNIX_EPOCH)
        {
            last_poll
                .get_or_create(&labels)
                .set(since_epoch.as_secs_f64());
        }
    }
    not_running.set(i64::try_from(board.not_running().len()).unwrap_or(i64::MAX));
    if let Some(fleet) = board.fleet() {
        let gauge = |value: usize| {
            let g = Gauge::<i64>::default();
            g.set(i64::try_from(value).unwrap_or(i64::MAX));
            g
        };
        let counter = |value: u64| {
            let c = Counter::<u64>::default();
            c.inc_by(value);
            c
        };
        let held = fleet
            .instances
            .iter()
            .find(|i| i.id == fleet.me)
            .map_or(0, |i| i.bots.len());
        registry.register(
            "fleet_instances",
            "Instances of the fleet heard from within the lease TTL",
            gauge(fleet.instances.len()),
        );
        registry.register(
            "fleet_bots_held",
            "Bots whose lease this instance holds",
            gauge(held),
        );
        registry.register(
            "fleet_bots_moving",
            "Bots between instances: released, expired, or being handed over",
            gauge(fleet.moving.len()),
        );
        registry.register(
            "fleet_handovers",
            "Bots this instance handed over to another instance",
            counter(fleet.handovers),
        );
        registry.register(
            "fleet_fencing_refusals",
            "Sends and writes this instance refused because it no longer held the bot's lease",
            counter(fleet.fencing_refusals),
        );
    }
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &registry).is_err() {
        // Writing to a String cannot fail; keep the endpoint answering.
        let _ = writeln!(out, "# encoding failed");
    }
    out
}

async fn metrics(State(board): State<StatusBoard>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        render_metrics(&board),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::StatusSender;

    /// A board of `n` running bots, `b0` … .
    fn board(n: usize) -> (StatusBoard, Vec<StatusSender>) {
        let board = StatusBoard::default();
        let senders = (0..n)
            .map(|i| {
                let name = format!("b{i}");
                let (status, rx) = StatusSender::new(&name, "echo");
                board.insert(&name, rx);
                status.set(WorkerState::Running, "polling", None);
                status
            })
            .collect();
        (board, senders)
    }

    fn series_of(text: &str, bot: &str) -> usize {
        let label = format!("bot=\"{bot}\"");
        text.lines().filter(|l| l.contains(&label)).count()
    }

    #[test]
    fn every_bot_has_its_series_up_to_the_threshold() {
        let (board, _senders) = board(3);
        let text = render_metrics(&board);
        assert!(series_of(&text, "b2") > 10, "{text}");
        assert!(
            text.contains("botvisor_bots{state=\"running\"} 3"),
            "{text}"
        );
    }

    #[test]
    fn past_the_threshold_only_bots_that_are_not_fine_have_series() {
        let (board, senders) = board(METRICS_EVERY_BOT_UP_TO + 1);
        senders[7].set(WorkerState::Parked, "keeps failing", None);
        senders[9].raise(Incident::Conflict, "409s for 10m");
        // Another instance runs it, and reports it.
        senders[3].set(WorkerState::Standby, "another instance holds it", None);
        let text = render_metrics(&board);
        assert_eq!(series_of(&text, "b0"), 0);
        assert_eq!(series_of(&text, "b3"), 0);
        assert!(series_of(&text, "b7") > 10);
        assert!(
            text.contains("botvisor_bot_state{bot=\"b7\",state=\"parked\"} 1"),
            "b7"
        );
        assert!(series_of(&text, "b9") > 10);
        assert!(
            text.contains(&format!(
                "botvisor_bots{{state=\"running\"}} {}",
                METRICS_EVERY_BOT_UP_TO - 1
            )),
            "the count by state"
        );
        assert!(text.contains("botvisor_bots{state=\"parked\"} 1"));
        assert!(text.contains("botvisor_bots_with_incident{incident=\"conflict\"} 1"));
        assert!(text.lines().count() < 200, "{} lines", text.lines().count());
    }
}
