//! Cold start: configuration, AWS clients, then, for only the secrets the function uses
//! ([`Secrets`]), one Secrets Manager read and one KMS Decrypt; then nothing. Any failure refuses
//! to start, with a message naming what is wrong.

use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::app::aws::AwsClients;
use crate::broker::BrokerId;
use crate::broker::http::BrokerHttp;
use crate::broker::kite::Kite;
use crate::broker::links::{BrokerCiphers, BrokerLinks};
use crate::core::clock::{Clock, SystemClock};
use crate::core::config::{Config, ConfigError};
use crate::core::error::AppError;
use crate::core::metrics::{Metric, MetricSink, Metrics};
use crate::core::pending::{Deferred, Pending};
use crate::crypto::CryptoError;
use crate::crypto::keyring::{KeyRing, Purpose, PurposeMac};
use crate::crypto::password::Pepper;
use crate::crypto::password::{ArgonMemory, OWASP_FLOOR, PasswordHasher, PepperError};
use crate::http::traffic::TrafficQueue;
use crate::identity::SANDBOX_BROKER;
use crate::identity::accounts::Accounts;
use crate::identity::auth::{Authenticator, PendingRefunds, VerifiedKeyCache};
use crate::identity::mail::MailSettings;
use crate::identity::reset_mail::ResetMailer;
use crate::identity::webhooks::WebhookStore;
use crate::limits::limiter::RateLimiter;
use crate::store::app_secret::{self, LiveCipher, RingSource, SecretError};
use crate::store::bans::BanStore;
use crate::store::identity::IdentityStore;
use crate::store::rate_limit::RateLimitStore;
use crate::store::sandbox::SandboxStore;
use crate::store::trackers::TrackerStore;
use crate::store::traffic::TrafficStore;
use crate::threats::Threats;
use crate::trading::desk::Desk;
use crate::trading::live::LiveDesk;
use crate::trading::sandbox::service::Sandbox;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("secret `{id}`: {source}")]
    Pepper { id: String, source: PepperError },
    #[error("secret `{id}` is empty or missing ({detail}): {REMEDY}")]
    EmptySecret { id: String, detail: String },
    #[error("secret `{id}`: the pepper is missing: {REMEDY}")]
    NoPepper { id: String },
    #[error("secret `{id}` has no `keyring`: {REMEDY}")]
    NoKeyRing { id: String },
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
}

/// What to do about an app secret without its pepper or ring: they are made at deploy, once.
const REMEDY: &str = "the stack's KeyRing custom resource creates the pepper and the key ring at deploy. If that \
     deploy failed, the stack events give the custom resource's reason: fix it and run `sam deploy` again (it never \
     overwrites a pepper or a ring). A stack deployed before the custom resource existed gets them at its next `sam \
     deploy`, or run `kavach keyring init` (idempotent). Locally: `scripts/kavach provision`";

/// The secrets a function's code uses. Its cold start reads the app secret only for one of them,
/// opens the key ring (KMS) only for a purpose key, derives only the purpose keys named, and then
/// drops the ring: a function holds no key it does not use, and its role (template.yaml) grants no
/// read it does not make. What is withheld fails closed on use ([`crate::crypto::CryptoError::Withheld`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Secrets {
    /// Argon2's pepper: verifying API keys and passwords, hashing new ones.
    pub pepper: bool,
    /// The API-key copies' purpose key: issuing a key, showing it again.
    pub api_key_copies: bool,
    /// The TOTP secrets' purpose key: enrolling and checking codes.
    pub totp_secrets: bool,
    /// The SMTP password's purpose key: sending reset mail, configuring it.
    pub smtp_passwords: bool,
    /// The device cookies' HMAC key: trusting a browser that logged in before (the login budget).
    pub device_cookies: bool,
    /// Each broker's purpose key: its app credentials and access tokens (linking, live orders).
    pub broker_tokens: bool,
}

impl Secrets {
    /// The catch-all, the security dashboard: no secret at all.
    pub const NONE: Self = Self {
        pepper: false,
        api_key_copies: false,
        totp_secrets: false,
        smtp_passwords: false,
        device_cookies: false,
        broker_tokens: false,
    };
    /// `ping`: API keys are verified, nothing is decrypted.
    pub const PEPPER: Self = Self { pepper: true, ..Self::NONE };
    /// The `/api/v1` functions that trade or read an account: API keys are verified, and a live
    /// account's broker token is decrypted to call its broker.
    pub const TRADING: Self = Self { pepper: true, broker_tokens: true, ..Self::NONE };
    /// The strategy webhook: no key to verify (its path is the secret), a live account's broker token.
    pub const BROKER_TOKENS: Self = Self { broker_tokens: true, ..Self::NONE };
    /// The operator CLI and the local gateway (which narrows it per function with [`Deps::for_function`]).
    pub const ALL: Self = Self {
        pepper: true,
        api_key_copies: true,
        totp_secrets: true,
        smtp_passwords: true,
        device_cookies: true,
        broker_tokens: true,
    };

    fn any_purpose(self) -> bool {
        self.api_key_copies || self.totp_secrets || self.smtp_passwords || self.device_cookies || self.broker_tokens
    }

    fn any(self) -> bool {
        self.pepper || self.any_purpose()
    }
}

/// Everything a handler needs, built once per cold start and shared by reference. Only the
/// pipeline, this composition root and the functions name it: the services below take the parts
/// they use.
#[derive(Debug)]
pub struct Deps {
    pub config: Config,
    pub clock: Arc<dyn Clock>,
    pub aws: AwsClients,
    pub bans: BanStore,
    pub trackers: TrackerStore,
    pub metrics: Metrics,
    pub limits: RateLimiter,
    pub identity: IdentityStore,
    pub traffic: TrafficStore,
    pub sandbox: SandboxStore,
    pub webhooks: WebhookStore,
    pub passwords: Arc<PasswordHasher>,
    pub api_key_copies: Arc<LiveCipher>,
    pub totp_secrets: Arc<LiveCipher>,
    pub smtp_passwords: Arc<LiveCipher>,
    /// Signs and verifies device cookies (`identity::devices`). Derived at cold start: a cookie
    /// signed under a root newer than this container's is not trusted here (that browser meets
    /// the account's budget) until the next cold start.
    pub device_cookies: Arc<PurposeMac>,
    /// Each broker's app credentials and tokens (`broker::links`).
    pub broker_ciphers: Arc<BrokerCiphers>,
    /// Zerodha's Kite Connect, at `config.brokers.kite_api`: only for a function that holds the
    /// brokers' keys (nothing else could call a broker on a trader's behalf), so the others' cold
    /// starts build no HTTP client.
    pub kite: Option<Kite>,
    pub verified_keys: VerifiedKeyCache,
    pub pending_traffic: TrafficQueue,
    /// Other work a handler leaves for after the response, e.g. a reset-by-email request
    /// (`identity::reset_mail`).
    pub deferred: Pending<Deferred<Deps>>,
    /// Failure-budget slots of keys verified, given back after the response.
    pub pending_refunds: PendingRefunds,
}

impl Deps {
    /// This stack as one function sees it: the same clients, stores, clock and metrics, caches and
    /// a traffic queue of its own, and of the secrets only those `secrets` names, the rest withheld.
    /// The local gateway serves each template function with its own, so the suites over HTTP show
    /// that a function works with what its cold start gives it.
    pub fn for_function(&self, secrets: Secrets) -> Deps {
        let cipher = |held: bool, cipher: &Arc<LiveCipher>| {
            if held { cipher.clone() } else { Arc::new(LiveCipher::withheld()) }
        };
        Deps {
            config: self.config.clone(),
            clock: self.clock.clone(),
            aws: self.aws.clone(),
            bans: self.bans.clone(),
            trackers: self.trackers.clone(),
            metrics: self.metrics.clone(),
            limits: self.limits.clone(),
            identity: self.identity.clone(),
            traffic: self.traffic.clone(),
            sandbox: self.sandbox.clone(),
            webhooks: self.webhooks.clone(),
            passwords: if secrets.pepper { self.passwords.clone() } else { Arc::new(PasswordHasher::withheld()) },
            api_key_copies: cipher(secrets.api_key_copies, &self.api_key_copies),
            totp_secrets: cipher(secrets.totp_secrets, &self.totp_secrets),
            smtp_passwords: cipher(secrets.smtp_passwords, &self.smtp_passwords),
            device_cookies: if secrets.device_cookies {
                self.device_cookies.clone()
            } else {
                Arc::new(PurposeMac::withheld())
            },
            broker_ciphers: if secrets.broker_tokens {
                self.broker_ciphers.clone()
            } else {
                Arc::new(BrokerCiphers::withheld())
            },
            kite: if secrets.broker_tokens { self.kite.clone() } else { None },
            verified_keys: verified_key_cache(),
            pending_traffic: TrafficQueue::default(),
            deferred: Pending::default(),
            pending_refunds: PendingRefunds::default(),
        }
    }

    pub fn threats(&self) -> Threats<'_> {
        Threats {
            bans: &self.bans,
            trackers: &self.trackers,
            metrics: &self.metrics,
            never_ban: &self.config.never_ban,
            shared_senders: &self.config.shared_senders,
        }
    }

    /// Kite, for a function that holds the brokers' keys.
    pub fn kite(&self) -> Result<&Kite, AppError> {
        self.kite.as_ref().ok_or_else(|| AppError::internal(crate::crypto::CryptoError::Withheld("broker client")))
    }

    pub fn broker_links(&self) -> Result<BrokerLinks<'_>, AppError> {
        Ok(BrokerLinks {
            identity: &self.identity,
            ciphers: &self.broker_ciphers,
            kite: self.kite()?,
            kite_login: &self.config.brokers.kite_login,
            session_expiry: self.config.session_expiry,
            metrics: &self.metrics,
            clock: self.clock.as_ref(),
        })
    }

    /// `user`'s account at their linked broker when `broker` (where the account's orders go) is one,
    /// `None` when it is the sandbox (analyzer mode). The link is read on every call: a disconnect or
    /// the rollover stops live orders at the next request, as `broker_session_expired`.
    async fn live_desk(&self, user: &str, broker: &str) -> Result<Option<LiveDesk<'_>>, AppError> {
        if broker == SANDBOX_BROKER {
            return Ok(None);
        }
        let broker = BrokerId::parse(broker)
            .ok_or_else(|| AppError::internal(anyhow::anyhow!("the account trades on an unknown broker `{broker}`")))?;
        let links = self.broker_links()?;
        let session = links.live_session(user, broker).await?;
        Ok(Some(LiveDesk { broker: links.adapter(broker), session, caps: self.config.order_caps }))
    }

    /// Where `user`'s orders go, whose setting is `broker` ([`SANDBOX_BROKER`] or a linked
    /// broker's name): the key's copy for an API call, the account's for a webhook.
    pub async fn desk(&self, user: &str, broker: &str) -> Result<Desk<'_>, AppError> {
        Ok(match self.live_desk(user, broker).await? {
            Some(live) => Desk::Live(live),
            None => Desk::Sandbox { sandbox: self.sandbox(), user: user.to_owned() },
        })
    }

    pub fn accounts(&self) -> Accounts<'_> {
        Accounts {
            identity: &self.identity,
            webhooks: &self.webhooks,
            passwords: &self.passwords,
            api_key_copies: &self.api_key_copies,
            totp_secrets: &self.totp_secrets,
            clock: self.clock.as_ref(),
        }
    }

    pub fn authenticator(&self) -> Authenticator<'_> {
        Authenticator {
            verified_keys: &self.verified_keys,
            passwords: &self.passwords,
            limits: &self.limits,
            refunds: &self.pending_refunds,
        }
    }

    pub fn mail_settings(&self) -> MailSettings<'_> {
        MailSettings { identity: &self.identity, smtp_passwords: &self.smtp_passwords, clock: self.clock.as_ref() }
    }

    pub fn sandbox(&self) -> Sandbox<'_> {
        Sandbox::new(&self.sandbox, self.clock.as_ref(), self.config.order_caps)
    }

    pub fn reset_mailer(&self) -> ResetMailer<'_> {
        ResetMailer {
            identity: &self.identity,
            mail: self.mail_settings(),
            base_url: self.config.public_base_url.as_deref(),
        }
    }

    /// The work a request leaves for after its response: the traffic records, the failure-budget
    /// slots of keys verified, and what the handler deferred (a reset mail, whose lookup must not
    /// be timed by the asker), one piece after another.
    pub async fn after_response(&self) {
        let deferred = async {
            for work in self.deferred.take() {
                work.run(self).await;
            }
        };
        tokio::join!(
            self.flush_traffic(),
            deferred,
            crate::identity::auth::give_back(&self.pending_refunds, &self.limits)
        );
    }

    /// Writes every queued traffic record, concurrently. A failed write is logged and dropped:
    /// the request it describes has already been answered.
    pub async fn flush_traffic(&self) {
        let records = self.pending_traffic.take();
        let writes = records.iter().map(|record| self.traffic.put(record));
        for result in futures::future::join_all(writes).await {
            if let Err(error) = result {
                tracing::warn!(error = %error, "traffic record not written");
            }
        }
    }
}

/// The entry point of a Lambda function: environment, system clock, the role's credentials from
/// Lambda's environment ([`AwsClients::for_lambda`]), and only the `secrets` its code uses.
pub async fn init_for(secrets: Secrets) -> Result<Arc<Deps>, BootError> {
    let config = Config::from_env()?;
    init_with_secrets(config, Arc::new(SystemClock), AwsClients::for_lambda(), MetricSink::Stdout, secrets).await
}

/// The operator CLI's and the local gateway's entry point: the SDK's default credential chain, and
/// every secret.
pub async fn init() -> Result<Arc<Deps>, BootError> {
    let config = Config::from_env()?;
    init_with_secrets(config, Arc::new(SystemClock), AwsClients::from_env().await, MetricSink::Stdout, Secrets::ALL)
        .await
}

/// Builds [`Deps`] with every secret from explicit parts: tests inject the clock and read the
/// metrics, and the gateway shares one set of clients.
pub async fn init_with(
    config: Config,
    clock: Arc<dyn Clock>,
    aws: AwsClients,
    sink: MetricSink,
) -> Result<Arc<Deps>, BootError> {
    init_with_secrets(config, clock, aws, sink, Secrets::ALL).await
}

/// [`init_with`] for one function's `secrets`: what its cold start reads and derives.
pub async fn init_with_secrets(
    config: Config,
    clock: Arc<dyn Clock>,
    aws: AwsClients,
    sink: MetricSink,
    secrets: Secrets,
) -> Result<Arc<Deps>, BootError> {
    let metrics = Metrics::new(config.stack_name.clone(), sink);
    // Argon2's working memory is mapped on the blocking pool while the secret, the ring and the
    // first request's items are read; not awaited, so the function is ready no later for it. A
    // verification that starts before it is mapped waits for it (`ArgonMemory`).
    let argon_memory = Arc::new(ArgonMemory::default());
    if secrets.pepper {
        let memory = argon_memory.clone();
        drop(tokio::task::spawn_blocking(move || memory.prefault(OWASP_FLOOR)));
    }
    let keys = open_keys(&config, &aws, secrets).await;
    if let Err(error) = &keys {
        // The function will not start; the alarm on this metric is how the operator hears of it,
        // and the log line (the error names the remedy) is what the alarm leads them to. A missing
        // pepper or ring counts as much as an unreachable key service: either way nothing serves.
        metrics.count(Metric::KeyServiceFailures, clock.now());
        tracing::error!(error = %error, "cold start refused: the app secret's keys are unavailable");
    }
    let (pepper, key_ring) = keys?;
    // Each purpose key is kept current with the secret (a rotation reaches warm containers), and
    // derives again from a reloaded ring rather than keeping its roots.
    let source = RingSource { secrets: aws.secrets.clone(), kms: aws.kms.clone(), config: config.clone() };
    let cipher = |held: bool, purpose: Purpose| -> Result<Arc<LiveCipher>, BootError> {
        match (&key_ring, held) {
            (Some((ring, sealed)), true) => {
                Ok(Arc::new(LiveCipher::new(purpose, ring, sealed.clone(), source.clone())?))
            }
            _ => Ok(Arc::new(LiveCipher::withheld())),
        }
    };
    let api_key_copies = cipher(secrets.api_key_copies, Purpose::ApiKeyCopy)?;
    let totp_secrets = cipher(secrets.totp_secrets, Purpose::TotpSecret)?;
    let smtp_passwords = cipher(secrets.smtp_passwords, Purpose::SmtpPassword)?;
    let device_cookies = Arc::new(match (&key_ring, secrets.device_cookies) {
        (Some((ring, _)), true) => ring.mac(&Purpose::DeviceCookie)?,
        _ => PurposeMac::withheld(),
    });
    let broker_ciphers = Arc::new(match (&key_ring, secrets.broker_tokens) {
        (Some((ring, sealed)), true) => BrokerCiphers::new(ring, sealed, &source)?,
        _ => BrokerCiphers::withheld(),
    });
    // The root keys are dropped here: only the derived keys above outlive the cold start.
    drop(key_ring);
    let passwords = Arc::new(match pepper {
        Some(pepper) => PasswordHasher::with_memory(pepper, OWASP_FLOOR, argon_memory)?,
        None => PasswordHasher::withheld(),
    });

    let tables = config.tables.clone();
    Ok(Arc::new(Deps {
        bans: BanStore::new(aws.dynamodb.clone(), tables.security.clone()),
        trackers: TrackerStore::new(aws.dynamodb.clone(), tables.security.clone()),
        limits: RateLimiter::new(RateLimitStore::new(aws.dynamodb.clone(), tables.rate_limits), |action| {
            config.rate_limit(action)
        }),
        webhooks: WebhookStore::new(aws.dynamodb.clone(), tables.identity.clone()),
        identity: IdentityStore::new(aws.dynamodb.clone(), tables.identity),
        traffic: TrafficStore::new(aws.dynamodb.clone(), tables.traffic, config.traffic_retention_days),
        sandbox: SandboxStore::new(aws.dynamodb.clone(), tables.sandbox),
        pending_traffic: TrafficQueue::default(),
        verified_keys: verified_key_cache(),
        deferred: Pending::default(),
        pending_refunds: PendingRefunds::default(),
        passwords,
        api_key_copies,
        totp_secrets,
        smtp_passwords,
        device_cookies,
        broker_ciphers,
        kite: if secrets.broker_tokens { Some(Kite::new(BrokerHttp::new(), &config.brokers.kite_api)) } else { None },
        metrics,
        config,
        clock,
        aws,
    }))
}

fn verified_key_cache() -> VerifiedKeyCache {
    VerifiedKeyCache::new(1024, crate::crypto::password::concurrent_hashes())
}

/// The pepper and the key ring, each only if `secrets` asks for it: one Secrets Manager read if
/// any, one KMS Decrypt if a purpose key is wanted, none for a function that uses no secret.
async fn open_keys(
    config: &Config,
    aws: &AwsClients,
    secrets: Secrets,
) -> Result<(Option<Pepper>, Option<(KeyRing, String)>), BootError> {
    if !secrets.any() {
        return Ok((None, None));
    }
    let secret = app_secret::load(&aws.secrets, &config.secret_id).await.map_err(|error| match error {
        SecretError::NotFound { id, detail } => BootError::EmptySecret { id, detail },
        error => BootError::Secret(error),
    })?;
    let pepper = if secrets.pepper {
        let bytes = secret.pepper.as_ref().map(|pepper| pepper.expose_secret().as_bytes().to_vec()).unwrap_or_default();
        Some(Pepper::new(bytes).map_err(|source| match source {
            PepperError::Missing => BootError::NoPepper { id: config.secret_id.clone() },
            source => BootError::Pepper { id: config.secret_id.clone(), source },
        })?)
    } else {
        None
    };
    let key_ring = if secrets.any_purpose() {
        let sealed = secret.sealed_ring.ok_or_else(|| BootError::NoKeyRing { id: config.secret_id.clone() })?;
        let ring = app_secret::open_ring(&aws.kms, config, &sealed).await?;
        Some((ring, sealed))
    } else {
        None
    };
    Ok((pepper, key_ring))
}
