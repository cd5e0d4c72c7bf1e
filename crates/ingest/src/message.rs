//! A broker message as a publish request.

use posthorn_core::event::{
    is_valid_token, Attributes, PublishRequest, MAX_ATTRIBUTES, MAX_ATTRIBUTE_VALUE,
};
use serde_json::value::RawValue;
use serde_json::Value;

/// Why a message can never be an event.
#[derive(Debug)]
pub struct Unusable(pub String);

/// The event a message carries. `name_header`: the message's `name` header; `fallback_name`:
/// its routing key or subject (less any prefix); `id`: its message id; `headers`: the message's
/// headers with a scalar value, as text, which become the event's routing attributes.
///
/// A wazo bus message is an envelope: wazo-bus's `WazoEventMixin` sends
/// `{"name", "origin_uuid", "timestamp", "required_access", "tenant_uuid", "user_uuid:<uuid>": true,
/// …, "data": {…}}` (the same keys as headers). Its event is `data`; `origin_uuid` is the origin;
/// every other key beside `data` is a routing attribute. A body is taken as that envelope when it
/// has a `data` object and a `name`, and either an `origin_uuid` key (every bus message has one)
/// or nothing but `name`/`origin_uuid`/`data`. Any other object is the data itself.
pub fn request(
    body: &[u8],
    name_header: Option<String>,
    fallback_name: &str,
    id: Option<String>,
    headers: Vec<(String, String)>,
) -> Result<PublishRequest, Unusable> {
    posthorn_core::json::check(body)
        .map_err(|f| Unusable(format!("the body is not usable JSON: {f:?}")))?;
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Unusable(format!("the body is not JSON: {e}")))?;
    let Value::Object(mut object) = value else {
        return Err(Unusable("the body is not a JSON object".into()));
    };
    let mut attributes = Attributes::new();
    for (k, v) in headers {
        add_attribute(&mut attributes, k, v);
    }
    let data_is_object = object.get("data").is_some_and(Value::is_object);
    let minimal = object
        .keys()
        .all(|k| ["name", "origin_uuid", "data"].contains(&k.as_str()));
    let bus =
        object.get("name").is_some_and(Value::is_string) && object.contains_key("origin_uuid");
    let (body_name, origin, data) = if data_is_object && (minimal || bus) {
        let data = object.remove("data").unwrap_or(Value::Null);
        let name = match object.remove("name") {
            Some(Value::String(n)) => Some(n),
            _ => None,
        };
        let origin = object
            .get("origin_uuid")
            .and_then(Value::as_str)
            .map(str::to_owned);
        for (k, v) in object {
            if let Some(text) = scalar_text(&v) {
                add_attribute(&mut attributes, k, text);
            }
        }
        (name, origin, data)
    } else {
        (None, None, Value::Object(object))
    };
    let name = name_header
        .or(body_name)
        .or_else(|| (!fallback_name.is_empty()).then(|| fallback_name.to_owned()))
        .ok_or_else(|| {
            Unusable("no event name: no name header, envelope name or routing key".into())
        })?;
    attributes.remove("name");
    let data: Box<RawValue> =
        serde_json::value::to_raw_value(&data).map_err(|e| Unusable(e.to_string()))?;
    Ok(PublishRequest {
        name,
        data,
        id,
        origin,
        occurred_at: None,
        tenant: None,
        attributes,
        // A header becomes an attribute: `order_key: "$event.attributes.NAME"` orders by it.
        ordering_key: None,
    })
}

/// A header's or an envelope key's value as an attribute's text: strings as they are, booleans
/// and numbers as JSON writes them; `null`, arrays and objects are not attributes.
pub fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Adds `k` = `v` when it can be an attribute (a name of the event-name charset, a value within
/// the limit, within the count): a header that cannot is left out, with a warning naming it,
/// rather than the message refused.
fn add_attribute(attributes: &mut Attributes, k: String, v: String) {
    let why = if attributes.len() >= MAX_ATTRIBUTES {
        "an event carries at most 64 attributes"
    } else if !is_valid_token(&k) {
        "its name is not 1 to 128 of A-Z a-z 0-9 _ . : -"
    } else if v.chars().count() > MAX_ATTRIBUTE_VALUE {
        "its value is over 1,024 characters"
    } else {
        attributes.insert(k, v);
        return;
    };
    tracing::warn!(header = %k, reason = why,
        "a message header was left out of the event's attributes");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wazo_envelope_gives_name_origin_and_data() {
        let r = request(
            br#"{"name": "user_created", "origin_uuid": "w1", "data": {"id": 12}}"#,
            None,
            "rk",
            Some("m1".into()),
            vec![],
        )
        .unwrap();
        assert_eq!(
            (r.name.as_str(), r.origin.as_deref(), r.id.as_deref()),
            ("user_created", Some("w1"), Some("m1"))
        );
        assert_eq!(r.data.get(), r#"{"id":12}"#);
        // The header wins over the envelope's name.
        let r = request(
            br#"{"name": "a", "data": {}}"#,
            Some("b".into()),
            "rk",
            None,
            vec![],
        )
        .unwrap();
        assert_eq!(r.name, "b");
    }

    #[test]
    fn any_other_object_is_the_data_named_by_the_routing_key() {
        let r = request(br#"{"order": 7}"#, None, "order.paid", None, vec![]).unwrap();
        assert_eq!(
            (r.name.as_str(), r.data.get()),
            ("order.paid", r#"{"order":7}"#)
        );
    }

    #[test]
    fn what_cannot_be_an_event_is_said() {
        assert!(request(b"not json", None, "rk", None, vec![]).is_err());
        assert!(request(b"[1]", None, "rk", None, vec![]).is_err());
        assert!(request(br#"{"a": 1, "a": 2}"#, None, "rk", None, vec![]).is_err());
        assert!(request(br#"{"a": 1}"#, None, "", None, vec![]).is_err());
    }

    /// A message exactly as wazo-bus's `WazoEventMixin` publishes a user event: the envelope
    /// keys beside `data` in the body, the same as headers.
    #[test]
    fn a_real_wazo_bus_message_is_its_data_with_attributes() {
        let body = br#"{"name": "call_ended", "origin_uuid": "w-1",
            "timestamp": "2026-12-06T08:00:00.123456", "required_access": "event.call_ended",
            "required_acl": "events.calls.u-1", "tenant_uuid": "t-1", "user_uuid:u-1": true,
            "data": {"call_id": "1.2", "user_uuid": "u-1"}}"#;
        let headers = vec![
            ("name".to_owned(), "call_ended".to_owned()),
            ("origin_uuid".to_owned(), "w-1".to_owned()),
            ("user_uuid:u-1".to_owned(), "true".to_owned()),
            ("tenant_uuid".to_owned(), "t-1".to_owned()),
        ];
        let r = request(body, Some("call_ended".into()), "", None, headers).unwrap();
        assert_eq!(
            (r.name.as_str(), r.origin.as_deref()),
            ("call_ended", Some("w-1"))
        );
        assert_eq!(r.data.get(), r#"{"call_id":"1.2","user_uuid":"u-1"}"#);
        assert_eq!(r.attributes["user_uuid:u-1"], "true");
        assert_eq!(r.attributes["tenant_uuid"], "t-1");
        assert_eq!(r.attributes["origin_uuid"], "w-1");
        assert_eq!(r.attributes["required_access"], "event.call_ended");
        assert!(!r.attributes.contains_key("name") && !r.attributes.contains_key("data"));
        // An object with a data key and other fields but no origin_uuid is plain data.
        let r = request(
            br#"{"name": "x", "data": {}, "more": 1}"#,
            None,
            "rk",
            None,
            vec![],
        )
        .unwrap();
        assert_eq!(r.data.get(), r#"{"name":"x","data":{},"more":1}"#);
    }
}
