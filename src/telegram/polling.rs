//! botvisor's own long-polling loop: `getUpdates` with a timeout, each batch
//! handed to the bot kind with per-chat order and bounded concurrency, and an
//! offset that only moves past an update once it has been handled.
//!
//! Not teloxide's dispatcher, which can miss a shutdown, dies with a handler
//! panic and confirms updates before they are handled (see ARCHITECTURE.md).
//!
//! A batch is finished before the next `getUpdates` is sent: the offset that
//! request carries confirms every update below it, so it must not be sent
//! while one of them is still running. A slow handler therefore delays its
//! own bot's next batch, never another bot.

use std::collections::{BTreeSet, HashMap};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use teloxide::RequestError;
use teloxide::payloads::GetUpdatesSetters;
use teloxide::requests::Requester;
use teloxide::types::{AllowedUpdate, Update, UpdateKind};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, warn};

use super::BotHandle;
use crate::bots::{Context, Kind};
use crate::store::Store;

/// At most this many polls per second while the server answers empty
/// batches much faster than the long-poll timeout.
const MIN_FAST_POLL_INTERVAL: Duration = Duration::from_millis(334);
/// Handlers of one bot that may run at once (one per chat at most).
pub const MAX_CONCURRENT_HANDLERS: usize = 32;

/// One bot's position in its update stream.
pub struct Poller {
    bot: BotHandle,
    timeout: Duration,
    allowed_updates: Vec<AllowedUpdate>,
    /// The next update id to ask for; every update below it is handled.
    offset: Option<i32>,
    /// The offset the last request carried: what Telegram knows is handled.
    sent_offset: Option<i32>,
    /// When the last poll started, if it came back empty much too early.
    last_fast_empty: Option<Instant>,
}

impl Poller {
    pub fn new(bot: BotHandle, timeout: Duration, allowed_updates: Vec<AllowedUpdate>) -> Poller {
        Poller {
            bot,
            timeout,
            allowed_updates,
            offset: None,
            sent_offset: None,
            last_fast_empty: None,
        }
    }

    /// Long-polls once, confirming every update handled so far.
    ///
    /// Cancel-safe: dropping the future loses nothing, since the offset
    /// only moves in [`Poller::advance`]. When the previous poll came back
    /// empty long before its timeout (a misbehaving server or proxy), it
    /// first waits so that such polls run at most about three times a
    /// second.
    ///
    /// # Errors
    /// The request's error, to be sorted with [`super::classify`].
    pub async fn poll(&mut self) -> Result<Vec<Update>, RequestError> {
        if let Some(last) = self.last_fast_empty {
            tokio::time::sleep_until((last + MIN_FAST_POLL_INTERVAL).into()).await;
        }
        let timeout = u32::try_from(self.timeout.as_secs()).unwrap_or(50);
        let mut request = self
            .bot
            .api()
            .get_updates()
            .timeout(timeout)
            .allowed_updates(self.allowed_updates.clone());
        if let Some(offset) = self.offset {
            request = request.offset(offset);
        }
        let started = Instant::now();
        let sent = self.offset;
        let updates = request.await?;
        self.sent_offset = sent;
        let fast = started.elapsed() < self.timeout / 2;
        self.last_fast_empty = (updates.is_empty() && fast).then_some(started);
        Ok(updates)
    }

    /// Moves the offset to `next`: every update below it has been handled.
    /// It may move backwards: after a week without updates Telegram starts
    /// its update ids again at a random, possibly lower, number, and an
    /// offset above them would make it deliver the same update for ever.
    pub fn advance(&mut self, next: u32) {
        self.offset = Some(i32::try_from(next).unwrap_or(i32::MAX));
    }

    /// The next update id to ask for, once known.
    pub fn next_offset(&self) -> Option<u32> {
        self.offset.and_then(|offset| u32::try_from(offset).ok())
    }

    /// The offset to confirm when the last request did not carry it.
    pub fn unconfirmed(&self) -> Option<i32> {
        self.offset
            .filter(|offset| Some(*offset) != self.sent_offset)
    }

    /// Tells Telegram the updates below the offset are handled, with one
    /// short `getUpdates` (`limit=1`, `timeout=0`), as a clean stop does.
    ///
    /// # Errors
    /// The request's error.
    pub async fn confirm(&mut self) -> Result<(), RequestError> {
        let Some(offset) = self.unconfirmed() else {
            return Ok(());
        };
        self.bot
            .api()
            .get_updates()
            .offset(offset)
            .limit(1)
            .timeout(0)
            .allowed_updates(self.allowed_updates.clone())
            .await?;
        self.sent_offset = Some(offset);
        Ok(())
    }
}

/// What became of one batch.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Updates whose handler ran to the end (or panicked, which counts as
    /// handled: a poison update must not come back for ever).
    pub handled: u64,
    /// The ids of the updates handled (each recorded in the journal, when
    /// there is one).
    pub handled_ids: Vec<u32>,
    /// The lowest update not handled (abandoned or not started), if any.
    pub lowest_open: Option<u32>,
    /// Set when recording a handled update in the store failed.
    pub store_error: Option<String>,
    /// Updates whose handler was still running at the stop deadline.
    pub abandoned: Vec<u32>,
    /// Updates not started because the stop came first; Telegram will
    /// deliver them again.
    pub not_started: Vec<u32>,
}

/// Runs a bot kind's handler over batches of updates.
pub struct Dispatcher {
    kind: Arc<Kind>,
    ctx: Arc<Context>,
    limit: Arc<Semaphore>,
    journal: Option<Arc<Journal>>,
}

/// Where handled updates are recorded as they finish, so that after a crash
/// none is handled twice.
pub struct Journal {
    pub store: Store,
    /// The bot's Telegram id, its key in the store.
    pub bot_id: String,
}

/// The lane an update belongs to: updates of one chat are handled in order.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum Lane {
    Chat(i64),
    User(u64),
    Other,
}

fn lane_of(update: &Update) -> Lane {
    if let Some(chat) = update.chat() {
        return Lane::Chat(chat.id.0);
    }
    match &update.kind {
        UpdateKind::InlineQuery(q) => Lane::User(q.from.id.0),
        UpdateKind::ChosenInlineResult(r) => Lane::User(r.from.id.0),
        UpdateKind::CallbackQuery(q) => Lane::User(q.from.id.0),
        _ => Lane::Other,
    }
}

impl Dispatcher {
    pub fn new(kind: Arc<Kind>, ctx: Arc<Context>, journal: Option<Journal>) -> Dispatcher {
        Dispatcher {
            kind,
            ctx,
            limit: Arc::new(Semaphore::new(MAX_CONCURRENT_HANDLERS)),
            journal: journal.map(Arc::new),
        }
    }

    /// Handles a batch: one task per chat, in order within the chat, at most
    /// [`MAX_CONCURRENT_HANDLERS`] at once. When `stop` is cancelled no new
    /// update starts; the running ones get `grace` to finish and are then
    /// abandoned.
    pub async fn run_batch(
        &self,
        updates: Vec<Update>,
        stop: &CancellationToken,
        grace: Duration,
    ) -> BatchOutcome {
        if updates.is_empty() {
            return BatchOutcome::default();
        }
        let mut lanes: Vec<Vec<Update>> = Vec::new();
        let mut index: HashMap<Lane, usize> = HashMap::new();
        for update in updates {
            let lane = lane_of(&update);
            let i = *index.entry(lane).or_insert_with(|| {
                lanes.push(Vec::new());
                lanes.len() - 1
            });
            lanes[i].push(update);
        }

        let running: Arc<Mutex<BTreeSet<u32>>> = Arc::default();
        let not_started: Arc<Mutex<Vec<u32>>> = Arc::default();
        let finished: Arc<Mutex<Finished>> = Arc::default();
        let mut tasks = JoinSet::new();
        for lane in lanes {
            let lane_task = run_lane(
                lane,
                LaneShared {
                    kind: self.kind.clone(),
                    ctx: self.ctx.clone(),
                    limit: self.limit.clone(),
                    journal: self.journal.clone(),
                    stop: stop.clone(),
                    running: running.clone(),
                    not_started: not_started.clone(),
                    finished: finished.clone(),
                },
            );
            tasks.spawn(lane_task.in_current_span());
        }

        let mut deadline: Option<tokio::time::Instant> = None;
        let mut abandoned = Vec::new();
        loop {
            let sleep_until = deadline
                .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400));
            tokio::select! {
                joined = tasks.join_next() => match joined {
                    Some(Ok(())) => {}
                    Some(Err(err)) => error!(error = %err, "a handler lane failed"),
                    None => break,
                },
                () = stop.cancelled(), if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + grace);
                }
                () = tokio::time::sleep_until(sleep_until), if deadline.is_some() => {
                    abandoned = lock(&running).iter().copied().collect();
                    for update_id in &abandoned {
                        error!(update_id, "abandoned a handler still running at the stop deadline");
                    }
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }

        let not_started = std::mem::take(&mut *lock(&not_started));
        let lowest_open = not_started.iter().chain(abandoned.iter()).min().copied();
        if !not_started.is_empty() {
            warn!(
                count = not_started.len(),
                "stopping: updates not started will be delivered again"
            );
        }
        let finished = std::mem::take(&mut *lock(&finished));
        BatchOutcome {
            handled: finished.ids.len() as u64,
            handled_ids: finished.ids,
            lowest_open,
            store_error: finished.store_error,
            abandoned,
            not_started,
        }
    }
}

/// What the lanes of a batch finished.
#[derive(Default)]
struct Finished {
    ids: Vec<u32>,
    store_error: Option<String>,
}

/// What every lane of a batch shares.
struct LaneShared {
    kind: Arc<Kind>,
    ctx: Arc<Context>,
    limit: Arc<Semaphore>,
    journal: Option<Arc<Journal>>,
    stop: CancellationToken,
    running: Arc<Mutex<BTreeSet<u32>>>,
    not_started: Arc<Mutex<Vec<u32>>>,
    finished: Arc<Mutex<Finished>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Handles one chat's updates in order, recording each in the journal as
/// soon as it is handled.
async fn run_lane(lane: Vec<Update>, shared: LaneShared) {
    let mut updates = lane.into_iter();
    while let Some(update) = updates.next() {
        let id = update.id.0;
        let permit = tokio::select! {
            biased;
            () = shared.stop.cancelled() => None,
            permit = shared.limit.acquire() => permit.ok(),
        };
        let Some(_permit) = permit else {
            let mut not_started = lock(&shared.not_started);
            not_started.push(id);
            not_started.extend(updates.map(|u| u.id.0));
            return;
        };
        lock(&shared.running).insert(id);
        debug!(update_id = id, "handling an update");
        let result = AssertUnwindSafe(shared.kind.handle(&shared.ctx, &update))
            .catch_unwind()
            .await;
        if let Err(panic) = result {
            error!(update_id = id, panic = %panic_message(&panic), "a handler panicked; going on with the next update");
        }
        let recorded = match &shared.journal {
            Some(journal) => journal.store.mark_handled(&journal.bot_id, id).await.err(),
            None => None,
        };
        lock(&shared.running).remove(&id);
        debug!(
            update_id = id,
            recorded = recorded.is_none(),
            "handled an update"
        );
        let mut finished = lock(&shared.finished);
        finished.ids.push(id);
        if let Some(err) = recorded {
            finished.store_error.get_or_insert(err.to_string());
        }
    }
}

/// The text of a panic payload.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
