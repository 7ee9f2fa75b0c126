//! One bot's life: connect, poll, handle, send, and when something fails,
//! back off, restart, or park, without touching any other bot.
//!
//! A worker is a restart loop (this file) around a *session*
//! (`session.rs`: `getMe`, the lease, the outbox, the kind's start, then
//! the poll loop feeding the lanes of `dispatch.rs`). Telegram's conditions
//! that are states rather than crashes (409 Conflict, 429, a webhook) are
//! handled inside the session; whatever ends a session is sorted by
//! [`decide::decide`], a pure function, into a wait, a backoff or a park.
//! Every wait sits in a `select!` with the worker's cancellation token.

mod consumer;
pub mod decide;
mod delivery;
pub mod dispatch;
pub mod guard;
mod poll;
pub mod progress;
mod session;

use crate::webhook::{self, Secret, Webhooks};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio_util::sync::CancellationToken;

use crate::bots::Kind;
use crate::bots::process::ProcessHost;
use crate::config::BotConfig;
use crate::gateway::Gate;
use crate::outbox::Outbox;
use crate::restart::{Backoff, Intensity};
use crate::secret::Token;
use crate::status::{Incident, StatusBoard, StatusSender, WorkerState};
use crate::store::{Lease, Leases, Store};
use crate::telegram::BotHandle;
use crate::telegram::polling::{Poller, Reading, update_names};
use decide::{Delay, SessionEnd, decide};
use dispatch::panic_message;
pub use guard::Guards;
use poll::ConflictLog;
use progress::Progress;

/// Everything a worker needs, decided by the supervisor.
pub struct Worker {
    pub config: BotConfig,
    pub token: Token,
    pub client: reqwest::Client,
    pub poll_timeout: Duration,
    /// How long running handlers may go on after a stop is requested.
    pub stop_grace: Duration,
    pub status: StatusSender,
    pub cancel: CancellationToken,
    /// Where handled offsets, updates and queued messages are recorded.
    pub store: Store,
    /// Where this bot's lease is taken.
    pub leases: Arc<Leases>,
    /// A `getUpdates` unanswered this long restarts the worker.
    pub watchdog_after: Duration,
    /// Every bot's status, for `/durum`.
    pub board: StatusBoard,
    /// The bot's outbox (shared with the alerts when this bot sends them).
    pub outbox: Outbox,
    /// Where webhook requests meet their bot's session.
    pub webhooks: Webhooks,
    /// For `delivery = "webhook"`: the URL and settings for `setWebhook`.
    pub webhook: Option<webhook::Target>,
    /// For a process bot: the gateway and the environment its program gets.
    pub host: Option<ProcessHost>,
    /// Where the session's guard is checked, with every other one.
    pub guards: Guards,
}

/// What a worker keeps across sessions.
struct Kept {
    poller: Poller,
    /// Which updates are handled; the offset.
    progress: Arc<Progress>,
    /// The lease on the bot, once taken; given back when the worker stops.
    lease: Option<Arc<Lease>>,
    /// Whether the stored offset has been read since the lease was taken.
    loaded: bool,
    /// The conflict going on, if any: it outlives a session, so a restart
    /// in the middle of one neither ends it nor alerts twice.
    conflict: ConflictLog,
    /// A process bot's gate, open as long as the worker runs.
    gate: Option<Arc<Gate>>,
}

impl Worker {
    /// Runs the bot until its cancellation token is cancelled.
    pub async fn run(self) {
        let bot = BotHandle::new(
            &self.config.name,
            &self.token,
            &self.config.api_url,
            self.client.clone(),
        )
        .counting_into(self.status.sent_counter());
        let kind = Arc::new(Kind::new(&self.config.kind));
        if self.webhook.is_some() {
            self.webhooks
                .register(&self.config.name, Secret::of(&self.token));
        }
        let process = matches!(&*kind, Kind::Process(_));
        let gate = match &self.host {
            Some(host) if process => Some(host.gateway.open(
                &self.config.name,
                bot.clone(),
                self.token.bot_id().unwrap_or("0"),
                self.status.process_figures(),
            )),
            _ => None,
        };
        // A program reads its updates itself, of the types it asks for.
        let poller = if process {
            Poller::new(bot.clone(), self.poll_timeout, None, Reading::IdOnly)
        } else {
            Poller::new(
                bot.clone(),
                self.poll_timeout,
                Some(update_names(&kind.allowed_updates())),
                Reading::Whole,
            )
        };
        let mut kept = Kept {
            poller,
            progress: Progress::new(),
            lease: None,
            loaded: false,
            conflict: ConflictLog::default(),
            gate,
        };
        let policy = self.config.restart.clone();
        let mut backoff = Backoff::new(policy.clone());
        let mut intensity = Intensity::new(&policy);
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            self.status
                .set(WorkerState::Starting, "connecting to Telegram", None);
            let started = Instant::now();
            // Boxed, as the session boxes its opening: the worker's task
            // holds a few KB while it runs, not the 15 KB of the store's
            // transactions on the way in (issue 22: 10,000 bots).
            let end = AssertUnwindSafe(Box::pin(self.session(&bot, &kind, &mut kept)))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    SessionEnd::Failed(format!("the worker panicked: {}", panic_message(&panic)))
                });
            let Some(decision) = decide(end, started.elapsed(), &policy, || {
                intensity.count(Instant::now())
            }) else {
                break;
            };
            if decision.restarted {
                self.status.restarted();
            }
            if decision.store_down {
                self.status
                    .raise(Incident::StoreDown, decision.reason.clone());
            }
            if decision.reset_backoff {
                backoff.reset();
            }
            let wait = match decision.delay {
                Delay::Exactly(wait) => wait,
                Delay::Backoff => backoff.next_delay(),
                Delay::Park => {
                    intensity.clear();
                    policy.park_for
                }
            };
            if decision.state == WorkerState::Parked {
                // A parked bot's program is held back too.
                kind.stop_program(self.stop_grace).await;
            }
            // Waiting, with the fleet asking for the bot elsewhere: it goes
            // now, not after the wait (an instance that cannot reach
            // Telegram must not keep its bots).
            if kept
                .lease
                .as_ref()
                .is_some_and(|lease| lease.handover_wanted())
                && let Some(lease) = kept.lease.take()
            {
                lease.release_shared().await;
                kept.loaded = false;
                tracing::info!("handed the bot over to another instance while waiting");
            }
            self.status.set(decision.state, decision.reason, Some(wait));
            if !self.sleep(wait).await {
                break;
            }
        }
        kind.stop_program(self.stop_grace).await;
        if let (Some(gate), Some(host)) = (kept.gate.take(), &self.host) {
            host.gateway.close(&gate);
        }
        if let Some(lease) = kept.lease.take() {
            // After the last poll: the next instance may take over at once.
            match Arc::try_unwrap(lease) {
                Ok(lease) => lease.release().await,
                Err(shared) => shared.release_shared().await,
            }
        }
        if self.webhook.is_some() {
            self.webhooks.unregister(&self.config.name);
        }
        self.status.set(WorkerState::Stopped, "stopped", None);
    }

    /// Sleeps unless cancelled first; false when cancelled.
    async fn sleep(&self, wait: Duration) -> bool {
        tokio::select! {
            () = self.cancel.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }
}
