//! The template as CloudFormation receives it: `scripts/render-template` runs SAM's own transform
//! (samtranslator, as `sam deploy` does, offline), and these checks read its output, so they pin
//! what SAM generates (the stage, the OpenAPI body, the roles) and not only what the source says.
//! A transform that fails fails every test here.

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
    // Deletion protection on the tables that hold the accounts and the ledger.
    for logical in ["IdentityTable", "SandboxTable"] {
        assert_eq!(resource(&template, logical)["Properties"]["DeletionProtectionEnabled"], true, "{logical}");
    }
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
