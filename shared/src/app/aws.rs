//! AWS clients, built once per cold start. `AWS_ENDPOINT_URL` (read by the SDK's config loader, and
//! by [`AwsClients::for_lambda`]) points them at the local emulator; the code path is the production one.
//!
//! Clients from the default chain carry [`AwsCallStats`], which counts calls by service and
//! operation and the number of *sequential* round trips (a burst of concurrent calls is one).
//! `scripts/bench` and the tests read it to prove the hot-path budget: 0 KMS, 0 Secrets Manager,
//! 1 DynamoDB round trip. A Lambda function's clients ([`AwsClients::for_lambda`]) carry none:
//! nothing reads the counts there, and every interceptor costs every call it sees.
//!
//! Switched on with [`AwsCallStats::record_accesses`], it also records what IAM authorises for each
//! call ([`Access`]: the template function making it, the IAM action, the resource), so the IAM
//! drift test can hold the calls against the template's policies: the emulator enforces no IAM.
//! Then it also counts the items each caller's Queries and Scans return ([`AwsCallStats::items_read`]),
//! so a test can show that a view reads a bounded number of them.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::retry::RetryConfig;
use aws_config::stalled_stream_protection::StalledStreamProtectionConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_dynamodb::config::SharedCredentialsProvider;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextRef,
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::{Intercept, SharedInterceptor};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::Value;

use crate::store::PK;

tokio::task_local! {
    /// The template function (logical id) whose code the current task runs.
    static CALLER: &'static str;
}

/// IAM's condition key for the partition keys a DynamoDB request touches.
pub const LEADING_KEYS: &str = "dynamodb:LeadingKeys";

/// IAM's condition key for the top-level attributes an `UpdateItem` sets or removes, the key's
/// included; recorded as their names joined by [`VALUE_SEPARATOR`].
pub const ATTRIBUTES: &str = "dynamodb:Attributes";

/// Joins the values of a multivalued condition key in [`Access::context`].
pub const VALUE_SEPARATOR: char = '\u{1f}';

/// The caller of the calls a cold start makes ([`crate::app::bootstrap::init_with`]): every
/// function that starts through it makes them under its own role.
pub const COLD_START: &str = "cold start";

/// Runs `work` as the template function `function`: the AWS calls it makes are recorded under that
/// name. Calls outside any such scope (test fixtures, provisioning) are not recorded, and neither
/// are calls from tasks `work` spawns, since a task-local does not follow `tokio::spawn`.
pub async fn acting_as<F: Future>(function: &'static str, work: F) -> F::Output {
    CALLER.scope(function, work).await
}

#[derive(Clone, Debug)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
    pub secrets: aws_sdk_secretsmanager::Client,
    /// What the clients have called; it stays empty for [`AwsClients::for_lambda`]'s, which do not
    /// count.
    pub stats: AwsCallStats,
}

impl AwsClients {
    /// Clients from the SDK's default chain of credentials and region (environment, profile, SSO-less
    /// assume-role and web identity, container and instance metadata): the operator CLI on a
    /// workstation, the local gateway and the tests.
    pub async fn from_env() -> Self {
        Self::from_chain(None).await
    }

    /// Clients for an explicit endpoint, e.g. a second emulator a fault-injection test can stop.
    pub async fn for_endpoint(endpoint: &str) -> Self {
        Self::from_chain(Some(endpoint)).await
    }

    /// Clients for a Lambda function: the region and the role's credentials from the variables
    /// Lambda sets (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`)
    /// and `AWS_ENDPOINT_URL` when set (the local emulator), as the default chain finds them there
    /// first. Not the chain itself: a function never reaches its profile, STS or metadata providers,
    /// and calling the chain links them, with an STS client, into every bootstrap (ping on x86-64:
    /// 7.29 MB with it, 6.41 MB without).
    pub fn for_lambda() -> Self {
        let region = ["AWS_REGION", "AWS_DEFAULT_REGION"].into_iter().find_map(|name| std::env::var(name).ok());
        let mut shared = common_settings(aws_config::SdkConfig::builder(), https_client())
            .region(region.map(aws_config::Region::new))
            .credentials_provider(SharedCredentialsProvider::new(EnvironmentVariableCredentialsProvider::new()));
        if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL") {
            shared = shared.endpoint_url(endpoint);
        }
        Self::with_shared(&shared.build(), Counting::Off)
    }

    async fn from_chain(endpoint: Option<&str>) -> Self {
        // The chain's own providers (STS, instance metadata) call out through the same client.
        let http = https_client();
        let mut loader = aws_config::defaults(BehaviorVersion::latest()).http_client(http.clone());
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let chained = loader.load().await;
        Self::with_shared(&common_settings(chained.to_builder(), http).build(), Counting::On)
    }

    fn with_shared(shared: &aws_config::SdkConfig, counting: Counting) -> Self {
        let stats = AwsCallStats::default();
        let interceptor = (counting == Counting::On).then(|| SharedInterceptor::new(stats.clone()));
        let mut dynamodb = aws_sdk_dynamodb::config::Builder::from(shared);
        dynamodb.set_interceptors(interceptor.clone());
        let mut kms = aws_sdk_kms::config::Builder::from(shared);
        kms.set_interceptors(interceptor.clone());
        let mut secrets = aws_sdk_secretsmanager::config::Builder::from(shared);
        secrets.set_interceptors(interceptor);
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.build()),
            kms: aws_sdk_kms::Client::from_conf(kms.build()),
            secrets: aws_sdk_secretsmanager::Client::from_conf(secrets.build()),
            stats,
        }
    }
}

/// Whether a set of clients carries [`AwsCallStats`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Counting {
    On,
    Off,
}

/// What every set of clients is configured with, however it finds its credentials.
fn common_settings(
    builder: aws_types::sdk_config::Builder,
    http: aws_smithy_runtime_api::client::http::SharedHttpClient,
) -> aws_types::sdk_config::Builder {
    builder
        .behavior_version(BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts())
        // The chain's default, set here so that a Lambda function's clients retry the same way.
        .retry_config(RetryConfig::standard())
        .stalled_stream_protection(StalledStreamProtectionConfig::disabled())
}

/// Tight timeouts: a trader's order should fail fast with 503, not hang for the SDK default.
fn timeouts() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(2))
        .operation_attempt_timeout(Duration::from_secs(3))
        .operation_timeout(Duration::from_secs(8))
        .build()
}

/// The SDK's own hyper and rustls client with ring as the crypto provider, the one every other TLS
/// user in the binary (lettre; reqwest in the key-ring function) already links: `default-https-client` would add aws-lc-rs.
/// It trusts the platform's roots, as the default client does.
fn https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https()
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

/// One thing IAM authorises for a call. A transaction or batch is several: IAM checks each item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    /// The template function's logical id, or [`COLD_START`].
    pub caller: &'static str,
    /// The IAM action, e.g. `dynamodb:PutItem`.
    pub action: String,
    /// The resource as the request names it: a table (`name`, or `name/index/index` for a `Query`
    /// or `Scan` of an index), a secret id, a KMS key id or alias; `*` when it names none.
    pub resource: String,
    /// The condition keys the request sets: `kms:EncryptionContext:<key>` → value, and for a
    /// DynamoDB item (or a base-table `Query`) [`LEADING_KEYS`] → its partition key. IAM takes an
    /// item request's leading keys as one set; a batch is recorded as one access per item, which
    /// a `ForAllValues:` condition judges the same way.
    pub context: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Default)]
pub struct AwsCallStats {
    state: Arc<Mutex<StatsState>>,
    /// Empty unless [`AwsCallStats::record_accesses`] was called: the Lambda path never calls it,
    /// so there it costs one atomic load per call and no request is parsed.
    accesses: Arc<OnceLock<Mutex<BTreeSet<Access>>>>,
    /// Items returned by `Query` and `Scan`, by caller; recorded with the accesses.
    items_read: Arc<Mutex<BTreeMap<&'static str, u64>>>,
}

impl AwsCallStats {
    pub fn snapshot(&self) -> CallCounts {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).counts.clone()
    }

    /// From now on, records what IAM authorises for each call made inside [`acting_as`].
    pub fn record_accesses(&self) {
        // A second call finds the log already there, which is what it asks for.
        let _ = self.accesses.set(Mutex::default());
    }

    /// Everything recorded so far, each distinct access once.
    pub fn accesses(&self) -> BTreeSet<Access> {
        self.accesses.get().map(|log| log.lock().unwrap_or_else(PoisonError::into_inner).clone()).unwrap_or_default()
    }

    /// How many items the Queries and Scans made as `caller` returned, since accesses were recorded.
    pub fn items_read(&self, caller: &str) -> u64 {
        self.items_read.lock().unwrap_or_else(PoisonError::into_inner).get(caller).copied().unwrap_or(0)
    }

    fn record_items_read(&self, response: &[u8]) {
        let Ok(caller) = CALLER.try_with(|caller| *caller) else { return };
        let count = serde_json::from_slice::<Value>(response).ok().and_then(|body| body["Count"].as_u64());
        *self.items_read.lock().unwrap_or_else(PoisonError::into_inner).entry(caller).or_default() +=
            count.unwrap_or(0);
    }

    fn record(&self, service: &str, operation: &str, body: &[u8]) {
        let Some(log) = self.accesses.get() else { return };
        let Ok(caller) = CALLER.try_with(|caller| *caller) else { return };
        let found = authorised(caller, service, operation, body);
        log.lock().unwrap_or_else(PoisonError::into_inner).extend(found);
    }

    /// Counts a call of `service.operation`. The name is built only the first time it is seen:
    /// this runs on every call a request makes.
    fn started(&self, service: &str, operation: &str) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let named = |key: &String| {
            key.strip_prefix(service).and_then(|rest| rest.strip_prefix('.')).is_some_and(|rest| rest == operation)
        };
        match state.counts.by_operation.iter_mut().find(|(key, _)| named(key)) {
            Some((_, calls)) => *calls += 1,
            None => {
                state.counts.by_operation.insert(format!("{service}.{operation}"), 1);
            }
        }
        if state.in_flight == 0 {
            state.counts.round_trips += 1;
        }
        state.in_flight += 1;
    }

    fn attempted(&self, first: bool) {
        if !first {
            self.state.lock().unwrap_or_else(PoisonError::into_inner).counts.retries += 1;
        }
    }

    fn finished(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
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
        match cfg.load::<Metadata>() {
            Some(meta) => self.started(meta.service(), meta.name()),
            None => self.started("unknown", "unknown"),
        }
        Ok(())
    }

    // The serialized request, once per operation (not per attempt): what IAM sees.
    fn read_after_serialization(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.accesses.get().is_some()
            && let Some(meta) = cfg.load::<Metadata>()
        {
            self.record(meta.service(), meta.name(), context.request().body().bytes().unwrap_or_default());
        }
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

    // The response body is buffered by now (a non-streaming operation's is read to deserialize it).
    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.accesses.get().is_some()
            && let Some(meta) = cfg.load::<Metadata>()
            && meta.service() == "DynamoDB"
            && matches!(meta.name(), "Query" | "Scan")
        {
            self.record_items_read(context.response().body().bytes().unwrap_or_default());
        }
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

/// What IAM checks for one request of `service`'s `operation` (the SDK's names) with this JSON body.
/// For DynamoDB, KMS and Secrets Manager the IAM action is the operation's name, except that a
/// transaction is authorised item by item as `PutItem`, `UpdateItem`, `DeleteItem`,
/// `ConditionCheckItem` or `GetItem`, and a batch as itself on every table it names.
fn authorised(caller: &'static str, service: &str, operation: &str, body: &[u8]) -> Vec<Access> {
    let request: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let text = |value: &Value| value.as_str().map(str::to_owned);
    let access = |action: String, resource: Option<String>| Access {
        caller,
        action,
        resource: resource.unwrap_or_else(|| "*".to_owned()),
        context: BTreeMap::new(),
    };
    // An item access, with the partition key of `key` (a `Key` or an `Item`) when it has one, and
    // for an update the attributes `target` (the request or the transaction's item) names.
    let item = |action: String, table: Option<String>, key: &Value, target: &Value| {
        let mut found = access(action, table);
        if let Some(leading) = key[PK]["S"].as_str() {
            found.context.insert(LEADING_KEYS.to_owned(), leading.to_owned());
        }
        if let Some(attributes) = updated_attributes(key, target) {
            found.context.insert(ATTRIBUTES.to_owned(), attributes);
        }
        found
    };
    match service {
        "DynamoDB" => match operation {
            "TransactWriteItems" | "TransactGetItems" => {
                let items = request["TransactItems"].as_array().map(Vec::as_slice).unwrap_or_default();
                let item_actions = [
                    ("Put", "PutItem"),
                    ("Update", "UpdateItem"),
                    ("Delete", "DeleteItem"),
                    ("ConditionCheck", "ConditionCheckItem"),
                    ("Get", "GetItem"),
                ];
                items
                    .iter()
                    .flat_map(|entry| {
                        item_actions.iter().filter_map(move |(kind, action)| {
                            let target = entry.get(*kind)?;
                            let key = if *kind == "Put" { &target["Item"] } else { &target["Key"] };
                            Some(item(format!("dynamodb:{action}"), text(&target["TableName"]), key, target))
                        })
                    })
                    .collect()
            }
            "BatchGetItem" | "BatchWriteItem" => request["RequestItems"]
                .as_object()
                .into_iter()
                .flatten()
                .flat_map(|(table, requests)| {
                    // BatchGetItem: {"Keys":[…]}; BatchWriteItem: [{"PutRequest":{"Item"}}, {"DeleteRequest":{"Key"}}].
                    let keys: Vec<&Value> = match requests {
                        Value::Array(writes) => writes
                            .iter()
                            .filter_map(|write| {
                                write["PutRequest"].get("Item").or_else(|| write["DeleteRequest"].get("Key"))
                            })
                            .collect(),
                        other => other["Keys"].as_array().map(|keys| keys.iter().collect()).unwrap_or_default(),
                    };
                    let action = format!("dynamodb:{operation}");
                    if keys.is_empty() {
                        return vec![access(action, Some(table.clone()))];
                    }
                    keys.into_iter().map(|key| item(action.clone(), Some(table.clone()), key, &Value::Null)).collect()
                })
                .collect(),
            _ => {
                let table = text(&request["TableName"]);
                let action = format!("dynamodb:{operation}");
                match (table, text(&request["IndexName"])) {
                    // An index's leading key is not the table's partition key: not recorded.
                    (Some(table), Some(index)) => vec![access(action, Some(format!("{table}/index/{index}")))],
                    (table, None) if operation == "Query" => {
                        let mut found = access(action, table);
                        if let Some(leading) = queried_partition(&request) {
                            found.context.insert(LEADING_KEYS.to_owned(), leading);
                        }
                        vec![found]
                    }
                    (table, _) => {
                        let key = if request.get("Item").is_some() { &request["Item"] } else { &request["Key"] };
                        vec![item(action, table, key, &request)]
                    }
                }
            }
        },
        "KMS" => {
            let mut found = access(format!("kms:{operation}"), text(&request["KeyId"]));
            if let Some(context) = request["EncryptionContext"].as_object() {
                found.context = context
                    .iter()
                    .filter_map(|(key, value)| Some((format!("kms:EncryptionContext:{key}"), text(value)?)))
                    .collect();
            }
            vec![found]
        }
        "Secrets Manager" => vec![access(format!("secretsmanager:{operation}"), text(&request["SecretId"]))],
        // A client this module does not build: the action is named so that no policy allows it by
        // accident, and the test names it.
        other => vec![access(format!("{}:{operation}", other.to_ascii_lowercase().replace(' ', "")), None)],
    }
}

/// The top-level attributes an update expression in `target` touches, with `key`'s, sorted and
/// joined by [`VALUE_SEPARATOR`]; `None` when `target` has no update expression.
fn updated_attributes(key: &Value, target: &Value) -> Option<String> {
    let expression = target["UpdateExpression"].as_str()?;
    let mut names: BTreeSet<String> = key.as_object().into_iter().flatten().map(|(name, _)| name.clone()).collect();
    let mut verb = "";
    for clause in expression.split(',') {
        let mut words = clause.split_whitespace().peekable();
        if let Some(first) = words.peek().map(|word| word.to_ascii_uppercase())
            && ["SET", "REMOVE", "ADD", "DELETE"].contains(&first.as_str())
        {
            verb = if first == "SET" { "SET" } else { "OTHER" };
            words.next();
        }
        let Some(path) = words.next() else { continue };
        // `SET a = :v` names `a`; the others name their first operand. A nested path's top level.
        let path = if verb == "SET" { path.split('=').next().unwrap_or(path) } else { path };
        let top = path.split(['.', '[']).next().unwrap_or(path).trim();
        let name = if top.starts_with('#') { target["ExpressionAttributeNames"][top].as_str()? } else { top };
        // A value or a function's argument split off by the comma (`if_not_exists(a, :v)`).
        if !name.is_empty() && !name.starts_with(':') && !name.contains(['(', ')']) {
            names.insert(name.to_owned());
        }
        // `SET a = :v REMOVE b` in one clause: the verb after the value starts another.
        let rest: Vec<&str> = words.collect();
        if let Some(at) = rest
            .iter()
            .position(|word| ["SET", "REMOVE", "ADD", "DELETE"].contains(&word.to_ascii_uppercase().as_str()))
        {
            verb = if rest[at].eq_ignore_ascii_case("SET") { "SET" } else { "OTHER" };
            if let Some(path) = rest.get(at + 1) {
                let top = path.split(['.', '[']).next().unwrap_or(path);
                let name = if top.starts_with('#') { target["ExpressionAttributeNames"][top].as_str()? } else { top };
                names.insert(name.to_owned());
            }
        }
    }
    Some(names.into_iter().collect::<Vec<_>>().join(&VALUE_SEPARATOR.to_string()))
}

/// The partition key a base-table `Query` names: the value its key condition sets `pk` equal to
/// (directly or through an attribute name).
fn queried_partition(request: &Value) -> Option<String> {
    let condition = request["KeyConditionExpression"].as_str()?;
    condition.split(" AND ").find_map(|clause| {
        let (name, value) = clause.split_once('=')?;
        let name = name.trim();
        let attribute = if name.starts_with('#') { request["ExpressionAttributeNames"][name].as_str()? } else { name };
        (attribute == PK)
            .then(|| request["ExpressionAttributeValues"][value.trim()]["S"].as_str().map(str::to_owned))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_calls_are_one_round_trip() {
        let stats = AwsCallStats::default();
        for op in ["GetItem", "GetItem", "UpdateItem"] {
            stats.started("DynamoDB", op);
        }
        for _ in 0..3 {
            stats.finished();
        }
        stats.started("DynamoDB", "PutItem");
        stats.finished();
        let counts = stats.snapshot();
        assert_eq!(counts.round_trips, 2);
        assert_eq!(counts.total(), 4);
        assert_eq!(counts.for_service("DynamoDB"), 4);
        assert_eq!(counts.for_service("KMS"), 0);
        assert_eq!(counts.by_operation["DynamoDB.GetItem"], 2);
        assert_eq!(counts.by_operation["DynamoDB.UpdateItem"], 1);
        assert_eq!(counts.by_operation["DynamoDB.PutItem"], 1);
        assert_eq!(counts.by_operation.len(), 3);
    }

    fn seen(service: &str, operation: &str, body: &str) -> Vec<(String, String)> {
        authorised("F", service, operation, body.as_bytes()).into_iter().map(|a| (a.action, a.resource)).collect()
    }

    fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected.iter().map(|(action, resource)| ((*action).to_owned(), (*resource).to_owned())).collect()
    }

    #[test]
    fn requests_become_what_iam_authorises() {
        assert_eq!(seen("DynamoDB", "GetItem", r#"{"TableName":"t","Key":{}}"#), pairs(&[("dynamodb:GetItem", "t")]));
        assert_eq!(
            seen("DynamoDB", "Query", r#"{"TableName":"t","IndexName":"resting"}"#),
            pairs(&[("dynamodb:Query", "t/index/resting")])
        );
        let transaction = r#"{"TransactItems":[{"Put":{"TableName":"a"}},{"Update":{"TableName":"b"}},
            {"Delete":{"TableName":"a"}},{"ConditionCheck":{"TableName":"c"}}]}"#;
        assert_eq!(
            seen("DynamoDB", "TransactWriteItems", transaction),
            pairs(&[
                ("dynamodb:PutItem", "a"),
                ("dynamodb:UpdateItem", "b"),
                ("dynamodb:DeleteItem", "a"),
                ("dynamodb:ConditionCheckItem", "c")
            ])
        );
        assert_eq!(
            seen("DynamoDB", "TransactGetItems", r#"{"TransactItems":[{"Get":{"TableName":"a"}}]}"#),
            pairs(&[("dynamodb:GetItem", "a")])
        );
        assert_eq!(
            seen("DynamoDB", "BatchGetItem", r#"{"RequestItems":{"a":{},"b":{}}}"#),
            pairs(&[("dynamodb:BatchGetItem", "a"), ("dynamodb:BatchGetItem", "b")])
        );
        assert_eq!(seen("DynamoDB", "ListTables", "{}"), pairs(&[("dynamodb:ListTables", "*")]));
        assert_eq!(
            seen("Secrets Manager", "GetSecretValue", r#"{"SecretId":"s"}"#),
            pairs(&[("secretsmanager:GetSecretValue", "s")])
        );
        let decrypt = authorised("F", "KMS", "Decrypt", br#"{"KeyId":"alias/k","EncryptionContext":{"app":"kavach"}}"#);
        assert_eq!((decrypt[0].action.as_str(), decrypt[0].resource.as_str()), ("kms:Decrypt", "alias/k"));
        assert_eq!(decrypt[0].context["kms:EncryptionContext:app"], "kavach");
        assert_eq!(seen("SNS", "Publish", "{}"), pairs(&[("sns:Publish", "*")]));
    }

    #[test]
    fn items_carry_their_leading_key_and_updates_their_attributes() {
        let context = |body: &str| authorised("F", "DynamoDB", "UpdateItem", body.as_bytes())[0].context.clone();
        let touch = context(
            r#"{"TableName":"t","Key":{"pk":{"S":"session#h"}},"UpdateExpression":"SET last_seen = :now","ExpressionAttributeValues":{":now":{"N":"1"}}}"#,
        );
        assert_eq!(touch[LEADING_KEYS], "session#h");
        assert_eq!(touch[ATTRIBUTES], format!("last_seen{VALUE_SEPARATOR}pk"));
        let map = context(
            r##"{"TableName":"t","Key":{"pk":{"S":"user#a"}},"UpdateExpression":"SET sessions.#new = :at REMOVE sessions.#old, #x","ExpressionAttributeNames":{"#new":"n","#old":"o","#x":"role"}}"##,
        );
        assert_eq!(map[ATTRIBUTES], format!("pk{VALUE_SEPARATOR}role{VALUE_SEPARATOR}sessions"));
        let query = authorised(
            "F",
            "DynamoDB",
            "Query",
            br##"{"TableName":"t","KeyConditionExpression":"#pk = :pk AND #sk BETWEEN :a AND :b","ExpressionAttributeNames":{"#pk":"pk","#sk":"sk"},"ExpressionAttributeValues":{":pk":{"S":"acct#u"}}}"##,
        );
        assert_eq!(query[0].context[LEADING_KEYS], "acct#u");
        let batch = authorised(
            "F",
            "DynamoDB",
            "BatchGetItem",
            br#"{"RequestItems":{"t":{"Keys":[{"pk":{"S":"session#a"}},{"pk":{"S":"session#b"}}]}}}"#,
        );
        let keys: Vec<&str> = batch.iter().map(|access| access.context[LEADING_KEYS].as_str()).collect();
        assert_eq!(keys, ["session#a", "session#b"], "one access per item");
    }

    #[tokio::test]
    async fn only_calls_inside_a_caller_scope_are_recorded_and_only_once_switched_on() {
        let stats = AwsCallStats::default();
        acting_as("F", async { stats.record("DynamoDB", "GetItem", br#"{"TableName":"t"}"#) }).await;
        assert!(stats.accesses().is_empty(), "not switched on");
        stats.record_accesses();
        stats.record("DynamoDB", "GetItem", br#"{"TableName":"outside"}"#);
        acting_as("F", async { stats.record("DynamoDB", "GetItem", br#"{"TableName":"t"}"#) }).await;
        let recorded: Vec<(&str, String)> = stats.accesses().into_iter().map(|a| (a.caller, a.resource)).collect();
        assert_eq!(recorded, vec![("F", "t".to_owned())]);
    }
}
