//! The API key: a secret that never appears in `Debug`, logs or error texts.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A TestRail API key (or password). Its `Debug` and `Display` are redacted.
#[derive(Clone)]
pub struct ApiKey(SecretString);

impl ApiKey {
    /// Wraps a key, removing surrounding whitespace from a paste. `None` if nothing is left.
    pub fn new(key: impl AsRef<str>) -> Option<Self> {
        let trimmed = key.as_ref().trim();
        (!trimmed.is_empty()).then(|| Self(SecretString::from(trimmed.to_string())))
    }

    /// The plaintext key. Call only to authenticate or to encrypt it.
    pub fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_redacts() {
        let key = ApiKey::new("  s3cr3t-KEY \n").expect("key");
        assert_eq!(key.expose_secret(), "s3cr3t-KEY");
        assert!(!format!("{key:?}").contains("s3cr3t"));
        assert!(!format!("{key}").contains("s3cr3t"));
        assert!(ApiKey::new("   ").is_none());
    }
}
