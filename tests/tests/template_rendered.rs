//! The template as CloudFormation receives it: `scripts/render-template` runs SAM's own transform
//! (samtranslator, as `sam deploy` does, offline), and these checks read its output, so they pin
//! what SAM generates (the stage, the OpenAPI body, the roles) and not only what the source says.
//! A transform that fails fails every test here. Pinned: the deletion policies of the stateful
//! resources, the custom domain, the guided deploy's prompts, the log groups and their retention,
//! the access-log format and that no log format can record a secret, the alarm topic's key, and
//! that nothing serves before the key-ring custom resource has run.

use std::collections::BTreeSet;

use serde_json::Value;

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// The rendered template, with `parameters` (`Name=Value`) overriding the defaults.
fn rendered(parameters: &[&str]) -> Value {
    let output = std::process::Command::new(format!("{ROOT}/scripts/render-template"))
        .args(parameters)
        .output()
        .expect("run scripts/render-template");
    assert!(output.status.success(), "SAM's transform failed:\n{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("rendered template is JSON")
}

fn resource<'a>(template: &'a Value, logical: &str) -> &'a Value {
    let found = &template["Resources"][logical];
    assert!(found.is_object(), "{logical} is not in the rendered template");
    found
}

#[test]
fn stateful_resources_are_retained_except_when_their_own_create_fails() {
    let template = rendered(&[]);
    for logical in ["IdentityTable", "SandboxTable", "SecurityTable", "AppKey", "AppKeyAlias", "AppSecret"] {
        let found = resource(&template, logical);
        assert_eq!(found["DeletionPolicy"], "RetainExceptOnCreate", "{logical}");
        assert_eq!(found["UpdateReplacePolicy"], "Retain", "{logical}");
    }
    // Deletion protection on the tables that hold the accounts and the ledger, turned on by the
    // deploy's last step: a table protected from its creation would stop a failed first deploy's
    // rollback (DELETE_FAILED), and its fixed name would block the next attempt.
    for logical in ["IdentityTable", "SandboxTable"] {
        let properties = &resource(&template, logical)["Properties"];
        assert!(properties.get("DeletionProtectionEnabled").is_none(), "{logical} is protected from its creation");
    }
    let protection = resource(&template, "TableProtection");
    assert_eq!(protection["Type"], "Custom::TableProtection");
    assert_eq!(protection["Properties"]["ServiceToken"]["Fn::GetAtt"][0], "KeyRingFunction");
    let waits_for: Vec<&str> =
        protection["DependsOn"].as_array().expect("DependsOn").iter().filter_map(|v| v.as_str()).collect();
    for (logical, found) in template["Resources"].as_object().expect("resources") {
        let serving = found["Type"] == "AWS::Lambda::Function" && logical != "KeyRingFunction";
        // The observability stack is passed the stage's ARN, so waiting for it waits for the stage.
        if serving || found["Type"] == "AWS::CloudFormation::Stack" {
            assert!(waits_for.contains(&logical.as_str()), "TableProtection does not wait for {logical}");
        }
    }
    assert!(waits_for.contains(&"KeyRing"), "TableProtection waits for the key ring");
    // The counters and the request log go with the stack, so they can never block a redeploy.
    for logical in ["RateLimitTable", "TrafficTable"] {
        assert_eq!(resource(&template, logical)["DeletionPolicy"], "Delete", "{logical}");
    }
    // Every table CloudFormation would otherwise delete by default says what it does.
    for (logical, found) in template["Resources"].as_object().expect("resources") {
        if found["Type"] == "AWS::DynamoDB::Table" {
            assert!(found["DeletionPolicy"].is_string(), "{logical} has no explicit DeletionPolicy");
        }
    }
}

#[test]
fn the_custom_domain_is_created_only_when_named_and_maps_its_root_to_the_stage_over_tls_1_2() {
    let template = rendered(&[
        "DomainName=trade.example.in",
        "DomainCertificateArn=arn:aws:acm:ap-south-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666",
    ]);
    let condition = serde_json::json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainName"}, ""]}]});
    assert_eq!(template["Conditions"]["HasCustomDomain"], condition);

    let domain = resource(&template, "ApiDomain");
    assert_eq!(domain["Type"], "AWS::ApiGateway::DomainName");
    assert_eq!(domain["Condition"], "HasCustomDomain");
    assert_eq!(domain["Properties"]["SecurityPolicy"], "TLS_1_2");
    assert_eq!(domain["Properties"]["EndpointConfiguration"]["Types"], serde_json::json!(["REGIONAL"]));
    assert_eq!(domain["Properties"]["RegionalCertificateArn"], serde_json::json!({"Ref": "DomainCertificateArn"}));

    let mapping = resource(&template, "ApiDomainMapping");
    assert_eq!(mapping["Condition"], "HasCustomDomain");
    assert!(mapping["Properties"].get("BasePath").is_none(), "mapped at the root: {mapping}");
    assert_eq!(mapping["Properties"]["RestApiId"], serde_json::json!({"Ref": "Api"}));
    // SAM's generated stage: the mapping waits for it.
    let stage = mapping["Properties"]["Stage"]["Ref"].as_str().expect("stage ref");
    assert_eq!(resource(&template, stage)["Type"], "AWS::ApiGateway::Stage");

    // With a domain, the execute-api endpoint is off (in the OpenAPI body SAM generates).
    let body = &resource(&template, "Api")["Properties"]["Body"];
    assert_eq!(
        body["x-amazon-apigateway-endpoint-configuration"]["disableExecuteApiEndpoint"],
        serde_json::json!({"Fn::If": ["HasCustomDomain", true, false]})
    );
    // The URL clients and the pages use is the domain's, at its root.
    let url = &template["Outputs"]["ApiUrl"]["Value"]["Fn::If"];
    assert_eq!(url[0], "HasCustomDomain");
    assert_eq!(url[1], serde_json::json!({"Fn::Sub": "https://${DomainName}"}));
    assert!(url[2]["Fn::Sub"].as_str().is_some_and(|u| u.ends_with("/prod")), "{url}");
    // The DNS step's target, only with a domain.
    assert_eq!(template["Outputs"]["DomainDnsTarget"]["Condition"], "HasCustomDomain");
    assert_eq!(
        template["Outputs"]["DomainDnsTarget"]["Value"],
        serde_json::json!({"Fn::GetAtt": ["ApiDomain", "RegionalDomainName"]})
    );
    // A domain without a certificate is refused before anything is created.
    let rule = &template["Rules"]["DomainNeedsCertificate"];
    assert_eq!(rule["RuleCondition"], condition);
    assert_eq!(
        rule["Assertions"][0]["Assert"],
        serde_json::json!({"Fn::Not": [{"Fn::Equals": [{"Ref": "DomainCertificateArn"}, ""]}]})
    );
}

/// `sam deploy --guided` asks "<Function> has no authentication. Is this okay? [y/N]" for every
/// function behind an API without `Auth`, and Enter (No) aborts the deploy. SAM CLI's own check,
/// run on the template, finds no function to ask about.
#[test]
fn sam_deploy_guided_asks_no_authentication_question() {
    let script = "from samcli.lib.providers.sam_stack_provider import SamLocalStackProvider\n\
                  from samcli.commands.deploy.auth_utils import auth_per_resource\n\
                  stacks, _ = SamLocalStackProvider.get_stacks('template.yaml')\n\
                  checked = auth_per_resource(stacks)\n\
                  assert checked, 'no API function found'\n\
                  print(' '.join(sorted({name for name, authorized in checked if not authorized})))\n";
    let output = std::process::Command::new(format!("{ROOT}/.venv/bin/python"))
        .args(["-c", script])
        .current_dir(ROOT)
        .env("AWS_DEFAULT_REGION", "ap-south-1")
        .env("SAM_CLI_TELEMETRY", "0")
        .output()
        .expect("run the .venv's python (scripts/lib.sh ensure_python_tools creates it)");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let asked = String::from_utf8_lossy(&output.stdout);
    assert_eq!(asked.trim(), "", "sam deploy --guided would ask about (and abort on Enter for): {asked}");
}

/// Every string in `value`, keys included.
fn strings<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter().for_each(|item| strings(item, out)),
        Value::Object(map) => map.iter().for_each(|(key, item)| {
            out.push(key);
            strings(item, out);
        }),
        _ => {}
    }
}

/// The nested observability template (plain CloudFormation, no transform: what CloudFormation
/// receives is the file itself), as JSON.
fn nested() -> Value {
    let text = std::fs::read_to_string(format!("{ROOT}/infra/observability/template.yaml")).expect("nested template");
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).expect("nested template parses");
    long_form(&yaml)
}

/// YAML's short intrinsics in CloudFormation's JSON form: `!Ref x` → `{"Ref": x}`, `!GetAtt a.b` →
/// `{"Fn::GetAtt": [a, b]}`, `!Sub …` → `{"Fn::Sub": …}`.
fn long_form(yaml: &serde_yaml::Value) -> Value {
    match yaml {
        serde_yaml::Value::Tagged(tagged) => {
            let name = tagged.tag.to_string();
            let name = name.trim_start_matches('!');
            let inner = long_form(&tagged.value);
            match (name, &inner) {
                ("Ref", _) => serde_json::json!({ "Ref": inner }),
                ("GetAtt", Value::String(path)) => {
                    let (resource, attribute) = path.split_once('.').unwrap_or((path, ""));
                    serde_json::json!({ "Fn::GetAtt": [resource, attribute] })
                }
                _ => serde_json::json!({ format!("Fn::{name}"): inner }),
            }
        }
        serde_yaml::Value::Sequence(items) => Value::Array(items.iter().map(long_form).collect()),
        serde_yaml::Value::Mapping(map) => Value::Object(
            map.iter().map(|(key, value)| (key.as_str().unwrap_or_default().to_owned(), long_form(value))).collect(),
        ),
        other => serde_json::to_value(other).expect("a scalar"),
    }
}

#[test]
fn every_function_logs_json_to_a_declared_group_kept_for_the_retention_parameter() {
    let template = rendered(&[]);
    let resources = template["Resources"].as_object().expect("resources");
    let functions: Vec<(&String, &Value)> =
        resources.iter().filter(|(_, r)| r["Type"] == "AWS::Lambda::Function").collect();
    assert!(functions.len() >= 11, "the functions SAM generated: {}", functions.len());
    for (logical, function) in functions {
        // SAM merges Globals' LoggingConfig with the function's own LogGroup: both must survive.
        let logging = &function["Properties"]["LoggingConfig"];
        assert_eq!(logging["LogFormat"], "JSON", "{logical}");
        let group = logging["LogGroup"]["Ref"].as_str().unwrap_or_else(|| panic!("{logical} names no log group"));
        assert_eq!(resources[group]["Type"], "AWS::Logs::LogGroup", "{logical} → {group}");
        assert_eq!(resources[group]["Properties"]["RetentionInDays"], serde_json::json!({"Ref": "LogRetentionDays"}));
    }
}

#[test]
fn the_stage_writes_json_access_logs_by_resource_path_and_no_log_format_can_record_a_secret() {
    let template = rendered(&[]);
    let stages: Vec<&Value> = template["Resources"]
        .as_object()
        .expect("resources")
        .values()
        .filter(|r| r["Type"] == "AWS::ApiGateway::Stage")
        .collect();
    assert_eq!(stages.len(), 1, "one stage");
    let stage = &stages[0]["Properties"];
    let format = stage["AccessLogSetting"]["Format"].as_str().expect("an access-log format");
    let record: serde_json::Map<String, Value> = serde_json::from_str(format).expect("the format is one JSON object");
    assert_eq!(record["resource"], "$context.resourcePath", "{format}");
    for setting in stage["MethodSettings"].as_array().expect("method settings") {
        assert_eq!(setting["DataTraceEnabled"], false, "data tracing logs bodies: {setting}");
        assert!(
            setting.get("LoggingLevel").is_none_or(|level| level == "ERROR" || level == "OFF"),
            "execution logs at INFO: {setting}"
        );
    }
    // Nowhere in what CloudFormation receives, root or nested, does a log format name the raw
    // path (a webhook's URL is its secret), a body, a parameter, a header or an API key.
    let (root, nested) = (template, nested());
    let mut all = Vec::new();
    strings(&root, &mut all);
    strings(&nested, &mut all);
    for forbidden in
        ["$context.path", "$input.", "$context.requestOverride", "$context.identity.apiKey", "$method.request"]
    {
        let found: Vec<&&str> = all.iter().filter(|text| text.contains(forbidden)).collect();
        assert!(found.is_empty(), "{forbidden} in {found:?}");
    }
}

#[test]
fn the_alarm_topic_is_encrypted_under_a_key_cloudwatch_may_use() {
    let nested = nested();
    let resources = nested["Resources"].as_object().expect("resources");
    let topics: Vec<&Value> = resources.values().filter(|r| r["Type"] == "AWS::SNS::Topic").collect();
    assert_eq!(topics.len(), 1);
    // Not alias/aws/sns, whose policy CloudWatch cannot be granted: the stack's own key.
    let key = topics[0]["Properties"]["KmsMasterKeyId"]["Ref"].as_str().expect("the topic's key is a !Ref");
    assert_eq!(resources[key]["Type"], "AWS::KMS::Key");
    let statements = resources[key]["Properties"]["KeyPolicy"]["Statement"].as_array().expect("key policy");
    let cloudwatch = statements
        .iter()
        .find(|s| s["Principal"]["Service"] == "cloudwatch.amazonaws.com")
        .expect("a statement for CloudWatch");
    let actions = cloudwatch["Action"].to_string();
    assert!(actions.contains("kms:Decrypt") && actions.contains("kms:GenerateDataKey"), "{actions}");
    // And the root passes the nested stack what it names everything by.
    let root = rendered(&[]);
    let observability = resource(&root, "Observability");
    assert_eq!(observability["Type"], "AWS::CloudFormation::Stack");
    assert_eq!(observability["Properties"]["Parameters"]["ServiceName"], serde_json::json!({"Ref": "AWS::StackName"}));
}

/// The functions the REST API invokes, by logical id, from the integration URIs of SAM's OpenAPI
/// body (`arn:…:lambda:path/…/functions/${PingFunction.Arn}/invocations`).
fn api_functions(template: &Value) -> BTreeSet<String> {
    let mut texts = Vec::new();
    strings(&resource(template, "Api")["Properties"]["Body"]["paths"], &mut texts);
    texts
        .iter()
        .filter_map(|text| text.split("/functions/${").nth(1))
        .filter_map(|rest| rest.split(".Arn}").next())
        .map(str::to_owned)
        .collect()
}

#[test]
fn nothing_serves_before_the_key_ring_custom_resource_has_run() {
    let template = rendered(&[]);
    let key_ring = resource(&template, "KeyRing");
    assert_eq!(key_ring["Type"], "Custom::KeyRing");
    assert_eq!(key_ring["Properties"]["ServiceToken"], serde_json::json!({"Fn::GetAtt": ["KeyRingFunction", "Arn"]}));
    let served = api_functions(&template);
    assert!(served.len() >= 10, "the functions behind the API: {served:?}");
    let resources = template["Resources"].as_object().expect("resources");
    let functions = resources.iter().filter(|(_, r)| r["Type"] == "AWS::Lambda::Function");
    for (logical, function) in functions.filter(|(logical, _)| *logical != "KeyRingFunction") {
        let depends = &function["DependsOn"];
        let waits = depends == "KeyRing" || depends.as_array().is_some_and(|all| all.iter().any(|d| d == "KeyRing"));
        assert!(waits, "{logical} may start before the key ring exists: DependsOn {depends}");
    }
    // The API's methods name those functions, so its deployment and stage come after the ring.
    for logical in &served {
        assert_eq!(resources[logical.as_str()]["Type"], "AWS::Lambda::Function", "{logical}");
    }
}
