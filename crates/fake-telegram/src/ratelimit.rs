//! Optional flood limits like Telegram's, as sliding windows per bot token:
//! messages per chat per second, messages per group per minute, and messages
//! per second overall. A send beyond a limit gets 429 `Too Many Requests:
//! retry after N`, N being the whole seconds until a slot frees (at least 1).

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Which limits are on. `None` (or `Some(0)`) turns a limit off; the
/// [`Default`] turns all of them off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateLimits {
    /// At most this many messages to one chat in any 1 s.
    pub per_chat_per_second: Option<u32>,
    /// At most this many messages to one group, supergroup or channel
    /// (negative chat id) in any 60 s.
    pub per_group_per_minute: Option<u32>,
    /// At most this many messages from one bot token in any 1 s.
    pub global_per_second: Option<u32>,
}

impl RateLimits {
    /// Telegram's documented limits: 1/s per chat, 20/min per group, 30/s
    /// overall.
    pub fn telegram() -> Self {
        RateLimits {
            per_chat_per_second: Some(1),
            per_group_per_minute: Some(20),
            global_per_second: Some(30),
        }
    }

    /// No limits (the default).
    pub fn disabled() -> Self {
        RateLimits::default()
    }

    /// Whether any limit is on.
    pub fn is_enabled(&self) -> bool {
        [
            self.per_chat_per_second,
            self.per_group_per_minute,
            self.global_per_second,
        ]
        .iter()
        .any(|l| l.is_some_and(|n| n > 0))
    }
}

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

#[derive(Default)]
struct BotWindows {
    global: VecDeque<Instant>,
    per_chat: HashMap<i64, VecDeque<Instant>>,
    per_group: HashMap<i64, VecDeque<Instant>>,
}

/// The windows of every bot.
#[derive(Default)]
pub(crate) struct RateLimiter {
    limits: RateLimits,
    bots: HashMap<String, BotWindows>,
}

impl RateLimiter {
    pub fn set_limits(&mut self, limits: RateLimits) {
        self.limits = limits;
        self.bots.clear();
    }

    /// Counts a message from `token` to `chat_id` sent at `now`, or answers
    /// with the whole seconds to wait (≥ 1) when a limit is reached; a
    /// rejected message is not counted.
    #[cfg(test)]
    pub fn admit(&mut self, token: &str, chat_id: i64, now: Instant) -> Result<(), u32> {
        self.admit_n(token, chat_id, 1, now)
    }

    /// Counts `n` messages (a media group) at once: all of them, or none
    /// and the whole seconds to wait (≥ 1) until all would fit. More than a
    /// limit allows never fit; they get the wait for an empty window.
    pub fn admit_n(
        &mut self,
        token: &str,
        chat_id: i64,
        n: usize,
        now: Instant,
    ) -> Result<(), u32> {
        if !self.limits.is_enabled() || n == 0 {
            return Ok(());
        }
        let limits = self.limits;
        let bot = match self.bots.get_mut(token) {
            Some(b) => b,
            None => self.bots.entry(token.to_owned()).or_default(),
        };
        let mut wait = Duration::ZERO;
        let global = limit(limits.global_per_second).map(|l| (&mut bot.global, l, SECOND));
        let chat = limit(limits.per_chat_per_second)
            .map(|l| (bot.per_chat.entry(chat_id).or_default(), l, SECOND));
        let group = limit(limits.per_group_per_minute)
            .filter(|_| chat_id < 0)
            .map(|l| (bot.per_group.entry(chat_id).or_default(), l, MINUTE));
        let mut windows: Vec<(&mut VecDeque<Instant>, usize, Duration)> =
            [global, chat, group].into_iter().flatten().collect();
        for (w, l, span) in windows.iter_mut() {
            while w.front().is_some_and(|t| now.duration_since(*t) >= *span) {
                w.pop_front();
            }
            if w.len() + n > *l {
                // Room for n frees when the (len + n - l)-th oldest entry
                // leaves the window (all of them, if n alone is too many).
                let leaving = (w.len() + n - *l).min(w.len());
                wait = wait.max(match leaving.checked_sub(1).and_then(|i| w.get(i)) {
                    Some(t) => (*t + *span).saturating_duration_since(now),
                    None => *span,
                });
            }
        }
        if wait > Duration::ZERO {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            return Err(u32::try_from(secs.max(1)).unwrap_or(u32::MAX));
        }
        for (w, _, _) in windows {
            w.extend(std::iter::repeat_n(now, n));
        }
        Ok(())
    }
}

fn limit(l: Option<u32>) -> Option<usize> {
    l.filter(|n| *n > 0)
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_chat_window_slides() {
        let mut r = RateLimiter::default();
        r.set_limits(RateLimits {
            per_chat_per_second: Some(2),
            ..RateLimits::default()
        });
        let t0 = Instant::now();
        assert!(r.admit("t", 1, t0).is_ok());
        assert!(r.admit("t", 1, t0 + Duration::from_millis(100)).is_ok());
        assert_eq!(r.admit("t", 1, t0 + Duration::from_millis(200)), Err(1));
        // Another chat is independent.
        assert!(r.admit("t", 2, t0 + Duration::from_millis(200)).is_ok());
        // After the first entry leaves the window, one slot frees.
        assert!(r.admit("t", 1, t0 + Duration::from_millis(1000)).is_ok());
        assert!(r.admit("t", 1, t0 + Duration::from_millis(1050)).is_err());
    }

    #[test]
    fn group_minute_window_reports_seconds() {
        let mut r = RateLimiter::default();
        r.set_limits(RateLimits {
            per_group_per_minute: Some(2),
            ..RateLimits::default()
        });
        let t0 = Instant::now();
        assert!(r.admit("t", -5, t0).is_ok());
        assert!(r.admit("t", -5, t0).is_ok());
        assert_eq!(r.admit("t", -5, t0 + Duration::from_millis(500)), Err(60));
        // Private chats are not groups.
        assert!(r.admit("t", 5, t0).is_ok());
        assert!(r.admit("t", 5, t0).is_ok());
        assert!(r.admit("t", 5, t0).is_ok());
    }

    #[test]
    fn groups_are_counted_all_or_nothing() {
        let mut r = RateLimiter::default();
        r.set_limits(RateLimits {
            per_chat_per_second: Some(3),
            ..RateLimits::default()
        });
        let t0 = Instant::now();
        assert!(r.admit_n("t", 1, 2, t0).is_ok());
        // Two more do not fit, and nothing is counted.
        assert_eq!(
            r.admit_n("t", 1, 2, t0 + Duration::from_millis(100)),
            Err(1)
        );
        assert!(r.admit("t", 1, t0 + Duration::from_millis(100)).is_ok());
        assert!(r.admit("t", 1, t0 + Duration::from_millis(100)).is_err());
        // More than the limit never fits.
        assert!(r.admit_n("t", 2, 4, t0).is_err());
        assert!(r.admit_n("t", 2, 3, t0).is_ok());
    }

    #[test]
    fn disabled_admits_everything() {
        let mut r = RateLimiter::default();
        let t0 = Instant::now();
        for _ in 0..1000 {
            assert!(r.admit("t", 1, t0).is_ok());
        }
    }
}
