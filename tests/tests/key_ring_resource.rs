//! The `KeyRing` custom resource (functions/key-ring) against the emulator, driven as CloudFormation
//! drives it: a request in, the answer PUT to the request's pre-signed `ResponseURL` (a loopback
//! server here). Create fills an empty secret (CloudFormation now creates it without a value) with
//! a pepper and a ring sealed for the stack, and a function's cold start then opens that ring; a
//! second Create (the upgrade that adds the resource to an older stack), Update and Delete change
//! nothing; an older template's secret keeps its pepper; a failure is answered FAILED, naming the
//! remedy, and writes nothing.

use std::sync::Arc;

use kavach_tests::cfn::{Delivered, ResponseSink, key_ring_request, stack_id};
use kavach_tests::{call, config_with, gateway_with_user, unique_name};
use serde_json::{Value, json};
use shared::app::aws::AwsClients;
use shared::core::clock::SystemClock;
use shared::core::config::Config;
use shared::store::app_secret;

/// A stack of the test's own: its name (bound into the ring's encryption context) and an empty
/// secret, as CloudFormation creates `AppSecret`.
struct Stack {
    name: String,
    secret: String,
    aws: AwsClients,
    sink: ResponseSink,
}

impl Stack {
    async fn new() -> Self {
        let aws = AwsClients::from_env().await;
        let name = unique_name("keyring-stack");
        let secret = format!("{name}/app");
        aws.secrets.create_secret().name(&secret).send().await.expect("create the empty secret");
        Self { name, secret, aws, sink: ResponseSink::start().await }
    }

    fn overrides(&self) -> [(&str, &str); 2] {
        [("STACK_NAME", self.name.as_str()), ("APP_SECRET_ID", self.secret.as_str())]
    }

    fn config(&self) -> Config {
        config_with(&self.overrides())
    }

    /// Sends `kind` to the real handler, as KeyRingFunction's runtime would, and returns the one
    /// answer CloudFormation received, checked against the request it answers.
    async fn request(&self, kind: &str, physical_id: Option<&str>, config: Config) -> Value {
        let url = self.sink.url(&unique_name(kind));
        let request = key_ring_request(kind, &self.name, &url, physical_id);
        let provider = key_ring::Provider::new(Ok(config), AwsClients::from_env().await).expect("provider");
        provider.handle(request.clone()).await.expect("answered");
        let delivered: Vec<Delivered> = self.sink.delivered_to(&url);
        assert_eq!(delivered.len(), 1, "exactly one answer per request: {delivered:?}");
        let answer = &delivered[0];
        assert_eq!(answer.method, "PUT");
        assert_eq!(answer.content_type, None, "the pre-signed URL is signed without a content type");
        for echoed in ["StackId", "RequestId", "LogicalResourceId"] {
            assert_eq!(answer.body[echoed], request[echoed], "{echoed} echoed: {}", answer.body);
        }
        if let Some(physical_id) = physical_id {
            assert_eq!(answer.body["PhysicalResourceId"], physical_id, "the physical id is kept: {}", answer.body);
        }
        answer.body.clone()
    }

    /// The secret's current version id and value (`None` while it has none).
    async fn value(&self) -> Option<(String, Value)> {
        let output = self.aws.secrets.get_secret_value().secret_id(&self.secret).send().await.ok()?;
        let text = output.secret_string().expect("a string value");
        Some((output.version_id().expect("version").to_owned(), serde_json::from_str(text).expect("JSON")))
    }
}

#[tokio::test]
async fn create_fills_an_empty_secret_then_nothing_changes_it_and_the_functions_open_the_ring() {
    let stack = Stack::new().await;
    assert!(stack.value().await.is_none(), "CloudFormation's secret starts without a value");

    let created = stack.request("Create", None, stack.config()).await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    assert_eq!(created["PhysicalResourceId"], format!("{}-key-ring", stack.name), "{created}");
    assert_eq!(
        created["Data"],
        json!({ "PepperCreated": "true", "KeyRingCreated": "true", "KeyRingOpens": "true" }),
        "{created}"
    );
    let (version, value) = stack.value().await.expect("Create stored a value");
    let pepper = value["pepper"].as_str().expect("a pepper");
    assert!(pepper.len() == 64 && pepper.chars().all(|c| c.is_ascii_hexdigit()), "256 random bits as hex");
    let ring = app_secret::open_ring(&stack.aws.kms, &stack.config(), value["keyring"].as_str().expect("a ring"))
        .await
        .expect("the ring opens under this stack's encryption context");
    assert_eq!(ring.ids(), [1]);
    let other_stack = config_with(&[("STACK_NAME", "another-stack"), ("APP_SECRET_ID", stack.secret.as_str())]);
    assert!(
        app_secret::open_ring(&stack.aws.kms, &other_stack, value["keyring"].as_str().unwrap_or_default())
            .await
            .is_err(),
        "bound to the stack's real name"
    );
    let physical_id = created["PhysicalResourceId"].as_str().expect("physical id").to_owned();

    // The upgrade's Create, an Update and a Delete: success, and not a byte of the secret changes.
    let again = stack.request("Create", None, stack.config()).await;
    assert_eq!(again["Status"], "SUCCESS", "{again}");
    assert_eq!(again["PhysicalResourceId"], physical_id, "the same physical id every time");
    assert_eq!(
        again["Data"],
        json!({ "PepperCreated": "false", "KeyRingCreated": "false", "KeyRingOpens": "true" }),
        "{again}"
    );
    for kind in ["Update", "Delete"] {
        let answer = stack.request(kind, Some(&physical_id), stack.config()).await;
        assert_eq!(answer["Status"], "SUCCESS", "{kind}: {answer}");
    }
    assert_eq!(stack.value().await, Some((version, value)), "no new version, the same pepper and ring");

    // A function's real cold start opens the ring, and an API key hashed with the pepper verifies.
    let (_deps, gateway, key) = gateway_with_user(&stack.overrides(), Arc::new(SystemClock)).await;
    let pong = call(gateway, "ping", &key, json!({})).await;
    assert_eq!((pong.status, &pong.body["data"]["message"]), (200, &json!("pong")), "{:?}", pong.body);
}

/// The secret an older template's `GenerateSecretString` made, before `kavach keyring init` ran.
#[tokio::test]
async fn the_upgrade_keeps_the_pepper_cloudformation_generated_and_adds_only_the_ring() {
    let stack = Stack::new().await;
    let old_pepper = "Vb3kQ9mZ2xR7pL4tN8wS1yC6fH0jD5gA3eU7iK2oT9rX4vB8nM1qW6sE0zY5uJ3h";
    let old = json!({ "keyring": "", "pepper": old_pepper, "kept": "other fields stay" }).to_string();
    stack.aws.secrets.put_secret_value().secret_id(&stack.secret).secret_string(old).send().await.expect("put");

    let created = stack.request("Create", None, stack.config()).await;
    assert_eq!(created["Status"], "SUCCESS", "{created}");
    assert_eq!(
        created["Data"],
        json!({ "PepperCreated": "false", "KeyRingCreated": "true", "KeyRingOpens": "true" }),
        "{created}"
    );
    let (_, value) = stack.value().await.expect("value");
    assert_eq!(value["pepper"], old_pepper, "every existing password and key hash still verifies");
    assert_eq!(value["kept"], "other fields stay");
    app_secret::open_ring(&stack.aws.kms, &stack.config(), value["keyring"].as_str().expect("ring"))
        .await
        .expect("the new ring opens");
}

#[tokio::test]
async fn a_create_that_cannot_seal_answers_failed_naming_the_remedy_and_writes_nothing() {
    let stack = Stack::new().await;
    let overrides = [
        ("STACK_NAME", stack.name.as_str()),
        ("APP_SECRET_ID", stack.secret.as_str()),
        ("KMS_KEY_ID", "alias/no-such-key"),
    ];
    let failed = stack.request("Create", None, config_with(&overrides)).await;
    assert_eq!(failed["Status"], "FAILED", "{failed}");
    let reason = failed["Reason"].as_str().expect("a reason");
    for remedy in ["alias/no-such-key", "KeyRingFunction's role", "sam deploy", "kavach keyring init"] {
        assert!(reason.contains(remedy), "the reason names `{remedy}`: {reason}");
    }
    assert_eq!(failed["PhysicalResourceId"], format!("{}-key-ring", stack.name), "a failed Create has an id too");
    assert!(stack.value().await.is_none(), "nothing was written: no pepper without its ring");

    // The rollback's Delete of the failed resource succeeds and deletes nothing.
    let deleted = stack.request("Delete", Some(&format!("{}-key-ring", stack.name)), stack.config()).await;
    assert_eq!(deleted["Status"], "SUCCESS", "{deleted}");
}

#[tokio::test]
async fn a_ring_would_be_bound_to_the_wrong_stack_name_so_create_refuses() {
    let stack = Stack::new().await;
    let misnamed = config_with(&[("STACK_NAME", "not-this-stack"), ("APP_SECRET_ID", stack.secret.as_str())]);
    let failed = stack.request("Create", None, misnamed).await;
    assert_eq!(failed["Status"], "FAILED", "{failed}");
    let reason = failed["Reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not-this-stack") && reason.contains(&stack.name), "{reason}");
    assert!(stack.value().await.is_none(), "nothing was written");
}

#[tokio::test]
async fn every_request_is_answered_even_one_that_cannot_be_read_or_configured() {
    let stack = Stack::new().await;
    // The environment could not be read at start: still answered, FAILED, naming the variables.
    let url = stack.sink.url("no-config");
    let request = key_ring_request("Create", &stack.name, &url, None);
    let provider =
        key_ring::Provider::new(Err("STACK_NAME is not set".into()), AwsClients::from_env().await).expect("provider");
    let answer = provider.handle(request).await.expect("answered");
    assert_eq!(answer.reason.as_deref().map(|reason| reason.contains("STACK_NAME is not set")), Some(true));
    assert_eq!(stack.sink.delivered_to(&url)[0].body["Status"], "FAILED");

    // A request that does not parse, but says where to answer.
    let url = stack.sink.url("garbled");
    let garbled = json!({ "RequestType": "Create", "ResponseURL": url, "StackId": stack_id(&stack.name),
        "RequestId": "r-1", "LogicalResourceId": "KeyRing" });
    let provider = key_ring::Provider::new(Ok(stack.config()), AwsClients::from_env().await).expect("provider");
    provider.handle(garbled).await.expect("answered");
    let delivered = stack.sink.delivered_to(&url);
    assert_eq!(delivered[0].body["Status"], "FAILED", "{:?}", delivered);
    assert_eq!(delivered[0].body["RequestId"], "r-1");
    assert!(stack.value().await.is_none(), "nothing was written");
}

/// An upgraded stack whose ring does not open (here: sealed for another stack name) is reported,
/// not failed: the secret is left exactly as it was, and the stack does not roll back (a rollback
/// re-applies the older template's GenerateSecretString, which would write a new pepper).
#[tokio::test]
async fn an_upgrade_whose_ring_does_not_open_changes_nothing_and_says_so() {
    let stack = Stack::new().await;
    let aws = &stack.aws;
    let elsewhere = config_with(&[("STACK_NAME", "another-stack"), ("APP_SECRET_ID", stack.secret.as_str())]);
    let ring =
        shared::crypto::keyring::KeyRing::single(app_secret::new_root(&aws.kms, &elsewhere).await.expect("root"));
    let sealed = app_secret::seal_ring(&aws.kms, &elsewhere, &ring).await.expect("seal");
    let old =
        json!({ "pepper": "Vb3kQ9mZ2xR7pL4tN8wS1yC6fH0jD5gA3eU7iK2oT9rX4vB8nM1qW6sE0zY5uJ3h", "keyring": sealed });
    aws.secrets.put_secret_value().secret_id(&stack.secret).secret_string(old.to_string()).send().await.expect("put");
    let before = stack.value().await;

    let answer = stack.request("Create", None, stack.config()).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["Data"]["KeyRingOpens"], "false", "{answer}");
    let reason = answer["Reason"].as_str().unwrap_or_default();
    assert!(reason.contains("does not open") && reason.contains("KeyServiceFailures"), "{reason}");
    assert_eq!(stack.value().await, before, "not a byte changed");
}

/// The `key-ring` binary itself, as Lambda runs it: its Runtime API a loopback shim, its
/// environment the stack's (`with` overrides it, `None` removes a variable). Returns the answer
/// CloudFormation received and what the function returned to the runtime.
async fn run_binary(stack: &Stack, with: &[(&str, Option<&str>)]) -> (Value, Vec<(String, Value)>) {
    let admin = kavach_tests::required_env("KAVACH_ADMIN_BIN");
    let binary = std::path::Path::new(&admin).with_file_name("key-ring");
    assert!(binary.exists(), "{} is missing: `cargo build --workspace --bins` builds it", binary.display());
    let url = stack.sink.url(&unique_name("binary"));
    let runtime = kavach_tests::cfn::RuntimeApi::start(key_ring_request("Create", &stack.name, &url, None)).await;
    let mut command = tokio::process::Command::new(&binary);
    command
        .env("AWS_LAMBDA_RUNTIME_API", runtime.address.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", "kavach-KeyRingFunction")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("STACK_NAME", &stack.name)
        .env("APP_SECRET_ID", &stack.secret)
        .kill_on_drop(true);
    for (name, value) in with {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    let mut child = command.spawn().expect("start the key-ring binary");
    for _ in 0..200 {
        if !runtime.posted().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    child.kill().await.ok();
    let delivered = stack.sink.delivered_to(&url);
    assert_eq!(delivered.len(), 1, "the binary answered CloudFormation once: {delivered:?}");
    (delivered[0].body.clone(), runtime.posted())
}

#[tokio::test]
async fn the_binary_answers_through_the_lambda_runtime_even_when_its_environment_is_incomplete() {
    let stack = Stack::new().await;
    let (answer, posted) = run_binary(&stack, &[]).await;
    assert_eq!(answer["Status"], "SUCCESS", "{answer}");
    assert_eq!(answer["Data"]["KeyRingCreated"], "true", "{answer}");
    assert_eq!(posted.len(), 1, "{posted:?}");
    assert!(posted[0].0.ends_with("/invocation/invocation-1/response"), "{posted:?}");
    assert_eq!(posted[0].1["Status"], "SUCCESS", "the invocation returns the answer it sent");
    assert!(stack.value().await.is_some(), "the secret was filled");

    // The configuration is read before the runtime starts; a missing variable is still an answer.
    let broken = Stack::new().await;
    let (answer, _) = run_binary(&broken, &[("STACK_NAME", None)]).await;
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    assert!(answer["Reason"].as_str().unwrap_or_default().contains("STACK_NAME is not set"), "{answer}");
    assert!(broken.value().await.is_none(), "nothing was written");
}

/// `request` for the deploy's last step, `TableProtection`, which the same function answers.
fn table_protection(mut request: Value) -> Value {
    request["LogicalResourceId"] = json!("TableProtection");
    request["ResourceType"] = json!(key_ring::TABLE_PROTECTION);
    request
}

/// Two tables of the test's own, standing for the identity and sandbox tables.
async fn unprotected_tables(aws: &AwsClients) -> (String, String) {
    let mut names = Vec::new();
    for role in ["identity", "sandbox"] {
        let name = kavach_tests::scratch_table(aws, role, &["pk"]).await;
        names.push(name);
    }
    (names.remove(0), names.remove(0))
}

async fn protected(aws: &AwsClients, table: &str) -> bool {
    let described = aws.dynamodb.describe_table().table_name(table).send().await.expect("describe");
    described.table().and_then(|table| table.deletion_protection_enabled()).unwrap_or(false)
}

#[tokio::test]
async fn the_last_step_of_a_deploy_protects_the_identity_and_sandbox_tables_and_a_delete_leaves_them_so() {
    let stack = Stack::new().await;
    let (identity, sandbox) = unprotected_tables(&stack.aws).await;
    let config = config_with(&[
        ("STACK_NAME", stack.name.as_str()),
        ("APP_SECRET_ID", stack.secret.as_str()),
        ("IDENTITY_TABLE", identity.as_str()),
        ("SANDBOX_TABLE", sandbox.as_str()),
    ]);
    let provider = key_ring::Provider::new(Ok(config), AwsClients::from_env().await).expect("provider");
    assert!(!protected(&stack.aws, &identity).await && !protected(&stack.aws, &sandbox).await, "created unprotected");
    for (kind, physical) in
        [("Create", None), ("Update", Some("x-table-protection")), ("Delete", Some("x-table-protection"))]
    {
        let url = stack.sink.url(&unique_name(kind));
        let request = table_protection(key_ring_request(kind, &stack.name, &url, physical));
        provider.handle(request).await.expect("answered");
        let answer = &stack.sink.delivered_to(&url)[0].body;
        assert_eq!(answer["Status"], "SUCCESS", "{kind}: {answer}");
        if kind == "Create" {
            assert_eq!(answer["PhysicalResourceId"], format!("{}-table-protection", stack.name));
        }
        assert!(protected(&stack.aws, &identity).await, "{kind}: the identity table is protected");
        assert!(protected(&stack.aws, &sandbox).await, "{kind}: the sandbox table is protected");
    }
    // And the secret was never touched by it.
    assert!(stack.value().await.is_none(), "TableProtection writes no secret");
}

#[tokio::test]
async fn a_protection_that_cannot_be_turned_on_answers_failed_naming_the_table() {
    let stack = Stack::new().await;
    let config = config_with(&[("STACK_NAME", stack.name.as_str()), ("IDENTITY_TABLE", "no-such-table-anywhere")]);
    let provider = key_ring::Provider::new(Ok(config), AwsClients::from_env().await).expect("provider");
    let url = stack.sink.url("protect-missing");
    provider.handle(table_protection(key_ring_request("Create", &stack.name, &url, None))).await.expect("answered");
    let answer = &stack.sink.delivered_to(&url)[0].body;
    assert_eq!(answer["Status"], "FAILED", "{answer}");
    let reason = answer["Reason"].as_str().unwrap_or_default();
    assert!(reason.contains("no-such-table-anywhere") && reason.contains("sam deploy"), "{reason}");
}
