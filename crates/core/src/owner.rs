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
}
