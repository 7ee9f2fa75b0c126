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
    fn reset_starts_over() {
        let mut backoff = Backoff::new(policy(1, 60, 2.0, 0.0));
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
        assert_eq!(backoff.next_delay(), Duration::from_secs(2));
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }
}
