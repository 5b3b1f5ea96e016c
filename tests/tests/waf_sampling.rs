//! A webhook's URI is its credential (`/strategy/webhook/<secret>`), and WAF sampled requests keep
//! the full URI for three hours, so no webhook request may be sampled. AWS WAF samples per rule: a
//! request is sampled by every sampling rule that matches it (a `Count` rule too), and a request
//! no rule terminates by the web ACL's default action. Here the web ACL's rules are walked in
//! priority order for webhook URIs as the WAF sees them (with and without the stage prefix, in
//! other cases, percent-encoded): every rule that can match one before it is terminated must have
//! sampling off, one must terminate them all, and a per-IP flood limit must still apply to them.
//! Any statement this walk does not model fails the test rather than being guessed at.

use serde_yaml::Value;

const ROOT_TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");
const WAF_TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/observability/template.yaml");

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).expect(path)).expect(path)
}

/// The webhook route's literal prefix in the root template, e.g. `/strategy/webhook/`.
fn webhook_prefix() -> String {
    let template = yaml(ROOT_TEMPLATE);
    let events = template["Resources"]["WebhookFunction"]["Properties"]["Events"].as_mapping().expect("webhook events");
    let path = events.values().find_map(|event| event["Properties"]["Path"].as_str()).expect("a webhook route path");
    let (prefix, _) = path.split_once('{').expect("the webhook route takes its id as a path parameter");
    prefix.to_owned()
}

/// URI paths a webhook request may reach the WAF with, each carrying the secret.
fn webhook_uris(prefix: &str) -> Vec<String> {
    let secret = "0123456789abcdef0123456789abcdef";
    vec![
        format!("/prod{prefix}{secret}"),
        format!("{prefix}{secret}"),
        format!("/prod{prefix}{secret}/"),
        format!("/prod{}{secret}", prefix.to_uppercase()),
        format!("/prod{}{secret}", prefix.replace('/', "%2F")),
        format!("/prod{}{secret}", prefix.replace('w', "%77")),
    ]
}

/// Percent-decoding as WAF's `URL_DECODE`.
fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let hex =
            bytes.get(index + 1..index + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[index], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                index += 3;
            }
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a statement can match a request for `uri`: `Some(true)` always, `Some(false)` never,
/// `None` depending on what the walk does not know (a managed group's verdict, a rate).
fn matches(statement: &Value, uri: &str) -> Option<bool> {
    let map = statement.as_mapping().expect("a statement is a mapping");
    assert_eq!(map.len(), 1, "one statement type per statement: {statement:?}");
    let (kind, body) = map.iter().next().expect("a statement");
    match kind.as_str().expect("statement type") {
        "ByteMatchStatement" => {
            assert!(body["FieldToMatch"].get("UriPath").is_some(), "only UriPath byte matches are modelled: {body:?}");
            let mut transformations: Vec<&Value> =
                body["TextTransformations"].as_sequence().map(|list| list.iter().collect()).unwrap_or_default();
            transformations.sort_by_key(|t| t["Priority"].as_u64());
            let mut field = uri.to_owned();
            for transformation in transformations {
                field = match transformation["Type"].as_str() {
                    Some("NONE") => field,
                    Some("URL_DECODE") => url_decode(&field),
                    Some("LOWERCASE") => field.to_lowercase(),
                    other => panic!("text transformation {other:?} is not modelled"),
                };
            }
            let search = body["SearchString"].as_str().expect("SearchString");
            Some(match body["PositionalConstraint"].as_str() {
                Some("CONTAINS") => field.contains(search),
                Some("STARTS_WITH") => field.starts_with(search),
                Some("EXACTLY") => field == search,
                other => panic!("positional constraint {other:?} is not modelled"),
            })
        }
        // Matches once the address is over the limit, only among requests its scope-down matches.
        "RateBasedStatement" => match body.get("ScopeDownStatement") {
            Some(scope) if matches(scope, uri) == Some(false) => Some(false),
            _ => None,
        },
        "ManagedRuleGroupStatement" => match body.get("ScopeDownStatement") {
            Some(scope) if matches(scope, uri) == Some(false) => Some(false),
            _ => None,
        },
        other => panic!("{other} is not modelled by this test"),
    }
}

fn sampled(visibility: &Value) -> bool {
    visibility["SampledRequestsEnabled"].as_bool().expect("SampledRequestsEnabled is a boolean")
}

/// The web ACL's rules by priority, and its own visibility (the default action's).
fn web_acl() -> (Vec<Value>, Value) {
    let template = yaml(WAF_TEMPLATE);
    let acl = &template["Resources"]["WebAcl"]["Properties"];
    let mut rules: Vec<Value> = acl["Rules"].as_sequence().expect("Rules").clone();
    rules.sort_by_key(|rule| rule["Priority"].as_u64().expect("Priority"));
    (rules, acl["VisibilityConfig"].clone())
}

#[test]
fn no_waf_rule_and_not_the_default_action_samples_a_webhook_uri() {
    let prefix = webhook_prefix();
    let (rules, acl_visibility) = web_acl();
    for uri in webhook_uris(&prefix) {
        let mut terminated_by = None;
        for rule in &rules {
            let name = rule["Name"].as_str().expect("Name");
            let verdict = matches(&rule["Statement"], &uri);
            if verdict != Some(false) {
                assert!(!sampled(&rule["VisibilityConfig"]), "rule {name} samples {uri}, whose path is its credential");
            }
            // Allow and Block end the evaluation; Count, Captcha and a rule group's verdicts may not.
            let terminating = ["Allow", "Block"].iter().any(|action| rule["Action"].get(action).is_some());
            if verdict == Some(true) && terminating {
                terminated_by = Some(name.to_owned());
                break;
            }
        }
        assert!(
            terminated_by.is_some() || !sampled(&acl_visibility),
            "{uri} reaches the default action, which samples it: a rule with sampling off must allow webhook paths first"
        );
    }
}

#[test]
fn webhook_requests_keep_a_per_ip_flood_limit_before_they_are_let_through() {
    let prefix = webhook_prefix();
    let (rules, _) = web_acl();
    for uri in webhook_uris(&prefix) {
        let limited = rules
            .iter()
            .take_while(|rule| {
                !(matches(&rule["Statement"], &uri) == Some(true) && rule["Action"].get("Allow").is_some())
            })
            .any(|rule| {
                let rate = &rule["Statement"]["RateBasedStatement"];
                rule["Action"].get("Block").is_some()
                    && rate["AggregateKeyType"].as_str() == Some("IP")
                    && matches(&rule["Statement"], &uri).is_none()
            });
        assert!(limited, "{uri} is allowed past the WAF without meeting a per-IP rate rule that blocks first");
    }
}
