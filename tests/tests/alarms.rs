//! The alarm test: synthetic failed logins and bad keys go through the local gateway, and the EMF
//! metrics the functions emit must be exactly what the alarms watch — the same namespace, metric
//! names, dimension names and dimension values — in numbers that would fire them. The alarms and
//! the dashboard live in the nested application `template.yaml` declares
//! (`infra/observability/template.yaml`); its parameters are resolved to what the root passes, as
//! CloudFormation would. The stack has exactly one dashboard, and it charts every metric.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use kavach_tests::web::WebClient;
use kavach_tests::*;
use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use shared::app::aws::AwsClients;
use shared::core::clock::{ManualClock, SystemClock, UnixMillis};
use shared::core::metrics::{DIMENSION, METRIC_LEVEL, Metric, MetricSink, NAMESPACE};

const REPOSITORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read_yaml(path: &str) -> Yaml {
    let text = std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_yaml::from_str(&text).unwrap_or_else(|error| panic!("{path} parses: {error}"))
}

/// Where a template's values are resolved: the root stack, or a nested application, whose own
/// `AWS::StackName` is not the root's and whose parameters are what the root passes it.
enum Scope {
    Root,
    Nested { logical_id: String, passed: Yaml },
}

/// One template of the deployed stack.
struct Template {
    scope: Scope,
    document: Yaml,
}

impl Template {
    fn resources(&self) -> impl Iterator<Item = &Yaml> {
        self.document["Resources"].as_mapping().expect("resources").values()
    }

    fn resources_of(&self, kind: &'static str) -> impl Iterator<Item = &Yaml> {
        self.resources().filter(move |resource| resource["Type"].as_str() == Some(kind))
    }
}

/// `template.yaml` and every nested application it declares, read from its local `Location`.
fn templates() -> Vec<Template> {
    let root = Template { scope: Scope::Root, document: read_yaml(&format!("{REPOSITORY}/template.yaml")) };
    let nested: Vec<Template> = root.document["Resources"]
        .as_mapping()
        .expect("resources")
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::Serverless::Application"))
        .map(|(logical_id, application)| {
            let logical_id = logical_id.as_str().expect("logical id").to_owned();
            let location = application["Properties"]["Location"].as_str().expect("a local Location");
            Template {
                scope: Scope::Nested { logical_id, passed: application["Properties"]["Parameters"].clone() },
                document: read_yaml(&format!("{REPOSITORY}/{location}")),
            }
        })
        .collect();
    std::iter::once(root).chain(nested).collect()
}

/// What `!Ref name` is in `scope` when the root stack is called `stack`.
fn reference(name: &str, scope: &Scope, stack: &str) -> String {
    match (scope, name) {
        (Scope::Root, "AWS::StackName") => stack.to_owned(),
        // CloudFormation names a nested stack "<parent>-<logical id>-<suffix>": never the name the
        // functions put in the Service dimension.
        (Scope::Nested { logical_id, .. }, "AWS::StackName") => format!("{stack}-{logical_id}-SUFFIX"),
        (Scope::Nested { logical_id, passed }, parameter) => {
            let value = passed.get(parameter).unwrap_or_else(|| panic!("the root passes {logical_id} no {parameter}"));
            resolve(value, &Scope::Root, stack)
        }
        (Scope::Root, other) => panic!("unexpected reference {other}"),
    }
}

/// A CloudFormation value (a string or a `!Ref`) as it would be deployed in a stack named `stack`.
fn resolve(value: &Yaml, scope: &Scope, stack: &str) -> String {
    match value {
        Yaml::String(text) => text.clone(),
        Yaml::Tagged(tagged) if tagged.tag == "!Ref" => {
            reference(tagged.value.as_str().expect("!Ref takes a name"), scope, stack)
        }
        other => panic!("unexpected alarm value {other:?}"),
    }
}

/// `text` with its `!Sub` variables replaced; pseudo-parameters other than the stack name (the
/// region) stay as written.
fn substitute(text: &str, scope: &Scope, stack: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let end = start + rest[start..].find('}').expect("closed ${");
        let name = &rest[start + 2..end];
        out.push_str(&rest[..start]);
        if name.starts_with("AWS::") && name != "AWS::StackName" {
            out.push_str(&rest[start..=end]);
        } else {
            out.push_str(&reference(name, scope, stack));
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Watched {
    namespace: String,
    metric: String,
    dimensions: BTreeMap<String, String>,
    threshold: u64,
}

/// The alarms on Kavach's own EMF metrics; those on AWS's metrics (Lambda, API Gateway, DynamoDB)
/// are pinned by `template_observability.rs`.
fn alarms(stack: &str) -> Vec<Watched> {
    let templates = templates();
    templates
        .iter()
        .flat_map(|template| template.resources_of("AWS::CloudWatch::Alarm").map(move |alarm| (template, alarm)))
        .filter(|(_, alarm)| alarm["Properties"]["Namespace"].as_str() == Some(NAMESPACE))
        .map(|(template, alarm)| {
            let properties = &alarm["Properties"];
            Watched {
                namespace: properties["Namespace"].as_str().expect("namespace").to_owned(),
                metric: properties["MetricName"].as_str().expect("metric").to_owned(),
                dimensions: properties["Dimensions"]
                    .as_sequence()
                    .expect("dimensions")
                    .iter()
                    .map(|d| {
                        (d["Name"].as_str().expect("name").to_owned(), resolve(&d["Value"], &template.scope, stack))
                    })
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

    // Lambda's JSON log filter keeps a line at or above the functions' ApplicationLogLevel and
    // counts one without a valid level or timestamp as INFO: every metric line names the level
    // no setting drops, and its time.
    for line in &lines {
        let line: Json = serde_json::from_str(line).expect("EMF is JSON");
        assert_eq!(line["level"], METRIC_LEVEL, "{line}");
        assert!(line["timestamp"].as_str().is_some_and(|at| at.ends_with('Z') && at.contains('T')), "{line}");
    }

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
fn the_one_dashboard_charts_every_metric_on_the_alarms_dimension() {
    let stack = "kavach-dashboard-test";
    let templates = templates();
    let dashboards: Vec<(&Template, &Yaml)> = templates
        .iter()
        .flat_map(|template| template.resources_of("AWS::CloudWatch::Dashboard").map(move |d| (template, d)))
        .collect();
    assert_eq!(dashboards.len(), 1, "the stack has exactly one dashboard");
    let (template, dashboard) = dashboards[0];
    let body = &dashboard["Properties"]["DashboardBody"];
    let Yaml::Tagged(sub) = body else { panic!("DashboardBody is !Sub") };
    assert_eq!(sub.tag, "!Sub", "DashboardBody is !Sub");
    let body: Json = serde_json::from_str(sub.value.as_str().expect("string")).expect("dashboard JSON");
    let rows: Vec<Vec<String>> = body["widgets"]
        .as_array()
        .expect("widgets")
        .iter()
        .flat_map(|widget| widget["properties"]["metrics"].as_array().cloned().unwrap_or_default())
        .map(|row| {
            // A row is namespace, metric, then dimension name-value pairs, and may end with an
            // object of rendering options, which names nothing. Every variable must be one the
            // template can resolve, or the deployed chart would be empty.
            let cells = row.as_array().expect("metric row");
            cells.iter().filter_map(Json::as_str).map(|cell| substitute(cell, &template.scope, stack)).collect()
        })
        .collect();
    let charted: BTreeSet<&str> = rows.iter().filter(|row| row[0] == NAMESPACE).map(|row| row[1].as_str()).collect();
    for row in rows.iter().filter(|row| row[0] == NAMESPACE) {
        assert_eq!(
            row[2..],
            [DIMENSION.to_owned(), stack.to_owned()],
            "{} is charted on the alarms' dimension",
            row[1]
        );
    }
    for metric in Metric::ALL {
        assert!(charted.contains(metric.name()), "{} is charted", metric.name());
    }
}

/// Every kind of failed credential check counts: in `FailedLogins` (each line naming its kind), on
/// the `/security` dashboard, and toward the account's lockout, whose tenth failure raises
/// `ResetLocked` once. The clock is frozen far ahead, so this test's audit records are the newest
/// the dashboard lists whatever else has run.
#[tokio::test]
async fn every_failure_kind_counts_and_the_tenth_in_a_row_raises_reset_locked_once() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let clock = Arc::new(ManualClock::at(UnixMillis::from_secs(3_900_040_000)));
    let deps = shared::app::bootstrap::init_with(
        config_with(ROOMY),
        clock.clone(),
        AwsClients::from_env().await,
        MetricSink::Memory(lines.clone()),
    )
    .await
    .expect("cold start");
    let gateway = start_gateway(deps.clone()).await;
    let user = new_web_user(&deps).await;
    let emitted_now = |metric: &str| -> Vec<Json> {
        let lines = lines.lock().expect("lines").clone();
        lines
            .iter()
            .map(|line| serde_json::from_str::<Json>(line).expect("EMF is JSON"))
            .filter(|line| line.get(metric).is_some())
            .collect()
    };

    // Three failed re-authentications to see the key, in a session (logging in clears the count).
    let mut owner = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
    clock.advance(std::time::Duration::from_secs(600));
    for _ in 0..3 {
        let csrf = owner.csrf_token().await;
        let refused = owner.post_json("/apikey/reveal", &[("csrf_token", &csrf), ("password", "Wrong1!pass")]).await;
        assert_eq!(refused.status, 401, "{}", refused.text);
    }
    // Three wrong passwords.
    let mut attacker = WebClient::new(gateway, unique_ip());
    for _ in 0..3 {
        let page =
            attacker.post_json("/auth/login", &[("username", &user.username), ("password", "Wrong1!pass")]).await;
        assert_eq!(page.status, 401);
    }
    // Three wrong codes at the login's TOTP step (the password was right: someone has it).
    let step1 = attacker.post("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
    assert_eq!(step1.status, 303);
    let csrf = attacker.get("/auth/login/totp").await.csrf();
    for _ in 0..3 {
        let page = attacker.post_json("/auth/login/totp", &[("totp_code", "000000"), ("csrf_token", &csrf)]).await;
        assert_eq!(page.status, 401, "{}", page.text);
    }
    assert!(emitted_now("ResetLocked").is_empty(), "nine failures lock nothing");
    // The tenth: a wrong code for a reset.
    let reset = [("method", "totp"), ("username", user.username.as_str()), ("totp_code", "000000")];
    assert_eq!(attacker.post_json("/auth/reset-password", &reset).await.status, 400);
    assert_eq!(emitted_now("ResetLocked").len(), 1, "the tenth failure in a row locks");
    assert_eq!(attacker.post_json("/auth/reset-password", &reset).await.status, 400);
    assert_eq!(emitted_now("ResetLocked").len(), 1, "once: the eleventh raises nothing new");

    let kinds: BTreeSet<String> = emitted_now("FailedLogins")
        .iter()
        .map(|line| line["Kind"].as_str().expect("every FailedLogins line names its kind").to_owned())
        .collect();
    for kind in ["reveal", "login", "totp", "reset"] {
        assert!(kinds.contains(kind), "a FailedLogins line of kind {kind}: {kinds:?}");
    }
    let failed: usize = emitted_now("FailedLogins").len();
    assert_eq!(failed, 11, "one line per failure");

    // The administrator's dashboard lists them, each with its kind.
    let admin = new_admin(&deps).await;
    let mut dashboard = WebClient::logged_in(gateway, unique_ip(), &admin, &deps).await;
    let data = dashboard.get_json("/security/api/data").await;
    assert_eq!(data.status, 200, "{}", data.text);
    let listed: BTreeSet<(String, String)> = data.json()["login_activity"]
        .as_array()
        .expect("login activity")
        .iter()
        .filter(|event| event["username"] == user.username.as_str() && event["outcome"] == "failed")
        .map(|event| {
            (
                event["kind"].as_str().unwrap_or_default().to_owned(),
                event["detail"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("reveal", "reauth_failed"),
        ("login", "invalid_credentials"),
        ("login", "invalid_totp"),
        ("reset", "invalid_totp"),
        ("reset", "reset_locked"),
    ] {
        assert!(
            listed.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} on the dashboard: {listed:?}"
        );
    }
}
