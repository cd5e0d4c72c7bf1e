//! The `email` service against a real SMTP server started by the test: a templated mail
//! delivered, a 451 retried, a 550 dead, and the subscription refused while no `[smtp]` is set.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::util::{attempt_outcomes, Backend, Server, ServerOptions};

const WAIT: Duration = Duration::from_secs(30);

/// A mail as the server took it.
#[derive(Debug, Clone)]
struct Mail {
    rcpt: Vec<String>,
    data: String,
}

/// A small SMTP server: `busy@` is refused with 451 the first time, `reject@` with 550 always.
struct Smtp {
    port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl Smtp {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let busy_seen = Arc::new(Mutex::new(false));
        let kept = mails.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let mails = kept.clone();
                let busy_seen = busy_seen.clone();
                tokio::spawn(async move {
                    let (read, mut write) = socket.into_split();
                    let mut lines = BufReader::new(read).lines();
                    let _ = write.write_all(b"220 test ESMTP\r\n").await;
                    let mut rcpt = Vec::new();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let upper = line.to_ascii_uppercase();
                        let answer: &[u8] =
                            if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                                b"250-test\r\n250 8BITMIME\r\n"
                            } else if upper.starts_with("MAIL FROM") {
                                rcpt.clear();
                                b"250 OK\r\n"
                            } else if upper.starts_with("RCPT TO") {
                                if line.contains("reject@") {
                                    b"550 5.1.1 no such mailbox\r\n"
                                } else if line.contains("busy@")
                                    && !std::mem::replace(&mut *busy_seen.lock().unwrap(), true)
                                {
                                    b"451 4.3.0 try again later\r\n"
                                } else {
                                    rcpt.push(line.clone());
                                    b"250 OK\r\n"
                                }
                            } else if upper == "DATA" {
                                let _ = write.write_all(b"354 go ahead\r\n").await;
                                let mut data = String::new();
                                while let Ok(Some(l)) = lines.next_line().await {
                                    if l == "." {
                                        break;
                                    }
                                    data.push_str(&l);
                                    data.push('\n');
                                }
                                mails.lock().unwrap().push(Mail {
                                    rcpt: rcpt.clone(),
                                    data,
                                });
                                b"250 2.0.0 queued as 42\r\n"
                            } else if upper == "QUIT" {
                                let _ = write.write_all(b"221 bye\r\n").await;
                                return;
                            } else {
                                b"250 OK\r\n"
                            };
                        if write.write_all(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Smtp { port, mails }
    }
}

async fn email_is_delivered_retried_and_refused_as_smtp_says(backend: Backend) {
    let smtp = Smtp::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = format!("[smtp]\nhost = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"Posthorn <posthorn@example.com>\"\n", smtp.port);
    let server = Server::start_with(ServerOptions::configured(backend, dir.path(), &config)).await;
    let api = server.api();
    let names = api.service_names().await;
    assert!(names.contains(&"email".to_owned()), "{names:?}");
    let subscribe = |to: &'static str| {
        let api = api.clone();
        async move {
            let r = api
                .post(
                    "/v1/subscriptions",
                    json!({"name": to, "service": "email", "events": ["user_created"],
                    "config": {"to": [to], "subject": "{{ event_name }} for {{ event.data.user }}",
                               "body": "Hello {{ event.data.user }}, welcome."},
                    "retry": {"schedule_s": [0]}}),
                )
                .await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body["id"].as_str().unwrap().to_owned()
        }
    };
    let r = api
        .post(
            "/v1/subscriptions",
            json!({"name": "x", "service": "email", "events": ["e"],
            "config": {"to": ["not an address"], "subject": "s", "body": "b"}}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["errors"][0]["field"].as_str()),
        (422, Some("config.to[0]")),
        "{}",
        r.body
    );
    let ann = subscribe("ann@example.com").await;
    let busy = subscribe("busy@example.com").await;
    let reject = subscribe("reject@example.com").await;
    api.publish(json!({"name": "user_created", "data": {"user": "Ann"}}))
        .await;

    let d = api.first_delivery(&ann, WAIT).await;
    let d = api.delivery_with_status(&d, "succeeded", WAIT).await;
    let attempt = &d["attempt_log"][0];
    assert_eq!(
        attempt["request"]["envelope"]["to"],
        json!(["ann@example.com"])
    );
    assert_eq!(
        attempt["request"]["headers"]["subject"],
        "user_created for Ann"
    );
    assert_eq!(attempt["response"]["code"], "250");
    assert_eq!(
        attempt["request"]["headers"]["content-type"],
        "text/plain; charset=utf-8"
    );
    // The command line shows the mail and the SMTP reply.
    let shown = crate::cli::cli(&server, &["deliveries", "show", d["id"].as_str().unwrap()]).await;
    assert!(
        shown.stdout.contains("→ mail to ann@example.com")
            && shown.stdout.contains("user_created for Ann")
            && shown.stdout.contains("← SMTP 250"),
        "{}",
        shown.stdout
    );
    let mails = smtp.mails.lock().unwrap().clone();
    let mail = mails
        .iter()
        .find(|m| m.rcpt.iter().any(|r| r.contains("ann@")))
        .expect("a mail to ann");
    assert!(
        mail.data.contains("Subject: user_created for Ann"),
        "{}",
        mail.data
    );
    assert!(mail.data.contains("Hello Ann, welcome."), "{}", mail.data);
    assert!(
        mail.data.contains("From: Posthorn <posthorn@example.com>"),
        "{}",
        mail.data
    );

    // 451: retried, then delivered.
    let d = api.first_delivery(&busy, WAIT).await;
    let d = api.delivery_with_status(&d, "succeeded", WAIT).await;
    let outcomes = attempt_outcomes(&d);
    assert_eq!(outcomes, ["retry", "success"], "{d}");
    assert!(
        d["attempt_log"][0]["error"]
            .as_str()
            .unwrap()
            .contains("451")
            || d["attempt_log"][0]["response"]["code"] == "451",
        "{d}"
    );

    // 550: dead at once.
    let d = api.first_delivery(&reject, WAIT).await;
    let d = api.delivery_with_status(&d, "dead", WAIT).await;
    assert_eq!(d["attempts"], 1, "{d}");
    assert_eq!(d["attempt_log"][0]["outcome"], "final");
}

#[tokio::test]
async fn email_needs_an_smtp_section() {
    let server = Server::start(Backend::Sqlite).await;
    let r = server
        .api()
        .post(
            "/v1/subscriptions",
            json!({"name": "x", "service": "email", "events": ["e"],
            "config": {"to": ["ann@example.com"], "subject": "s", "body": "b"}}),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(
        r.body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("[smtp]"),
        "{}",
        r.body
    );
}

both_backends!(email_is_delivered_retried_and_refused_as_smtp_says,);
