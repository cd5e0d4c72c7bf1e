//! The names of the series `/metrics` exposes, and what each means: one place, so that a name is
//! written once (the code that records it and `serve`, which describes it, use these constants).

/// What kind of series a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    /// A histogram of seconds.
    Seconds,
    /// A histogram of plain numbers.
    Histogram,
}

pub const EVENTS_RECEIVED: &str = "posthorn_events_received_total";
pub const ATTEMPTS: &str = "posthorn_attempts_total";
pub const ATTEMPT_DURATION: &str = "posthorn_attempt_duration_seconds";
pub const ATTEMPTS_IN_FLIGHT: &str = "posthorn_attempts_in_flight";
pub const QUEUE_PENDING: &str = "posthorn_queue_pending";
pub const QUEUE_DUE: &str = "posthorn_queue_due";
pub const QUEUE_LEASE_EXPIRED: &str = "posthorn_queue_lease_expired";
pub const QUEUE_HELD: &str = "posthorn_queue_held";
pub const QUEUE_WAITING_IN_MEMORY: &str = "posthorn_queue_waiting_in_memory";
pub const FEED_WAITING: &str = "posthorn_feed_waiting";
pub const FEED_OLDEST_WAITING: &str = "posthorn_feed_oldest_waiting_seconds";
pub const LEASES_LOST: &str = "posthorn_leases_lost_total";
pub const GROUP_COMMIT_DURATION: &str = "posthorn_group_commit_seconds";
pub const GROUP_COMMIT_ROWS: &str = "posthorn_group_commit_rows";
pub const HTTP_REQUESTS: &str = "posthorn_http_requests_total";
pub const HTTP_REQUEST_DURATION: &str = "posthorn_http_request_duration_seconds";
pub const STORE_UP: &str = "posthorn_store_up";
pub const QUEUE_TABLE_TUPLES: &str = "posthorn_queue_table_tuples";
pub const STORED_DATA_UNREADABLE: &str = "posthorn_stored_data_unreadable_total";

/// Every series: its name, kind and help text.
pub const ALL: &[(&str, Kind, &str)] = &[
    (
        EVENTS_RECEIVED,
        Kind::Counter,
        "Events accepted, by source (http, amqp, nats)",
    ),
    (
        ATTEMPTS,
        Kind::Counter,
        "Delivery attempts by service and outcome (success, retry, final: the delivery is dead)",
    ),
    (
        ATTEMPT_DURATION,
        Kind::Seconds,
        "Duration of delivery attempts, by service",
    ),
    (
        ATTEMPTS_IN_FLIGHT,
        Kind::Gauge,
        "Attempts under way in this process",
    ),
    (
        QUEUE_PENDING,
        Kind::Gauge,
        "Deliveries waiting for an attempt (in flight included; poll subscriptions' feeds apart), all processes",
    ),
    (
        QUEUE_DUE,
        Kind::Gauge,
        "Pending deliveries due now and not in flight",
    ),
    (
        QUEUE_LEASE_EXPIRED,
        Kind::Gauge,
        "Due deliveries whose process stopped or died holding them: the next claim takes them over",
    ),
    (
        QUEUE_HELD,
        Kind::Gauge,
        "Pending deliveries held past their schedule, by what holds them (circuit: an open circuit)",
    ),
    (
        QUEUE_WAITING_IN_MEMORY,
        Kind::Gauge,
        "Deliveries this process holds in memory for a slot of their subscription (in-flight cap, rate limit)",
    ),
    (
        FEED_WAITING,
        Kind::Gauge,
        "Entries of poll subscriptions' feeds not yet acknowledged by their consumers, all processes",
    ),
    (
        FEED_OLDEST_WAITING,
        Kind::Gauge,
        "Age of the oldest entry of a feed not yet acknowledged (0 when none waits)",
    ),
    (
        LEASES_LOST,
        Kind::Counter,
        "Attempt outcomes dropped because another process had taken the delivery over",
    ),
    (
        GROUP_COMMIT_DURATION,
        Kind::Seconds,
        "Time to write one group commit (publishes and attempt outcomes together)",
    ),
    (
        GROUP_COMMIT_ROWS,
        Kind::Histogram,
        "Rows (events and attempt outcomes) per group commit",
    ),
    (
        HTTP_REQUESTS,
        Kind::Counter,
        "API requests by method, route template and status class",
    ),
    (
        HTTP_REQUEST_DURATION,
        Kind::Seconds,
        "API request duration by route template",
    ),
    (
        STORE_UP,
        Kind::Gauge,
        "1 when the last scrape could read the database",
    ),
    (
        QUEUE_TABLE_TUPLES,
        Kind::Gauge,
        "PostgreSQL only: rows of the deliveries table by state (live, dead: left by updates and deletes until vacuum), from pg_stat_user_tables",
    ),
    (
        STORED_DATA_UNREADABLE,
        Kind::Counter,
        "Requests answered 500 because a stored row could not be read (a corrupt row: alert on any)",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_described_once() {
        let mut names: Vec<&str> = ALL.iter().map(|(n, _, _)| *n).collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a name is described twice");
        assert!(names.iter().all(|n| n.starts_with("posthorn_")));
    }
}
