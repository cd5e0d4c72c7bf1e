//! Per-subscription attempt counts, for `/metrics`, with a bounded number of series: the
//! dispatcher counts every attempt here, and a scrape shows the `top` subscriptions by failures
//! under their own label and the rest summed under one, so that 100,000 subscriptions make at
//! most `top + 1` series per outcome, not 100,000.

use foldhash::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Attempts that succeeded and failed, since the process started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub succeeded: u64,
    pub failed: u64,
}

/// Shared between the dispatcher (which counts) and the API (which shows).
#[derive(Debug, Clone, Default)]
pub struct SubscriptionTally(Arc<Mutex<HashMap<Box<str>, Counts>>>);

/// What a scrape shows: the subscriptions with the most failures, each with its counts, and the
/// sum of all the others.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TopFailing {
    pub top: Vec<(String, Counts)>,
    pub others: Counts,
    /// How many subscriptions `others` sums.
    pub others_count: usize,
}

impl SubscriptionTally {
    fn lock(&self) -> MutexGuard<'_, HashMap<Box<str>, Counts>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn record(&self, subscription_id: &str, succeeded: bool) {
        let mut map = self.lock();
        let counts = match map.get_mut(subscription_id) {
            Some(c) => c,
            None => map.entry(subscription_id.into()).or_default(),
        };
        if succeeded {
            counts.succeeded += 1;
        } else {
            counts.failed += 1;
        }
    }

    /// A deleted subscription's counts join no series any more.
    pub fn forget(&self, subscription_id: &str) {
        self.lock().remove(subscription_id);
    }

    /// The `top` subscriptions with the most failed attempts (ties by id, so a scrape is stable),
    /// and the sum of the rest. Subscriptions that never failed are never in the top.
    pub fn top_failing(&self, top: usize) -> TopFailing {
        let mut all: Vec<(String, Counts)> = self
            .lock()
            .iter()
            .map(|(id, c)| (id.to_string(), *c))
            .collect();
        let order = |a: &(String, Counts), b: &(String, Counts)| {
            b.1.failed.cmp(&a.1.failed).then_with(|| a.0.cmp(&b.0))
        };
        let head = top.min(all.len());
        if all.len() > top && top > 0 {
            all.select_nth_unstable_by(top - 1, order);
        }
        all[..head].sort_by(order);
        // Sorted by failures: those that failed at all come first.
        let split = all[..head].iter().take_while(|(_, c)| c.failed > 0).count();
        let rest = all.split_off(split);
        let mut others = Counts::default();
        for (_, c) in &rest {
            others.succeeded += c.succeeded;
            others.failed += c.failed;
        }
        TopFailing {
            top: all,
            others,
            others_count: rest.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_by_failures_and_the_rest_summed() {
        let t = SubscriptionTally::default();
        for i in 0..10_000 {
            let id = format!("sub_{i:05}");
            t.record(&id, true);
            for _ in 0..(i % 7) {
                t.record(&id, false);
            }
        }
        let shown = t.top_failing(5);
        assert_eq!(shown.top.len(), 5);
        assert!(shown.top.iter().all(|(_, c)| c.failed == 6));
        // Ties by id: the first five with 6 failures.
        assert_eq!(shown.top[0].0, "sub_00006");
        assert_eq!(shown.top[1].0, "sub_00013");
        assert_eq!(shown.others_count, 9_995);
        let total_failed: u64 = (0..10_000u64).map(|i| i % 7).sum();
        assert_eq!(shown.others.failed + 30, total_failed);
        assert_eq!(shown.others.succeeded + 5, 10_000);
    }

    #[test]
    fn subscriptions_that_never_failed_stay_in_the_rest() {
        let t = SubscriptionTally::default();
        t.record("a", true);
        t.record("b", false);
        let shown = t.top_failing(10);
        assert_eq!(
            shown.top,
            vec![(
                "b".to_string(),
                Counts {
                    succeeded: 0,
                    failed: 1
                }
            )]
        );
        assert_eq!(
            shown.others,
            Counts {
                succeeded: 1,
                failed: 0
            }
        );
        t.forget("b");
        assert!(t.top_failing(10).top.is_empty());
    }
}
