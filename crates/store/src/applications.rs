//! Applications (OAuth2 clients, section 7 of the contract) and their access tokens.
//!
//! A client secret is kept only as an argon2 hash, slow on purpose; an access token — 32 random
//! bytes — only as its SHA-256 (fast, and enough for a value nobody can guess). Wrong secrets for
//! one client are counted in the database, so every process sees them: past
//! [`FREE_FAILURES`] in a row the client is locked out for a time that doubles with each further
//! failure (no unlimited guessing, on one process or many). Tokens are looked up through a
//! per-process [`TokenCache`] that keeps an answer at most [`TOKEN_CACHE_TTL`]: a token revoked
//! or expired anywhere is refused everywhere within it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use base64::Engine;
use posthorn_core::id::new_id;
use posthorn_core::time::{now_ms, Millis};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;

use crate::{get, Result, Store, StoreError};

/// Wrong secrets in a row a client may send before it is slowed down.
pub const FREE_FAILURES: i64 = 5;
/// How long a token lookup is trusted in one process.
pub const TOKEN_CACHE_TTL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Application {
    pub id: String,
    pub name: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What a valid access token stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenGrant {
    pub application_id: String,
    pub scopes: Vec<String>,
    pub expires_at: Millis,
    /// The user the token acts for, when its application named one.
    pub user: Option<String>,
}

/// Why client credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialsRefused {
    /// Unknown client or wrong secret (the two are not told apart).
    Invalid,
    /// Too many wrong secrets: try again after this many seconds.
    Locked { retry_after_s: i64 },
}

/// A fresh secret (`phs_` + 32 random bytes, URL-safe base64) or token (`pht_` + the same).
pub fn fresh_secret(prefix: &str) -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// The argon2 hash of a client secret (PHC string). Slow: call it off the async threads.
pub fn hash_secret(secret: &str) -> String {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>()).unwrap_or_else(|_| {
        // 16 bytes always encode; this keeps the function total.
        SaltString::from_b64("c2FsdHNhbHRzYWx0c2FsdA").expect("a valid salt")
    });
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
}

/// Whether `secret` is the one hashed in `hash`. Slow: call it off the async threads.
pub fn verify_secret(secret: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(secret.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

fn token_hash(token: &str) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

fn scopes_of(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

const COLUMNS: &str = "id, name, client_id, scopes, created_at, updated_at";

fn application_from_row(row: &AnyRow) -> Result<Application> {
    let scopes: String = get(row, "scopes")?;
    Ok(Application {
        id: get(row, "id")?,
        name: get(row, "name")?,
        client_id: get(row, "client_id")?,
        scopes: scopes_of(&scopes),
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
    })
}

impl Store {
    /// Stores a new application; returns it and its client secret (shown once).
    pub async fn create_application(
        &self,
        name: &str,
        scopes: &[String],
    ) -> Result<(Application, String)> {
        let secret = fresh_secret("phs_");
        let hash = blocking_hash(secret.clone()).await?;
        let now = now_ms();
        let app = Application {
            id: new_id("app"),
            name: name.to_owned(),
            client_id: new_id("cli"),
            scopes: scopes.to_vec(),
            created_at: now,
            updated_at: now,
        };
        sqlx::query(
            "INSERT INTO applications (id, name, client_id, secret_hash, scopes, created_at, \
             updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&app.id)
        .bind(&app.name)
        .bind(&app.client_id)
        .bind(&hash)
        .bind(serde_json::to_string(&app.scopes).unwrap_or_default())
        .bind(now)
        .bind(now)
        .execute(&self.0.write)
        .await?;
        Ok((app, secret))
    }

    pub async fn application(
        &self,
        id: &posthorn_core::ApplicationId,
    ) -> Result<Option<Application>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM applications WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(&self.0.read)
            .await?;
        row.map(|r| application_from_row(&r)).transpose()
    }

    /// Applications, newest first, ids below `before`.
    pub async fn applications_page(
        &self,
        before: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Application>> {
        let rows = match before {
            Some(b) => {
                sqlx::query(&format!(
                "SELECT {COLUMNS} FROM applications WHERE id < $1 ORDER BY id DESC LIMIT {limit}"
            ))
                .bind(b)
                .fetch_all(&self.0.read)
                .await?
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {COLUMNS} FROM applications ORDER BY id DESC LIMIT {limit}"
                ))
                .fetch_all(&self.0.read)
                .await?
            }
        };
        rows.iter().map(application_from_row).collect()
    }

    /// A new client secret for the application; the old one stops working at once. `None` when
    /// there is no such application.
    pub async fn rotate_application_secret(
        &self,
        id: &posthorn_core::ApplicationId,
    ) -> Result<Option<String>> {
        let secret = fresh_secret("phs_");
        let hash = blocking_hash(secret.clone()).await?;
        let n = sqlx::query(
            "UPDATE applications SET secret_hash = $1, updated_at = $2, failed_attempts = 0, \
             locked_until = NULL WHERE id = $3",
        )
        .bind(&hash)
        .bind(now_ms())
        .bind(id.as_str())
        .execute(&self.0.write)
        .await?
        .rows_affected();
        Ok((n == 1).then_some(secret))
    }

    /// Deletes the application and revokes its tokens (at once here; within
    /// [`TOKEN_CACHE_TTL`] on other processes). Its subscriptions are the caller's to delete.
    pub async fn delete_application(&self, id: &posthorn_core::ApplicationId) -> Result<bool> {
        write_tx!(self, |tx| {
            sqlx::query("DELETE FROM access_tokens WHERE application_id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?;
            let n = sqlx::query("DELETE FROM applications WHERE id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            self.0.tokens.forget_application(id);
            Ok(n == 1)
        })
    }

    /// Checks client credentials; on success, the application. Wrong secrets are counted and,
    /// past [`FREE_FAILURES`] in a row, lock the client for a time that doubles each time.
    pub async fn authenticate_client(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<std::result::Result<Application, CredentialsRefused>> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS}, secret_hash, failed_attempts, locked_until FROM applications \
             WHERE client_id = $1"
        ))
        .bind(client_id)
        .fetch_optional(&self.0.read)
        .await?;
        let Some(row) = row else {
            // As slow as a wrong secret, so that timing does not tell which clients exist.
            let _ = blocking_verify(secret.to_owned(), dummy_hash().to_owned()).await;
            return Ok(Err(CredentialsRefused::Invalid));
        };
        let now = now_ms();
        let locked_until: Option<Millis> = get(&row, "locked_until")?;
        if let Some(until) = locked_until.filter(|u| *u > now) {
            return Ok(Err(CredentialsRefused::Locked {
                retry_after_s: (until - now + 999) / 1000,
            }));
        }
        let hash: String = get(&row, "secret_hash")?;
        let app = application_from_row(&row)?;
        if blocking_verify(secret.to_owned(), hash).await? {
            sqlx::query(
                "UPDATE applications SET failed_attempts = 0, locked_until = NULL WHERE id = $1 \
                 AND failed_attempts > 0",
            )
            .bind(&app.id)
            .execute(&self.0.write)
            .await?;
            return Ok(Ok(app));
        }
        let failures: i64 = get::<i64>(&row, "failed_attempts")? + 1;
        let lock = (failures >= FREE_FAILURES).then(|| {
            let doublings = (failures - FREE_FAILURES).min(10) as u32;
            now + 1000 * 2i64.pow(doublings)
        });
        sqlx::query(
            "UPDATE applications SET failed_attempts = $1, locked_until = $2 WHERE id = $3",
        )
        .bind(failures)
        .bind(lock)
        .bind(&app.id)
        .execute(&self.0.write)
        .await?;
        Ok(Err(CredentialsRefused::Invalid))
    }

    /// Issues an access token for the application with these scopes, valid `ttl_ms`, acting for
    /// `user` when one is named.
    pub async fn issue_token(
        &self,
        application_id: &str,
        scopes: &[String],
        user: Option<&str>,
        ttl_ms: i64,
    ) -> Result<String> {
        let token = fresh_secret("pht_");
        let now = now_ms();
        sqlx::query(
            "INSERT INTO access_tokens (token_hash, application_id, scopes, expires_at, user_id) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash(&token))
        .bind(application_id)
        .bind(serde_json::to_string(scopes).unwrap_or_default())
        .bind(now + ttl_ms)
        .bind(user)
        .execute(&self.0.write)
        .await?;
        // Expired tokens go, a few at a time, as new ones come.
        sqlx::query("DELETE FROM access_tokens WHERE expires_at < $1")
            .bind(now - 3_600_000)
            .execute(&self.0.write)
            .await?;
        Ok(token)
    }

    /// Revokes every access token of the application (each process stops accepting them within
    /// [`TOKEN_CACHE_TTL`]); how many there were.
    pub async fn revoke_tokens(
        &self,
        application_id: &posthorn_core::ApplicationId,
    ) -> Result<u64> {
        let done = sqlx::query("DELETE FROM access_tokens WHERE application_id = $1")
            .bind(application_id.as_str())
            .execute(&self.0.write)
            .await?;
        self.0.tokens.forget_application(application_id);
        Ok(done.rows_affected())
    }

    /// Revokes one access token (a dashboard sign-out); whether it existed.
    pub async fn revoke_token(&self, token: &str) -> Result<bool> {
        let hash = token_hash(token);
        let done = sqlx::query("DELETE FROM access_tokens WHERE token_hash = $1")
            .bind(&hash)
            .execute(&self.0.write)
            .await?;
        self.0.tokens.put(hash, None);
        Ok(done.rows_affected() > 0)
    }

    /// Records that the admin session `id` ended (signed out) though it runs until `expires_at`.
    pub async fn revoke_session(&self, id: &str, expires_at: Millis) -> Result<()> {
        sqlx::query(
            "INSERT INTO revoked_sessions (id, expires_at) VALUES ($1, $2) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id)
        .bind(expires_at)
        .execute(&self.0.write)
        .await?;
        Ok(())
    }

    /// The admin sessions signed out and not yet expired (the expired ones are forgotten).
    pub async fn revoked_sessions(&self) -> Result<Vec<String>> {
        let now = now_ms();
        let rows = sqlx::query("SELECT id FROM revoked_sessions WHERE expires_at > $1")
            .bind(now)
            .fetch_all(&self.0.read)
            .await?;
        if rows.len() > 64 {
            sqlx::query("DELETE FROM revoked_sessions WHERE expires_at <= $1")
                .bind(now)
                .execute(&self.0.write)
                .await?;
        }
        rows.iter().map(|r| get(r, "id")).collect()
    }

    /// What a bearer token stands for, if it is a valid access token (through this process's
    /// cache, trusted for at most [`TOKEN_CACHE_TTL`]).
    pub async fn token(&self, token: &str) -> Result<Option<TokenGrant>> {
        let hash = token_hash(token);
        if let Some(cached) = self.0.tokens.get(&hash) {
            return Ok(cached.filter(|g| g.expires_at > now_ms()));
        }
        let row = sqlx::query(
            "SELECT t.application_id, t.scopes, t.expires_at, t.user_id FROM access_tokens t \
             JOIN applications a ON a.id = t.application_id WHERE t.token_hash = $1",
        )
        .bind(&hash)
        .fetch_optional(&self.0.read)
        .await?;
        let grant = match row {
            Some(r) => {
                let scopes: String = get(&r, "scopes")?;
                Some(TokenGrant {
                    application_id: get(&r, "application_id")?,
                    scopes: scopes_of(&scopes),
                    expires_at: get(&r, "expires_at")?,
                    user: get(&r, "user_id")?,
                })
            }
            None => None,
        };
        self.0.tokens.put(hash, grant.clone());
        Ok(grant.filter(|g| g.expires_at > now_ms()))
    }
}

/// A hash of a secret nobody has, verified against unknown clients so that they cost the same
/// time as known ones.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_secret(&fresh_secret("phs_")))
}

async fn blocking_hash(secret: String) -> Result<String> {
    tokio::task::spawn_blocking(move || hash_secret(&secret))
        .await
        .map_err(|e| StoreError::Hashing("hashing", e.to_string()))
}

async fn blocking_verify(secret: String, hash: String) -> Result<bool> {
    tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
        .await
        .map_err(|e| StoreError::Hashing("checking", e.to_string()))
}

/// This process's recent token lookups, by token hash (`None`: not a valid token).
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: Mutex<HashMap<String, (Instant, Option<TokenGrant>)>>,
}

impl TokenCache {
    fn get(&self, hash: &str) -> Option<Option<TokenGrant>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(hash)
            .filter(|(at, _)| at.elapsed() < TOKEN_CACHE_TTL)
            .map(|(_, g)| g.clone())
    }

    fn put(&self, hash: String, grant: Option<TokenGrant>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() > 10_000 {
            entries.retain(|_, (at, _)| at.elapsed() < TOKEN_CACHE_TTL);
        }
        entries.insert(hash, (Instant::now(), grant));
    }

    fn forget_application(&self, id: &str) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, (_, g)| g.as_ref().is_none_or(|g| g.application_id != id));
    }
}

pub(crate) type Tokens = Arc<TokenCache>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_verify_against_their_hash_only() {
        let h = hash_secret("phs_right");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_secret("phs_right", &h));
        assert!(!verify_secret("phs_wrong", &h));
        assert!(!verify_secret("phs_right", "not a hash"));
        assert!(!verify_secret("anything", dummy_hash()));
        let a = fresh_secret("pht_");
        assert!(a.starts_with("pht_") && a.len() > 40 && a != fresh_secret("pht_"));
        assert_eq!(token_hash("x"), token_hash("x"));
    }
}
