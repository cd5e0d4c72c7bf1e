//! `GET /v1/stats/deliveries`: what the dashboard's charts draw, aggregated by the database.

use axum::extract::{RawQuery, State};
use axum::Json;
use posthorn_core::time::{now_ms, to_rfc3339};
use posthorn_core::Invalid;
use posthorn_store::DURATION_BOUNDS_MS;
use posthorn_wire::api::{DeliveryStats, OutcomeCounts, Percentiles, StatsBucket};

use crate::auth::{Can, ManageSubscriptions};
use crate::error::{ApiResult, Problem};
use crate::list::Query;
use crate::AppState;

const CLASSES: usize = DURATION_BOUNDS_MS.len() + 1;

/// Attempts of the caller's deliveries over the last hour (per minute) or day (per half hour):
/// counts by outcome and duration percentiles, per bucket and for the whole window.
#[utoipa::path(get, operation_id = "deliveryStats", path = "/v1/stats/deliveries", tag = "deliveries",
    params(("window" = Option<String>, Query, description = "`hour` (default) or `day`"),
        ("subscription_id" = Option<String>, Query, description = "Only this subscription's attempts")),
    responses((status = 200, body = DeliveryStats), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn deliveries(
    State(state): State<AppState>,
    caller: Can<ManageSubscriptions>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<DeliveryStats>> {
    let q = Query::parse(raw.as_deref());
    let (window, bucket_ms, buckets): (&str, i64, i64) = match q.get("window").unwrap_or("hour") {
        "hour" => ("hour", 60_000, 60),
        "day" => ("day", 1_800_000, 48),
        _ => return Err(Invalid::one("window", "must be hour or day").into()),
    };
    // Whole buckets: the last one holds now.
    let end = (now_ms() / bucket_ms + 1) * bucket_ms;
    let from = end - bucket_ms * buckets;
    let counts = state
        .store
        .attempt_counts(
            &caller.visibility(),
            q.get("subscription_id"),
            from,
            bucket_ms,
            buckets,
        )
        .await?;
    let mut per_bucket = vec![(OutcomeCounts::default(), [0u64; CLASSES]); buckets as usize];
    let mut all = (OutcomeCounts::default(), [0u64; CLASSES]);
    for c in counts {
        let i = ((c.bucket - from) / bucket_ms).clamp(0, buckets - 1) as usize;
        let n = c.count.max(0) as u64;
        for (outcomes, classes) in [&mut per_bucket[i], &mut all].map(|(o, h)| (o, h)) {
            match c.outcome.as_str() {
                "success" => outcomes.success += n,
                "retry" => outcomes.retry += n,
                _ => outcomes.r#final += n,
            }
            classes[c.class.min(CLASSES - 1)] += n;
        }
    }
    Ok(Json(DeliveryStats {
        window: window.to_owned(),
        bucket_s: (bucket_ms / 1000) as u32,
        buckets: per_bucket
            .iter()
            .enumerate()
            .map(|(i, (outcomes, classes))| StatsBucket {
                at: to_rfc3339(from + i as i64 * bucket_ms),
                outcomes: *outcomes,
                latency_ms: percentiles(classes),
            })
            .collect(),
        totals: all.0,
        latency_ms: percentiles(&all.1),
    }))
}

/// Each percentile as the upper bound of the class it falls in.
fn percentiles(classes: &[u64; CLASSES]) -> Percentiles {
    let total: u64 = classes.iter().sum();
    let at = |p: f64| -> Option<u64> {
        if total == 0 {
            return None;
        }
        let rank = ((p * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in classes.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let bound = DURATION_BOUNDS_MS
                    .get(i)
                    .copied()
                    .unwrap_or(DURATION_BOUNDS_MS[DURATION_BOUNDS_MS.len() - 1]);
                return Some(bound as u64);
            }
        }
        None
    };
    Percentiles {
        p50: at(0.5),
        p90: at(0.9),
        p99: at(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_class_bounds() {
        let mut h = [0u64; CLASSES];
        assert_eq!(percentiles(&h).p50, None);
        h[0] = 90; // ≤ 5 ms
        h[5] = 9; // ≤ 250 ms
        h[CLASSES - 1] = 1; // over 30 s
        let p = percentiles(&h);
        assert_eq!((p.p50, p.p90, p.p99), (Some(5), Some(5), Some(250)));
        h[CLASSES - 1] = 10;
        assert_eq!(percentiles(&h).p99, Some(30_000));
    }
}
