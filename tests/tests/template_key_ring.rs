//! The template's side of "no manual step after `sam deploy`" (issue 12, item 3): CloudFormation
//! creates the app secret empty and owns none of its value, the `KeyRing` custom resource (run by
//! KeyRingFunction) fills it, nothing serves before it has, and its function has the time to
//! answer every request.

use serde_yaml::Value;

fn template() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    serde_yaml::from_str(&text).expect("template parses")
}

/// `(tag, argument)` of a short-form intrinsic such as `!GetAtt X.Arn`.
fn tagged(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => Some((tagged.tag.to_string(), &tagged.value)),
        _ => None,
    }
}

fn depends_on(resource: &Value) -> Vec<String> {
    match resource.get("DependsOn") {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Sequence(many)) => many.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn cloudformation_owns_no_value_of_the_app_secret() {
    let template = template();
    let secret = &template["Resources"]["AppSecret"];
    assert_eq!(secret["Type"], "AWS::SecretsManager::Secret");
    for owned in ["GenerateSecretString", "SecretString"] {
        assert!(
            secret["Properties"].get(owned).is_none(),
            "AppSecret has {owned}: CloudFormation would regenerate the pepper when that block changes"
        );
    }
    // Kept on delete and update; deleted only if the deploy that created it fails, so a retry is not
    // blocked by its fixed name (template_rendered.rs pins the stateful resources' policies).
    assert_eq!(secret["DeletionPolicy"], "RetainExceptOnCreate");
    assert_eq!(secret["UpdateReplacePolicy"], "Retain");
}

#[test]
fn the_key_ring_custom_resource_is_served_by_its_own_function() {
    let template = template();
    let resources = &template["Resources"];
    let key_ring = &resources["KeyRing"];
    assert_eq!(key_ring["Type"], "Custom::KeyRing");
    let (tag, target) = tagged(&key_ring["Properties"]["ServiceToken"]).expect("ServiceToken is an intrinsic");
    assert_eq!((tag.as_str(), target.as_str()), ("!GetAtt", Some("KeyRingFunction.Arn")));
    // Should the function die without answering, the stack waits this long, not CloudFormation's hour.
    let timeout = key_ring["Properties"]["ServiceTimeout"].as_u64().expect("ServiceTimeout");
    assert!((60..=600).contains(&timeout), "ServiceTimeout {timeout} s");

    let function = &resources["KeyRingFunction"];
    assert_eq!(function["Type"], "AWS::Serverless::Function");
    assert_eq!(function["Metadata"]["BuildProperties"]["Binary"], "key-ring");
    assert!(function["Properties"].get("Events").is_none(), "only CloudFormation invokes it");
    assert!(depends_on(function).is_empty(), "it runs before everything that waits for it");
    // Its work, then every attempt to answer, fit in its timeout: a request is always answered.
    let answering = key_ring::WORK_BUDGET.as_secs()
        + u64::from(key_ring::PUT_ATTEMPTS) * key_ring::PUT_TIMEOUT.as_secs()
        + u64::from(key_ring::PUT_ATTEMPTS);
    let lambda_timeout = function["Properties"]["Timeout"].as_u64().expect("KeyRingFunction Timeout");
    assert!(answering < lambda_timeout, "{answering} s of work and answers within a {lambda_timeout} s timeout");
    assert!(lambda_timeout < timeout, "the function gives up before CloudFormation does");
}

/// SAM passes a function's DependsOn to its AWS::Lambda::Function, and the REST API's definition
/// names every function with an Api event, so the API, its deployment and its stage are created
/// after the custom resource succeeded: no request reaches a function without its ring.
#[test]
fn nothing_serves_before_the_key_ring_exists() {
    let template = template();
    let resources = template["Resources"].as_mapping().expect("Resources");
    let functions: Vec<(&str, &Value)> = resources
        .iter()
        .filter(|(_, resource)| resource["Type"] == "AWS::Serverless::Function")
        .filter_map(|(name, resource)| Some((name.as_str()?, resource)))
        .filter(|(name, _)| *name != "KeyRingFunction")
        .collect();
    assert!(functions.len() >= 11, "{} functions", functions.len());
    for (name, function) in functions {
        assert!(depends_on(function).iter().any(|on| on == "KeyRing"), "{name} does not DependsOn KeyRing");
    }
}
