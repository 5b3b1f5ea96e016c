//! Linking a trader's account to a broker, bound to their web session (W10, W11):
//!
//! 1. [`BrokerLinks::start`] saves the broker app's credentials (encrypted under that broker's own
//!    key) when the trader enters them, issues a single-use `state` bound to the session and the
//!    broker, and answers the broker's login URL carrying it.
//! 2. The broker sends the trader back to `/broker/callback/<broker>`. [`BrokerLinks::complete`]
//!    runs only in the same logged-in session, uses the `state` up, and only if it matched
//!    exchanges the broker's one-time code for the day's token, stored encrypted. Otherwise
//!    nothing is stored.
//! 3. [`BrokerLinks::disconnect`] ends the session at the broker (W26) and drops the token here,
//!    whether or not the broker answered.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::kite::Kite;
use super::{Broker, BrokerId, BrokerSession};
use crate::core::clock::{Clock, UnixMillis};
use crate::core::error::AppError;
use crate::core::ist::DailyExpiry;
use crate::core::metrics::{Metric, Metrics};
use crate::crypto::keyring::Purpose;
use crate::store::app_secret::{LiveCipher, RingSource};
use crate::store::broker_links::{BrokerLinkRecord, LinkState};
use crate::store::identity::IdentityStore;

/// Each broker's tokens and app credentials under that broker's own purpose key, so a key (or a
/// ciphertext) of one broker opens nothing of another's.
#[derive(Debug)]
pub struct BrokerCiphers {
    zerodha: LiveCipher,
}

impl BrokerCiphers {
    /// The keys derived from `ring` (the cold start's), kept current from `source`.
    pub fn new(
        ring: &crate::crypto::keyring::KeyRing,
        sealed: &str,
        source: &RingSource,
    ) -> Result<Self, crate::crypto::CryptoError> {
        let cipher = |broker: BrokerId| {
            LiveCipher::new(Purpose::BrokerTokens(broker.as_str().into()), ring, sealed.to_owned(), source.clone())
        };
        Ok(Self { zerodha: cipher(BrokerId::Zerodha)? })
    }

    /// No keys, for a function that links no broker and places no live order.
    pub fn withheld() -> Self {
        Self { zerodha: LiveCipher::withheld() }
    }

    pub fn of(&self, broker: BrokerId) -> &LiveCipher {
        match broker {
            BrokerId::Zerodha => &self.zerodha,
        }
    }
}

/// The trader's broker app, as entered on the Broker page: encrypted together, never shown again
/// except the key's last four characters.
#[derive(Serialize, Deserialize)]
pub struct AppCredentials {
    pub api_key: String,
    #[serde(serialize_with = "expose")]
    pub api_secret: SecretString,
}

fn expose<S: serde::Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

impl std::fmt::Debug for AppCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppCredentials").field("api_key", &key_hint(&self.api_key)).finish_non_exhaustive()
    }
}

/// The longest app key or secret accepted (Kite's are 16 and 32 characters).
const MAX_CREDENTIAL_CHARS: usize = 128;

impl AppCredentials {
    /// What the form sent, checked: both present, printable ASCII without spaces, bounded.
    pub fn from_form(api_key: &str, api_secret: &str) -> Result<Self, AppError> {
        let check = |name: &str, value: &str| {
            if value.is_empty() {
                return Err(AppError::bad_request(format!("Enter the broker app's {name}")));
            }
            if value.len() > MAX_CREDENTIAL_CHARS || !value.bytes().all(|byte| byte.is_ascii_graphic()) {
                return Err(AppError::bad_request(format!(
                    "The broker app's {name} is at most {MAX_CREDENTIAL_CHARS} letters, digits or symbols, without spaces"
                )));
            }
            Ok(())
        };
        check("API key", api_key)?;
        check("API secret", api_secret)?;
        Ok(Self { api_key: api_key.to_owned(), api_secret: SecretString::from(api_secret.to_owned()) })
    }
}

/// What a page shows of an app key: its last four characters.
pub fn key_hint(api_key: &str) -> String {
    let tail_start = api_key.char_indices().rev().nth(3).map_or(0, |(at, _)| at);
    format!("…{}", &api_key[tail_start..])
}

/// Where a link stands, as the Broker page shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkStatus {
    NotLinked,
    /// Credentials saved, no completed login.
    Pending,
    Linked,
    /// Linked once; the token's expiry has passed (the broker's morning boundary or Kavach's).
    Expired,
    Revoked,
}

impl LinkStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            LinkStatus::NotLinked => "not linked",
            LinkStatus::Pending => "pending",
            LinkStatus::Linked => "linked",
            LinkStatus::Expired => "expired",
            LinkStatus::Revoked => "revoked",
        }
    }

    pub fn of(link: Option<&BrokerLinkRecord>, now: UnixMillis) -> Self {
        match link {
            None => LinkStatus::NotLinked,
            Some(link) => match link.state {
                LinkState::Pending => LinkStatus::Pending,
                LinkState::Revoked => LinkStatus::Revoked,
                LinkState::Linked if link.live_token(now).is_some() => LinkStatus::Linked,
                LinkState::Linked => LinkStatus::Expired,
            },
        }
    }
}

/// How a disconnect went at the broker; the link is revoked here either way.
#[derive(Debug)]
pub enum Disconnected {
    /// The broker ended the session, or had ended it already.
    AtBroker,
    /// No token was held: nothing to end at the broker.
    NothingHeld,
    /// The broker could not be told; the token is dropped here all the same.
    BrokerFailed(AppError),
}

/// What one rollover pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rollover {
    /// Tokens dropped here (and ended at the broker, unless counted in `not_heard`).
    pub revoked: usize,
    /// Of those, the ones the broker could not be told of.
    pub not_heard: usize,
    /// Listed, but holding a newer token by the time they were read: left alone.
    pub kept: usize,
}

/// Kite's access tokens lapse at 06:00 IST the next morning.
const KITE_DAILY_EXPIRY: DailyExpiry = DailyExpiry { secs_of_day: 6 * 3600 };

/// Linking and unlinking brokers: the identity store, the brokers' ciphers and clients, the daily
/// boundary (a token is held no later than it, nor than the broker's own expiry), and the metric a
/// revoke the broker did not hear raises.
#[derive(Clone, Copy, Debug)]
pub struct BrokerLinks<'a> {
    pub identity: &'a IdentityStore,
    pub ciphers: &'a BrokerCiphers,
    pub kite: &'a Kite,
    /// Kite's login site, whose `/connect/login` shows the consent page.
    pub kite_login: &'a str,
    pub session_expiry: DailyExpiry,
    pub metrics: &'a Metrics,
    pub clock: &'a dyn Clock,
}

impl<'a> BrokerLinks<'a> {
    /// The adapter that speaks `broker`'s API.
    pub fn adapter(&self, broker: BrokerId) -> &'a dyn Broker {
        match broker {
            BrokerId::Zerodha => self.kite,
        }
    }

    /// Every broker's link of `user`, in [`BrokerId::ALL`] order.
    pub async fn all(&self, user: &str) -> Result<Vec<(BrokerId, Option<BrokerLinkRecord>)>, AppError> {
        let mut links = Vec::with_capacity(BrokerId::ALL.len());
        for &broker in BrokerId::ALL {
            links.push((broker, self.identity.broker_link(user, broker).await?));
        }
        Ok(links)
    }

    /// Starts a broker login for `user` in the session `session_hash`: saves `credentials` first
    /// when given (else the saved ones are used), and answers the broker's login URL with a fresh
    /// single-use `state`.
    pub async fn start(
        &self,
        user: &str,
        session_hash: &str,
        broker: BrokerId,
        credentials: Option<AppCredentials>,
    ) -> Result<String, AppError> {
        let now = self.clock.now();
        let cipher = self.ciphers.of(broker);
        let api_key = match credentials {
            Some(credentials) => {
                // New credentials replace the link: a token the old app still holds is ended at
                // the broker first, not just forgotten here.
                if let Some(held) = self.identity.broker_link(user, broker).await?
                    && held.encrypted_token.is_some()
                {
                    self.end(user, &held).await?;
                }
                let plaintext = Zeroizing::new(serde_json::to_vec(&credentials).map_err(AppError::internal)?);
                let encrypted = cipher.encrypt(&plaintext, now).await?;
                let hint = key_hint(&credentials.api_key);
                self.identity.save_broker_credentials(user, broker, &encrypted, &hint, now).await?;
                credentials.api_key
            }
            None => {
                let link = self.identity.broker_link(user, broker).await?.ok_or_else(|| {
                    AppError::bad_request("Enter the broker app's API key and secret: none are saved for this broker")
                })?;
                self.credentials(&link).await?.api_key
            }
        };
        let state = self.identity.issue_oauth_state(session_hash, broker.as_str(), now).await?;
        Ok(match broker {
            BrokerId::Zerodha => {
                // Kite has no `state` parameter: what `redirect_params` holds comes back appended
                // to the redirect, so the state travels there.
                let redirect_params: String =
                    form_urlencoded::Serializer::new(String::new()).append_pair("state", &state).finish();
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("v", "3")
                    .append_pair("api_key", &api_key)
                    .append_pair("redirect_params", &redirect_params)
                    .finish();
                format!("{}/connect/login?{query}", self.kite_login)
            }
        })
    }

    /// Completes a broker login in the session `session_hash`: `state` must be the one this
    /// session issued for `broker`, unused and unexpired (it is used up by this call whatever
    /// happens), or the callback is refused with nothing stored. Then the broker's one-time
    /// `code` is exchanged for the day's token.
    pub async fn complete(
        &self,
        user: &str,
        session_hash: &str,
        broker: BrokerId,
        state: Option<&str>,
        code: Option<&str>,
    ) -> Result<(), AppError> {
        let now = self.clock.now();
        let state = state.filter(|state| !state.is_empty()).ok_or(AppError::BrokerLinkRefused)?;
        if !self.identity.consume_oauth_state(state, session_hash, broker.as_str(), now).await? {
            return Err(AppError::BrokerLinkRefused);
        }
        let code = code
            .filter(|code| !code.is_empty() && code.len() <= MAX_CREDENTIAL_CHARS)
            .ok_or_else(|| AppError::bad_request("The broker sent no login code back: log in to the broker again"))?;
        let link = self.identity.broker_link(user, broker).await?.ok_or(AppError::BrokerLinkRefused)?;
        let credentials = self.credentials(&link).await?;
        let grant = match broker {
            BrokerId::Zerodha => self.kite.create_session(&credentials.api_key, code, &credentials.api_secret).await,
        };
        let grant = match grant {
            Ok(grant) => grant,
            Err(error) => {
                self.identity.note_broker_error(user, broker, &error.public_message(), now).await?;
                return Err(error);
            }
        };
        let token = self.ciphers.of(broker).encrypt(grant.access_token.expose_secret().as_bytes(), now).await?;
        let expires = self.session_expiry.next_after(now).min(KITE_DAILY_EXPIRY.next_after(now));
        let recorded = self
            .identity
            .record_broker_token(user, broker, &link.encrypted_credentials, &token, &grant.user_id, now, expires)
            .await?;
        if !recorded {
            // The credentials changed (or the link went) while the trader was at the broker: the
            // token belongs to an app this account no longer names. End it there too.
            let session = BrokerSession { broker, app_key: credentials.api_key, access_token: grant.access_token };
            if let Err(error) = self.kite.revoke(&session).await {
                tracing::warn!(error = %error, broker = broker.as_str(), "stale broker token not revoked at the broker");
            }
            return Err(AppError::ConcurrentChange);
        }
        Ok(())
    }

    /// Ends `user`'s link to `broker`: at the broker first (so a copy of the token is worthless),
    /// then here, whatever the broker answered. A broker that could not be told is logged and kept
    /// as the link's last error.
    pub async fn disconnect(&self, user: &str, broker: BrokerId) -> Result<Disconnected, AppError> {
        match self.identity.broker_link(user, broker).await? {
            Some(link) => self.end(user, &link).await,
            None => Ok(Disconnected::NothingHeld),
        }
    }

    /// Ends every broker session `user` holds, as [`BrokerLinks::disconnect`] does each one: "log
    /// out everywhere" reaches the brokers too, so a stolen session cookie that was used to link
    /// nothing still leaves no live token behind. Links without a token are left as they are.
    pub async fn end_all(&self, user: &str) -> Result<Vec<(BrokerId, Disconnected)>, AppError> {
        let mut ended = Vec::new();
        for (broker, link) in self.all(user).await? {
            if let Some(link) = link.filter(|link| link.encrypted_token.is_some()) {
                ended.push((broker, self.end(user, &link).await?));
            }
        }
        Ok(ended)
    }

    /// [`BrokerLinks::disconnect`] of `link`, as just read.
    async fn end(&self, user: &str, link: &BrokerLinkRecord) -> Result<Disconnected, AppError> {
        Ok(self.end_token(user, link, None).await?.0)
    }

    /// [`BrokerLinks::end`], the local revoke conditional on `expiring_at` when given: whether
    /// the link was revoked here too (false: it holds a newer token, which stays).
    async fn end_token(
        &self,
        user: &str,
        link: &BrokerLinkRecord,
        expiring_at: Option<UnixMillis>,
    ) -> Result<(Disconnected, bool), AppError> {
        let (now, broker) = (self.clock.now(), link.broker);
        let outcome = match &link.encrypted_token {
            None => Disconnected::NothingHeld,
            Some(token) => match self.session(link, token).await {
                Ok(session) => match self.kite.revoke(&session).await {
                    Ok(()) => Disconnected::AtBroker,
                    // The broker no longer honours the token (its own morning expiry passed, or
                    // the trader logged out there): nothing is left to end, and nothing failed.
                    Err(AppError::BrokerSessionExpired) => Disconnected::AtBroker,
                    Err(error) => Disconnected::BrokerFailed(error),
                },
                Err(error) => Disconnected::BrokerFailed(error),
            },
        };
        let failure = match &outcome {
            Disconnected::BrokerFailed(error) => {
                tracing::warn!(error = %error, broker = broker.as_str(), "broker session not revoked at the broker");
                self.metrics.count_kind(Metric::BrokerRevokeFailures, broker.as_str(), now);
                Some(format!("Not revoked at the broker: {}", error.public_message()))
            }
            _ => None,
        };
        let revoked = self.identity.revoke_broker_link(user, broker, failure.as_deref(), now, expiring_at).await?;
        Ok((outcome, revoked))
    }

    /// The daily rollover: every token whose expiry has passed (Kavach's session boundary, or the
    /// broker's own morning) is ended at the broker and dropped here, each drop conditional on the
    /// expiry it was listed with, so a link made after the boundary keeps its new token. A broker
    /// that cannot be told is logged, metered and alarmed as a disconnect's is; the token is
    /// dropped here all the same. Until it runs, an expired token is refused on use anyway
    /// ([`BrokerLinks::live_session`]): the rollover is what tells the broker.
    pub async fn roll_over(&self) -> Result<Rollover, AppError> {
        let mut done = Rollover::default();
        for expired in self.identity.links_expired_by(self.clock.now()).await? {
            let Some(link) = self.identity.broker_link(&expired.user, expired.broker).await? else { continue };
            if link.encrypted_token.is_none() || link.token_expires != Some(expired.expires) {
                // Linked again (or disconnected) since the index was read: not this token.
                done.kept += 1;
                continue;
            }
            match self.end_token(&expired.user, &link, Some(expired.expires)).await? {
                (_, false) => done.kept += 1,
                (Disconnected::BrokerFailed(_), true) => {
                    done.revoked += 1;
                    done.not_heard += 1;
                }
                (_, true) => done.revoked += 1,
            }
        }
        Ok(done)
    }

    /// The session that trades for `user` at `broker` now: the link as stored at this moment (a
    /// disconnect or the rollover takes effect on the next request), its token live. A link that
    /// never completed is `broker_not_linked`; one disconnected, revoked by the rollover or past
    /// its expiry is `broker_session_expired`: the trader logs in to the broker again.
    pub async fn live_session(&self, user: &str, broker: BrokerId) -> Result<BrokerSession, AppError> {
        let link = self.identity.broker_link(user, broker).await?.ok_or(AppError::NoBrokerLinked)?;
        match (link.live_token(self.clock.now()), link.state) {
            (Some(token), _) => self.session(&link, token).await,
            (None, LinkState::Pending) => Err(AppError::NoBrokerLinked),
            (None, _) => Err(AppError::BrokerSessionExpired),
        }
    }

    async fn credentials(&self, link: &BrokerLinkRecord) -> Result<AppCredentials, AppError> {
        let plaintext =
            self.ciphers.of(link.broker).decrypt(&link.encrypted_credentials, None, self.clock.now()).await?;
        serde_json::from_slice(&plaintext).map_err(AppError::internal)
    }

    /// The session a call on the trader's behalf needs, decrypted for this call only.
    async fn session(&self, link: &BrokerLinkRecord, token: &str) -> Result<BrokerSession, AppError> {
        let credentials = self.credentials(link).await?;
        let token = self.ciphers.of(link.broker).decrypt(token, None, self.clock.now()).await?;
        let token = String::from_utf8(token.to_vec()).map_err(AppError::internal)?;
        Ok(BrokerSession { broker: link.broker, app_key: credentials.api_key, access_token: SecretString::from(token) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_checked_and_print_only_the_key_hint() {
        let credentials = AppCredentials::from_form("kitekey1234abcd", "s3cret-value").expect("valid");
        let printed = format!("{credentials:?}");
        assert!(printed.contains("…abcd") && !printed.contains("s3cret") && !printed.contains("kitekey"), "{printed}");
        for (key, secret) in [("", "s"), ("k", ""), ("with space", "s"), ("k", &"x".repeat(129))] {
            let refused = AppCredentials::from_form(key, secret).expect_err("refused");
            assert_eq!(refused.status(), 400, "{key:?}");
        }
    }

    #[test]
    fn a_linked_token_past_its_expiry_reads_as_expired() {
        let link = BrokerLinkRecord {
            broker: BrokerId::Zerodha,
            encrypted_credentials: "c".into(),
            key_hint: "…abcd".into(),
            encrypted_token: Some("t".into()),
            state: LinkState::Linked,
            broker_user: Some("AB1234".into()),
            linked_at: Some(UnixMillis::from_secs(100)),
            token_expires: Some(UnixMillis::from_secs(200)),
            last_error: None,
            updated_at: UnixMillis::from_secs(100),
        };
        assert_eq!(LinkStatus::of(Some(&link), UnixMillis::from_secs(199)), LinkStatus::Linked);
        assert_eq!(LinkStatus::of(Some(&link), UnixMillis::from_secs(200)), LinkStatus::Expired);
        assert_eq!(LinkStatus::of(None, UnixMillis::from_secs(1)), LinkStatus::NotLinked);
    }
}
