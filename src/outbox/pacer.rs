//! When the next message may go: Telegram's limits as a pure schedule.
//!
//! Three limits, each kept with a small margin so that a message arriving a
//! few milliseconds early at Telegram still fits: a gap between two messages
//! to one chat (1 s), a sliding window of messages to one group, supergroup
//! or channel (20 a minute; groups have negative ids), and an even spacing of
//! the bot's messages overall (30 a second). A 429 that still comes pauses a
//! chat or the whole bot until a given instant. Nothing here sleeps or
//! sends: the sender asks and records.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::OutboxSettings;

/// Added to every limit's period: Telegram counts arrivals, and ours arrive
/// a little apart from when we sent them.
pub const MARGIN: Duration = Duration::from_millis(50);
/// The margin of the bot's overall limit, smaller: it spaces every
/// message of the bot, so its margin is paid on each one, and 50 ms would
/// leave only 95 % of Telegram's 30 a second (a backlog is sent at 98 %).
pub const GLOBAL_MARGIN: Duration = Duration::from_millis(20);
const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// The limits in force, from `[supervisor.outbox]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The shortest gap between two messages to one chat.
    pub per_chat_gap: Option<Duration>,
    /// Messages to one group in any minute (plus the margin).
    pub per_group_per_minute: Option<usize>,
    /// The shortest gap between two messages of the bot.
    pub global_gap: Option<Duration>,
    /// Messages of the bot in any second: the spacing lets a late send be
    /// followed closer than the gap, so the window is kept too.
    pub per_bot_per_second: Option<usize>,
}

impl Limits {
    /// No limit at all.
    pub const OFF: Limits = Limits {
        per_chat_gap: None,
        per_group_per_minute: None,
        global_gap: None,
        per_bot_per_second: None,
    };

    pub fn from_settings(settings: &OutboxSettings) -> Limits {
        if !settings.pacing {
            return Limits::OFF;
        }
        let gap = |per_second: u32, margin: Duration| {
            (per_second > 0).then(|| (SECOND + margin) / per_second)
        };
        Limits {
            per_chat_gap: gap(settings.per_chat_per_second, MARGIN),
            per_group_per_minute: (settings.per_group_per_minute > 0)
                .then(|| usize::try_from(settings.per_group_per_minute).unwrap_or(usize::MAX)),
            global_gap: gap(settings.per_bot_per_second, GLOBAL_MARGIN),
            per_bot_per_second: (settings.per_bot_per_second > 0)
                .then(|| usize::try_from(settings.per_bot_per_second).unwrap_or(usize::MAX)),
        }
    }
}

#[derive(Default)]
struct ChatPace {
    /// The earliest the next message to this chat may go.
    next: Option<Instant>,
    /// Paused by a 429 for this chat until then.
    paused_until: Option<Instant>,
    /// When the messages to this group within the last minute went.
    group: VecDeque<Instant>,
}

/// One bot's schedule.
pub struct Pacer {
    limits: Limits,
    global_next: Option<Instant>,
    /// When the bot's last `per_bot_per_second` messages went.
    recent: VecDeque<Instant>,
    paused_until: Option<Instant>,
    chats: HashMap<i64, ChatPace>,
}

impl Pacer {
    pub fn new(limits: Limits) -> Pacer {
        Pacer {
            limits,
            global_next: None,
            recent: VecDeque::new(),
            paused_until: None,
            chats: HashMap::new(),
        }
    }

    /// The earliest any message of the bot may go (not before `now`).
    pub fn global_next(&self, now: Instant) -> Instant {
        // No second holds more than the bot's share, however late the
        // sends before were.
        let window = self.limits.per_bot_per_second.and_then(|n| {
            let first = self.recent.len().checked_sub(n)?;
            self.recent
                .get(first)
                .map(|at| *at + SECOND + GLOBAL_MARGIN)
        });
        [self.global_next, self.paused_until, window]
            .into_iter()
            .flatten()
            .fold(now, Instant::max)
    }

    /// The earliest a message to `chat` may go as far as the chat's own
    /// limits say (not before `now`).
    pub fn chat_next(&self, chat: i64, now: Instant) -> Instant {
        let Some(pace) = self.chats.get(&chat) else {
            return now;
        };
        let mut at = [pace.next, pace.paused_until]
            .into_iter()
            .flatten()
            .fold(now, Instant::max);
        if let Some(max) = self.limits.per_group_per_minute
            && chat < 0
            && pace.group.len() >= max
            && let Some(oldest) = pace.group.get(pace.group.len() - max)
        {
            at = at.max(*oldest + MINUTE + MARGIN);
        }
        at
    }

    /// A message to `chat` goes at `at`.
    pub fn record(&mut self, chat: i64, at: Instant) {
        self.record_weighted(chat, at, 1);
    }

    /// A call that Telegram counts as `weight` messages (an album of ten
    /// photos, a hundred forwarded messages) goes to `chat` at `at`: the
    /// bot's spacing and the group's window take all of them.
    pub fn record_weighted(&mut self, chat: i64, at: Instant, weight: u32) {
        let weight = weight.max(1);
        if let Some(gap) = self.limits.global_gap {
            // Spaced from the slot, not from when the sender woke: a send a
            // few milliseconds late does not push every later one back (a
            // slot is never used twice, so any window of a second still
            // holds at most one more than its share).
            let base = match self.global_next {
                Some(slot) if at < slot + gap => slot,
                _ => at,
            };
            self.global_next = Some(base + gap * weight);
        }
        if let Some(n) = self.limits.per_bot_per_second {
            for _ in 0..weight.min(u32::try_from(n).unwrap_or(u32::MAX)) {
                self.recent.push_back(at);
            }
            while self.recent.len() > n {
                self.recent.pop_front();
            }
        }
        if self.limits.per_chat_gap.is_none() && self.limits.per_group_per_minute.is_none() {
            return;
        }
        let pace = self.chats.entry(chat).or_default();
        if let Some(gap) = self.limits.per_chat_gap {
            pace.next = Some(at + gap);
        }
        if let Some(max) = self.limits.per_group_per_minute
            && chat < 0
        {
            while pace
                .group
                .front()
                .is_some_and(|t| at.saturating_duration_since(*t) >= MINUTE + MARGIN)
            {
                pace.group.pop_front();
            }
            for _ in 0..weight {
                pace.group.push_back(at);
            }
            while pace.group.len() > max {
                pace.group.pop_front();
            }
        }
    }

    /// Telegram said 429 for `chat`: nothing goes to it before `until`.
    pub fn pause_chat(&mut self, chat: i64, until: Instant) {
        let pace = self.chats.entry(chat).or_default();
        pace.paused_until = Some(pace.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Telegram's limit for the whole bot: nothing goes before `until`.
    pub fn pause_all(&mut self, until: Instant) {
        self.paused_until = Some(self.paused_until.map_or(until, |p| p.max(until)));
    }

    /// Forgets chats whose every limit lies in the past, so the schedule
    /// stays as small as the set of chats written to in the last minute.
    pub fn forget_idle(&mut self, now: Instant) {
        self.chats.retain(|_, pace| {
            pace.next.is_some_and(|t| t > now)
                || pace.paused_until.is_some_and(|t| t > now)
                || pace
                    .group
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < MINUTE + MARGIN)
        });
    }

    /// Chats the schedule remembers.
    pub fn remembered(&self) -> usize {
        self.chats.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn telegram() -> Limits {
        Limits::from_settings(&OutboxSettings::default())
    }

    /// Sends `count` messages to `chat` as early as the pacer allows; the
    /// offsets from `start` in milliseconds.
    fn schedule(pacer: &mut Pacer, chats: &[i64], start: Instant) -> Vec<u64> {
        chats
            .iter()
            .map(|chat| {
                let at = pacer.global_next(start).max(pacer.chat_next(*chat, start));
                pacer.record(*chat, at);
                u64::try_from(at.duration_since(start).as_millis()).unwrap_or(u64::MAX)
            })
            .collect()
    }

    #[test]
    fn the_schedule_keeps_telegrams_limits() {
        let start = Instant::now();
        // (limits, chats in order, expected send times in ms)
        let group = vec![-5_i64; 22];
        let cases: Vec<(Limits, Vec<i64>, Vec<u64>)> = vec![
            // Different private chats: evenly spaced at 1.02 s / 30 = 34 ms.
            (telegram(), vec![1, 2, 3], vec![0, 34, 68]),
            // One chat: 1.05 s apart.
            (telegram(), vec![7, 7, 7], vec![0, 1050, 2100]),
            // One group: 20 at 1.05 s apart, the 21st a minute (and the
            // margin) after the first, the 22nd after the second.
            (telegram(), group, {
                let mut t: Vec<u64> = (0..20).map(|i| i * 1050).collect();
                t.push(60_050);
                t.push(61_100);
                t
            }),
            // Off: everything at once.
            (Limits::OFF, vec![-5, -5, 1, 1], vec![0, 0, 0, 0]),
        ];
        for (limits, chats, expected) in cases {
            let mut pacer = Pacer::new(limits);
            assert_eq!(schedule(&mut pacer, &chats, start), expected, "{chats:?}");
        }
    }

    #[test]
    fn pauses_hold_back_a_chat_or_everything() {
        let start = Instant::now();
        let mut pacer = Pacer::new(Limits::OFF);
        pacer.pause_chat(1, start + Duration::from_secs(3));
        assert_eq!(pacer.chat_next(1, start), start + Duration::from_secs(3));
        assert_eq!(pacer.chat_next(2, start), start);
        pacer.pause_all(start + Duration::from_secs(2));
        assert_eq!(pacer.global_next(start), start + Duration::from_secs(2));
        pacer.forget_idle(start + Duration::from_secs(4));
        assert_eq!(pacer.remembered(), 0);
    }

    #[test]
    fn an_album_counts_as_its_items() {
        let start = Instant::now();
        let mut pacer = Pacer::new(telegram());
        // Ten photos to a group, then ten single messages: the window of 20
        // a minute is full after the album and nine more.
        pacer.record_weighted(-5, start, 10);
        assert_eq!(pacer.global_next(start), start + Duration::from_millis(340));
        let times = schedule(&mut pacer, &[-5; 11], start);
        assert_eq!(
            times[..10],
            [1050, 2100, 3150, 4200, 5250, 6300, 7350, 8400, 9450, 10500]
        );
        assert_eq!(times[10], 60_050, "{times:?}");
    }

    #[test]
    fn late_sends_never_put_more_than_the_share_in_one_second() {
        let mut pacer = Pacer::new(telegram());
        let start = Instant::now();
        // The first send goes 30 ms late (less than a gap); every later one
        // on its slot.
        let mut first = None;
        for chat in 0..30 {
            let at =
                pacer.global_next(start) + Duration::from_millis(if chat == 0 { 30 } else { 0 });
            first.get_or_insert(at);
            pacer.record(chat, at);
        }
        let first = first.expect("sent");
        assert!(
            pacer.global_next(start) >= first + SECOND,
            "the 31st would share a second with the first"
        );
    }
}
