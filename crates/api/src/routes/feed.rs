//! `/v1/subscriptions/{id}/feed`: the deliveries of a `poll` subscription, pulled by its consumer.
//!
//! - `GET …/feed?after=CURSOR&limit=N&wait=S`: the entries not yet acknowledged after the cursor
//!   (from the start without one), in publish order; with `wait`, held open up to that many
//!   seconds (at most 30) until there is one (long polling).
//! - `POST …/feed/ack {"cursor"}`: acknowledges every entry up to the cursor; what is not
//!   acknowledged comes again on the next read without `after`.
//! - `GET …/feed/stream`: the same entries as Server-Sent Events, live; a client that reconnects
//!   with `Last-Event-ID` acknowledges everything up to it and goes on after it.
//!
//! Each entry is the webhook that would have been pushed: its `body` (the envelope, as exact
//! bytes) and the Standard Webhooks headers that sign it, made when it is read, so a consumer
//! verifies it with any Standard Webhooks library. The caller needs the `consume` scope (or is
//! the admin) and sees only its own subscriptions' feeds.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::Stream;
use posthorn_core::id::Sub;
use posthorn_core::signing::signature_header;
use posthorn_core::time::now_ms;
use posthorn_core::{Invalid, Subscription};
use posthorn_store::FeedEntry;
use posthorn_wire::api::{AckRequest, Acknowledged, Feed, FeedItem};

use crate::auth::{Can, Consume};
use crate::error::{ApiError, ApiResult, Problem};
use crate::extract::{typed, JsonBody, PathId};
use crate::list::Query;
use crate::AppState;

/// The longest a read may wait for an entry.
const MAX_WAIT_S: u64 = 30;
/// How often a waiting read (or a stream with nothing to send) looks at the store again.
const LOOK_EVERY: Duration = Duration::from_millis(200);
/// Entries a read returns when it names no `limit`.
const DEFAULT_LIMIT: usize = 100;

/// The subscription behind a feed: the caller's own, and pulled.
async fn feed_of(
    state: &AppState,
    caller: &Can<Consume>,
    id: &posthorn_core::SubscriptionId,
) -> ApiResult<Subscription> {
    let sub = state
        .store
        .subscription(&caller.visibility(), id)
        .await?
        .ok_or(ApiError::NotFound("subscription"))?;
    let pulled = state.pulled(&sub.spec.service);
    if !pulled {
        return Err(ApiError::Conflict(format!(
            "subscription {} is pushed by its {} service; only a poll subscription has a feed",
            sub.id, sub.spec.service
        )));
    }
    Ok(sub)
}

/// Entries as the consumer gets them: each body and the headers that sign it, now (one time and
/// one set of secrets for the page).
fn items(sub: &Subscription, entries: &[FeedEntry]) -> Vec<FeedItem> {
    let now = now_ms();
    let timestamp = now / 1000;
    let secrets = sub.signing_secrets(now);
    entries
        .iter()
        .map(|entry| {
            let body = entry.event.envelope();
            let wire_id = entry.event.wire_id().into_owned();
            let signature = signature_header(secrets.iter().copied(), &wire_id, timestamp, &body);
            FeedItem {
                cursor: entry.cursor.to_string(),
                delivery_id: entry.delivery_id.clone(),
                event_name: entry.event.name.clone(),
                headers: [
                    ("webhook-id".to_owned(), wire_id),
                    ("webhook-timestamp".to_owned(), timestamp.to_string()),
                    ("webhook-signature".to_owned(), signature),
                ]
                .into_iter()
                .collect(),
                body: String::from_utf8_lossy(&body).into_owned(),
            }
        })
        .collect()
}

fn cursor(text: &str, field: &str) -> Result<i64, Invalid> {
    text.parse::<i64>()
        .ok()
        .filter(|c| *c >= 0)
        .ok_or_else(|| Invalid::one(field, "must be a cursor this feed gave (a whole number)"))
}

/// Read a poll subscription's feed: the entries not yet acknowledged, after a cursor.
#[utoipa::path(get, operation_id = "readFeed", path = "/v1/subscriptions/{id}/feed", tag = "feeds",
    params(("id" = String, Path),
           ("after" = Option<String>, Query, description = "A cursor: the entries after it (from the first not acknowledged without it)"),
           ("limit" = Option<usize>, Query, description = "1 to 1000 (default 100)"),
           ("wait" = Option<u64>, Query, description = "Seconds to wait for an entry when there is none (0 to 30; default 0)")),
    responses((status = 200, body = Feed), (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Can<Consume>,
    PathId(id): PathId<Sub>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Feed>> {
    let q = Query::parse(raw.as_deref());
    let after = q.get("after").map(|a| cursor(a, "after")).transpose()?;
    let limit = match q.get("limit") {
        None => DEFAULT_LIMIT,
        Some(_) => q.limit()?,
    };
    let wait = match q.get("wait") {
        None => 0,
        Some(w) => w
            .parse::<u64>()
            .ok()
            .filter(|w| *w <= MAX_WAIT_S)
            .ok_or_else(|| {
                Invalid::one("wait", "must be a whole number of seconds from 0 to 30")
            })?,
    };
    let sub = feed_of(&state, &caller, &id).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    let entries = loop {
        let entries = state.store.feed(&sub.id, after, limit).await?;
        if !entries.is_empty() || tokio::time::Instant::now() + LOOK_EVERY > deadline {
            break entries;
        }
        tokio::time::sleep(LOOK_EVERY).await;
    };
    let items = items(&sub, &entries);
    let cursor = items
        .last()
        .map(|i| i.cursor.clone())
        .or_else(|| after.map(|a| a.to_string()));
    Ok(Json(Feed { items, cursor }))
}

/// Acknowledge a poll subscription's feed up to a cursor: those entries are delivered.
#[utoipa::path(post, operation_id = "acknowledgeFeed", path = "/v1/subscriptions/{id}/feed/ack", tag = "feeds",
    params(("id" = String, Path)), request_body = AckRequest,
    responses((status = 200, body = Acknowledged), (status = 404, body = Problem), (status = 409, body = Problem),
              (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn acknowledge(
    State(state): State<AppState>,
    caller: Can<Consume>,
    PathId(id): PathId<Sub>,
    JsonBody(body): JsonBody,
) -> ApiResult<Json<Acknowledged>> {
    let req: AckRequest = typed(&body, "")?;
    let upto = cursor(&req.cursor, "cursor")?;
    let sub = feed_of(&state, &caller, &id).await?;
    let acknowledged = state.store.acknowledge(&sub.id, upto).await?;
    Ok(Json(Acknowledged { acknowledged }))
}

/// Follow a poll subscription's feed as Server-Sent Events: `id` is the entry's cursor, `event`
/// the event's name, `data` the entry (`{"cursor","delivery_id","event_name","headers","body"}`).
/// Reconnecting with `Last-Event-ID` acknowledges every entry up to it.
#[utoipa::path(get, operation_id = "streamFeed", path = "/v1/subscriptions/{id}/feed/stream", tag = "feeds",
    params(("id" = String, Path),
           ("Last-Event-ID" = Option<String>, Header, description = "The last cursor received: acknowledged, and the stream goes on after it")),
    responses((status = 200, content_type = "text/event-stream", description = "The feed's entries as they come"),
              (status = 404, body = Problem), (status = 409, body = Problem), (status = 422, body = Problem)),
    security(("bearer" = [])))]
pub(crate) async fn stream(
    State(state): State<AppState>,
    caller: Can<Consume>,
    PathId(id): PathId<Sub>,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    let last = headers
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| Invalid::one("Last-Event-ID", "must be a cursor this feed gave"))
                .and_then(|t| cursor(t.trim(), "Last-Event-ID"))
        })
        .transpose()?;
    let sub = feed_of(&state, &caller, &id).await?;
    if let Some(upto) = last {
        state.store.acknowledge(&sub.id, upto).await?;
    }
    let store = state.store.clone();
    let stream = follow(store, sub, last);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

/// The entries after `after`, as they come, until the client goes away. If the store cannot be
/// read, the stream says so in a last `error` event (and the log), then ends: the client
/// reconnects with its `Last-Event-ID`.
fn follow(
    store: posthorn_store::Store,
    sub: Subscription,
    after: Option<i64>,
) -> impl Stream<Item = Result<SseEvent, Infallible>> {
    futures_util::stream::unfold(
        (store, sub, after, VecDeque::<SseEvent>::new(), false),
        |(store, sub, mut after, mut ready, mut ended)| async move {
            loop {
                if let Some(event) = ready.pop_front() {
                    return Some((Ok(event), (store, sub, after, ready, ended)));
                }
                if ended {
                    return None;
                }
                match store.feed(&sub.id, after, DEFAULT_LIMIT).await {
                    Ok(entries) if !entries.is_empty() => {
                        for item in items(&sub, &entries) {
                            let data = serde_json::to_string(&item).unwrap_or_default();
                            ready.push_back(
                                SseEvent::default()
                                    .id(item.cursor.clone())
                                    .event(item.event_name.clone())
                                    .data(data),
                            );
                        }
                        after = entries.last().map(|e| e.cursor);
                    }
                    Ok(_) => tokio::time::sleep(LOOK_EVERY).await,
                    Err(e) => {
                        tracing::warn!(error = %e, subscription = %sub.id, "a feed stream cannot read the store; it ends");
                        ready.push_back(SseEvent::default().event("error").data(format!(
                            "the feed cannot be read now ({e}); reconnect with Last-Event-ID"
                        )));
                        ended = true;
                    }
                }
            }
        },
    )
}
