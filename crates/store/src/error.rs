//! The store's one error type; the API turns it into a 503 (database trouble is never the
//! client's fault), except what it reads as a conflict or an absence.

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// The error of a group commit, which every publish and settle of the group shares.
    #[error("{0}")]
    Group(std::sync::Arc<StoreError>),
    #[error("the store is shutting down")]
    ShuttingDown,
    /// The cipher refused to seal a secret (its length, in bytes).
    #[error("sealing a secret of {0} bytes failed")]
    Seal(usize),
    /// Hashing or checking a client secret failed (argon2).
    #[error("{0} a secret failed: {1}")]
    Hashing(&'static str, String),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data could not be read: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Open(String),
    /// A limit the operator set was reached (the API answers 409 with this text).
    #[error("{0}")]
    Quota(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
