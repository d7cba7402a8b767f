//! API tokens: random, shown once, stored as SHA-256 hashes.

use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore as _;
use sha2::{Digest, Sha256};

/// `bytes` random bytes from the OS, as lower-case hex (ids, session ids, CSRF tokens).
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A new token: `ar_` and 48 hex characters.
pub fn generate() -> String {
    format!("ar_{}", random_hex(24))
}

/// What the store keeps.
pub fn hash(token: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"accessrail api token v1\n");
    h.update(token.trim().as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// A token name: letters, digits, '-', '_', '.'.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hashed() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with("ar_") && a.len() == 51);
        assert_eq!(hash(&a), hash(&format!(" {a}\n")));
        assert_ne!(hash(&a), hash(&b));
        assert!(!hash(&a).contains(&a[3..]));
        assert!(valid_name("ci-bot") && !valid_name("a b") && !valid_name(""));
    }
}
