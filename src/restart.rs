//! Backoff arithmetic for restarts and retries: pure functions of the policy
//! and the attempt number, with the random part passed in, so they can be
//! tested as tables.

use std::time::Duration;

use crate::config::RestartPolicy;

/// Exponential backoff with jitter over a [`RestartPolicy`].
#[derive(Clone, Debug)]
pub struct Backoff {
    policy: RestartPolicy,
    attempt: u32,
}

impl Backoff {
    pub fn new(policy: RestartPolicy) -> Backoff {
        Backoff { policy, attempt: 0 }
    }

    /// The next wait, jittered at random; each call grows the base wait.
    pub fn next_delay(&mut self) -> Duration {
        let unit: f64 = rand::random();
        let delay = delay_for(&self.policy, self.attempt, unit);
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Starts again from `initial_backoff` (after a success).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// The wait before retry number `attempt` (0-based): `initial * multiplier^attempt`
/// capped at `max`, then moved by up to `±jitter` of itself. `unit` is a
/// random number in `[0, 1)`; 0.5 means no jitter.
pub fn delay_for(policy: &RestartPolicy, attempt: u32, unit: f64) -> Duration {
    let initial = policy.initial_backoff.as_secs_f64();
    let max = policy.max_backoff.as_secs_f64();
    let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
    let base = (initial * policy.multiplier.powi(exponent)).min(max);
    let factor = 1.0 + policy.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
    Duration::from_secs_f64((base * factor).clamp(0.0, max * (1.0 + policy.jitter)))
}

/// Counts restarts in a sliding window: more than `max_restarts` within
/// `window` means the bot should be parked.
#[derive(Clone, Debug)]
pub struct Intensity {
    max_restarts: u32,
    window: Duration,
    recent: std::collections::VecDeque<std::time::Instant>,
}

impl Intensity {
    pub fn new(policy: &RestartPolicy) -> Intensity {
        Intensity {
            max_restarts: policy.max_restarts,
            window: policy.window,
            recent: std::collections::VecDeque::new(),
        }
    }

    /// Records a failure at `now`; true when the failures within the window
    /// now exceed `max_restarts`.
    pub fn record(&mut self, now: std::time::Instant) -> bool {
        while let Some(first) = self.recent.front() {
            if now.saturating_duration_since(*first) > self.window {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back(now);
        self.recent.len() > self.max_restarts as usize
    }

    /// Records a failure at `now`; how many failures the window holds now,
    /// this one included.
    pub fn count(&mut self, now: std::time::Instant) -> u32 {
        self.record(now);
        u32::try_from(self.recent.len()).unwrap_or(u32::MAX)
    }

    /// Forgets every recorded failure (after a park).
    pub fn clear(&mut self) {
        self.recent.clear();
    }
}

/// The wait after the `n`-th consecutive 409 Conflict (0-based): from 3 s,
/// doubling, moved by up to ±20 % (`unit` in `[0, 1)`), capped at `cap`, and
/// never under the 3 s Telegram itself waits between two 409s.
pub fn conflict_delay(n: u32, cap: Duration, unit: f64) -> Duration {
    const FIRST: f64 = 3.0;
    let exponent = i32::try_from(n.min(30)).unwrap_or(30);
    let base = (FIRST * 2f64.powi(exponent)).min(cap.as_secs_f64().max(FIRST));
    let jittered = base * (1.0 + 0.2 * (2.0 * unit.clamp(0.0, 1.0) - 1.0));
    Duration::from_secs_f64(jittered.min(cap.as_secs_f64()).max(FIRST))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(initial: u64, max: u64, multiplier: f64, jitter: f64) -> RestartPolicy {
        RestartPolicy {
            initial_backoff: Duration::from_secs(initial),
            max_backoff: Duration::from_secs(max),
            multiplier,
            jitter,
            ..RestartPolicy::default()
        }
    }

    #[test]
    fn delays_grow_then_cap_and_jitter_stays_in_bounds() {
        let cases = [
            // (initial, max, multiplier, jitter, attempt, unit, expected seconds)
            (1, 60, 2.0, 0.0, 0, 0.5, 1.0),
            (1, 60, 2.0, 0.0, 1, 0.5, 2.0),
            (1, 60, 2.0, 0.0, 5, 0.5, 32.0),
            (1, 60, 2.0, 0.0, 6, 0.5, 60.0),
            (1, 60, 2.0, 0.0, 500, 0.5, 60.0),
            (2, 60, 1.0, 0.0, 9, 0.5, 2.0),
            (10, 60, 2.0, 0.2, 0, 0.0, 8.0),
            (10, 60, 2.0, 0.2, 0, 1.0, 12.0),
            (10, 60, 2.0, 0.2, 0, 0.5, 10.0),
        ];
        for (initial, max, multiplier, jitter, attempt, unit, expected) in cases {
            let got = delay_for(&policy(initial, max, multiplier, jitter), attempt, unit);
            assert!(
                (got.as_secs_f64() - expected).abs() < 1e-9,
                "attempt {attempt} unit {unit}: got {got:?}, expected {expected}s"
            );
        }
    }

    #[test]
    fn intensity_parks_after_too_many_restarts_in_the_window() {
        let policy = RestartPolicy {
            max_restarts: 3,
            window: Duration::from_secs(60),
            ..RestartPolicy::default()
        };
        let start = std::time::Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        // (seconds since start, exceeded?)
        let cases = [
            (0, false),
            (10, false),
            (20, false),
            (30, true),
            (95, false),
            (96, false),
            (97, false),
            (98, true),
        ];
        let mut intensity = Intensity::new(&policy);
        for (second, expected) in cases {
            assert_eq!(
                intensity.record(at(second)),
                expected,
                "failure at {second}s"
            );
        }
        intensity.clear();
        assert!(!intensity.record(at(99)));
    }

    #[test]
    fn conflict_delays_start_at_three_seconds_and_cap() {
        let cap = Duration::from_secs(60);
        let cases = [
            (0, 0.5, 3.0),
            (1, 0.5, 6.0),
            (2, 0.5, 12.0),
            (4, 0.5, 48.0),
            (5, 0.5, 60.0),
            (9, 0.5, 60.0),
            (0, 0.0, 3.0),
            (5, 1.0, 60.0),
            (4, 1.0, 57.6),
            (5, 0.0, 48.0),
        ];
        for (n, unit, expected) in cases {
            let got = conflict_delay(n, cap, unit).as_secs_f64();
            assert!(
                (got - expected).abs() < 1e-9,
                "n={n} unit={unit}: got {got}, expected {expected}"
            );
        }
        assert_eq!(
            conflict_delay(3, Duration::from_secs(1), 0.5),
            Duration::from_secs(3)
        );
    }

    #[test]
    fn reset_starts_over() {
        let mut backoff = Backoff::new(policy(1, 60, 2.0, 0.0));
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
        assert_eq!(backoff.next_delay(), Duration::from_secs(2));
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }
}
