//! Deliveries through an egress proxy: HTTP `CONNECT` or SOCKS5 (`--egress-proxy`, or a
//! subscription's `proxy`).
//!
//! Every request is tunnelled, `http://` targets too: the proxy sees only a host and a port, the
//! request stays end to end (signed bytes, TLS with the receiver). Both handshakes are here (a
//! few lines each), so that a proxy's refusal is said as the proxy said it; so is the check in
//! front of them:
//!
//! - an address target is checked by the network policy exactly, whatever the proxy;
//! - `socks5://`: Posthorn resolves the name, drops the refused addresses and asks the proxy
//!   for a checked address, so the guard holds as it does without a proxy;
//! - `http://` (CONNECT) and `socks5h://`: the proxy resolves the name (corporate proxies admit
//!   names, and the server may not resolve outside names at all). Posthorn resolves it too: a
//!   name with any address in a refused range is refused; a name it cannot resolve is left to
//!   the proxy, and where that leads is the proxy's to police.
//!
//! The operator's proxy is trusted; a subscription's own proxy is a target like any other (its
//! address goes through the policy), or a subscriber could reach an internal port through it.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioIo;
use posthorn_core::NetworkPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::sender::{error_chain, resolve_checked, BoxError, CheckedResolver, RefusedTarget};

/// How the proxy is spoken to, and who resolves the target's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `http://`: `CONNECT host:port`; the proxy resolves.
    Connect,
    /// `socks5://`: Posthorn resolves and sends the checked address.
    Socks5,
    /// `socks5h://`: the proxy resolves.
    Socks5h,
}

/// A parsed proxy URL.
#[derive(Clone)]
pub struct Proxy {
    kind: Kind,
    /// `http://host:port`: where the connector connects (no credentials).
    address: Uri,
    /// `scheme://host:port`, for messages and logs.
    shown: Arc<str>,
    /// Username and password, decoded.
    credentials: Option<(String, String)>,
    /// The proxy's own address is checked by the network policy (a subscription's proxy).
    checked: bool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Proxy({})", self.shown)
    }
}

impl Proxy {
    /// `checked`: whether the proxy's own address goes through the network policy.
    pub fn parse(url: &str, checked: bool) -> Result<Self, String> {
        if let Some(fault) = posthorn_wire::http_config::proxy_url_fault(url) {
            return Err(fault);
        }
        let u = url::Url::parse(url).map_err(|e| e.to_string())?;
        let kind = match u.scheme() {
            "http" => Kind::Connect,
            "socks5" => Kind::Socks5,
            _ => Kind::Socks5h,
        };
        let host = u.host_str().unwrap_or_default();
        let port = u.port().unwrap_or_default();
        let address: Uri = format!("http://{host}:{port}")
            .parse()
            .map_err(|e| format!("is not a usable proxy address: {e}"))?;
        let decode = |s: &str| {
            urlencoding::decode(s)
                .map(|c| c.into_owned())
                .unwrap_or_else(|_| s.to_owned())
        };
        let credentials = (!u.username().is_empty() || u.password().is_some()).then(|| {
            (
                decode(u.username()),
                decode(u.password().unwrap_or_default()),
            )
        });
        Ok(Self {
            kind,
            shown: format!("{}://{host}:{port}", u.scheme()).into(),
            address,
            credentials,
            checked,
        })
    }

    /// `scheme://host:port`, without credentials.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Whether the proxy's own address goes through the network policy.
    pub(super) fn is_checked(&self) -> bool {
        self.checked
    }

    /// Whether Posthorn resolves the target's name (else the proxy does).
    fn resolves_locally(&self) -> bool {
        self.kind == Kind::Socks5
    }
}

/// The connector under TLS: straight to the (checked) target, or through a proxy.
#[derive(Clone)]
pub(super) struct Egress {
    policy: Arc<NetworkPolicy>,
    /// Straight to a target (checked by its resolver).
    direct: HttpConnector<CheckedResolver>,
    /// To the proxy, when there is one.
    via: Option<(Proxy, HttpConnector<CheckedResolver>)>,
}

impl Egress {
    /// `to_target` connects straight to a target, `to_proxy` to the proxy (when there is one).
    pub(super) fn new(
        policy: Arc<NetworkPolicy>,
        to_target: HttpConnector<CheckedResolver>,
        to_proxy: HttpConnector<CheckedResolver>,
        proxy: Option<&Proxy>,
    ) -> Self {
        Self {
            policy,
            direct: to_target,
            via: proxy.map(|p| (p.clone(), to_proxy)),
        }
    }
}

type Connecting = Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, BoxError>> + Send>>;

impl tower_service::Service<Uri> for Egress {
    type Response = TokioIo<TcpStream>;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // HttpConnector is always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, target: Uri) -> Connecting {
        let Some((proxy, mut to_proxy)) = self.via.clone() else {
            let mut direct = self.direct.clone();
            return Box::pin(async move { direct.call(target).await.map_err(Into::into) });
        };
        let policy = self.policy.clone();
        Box::pin(async move {
            check_proxy(&policy, &proxy)?;
            let (host, port) = guarded(&policy, &target, &proxy).await?;
            let shown = match host {
                Host::Name(ref name) => format!("{name}:{port}"),
                Host::Address(ip) => SocketAddr::new(ip, port).to_string(),
            };
            let why = |e: String| -> BoxError {
                format!("through the proxy {} to {shown}: {e}", proxy.shown).into()
            };
            let stream = to_proxy
                .call(proxy.address.clone())
                .await
                .map_err(|e| why(format!("cannot connect to the proxy: {}", error_chain(&e))))?;
            let mut stream = stream.into_inner();
            match proxy.kind {
                Kind::Connect => connect(&mut stream, &host, port, &proxy).await,
                Kind::Socks5 | Kind::Socks5h => socks5(&mut stream, &host, port, &proxy).await,
            }
            .map_err(why)?;
            Ok(TokioIo::new(stream))
        })
    }
}

/// The target as the proxy is asked for it.
#[derive(Debug)]
enum Host {
    /// The proxy resolves it.
    Name(String),
    /// Checked.
    Address(IpAddr),
}

/// A subscription's proxy given as an address in a refused range (a name is checked when the
/// connector resolves it).
fn check_proxy(policy: &NetworkPolicy, proxy: &Proxy) -> Result<(), BoxError> {
    if !proxy.checked {
        return Ok(());
    }
    let host = proxy.address.host().unwrap_or_default();
    if let Ok(ip) = host
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        if let Err(r) = policy.check(ip) {
            return Err(Box::new(RefusedTarget::by_policy(
                format!("proxy {}", proxy.shown),
                &[(ip, r.0)],
            )));
        }
    }
    Ok(())
}

/// What the proxy is asked to connect to, and the port: the target's host checked (see the
/// module's documentation for what each kind of proxy lets the policy see).
async fn guarded(
    policy: &NetworkPolicy,
    target: &Uri,
    proxy: &Proxy,
) -> Result<(Host, u16), BoxError> {
    let scheme = target.scheme_str().unwrap_or("http");
    let port = target
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let host = target
        .host()
        .ok_or("the URL names no host")?
        .trim_matches(|c| c == '[' || c == ']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        if let Err(r) = policy.check(ip) {
            return Err(Box::new(RefusedTarget::by_policy(
                ip.to_string(),
                &[(ip, r.0)],
            )));
        }
        return Ok((Host::Address(ip), port));
    }
    let resolved = resolve_checked(policy, host).await;
    if proxy.resolves_locally() {
        let ip = resolved?.allowed[0].ip();
        return Ok((Host::Address(ip), port));
    }
    match resolved {
        // Every address the name has here must be admitted: the proxy may pick any of them.
        Ok(checked) if checked.refused.is_empty() => Ok((Host::Name(host.to_owned()), port)),
        Ok(checked) => Err(Box::new(RefusedTarget::by_policy(
            host.to_owned(),
            &checked.refused,
        ))),
        Err(e) if e.is_policy() => Err(Box::new(e)),
        // Not resolvable here: the proxy resolves it.
        Err(_) => Ok((Host::Name(host.to_owned()), port)),
    }
}

/// The longest answer to `CONNECT` read (its status line and headers).
const MAX_CONNECT_ANSWER: usize = 16 * 1024;

/// `CONNECT host:port` (RFC 9110 §9.3.6), with the proxy's credentials when it has them; the
/// tunnel is open on a 2xx answer.
async fn connect(
    stream: &mut TcpStream,
    host: &Host,
    port: u16,
    proxy: &Proxy,
) -> Result<(), String> {
    let authority = match host {
        Host::Name(name) => format!("{name}:{port}"),
        Host::Address(ip) => SocketAddr::new(*ip, port).to_string(),
    };
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some((user, password)) = &proxy.credentials {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        request.push_str(&format!("Proxy-Authorization: Basic {basic}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send CONNECT: {e}"))?;
    // The answer's head, read a byte at a time up to its blank line: nothing of the tunnel's
    // own bytes may be taken with it.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_CONNECT_ANSWER {
            return Err(format!(
                "the proxy's answer to CONNECT is longer than {MAX_CONNECT_ANSWER} bytes"
            ));
        }
        let byte = stream.read_u8().await.map_err(|e| {
            format!("the proxy closed the connection before answering CONNECT ({e})")
        })?;
        head.push(byte);
    }
    let status_line = head
        .split(|&b| b == b'\r')
        .next()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(200..=299) => Ok(()),
        Some(407) if proxy.credentials.is_some() => {
            Err(format!("the proxy refused its credentials ({status_line})"))
        }
        Some(407) => Err(format!(
            "the proxy asks for credentials ({status_line}): put them in the proxy URL"
        )),
        Some(_) => Err(format!("the proxy refused the tunnel: {status_line}")),
        None => Err(format!(
            "the proxy's answer to CONNECT is not HTTP: {:?}",
            status_line.chars().take(80).collect::<String>()
        )),
    }
}

/// The SOCKS5 handshake (RFC 1928), with username and password (RFC 1929) when the proxy URL
/// has them.
async fn socks5(
    stream: &mut TcpStream,
    host: &Host,
    port: u16,
    proxy: &Proxy,
) -> Result<(), String> {
    let io = |e: std::io::Error| format!("the SOCKS5 handshake failed: {e}");
    let method = if proxy.credentials.is_some() { 2 } else { 0 };
    stream.write_all(&[5, 1, method]).await.map_err(io)?;
    let mut chosen = [0u8; 2];
    stream.read_exact(&mut chosen).await.map_err(io)?;
    if chosen[0] != 5 {
        return Err("the proxy does not speak SOCKS5".into());
    }
    if chosen[1] != method {
        return Err(if method == 2 {
            "the proxy does not take a username and password".into()
        } else {
            "the proxy asks for credentials: put them in the proxy URL".into()
        });
    }
    if let Some((user, password)) = &proxy.credentials {
        let (user, password) = (user.as_bytes(), password.as_bytes());
        if user.len() > 255 || password.len() > 255 {
            return Err("SOCKS5 credentials are at most 255 bytes each".into());
        }
        let mut auth = vec![1, user.len() as u8];
        auth.extend_from_slice(user);
        auth.push(password.len() as u8);
        auth.extend_from_slice(password);
        stream.write_all(&auth).await.map_err(io)?;
        let mut answer = [0u8; 2];
        stream.read_exact(&mut answer).await.map_err(io)?;
        if answer[1] != 0 {
            return Err("the proxy refused its credentials".into());
        }
    }
    let mut request = vec![5, 1, 0];
    match host {
        Host::Address(IpAddr::V4(ip)) => {
            request.push(1);
            request.extend_from_slice(&ip.octets());
        }
        Host::Address(IpAddr::V6(ip)) => {
            request.push(4);
            request.extend_from_slice(&ip.octets());
        }
        Host::Name(name) => {
            let name = name.as_bytes();
            if name.len() > 255 {
                return Err("a host name longer than 255 bytes cannot go through SOCKS5".into());
            }
            request.push(3);
            request.push(name.len() as u8);
            request.extend_from_slice(name);
        }
    }
    request.extend_from_slice(&port.to_be_bytes());
    stream.write_all(&request).await.map_err(io)?;
    let mut reply = [0u8; 4];
    stream.read_exact(&mut reply).await.map_err(io)?;
    if reply[1] != 0 {
        let why = match reply[1] {
            1 => "general failure",
            2 => "not allowed by its rules",
            3 => "network unreachable",
            4 => "host unreachable",
            5 => "connection refused",
            6 => "TTL expired",
            7 => "command not supported",
            8 => "address type not supported",
            _ => "unknown error",
        };
        return Err(format!("the SOCKS5 proxy could not connect: {why}"));
    }
    // The address the proxy bound, which is of no use here.
    let rest = match reply[3] {
        1 => 4 + 2,
        4 => 16 + 2,
        3 => usize::from(stream.read_u8().await.map_err(io)?) + 2,
        _ => return Err("the SOCKS5 proxy's answer is malformed".into()),
    };
    let mut bound = vec![0u8; rest];
    stream.read_exact(&mut bound).await.map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_parsed_with_their_credentials_kept_apart() {
        let p = Proxy::parse("http://us%40er:p%3Ass@proxy.internal:3128", false).unwrap();
        assert_eq!(p.shown(), "http://proxy.internal:3128");
        assert_eq!(p.credentials, Some(("us@er".to_owned(), "p:ss".to_owned())));
        assert_eq!(format!("{p:?}"), "Proxy(http://proxy.internal:3128)");
        assert!(Proxy::parse("socks5://127.0.0.1:1080", true)
            .unwrap()
            .resolves_locally());
        assert!(!Proxy::parse("socks5h://127.0.0.1:1080", true)
            .unwrap()
            .resolves_locally());
        for bad in [
            "https://proxy:3128",
            "http://proxy",
            "http://proxy:3128/path",
            "proxy:3128",
        ] {
            assert!(Proxy::parse(bad, false).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn a_name_the_proxy_resolves_is_refused_when_any_address_it_has_here_is() {
        let policy = NetworkPolicy::default();
        let proxy = Proxy::parse("http://127.0.0.1:3128", false).unwrap();
        let e = guarded(&policy, &"http://localhost:8080/x".parse().unwrap(), &proxy)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("loopback"), "{e}");
        let e = guarded(&policy, &"https://10.1.2.3/x".parse().unwrap(), &proxy)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("private"), "{e}");
        // A name this server cannot resolve is the proxy's to resolve.
        let (host, port) = guarded(
            &policy,
            &"https://no-such-host.invalid/x".parse().unwrap(),
            &proxy,
        )
        .await
        .unwrap();
        assert!(matches!(host, Host::Name(n) if n == "no-such-host.invalid"));
        assert_eq!(port, 443);
    }
}
