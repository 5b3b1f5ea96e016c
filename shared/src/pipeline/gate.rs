//! The one security gate in front of every entry point: API routes, pages, the catch-all and the
//! webhook (and the streaming service). Each entry point says what to check with a constructor
//! ([`Gate::api`], [`Gate::page`], [`Gate::catch_all`], [`Gate::webhook`]); the gate fetches the
//! ban record, the credential record and the rate-limit counters concurrently, in one round trip,
//! and [`Fetched::enforce`] applies the verdicts in one fixed order:
//!
//! 1. a store failure: 503, unless the route only reads and `STORE_OUTAGE_READS=serve`, in which
//!    case the failed ban and budget checks are skipped (and counted as `StoreUnavailable`);
//! 2. a ban in force: 403, before anything about the request is considered;
//! 3. a spent budget: 429 ([`within_budgets`]);
//! 4. then the entry point's own checks on the credential record it gets back.

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
use crate::store::bans::Ban;
use crate::store::identity::ApiKeyRecord;
use crate::store::sessions::SessionRecord;

/// The credential whose record the gate fetches beside the ban.
#[derive(Clone, Copy, Debug)]
enum Credential<'a> {
    None,
    ApiKey(&'a ApiKey),
    Session(&'a SessionId),
    Webhook(&'a str),
}

/// The record behind the presented credential, as the store has it (`None`: no such record).
#[derive(Debug)]
pub enum CredentialRecord {
    None,
    ApiKey(Option<ApiKeyRecord>),
    Session(Option<SessionRecord>),
    Webhook(Option<Webhook>),
}

/// How a budget is touched: counted, or only read (a keyed API request reads its address's
/// budget of failures without spending it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Charge {
    Hit,
    Peek,
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
                vec![(action, Subject::Ip(ip), Charge::Peek), (action, Subject::ApiKey(key), Charge::Hit)],
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

    /// The catch-all: no budget (its misses feed the 404 detector instead), and the session or API
    /// key presented, whose holder's misses are not counted. A session wins: it costs no Argon2.
    pub fn catch_all(ip: IpAddr, session: Option<&'a SessionId>, key: Option<&'a ApiKey>) -> Self {
        let credential = match (session, key) {
            (Some(session), _) => Credential::Session(session),
            (None, Some(key)) => Credential::ApiKey(key),
            (None, None) => Credential::None,
        };
        Self { ip, credential, budgets: Vec::new(), reads_only: false, route: "not-found" }
    }

    /// A strategy webhook: the address's webhook budget, and the webhook the id in the path names.
    pub fn webhook(ip: IpAddr, route: Route, presented_id: &'a str) -> Self {
        Self {
            ip,
            credential: Credential::Webhook(presented_id),
            budgets: vec![(route.action, Subject::Ip(ip), Charge::Hit)],
            reads_only: route.reads_only,
            route: route.name,
        }
    }

    /// Fetches everything at once and enforces it: the whole gate for one request.
    pub async fn pass(self, deps: &Deps) -> Result<Admitted, AppError> {
        self.fetch(deps).await.enforce(&deps.metrics)
    }

    /// One round trip: the ban, the credential record and every budget, concurrently.
    pub async fn fetch(self, deps: &Deps) -> Fetched {
        let now = deps.clock.now();
        let ban = deps.bans.active(self.ip, now);
        let budgets = futures::future::join_all(self.budgets.iter().map(|&(action, subject, charge)| match charge {
            Charge::Hit => futures::future::Either::Left(deps.limits.hit(action, subject, now)),
            Charge::Peek => futures::future::Either::Right(deps.limits.peek(action, subject, now)),
        }));
        let record = async {
            match self.credential {
                Credential::None => Ok(CredentialRecord::None),
                Credential::ApiKey(key) => deps.identity.api_key(key.id()).await.map(CredentialRecord::ApiKey),
                Credential::Session(id) => live_session(deps, id, now).await.map(CredentialRecord::Session),
                Credential::Webhook(id) => deps.webhooks.find(id).await.map(CredentialRecord::Webhook),
            }
        };
        let (ban, verdicts, record) = tokio::join!(ban, budgets, record);
        let serve_reads = self.reads_only && deps.config.store_outage == StoreOutage::ServeReads;
        Fetched { now, route: self.route, serve_reads, ban, verdicts, record }
    }
}

/// The session `id` names, if it exists and has not passed the daily boundary.
async fn live_session(deps: &Deps, id: &SessionId, now: UnixMillis) -> Result<Option<SessionRecord>, AppError> {
    let session = deps.identity.session(&id.hash(), now).await?;
    Ok(session.filter(|session| !deps.config.session_expiry.has_expired(session.created_at, now)))
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
        if ban.is_some() {
            return Err(AppError::Banned);
        }
        within_budgets(&verdicts, self.now)?;
        Ok(Admitted { now: self.now, record })
    }
}

/// A request the gate let through, with the credential record it fetched.
#[derive(Debug)]
pub struct Admitted {
    pub now: UnixMillis,
    pub record: CredentialRecord,
}

impl Admitted {
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
