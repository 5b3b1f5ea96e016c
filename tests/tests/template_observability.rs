//! Observability and cost in the template (issue 12, items 2 and 5), where only the template can
//! show them: AWS's own alarms for every function, table and the API stage, derived from what
//! `template.yaml` declares (a new function or table without alarms fails here); the optional
//! budget and its rights on the alarm topic; a log group with the retention parameter for every
//! function; access logs that cannot record a secret; API Gateway's own answers with Kavach's
//! security headers; detailed metrics off; the catch-all throttle; reserved concurrency; and a
//! log level the EMF metric lines survive.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value as Json;
use serde_yaml::Value as Yaml;
use shared::core::metrics::METRIC_LEVEL;
use shared::http::SECURITY_HEADERS;

const REPOSITORY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

fn read_yaml(path: &str) -> Yaml {
    let text =
        std::fs::read_to_string(format!("{REPOSITORY}/{path}")).unwrap_or_else(|error| panic!("{path}: {error}"));
    serde_yaml::from_str(&text).unwrap_or_else(|error| panic!("{path} parses: {error}"))
}

struct Stack {
    root: Yaml,
    nested: Yaml,
}

fn stack() -> Stack {
    let root = read_yaml("template.yaml");
    let location =
        root["Resources"]["Observability"]["Properties"]["Location"].as_str().expect("Observability's Location");
    let nested = read_yaml(location);
    Stack { root, nested }
}

/// `value`'s tag and inner value, for `!Ref`, `!GetAtt`, `!If`, ….
fn tagged<'a>(value: &'a Yaml, tag: &str) -> Option<&'a Yaml> {
    match value {
        Yaml::Tagged(tagged) if tagged.tag == tag => Some(&tagged.value),
        _ => None,
    }
}

/// The name a `!Ref name` refers to.
fn reference(value: &Yaml) -> Option<&str> {
    tagged(value, "!Ref")?.as_str()
}

fn resources<'a>(template: &'a Yaml, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Yaml)> + 'a {
    template["Resources"]
        .as_mapping()
        .expect("resources")
        .iter()
        .filter(move |(_, resource)| resource["Type"].as_str() == Some(kind))
        .map(|(id, resource)| (id.as_str().expect("logical id"), resource))
}

fn functions(root: &Yaml) -> Vec<(&str, &Yaml)> {
    let functions: Vec<(&str, &Yaml)> = resources(root, "AWS::Serverless::Function").collect();
    assert!(functions.len() >= 11, "the template's functions: {}", functions.len());
    functions
}

fn default<'a>(template: &'a Yaml, parameter: &str) -> &'a Yaml {
    let default = &template["Parameters"][parameter]["Default"];
    assert!(!default.is_null(), "parameter {parameter} has a default");
    default
}

/// A scalar default as text (numbers and strings alike).
fn default_text(template: &Yaml, parameter: &str) -> String {
    match default(template, parameter) {
        Yaml::String(text) => text.clone(),
        Yaml::Number(number) => number.to_string(),
        other => panic!("{parameter}: unexpected default {other:?}"),
    }
}

impl Stack {
    /// The nested parameter the root fills with `!Ref <logical_id>` (or `!Ref logical_id.attribute`).
    fn nested_parameter_for(&self, logical_id: &str) -> String {
        let passed =
            self.root["Resources"]["Observability"]["Properties"]["Parameters"].as_mapping().expect("parameters");
        let names: Vec<&str> = passed
            .iter()
            .filter(|(_, value)| reference(value) == Some(logical_id))
            .map(|(name, _)| name.as_str().expect("name"))
            .collect();
        assert_eq!(
            names.len(),
            1,
            "the root passes !Ref {logical_id} to exactly one Observability parameter: {names:?}"
        );
        let name = names[0].to_owned();
        assert!(self.nested["Parameters"].get(name.as_str()).is_some(), "the nested template declares {name}");
        name
    }

    fn alarms(&self) -> Vec<(&str, &Yaml)> {
        resources(&self.nested, "AWS::CloudWatch::Alarm").map(|(id, alarm)| (id, &alarm["Properties"])).collect()
    }
}

fn dimensions(properties: &Yaml) -> BTreeMap<String, String> {
    properties["Dimensions"]
        .as_sequence()
        .map(|dimensions| {
            dimensions
                .iter()
                .map(|d| {
                    let value = reference(&d["Value"])
                        .map(|name| format!("!Ref {name}"))
                        .unwrap_or_else(|| format!("{:?}", d["Value"]));
                    (d["Name"].as_str().expect("dimension name").to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every (namespace, metric, dimensions) an alarm reads: its own metric, or each metric of its
/// metric math.
fn watched(properties: &Yaml) -> Vec<(String, String, BTreeMap<String, String>)> {
    if let Some(metric) = properties["MetricName"].as_str() {
        let namespace = properties["Namespace"].as_str().expect("namespace").to_owned();
        return vec![(namespace, metric.to_owned(), dimensions(properties))];
    }
    properties["Metrics"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|query| {
            let metric = &query["MetricStat"]["Metric"];
            Some((
                metric["Namespace"].as_str()?.to_owned(),
                metric["MetricName"].as_str()?.to_owned(),
                dimensions(metric),
            ))
        })
        .collect()
}

fn watches(properties: &Yaml, namespace: &str, metric: &str, dimension: (&str, &str)) -> bool {
    watched(properties).iter().any(|(n, m, d)| {
        n == namespace
            && m == metric
            && d.get(dimension.0).map(String::as_str) == Some(&format!("!Ref {}", dimension.1))
    })
}

#[test]
fn every_function_has_an_errors_and_a_throttles_alarm() {
    let stack = stack();
    let alarms = stack.alarms();
    for (function, _) in functions(&stack.root) {
        let parameter = stack.nested_parameter_for(function);
        for metric in ["Errors", "Throttles"] {
            let matching: Vec<&str> = alarms
                .iter()
                .filter(|(_, alarm)| watches(alarm, "AWS/Lambda", metric, ("FunctionName", &parameter)))
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(
                matching.len(),
                1,
                "{function} has one AWS/Lambda {metric} alarm (on FunctionName = !Ref {parameter})"
            );
        }
    }
}

#[test]
fn the_api_stage_has_a_5xx_alarm() {
    let stack = stack();
    let service = stack.nested_parameter_for("AWS::StackName");
    let stage = stack.nested_parameter_for("Api.Stage");
    let found = stack.alarms().into_iter().any(|(_, alarm)| {
        watches(alarm, "AWS/ApiGateway", "5XXError", ("ApiName", &service))
            && watches(alarm, "AWS/ApiGateway", "5XXError", ("Stage", &stage))
    });
    assert!(found, "an AWS/ApiGateway 5XXError alarm on ApiName = !Ref {service}, Stage = !Ref {stage}");
}

#[test]
fn every_table_has_a_throttle_alarm() {
    let stack = stack();
    let alarms = stack.alarms();
    let tables: Vec<&str> = resources(&stack.root, "AWS::DynamoDB::Table").map(|(id, _)| id).collect();
    assert!(tables.len() >= 5, "{tables:?}");
    for table in tables {
        let parameter = stack.nested_parameter_for(table);
        let found = alarms.iter().any(|(_, alarm)| {
            ["ReadThrottleEvents", "WriteThrottleEvents"]
                .iter()
                .all(|metric| watches(alarm, "AWS/DynamoDB", metric, ("TableName", &parameter)))
        });
        assert!(found, "{table} has an alarm on its ReadThrottleEvents and WriteThrottleEvents");
    }
}

#[test]
fn every_alarm_notifies_the_topic_and_treats_missing_data_as_fine() {
    let stack = stack();
    let alarms = stack.alarms();
    assert!(alarms.len() >= 8 + 2 * functions(&stack.root).len() + 1 + 5, "{} alarms", alarms.len());
    for (id, alarm) in alarms {
        let actions: Vec<&str> =
            alarm["AlarmActions"].as_sequence().into_iter().flatten().filter_map(reference).collect();
        assert_eq!(actions, ["AlarmTopic"], "{id} notifies the alarm topic");
        // No datapoint is no traffic, no invocation or no throttling: never an alarm.
        assert_eq!(alarm["TreatMissingData"].as_str(), Some("notBreaching"), "{id}");
    }
}

/// The scanner-ban alarm sums an hour and fires at many bans, not at each one (docs/operations.md).
#[test]
fn scanner_bans_page_only_in_numbers() {
    let stack = stack();
    let (_, bans) = stack
        .alarms()
        .into_iter()
        .find(|(_, alarm)| alarm["MetricName"].as_str() == Some("BansCreated"))
        .expect("a BansCreated alarm");
    let period = bans["Period"].as_u64().expect("period") * bans["EvaluationPeriods"].as_u64().expect("periods");
    assert!(period >= 3600, "bans are summed over at least an hour, not {period} s");
    assert!(bans["Threshold"].as_u64().expect("threshold") >= 5, "one ban is not a page");
}

/// Statements of a policy, `!If [condition, statement, !Ref AWS::NoValue]` opened to
/// `(Some(condition), statement)`.
fn statements(policy: &Yaml) -> Vec<(Option<String>, &Yaml)> {
    policy["Statement"]
        .as_sequence()
        .expect("statements")
        .iter()
        .map(|statement| match tagged(statement, "!If") {
            Some(branches) => (branches[0].as_str().map(str::to_owned), &branches[1]),
            None => (None, statement),
        })
        .collect()
}

fn as_list(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::String(one) => vec![one.clone()],
        Yaml::Sequence(many) => many.iter().filter_map(|item| item.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

fn allows(statement: &Yaml, service: &str, action: &str) -> bool {
    statement["Effect"].as_str() == Some("Allow")
        && as_list(&statement["Principal"]["Service"]).iter().any(|s| s == service)
        && as_list(&statement["Action"]).iter().any(|a| {
            a.eq_ignore_ascii_case(action) || a.strip_suffix('*').is_some_and(|prefix| action.starts_with(prefix))
        })
}

#[test]
fn the_optional_budget_may_publish_to_the_encrypted_alarm_topic() {
    let stack = stack();
    assert_eq!(default_text(&stack.root, "MonthlyBudget"), "0", "no budget unless asked");
    assert_eq!(stack.nested_parameter_for("MonthlyBudget"), "MonthlyBudget");
    let budgets: Vec<(&str, &Yaml)> = resources(&stack.nested, "AWS::Budgets::Budget").collect();
    assert_eq!(budgets.len(), 1, "one budget");
    let (_, budget) = budgets[0];
    let condition = budget["Condition"].as_str().expect("the budget is conditional");
    // BudgetEnabled: !Not [!Equals [!Ref MonthlyBudget, "0"]]
    let test = tagged(&stack.nested["Conditions"][condition], "!Not").expect("!Not");
    let equals = tagged(&test[0], "!Equals").expect("!Equals");
    assert_eq!(reference(&equals[0]), Some("MonthlyBudget"));
    assert_eq!(equals[1].as_str(), Some("0"), "0 is off");
    let properties = &budget["Properties"];
    assert_eq!(reference(&properties["Budget"]["BudgetLimit"]["Amount"]), Some("MonthlyBudget"));
    assert_eq!(properties["Budget"]["TimeUnit"].as_str(), Some("MONTHLY"));
    for notification in properties["NotificationsWithSubscribers"].as_sequence().expect("notifications") {
        let subscribers = notification["Subscribers"].as_sequence().expect("subscribers");
        assert!(
            subscribers
                .iter()
                .all(|s| s["SubscriptionType"] == "SNS" && reference(&s["Address"]) == Some("AlarmTopic"))
        );
    }

    // The topic policy keeps CloudWatch and adds Budgets under the budget's condition.
    let (_, policy) = resources(&stack.nested, "AWS::SNS::TopicPolicy").next().expect("a topic policy");
    let document = statements(&policy["Properties"]["PolicyDocument"]);
    assert!(
        document.iter().any(|(c, s)| c.is_none() && allows(s, "cloudwatch.amazonaws.com", "sns:Publish")),
        "CloudWatch may always publish"
    );
    assert!(
        document
            .iter()
            .any(|(c, s)| c.as_deref() == Some(condition) && allows(s, "budgets.amazonaws.com", "sns:Publish")),
        "Budgets may publish when the budget exists"
    );
    // The topic's key lets Budgets encrypt what it publishes.
    let key =
        reference(&stack.nested["Resources"]["AlarmTopic"]["Properties"]["KmsMasterKeyId"]).expect("the topic's key");
    let key_policy = statements(&stack.nested["Resources"][key]["Properties"]["KeyPolicy"]);
    for action in ["kms:Decrypt", "kms:GenerateDataKey"] {
        assert!(
            key_policy
                .iter()
                .any(|(c, s)| c.as_deref() == Some(condition) && allows(s, "budgets.amazonaws.com", action)),
            "{key}'s policy grants budgets.amazonaws.com {action}"
        );
    }
}

/// `!Ref LogRetentionDays` as a log group's retention, and no fixed name.
fn assert_retained(root: &Yaml, group: &str, owner: &str) {
    let resource = &root["Resources"][group];
    assert_eq!(resource["Type"].as_str(), Some("AWS::Logs::LogGroup"), "{owner} logs to {group}, a declared log group");
    assert_eq!(reference(&resource["Properties"]["RetentionInDays"]), Some("LogRetentionDays"), "{group}'s retention");
    // A generated name: a group left behind by an earlier stack of the same name never collides.
    assert!(resource["Properties"]["LogGroupName"].is_null(), "{group} has no fixed name");
    // And it goes with the stack: retained, a group with a generated name would only be an orphan.
    assert_eq!(resource["DeletionPolicy"].as_str(), Some("Delete"), "{group}");
}

#[test]
fn every_function_logs_to_a_declared_group_with_the_retention_parameter() {
    let stack = stack();
    assert_eq!(default_text(&stack.root, "LogRetentionDays"), "30");
    for (function, resource) in functions(&stack.root) {
        let group = reference(&resource["Properties"]["LoggingConfig"]["LogGroup"]).unwrap_or_else(|| {
            panic!("{function} names its log group: LoggingConfig: {{ LogGroup: !Ref {function}LogGroup }}")
        });
        assert_retained(&stack.root, group, function);
    }
    let access = &stack.root["Resources"]["Api"]["Properties"]["AccessLogSetting"]["DestinationArn"];
    let group = tagged(access, "!GetAtt")
        .and_then(Yaml::as_str)
        .and_then(|arn| arn.strip_suffix(".Arn"))
        .expect("!GetAtt <group>.Arn");
    assert_retained(&stack.root, group, "the API's access log");
}

/// The `$context` variables the access log may record: none can carry a key, a session, a
/// password or a webhook's secret. A new one belongs here only if the same is true of it.
const LOGGABLE: &[&str] = &[
    "$context.requestId",
    "$context.requestTimeEpoch",
    "$context.identity.sourceIp",
    "$context.httpMethod",
    "$context.resourcePath",
    "$context.stage",
    "$context.protocol",
    "$context.status",
    "$context.responseLength",
    "$context.responseLatency",
    "$context.integration.status",
    "$context.integration.latency",
    "$context.error.responseType",
    "$context.wafResponseCode",
];

#[test]
fn access_logs_are_json_with_the_resource_path_and_nothing_that_carries_a_secret() {
    let stack = stack();
    let format = stack.root["Resources"]["Api"]["Properties"]["AccessLogSetting"]["Format"].as_str().expect("a Format");
    let fields: BTreeMap<String, Json> =
        serde_json::from_str(format).unwrap_or_else(|e| panic!("the format is JSON: {e}\n{format}"));
    let variables: BTreeSet<&str> = fields.values().filter_map(Json::as_str).collect();
    assert!(variables.contains("$context.requestId"), "API Gateway requires the request id");
    assert!(variables.contains("$context.resourcePath"), "the route is recorded by its resource path");
    // The raw path holds a webhook's secret (/strategy/webhook/<secret>); overrides, query strings
    // and headers can hold a key.
    for forbidden in [
        "$context.path",
        "requestOverride",
        "responseOverride",
        "querystring",
        "header",
        "$input",
        "apiKey",
        "authorizer",
    ] {
        assert!(!format.contains(forbidden), "the access log must not record {forbidden}: {format}");
    }
    for variable in variables {
        assert!(LOGGABLE.contains(&variable), "{variable} is not known to be secret-free");
    }
    assert_eq!(format.matches("$context").count(), fields.len(), "every $context variable is a whole field");
}

#[test]
fn access_logging_has_the_account_cloudwatch_role() {
    let stack = stack();
    let (account, resource) =
        resources(&stack.root, "AWS::ApiGateway::Account").next().expect("an AWS::ApiGateway::Account");
    let role = tagged(&resource["Properties"]["CloudWatchRoleArn"], "!GetAtt")
        .and_then(Yaml::as_str)
        .and_then(|arn| arn.strip_suffix(".Arn"))
        .expect("CloudWatchRoleArn: !GetAtt <role>.Arn");
    let role = &stack.root["Resources"][role];
    assert_eq!(role["Type"].as_str(), Some("AWS::IAM::Role"));
    let trust = &role["Properties"]["AssumeRolePolicyDocument"]["Statement"][0];
    assert_eq!(as_list(&trust["Principal"]["Service"]), ["apigateway.amazonaws.com"]);
    let managed = format!("{:?}", role["Properties"]["ManagedPolicyArns"]);
    assert!(managed.contains("AmazonAPIGatewayPushToCloudWatchLogs"), "{managed}");
    // Account-wide: another API may rely on it after this stack is gone.
    assert_eq!(role["DeletionPolicy"].as_str(), Some("Retain"));
    assert_eq!(stack.root["Resources"]["Api"]["DependsOn"].as_str(), Some(account), "the stage waits for the role");
}

#[test]
fn api_gateway_responses_carry_the_security_headers() {
    let stack = stack();
    let mut expected: BTreeMap<String, String> =
        SECURITY_HEADERS.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    expected.insert("cache-control".to_owned(), "no-store".to_owned());
    let responses = &stack.root["Resources"]["Api"]["Properties"]["GatewayResponses"];
    for kind in ["DEFAULT_4XX", "DEFAULT_5XX"] {
        let headers =
            responses[kind]["ResponseParameters"]["Headers"].as_mapping().unwrap_or_else(|| panic!("{kind} headers"));
        let actual: BTreeMap<String, String> = headers
            .iter()
            .map(|(name, value)| {
                let value = value.as_str().expect("a static value");
                let value = value
                    .strip_prefix('\'')
                    .and_then(|v| v.strip_suffix('\''))
                    .unwrap_or_else(|| panic!("{kind}: a static header value is in single quotes: {value}"));
                (name.as_str().expect("header").to_ascii_lowercase(), value.to_owned())
            })
            .collect();
        assert_eq!(actual, expected, "{kind} sends what shared::http::SECURITY_HEADERS sends");
    }
}

fn method_settings(root: &Yaml) -> &Vec<Yaml> {
    root["Resources"]["Api"]["Properties"]["MethodSettings"].as_sequence().expect("MethodSettings")
}

#[test]
fn detailed_metrics_are_off_unless_asked_for() {
    let stack = stack();
    assert_eq!(default_text(&stack.root, "DetailedMetrics"), "false");
    let equals = tagged(&stack.root["Conditions"]["DetailedMetricsOn"], "!Equals").expect("DetailedMetricsOn: !Equals");
    assert_eq!((reference(&equals[0]), equals[1].as_str()), (Some("DetailedMetrics"), Some("true")));
    for setting in method_settings(&stack.root) {
        let enabled =
            tagged(&setting["MetricsEnabled"], "!If").expect("MetricsEnabled: !If [DetailedMetricsOn, true, false]");
        assert_eq!(enabled[0].as_str(), Some("DetailedMetricsOn"));
        assert_eq!((enabled[1].as_bool(), enabled[2].as_bool()), (Some(true), Some(false)));
        assert_eq!(
            setting["DataTraceEnabled"].as_bool(),
            Some(false),
            "data tracing would log bodies, which carry keys"
        );
    }
}

#[test]
fn the_catch_all_has_its_own_low_throttle() {
    let stack = stack();
    let catch_all = functions(&stack.root).into_iter().any(|(_, function)| {
        function["Properties"]["Events"]
            .as_mapping()
            .into_iter()
            .flatten()
            .any(|(_, event)| event["Properties"]["Path"] == "/{proxy+}")
    });
    assert!(catch_all, "a function serves /{{proxy+}}");
    let setting = method_settings(&stack.root)
        .iter()
        .find(|setting| setting["ResourcePath"] == "/~1{proxy+}")
        .expect("a method setting for /{proxy+} (written /~1{proxy+})");
    assert_eq!(setting["HttpMethod"].as_str(), Some("*"));
    assert_eq!(reference(&setting["ThrottlingRateLimit"]), Some("CatchAllThrottleRate"));
    assert_eq!(reference(&setting["ThrottlingBurstLimit"]), Some("CatchAllThrottleBurst"));
    let rate: u64 = default_text(&stack.root, "CatchAllThrottleRate").parse().expect("rate");
    let stage: u64 = default_text(&stack.root, "StageThrottleRate").parse().expect("stage rate");
    assert!(rate <= 10 && rate * 10 <= stage, "the catch-all's {rate}/s is low beside the stage's {stage}/s");
}

#[test]
fn every_function_has_a_reserved_concurrency_that_a_small_quota_can_turn_off() {
    let stack = stack();
    assert_eq!(
        default_text(&stack.root, "ReservedConcurrency"),
        "off",
        "a first deploy on a new account's quota of 10 cannot fail"
    );
    let equals =
        tagged(&stack.root["Conditions"]["ReserveConcurrency"], "!Equals").expect("ReserveConcurrency: !Equals");
    assert_eq!((reference(&equals[0]), equals[1].as_str()), (Some("ReservedConcurrency"), Some("on")));
    let mapping = &stack.root["Mappings"]["Concurrency"];
    let mut total = 0;
    for (function, resource) in functions(&stack.root) {
        let reserved = tagged(&resource["Properties"]["ReservedConcurrentExecutions"], "!If")
            .unwrap_or_else(|| panic!("{function}: ReservedConcurrentExecutions: !If [ReserveConcurrency, !FindInMap [Concurrency, {function}, Reserved], !Ref AWS::NoValue]"));
        assert_eq!(reserved[0].as_str(), Some("ReserveConcurrency"), "{function}");
        let find = tagged(&reserved[1], "!FindInMap").expect("!FindInMap");
        assert_eq!(
            (find[0].as_str(), find[1].as_str(), find[2].as_str()),
            (Some("Concurrency"), Some(function), Some("Reserved"))
        );
        assert_eq!(reference(&reserved[2]), Some("AWS::NoValue"), "{function}");
        let value = mapping[function]["Reserved"].as_u64().unwrap_or_else(|| panic!("Concurrency.{function}.Reserved"));
        assert!(value >= 1, "{function}: 0 would throttle it entirely");
        total += value;
    }
    let reserved = |function: &str| mapping[function]["Reserved"].as_u64().expect("reserved");
    for flood in ["MarketFunction", "NotFoundFunction"] {
        for critical in ["OrdersFunction", "AuthFunction"] {
            assert!(reserved(flood) < reserved(critical), "{flood} is capped below {critical}");
        }
    }
    // AWS keeps 100 unreserved: the parameter says what quota "on" needs.
    let description = stack.root["Parameters"]["ReservedConcurrency"]["Description"].as_str().expect("description");
    assert!(
        description.contains(&format!("{total} in all")) && description.contains(&format!("at least {}", total + 100)),
        "the description names the total {total} and the quota {}: {description}",
        total + 100
    );
}

/// Lambda drops JSON lines below the functions' ApplicationLogLevel; the metric lines carry a level
/// every allowed setting keeps.
#[test]
fn every_log_level_the_template_allows_keeps_the_metric_lines() {
    let stack = stack();
    const LEVELS: [&str; 6] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"];
    let rank = |level: &str| {
        LEVELS.iter().position(|known| known.eq_ignore_ascii_case(level)).unwrap_or_else(|| panic!("{level}"))
    };
    let logging = &stack.root["Globals"]["Function"]["LoggingConfig"];
    assert_eq!(logging["LogFormat"].as_str(), Some("JSON"));
    assert_eq!(reference(&logging["ApplicationLogLevel"]), Some("LogLevel"));
    let allowed = as_list(&stack.root["Parameters"]["LogLevel"]["AllowedValues"]);
    assert!(!allowed.is_empty());
    for level in allowed {
        assert!(
            rank(METRIC_LEVEL) >= rank(&level),
            "at ApplicationLogLevel {level}, the {METRIC_LEVEL} metric lines are dropped"
        );
    }
    for (function, resource) in functions(&stack.root) {
        let own = &resource["Properties"]["LoggingConfig"];
        assert!(
            own["ApplicationLogLevel"].is_null() && own["LogFormat"].is_null(),
            "{function} keeps the global level and format"
        );
    }
}
