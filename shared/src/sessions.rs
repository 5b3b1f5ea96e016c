//! Server-side web sessions: what the cookie carries (an opaque 256-bit id and nothing else), what
//! is stored (only the id's SHA-256), and when a session ends (the daily boundary, 03:00 IST).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};

use crate::clock::UnixMillis;
use crate::sandbox::ist;

/// `__Host-`: the browser only accepts it Secure, from the exact host, with `Path=/`, so a sibling
/// subdomain cannot plant or overwrite it.
pub const COOKIE_NAME: &str = "__Host-kavach_session";
/// At most this many sessions per user; logging in beyond it ends the oldest.
pub const MAX_SESSIONS_PER_USER: usize = 5;
/// A password-checked login waits this long for its TOTP code.
pub const PENDING_TOTP_SECS: u64 = 300;
/// Revealing the API key needs the password or a TOTP code entered within this window.
pub const REAUTH_WINDOW_SECS: u64 = 300;

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
    pub fn set_cookie(&self, now: UnixMillis, expires_at_secs: u64) -> String {
        let max_age = expires_at_secs.saturating_sub(now.secs());
        format!("{COOKIE_NAME}={}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age}", self.expose())
    }
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE_NAME}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0")
}

/// A fresh CSRF synchroniser token (256 bits, base64url).
pub fn new_csrf_token() -> String {
    crate::crypto::random_token()
}

/// The daily boundary, seconds after IST midnight (`SESSION_EXPIRY_TIME`, `HH:MM`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DailyExpiry {
    pub secs_of_day: u32,
}

impl Default for DailyExpiry {
    fn default() -> Self {
        Self { secs_of_day: 3 * 3600 }
    }
}

impl std::str::FromStr for DailyExpiry {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (hours, minutes) = text.trim().split_once(':').ok_or_else(|| format!("`{text}` is not HH:MM"))?;
        let hours: u32 = hours.parse().map_err(|_| format!("`{text}` is not HH:MM"))?;
        let minutes: u32 = minutes.parse().map_err(|_| format!("`{text}` is not HH:MM"))?;
        if hours > 23 || minutes > 59 {
            return Err(format!("`{text}` is not a time of day between 00:00 and 23:59"));
        }
        Ok(Self { secs_of_day: hours * 3600 + minutes * 60 })
    }
}

impl DailyExpiry {
    /// A session that began at `login` has expired at `now` when any daily boundary lies in
    /// `(login, now]`, however long ago: not only today's (OpenAlgo's W5).
    pub fn has_expired(&self, login: UnixMillis, now: UnixMillis) -> bool {
        now < login || ist::last_boundary(now, self.secs_of_day) > login
    }

    /// The first boundary after `now`, in epoch seconds: the session's `expires_at`.
    pub fn next_after(&self, now: UnixMillis) -> u64 {
        ist::last_boundary(now, self.secs_of_day).secs() + 86_400
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-20 10:00 IST.
    fn ist(day: u32, hour: u64, minute: u64) -> UnixMillis {
        let midnight = ist::ist_midnight_epoch(2026, 11, day);
        UnixMillis::from_secs(u64::try_from(midnight).expect("positive") + hour * 3600 + minute * 60)
    }

    #[test]
    fn any_boundary_between_login_and_now_expires() {
        let expiry = DailyExpiry::default();
        let login = ist(20, 10, 0);
        assert!(!expiry.has_expired(login, ist(20, 23, 59)));
        assert!(!expiry.has_expired(login, ist(21, 2, 59)));
        assert!(expiry.has_expired(login, ist(21, 3, 0)));
        // OpenAlgo's hole: a cookie unused across a whole day, replayed before the next boundary.
        assert!(expiry.has_expired(login, ist(22, 2, 0)));
        // Logged in after today's boundary: valid until tomorrow's.
        assert!(!expiry.has_expired(ist(21, 3, 1), ist(22, 2, 59)));
        assert_eq!(expiry.next_after(login), ist(21, 3, 0).secs());
        assert_eq!(expiry.next_after(ist(21, 2, 0)), ist(21, 3, 0).secs());
    }

    #[test]
    fn expiry_time_parsing() {
        assert_eq!("03:00".parse(), Ok(DailyExpiry { secs_of_day: 10_800 }));
        assert_eq!("15:45".parse::<DailyExpiry>().map(|e| e.secs_of_day), Ok(56_700));
        for bad in ["", "3", "24:00", "12:60", "ab:cd"] {
            assert!(bad.parse::<DailyExpiry>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_round_trip_and_hash() {
        let id = SessionId::generate();
        let parsed = SessionId::parse(id.expose()).expect("parses");
        assert_eq!(parsed.hash(), id.hash());
        assert_eq!(id.hash().len(), 64);
        assert!(SessionId::parse("short").is_none());
        let cookie = id.set_cookie(UnixMillis::from_secs(100), 160);
        assert!(cookie.starts_with("__Host-kavach_session=") && cookie.contains("Max-Age=60"));
        assert!(cookie.contains("Secure") && cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
        assert_eq!(format!("{id:?}"), "SessionId(..)");
    }
}
