//! Alarms deliver (issue 12, item 2): the alarm topic is either unencrypted or encrypted with a key
//! of the stack's own whose policy lets CloudWatch publish. CloudWatch cannot use the AWS-managed
//! `alias/aws/sns`, whose policy nobody can change, so a topic under it drops every notification.

use serde_yaml::Value as Yaml;

const OBSERVABILITY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/observability/template.yaml");

/// The logical id a `!Ref X` or `!GetAtt X.Arn` names.
fn referenced(value: &Yaml) -> Option<String> {
    let Yaml::Tagged(tagged) = value else { return None };
    let text = tagged.value.as_str()?;
    match tagged.tag.to_string().as_str() {
        "!Ref" => Some(text.to_owned()),
        "!GetAtt" => text.split('.').next().map(str::to_owned),
        _ => None,
    }
}

fn as_list(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::String(one) => vec![one.clone()],
        Yaml::Sequence(many) => many.iter().filter_map(|item| item.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn cloudwatch_alarms_can_publish_to_the_alarm_topic() {
    let text = std::fs::read_to_string(OBSERVABILITY).expect("observability template");
    let template: Yaml = serde_yaml::from_str(&text).expect("parses");
    let resources = template["Resources"].as_mapping().expect("resources");
    let topics: Vec<&Yaml> =
        resources.values().filter(|resource| resource["Type"].as_str() == Some("AWS::SNS::Topic")).collect();
    assert!(!topics.is_empty(), "an alarm topic");
    for topic in topics {
        let key = &topic["Properties"]["KmsMasterKeyId"];
        if key.is_null() {
            continue; // Unencrypted: CloudWatch publishes without any key.
        }
        let key_id = referenced(key).unwrap_or_else(|| {
            panic!("the topic's key must be one this stack declares, not {key:?} (alias/aws/sns refuses CloudWatch)")
        });
        let key = &resources[key_id.as_str()];
        assert_eq!(key["Type"].as_str(), Some("AWS::KMS::Key"), "{key_id} is a KMS key");
        let statements = key["Properties"]["KeyPolicy"]["Statement"].as_sequence().expect("a key policy");
        let grants_cloudwatch = statements.iter().any(|statement| {
            let actions = as_list(&statement["Action"]);
            statement["Effect"].as_str() == Some("Allow")
                && as_list(&statement["Principal"]["Service"]).contains(&"cloudwatch.amazonaws.com".to_owned())
                && actions.iter().any(|action| action == "kms:Decrypt")
                && actions.iter().any(|action| action.starts_with("kms:GenerateDataKey"))
        });
        assert!(grants_cloudwatch, "{key_id}'s policy lets cloudwatch.amazonaws.com Decrypt and GenerateDataKey");
    }
}
