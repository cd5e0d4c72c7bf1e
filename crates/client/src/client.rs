//! The HTTP client: a base URL, a bearer token, and typed calls.

use posthorn_core::subscription::SubscriptionSpec;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use posthorn_wire::api::{
    Accepted, AcceptedBatch, AckRequest, Acknowledged, ApplicationRequest, ApplicationView,
    DeliveryView, EventTypeRequest, EventTypeView, EventView, Feed, Page, Problem, PublishRequest,
    RecoverRequest, Recovered, SubscriptionView, TestSent,
};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with an error (problem+json).
    #[error("{}: {}", .0.title, .0.detail)]
    Api(Problem),
    /// No answer: the server is down, the address is wrong, the connection broke.
    #[error("cannot reach {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer that is not what the API documents (another server on that address?).
    #[error("unexpected answer from {url} ({status}): {detail}")]
    Protocol {
        url: String,
        status: u16,
        detail: String,
    },
}

/// A connection to one Posthorn server, as one caller (the admin token or an application's
/// access token).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of every debug print.
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

/// A list's filters, as `?key=value` pairs (`status`, `since`, `limit`, `cursor`, …).
pub type Filters<'a> = &'a [(&'a str, String)];

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Self {
        Self {
            http: reqwest::Client::builder()
                .user_agent(concat!("posthorn-cli/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        query: Filters<'_>,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, Error> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if !query.is_empty() {
            req = req.query(query);
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let unreachable = |source| Error::Unreachable {
            url: url.clone(),
            source,
        };
        let res = req.send().await.map_err(unreachable)?;
        let status = res.status();
        let bytes = res.bytes().await.map_err(unreachable)?;
        let protocol = |detail: String| Error::Protocol {
            url: url.clone(),
            status: status.as_u16(),
            detail,
        };
        if !status.is_success() {
            return Err(match serde_json::from_slice::<Problem>(&bytes) {
                Ok(problem) => Error::Api(problem),
                Err(_) => protocol(String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into()),
            });
        }
        // 204: nothing to read; `()` and `Value` read `null`.
        let body: &[u8] = if status == StatusCode::NO_CONTENT || bytes.is_empty() {
            b"null"
        } else {
            &bytes
        };
        serde_json::from_slice(body).map_err(|e| protocol(format!("not the documented JSON: {e}")))
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, query: Filters<'_>) -> Result<T, Error> {
        self.call(Method::GET, path, query, None::<&()>).await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Option<&(impl Serialize + ?Sized)>,
    ) -> Result<T, Error> {
        self.call(Method::POST, path, &[], body).await
    }

    /// `POST /v1/events` with one event.
    pub async fn publish(&self, event: &PublishRequest) -> Result<Accepted, Error> {
        self.post("/v1/events", Some(event)).await
    }

    /// `POST /v1/events` with a batch (1 to 1000 events).
    pub async fn publish_batch(&self, events: &[PublishRequest]) -> Result<AcceptedBatch, Error> {
        self.post("/v1/events", Some(events)).await
    }

    /// The same, from borrowed events (a batch sent again without some of them).
    pub async fn publish_batch_refs(
        &self,
        events: &[&PublishRequest],
    ) -> Result<AcceptedBatch, Error> {
        self.post("/v1/events", Some(events)).await
    }

    pub async fn event(&self, id: &str) -> Result<EventView, Error> {
        self.get(&format!("/v1/events/{}", seg(id)), &[]).await
    }

    pub async fn subscriptions(&self, q: Filters<'_>) -> Result<Page<SubscriptionView>, Error> {
        self.get("/v1/subscriptions", q).await
    }

    pub async fn subscription(&self, id: &str) -> Result<SubscriptionView, Error> {
        self.get(&format!("/v1/subscriptions/{}", seg(id)), &[])
            .await
    }

    /// Creates a subscription from a spec, or from any JSON (the server checks it).
    pub async fn create_subscription(
        &self,
        spec: &(impl Serialize + ?Sized),
    ) -> Result<SubscriptionView, Error> {
        self.post("/v1/subscriptions", Some(spec)).await
    }

    /// `PATCH` (a JSON merge patch, RFC 7396).
    pub async fn patch_subscription(
        &self,
        id: &str,
        patch: &Value,
    ) -> Result<SubscriptionView, Error> {
        let path = format!("/v1/subscriptions/{}", seg(id));
        self.call(Method::PATCH, &path, &[], Some(patch)).await
    }

    /// `PUT`: the spec whole.
    pub async fn replace_subscription(
        &self,
        id: &str,
        spec: &SubscriptionSpec,
    ) -> Result<SubscriptionView, Error> {
        let path = format!("/v1/subscriptions/{}", seg(id));
        self.call(Method::PUT, &path, &[], Some(spec)).await
    }

    pub async fn delete_subscription(&self, id: &str) -> Result<(), Error> {
        let path = format!("/v1/subscriptions/{}", seg(id));
        self.call(Method::DELETE, &path, &[], None::<&()>).await
    }

    /// `enable`, `disable`, `rotate-secret`.
    pub async fn subscription_action(
        &self,
        id: &str,
        action: &str,
    ) -> Result<SubscriptionView, Error> {
        self.post(
            &format!("/v1/subscriptions/{}/{action}", seg(id)),
            None::<&()>,
        )
        .await
    }

    pub async fn test_subscription(&self, id: &str) -> Result<TestSent, Error> {
        self.post(&format!("/v1/subscriptions/{}/test", seg(id)), None::<&()>)
            .await
    }

    /// A poll subscription's feed: the entries not acknowledged after `after` (from the first
    /// without it), waiting up to `wait_s` seconds for one.
    pub async fn feed(
        &self,
        id: &str,
        after: Option<&str>,
        limit: usize,
        wait_s: u64,
    ) -> Result<Feed, Error> {
        let mut q = vec![("limit", limit.to_string()), ("wait", wait_s.to_string())];
        if let Some(a) = after {
            q.push(("after", a.to_owned()));
        }
        self.get(&format!("/v1/subscriptions/{}/feed", seg(id)), &q)
            .await
    }

    /// Acknowledges a poll subscription's feed up to `cursor`.
    pub async fn acknowledge(&self, id: &str, cursor: &str) -> Result<Acknowledged, Error> {
        let body = AckRequest {
            cursor: cursor.to_owned(),
        };
        self.post(
            &format!("/v1/subscriptions/{}/feed/ack", seg(id)),
            Some(&body),
        )
        .await
    }

    pub async fn recover(&self, id: &str, since: &str) -> Result<Recovered, Error> {
        let body = RecoverRequest {
            since: since.to_owned(),
        };
        self.post(
            &format!("/v1/subscriptions/{}/recover", seg(id)),
            Some(&body),
        )
        .await
    }

    /// A subscription's deliveries, or everyone's the caller sees.
    pub async fn deliveries(
        &self,
        subscription: Option<&str>,
        q: Filters<'_>,
    ) -> Result<Page<DeliveryView>, Error> {
        match subscription {
            Some(id) => {
                self.get(&format!("/v1/subscriptions/{}/deliveries", seg(id)), q)
                    .await
            }
            None => self.get("/v1/deliveries", q).await,
        }
    }

    /// A delivery with every attempt's request and response.
    pub async fn delivery(&self, id: &str) -> Result<DeliveryView, Error> {
        self.get(&format!("/v1/deliveries/{}", seg(id)), &[]).await
    }

    pub async fn retry(&self, id: &str) -> Result<DeliveryView, Error> {
        self.post(&format!("/v1/deliveries/{}/retry", seg(id)), None::<&()>)
            .await
    }

    pub async fn event_types(&self, q: Filters<'_>) -> Result<Page<EventTypeView>, Error> {
        self.get("/v1/event-types", q).await
    }

    pub async fn put_event_type(
        &self,
        name: &str,
        body: &EventTypeRequest,
    ) -> Result<EventTypeView, Error> {
        let path = format!("/v1/event-types/{}", seg(name));
        self.call(Method::PUT, &path, &[], Some(body)).await
    }

    pub async fn delete_event_type(&self, name: &str) -> Result<(), Error> {
        let path = format!("/v1/event-types/{}", seg(name));
        self.call(Method::DELETE, &path, &[], None::<&()>).await
    }

    pub async fn applications(&self, q: Filters<'_>) -> Result<Page<ApplicationView>, Error> {
        self.get("/v1/applications", q).await
    }

    pub async fn application(&self, id: &str) -> Result<ApplicationView, Error> {
        self.get(&format!("/v1/applications/{}", seg(id)), &[])
            .await
    }

    pub async fn create_application(
        &self,
        body: &ApplicationRequest,
    ) -> Result<ApplicationView, Error> {
        self.post("/v1/applications", Some(body)).await
    }

    pub async fn delete_application(&self, id: &str) -> Result<(), Error> {
        let path = format!("/v1/applications/{}", seg(id));
        self.call(Method::DELETE, &path, &[], None::<&()>).await
    }

    pub async fn rotate_application_secret(&self, id: &str) -> Result<ApplicationView, Error> {
        self.post(
            &format!("/v1/applications/{}/rotate-secret", seg(id)),
            None::<&()>,
        )
        .await
    }
}

/// An id as one path segment: percent-encoded, so that `a/b` or `..` stays one segment.
fn seg(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out == "." || out == ".." {
        return out.replace('.', "%2E");
    }
    out
}
