//! Opaque secret tokens (refresh tokens, reset tokens): 256 random bits, shown to the client
//! once as base64url, stored only as their SHA-256.
//!
//! Lookups go by the hash, so the database never holds anything that could be replayed,
//! and comparing hashes by index lookup leaks nothing useful about the token itself.

use std::fmt;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A newly minted token: the text for the client and the hash for the database.
pub struct OpaqueToken {
    text: String,
    hash: [u8; 32],
}

impl OpaqueToken {
    /// 32 bytes from the system CSPRNG, encoded as 43 base64url characters without padding.
    pub fn generate() -> Result<Self, aws_lc_rs::error::Unspecified> {
        let mut bytes = [0u8; 32];
        aws_lc_rs::rand::fill(&mut bytes)?;
        let text = URL_SAFE_NO_PAD.encode(bytes);
        let hash = hash(&text);
        Ok(Self { text, hash })
    }

    /// The token to hand to the client, once.
    pub fn expose(&self) -> &str {
        &self.text
    }

    /// What to store.
    pub fn hash(&self) -> &[u8; 32] {
        &self.hash
    }
}

impl fmt::Debug for OpaqueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OpaqueToken(<redacted>)")
    }
}

/// Whether `presented` has the shape of an issued token (43 base64url characters): anything
/// else can be refused without a database round trip.
pub fn is_well_formed(presented: &str) -> bool {
    presented.len() == TOKEN_CHARS
        && presented
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// Length of a token as issued: 32 bytes in base64url without padding.
const TOKEN_CHARS: usize = 43;

/// The SHA-256 of a presented token, to look it up.
pub fn hash(presented: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, presented.as_bytes()).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_base64url_chars_and_unique() {
        let a = OpaqueToken::generate().expect("rng");
        let b = OpaqueToken::generate().expect("rng");
        assert_eq!(a.expose().len(), 43);
        assert!(
            a.expose()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a.expose(), b.expose());
        assert_eq!(hash(a.expose()), *a.hash());
        assert!(!format!("{a:?}").contains(a.expose()));
        assert!(is_well_formed(a.expose()));
    }

    #[test]
    fn only_token_shaped_strings_are_well_formed() {
        let token = OpaqueToken::generate().expect("rng");
        for garbage in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", &token.expose()[..42]),
            &format!("{}+", &token.expose()[..42]),
            &format!("{}é", &token.expose()[..41]),
        ] {
            assert!(!is_well_formed(garbage), "{garbage:?}");
        }
    }
}
