//! CloudWatch metrics as Embedded Metric Format: one JSON line on stdout per event, which Lambda
//! ships to CloudWatch Logs and CloudWatch turns into metrics. No `PutMetricData` call, so no
//! latency, no IAM permission and no cost per request beyond the log line.
//!
//! The alarms in `infra/observability/template.yaml` watch exactly these names, in [`NAMESPACE`],
//! with the one dimension [`DIMENSION`] = the stack name; `tests/tests/alarms.rs` holds the two
//! together.
//!
//! The functions log in Lambda's JSON format with an `ApplicationLogLevel`, and Lambda drops every
//! JSON line below that level before CloudWatch sees it. A line without a valid `level` (or
//! without a valid RFC 3339 `timestamp`) counts as INFO, so a bare EMF line would vanish, and its
//! alarm go quiet, the day someone sets the level to WARN or ERROR to cut log costs. Every metric
//! line therefore carries [`METRIC_LEVEL`], the one level no setting filters, and its own time.

use std::sync::{Arc, Mutex, PoisonError};

use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde_json::json;

use crate::core::clock::UnixMillis;

pub const NAMESPACE: &str = "Kavach";
pub const DIMENSION: &str = "Service";
/// The level of every metric line: FATAL is the least verbose level Lambda knows, so it passes
/// every `ApplicationLogLevel` (TRACE to FATAL). The `_aws` key tells a metric from a real fatal
/// error in a log search.
pub const METRIC_LEVEL: &str = "FATAL";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// A failed credential check of any kind: a wrong password or unknown user at login, a wrong
    /// TOTP code, a failed reset or re-authentication. The line names the kind in its `Kind`
    /// property (not a dimension, so the one alarm sums every kind).
    FailedLogins,
    /// An account reached the failure threshold and its TOTP-only reset was locked.
    ResetLocked,
    /// A request whose API key is malformed, unknown or does not verify.
    InvalidApiKeys,
    /// A ban created, by a detector or by hand.
    BansCreated,
    /// A request refused with 429.
    RateLimited,
    /// A response with a 5xx status.
    ServerErrors,
    /// A request refused with 503 because DynamoDB could not be reached.
    StoreUnavailable,
    /// A cold start that could not read the app secret or decrypt the key ring.
    KeyServiceFailures,
    /// A broker session that could not be ended at the broker (a disconnect, the rollover); the
    /// token was dropped here all the same.
    BrokerRevokeFailures,
}

impl Metric {
    pub const ALL: [Metric; 9] = [
        Metric::FailedLogins,
        Metric::ResetLocked,
        Metric::InvalidApiKeys,
        Metric::BansCreated,
        Metric::RateLimited,
        Metric::ServerErrors,
        Metric::StoreUnavailable,
        Metric::KeyServiceFailures,
        Metric::BrokerRevokeFailures,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::FailedLogins => "FailedLogins",
            Metric::ResetLocked => "ResetLocked",
            Metric::InvalidApiKeys => "InvalidApiKeys",
            Metric::BansCreated => "BansCreated",
            Metric::RateLimited => "RateLimited",
            Metric::ServerErrors => "ServerErrors",
            Metric::StoreUnavailable => "StoreUnavailable",
            Metric::KeyServiceFailures => "KeyServiceFailures",
            Metric::BrokerRevokeFailures => "BrokerRevokeFailures",
        }
    }
}

/// Where the EMF lines go: stdout in Lambda and the local gateway; a buffer in tests that read them.
#[derive(Clone, Debug, Default)]
pub enum MetricSink {
    #[default]
    Stdout,
    Memory(Arc<Mutex<Vec<String>>>),
}

#[derive(Clone, Debug)]
pub struct Metrics {
    service: String,
    sink: MetricSink,
}

impl Metrics {
    pub fn new(service: impl Into<String>, sink: MetricSink) -> Self {
        Self { service: service.into(), sink }
    }

    /// Counts one occurrence of `metric` at `at`.
    pub fn count(&self, metric: Metric, at: UnixMillis) {
        self.write(emf_line(&self.service, metric, at, None));
    }

    /// Counts one occurrence of `metric` at `at`, naming its `kind` in the line's `Kind` property:
    /// searchable in the logs, summed with every other kind by the metric and its alarm.
    pub fn count_kind(&self, metric: Metric, kind: &str, at: UnixMillis) {
        self.write(emf_line(&self.service, metric, at, Some(kind)));
    }

    fn write(&self, line: String) {
        match &self.sink {
            MetricSink::Stdout => {
                use std::io::Write;
                // One write per line, so concurrent requests cannot interleave a metric. A closed
                // stdout loses a metric, never a request.
                let _ = writeln!(std::io::stdout().lock(), "{line}");
            }
            MetricSink::Memory(lines) => lines.lock().unwrap_or_else(PoisonError::into_inner).push(line),
        }
    }
}

fn emf_line(service: &str, metric: Metric, at: UnixMillis, kind: Option<&str>) -> String {
    let mut line = json!({
        "_aws": {
            "Timestamp": at.0,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [[DIMENSION]],
                "Metrics": [{ "Name": metric.name(), "Unit": "Count" }],
            }],
        },
        DIMENSION: service,
        metric.name(): 1,
        "level": METRIC_LEVEL,
        "timestamp": rfc3339(at),
    });
    if let Some(kind) = kind {
        line["Kind"] = json!(kind);
    }
    line.to_string()
}

/// `at` as Lambda's log filter reads a timestamp (RFC 3339, UTC).
fn rfc3339(at: UnixMillis) -> String {
    let millis = i64::try_from(at.0).unwrap_or(i64::MAX);
    // Only a date past year 9999 fails to format; the line then goes without a time, as INFO.
    DateTime::from_millis(millis).fmt(Format::DateTime).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_line_declares_its_namespace_dimension_and_value() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        Metrics::new("kavach", MetricSink::Memory(lines.clone())).count(Metric::BansCreated, UnixMillis(42));
        let lines = lines.lock().expect("lines");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
        assert_eq!(line["_aws"]["Timestamp"], 42);
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Namespace"], "Kavach");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0][0], "Service");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Name"], "BansCreated");
        assert_eq!(line["Service"], "kavach");
        assert_eq!(line["BansCreated"], 1);
        assert!(line.get("Kind").is_none());
    }

    /// Lambda's JSON log filter (docs: "Log-level filtering") keeps a line at or above the
    /// function's `ApplicationLogLevel` and treats a line with no valid `level` or `timestamp` as
    /// INFO: a metric line must name a level no setting drops, and a valid time.
    #[test]
    fn a_metric_line_passes_every_application_log_level() {
        const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
        let lines = Arc::new(Mutex::new(Vec::new()));
        Metrics::new("kavach", MetricSink::Memory(lines.clone()))
            .count(Metric::ServerErrors, UnixMillis(1_764_590_400_042));
        let lines = lines.lock().expect("lines");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
        let level = line["level"].as_str().expect("a level");
        // Lambda keeps a line whose level is at or above the filter: only the last one passes all.
        assert_eq!(
            LEVELS.iter().position(|known| known.eq_ignore_ascii_case(level)),
            Some(LEVELS.len() - 1),
            "{level}"
        );
        assert_eq!(line["timestamp"], "2025-12-01T12:00:00.042Z");
    }

    #[test]
    fn a_kind_is_a_property_not_a_dimension() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        Metrics::new("kavach", MetricSink::Memory(lines.clone())).count_kind(
            Metric::FailedLogins,
            "reset",
            UnixMillis(1),
        );
        let lines = lines.lock().expect("lines");
        let line: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
        assert_eq!(line["Kind"], "reset");
        assert_eq!(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([[DIMENSION]]));
    }
}
