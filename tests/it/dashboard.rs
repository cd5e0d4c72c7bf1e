//! The dashboard in a real browser (headless Chromium through chromedriver): sign in, follow a
//! failing delivery to its attempts, retry it once the receiver is fixed, with the mouse and with
//! the keyboard alone; the portal shows one
//! application's objects and refuses forged and expired links; another origin cannot use the
//! session. Runs when `POSTHORN_TEST_CHROMEDRIVER` names a chromedriver (`.ci/run` installs
//! Debian's); `POSTHORN_SCREENSHOTS=DIR` also saves a screenshot of each page there.

use std::process::Stdio;
use std::time::Duration;

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use crate::util::{wait_for, Answer, Backend, Receiver, Server, TOKEN};

/// A chromedriver and a headless Chromium session, ended on drop (`kill_on_drop`).
struct Browser {
    client: Client,
    _driver: Child,
}

impl Browser {
    async fn start(width: u32, height: u32) -> Self {
        // Several TLS providers are compiled in; the WebDriver client needs one named.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let driver_path = std::env::var("POSTHORN_TEST_CHROMEDRIVER").expect("chromedriver");
        let port = crate::util::free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({"args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--window-size={width},{height}"),
            ]}),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = wait_for(Duration::from_secs(20), "chromedriver", || {
            let caps = caps.clone();
            let url = url.clone();
            async move {
                ClientBuilder::rustls()
                    .ok()?
                    .capabilities(caps)
                    .connect(&url)
                    .await
                    .ok()
            }
        })
        .await;
        Self {
            client,
            _driver: driver,
        }
    }

    /// Waits for `css` to be shown and to contain `text`.
    async fn wait_text(&self, css: &str, text: &str) -> String {
        let c = &self.client;
        wait_for(
            Duration::from_secs(15),
            &format!("{css} to show {text:?}"),
            || async move {
                let el = c.find(Locator::Css(css)).await.ok()?;
                let t = el.text().await.ok()?;
                t.contains(text).then_some(t)
            },
        )
        .await
    }

    async fn click(&self, css: &str) {
        let el = self
            .client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        el.click().await.unwrap();
    }

    async fn fill(&self, css: &str, value: &str) {
        let el = self
            .client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"));
        el.send_keys(value).await.unwrap();
    }

    async fn screenshot(&self, name: &str) {
        if let Ok(dir) = std::env::var("POSTHORN_SCREENSHOTS") {
            let png = self.client.screenshot().await.unwrap();
            std::fs::write(std::path::Path::new(&dir).join(format!("{name}.png")), png).unwrap();
        }
    }

    /// Presses and releases `key`, sent to whatever has the focus (as a keyboard would).
    async fn press(&self, key: Key) {
        let key = char::from(key);
        let actions = KeyActions::new("keyboard".into())
            .then(KeyAction::Down { value: key })
            .then(KeyAction::Up { value: key });
        self.client.perform_actions(actions).await.unwrap();
    }

    /// Types `text` into whatever has the focus.
    async fn type_text(&self, text: &str) {
        let mut actions = KeyActions::new("keyboard".into());
        for c in text.chars() {
            actions = actions
                .then(KeyAction::Down { value: c })
                .then(KeyAction::Up { value: c });
        }
        self.client.perform_actions(actions).await.unwrap();
    }

    /// Presses Tab until the element matching `css` has the focus (at most 100 times); every
    /// element the focus passes through must show it (a visible outline).
    async fn tab_to(&self, css: &str) {
        let script = "const e = document.activeElement; const s = getComputedStyle(e); \
            return [e.matches(arguments[0]), s.outlineStyle, s.outlineWidth, e.outerHTML.slice(0, 160)];";
        let mut passed = Vec::new();
        for _ in 0..100 {
            self.press(Key::Tab).await;
            let focused = self.client.execute(script, vec![json!(css)]).await.unwrap();
            let html = focused[3].as_str().unwrap_or_default().to_owned();
            assert!(
                focused[1] != "none" && focused[2] != "0px",
                "the focus on {html} is not visible (outline {} {})",
                focused[1],
                focused[2]
            );
            if focused[0] == true {
                return;
            }
            passed.push(html);
        }
        panic!("Tab never reached {css}; it went through {passed:#?}");
    }

    async fn sign_in(&self, base: &str) {
        self.client.goto(&format!("{base}/ui/")).await.unwrap();
        self.fill("#token", TOKEN).await;
        self.click("#signin").await;
        self.wait_text("#who", "admin").await;
    }
}

/// A server whose "Billing hook" subscription (filter `amount > 10`, no retries) has a dead
/// delivery of an `invoice.paid` event holding a `<script>` note, its receiver answering 500; a
/// second subscription, "Users hook", beside it.
struct Failing {
    server: Server,
    receiver: Receiver,
    sub: String,
    event: Value,
    delivery: String,
}

impl Failing {
    async fn start() -> Self {
        let server = Server::start(Backend::Sqlite).await;
        let receiver = Receiver::start().await;
        receiver.answer_by_default(Answer::status(500));
        let api = server.api();
        let sub = api
            .subscribe(
                &receiver.url,
                &["invoice.paid"],
                json!({"name": "Billing hook", "filter": "amount > 10", "retry": {"schedule_s": []}}),
            )
            .await;
        let sub = sub["id"].as_str().unwrap().to_owned();
        api.subscribe(&receiver.url, &["user.*"], json!({"name": "Users hook"}))
            .await;
        let event = api
            .publish(json!({"name": "invoice.paid", "data": {"amount": 42, "note": "<script>alert(1)</script>"}}))
            .await;
        let delivery = api.first_delivery(&sub, Duration::from_secs(5)).await;
        api.delivery_with_status(&delivery, "dead", Duration::from_secs(10))
            .await;
        Self {
            server,
            receiver,
            sub,
            event,
            delivery,
        }
    }
}

#[tokio::test]
#[cfg_attr(
    not(browser_tests),
    ignore = "POSTHORN_TEST_CHROMEDRIVER is not set: the browser tests are skipped"
)]
async fn sign_in_follow_a_failing_delivery_and_retry_it() {
    let Failing {
        server,
        receiver,
        sub,
        event,
        delivery,
    } = Failing::start().await;
    let api = server.api();

    let b = Browser::start(1280, 900).await;
    // Not signed in: the sign-in form.
    b.client
        .goto(&format!("{}/ui/", server.base))
        .await
        .unwrap();
    b.wait_text("h1", "Sign in").await;
    // Nothing to navigate to, nor to sign out of, before signing in.
    let nav = b.client.find(Locator::Css("#nav")).await.unwrap();
    assert!(
        !nav.is_displayed().await.unwrap(),
        "the navigation shows on the sign-in page"
    );
    b.screenshot("sign-in").await;
    // A wrong token is refused where it was typed.
    b.fill("#token", "not-the-admin-token").await;
    b.click("#signin").await;
    b.wait_text(".error", "Unauthorized").await;
    b.client.refresh().await.unwrap();
    b.fill("#token", TOKEN).await;
    b.click("#signin").await;
    let table = b.wait_text("#subscriptions", "Billing hook").await;
    assert!(
        table.contains("Users hook") && table.contains("amount > 10"),
        "{table}"
    );
    // The failing one: since when, and its success rate.
    b.wait_text("#subscriptions", "0 % of 1").await;
    b.wait_text("#subscriptions", "failing since").await;
    b.screenshot("subscriptions").await;

    b.click(&format!("tr[data-id='{sub}'] a")).await;
    b.wait_text("#deliveries", &delivery).await;
    b.wait_text("#deliveries", "dead").await;
    // How its last attempt went, in the list: the receiver's status and the time it took.
    let last = b
        .wait_text(&format!("tr[data-id='{delivery}'] td.last-answer"), "500")
        .await;
    assert_eq!(last.trim(), "500");
    let listed = api.deliveries(&sub).await;
    let summary = &listed
        .iter()
        .find(|d| d["id"] == delivery.as_str())
        .unwrap()["last_attempt"];
    assert_eq!(
        (&summary["status"], &summary["outcome"]),
        (&json!(500), &json!("final")),
        "{summary}"
    );
    assert!(summary["duration_ms"].as_i64().unwrap() >= 0);
    b.screenshot("subscription").await;
    b.click(&format!("#deliveries tr[data-id='{delivery}'] a"))
        .await;
    let attempt = b.wait_text("section.attempt", "Attempt 1").await;
    assert!(attempt.contains("500"), "{attempt}");
    // The event's data is shown as text, not run as HTML.
    assert!(attempt.contains("<script>alert(1)</script>"), "{attempt}");
    assert!(
        attempt.contains(event["id"].as_str().unwrap()),
        "the request body: {attempt}"
    );
    b.screenshot("delivery").await;

    // The receiver is fixed; Retry; the delivery succeeds, and the page shows it.
    receiver.answer_by_default(Answer::status(204));
    b.click("#retry").await;
    api.delivery_with_status(&delivery, "succeeded", Duration::from_secs(10))
        .await;
    b.wait_text("#delivery-status", "succeeded").await;
    let second = b
        .wait_text("section.attempt[data-number='2']", "Attempt 2")
        .await;
    assert!(
        second.contains("success") && second.contains("204"),
        "{second}"
    );

    // A new subscription through the form.
    b.client
        .goto(&format!("{}/ui/#/subscriptions/new", server.base))
        .await
        .unwrap();
    b.fill("input[name=name]", "Made in the browser").await;
    b.fill("input[name=events]", "refund.created, refund.failed")
        .await;
    let config = b
        .client
        .find(Locator::Css("textarea[name=config]"))
        .await
        .unwrap();
    config.clear().await.unwrap();
    config
        .send_keys(&json!({"url": receiver.url}).to_string())
        .await
        .unwrap();
    b.click("form button[type=submit]").await;
    b.wait_text("main", "Signing secret (shown once)").await;
    let made = b.wait_text("main", "refund.created, refund.failed").await;
    assert!(made.contains("Made in the browser"), "{made}");
    let listed = api.get("/v1/subscriptions?limit=10").await.body;
    assert!(listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s["name"] == "Made in the browser"));

    b.client
        .goto(&format!("{}/ui/#/charts?window=hour", server.base))
        .await
        .unwrap();
    b.wait_text("#totals", "1 succeeded").await;
    b.wait_text("#totals", "1 failed for good").await;
    // Both charts have a value axis (0, half, the top) and a time axis.
    for chart in ["#chart-outcomes", "#chart-latency"] {
        let ticks = |kind: &'static str| {
            let c = &b.client;
            async move {
                let found = c
                    .find_all(Locator::Css(&format!("{chart} .{kind}")))
                    .await
                    .unwrap();
                let mut texts = Vec::new();
                for t in found {
                    texts.push(t.text().await.unwrap());
                }
                texts
            }
        };
        let y = ticks("y-tick").await;
        assert_eq!(y.len(), 3, "{chart}: {y:?}");
        assert!(y[0].starts_with('0'), "{chart}: {y:?}");
        let x = ticks("x-tick").await;
        assert!(
            x.len() >= 5 && x.iter().all(|t| t.contains(':')),
            "{chart}: {x:?}"
        );
    }
    b.screenshot("charts").await;
    b.client
        .goto(&format!("{}/ui/#/events", server.base))
        .await
        .unwrap();
    b.wait_text("#events", event["id"].as_str().unwrap()).await;
    b.screenshot("events").await;

    // Deliveries, searched. Each names its subscription; an event name narrows the list; a
    // delivery's id opens it.
    api.publish(json!({"name": "user.created", "data": {"id": 7}}))
        .await;
    b.client
        .goto(&format!("{}/ui/#/deliveries", server.base))
        .await
        .unwrap();
    b.wait_text("#deliveries", "user.created").await;
    b.wait_text(
        &format!("tr[data-id='{delivery}'] td.subscription"),
        "Billing hook",
    )
    .await;
    b.fill("#delivery-search input[name=q]", "invoice.paid")
        .await;
    b.click("#delivery-search button[type=submit]").await;
    let c = &b.client;
    let only = wait_for(
        Duration::from_secs(15),
        "the list narrowed to invoice.paid",
        || async move {
            let t = c
                .find(Locator::Css("#deliveries"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            (t.contains("invoice.paid") && !t.contains("user.created")).then_some(t)
        },
    )
    .await;
    assert!(only.contains("Billing hook"), "{only}");
    b.screenshot("deliveries").await;
    let search = b
        .client
        .find(Locator::Css("#delivery-search input[name=q]"))
        .await
        .unwrap();
    search.clear().await.unwrap();
    search.send_keys(&delivery).await.unwrap();
    b.click("#delivery-search button[type=submit]").await;
    b.wait_text("#delivery-status", "succeeded").await;
    b.client.close().await.unwrap();

    // A phone-sized screen.
    let phone = Browser::start(390, 844).await;
    phone.sign_in(&server.base).await;
    phone.wait_text("#subscriptions", "Billing hook").await;
    phone.screenshot("phone").await;
    // At phone width a list keeps its rows short and fits the screen (rows were hundreds of
    // pixels tall, the table wider than the phone).
    for (page, table) in [
        ("subscriptions", "#subscriptions"),
        ("deliveries", "#deliveries"),
        ("events", "#events"),
    ] {
        phone
            .client
            .goto(&format!("{}/ui/#/{page}", server.base))
            .await
            .unwrap();
        phone.wait_text(table, "").await;
        let sizes = phone
            .client
            .execute(
                "const t = document.querySelector(arguments[0]);
                 const rows = [...t.querySelectorAll('tbody tr')].map((r) => r.getBoundingClientRect().height);
                 return [Math.max(...rows), t.getBoundingClientRect().width, window.innerWidth];",
                vec![json!(table)],
            )
            .await
            .unwrap();
        let [tallest, width, screen] = [0, 1, 2].map(|i| sizes[i].as_f64().unwrap());
        assert!(tallest <= 90.0, "{page}: a row {tallest} px tall");
        assert!(
            width <= screen,
            "{page}: the table is {width} px wide on a {screen} px screen"
        );
    }
    phone
        .client
        .goto(&format!("{}/ui/#/deliveries", server.base))
        .await
        .unwrap();
    phone.wait_text("#deliveries", "Billing hook").await;
    phone.screenshot("phone-deliveries").await;
    phone.client.close().await.unwrap();
}

/// The keyboard alone does what the mouse does: sign in, open a failing subscription and its
/// delivery, retry it. Each element the focus reaches on the way shows it.
#[tokio::test]
#[cfg_attr(
    not(browser_tests),
    ignore = "POSTHORN_TEST_CHROMEDRIVER is not set: the browser tests are skipped"
)]
async fn the_keyboard_alone_is_enough() {
    let Failing {
        server,
        receiver,
        sub,
        delivery,
        ..
    } = Failing::start().await;
    let api = server.api();

    let b = Browser::start(1280, 900).await;
    b.client
        .goto(&format!("{}/ui/", server.base))
        .await
        .unwrap();
    b.wait_text("h1", "Sign in").await;
    b.tab_to("#token").await;
    b.type_text(TOKEN).await;
    b.press(Key::Enter).await;
    b.wait_text("#who", "admin").await;
    b.wait_text("#subscriptions", "Billing hook").await;
    b.tab_to(&format!("tr[data-id='{sub}'] a")).await;
    b.press(Key::Enter).await;
    b.wait_text("#deliveries", "dead").await;
    b.tab_to(&format!("#deliveries tr[data-id='{delivery}'] a"))
        .await;
    b.press(Key::Enter).await;
    b.wait_text("section.attempt", "Attempt 1").await;
    receiver.answer_by_default(Answer::status(204));
    b.tab_to("#retry").await;
    b.press(Key::Enter).await;
    api.delivery_with_status(&delivery, "succeeded", Duration::from_secs(10))
        .await;
    b.wait_text("#delivery-status", "succeeded").await;
    b.client.close().await.unwrap();
}

/// A new server's dashboard: an empty state that shows the first `curl` for this very server,
/// the times of a delivery said as how long ago with their zone, and a favicon.
#[tokio::test]
#[cfg_attr(
    not(browser_tests),
    ignore = "POSTHORN_TEST_CHROMEDRIVER is not set: the browser tests are skipped"
)]
async fn a_new_server_shows_the_first_steps() {
    let server = Server::start(Backend::Sqlite).await;
    let b = Browser::start(1280, 900).await;
    b.sign_in(&server.base).await;
    let steps = b.wait_text("#first-steps", "No subscriptions yet").await;
    assert!(
        steps.contains(&format!("curl -s {}/v1/subscriptions", server.base)),
        "{steps}"
    );
    b.screenshot("first-steps").await;
    let icon = b.client.find(Locator::Css("link[rel=icon]")).await.unwrap();
    assert_eq!(
        icon.attr("href").await.unwrap().as_deref(),
        Some("/ui/favicon.svg")
    );
    let svg = reqwest::get(format!("{}/ui/favicon.svg", server.base))
        .await
        .unwrap();
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
    // A delivery's times: how long ago, then the time with its zone.
    let receiver = Receiver::start().await;
    let api = server.api();
    let sub = api.subscribe(&receiver.url, &["e"], json!({})).await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    api.publish(json!({"name": "e", "data": {}})).await;
    let delivery = api.first_delivery(&sub, Duration::from_secs(10)).await;
    // The page reads the delivery once: opened before its attempt is recorded, it would show
    // none (a race this test lost once in CI).
    api.delivery_with_status(&delivery, "succeeded", Duration::from_secs(10))
        .await;
    b.client
        .goto(&format!("{}/ui/#/deliveries/{delivery}", server.base))
        .await
        .unwrap();
    let attempt = b.wait_text("section.attempt", "Attempt 1").await;
    assert!(
        attempt.contains(" ago · ") || attempt.contains("just now · "),
        "{attempt}"
    );
    b.client.close().await.unwrap();
}

#[tokio::test]
#[cfg_attr(
    not(browser_tests),
    ignore = "POSTHORN_TEST_CHROMEDRIVER is not set: the browser tests are skipped"
)]
async fn a_pending_deliverys_page_follows_it() {
    let server = Server::start(Backend::Sqlite).await;
    let b = Browser::start(1280, 900).await;
    b.sign_in(&server.base).await;
    // The receiver holds its answer for 5 s: the delivery stays pending, its attempt in flight.
    let receiver = Receiver::start().await;
    receiver.script([Answer::status(200).after(Duration::from_secs(5))]);
    let api = server.api();
    let sub = api.subscribe(&receiver.url, &["e"], json!({})).await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    api.publish(json!({"name": "e", "data": {}})).await;
    let delivery = api.first_delivery(&sub, Duration::from_secs(10)).await;
    b.client
        .goto(&format!("{}/ui/#/deliveries/{delivery}", server.base))
        .await
        .unwrap();
    b.wait_text("#delivery-status", "pending").await;
    b.wait_text("#main", "No attempt yet.").await;
    // A mark on the page: gone if the page were loaded again.
    b.client
        .execute("window.stillHere = true;", vec![])
        .await
        .unwrap();
    // Without a reload, the page shows the attempt once it is made.
    b.wait_text("#delivery-status", "succeeded").await;
    b.wait_text("section.attempt", "Attempt 1").await;
    let kept = b
        .client
        .execute("return window.stillHere === true;", vec![])
        .await
        .unwrap();
    assert_eq!(kept, json!(true), "the page was loaded again");
    b.client.close().await.unwrap();
}

#[tokio::test]
#[cfg_attr(
    not(browser_tests),
    ignore = "POSTHORN_TEST_CHROMEDRIVER is not set: the browser tests are skipped"
)]
async fn a_followed_delivery_page_says_when_it_cannot_read_again() {
    let mut server = Server::start(Backend::Sqlite).await;
    let b = Browser::start(1280, 900).await;
    b.sign_in(&server.base).await;
    // The attempt is held past the test: the delivery stays pending.
    let receiver = Receiver::start().await;
    receiver.script([Answer::status(200).after(Duration::from_secs(60))]);
    let api = server.api();
    let sub = api.subscribe(&receiver.url, &["e"], json!({})).await;
    let sub = sub["id"].as_str().unwrap().to_owned();
    api.publish(json!({"name": "e", "data": {}})).await;
    let delivery = api.first_delivery(&sub, Duration::from_secs(10)).await;
    b.client
        .goto(&format!("{}/ui/#/deliveries/{delivery}", server.base))
        .await
        .unwrap();
    b.wait_text("#delivery-status", "pending").await;
    // The server goes away: the page says that what it shows is not up to date.
    server.kill().await;
    b.wait_text("#following", "Not up to date").await;
    b.client.close().await.unwrap();
}

/// An application's access token, through its client credentials.
async fn app_with_subscription(server: &Server, name: &str, url: &str) -> (String, String) {
    let api = server.api();
    let app = api
        .post(
            "/v1/applications",
            json!({"name": name, "scopes": ["subscriptions", "publish"]}),
        )
        .await
        .body;
    let token = reqwest::Client::new()
        .post(format!("{}/oauth/token", server.base))
        .basic_auth(
            app["client_id"].as_str().unwrap(),
            app["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    api.with_token(&token)
        .subscribe(
            url,
            &["order.paid"],
            json!({"name": format!("{name} orders")}),
        )
        .await;
    (app["id"].as_str().unwrap().to_owned(), token)
}

#[tokio::test]
#[cfg_attr(
    not(browser_tests),
    ignore = "POSTHORN_TEST_CHROMEDRIVER is not set: the browser tests are skipped"
)]
async fn a_portal_link_shows_its_application_only() {
    let server = Server::start(Backend::Sqlite).await;
    let receiver = Receiver::start().await;
    let (acme, _) = app_with_subscription(&server, "Acme", &receiver.url).await;
    let (_globex, _) = app_with_subscription(&server, "Globex", &receiver.url).await;
    let api = server.api();
    // Only the admin makes links.
    let link = api
        .post(
            &format!("/v1/applications/{acme}/portal-link"),
            json!({"expires_in_s": 300}),
        )
        .await;
    assert_eq!(link.status, 201, "{}", link.body);
    let url = link.body["url"].as_str().unwrap().to_owned();
    assert!(
        url.starts_with(&format!("{}/ui/#portal=ppl_", server.base)),
        "{url}"
    );

    let b = Browser::start(1280, 900).await;
    b.client.goto(&url).await.unwrap();
    let table = b.wait_text("#subscriptions", "Acme orders").await;
    assert!(
        !table.contains("Globex"),
        "another application's subscription: {table}"
    );
    b.wait_text("#who", "Acme").await;
    // The ticket left the address bar.
    assert!(!b
        .client
        .current_url()
        .await
        .unwrap()
        .as_str()
        .contains("ppl_"));
    b.screenshot("portal").await;
    // Its API calls carry its own token: another application's subscription is a 404.
    let all = api.get("/v1/subscriptions?limit=100").await.body;
    let globex_sub = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "Globex orders")
        .expect("Globex's subscription")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    b.client
        .goto(&format!("{}/ui/#/subscriptions/{globex_sub}", server.base))
        .await
        .unwrap();
    b.wait_text("#main", "(404)").await;
    // A reload of the tab keeps the portal's session (the ticket is gone from the address).
    b.client
        .goto(&format!("{}/ui/#/subscriptions", server.base))
        .await
        .unwrap();
    b.client.refresh().await.unwrap();
    b.wait_text("#who", "Acme").await;
    let table = b.wait_text("#subscriptions", "Acme orders").await;
    assert!(!table.contains("Globex"), "after a reload: {table}");
    // A session that has ended (its token expired or revoked) says so at the next call, and
    // offers no sign-in form.
    b.client
        .execute(
            "const k = JSON.parse(sessionStorage.getItem('posthorn.portal')); \
             k.bearer = 'pht_expired'; sessionStorage.setItem('posthorn.portal', JSON.stringify(k));",
            vec![],
        )
        .await
        .unwrap();
    b.client.refresh().await.unwrap();
    b.wait_text("#portal-ended", "Open the page again").await;
    assert!(b.client.find(Locator::Css("#signin")).await.is_err());
    // And a reload after that does not bring it back.
    b.client.refresh().await.unwrap();
    b.wait_text("#main", "Sign in").await;

    // Forged: another application's id under Acme's signature.
    let forged = url.replace(&acme, "app_someone_else");
    let b2 = Browser::start(1280, 900).await;
    b2.client.goto(&forged).await.unwrap();
    b2.wait_text("#portal-refused", "cannot be opened").await;
    // Expired: signed right, a minute ago.
    let expired = format!(
        "{}/ui/#portal={}",
        server.base,
        ticket(&acme, chrono::Utc::now().timestamp_millis() - 60_000)
    );
    b2.client.goto("about:blank").await.unwrap();
    b2.client.goto(&expired).await.unwrap();
    b2.wait_text("#portal-refused", "invalid or has expired")
        .await;
    // The same ticket, unexpired, is accepted: the refusal was the time.
    b2.client.goto("about:blank").await.unwrap();
    let fresh = format!(
        "{}/ui/#portal={}",
        server.base,
        ticket(&acme, chrono::Utc::now().timestamp_millis() + 60_000)
    );
    b2.client.goto(&fresh).await.unwrap();
    b2.wait_text("#subscriptions", "Acme orders").await;
    b.client.close().await.unwrap();
    b2.client.close().await.unwrap();

    // An application cannot make links; a link is refused over HTTP too.
    let refused = reqwest::Client::new()
        .post(format!("{}/ui/portal", server.base))
        .json(&json!({"ticket": forged.split("#portal=").nth(1).unwrap()}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
}

/// A portal ticket as the server signs it (tests know the admin token).
fn ticket(app: &str, expires_ms: i64) -> String {
    use base64::Engine;
    use hmac::Mac;
    let mut derive = hmac::Hmac::<sha2::Sha256>::new_from_slice(TOKEN.as_bytes()).unwrap();
    derive.update(b"posthorn-ui-v1");
    let key = derive.finalize().into_bytes();
    let body = format!("{app}.{expires_ms}");
    let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    m.update(format!("portal|{body}").as_bytes());
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
    format!("ppl_{body}.{sig}")
}

/// A page of another origin makes the signed-in browser post a change to Posthorn: the cookie
/// goes with it (same site: another port), and the change is refused.
#[tokio::test]
#[cfg_attr(
    not(browser_tests),
    ignore = "POSTHORN_TEST_CHROMEDRIVER is not set: the browser tests are skipped"
)]
async fn another_origin_cannot_use_the_session() {
    let server = Server::start(Backend::Sqlite).await;
    let receiver = Receiver::start().await;
    let api = server.api();
    let sub = api
        .subscribe(&receiver.url, &["a"], json!({"name": "Target"}))
        .await;
    let id = sub["id"].as_str().unwrap().to_owned();
    // The attacker's page, on another port.
    let target = format!("{}/v1/subscriptions/{id}/disable", server.base);
    let page = format!(
        "<!doctype html><form method=post action=\"{target}\"></form>\
         <script>fetch(\"{target}\", {{method: \"POST\", credentials: \"include\", mode: \"no-cors\"}})\
         .finally(() => document.forms[0].submit());</script>"
    );
    let evil = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_url = format!("http://{}/", evil.local_addr().unwrap());
    let app = axum::Router::new().fallback(move || {
        let page = page.clone();
        async move { axum::response::Html(page) }
    });
    tokio::spawn(async move { axum::serve(evil, app).await });

    let b = Browser::start(1280, 900).await;
    b.sign_in(&server.base).await;
    b.client.goto(&evil_url).await.unwrap();
    // The form's answer is the refusal.
    b.wait_text("body", "another origin").await;
    let after = api.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(after.body["status"], "active", "the change was refused");
    // The dashboard itself still may (its own origin, with its CSRF token).
    b.client
        .goto(&format!("{}/ui/#/subscriptions/{id}", server.base))
        .await
        .unwrap();
    b.wait_text("main", "Target").await;
    b.click("button.secondary").await; // Disable
    wait_for(
        Duration::from_secs(10),
        "disabled from the dashboard",
        || async {
            (api.get(&format!("/v1/subscriptions/{id}")).await.body["status"] == "disabled")
                .then_some(())
        },
    )
    .await;
    b.client.close().await.unwrap();
    assert!(!server.log().contains(TOKEN));
}

/// Without a browser: signing in with client credentials gives a cookie that sees only the
/// application's objects; the page's headers; signing out.
#[tokio::test]
async fn cookie_sessions_over_http() {
    let server = crate::util::Server::start_with(crate::util::ServerOptions {
        extra: vec![
            "--ui-frame-ancestors".into(),
            "https://platform.example.com".into(),
        ],
        ..Default::default()
    })
    .await;
    let receiver = Receiver::start().await;
    let api = server.api();
    api.subscribe(&receiver.url, &["a"], json!({"name": "the admin's"}))
        .await;
    let app = api
        .post(
            "/v1/applications",
            json!({"name": "Acme", "scopes": ["subscriptions"]}),
        )
        .await
        .body;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = |body: Value| {
        let http = http.clone();
        let url = format!("{}/ui/login", server.base);
        async move { http.post(url).json(&body).send().await.unwrap() }
    };
    // Wrong credentials: no cookie.
    let wrong = login(json!({"client_id": app["client_id"], "client_secret": "nope"})).await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    let bad = login(json!({"token": "x", "client_id": "y"})).await;
    assert_eq!(bad.status(), 422);

    let ok =
        login(json!({"client_id": app["client_id"], "client_secret": app["client_secret"]})).await;
    assert_eq!(ok.status(), 204);
    let set = ok.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_owned();
    let with_cookie = |method: reqwest::Method, path: &str| {
        http.request(method, format!("{}{path}", server.base))
            .header("cookie", cookie.clone())
    };
    let who: Value = with_cookie(reqwest::Method::GET, "/ui/session")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(who["signed_in"], true);
    assert_eq!(who["admin"], false);
    assert_eq!(who["owner"], app["id"]);
    let csrf = who["csrf"].as_str().unwrap().to_owned();
    let list: Value = with_cookie(reqwest::Method::GET, "/v1/subscriptions")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"], json!([]), "not the admin's subscription");
    // A change needs the CSRF token.
    let body = json!({"name": "Acme's", "service": "http", "config": {"url": receiver.url}, "events": ["a"]});
    let without = with_cookie(reqwest::Method::POST, "/v1/subscriptions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 403);
    let with = with_cookie(reqwest::Method::POST, "/v1/subscriptions")
        .header("x-csrf-token", &csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(with.status(), 201);
    let created: Value = with.json().await.unwrap();
    assert_eq!(created["owner"], app["id"]);
    // The admin cannot be reached through an application's cookie; the app's own admin-only
    // routes stay closed.
    let apps = with_cookie(reqwest::Method::GET, "/v1/applications")
        .send()
        .await
        .unwrap();
    assert_eq!(apps.status(), 403);

    // The page: only its own resources, framed only where allowed, never cached.
    let page = http
        .get(format!("{}/ui/", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(
        csp.contains("frame-ancestors 'self' https://platform.example.com"),
        "{csp}"
    );
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external resource"
    );
    assert_eq!(
        http.get(format!("{}/ui", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        308
    );
    assert_eq!(
        http.get(format!("{}/ui/app.js", server.base))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Signing out clears the cookie.
    let out = http
        .post(format!("{}/ui/logout", server.base))
        .send()
        .await
        .unwrap();
    assert!(out.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));

    // Only the admin makes portal links; the expiry is bounded.
    let app_id = app["id"].as_str().unwrap();
    assert_eq!(
        api.post(
            &format!("/v1/applications/{app_id}/portal-link"),
            json!({"expires_in_s": 5})
        )
        .await
        .status,
        422
    );
    let link = api
        .send(
            "POST",
            &format!("/v1/applications/{app_id}/portal-link"),
            None,
        )
        .await;
    assert_eq!(link.status, 201, "{}", link.body);
    // A `null` body is no options too, as the document allows.
    let null = api
        .raw(
            "POST",
            &format!("/v1/applications/{app_id}/portal-link"),
            "application/json",
            b"null".to_vec(),
        )
        .await;
    assert_eq!(null.status, 201, "{}", null.body);
    let token = reqwest::Client::new()
        .post(format!("{}/oauth/token", server.base))
        .basic_auth(
            app["client_id"].as_str().unwrap(),
            app["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let by_app = api
        .with_token(&token)
        .send(
            "POST",
            &format!("/v1/applications/{app_id}/portal-link"),
            None,
        )
        .await;
    assert_eq!(by_app.status, 403);
    assert!(!server
        .log()
        .contains(app["client_secret"].as_str().unwrap()));
}

/// The endpoint's access in the form: a proxy with credentials and a client certificate set in
/// fields of their own, not in the JSON; the deliveries go through that proxy; the subscription's
/// page says what it uses; editing shows the secrets' fields empty ("unchanged") and saving
/// without touching them keeps them.
#[tokio::test]
#[cfg_attr(
    not(browser_tests),
    ignore = "POSTHORN_TEST_CHROMEDRIVER is not set: the browser tests are skipped"
)]
async fn endpoint_access_is_set_in_fields_of_its_own() {
    let server = Server::start(Backend::Sqlite).await;
    let api = server.api();
    let receiver = Receiver::start().await;
    let proxy =
        crate::proxy::TestProxy::start(crate::proxy::Kind::Connect, Some(("ui", "d4sh-pw"))).await;
    let identity = rcgen::generate_simple_self_signed(vec!["posthorn-client".into()]).unwrap();
    let b = Browser::start(1280, 1400).await;
    b.sign_in(&server.base).await;
    b.client
        .goto(&format!("{}/ui/#/subscriptions/new", server.base))
        .await
        .unwrap();
    b.fill("input[name=name]", "Behind a proxy").await;
    b.fill("input[name=events]", "locked").await;
    let config = b
        .client
        .find(Locator::Css("textarea[name=config]"))
        .await
        .unwrap();
    config.clear().await.unwrap();
    let by_name = receiver.url.replace("127.0.0.1", "localhost");
    config
        .send_keys(&json!({ "url": by_name }).to_string())
        .await
        .unwrap();
    b.fill(
        "#endpoint-access input[name=proxy]",
        &format!("http://ui:d4sh-pw@127.0.0.1:{}", proxy.port),
    )
    .await;
    b.fill(
        "#endpoint-access textarea[name=client_certificate]",
        &identity.cert.pem(),
    )
    .await;
    b.fill(
        "#endpoint-access textarea[name=client_key]",
        &identity.key_pair.serialize_pem(),
    )
    .await;
    b.screenshot("endpoint-access").await;
    b.click("form button[type=submit]").await;
    let summary = b.wait_text("#access-summary", "through the proxy").await;
    assert!(summary.contains("client certificate"), "{summary}");
    assert!(!summary.contains("d4sh-pw"), "{summary}");
    let id = wait_for(Duration::from_secs(5), "the subscription", || async {
        let list = api.get("/v1/subscriptions?limit=10").await.body;
        list["items"].as_array()?.iter().find_map(|s| {
            (s["name"] == "Behind a proxy").then(|| s["id"].as_str().unwrap().to_owned())
        })
    })
    .await;
    kept_and_delivered(&api, &id, &receiver, "locked", 1).await;
    assert_eq!(proxy.asked().len(), 1, "through the proxy");

    // Edit: the secrets' fields are empty and say so; the JSON does not hold them; saved as is,
    // the proxy's password and the key are kept.
    b.client
        .goto(&format!("{}/ui/#/subscriptions/{id}/edit", server.base))
        .await
        .unwrap();
    b.wait_text("#endpoint-access", "Proxy").await;
    let key = b
        .client
        .find(Locator::Css("textarea[name=client_key]"))
        .await
        .unwrap();
    assert_eq!(key.prop("value").await.unwrap().as_deref(), Some(""));
    assert!(key
        .attr("placeholder")
        .await
        .unwrap()
        .unwrap_or_default()
        .contains("unchanged"));
    let json_config = b
        .client
        .find(Locator::Css("textarea[name=config]"))
        .await
        .unwrap()
        .prop("value")
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(
        !json_config.contains("proxy") && !json_config.contains("client_certificate"),
        "{json_config}"
    );
    b.fill("input[name=events]", ", locked.again").await;
    b.click("form button[type=submit]").await;
    b.wait_text("main", "locked.again").await;
    kept_and_delivered(&api, &id, &receiver, "locked.again", 2).await;
    assert_eq!(proxy.asked().len(), 2, "the proxy's password was kept");
    let holding = server.database_files_holding("d4sh-pw");
    assert!(holding.is_empty(), "the proxy's password in {holding:?}");
}

/// The subscription's private key is stored (shown masked), and an event named `name` reaches
/// the receiver, its `hits`th request.
async fn kept_and_delivered(
    api: &crate::util::Api,
    id: &str,
    receiver: &Receiver,
    name: &str,
    hits: usize,
) {
    let stored = api.get(&format!("/v1/subscriptions/{id}")).await.body;
    assert_eq!(
        stored["config"]["client_certificate"]["private_key"], "********",
        "{stored}"
    );
    api.publish(json!({"name": name, "data": {}})).await;
    wait_for(Duration::from_secs(15), name, || async {
        (receiver.hits().len() == hits).then_some(())
    })
    .await;
}

/// Order and pull in the form: a `poll` subscription (its config becomes `{}`) ordered per key;
/// its page says how it orders and where its feed is read.
#[tokio::test]
#[cfg_attr(
    not(browser_tests),
    ignore = "POSTHORN_TEST_CHROMEDRIVER is not set: the browser tests are skipped"
)]
async fn order_and_pull_are_set_in_the_form() {
    let server = Server::start(Backend::Sqlite).await;
    let api = server.api();
    let b = Browser::start(1280, 1400).await;
    b.sign_in(&server.base).await;
    b.client
        .goto(&format!("{}/ui/#/subscriptions/new", server.base))
        .await
        .unwrap();
    b.fill("input[name=name]", "Laptop consumer").await;
    b.fill("input[name=events]", "order.*").await;
    b.client
        .find(Locator::Css("select[name=service] option[value=poll]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let config = b
        .client
        .find(Locator::Css("textarea[name=config]"))
        .await
        .unwrap();
    wait_for(
        Duration::from_secs(5),
        "the config to become {}",
        || async { (config.prop("value").await.ok()??.trim() == "{}").then_some(()) },
    )
    .await;
    b.client
        .find(Locator::Css("select[name=ordered] option[value=key]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.fill("input[name=order_key]", "order.id").await;
    b.click("form button[type=submit]").await;
    let order = b.wait_text("#order", "per key").await;
    assert!(order.contains("order.id"), "{order}");
    b.wait_text("#feed", "/feed").await;
    let listed = api.get("/v1/subscriptions?limit=10").await.body;
    let sub = &listed["items"][0];
    assert_eq!(sub["service"], "poll", "{sub}");
    assert_eq!(sub["ordered"], "key", "{sub}");
    assert_eq!(sub["order_key"], "order.id", "{sub}");

    // Its delivery's page says that it waits in the feed and what its key is; there is no
    // retry to press.
    api.publish(json!({"name": "order.created", "data": {"order": {"id": "o-1"}}}))
        .await;
    let id = api
        .first_delivery(sub["id"].as_str().unwrap(), Duration::from_secs(10))
        .await;
    b.client
        .goto(&format!("{}/ui/#/deliveries/{id}", server.base))
        .await
        .unwrap();
    b.wait_text("#delivery-status", "waits for its consumer")
        .await;
    b.wait_text("#order-key", "o-1").await;
    let retry = b.client.find(Locator::Css("#retry")).await.unwrap();
    assert!(
        retry.attr("disabled").await.unwrap().is_some(),
        "retry is disabled"
    );
}
