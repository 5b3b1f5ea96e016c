//! OAuth `state` for broker logins (W11): a 256-bit random value bound to the session that started
//! the login and to the broker, stored as `oauth#<sha256>` for 10 minutes, and used up by one
//! conditional delete. A callback whose `state` is missing, reused, expired, from another session
//! or for another broker is refused, so a victim cannot be bound to an attacker's broker account.

use super::identity::IdentityStore;
use std::time::Duration;

use super::{EXPIRES_AT, PK, epoch, s, string, unavailable};
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;

/// How long a broker login may take between redirect and callback.
pub const STATE_TTL: Duration = Duration::from_secs(600);

fn state_pk(state: &str) -> String {
    format!("oauth#{}", crate::crypto::token_hash(state))
}

impl IdentityStore {
    /// A new `state` for `broker`, bound to the session whose hash is `session_hash`.
    pub async fn issue_oauth_state(
        &self,
        session_hash: &str,
        broker: &str,
        now: UnixMillis,
    ) -> Result<String, AppError> {
        let state = crate::crypto::random_token();
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(state_pk(&state)))
            .item("session", s(session_hash))
            .item("broker", s(broker))
            .item(EXPIRES_AT, epoch(now.plus(STATE_TTL)))
            .send()
            .await
            .map_err(unavailable("store OAuth state"))?;
        Ok(state)
    }

    /// Uses `state` up. True only for a live state issued to this session for this broker; any
    /// state presented is consumed, so it can never be tried twice.
    pub async fn consume_oauth_state(
        &self,
        state: &str,
        session_hash: &str,
        broker: &str,
        now: UnixMillis,
    ) -> Result<bool, AppError> {
        let Some(item) = self.take_live_item(state_pk(state), now, "use OAuth state").await? else { return Ok(false) };
        let same_session = string(&item, "session")
            .is_some_and(|stored| crate::crypto::ct_eq(stored.as_bytes(), session_hash.as_bytes()));
        Ok(same_session && string(&item, "broker").as_deref() == Some(broker))
    }
}
