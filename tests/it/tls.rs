//! `https` targets: the certificate is checked against the web's roots by default, against only
//! the CA bundle a subscription names, or not at all with `verify_certificate: false`. A receiver
//! whose certificate fails the check gets nothing, and the attempt log says why. (The network
//! side does not depend on the database: SQLite only.)

use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};

use crate::util::{Api, Backend, Receiver, Server};

const WAIT: Duration = Duration::from_secs(20);

/// A private CA (its certificate in PEM) and a server configuration with a certificate it
/// issued for 127.0.0.1, offering HTTP/2 and HTTP/1.1.
fn private_ca() -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "Posthorn test CA");
    let ca = ca.self_signed(&ca_key).unwrap();
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
