//! Signing per the Standard Webhooks scheme: `webhook-signature` is `v1,` followed by the base64
//! HMAC-SHA256 of `{id}.{timestamp}.{body}` under the secret's decoded bytes. Secrets are shown to
//! users as `whsec_` + base64 of 32 random bytes. [`verify`] is the receiving side, as
//! `posthorn listen` and `posthorn verify` check what arrives.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::hmac;
use subtle::ConstantTimeEq;

const PREFIX: &str = "whsec_";

/// A signing secret, with its HMAC key prepared once: the key's inner and outer pads are hashed
/// when the secret is read, not again for every message signed. Its `Debug` output hides the
/// key, so it cannot leak into logs.
#[derive(Clone)]
pub struct Secret {
    bytes: Vec<u8>,
    key: hmac::Key,
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for Secret {}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// Why a text is not a signing secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidSecret {
    #[error("a secret is whsec_ followed by base64")]
    NotBase64,
    #[error("a secret must decode to 16 to 64 bytes")]
    Length,
}

impl Secret {
    fn from_bytes(bytes: Vec<u8>) -> Self {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
        Self { bytes, key }
    }

    /// A new random secret of 32 bytes.
    pub fn generate() -> Self {
        Self::from_bytes(rand::random::<[u8; 32]>().to_vec())
    }

    /// Parses `whsec_BASE64` (the prefix is optional, as in the reference libraries).
    pub fn parse(s: &str) -> Result<Self, InvalidSecret> {
        let b64 = s.strip_prefix(PREFIX).unwrap_or(s);
        let bytes = STANDARD.decode(b64).map_err(|_| InvalidSecret::NotBase64)?;
        if bytes.len() < 16 || bytes.len() > 64 {
            return Err(InvalidSecret::Length);
        }
        Ok(Self::from_bytes(bytes))
    }

    /// The `whsec_…` form shown to users.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.bytes))
    }

    /// `v1,` + base64(HMAC-SHA256(key, `{msg_id}.{timestamp}.{body}`)).
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut out = String::with_capacity(47);
        self.sign_into(msg_id, timestamp, body, &mut out);
        out
    }

    /// [`Secret::sign`], written at the end of `out`.
    fn sign_into(&self, msg_id: &str, timestamp: i64, body: &[u8], out: &mut String) {
        let tag = self.mac(msg_id, timestamp, body);
        out.push_str("v1,");
        STANDARD.encode_string(tag.as_ref(), out);
    }

    /// The HMAC of `{msg_id}.{timestamp}.{body}`, what signing and verifying both compute.
    fn mac(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> hmac::Tag {
        let mut mac = hmac::Context::with_key(&self.key);
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(itoa::Buffer::new().format(timestamp).as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.sign()
    }
}

/// The `webhook-signature` header value for a message signed under each secret in turn
/// (several during a rotation), space-separated.
pub fn signature_header<'a>(
    secrets: impl IntoIterator<Item = &'a Secret>,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> String {
    let mut header = String::with_capacity(47);
    for (i, secret) in secrets.into_iter().enumerate() {
        if i > 0 {
            header.push(' ');
        }
        secret.sign_into(msg_id, timestamp, body, &mut header);
    }
    header
}

/// Why a webhook is not accepted as signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unverified {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("webhook-timestamp is not a number of seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is {age_s} s away from now (tolerance {tolerance_s} s): a replay, or a clock off")]
    Stale { age_s: i64, tolerance_s: i64 },
    #[error(
        "no v1 signature matches the secret (wrong secret, or the body or headers were changed)"
    )]
    NoMatch,
}

/// Checks a webhook as a receiver does: one of the space-separated `v1,` signatures of
/// `signature_header` must be the HMAC of `{id}.{timestamp}.{body}` under `secret` (compared in
/// constant time), and with a `tolerance_s`, the timestamp must be that close to `now_s`.
pub fn verify(
    secret: &Secret,
    msg_id: Option<&str>,
    timestamp: Option<&str>,
    signature_header: Option<&str>,
    body: &[u8],
    now_s: i64,
    tolerance_s: Option<i64>,
) -> Result<(), Unverified> {
    let msg_id = msg_id.ok_or(Unverified::Missing("webhook-id"))?;
    let timestamp = timestamp.ok_or(Unverified::Missing("webhook-timestamp"))?;
    let signatures = signature_header.ok_or(Unverified::Missing("webhook-signature"))?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Unverified::BadTimestamp)?;
    if let Some(tolerance_s) = tolerance_s {
        let age_s = now_s - ts;
        if age_s.abs() > tolerance_s {
            return Err(Unverified::Stale { age_s, tolerance_s });
        }
    }
    // The HMAC once, however many signatures the header lists (a hostile header may list
    // thousands), each compared with it in constant time.
    let mac = secret.mac(msg_id, ts, body);
    let matches = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|given| bool::from(given.as_slice().ct_eq(mac.as_ref())));
    if matches {
        Ok(())
    } else {
        Err(Unverified::NoMatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks specification.
    #[test]
    fn matches_the_published_test_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let sig = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    /// The same vector, on the receiving side: accepted as published, refused when anything
    /// changed, and refused as stale past the tolerance.
    #[test]
    fn verifies_the_published_test_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, ts, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            br#"{"test": 2432232314}"#.as_slice(),
        );
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        let check = |id, ts, sig, body: &[u8], now, tol| {
            verify(&secret, Some(id), Some(ts), Some(sig), body, now, tol)
        };
        assert_eq!(check(id, ts, sig, body, 1614265330, Some(300)), Ok(()));
        // Among others (a rotation, or a scheme we do not know).
        let several = format!("v2,abc v1,bm90IHRoaXM= {sig}");
        assert_eq!(check(id, ts, &several, body, 1614265330, Some(300)), Ok(()));
        assert_eq!(
            check(id, ts, sig, br#"{"test": 2432232315}"#, 1614265330, None),
            Err(Unverified::NoMatch)
        );
        assert_eq!(
            check("msg_other", ts, sig, body, 1614265330, None),
            Err(Unverified::NoMatch)
        );
        assert_eq!(
            check(id, "1614265331", sig, body, 1614265331, None),
            Err(Unverified::NoMatch)
        );
        assert_eq!(
            check(id, ts, sig, body, 1614265330 + 301, Some(300)),
            Err(Unverified::Stale {
                age_s: 301,
                tolerance_s: 300
            })
        );
        // A saved request checked later, without a tolerance.
        assert_eq!(check(id, ts, sig, body, 1914265330, None), Ok(()));
        assert_eq!(
            check(id, "soon", sig, body, 0, None),
            Err(Unverified::BadTimestamp)
        );
        assert_eq!(
            verify(&secret, Some(id), Some(ts), None, body, 0, None),
            Err(Unverified::Missing("webhook-signature"))
        );
        let other = Secret::generate();
        assert_eq!(
            verify(
                &other,
                Some(id),
                Some(ts),
                Some(sig),
                body,
                1614265330,
                None
            ),
            Err(Unverified::NoMatch)
        );
    }

    /// A header of many signatures (a rotation, or a hostile list) is checked against one
    /// HMAC: the right one is found among thousands of wrong ones and of other lengths.
    #[test]
    fn finds_the_signature_among_many() {
        let secret = Secret::generate();
        let body = vec![b'x'; 64 * 1024];
        let right = secret.sign("msg_1", 1_700_000_000, &body);
        let wrong = Secret::generate().sign("msg_1", 1_700_000_000, &body);
        let mut header = vec![wrong.as_str(); 2000];
        header.push("v1,c2hvcnQ=");
        header.push(&right);
        let header = header.join(" ");
        let check = |h: &str| {
            verify(
                &secret,
                Some("msg_1"),
                Some("1700000000"),
                Some(h),
                &body,
                0,
                None,
            )
        };
        assert_eq!(check(&header), Ok(()));
        assert_eq!(
            check(header.trim_end_matches(right.as_str())),
            Err(Unverified::NoMatch)
        );
    }

    #[test]
    fn generated_secrets_round_trip_and_hide_in_debug() {
        let s = Secret::generate();
        let shown = s.expose();
        assert!(shown.starts_with("whsec_"));
        assert_eq!(Secret::parse(&shown).unwrap(), s);
        assert_eq!(format!("{s:?}"), "Secret(…)");
        assert!(Secret::parse("whsec_!!").is_err());
    }

    #[test]
    fn rotation_signs_with_every_secret() {
        let (a, b) = (Secret::generate(), Secret::generate());
        let h = signature_header([&a, &b], "m", 1, b"x");
        let parts: Vec<_> = h.split(' ').collect();
        assert_eq!(parts, [a.sign("m", 1, b"x"), b.sign("m", 1, b"x")]);
    }
}
