//! Sending one HTTP request of an attempt.
//!
//! Attempts go out through hyper's pooled client directly (with rustls for `https`): an attempt
//! is one request, with no redirect, retry or proxy layer in between, and its URL is parsed once.
//!
//! Targets are checked after DNS resolution: the connector's resolver resolves the host, drops
//! every address the [`NetworkPolicy`] refuses, and hands only the checked addresses to the
//! connector, so the address connected to is the address checked (no second lookup to rebind).
//! IP literals, which skip the resolver, are checked before sending. Redirects are not followed
//! and proxies from the environment are not used (either would let a request reach an unchecked
//! address); a configured proxy checks the target before it asks the proxy (`proxy.rs`).

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::Method;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::dns::Name;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use posthorn_core::event::ENVELOPE_VERSION;
use posthorn_core::NetworkPolicy;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Serialize;
use url::Url;

use super::proxy::{Egress, Proxy};
use super::{CertificateCheck, HttpConfig};

type Client = hyper_util::client::legacy::Client<HttpsConnector<Egress>, Full<Bytes>>;

/// A subscription's own client: it presents the subscription's certificate (mutual TLS), or
/// goes through its own proxy. Its own connection pool, so that no connection made with one
/// subscription's identity carries another's request.
#[derive(Clone)]
pub struct OwnClient(Client);

impl std::fmt::Debug for OwnClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnClient(…)")
    }
}

/// Response bodies are kept in the log up to this many bytes.
pub const MAX_LOGGED_BODY: usize = 16 * 1024;

/// A request ready to send: everything but the network.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: &'static str,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    /// Shared with the send (a reference count, not a copy of the body).
    pub body: Bytes,
    pub timeout: Duration,
    pub tls: CertificateCheck,
    /// The headers (lowercase) whose values are credentials: masked in the log. Found once per
    /// subscription ([`secret_headers`]), shared by its attempts.
    pub secret_headers: Arc<[String]>,
}

impl Request {
    /// The request as the attempt log shows it: `{"method","url","headers","body"}`, the headers
    /// by name. Written straight from the request, not through a `serde_json::Value` (which
    /// copied every header and the body, then printed the copy): this runs for every attempt.
    ///
    /// `envelope`: the body is the event's default envelope, which the store rebuilds from the
    /// event when the log is read (`"envelope": version` stands for it): the body, the largest
    /// part of the log, is then neither escaped into it nor written to the database again.
    pub fn log_json(&self, envelope: bool) -> String {
        let body = (!envelope).then_some(&self.body[..]);
        if self.url.username().is_empty() && self.url.password().is_none() {
            return request_log(
                self.method,
                self.url.as_str(),
                &self.headers,
                &self.secret_headers,
                body,
            );
        }
        // Credentials in a URL (a templated one can render them) stay out of the log.
        let mut shown = self.url.clone();
        let _ = shown.set_username("***");
        let _ = shown.set_password(None);
        request_log(
            self.method,
            shown.as_str(),
            &self.headers,
            &self.secret_headers,
            body,
        )
    }
}

/// The log of a request that could not be built (its template failed): the configured URL, which
/// may be a template, and the configured headers.
pub fn unsent_log(config: &HttpConfig, secret_headers: &[String]) -> String {
    let headers = headers(config, Vec::new());
    let url = posthorn_core::secrets::shown_url(&config.url);
    request_log(
        config.method.as_str(),
        &url,
        &headers,
        secret_headers,
        Some(b""),
    )
}

/// The configured headers whose values are credentials, lowercase.
pub fn secret_headers(config: &HttpConfig) -> Arc<[String]> {
    config
        .headers
        .keys()
        .filter(|h| config.is_secret_header(h))
        .map(|h| h.to_ascii_lowercase())
        .collect()
}

/// `body: None`: the default envelope (see [`Request::log_json`]).
fn request_log(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    secret: &[String],
    body: Option<&[u8]>,
) -> String {
    #[derive(Serialize)]
    struct Log<'a> {
        method: &'a str,
        url: &'a str,
        headers: BTreeMap<&'a str, &'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        body: Option<std::borrow::Cow<'a, str>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        envelope: Option<u32>,
    }
    let log = Log {
        method,
        url,
        headers: headers
            .iter()
            .map(|(k, v)| {
                if secret.iter().any(|s| s == k) {
                    (k.as_str(), posthorn_core::secrets::MASK)
                } else {
                    (k.as_str(), v.as_str())
                }
            })
            .collect(),
        body: body.map(String::from_utf8_lossy),
        envelope: body.is_none().then_some(ENVELOPE_VERSION),
    };
    serde_json::to_string(&log).expect("strings serialize")
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: String,
}

impl Response {
    /// The response as the attempt log shows it: `{"status","headers","body"}`.
    pub fn log_json(&self) -> String {
        #[derive(Serialize)]
        struct Log<'a> {
            status: u16,
            headers: &'a BTreeMap<String, String>,
            body: &'a str,
        }
        let log = Log {
            status: self.status,
            headers: &self.headers,
            body: &self.body,
        };
        serde_json::to_string(&log).expect("strings serialize")
    }
}

/// What one attempt got: a response, or an error before one came.
#[derive(Debug)]
pub struct Exchange {
    pub response: Option<Response>,
    pub error: Option<String>,
    /// The target was refused by the network policy (no request was sent).
    pub refused: bool,
    pub duration: Duration,
}

/// Why a request got no response.
struct SendError {
    message: String,
    refused: bool,
}

impl From<String> for SendError {
    fn from(message: String) -> Self {
        Self {
            message,
            refused: false,
        }
    }
}

/// A target not connected to: refused by the network policy, or without an address.
#[derive(Debug)]
pub(super) struct RefusedTarget {
    host: String,
    reasons: String,
    /// Refused by the network policy (every address it resolves to is in a refused range), not
    /// merely unresolvable: a policy refusal will not change by waiting.
    by_policy: bool,
}

impl std::fmt::Display for RefusedTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.by_policy {
            write!(f, "refused target {}: {}", self.host, self.reasons)
        } else {
            write!(f, "{}: {}", self.host, self.reasons)
        }
    }
}

impl std::error::Error for RefusedTarget {}

impl RefusedTarget {
    /// `host` refused because of the addresses `ips` (each with its range).
    pub(super) fn by_policy(host: String, ips: &[(IpAddr, &'static str)]) -> Self {
        Self {
            host,
            reasons: describe_refusal(ips),
            by_policy: true,
        }
    }

    pub(super) fn is_policy(&self) -> bool {
        self.by_policy
    }
}

fn describe_refusal(ips: &[(IpAddr, &'static str)]) -> String {
    let mut text = ips
        .iter()
        .map(|(ip, range)| format!("{ip} is in a {range} range"))
        .collect::<Vec<_>>()
        .join(", ");
    if let Some((ip, _)) = ips.first() {
        text.push_str("; ");
        text.push_str(&posthorn_core::network::admit_hint(*ip));
    }
    text
}

/// A name's addresses, sorted by the network policy.
pub(super) struct Resolved {
    /// Admitted (never empty).
    pub allowed: Vec<SocketAddr>,
    /// Refused, each with its range.
    pub refused: Vec<(IpAddr, &'static str)>,
}

/// Resolves `host` and sorts its addresses by `policy`; an error when none is admitted (or it
/// has none).
pub(super) async fn resolve_checked(
    policy: &NetworkPolicy,
    host: &str,
) -> Result<Resolved, RefusedTarget> {
    let unresolvable = |why: String| RefusedTarget {
        host: host.to_owned(),
        reasons: why,
        by_policy: false,
    };
    let resolved = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| unresolvable(format!("it does not resolve: {e}")))?;
    let mut refused = Vec::new();
    let allowed: Vec<SocketAddr> = resolved
        .filter(|a| match policy.check(a.ip()) {
            Ok(()) => true,
            Err(r) => {
                refused.push((a.ip(), r.0));
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        return Err(if refused.is_empty() {
            unresolvable("it resolves to no address".to_owned())
        } else {
            RefusedTarget::by_policy(host.to_owned(), &refused)
        });
    }
    Ok(Resolved { allowed, refused })
}

/// The resolver of the connectors: with a policy, only the addresses it admits are connected
/// to; without (the operator's own proxy), every address.
#[derive(Clone)]
pub(super) struct CheckedResolver {
    policy: Option<Arc<NetworkPolicy>>,
}

pub(super) type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str();
            let Some(policy) = policy else {
                let all: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
                return Ok(all.into_iter());
            };
            Ok(resolve_checked(&policy, host).await?.allowed.into_iter())
        })
    }
}

/// Sends attempts; holds the HTTP clients (one per certificate policy), which pool connections.
#[derive(Clone)]
pub struct HttpSender {
    policy: Arc<NetworkPolicy>,
    /// The local address connections go out from (`--egress-bind`).
    bind: Option<IpAddr>,
    /// The proxy every request goes through (`--egress-proxy`), unless its subscription names
    /// its own.
    proxy: Option<Proxy>,
    verified: Client,
    unverified: Client,
    with_bundle: Arc<Mutex<HashMap<String, Client>>>,
}

impl HttpSender {
    pub fn new(policy: NetworkPolicy) -> Result<Self, rustls::Error> {
        Self::with_egress(policy, None, None)
    }

    /// Connections go out from `bind` when given, through `proxy` when given.
    pub fn with_egress(
        policy: NetworkPolicy,
        bind: Option<IpAddr>,
        proxy: Option<Proxy>,
    ) -> Result<Self, rustls::Error> {
        let policy = Arc::new(policy);
        let tls = |check: bool| -> Result<ClientConfig, rustls::Error> {
            Ok(verifier(&CertificateCheck::Enabled(check))
                .map_err(rustls::Error::General)?
                .with_no_client_auth())
        };
        let (verified, unverified) = (tls(true)?, tls(false)?);
        Ok(Self {
            verified: client(&policy, bind, proxy.as_ref(), verified),
            unverified: client(&policy, bind, proxy.as_ref(), unverified),
            with_bundle: Arc::default(),
            policy,
            bind,
            proxy,
        })
    }

    fn client_for(&self, tls: &CertificateCheck) -> Result<Client, String> {
        match tls {
            CertificateCheck::Enabled(true) => Ok(self.verified.clone()),
            CertificateCheck::Enabled(false) => Ok(self.unverified.clone()),
            CertificateCheck::CaBundle(path) => {
                let mut cache = self.with_bundle.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(c) = cache.get(path) {
                    return Ok(c.clone());
                }
                let config = verifier(tls)?.with_no_client_auth();
                let c = client(&self.policy, self.bind, self.proxy.as_ref(), config);
                cache.insert(path.clone(), c.clone());
                Ok(c)
            }
        }
    }

    /// Checks an IP-literal host (a named host is checked by the resolver).
    fn check_literal(&self, url: &Url) -> Result<(), String> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        self.policy
            .check(ip)
            .map_err(|r| RefusedTarget::by_policy(ip.to_string(), &[(ip, r.0)]).to_string())
    }

    /// A subscription's own client: presenting `identity` (its certificates, the leaf first,
    /// and their key) when given, going through `proxy` when given (else through the server's
    /// proxy, if any), checking the receiver's certificate as `tls` says. Refused (with why)
    /// when the key does not fit the certificate.
    pub fn own_client(
        &self,
        tls: &CertificateCheck,
        identity: Option<(
            Vec<CertificateDer<'static>>,
            rustls::pki_types::PrivateKeyDer<'static>,
        )>,
        proxy: Option<&Proxy>,
    ) -> Result<OwnClient, String> {
        let builder = verifier(tls)?;
        let config =
            match identity {
                Some((certificates, key)) => builder
                    .with_client_auth_cert(certificates, key)
                    .map_err(|e| {
                        format!("the certificate and the key do not make a client identity: {e}")
                    })?,
                None => builder.with_no_client_auth(),
            };
        let proxy = proxy.or(self.proxy.as_ref());
        Ok(OwnClient(client(&self.policy, self.bind, proxy, config)))
    }

    pub async fn send(&self, req: &Request) -> Exchange {
        self.send_via(req, None).await
    }

    /// [`HttpSender::send`], through the subscription's own client when it has one.
    pub async fn send_via(&self, req: &Request, own: Option<&OwnClient>) -> Exchange {
        let start = Instant::now();
        let result = self.try_send(req, own).await;
        let duration = start.elapsed();
        match result {
            Ok(response) => Exchange {
                response: Some(response),
                error: None,
                refused: false,
                duration,
            },
            Err(error) => Exchange {
                response: None,
                error: Some(error.message),
                refused: error.refused,
                duration,
            },
        }
    }

    async fn try_send(
        &self,
        req: &Request,
        own: Option<&OwnClient>,
    ) -> Result<Response, SendError> {
        self.check_literal(&req.url).map_err(|message| SendError {
            message,
            refused: true,
        })?;
        let client = match own {
            Some(OwnClient(c)) => c.clone(),
            None => self.client_for(&req.tls)?,
        };
        let mut request = http::Request::new(Full::new(req.body.clone()));
        *request.method_mut() =
            Method::from_bytes(req.method.as_bytes()).map_err(|e| e.to_string())?;
        *request.uri_mut() = req
            .url
            .as_str()
            .parse()
            .map_err(|e| format!("invalid URL {}: {e}", req.url))?;
        let headers = request.headers_mut();
        headers.reserve(req.headers.len());
        for (k, v) in &req.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("invalid header name {k:?}"))?;
            let value =
                HeaderValue::from_str(v).map_err(|_| format!("invalid value for header {k}"))?;
            headers.insert(name, value);
        }
        tokio::time::timeout(req.timeout, async {
            let response = client.request(request).await.map_err(|e| SendError {
                message: error_chain(&e),
                refused: refused_by_policy(&e),
            })?;
            let (parts, body) = response.into_parts();
            let headers = parts
                .headers
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_owned(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            Ok(Response {
                status: parts.status.as_u16(),
                headers,
                body: read_capped(body).await,
            })
        })
        .await
        .map_err(|_| SendError::from(format!("timed out after {} ms", req.timeout.as_millis())))?
    }
}

/// Reads at most [`MAX_LOGGED_BODY`] bytes of a response body; the rest is not read.
async fn read_capped(mut body: hyper::body::Incoming) -> String {
    let mut out = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        let room = MAX_LOGGED_BODY - out.len();
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= MAX_LOGGED_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a failed request was refused by the network policy (the resolver's refusal, somewhere
/// in the chain of causes).
fn refused_by_policy(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<RefusedTarget>() {
            return r.by_policy;
        }
        source = s.source();
    }
    false
}

/// The whole chain of causes, so that "error sending request" says why.
pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
        source = s.source();
    }
    msg
}

/// A pooled client over the checking resolver (straight, or through `proxy`), with this TLS
/// configuration for `https`.
fn client(
    policy: &Arc<NetworkPolicy>,
    bind: Option<IpAddr>,
    proxy: Option<&Proxy>,
    tls: ClientConfig,
) -> Client {
    let connector = |policy: Option<Arc<NetworkPolicy>>| {
        let mut http = HttpConnector::new_with_resolver(CheckedResolver { policy });
        http.set_local_address(bind);
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(Duration::from_secs(10)));
        http
    };
    // The server's own proxy is trusted; a subscription's is checked like a target.
    let proxy_policy = proxy.filter(|p| p.is_checked()).map(|_| policy.clone());
    let http = Egress::new(
        policy.clone(),
        connector(Some(policy.clone())),
        connector(proxy_policy),
        proxy,
    );
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(https)
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, rustls::Error>
{
    ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions()
}

/// A TLS configuration that checks the receiver's certificate as `tls` says (the webpki roots,
/// a CA bundle's, or any certificate), its client authentication still to choose.
fn verifier(
    tls: &CertificateCheck,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, String> {
    let builder = tls_builder().map_err(|e| format!("cannot set TLS up: {e}"))?;
    Ok(match tls {
        CertificateCheck::Enabled(true) => builder.with_root_certificates(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        CertificateCheck::Enabled(false) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider()))),
        CertificateCheck::CaBundle(path) => builder.with_root_certificates(bundle(path)?),
    })
}

/// The roots of a CA bundle (PEM): only these are trusted for its subscriptions.
fn bundle(path: &str) -> Result<RootCertStore, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read the CA bundle {path}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("the CA bundle {path} is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("the CA bundle {path} holds an unusable certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("the CA bundle {path} holds no certificate"));
    }
    Ok(roots)
}

/// `verify_certificate: false`: any certificate is accepted (the handshake's signatures are
/// still checked, against the certificate presented).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The request for one attempt of an `http` delivery: the configured URL, method and static
/// headers, then Posthorn's own headers (which win over static ones of the same name).
pub fn build_request(
    config: &HttpConfig,
    secret_headers: &Arc<[String]>,
    url: Url,
    body: Bytes,
    posthorn_headers: Vec<(String, String)>,
) -> Request {
    let body = if config.method.has_body() {
        body
    } else {
        Bytes::new()
    };
    Request {
        method: config.method.as_str(),
        url,
        headers: headers(config, posthorn_headers),
        body,
        timeout: Duration::from_millis(config.timeout_ms.into()),
        tls: config.verify_certificate.clone(),
        secret_headers: secret_headers.clone(),
    }
}

/// The configured static headers (lowercased), the content type unless one of them set it, then
/// Posthorn's own headers, which win over static ones of the same name.
fn headers(config: &HttpConfig, posthorn_headers: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut headers: Vec<(String, String)> = config
        .headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .filter(|(k, _)| !posthorn_headers.iter().any(|(p, _)| p == k))
        .collect();
    if config.method.has_body() && !headers.iter().any(|(k, _)| k == "content-type") {
        headers.push(("content-type".into(), config.content_type.clone()));
    }
    headers.extend(posthorn_headers);
    headers
}
