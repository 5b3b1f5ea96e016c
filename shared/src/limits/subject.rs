//! Whom a rate-limit counter counts. The counter's key is formatted here and nowhere else, so two
//! kinds of subject can never share a counter by accident (a user named `setup`, say, and the setup
//! form's own budget).

use std::fmt;
use std::net::IpAddr;

use crate::core::net::accountable;
use crate::crypto::api_key::{ApiKey, KeyId};

#[derive(Clone, Copy, Debug)]
pub enum Subject<'a> {
    /// A source address, counted by its accountable address (an IPv6 address by its /64).
    Ip(IpAddr),
    /// A presented API key, by a fingerprint of the *whole* key, so that someone who knows only a
    /// key id cannot spend its owner's budget.
    ApiKey(&'a ApiKey),
    /// A key id, whoever presents it: what its failed verifications are counted against.
    KeyId(&'a KeyId),
    /// A login name as typed; case and surrounding spaces do not make a new budget.
    Username(&'a str),
    /// An address a password reset was asked for; case does not make a new budget.
    Email(&'a str),
    /// A strategy webhook, by the SHA-256 its record is stored under.
    Webhook(&'a str),
    /// The one-time setup form: one budget for the whole stack.
    Setup,
    /// A browser that has logged in to the account before, by its device cookie's nonce: its own
    /// budget, instead of the account's.
    Device(&'a str),
}

impl fmt::Display for Subject<'_> {
    /// The subject's part of the counter key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Ip(ip) => write!(f, "ip#{}", accountable(*ip)),
            Subject::ApiKey(key) => {
                // Hex on the stack: the key is formatted on every API request.
                let mut digits = [0u8; 32];
                hex::encode_to_slice(&key.fingerprint()[..16], &mut digits).map_err(|_| fmt::Error)?;
                f.write_str("key#")?;
                f.write_str(std::str::from_utf8(&digits).map_err(|_| fmt::Error)?)
            }
            Subject::KeyId(id) => write!(f, "keyid#{id}"),
            Subject::Username(name) => write!(f, "user#{}", name.trim().to_ascii_lowercase()),
            Subject::Email(address) => write!(f, "email#{}", address.trim().to_ascii_lowercase()),
            Subject::Webhook(hash) => write!(f, "webhook#{hash}"),
            Subject::Setup => f.write_str("setup"),
            Subject::Device(nonce) => write!(f, "device#{nonce}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_of_different_kinds_never_share_a_key() {
        let ip: IpAddr = "203.0.113.9".parse().expect("ip");
        let mapped: IpAddr = "::ffff:203.0.113.9".parse().expect("ip");
        assert_eq!(Subject::Ip(ip).to_string(), "ip#203.0.113.9");
        assert_eq!(Subject::Ip(mapped).to_string(), Subject::Ip(ip).to_string());
        assert_eq!(Subject::Username(" Trader ").to_string(), "user#trader");
        assert_ne!(Subject::Username("setup").to_string(), Subject::Setup.to_string());
        assert_ne!(Subject::Username("a@b.in").to_string(), Subject::Email("a@b.in").to_string());
        let key = ApiKey::generate();
        assert_eq!(Subject::ApiKey(&key).to_string().len(), "key#".len() + 32);
        assert_ne!(Subject::KeyId(key.id()).to_string(), Subject::ApiKey(&key).to_string());
    }
}
