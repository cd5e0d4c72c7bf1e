//! Deliveries through an egress proxy (`--egress-proxy`, or a subscription's `proxy`): an HTTP
//! CONNECT proxy and a SOCKS5 proxy written here record what each request asked them for.
//! Deliveries arrive through them; the network guard still refuses a target in a refused range
//! (the proxy is never asked); a subscription's own proxy is checked like a target; the proxy's
//! password is in no answer, log or database file.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::util::{wait_for, Receiver, Server, ServerOptions};

/// A proxy on loopback that tunnels to whatever it is asked for, recording each ask as
/// `host:port` (the name, or the address, as the client sent it).
#[derive(Clone)]
pub(crate) struct TestProxy {
    pub port: u16,
    asked: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone, Copy)]
pub(crate) enum Kind {
    Connect,
    Socks5,
}

impl TestProxy {
    /// A proxy of `kind` that demands `credentials` (user, password) when given.
    pub async fn start(kind: Kind, credentials: Option<(&'static str, &'static str)>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let record = asked.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let _ = match kind {
                        Kind::Connect => serve_connect(client, credentials, record).await,
                        Kind::Socks5 => serve_socks5(client, credentials, record).await,
                    };
                });
            }
        });
        Self { port, asked }
    }

    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

async fn serve_connect(
    mut client: TcpStream,
    credentials: Option<(&str, &str)>,
    asked: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(client.read_u8().await?);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head
        .strip_prefix("CONNECT ")
        .and_then(|rest| rest.split(' ').next())
        .unwrap_or_default()
        .to_owned();
    if let Some((user, password)) = credentials {
        use base64::Engine;
        let expected = format!(
            "proxy-authorization: basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        );
        if !head
            .to_ascii_lowercase()
            .contains(&expected.to_ascii_lowercase())
        {
            client
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n")
                .await?;
            return Ok(());
        }
    }
    asked.lock().unwrap().push(target.clone());
    let mut upstream = TcpStream::connect(&target).await?;
    client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

async fn serve_socks5(
    mut client: TcpStream,
    credentials: Option<(&str, &str)>,
    asked: Arc<Mutex<Vec<String>>>,
) -> std::io::Result<()> {
    let mut greeting = [0u8; 2];
    client.read_exact(&mut greeting).await?;
    let mut methods = vec![0u8; greeting[1].into()];
    client.read_exact(&mut methods).await?;
    let wanted = if credentials.is_some() { 2 } else { 0 };
    if !methods.contains(&wanted) {
        client.write_all(&[5, 0xff]).await?;
        return Ok(());
    }
    client.write_all(&[5, wanted]).await?;
    if let Some((user, password)) = credentials {
        let mut version_and_len = [0u8; 2];
        client.read_exact(&mut version_and_len).await?;
        let mut got_user = vec![0u8; version_and_len[1].into()];
        client.read_exact(&mut got_user).await?;
        let len = client.read_u8().await?;
        let mut got_password = vec![0u8; len.into()];
        client.read_exact(&mut got_password).await?;
        let ok = got_user == user.as_bytes() && got_password == password.as_bytes();
        client.write_all(&[1, if ok { 0 } else { 1 }]).await?;
        if !ok {
            return Ok(());
        }
    }
    let mut request = [0u8; 4];
    client.read_exact(&mut request).await?;
    let host = match request[3] {
        1 => {
            let mut ip = [0u8; 4];
            client.read_exact(&mut ip).await?;
            std::net::Ipv4Addr::from(ip).to_string()
        }
        4 => {
            let mut ip = [0u8; 16];
            client.read_exact(&mut ip).await?;
            format!("[{}]", std::net::Ipv6Addr::from(ip))
        }
        _ => {
            let len = client.read_u8().await?;
            let mut name = vec![0u8; len.into()];
            client.read_exact(&mut name).await?;
            String::from_utf8_lossy(&name).into_owned()
        }
    };
    let port = client.read_u16().await?;
    let target = format!("{host}:{port}");
    asked.lock().unwrap().push(target.clone());
    let mut upstream = TcpStream::connect(&target).await?;
    client.write_all(&[5, 0, 0, 1, 0, 0, 0, 0, 0, 0]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

const PROXY_PASSWORD: &str = "s3cret-proxy-pass";

/// The first delivery of `event_id`, once it has been attempted.
async fn attempted(api: &crate::util::Api, event_id: &str) -> serde_json::Value {
    let id = wait_for(Duration::from_secs(15), "the delivery", || async {
        let e = api.get(&format!("/v1/events/{event_id}")).await.body;
        e["deliveries"][0]["id"].as_str().map(str::to_owned)
    })
    .await;
    wait_for(Duration::from_secs(15), "an attempt", || async {
        let d = api.get(&format!("/v1/deliveries/{id}")).await.body;
        (d["attempt_log"].as_array().is_some_and(|l| !l.is_empty())).then_some(d)
    })
    .await
}

/// The server's proxy carries every delivery, its credentials sent to it alone; the target is
/// still checked: a name that resolves into a refused range is refused, and the proxy never
/// hears of it. The proxy itself is the operator's, and may be anywhere (here on a loopback
/// address the policy refuses).
#[tokio::test]
async fn deliveries_go_through_the_servers_connect_proxy() {
    let proxy = TestProxy::start(Kind::Connect, Some(("ops", PROXY_PASSWORD))).await;
    let receiver = Receiver::start_on("127.0.0.2").await;
    let server = Server::start_with(ServerOptions {
        allow_loopback: false,
        extra: vec![
            "--allow-network".into(),
            "127.0.0.2/32".into(),
            "--egress-proxy".into(),
            format!("http://ops:{PROXY_PASSWORD}@127.0.0.1:{}", proxy.port),
        ],
        ..ServerOptions::default()
    })
    .await;
    let api = server.api();
    api.subscribe(&receiver.url, &["through"], json!({})).await;
    api.publish(json!({"name": "through", "data": {"n": 1}}))
        .await;
    let hit = wait_for(Duration::from_secs(15), "the delivery", || async {
        receiver.hits().into_iter().next()
    })
    .await;
    assert_eq!(hit.json()["data"]["n"], 1);
    let port = receiver
        .url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    assert_eq!(proxy.asked(), [format!("127.0.0.2:{port}")]);

    // A name that resolves to loopback, which this server refuses: refused before the proxy.
    api.subscribe(
        &format!("http://{{{{ event.data.host }}}}:{port}/hook"),
        &["named"],
        json!({}),
    )
    .await;
    let event = api
        .publish(json!({"name": "named", "data": {"host": "localhost"}}))
        .await;
    let d = attempted(&api, event["id"].as_str().unwrap()).await;
    assert_eq!(d["attempt_log"][0]["outcome"], "final", "{d}");
    let error = d["attempt_log"][0]["error"].as_str().unwrap();
    assert!(error.contains("refused target localhost"), "{error}");
    assert!(error.contains("loopback"), "{error}");
    assert_eq!(
        proxy.asked().len(),
        1,
        "the proxy was not asked: {:?}",
        proxy.asked()
    );

    let logged = server.log();
    assert!(
        !logged.contains(PROXY_PASSWORD),
        "the proxy's password in the log"
    );
    assert!(
        logged.contains(&format!("http://127.0.0.1:{}", proxy.port)),
        "the log names the proxy, without its credentials"
    );

    // A proxy URL that is not one stops the server at start, without echoing it.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_posthorn"))
        .args(["serve", "--database", "sqlite::memory:", "--egress-proxy"])
        .arg(format!("https://ops:{PROXY_PASSWORD}@proxy.internal"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("egress_proxy"), "{stderr}");
    assert!(!stderr.contains(PROXY_PASSWORD), "{stderr}");
}

/// A subscription names its own proxy: SOCKS5 with Posthorn resolving (the proxy is asked for
/// an address), `socks5h` and CONNECT with the proxy resolving (asked for the name). The
/// proxy's address is checked like a target's; its password is sealed and never shown; a
/// proxy that refuses the credentials is said so in the attempt log.
#[tokio::test]
async fn a_subscription_goes_through_its_own_proxy() {
    let socks = TestProxy::start(Kind::Socks5, Some(("sock", PROXY_PASSWORD))).await;
    let connect = TestProxy::start(Kind::Connect, None).await;
    let guarded = TestProxy::start(Kind::Connect, Some(("ops", "right-one"))).await;
    let receiver = Receiver::start().await;
    let server = Server::start_with(ServerOptions {
        // `localhost` may resolve to ::1 too: a proxy that resolves names may pick either.
        extra: vec!["--allow-network".into(), "::1/128".into()],
        ..ServerOptions::default()
    })
    .await;
    let api = server.api();
    let port = receiver.port();
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    let cases = [
        (
            "socks5",
            format!("socks5://sock:{PROXY_PASSWORD}@127.0.0.1:{}", socks.port),
            &socks,
            format!("127.0.0.1:{port}"),
        ),
        (
            "socks5h",
            format!("socks5h://sock:{PROXY_PASSWORD}@127.0.0.1:{}", socks.port),
            &socks,
            format!("localhost:{port}"),
        ),
        (
            "connect",
            format!("http://localhost:{}", connect.port),
            &connect,
            format!("localhost:{port}"),
        ),
    ];
    let mut sub_ids = Vec::new();
    for (event, proxy_url, proxy, asked) in &cases {
        let sub = api
            .subscribe(
                &by_name,
                &[event],
                json!({"config": {"url": by_name, "proxy": proxy_url}}),
            )
            .await;
        sub_ids.push(sub["id"].as_str().unwrap().to_owned());
        let before = proxy.asked().len();
        api.publish(json!({"name": event, "data": {}})).await;
        wait_for(Duration::from_secs(15), "the delivery", || async {
            receiver
                .hits()
                .into_iter()
                .find(|h| h.json()["name"] == *event)
        })
        .await;
        assert_eq!(
            proxy.asked()[before..],
            *std::slice::from_ref(asked),
            "{event}"
        );
    }

    // Wrong credentials: the proxy's refusal, in its words, in the attempt log.
    api.subscribe(
        &by_name,
        &["refused"],
        json!({"config": {"url": by_name,
            "proxy": format!("http://ops:wr0ng-pass-9@127.0.0.1:{}", guarded.port)}}),
    )
    .await;
    let event = api.publish(json!({"name": "refused", "data": {}})).await;
    let d = attempted(&api, event["id"].as_str().unwrap()).await;
    let error = d["attempt_log"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("the proxy refused its credentials")
            && error.contains("407")
            && error.contains(&format!("http://127.0.0.1:{}", guarded.port)),
        "{error}"
    );
    assert!(!error.contains("wr0ng-pass-9"), "{error}");

    // A subscription's proxy is a target: one in a refused range is refused when written; so
    // is a URL that is not a proxy's.
    for (proxy, says) in [
        ("http://10.9.9.9:3128", "private"),
        ("https://proxy.internal:3128", "socks5"),
        ("http://proxy.internal", "port"),
    ] {
        let r = api
            .post(
                "/v1/subscriptions",
                json!({"name": "n", "service": "http", "events": ["e"],
                    "config": {"url": by_name, "proxy": proxy}}),
            )
            .await;
        assert_eq!(r.status, 422, "{proxy}: {}", r.body);
        assert_eq!(r.body["errors"][0]["field"], "config.proxy", "{}", r.body);
        let message = r.body["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(says), "{proxy}: {message}");
    }

    // The password: sealed, shown masked, in no log or database file.
    let shown = api
        .get(&format!("/v1/subscriptions/{}", sub_ids[0]))
        .await
        .body;
    let proxy_shown = shown["config"]["proxy"].as_str().unwrap();
    assert!(!proxy_shown.contains(PROXY_PASSWORD), "{proxy_shown}");
    assert!(proxy_shown.contains("127.0.0.1"), "{proxy_shown}");
    assert!(
        !server.log().contains(PROXY_PASSWORD),
        "the password in the log"
    );
    let holding = server.database_files_holding(PROXY_PASSWORD);
    assert!(holding.is_empty(), "the password in {holding:?}");
}
