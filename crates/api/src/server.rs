//! Serving the router over HTTP/1.1, with the limits a request's head is held to.
//!
//! A request whose target or headers are too long is answered like every other error, with
//! `application/problem+json` ([`head_limits`]): 414 for a target over [`MAX_URI`] bytes, 431 for
//! more than [`MAX_HEADERS`] fields or over [`MAX_HEADER_BYTES`] bytes of them. hyper parses the
//! head before any of this runs and answers a bare status itself when its own limits are passed, so
//! those are set well above ours ([`HYPER_BUFFER`], [`HYPER_HEADERS`]; its limit on a target,
//! 65,534 bytes, is fixed): only a head beyond them gets hyper's empty 414 or 431.

use std::time::Duration;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;

/// Longest request target (path and query) answered, in bytes.
pub const MAX_URI: usize = 16 * 1024;
/// Most header fields a request may carry.
pub const MAX_HEADERS: usize = 100;
/// Most bytes of header names and values a request may carry.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// hyper's buffer for a request's head: past it, hyper answers a bare 431.
const HYPER_BUFFER: usize = 1024 * 1024;
/// Header fields hyper parses: past it, hyper answers a bare 431.
const HYPER_HEADERS: usize = 1000;
/// How long a client may take to send a request's head (against connections held open by a
/// trickle of bytes).
const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Refuses a request whose head is over the limits, as problem+json.
pub async fn head_limits(request: Request, next: Next) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > MAX_URI {
        return ApiError::UriTooLong(MAX_URI).into_response();
    }
    let headers = request.headers();
    if headers.len() > MAX_HEADERS {
        return ApiError::HeadersTooLarge(format!(
            "a request carries at most {MAX_HEADERS} header fields"
        ))
        .into_response();
    }
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if bytes > MAX_HEADER_BYTES {
        return ApiError::HeadersTooLarge(format!(
            "a request carries at most {MAX_HEADER_BYTES} bytes of headers"
        ))
        .into_response();
    }
    next.run(request).await
}

/// Serves `app` on `listener` until `stop`, then lets the requests in progress finish.
pub async fn serve(listener: TcpListener, app: Router, stop: CancellationToken) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.max_buf_size(HYPER_BUFFER)
        .max_headers(HYPER_HEADERS)
        .timer(TokioTimer::new())
        .header_read_timeout(HEAD_TIMEOUT);
    let graceful = GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or the like: wait rather than spin.
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        let connection = http.serve_connection(TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that goes away mid-request is not the server's error.
            let _ = connection.await;
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
