//! Server-side web sessions: what the cookie carries (an opaque 256-bit id and nothing else), what
//! is stored (only the id's SHA-256), and when a session ends (the daily boundary, 03:00 IST).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};

use crate::core::clock::UnixMillis;

/// `__Host-`: the browser only accepts it Secure, from the exact host, with `Path=/`, so a sibling
/// subdomain cannot plant or overwrite it.
pub const COOKIE_NAME: &str = "__Host-kavach_session";
/// At most this many full sessions per user; logging in beyond it ends the oldest. Pending ones
/// (password right, TOTP owed) do not count: the password alone must not log the owner out.
pub const MAX_SESSIONS_PER_USER: usize = 5;
/// At most this many pending (password-only) sessions per user, apart from the full ones; beyond
/// it the oldest pending one ends. They live five minutes; the cap keeps the user's item small.
pub const MAX_PENDING_PER_USER: usize = 10;
/// A password-checked login waits this long for its TOTP code.
pub const PENDING_TOTP: Duration = Duration::from_secs(300);
/// Revealing the API key needs the password or a TOTP code entered within this window.
pub const REAUTH_WINDOW: Duration = Duration::from_secs(300);

/// The cookie value: 32 random bytes, base64url. Never logged, never stored.
pub struct SessionId(SecretString);

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(..)")
    }
}

impl SessionId {
    pub fn generate() -> Self {
        Self(SecretString::from(crate::crypto::random_token()))
    }

    /// A presented cookie value, if it has the shape of one of ours.
    pub fn parse(value: &str) -> Option<Self> {
        let decoded = URL_SAFE_NO_PAD.decode(value.trim()).ok()?;
        (decoded.len() == 32).then(|| Self(SecretString::from(value.trim().to_owned())))
    }

    /// The storage key: SHA-256 of the id, hex. A leaked table does not yield usable cookies.
    pub fn hash(&self) -> String {
        crate::crypto::sha256_hex(self.0.expose_secret().as_bytes())
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// The `Set-Cookie` value that installs this session until `expires_at`.
    pub fn set_cookie(&self, now: UnixMillis, expires_at: UnixMillis) -> String {
        let max_age = expires_at.since(now).as_secs();
        format!("{COOKIE_NAME}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}", self.expose())
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// A session's CSRF synchroniser token (256 bits, base64url): in its forms and its record, never in
/// a log line.
#[derive(Clone)]
pub struct CsrfToken(SecretString);

impl std::fmt::Debug for CsrfToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CsrfToken(..)")
    }
}

/// Constant-time, as every comparison of a secret.
impl PartialEq for CsrfToken {
    fn eq(&self, other: &Self) -> bool {
        self.matches(other.expose())
    }
}

impl Eq for CsrfToken {}

impl CsrfToken {
    /// A fresh token, for a new session.
    pub fn generate() -> Self {
        Self(SecretString::from(crate::crypto::random_token()))
    }

    /// A token read back from the session's record.
    pub fn from_stored(token: String) -> Self {
        Self(SecretString::from(token))
    }

    /// The token, for the session's forms, its record and the token endpoint.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Whether a request presented this token, compared in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        crate::crypto::ct_eq(presented.as_bytes(), self.0.expose_secret().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_hash() {
        let id = SessionId::generate();
        let parsed = SessionId::parse(id.expose()).expect("parses");
        assert_eq!(parsed.hash(), id.hash());
        assert_eq!(id.hash().len(), 64);
        assert!(SessionId::parse("short").is_none());
        let cookie = id.set_cookie(UnixMillis::from_secs(100), UnixMillis::from_secs(160));
        assert!(cookie.starts_with("__Host-kavach_session=") && cookie.contains("Max-Age=60"));
        assert!(cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
        assert_eq!(format!("{id:?}"), "SessionId(..)");
    }

    #[test]
    fn csrf_tokens_match_only_themselves_and_never_print() {
        let token = CsrfToken::generate();
        assert!(token.matches(token.expose()));
        assert!(!token.matches("") && !token.matches(&token.expose()[1..]));
        assert_eq!(CsrfToken::from_stored(token.expose().to_owned()), token);
        assert_ne!(CsrfToken::generate(), token);
        assert_eq!(format!("{token:?}"), "CsrfToken(..)");
    }
}
