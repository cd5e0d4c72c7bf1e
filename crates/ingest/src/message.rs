//! A broker message as a publish request.

use posthorn_core::event::PublishRequest;
use serde_json::value::RawValue;
use serde_json::Value;

/// Why a message can never be an event.
#[derive(Debug)]
pub struct Unusable(pub String);

/// The event a message carries. `name_header`: the message's `name` header; `fallback_name`:
/// its routing key or subject (less any prefix); `id`: its message id.
pub fn request(
    body: &[u8],
    name_header: Option<String>,
    fallback_name: &str,
    id: Option<String>,
) -> Result<PublishRequest, Unusable> {
    posthorn_core::json::check(body)
        .map_err(|f| Unusable(format!("the body is not usable JSON: {f:?}")))?;
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Unusable(format!("the body is not JSON: {e}")))?;
    let Value::Object(object) = value else {
        return Err(Unusable("the body is not a JSON object".into()));
    };
    // The wazo bus envelope: {"name", "origin_uuid", "data"}.
    let envelope = object.contains_key("data")
        && object.get("data").is_some_and(Value::is_object)
        && object
            .keys()
            .all(|k| ["name", "origin_uuid", "data"].contains(&k.as_str()));
    let (body_name, origin, data) = if envelope {
        (
            object
                .get("name")
                .and_then(Value::as_str)
                .map(str::to_owned),
            object
                .get("origin_uuid")
                .and_then(Value::as_str)
                .map(str::to_owned),
            object.get("data").cloned().unwrap_or(Value::Null),
        )
    } else {
        (None, None, Value::Object(object))
    };
    let name = name_header
        .or(body_name)
        .or_else(|| (!fallback_name.is_empty()).then(|| fallback_name.to_owned()))
        .ok_or_else(|| {
            Unusable("no event name: no name header, envelope name or routing key".into())
        })?;
    let data: Box<RawValue> =
        serde_json::value::to_raw_value(&data).map_err(|e| Unusable(e.to_string()))?;
    Ok(PublishRequest {
        name,
        data,
        id,
        origin,
        occurred_at: None,
        tenant: None,
    })
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
        )
        .unwrap();
        assert_eq!(r.name, "b");
    }

    #[test]
    fn any_other_object_is_the_data_named_by_the_routing_key() {
        let r = request(br#"{"order": 7}"#, None, "order.paid", None).unwrap();
        assert_eq!(
            (r.name.as_str(), r.data.get()),
            ("order.paid", r#"{"order":7}"#)
        );
    }

    #[test]
    fn what_cannot_be_an_event_is_said() {
        assert!(request(b"not json", None, "rk", None).is_err());
        assert!(request(b"[1]", None, "rk", None).is_err());
        assert!(request(br#"{"a": 1, "a": 2}"#, None, "rk", None).is_err());
        assert!(request(br#"{"a": 1}"#, None, "", None).is_err());
    }
}
