//! AWS clients, built once per cold start. `AWS_ENDPOINT_URL` (read by the SDK's own config loader)
//! points them at the local emulator; the code path is the production one.
//!
//! Every client carries [`AwsCallStats`], which counts calls by service and operation and the
//! number of *sequential* round trips (a burst of concurrent calls is one). `scripts/bench` reads it
//! to prove the hot-path budget: 0 KMS, 0 Secrets Manager, 1 DynamoDB round trip.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

#[derive(Clone, Debug)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    pub stats: AwsCallStats,
}

impl AwsClients {
    pub async fn from_env() -> Self {
        Self::load(None).await
    }

    /// Clients for an explicit endpoint, e.g. a second emulator a fault-injection test can stop.
    pub async fn for_endpoint(endpoint: &str) -> Self {
        Self::load(Some(endpoint)).await
    }

    async fn load(endpoint: Option<&str>) -> Self {
        // Tight timeouts: a trader's order should fail fast with 503, not hang for the SDK default.
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_attempt_timeout(Duration::from_secs(3))
            .operation_timeout(Duration::from_secs(8))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let shared = loader.load().await;
        let stats = AwsCallStats::default();
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(
                aws_sdk_dynamodb::config::Builder::from(&shared).interceptor(stats.clone()).build(),
            ),
            kms: aws_sdk_kms::Client::from_conf(
                aws_sdk_kms::config::Builder::from(&shared).interceptor(stats.clone()).build(),
            ),
            secrets: aws_sdk_secretsmanager::Client::from_conf(
                aws_sdk_secretsmanager::config::Builder::from(&shared).interceptor(stats.clone()).build(),
            ),
            stats,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CallCounts {
    /// `"DynamoDB.GetItem"` → calls.
    pub by_operation: BTreeMap<String, u64>,
    /// Times the number of calls in flight rose from zero: sequential round trips.
    pub round_trips: u64,
    /// Attempts beyond the first (SDK retries). A retried `ADD` may have counted twice.
    pub retries: u64,
}

impl CallCounts {
    pub fn total(&self) -> u64 {
        self.by_operation.values().sum()
    }

    pub fn for_service(&self, service: &str) -> u64 {
        self.by_operation.iter().filter(|(op, _)| op.starts_with(&format!("{service}."))).map(|(_, n)| n).sum()
    }
}

#[derive(Debug, Default)]
struct StatsState {
    counts: CallCounts,
    in_flight: u32,
}

#[derive(Clone, Debug, Default)]
pub struct AwsCallStats(Arc<Mutex<StatsState>>);

impl AwsCallStats {
    pub fn snapshot(&self) -> CallCounts {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).counts.clone()
    }

    fn started(&self, operation: String) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *state.counts.by_operation.entry(operation).or_default() += 1;
        if state.in_flight == 0 {
            state.counts.round_trips += 1;
        }
        state.in_flight += 1;
    }

    fn attempted(&self, first: bool) {
        if !first {
            self.0.lock().unwrap_or_else(PoisonError::into_inner).counts.retries += 1;
        }
    }

    fn finished(&self) {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

impl Intercept for AwsCallStats {
    fn name(&self) -> &'static str {
        "AwsCallStats"
    }

    // Not `read_before_execution`: for client-level interceptors that runs before the operation's
    // config (and so its `Metadata`) is in the bag.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or_else(|| "unknown".to_owned(), |meta| format!("{}.{}", meta.service(), meta.name()));
        self.started(operation);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let attempt = cfg.load::<RequestAttempts>().map_or(1, |attempts| attempts.attempts());
        self.attempted(attempt <= 1);
        Ok(())
    }

    fn read_after_execution(
        &self,
        _context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.finished();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_calls_are_one_round_trip() {
        let stats = AwsCallStats::default();
        for op in ["DynamoDB.GetItem", "DynamoDB.GetItem", "DynamoDB.UpdateItem"] {
            stats.started(op.into());
        }
        for _ in 0..3 {
            stats.finished();
        }
        stats.started("DynamoDB.PutItem".into());
        stats.finished();
        let counts = stats.snapshot();
        assert_eq!(counts.round_trips, 2);
        assert_eq!(counts.total(), 4);
        assert_eq!(counts.for_service("DynamoDB"), 4);
        assert_eq!(counts.for_service("KMS"), 0);
        assert_eq!(counts.by_operation["DynamoDB.GetItem"], 2);
    }
}
