//! Each bot's outbox: every message the bot sends goes through it, durably,
//! paced ahead of Telegram's limits, one chat never waiting for another.
//!
//! Two tasks per running session. The **committer** owns the bot's inbox
//! and outbox rows in the store: it group-commits the updates the poll loop
//! received (with the offset that confirms them), what handlers decided
//! (the update leaves the inbox as its messages enter the outbox), what the
//! relay broadcasts, and the rows of messages that went out, each batch one
//! transaction, and tells the worker through [`UpdateJournal`]. Only committed messages reach
//! the **sender**, which keeps one queue per chat (order within a chat is
//! kept; one send in flight per chat), asks the [`pacer::Pacer`] when each
//! may go, and reacts to each answer: accepted (the row goes), 429 (that
//! chat, or the bot, waits exactly `retry_after`), a migrated group
//! (followed), a definite refusal (dropped with one log line), anything
//! else (retried with backoff until `max_age`).
//!
//! A crash loses nothing: what was committed is sent by the next session.
//! The one message that can go out twice is one in flight at the crash
//! (sent, its row not yet deleted): deletes are committed as soon as the
//! previous commit ends, so that window is one commit long.
//!
//! Alerts are the exception: they are not durable (`send_volatile`), and
//! wait in memory while the bot is not running here.

pub mod committer;
pub mod pacer;
pub mod sender;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, warn};

use crate::config::OutboxSettings;
use crate::store::{BotStore, InboxRow, StoreError};
use crate::telegram::BotHandle;
use crate::telegram::api::Refusal;
use crate::telegram::call::Call;
pub use crate::telegram::send::Keyboard;
use crate::telegram::text::{MESSAGE_LIMIT, cut_to_units, split_message, telegram_len};

/// Messages queued for one bot at most, whatever the chats: a bound on
/// memory and store should many chats flood at once.
pub const MAX_QUEUED: usize = 100_000;
/// Alerts kept while the bot that sends them is not running here.
const MAX_PARKED: usize = 100;

/// A message a bot decided to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutMessage {
    pub chat: i64,
    pub body: Body,
}

/// What to send.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// A new message.
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keyboard: Option<Keyboard>,
    },
    /// A new text (and buttons) for a message sent earlier.
    Edit {
        message_id: i32,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        keyboard: Option<Keyboard>,
    },
    /// A process bot's call of any method that sends, edits or deletes in
    /// a chat, with its parameters and files, sent as it came.
    Call(Call),
}

impl OutMessage {
    /// A text message to `chat`.
    pub fn text(chat: i64, text: impl Into<String>) -> OutMessage {
        OutMessage {
            chat,
            body: Body::Text {
                text: text.into(),
                keyboard: None,
            },
        }
    }

    /// A text message with inline buttons.
    pub fn with_keyboard(chat: i64, text: impl Into<String>, keyboard: Keyboard) -> OutMessage {
        OutMessage {
            chat,
            body: Body::Text {
                text: text.into(),
                keyboard: (!keyboard.0.is_empty()).then_some(keyboard),
            },
        }
    }

    /// The messages Telegram gets: a text longer than Telegram's limit is
    /// split (the buttons go on the last part), an edit is cut to fit, a
    /// call goes as it is.
    pub fn into_parts(self) -> Vec<OutMessage> {
        let chat = self.chat;
        match self.body {
            Body::Call(_) => vec![self],
            Body::Text { text, keyboard } => {
                let mut parts = split_message(&text, MESSAGE_LIMIT);
                parts.retain(|part| !part.trim().is_empty());
                if parts.is_empty() {
                    // Telegram refuses an empty text; a handler never means one.
                    return Vec::new();
                }
                let last = parts.pop().unwrap_or_default();
                let mut out: Vec<OutMessage> = parts
                    .into_iter()
                    .map(|text| OutMessage::text(chat, text))
                    .collect();
                out.push(OutMessage {
                    chat,
                    body: Body::Text {
                        text: last,
                        keyboard,
                    },
                });
                out
            }
            Body::Edit {
                message_id,
                text,
                keyboard,
            } => {
                let text = if telegram_len(&text) > MESSAGE_LIMIT {
                    format!("{}…", cut_to_units(&text, MESSAGE_LIMIT - 1))
                } else {
                    text
                };
                vec![OutMessage {
                    chat,
                    body: Body::Edit {
                        message_id,
                        text,
                        keyboard,
                    },
                }]
            }
        }
    }
}

impl Body {
    /// Removes the files a call spooled (it went out, or never will).
    pub(crate) fn discard_files(&self) {
        if let Body::Call(call) = self {
            for upload in &call.files {
                let _ = std::fs::remove_file(&upload.path);
            }
        }
    }
}

/// What the sender learned about a chat that its kind may care about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatEvent {
    /// The chat refuses the bot for good (blocked, kicked, not found).
    Refused { chat: i64 },
    /// A group became a supergroup with a new id.
    Migrated { from: i64, to: i64 },
}

/// What the worker learns from each commit: the updates it handled and the
/// offset stored with the updates it received. The outbox knows nothing of
/// updates beyond this.
pub trait UpdateJournal: Send + Sync + 'static {
    /// After a commit: `handled` are recorded (their inbox rows are gone),
    /// and `offset` is stored when given.
    fn recorded(&self, handled: &[u32], offset: Option<u32>);
}

/// A bot's outbox figures, read by the status board.
#[derive(Debug, Default)]
pub struct OutboxStats {
    pending: AtomicU64,
    /// When the oldest queued message was queued, Unix ms; 0 for none.
    oldest_ms: AtomicU64,
    dropped: AtomicU64,
    rate_limited: AtomicU64,
    handled: AtomicU64,
    paced: AtomicU64,
}

/// A copy of [`OutboxStats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutboxFigures {
    /// Messages waiting.
    pub pending: u64,
    /// How long the oldest has waited.
    pub oldest_age: Option<Duration>,
    /// Messages dropped: past a cap, past `max_age`, or refused for good.
    pub dropped: u64,
    /// 429 answers Telegram gave the outbox.
    pub rate_limited: u64,
    /// Updates whose decision (and messages) are committed, since start.
    pub handled: u64,
    /// Messages that waited for the pacer before they went.
    pub paced: u64,
}

impl OutboxStats {
    pub fn figures(&self) -> OutboxFigures {
        let oldest = self.oldest_ms.load(Ordering::Relaxed);
        OutboxFigures {
            pending: self.pending.load(Ordering::Relaxed),
            oldest_age: (oldest > 0).then(|| {
                Duration::from_millis(u64::try_from(now_ms()).unwrap_or(0).saturating_sub(oldest))
            }),
            dropped: self.dropped.load(Ordering::Relaxed),
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            handled: self.handled.load(Ordering::Relaxed),
            paced: self.paced.load(Ordering::Relaxed),
        }
    }

    /// Messages handed to the sender (counted before it takes them, so a
    /// reader never sees an empty outbox while one is on its way).
    fn add_pending(&self, count: usize) {
        self.pending.fetch_add(count as u64, Ordering::Relaxed);
    }

    fn remove_pending(&self, count: usize) {
        let _ = self
            .pending
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |p| {
                Some(p.saturating_sub(count as u64))
            });
    }

    fn set_oldest(&self, oldest_ms: Option<i64>) {
        self.oldest_ms.store(
            oldest_ms.and_then(|ms| u64::try_from(ms).ok()).unwrap_or(0),
            Ordering::Relaxed,
        );
    }

    fn add_dropped(&self, count: u64) {
        self.dropped.fetch_add(count, Ordering::Relaxed);
    }

    fn add_handled(&self, count: usize) {
        self.handled.fetch_add(count as u64, Ordering::Relaxed);
    }

    fn add_rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_paced(&self) {
        self.paced.fetch_add(1, Ordering::Relaxed);
    }
}

/// How a message someone waits for went: Telegram's raw `result`, or its
/// refusal (or botvisor's, when it dropped the message).
pub type Answer = Result<Vec<u8>, Refusal>;

/// Who waits for which stored message, by its seq. Lives as long as the
/// bot's outbox, so an answer reaches its caller across a session's
/// restart (the next session sends the stored message).
#[derive(Default)]
pub(crate) struct Waiters(Mutex<std::collections::HashMap<i64, oneshot::Sender<Answer>>>);

impl Waiters {
    fn insert(&self, seq: i64, reply: oneshot::Sender<Answer>) {
        lock(&self.0).insert(seq, reply);
    }

    /// Tells whoever waits for message `seq` how it went.
    pub(crate) fn answer(&self, seq: i64, answer: Answer) {
        if let Some(reply) = lock(&self.0).remove(&seq) {
            let _ = reply.send(answer);
        }
    }

    fn forget(&self, seqs: &[i64]) {
        let mut waiting = lock(&self.0);
        for seq in seqs {
            waiting.remove(seq);
        }
    }

    /// Drops the waiters whose callers went away.
    fn tidy(&self) {
        lock(&self.0).retain(|_, reply| !reply.is_closed());
    }
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One message in the sender's queues.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    /// Its row in the store; `None` for an alert (not durable).
    pub seq: Option<i64>,
    pub message: OutMessage,
    /// When it was queued, Unix ms.
    pub created_ms: i64,
}

/// A bot's outbox. Lives as long as the bot's worker; each session that
/// holds the bot's lease starts its tasks with [`Outbox::start`].
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
}

struct Shared {
    settings: OutboxSettings,
    stats: Arc<OutboxStats>,
    volatile: Mutex<Volatile>,
    waiters: Arc<Waiters>,
}

#[derive(Default)]
struct Volatile {
    /// The running session's sender, when there is one.
    running: Option<mpsc::UnboundedSender<Vec<Item>>>,
    /// Alerts waiting for a session.
    parked: VecDeque<Item>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

/// Why the outbox could not take a message.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("the outbox is not running")]
    Stopped,
    /// The outbox stopped after it took the message and before it said
    /// whether it stored it: sending it again could send it twice.
    #[error("the outbox stopped before it said whether the message was stored")]
    Unknown,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Outbox {
    pub fn new(settings: OutboxSettings, stats: Arc<OutboxStats>) -> Outbox {
        Outbox {
            shared: Arc::new(Shared {
                settings,
                stats,
                volatile: Mutex::default(),
                waiters: Arc::default(),
            }),
        }
    }

    pub fn settings(&self) -> &OutboxSettings {
        &self.shared.settings
    }

    /// Queues a message that is not recorded in the store (an alert): sent
    /// when this instance runs the bot, lost if the process dies first.
    pub fn send_volatile(&self, message: OutMessage) {
        let created_ms = now_ms();
        let items: Vec<Item> = message
            .into_parts()
            .into_iter()
            .map(|message| Item {
                seq: None,
                message,
                created_ms,
            })
            .collect();
        let mut volatile = lock(&self.shared.volatile);
        self.shared.stats.add_pending(items.len());
        if let Some(running) = &volatile.running
            && running.send(items.clone()).is_ok()
        {
            return;
        }
        volatile.parked.extend(items);
        while volatile.parked.len() > MAX_PARKED {
            volatile.parked.pop_front();
            self.shared.stats.add_dropped(1);
            self.shared.stats.remove_pending(1);
            warn!("an alert was dropped: too many waiting for the bot that sends them");
        }
    }

    /// Starts the outbox for a session of bot `bot_id` that holds its lease:
    /// loads what is queued in the store and starts the committer and the
    /// sender.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn start(
        &self,
        bot: BotHandle,
        store: BotStore,
        journal: Arc<dyn UpdateJournal>,
        mark_handled: bool,
        fence: Option<crate::store::Fence>,
    ) -> Result<Session, StoreError> {
        let rows = store.store().outbox_rows(store.bot_id()).await?;
        let settings = self.shared.settings.clone();
        let stats = self.shared.stats.clone();
        let stats_for_start = stats.clone();
        let (jobs_tx, jobs_rx) = mpsc::unbounded_channel();
        let (items_tx, items_rx) = mpsc::unbounded_channel();
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (failed_tx, failed_rx) = watch::channel(None);
        let sender_stop = CancellationToken::new();
        let (loaded, bad) = committer::load(&rows);
        let waiters = self.shared.waiters.clone();
        waiters.tidy();
        let next_seq = rows.last().map_or(1, |row| row.seq.saturating_add(1));
        let committer = committer::Committer::new(
            store,
            journal,
            settings.clone(),
            stats.clone(),
            items_tx.clone(),
            failed_tx,
            // A failed commit stops the sender at once: what it sent from
            // then on could not be deleted and would go out again.
            sender_stop.clone(),
            next_seq,
            &loaded,
            bad,
            mark_handled,
            waiters.clone(),
        );
        let committer = tokio::spawn(committer.run(jobs_rx).in_current_span());
        let sender = sender::Sender::new(
            bot,
            &settings,
            stats,
            Sink {
                jobs: jobs_tx.clone(),
            },
            events_tx,
            waiters,
        )
        .fenced(fence);
        {
            let mut volatile = lock(&self.shared.volatile);
            let parked: Vec<Item> = volatile.parked.drain(..).collect();
            // What waits now: the stored messages and the alerts in memory.
            stats_for_start
                .pending
                .store((loaded.len() + parked.len()) as u64, Ordering::Relaxed);
            let _ = items_tx.send(loaded);
            if !parked.is_empty() {
                let _ = items_tx.send(parked);
            }
            volatile.running = Some(items_tx);
        }
        let sender = tokio::spawn(sender.run(items_rx, sender_stop.clone()).in_current_span());
        Ok(Session {
            outbox: self.clone(),
            sink: Sink { jobs: jobs_tx },
            events: Some(events_rx),
            failed: failed_rx,
            sender_stop,
            sender: Some(sender),
            committer: Some(committer),
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// The outbox of one running session.
pub struct Session {
    outbox: Outbox,
    sink: Sink,
    events: Option<mpsc::UnboundedReceiver<ChatEvent>>,
    failed: watch::Receiver<Option<String>>,
    sender_stop: CancellationToken,
    sender: Option<tokio::task::JoinHandle<sender::Leftovers>>,
    committer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Session {
    /// A session that ends without [`Session::stop`] (its worker panicked)
    /// leaves nothing running: the next session must be the only sender.
    fn drop(&mut self) {
        self.sender_stop.cancel();
        if let Some(sender) = &self.sender {
            sender.abort();
        }
        if let Some(committer) = &self.committer {
            committer.abort();
        }
    }
}

/// How long a stopping sender starts new sends (the replies of the last
/// handlers, when the pacer allows them at once).
const STOP_LAUNCH: Duration = Duration::from_millis(200);
/// How long a stopping sender waits for the sends in flight: a send cut
/// off later may have reached Telegram and is sent again after the restart.
const STOP_WAIT: Duration = Duration::from_millis(800);
/// How long a commit at a stop may take.
const FLUSH_WAIT: Duration = Duration::from_millis(500);

impl Session {
    /// Where the session's handlers and kind put what they send.
    pub fn sink(&self) -> Sink {
        self.sink.clone()
    }

    /// What the sender learned about chats (once; for the kind).
    pub fn take_events(&mut self) -> Option<mpsc::UnboundedReceiver<ChatEvent>> {
        self.events.take()
    }

    /// Resolves when the committer could not write to the store; the
    /// reason. The session must end then.
    pub async fn failed(&mut self) -> String {
        loop {
            if let Some(reason) = self.failed.borrow_and_update().clone() {
                return reason;
            }
            if self.failed.changed().await.is_err() {
                return "the outbox's committer stopped".to_owned();
            }
        }
    }

    /// Stops the session's outbox: what was decided is committed, the
    /// messages that may go at once go (briefly: [`STOP_WAIT`]), the sends
    /// in flight finish, and their rows are deleted. What is still queued
    /// stays in the store for the next session.
    pub async fn stop(mut self) {
        let (ack, done) = oneshot::channel();
        if self.sink.jobs.send(committer::Job::Flush(ack)).is_ok() {
            let _ = tokio::time::timeout(FLUSH_WAIT, done).await;
        }
        self.sender_stop.cancel();
        let leftovers = match self.sender.take() {
            Some(sender) => match tokio::time::timeout(STOP_WAIT + FLUSH_WAIT, sender).await {
                Ok(Ok(leftovers)) => leftovers,
                _ => sender::Leftovers::default(),
            },
            None => sender::Leftovers::default(),
        };
        self.park(leftovers);
        let (ack, done) = oneshot::channel();
        if self.sink.jobs.send(committer::Job::Close(ack)).is_ok() {
            let _ = tokio::time::timeout(FLUSH_WAIT, done).await;
        }
    }

    /// Stops at once, sending and writing nothing more: the lease is lost
    /// and another instance may own the bot already. What was queued is
    /// that instance's to send.
    pub fn abandon(self) {
        // Drop cancels the sender and aborts both tasks.
        lock(&self.outbox.shared.volatile).running = None;
    }

    /// Keeps the alerts not sent for the next session; the figures show
    /// what still waits (in the store and in memory).
    fn park(&self, leftovers: sender::Leftovers) {
        let stats = &self.outbox.shared.stats;
        let mut volatile = lock(&self.outbox.shared.volatile);
        volatile.running = None;
        for item in leftovers.volatile.into_iter().rev() {
            volatile.parked.push_front(item);
        }
        volatile.parked.truncate(MAX_PARKED);
        let parked = volatile.parked.len();
        stats
            .pending
            .store((parked + leftovers.stored) as u64, Ordering::Relaxed);
        stats.set_oldest(
            volatile
                .parked
                .iter()
                .map(|item| item.created_ms)
                .chain(leftovers.oldest_stored)
                .min(),
        );
    }
}

/// Where handlers and kinds put what they send; cheap to clone.
#[derive(Clone)]
pub struct Sink {
    jobs: mpsc::UnboundedSender<committer::Job>,
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").finish_non_exhaustive()
    }
}

impl Sink {
    /// Update `update_id` is handled and decided `messages`: both are
    /// committed together, in the order handlers finish.
    pub fn handled(&self, update_id: u32, messages: Vec<OutMessage>) {
        let _ = self.jobs.send(committer::Job::Handled {
            update_id,
            messages,
        });
    }

    /// Stores `updates` in the inbox with `offset` (when the offset moves),
    /// in the committer's next transaction: the job is queued now, before
    /// any handler's decision about them; the returned future resolves once
    /// it is committed.
    pub fn receive(
        &self,
        updates: Vec<InboxRow>,
        offset: Option<u32>,
    ) -> impl Future<Output = Result<(), OutboxError>> + use<> {
        let (ack, done) = oneshot::channel();
        let sent = self.jobs.send(committer::Job::Received {
            updates,
            offset,
            ack,
        });
        async move {
            sent.map_err(|_| OutboxError::Stopped)?;
            acked(done).await
        }
    }

    /// Queues `messages` durably; returns once they are committed.
    ///
    /// # Errors
    /// When the store failed or the session has ended.
    pub async fn enqueue(&self, messages: Vec<OutMessage>) -> Result<(), OutboxError> {
        self.enqueue_finishing(messages, None).await
    }

    /// Queues a broadcast of announcement `announcement` and marks it no
    /// longer pending, in one transaction.
    ///
    /// # Errors
    /// When the store failed or the session has ended.
    pub async fn broadcast(
        &self,
        announcement: String,
        messages: Vec<OutMessage>,
    ) -> Result<(), OutboxError> {
        self.enqueue_finishing(messages, Some(announcement)).await
    }

    async fn enqueue_finishing(
        &self,
        messages: Vec<OutMessage>,
        finishes: Option<String>,
    ) -> Result<(), OutboxError> {
        let (ack, done) = oneshot::channel();
        self.jobs
            .send(committer::Job::Enqueue {
                messages,
                finishes,
                reply: None,
                ack,
            })
            .map_err(|_| OutboxError::Stopped)?;
        acked(done).await
    }

    /// Queues `message` durably and, once it is committed, returns what
    /// resolves with Telegram's answer when it has gone out (or botvisor's
    /// refusal when it was dropped: past the chat's cap, past `max_age`).
    /// The message goes out once whether or not anyone still waits.
    ///
    /// # Errors
    /// [`OutboxError::Stopped`] when the session had ended (nothing was
    /// queued), a store error (nothing was), or [`OutboxError::Unknown`]
    /// when the session ended while the message was being committed.
    pub async fn call(
        &self,
        message: OutMessage,
    ) -> Result<oneshot::Receiver<Answer>, OutboxError> {
        let (reply, answer) = oneshot::channel();
        let (ack, done) = oneshot::channel();
        self.jobs
            .send(committer::Job::Enqueue {
                messages: vec![message],
                finishes: None,
                reply: Some(reply),
                ack,
            })
            .map_err(|_| OutboxError::Stopped)?;
        match done.await {
            Ok(Ok(())) => Ok(answer),
            Ok(Err(reason)) => Err(OutboxError::Store(StoreError::Query(reason))),
            Err(_) => Err(OutboxError::Unknown),
        }
    }

    pub(crate) fn send_job(&self, job: committer::Job) {
        let _ = self.jobs.send(job);
    }
}

/// What the committer said about a job.
async fn acked(done: oneshot::Receiver<Result<(), String>>) -> Result<(), OutboxError> {
    match done.await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(OutboxError::Store(StoreError::Query(reason))),
        Err(_) => Err(OutboxError::Stopped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_texts_become_parts_with_the_buttons_on_the_last() {
        let keyboard = Keyboard(vec![vec![("Evet".into(), "faq:yes".into())]]);
        let long = "satır\n".repeat(1500);
        let parts = OutMessage::with_keyboard(5, long, keyboard.clone()).into_parts();
        assert_eq!(parts.len(), 3);
        for (i, part) in parts.iter().enumerate() {
            let Body::Text { text, keyboard: k } = &part.body else {
                panic!("a text");
            };
            assert!(telegram_len(text) <= MESSAGE_LIMIT);
            assert_eq!(k.is_some(), i == 2, "buttons only on the last part");
        }
        assert!(OutMessage::text(5, "  ").into_parts().is_empty());
        let edit = OutMessage {
            chat: 5,
            body: Body::Edit {
                message_id: 3,
                text: "x".repeat(5000),
                keyboard: None,
            },
        };
        let parts = edit.into_parts();
        let Body::Edit { text, .. } = &parts[0].body else {
            panic!("an edit");
        };
        assert_eq!(telegram_len(text), MESSAGE_LIMIT);
    }

    #[test]
    fn bodies_round_trip_through_the_store_format() {
        let body = Body::Text {
            text: "merhaba".into(),
            keyboard: Some(Keyboard(vec![vec![("Hayır".into(), "faq:no".into())]])),
        };
        let json = serde_json::to_string(&body).expect("serialise");
        assert_eq!(serde_json::from_str::<Body>(&json).expect("parse"), body);
    }
}
