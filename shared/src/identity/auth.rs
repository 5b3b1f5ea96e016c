//! `authenticate()`: the one function that turns a presented credential into a principal.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use ipnet::IpNet;
use tokio::sync::Semaphore;

use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::crypto::api_key::{ApiKey, KeyId};
use crate::crypto::password::{PasswordHasher, PhcString, Verification, verify_off_thread};
use crate::limits::LimitedAction;
use crate::limits::limiter::{RateLimiter, within_budgets};
use crate::limits::subject::Subject;
use crate::store::identity::ApiKeyRecord;

/// Who is calling. Always derived from the credential, never from the request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub user: String,
    pub key_id: KeyId,
    pub broker: String,
}

/// Verified keys per warm container, keyed by SHA-256 of the whole key. An entry is bound to the
/// hash it was verified against, so a replaced record invalidates it; revocation is read from the
/// record on every request, never from here.
#[derive(Debug)]
pub struct VerifiedKeyCache {
    entries: Mutex<HashMap<[u8; 32], PhcString>>,
    capacity: usize,
    /// Argon2id takes ~19 MiB per verification: bound how many run at once, so a burst of unseen
    /// keys cannot exhaust memory, and so concurrent requests with one new key verify it once.
    verifying: Semaphore,
}

impl VerifiedKeyCache {
    pub fn new(capacity: usize, concurrent_verifications: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
            verifying: Semaphore::new(concurrent_verifications.max(1)),
        }
    }

    fn holds(&self, fingerprint: &[u8; 32], phc: &PhcString) -> bool {
        let entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        entries.get(fingerprint).is_some_and(|cached| cached == phc)
    }

    fn remember(&self, fingerprint: [u8; 32], phc: PhcString) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity {
            // Rare and harmless: the next request per key pays one verification again.
            entries.clear();
        }
        entries.insert(fingerprint, phc);
    }
}

/// Slots of the key ids' failure budgets taken for verifications that succeeded, to give back after
/// the response ([`crate::app::bootstrap::Deps::after_response`]): the write is then off a cold
/// key's path to its answer. Until it lands the slot counts, which errs toward refusing.
pub type PendingRefunds = crate::core::pending::Pending<(KeyId, UnixMillis)>;

/// Gives every slot queued in `refunds` back, concurrently. One that fails stays spent until its
/// window closes, which only ever refuses sooner.
pub async fn give_back(refunds: &PendingRefunds, limits: &RateLimiter) {
    let refunds = refunds.take();
    let writes = refunds.iter().map(|(id, reserved_at)| async move {
        let given = limits.take_back(LimitedAction::KeyFailures, Subject::KeyId(id), *reserved_at).await;
        if let Err(error) = given {
            tracing::warn!(key_id = %id, error = %error, "key failure budget slot not given back");
        }
    });
    futures::future::join_all(writes).await;
}

/// API-key verification over what it uses: the warm container's cache of verified keys, the keyed
/// Argon2id hasher, the limiter (for the budget of failed verifications per key id) and the queue
/// of slots to give back. It writes no identity item: the functions that verify keys may not
/// (template.yaml), so a key hashed under older Argon2 parameters keeps verifying at the cost its
/// hash records and gets the current ones when it is regenerated.
#[derive(Clone, Copy, Debug)]
pub struct Authenticator<'a> {
    pub verified_keys: &'a VerifiedKeyCache,
    pub passwords: &'a Arc<PasswordHasher>,
    pub limits: &'a RateLimiter,
    pub refunds: &'a PendingRefunds,
}

impl Authenticator<'_> {
    /// Verifies `presented` against the record the gate fetched. A bad secret and an unknown id are
    /// the same `InvalidApiKey`; "revoked" is only said to someone who proved they hold the key.
    ///
    /// Argon2 runs only for a key this container has not verified yet, and only while the key id's
    /// budget of failed verifications lasts (`KEY_FAILURE_RATE_LIMIT`): each such run takes a slot
    /// first and a success gives it back, so a known key id with random secrets, from any number of
    /// addresses and containers, forces at most that many failed verifications per window; past
    /// it, an unverified key is answered 429 without running Argon2. A container that has verified
    /// the owner's key goes on serving it; one that has not refuses it until the window closes.
    pub async fn authenticate(
        self,
        presented: &ApiKey,
        record: Option<ApiKeyRecord>,
        client_ip: IpAddr,
        now: UnixMillis,
    ) -> Result<Principal, AppError> {
        let record = record.ok_or(AppError::InvalidApiKey)?;
        if record.id != *presented.id() {
            return Err(AppError::InvalidApiKey);
        }
        let fingerprint = presented.fingerprint();
        let cache = self.verified_keys;
        if !cache.holds(&fingerprint, &record.phc) {
            let _permit = cache
                .verifying
                .acquire()
                .await
                .map_err(|_| AppError::internal(anyhow::anyhow!("verification semaphore closed")))?;
            // Another request may have verified this key while we waited: a burst of requests with
            // one new key takes one slot of its budget, not one each.
            if !cache.holds(&fingerprint, &record.phc) {
                let reserved = self.reserve_failure(&record.id, now).await?;
                let verified = self.verify_slowly(presented, &record).await;
                // Only a secret that did not verify keeps its slot of the failure budget.
                if reserved && !matches!(verified, Err(AppError::InvalidApiKey)) {
                    self.refunds.push((record.id.clone(), now));
                }
                verified?;
                cache.remember(fingerprint, record.phc.clone());
            }
        }
        if record.revoked_at.is_some() {
            return Err(AppError::RevokedApiKey);
        }
        if !allowlist_admits(&record.allow, client_ip) {
            return Err(AppError::IpNotAllowed);
        }
        Ok(Principal { user: record.user, key_id: record.id, broker: record.broker })
    }

    /// Takes one slot of the key id's failure budget before Argon2 runs for a key this container
    /// has not verified: one conditional write, so concurrent attempts cannot overshoot the budget.
    /// Spent, the key is refused with 429 unverified. The throttle guards CPU, not access, so a
    /// store that cannot be written does not refuse the key (`Ok(false)`: nothing was reserved);
    /// the verification semaphore still bounds how many run at once.
    async fn reserve_failure(self, id: &KeyId, now: UnixMillis) -> Result<bool, AppError> {
        match self.limits.reserve(LimitedAction::KeyFailures, Subject::KeyId(id), 1, now).await {
            Ok(verdict) => within_budgets([&verdict], now).map(|()| true),
            Err(error) => {
                tracing::warn!(key_id = %id, error = %error, "key failure budget unavailable; verifying anyway");
                Ok(false)
            }
        }
    }

    async fn verify_slowly(self, presented: &ApiKey, record: &ApiKeyRecord) -> Result<(), AppError> {
        match verify_off_thread(self.passwords, presented.expose(), &record.phc).await? {
            Verification::Invalid => Err(AppError::InvalidApiKey),
            Verification::Valid { .. } => Ok(()),
        }
    }
}

/// A key's IP allowlist (SEBI's static-IP rule): empty admits every address. An entry that does not
/// parse admits nothing, so a corrupted list fails closed.
pub fn allowlist_admits(allow: &[String], client_ip: IpAddr) -> bool {
    let client_ip = crate::core::net::canonical(client_ip);
    allow.is_empty()
        || allow.iter().any(|entry| {
            entry.parse::<IpNet>().map(|net| net.contains(&client_ip)).unwrap_or(false)
                || entry.parse::<IpAddr>().is_ok_and(|ip| crate::core::net::canonical(ip) == client_ip)
        })
}

/// Parses what a user typed into the allowlist form: addresses or CIDR ranges, separated by commas,
/// spaces or new lines. Each bad entry is named.
pub fn parse_allowlist(text: &str) -> Result<Vec<String>, AppError> {
    let mut entries = Vec::new();
    for entry in text.split([',', ' ', '\n', '\r', '\t']).map(str::trim).filter(|e| !e.is_empty()) {
        let normalised = match (entry.parse::<IpAddr>(), entry.parse::<IpNet>()) {
            (Ok(ip), _) => crate::core::net::canonical(ip).to_string(),
            (_, Ok(net)) => net.trunc().to_string(),
            _ => return Err(AppError::bad_request(format!("`{entry}` is not an IP address or CIDR range"))),
        };
        if !entries.contains(&normalised) {
            entries.push(normalised);
        }
    }
    if entries.len() > 20 {
        return Err(AppError::bad_request("At most 20 addresses or ranges may be allowed"));
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().expect("ip")
    }

    #[test]
    fn allowlists() {
        assert!(allowlist_admits(&[], ip("203.0.113.9")));
        let list = parse_allowlist("203.0.113.9, 198.51.100.0/24\n::ffff:192.0.2.1").expect("valid");
        assert_eq!(list, ["203.0.113.9", "198.51.100.0/24", "192.0.2.1"]);
        assert!(allowlist_admits(&list, ip("203.0.113.9")));
        assert!(allowlist_admits(&list, ip("198.51.100.77")));
        assert!(allowlist_admits(&list, ip("::ffff:203.0.113.9")));
        assert!(!allowlist_admits(&list, ip("203.0.113.10")));
        assert!(!allowlist_admits(&["garbage".into()], ip("203.0.113.9")));
        let error = parse_allowlist("1.2.3.4, nonsense").expect_err("bad entry");
        assert!(error.public_message().contains("nonsense"));
    }
}
