//! Sealing secrets at rest: subscription signing secrets and the admin token are stored encrypted
//! with ChaCha20-Poly1305 under the master key, so a copy of the database alone does not reveal
//! them. A sealed value is `v1:` + base64(nonce ‖ ciphertext).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

use crate::StoreError;

const VERSION: &str = "v1:";

/// Why a text is not a master key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    #[error("the master key must be base64")]
    NotBase64,
    #[error("the master key must be 32 bytes (44 characters of base64)")]
    Length,
}

#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

impl Sealer {
    /// From a master key: 32 bytes, as base64 (what `generate_key` gives).
    pub fn new(key_b64: &str) -> Result<Self, InvalidKey> {
        let bytes = STANDARD
            .decode(key_b64.trim())
            .map_err(|_| InvalidKey::NotBase64)?;
        if bytes.len() != 32 {
            return Err(InvalidKey::Length);
        }
        Ok(Self {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&bytes)),
        })
    }

    /// A new random master key, base64.
    pub fn generate_key() -> String {
        STANDARD.encode(rand::random::<[u8; 32]>())
    }

    /// Seals `plain` under a fresh nonce. The cipher refuses only a text over its limit (far
    /// beyond any secret); that is an error, never an empty seal.
    pub fn seal(&self, plain: &str) -> Result<String, StoreError> {
        let nonce_bytes = rand::random::<[u8; 12]>();
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce_bytes), plain.as_bytes())
            .map_err(|_| StoreError::Seal(plain.len()))?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ct);
        Ok(format!("{VERSION}{}", STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &str) -> Result<String, StoreError> {
        let wrong = || {
            StoreError::Corrupt(
                "a sealed secret does not open with this master key (was the key changed?)".into(),
            )
        };
        let raw = sealed
            .strip_prefix(VERSION)
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|r| r.len() > 12)
            .ok_or_else(wrong)?;
        let (nonce, ct) = raw.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| wrong())?;
        String::from_utf8(plain).map_err(|_| wrong())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_and_opens_and_refuses_another_key() {
        let s = Sealer::new(&Sealer::generate_key()).unwrap();
        let sealed = s.seal("whsec_abc").unwrap();
        assert!(!sealed.contains("whsec_abc"));
        assert_ne!(sealed, s.seal("whsec_abc").unwrap(), "nonces differ");
        assert_eq!(s.open(&sealed).unwrap(), "whsec_abc");
        let other = Sealer::new(&Sealer::generate_key()).unwrap();
        assert!(other.open(&sealed).is_err());
        assert!(Sealer::new("short").is_err());
    }
}
