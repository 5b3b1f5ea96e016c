//! The one security gate in front of every entry point: API routes, pages, the catch-all and the
//! webhook (and the streaming service). Each entry point says what to check with a constructor
//! ([`Gate::api`], [`Gate::page`], [`Gate::catch_all`], [`Gate::webhook`]); the gate fetches the
//! ban record, the credential record and the rate-limit counters concurrently, in one round trip,
//! and [`Fetched::enforce`] applies the verdicts in one fixed order:
//!
//! 1. a store failure: 503, unless the route only reads and `STORE_OUTAGE_READS=serve`, in which
//!    case the failed ban and budget checks are skipped (and counted as `StoreUnavailable`);
//! 2. a ban in force: 403. A manual ban refuses everything. A detector's ban refuses every request
//!    whose credential has no record (no key, an unknown key id or webhook id, no live full
//!    session); one whose record exists goes on, and [`Admitted::under_ban`] tells the entry point
//!    to answer 403 `banned` rather than its usual refusal if the credential then fails to verify;
//! 3. a spent budget: 429 ([`within_budgets`]);
//! 4. then the entry point's own checks on the credential record it gets back.
//!
//! Budgets that count an address's *failures* (read, not spent, beside a credential's own budget)
//! are not read for a shared sender ([`crate::threats::Threats::is_shared_sender`]): its failures
//! may be any stranger's, so they must never refuse the trader's valid key or webhook.
//!
//! A request the ban refuses leaves no rate-limit counter behind: its hits were counted
//! concurrently with the ban read (so an admitted request pays one round trip, not two), and when
//! the ban refuses it they are taken back before the 403
//! ([`crate::limits::limiter::RateLimiter::take_back`]). Only the refused path pays for that.
//! Reading the ban first would cost every admitted request a second sequential round trip, over the
//! hot-path budget; a transaction joining the ban check to the counter write returns no count and
//! conflicts under a busy key's concurrent requests. A request a detector's ban lets through (its
//! credential's record exists) is counted like any other, and stays counted if it then fails.

use std::net::IpAddr;

use crate::app::bootstrap::Deps;
use crate::core::clock::UnixMillis;
use crate::core::config::StoreOutage;
use crate::core::error::AppError;
use crate::core::metrics::{Metric, Metrics};
use crate::crypto::api_key::ApiKey;
use crate::identity::sessions::SessionId;
use crate::identity::webhooks::Webhook;
use crate::limits::LimitedAction;
use crate::limits::limiter::{Verdict, within_budgets};
use crate::limits::subject::Subject;
use crate::pipeline::route::Route;
use crate::store::BatchFailure;
use crate::store::bans::{Ban, BanStore};
use crate::store::identity::ApiKeyRecord;
use crate::store::sessions::{SessionRecord, Stage};

/// The credential whose record the gate fetches beside the ban.
#[derive(Clone, Copy, Debug)]
enum Credential<'a> {
    None,
    ApiKey(&'a ApiKey),
    Session(&'a SessionId),
    /// The presented id's hash, `None` when the id is malformed (it can name no webhook).
    Webhook(Option<&'a str>),
}

/// The record behind the presented credential, as the store has it (`None`: no such record).
#[derive(Debug)]
pub enum CredentialRecord {
    None,
    ApiKey(Option<ApiKeyRecord>),
    Session(Option<SessionRecord>),
    Webhook(Option<Webhook>),
}

impl CredentialRecord {
    /// Whether the credential could still turn out valid: its record exists (and a session is a
    /// full one). Only the API key still has a secret to verify after this.
    fn may_be_valid(&self) -> bool {
        match self {
            CredentialRecord::None => false,
            CredentialRecord::ApiKey(record) => record.is_some(),
            CredentialRecord::Session(session) => session.as_ref().is_some_and(|session| session.stage == Stage::Full),
            CredentialRecord::Webhook(webhook) => {
                webhook.as_ref().is_some_and(|webhook| webhook.suspended_at.is_none())
            }
        }
    }
}

/// How a budget is touched: counted, or only read (a credentialed request reads its address's
/// budget of failures without spending it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Charge {
    Hit,
    /// The address's failures, read beside a credential's own budget; never read for a shared
    /// sender.
    PeekFailures,
}

#[derive(Debug)]
pub struct Gate<'a> {
    ip: IpAddr,
    credential: Credential<'a>,
    budgets: Vec<(LimitedAction, Subject<'a>, Charge)>,
    /// The route only reads: under `STORE_OUTAGE_READS=serve` it may go on without its ban and
    /// budget checks when the security table cannot be reached.
    reads_only: bool,
    route: &'static str,
}

impl<'a> Gate<'a> {
    /// An `/api/v1` route. A request is charged to exactly one counter, so admission under
    /// contention is exact:
    /// - with a well-formed key, to the key's counter, while the IP's counter is only read: an IP
    ///   already over its budget of failures is refused;
    /// - without one, to the IP's counter.
    ///
    /// A key that then fails to verify is charged to the IP as well ([`charge_failure`]), so
    /// spraying made-up keys from one address is throttled per IP.
    pub fn api(ip: IpAddr, route: Route, key: Option<&'a ApiKey>) -> Self {
        let action = route.action;
        let (credential, budgets) = match key {
            Some(key) => (
                Credential::ApiKey(key),
                vec![(action, Subject::Ip(ip), Charge::PeekFailures), (action, Subject::ApiKey(key), Charge::Hit)],
            ),
            None => (Credential::None, vec![(action, Subject::Ip(ip), Charge::Hit)]),
        };
        Self { ip, credential, budgets, reads_only: route.reads_only, route: route.name }
    }

    /// A page or form: the address's page budget, and the session the cookie names.
    pub fn page(ip: IpAddr, route: &'static str, session: Option<&'a SessionId>) -> Self {
        Self {
            ip,
            credential: session.map_or(Credential::None, Credential::Session),
            budgets: vec![(LimitedAction::Page, Subject::Ip(ip), Charge::Hit)],
            reads_only: false,
            route,
        }
    }

    /// The catch-all, and the session or API key presented, whose holder's misses are not counted
    /// (a session wins: it costs no Argon2). Its misses feed the 404 detector instead of a budget,
    /// unless the detector will not count them (`metered`): then the address's page budget.
    pub fn catch_all(ip: IpAddr, session: Option<&'a SessionId>, key: Option<&'a ApiKey>, metered: bool) -> Self {
        let credential = match (session, key) {
            (Some(session), _) => Credential::Session(session),
            (None, Some(key)) => Credential::ApiKey(key),
            (None, None) => Credential::None,
        };
        let budgets = if metered { vec![(LimitedAction::Page, Subject::Ip(ip), Charge::Hit)] } else { Vec::new() };
        Self { ip, credential, budgets, reads_only: false, route: "not-found" }
    }

    /// A strategy webhook, charged like an API key: a well-formed id (`id_hash`, from
    /// [`crate::identity::webhooks::presented_hash`]) to its own budget, so strangers' made-up ids
    /// cannot starve the trader's alerts, with the address's failures read as a backstop; a
    /// malformed id to the address. An unknown well-formed id is charged to the address by the
    /// entry point ([`charge_failure`]).
    pub fn webhook(ip: IpAddr, route: Route, id_hash: Option<&'a str>) -> Self {
        let action = route.action;
        let budgets = match id_hash {
            Some(hash) => {
                vec![(action, Subject::Ip(ip), Charge::PeekFailures), (action, Subject::Webhook(hash), Charge::Hit)]
            }
            None => vec![(action, Subject::Ip(ip), Charge::Hit)],
        };
        Self { ip, credential: Credential::Webhook(id_hash), budgets, reads_only: route.reads_only, route: route.name }
    }

    /// Fetches everything at once and enforces it: the whole gate for one request.
    pub async fn pass(self, deps: &Deps) -> Result<Admitted, AppError> {
        self.fetch(deps).await.enforce(&deps.metrics)
    }

    /// One round trip: the ban, the credential record and every budget, concurrently (an API
    /// key's reads batched, `fetch_batched`).
    pub async fn fetch(self, deps: &Deps) -> Fetched {
        let now = deps.clock.now();
        let shared_sender = deps.threats().is_shared_sender(self.ip);
        // The budgets touched, in the order of their verdicts.
        let touched: Vec<_> = self
            .budgets
            .iter()
            .copied()
            .filter(|&(_, _, charge)| !(shared_sender && charge == Charge::PeekFailures))
            .collect();
        let (ban, verdicts, record) = match self.credential {
            Credential::ApiKey(key) => self.fetch_batched(deps, key, &touched, now).await,
            _ => self.fetch_each(deps, &touched, now).await,
        };
        if let (Ok(Some(ban)), Ok(record)) = (&ban, &record)
            && ban_refuses(ban, record)
        {
            self.take_back_hits(deps, &touched, &verdicts, now).await;
        }
        let serve_reads = self.reads_only && deps.config.store_outage == StoreOutage::ServeReads;
        Fetched { now, route: self.route, serve_reads, ban, verdicts, record }
    }
}

/// The three results of the gate's round trip: the ban, the budgets' verdicts (in the order of
/// the budgets touched) and the credential record.
type Reads = (Result<Option<Ban>, AppError>, Vec<Result<Verdict, AppError>>, Result<CredentialRecord, AppError>);

impl Gate<'_> {
    /// Each read and each counter as a call of its own, all at once.
    async fn fetch_each(
        &self,
        deps: &Deps,
        touched: &[(LimitedAction, Subject<'_>, Charge)],
        now: UnixMillis,
    ) -> Reads {
        let ban = deps.bans.active(self.ip, now);
        let budgets = futures::future::join_all(touched.iter().map(|&(action, subject, charge)| match charge {
            Charge::Hit => futures::future::Either::Left(deps.limits.hit(action, subject, now)),
            Charge::PeekFailures => futures::future::Either::Right(deps.limits.peek(action, subject, now)),
        }));
        let record = async {
            match self.credential {
                Credential::None => Ok(CredentialRecord::None),
                Credential::ApiKey(key) => deps.identity.api_key(key.id()).await.map(CredentialRecord::ApiKey),
                Credential::Session(id) => live_session(deps, id, now).await.map(CredentialRecord::Session),
                Credential::Webhook(None) => Ok(CredentialRecord::Webhook(None)),
                Credential::Webhook(Some(hash)) => deps.webhooks.find(hash).await.map(CredentialRecord::Webhook),
            }
        };
        tokio::join!(ban, budgets, record)
    }

    /// An API key's gate, the hot path of every `/api/v1` request: the ban, the address's failures
    /// and the key's record in one `BatchGetItem`, beside the key's counter (an `UpdateItem`, which no
    /// batch can carry). Two calls where [`Gate::fetch_each`] makes four, in the same one round trip.
    ///
    /// When DynamoDB answers the batch with an error, which may concern one table only (the
    /// security table missing or denied), the reads are made again one by one, so that each fails or
    /// succeeds on its own, exactly as [`Gate::fetch_each`]'s would, and `STORE_OUTAGE_READS` judges
    /// them the same way. Only that failure pays the second round trip. When DynamoDB cannot be
    /// reached, every read has failed.
    async fn fetch_batched(
        &self,
        deps: &Deps,
        key: &ApiKey,
        touched: &[(LimitedAction, Subject<'_>, Charge)],
        now: UnixMillis,
    ) -> Reads {
        let peeks: Vec<_> = touched.iter().filter(|(_, _, charge)| *charge == Charge::PeekFailures).collect();
        let mut reads = vec![deps.bans.read_of(self.ip)];
        reads.extend(peeks.iter().map(|&&(action, subject, _)| deps.limits.peek_read(action, subject, now)));
        reads.push(deps.identity.api_key_read(key.id()));
        let hits = futures::future::join_all(
            touched
                .iter()
                .filter(|(_, _, charge)| *charge == Charge::Hit)
                .map(|&(action, subject, _)| deps.limits.hit(action, subject, now)),
        );
        let (batch, hits) =
            tokio::join!(crate::store::get_all(deps.bans.client(), &reads, "read the gate's records"), hits);
        let (ban, mut peeked, record) = match batch {
            Ok(items) => {
                let ban = Ok(BanStore::in_force(self.ip, items[0].as_ref(), now));
                let peeked: Vec<_> = peeks
                    .iter()
                    .zip(&items[1..])
                    .map(|(&&(action, _, _), item)| Ok(deps.limits.peek_verdict(action, now, item.as_ref())))
                    .collect();
                let record = items.last().and_then(Option::as_ref).and_then(ApiKeyRecord::from_item);
                (ban, peeked, Ok(CredentialRecord::ApiKey(record)))
            }
            Err(BatchFailure::Answered(error)) => {
                tracing::warn!(error = %format!("{error:#}"), route = self.route, "the gate's batch read failed; reading one by one");
                let ban = deps.bans.active(self.ip, now);
                let peeked = futures::future::join_all(
                    peeks.iter().map(|&&(action, subject, _)| deps.limits.peek(action, subject, now)),
                );
                let record = async { deps.identity.api_key(key.id()).await.map(CredentialRecord::ApiKey) };
                tokio::join!(ban, peeked, record)
            }
            Err(BatchFailure::Unreachable(error)) => {
                let message = format!("{error:#}");
                let failed = || AppError::Unavailable(anyhow::anyhow!("{message}"));
                (Err(failed()), peeks.iter().map(|_| Err(failed())).collect(), Err(failed()))
            }
        };
        // The verdicts in the order of the budgets touched.
        let (mut hits, mut peeked) = (hits.into_iter(), peeked.drain(..));
        let verdicts = touched
            .iter()
            .filter_map(|(_, _, charge)| match charge {
                Charge::Hit => hits.next(),
                Charge::PeekFailures => peeked.next(),
            })
            .collect();
        (ban, verdicts, record)
    }

    /// Takes back every hit this request counted: it is banned, so it leaves no counter item. A
    /// failure is only logged: the request is refused either way, and TTL removes the counter.
    async fn take_back_hits(
        &self,
        deps: &Deps,
        touched: &[(LimitedAction, Subject<'_>, Charge)],
        verdicts: &[Result<Verdict, AppError>],
        now: UnixMillis,
    ) {
        let counted =
            touched.iter().zip(verdicts).filter(|((_, _, charge), verdict)| *charge == Charge::Hit && verdict.is_ok());
        let take_backs = counted.map(|(&(action, subject, _), _)| deps.limits.take_back(action, subject, now));
        for result in futures::future::join_all(take_backs).await {
            if let Err(error) = result {
                tracing::warn!(error = %error, route = self.route, "a banned request's hit was not taken back");
            }
        }
    }
}

/// The session `id` names, if it exists and has not passed the daily boundary.
async fn live_session(deps: &Deps, id: &SessionId, now: UnixMillis) -> Result<Option<SessionRecord>, AppError> {
    let session = deps.identity.session(&id.hash(), now).await?;
    Ok(session.filter(|session| !deps.config.session_expiry.has_expired(session.created_at, now)))
}

/// Whether `ban` refuses a request whose credential has `record`: a manual ban refuses everything,
/// a detector's ban every request without a credential that may still be valid.
fn ban_refuses(ban: &Ban, record: &CredentialRecord) -> bool {
    ban.refuses_credentials() || !record.may_be_valid()
}

/// What the gate's round trip returned, before any verdict.
#[derive(Debug)]
pub struct Fetched {
    now: UnixMillis,
    route: &'static str,
    serve_reads: bool,
    ban: Result<Option<Ban>, AppError>,
    verdicts: Vec<Result<Verdict, AppError>>,
    record: Result<CredentialRecord, AppError>,
}

impl Fetched {
    /// The verdicts, in the one order every entry point shares (see the module's documentation).
    pub fn enforce(self, metrics: &Metrics) -> Result<Admitted, AppError> {
        let mut served_unchecked = false;
        let mut unless_serving = |result: Result<(), AppError>| match result {
            Err(AppError::Unavailable(error)) if self.serve_reads => {
                tracing::warn!(error = %format!("{error:#}"), route = self.route, "security table unavailable; serving a read unchecked");
                served_unchecked = true;
                Ok(())
            }
            other => other,
        };
        let ban = match self.ban {
            Ok(ban) => ban,
            Err(error) => unless_serving(Err(error)).map(|()| None)?,
        };
        let mut verdicts = Vec::with_capacity(self.verdicts.len());
        for verdict in self.verdicts {
            match verdict {
                Ok(verdict) => verdicts.push(verdict),
                Err(error) => unless_serving(Err(error))?,
            }
        }
        // The credential record is needed to answer at all, outage or not.
        let record = self.record?;
        if served_unchecked {
            metrics.count(Metric::StoreUnavailable, self.now);
        }
        let under_ban = match ban {
            Some(ban) if ban_refuses(&ban, &record) => return Err(AppError::Banned),
            Some(_) => true,
            None => false,
        };
        within_budgets(&verdicts, self.now)?;
        Ok(Admitted { now: self.now, record, under_ban })
    }
}

/// A request the gate let through, with the credential record it fetched.
#[derive(Debug)]
pub struct Admitted {
    pub now: UnixMillis,
    pub record: CredentialRecord,
    /// A detector's ban is in force on the address; the request got this far only because its
    /// credential's record exists.
    pub under_ban: bool,
}

impl Admitted {
    /// What to answer when the credential then fails: `banned` under a ban (the address learns
    /// nothing from a ban that a valid credential would have passed), `refusal` otherwise.
    pub fn refuse(under_ban: bool, refusal: AppError) -> AppError {
        if under_ban { AppError::Banned } else { refusal }
    }

    /// The API-key record, when the gate was built for a key.
    pub fn api_key(self) -> Option<ApiKeyRecord> {
        match self.record {
            CredentialRecord::ApiKey(record) => record,
            _ => None,
        }
    }

    /// The live session, when the gate was built for a cookie.
    pub fn session(self) -> Option<SessionRecord> {
        match self.record {
            CredentialRecord::Session(record) => record,
            _ => None,
        }
    }

    /// The webhook, when the gate was built for a webhook id.
    pub fn webhook(self) -> Option<Webhook> {
        match self.record {
            CredentialRecord::Webhook(record) => record,
            _ => None,
        }
    }
}

/// Charges a failed credential to the client's IP. Only the failing path pays this extra write.
pub async fn charge_failure(deps: &Deps, ip: IpAddr, action: LimitedAction, now: UnixMillis) -> Result<(), AppError> {
    deps.limits.hit(action, Subject::Ip(ip), now).await.map(|_| ())
}
