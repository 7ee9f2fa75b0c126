//! The outbox's sender: one queue per chat, one send in flight per chat,
//! each chat going as soon as the pacer allows, never behind another chat.
//!
//! A single task owns every queue, so there are no locks: it takes new
//! items from the committer, starts the sends the pacer allows (each a task
//! of its own, at most [`MAX_IN_FLIGHT`] at once), and settles each answer.
//! Chats waiting for their turn sit in `ready`, ordered by when they may go
//! and then by their head message's place in the bot's order.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use super::committer::Job;
use super::pacer::{Limits, Pacer};
use super::{Answer, Body, ChatEvent, Item, OutboxStats, Sink, Waiters, now_ms};
use crate::config::OutboxSettings;
use crate::status::short;
use crate::telegram::api::{CallError, Refusal};
use crate::telegram::{BotHandle, ErrorClass, send};

/// Sends of one bot in flight at once (one per chat at most).
pub const MAX_IN_FLIGHT: usize = 32;
/// The first wait after a failed send; it doubles up to [`LONGEST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(60);
/// Two chats answered 429 within this long: the limit is the bot's.
const GLOBAL_429_WINDOW: Duration = Duration::from_secs(1);
/// A message that starts this long after it was queued, with no failed
/// try behind it, waited for the pacer.
const PACED_AFTER_MS: i64 = 100;
/// How often the pacer forgets idle chats.
const TIDY_EVERY: Duration = Duration::from_secs(30);

struct ChatQueue {
    items: VecDeque<Item>,
    /// A send to this chat is in flight.
    busy: bool,
    /// Failed sends in a row (not 429s).
    failures: u32,
    /// Not before this (backoff after a failure).
    retry_at: Option<Instant>,
    /// Its key in `ready`, while it is there.
    ready_key: Option<(Instant, u64)>,
}

/// What a finished send reports: Telegram's raw `result`, or why not.
struct Done {
    chat: i64,
    result: Result<Vec<u8>, CallError>,
}

/// What a stopped sender leaves: the alerts not sent (for the next
/// session), and how many stored messages still wait (in the store).
#[derive(Debug, Default)]
pub(crate) struct Leftovers {
    pub volatile: Vec<Item>,
    pub stored: usize,
    pub oldest_stored: Option<i64>,
}

pub(crate) struct Sender {
    bot: BotHandle,
    /// Who waits for which stored message's answer.
    waiters: Arc<Waiters>,
    pacer: Pacer,
    max_age: Duration,
    stats: Arc<OutboxStats>,
    committer: Sink,
    events: mpsc::UnboundedSender<ChatEvent>,
    chats: HashMap<i64, ChatQueue>,
    ready: BTreeSet<(Instant, u64, i64)>,
    in_flight: JoinSet<Done>,
    /// The chat of each send in flight, for a send task that panicked.
    in_flight_chats: HashMap<tokio::task::Id, i64>,
    /// Queued items by when they were queued (ms → count), for the oldest.
    ages: BTreeMap<i64, u32>,
    /// Order of items without a stored seq (alerts) among the others.
    next_order: u64,
    /// The last 429 for a chat: (when, which chat).
    last_429: Option<(Instant, i64)>,
    last_tidy: Instant,
    /// The lease checked before each send, on a fleet store.
    fence: Option<crate::store::Fence>,
    /// A send was refused for a lost lease (said once).
    fenced: bool,
}

/// An item's place in the bot's order.
fn order_of(item: &Item, fallback: u64) -> u64 {
    item.seq
        .and_then(|seq| u64::try_from(seq).ok())
        .map_or(fallback, |seq| seq << 1)
}

impl Sender {
    pub(crate) fn new(
        bot: BotHandle,
        settings: &OutboxSettings,
        stats: Arc<OutboxStats>,
        committer: Sink,
        events: mpsc::UnboundedSender<ChatEvent>,
        waiters: Arc<Waiters>,
    ) -> Sender {
        Sender {
            bot,
            waiters,
            pacer: Pacer::new(Limits::from_settings(settings)),
            max_age: settings.max_age,
            stats,
            committer,
            events,
            chats: HashMap::new(),
            ready: BTreeSet::new(),
            in_flight: JoinSet::new(),
            in_flight_chats: HashMap::new(),
            ages: BTreeMap::new(),
            next_order: 1,
            last_429: None,
            last_tidy: Instant::now(),
            fence: None,
            fenced: false,
        }
    }

    /// Checks `fence` before each send.
    pub(crate) fn fenced(mut self, fence: Option<crate::store::Fence>) -> Sender {
        self.fence = fence;
        self
    }

    /// Sends until `stop`; then briefly sends what may go at once and
    /// waits for the sends in flight. Stored messages not sent stay in the
    /// store.
    pub(crate) async fn run(
        mut self,
        mut items: mpsc::UnboundedReceiver<Vec<Item>>,
        stop: CancellationToken,
    ) -> Leftovers {
        loop {
            let now = Instant::now();
            let wake = self.launch(now);
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                Some(joined) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                    self.joined(joined);
                }
                received = items.recv() => match received {
                    Some(batch) => self.push(batch),
                    None => break,
                },
                () = sleep_until(wake), if wake.is_some() => {}
            }
        }
        // The replies of the handlers that finished during the stop go if
        // the pacer allows them at once (new sends start only for
        // STOP_LAUNCH), and the sends in flight finish, so that what went
        // out is deleted from the store before the next session reads it.
        // A send still in flight at STOP_WAIT is cut off: it may have
        // reached Telegram, and is sent again after the restart.
        while let Ok(batch) = items.try_recv() {
            self.push(batch);
        }
        let started = Instant::now();
        let deadline = started + super::STOP_WAIT;
        loop {
            let now = Instant::now();
            let wake = if now < started + super::STOP_LAUNCH {
                self.launch(now)
            } else {
                None
            };
            let more = wake.is_some_and(|at| at <= now);
            if now >= deadline || (self.in_flight.is_empty() && !more) {
                break;
            }
            tokio::select! {
                Some(joined) = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                    self.joined(joined);
                }
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.in_flight.abort_all();
        let mut leftovers = Leftovers::default();
        for item in self.chats.into_values().flat_map(|queue| queue.items) {
            match item.seq {
                Some(_) => {
                    leftovers.stored += 1;
                    leftovers.oldest_stored = Some(
                        leftovers
                            .oldest_stored
                            .map_or(item.created_ms, |o| o.min(item.created_ms)),
                    );
                }
                None => leftovers.volatile.push(item),
            }
        }
        leftovers
    }

    /// A send task ended: settled, or (if it panicked) treated as a failed
    /// send, so its chat is never left busy.
    fn joined(&mut self, joined: Result<(tokio::task::Id, Done), tokio::task::JoinError>) {
        match joined {
            Ok((id, done)) => {
                self.in_flight_chats.remove(&id);
                self.settle(done);
            }
            Err(err) => {
                if let Some(chat) = self.in_flight_chats.remove(&err.id()) {
                    self.settle(Done {
                        chat,
                        result: Err(CallError::transient("the send task failed")),
                    });
                }
            }
        }
    }

    /// Takes new items into their chats' queues.
    fn push(&mut self, batch: Vec<Item>) {
        let now = Instant::now();
        let mut touched = Vec::new();
        for item in batch {
            let chat = item.message.chat;
            *self.ages.entry(item.created_ms).or_default() += 1;
            let queue = self.chats.entry(chat).or_insert_with(|| ChatQueue {
                items: VecDeque::new(),
                busy: false,
                failures: 0,
                retry_at: None,
                ready_key: None,
            });
            queue.items.push_back(item);
            touched.push(chat);
        }
        for chat in touched {
            self.schedule(chat, now);
        }
        self.publish();
    }

    /// Puts `chat` in `ready` at the time its head may go, unless it is
    /// there already, busy or empty.
    fn schedule(&mut self, chat: i64, now: Instant) {
        let Some(queue) = self.chats.get_mut(&chat) else {
            return;
        };
        if queue.busy || queue.ready_key.is_some() {
            return;
        }
        let Some(head) = queue.items.front() else {
            self.chats.remove(&chat);
            return;
        };
        let order = order_of(head, self.next_order);
        if head.seq.is_none() {
            self.next_order = self.next_order.saturating_add(2);
        }
        let at = self
            .pacer
            .chat_next(chat, now)
            .max(queue.retry_at.unwrap_or(now));
        queue.ready_key = Some((at, order));
        self.ready.insert((at, order, chat));
    }

    /// Starts every send that may go at `now`; when to look again.
    fn launch(&mut self, now: Instant) -> Option<Instant> {
        if now.duration_since(self.last_tidy) >= TIDY_EVERY {
            self.pacer.forget_idle(now);
            self.last_tidy = now;
        }
        while self.in_flight.len() < MAX_IN_FLIGHT {
            let &(at, order, chat) = self.ready.first()?;
            if at > now {
                return Some(at);
            }
            if let Some(fence) = &self.fence
                && !fence.is_valid()
            {
                // Another instance may hold the bot now: nothing more is
                // sent; the message stays stored for the holder.
                if !self.fenced {
                    self.fenced = true;
                    fence.refused();
                    warn!(
                        generation = fence.generation(),
                        "lost the lease on this bot: sending nothing more for it"
                    );
                }
                // Looked at again: a renewal may bring the lease back.
                return Some(now + Duration::from_secs(1));
            }

            let global = self.pacer.global_next(now);
            if global > now {
                return Some(global);
            }
            self.ready.pop_first();
            if let Some(queue) = self.chats.get_mut(&chat) {
                queue.ready_key = None;
            }
            // The chat's own limits may have moved since it was scheduled.
            let chat_at = self.pacer.chat_next(chat, now);
            if chat_at > now {
                if let Some(queue) = self.chats.get_mut(&chat) {
                    queue.ready_key = Some((chat_at, order));
                }
                self.ready.insert((chat_at, order, chat));
                continue;
            }
            if self.expire(chat) {
                self.schedule(chat, now);
                continue;
            }
            let Some(queue) = self.chats.get_mut(&chat) else {
                continue;
            };
            let Some(item) = queue.items.front().cloned() else {
                self.chats.remove(&chat);
                continue;
            };
            queue.busy = true;
            // Late with no failure behind it: the pacer held it back.
            if queue.failures == 0 && now_ms().saturating_sub(item.created_ms) > PACED_AFTER_MS {
                self.stats.add_paced();
            }
            let weight = match &item.message.body {
                Body::Call(call) => call.weight(),
                _ => 1,
            };
            self.pacer.record_weighted(chat, now, weight);
            let bot = self.bot.clone();
            let handle = self.in_flight.spawn(
                async move {
                    let result = match &item.message.body {
                        Body::Text { text, keyboard } => {
                            send::send_message(&bot, chat, text, keyboard.as_ref())
                                .await
                                .map(|_| Vec::new())
                        }
                        Body::Edit {
                            message_id,
                            text,
                            keyboard,
                        } => send::edit_message(&bot, chat, *message_id, text, keyboard.as_ref())
                            .await
                            .map(|()| Vec::new()),
                        Body::Call(call) => send::call(&bot, chat, call).await,
                    };
                    Done { chat, result }
                }
                .in_current_span(),
            );
            self.in_flight_chats.insert(handle.id(), chat);
        }
        None
    }

    /// Drops the head messages of `chat` older than `max_age`; true when
    /// any went.
    fn expire(&mut self, chat: i64) -> bool {
        let oldest_allowed =
            now_ms().saturating_sub(i64::try_from(self.max_age.as_millis()).unwrap_or(i64::MAX));
        let mut expired = Vec::new();
        if let Some(queue) = self.chats.get_mut(&chat) {
            while queue
                .items
                .front()
                .is_some_and(|item| item.created_ms < oldest_allowed)
            {
                if let Some(item) = queue.items.pop_front() {
                    expired.push(item);
                }
            }
        }
        if expired.is_empty() {
            return false;
        }
        warn!(
            chat,
            dropped = expired.len(),
            max_age = %short(self.max_age),
            "dropped {} message(s) to chat {chat} unsent for longer than outbox.max_age",
            expired.len()
        );
        self.stats.add_dropped(expired.len() as u64);
        for item in &expired {
            self.forget(
                item,
                Some(Err(Refusal {
                    code: 400,
                    description: format!(
                        "Bad Request: botvisor dropped the message: unsent for longer than outbox.max_age ({})",
                        short(self.max_age)
                    ),
                    parameters: None,
                })),
            );
        }
        self.publish();
        true
    }

    /// An item leaves the queues: counted out, its row deleted, and whoever
    /// waits for it told how it went.
    fn forget(&mut self, item: &Item, answer: Option<Answer>) {
        if let (Some(seq), Some(answer)) = (item.seq, answer) {
            self.waiters.answer(seq, answer);
        }
        item.message.body.discard_files();
        self.stats.remove_pending(1);
        if let Some(count) = self.ages.get_mut(&item.created_ms) {
            *count -= 1;
            if *count == 0 {
                self.ages.remove(&item.created_ms);
            }
        }
        if let Some(seq) = item.seq {
            self.committer.send_job(Job::Done {
                seq,
                chat: item.message.chat,
            });
        }
    }

    fn publish(&self) {
        self.stats.set_oldest(self.ages.keys().next().copied());
    }

    /// Acts on one send's answer.
    fn settle(&mut self, done: Done) {
        let now = Instant::now();
        let chat = done.chat;
        let Some(queue) = self.chats.get_mut(&chat) else {
            return;
        };
        queue.busy = false;
        match done.result {
            Ok(result) => {
                if queue.failures > 0 {
                    info!(
                        chat,
                        tries = queue.failures + 1,
                        "a message went out after failed tries"
                    );
                }
                queue.failures = 0;
                queue.retry_at = None;
                if let Some(item) = queue.items.pop_front() {
                    self.forget(&item, Some(Ok(result)));
                }
            }
            Err(err) => self.failed(chat, err, now),
        }
        self.schedule(chat, now);
        self.publish();
    }

    fn failed(&mut self, chat: i64, err: CallError, now: Instant) {
        match err.class {
            ErrorClass::RateLimited(wait) => {
                // Never at once again (a `retry_after` of 0 must not spin).
                let wait = wait.max(Duration::from_secs(1));
                self.stats.add_rate_limited();
                let global = self.last_429.is_some_and(|(at, other)| {
                    other != chat && now.duration_since(at) < GLOBAL_429_WINDOW
                });
                self.last_429 = Some((now, chat));
                if global {
                    self.pacer.pause_all(now + wait);
                    warn!(retry_after = %short(wait), "Telegram asked the bot to slow down (429 for several chats); every chat waits");
                } else {
                    self.pacer.pause_chat(chat, now + wait);
                    warn!(chat, retry_after = %short(wait), "Telegram asked to slow down for one chat (429); that chat waits");
                }
            }
            ErrorClass::Migrated(to) => {
                let to = to.0;
                info!(
                    from = chat,
                    to, "a group became a supergroup; its messages follow it"
                );
                if let Some(mut from) = self.chats.remove(&chat) {
                    if let Some(key) = from.ready_key.take() {
                        self.ready.remove(&(key.0, key.1, chat));
                    }
                    for item in &mut from.items {
                        item.message.chat = to;
                    }
                    let queue = self.chats.entry(to).or_insert_with(|| ChatQueue {
                        items: VecDeque::new(),
                        busy: false,
                        failures: 0,
                        retry_at: None,
                        ready_key: None,
                    });
                    queue.items.extend(from.items);
                    // A send to the new id may be in flight: it is the head,
                    // and stays the head (settling it pops the head).
                    let start = usize::from(queue.busy);
                    if let Some(rest) = queue.items.make_contiguous().get_mut(start..) {
                        rest.sort_by_key(|item| item.seq.unwrap_or(i64::MAX));
                    }
                }
                self.committer.send_job(Job::Migrate { from: chat, to });
                let _ = self.events.send(ChatEvent::Migrated { from: chat, to });
                self.schedule(to, now);
            }
            ErrorClass::Forbidden => self.refuse_chat(chat, &err),
            ErrorClass::BadRequest if err.detail.contains("chat not found") => {
                self.refuse_chat(chat, &err);
            }
            ErrorClass::BadRequest => {
                warn!(chat, error = %err.detail, "Telegram refused a message (bad request); it is dropped");
                self.stats.add_dropped(1);
                let item = self
                    .chats
                    .get_mut(&chat)
                    .and_then(|queue| queue.items.pop_front());
                if let Some(item) = item {
                    self.forget(&item, Some(Err(refusal_of(&err))));
                }
            }
            _ => {
                let Some(queue) = self.chats.get_mut(&chat) else {
                    return;
                };
                let exponent = queue.failures.min(6);
                let wait = (FIRST_RETRY * 2u32.pow(exponent)).min(LONGEST_RETRY);
                let wait = wait.mul_f64(0.8 + 0.4 * rand::random::<f64>());
                queue.failures = queue.failures.saturating_add(1);
                queue.retry_at = Some(now + wait);
                if queue.failures == 1 {
                    warn!(chat, error_class = %err.class, error = %err.detail, retry_in = %short(wait), "a message could not be sent; it stays queued and is tried again");
                }
            }
        }
    }

    /// The chat refuses the bot for good: everything queued for it goes,
    /// with one line.
    fn refuse_chat(&mut self, chat: i64, err: &CallError) {
        let Some(queue) = self.chats.remove(&chat) else {
            return;
        };
        if let Some(key) = queue.ready_key {
            self.ready.remove(&(key.0, key.1, chat));
        }
        let count = queue.items.len();
        warn!(chat, dropped = count, error = %err.detail, "the chat refuses the bot ({}); {count} queued message(s) dropped", err.class);
        self.stats.add_dropped(count as u64);
        let refusal = refusal_of(err);
        for item in &queue.items {
            self.forget(item, Some(Err(refusal.clone())));
        }
        let _ = self.events.send(ChatEvent::Refused { chat });
    }
}

/// Telegram's refusal of a send, or one made up from its class when the
/// answer carried none.
fn refusal_of(err: &CallError) -> Refusal {
    err.refusal.clone().unwrap_or_else(|| Refusal {
        code: match err.class {
            ErrorClass::Forbidden => 403,
            ErrorClass::Unauthorized => 401,
            _ => 400,
        },
        description: format!("Bad Request: {}", err.detail),
        parameters: None,
    })
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
