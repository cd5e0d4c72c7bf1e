//! Who owns what: the admin, or an application (an OAuth2 client, section 7 of the contract).
//!
//! Subscriptions are owned; events have a publisher (the admin, an application, or Posthorn
//! itself for its `posthorn.*` events) and may name a tenant (the application whose subscriptions
//! alone, beside the admin's, receive it). A caller sees what its [`Visibility`] allows; the
//! store's reads take one, so that an object of another owner is never read by mistake.

/// The admin's name as an owner, a publisher and a tenant.
pub const ADMIN: &str = "admin";
/// The publisher (and origin) of the service's own `posthorn.*` events.
pub const SYSTEM: &str = "posthorn";

/// An owner of subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owner {
    Admin,
    /// An application, by id (`app_…`).
    Application(String),
}

impl Owner {
    /// The owner as stored.
    pub fn as_str(&self) -> &str {
        match self {
            Owner::Admin => ADMIN,
            Owner::Application(id) => id,
        }
    }

    /// The owner stored as `s`.
    pub fn parse(s: &str) -> Self {
        if s == ADMIN {
            Owner::Admin
        } else {
            Owner::Application(s.to_owned())
        }
    }
}

/// Who acts, or who published an event: the admin, an application, a broker source or Posthorn
/// itself. Stored (as an event's `publisher`) as [`Principal::as_str`]; client ids are unique per
/// principal, and an application's events are its own tenant's.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    Admin,
    /// An application, by id (`app_…`).
    Application(String),
    /// A broker source, by its origin (`amqp:QUEUE`, `nats:STREAM`).
    Source(String),
    /// The service itself: its `posthorn.*` events.
    System,
}

impl Principal {
    /// As stored.
    pub fn as_str(&self) -> &str {
        match self {
            Principal::Admin => ADMIN,
            Principal::Application(id) | Principal::Source(id) => id,
            Principal::System => SYSTEM,
        }
    }

    /// The principal stored as `s`: a source's origin has a `kind:` in front, which no
    /// application id has.
    pub fn parse(s: &str) -> Self {
        match s {
            ADMIN => Principal::Admin,
            SYSTEM => Principal::System,
            _ if s.contains(':') => Principal::Source(s.to_owned()),
            _ => Principal::Application(s.to_owned()),
        }
    }

    /// How its events came in, for `posthorn_events_received_total{source}`: `http` for the
    /// admin and applications, the broker's name for a source.
    pub fn channel(&self) -> &'static str {
        match self {
            Principal::Admin | Principal::Application(_) => "http",
            Principal::Source(origin) if origin.starts_with("amqp:") => "amqp",
            Principal::Source(origin) if origin.starts_with("nats:") => "nats",
            Principal::Source(_) => "source",
            Principal::System => SYSTEM,
        }
    }
}

impl From<Owner> for Principal {
    fn from(owner: Owner) -> Self {
        match owner {
            Owner::Admin => Principal::Admin,
            Owner::Application(id) => Principal::Application(id),
        }
    }
}

impl std::fmt::Display for Principal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Visibility {
    /// Every owner's objects: the admin, and the service itself.
    Everything,
    /// Only this owner's.
    OwnedBy(Owner),
}

impl Visibility {
    /// `None` when every owner's objects are visible; the owner otherwise.
    pub fn owner(&self) -> Option<&str> {
        match self {
            Visibility::Everything => None,
            Visibility::OwnedBy(o) => Some(o.as_str()),
        }
    }

    pub fn sees(&self, owner: &str) -> bool {
        self.owner().is_none_or(|o| o == owner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_round_trip_and_visibility_narrows() {
        assert_eq!(Owner::parse("admin"), Owner::Admin);
        assert_eq!(Owner::parse("app_1").as_str(), "app_1");
        assert!(Visibility::Everything.sees("app_1"));
        let app = Visibility::OwnedBy(Owner::parse("app_1"));
        assert!(app.sees("app_1") && !app.sees("app_2") && !app.sees(ADMIN));
        assert_eq!(app.owner(), Some("app_1"));
    }

    #[test]
    fn principals_round_trip_as_stored() {
        for (stored, principal, channel) in [
            ("admin", Principal::Admin, "http"),
            ("app_1", Principal::Application("app_1".into()), "http"),
            (
                "amqp:orders",
                Principal::Source("amqp:orders".into()),
                "amqp",
            ),
            (
                "nats:EVENTS",
                Principal::Source("nats:EVENTS".into()),
                "nats",
            ),
            ("posthorn", Principal::System, "posthorn"),
        ] {
            assert_eq!(Principal::parse(stored), principal);
            assert_eq!(principal.as_str(), stored);
            assert_eq!(principal.channel(), channel);
        }
        assert_eq!(Principal::from(Owner::Admin), Principal::Admin);
    }
}
