//! `GET /docs`: the API reference as one readable HTML page, rendered once from the OpenAPI
//! document the server serves (`/openapi.json`), so the two cannot disagree. No script, no font,
//! nothing fetched from elsewhere: it works on a machine with no internet.

use std::fmt::Write;
use std::sync::OnceLock;

use axum::response::Html;
use serde_json::Value;

pub(crate) async fn docs(
    axum::extract::State(state): axum::extract::State<crate::AppState>,
) -> Html<&'static str> {
    // One process serves one document (its services named in it).
    static PAGE: OnceLock<String> = OnceLock::new();
    Html(PAGE.get_or_init(|| render(state.openapi())))
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:auto;padding:1rem;color:#222}\
code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;padding:0 .2em}\
h2{border-bottom:1px solid #ddd;margin-top:2.5rem}h3{margin-bottom:.2rem}\
table{border-collapse:collapse;width:100%;margin:.4rem 0}td,th{border:1px solid #ddd;padding:.2rem .4rem;text-align:left;vertical-align:top}\
.m{display:inline-block;min-width:4.2em;font-weight:bold;text-transform:uppercase}\
.get{color:#0a6}.post{color:#06c}.put{color:#a60}.patch{color:#a60}.delete{color:#c22}";

/// A tag as an HTML id (`event types` → `event-types`).
fn anchor(tag: &str) -> String {
    esc(&tag.replace(' ', "-"))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A schema in a few words: its type, or a link to the named schema.
fn type_of(schema: &Value) -> String {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("<a href=\"#schema-{0}\">{0}</a>", esc(name));
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(list) = schema.get(key).and_then(Value::as_array) {
            let parts: Vec<String> = list.iter().map(type_of).collect();
            return parts.join(" or ");
        }
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array) {
        let parts: Vec<String> = values
            .iter()
            .map(|v| format!("<code>{}</code>", esc(&v.to_string())))
            .collect();
        return parts.join(" | ");
    }
    match schema.get("type") {
        Some(Value::String(t)) if t == "array" => {
            format!(
                "array of {}",
                schema.get("items").map(type_of).unwrap_or_default()
            )
        }
        Some(Value::String(t)) => esc(t),
        Some(Value::Array(ts)) => ts
            .iter()
            .filter_map(Value::as_str)
            .map(esc)
            .collect::<Vec<_>>()
            .join(" or "),
        _ => "any".to_owned(),
    }
}

fn description(v: &Value) -> String {
    v.get("description")
        .and_then(Value::as_str)
        .map(esc)
        .unwrap_or_default()
}

fn properties(out: &mut String, schema: &Value) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        let _ = write!(out, "<p>{}</p>", type_of(schema));
        return;
    };
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    out.push_str("<table><tr><th>field</th><th>type</th><th>description</th></tr>");
    for (name, p) in props {
        let req = if required.contains(&name.as_str()) {
            " (required)"
        } else {
            ""
        };
        let _ = write!(
            out,
            "<tr><td><code>{}</code>{req}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            type_of(p),
            description(p)
        );
    }
    out.push_str("</table>");
}

/// Where a tag's routes go on the page: Posthorn's resources in the order a user meets them,
/// then anything else, then the front doors.
fn tag_rank(tag: &str) -> usize {
    const ORDER: [&str; 6] = [
        "events",
        "subscriptions",
        "deliveries",
        "event types",
        "applications",
        "service",
    ];
    match ORDER.iter().position(|t| *t == tag) {
        Some(i) => i,
        None if tag == "wazo-webhookd" || tag == "fluidsurveys" => 100,
        None => 50,
    }
}

/// One operation: its method and path, summary and description, parameters, body and answers.
fn operation(out: &mut String, path: &str, method: &str, op: &Value) {
    let id = op["operationId"].as_str().unwrap_or_default();
    let _ = write!(
        out,
        "<h3 id=\"{}\"><span class=\"m {m}\">{m}</span> <code>{}</code></h3><p><strong>{}</strong></p><p>{}</p>",
        esc(id),
        esc(path),
        esc(op["summary"].as_str().unwrap_or_default()),
        description(op),
        m = esc(method),
    );
    if let Some(params) = op["parameters"].as_array().filter(|p| !p.is_empty()) {
        out.push_str(
            "<table><tr><th>parameter</th><th>in</th><th>type</th><th>description</th></tr>",
        );
        for p in params {
            let req = if p["required"] == true {
                " (required)"
            } else {
                ""
            };
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{req}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(p["name"].as_str().unwrap_or_default()),
                esc(p["in"].as_str().unwrap_or_default()),
                type_of(&p["schema"]),
                description(p)
            );
        }
        out.push_str("</table>");
    }
    if let Some(body) = op.get("requestBody") {
        let schema = &body["content"]["application/json"]["schema"];
        let _ = write!(
            out,
            "<p>Body: {} — {}</p>",
            type_of(schema),
            description(body)
        );
    }
    if let Some(responses) = op["responses"].as_object() {
        out.push_str("<table><tr><th>status</th><th>answer</th><th>description</th></tr>");
        for (status, r) in responses {
            let schema = r["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .map(|c| type_of(&c["schema"]))
                .unwrap_or_default();
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{schema}</td><td>{}</td></tr>",
                esc(status),
                description(r)
            );
        }
        out.push_str("</table>");
    }
}

fn render(doc: &Value) -> String {
    let mut out = String::new();
    let title = doc["info"]["title"].as_str().unwrap_or("API");
    let _ = write!(
        out,
        "<!doctype html><html lang=en><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>{t} API reference</title><style>{STYLE}</style><h1>{t} API reference</h1><p>{d}</p>\
         <p>Every route below is also described, machine-readably, at <a href=\"/openapi.json\"><code>/openapi.json</code></a>. \
         Requests and answers are JSON; errors are <code>application/problem+json</code> naming each field at fault; \
         authenticate with <code>Authorization: Bearer TOKEN</code>.</p>",
        t = esc(title),
        d = description(&doc["info"]),
    );
    // Posthorn's own API first, tag by tag; the front doors (other systems' APIs) last.
    let mut ops: Vec<(usize, String, &str, &str, &Value)> = Vec::new();
    if let Some(paths) = doc["paths"].as_object() {
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                let tag = op["tags"][0].as_str().unwrap_or("other").to_owned();
                ops.push((tag_rank(&tag), tag, path.as_str(), method.as_str(), op));
            }
        }
    }
    ops.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    out.push_str("<h2>Routes</h2><ul>");
    let mut last_tag = None;
    for (_, tag, path, method, op) in &ops {
        if last_tag != Some(tag) {
            if last_tag.is_some() {
                out.push_str("</ul></li>");
            }
            let _ = write!(
                out,
                "<li><a href=\"#tag-{a}\">{t}</a><ul>",
                a = anchor(tag),
                t = esc(tag)
            );
            last_tag = Some(tag);
        }
        let _ = write!(
            out,
            "<li><a href=\"#{}\"><span class=\"m {m}\">{m}</span> <code>{}</code></a> {}</li>",
            esc(op["operationId"].as_str().unwrap_or_default()),
            esc(path),
            esc(op["summary"].as_str().unwrap_or_default()),
            m = esc(method),
        );
    }
    if last_tag.is_some() {
        out.push_str("</ul></li>");
    }
    out.push_str("</ul>");
    let mut last_tag = None;
    for (_, tag, path, method, op) in &ops {
        if last_tag != Some(tag) {
            let _ = write!(
                out,
                "<h2 id=\"tag-{a}\">{t}</h2>",
                a = anchor(tag),
                t = esc(tag)
            );
            last_tag = Some(tag);
        }
        operation(&mut out, path, method, op);
    }
    out.push_str("<h2>Schemas</h2>");
    if let Some(schemas) = doc["components"]["schemas"].as_object() {
        for (name, schema) in schemas {
            let _ = write!(
                out,
                "<h3 id=\"schema-{n}\">{n}</h3><p>{}</p>",
                description(schema),
                n = esc(name)
            );
            properties(&mut out, schema);
        }
    }
    out.push_str("</html>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_every_route_and_schema_and_escapes_text() {
        let doc = crate::openapi_document();
        let page = render(doc);
        for (path, ops) in doc["paths"].as_object().unwrap() {
            assert!(
                page.contains(&format!("<code>{}</code>", esc(path))),
                "{path}"
            );
            for op in ops.as_object().unwrap().values() {
                let id = op["operationId"].as_str().unwrap();
                assert!(page.contains(&format!("id=\"{id}\"")), "{id}");
            }
        }
        assert!(page.contains("id=\"schema-SubscriptionSpec\""));
        // Posthorn's own routes before the doors', and each operation's summary shown.
        let own = page.find("<code>/v1/events</code>").unwrap();
        let door = page.find("<code>/1.0/subscriptions</code>").unwrap();
        assert!(own < door, "the doors come last");
        let publish = &doc["paths"]["/v1/events"]["post"]["summary"];
        assert!(
            page.contains(&esc(publish.as_str().expect("publishing has a summary"))),
            "{publish}"
        );
        assert!(!page.contains("<script"));
        assert_eq!(esc("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
