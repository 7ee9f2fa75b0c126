//! A process bot's `getUpdates`, served from botvisor's inbox as Telegram
//! serves it: what is offered, what the bot's offset confirms, and which of
//! several waiting polls is the newest.
//!
//! An update is *offered* once its commit into the inbox is done, and stays
//! offered (each `getUpdates` gets it again) until the bot asks with a
//! higher offset *after it was given the update*. Updates may be stored out
//! of id order (a webhook's deliveries, another instance's, ids that
//! restarted lower after a week), so an offset confirms only what the bot
//! was given, and an update it was never given is answered even below its
//! offset; an offset far past anything offered is Telegram's "in the
//! future" and confirms nothing. Confirming takes an update out of the
//! inbox (through the session's outbox sink, or, while no session runs,
//! once the next one starts). A negative offset keeps the last `-offset`
//! updates and confirms the ones before them. A newer `getUpdates` that is
//! about to wait ends an older one still waiting with Telegram's 409. This
//! file is bookkeeping only: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Telegram's most updates in one answer.
pub const MAX_LIMIT: usize = 100;
/// Telegram's longest long poll, in seconds.
pub const MAX_TIMEOUT_SECS: u64 = 50;
/// How far past the newest update an offset may be and still count, as in
/// Telegram's server; past it, the offset is "in the future" and ignored.
const FUTURE_SLACK: i64 = 10;

/// One process bot's updates between the inbox and its `getUpdates`.
#[derive(Debug, Default)]
pub struct Feed {
    /// Stored in the inbox, not yet confirmed: id → the update's JSON.
    offered: BTreeMap<u32, Arc<str>>,
    /// Offered updates the bot has been given in an answer.
    given: BTreeSet<u32>,
    /// The highest id ever offered, for offsets "in the future".
    highest: Option<u32>,
    /// Confirmed while no session ran; taken out of the inbox when the
    /// next session starts.
    pending: BTreeSet<u32>,
    /// The newest `getUpdates`; an older one still waiting ends with 409.
    generation: u64,
}

/// A `getUpdates` request's parameters, read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ask {
    pub offset: Option<i64>,
    /// 1 to [`MAX_LIMIT`].
    pub limit: usize,
    /// Seconds, 0 to [`MAX_TIMEOUT_SECS`].
    pub timeout: u64,
}

impl Feed {
    /// A new `getUpdates` arrived: its generation (older ones waiting are
    /// now superseded).
    pub fn begin(&mut self) -> u64 {
        self.generation = self.generation.wrapping_add(1);
        self.generation
    }

    /// Whether `generation` is still the newest `getUpdates`.
    pub fn is_current(&self, generation: u64) -> bool {
        self.generation == generation
    }

    /// Offers an update stored in the inbox; false when it was confirmed
    /// while no session ran (the caller takes it out of the inbox).
    pub fn offer(&mut self, id: u32, raw: Arc<str>) -> bool {
        if self.pending.remove(&id) {
            return false;
        }
        self.offered.insert(id, raw);
        self.highest = Some(self.highest.map_or(id, |h| h.max(id)));
        true
    }

    /// A new session offers the inbox anew: what it does not offer again is
    /// gone, what it does keeps whether the bot was given it.
    pub fn restart(&mut self) {
        self.offered.clear();
    }

    /// The confirmations made while no session ran that no inbox row
    /// matched: they are gone already. What was given and is not offered
    /// again is forgotten too.
    pub fn forget_pending(&mut self) {
        self.pending.clear();
        let offered = &self.offered;
        self.given.retain(|id| offered.contains_key(id));
    }

    /// The offset as Telegram would take it: `None` for none, 0, or one
    /// "in the future" (more than a few past the newest update ever offered).
    pub fn effective(&self, offset: Option<i64>) -> Option<i64> {
        let offset = offset.filter(|o| *o != 0)?;
        let tail = self.highest.map_or(0, |h| i64::from(h) + 1);
        (offset < 0 || offset <= tail + FUTURE_SLACK).then_some(offset)
    }

    /// Confirms what `offset` (already [`Feed::effective`]) confirms: every
    /// update below a positive offset that the bot was given; every update
    /// but the last `-offset` for a negative one. Their ids.
    pub fn confirm(&mut self, offset: Option<i64>) -> Vec<u32> {
        let confirmed: Vec<u32> = match offset {
            None | Some(0) => Vec::new(),
            Some(offset) if offset > 0 => self
                .offered
                .keys()
                .copied()
                .take_while(|id| i64::from(*id) < offset)
                .filter(|id| self.given.contains(id))
                .collect(),
            Some(offset) => {
                let keep = usize::try_from(offset.unsigned_abs()).unwrap_or(usize::MAX);
                let drop = self.offered.len().saturating_sub(keep);
                self.offered.keys().copied().take(drop).collect()
            }
        };
        for id in &confirmed {
            self.offered.remove(id);
            self.given.remove(id);
        }
        confirmed
    }

    /// Confirms every update offered (`deleteWebhook` with
    /// `drop_pending_updates`).
    pub fn confirm_all(&mut self) -> Vec<u32> {
        self.given.clear();
        std::mem::take(&mut self.offered).into_keys().collect()
    }

    /// Records confirmations no session could take yet.
    pub fn hold(&mut self, confirmed: &[u32]) {
        self.pending.extend(confirmed);
    }

    /// The updates an answer carries, in id order, at most `limit`: those
    /// from a positive `offset` on, and those below it the bot was never
    /// given. They count as given from now on.
    pub fn answer(&mut self, offset: Option<i64>, limit: usize) -> Vec<Arc<str>> {
        let from = match offset {
            Some(offset) if offset > 0 => u32::try_from(offset).unwrap_or(u32::MAX),
            _ => 0,
        };
        let given = &self.given;
        let chosen: Vec<(u32, Arc<str>)> = self
            .offered
            .iter()
            .filter(|(id, _)| **id >= from || !given.contains(id))
            .take(limit)
            .map(|(id, raw)| (*id, raw.clone()))
            .collect();
        self.given.extend(chosen.iter().map(|(id, _)| *id));
        chosen.into_iter().map(|(_, raw)| raw).collect()
    }

    /// Updates offered and not confirmed.
    pub fn len(&self) -> usize {
        self.offered.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offered.is_empty()
    }
}

/// The `{"ok":true,"result":[…]}` answer carrying `updates` as they came.
pub fn answer_json(updates: &[Arc<str>]) -> String {
    let mut out = String::with_capacity(24 + updates.iter().map(|u| u.len() + 1).sum::<usize>());
    out.push_str("{\"ok\":true,\"result\":[");
    for (i, update) in updates.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(update);
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(id: u32) -> Arc<str> {
        Arc::from(format!("{{\"update_id\":{id}}}"))
    }

    fn ids(updates: &[Arc<str>]) -> Vec<u32> {
        updates
            .iter()
            .filter_map(|u| {
                u.trim_start_matches("{\"update_id\":")
                    .trim_end_matches('}')
                    .parse()
                    .ok()
            })
            .collect()
    }

    /// A feed holding `offered`, all given to the bot already.
    fn given(offered: &[u32]) -> Feed {
        let mut feed = Feed::default();
        for id in offered {
            assert!(feed.offer(*id, raw(*id)));
        }
        feed.answer(None, MAX_LIMIT);
        feed
    }

    #[test]
    fn offsets_confirm_as_telegrams_do() {
        // (offset, limit) → (confirmed, answered), over updates 10..=14
        // the bot has been given.
        type Case<'a> = (Option<i64>, usize, &'a [u32], &'a [u32]);
        let cases: &[Case] = &[
            (None, 100, &[], &[10, 11, 12, 13, 14]),
            (Some(0), 2, &[], &[10, 11]),
            (Some(12), 100, &[10, 11], &[12, 13, 14]),
            (Some(15), 100, &[10, 11, 12, 13, 14], &[]),
            // Far in the future: ignored, as Telegram's server does.
            (Some(1_000_000), 100, &[], &[10, 11, 12, 13, 14]),
            // The last two stay; the ones before are forgotten.
            (Some(-2), 100, &[10, 11, 12], &[13, 14]),
            (Some(-1), 100, &[10, 11, 12, 13], &[14]),
            (Some(-100), 100, &[], &[10, 11, 12, 13, 14]),
            (Some(i64::MIN), 100, &[], &[10, 11, 12, 13, 14]),
        ];
        for (offset, limit, confirmed, answered) in cases {
            let mut feed = given(&[10, 11, 12, 13, 14]);
            let offset = feed.effective(*offset);
            assert_eq!(feed.confirm(offset), *confirmed, "offset {offset:?}");
            let after = offset.filter(|o| *o > 0);
            assert_eq!(
                ids(&feed.answer(after, *limit)),
                *answered,
                "offset {offset:?}"
            );
            assert_eq!(feed.len(), 5 - confirmed.len());
        }
    }

    #[test]
    fn an_update_stored_late_with_a_lower_id_is_answered_before_it_is_confirmed() {
        let mut feed = Feed::default();
        feed.offer(12, raw(12));
        assert_eq!(ids(&feed.answer(None, MAX_LIMIT)), [12]);
        // The bot moves past 12; then 11 is stored (a webhook's parallel
        // deliveries, another instance's inbox).
        assert_eq!(feed.confirm(feed.effective(Some(13))), [12]);
        feed.offer(11, raw(11));
        assert!(
            feed.confirm(feed.effective(Some(13))).is_empty(),
            "never given"
        );
        assert_eq!(ids(&feed.answer(Some(13), MAX_LIMIT)), [11]);
        // Given now: the bot's next offset (12, past the last it got)
        // confirms it.
        assert_eq!(feed.confirm(feed.effective(Some(12))), [11]);
        assert!(feed.is_empty());
        // Ids that restarted lower after a week: the old offset is far in
        // the future of anything offered since, so nothing is lost.
        let mut feed = Feed::default();
        feed.offer(5, raw(5));
        let offset = feed.effective(Some(900_000));
        assert_eq!(offset, None);
        assert!(feed.confirm(offset).is_empty());
        assert_eq!(ids(&feed.answer(offset, MAX_LIMIT)), [5]);
    }

    #[test]
    fn confirmations_without_a_session_wait_for_the_inbox() {
        let mut feed = given(&[1, 2]);
        let confirmed = feed.confirm(Some(2));
        assert_eq!(confirmed, [1]);
        feed.hold(&confirmed);
        // A new session offers the inbox again: 1 is still there, and goes;
        // 2 stays given.
        feed.restart();
        assert!(!feed.offer(1, raw(1)));
        assert!(feed.offer(2, raw(2)));
        feed.forget_pending();
        assert_eq!(feed.confirm(Some(3)), [2]);
        assert!(feed.offer(1, raw(1)), "a later delivery of 1 is new again");
        assert_eq!(feed.confirm_all(), [1]);
        assert!(feed.is_empty());
    }

    #[test]
    fn a_newer_poll_supersedes_an_older_one() {
        let mut feed = Feed::default();
        let first = feed.begin();
        assert!(feed.is_current(first));
        let second = feed.begin();
        assert!(!feed.is_current(first));
        assert!(feed.is_current(second));
    }

    #[test]
    fn answers_carry_the_updates_as_they_came() {
        assert_eq!(answer_json(&[]), "{\"ok\":true,\"result\":[]}");
        assert_eq!(
            answer_json(&[raw(1), raw(2)]),
            "{\"ok\":true,\"result\":[{\"update_id\":1},{\"update_id\":2}]}"
        );
    }
}
