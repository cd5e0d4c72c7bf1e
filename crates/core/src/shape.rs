//! Shaping what a subscriber receives: the body (the JSON envelope, the event's data as form
//! fields, or a template) and a templated URL.
//!
//! Templates are Jinja-style (minijinja), sandboxed: no file or network access, a bound on the work
//! a render may do (fuel) and on the size of its output. They see `event` (the envelope
//! `{id,name,occurred_at,origin,data}`), and for wazo-webhookd users `event_name` and `wazo_uuid`
//! (the origin). Filters `tojson` and `urlencode` are there. A template is parsed once, when the
//! subscription is saved.

use std::sync::Arc;

use minijinja::{Environment, UndefinedBehavior};
use serde_json::Value;

/// Most work a render may do (minijinja fuel: roughly one unit per instruction).
const FUEL: u64 = 100_000;
/// Largest rendered body; a larger one fails the render.
pub const MAX_OUTPUT: usize = 1024 * 1024;

const URL: &str = "url";
const BODY: &str = "body";

/// The templates of one subscription, parsed.
#[derive(Clone)]
pub struct Templates {
    env: Arc<Environment<'static>>,
    has_url: bool,
    has_body: bool,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("url", &self.has_url)
            .field("body", &self.has_body)
            .finish()
    }
}

/// Whether a URL is written as a template.
pub fn is_template(s: &str) -> bool {
    s.contains("{{") || s.contains("{%")
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_undefined_behavior(UndefinedBehavior::Lenient);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env
}

impl Templates {
    /// Parses a templated URL and body; `Err((field, reason))` names the one that does not parse.
    pub fn parse(url: Option<&str>, body: Option<&str>) -> Result<Self, (&'static str, String)> {
        let mut env = environment();
        if let Some(u) = url {
            env.add_template_owned(URL, u.to_owned())
                .map_err(|e| ("url", describe(&e)))?;
        }
        if let Some(b) = body {
            env.add_template_owned(BODY, b.to_owned())
                .map_err(|e| ("body", describe(&e)))?;
        }
        Ok(Self {
            env: Arc::new(env),
            has_url: url.is_some(),
            has_body: body.is_some(),
        })
    }

    pub fn has_url(&self) -> bool {
        self.has_url
    }

    pub fn has_body(&self) -> bool {
        self.has_body
    }

    /// Renders the URL template over the envelope; `event_is_data`: templates see the event's
    /// `data` as `event` (as wazo-webhookd's do), not the whole envelope.
    pub fn render_url(&self, envelope: &Value, event_is_data: bool) -> Result<String, RenderError> {
        self.render(URL, envelope, event_is_data)
            .map(|s| s.trim().to_owned())
    }

    pub fn render_body(
        &self,
        envelope: &Value,
        event_is_data: bool,
    ) -> Result<String, RenderError> {
        self.render(BODY, envelope, event_is_data)
    }

    fn render(
        &self,
        name: &'static str,
        envelope: &Value,
        event_is_data: bool,
    ) -> Result<String, RenderError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| RenderError::Failed(name, describe(&e)))?;
        let event = if event_is_data {
            envelope.get("data").unwrap_or(&Value::Null)
        } else {
            envelope
        };
        let ctx = minijinja::context! {
            event => event,
            event_name => envelope.get("name"),
            wazo_uuid => envelope.get("origin"),
        };
        let mut out = Bounded(Vec::new());
        template
            .render_captured_to(ctx, &mut out)
            .map_err(|e| RenderError::Failed(name, describe(&e)))?;
        String::from_utf8(out.0).map_err(|_| RenderError::NotUtf8(name))
    }
}

/// Why a template did not render: which one (`url`, `body`) and what went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("the {0} template failed: {1}")]
    Failed(&'static str, String),
    #[error("the {0} template made invalid UTF-8")]
    NotUtf8(&'static str),
}

/// A writer that refuses to grow past [`MAX_OUTPUT`].
struct Bounded(Vec<u8>);

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_OUTPUT {
            return Err(std::io::Error::other(format!(
                "output over {MAX_OUTPUT} bytes"
            )));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut msg = match (e.line(), e.detail()) {
        (Some(line), Some(detail)) => format!("line {line}: {}: {detail}", e.kind()),
        (Some(line), None) => format!("line {line}: {}", e.kind()),
        _ => e.to_string(),
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// The event's `data` as form fields: nested keys as `a[b]=c`, arrays as `a[0]=x`, values
/// percent-encoded (`application/x-www-form-urlencoded`). `null` is an empty value.
pub fn form_encode(data: &Value) -> String {
    let mut form = url::form_urlencoded::Serializer::new(String::new());
    fn walk(prefix: &str, v: &Value, form: &mut url::form_urlencoded::Serializer<'_, String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}[{k}]")
                    };
                    walk(&key, v, form);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    walk(&format!("{prefix}[{i}]"), v, form);
                }
            }
            Value::String(s) => {
                form.append_pair(prefix, s);
            }
            Value::Null => {
                form.append_pair(prefix, "");
            }
            other => {
                form.append_pair(prefix, &other.to_string());
            }
        }
    }
    walk("", data, &mut form);
    form.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn envelope() -> Value {
        json!({"id": "evt_1", "name": "user_created", "occurred_at": "2026-01-01T00:00:00.000Z",
               "origin": "a1b2", "data": {"id": 12, "uuid": "8e58", "tags": ["a b", "c&d"]}})
    }

    #[test]
    fn form_encoding_flattens_nested_keys_and_arrays() {
        let data = json!({"survey": 1, "name": "Ann & Bob", "user": {"mail": "a@b.c", "langs": ["fr", "en"]},
                          "ok": true, "none": null});
        assert_eq!(
            form_encode(&data),
            "survey=1&name=Ann+%26+Bob&user%5Bmail%5D=a%40b.c&user%5Blangs%5D%5B0%5D=fr&user%5Blangs%5D%5B1%5D=en&ok=true&none="
        );
    }

    #[test]
    fn templates_render_the_event() {
        let t = Templates::parse(
            Some("https://example.com/users/{{ event.data.uuid }}?n={{ event_name }}"),
            Some(r#"{"user": {{ event.data | tojson }}, "tags": "{{ event.data.tags[0] | urlencode }}", "from": "{{ wazo_uuid }}"}"#),
        )
        .unwrap();
        assert_eq!(
            t.render_url(&envelope(), false).unwrap(),
            "https://example.com/users/8e58?n=user_created"
        );
        let body: Value =
            serde_json::from_str(&t.render_body(&envelope(), false).unwrap()).unwrap();
        assert_eq!(body["user"]["id"], 12);
        assert_eq!(body["tags"], "a%20b");
        assert_eq!(body["from"], "a1b2");
    }

    #[test]
    fn wazo_templates_see_the_data_as_event() {
        let t = Templates::parse(
            Some("https://pbx/{{ event.uuid }}"),
            Some("{{ event_name }}: {{ event.tags[0] }} from {{ wazo_uuid }}"),
        )
        .unwrap();
        assert_eq!(t.render_url(&envelope(), true).unwrap(), "https://pbx/8e58");
        assert_eq!(
            t.render_body(&envelope(), true).unwrap(),
            "user_created: a b from a1b2"
        );
    }

    #[test]
    fn broken_templates_are_refused_with_the_reason() {
        let (field, why) = Templates::parse(None, Some("{{ event.data ")).unwrap_err();
        assert_eq!(field, "body");
        assert!(why.contains("line 1"), "{why}");
        let (field, _) = Templates::parse(Some("{% if %}"), None).unwrap_err();
        assert_eq!(field, "url");
    }

    #[test]
    fn runaway_templates_are_stopped() {
        let loops =
            Templates::parse(None, Some("{% for i in range(60000) %}{{ i }}{% endfor %}")).unwrap();
        let e = loops
            .render_body(&envelope(), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fuel") || e.contains("out of"), "{e}");
        let wide = Templates::parse(
            None,
            Some("{% for i in range(9000) %}xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx{% endfor %}"),
        )
        .unwrap();
        let e = wide
            .render_body(&envelope(), false)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bytes"), "{e}");
        let bad = Templates::parse(None, Some("{{ no_such_function() }}")).unwrap();
        assert!(bad.render_body(&envelope(), false).is_err());
    }
}
