//! `https` targets: the certificate is checked against the web's roots by default, against only
//! the CA bundle a subscription names, or not at all with `verify_certificate: false`. A receiver
//! whose certificate fails the check gets nothing, and the attempt log says why. (The network
//! side does not depend on the database: SQLite only.)

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

use crate::util::{wait_for, Api, Backend, Receiver, Server};

const WAIT: Duration = Duration::from_secs(20);

/// A private CA: its certificate and key.
fn test_ca() -> (rcgen::Certificate, KeyPair) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Posthorn test CA");
    (ca.self_signed(&ca_key).unwrap(), ca_key)
}

/// A private CA (its certificate in PEM) and a server configuration with a certificate it
/// issued for 127.0.0.1, offering HTTP/2 and HTTP/1.1.
fn private_ca() -> (String, Arc<rustls::ServerConfig>) {
    let (ca, ca_key) = test_ca();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &ca, &ca_key)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    (ca.pem(), Arc::new(config))
}

/// The one delivery of `sub` once it reached `status`.
async fn settled(api: &Api, sub: &Value, status: &str) -> Value {
    let dlv = api.first_delivery(sub["id"].as_str().unwrap(), WAIT).await;
    api.delivery_with_status(&dlv, status, WAIT).await
}

#[tokio::test]
async fn certificates_are_checked_as_the_subscription_says() {
    let (ca_pem, tls) = private_ca();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, ca_pem).unwrap();
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "no certificate here").unwrap();

    let server = Server::start(Backend::Sqlite).await;
    let receiver = Receiver::start_tls(tls).await;
    let api = server.api();
    let subscribe = |path: &str, check: Value| {
        let body = json!({
            "name": path, "service": "http", "events": ["e"], "retry": {"schedule_s": []},
            "config": {"url": receiver.at(path), "verify_certificate": check},
        });
        let api = api.clone();
        async move {
            let r = api.post("/v1/subscriptions", body).await;
            assert_eq!(r.status, 201, "{}", r.body);
            r.body
        }
    };
    let by_default = subscribe("/default", json!(true)).await;
    let any = subscribe("/any", json!(false)).await;
    let with_bundle = subscribe("/bundle", json!(bundle.to_str().unwrap())).await;
    let missing = subscribe(
        "/missing",
        json!(dir.path().join("nope.pem").to_str().unwrap()),
    )
    .await;
    let unusable = subscribe("/unusable", json!(not_pem.to_str().unwrap())).await;
    api.publish(json!({"name": "e", "data": {"n": 1}})).await;

    // Not trusted by the web's roots: refused during the handshake, nothing sent.
    let d = settled(&api, &by_default, "dead").await;
    let error = d["attempt_log"][0]["error"].as_str().unwrap();
    assert!(error.contains("certificate"), "{error}");
    assert_eq!(d["attempt_log"][0]["response"], Value::Null);

    // Any certificate, and the private CA's: delivered, signed.
    for sub in [&any, &with_bundle] {
        let d = settled(&api, sub, "succeeded").await;
        assert_eq!(d["attempt_log"][0]["response"]["status"], 204);
    }
    for path in ["/any", "/bundle"] {
        let hits = receiver.hits_at(path);
        assert_eq!(hits.len(), 1, "{path}");
        assert_eq!(hits[0].json()["data"]["n"], 1);
        assert!(hits[0].header("webhook-signature").starts_with("v1,"));
    }

    // A bundle that cannot be read, or holds no certificate: the attempt says so.
    let d = settled(&api, &missing, "dead").await;
    let error = d["attempt_log"][0]["error"].as_str().unwrap();
    assert!(error.contains("cannot read the CA bundle"), "{error}");
    let d = settled(&api, &unusable, "dead").await;
    let error = d["attempt_log"][0]["error"].as_str().unwrap();
    assert!(error.contains("holds no certificate"), "{error}");

    for path in ["/default", "/missing", "/unusable"] {
        assert!(receiver.hits_at(path).is_empty(), "{path} got a request");
    }
}

/// A receiver that demands a client certificate from the private CA (mutual TLS): the
/// subscription that has one is delivered, the one without is refused in the handshake, and two
/// subscriptions with different certificates to the same host each present their own (their
/// connections are never shared). The private key is write-only; an expired certificate, a key
/// that is not PEM or that does not fit are refused when written, on the field at fault.
#[tokio::test]
async fn client_certificates_are_presented_per_subscription() {
    let (ca, ca_key) = test_ca();
    let issue = |names: Vec<String>, cn: &str, expired: bool| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
        (cert, key)
    };
    let (server_cert, server_key) = issue(vec!["127.0.0.1".into()], "receiver", false);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![server_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        )
        .unwrap();
    let receiver = Receiver::start_tls(Arc::new(config)).await;
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("ca.pem");
    std::fs::write(&bundle, ca.pem()).unwrap();

    let server = Server::start(Backend::Sqlite).await;
    let api = server.api();
    let (alpha, alpha_key) = issue(vec![], "alpha", false);
    let (beta, beta_key) = issue(vec![], "beta", false);
    let subscribe = |path: &str, certificate: Option<(String, String)>| {
        let mut config = json!({"url": receiver.at(path),
            "verify_certificate": bundle.display().to_string()});
        if let Some((certificate, private_key)) = certificate {
            config["client_certificate"] =
                json!({"certificate": certificate, "private_key": private_key});
        }
        let api = api.clone();
        let event = path.trim_start_matches('/').to_owned();
        async move {
            api.post(
                "/v1/subscriptions",
                json!({"name": event, "service": "http", "events": [event],
                    "retry": {"schedule_s": []}, "config": config}),
            )
            .await
        }
    };
    let a = subscribe("/alpha", Some((alpha.pem(), alpha_key.serialize_pem()))).await;
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(
        a.body["config"]["client_certificate"]["private_key"],
        "********"
    );
    assert!(a.body["config"]["client_certificate"]["certificate"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    let b = subscribe("/beta", Some((beta.pem(), beta_key.serialize_pem()))).await;
    assert_eq!(b.status, 201, "{}", b.body);
    let none = subscribe("/none", None).await;
    assert_eq!(none.status, 201, "{}", none.body);
    // The certificate's expiry shows on the subscription (rcgen's default end: 4096).
    assert!(
        a.body["credential_expires_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("4096-01-01")),
        "{}",
        a.body
    );
    assert!(
        none.body.get("credential_expires_at").is_none(),
        "{}",
        none.body
    );

    for round in 0..3 {
        for event in ["alpha", "beta", "none"] {
            api.publish(json!({"name": event, "data": {"round": round}}))
                .await;
        }
    }
    wait_for(WAIT, "the deliveries with certificates", || async {
        (receiver.hits_at("/alpha").len() == 3 && receiver.hits_at("/beta").len() == 3)
            .then_some(())
    })
    .await;
    let b64 = |der: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
    for (path, cert) in [("/alpha", &alpha), ("/beta", &beta)] {
        for hit in receiver.hits_at(path) {
            assert_eq!(
                hit.header("x-client-certificate"),
                b64(cert.der()),
                "{path} came with another identity"
            );
        }
    }
    let d = settled(&api, &none.body, "dead").await;
    let error = d["attempt_log"][0]["error"].as_str().unwrap();
    assert!(!error.is_empty(), "{d}");
    assert!(
        receiver.hits_at("/none").is_empty(),
        "a request without a certificate got through"
    );

    // The key is write-only: not in the database file, kept when written back as shown.
    let pem = alpha_key.serialize_pem();
    let holding = server.database_files_holding(pem.lines().nth(1).unwrap());
    assert!(holding.is_empty(), "the private key in {holding:?}");
    let id = a.body["id"].as_str().unwrap();
    let r = api
        .send(
            "PATCH",
            &format!("/v1/subscriptions/{id}"),
            Some(
                &json!({"config": {"client_certificate": a.body["config"]["client_certificate"]}}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    api.publish(json!({"name": "alpha", "data": {"after": "patch"}}))
        .await;
    wait_for(WAIT, "a delivery with the kept key", || async {
        (receiver.hits_at("/alpha").len() == 4).then_some(())
    })
    .await;

    // Refused when written, on the field at fault.
    let (old, old_key) = issue(vec![], "old", true);
    for (certificate, key, field) in [
        (
            old.pem(),
            old_key.serialize_pem(),
            "config.client_certificate.certificate",
        ),
        (
            "not a certificate".to_owned(),
            alpha_key.serialize_pem(),
            "config.client_certificate.certificate",
        ),
        (
            alpha.pem(),
            "not a key".to_owned(),
            "config.client_certificate.private_key",
        ),
        (
            alpha.pem(),
            beta_key.serialize_pem(),
            "config.client_certificate",
        ),
    ] {
        let r = subscribe("/refused", Some((certificate, key))).await;
        assert_eq!(r.status, 422, "{}", r.body);
        assert_eq!(r.body["errors"][0]["field"], field, "{}", r.body);
    }
}
