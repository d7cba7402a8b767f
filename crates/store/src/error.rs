use thiserror::Error;

/// Store failures, with sqlx errors mapped once, here.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the database is busy (another Accessrail process holds it); try again")]
    Busy,
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
    /// A setting the store was given is wrong (a database URL, say).
    #[error("{0}")]
    Invalid(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound("row".into()),
            sqlx::Error::Database(db) => {
                let msg = db.message().to_string();
                if msg.contains("locked") || msg.contains("busy") {
                    StoreError::Busy
                } else if db.is_unique_violation() {
                    StoreError::Conflict(msg)
                } else {
                    StoreError::Database(msg)
                }
            }
            sqlx::Error::PoolTimedOut => StoreError::Busy,
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(format!("migration failed: {e}"))
    }
}
