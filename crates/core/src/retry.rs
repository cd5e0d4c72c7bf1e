//! When to try a failed delivery again.
//!
//! A schedule lists the waits after the first attempt, after the second, and so on; when it runs
//! out, the delivery is dead. Each wait is spread by ±20 % jitter so that a burst of failures does
//! not come back as a burst of retries.

/// The default schedule of the contract: 5 s, 30 s, 2 min, 10 min, 30 min, 1 h, 3 h, 6 h, 12 h
/// (10 attempts in all).
pub const DEFAULT_SCHEDULE_S: [u32; 9] = [5, 30, 120, 600, 1800, 3600, 10_800, 21_600, 43_200];

/// How far a wait may stray from its nominal value.
pub const JITTER: f64 = 0.2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    schedule_s: Vec<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            schedule_s: DEFAULT_SCHEDULE_S.to_vec(),
        }
    }
}

impl RetryPolicy {
    pub fn new(schedule_s: Vec<u32>) -> Self {
        Self { schedule_s }
    }

    /// The wait in milliseconds after attempt number `attempt` (1-based) failed, or `None` when
    /// that was the last one. `unit` is a random number in `[0, 1)` that picks the jitter.
    pub fn delay_after(&self, attempt: u32, unit: f64) -> Option<i64> {
        let nominal = *self.schedule_s.get(attempt.checked_sub(1)? as usize)? as f64 * 1000.0;
        let factor = 1.0 - JITTER + 2.0 * JITTER * unit.clamp(0.0, 1.0);
        Some((nominal * factor).round() as i64)
    }

    pub fn max_attempts(&self) -> u32 {
        self.schedule_s.len() as u32 + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_gives_ten_attempts_with_jitter() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 10);
        assert_eq!(p.delay_after(1, 0.5), Some(5000));
        assert_eq!(p.delay_after(1, 0.0), Some(4000));
        assert_eq!(p.delay_after(1, 1.0), Some(6000));
        assert_eq!(p.delay_after(9, 0.5), Some(43_200_000));
        assert_eq!(p.delay_after(10, 0.5), None);
        assert_eq!(p.delay_after(0, 0.5), None);
    }

    #[test]
    fn override_replaces_the_schedule() {
        let p = RetryPolicy::new(vec![1, 2]);
        assert_eq!(p.delay_after(2, 0.5), Some(2000));
        assert_eq!(p.delay_after(3, 0.5), None);
        assert_eq!(RetryPolicy::new(vec![]).delay_after(1, 0.5), None);
    }
}
