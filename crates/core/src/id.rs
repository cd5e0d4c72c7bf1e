//! Prefixed, opaque, time-ordered identifiers (`sub_…`, `evt_…`, `dlv_…`, `app_…`).
//!
//! The part after the prefix is a lower-case ULID: ids made later sort after ids made earlier
//! (to the millisecond), which is what lets lists page newest-first on the id alone.

use std::marker::PhantomData;

/// A new id with the given prefix, e.g. `new_id("sub")` → `sub_01j…` (for the kinds without a
/// type of their own: events' generated ids, sessions).
pub fn new_id(prefix: &str) -> String {
    // Encoded on the stack and lowered in place: one allocation, the id's own (three are made
    // for every delivery: its event's, its own, its publish request's).
    let mut buf = [0u8; ulid::ULID_LEN];
    let ulid = ulid::Ulid::new().array_to_str(&mut buf);
    ulid.make_ascii_lowercase();
    let mut id = String::with_capacity(prefix.len() + 1 + ulid::ULID_LEN);
    id.push_str(prefix);
    id.push('_');
    id.push_str(ulid);
    id
}

/// What an [`Id`] names: its prefix.
pub trait Kind {
    /// `sub`, `dlv`, `app`.
    const PREFIX: &'static str;
    /// What it is called in an answer: "no such subscription".
    const NOUN: &'static str;
}

/// A subscription's.
#[derive(Debug)]
pub enum Sub {}
/// A delivery's.
#[derive(Debug)]
pub enum Dlv {}
/// An application's.
#[derive(Debug)]
pub enum App {}

impl Kind for Sub {
    const PREFIX: &'static str = "sub";
    const NOUN: &'static str = "subscription";
}
impl Kind for Dlv {
    const PREFIX: &'static str = "dlv";
    const NOUN: &'static str = "delivery";
}
impl Kind for App {
    const PREFIX: &'static str = "app";
    const NOUN: &'static str = "application";
}

/// The id of one kind of object: a subscription's cannot be passed where a delivery's is asked
/// for. Made by [`Id::new`], read from outside by [`Id::parse`] (its prefix and a ULID: what
/// the API document's path patterns say), and from the database by [`Id::stored`]. Reads as a
/// `&str` ([`std::ops::Deref`]) and is written as one (serde, SQL).
pub struct Id<K>(String, PhantomData<fn() -> K>);

/// A subscription's id (`sub_…`).
pub type SubscriptionId = Id<Sub>;
/// A delivery's id (`dlv_…`).
pub type DeliveryId = Id<Dlv>;
/// An application's id (`app_…`).
pub type ApplicationId = Id<App>;

impl<K: Kind> Id<K> {
    /// A fresh id of this kind.
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self(new_id(K::PREFIX), PhantomData)
    }

    /// `s`, if it is an id of this kind as Posthorn makes them: the prefix, `_`, 26 of
    /// `0-9a-z`. Anything else names nothing (a 404 where it comes from a path).
    pub fn parse(s: &str) -> Option<Self> {
        let ulid = s.strip_prefix(K::PREFIX)?.strip_prefix('_')?;
        (ulid.len() == 26
            && ulid
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()))
        .then(|| Self(s.to_owned(), PhantomData))
    }

    /// An id read back from the database, which holds only ids Posthorn made.
    pub fn stored(s: String) -> Self {
        Self(s, PhantomData)
    }

    /// The regular expression of [`Id::parse`], for the API document.
    pub fn pattern() -> String {
        format!("^{}_[0-9a-z]{{26}}$", K::PREFIX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl<K> Clone for Id<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone(), PhantomData)
    }
}

impl<K> PartialEq for Id<K> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl<K> Eq for Id<K> {}

impl<K> std::hash::Hash for Id<K> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl<K> PartialOrd for Id<K> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl<K> Ord for Id<K> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl<K> PartialEq<str> for Id<K> {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl<K> PartialEq<&str> for Id<K> {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl<K> PartialEq<String> for Id<K> {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl<K> std::ops::Deref for Id<K> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<K> AsRef<str> for Id<K> {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<K> std::borrow::Borrow<str> for Id<K> {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl<K> std::fmt::Debug for Id<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.0, f)
    }
}

impl<K> std::fmt::Display for Id<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<K> From<Id<K>> for String {
    fn from(id: Id<K>) -> String {
        id.0
    }
}

impl<K> serde::Serialize for Id<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de, K: Kind> serde::Deserialize<'de> for Id<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!("is not an id of the form {}_…", K::PREFIX))
        })
    }
}

impl<K> utoipa::PartialSchema for Id<K> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        String::schema()
    }
}

impl<K> utoipa::ToSchema for Id<K> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_prefixed_and_distinct() {
        let a = new_id("sub");
        let b = new_id("sub");
        assert!(a.starts_with("sub_"));
        assert_eq!(a.len(), 4 + 26);
        assert_ne!(a, b);
        // Lowercase Crockford base32 of a ULID made now, ordered by time.
        assert_eq!(a, a.to_ascii_lowercase());
        let ulid = ulid::Ulid::from_string(&a[4..]).unwrap();
        let age = std::time::SystemTime::now()
            .duration_since(ulid.datetime())
            .unwrap_or_default();
        assert!(age < std::time::Duration::from_secs(60), "{a}");
        assert!(a[4..14] <= b[4..14], "{a} then {b}");
    }

    #[test]
    fn typed_ids_take_only_their_kind() {
        let s = SubscriptionId::new();
        assert!(s.starts_with("sub_"));
        assert_eq!(SubscriptionId::parse(&s), Some(s.clone()));
        assert!(
            DeliveryId::parse(&s).is_none(),
            "a subscription's id is no delivery's"
        );
        for bad in [
            "sub_",
            "sub_x",
            "sub_01J0000000000000000000000A",
            "xsub_01j0000000000000000000000a",
        ] {
            assert!(SubscriptionId::parse(bad).is_none(), "{bad}");
        }
        assert_eq!(SubscriptionId::pattern(), "^sub_[0-9a-z]{26}$");
    }
}
