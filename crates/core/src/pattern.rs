//! Event patterns of a subscription: an exact name, `prefix.*`, or `*`.
//!
//! Invariant: `*` and `prefix.*` never match the service's own `posthorn.*` events unless the
//! prefix itself starts with `posthorn.` — subscribers get those only by asking for them.

use crate::event::{is_valid_token, RESERVED_PREFIX};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum EventPattern {
    /// `*`: every event but the service's own.
    All,
    /// `prefix.*`, stored with its trailing dot: `prefix.`.
    Prefix(String),
    /// One event name.
    Exact(String),
}

/// Why a text is not an event pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPattern {
    #[error("a prefix pattern is NAME.* where NAME is 1 to 128 of A-Z a-z 0-9 _ . : -")]
    Prefix,
    #[error("must be an event name (A-Z a-z 0-9 _ . : -), NAME.* or *")]
    Name,
}

impl EventPattern {
    pub fn parse(s: &str) -> Result<Self, InvalidPattern> {
        if s == "*" {
            return Ok(Self::All);
        }
        if let Some(prefix) = s.strip_suffix(".*") {
            if !is_valid_token(prefix) {
                return Err(InvalidPattern::Prefix);
            }
            return Ok(Self::Prefix(format!("{prefix}.")));
        }
        if is_valid_token(s) {
            Ok(Self::Exact(s.to_owned()))
        } else {
            Err(InvalidPattern::Name)
        }
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::All => !name.starts_with(RESERVED_PREFIX),
            Self::Prefix(p) => {
                name.starts_with(p.as_str())
                    && (!name.starts_with(RESERVED_PREFIX) || p.starts_with(RESERVED_PREFIX))
            }
            Self::Exact(n) => n == name,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, name: &str) -> bool {
        EventPattern::parse(p).unwrap().matches(name)
    }

    #[test]
    fn patterns_match_as_the_contract_says() {
        assert!(m("user_created", "user_created"));
        assert!(!m("user_created", "user_created2"));
        assert!(m("record.*", "record.created"));
        assert!(m("record.*", "record.a.b"));
        assert!(!m("record.*", "record"));
        assert!(!m("record.*", "recordx.created"));
        assert!(m("*", "anything"));
        assert!(!m("*", "posthorn.ping"));
        assert!(m("posthorn.*", "posthorn.ping"));
        assert!(m(
            "posthorn.subscription.*",
            "posthorn.subscription.disabled"
        ));
        assert!(m("posthorn.ping", "posthorn.ping"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "a b", ".*", "**", "a.*.*", "é"] {
            assert!(EventPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
