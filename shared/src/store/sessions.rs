//! Web sessions in the identity table: `session#<sha256 of the id>`, TTL at the next daily
//! boundary, and an entry in the user's `sessions` map written in the same transaction, so that
//! every session of a user can be found with one consistent read.

use aws_sdk_dynamodb::types::{Delete, KeysAndAttributes, Put, Update};

use super::identity::{IdentityStore, user_pk};
use super::{
    EXPIRES_AT, Item, PK, cancelled_by_condition, epoch, instant, n, number, s, string, unavailable,
    unless_condition_failed, write,
};
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::identity::sessions::{CsrfToken, MAX_PENDING_PER_USER, MAX_SESSIONS_PER_USER};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The password was right; the TOTP code is still owed.
    PendingTotp,
    /// Fully logged in.
    Full,
}

#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub hash: String,
    pub user: String,
    pub stage: Stage,
    /// When the user logged in (epoch ms): the daily-expiry rule is computed from it.
    pub created_at: UnixMillis,
    pub last_seen: UnixMillis,
    pub ip: String,
    pub user_agent: String,
    pub csrf: CsrfToken,
    /// When the password or a TOTP code was last entered in this session.
    pub reauth_at: Option<UnixMillis>,
    pub expires_at: UnixMillis,
}

/// By hand, so that the record's secrets stay out of logs: the CSRF token prints as
/// `CsrfToken(..)`, and the id's hash (the storage key) not at all.
impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("user", &self.user)
            .field("stage", &self.stage)
            .field("created_at", &self.created_at)
            .field("last_seen", &self.last_seen)
            .field("ip", &self.ip)
            .field("user_agent", &self.user_agent)
            .field("csrf", &self.csrf)
            .field("reauth_at", &self.reauth_at)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl SessionRecord {
    /// Whether the password or a TOTP code was entered in this session within the last
    /// [`REAUTH_WINDOW`](crate::identity::sessions::REAUTH_WINDOW).
    pub fn reauthenticated_recently(&self, now: UnixMillis) -> bool {
        self.reauth_at.is_some_and(|at| now.since(at) <= crate::identity::sessions::REAUTH_WINDOW)
    }

    fn from_item(item: &Item) -> Option<Self> {
        Some(Self {
            hash: string(item, PK)?.strip_prefix("session#")?.to_owned(),
            user: string(item, "user")?,
            stage: if string(item, "stage").as_deref() == Some("full") { Stage::Full } else { Stage::PendingTotp },
            created_at: UnixMillis(number(item, "created_at")?),
            last_seen: UnixMillis(number(item, "last_seen").unwrap_or_default()),
            ip: string(item, "ip").unwrap_or_default(),
            user_agent: string(item, "user_agent").unwrap_or_default(),
            csrf: CsrfToken::from_stored(string(item, "csrf")?),
            reauth_at: number(item, "reauth_at").map(UnixMillis),
            expires_at: instant(item, EXPIRES_AT)?,
        })
    }

    fn put(&self, table: &str) -> Result<Put, AppError> {
        let mut put = Put::builder()
            .table_name(table)
            .item(PK, s(session_pk(&self.hash)))
            .item("user", s(&self.user))
            .item("stage", s(if self.stage == Stage::Full { "full" } else { "pending" }))
            .item("created_at", n(self.created_at.0))
            .item("last_seen", n(self.last_seen.0))
            .item("ip", s(&self.ip))
            .item("user_agent", s(&self.user_agent))
            .item("csrf", s(self.csrf.expose()))
            .item(EXPIRES_AT, epoch(self.expires_at))
            .condition_expression("attribute_not_exists(pk)");
        if let Some(at) = self.reauth_at {
            put = put.item("reauth_at", n(at.0));
        }
        put.build().map_err(AppError::internal)
    }
}

fn session_pk(hash: &str) -> String {
    format!("session#{hash}")
}

impl IdentityStore {
    /// The session for a cookie's hash; one past its `expires_at` is absent.
    pub async fn session(&self, hash: &str, now: UnixMillis) -> Result<Option<SessionRecord>, AppError> {
        let item = self.item(session_pk(hash), "read session").await?;
        Ok(item.as_ref().and_then(SessionRecord::from_item).filter(|session| session.expires_at > now))
    }

    /// Stores a new session, optionally replacing `replaces` (the id rotation at TOTP step-up and
    /// re-authentication): the new item, the old one's deletion and the user's map change are one
    /// transaction. Then trims the user to [`MAX_SESSIONS_PER_USER`] full sessions, oldest first.
    pub async fn start_session(&self, record: &SessionRecord, replaces: Option<&str>) -> Result<(), AppError> {
        let mut map_change = Update::builder()
            .table_name(&self.table)
            .key(PK, s(user_pk(&record.user)))
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_names("#new", &record.hash)
            .expression_attribute_values(":at", n(record.created_at.0));
        // The map exists from the user's creation (`create_web_user`); users without one have no
        // password and never reach a session.
        let mut transaction = self.client.transact_write_items().transact_items(write(record.put(&self.table)?));
        match replaces {
            Some(old) => {
                map_change = map_change
                    .update_expression("SET sessions.#new = :at REMOVE sessions.#old")
                    .expression_attribute_names("#old", old);
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key(PK, s(session_pk(old)))
                    .condition_expression("attribute_exists(pk)")
                    .build()
                    .map_err(AppError::internal)?;
                transaction = transaction.transact_items(write(delete));
            }
            None => map_change = map_change.update_expression("SET sessions.#new = :at"),
        }
        let map_change = map_change.build().map_err(AppError::internal)?;
        transaction.transact_items(write(map_change)).send().await.map_err(|error| {
            if cancelled_by_condition(&error) {
                // The session being replaced is gone (logged out meanwhile): no new one either.
                AppError::SessionExpired
            } else {
                AppError::Unavailable(anyhow::Error::new(error).context("start session"))
            }
        })?;
        self.trim_sessions(&record.user, record.last_seen).await
    }

    /// Keeps the user to [`MAX_SESSIONS_PER_USER`] *full* sessions and [`MAX_PENDING_PER_USER`]
    /// pending ones, ending the oldest of each beyond, and drops map entries whose session is gone.
    /// Pending sessions (the password was right, the TOTP code is still owed) have a cap of their
    /// own: were they counted with the full ones, the password alone could log the owner out
    /// everywhere.
    async fn trim_sessions(&self, username: &str, now: UnixMillis) -> Result<(), AppError> {
        let Some(user) = self.user(username).await? else { return Ok(()) };
        if user.sessions.len() <= MAX_SESSIONS_PER_USER {
            return Ok(());
        }
        let live = self.session_records(user.sessions.keys()).await?;
        let mut full: Vec<&SessionRecord> = Vec::new();
        let mut pending: Vec<&SessionRecord> = Vec::new();
        for session in live.iter().filter(|session| session.expires_at > now) {
            match session.stage {
                Stage::Full => full.push(session),
                Stage::PendingTotp => pending.push(session),
            }
        }
        let keep: std::collections::HashSet<&str> = [(full, MAX_SESSIONS_PER_USER), (pending, MAX_PENDING_PER_USER)]
            .into_iter()
            .flat_map(|(mut sessions, cap)| {
                // Newest login first; the map's time breaks ties the same way on every container.
                sessions.sort_by_key(|session| std::cmp::Reverse((session.created_at, session.hash.clone())));
                sessions.into_iter().take(cap).map(|session| session.hash.as_str())
            })
            .collect();
        let ended: Vec<String> = user.sessions.keys().filter(|hash| !keep.contains(hash.as_str())).cloned().collect();
        self.end_sessions(username, &ended).await
    }

    /// The session records of `hashes`, read consistently (absent ones are left out).
    async fn session_records<'a>(
        &self,
        hashes: impl Iterator<Item = &'a String>,
    ) -> Result<Vec<SessionRecord>, AppError> {
        let hashes: Vec<&String> = hashes.collect();
        let mut records = Vec::new();
        // BatchGetItem takes at most 100 keys.
        for chunk in hashes.chunks(100) {
            let mut keys = KeysAndAttributes::builder().consistent_read(true);
            for hash in chunk {
                keys = keys.keys(std::collections::HashMap::from([(PK.to_owned(), s(session_pk(hash)))]));
            }
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, keys.build().map_err(AppError::internal)?)
                .send()
                .await
                .map_err(unavailable("read sessions"))?;
            if let Some(items) = output.responses().and_then(|responses| responses.get(&self.table)) {
                records.extend(items.iter().filter_map(SessionRecord::from_item));
            }
        }
        Ok(records)
    }

    /// Ends the given sessions of `username`: their items and their map entries, in one transaction.
    pub async fn end_sessions(&self, username: &str, hashes: &[String]) -> Result<(), AppError> {
        // A transaction holds at most 100 items; the map never holds more than a few.
        for chunk in hashes.chunks(50) {
            let mut transaction = self.client.transact_write_items();
            let mut names = Update::builder().table_name(&self.table).key(PK, s(user_pk(username)));
            let mut removals = Vec::new();
            for (index, hash) in chunk.iter().enumerate() {
                let delete = Delete::builder()
                    .table_name(&self.table)
                    .key(PK, s(session_pk(hash)))
                    .build()
                    .map_err(AppError::internal)?;
                transaction = transaction.transact_items(write(delete));
                names = names.expression_attribute_names(format!("#s{index}"), hash);
                removals.push(format!("sessions.#s{index}"));
            }
            let map_change = names
                .update_expression(format!("REMOVE {}", removals.join(", ")))
                .build()
                .map_err(AppError::internal)?;
            transaction.transact_items(write(map_change)).send().await.map_err(unavailable("end sessions"))?;
        }
        Ok(())
    }

    /// Ends every session of `username` (log out everywhere, password change or reset). Re-reads
    /// until the map is empty, so a login racing with it cannot survive.
    pub async fn end_all_sessions(&self, username: &str) -> Result<(), AppError> {
        for _ in 0..5 {
            let Some(user) = self.user(username).await? else { return Ok(()) };
            if user.sessions.is_empty() {
                return Ok(());
            }
            let hashes: Vec<String> = user.sessions.into_keys().collect();
            self.end_sessions(username, &hashes).await?;
        }
        Err(AppError::AccountBusy)
    }

    /// The user's live sessions, newest login first.
    pub async fn sessions_of(&self, username: &str, now: UnixMillis) -> Result<Vec<SessionRecord>, AppError> {
        let Some(user) = self.user(username).await? else { return Ok(Vec::new()) };
        let mut sessions = self.session_records(user.sessions.keys()).await?;
        sessions.retain(|session| session.expires_at > now);
        sessions.sort_by_key(|session| std::cmp::Reverse(session.created_at));
        Ok(sessions)
    }

    /// Records activity at most once a minute per session, so a busy page costs no extra writes.
    pub async fn touch_session(&self, session: &SessionRecord, now: UnixMillis) -> Result<(), AppError> {
        if now.0.saturating_sub(session.last_seen.0) < 60_000 {
            return Ok(());
        }
        let outcome = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(session_pk(&session.hash)))
            .update_expression("SET last_seen = :now")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", n(now.0))
            .send()
            .await;
        // A failed condition means the session ended meanwhile: nothing to record.
        unless_condition_failed(outcome, "touch session")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_neither_the_csrf_token_nor_the_id_hash() {
        let record = SessionRecord {
            hash: crate::crypto::sha256_hex(b"the session id"),
            user: "trader".into(),
            stage: Stage::Full,
            created_at: UnixMillis(1),
            last_seen: UnixMillis(2),
            ip: "203.0.113.9".into(),
            user_agent: "test".into(),
            csrf: CsrfToken::generate(),
            reauth_at: None,
            expires_at: UnixMillis(3_000),
        };
        let printed = format!("{record:?}");
        assert!(!printed.contains(record.csrf.expose()), "{printed}");
        assert!(!printed.contains(&record.hash), "{printed}");
        assert!(printed.contains("CsrfToken(..)") && printed.contains("trader"), "{printed}");
    }
}
