//! Deliveries (one per matching event and subscription) and the outcome of each attempt.

use serde::{Deserialize, Serialize};

/// The due time of a pulled delivery (the `poll` service): 9999-12-31T23:59:59Z, which no claim
/// reaches. It waits there, pending, until its consumer acknowledges it.
pub const PARKED: crate::time::Millis = 253_402_300_799_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or being attempted).
    Pending,
    Succeeded,
    /// Every attempt failed, or a failure was final.
    Dead,
    /// Its subscription was deleted before it could succeed.
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Dead => "dead",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => Self::Pending,
            "succeeded" => Self::Succeeded,
            "dead" => Self::Dead,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
}

/// What one attempt led to, as shown in the attempt log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    Success,
    /// Failed; another attempt is scheduled.
    Retry,
    /// Failed, and no attempt follows: the delivery is dead (or cancelled).
    Final,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retry => "retry",
            Self::Final => "final",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "success" => Self::Success,
            "retry" => Self::Retry,
            "final" => Self::Final,
            _ => return None,
        })
    }
}
