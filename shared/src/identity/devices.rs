//! Device cookies (OWASP's "Slow Down Online Guessing Attacks with Device Cookies"): a browser that
//! has completed a full login to an account gets a cookie, signed with the device-cookie purpose
//! key, binding the account, a random nonce and an expiry. A login attempt that presents a valid
//! one for the account it names is held to that cookie's own budget instead of the account's, so
//! someone spending an account's budget from elsewhere cannot lock out the browser its owner uses.
//!
//! One cookie per account: its name carries a digest of the username, so a browser used for two
//! accounts holds one for each. The value is `<nonce>.<expiry ms>.<tag>`: the username is not in it,
//! only in the signed message, so a cookie for one account proves nothing for another.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::core::clock::UnixMillis;
use crate::crypto::keyring::PurposeMac;

/// `__Host-`, as the session cookie: Secure, this exact host, `Path=/`.
pub const COOKIE_PREFIX: &str = "__Host-kavach_device_";
/// A browser stays trusted for this long after its last full login.
pub const DEVICE_TTL: Duration = Duration::from_secs(30 * 86_400);

/// The name of `username`'s device cookie: a digest, so the name says nothing of the account.
pub fn cookie_name(username: &str) -> String {
    let digest = crate::crypto::sha256_hex(canonical(username).as_bytes());
    format!("{COOKIE_PREFIX}{}", &digest[..16])
}

/// Usernames are compared as the login budget counts them: case and spaces make no new account.
fn canonical(username: &str) -> String {
    username.trim().to_ascii_lowercase()
}

fn signed_message(username: &str, nonce: &str, expires_at: UnixMillis) -> Vec<u8> {
    format!("kavach-device-cookie-v1\n{}\n{nonce}\n{}", canonical(username), expires_at.0).into_bytes()
}

/// The `Set-Cookie` value that trusts this browser for `username` until [`DEVICE_TTL`] from `now`;
/// `None` if the key cannot sign (the login goes on without one).
pub fn issue(mac: &PurposeMac, username: &str, now: UnixMillis) -> Option<String> {
    let nonce = URL_SAFE_NO_PAD.encode(crate::crypto::random_bytes::<16>());
    let expires_at = now.plus(DEVICE_TTL);
    let tag = mac.sign(&signed_message(username, &nonce, expires_at)).ok()?;
    Some(format!(
        "{}={nonce}.{}.{}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        cookie_name(username),
        expires_at.0,
        URL_SAFE_NO_PAD.encode(tag),
        DEVICE_TTL.as_secs()
    ))
}

/// The nonce of a valid, unexpired device cookie for `username` among the cookies a request sent
/// (name, value): the subject of that browser's own budget. A forged, altered, expired or other
/// account's cookie is no cookie.
pub fn trusted_nonce<'a>(
    mac: &PurposeMac,
    username: &str,
    cookies: &'a [(String, String)],
    now: UnixMillis,
) -> Option<&'a str> {
    let name = cookie_name(username);
    cookies.iter().filter(|(presented, _)| *presented == name).find_map(|(_, value)| {
        let mut parts = value.split('.');
        let (nonce, expiry, tag) = (parts.next()?, parts.next()?, parts.next()?);
        let expires_at = UnixMillis(expiry.parse().ok()?);
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let valid = parts.next().is_none()
            && expires_at > now
            && mac.verify(&signed_message(username, nonce, expires_at), &tag);
        valid.then_some(nonce)
    })
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::*;
    use crate::crypto::keyring::{KeyRing, Purpose};

    fn mac(byte: u8) -> PurposeMac {
        KeyRing::single(Zeroizing::new([byte; 32])).mac(&Purpose::DeviceCookie).expect("mac")
    }

    /// The (name, value) a browser sends back for a `Set-Cookie` value.
    fn sent(set_cookie: &str) -> (String, String) {
        let pair = set_cookie.split(';').next().expect("pair");
        let (name, value) = pair.split_once('=').expect("name=value");
        (name.to_owned(), value.to_owned())
    }

    #[test]
    fn a_device_cookie_is_trusted_for_its_account_only_until_it_expires() {
        let now = UnixMillis::from_secs(1_000_000);
        let set = issue(&mac(1), "Trader", now).expect("signed");
        assert!(set.starts_with(COOKIE_PREFIX), "{set}");
        for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict", "Max-Age=2592000"] {
            assert!(set.contains(attribute), "{attribute} in {set}");
        }
        let cookies = vec![sent(&set)];
        assert!(trusted_nonce(&mac(1), " trader ", &cookies, now).is_some(), "same account, any case");
        assert!(trusted_nonce(&mac(1), "other", &cookies, now).is_none(), "another account's name");
        assert!(trusted_nonce(&mac(2), "trader", &cookies, now).is_none(), "another key");
        assert!(trusted_nonce(&mac(1), "trader", &cookies, now.plus(DEVICE_TTL)).is_none(), "expired");
        // The cookie renamed for another account does not verify either: the name is in the MAC.
        let renamed = vec![(cookie_name("other"), cookies[0].1.clone())];
        assert!(trusted_nonce(&mac(1), "other", &renamed, now).is_none());
        // Any change to the value breaks the tag.
        let (name, value) = &cookies[0];
        let later: Vec<&str> = value.split('.').collect();
        let extended = format!("{}.{}.{}", later[0], now.plus(DEVICE_TTL).plus(DEVICE_TTL).0, later[2]);
        assert!(trusted_nonce(&mac(1), "trader", &[(name.clone(), extended)], now).is_none());
        assert!(trusted_nonce(&mac(1), "trader", &[(name.clone(), "garbage".into())], now).is_none());
    }
}
