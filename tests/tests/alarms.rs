//! The alarm test: synthetic failed logins and bad keys go through the local gateway, and the EMF
//! metrics the functions emit must be exactly what the alarms in `template.yaml` watch — the same
//! namespace, metric names, dimension names and dimension values — in numbers that would fire them.
//! The dashboard in the template must be the JSON kept in `infra/`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use kavach_tests::web::WebClient;
use kavach_tests::*;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use shared::app::aws::AwsClients;
use shared::core::clock::SystemClock;
use shared::core::metrics::{DIMENSION, Metric, MetricSink, NAMESPACE};

fn template() -> Yaml {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template");
    serde_yaml::from_str(&text).expect("template parses")
}

/// A CloudFormation value with `!Ref AWS::StackName` resolved to `stack`.
fn resolve(value: &Yaml, stack: &str) -> String {
    match value {
        Yaml::String(text) => text.clone(),
        Yaml::Tagged(tagged) if tagged.tag == "!Ref" && tagged.value.as_str() == Some("AWS::StackName") => {
            stack.to_owned()
        }
        other => panic!("unexpected alarm value {other:?}"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Watched {
    namespace: String,
    metric: String,
    dimensions: BTreeMap<String, String>,
    threshold: u64,
}

fn alarms(stack: &str) -> Vec<Watched> {
    let template = template();
    let resources = template["Resources"].as_mapping().expect("resources");
    resources
        .values()
        .filter(|resource| resource["Type"].as_str() == Some("AWS::CloudWatch::Alarm"))
        .map(|alarm| {
            let properties = &alarm["Properties"];
            Watched {
                namespace: properties["Namespace"].as_str().expect("namespace").to_owned(),
                metric: properties["MetricName"].as_str().expect("metric").to_owned(),
                dimensions: properties["Dimensions"]
                    .as_sequence()
                    .expect("dimensions")
                    .iter()
                    .map(|d| (d["Name"].as_str().expect("name").to_owned(), resolve(&d["Value"], stack)))
                    .collect(),
                threshold: properties["Threshold"].as_u64().expect("threshold"),
            }
        })
        .collect()
}

#[derive(Debug)]
struct Emitted {
    namespace: String,
    metric: String,
    dimensions: BTreeMap<String, String>,
    value: u64,
}

/// Reads EMF lines as CloudWatch does: the directive names the namespace, dimension sets and
/// metrics; the values are top-level members.
fn emitted(lines: &[String]) -> Vec<Emitted> {
    let mut out = Vec::new();
    for line in lines {
        let document: Json = serde_json::from_str(line).expect("EMF is JSON");
        for directive in document["_aws"]["CloudWatchMetrics"].as_array().expect("directives") {
            for metric in directive["Metrics"].as_array().expect("metrics") {
                let name = metric["Name"].as_str().expect("name").to_owned();
                for set in directive["Dimensions"].as_array().expect("dimension sets") {
                    let dimensions = set
                        .as_array()
                        .expect("set")
                        .iter()
                        .map(|d| {
                            let d = d.as_str().expect("dimension name");
                            (d.to_owned(), document[d].as_str().expect("dimension value").to_owned())
                        })
                        .collect();
                    out.push(Emitted {
                        namespace: directive["Namespace"].as_str().expect("namespace").to_owned(),
                        metric: name.clone(),
                        dimensions,
                        value: document[&name].as_u64().expect("value"),
                    });
                }
            }
        }
    }
    out
}

#[tokio::test]
async fn synthetic_failed_logins_emit_the_metrics_the_template_alarms_watch() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let deps = shared::app::bootstrap::init_with(
        config_with(&[]),
        Arc::new(SystemClock),
        AwsClients::from_env().await,
        MetricSink::Memory(lines.clone()),
    )
    .await
    .expect("cold start");
    let stack = deps.config.stack_name.clone();
    let gateway = start_gateway(deps.clone()).await;
    let user = new_web_user(&deps).await;

    // Ten failed logins from two addresses (five each stays within one address's budget).
    for _ in 0..5 {
        for source in [unique_ip(), unique_ip()] {
            let mut browser = WebClient::new(gateway, source);
            let page =
                browser.post("/auth/login", &[("username", &user.username), ("password", "wrong-password-1A!")]).await;
            assert!(page.status == 401 || page.status == 429, "{}", page.status);
        }
    }
    for i in 0..20 {
        post(gateway, unique_ip(), "/api/v1/ping", &ping_body(&format!("synthetic-bad-key-{i}"))).await;
    }
    let lines = lines.lock().expect("lines").clone();
    let emitted = emitted(&lines);
    let watched = alarms(&stack);

    // Every metric the code can emit has an alarm, and every alarm watches a metric the code emits.
    let alarm_names: BTreeSet<&str> = watched.iter().map(|alarm| alarm.metric.as_str()).collect();
    let metric_names: BTreeSet<&str> = Metric::ALL.iter().map(|metric| metric.name()).collect();
    assert_eq!(alarm_names, metric_names);
    for alarm in &watched {
        assert_eq!(alarm.namespace, NAMESPACE, "{}", alarm.metric);
        assert_eq!(alarm.dimensions, BTreeMap::from([(DIMENSION.to_owned(), stack.clone())]), "{}", alarm.metric);
    }

    for name in ["FailedLogins", "InvalidApiKeys"] {
        let alarm = watched.iter().find(|alarm| alarm.metric == name).expect("alarm");
        let matching: Vec<&Emitted> = emitted.iter().filter(|e| e.metric == name).collect();
        assert!(!matching.is_empty(), "{name} was emitted");
        for line in &matching {
            assert_eq!((&line.namespace, &line.dimensions), (&alarm.namespace, &alarm.dimensions), "{name}");
        }
        let sum: u64 = matching.iter().map(|line| line.value).sum();
        assert!(sum >= alarm.threshold, "{name}: {sum} in the period would fire the alarm at {}", alarm.threshold);
    }
    let failed_logins: u64 = emitted.iter().filter(|e| e.metric == "FailedLogins").map(|e| e.value).sum();
    assert_eq!(failed_logins, 10, "one per failed attempt");
}

#[test]
fn the_template_dashboard_is_the_json_in_infra_and_charts_every_metric() {
    let template = template();
    let body = &template["Resources"]["SecurityDashboard"]["Properties"]["DashboardBody"];
    let Yaml::Tagged(sub) = body else { panic!("DashboardBody is !Sub") };
    let in_template: Json = serde_json::from_str(sub.value.as_str().expect("string")).expect("dashboard JSON");
    let in_infra: Json = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/cloudwatch-dashboard.json"))
            .expect("infra/cloudwatch-dashboard.json"),
    )
    .expect("JSON");
    assert_eq!(in_template, in_infra);
    let charted: BTreeSet<String> = in_infra["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .flat_map(|widget| widget["properties"]["metrics"].as_array().cloned().unwrap_or_default())
        .filter(|row| row[0] == NAMESPACE)
        .map(|row| row[1].as_str().expect("name").to_owned())
        .collect();
    for metric in Metric::ALL {
        assert!(charted.contains(metric.name()), "{} is charted", metric.name());
    }
}
