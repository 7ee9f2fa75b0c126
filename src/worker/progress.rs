//! Which updates a bot has received and not yet handled, the offset it has
//! stored, and which updates delivered again are skipped.
//!
//! Every update the poll loop admits is *open* until its handler's decision
//! is committed. It is written to the store's inbox together with the new
//! offset before the next poll confirms that offset to Telegram, so the
//! offset never waits for a handler: a slow chat holds up nothing but
//! itself, and a crash leaves the update in the inbox for the next session.
//! Recorded ids above the offset (the journal of an older botvisor, which
//! confirmed only handled updates) are kept until the offset passes them,
//! so an upgrade repeats nothing. Pure bookkeeping behind one mutex; the
//! poll loop, the lanes and the committer share it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::outbox::UpdateJournal;
use crate::store::OFFSET_MAX_AGE;

/// Handled update ids a webhook bot remembers at most (Telegram repeats a
/// delivery only within a day).
pub const KEPT_HANDLED: usize = 100_000;

/// The bookkeeping itself.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Received (stored in the inbox, or on its way there), not handled.
    open: BTreeSet<u32>,
    /// Handled before this version, above the stored offset; for a webhook
    /// bot, every update handled in the last day (at most [`KEPT_HANDLED`]).
    recorded: BTreeSet<u32>,
    /// Whether handled updates join `recorded` (webhook delivery).
    keep_handled: bool,
    /// The offset in the store, and when it was written.
    stored: Option<u32>,
    stored_at: Option<SystemTime>,
}

impl Ledger {
    /// Starts from the stored offset and the old journal above it.
    pub fn load(&mut self, offset: Option<(u32, SystemTime)>, recorded: BTreeSet<u32>) {
        self.open.clear();
        self.recorded = recorded;
        self.stored = offset.map(|(o, _)| o);
        self.stored_at = offset.map(|(_, at)| at);
    }

    /// The offset to send: every update below it is stored (handled, or in
    /// the inbox).
    pub fn offset(&self) -> Option<u32> {
        self.stored
    }

    /// Whether update `id` is open or recorded (Telegram sent it again).
    pub fn knows(&self, id: u32) -> bool {
        self.open.contains(&id) || self.recorded.contains(&id)
    }

    /// Whether update `id` is new (and now open): false for one open or
    /// recorded already, and for one below a recent stored offset. After
    /// six days without a stored offset Telegram may have restarted its ids
    /// lower, and lower ids are new.
    pub fn admit(&mut self, id: u32) -> bool {
        if self.knows(id) {
            return false;
        }
        let trusted = self
            .stored_at
            .is_some_and(|at| at.elapsed().is_ok_and(|age| age < OFFSET_MAX_AGE));
        if trusted && self.stored.is_some_and(|offset| id < offset) {
            return false;
        }
        self.open.insert(id);
        true
    }

    /// An update from the inbox, handled in this session: open whatever the
    /// offset says.
    pub fn reopen(&mut self, id: u32) -> bool {
        self.open.insert(id)
    }

    /// The offset that confirms a batch whose highest id is `highest`.
    /// It may move backwards: after a week without updates Telegram starts
    /// its ids again at a random, possibly lower, number.
    pub fn next_offset(highest: u32) -> u32 {
        highest.saturating_add(1)
    }

    /// Whether handled updates are remembered by id: a webhook's updates
    /// have no offset, and Telegram delivers one again after a crash.
    pub fn keep_handled(&mut self, on: bool) {
        self.keep_handled = on;
    }

    /// `handled` are recorded, and `offset` stored when given.
    pub fn recorded(&mut self, handled: &[u32], offset: Option<u32>) {
        for id in handled {
            self.open.remove(id);
            if self.keep_handled {
                self.recorded.insert(*id);
            }
        }
        while self.recorded.len() > KEPT_HANDLED {
            self.recorded.pop_first();
        }
        if let Some(offset) = offset {
            self.stored = Some(offset);
            self.stored_at = Some(SystemTime::now());
            self.recorded.retain(|id| *id >= offset);
        }
    }

    /// The session ended: updates still open stay in the inbox, for the
    /// next session to handle.
    pub fn close_session(&mut self) -> usize {
        std::mem::take(&mut self.open).len()
    }

    /// Whether update `id` is open (received, not yet handled).
    pub fn is_open(&self, id: u32) -> bool {
        self.open.contains(&id)
    }

    /// Updates open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

/// A [`Ledger`] shared by the poll loop, the lanes and the committer, with
/// a counter of commits to wait on.
#[derive(Debug)]
pub struct Progress {
    ledger: Mutex<Ledger>,
    moved: watch::Sender<u64>,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress {
            ledger: Mutex::default(),
            moved: watch::Sender::new(0),
        })
    }

    pub fn with<T>(&self, f: impl FnOnce(&mut Ledger) -> T) -> T {
        let mut ledger = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut ledger)
    }

    /// Changes whenever handled updates or an offset are recorded.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.moved.subscribe()
    }
}

impl UpdateJournal for Progress {
    fn recorded(&self, handled: &[u32], offset: Option<u32>) {
        self.with(|ledger| ledger.recorded(handled, offset));
        if !handled.is_empty() || offset.is_some() {
            self.moved
                .send_modify(|count| *count = count.wrapping_add(1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_skipped_and_the_offset_never_waits_for_a_handler() {
        let mut ledger = Ledger::default();
        // 12 was handled by an older version that confirmed only handled
        // updates.
        ledger.load(Some((10, SystemTime::now())), BTreeSet::from([12]));
        assert_eq!(ledger.offset(), Some(10));
        // A batch 10..=13: 12 is recorded already, 13 twice in the batch.
        let admitted: Vec<bool> = [10, 11, 12, 13, 13]
            .iter()
            .map(|id| ledger.admit(*id))
            .collect();
        assert_eq!(admitted, [true, true, false, true, false]);
        // The batch is stored: the offset passes it, handled or not.
        ledger.recorded(&[], Some(Ledger::next_offset(13)));
        assert_eq!(ledger.offset(), Some(14));
        assert_eq!(ledger.open_count(), 3);
        assert!(!ledger.admit(11), "a repeat of an open update");
        ledger.recorded(&[11, 13], None);
        assert!(!ledger.admit(11), "below a recent offset");
        assert_eq!(ledger.open_count(), 1);
        // The session ends with 10 still running: it stays in the inbox.
        assert_eq!(ledger.close_session(), 1);
        assert_eq!(ledger.offset(), Some(14));
        // The next session takes it from the inbox, below the offset.
        assert!(ledger.reopen(10));
        assert!(!ledger.admit(10));
    }

    #[test]
    fn ids_that_restart_lower_after_a_week_are_new() {
        let mut ledger = Ledger::default();
        let long_ago = SystemTime::now() - OFFSET_MAX_AGE - std::time::Duration::from_secs(60);
        ledger.load(Some((1_000, long_ago)), BTreeSet::new());
        assert!(ledger.admit(5));
        ledger.recorded(&[], Some(Ledger::next_offset(5)));
        assert_eq!(ledger.offset(), Some(6));
    }
}
