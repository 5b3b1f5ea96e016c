//! One-time tokens (the first-run setup token, password-reset tokens) and the hashes that stand for
//! them in the table. Neither prints its value through `Debug`, so a token or the key it is stored
//! under cannot reach a log line by a stray `{:?}`.

use secrecy::{ExposeSecret, SecretString};

/// A one-time token's plaintext: 256 random bits, base64url, handed out once (printed by the CLI,
/// mailed in a link, put in a hidden form field) and never stored.
#[derive(Clone)]
pub struct OneTimeToken(SecretString);

impl std::fmt::Debug for OneTimeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OneTimeToken(..)")
    }
}

impl OneTimeToken {
    pub fn generate() -> Self {
        Self(SecretString::from(super::random_token()))
    }

    /// A token as a caller presented it (a form field, a query parameter), trimmed.
    pub fn presented(text: &str) -> Self {
        Self(SecretString::from(text.trim()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.expose_secret().is_empty()
    }

    /// The plaintext, for the one place it is handed to its holder.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// What is stored in its place.
    pub fn hash(&self) -> TokenHash {
        TokenHash(super::token_hash(self.0.expose_secret()))
    }
}

/// SHA-256 (hex) of a one-time token: the only form in which a token is stored.
#[derive(Clone)]
pub struct TokenHash(String);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

impl TokenHash {
    /// A hash read back from the table.
    pub fn from_stored(hex: String) -> Self {
        Self(hex)
    }

    /// The hex, for the item that stores it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether two hashes are the same, in constant time.
    pub fn matches(&self, other: &TokenHash) -> bool {
        super::ct_eq(self.0.as_bytes(), other.0.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hash_as_stored_and_match_in_constant_time() {
        let token = OneTimeToken::generate();
        let again = OneTimeToken::presented(&format!(" {} ", token.expose()));
        assert!(token.hash().matches(&again.hash()), "presented tokens are trimmed");
        assert_eq!(token.hash().as_str(), super::super::token_hash(token.expose()));
        assert!(!token.hash().matches(&OneTimeToken::generate().hash()));
        assert!(OneTimeToken::presented("  ").is_empty());
    }

    #[test]
    fn debug_prints_neither_the_token_nor_its_hash() {
        let token = OneTimeToken::generate();
        let hash = token.hash();
        let printed = format!("{token:?} {hash:?}");
        assert_eq!(printed, "OneTimeToken(..) TokenHash(..)");
        assert!(!printed.contains(token.expose()) && !printed.contains(hash.as_str()));
    }
}
