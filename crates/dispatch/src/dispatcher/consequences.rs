//! What attempts lead to beyond their own records, carried out once those records are
//! committed: the settler writes outcomes in batches, then the consequences — a backlog postponed
//! or released by the circuit breaker, the failing streak behind auto-disable, a subscription
//! deleted on "gone", the service's own `posthorn.*` events. Subscriptions change only through the
//! one write path (`SubscriptionWriter`), events only through the `Publisher`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use posthorn_core::subscription::DisabledReason;
use posthorn_core::time::now_ms;
use posthorn_core::{DeliveryId, Subscription, SubscriptionId, Visibility};
use posthorn_store::{AttemptRecord, Claimed, StoreError};
use serde_json::json;
use tokio::sync::mpsc;

use super::{hold, lock, Dispatcher, SETTLE_BATCH};
use crate::fairness::Change;

/// What an attempt leads to beyond its own record, done once that record is committed.
/// Frequent ones are written for a whole settle batch at once; the rest ([`OneOff`]) one by one.
#[derive(Debug)]
pub(super) enum Effect {
    /// The circuit opened: move the backlog out of the queue until then.
    Postpone {
        sub_id: SubscriptionId,
        until: i64,
        failures: u32,
    },
    Failing(Subscription),
    Healthy {
        sub_id: SubscriptionId,
    },
    /// A delivery of this key (`ordered: "key"`) is done: the next of the key may go now.
    NextOfKey {
        sub_id: SubscriptionId,
        key: String,
    },
    OneOff(OneOff),
}

#[derive(Debug)]
pub(super) enum OneOff {
    /// The receiver answered 410: delete the subscription.
    Gone(Subscription),
    /// The delivery is dead.
    Dead {
        delivery_id: DeliveryId,
        event_name: String,
        sub: Subscription,
    },
    /// The circuit closed: the backlog is due.
    Release { sub_id: SubscriptionId },
}

/// What to write after an attempt: its record, and those of deliveries it sent back to the queue.
pub(super) struct Outcome {
    pub(super) records: Vec<AttemptRecord>,
    pub(super) effects: Vec<Effect>,
}

impl From<AttemptRecord> for Outcome {
    fn from(record: AttemptRecord) -> Self {
        Self {
            records: vec![record],
            effects: Vec::new(),
        }
    }
}

/// What the end of an attempt changed of its subscription's health: effects to write, and the
/// deliveries that waited in memory to send back to the queue.
pub(super) fn consequences(
    sub: &Subscription,
    change: Change<Claimed>,
    succeeded: bool,
    records: &mut Vec<AttemptRecord>,
    effects: &mut Vec<Effect>,
) {
    records.extend(change.hold.into_iter().map(|(c, until)| hold(c, until)));
    if let Some(until) = change.opened_until {
        effects.push(Effect::Postpone {
            sub_id: sub.id.clone(),
            until,
            failures: change.failures,
        });
    }
    if change.closed {
        effects.push(Effect::OneOff(OneOff::Release {
            sub_id: sub.id.clone(),
        }));
    }
    match change.failing {
        Some(true) => effects.push(Effect::Failing(sub.clone())),
        Some(false) => effects.push(Effect::Healthy {
            sub_id: sub.id.clone(),
        }),
        None if !succeeded => effects.push(Effect::Failing(sub.clone())),
        None => {}
    }
}

impl Dispatcher {
    pub(super) async fn settle_loop(self, mut outcomes: mpsc::Receiver<Outcome>) {
        let mut batch = Vec::with_capacity(SETTLE_BATCH);
        while outcomes.recv_many(&mut batch, SETTLE_BATCH).await > 0 {
            let records: Arc<[AttemptRecord]> = batch
                .iter()
                .flat_map(|o| o.records.iter().cloned())
                .collect();
            let mut tries = 0;
            let settled = loop {
                match self
                    .store
                    .settle(&self.config.process_id, records.clone())
                    .await
                {
                    Ok(written) => {
                        // The rest were taken over by another process after our lease ran out.
                        let lost = records.len().saturating_sub(written);
                        if lost > 0 {
                            metrics::counter!(posthorn_core::metric::LEASES_LOST)
                                .increment(lost as u64);
                        }
                        break true;
                    }
                    Err(e) if tries < 5 => {
                        tries += 1;
                        tracing::warn!(error = %e, "recording attempts failed; retrying");
                        tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                    }
                    Err(e) => {
                        // The leases will expire and these deliveries will be attempted again.
                        tracing::error!(error = %e, deliveries = batch.len(), "recording attempts failed; they will be attempted again");
                        break false;
                    }
                }
            };
            if settled {
                let effects = batch.drain(..).flat_map(|o| o.effects).collect();
                self.apply_all(effects).await;
            }
            batch.clear();
        }
    }

    /// Carries out what a batch of attempts led to, once their records are committed: the
    /// frequent effects (backlogs postponed, failing streaks) with one statement for the whole
    /// batch, so that a storm of failures costs a few writes, not one per failure; the rest one
    /// by one, in order.
    async fn apply_all(&self, effects: Vec<Effect>) {
        let mut postpone = Vec::new();
        // The last word on each subscription's streak: failing (with the subscription) or not.
        let mut streak: HashMap<SubscriptionId, Option<Subscription>> = HashMap::new();
        let mut rest = Vec::new();
        let mut next_of_key = Vec::new();
        for effect in effects {
            match effect {
                Effect::NextOfKey { sub_id, key } => next_of_key.push((sub_id, key)),
                Effect::Postpone {
                    sub_id,
                    until,
                    failures,
                } => postpone.push((sub_id, until, failures)),
                Effect::Failing(sub) => {
                    streak.insert(sub.id.clone(), Some(sub));
                }
                Effect::Healthy { sub_id } => {
                    streak.insert(sub_id, None);
                }
                Effect::OneOff(one) => rest.push(one),
            }
        }
        let warn = |e: StoreError| {
            tracing::warn!(error = %e, "a consequence of an attempt could not be written");
        };
        if !next_of_key.is_empty() {
            match self.store.release_next(&next_of_key).await {
                Ok(n) if n > 0 => self.wake(),
                Ok(_) => {}
                Err(e) => warn(e),
            }
        }
        if !postpone.is_empty() {
            match self.store.postpone_backlogs(&postpone).await {
                Ok(n) => tracing::info!(
                    subscriptions = postpone.len(),
                    postponed = n,
                    "circuit open: backlog postponed"
                ),
                Err(e) => warn(e),
            }
        }
        let (failing, healthy): (Vec<SubscriptionId>, Vec<SubscriptionId>) =
            streak.keys().cloned().partition(|id| streak[id].is_some());
        if !healthy.is_empty() {
            if let Err(e) = self.store.mark_healthy(&healthy).await {
                warn(e);
            }
        }
        if !failing.is_empty() {
            match self.store.mark_failing(&failing).await {
                Ok(since) => {
                    let limit = self.config.disable_after.as_millis() as i64;
                    let now = now_ms();
                    for (id, since) in since {
                        if now - since < limit {
                            continue;
                        }
                        if let Some(Some(sub)) = streak.remove(&id) {
                            if let Err(e) = self.disable_failing(sub).await {
                                warn(e);
                            }
                        }
                    }
                }
                Err(e) => warn(e),
            }
        }
        for effect in rest {
            if let Err(e) = self.apply(effect).await {
                warn(e);
            }
        }
    }

    /// Carries out one of the rarer things an attempt led to, once its record is committed.
    async fn apply(&self, effect: OneOff) -> Result<(), StoreError> {
        match effect {
            OneOff::Release { sub_id } => {
                self.store.release_backlog(&sub_id).await?;
                self.wake();
                tracing::info!(subscription = %sub_id, "circuit closed: backlog released");
            }
            OneOff::Gone(sub) => {
                if self.writer.delete(&sub.id).await? {
                    // Whatever still waited in memory was cancelled with the subscription.
                    let left = self.fairness.forget(&sub.id);
                    {
                        let mut claimed = lock(&self.claimed);
                        for c in left {
                            claimed.remove(&c.delivery_id);
                        }
                    }
                    tracing::info!(subscription = %sub.id, "the receiver answered 410: subscription deleted");
                    self.emit(
                        "posthorn.subscription.deleted",
                        &sub.owner,
                        json!({"subscription_id": sub.id, "reason": "gone"}),
                    )
                    .await?;
                }
            }
            OneOff::Dead {
                delivery_id,
                event_name,
                sub,
            } => {
                // Never about the service's own events, so that their deaths do not chain.
                if !event_name.starts_with("posthorn.") {
                    self.emit("posthorn.delivery.dead", &sub.owner,
                        json!({"subscription_id": sub.id, "delivery_id": delivery_id, "event_name": event_name})).await?;
                }
            }
        }
        Ok(())
    }

    async fn disable_failing(&self, sub: Subscription) -> Result<(), StoreError> {
        let seen = Visibility::Everything;
        let Some(mut current) = self.store.subscription(&seen, &sub.id).await? else {
            return Ok(());
        };
        if !current.is_active() {
            return Ok(());
        }
        current.spec.enabled = false;
        current.disabled_reason = Some(DisabledReason::Failing);
        if let Some(current) = self.writer.save(current).await? {
            tracing::warn!(subscription = %current.id, "deliveries have failed for too long: subscription disabled");
            self.emit(
                "posthorn.subscription.disabled",
                &current.owner,
                json!({"subscription_id": current.id, "reason": "failing"}),
            )
            .await?;
        }
        Ok(())
    }

    /// Publishes one of the service's own events to the owner's subscriptions that name it.
    async fn emit(
        &self,
        name: &str,
        owner: &str,
        data: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.publisher.emit(name, owner, data).await
    }
}
