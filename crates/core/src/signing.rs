//! Signing per the Standard Webhooks scheme: `webhook-signature` is `v1,` followed by the base64
//! HMAC-SHA256 of `{id}.{timestamp}.{body}` under the secret's decoded bytes. Secrets are shown to
//! users as `whsec_` + base64 of 32 random bytes.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A signing secret. Its `Debug` output hides the key, so it cannot leak into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    /// A new random secret of 32 bytes.
    pub fn generate() -> Self {
        Self(rand::random::<[u8; 32]>().to_vec())
    }

    /// Parses `whsec_BASE64` (the prefix is optional, as in the reference libraries).
    pub fn parse(s: &str) -> Result<Self, &'static str> {
        let b64 = s.strip_prefix(PREFIX).unwrap_or(s);
        let bytes = STANDARD
            .decode(b64)
            .map_err(|_| "a secret is whsec_ followed by base64")?;
        if bytes.len() < 16 || bytes.len() > 64 {
            return Err("a secret must decode to 16 to 64 bytes");
        }
        Ok(Self(bytes))
    }

    /// The `whsec_…` form shown to users.
    pub fn expose(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// `v1,` + base64(HMAC-SHA256(key, `{msg_id}.{timestamp}.{body}`)).
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
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
    secrets
        .into_iter()
        .map(|s| s.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
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
