//! Each worker's visible state, and the board every reader takes it from.
//!
//! A worker owns a [`StatusSender`] (cloned into its kind's context, so the
//! relay can report its own incidents) and is the only writer of its
//! status; the [`StatusBoard`] holds the matching `watch` receivers and is
//! what the SIGUSR1 line, `/durum`, the HTTP endpoint and the alerts read.
//! Every state change is logged once here, with its reason and, for waits,
//! when the next attempt will be, so callers never log transitions
//! themselves.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::outbox::{OutboxFigures, OutboxStats};
use crate::telegram::ErrorClass;

/// Where a worker is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkerState {
    /// Connecting: `getMe` and the kind's start-up.
    Starting,
    /// Polling and handling updates.
    Running,
    /// Another botvisor process holds this bot's lease; waiting to take over.
    Standby,
    /// Telegram answers 409: another process polls with this token.
    Conflict,
    /// Waiting before the next attempt after an error.
    BackingOff,
    /// Failing too often, or the token was rejected: held back for a cool-down.
    Parked,
    /// Finishing the handlers that were running when the stop came.
    Stopping,
    Stopped,
}

impl WorkerState {
    pub fn name(self) -> &'static str {
        match self {
            WorkerState::Starting => "starting",
            WorkerState::Running => "running",
            WorkerState::Standby => "standby",
            WorkerState::Conflict => "conflict",
            WorkerState::BackingOff => "backing_off",
            WorkerState::Parked => "parked",
            WorkerState::Stopping => "stopping",
            WorkerState::Stopped => "stopped",
        }
    }
}

impl fmt::Display for WorkerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Something an operator should be told about, raised and cleared by the
/// worker (or its kind) and turned into alerts by `alerts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Incident {
    /// The bot is parked (failing too often, or its token was rejected).
    Parked,
    /// Telegram has answered 409 for longer than `conflict_alert_after`.
    Conflict,
    /// The store cannot be reached.
    StoreDown,
    /// The announcements' link selector finds nothing on the list page.
    SelectorEmpty,
}

impl Incident {
    pub fn name(self) -> &'static str {
        match self {
            Incident::Parked => "parked",
            Incident::Conflict => "conflict",
            Incident::StoreDown => "store_down",
            Incident::SelectorEmpty => "selector_empty",
        }
    }

    /// What the incident means, for a person.
    pub fn describe(self) -> &'static str {
        match self {
            Incident::Parked => "is parked",
            Incident::Conflict => "is in conflict: another process polls with its token",
            Incident::StoreDown => "lost its store",
            Incident::SelectorEmpty => "finds no announcements on the list page",
        }
    }
}

impl fmt::Display for Incident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One bot's status, as the supervisor, `/durum`, the status endpoint and
/// the alerts see it.
#[derive(Clone, Debug)]
pub struct BotStatus {
    pub name: String,
    pub kind: &'static str,
    pub state: WorkerState,
    /// Why the worker is in this state.
    pub reason: String,
    /// When it entered this state.
    pub since: SystemTime,
    pub since_instant: Instant,
    /// When the next attempt is due, for waiting states.
    pub next_attempt: Option<SystemTime>,
    /// How many times the worker was restarted after a failure.
    pub restarts: u64,
    pub last_error_class: Option<ErrorClass>,
    pub last_successful_poll: Option<SystemTime>,
    pub updates_handled: u64,
    /// Messages the bot sent (each part of a split message counts); filled
    /// in by [`StatusBoard::snapshot`].
    pub messages_sent: u64,
    /// The incidents open now, each with its detail.
    pub incidents: BTreeMap<Incident, String>,
    /// The outbox's queue and counters; filled in by
    /// [`StatusBoard::snapshot`].
    pub outbox: OutboxFigures,
    sent: Arc<AtomicU64>,
    outbox_stats: Arc<OutboxStats>,
}

impl BotStatus {
    fn new(name: &str, kind: &'static str) -> BotStatus {
        BotStatus {
            name: name.to_owned(),
            kind,
            state: WorkerState::Starting,
            reason: "starting".to_owned(),
            since: SystemTime::now(),
            since_instant: Instant::now(),
            next_attempt: None,
            restarts: 0,
            last_error_class: None,
            last_successful_poll: None,
            updates_handled: 0,
            messages_sent: 0,
            incidents: BTreeMap::new(),
            outbox: OutboxFigures::default(),
            sent: Arc::new(AtomicU64::new(0)),
            outbox_stats: Arc::new(OutboxStats::default()),
        }
    }

    /// Running or in standby: what `/healthz` calls healthy.
    pub fn is_healthy(&self) -> bool {
        matches!(self.state, WorkerState::Running | WorkerState::Standby)
    }

    /// A compact `name=state` form for the SIGUSR1 status line.
    pub fn compact(&self) -> String {
        let age = self.since_instant.elapsed();
        let mut out = format!("{}={}({}", self.name, self.state, short(age));
        if self.restarts > 0 {
            out.push_str(&format!(", restarts={}", self.restarts));
        }
        if let Some(class) = &self.last_error_class {
            out.push_str(&format!(", last_error={class}"));
        }
        out.push_str(&format!(
            ", handled={}, sent={}, queued={})",
            self.updates_handled, self.messages_sent, self.outbox.pending
        ));
        out
    }

    /// A few lines for a person (`/durum`): state and age, then the
    /// reason, counters and open incidents.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} ({}): {} for {}\n  {}\n  handled {}, sent {}, restarts {}",
            self.name,
            self.kind,
            self.state,
            short(self.since_instant.elapsed()),
            self.reason,
            self.updates_handled,
            self.messages_sent,
            self.restarts
        );
        match self.last_successful_poll.and_then(|at| at.elapsed().ok()) {
            Some(age) => out.push_str(&format!(", last poll {} ago", short(age))),
            None => out.push_str(", no poll yet"),
        }
        if let Some(class) = &self.last_error_class {
            out.push_str(&format!(", last error {class}"));
        }
        let outbox = &self.outbox;
        if outbox.pending > 0 || outbox.dropped > 0 {
            out.push_str(&format!("\n  outbox: {} queued", outbox.pending));
            if let Some(age) = outbox.oldest_age {
                out.push_str(&format!(", oldest {}", short(age)));
            }
            if outbox.dropped > 0 {
                out.push_str(&format!(", {} dropped", outbox.dropped));
            }
        }
        for (incident, detail) in &self.incidents {
            out.push_str(&format!("\n  ⚠ {}: {detail}", incident.describe()));
        }
        out
    }
}

/// A duration rounded for people: `850ms`, `12s`, `3m`, `2h`.
pub fn short(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        format!("{}ms", d.as_millis())
    } else if secs < 120 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs < 7200 {
        format!("{}m", secs / 60)
    } else {
        format!("{}h", secs / 3600)
    }
}

/// The writing side of a worker's status. Clones write to the same status.
#[derive(Clone)]
pub struct StatusSender {
    tx: Arc<watch::Sender<BotStatus>>,
}

impl fmt::Debug for StatusSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusSender")
            .field("bot", &self.tx.borrow().name)
            .finish_non_exhaustive()
    }
}

impl StatusSender {
    /// A status for bot `name`, starting in `starting`, and its receiver.
    pub fn new(name: &str, kind: &'static str) -> (StatusSender, watch::Receiver<BotStatus>) {
        let (tx, rx) = watch::channel(BotStatus::new(name, kind));
        (StatusSender { tx: Arc::new(tx) }, rx)
    }

    /// The counter of messages sent, for the bot's handle to count into.
    pub fn sent_counter(&self) -> Arc<AtomicU64> {
        self.tx.borrow().sent.clone()
    }

    /// The figures the bot's outbox keeps up to date.
    pub fn outbox_stats(&self) -> Arc<OutboxStats> {
        self.tx.borrow().outbox_stats.clone()
    }

    /// Opens `incident` (or updates its detail). Logged by the caller,
    /// which knows the context; alerts are sent by `alerts`.
    pub fn raise(&self, incident: Incident, detail: impl Into<String>) {
        let detail = detail.into();
        self.tx.send_if_modified(|status| {
            if status.incidents.get(&incident) == Some(&detail) {
                return false;
            }
            status.incidents.insert(incident, detail);
            true
        });
    }

    /// Takes over the incidents a previous worker of the same bot left open
    /// (a reload restarted it): they close when this worker gets past them,
    /// not merely because the worker is new.
    pub fn carry_over(&self, incidents: BTreeMap<Incident, String>) {
        if !incidents.is_empty() {
            self.tx
                .send_modify(|status| status.incidents.extend(incidents));
        }
    }

    /// True while `incident` is open.
    pub fn has(&self, incident: Incident) -> bool {
        self.tx.borrow().incidents.contains_key(&incident)
    }

    /// Closes `incident` if it is open.
    pub fn clear(&self, incident: Incident) {
        self.tx
            .send_if_modified(|status| status.incidents.remove(&incident).is_some());
    }

    pub fn state(&self) -> WorkerState {
        self.tx.borrow().state
    }

    /// How long the worker has been in its current state.
    pub fn in_state_for(&self) -> Duration {
        self.tx.borrow().since_instant.elapsed()
    }

    /// Moves to `state` for `reason` and logs the change once. A move to
    /// the state the worker is already in is logged only when the reason
    /// changed (a new error while backing off), and never while in conflict,
    /// whose own log policy lives in the worker.
    pub fn set(&self, state: WorkerState, reason: impl Into<String>, wait: Option<Duration>) {
        let reason = reason.into();
        let mut changed = false;
        self.tx.send_modify(|status| {
            status.next_attempt = wait.map(|w| SystemTime::now() + w);
            match state {
                WorkerState::Parked => {
                    status.incidents.insert(Incident::Parked, reason.clone());
                }
                // Standby proves the token (getMe) and the store (the lease
                // query) work; another instance polls the bot.
                WorkerState::Standby => {
                    status.incidents.remove(&Incident::Parked);
                    status.incidents.remove(&Incident::StoreDown);
                }
                _ => {}
            }
            if status.state != state {
                changed = true;
                status.state = state;
                status.since = SystemTime::now();
                status.since_instant = Instant::now();
            }
            if status.reason != reason {
                if state != WorkerState::Conflict {
                    changed = true;
                }
                status.reason.clone_from(&reason);
            }
        });
        if !changed {
            return;
        }
        let retry_in = wait.map(short);
        match state {
            WorkerState::Parked => match retry_in {
                Some(retry_in) => {
                    error!(state = %state, %retry_in, "parked: {reason}; next attempt in {retry_in}")
                }
                None => error!(state = %state, "parked: {reason}"),
            },
            WorkerState::BackingOff | WorkerState::Conflict => match retry_in {
                Some(retry_in) => {
                    warn!(state = %state, %retry_in, "{state}: {reason}; next attempt in {retry_in}")
                }
                None => warn!(state = %state, "{state}: {reason}"),
            },
            _ => info!(state = %state, "{state}: {reason}"),
        }
    }

    pub fn error(&self, class: &ErrorClass) {
        let class = class.clone();
        self.tx
            .send_modify(|status| status.last_error_class = Some(class));
    }

    pub fn restarted(&self) {
        self.tx.send_modify(|status| status.restarts += 1);
    }

    /// A `getUpdates` succeeded: the bot is no longer parked. (A conflict
    /// ends by its own rule in the worker, a store outage when the store
    /// answers.)
    pub fn polled(&self) {
        self.tx.send_modify(|status| {
            status.last_successful_poll = Some(SystemTime::now());
            status.incidents.remove(&Incident::Parked);
        });
    }

    pub fn handled(&self, count: u64) {
        if count > 0 {
            self.tx
                .send_modify(|status| status.updates_handled += count);
        }
    }
}

/// Every worker's status, readable from outside the supervisor.
#[derive(Clone, Default)]
pub struct StatusBoard {
    inner: Arc<RwLock<Board>>,
}

#[derive(Default)]
struct Board {
    bots: BTreeMap<String, watch::Receiver<BotStatus>>,
    /// Enabled bots that cannot run, with the reason (a token variable that
    /// is not set).
    not_running: BTreeMap<String, String>,
    stopping: bool,
    /// `[supervisor] operators`: who may ask for `/durum`.
    operators: Vec<i64>,
}

impl fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusBoard").finish_non_exhaustive()
    }
}

impl StatusBoard {
    /// The current status of every bot, by name.
    pub fn snapshot(&self) -> Vec<BotStatus> {
        let board = self.read();
        board
            .bots
            .values()
            .map(|rx| {
                let mut status = rx.borrow().clone();
                status.messages_sent = status.sent.load(Ordering::Relaxed);
                status.outbox = status.outbox_stats.figures();
                status
            })
            .collect()
    }

    /// The incidents open for bot `name`.
    pub fn incidents_of(&self, name: &str) -> BTreeMap<Incident, String> {
        self.read()
            .bots
            .get(name)
            .map(|rx| rx.borrow().incidents.clone())
            .unwrap_or_default()
    }

    /// Enabled bots that cannot run, with the reason.
    pub fn not_running(&self) -> Vec<(String, String)> {
        let board = self.read();
        board
            .not_running
            .iter()
            .map(|(name, reason)| (name.clone(), reason.clone()))
            .collect()
    }

    /// True when user `id` is an operator.
    pub fn is_operator(&self, id: i64) -> bool {
        self.read().operators.contains(&id)
    }

    pub(crate) fn set_operators(&self, operators: &[i64]) {
        self.write().operators = operators.to_vec();
    }

    /// True once the supervisor is shutting down.
    pub fn is_stopping(&self) -> bool {
        self.read().stopping
    }

    /// One compact line: `name=state(age, …)` for every bot.
    pub fn line(&self) -> String {
        let parts: Vec<String> = self.snapshot().iter().map(BotStatus::compact).collect();
        parts.join(" ")
    }

    /// The status table `/durum` answers with.
    pub fn table(&self) -> String {
        let bots = self.snapshot();
        let mut out = format!("botvisor: {} bot(s)", bots.len());
        for status in &bots {
            out.push_str("\n\n");
            out.push_str(&status.describe());
        }
        for (name, reason) in self.not_running() {
            out.push_str(&format!("\n\n{name}: not running: {reason}"));
        }
        if self.is_stopping() {
            out.push_str("\n\nbotvisor is shutting down.");
        }
        out
    }

    pub(crate) fn insert(&self, name: &str, rx: watch::Receiver<BotStatus>) {
        let mut board = self.write();
        board.not_running.remove(name);
        board.bots.insert(name.to_owned(), rx);
    }

    pub(crate) fn remove(&self, name: &str) {
        self.write().bots.remove(name);
    }

    /// Replaces the list of enabled bots that cannot run.
    pub(crate) fn set_not_running(&self, not_running: BTreeMap<String, String>) {
        self.write().not_running = not_running;
    }

    pub(crate) fn set_stopping(&self) {
        self.write().stopping = true;
    }

    // A poisoned lock only means a reader panicked; the map is still whole.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Board> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Board> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }
}
