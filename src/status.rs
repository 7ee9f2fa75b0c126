//! Each worker's visible state, and the board every reader takes it from.
//!
//! A worker owns a [`StatusSender`] (cloned into its kind's context, so the
//! relay can report its own incidents) and is the only writer of its
//! status; the [`StatusBoard`] holds the matching `watch` receivers and is
//! what the SIGUSR1 line, `/durum`, the HTTP endpoint and the alerts read.
//! Every state change is logged once here, with its reason and, for waits,
//! when the next attempt will be, so callers never log transitions
//! themselves.
//!
//! Every text that enters a status (a reason, an incident's detail, why a
//! bot cannot run) is cut here to [`REASON_CHARS`] characters, redacted and
//! with control characters escaped ([`crate::sanitize::excerpt`]), so no
//! caller can put an unbounded or multi-line string into a log line,
//! `/durum`, the status endpoint or an alert. A store outage closes only
//! once the store has stayed healthy for [`STORE_SETTLE`]: a store that
//! answers reads but fails writes (a full disk) keeps one incident open
//! instead of opening and closing it at every retry.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tracing::{error, info, warn};

use crate::outbox::{OutboxFigures, OutboxStats};
use crate::sanitize::excerpt;
use crate::telegram::ErrorClass;
use crate::telegram::text::{MESSAGE_LIMIT, telegram_len};

/// The longest reason or incident detail a status holds, in characters
/// (escapes counted as the characters they print): enough for a root cause
/// and a server's short description, small enough that the board's views
/// stay a few KB whatever a server sends.
pub const REASON_CHARS: usize = 300;

/// How long the store must stay healthy, with no new failure, before a
/// `store_down` incident closes. A session that reads the store and then
/// fails its first write (a full disk) clears the incident and raises it
/// again within seconds; this keeps that one incident, with one alert at
/// each end.
pub const STORE_SETTLE: Duration = Duration::from_secs(30);

/// `text` as a status may hold it: at most [`REASON_CHARS`] characters,
/// redacted, control characters escaped, never cut inside what a reader
/// sees as one character.
fn bounded(text: &str) -> String {
    excerpt(text, REASON_CHARS)
}

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
    /// Handing the bot over to another instance of the fleet: no longer
    /// polling, its outbox draining; never `running` on two instances.
    Handover,
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
            WorkerState::Handover => "handover",
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
    /// Telegram reports failed deliveries to the bot's webhook since the
    /// last request that reached botvisor.
    WebhookFailing,
}

impl Incident {
    pub fn name(self) -> &'static str {
        match self {
            Incident::Parked => "parked",
            Incident::Conflict => "conflict",
            Incident::StoreDown => "store_down",
            Incident::SelectorEmpty => "selector_empty",
            Incident::WebhookFailing => "webhook_failing",
        }
    }

    /// How long the incident must stay cleared before it closes: a store
    /// outage waits for [`STORE_SETTLE`], the others close at once.
    pub fn settle(self) -> Duration {
        match self {
            Incident::StoreDown => STORE_SETTLE,
            Incident::Parked
            | Incident::Conflict
            | Incident::SelectorEmpty
            | Incident::WebhookFailing => Duration::ZERO,
        }
    }

    /// What the incident means, for a person.
    pub fn describe(self) -> &'static str {
        match self {
            Incident::Parked => "is parked",
            Incident::Conflict => "is in conflict: another process polls with its token",
            Incident::StoreDown => "lost its store",
            Incident::SelectorEmpty => "finds no announcements on the list page",
            Incident::WebhookFailing => "gets no updates: Telegram cannot deliver to its webhook",
        }
    }
}

impl fmt::Display for Incident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A webhook bot's deliveries: the last request that reached botvisor, and
/// what Telegram's `getWebhookInfo` said when last asked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookView {
    pub last_request: Option<SystemTime>,
    /// When `getWebhookInfo` was last answered.
    pub checked: Option<SystemTime>,
    /// Updates Telegram holds for the bot, not yet delivered.
    pub pending: u32,
    /// Telegram's last delivery error (a short excerpt) and its time.
    pub last_error: Option<String>,
    pub last_error_at: Option<SystemTime>,
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
    /// For open incidents that close only after a settle period
    /// ([`Incident::settle`]): since when nothing has failed.
    healthy_since: BTreeMap<Incident, Instant>,
    /// The outbox's queue and counters; filled in by
    /// [`StatusBoard::snapshot`].
    pub outbox: OutboxFigures,
    /// How its updates arrive: `polling` or `webhook`.
    pub delivery: &'static str,
    /// For a webhook bot: its requests, and Telegram's view of them.
    pub webhook: Option<WebhookView>,
    /// For a process bot: its program and its gateway; filled in by
    /// [`StatusBoard::snapshot`].
    pub process: Option<ProcessView>,
    sent: Arc<AtomicU64>,
    outbox_stats: Arc<OutboxStats>,
    process_figures: Option<Arc<ProcessFigures>>,
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
            healthy_since: BTreeMap::new(),
            outbox: OutboxFigures::default(),
            delivery: "polling",
            webhook: None,
            process: None,
            sent: Arc::new(AtomicU64::new(0)),
            outbox_stats: Arc::new(OutboxStats::default()),
            process_figures: None,
        }
    }

    /// Closes the incidents that have been cleared for their whole settle
    /// period by `now`.
    fn settle(&mut self, now: Instant) {
        let settled: Vec<Incident> = self
            .healthy_since
            .iter()
            .filter(|(incident, since)| now.saturating_duration_since(**since) >= incident.settle())
            .map(|(incident, _)| *incident)
            .collect();
        for incident in settled {
            self.healthy_since.remove(&incident);
            self.incidents.remove(&incident);
        }
    }

    /// Clears `incident` at `now`: closed at once, or, for one with a settle
    /// period, healthy from `now` on unless it already was. True when
    /// something changed.
    fn clear(&mut self, incident: Incident, now: Instant) -> bool {
        if !self.incidents.contains_key(&incident) {
            return false;
        }
        if incident.settle().is_zero() {
            self.incidents.remove(&incident);
            return true;
        }
        if self.healthy_since.contains_key(&incident) {
            self.settle(now);
            return false;
        }
        self.healthy_since.insert(incident, now);
        self.settle(now);
        true
    }

    /// A line for a person, without a reason that only repeats the state
    /// (`stopped`, not `stopped: stopped`).
    fn state_line(state: WorkerState, reason: &str) -> String {
        if reason.is_empty() || reason == state.name() {
            state.name().to_owned()
        } else {
            format!("{state}: {reason}")
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

    /// One line for a person (`/durum`'s summary): state, age, the reason,
    /// and the open incidents by name.
    fn one_line(&self) -> String {
        let mut out = format!(
            "{} ({}): {} for {}",
            self.name,
            self.kind,
            self.state,
            short(self.since_instant.elapsed())
        );
        if self.reason != self.state.name() {
            let reason = crate::telegram::text::shorten(&self.reason, SUMMARY_REASON);
            out.push_str(&format!(" — {reason}"));
            if reason.len() < self.reason.len() {
                out.push('…');
            }
        }
        for incident in self.incidents.keys() {
            out.push_str(&format!(" ⚠ {incident}"));
        }
        out
    }

    /// A few lines for a person (`/durum`): state and age, then the
    /// reason, counters and open incidents.
    pub fn describe(&self) -> String {
        let mut out = format!(
            "{} ({}): {} for {}",
            self.name,
            self.kind,
            self.state,
            short(self.since_instant.elapsed()),
        );
        if self.reason != self.state.name() {
            out.push_str(&format!("\n  {}", self.reason));
        }
        out.push_str(&format!(
            "\n  handled {}, sent {}, restarts {}",
            self.updates_handled, self.messages_sent, self.restarts
        ));
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
        if let Some(hook) = &self.webhook {
            match hook.last_request.and_then(|at| at.elapsed().ok()) {
                Some(age) => out.push_str(&format!("\n  webhook: last request {} ago", short(age))),
                None => out.push_str("\n  webhook: no request yet"),
            }
            if hook.checked.is_some() {
                out.push_str(&format!(", Telegram holds {}", hook.pending));
            }
        }
        for (incident, detail) in &self.incidents {
            out.push_str(&format!("\n  ⚠ {}: {detail}", incident.describe()));
        }
        out
    }
}

/// What a process bot's gateway and program keep up to date: its child,
/// the updates offered and confirmed, and the gateway's requests.
#[derive(Debug, Default)]
pub struct ProcessFigures {
    /// The child's pid; 0 while none runs.
    pid: std::sync::atomic::AtomicU32,
    /// The child is a reaper leading the program (its one child).
    reaped: std::sync::atomic::AtomicBool,
    /// Children started.
    starts: AtomicU64,
    offered: AtomicU64,
    confirmed: AtomicU64,
    /// Updates offered and not confirmed now.
    waiting: AtomicU64,
    /// When the child last asked for updates, Unix ms; 0 for never since
    /// it started.
    last_poll_ms: AtomicU64,
    /// Requests by method and HTTP status.
    requests: std::sync::Mutex<BTreeMap<(&'static str, u16), u64>>,
}

/// [`ProcessFigures`] at one moment, with the child's memory and CPU.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ProcessView {
    pub pid: Option<u32>,
    pub starts: u64,
    pub offered: u64,
    pub confirmed: u64,
    pub waiting: u64,
    pub last_poll: Option<SystemTime>,
    /// The child's resident memory, bytes.
    pub rss_bytes: Option<u64>,
    /// The child's CPU time so far, seconds.
    pub cpu_seconds: Option<f64>,
    pub requests: Vec<(&'static str, u16, u64)>,
}

/// Distinct (method, status) pairs counted at most: methods come from the
/// Bot API's list, statuses from a handful.
const MAX_REQUEST_KINDS: usize = 1_000;

impl ProcessFigures {
    /// Whether the child is a reaper, the program its child.
    pub fn set_reaped(&self, reaped: bool) {
        self.reaped.store(reaped, Ordering::Relaxed);
    }

    /// A child started (`Some`) or ended (`None`).
    pub fn set_pid(&self, pid: Option<u32>) {
        self.pid.store(pid.unwrap_or(0), Ordering::Relaxed);
        if pid.is_some() {
            self.starts.fetch_add(1, Ordering::Relaxed);
            self.last_poll_ms.store(0, Ordering::Relaxed);
        }
    }

    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::Relaxed)).filter(|pid| *pid != 0)
    }

    pub fn add_offered(&self, count: u64) {
        self.offered.fetch_add(count, Ordering::Relaxed);
    }

    pub fn add_confirmed(&self, count: u64) {
        self.confirmed.fetch_add(count, Ordering::Relaxed);
    }

    pub fn set_waiting(&self, count: usize) {
        self.waiting.store(count as u64, Ordering::Relaxed);
    }

    /// The child asked for updates at `now_ms`; true for its first time.
    pub fn set_polled(&self, now_ms: u64) -> bool {
        self.last_poll_ms.swap(now_ms.max(1), Ordering::Relaxed) == 0
    }

    /// Whether the child has asked for updates since it started.
    pub fn has_polled(&self) -> bool {
        self.last_poll_ms.load(Ordering::Relaxed) != 0
    }

    /// One gateway request to `method` answered `status`.
    pub fn count_request(&self, method: &'static str, status: u16) {
        let mut requests = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        if requests.len() < MAX_REQUEST_KINDS || requests.contains_key(&(method, status)) {
            *requests.entry((method, status)).or_default() += 1;
        }
    }

    fn view(&self) -> ProcessView {
        // The program itself, below the reaper that leads its group (none
        // for the moment the reaper takes to start it).
        let pid = match self.reaped.load(Ordering::Relaxed) {
            true => self.pid().and_then(program_of),
            false => self.pid(),
        };
        let (rss_bytes, cpu_seconds) = pid.map(usage).unwrap_or_default();
        let last = self.last_poll_ms.load(Ordering::Relaxed);
        ProcessView {
            pid,
            starts: self.starts.load(Ordering::Relaxed),
            offered: self.offered.load(Ordering::Relaxed),
            confirmed: self.confirmed.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
            last_poll: (last != 0).then(|| std::time::UNIX_EPOCH + Duration::from_millis(last)),
            rss_bytes,
            cpu_seconds,
            requests: self
                .requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|((method, status), count)| (*method, *status, *count))
                .collect(),
        }
    }
}

/// The program a reaper leads (its one child), or `leader` itself.
pub fn program_pid(leader: u32) -> u32 {
    program_of(leader).unwrap_or(leader)
}

/// The one child of process `leader` (a reaper's program), from /proc.
fn program_of(leader: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{leader}/task/{leader}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// A process's resident memory (bytes) and CPU time (seconds), from /proc.
fn usage(pid: u32) -> (Option<u64>, Option<f64>) {
    // SAFETY: sysconf only reads a system constant.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    // SAFETY: as above.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let rss = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map(|pages| pages * page);
    let cpu = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The command name may hold spaces: fields count after its `)`.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            (ticks > 0).then(|| (utime + stime) / ticks as f64)
        });
    (rss, cpu)
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

    /// The figures a process bot's gateway and program keep up to date
    /// (made on first use: only process bots have them).
    pub fn process_figures(&self) -> Arc<ProcessFigures> {
        let mut figures = None;
        self.tx.send_modify(|status| {
            figures = Some(
                status
                    .process_figures
                    .get_or_insert_with(Arc::default)
                    .clone(),
            );
        });
        figures.unwrap_or_default()
    }

    /// Opens `incident` (or updates its detail). Logged by the caller,
    /// which knows the context; alerts are sent by `alerts`.
    ///
    /// A new failure of an incident that was settling keeps it open and
    /// starts its settle period again at the next clear.
    pub fn raise(&self, incident: Incident, detail: impl Into<String>) {
        let detail = bounded(&detail.into());
        let now = Instant::now();
        self.tx.send_if_modified(|status| {
            status.settle(now);
            let settling = status.healthy_since.remove(&incident).is_some();
            if !settling && status.incidents.get(&incident) == Some(&detail) {
                return false;
            }
            status.incidents.insert(incident, detail);
            true
        });
        // After the incident is in: a reader that sees the count moved
        // sees the incident too.
        RAISED.fetch_add(1, Ordering::SeqCst);
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

    /// True while `incident` is open (a settling incident is open until its
    /// settle period is over).
    pub fn has(&self, incident: Incident) -> bool {
        let status = self.tx.borrow();
        status.incidents.contains_key(&incident)
            && status.healthy_since.get(&incident).is_none_or(|since| {
                Instant::now().saturating_duration_since(*since) < incident.settle()
            })
    }

    /// Closes `incident` if it is open. One with a settle period (a store
    /// outage) closes only once it has stayed cleared that long, with no
    /// [`raise`](Self::raise) in between; clearing it again meanwhile does
    /// not restart the period.
    pub fn clear(&self, incident: Incident) {
        self.clear_at(incident, Instant::now());
    }

    /// [`clear`](Self::clear) as of `now`.
    pub(crate) fn clear_at(&self, incident: Incident, now: Instant) {
        self.tx
            .send_if_modified(|status| status.clear(incident, now));
    }

    pub fn state(&self) -> WorkerState {
        self.tx.borrow().state
    }

    /// Why the worker is in its state.
    pub fn reason(&self) -> String {
        self.tx.borrow().reason.clone()
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
        let reason = bounded(&reason.into());
        let now = Instant::now();
        let mut changed = false;
        self.tx.send_modify(|status| {
            status.settle(now);
            status.next_attempt = wait.map(|w| SystemTime::now() + w);
            match state {
                WorkerState::Parked => {
                    status.incidents.insert(Incident::Parked, reason.clone());
                }
                // Standby proves the token (getMe) and the store's reads (the
                // lease query) work; another instance polls the bot. The
                // store outage settles like any other clear.
                WorkerState::Standby => {
                    status.incidents.remove(&Incident::Parked);
                    status.clear(Incident::StoreDown, now);
                }
                _ => {}
            }
            if status.state != state {
                changed = true;
                status.state = state;
                status.since = SystemTime::now();
                status.since_instant = now;
            }
            if status.reason != reason {
                if state != WorkerState::Conflict {
                    changed = true;
                }
                status.reason.clone_from(&reason);
            }
        });
        if state == WorkerState::Parked {
            // A park is an incident: raised after it is in, as `raise` does.
            RAISED.fetch_add(1, Ordering::SeqCst);
        }
        if !changed {
            return;
        }
        let retry_in = wait.map(short);
        let line = BotStatus::state_line(state, &reason);
        match state {
            WorkerState::Parked => match retry_in {
                Some(retry_in) => {
                    error!(state = %state, %retry_in, "{line}; next attempt in {retry_in}")
                }
                None => error!(state = %state, "{line}"),
            },
            WorkerState::BackingOff | WorkerState::Conflict => match retry_in {
                Some(retry_in) => {
                    warn!(state = %state, %retry_in, "{line}; next attempt in {retry_in}")
                }
                None => warn!(state = %state, "{line}"),
            },
            _ => info!(state = %state, "{line}"),
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
    /// How the bot's updates arrive.
    pub fn set_delivery(&self, delivery: &'static str) {
        self.tx.send_modify(|status| {
            status.delivery = delivery;
            if delivery == "webhook" {
                status.webhook.get_or_insert_with(WebhookView::default);
            } else {
                status.webhook = None;
            }
        });
    }

    /// A webhook request with the right secret reached the bot.
    pub fn webhook_request(&self) {
        self.tx.send_modify(|status| {
            let now = SystemTime::now();
            status.last_successful_poll = Some(now);
            status.incidents.remove(&Incident::Parked);
            status
                .webhook
                .get_or_insert_with(WebhookView::default)
                .last_request = Some(now);
        });
    }

    /// What Telegram's `getWebhookInfo` said. Failing, for the incident:
    /// an error newer than the last request that reached botvisor and than
    /// `set_at` (when botvisor last set the webhook: older errors are
    /// history).
    pub fn webhook_checked(
        &self,
        pending: u32,
        last_error: Option<String>,
        last_error_at: Option<SystemTime>,
        set_at: SystemTime,
    ) {
        let mut failing = None;
        self.tx.send_modify(|status| {
            let view = status.webhook.get_or_insert_with(WebhookView::default);
            view.checked = Some(SystemTime::now());
            view.pending = pending;
            view.last_error = last_error.map(|e| crate::sanitize::excerpt(&e, 200));
            view.last_error_at = last_error_at;
            let healthy_since = view.last_request.map_or(set_at, |at| at.max(set_at));
            failing = match view.last_error_at {
                Some(error) if error > healthy_since => view.last_error.clone(),
                _ => None,
            };
        });
        match failing {
            Some(error) => self.raise(
                Incident::WebhookFailing,
                format!("Telegram says: {error} ({pending} update(s) waiting)"),
            ),
            None => self.clear(Incident::WebhookFailing),
        }
    }

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

/// The longest line a bot gets in a [`summary`], and the longest reason
/// in it, in UTF-16 units.
const SUMMARY_LINE: usize = 240;
const SUMMARY_REASON: usize = 120;

/// A status table for many bots that fits `limit` UTF-16 units: how many
/// bots are in each state, then one line per bot, those that cannot run or
/// are neither running nor in standby first, then those with an open
/// incident, then the rest, cut with `… and N more` where the room ends.
fn summary(
    bots: &[BotStatus],
    not_running: &[(String, String)],
    stopping: bool,
    limit: usize,
) -> String {
    let mut counts: Vec<(WorkerState, usize)> = Vec::new();
    for status in bots {
        match counts.iter_mut().find(|(state, _)| *state == status.state) {
            Some((_, count)) => *count += 1,
            None => counts.push((status.state, 1)),
        }
    }
    counts.sort_by_key(|(state, _)| *state as u8);
    let mut parts: Vec<String> = counts
        .iter()
        .map(|(state, count)| format!("{count} {state}"))
        .collect();
    if !not_running.is_empty() {
        parts.push(format!("{} not running", not_running.len()));
    }
    let mut out = format!("botvisor: {} bot(s): {}", bots.len(), parts.join(", "));
    if stopping {
        out.push_str("\nbotvisor is shutting down.");
    }
    out.push_str(
        "\nToo many bots for one message: one line each, those that need attention first.\n",
    );

    let mut ordered: Vec<&BotStatus> = bots.iter().collect();
    ordered.sort_by_key(|status| (status.is_healthy(), status.incidents.is_empty()));
    let lines: Vec<String> = not_running
        .iter()
        .map(|(name, reason)| format!("{name}: not running: {reason}"))
        .chain(ordered.iter().map(|status| status.one_line()))
        .map(|line| crate::telegram::text::shorten(&line, SUMMARY_LINE).to_owned())
        .collect();
    let total = lines.len();
    // Room kept for the last line, whatever the count in it.
    let reserve = telegram_len(&format!("\n… and {total} more"));
    let mut used = telegram_len(&out);
    for (shown, line) in lines.iter().enumerate() {
        let len = 1 + telegram_len(line);
        let last = shown + 1 == total;
        if used + len + if last { 0 } else { reserve } > limit {
            out.push_str(&format!("\n… and {} more", total - shown));
            return out;
        }
        out.push('\n');
        out.push_str(line);
        used += len;
    }
    out
}

/// A bot's state and open incidents, from [`StatusBoard::incidents_at`].
#[derive(Clone, Debug)]
pub struct BotIncidents {
    pub name: String,
    pub state: WorkerState,
    pub incidents: BTreeMap<Incident, String>,
}

/// Incidents raised in this process, ever: while no bot has an incident, a
/// reader that saw this unchanged knows none has one now (only a raise
/// opens one), without reading every bot.
static RAISED: AtomicU64 = AtomicU64::new(0);

/// How many incidents have been raised in this process.
pub(crate) fn raised_count() -> u64 {
    RAISED.load(Ordering::SeqCst)
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
    /// The fleet as this instance last saw it (PostgreSQL stores only).
    fleet: Option<FleetStatus>,
}

/// The fleet as one instance sees it: what `/status` and `/metrics` show.
/// Bots are named by this config's names (a bot not in it by `id:<n>`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetStatus {
    /// This instance's id.
    pub me: String,
    pub instances: Vec<FleetInstance>,
    /// Bots between holders: released, expired, or asked to move.
    pub moving: Vec<String>,
    /// Bots this instance hands over, counted since the start.
    pub handovers: u64,
    /// Sends and writes refused for a lease no longer held.
    pub fencing_refusals: u64,
}

/// One instance of the fleet.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FleetInstance {
    pub id: String,
    pub host: String,
    pub weight: u32,
    /// How many bots its weight gives it.
    pub share: usize,
    /// Milliseconds since its last heartbeat.
    pub silent_ms: i64,
    /// The bots it holds: name, lease generation, milliseconds since taken.
    pub bots: Vec<(String, i64, i64)>,
}

impl fmt::Debug for StatusBoard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StatusBoard").finish_non_exhaustive()
    }
}

impl StatusBoard {
    /// The current status of every bot, by name.
    pub fn snapshot(&self) -> Vec<BotStatus> {
        self.snapshot_at(Instant::now())
    }

    /// [`snapshot`](Self::snapshot) as of `now`: incidents whose settle
    /// period is over by then are closed.
    pub(crate) fn snapshot_at(&self, now: Instant) -> Vec<BotStatus> {
        let board = self.read();
        board
            .bots
            .values()
            .map(|rx| {
                let mut status = rx.borrow().clone();
                status.settle(now);
                status.messages_sent = status.sent.load(Ordering::Relaxed);
                status.outbox = status.outbox_stats.figures();
                status.process = status.process_figures.as_ref().map(|f| f.view());
                status
            })
            .collect()
    }

    /// The name, state and open incidents as of `now` of each bot with an
    /// incident, without the rest of its status: what the alerts look at
    /// every second, cheap at thousands of bots.
    pub(crate) fn incidents_at(&self, now: Instant) -> Vec<BotIncidents> {
        let board = self.read();
        board
            .bots
            .iter()
            .filter_map(|(name, rx)| {
                let status = rx.borrow();
                // A quiet bot costs no copy: thousands are read each second.
                if status.incidents.is_empty() {
                    return None;
                }
                let settled = |incident: &Incident| {
                    status.healthy_since.get(incident).is_some_and(|since| {
                        now.saturating_duration_since(*since) >= incident.settle()
                    })
                };
                Some(BotIncidents {
                    name: name.clone(),
                    state: status.state,
                    incidents: status
                        .incidents
                        .iter()
                        .filter(|(incident, _)| !settled(incident))
                        .map(|(incident, detail)| (*incident, detail.clone()))
                        .collect(),
                })
            })
            .collect()
    }

    /// Bot `name`'s state, if it is on the board.
    pub(crate) fn state_of(&self, name: &str) -> Option<WorkerState> {
        self.read().bots.get(name).map(|rx| rx.borrow().state)
    }

    /// The incidents open for bot `name`.
    pub fn incidents_of(&self, name: &str) -> BTreeMap<Incident, String> {
        self.read()
            .bots
            .get(name)
            .map(|rx| {
                let mut status = rx.borrow().clone();
                status.settle(Instant::now());
                status.incidents
            })
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

    /// The fleet as last seen, when the store is shared.
    pub fn fleet(&self) -> Option<FleetStatus> {
        self.read().fleet.clone()
    }

    pub(crate) fn set_fleet(&self, fleet: FleetStatus) {
        self.write().fleet = Some(fleet);
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

    /// The status table `/durum` answers with: always one Telegram message.
    /// A table that would not fit one becomes a summary: bots per state,
    /// then one line per bot, troubled bots first, then `… and N more`.
    pub fn table(&self) -> String {
        let bots = self.snapshot();
        let not_running = self.not_running();
        let stopping = self.is_stopping();
        let mut out = format!("botvisor: {} bot(s)", bots.len());
        for status in &bots {
            out.push_str("\n\n");
            out.push_str(&status.describe());
        }
        for (name, reason) in &not_running {
            out.push_str(&format!("\n\n{name}: not running: {reason}"));
        }
        if stopping {
            out.push_str("\n\nbotvisor is shutting down.");
        }
        if telegram_len(&out) <= MESSAGE_LIMIT {
            return out;
        }
        summary(&bots, &not_running, stopping, MESSAGE_LIMIT)
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
        self.write().not_running = not_running
            .into_iter()
            .map(|(name, reason)| (name, bounded(&reason)))
            .collect();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::{Redactor, Token};

    fn board_of(count: usize) -> (StatusBoard, Vec<StatusSender>) {
        let board = StatusBoard::default();
        let senders = (0..count)
            .map(|i| {
                let name = format!("bot{i:03}");
                let (sender, rx) = StatusSender::new(&name, "echo");
                board.insert(&name, rx);
                sender
            })
            .collect();
        (board, senders)
    }

    #[test]
    fn a_webhook_fails_only_for_errors_newer_than_its_last_request_and_setting() {
        let (board, senders) = board_of(1);
        let status = &senders[0];
        status.set_delivery("webhook");
        let t = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs);
        let failing = || {
            board.snapshot()[0]
                .incidents
                .contains_key(&Incident::WebhookFailing)
        };
        // An error from before botvisor set its webhook is history.
        status.webhook_checked(3, Some("Connection refused".into()), Some(t(10)), t(20));
        assert!(!failing());
        // A newer one, with no request since: failing.
        status.webhook_checked(4, Some("Connection refused".into()), Some(t(30)), t(20));
        assert!(failing());
        let view = board.snapshot()[0].webhook.clone().expect("a webhook view");
        assert_eq!(view.pending, 4);
        // A request that reached botvisor after it: healthy again.
        status.webhook_request();
        status.webhook_checked(0, Some("Connection refused".into()), Some(t(30)), t(20));
        assert!(!failing());
        status.set_delivery("polling");
        assert!(board.snapshot()[0].webhook.is_none());
    }

    #[test]
    fn every_reason_is_bounded_where_it_enters_the_board() {
        // Built at run time: no token-shaped literal sits in the source.
        let secret = format!("AAstatusTestSecret_{}", "0123456789abcdef");
        Redactor::global().learn(&Token::new(format!("777111:{secret}")));
        let huge = format!(
            "bad body: /bot777111%3A{secret}/getUpdates\n{}",
            "a user's private text ".repeat(50_000)
        );
        let (board, senders) = board_of(1);
        let status = &senders[0];
        status.set(WorkerState::BackingOff, huge.clone(), None);
        status.raise(Incident::SelectorEmpty, huge.clone());
        board.set_not_running(BTreeMap::from([("other".to_owned(), huge.clone())]));
        let snapshot = &board.snapshot()[0];
        let mut texts = vec![snapshot.reason.clone()];
        texts.extend(snapshot.incidents.values().cloned());
        texts.extend(board.not_running().into_iter().map(|(_, reason)| reason));
        status.set(WorkerState::Parked, huge, None);
        texts.push(board.snapshot()[0].incidents[&Incident::Parked].clone());
        assert_eq!(texts.len(), 4);
        for text in texts {
            assert!(text.chars().count() < REASON_CHARS + 40, "{text}");
            assert!(!text.contains('\n'), "{text}");
            assert!(!text.contains("statusTest"), "{text}");
            assert!(
                text.starts_with("bad body: /bot<redacted>/getUpdates\\n"),
                "{text}"
            );
            assert!(text.ends_with("more bytes)"), "{text}");
        }
        // Short, plain reasons are kept as they are.
        status.set(WorkerState::Running, "polling again", None);
        assert_eq!(board.snapshot()[0].reason, "polling again");
    }

    #[test]
    fn a_reason_that_repeats_the_state_is_not_printed_twice() {
        let cases = [
            (WorkerState::Stopped, "stopped", "stopped"),
            (WorkerState::Stopped, "", "stopped"),
            (
                WorkerState::Running,
                "polling again",
                "running: polling again",
            ),
            (
                WorkerState::Parked,
                "token rejected",
                "parked: token rejected",
            ),
        ];
        for (state, reason, expected) in cases {
            assert_eq!(BotStatus::state_line(state, reason), expected);
        }
        let (board, senders) = board_of(1);
        senders[0].set(WorkerState::Stopped, "stopped", None);
        let table = board.table();
        assert!(!table.contains("\n  stopped"), "{table}");
    }

    #[test]
    fn a_store_outage_closes_only_after_the_store_stayed_healthy() {
        let (board, senders) = board_of(1);
        let status = &senders[0];
        let start = Instant::now();
        let open_at = |seconds: u64| {
            board.snapshot_at(start + Duration::from_secs(seconds))[0]
                .incidents
                .contains_key(&Incident::StoreDown)
        };
        status.raise(Incident::StoreDown, "the disk is full");
        status.clear_at(Incident::StoreDown, start + Duration::from_secs(1));
        assert!(open_at(1) && open_at(30));
        // A second clear does not restart the period; a new failure does.
        status.clear_at(Incident::StoreDown, start + Duration::from_secs(20));
        assert!(!open_at(31));
        status.raise(Incident::StoreDown, "the disk is still full");
        assert!(open_at(31) && open_at(1000));
        status.clear_at(Incident::StoreDown, start + Duration::from_secs(40));
        assert!(open_at(69));
        assert!(!open_at(70));
        // Other incidents close at once.
        status.raise(Incident::SelectorEmpty, "no links");
        status.clear(Incident::SelectorEmpty);
        assert!(!status.has(Incident::SelectorEmpty));
        // Standby proves the store's reads, and settles like a clear.
        status.raise(Incident::StoreDown, "gone");
        status.set(WorkerState::Standby, "another instance holds the bot", None);
        assert!(status.has(Incident::StoreDown));
    }

    #[test]
    fn a_table_for_500_bots_is_one_message_with_the_troubled_bots_first() {
        let (board, senders) = board_of(500);
        for (i, status) in senders.iter().enumerate() {
            match i % 100 {
                7 => status.set(WorkerState::Parked, "the token was rejected", None),
                8 => status.set(WorkerState::BackingOff, "connection refused", None),
                9 => status.set(WorkerState::Standby, "another instance polls", None),
                _ => status.set(WorkerState::Running, "polling", None),
            }
        }
        board.set_not_running(BTreeMap::from([(
            "late".to_owned(),
            "LATE_TOKEN is not set".to_owned(),
        )]));
        let table = board.table();
        assert!(
            telegram_len(&table) <= MESSAGE_LIMIT,
            "{}",
            telegram_len(&table)
        );
        assert_eq!(
            crate::outbox::OutMessage::text(1, table.clone())
                .into_parts()
                .len(),
            1
        );
        let first = table.lines().next().unwrap_or_default();
        assert_eq!(
            first,
            "botvisor: 500 bot(s): 485 running, 5 standby, 5 backing_off, 5 parked, 1 not running"
        );
        let lines: Vec<&str> = table.lines().collect();
        let position = |needle: &str| lines.iter().position(|l| l.starts_with(needle));
        // The bot that cannot run and the parked and backing-off bots come
        // before every running one.
        let late = position("late: not running").expect("late is listed");
        let running = position("bot000 ").unwrap_or(usize::MAX);
        for troubled in ["bot007 ", "bot108 ", "bot407 ", "bot408 "] {
            let at = position(troubled).unwrap_or_else(|| panic!("{troubled} missing:\n{table}"));
            assert!(late < at && at < running, "{table}");
        }
        let last = lines.last().copied().unwrap_or_default();
        assert!(
            last.starts_with("… and ") && last.ends_with(" more"),
            "{table}"
        );
        let more: usize = last
            .trim_start_matches("… and ")
            .trim_end_matches(" more")
            .parse()
            .unwrap_or(0);
        // Every bot is either listed or counted (the header, the note, a
        // blank line and the last line are not bots).
        assert_eq!(lines.len() - 4 + more, 501, "{table}");
    }

    #[test]
    fn a_small_table_keeps_every_detail() {
        let (board, senders) = board_of(2);
        senders[0].set(WorkerState::Running, "polling", None);
        senders[1].set(WorkerState::BackingOff, "connection refused", None);
        let table = board.table();
        assert!(table.starts_with("botvisor: 2 bot(s)\n\nbot000 (echo): running for "));
        assert!(
            table.contains("\n  connection refused\n  handled 0"),
            "{table}"
        );
    }
}
