//! Credentials inside a subscription's `config` (an `Authorization` header, a broker URL's
//! password): where they are is the service's to say ([`crate::service::Service::secret_paths`],
//! JSON pointers into the config); what happens to them is the same for every service: sealed at
//! rest ([`seal_paths`] before a write, [`open_sealed`] after a read), masked when shown
//! ([`mask_paths`]), and a masked value written back means "unchanged" ([`restore_masked`]).

use serde_json::Value;

/// What a credential is shown as.
pub const MASK: &str = "********";

/// The key of the object a sealed value is stored as: `{"$sealed": "…"}` where a string was. No
/// service's config takes an object there, so nothing a client writes can look sealed.
const SEALED: &str = "$sealed";

/// Header names that carry credentials, whatever the service: `authorization`, cookies, and any
/// with `token`, `secret`, `key`, `password`, `auth`, `signature`, `session` or `credential` in
/// it (`x-api-key`, `ftrack-secret`).
pub fn is_sensitive_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    matches!(
        n.as_str(),
        "authorization" | "proxy-authorization" | "cookie"
    ) || [
        "token",
        "secret",
        "key",
        "password",
        "auth",
        "signature",
        "session",
        "credential",
    ]
    .iter()
    .any(|w| n.contains(w))
}

/// A JSON pointer token for `key` (`~` and `/` escaped).
pub fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Replaces each string at `paths` by its sealed form.
pub fn seal_paths<E>(
    config: &mut Value,
    paths: &[String],
    seal: impl Fn(&str) -> Result<String, E>,
) -> Result<(), E> {
    for path in paths {
        if let Some(v @ Value::String(_)) = config.pointer_mut(path) {
            let sealed = seal(v.as_str().unwrap_or_default())?;
            *v = serde_json::json!({ SEALED: sealed });
        }
    }
    Ok(())
}

/// Opens every sealed value in `config`, wherever it is.
pub fn open_sealed<E>(
    config: &mut Value,
    open: &impl Fn(&str) -> Result<String, E>,
) -> Result<(), E> {
    match config {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(Value::String(sealed)) = map.get(SEALED) {
                    *config = Value::String(open(sealed)?);
                    return Ok(());
                }
            }
            for v in map.values_mut() {
                open_sealed(v, open)?;
            }
        }
        Value::Array(items) => {
            for v in items {
                open_sealed(v, open)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A credential as shown: a URL keeps all but its password; anything else is [`MASK`].
fn masked(value: &str) -> String {
    if let Ok(mut url) = url::Url::parse(value) {
        if url.password().is_some() && url.set_password(Some(MASK)).is_ok() {
            return url.to_string();
        }
    }
    MASK.to_owned()
}

/// A URL as shown: its password, if it has one, masked.
pub fn shown_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(u) if u.password().is_some() => masked(url),
        _ => url.to_owned(),
    }
}

/// Replaces each string at `paths` by how it is shown.
pub fn mask_paths(config: &mut Value, paths: &[String]) {
    for path in paths {
        if let Some(Value::String(s)) = config.pointer_mut(path) {
            *s = masked(s);
        }
    }
}

/// A config written back with masked credentials (what `GET` showed) keeps the credentials it
/// had: each string at `paths` of `new` that is [`MASK`], or a URL whose password is, takes the
/// value `old` has there.
pub fn restore_masked(new: &mut Value, old: &Value, paths: &[String]) {
    for path in paths {
        let Some(Value::String(was)) = old.pointer(path) else {
            continue;
        };
        let Some(Value::String(now)) = new.pointer_mut(path) else {
            continue;
        };
        if now == MASK || (*now != *was && *now == masked(was)) {
            *now = was.clone();
        }
    }
}

/// A URL with its password replaced, for logs and `Debug`.
pub fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sealed_masked_and_restored() {
        let paths = vec!["/headers/authorization".to_owned(), "/url".to_owned()];
        let plain = json!({"url": "amqp://u:p4ss@h:5672/%2f",
            "headers": {"authorization": "Bearer t0k", "x-other": "shown"}});
        let mut stored = plain.clone();
        // A stand-in for the cipher: the text reversed.
        let reversed = |s: &str| Ok::<_, ()>(s.chars().rev().collect::<String>());
        seal_paths(&mut stored, &paths, reversed).unwrap();
        assert_eq!(
            stored["headers"]["authorization"],
            json!({"$sealed": "k0t reraeB"})
        );
        let text = stored.to_string();
        assert!(!text.contains("p4ss") && !text.contains("t0k"), "{text}");
        open_sealed(&mut stored, &reversed).unwrap();
        assert_eq!(stored, plain);
        let mut shown = plain.clone();
        mask_paths(&mut shown, &paths);
        assert_eq!(shown["url"], "amqp://u:********@h:5672/%2f");
        assert_eq!(shown["headers"]["authorization"], MASK);
        assert_eq!(shown["headers"]["x-other"], "shown");
        // Written back as shown: unchanged; written anew: the new value.
        let mut back = shown.clone();
        restore_masked(&mut back, &plain, &paths);
        assert_eq!(back, plain);
        let mut changed = shown.clone();
        changed["headers"]["authorization"] = json!("Bearer new");
        restore_masked(&mut changed, &plain, &paths);
        assert_eq!(changed["headers"]["authorization"], "Bearer new");
        assert!(is_sensitive_header("X-Api-Key") && is_sensitive_header("ftrack-secret"));
        assert!(!is_sensitive_header("x-request-source"));
    }
}
