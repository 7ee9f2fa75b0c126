//! The outbox's one writer per bot: group commits.
//!
//! Jobs arrive on one channel in the order they were decided: updates
//! received (with the offset that confirms them), an update handled with
//! its messages, messages to queue (a broadcast, a kind's notice), messages
//! that went out or were dropped, a chat that moved. The committer takes
//! the first job, everything else already waiting, and writes them in one
//! transaction; only then does it hand the new messages to the sender and
//! tell the worker's [`UpdateJournal`]. An update received and handled
//! within one commit never touches the inbox table. Under load a commit carries hundreds of jobs; at
//! rest each job is its own commit, at once.
//!
//! The per-chat cap is kept here, where every message is counted in and
//! out: a message to a chat that already has `max_per_chat` queued is
//! dropped, counted, and summed up in one log line per chat at most once a
//! minute.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::{
    Answer, Body, Item, MAX_QUEUED, OutMessage, OutboxStats, UpdateJournal, Waiters, now_ms,
};
use crate::config::OutboxSettings;
use crate::store::{BotStore, InboxRow, OutboxCommit, OutboxRow};
use crate::telegram::api::Refusal;

/// Jobs taken into one commit at most.
const BATCH: usize = 2_000;
/// The shortest time between two cap lines for one chat.
const CAP_LOG_EVERY: Duration = Duration::from_secs(60);

/// What the committer is asked to record.
pub enum Job {
    /// Updates received, to keep in the inbox until handled, and the offset
    /// that confirms them.
    Received {
        updates: Vec<InboxRow>,
        offset: Option<u32>,
        ack: oneshot::Sender<Result<(), String>>,
    },
    /// An update was handled and decided these messages.
    Handled {
        update_id: u32,
        messages: Vec<OutMessage>,
    },
    /// Messages to queue; with `finishes`, the announcement they broadcast
    /// is no longer pending; with `reply`, whoever waits for the (one)
    /// message's answer.
    Enqueue {
        messages: Vec<OutMessage>,
        finishes: Option<String>,
        reply: Option<oneshot::Sender<Answer>>,
        ack: oneshot::Sender<Result<(), String>>,
    },
    /// A stored message went out, or was dropped for good.
    Done { seq: i64, chat: i64 },
    /// A chat became another; its queued rows follow.
    Migrate { from: i64, to: i64 },
    /// Commit what came before, then say so.
    Flush(oneshot::Sender<()>),
    /// Commit what came before, then stop.
    Close(oneshot::Sender<()>),
}

/// botvisor's answer to a caller whose message did not fit in its chat's
/// queue: Telegram's own words for "too fast", with a wait that lets the
/// queue drain a little.
fn too_many(cap: u32) -> Refusal {
    Refusal {
        code: 429,
        description: format!(
            "Too Many Requests: botvisor's outbox already holds {cap} messages for this chat \
             (outbox.max_per_chat); retry after 5"
        ),
        parameters: Some("{\"retry_after\":5}".to_owned()),
    }
}

/// Stored rows as the sender's items; rows whose body cannot be read (a
/// newer botvisor's, or damaged) are dropped and returned by seq.
pub(crate) fn load(rows: &[OutboxRow]) -> (Vec<Item>, Vec<i64>) {
    let mut items = Vec::with_capacity(rows.len());
    let mut bad = Vec::new();
    for row in rows {
        match serde_json::from_str::<Body>(&row.body) {
            Ok(body) => items.push(Item {
                seq: Some(row.seq),
                message: OutMessage {
                    chat: row.chat_id,
                    body,
                },
                created_ms: row.created_at,
            }),
            Err(_) => bad.push(row.seq),
        }
    }
    (items, bad)
}

#[derive(Default)]
struct CapDrops {
    count: u64,
    logged: Option<Instant>,
}

pub(crate) struct Committer {
    /// The bot's store, fenced by the session's lease.
    store: BotStore,
    journal: Arc<dyn UpdateJournal>,
    settings: OutboxSettings,
    stats: Arc<OutboxStats>,
    to_sender: mpsc::UnboundedSender<Vec<Item>>,
    failed: watch::Sender<Option<String>>,
    sender_stop: CancellationToken,
    next_seq: i64,
    /// Messages queued per chat (stored, not yet done).
    queued: HashMap<i64, u32>,
    total: usize,
    cap_drops: HashMap<i64, CapDrops>,
    /// Unreadable rows to delete at the first commit.
    bad: Vec<i64>,
    /// Whether handled updates are remembered by id (webhook delivery).
    mark_handled: bool,
    /// Who waits for which message's answer.
    waiters: Arc<Waiters>,
}

impl Committer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        store: BotStore,
        journal: Arc<dyn UpdateJournal>,
        settings: OutboxSettings,
        stats: Arc<OutboxStats>,
        to_sender: mpsc::UnboundedSender<Vec<Item>>,
        failed: watch::Sender<Option<String>>,
        sender_stop: CancellationToken,
        next_seq: i64,
        loaded: &[Item],
        bad: Vec<i64>,
        mark_handled: bool,
        waiters: Arc<Waiters>,
    ) -> Committer {
        let mut queued: HashMap<i64, u32> = HashMap::new();
        for item in loaded {
            *queued.entry(item.message.chat).or_default() += 1;
        }
        if !bad.is_empty() {
            warn!(
                count = bad.len(),
                "dropped queued messages that this version cannot read"
            );
            stats.add_dropped(bad.len() as u64);
        }
        Committer {
            store,
            journal,
            settings,
            stats,
            to_sender,
            failed,
            sender_stop,
            next_seq,
            total: loaded.len(),
            queued,
            cap_drops: HashMap::new(),
            bad,
            mark_handled,
            waiters,
        }
    }

    /// Commits jobs until [`Job::Close`] or until every sink is gone.
    pub(crate) async fn run(mut self, mut jobs: mpsc::UnboundedReceiver<Job>) {
        let mut buffer = Vec::with_capacity(64);
        loop {
            let Some(first) = jobs.recv().await else {
                break;
            };
            buffer.push(first);
            while buffer.len() < BATCH {
                match jobs.try_recv() {
                    Ok(job) => buffer.push(job),
                    Err(_) => break,
                }
            }
            // Boxed: the store's transaction is a 15 KB future, held only
            // while it runs rather than in every bot's committer all along.
            let close = Box::pin(self.commit(std::mem::take(&mut buffer))).await;
            if let Some(close) = close {
                self.log_cap_drops(true);
                let _ = close.send(());
                break;
            }
            if self.failed.borrow().is_some() {
                break;
            }
        }
        self.log_cap_drops(true);
    }

    /// Commits one batch of jobs; the close request among them, if any.
    async fn commit(&mut self, jobs: Vec<Job>) -> Option<oneshot::Sender<()>> {
        let mut commit = OutboxCommit {
            deletes: std::mem::take(&mut self.bad),
            ..OutboxCommit::default()
        };
        let mut handled = Vec::new();
        let mut items = Vec::new();
        let mut acks = Vec::new();
        let mut flushed = Vec::new();
        let mut close = None;
        let mut offset = None;
        let now = now_ms();
        for job in jobs {
            match job {
                Job::Received {
                    updates,
                    offset: moved,
                    ack,
                } => {
                    commit.received.extend(updates);
                    offset = moved.or(offset);
                    acks.push(ack);
                }
                Job::Handled {
                    update_id,
                    messages,
                } => {
                    handled.push(update_id);
                    self.admit(messages, None, now, &mut commit, &mut items);
                }
                Job::Enqueue {
                    messages,
                    finishes,
                    reply,
                    ack,
                } => {
                    self.admit(messages, reply, now, &mut commit, &mut items);
                    commit.finished_announcements.extend(finishes);
                    acks.push(ack);
                }
                Job::Done { seq, chat } => {
                    commit.deletes.push(seq);
                    self.total = self.total.saturating_sub(1);
                    if let Some(count) = self.queued.get_mut(&chat) {
                        *count = count.saturating_sub(1);
                        if *count == 0 {
                            self.queued.remove(&chat);
                        }
                    }
                }
                Job::Migrate { from, to } => {
                    commit.migrations.push((from, to));
                    if let Some(count) = self.queued.remove(&from) {
                        *self.queued.entry(to).or_default() += count;
                    }
                }
                Job::Flush(ack) => flushed.push(ack),
                Job::Close(ack) => close = Some(ack),
            }
        }
        // Received and handled in this same commit: the inbox never sees it.
        let received_now: HashSet<u32> = commit.received.iter().map(|r| r.update_id).collect();
        let handled_now: HashSet<u32> = handled.iter().copied().collect();
        commit
            .received
            .retain(|row| !handled_now.contains(&row.update_id));
        commit.handled = handled
            .iter()
            .copied()
            .filter(|id| !received_now.contains(id))
            .collect();
        if self.mark_handled {
            commit.marks = handled.clone();
        }
        commit.offset = offset;
        match self.store.commit(&commit).await {
            Ok(()) => {
                // The sender has them before anyone learns the offset moved.
                if !items.is_empty() {
                    self.stats.add_pending(items.len());
                    let _ = self.to_sender.send(items);
                }
                self.journal.recorded(&handled, offset);
                self.stats.add_handled(handled.len());
                for ack in acks {
                    let _ = ack.send(Ok(()));
                }
                for ack in flushed {
                    let _ = ack.send(());
                }
                self.log_cap_drops(false);
            }
            Err(err) => {
                // Nothing of this commit is stored: nobody may wait for it.
                let seqs: Vec<i64> = commit.inserts.iter().map(|row| row.seq).collect();
                self.waiters.forget(&seqs);
                error!(error = %err, "the outbox could not record what the bot handled and sends");
                self.sender_stop.cancel();
                for ack in acks {
                    let _ = ack.send(Err(err.to_string()));
                }
                self.failed.send_replace(Some(err.to_string()));
            }
        }
        close
    }

    /// Counts `messages` in, as rows of `commit` and items for the sender,
    /// unless their chat (or the bot) has its cap's worth queued already.
    /// `reply` waits for the first message's answer.
    fn admit(
        &mut self,
        messages: Vec<OutMessage>,
        mut reply: Option<oneshot::Sender<Answer>>,
        now: i64,
        commit: &mut OutboxCommit,
        items: &mut Vec<Item>,
    ) {
        let cap = self.settings.max_per_chat;
        for message in messages.into_iter().flat_map(OutMessage::into_parts) {
            let chat = message.chat;
            let queued = self.queued.entry(chat).or_default();
            if *queued >= cap || self.total >= MAX_QUEUED {
                self.cap_drops.entry(chat).or_default().count += 1;
                self.stats.add_dropped(1);
                if let Some(reply) = reply.take() {
                    let _ = reply.send(Err(too_many(cap)));
                }
                message.body.discard_files();
                continue;
            }
            let Ok(body) = serde_json::to_string(&message.body) else {
                continue;
            };
            *queued += 1;
            self.total += 1;
            let seq = self.next_seq;
            self.next_seq = self.next_seq.saturating_add(1);
            commit.inserts.push(OutboxRow {
                seq,
                chat_id: chat,
                body,
                created_at: now,
            });
            if let Some(reply) = reply.take() {
                self.waiters.insert(seq, reply);
            }
            items.push(Item {
                seq: Some(seq),
                message,
                created_ms: now,
            });
        }
    }

    /// One line per chat whose messages were dropped at the cap, at most
    /// once a minute per chat (or now, at the end), with the count.
    fn log_cap_drops(&mut self, all: bool) {
        let now = Instant::now();
        let cap = self.settings.max_per_chat;
        for (chat, drops) in &mut self.cap_drops {
            let due = drops
                .logged
                .is_none_or(|at| now.duration_since(at) >= CAP_LOG_EVERY);
            if drops.count == 0 || !(all || due) {
                continue;
            }
            let queued = self.queued.get(chat).copied().unwrap_or(0);
            // Logged once the flood has passed (the chat has room again),
            // so one flood makes one line.
            if !all && queued >= cap && self.total < MAX_QUEUED {
                continue;
            }
            warn!(
                chat = *chat,
                dropped = drops.count,
                max_per_chat = cap,
                "dropped {} message(s) to chat {chat}: it already had {cap} waiting (outbox.max_per_chat)",
                drops.count
            );
            drops.count = 0;
            drops.logged = Some(now);
        }
        self.cap_drops.retain(|_, drops| {
            drops.count > 0
                || drops
                    .logged
                    .is_some_and(|at| now.duration_since(at) < CAP_LOG_EVERY)
        });
    }
}
