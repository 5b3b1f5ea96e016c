//! Creates what `template.yaml` declares (tables, KMS key and alias, the app secret) in whatever
//! `AWS_ENDPOINT_URL` points at; the caller then fills the secret with
//! `shared::store::app_secret::ensure`, as the template's `KeyRing` custom resource does at
//! deploy. The template is read, not copied: a table added there is provisioned here with no other
//! change.
//!
//! Against real AWS, CloudFormation creates the resources and runs the custom resource: nothing is
//! left to do by hand but `kavach setup-token`.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use serde_yaml::Value;

/// Pseudo-parameters as a local account would have them.
pub struct Stack {
    pub name: String,
    pub region: String,
    pub account: String,
    pub parameters: BTreeMap<String, String>,
}

/// Logical id → what `!Ref` and `!GetAtt …Arn` resolve to once created.
#[derive(Default)]
struct Physical {
    refs: BTreeMap<String, String>,
    arns: BTreeMap<String, String>,
}

fn tag_name(tagged: &serde_yaml::value::TaggedValue) -> String {
    tagged.tag.to_string().trim_start_matches('!').to_owned()
}

impl Stack {
    fn resolve(&self, value: &Value, physical: &Physical) -> anyhow::Result<String> {
        match value {
            Value::String(text) => Ok(text.clone()),
            Value::Number(number) => Ok(number.to_string()),
            Value::Bool(flag) => Ok(flag.to_string()),
            Value::Tagged(tagged) => self.intrinsic(&tag_name(tagged), &tagged.value, physical),
            Value::Mapping(map) if map.len() == 1 => {
                let (key, inner) = map.iter().next().context("empty intrinsic")?;
                let name = key.as_str().context("intrinsic name")?;
                self.intrinsic(name.trim_start_matches("Fn::"), inner, physical)
            }
            other => bail!("cannot resolve {other:?}"),
        }
    }

    fn intrinsic(&self, name: &str, argument: &Value, physical: &Physical) -> anyhow::Result<String> {
        match name {
            "Ref" => self.reference(argument.as_str().context("!Ref takes a name")?, physical),
            "Sub" => {
                let mut text = argument.as_str().context("only the string form of !Sub is supported")?.to_owned();
                while let Some(start) = text.find("${") {
                    let end = start + text[start..].find('}').context("unclosed ${ in !Sub")?;
                    let variable = text[start + 2..end].to_owned();
                    let value = match variable.split_once('.') {
                        Some((resource, "Arn")) => {
                            physical.arns.get(resource).cloned().context(format!("no Arn for {resource}"))?
                        }
                        _ => self.reference(&variable, physical)?,
                    };
                    text.replace_range(start..=end, &value);
                }
                Ok(text)
            }
            "GetAtt" => {
                let target = match argument {
                    Value::String(text) => text.clone(),
                    Value::Sequence(parts) => parts.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("."),
                    _ => bail!("!GetAtt takes Resource.Attribute"),
                };
                let resource =
                    target.strip_suffix(".Arn").context(format!("only .Arn attributes are supported: {target}"))?;
                physical.arns.get(resource).cloned().context(format!("{resource} has no Arn yet"))
            }
            other => bail!("intrinsic {other} is not supported by the local provisioner"),
        }
    }

    fn reference(&self, name: &str, physical: &Physical) -> anyhow::Result<String> {
        Ok(match name {
            "AWS::StackName" => self.name.clone(),
            "AWS::Region" => self.region.clone(),
            "AWS::AccountId" => self.account.clone(),
            "AWS::Partition" => "aws".into(),
            "AWS::URLSuffix" => "amazonaws.com".into(),
            _ => match (self.parameters.get(name), physical.refs.get(name)) {
                (Some(value), _) | (None, Some(value)) => value.clone(),
                (None, None) => bail!("`{name}` is neither a parameter nor a resource created so far"),
            },
        })
    }
}

/// Parameter defaults from the template, overridden by `--param Name=Value`.
pub fn parameters(template: &Value, overrides: &[(String, String)]) -> BTreeMap<String, String> {
    let mut parameters = BTreeMap::new();
    if let Some(declared) = template.get("Parameters").and_then(Value::as_mapping) {
        for (name, spec) in declared {
            if let (Some(name), Some(default)) = (name.as_str(), spec.get("Default")) {
                let default = match default {
                    Value::String(text) => text.clone(),
                    Value::Number(number) => number.to_string(),
                    _ => continue,
                };
                parameters.insert(name.to_owned(), default);
            }
        }
    }
    parameters.extend(overrides.iter().cloned());
    parameters
}

pub struct Provisioned {
    /// The function environment (Globals), resolved to the created resources.
    pub environment: BTreeMap<String, String>,
}

pub async fn provision(
    template: &Value,
    stack: &Stack,
    dynamodb: &aws_sdk_dynamodb::Client,
    kms: &aws_sdk_kms::Client,
    secrets: &aws_sdk_secretsmanager::Client,
) -> anyhow::Result<Provisioned> {
    let resources = template.get("Resources").and_then(Value::as_mapping).context("template has no Resources")?;
    let mut physical = Physical::default();
    // Keys before aliases (aliases name them); everything else in any order.
    let mut ordered: Vec<(&str, &Value)> = resources.iter().filter_map(|(k, v)| Some((k.as_str()?, v))).collect();
    ordered.sort_by_key(|(_, resource)| resource.get("Type").and_then(Value::as_str) == Some("AWS::KMS::Alias"));

    for (logical, resource) in ordered {
        let properties = resource.get("Properties").cloned().unwrap_or(Value::Null);
        match resource.get("Type").and_then(Value::as_str) {
            Some("AWS::DynamoDB::Table") => {
                let name =
                    stack.resolve(properties.get("TableName").context(format!("{logical}: TableName"))?, &physical)?;
                create_table(dynamodb, &name, &properties).await.with_context(|| format!("table {name}"))?;
                physical.arns.insert(
                    logical.into(),
                    format!("arn:aws:dynamodb:{}:{}:table/{name}", stack.region, stack.account),
                );
                physical.refs.insert(logical.into(), name);
            }
            Some("AWS::KMS::Key") => {
                let alias_target = format!("alias/{}", stack.name);
                let existing = kms.describe_key().key_id(&alias_target).send().await.ok().and_then(|o| o.key_metadata);
                let metadata = match existing {
                    Some(metadata) => metadata,
                    None => {
                        let description = properties.get("Description").and_then(Value::as_str).unwrap_or_default();
                        kms.create_key()
                            .description(description)
                            .send()
                            .await?
                            .key_metadata
                            .context("CreateKey returned no metadata")?
                    }
                };
                physical.arns.insert(logical.into(), metadata.arn.clone().unwrap_or_default());
                physical.refs.insert(logical.into(), metadata.key_id);
            }
            Some("AWS::KMS::Alias") => {
                let alias = stack.resolve(properties.get("AliasName").context("AliasName")?, &physical)?;
                let target = stack.resolve(properties.get("TargetKeyId").context("TargetKeyId")?, &physical)?;
                let exists = kms.describe_key().key_id(&alias).send().await.is_ok();
                if !exists {
                    kms.create_alias().alias_name(&alias).target_key_id(&target).send().await.context("CreateAlias")?;
                }
                physical.refs.insert(logical.into(), alias);
            }
            Some("AWS::SecretsManager::Secret") => {
                let name = stack.resolve(properties.get("Name").context(format!("{logical}: Name"))?, &physical)?;
                let arn = create_secret(secrets, &name, &properties).await.with_context(|| format!("secret {name}"))?;
                physical.arns.insert(logical.into(), arn.clone());
                // `!Ref` of a secret is its ARN, as in CloudFormation.
                physical.refs.insert(logical.into(), arn);
            }
            _ => {}
        }
    }

    let variables = template
        .get("Globals")
        .and_then(|g| g.get("Function"))
        .and_then(|f| f.get("Environment"))
        .and_then(|e| e.get("Variables"))
        .and_then(Value::as_mapping)
        .context("template has no Globals.Function.Environment.Variables")?;
    let mut environment = BTreeMap::new();
    for (name, value) in variables {
        let name = name.as_str().context("variable name")?;
        environment
            .insert(name.to_owned(), stack.resolve(value, &physical).with_context(|| format!("variable {name}"))?);
    }
    Ok(Provisioned { environment })
}

/// A table's or an index's `KeySchema`.
fn key_schema(properties: &Value) -> anyhow::Result<Vec<KeySchemaElement>> {
    properties
        .get("KeySchema")
        .and_then(Value::as_sequence)
        .context("KeySchema")?
        .iter()
        .map(|element| {
            Ok(KeySchemaElement::builder()
                .attribute_name(element.get("AttributeName").and_then(Value::as_str).context("AttributeName")?)
                .key_type(KeyType::from(element.get("KeyType").and_then(Value::as_str).context("KeyType")?))
                .build()?)
        })
        .collect()
}

async fn create_table(client: &aws_sdk_dynamodb::Client, name: &str, properties: &Value) -> anyhow::Result<()> {
    if client.describe_table().table_name(name).send().await.is_ok() {
        return Ok(());
    }
    let mut request = client.create_table().table_name(name).billing_mode(BillingMode::PayPerRequest);
    for definition in
        properties.get("AttributeDefinitions").and_then(Value::as_sequence).context("AttributeDefinitions")?
    {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(definition.get("AttributeName").and_then(Value::as_str).context("AttributeName")?)
                .attribute_type(ScalarAttributeType::from(
                    definition.get("AttributeType").and_then(Value::as_str).context("AttributeType")?,
                ))
                .build()?,
        );
    }
    for element in key_schema(properties)? {
        request = request.key_schema(element);
    }
    for index in properties.get("GlobalSecondaryIndexes").and_then(Value::as_sequence).into_iter().flatten() {
        let projection = index.get("Projection").and_then(|p| p.get("ProjectionType")).and_then(Value::as_str);
        request = request.global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name(index.get("IndexName").and_then(Value::as_str).context("IndexName")?)
                .set_key_schema(Some(key_schema(index)?))
                .projection(
                    Projection::builder().projection_type(ProjectionType::from(projection.unwrap_or("ALL"))).build(),
                )
                .build()?,
        );
    }
    request.send().await.context("CreateTable")?;
    if let Some(ttl) = properties.get("TimeToLiveSpecification") {
        let attribute = ttl.get("AttributeName").and_then(Value::as_str).context("TTL AttributeName")?;
        let enabled = ttl.get("Enabled").and_then(Value::as_bool).unwrap_or(false);
        client
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder().attribute_name(attribute).enabled(enabled).build()?,
            )
            .send()
            .await
            .context("UpdateTimeToLive")?;
    }
    Ok(())
}

/// Creates the secret empty, as CloudFormation does for one without `SecretString` or
/// `GenerateSecretString`: its value belongs to `app_secret::ensure`, never to the template. A
/// template that gave it a value would let an edit of that block regenerate the pepper, so that is
/// refused here too.
async fn create_secret(
    client: &aws_sdk_secretsmanager::Client,
    name: &str,
    properties: &Value,
) -> anyhow::Result<String> {
    for owned in ["SecretString", "GenerateSecretString"] {
        if properties.get(owned).is_some() {
            bail!(
                "{owned}: CloudFormation would own the secret's value and regenerate it when that block changes; \
                 the KeyRing custom resource fills it instead"
            );
        }
    }
    if let Ok(existing) = client.describe_secret().secret_id(name).send().await {
        return existing.arn.context("DescribeSecret returned no ARN");
    }
    let description = properties.get("Description").and_then(Value::as_str).unwrap_or_default();
    let created = client.create_secret().name(name).description(description).send().await.context("CreateSecret")?;
    created.arn.context("CreateSecret returned no ARN")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_intrinsics_like_cloudformation() {
        let stack = Stack {
            name: "kavach".into(),
            region: "ap-south-1".into(),
            account: "123456789012".into(),
            parameters: BTreeMap::from([("ApiRateLimit".into(), "50 per second".into())]),
        };
        let mut physical = Physical::default();
        physical.refs.insert("Table".into(), "kavach-security".into());
        physical.arns.insert("Key".into(), "arn:aws:kms:x:y:key/1".into());
        let yaml: Value = serde_yaml::from_str(
            r#"
a: !Sub "${AWS::StackName}-x-${AWS::Region}"
b: !Ref Table
c: !Ref ApiRateLimit
d: { "Fn::Sub": "alias/${AWS::StackName}" }
e: !GetAtt Key.Arn
f: { Ref: Table }
"#,
        )
        .expect("yaml");
        let resolve = |key: &str| stack.resolve(&yaml[key], &physical).expect(key);
        assert_eq!(resolve("a"), "kavach-x-ap-south-1");
        assert_eq!(resolve("b"), "kavach-security");
        assert_eq!(resolve("c"), "50 per second");
        assert_eq!(resolve("d"), "alias/kavach");
        assert_eq!(resolve("e"), "arn:aws:kms:x:y:key/1");
        assert_eq!(resolve("f"), "kavach-security");
        let unknown: Value = serde_yaml::from_str("!Ref Nope").expect("yaml");
        assert!(stack.resolve(&unknown, &physical).is_err());
    }
}
