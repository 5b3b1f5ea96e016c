//! Cold start: configuration, AWS clients, one Secrets Manager read, one KMS Decrypt, then nothing.
//! Any failure refuses to start, with a message naming what is wrong.

use std::sync::Arc;

use secrecy::ExposeSecret;

use crate::app::aws::AwsClients;
use crate::core::clock::{Clock, SystemClock};
use crate::core::config::{Config, ConfigError};
use crate::core::metrics::{Metric, MetricSink, Metrics};
use crate::crypto::CryptoError;
use crate::crypto::keyring::{KeyRing, Purpose, PurposeCipher};
use crate::crypto::password::{OWASP_FLOOR, PasswordHasher, Pepper, PepperError};
use crate::http::traffic::TrafficQueue;
use crate::identity::accounts::Accounts;
use crate::identity::auth::{Authenticator, VerifiedKeyCache};
use crate::identity::mail::MailSettings;
use crate::identity::webhooks::WebhookStore;
use crate::limits::limiter::RateLimiter;
use crate::store::app_secret::{self, SecretError};
use crate::store::bans::BanStore;
use crate::store::identity::IdentityStore;
use crate::store::rate_limit::RateLimitStore;
use crate::store::sandbox::SandboxStore;
use crate::store::trackers::TrackerStore;
use crate::store::traffic::TrafficStore;
use crate::threats::Threats;
use crate::trading::sandbox::service::Sandbox;

#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("secret `{id}`: {source}")]
    Pepper { id: String, source: PepperError },
    #[error(
        "secret `{id}` has no `keyring`: run `scripts/kavach provision` (or the deploy's post-deploy step) to create it"
    )]
    NoKeyRing { id: String },
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
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
    pub key_ring: KeyRing,
    pub api_key_copies: PurposeCipher,
    pub totp_secrets: PurposeCipher,
    pub smtp_passwords: PurposeCipher,
    pub verified_keys: VerifiedKeyCache,
    pub pending_traffic: TrafficQueue,
}

impl Deps {
    pub fn threats(&self) -> Threats<'_> {
        Threats {
            bans: &self.bans,
            trackers: &self.trackers,
            metrics: &self.metrics,
            never_ban: &self.config.never_ban,
            shared_senders: &self.config.shared_senders,
        }
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
            identity: &self.identity,
            limits: &self.limits,
        }
    }

    pub fn mail_settings(&self) -> MailSettings<'_> {
        MailSettings { identity: &self.identity, smtp_passwords: &self.smtp_passwords, clock: self.clock.as_ref() }
    }

    pub fn sandbox(&self) -> Sandbox<'_> {
        Sandbox::new(&self.sandbox, self.clock.as_ref(), self.config.order_caps)
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

/// The production entry point: environment, system clock, SDK default credentials.
pub async fn init() -> Result<Arc<Deps>, BootError> {
    let config = Config::from_env()?;
    let aws = AwsClients::from_env().await;
    init_with(config, Arc::new(SystemClock), aws, MetricSink::Stdout).await
}

/// Builds [`Deps`] from explicit parts: tests inject the clock and read the metrics, and the gateway
/// shares one set of clients.
pub async fn init_with(
    config: Config,
    clock: Arc<dyn Clock>,
    aws: AwsClients,
    sink: MetricSink,
) -> Result<Arc<Deps>, BootError> {
    let metrics = Metrics::new(config.stack_name.clone(), sink);
    let keys = open_keys(&config, &aws).await;
    if let Err(BootError::Secret(_) | BootError::Crypto(_)) = &keys {
        // The function will not start; the alarm on this metric is how the operator hears of it.
        metrics.count(Metric::KeyServiceFailures, clock.now());
    }
    let (pepper, key_ring) = keys?;
    let api_key_copies = key_ring.cipher(&Purpose::ApiKeyCopy)?;
    let totp_secrets = key_ring.cipher(&Purpose::TotpSecret)?;
    let smtp_passwords = key_ring.cipher(&Purpose::SmtpPassword)?;
    let passwords = Arc::new(PasswordHasher::new(pepper, OWASP_FLOOR)?);

    let tables = config.tables.clone();
    Ok(Arc::new(Deps {
        bans: BanStore::new(aws.dynamodb.clone(), tables.security.clone()),
        trackers: TrackerStore::new(aws.dynamodb.clone(), tables.security.clone()),
        limits: RateLimiter::new(RateLimitStore::new(aws.dynamodb.clone(), tables.security), |action| {
            config.rate_limit(action)
        }),
        webhooks: WebhookStore::new(aws.dynamodb.clone(), tables.identity.clone()),
        identity: IdentityStore::new(aws.dynamodb.clone(), tables.identity),
        traffic: TrafficStore::new(aws.dynamodb.clone(), tables.traffic, config.traffic_retention_days),
        sandbox: SandboxStore::new(aws.dynamodb.clone(), tables.sandbox),
        pending_traffic: TrafficQueue::default(),
        verified_keys: VerifiedKeyCache::new(1024, std::thread::available_parallelism().map_or(2, |n| n.get())),
        passwords,
        key_ring,
        api_key_copies,
        totp_secrets,
        smtp_passwords,
        metrics,
        config,
        clock,
        aws,
    }))
}

/// The pepper and the key ring: one Secrets Manager read and one KMS Decrypt.
async fn open_keys(config: &Config, aws: &AwsClients) -> Result<(Pepper, KeyRing), BootError> {
    let secret = app_secret::load(&aws.secrets, &config.secret_id).await?;
    let pepper_bytes =
        secret.pepper.as_ref().map(|pepper| pepper.expose_secret().as_bytes().to_vec()).unwrap_or_default();
    let pepper =
        Pepper::new(pepper_bytes).map_err(|source| BootError::Pepper { id: config.secret_id.clone(), source })?;
    let sealed = secret.sealed_ring.ok_or_else(|| BootError::NoKeyRing { id: config.secret_id.clone() })?;
    let key_ring = app_secret::open_ring(&aws.kms, config, &sealed).await?;
    Ok((pepper, key_ring))
}
