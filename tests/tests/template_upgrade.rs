//! An upgrade never replaces a stateful resource. `tests/fixtures/template-baseline.yaml` is the
//! template stacks were deployed from before issue 12 (`git show main:template.yaml` then): every
//! table, KMS key, alias and secret in it must keep its logical id and type in `template.yaml`, and
//! every property whose change CloudFormation performs by replacement ("Update requires:
//! Replacement" in the resource reference) must keep its value. A replaced named table is a new,
//! empty table (every user, key, session, order and ban gone); a replaced key or re-pointed alias
//! leaves the sealed key ring unopenable. Keep the fixture as it is: stacks deployed from it exist.
//! A stateful resource added later is pinned by adding it to the fixture.
//!
//! The second test provisions a stack from the baseline in the emulator, fills it, provisions it
//! again from the current template, and checks every item, the key and the secret are untouched
//! and still work over HTTP.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use kavach_tests::web::WebClient;
use kavach_tests::{
    call, cold_start, new_user, new_web_user, provision_stack_from, required_env, start_gateway, unique_ip,
};
use serde_yaml::Value;
use shared::core::clock::SystemClock;
use shared::core::config::Config;

const BASELINE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/template-baseline.yaml");
const CURRENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");

fn load(path: &str) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).expect(path)).expect("template parses")
}

/// The resource types whose replacement loses data.
const STATEFUL: &[&str] = &["AWS::DynamoDB::Table", "AWS::KMS::Key", "AWS::KMS::Alias", "AWS::SecretsManager::Secret"];

/// Per type, the properties whose change means replacement, with the value CloudFormation assumes
/// when one is absent (so spelling a default out is not a change).
fn replacing(kind: &str) -> &'static [(&'static str, Option<&'static str>)] {
    match kind {
        // AttributeDefinitions is in-place, except for the key attributes' types (below).
        "AWS::DynamoDB::Table" => &[("TableName", None), ("KeySchema", None), ("LocalSecondaryIndexes", None)],
        "AWS::KMS::Key" => &[
            ("KeySpec", Some("SYMMETRIC_DEFAULT")),
            ("KeyUsage", Some("ENCRYPT_DECRYPT")),
            ("MultiRegion", Some("false")),
            ("Origin", Some("AWS_KMS")),
        ],
        // TargetKeyId is an in-place update, but pointing the alias elsewhere loses the ring all
        // the same: the functions find the key by the alias.
        "AWS::KMS::Alias" => &[("AliasName", None), ("TargetKeyId", None)],
        "AWS::SecretsManager::Secret" => &[("Name", None)],
        _ => &[],
    }
}

fn property(resource: &Value, name: &str, default: Option<&str>) -> Value {
    match resource.get("Properties").and_then(|p| p.get(name)) {
        Some(Value::Bool(b)) => Value::String(b.to_string()),
        Some(value) => value.clone(),
        None => default.map_or(Value::Null, |d| Value::String(d.to_owned())),
    }
}

/// A table's key attributes with their types (changing a key attribute's type replaces the table).
fn key_attribute_types(table: &Value) -> BTreeMap<String, String> {
    let properties = &table["Properties"];
    let mut keys: BTreeSet<String> = BTreeSet::new();
    let schemas = std::iter::once(&properties["KeySchema"]).chain(
        properties["LocalSecondaryIndexes"].as_sequence().into_iter().flatten().map(|index| &index["KeySchema"]),
    );
    for schema in schemas {
        for element in schema.as_sequence().into_iter().flatten() {
            keys.insert(element["AttributeName"].as_str().unwrap_or_default().to_owned());
        }
    }
    properties["AttributeDefinitions"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|d| Some((d["AttributeName"].as_str()?.to_owned(), d["AttributeType"].as_str()?.to_owned())))
        .filter(|(name, _)| keys.contains(name))
        .collect()
}

/// Everything in `current` that would make CloudFormation replace, drop or stop retaining a
/// stateful resource of `baseline`.
fn replacements(baseline: &Value, current: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let empty = serde_yaml::Mapping::new();
    let old = baseline["Resources"].as_mapping().unwrap_or(&empty);
    let new = &current["Resources"];
    for (logical, resource) in old {
        let logical = logical.as_str().unwrap_or_default();
        let kind = resource["Type"].as_str().unwrap_or_default();
        if !STATEFUL.contains(&kind) {
            continue;
        }
        let Some(now) = new.get(logical) else {
            problems.push(format!("{logical} ({kind}) is gone: CloudFormation would delete it"));
            continue;
        };
        if now["Type"].as_str() != Some(kind) {
            problems.push(format!("{logical} changed type {kind} → {:?}: a replacement", now["Type"]));
            continue;
        }
        for (name, default) in replacing(kind) {
            let (was, is) = (property(resource, name, *default), property(now, name, *default));
            if was != is {
                problems.push(format!("{logical}.{name} changed {was:?} → {is:?}: CloudFormation replaces the {kind}"));
            }
        }
        if kind == "AWS::DynamoDB::Table" && key_attribute_types(resource) != key_attribute_types(now) {
            problems.push(format!(
                "{logical}: the key attributes' types changed {:?} → {:?}: a replacement",
                key_attribute_types(resource),
                key_attribute_types(now)
            ));
        }
        if now.get("Condition").is_some() {
            problems.push(format!("{logical} became conditional: a false condition deletes it"));
        }
        let retained = |r: &Value, attribute: &str| {
            matches!(r.get(attribute).and_then(Value::as_str), Some("Retain" | "RetainExceptOnCreate"))
        };
        for attribute in ["DeletionPolicy", "UpdateReplacePolicy"] {
            if retained(resource, attribute) && !retained(now, attribute) {
                problems.push(format!("{logical} no longer retained by its {attribute}"));
            }
        }
    }
    problems
}

#[test]
fn no_stateful_resource_of_the_baseline_would_be_replaced_by_an_upgrade() {
    let (baseline, current) = (load(BASELINE), load(CURRENT));
    let stateful = baseline["Resources"]
        .as_mapping()
        .expect("baseline resources")
        .values()
        .filter(|r| STATEFUL.contains(&r["Type"].as_str().unwrap_or_default()))
        .count();
    // The five tables, the key, its alias and the secret: a baseline that lost some would pin less.
    assert_eq!(stateful, 8, "the baseline's stateful resources");
    let problems = replacements(&baseline, &current);
    assert!(problems.is_empty(), "template.yaml would replace stateful resources on upgrade:\n{}", problems.join("\n"));
}

/// The check itself catches each kind of change (each is a real replacement in CloudFormation).
#[test]
fn the_check_refuses_a_new_key_schema_a_renamed_table_a_new_key_spec_and_a_dropped_secret() {
    let baseline = load(BASELINE);
    let edit = |change: &dyn Fn(&mut Value)| {
        let mut template = load(CURRENT);
        change(&mut template);
        replacements(&baseline, &template)
    };
    let key_schema = edit(&|t| {
        t["Resources"]["IdentityTable"]["Properties"]["KeySchema"][0]["AttributeName"] = "id".into();
    });
    assert!(key_schema.iter().any(|p| p.starts_with("IdentityTable.KeySchema")), "{key_schema:?}");
    let renamed = edit(&|t| {
        t["Resources"]["SandboxTable"]["Properties"]["TableName"] = "kavach-ledger".into();
    });
    assert!(renamed.iter().any(|p| p.starts_with("SandboxTable.TableName")), "{renamed:?}");
    let key_type = edit(&|t| {
        t["Resources"]["TrafficTable"]["Properties"]["AttributeDefinitions"][1]["AttributeType"] = "N".into();
    });
    assert!(key_type.iter().any(|p| p.starts_with("TrafficTable: the key attributes")), "{key_type:?}");
    let key_spec = edit(&|t| {
        t["Resources"]["AppKey"]["Properties"]["KeySpec"] = "RSA_2048".into();
    });
    assert!(key_spec.iter().any(|p| p.starts_with("AppKey.KeySpec")), "{key_spec:?}");
    let dropped = edit(&|t| {
        t["Resources"].as_mapping_mut().expect("resources").remove("AppSecret");
    });
    assert!(dropped.iter().any(|p| p.starts_with("AppSecret")), "{dropped:?}");
    let unretained = edit(&|t| {
        t["Resources"]["IdentityTable"]["DeletionPolicy"] = "Delete".into();
    });
    assert!(unretained.iter().any(|p| p.contains("DeletionPolicy")), "{unretained:?}");
    // Spelling out a default is no change.
    let spelled = edit(&|t| {
        t["Resources"]["AppKey"]["Properties"]["KeySpec"] = "SYMMETRIC_DEFAULT".into();
    });
    assert!(spelled.is_empty(), "{spelled:?}");
}

/// Every item of every table, by table name.
async fn every_item(
    dynamodb: &aws_sdk_dynamodb::Client,
    env: &BTreeMap<String, String>,
) -> BTreeMap<String, Vec<String>> {
    let mut tables = BTreeMap::new();
    for variable in ["SECURITY_TABLE", "RATE_LIMIT_TABLE", "IDENTITY_TABLE", "TRAFFIC_TABLE", "SANDBOX_TABLE"] {
        let table = env[variable].clone();
        let mut items: Vec<String> = Vec::new();
        let mut start: Option<std::collections::HashMap<String, AttributeValue>> = None;
        loop {
            let page = dynamodb
                .scan()
                .table_name(&table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .expect("scan");
            items.extend(page.items().iter().map(|item| format!("{:?}", item.iter().collect::<BTreeMap<_, _>>())));
            match page.last_evaluated_key() {
                Some(key) => start = Some(key.clone()),
                None => break,
            }
        }
        items.sort();
        tables.insert(table, items);
    }
    tables
}

#[tokio::test]
async fn provisioning_the_current_template_over_a_stack_of_the_baseline_keeps_every_user_key_session_order_and_ban() {
    let stack = format!("upgrade-{}", std::process::id());
    // The baseline stack as its deploy left it: CloudFormation generated the secret from the
    // baseline's GenerateSecretString (`{"keyring":"","pepper":<64 letters and digits>}`), and
    // `kavach keyring init` then sealed the ring into it (here `kavach provision`, which fills
    // what the secret lacks the same way). The local provisioner refuses a template that gives the
    // secret a value, so it reads the baseline with that one block taken out.
    let aws = shared::app::aws::AwsClients::from_env().await;
    let pepper = aws
        .secrets
        .get_random_password()
        .password_length(64)
        .exclude_punctuation(true)
        .send()
        .await
        .expect("random pepper")
        .random_password
        .expect("a password");
    aws.secrets
        .create_secret()
        .name(format!("{stack}/app"))
        .secret_string(serde_json::json!({"keyring": "", "pepper": pepper}).to_string())
        .send()
        .await
        .expect("the secret CloudFormation generated");
    let mut baseline = load(BASELINE);
    let secret = baseline["Resources"]["AppSecret"]["Properties"].as_mapping_mut().expect("AppSecret properties");
    assert!(secret.remove("GenerateSecretString").is_some(), "the baseline generated the secret");
    let provisionable = std::env::temp_dir().join(format!("kavach-{stack}-baseline.yaml"));
    std::fs::write(&provisionable, serde_yaml::to_string(&baseline).expect("yaml")).expect("write");
    let old_env = provision_stack_from(provisionable.to_str().expect("path"), &stack, &[]).await;
    std::fs::remove_file(&provisionable).ok();
    assert!(
        secret_value(&aws.secrets, &old_env["APP_SECRET_ID"]).await.contains(&pepper),
        "the generated pepper is kept"
    );
    let config = Config::from_lookup(|variable| old_env.get(variable).cloned()).expect("configuration");
    let deps = cold_start(config.clone(), Arc::new(SystemClock)).await;
    let gateway = start_gateway(deps.clone()).await;

    // A trader's state: a web user logged in (a session), an API user with an order on the
    // sandbox ledger, and a ban.
    let web_user = new_web_user(&deps).await;
    let source = unique_ip();
    let mut browser = WebClient::logged_in(gateway, source, &web_user, &deps).await;
    assert_eq!(browser.get("/dashboard").await.status, 200);
    let (_, key) = new_user(&deps).await;
    let order = serde_json::json!({"strategy": "upgrade", "symbol": "SBIN", "exchange": "NSE", "action": "BUY",
        "quantity": "1", "pricetype": "MARKET", "product": "CNC"});
    let placed = call(gateway, "placeorder", &key, order).await;
    assert_eq!(placed.status, 200, "{:?}", placed.body);
    // A global address: the stack's default never-ban set holds every non-global range.
    let banned = tokio::process::Command::new(required_env("KAVACH_ADMIN_BIN"))
        .args(["ban", "add", "1.2.3.4", "--hours", "24"])
        .envs(&old_env)
        .output()
        .await
        .expect("run kavach");
    assert!(banned.status.success(), "{}", String::from_utf8_lossy(&banned.stderr));

    let before = every_item(&aws.dynamodb, &old_env).await;
    let secret_before = secret_value(&aws.secrets, &old_env["APP_SECRET_ID"]).await;

    // The upgrade.
    let new_env = provision_stack_from(CURRENT, &stack, &[]).await;
    for variable in ["SECURITY_TABLE", "RATE_LIMIT_TABLE", "IDENTITY_TABLE", "TRAFFIC_TABLE", "SANDBOX_TABLE"] {
        assert_eq!(old_env[variable], new_env[variable], "{variable} names the same table");
    }
    assert_eq!(old_env["APP_SECRET_ID"], new_env["APP_SECRET_ID"], "the same secret");
    assert_eq!(old_env["KMS_KEY_ID"], new_env["KMS_KEY_ID"], "the same key alias");
    let after = every_item(&aws.dynamodb, &new_env).await;
    assert_eq!(before, after, "every item of every table is as it was");
    assert_eq!(secret_before, secret_value(&aws.secrets, &new_env["APP_SECRET_ID"]).await, "pepper and ring unchanged");

    // And it all still works, from a container started on the upgraded stack.
    let config = Config::from_lookup(|variable| new_env.get(variable).cloned()).expect("configuration");
    let upgraded = cold_start(config, Arc::new(SystemClock)).await;
    let upgraded_gateway = start_gateway(upgraded.clone()).await;
    let book = call(upgraded_gateway, "orderbook", &key, serde_json::json!({})).await;
    assert_eq!(book.status, 200, "{:?}", book.body);
    assert!(book.body.to_string().contains("SBIN"), "the order is on the book: {:?}", book.body);
    let mut again = WebClient::new(upgraded_gateway, source).with_cookie(browser.cookie.clone());
    assert_eq!(again.get("/dashboard").await.status, 200, "the web user's session is still open");
    let bans = tokio::process::Command::new(required_env("KAVACH_ADMIN_BIN"))
        .args(["ban", "list"])
        .envs(&new_env)
        .output()
        .await
        .expect("run kavach");
    assert!(String::from_utf8_lossy(&bans.stdout).contains("1.2.3.4"), "the ban is kept");
}

async fn secret_value(secrets: &aws_sdk_secretsmanager::Client, id: &str) -> String {
    secrets
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .expect("secret")
        .secret_string()
        .unwrap_or_default()
        .to_owned()
}

/// After `sam delete`, `scripts/readopt` finds every kept resource of the stack by the names the
/// template gives them (the key by the kept alias) and writes the IMPORT change set's two files:
/// the kept resources as declared, and their identifiers. (The emulator has no CloudFormation
/// import, so executing the change set is AWS's part; docs/operations.md.)
#[tokio::test]
async fn readopt_finds_every_kept_resource_and_writes_the_import_files() {
    let stack = format!("readopt-{}", std::process::id());
    let env = provision_stack_from(CURRENT, &stack, &[]).await;
    let output = tokio::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/readopt"))
        .arg(&stack)
        .output()
        .await
        .expect("run scripts/readopt");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let state = concat!(env!("CARGO_MANIFEST_DIR"), "/../.kavach/readopt");
    let read = |file: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(format!("{state}/{stack}-{file}.json")).expect(file)).expect(file)
    };
    let identifiers: BTreeMap<String, serde_json::Value> = read("resources")
        .as_array()
        .expect("resources to import")
        .iter()
        .map(|row| (row["LogicalResourceId"].as_str().expect("id").to_owned(), row["ResourceIdentifier"].clone()))
        .collect();
    let aws = shared::app::aws::AwsClients::from_env().await;
    let key = aws.kms.describe_key().key_id(&env["KMS_KEY_ID"]).send().await.expect("key");
    let key_id = key.key_metadata().expect("metadata").key_id().to_owned();
    let expected: BTreeMap<String, serde_json::Value> = [
        ("IdentityTable", serde_json::json!({"TableName": env["IDENTITY_TABLE"]})),
        ("SandboxTable", serde_json::json!({"TableName": env["SANDBOX_TABLE"]})),
        ("SecurityTable", serde_json::json!({"TableName": env["SECURITY_TABLE"]})),
        ("AppKey", serde_json::json!({"KeyId": key_id})),
        ("AppKeyAlias", serde_json::json!({"AliasName": env["KMS_KEY_ID"]})),
        ("AppSecret", serde_json::json!({"Id": env["APP_SECRET_ID"]})),
    ]
    .into_iter()
    .map(|(logical, identifier)| (logical.to_owned(), identifier))
    .collect();
    assert_eq!(identifiers, expected);

    // The import template holds exactly the kept resources, with their deletion policies (an
    // import requires one on each).
    let template = read("template");
    let imported: BTreeSet<&str> =
        template["Resources"].as_object().expect("resources").keys().map(String::as_str).collect();
    assert_eq!(imported, expected.keys().map(String::as_str).collect());
    for (logical, resource) in template["Resources"].as_object().expect("resources") {
        assert_eq!(resource["DeletionPolicy"], "RetainExceptOnCreate", "{logical}");
    }
}
