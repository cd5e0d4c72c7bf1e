//! OAuth2 client credentials to the receiver (RFC 6749 §4.4): the access token of one
//! subscription, fetched from its token endpoint through the same checked sender as deliveries
//! (the network policy applies to the token URL as to targets), kept until shortly before it
//! expires, and shared by the deliveries in flight: one fetch at a time, behind an async lock,
//! which the others wait on and then read.
//!
//! The client secret goes to the token endpoint only (Basic or form fields, as configured); the
//! token endpoint's answer is named in errors by its status and its `error` fields, never by the
//! credentials. Tokens are kept in memory only, per subscription (a changed config is a new
//! target, with a new cache).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;
use url::Url;

use super::sender::{HttpSender, OwnClient, Request};
use super::{CertificateCheck, ClientAuth, OAuth2};

/// A token is renewed this long before it expires (or at half its life, if that is shorter).
const RENEW_BEFORE: Duration = Duration::from_secs(30);

/// How long the token endpoint has to answer.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// An access token and until when it is used.
#[derive(Clone)]
pub(crate) struct Token {
    pub value: Arc<str>,
    /// `None`: the server gave no `expires_in`; used until the receiver answers 401.
    renew_at: Option<Instant>,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token").finish_non_exhaustive()
    }
}

/// Why no token could be had: the message for the attempt's log, and whether the token endpoint
/// answered at all (an unreachable one trips the circuit like an unreachable receiver).
#[derive(Debug)]
pub(crate) struct TokenError {
    pub message: String,
    pub answered: bool,
}

/// One subscription's token source.
pub(crate) struct TokenSource {
    config: OAuth2,
    url: Url,
    tls: CertificateCheck,
    current: tokio::sync::Mutex<Option<Token>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("token_url", &self.config.token_url)
            .field("client_id", &self.config.client_id)
            .finish_non_exhaustive()
    }
}

/// The token endpoint's answer (RFC 6749 §5.1), and its error (§5.2).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<f64>,
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenSource {
    /// `None` when the token URL does not parse (the config check refuses that first).
    pub fn new(config: OAuth2, tls: CertificateCheck) -> Option<Self> {
        Some(Self {
            url: Url::parse(&config.token_url).ok()?,
            config,
            tls,
            current: tokio::sync::Mutex::new(None),
        })
    }

    /// The token URL, for the network policy's check when the subscription is written.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// A token to send: the one kept, unless it is due for renewal, else a new one. Deliveries
    /// asking at once wait for the one fetch.
    pub async fn token(
        &self,
        sender: &HttpSender,
        own: Option<&OwnClient>,
    ) -> Result<Token, TokenError> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref() {
            if t.renew_at.is_none_or(|at| Instant::now() < at) {
                return Ok(t.clone());
            }
        }
        let fresh = self.fetch(sender, own).await?;
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    /// The receiver refused `stale` (401): a new token, unless another delivery already got one
    /// since, which is then the one to use.
    pub async fn renew(
        &self,
        sender: &HttpSender,
        own: Option<&OwnClient>,
        stale: &Token,
    ) -> Result<Token, TokenError> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref() {
            if t.value != stale.value {
                return Ok(t.clone());
            }
        }
        *current = None;
        let fresh = self.fetch(sender, own).await?;
        *current = Some(fresh.clone());
        Ok(fresh)
    }

    async fn fetch(
        &self,
        sender: &HttpSender,
        own: Option<&OwnClient>,
    ) -> Result<Token, TokenError> {
        let c = &self.config;
        let mut headers = vec![
            (
                "content-type".to_owned(),
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("accept".to_owned(), "application/json".to_owned()),
            (
                "user-agent".to_owned(),
                posthorn_core::USER_AGENT.to_owned(),
            ),
        ];
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("grant_type", "client_credentials");
            if let Some(scope) = &c.scope {
                form.append_pair("scope", scope);
            }
            if let Some(audience) = &c.audience {
                form.append_pair("audience", audience);
            }
            match c.client_auth {
                ClientAuth::Basic => {
                    // RFC 6749 §2.3.1: each part form-encoded, then Basic.
                    let pair = format!(
                        "{}:{}",
                        urlencoding::encode(&c.client_id),
                        urlencoding::encode(&c.client_secret)
                    );
                    let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                    headers.push(("authorization".to_owned(), format!("Basic {b64}")));
                }
                ClientAuth::Form => {
                    form.append_pair("client_id", &c.client_id);
                    form.append_pair("client_secret", &c.client_secret);
                }
            }
            form.finish()
        };
        let request = Request {
            method: "POST",
            url: self.url.clone(),
            headers,
            body: Bytes::from(body),
            timeout: TOKEN_TIMEOUT,
            tls: self.tls.clone(),
            secret_headers: Arc::from(vec!["authorization".to_owned()]),
        };
        let fetched = Instant::now();
        let exchange = sender.send_via(&request, own).await;
        let where_ = self.url.as_str();
        let Some(response) = exchange.response else {
            return Err(TokenError {
                message: format!(
                    "the OAuth2 token endpoint {where_} could not be reached: {}",
                    exchange.error.unwrap_or_default()
                ),
                answered: false,
            });
        };
        let answer: Option<TokenAnswer> = serde_json::from_str(&response.body).ok();
        let refused = |detail: String| TokenError {
            message: format!(
                "the OAuth2 token endpoint {where_} answered HTTP {}{detail}",
                response.status
            ),
            answered: true,
        };
        if !(200..=299).contains(&response.status) {
            let detail = answer
                .and_then(|a| {
                    let e = a.error?;
                    Some(match a.error_description {
                        Some(d) => format!(": {e} ({d})"),
                        None => format!(": {e}"),
                    })
                })
                .unwrap_or_default();
            return Err(refused(detail));
        }
        let Some(answer) = answer else {
            return Err(refused(" without a JSON token answer".into()));
        };
        let Some(value) = answer.access_token.filter(|t| !t.is_empty()) else {
            return Err(refused(" without an access_token".into()));
        };
        if let Some(kind) = &answer.token_type {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(refused(format!(
                    " with a token of type {kind:?}; only Bearer tokens are sent"
                )));
            }
        }
        let renew_at = answer
            .expires_in
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| {
                let life = Duration::from_secs_f64(s.min(1e9));
                fetched + life.saturating_sub(RENEW_BEFORE.min(life / 2))
            });
        Ok(Token {
            value: Arc::from(value),
            renew_at,
        })
    }
}
