//! Events: what a platform tells Posthorn happened. An event has a name (`new_feed_entry`,
//! `ftrack.entity`), a JSON object of data, and the envelope fields around it.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::time::{to_rfc3339, Millis};

/// Names reserved for the service's own events; clients cannot publish them.
pub const RESERVED_PREFIX: &str = "posthorn.";

/// A validated event name: 1–128 of `A-Za-z0-9_.:-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventName(String);

/// A text that is not an event name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 128 characters of A-Z a-z 0-9 _ . : -")]
pub struct InvalidName;

/// A stored event whose data cannot be read back as JSON.
#[derive(Debug, thiserror::Error)]
#[error("stored event is not JSON: {0}")]
pub struct UnreadableEvent(#[from] serde_json::Error);

impl EventName {
    pub fn parse(s: &str) -> Result<Self, InvalidName> {
        if !is_valid_token(s) {
            return Err(InvalidName);
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `posthorn.*` in any case (`POSTHORN.ping` is reserved too: a receiver comparing names
    /// without case must not be fooled).
    pub fn is_reserved(&self) -> bool {
        self.0
            .get(..RESERVED_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_PREFIX))
    }
}

/// True when `s` is 1–128 characters of `A-Za-z0-9_.:-`: the charset of event names and of
/// client-chosen event ids.
pub fn is_valid_token(s: &str) -> bool {
    (1..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

/// Routing attributes: strings beside an event's `data` that filters and front-door rules read
/// (`$event.attributes.survey`) but that are not part of the payload — a broker message's
/// headers, FluidSurveys' `survey`/`collector`, an HTTP publisher's own. Sorted by name.
pub type Attributes = std::collections::BTreeMap<String, String>;

/// The most attributes an event may carry.
pub const MAX_ATTRIBUTES: usize = 64;
/// The longest an attribute's value may be, in characters (as JSON Schema counts them).
pub const MAX_ATTRIBUTE_VALUE: usize = 1024;

/// What is wrong with `attributes`, as `(field below "attributes", message)`.
pub fn attribute_faults(attributes: &Attributes) -> Vec<(String, String)> {
    let mut faults = Vec::new();
    if attributes.len() > MAX_ATTRIBUTES {
        faults.push((
            String::new(),
            format!("at most {MAX_ATTRIBUTES} attributes"),
        ));
    }
    for (k, v) in attributes {
        if !is_valid_token(k) {
            faults.push((
                format!(".{k}"),
                "a name is 1 to 128 characters of A-Z a-z 0-9 _ . : -".into(),
            ));
        } else if v.chars().count() > MAX_ATTRIBUTE_VALUE {
            faults.push((
                format!(".{k}"),
                format!("a value is at most {MAX_ATTRIBUTE_VALUE} characters"),
            ));
        }
    }
    faults
}

/// An event as a publisher sends it, through any front (`POST /v1/events`, a broker source, a
/// front door): checked and matched by the publisher (`posthorn_store::Publisher`).
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// 1–128 of `A-Za-z0-9_.:-`; `posthorn.*` is reserved.
    pub name: String,
    /// A JSON object.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
    /// Optional client id: the event id, and an idempotency key per publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// RFC 3339; the time of receipt when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// Only this application's subscriptions (and the admin's) receive the event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Routing attributes (strings, at most 64): filters read them as `$event.attributes.NAME`;
    /// they are not part of the payload.
    #[serde(default, skip_serializing_if = "Attributes::is_empty")]
    pub attributes: Attributes,
    /// Its ordering key (1–256 characters): subscriptions with `ordered: "key"` (and no
    /// `order_key` path of their own) deliver the events of one key in publish order, one at a
    /// time, and different keys in parallel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ordering_key: Option<String>,
}

/// The longest `ordering_key` a publisher may give, in characters.
pub const MAX_ORDERING_KEY: usize = 256;

/// An event as stored: what every front published, and what every delivery service sends.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    /// Its place in the store (orders deliveries of `ordered` subscriptions, and cursors).
    pub seq: i64,
    pub id: String,
    /// Who published it: client ids are unique per publisher.
    pub publisher: crate::Principal,
    pub name: String,
    pub origin: Option<String>,
    pub tenant: Option<String>,
    /// The routing attributes beside the data.
    pub attributes: Attributes,
    /// The `data` object as JSON text, as the publisher wrote it less the spacing.
    pub data: String,
    pub occurred_at: Millis,
    pub received_at: Millis,
}

/// The prefix of the event ids Posthorn generates. A client id of any publisher but the admin may
/// not begin with it, so that a generated id stays unique everywhere ([`StoredEvent::wire_id`]).
pub const GENERATED_PREFIX: &str = "evt_";

/// The id an event carries on the wire (`webhook-id`, the AMQP `message_id`, `Nats-Msg-Id`): unique
/// across publishers, where client ids are unique only per publisher. The admin's ids, the
/// service's own and generated ones (`evt_…`) go as they are; another publisher's client id goes
/// with its publisher in front, `app_…:order-1` or `amqp:queue:42`, so that two applications'
/// `order-1` reach a shared receiver (or a JetStream stream that drops duplicates) as two events.
/// The same for every attempt and every subscription.
pub fn wire_id<'a>(publisher: &crate::Principal, id: &'a str) -> std::borrow::Cow<'a, str> {
    use crate::Principal;
    use std::borrow::Cow;
    if matches!(publisher, Principal::Admin | Principal::System) || id.starts_with(GENERATED_PREFIX)
    {
        return Cow::Borrowed(id);
    }
    let publisher = publisher.as_str();
    // Long source names are named by a digest, to keep the id within AMQP's 255-byte limit.
    if publisher.len() > 64 {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(publisher.as_bytes());
        let short: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        return Cow::Owned(format!("h{short}:{id}"));
    }
    Cow::Owned(format!("{publisher}:{id}"))
}

/// The format of [`StoredEvent::envelope`], written into attempt logs that leave their body to
/// it: a later format would keep rebuilding old logs' bodies with this one.
pub const ENVELOPE_VERSION: u32 = 1;

impl StoredEvent {
    /// The JSON envelope every subscriber receives by default (section 5 of the contract),
    /// `{"id","name","occurred_at","origin","data"}`, built from the stored `data` text without
    /// parsing it again. The attempt log leans on it: a request whose body was this is logged
    /// without it and shown with it rebuilt, so it must stay a function of the stored event alone
    /// ([`ENVELOPE_VERSION`]).
    pub fn envelope(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + self.id.len() + self.name.len() + 96);
        // Strings into a `Vec` cannot fail to serialize.
        let string = |out: &mut Vec<u8>, v: &str| {
            serde_json::to_writer(&mut *out, v).expect("a string serializes")
        };
        out.extend_from_slice(b"{\"id\":");
        string(&mut out, &self.id);
        out.extend_from_slice(b",\"name\":");
        string(&mut out, &self.name);
        out.extend_from_slice(b",\"occurred_at\":");
        string(&mut out, &to_rfc3339(self.occurred_at));
        out.extend_from_slice(b",\"origin\":");
        match &self.origin {
            Some(origin) => string(&mut out, origin),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(self.data.as_bytes());
        out.push(b'}');
        out
    }

    /// The id this event carries on the wire: see [`wire_id`].
    pub fn wire_id(&self) -> std::borrow::Cow<'_, str> {
        wire_id(&self.publisher, &self.id)
    }

    /// The envelope as a value, for templates and plugins: an error, never `null`, when the
    /// stored data cannot be read.
    pub fn envelope_value(&self) -> Result<serde_json::Value, UnreadableEvent> {
        Ok(serde_json::from_slice(&self.envelope())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn names_follow_the_charset() {
        for ok in ["new_feed_entry", "ftrack.entity", "a:b-c.d_e", "X"] {
            assert!(EventName::parse(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in ["", "with space", "é", "a/b", long.as_str()] {
            assert!(EventName::parse(bad).is_err(), "{bad}");
        }
        assert!(EventName::parse(&"a".repeat(128)).is_ok());
        assert!(EventName::parse("posthorn.ping").unwrap().is_reserved());
        assert!(EventName::parse("POSTHORN.ping").unwrap().is_reserved());
        assert!(EventName::parse("PostHorn.x").unwrap().is_reserved());
        assert!(!EventName::parse("posthornx").unwrap().is_reserved());
    }

    #[test]
    fn wire_ids_differ_across_publishers() {
        use crate::Principal;
        assert_eq!(wire_id(&Principal::parse("admin"), "order-1"), "order-1");
        assert_eq!(wire_id(&Principal::parse("posthorn"), "evt_x"), "evt_x");
        assert_eq!(wire_id(&Principal::parse("app_1"), "evt_abc"), "evt_abc");
        assert_eq!(
            wire_id(&Principal::parse("app_1"), "order-1"),
            "app_1:order-1"
        );
        assert_ne!(
            wire_id(&Principal::parse("app_1"), "order-1"),
            wire_id(&Principal::parse("app_2"), "order-1")
        );
        assert_ne!(
            wire_id(&Principal::parse("app_1"), "order-1"),
            wire_id(&Principal::parse("admin"), "order-1")
        );
        assert_eq!(wire_id(&Principal::parse("amqp:q"), "42"), "amqp:q:42");
        let long = format!("amqp:{}", "q".repeat(250));
        let id = "x".repeat(128);
        let w = wire_id(&Principal::parse(&long), &id);
        assert!(
            w.len() <= 255
                && w.ends_with(&id)
                && w != wire_id(&Principal::parse("amqp:other"), &id)
        );
    }

    #[test]
    fn envelope_is_the_contract_shape() {
        let e = StoredEvent {
            seq: 1,
            id: "evt_1".into(),
            publisher: crate::Principal::Admin,
            name: "a.b".into(),
            origin: Some("o\"x".into()),
            tenant: None,
            attributes: Attributes::new(),
            data: r#"{"k":[1,2]}"#.into(),
            occurred_at: 0,
            received_at: 0,
        };
        let v: Value = serde_json::from_slice(&e.envelope()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"id":"evt_1","name":"a.b","occurred_at":"1970-01-01T00:00:00.000Z","origin":"o\"x","data":{"k":[1,2]}})
        );
        let none = StoredEvent { origin: None, ..e };
        let v: Value = serde_json::from_slice(&none.envelope()).unwrap();
        assert_eq!(v["origin"], Value::Null);
    }
}

/// Well-formed JSON text without the whitespace between its tokens, borrowed when it has none:
/// published `data` is stored and delivered as the publisher wrote it, less the spacing, without
/// being parsed into a tree and printed again.
pub fn compact_json(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let spacing = |b: u8| matches!(b, b' ' | b'\n' | b'\r' | b'\t');
    // The text is copied only once spacing is found, a run between two spacings at a time; a
    // string is skipped to its closing quote by `memchr`, not byte by byte.
    let mut out: Option<Vec<u8>> = None;
    let mut kept_from = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            i += 1;
            loop {
                match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                    // An escape: the escaped byte is skipped with it.
                    Some(k) if bytes[i + k] == b'\\' => i += k + 2,
                    Some(k) => {
                        i += k + 1;
                        break;
                    }
                    None => {
                        i = bytes.len();
                        break;
                    }
                }
            }
        } else if spacing(b) {
            let o = out.get_or_insert_with(|| Vec::with_capacity(bytes.len()));
            o.extend_from_slice(&bytes[kept_from..i]);
            while i < bytes.len() && spacing(bytes[i]) {
                i += 1;
            }
            kept_from = i;
        } else {
            i += 1;
        }
    }
    match out {
        // Only ASCII whitespace between tokens was dropped: still UTF-8.
        Some(mut o) => {
            o.extend_from_slice(&bytes[kept_from..]);
            std::borrow::Cow::Owned(String::from_utf8(o).unwrap_or_else(|_| text.to_owned()))
        }
        None => std::borrow::Cow::Borrowed(text),
    }
}

#[cfg(test)]
mod compact_tests {
    use super::compact_json;

    #[test]
    fn drops_spacing_between_tokens_only() {
        let text = "{ \"a b\" : [1, 2 ,\n\t{\"q\\\" x\": \"é \\\\\" }], \"n\": null }";
        let compact = compact_json(text);
        assert_eq!(compact, r#"{"a b":[1,2,{"q\" x":"é \\"}],"n":null}"#);
        let a: serde_json::Value = serde_json::from_str(text).unwrap();
        let b: serde_json::Value = serde_json::from_str(&compact).unwrap();
        assert_eq!(a, b);
        assert!(matches!(
            compact_json(r#"{"a":"x y"}"#),
            std::borrow::Cow::Borrowed(_)
        ));
        // An escaped backslash ends a string's escapes; spacing at either end goes.
        assert_eq!(
            compact_json(" [\"a\\\\\", \"\\\\\\\" \"] \n"),
            r#"["a\\","\\\" "]"#
        );
        assert_eq!(compact_json("\t"), "");
    }

    /// The reference systems' sample events (`tests/fixtures`, printed with spacing as they were
    /// captured) compact to the same values, with no spacing left between tokens.
    #[test]
    fn compacts_the_reference_systems_events() {
        for (name, text) in [
            (
                "fluidsurveys",
                include_str!("../../../tests/fixtures/fluidsurveys-response-complete.json"),
            ),
            (
                "ftrack",
                include_str!("../../../tests/fixtures/ftrack-assetversion-status.json"),
            ),
            (
                "ftrack task",
                include_str!("../../../tests/fixtures/ftrack-task-create.json"),
            ),
            (
                "phraseanet",
                include_str!("../../../tests/fixtures/phraseanet-new-feed-entry.json"),
            ),
            (
                "wazo",
                include_str!("../../../tests/fixtures/wazo-user-created.json"),
            ),
        ] {
            let compact = compact_json(text);
            assert!(compact.len() < text.len(), "{name}: nothing dropped");
            let a: serde_json::Value = serde_json::from_str(text).unwrap();
            let b: serde_json::Value = serde_json::from_str(&compact).unwrap();
            assert_eq!(a, b, "{name}");
            assert!(
                matches!(compact_json(&compact), std::borrow::Cow::Borrowed(_)),
                "{name}: spacing left in {compact}"
            );
        }
    }

    proptest::proptest! {
        /// Whatever JSON is printed with spacing, compacting it gives serde's own compact print.
        #[test]
        fn is_serdes_compact_print(value in any_json()) {
            let pretty = serde_json::to_string_pretty(&value).unwrap();
            let compact = serde_json::to_string(&value).unwrap();
            proptest::prop_assert_eq!(compact_json(&pretty), compact.as_str());
        }
    }

    fn any_json() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            "[ a\"\\\\\n\té\u{1F600}]{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
                proptest::collection::vec(("[ a\"\\\\]{0,4}", inner), 0..4)
                    .prop_map(|kv| serde_json::Value::Object(kv.into_iter().collect())),
            ]
        })
    }
}
