//! Which updates a bot has, is, and has not yet handled: the offset that
//! may be confirmed to Telegram, and which updates delivered again are
//! skipped.
//!
//! An update is *open* from the moment it is handed to a lane until its
//! handled mark (with its messages) is committed; then it is *recorded*.
//! The offset confirms only recorded updates: it is the lowest open update,
//! or one past the newest update Telegram sent when none is open. Recorded
//! updates above the offset (handled while an older one still runs) are
//! remembered, here and in the store's journal, so Telegram's repeats of
//! them are skipped. Pure bookkeeping behind one mutex; the poll loop, the
//! lanes and the committer share it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::outbox::UpdateJournal;
use crate::store::OFFSET_MAX_AGE;

/// The bookkeeping itself.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Handed to a lane, not yet recorded.
    open: BTreeSet<u32>,
    /// Recorded, at or above the stored offset.
    recorded: BTreeSet<u32>,
    /// The next update id to ask for when none is open: one past the
    /// newest Telegram sent (or the stored offset).
    frontier: Option<u32>,
    /// The offset in the store, and when it was written.
    stored: Option<u32>,
    stored_at: Option<SystemTime>,
}

impl Ledger {
    /// Starts from the stored offset and the journal above it.
    pub fn load(&mut self, offset: Option<(u32, SystemTime)>, recorded: BTreeSet<u32>) {
        self.open.clear();
        self.recorded = recorded;
        self.stored = offset.map(|(o, _)| o);
        self.stored_at = offset.map(|(_, at)| at);
        self.frontier = self.stored;
    }

    /// The offset to send: every update below it is recorded.
    pub fn offset(&self) -> Option<u32> {
        self.open.first().copied().or(self.frontier)
    }

    /// Telegram sent a batch whose highest id is `highest`. Called after
    /// the batch's updates were admitted, under the same lock: the offset
    /// must never pass an update that is not open yet.
    pub fn saw(&mut self, highest: u32) {
        // It may move backwards: after a week without updates Telegram
        // starts its ids again at a random, possibly lower, number.
        self.frontier = Some(highest.saturating_add(1));
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
        if self.open.contains(&id) || self.recorded.contains(&id) {
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

    /// Which of `handled` need a journal mark if they are recorded now, and
    /// the offset to store with them when it moves.
    pub fn plan(&self, handled: &[u32]) -> (Vec<u32>, Option<u32>) {
        let lowest_left = self.open.iter().find(|id| !handled.contains(id)).copied();
        let offset = lowest_left.or(self.frontier);
        let marks = handled
            .iter()
            .copied()
            .filter(|id| offset.is_none_or(|o| *id >= o))
            .collect();
        let moved = offset.filter(|o| Some(*o) != self.stored);
        (marks, moved)
    }

    /// `handled` are recorded, and `offset` stored when given.
    pub fn recorded(&mut self, handled: &[u32], offset: Option<u32>) {
        for id in handled {
            self.open.remove(id);
            self.recorded.insert(*id);
        }
        if let Some(offset) = offset {
            self.stored = Some(offset);
            self.stored_at = Some(SystemTime::now());
        }
        if let Some(stored) = self.stored {
            self.recorded.retain(|id| *id >= stored);
        }
    }

    /// The session ended: updates still open were not handled (abandoned or
    /// not started). The offset stays below them, so Telegram delivers them
    /// again; they are forgotten here.
    pub fn close_session(&mut self) -> Vec<u32> {
        if let Some(lowest) = self.open.first() {
            self.frontier = Some(*lowest);
        }
        std::mem::take(&mut self.open).into_iter().collect()
    }

    /// Updates open now.
    pub fn open_count(&self) -> usize {
        self.open.len()
    }
}

/// A [`Ledger`] shared by the poll loop, the lanes and the committer, with
/// a counter of recorded batches to wait on.
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

    /// Changes whenever the stored offset moves.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.moved.subscribe()
    }
}

impl UpdateJournal for Progress {
    fn plan(&self, handled: &[u32]) -> (Vec<u32>, Option<u32>) {
        self.with(|ledger| ledger.plan(handled))
    }

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
    fn the_offset_confirms_only_recorded_updates() {
        let mut ledger = Ledger::default();
        ledger.load(Some((10, SystemTime::now())), BTreeSet::from([12]));
        assert_eq!(ledger.offset(), Some(10));
        // A batch 10..=13: 12 is recorded already, 13 twice in the batch.
        let admitted: Vec<bool> = [10, 11, 12, 13, 13]
            .iter()
            .map(|id| ledger.admit(*id))
            .collect();
        assert_eq!(admitted, [true, true, false, true, false]);
        ledger.saw(13);
        assert_eq!(ledger.offset(), Some(10));
        // 11 and 13 finish first: marked, the offset stays at 10.
        let (marks, offset) = ledger.plan(&[11, 13]);
        assert_eq!((marks.clone(), offset), (vec![11, 13], None));
        ledger.recorded(&[11, 13], offset);
        assert!(!ledger.admit(11), "a repeat of a recorded update");
        // 10 finishes: the offset passes everything, no mark needed.
        let (marks, offset) = ledger.plan(&[10]);
        assert_eq!((marks, offset), (vec![], Some(14)));
        ledger.recorded(&[10], offset);
        assert_eq!(ledger.offset(), Some(14));
        assert!(!ledger.admit(12), "below a recent offset");
    }

    #[test]
    fn a_stop_leaves_the_offset_below_what_was_not_handled() {
        let mut ledger = Ledger::default();
        ledger.load(None, BTreeSet::new());
        for id in [5, 6, 7] {
            assert!(ledger.admit(id));
        }
        ledger.saw(7);
        let (_, offset) = ledger.plan(&[5]);
        ledger.recorded(&[5], offset);
        assert_eq!(ledger.offset(), Some(6));
        assert_eq!(ledger.close_session(), vec![6, 7]);
        assert_eq!(ledger.offset(), Some(6));
        assert_eq!(ledger.open_count(), 0);
    }

    #[test]
    fn ids_that_restart_lower_after_a_week_are_new() {
        let mut ledger = Ledger::default();
        let long_ago = SystemTime::now() - OFFSET_MAX_AGE - std::time::Duration::from_secs(60);
        ledger.load(Some((1_000, long_ago)), BTreeSet::new());
        assert!(ledger.admit(5));
        ledger.saw(5);
        let (_, offset) = ledger.plan(&[5]);
        assert_eq!(offset, Some(6));
    }
}
