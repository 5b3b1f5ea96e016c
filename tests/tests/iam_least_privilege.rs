//! Least privilege in `template.yaml` (issue 11, item 10): what each function's role may do, read
//! from its policies with the drift test's IAM model (`kavach_tests::iam`). The drift test shows
//! the code needs no more than the template grants; this pins that the template grants no more
//! than each function needs:
//! - identity items only through statements scoped by `dynamodb:LeadingKeys`, and writes to users,
//!   keys and the admin marker only from the pages that make them;
//! - the app secret only to functions whose cold start asks for a secret, the key ring (KMS) only
//!   to those that derive a purpose key (`kavach_gateway::function_secrets`, the constants each
//!   binary's `main` passes to `bootstrap::init_for`);
//! - the catch-all, which every scanner reaches, no secret at all.

use std::collections::{BTreeMap, BTreeSet};

use kavach_tests::iam::{self, Statement};
use serde_yaml::Value as Yaml;
use shared::app::aws::{ATTRIBUTES, LEADING_KEYS, VALUE_SEPARATOR};
use shared::app::bootstrap::Secrets;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml");

fn policies() -> BTreeMap<String, Vec<Statement>> {
    let text = std::fs::read_to_string(TEMPLATE).expect("template.yaml");
    let template: Yaml = serde_yaml::from_str(&text).expect("template parses");
    iam::function_policies(&template).unwrap_or_else(|error| panic!("{error:#}"))
}

/// One identity item of each kind the code writes, by its partition key.
const IDENTITY_ITEMS: &[&str] = &[
    "user#victim",
    "admin",
    "apikey#0123456789abcdef",
    "session#5f2b",
    "email#victim@example.in",
    "setup#token",
    "reset#9a1c",
    "audit#1764547200000#abcd",
    "webhook#77e0",
    "settings#smtp",
    "broker#victim#zerodha",
    "oauth#3c1d",
];

/// What reaches an item: a single-item action, a transaction's item (authorised as these) or a batch.
const WRITES: &[&str] = &["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"];
const READS: &[&str] = &["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:ConditionCheckItem"];

fn item(key: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LEADING_KEYS.to_owned(), key.to_owned())])
}

/// A request on `key` that sets these top-level `attributes` (the key's among them).
fn item_setting(key: &str, attributes: &[&str]) -> BTreeMap<String, String> {
    let mut context = item(key);
    context.insert(ATTRIBUTES.to_owned(), attributes.join(&VALUE_SEPARATOR.to_string()));
    context
}

/// The identity items `function` may reach with any of `actions`, by partition key. A write sets
/// what a takeover would: the owner, the stage, the hash.
fn reachable(statements: &[Statement], actions: &[&str]) -> BTreeSet<&'static str> {
    let takeover = ["pk", "user", "stage", "phc"];
    IDENTITY_ITEMS
        .iter()
        .copied()
        .filter(|key| {
            actions.iter().any(|action| {
                let context = if actions == WRITES { item_setting(key, &takeover) } else { item(key) };
                iam::allows(statements, action, "IdentityTable", &context)
            })
        })
        .collect()
}

/// The one table-level action a function holds: KeyRingFunction's `TableProtection` step.
const TABLE_SETTINGS: &str = "dynamodb:UpdateTable";

fn set(keys: &[&'static str]) -> BTreeSet<&'static str> {
    keys.iter().copied().collect()
}

#[test]
fn identity_items_are_reached_only_through_leading_key_scopes() {
    for (function, statements) in policies() {
        for statement in statements.iter().filter(|statement| statement.allow) {
            // `UpdateTable` (KeyRingFunction's deletion-protection step) changes the table's settings
            // and reaches no item, so no item scope can apply to it; it alone is exempt.
            let item_level = statement.actions.iter().any(|action| action != TABLE_SETTINGS);
            let on_table =
                item_level && statement.resources.iter().any(|resource| resource == "IdentityTable" || resource == "*");
            let scoped = statement
                .conditions
                .iter()
                .any(|condition| condition.key == LEADING_KEYS && condition.operator.starts_with("ForAllValues:"));
            assert!(
                !on_table || scoped,
                "{function}: a statement on the identity table without a dynamodb:LeadingKeys scope: {statement:?}"
            );
            // ForAllValues is vacuously true for a request with no leading key: a Scan, or a Query of
            // the table, would pass any scope.
            for action in ["dynamodb:Scan", "dynamodb:Query"] {
                assert!(
                    !iam::allows(&statements, action, "IdentityTable", &BTreeMap::new()),
                    "{function} may {action} the whole identity table"
                );
            }
        }
    }
}

#[test]
fn only_the_pages_that_make_them_may_write_identity_items() {
    let policies = policies();
    let expected: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::from([
        ("PingFunction", set(&[])),
        ("OrdersFunction", set(&[])),
        ("AccountFunction", set(&[])),
        ("MarketFunction", set(&[])),
        ("WebhookFunction", set(&[])),
        ("NotFoundFunction", set(&[])),
        ("FillEngineFunction", set(&[])),
        ("RolloverFunction", set(&[])),
        ("KeyRingFunction", set(&[])),
        ("SecurityFunction", set(&[])),
        (
            "SetupFunction",
            set(&["user#victim", "admin", "apikey#0123456789abcdef", "email#victim@example.in", "setup#token"]),
        ),
        ("AuthFunction", set(&["user#victim", "session#5f2b", "reset#9a1c", "audit#1764547200000#abcd"])),
        (
            "PortalFunction",
            set(&[
                "user#victim",
                "apikey#0123456789abcdef",
                "webhook#77e0",
                "session#5f2b",
                "audit#1764547200000#abcd",
                "broker#victim#zerodha",
                "oauth#3c1d",
            ]),
        ),
    ]);
    let found: BTreeMap<&str, BTreeSet<&str>> =
        policies.iter().map(|(function, statements)| (function.as_str(), reachable(statements, WRITES))).collect();
    assert_eq!(found, expected, "identity items each function's role may write");
}

/// analyzer/toggle sets where the account's orders go, on the account and its current key: that
/// and the key-state version are all the account function may write of either.
#[test]
fn the_account_function_may_set_the_trading_mode_and_nothing_else() {
    let statements = &policies()["AccountFunction"];
    for key in ["user#victim", "apikey#0123456789abcdef"] {
        let mode = item_setting(key, &["pk", "broker", "key_state_version"]);
        assert!(iam::allows(statements, "dynamodb:UpdateItem", "IdentityTable", &mode), "cannot set {key}'s mode");
        for takeover in ["user", "phc", "revoked_at", "allow", "api_key_id"] {
            let context = item_setting(key, &["pk", "broker", takeover]);
            assert!(
                !iam::allows(statements, "dynamodb:UpdateItem", "IdentityTable", &context),
                "the account function may set {key}'s {takeover}"
            );
        }
    }
    let link = item_setting("broker#victim#zerodha", &["pk", "broker"]);
    assert!(!iam::allows(statements, "dynamodb:UpdateItem", "IdentityTable", &link), "may write a broker link");
}

/// The pages' gate records a session's last activity. An `UpdateItem` creates an absent item, so
/// one free to set more than `last_seen` could mint a session for any user.
#[test]
fn the_pages_may_touch_a_sessions_last_seen_and_nothing_else_of_it() {
    let policies = policies();
    for function in ["SetupFunction", "AuthFunction", "PortalFunction", "SecurityFunction"] {
        let statements = &policies[function];
        let touch = item_setting("session#5f2b", &["pk", "last_seen"]);
        assert!(
            iam::allows(statements, "dynamodb:UpdateItem", "IdentityTable", &touch),
            "{function} cannot touch a session"
        );
        let mint = item_setting("session#5f2b", &["pk", "last_seen", "user", "stage"]);
        assert!(
            !iam::allows(statements, "dynamodb:UpdateItem", "IdentityTable", &mint),
            "{function} may mint a session"
        );
    }
}

#[test]
fn the_api_functions_and_the_catch_all_read_only_what_their_gate_fetches() {
    let policies = policies();
    let expected: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::from([
        ("PingFunction", set(&["apikey#0123456789abcdef"])),
        ("OrdersFunction", set(&["apikey#0123456789abcdef", "broker#victim#zerodha"])),
        ("AccountFunction", set(&["user#victim", "apikey#0123456789abcdef", "broker#victim#zerodha"])),
        ("MarketFunction", set(&["apikey#0123456789abcdef", "broker#victim#zerodha"])),
        ("WebhookFunction", set(&["user#victim", "webhook#77e0", "broker#victim#zerodha"])),
        ("NotFoundFunction", set(&["apikey#0123456789abcdef", "session#5f2b"])),
        ("FillEngineFunction", set(&[])),
    ]);
    for (function, wanted) in expected {
        let statements = policies.get(function).unwrap_or_else(|| panic!("{function} is in template.yaml"));
        assert_eq!(reachable(statements, READS), wanted, "identity items {function}'s role may read");
    }
}

#[test]
fn the_app_secret_and_the_key_ring_are_granted_exactly_to_the_functions_that_load_them() {
    let policies = policies();
    let ring = BTreeMap::from([
        ("kms:EncryptionContext:app".to_owned(), "kavach".to_owned()),
        ("kms:EncryptionContext:purpose".to_owned(), "key-ring".to_owned()),
    ]);
    for (function, secrets) in kavach_gateway::function_secrets() {
        let statements = policies.get(function).unwrap_or_else(|| panic!("{function} is in template.yaml"));
        let reads_secret = iam::allows(statements, "secretsmanager:GetSecretValue", "AppSecret", &BTreeMap::new());
        let opens_ring = iam::allows(statements, "kms:Decrypt", "AppKey", &ring);
        let wants_ring =
            secrets.api_key_copies || secrets.totp_secrets || secrets.smtp_passwords || secrets.broker_tokens;
        assert_eq!(reads_secret, secrets != Secrets::NONE, "{function}: app secret read granted: {reads_secret}");
        assert_eq!(opens_ring, wants_ring, "{function}: key ring Decrypt granted: {opens_ring}");
    }
}

#[test]
fn the_catch_all_holds_no_secret() {
    let policies = policies();
    let statements = &policies["NotFoundFunction"];
    assert_eq!(kavach_gateway::function_secrets()["NotFoundFunction"], Secrets::NONE, "its cold start loads none");
    let services =
        ["secretsmanager:GetSecretValue", "secretsmanager:ListSecrets", "kms:Decrypt", "kms:GenerateDataKey"];
    let more = ["ssm:GetParameter", "ssm:GetParametersByPath"];
    for action in services.iter().chain(&more) {
        for resource in ["AppSecret", "AppKey", "*"] {
            let any_context = [
                BTreeMap::new(),
                BTreeMap::from([
                    ("kms:EncryptionContext:app".to_owned(), "kavach".to_owned()),
                    ("kms:EncryptionContext:purpose".to_owned(), "key-ring".to_owned()),
                ]),
            ];
            for context in &any_context {
                assert!(
                    !iam::allows(statements, action, resource, context),
                    "the catch-all may {action} on {resource}"
                );
            }
        }
    }
    for statement in statements {
        for action in &statement.actions {
            let service = action.split(':').next().unwrap_or_default().to_ascii_lowercase();
            assert!(!["secretsmanager", "kms", "ssm"].contains(&service.as_str()), "the catch-all is granted {action}");
        }
    }
}

/// The KeyRing custom resource's function fills the app secret and seals the ring, and that is
/// all: only under the ring's encryption context, no table, and it is the only function that may
/// write the secret or make or seal a root.
#[test]
fn only_the_key_ring_function_writes_the_secret_or_seals_a_ring_and_it_does_nothing_else() {
    let policies = policies();
    let ring = BTreeMap::from([
        ("kms:EncryptionContext:app".to_owned(), "kavach".to_owned()),
        ("kms:EncryptionContext:purpose".to_owned(), "key-ring".to_owned()),
    ]);
    let other_purpose = BTreeMap::from([
        ("kms:EncryptionContext:app".to_owned(), "kavach".to_owned()),
        ("kms:EncryptionContext:purpose".to_owned(), "something-else".to_owned()),
    ]);
    let statements = &policies["KeyRingFunction"];
    for action in ["secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue"] {
        assert!(iam::allows(statements, action, "AppSecret", &BTreeMap::new()), "KeyRingFunction may not {action}");
    }
    for action in ["kms:GenerateDataKey", "kms:Encrypt", "kms:Decrypt"] {
        assert!(iam::allows(statements, action, "AppKey", &ring), "KeyRingFunction may not {action}");
        assert!(!iam::allows(statements, action, "AppKey", &other_purpose), "{action} beyond the ring's context");
        assert!(!iam::allows(statements, action, "AppKey", &BTreeMap::new()), "{action} without a context");
    }
    for action in ["secretsmanager:DeleteSecret", "secretsmanager:UpdateSecret", "kms:ScheduleKeyDeletion"] {
        assert!(!iam::allows(statements, action, "*", &BTreeMap::new()), "KeyRingFunction may {action}");
    }
    for statement in statements {
        // Besides the secret and the key: turning deletion protection on for the two tables that
        // hold the accounts and the ledger (TableProtection), and nothing else on any table.
        let protection = statement.actions == [TABLE_SETTINGS]
            && statement.resources.iter().all(|resource| resource == "IdentityTable" || resource == "SandboxTable");
        assert!(
            protection
                || statement
                    .actions
                    .iter()
                    .all(|action| action.starts_with("secretsmanager:") || action.starts_with("kms:")),
            "KeyRingFunction is granted more than the secret, the key and the tables' protection: {statement:?}"
        );
        assert!(!statement.resources.iter().any(|resource| resource == "*"), "a wildcard resource: {statement:?}");
    }
    for (function, statements) in &policies {
        if function == "KeyRingFunction" {
            continue;
        }
        let writes = iam::allows(statements, "secretsmanager:PutSecretValue", "AppSecret", &BTreeMap::new());
        let seals = ["kms:GenerateDataKey", "kms:Encrypt"]
            .iter()
            .any(|action| iam::allows(statements, action, "AppKey", &ring));
        assert!(!writes && !seals, "{function} may write the app secret ({writes}) or seal a ring ({seals})");
    }
}

/// Only KeyRingFunction may change a table's settings (and so turn its deletion protection off).
#[test]
fn no_other_function_may_change_a_tables_settings() {
    for (function, statements) in policies() {
        if function == "KeyRingFunction" {
            continue;
        }
        for table in ["IdentityTable", "SandboxTable", "SecurityTable", "RateLimitTable", "TrafficTable"] {
            assert!(
                !iam::allows(&statements, TABLE_SETTINGS, table, &BTreeMap::new()),
                "{function} may change {table}'s settings"
            );
        }
    }
}
