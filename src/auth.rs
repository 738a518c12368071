//! Credentials: random bearer tokens, stored only as SHA-256 hashes, compared in constant time.
//!
//! Tokens carry 256 bits from the OS RNG, so a fast hash is enough (no password stretching):
//! the hash only has to keep a stolen configuration from being usable as a credential.

use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// A bearer token in clear: secret, zeroized on drop, printed as `Token(..)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// A fresh token, `<prefix>_` and 64 hex digits.
    pub fn generate(prefix: &str) -> Token {
        let mut raw = [0u8; 32];
        rand::rng().fill_bytes(&mut raw);
        let t = Token(format!("{prefix}_{}", hex::encode(raw)));
        raw.zeroize();
        t
    }

    pub fn new(s: impl Into<String>) -> Token {
        Token(s.into())
    }

    /// The token in clear, for an `Authorization` header or a file only its owner reads.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash stored in configuration.
    pub fn hash(&self) -> String {
        hash_token(&self.0)
    }
}

/// SHA-256 of a token, in hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` hashes to `hash_hex`, compared in constant time.
pub fn matches(token: &str, hash_hex: &str) -> bool {
    let Ok(want) = hex::decode(hash_hex) else {
        return false;
    };
    let got = Sha256::digest(token.as_bytes());
    want.len() == got.len() && bool::from(got.as_slice().ct_eq(&want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_matches_only_its_own_hash() {
        let a = Token::generate("le");
        let b = Token::generate("le");
        assert!(matches(a.expose(), &a.hash()));
        assert!(!matches(b.expose(), &a.hash()));
        assert!(!matches(a.expose(), "not hex"));
        assert!(a.expose().starts_with("le_") && a.expose().len() == 67);
        assert_eq!(format!("{a:?}"), "Token(..)");
    }
}
