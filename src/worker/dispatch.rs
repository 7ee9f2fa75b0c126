//! Lanes: each chat's updates handled in order, chats side by side, at most
//! [`MAX_CONCURRENT_HANDLERS`] handlers of a bot at once, panics caught.
//!
//! The poll loop hands every new update to [`Dispatcher::dispatch`] and goes
//! back to polling at once; a lane (a task per chat with work) runs its
//! chat's handlers one after another and puts each one's decision (the
//! update id and the messages) into the outbox's sink, which commits them
//! together. A handler slow on something other than sending (a slow
//! `getChatMember`) holds up its own chat only.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use teloxide::types::{Update, UpdateKind};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, warn};

use crate::bots::{Context, Kind};
use crate::outbox::Sink;

/// Handlers of one bot that may run at once (one per chat at most).
pub const MAX_CONCURRENT_HANDLERS: usize = 32;
/// Updates waiting in one lane at most: a chat whose handler is stuck, or a
/// user who floods, cannot fill the bot's window of open updates. Newer
/// updates past it are dropped (taken out of the inbox unhandled), counted,
/// and summed up in one line once the lane has room again.
pub const MAX_PER_LANE: usize = 100;
/// The shortest time between two lines about one lane's drops.
const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

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

/// What became of the updates a stop found unfinished.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Unfinished {
    /// Still running at the stop deadline.
    pub abandoned: Vec<u32>,
    /// Not started because the stop came first.
    pub not_started: Vec<u32>,
}

/// Runs a kind's handlers over the updates of one session.
pub struct Dispatcher {
    shared: Arc<Shared>,
    tasks: JoinSet<()>,
}

struct Shared {
    kind: Arc<Kind>,
    ctx: Arc<Context>,
    sink: Sink,
    limit: Semaphore,
    stop: CancellationToken,
    /// Queued updates of every lane that has a task.
    lanes: Mutex<HashMap<Lane, VecDeque<Update>>>,
    /// Updates dropped per lane since its last line.
    dropped: Mutex<HashMap<Lane, Drops>>,
    running: Mutex<BTreeSet<u32>>,
    not_started: Mutex<Vec<u32>>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Dispatcher {
    /// A dispatcher whose lanes stop taking updates when `stop` is cancelled.
    pub fn new(
        kind: Arc<Kind>,
        ctx: Arc<Context>,
        sink: Sink,
        stop: CancellationToken,
    ) -> Dispatcher {
        Dispatcher {
            shared: Arc::new(Shared {
                kind,
                ctx,
                sink,
                limit: Semaphore::new(MAX_CONCURRENT_HANDLERS),
                stop,
                lanes: Mutex::default(),
                dropped: Mutex::default(),
                running: Mutex::default(),
                not_started: Mutex::default(),
            }),
            tasks: JoinSet::new(),
        }
    }

    /// Queues a new `update` on its lane, starting the lane's task if it
    /// has none; past [`MAX_PER_LANE`] waiting it is dropped.
    pub fn dispatch(&mut self, update: Update) {
        self.queue(update, true);
    }

    /// Queues an update a former session received (it passed the cap
    /// then): never dropped.
    pub fn resume(&mut self, update: Update) {
        self.queue(update, false);
    }

    fn queue(&mut self, update: Update, capped: bool) {
        // Reap finished lanes so the set stays as large as the busy chats.
        while let Some(joined) = self.tasks.try_join_next() {
            if let Err(err) = joined
                && err.is_panic()
            {
                error!("a handler lane failed");
            }
        }
        let lane = lane_of(&update);
        {
            let mut lanes = lock(&self.shared.lanes);
            if let Some(queue) = lanes.get_mut(&lane) {
                if capped && queue.len() >= MAX_PER_LANE {
                    lock(&self.shared.dropped).entry(lane).or_default().count += 1;
                    self.shared.sink.handled(update.id.0, Vec::new());
                    return;
                }
                queue.push_back(update);
                return;
            }
            lanes.insert(lane, VecDeque::from([update]));
        }
        let shared = self.shared.clone();
        self.tasks.spawn(run_lane(lane, shared).in_current_span());
    }

    /// Stops: no update starts any more; handlers running get `grace` and
    /// are then abandoned. What was not handled, for the log and the offset.
    pub async fn finish(mut self, grace: Duration) -> Unfinished {
        self.shared.stop.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        let mut abandoned = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.tasks.join_next()).await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => {
                    abandoned = lock(&self.shared.running).iter().copied().collect();
                    for update_id in &abandoned {
                        error!(
                            update_id,
                            "abandoned a handler still running at the stop deadline"
                        );
                    }
                    self.tasks.abort_all();
                    while self.tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
        for (lane, drops) in lock(&self.shared.dropped).drain() {
            if drops.count > 0 {
                log_dropped(lane, drops.count);
            }
        }
        let mut not_started = std::mem::take(&mut *lock(&self.shared.not_started));
        for queue in lock(&self.shared.lanes).drain().map(|(_, q)| q) {
            not_started.extend(queue.iter().map(|u| u.id.0));
        }
        not_started.retain(|id| !abandoned.contains(id));
        not_started.sort_unstable();
        if !not_started.is_empty() {
            warn!(
                count = not_started.len(),
                "stopping: updates not started stay received and are handled after the restart"
            );
        }
        Unfinished {
            abandoned,
            not_started,
        }
    }

    /// Handlers running now.
    pub fn running(&self) -> usize {
        lock(&self.shared.running).len()
    }
}

/// Handles one chat's updates in order until its queue is empty.
async fn run_lane(lane: Lane, shared: Arc<Shared>) {
    loop {
        let update = {
            let mut lanes = lock(&shared.lanes);
            match lanes.get_mut(&lane).and_then(VecDeque::pop_front) {
                Some(update) => update,
                None => {
                    lanes.remove(&lane);
                    return;
                }
            }
        };
        note_drops(&shared, lane);
        let id = update.id.0;
        let permit = tokio::select! {
            biased;
            () = shared.stop.cancelled() => None,
            permit = shared.limit.acquire() => permit.ok(),
        };
        let Some(_permit) = permit else {
            lock(&shared.not_started).push(id);
            return;
        };
        lock(&shared.running).insert(id);
        debug!(update_id = id, "handling an update");
        let messages = match AssertUnwindSafe(shared.kind.handle(&shared.ctx, &update))
            .catch_unwind()
            .await
        {
            Ok(messages) => messages,
            Err(panic) => {
                // Counts as handled: a poison update must not come back for ever.
                error!(update_id = id, panic = %panic_message(&panic), "a handler panicked; going on with the next update");
                Vec::new()
            }
        };
        debug!(
            update_id = id,
            messages = messages.len(),
            "handled an update"
        );
        shared.sink.handled(id, messages);
        shared.ctx.status.handled(1);
        lock(&shared.running).remove(&id);
    }
}

/// Updates of one lane dropped while it was full.
#[derive(Default)]
struct Drops {
    count: u64,
    logged: Option<Instant>,
}

/// The lane has room again: one line for what it dropped, at most once a
/// minute per lane (a flood that goes on adds to the next line).
fn note_drops(shared: &Shared, lane: Lane) {
    let mut dropped = lock(&shared.dropped);
    let Some(drops) = dropped.get_mut(&lane) else {
        return;
    };
    let now = Instant::now();
    let due = drops
        .logged
        .is_none_or(|at| now.duration_since(at) >= DROP_LOG_EVERY);
    if drops.count > 0 && due {
        log_dropped(lane, drops.count);
        drops.count = 0;
        drops.logged = Some(now);
    }
    dropped.retain(|_, d| {
        d.count > 0
            || d.logged
                .is_some_and(|at| now.duration_since(at) < DROP_LOG_EVERY)
    });
}

/// One line for the updates of `lane` dropped while it was full.
fn log_dropped(lane: Lane, count: u64) {
    let chat = match lane {
        Lane::Chat(id) => format!("chat {id}"),
        Lane::User(id) => format!("user {id}"),
        Lane::Other => "updates without a chat".to_owned(),
    };
    warn!(
        dropped = count,
        max_per_chat = MAX_PER_LANE,
        "dropped {count} update(s) from {chat} unhandled: {MAX_PER_LANE} were already waiting for its handler"
    );
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
