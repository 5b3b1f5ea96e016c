//! CloudWatch metrics as Embedded Metric Format: one JSON line on stdout per event, which Lambda
//! ships to CloudWatch Logs and CloudWatch turns into metrics. No `PutMetricData` call, so no
//! latency, no IAM permission and no cost per request beyond the log line.
//!
//! The alarms in `infra/observability/template.yaml` watch exactly these names, in [`NAMESPACE`],
//! with the one dimension [`DIMENSION`] = the stack name; `tests/tests/alarms.rs` holds the two
//! together.

use std::sync::{Arc, Mutex, PoisonError};

use serde_json::json;

use crate::core::clock::UnixMillis;

pub const NAMESPACE: &str = "Kavach";
pub const DIMENSION: &str = "Service";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Metric {
    /// A wrong password, unknown user or wrong TOTP code.
    FailedLogins,
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
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::FailedLogins,
        Metric::InvalidApiKeys,
        Metric::BansCreated,
        Metric::RateLimited,
        Metric::ServerErrors,
        Metric::StoreUnavailable,
        Metric::KeyServiceFailures,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::FailedLogins => "FailedLogins",
            Metric::InvalidApiKeys => "InvalidApiKeys",
            Metric::BansCreated => "BansCreated",
            Metric::RateLimited => "RateLimited",
            Metric::ServerErrors => "ServerErrors",
            Metric::StoreUnavailable => "StoreUnavailable",
            Metric::KeyServiceFailures => "KeyServiceFailures",
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
        let line = emf_line(&self.service, metric, at);
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

fn emf_line(service: &str, metric: Metric, at: UnixMillis) -> String {
    json!({
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
    })
    .to_string()
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
    }
}
