//! Broker links in the identity table, one item per account and broker: `broker#<user>#<broker>`.
//!
//! - `creds`: the trader's broker app (its API key and secret), Fernet-encrypted under that
//!   broker's own purpose key (`Purpose::BrokerTokens`); `key_hint`, the app key's last four
//!   characters, is all a page shows of it again.
//! - `tok`: the day's access token, encrypted the same way; present only while the link is live.
//! - `st`: `pending` (credentials saved, no login yet), `linked` or `revoked`. A link whose
//!   `tok_exp` has passed reads as expired whatever `st` says.
//! - `linked_at`, `tok_exp`, `broker_user`, `err` (the last failure, in the broker's words),
//!   `updated_at`.
//! - `held`: `tok` while a token is held, so that the link is in the sparse `held_tokens` index,
//!   by `tok_exp`, until it is revoked.
//!
//! The identity table, not the sandbox's: the web portal and the order functions already read it,
//! so linking grants no function a table it did not have.

use super::identity::IdentityStore;
use super::{Item, PK, epoch, get_by_pk, instant, s, string, unavailable, unless_condition_failed};
use crate::broker::BrokerId;
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;

const CREDENTIALS: &str = "creds";
const KEY_HINT: &str = "key_hint";
const TOKEN: &str = "tok";
const STATE: &str = "st";
const LINKED_AT: &str = "linked_at";
const TOKEN_EXPIRES: &str = "tok_exp";
const BROKER_USER: &str = "broker_user";
const LAST_ERROR: &str = "err";
const UPDATED_AT: &str = "updated_at";
/// Present (`tok`) exactly while a token is held: the partition key of [`HELD_TOKENS_INDEX`].
const HELD: &str = "held";
const HELD_VALUE: &str = "tok";

/// The sparse index of the links that hold a token, by its expiry (`tok_exp`): what the daily
/// rollover queries, instead of scanning the identity table.
pub const HELD_TOKENS_INDEX: &str = "held_tokens";

/// The longest broker message kept as a link's last error.
const MAX_ERROR_CHARS: usize = 300;

fn link_pk(user: &str, broker: BrokerId) -> String {
    format!("broker#{user}#{}", broker.as_str())
}

/// Where a link stands, as stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// The app's credentials are saved; the trader has not completed a broker login with them.
    Pending,
    /// A broker login completed and its token is held.
    Linked,
    /// Disconnected, or ended by the daily rollover: no token is held.
    Revoked,
}

impl LinkState {
    const fn as_str(self) -> &'static str {
        match self {
            LinkState::Pending => "pending",
            LinkState::Linked => "linked",
            LinkState::Revoked => "revoked",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [LinkState::Pending, LinkState::Linked, LinkState::Revoked].into_iter().find(|state| state.as_str() == text)
    }
}

/// One account's link to one broker, its secrets still encrypted.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerLinkRecord {
    pub broker: BrokerId,
    pub encrypted_credentials: String,
    pub key_hint: String,
    pub encrypted_token: Option<String>,
    pub state: LinkState,
    pub broker_user: Option<String>,
    pub linked_at: Option<UnixMillis>,
    pub token_expires: Option<UnixMillis>,
    pub last_error: Option<String>,
    pub updated_at: UnixMillis,
}

/// By hand: the ciphertexts print as their presence only.
impl std::fmt::Debug for BrokerLinkRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerLinkRecord")
            .field("broker", &self.broker)
            .field("key_hint", &self.key_hint)
            .field("token", &self.encrypted_token.is_some())
            .field("state", &self.state)
            .field("broker_user", &self.broker_user)
            .field("linked_at", &self.linked_at)
            .field("token_expires", &self.token_expires)
            .field("last_error", &self.last_error)
            .finish_non_exhaustive()
    }
}

impl BrokerLinkRecord {
    fn from_item(broker: BrokerId, item: &Item) -> Option<Self> {
        Some(Self {
            broker,
            encrypted_credentials: string(item, CREDENTIALS)?,
            key_hint: string(item, KEY_HINT).unwrap_or_default(),
            encrypted_token: string(item, TOKEN),
            state: string(item, STATE).as_deref().and_then(LinkState::parse)?,
            broker_user: string(item, BROKER_USER),
            linked_at: instant(item, LINKED_AT),
            token_expires: instant(item, TOKEN_EXPIRES),
            last_error: string(item, LAST_ERROR),
            updated_at: instant(item, UPDATED_AT).unwrap_or_default(),
        })
    }

    /// A token that can be used at `now`: linked, held, and not past its expiry.
    pub fn live_token(&self, now: UnixMillis) -> Option<&str> {
        let unexpired = self.token_expires.is_some_and(|expires| now < expires);
        (self.state == LinkState::Linked && unexpired).then_some(self.encrypted_token.as_deref()).flatten()
    }
}

/// A link whose token's expiry has passed, as the index lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredLink {
    pub user: String,
    pub broker: BrokerId,
    pub expires: UnixMillis,
}

impl ExpiredLink {
    fn from_item(item: &Item) -> Option<Self> {
        let (user, broker) =
            string(item, PK)?.strip_prefix("broker#")?.rsplit_once('#').map(|(u, b)| (u.to_owned(), b.to_owned()))?;
        Some(Self { user, broker: BrokerId::parse(&broker)?, expires: instant(item, TOKEN_EXPIRES)? })
    }
}

fn bounded(message: &str) -> String {
    message.chars().take(MAX_ERROR_CHARS).collect()
}

impl IdentityStore {
    /// The account's link to `broker`, strongly consistent.
    pub async fn broker_link(&self, user: &str, broker: BrokerId) -> Result<Option<BrokerLinkRecord>, AppError> {
        let item = get_by_pk(&self.client, &self.table, link_pk(user, broker), "read broker link").await?;
        Ok(item.as_ref().and_then(|item| BrokerLinkRecord::from_item(broker, item)))
    }

    /// Saves the app's credentials as a new pending link. Whatever link there was (and its token,
    /// which belongs to the old app) is replaced.
    pub async fn save_broker_credentials(
        &self,
        user: &str,
        broker: BrokerId,
        encrypted_credentials: &str,
        key_hint: &str,
        now: UnixMillis,
    ) -> Result<(), AppError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(link_pk(user, broker)))
            .item(CREDENTIALS, s(encrypted_credentials))
            .item(KEY_HINT, s(key_hint))
            .item(STATE, s(LinkState::Pending.as_str()))
            .item(UPDATED_AT, epoch(now))
            .send()
            .await
            .map_err(unavailable("save broker credentials"))?;
        Ok(())
    }

    /// Records a completed broker login: the token and its expiry. Only if the link still holds
    /// the credentials the login used (`encrypted_credentials`), so that credentials replaced
    /// meanwhile never get the old app's token; false when they were.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_broker_token(
        &self,
        user: &str,
        broker: BrokerId,
        encrypted_credentials: &str,
        encrypted_token: &str,
        broker_user: &str,
        now: UnixMillis,
        expires: UnixMillis,
    ) -> Result<bool, AppError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(link_pk(user, broker)))
            .update_expression(
                "SET #tok = :tok, #held = :held, #st = :linked, #linked_at = :now, #tok_exp = :exp, \
                 #broker_user = :broker_user, #updated_at = :now REMOVE #err",
            )
            .condition_expression("#creds = :creds")
            .expression_attribute_names("#tok", TOKEN)
            .expression_attribute_names("#held", HELD)
            .expression_attribute_values(":held", s(HELD_VALUE))
            .expression_attribute_names("#st", STATE)
            .expression_attribute_names("#linked_at", LINKED_AT)
            .expression_attribute_names("#tok_exp", TOKEN_EXPIRES)
            .expression_attribute_names("#broker_user", BROKER_USER)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#err", LAST_ERROR)
            .expression_attribute_names("#creds", CREDENTIALS)
            .expression_attribute_values(":tok", s(encrypted_token))
            .expression_attribute_values(":linked", s(LinkState::Linked.as_str()))
            .expression_attribute_values(":now", epoch(now))
            .expression_attribute_values(":exp", epoch(expires))
            .expression_attribute_values(":broker_user", s(broker_user))
            .expression_attribute_values(":creds", s(encrypted_credentials))
            .send()
            .await;
        Ok(unless_condition_failed(outcome, "record broker token")?.is_some())
    }

    /// Ends the link here: the token is dropped and the state is `revoked`, with `error` (a
    /// failure to revoke at the broker, say) kept as the last error. The credentials stay, so the
    /// trader can log in again without entering them. With `expiring_at`, only the token with
    /// that expiry is revoked (the rollover's condition: a token linked after the boundary has a
    /// later one and survives); false when the link holds another.
    pub async fn revoke_broker_link(
        &self,
        user: &str,
        broker: BrokerId,
        error: Option<&str>,
        now: UnixMillis,
        expiring_at: Option<UnixMillis>,
    ) -> Result<bool, AppError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(link_pk(user, broker)))
            .expression_attribute_names("#creds", CREDENTIALS)
            .expression_attribute_names("#tok", TOKEN)
            .expression_attribute_names("#held", HELD)
            .expression_attribute_names("#st", STATE)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#err", LAST_ERROR)
            .expression_attribute_values(":revoked", s(LinkState::Revoked.as_str()))
            .expression_attribute_values(":now", epoch(now));
        let request = match expiring_at {
            Some(expires) => request
                .condition_expression("attribute_exists(#creds) AND #tok_exp = :seen")
                .expression_attribute_names("#tok_exp", TOKEN_EXPIRES)
                .expression_attribute_values(":seen", epoch(expires)),
            None => request.condition_expression("attribute_exists(#creds)"),
        };
        let request = match error {
            Some(error) => request
                .update_expression("SET #st = :revoked, #updated_at = :now, #err = :err REMOVE #tok, #held")
                .expression_attribute_values(":err", s(bounded(error))),
            None => request.update_expression("SET #st = :revoked, #updated_at = :now REMOVE #tok, #held, #err"),
        };
        // No link is nothing to revoke.
        Ok(unless_condition_failed(request.send().await, "revoke broker link")?.is_some())
    }

    /// The links whose token expires at or before `now`, from [`HELD_TOKENS_INDEX`] (keys only:
    /// the rollover reads each link again, consistently, before it acts).
    pub async fn links_expired_by(&self, now: UnixMillis) -> Result<Vec<ExpiredLink>, AppError> {
        let mut found = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(HELD_TOKENS_INDEX)
                .key_condition_expression("#held = :held AND #tok_exp <= :now")
                .expression_attribute_names("#held", HELD)
                .expression_attribute_names("#tok_exp", TOKEN_EXPIRES)
                .expression_attribute_values(":held", s(HELD_VALUE))
                .expression_attribute_values(":now", epoch(now))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable("list expiring broker tokens"))?;
            found.extend(page.items().iter().filter_map(ExpiredLink::from_item));
            match page.last_evaluated_key {
                Some(key) => start = Some(key),
                None => return Ok(found),
            }
        }
    }

    /// Keeps `error` as the link's last error (a login the broker refused), changing nothing else.
    pub async fn note_broker_error(
        &self,
        user: &str,
        broker: BrokerId,
        error: &str,
        now: UnixMillis,
    ) -> Result<(), AppError> {
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(link_pk(user, broker)))
            .update_expression("SET #err = :err, #updated_at = :now")
            .condition_expression("attribute_exists(#creds)")
            .expression_attribute_names("#err", LAST_ERROR)
            .expression_attribute_names("#updated_at", UPDATED_AT)
            .expression_attribute_names("#creds", CREDENTIALS)
            .expression_attribute_values(":err", s(bounded(error)))
            .expression_attribute_values(":now", epoch(now))
            .send()
            .await;
        unless_condition_failed(outcome, "note broker error")?;
        Ok(())
    }
}
