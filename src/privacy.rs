//! Pseudonymous user ids. With `[privacy] user_id = "hmac"`, a request's `user_id` is replaced at
//! the transport boundary (request validation) by `HMAC-SHA256(key, user_id)`, hex, truncated to
//! [`PSEUDONYM_BYTES`] bytes: the decision log, the budgets, the tracked decisions and every
//! message after validation carry only the pseudonym. The same user always gets the same
//! pseudonym (for a given key), so per-user budgets and training on the logs work unchanged;
//! the raw id cannot be recovered without the key.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the HMAC kept in a pseudonym (hex: twice as many characters).
pub const PSEUDONYM_BYTES: usize = 16;
/// The shortest key accepted (the HMAC-SHA256 block output size).
pub const MIN_KEY_BYTES: usize = 32;

/// How user ids are kept.
#[derive(Clone, Default)]
pub enum UserIds {
    /// As the caller sent them.
    #[default]
    Clear,
    /// Replaced by their keyed pseudonym.
    Hmac(Hmac<Sha256>),
}

impl std::fmt::Debug for UserIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UserIds::Clear => f.write_str("Clear"),
            // Never the key.
            UserIds::Hmac(_) => f.write_str("Hmac(<key redacted>)"),
        }
    }
}

impl UserIds {
    /// `key`: the secret read from the key file (at least [`MIN_KEY_BYTES`] bytes; the caller
    /// checks that, with the file's name in the message).
    pub fn hmac(key: &[u8]) -> Option<UserIds> {
        Hmac::<Sha256>::new_from_slice(key).ok().map(UserIds::Hmac)
    }

    pub fn is_pseudonymous(&self) -> bool {
        matches!(self, UserIds::Hmac(_))
    }

    /// The user id as it is kept: unchanged in clear mode; its pseudonym with a key. An empty id
    /// (no user) stays empty.
    pub fn apply(&self, user_id: String) -> String {
        match self {
            UserIds::Hmac(mac) if !user_id.is_empty() => pseudonym(mac, &user_id),
            _ => user_id,
        }
    }
}

/// `HMAC-SHA256(key, user_id)`, the first [`PSEUDONYM_BYTES`] bytes as lowercase hex.
pub fn pseudonym(mac: &Hmac<Sha256>, user_id: &str) -> String {
    let mut mac = mac.clone();
    mac.update(user_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(2 * PSEUDONYM_BYTES);
    for b in digest.iter().take(PSEUDONYM_BYTES) {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_rfc_4231_test_vector_truncated_to_16_bytes() {
        // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
        let Some(UserIds::Hmac(mac)) = UserIds::hmac(b"Jefe") else {
            panic!("key accepted");
        };
        assert_eq!(
            pseudonym(&mac, "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c7"
        );
    }

    #[test]
    fn clear_keeps_ids_and_hmac_replaces_all_but_empty_ones() {
        assert_eq!(UserIds::Clear.apply("alice".into()), "alice");
        let ids = UserIds::hmac(&[7u8; 32]).unwrap();
        let a = ids.apply("alice".into());
        assert_eq!(a.len(), 2 * PSEUDONYM_BYTES);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, "alice");
        assert_eq!(ids.apply("alice".into()), a, "stable");
        assert_ne!(ids.apply("bob".into()), a);
        assert_eq!(ids.apply(String::new()), "");
        let other_key = UserIds::hmac(&[8u8; 32]).unwrap();
        assert_ne!(other_key.apply("alice".into()), a);
        assert_eq!(format!("{ids:?}"), "Hmac(<key redacted>)");
    }
}
