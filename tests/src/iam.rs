//! The IAM side of the drift test (`tests/iam_drift.rs`): each template function's policies with
//! its managed policies resolved, and the check of the recorded [`Access`]es against them. The
//! emulator enforces no IAM, so without this a missing action would first be found in AWS.
//!
//! Resources are compared as template logical ids: `!GetAtt SandboxTable.Arn` is `SandboxTable`,
//! `!Sub "${SandboxTable.Arn}/index/resting"` is `SandboxTable/index/resting`, and a name seen on
//! the wire is mapped back through the function environment (`SANDBOX_TABLE: !Ref SandboxTable`).
//! A policy form this module does not resolve is an error that names it, never a silent allow or
//! deny.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result, bail};
use serde_yaml::Value as Yaml;
use shared::app::aws::{Access, COLD_START};

/// Resource types whose `!Ref` is their ARN, so a policy may name them with it. A table's or a
/// key's `!Ref` is its name or id, which IAM would never match.
const REF_IS_ARN: &[&str] = &["AWS::SecretsManager::Secret"];

/// The condition keys the recorder supplies; a policy conditioned on any other cannot be judged.
const MODELLED_CONDITION_KEYS: &str = "kms:EncryptionContext:";

/// The DynamoDB condition keys the recorder supplies ([`shared::app::aws::LEADING_KEYS`],
/// [`shared::app::aws::ATTRIBUTES`]). They are multivalued, so IAM takes them only under a
/// `ForAllValues:` operator; the recorder joins several values with
/// [`shared::app::aws::VALUE_SEPARATOR`], and every one must match.
const MULTIVALUED_KEYS: &[&str] = &[shared::app::aws::LEADING_KEYS, shared::app::aws::ATTRIBUTES];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub allow: bool,
    /// Action patterns (`dynamodb:GetItem`, `kms:*`), matched without regard to case, as IAM does.
    pub actions: Vec<String>,
    /// Resource patterns over logical ids (`SandboxTable/index/*`, `*`).
    pub resources: Vec<String>,
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// `StringEquals` or `StringLike`, or either after `ForAllValues:`.
    pub operator: String,
    pub key: String,
    /// Any one of them satisfies the condition.
    pub values: Vec<String>,
}

impl Statement {
    fn applies(&self, action: &str, resource: &str, context: &BTreeMap<String, String>) -> bool {
        let action = action.to_ascii_lowercase();
        self.actions.iter().any(|pattern| glob(&pattern.to_ascii_lowercase(), &action))
            && self.resources.iter().any(|pattern| glob(pattern, resource))
            && self.conditions.iter().all(|condition| condition.holds(context))
    }
}

impl Condition {
    /// A key the request does not set fails the condition, as in IAM, except under
    /// `ForAllValues:`, where an empty set of values satisfies it (IAM's vacuous truth: a
    /// `ForAllValues` condition restricts only the requests that carry the key).
    fn holds(&self, context: &BTreeMap<String, String>) -> bool {
        let (for_all, operator) = match self.operator.strip_prefix("ForAllValues:") {
            Some(operator) => (true, operator),
            None => (false, self.operator.as_str()),
        };
        let matches = |actual: &str| {
            self.values.iter().any(|wanted| match operator {
                "StringLike" => glob(wanted, actual),
                _ => wanted == actual,
            })
        };
        match context.get(&self.key) {
            None => for_all,
            Some(actual) if for_all => actual.split(shared::app::aws::VALUE_SEPARATOR).all(matches),
            Some(actual) => matches(actual),
        }
    }
}

/// Whether `statements` allow `action` on the logical-id `resource` for a request setting
/// `context`: some Allow applies and no Deny does, as IAM decides within one principal's policies.
pub fn allows(statements: &[Statement], action: &str, resource: &str, context: &BTreeMap<String, String>) -> bool {
    let applying = |allow: bool| {
        statements.iter().any(|statement| statement.allow == allow && statement.applies(action, resource, context))
    };
    applying(true) && !applying(false)
}

/// IAM's wildcards: `*` any run of characters, `?` any one.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == '?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((star_p, star_t)) = star {
            p = star_p + 1;
            t = star_t + 1;
            star = Some((star_p, star_t + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|c| *c == '*')
}

fn resources(template: &Yaml) -> Result<&serde_yaml::Mapping> {
    template.get("Resources").and_then(Yaml::as_mapping).context("template.yaml has no Resources")
}

fn resource_type<'a>(template: &'a Yaml, logical: &str) -> Option<&'a str> {
    template.get("Resources")?.get(logical)?.get("Type")?.as_str()
}

fn functions(template: &Yaml) -> Result<Vec<(&str, &Yaml)>> {
    Ok(resources(template)?
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::Serverless::Function"))
        .filter_map(|(name, resource)| Some((name.as_str()?, resource)))
        .collect())
}

/// The tag's name without `!`, or the long form's without `Fn::`, and its argument.
fn intrinsic(value: &Yaml) -> Option<(String, &Yaml)> {
    match value {
        Yaml::Tagged(tagged) => Some((tagged.tag.to_string().trim_start_matches('!').to_owned(), &tagged.value)),
        Yaml::Mapping(map) if map.len() == 1 => {
            let (name, argument) = map.iter().next()?;
            let name = name.as_str()?;
            (name == "Ref" || name.starts_with("Fn::")).then(|| (name.trim_start_matches("Fn::").to_owned(), argument))
        }
        _ => None,
    }
}

/// `X` for `X.Arn` or `[X, Arn]`.
fn get_att_arn(argument: &Yaml) -> Option<String> {
    let target = match argument {
        Yaml::String(text) => text.clone(),
        Yaml::Sequence(parts) => parts.iter().filter_map(Yaml::as_str).collect::<Vec<_>>().join("."),
        _ => return None,
    };
    target.strip_suffix(".Arn").map(str::to_owned)
}

/// Logical id of every `AWS::Serverless::Function` → its statements, in template order within
/// each function.
pub fn function_policies(template: &Yaml) -> Result<BTreeMap<String, Vec<Statement>>> {
    let globals = &template["Globals"]["Function"];
    for property in ["Policies", "Role"] {
        if globals.get(property).is_some() {
            bail!("Globals.Function.{property} is not resolved by the drift test; give each function its Policies");
        }
    }
    let mut out = BTreeMap::new();
    for (function, resource) in functions(template)? {
        let properties = &resource["Properties"];
        if properties.get("Role").is_some() {
            bail!("{function}: has a Role; the drift test resolves Policies only");
        }
        let policies: Vec<&Yaml> = match properties.get("Policies") {
            None => Vec::new(),
            Some(Yaml::Sequence(list)) => list.iter().collect(),
            Some(one) => vec![one],
        };
        let mut statements = Vec::new();
        for policy in policies {
            statements.extend(policy_statements(template, function, policy)?);
        }
        out.insert(function.to_owned(), statements);
    }
    Ok(out)
}

fn policy_statements(template: &Yaml, function: &str, policy: &Yaml) -> Result<Vec<Statement>> {
    if let Some((name, argument)) = intrinsic(policy) {
        let target = argument.as_str().filter(|_| name == "Ref");
        let Some(target) = target else { bail!("{function}: policy !{name} is not resolved by the drift test") };
        return match resource_type(template, target) {
            Some("AWS::IAM::ManagedPolicy") => {
                document(template, target, &template["Resources"][target]["Properties"]["PolicyDocument"])
            }
            Some(other) => bail!("{function}: policy !Ref {target} is a {other}, not an AWS::IAM::ManagedPolicy"),
            None => bail!("{function}: policy !Ref {target}: template.yaml has no such resource"),
        };
    }
    match policy {
        Yaml::Mapping(map) if map.contains_key("Statement") => {
            document(template, &format!("{function}'s inline policy"), policy)
        }
        Yaml::Mapping(map) if map.len() == 1 => {
            let name = map.keys().next().and_then(Yaml::as_str).unwrap_or("?");
            bail!(
                "{function}: SAM policy template `{name}` is not resolved by the drift test; write its statements out (inline or as an AWS::IAM::ManagedPolicy)"
            )
        }
        Yaml::String(name) => bail!(
            "{function}: policy `{name}` (an AWS managed policy or an ARN) is not in template.yaml, so the drift test cannot read its statements"
        ),
        other => bail!("{function}: policy {other:?} is not a form the drift test resolves"),
    }
}

fn document(template: &Yaml, whence: &str, document: &Yaml) -> Result<Vec<Statement>> {
    match document.get("Statement") {
        Some(Yaml::Sequence(list)) => list.iter().map(|s| statement(template, whence, s)).collect(),
        Some(one @ Yaml::Mapping(_)) => Ok(vec![statement(template, whence, one)?]),
        _ => bail!("{whence}: the policy document has no Statement"),
    }
}

fn statement(template: &Yaml, whence: &str, statement: &Yaml) -> Result<Statement> {
    let sid = statement["Sid"].as_str().unwrap_or("(no Sid)");
    let whence = format!("{whence}, statement {sid}");
    let fields = statement.as_mapping().with_context(|| format!("{whence}: not a mapping"))?;
    for key in fields.keys() {
        let key = key.as_str().unwrap_or("?");
        if !["Sid", "Effect", "Action", "Resource", "Condition"].contains(&key) {
            bail!("{whence}: {key} is not resolved by the drift test");
        }
    }
    let allow = match statement["Effect"].as_str() {
        Some("Allow") => true,
        Some("Deny") => false,
        other => bail!("{whence}: Effect {other:?} is neither Allow nor Deny"),
    };
    let actions = strings(&statement["Action"]).with_context(|| format!("{whence}: Action"))?;
    let resources = match statement.get("Resource") {
        Some(value) => resource(template, &whence, value)?,
        None => bail!("{whence}: no Resource"),
    };
    let mut conditions = Vec::new();
    for (operator, tests) in statement.get("Condition").and_then(Yaml::as_mapping).into_iter().flatten() {
        let operator = operator.as_str().unwrap_or("?");
        let for_all = operator.starts_with("ForAllValues:");
        if !["StringEquals", "StringLike"].contains(&operator.trim_start_matches("ForAllValues:")) {
            bail!("{whence}: condition operator {operator} is not resolved by the drift test");
        }
        for (key, values) in tests.as_mapping().with_context(|| format!("{whence}: {operator} is not a mapping"))? {
            let key = key.as_str().unwrap_or("?");
            match (MULTIVALUED_KEYS.contains(&key), for_all) {
                (true, true) => {}
                (true, false) => bail!("{whence}: {key} is multivalued; IAM needs ForAllValues:{operator} for it"),
                (false, true) => bail!("{whence}: {operator} on {key} is not resolved by the drift test"),
                (false, false) if !key.starts_with(MODELLED_CONDITION_KEYS) => bail!(
                    "{whence}: condition key {key} is not one the recorder supplies ({MODELLED_CONDITION_KEYS}…, {MULTIVALUED_KEYS:?})"
                ),
                (false, false) => {}
            }
            let values = strings(values).with_context(|| format!("{whence}: {operator} {key}"))?;
            conditions.push(Condition { operator: operator.to_owned(), key: key.to_owned(), values });
        }
    }
    Ok(Statement { allow, actions, resources, conditions })
}

/// A string or a list of strings.
fn strings(value: &Yaml) -> Result<Vec<String>> {
    match value {
        Yaml::String(text) => Ok(vec![text.clone()]),
        Yaml::Sequence(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).with_context(|| format!("{item:?} is not a string")))
            .collect(),
        other => bail!("{other:?} is neither a string nor a list of strings"),
    }
}

/// A `Resource` as logical-id patterns.
fn resource(template: &Yaml, whence: &str, value: &Yaml) -> Result<Vec<String>> {
    if let Yaml::Sequence(items) = value {
        return Ok(items.iter().map(|item| resource(template, whence, item)).collect::<Result<Vec<_>>>()?.concat());
    }
    let exists = |logical: &str| {
        resource_type(template, logical)
            .map(|_| logical.to_owned())
            .with_context(|| format!("{whence}: template.yaml has no resource {logical}"))
    };
    let (name, argument) = match (value, intrinsic(value)) {
        (Yaml::String(text), _) if text == "*" => return Ok(vec!["*".to_owned()]),
        (Yaml::String(text), _) => bail!(
            "{whence}: resource `{text}` is a literal; name it with !GetAtt, !Ref or !Sub so the drift test can tell which template resource it is"
        ),
        (_, Some(intrinsic)) => intrinsic,
        (other, None) => bail!("{whence}: resource {other:?} is not a form the drift test resolves"),
    };
    let resolved = match name.as_str() {
        "GetAtt" => {
            exists(&get_att_arn(argument).with_context(|| format!("{whence}: only !GetAtt …Arn names a resource"))?)?
        }
        "Ref" => {
            let target = argument.as_str().with_context(|| format!("{whence}: !Ref takes a name"))?;
            match resource_type(template, target) {
                Some(kind) if REF_IS_ARN.contains(&kind) => target.to_owned(),
                Some(kind) => bail!(
                    "{whence}: !Ref {target} is a {kind}'s name or id, not its ARN, so IAM would never match it: use !GetAtt {target}.Arn"
                ),
                None => bail!("{whence}: template.yaml has no resource {target}"),
            }
        }
        "Sub" => {
            let mut text =
                argument.as_str().with_context(|| format!("{whence}: only the string form of !Sub"))?.to_owned();
            while let Some(start) = text.find("${") {
                let end = start + text[start..].find('}').with_context(|| format!("{whence}: unclosed ${{"))?;
                let variable = &text[start + 2..end];
                let Some(logical) = variable.strip_suffix(".Arn") else {
                    bail!("{whence}: ${{{variable}}} in !Sub is not resolved by the drift test (only ${{X.Arn}})");
                };
                let logical = exists(logical)?;
                text.replace_range(start..=end, &logical);
            }
            text
        }
        other => bail!("{whence}: !{other} in a Resource is not resolved by the drift test"),
    };
    Ok(vec![resolved])
}

/// The logical id an environment value (`!Ref X`, `!GetAtt X.Arn`) names, if it names a resource
/// (parameters and pseudo-parameters are not resources).
fn referenced(template: &Yaml, value: &Yaml) -> Option<String> {
    let (name, argument) = intrinsic(value)?;
    let logical = match name.as_str() {
        "Ref" => argument.as_str()?.to_owned(),
        "GetAtt" => get_att_arn(argument)?,
        _ => return None,
    };
    resource_type(template, &logical).map(|_| logical)
}

/// Physical names and ids the functions are given in their environment → the logical id a policy
/// names them by: a request names a resource the way its function was told to. A KMS alias maps to
/// its key, since IAM authorises a call made through an alias against the key.
pub fn resource_names(template: &Yaml, environment: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    let mut scopes = vec![("Globals".to_owned(), &template["Globals"]["Function"]["Environment"]["Variables"])];
    for (function, resource) in functions(template)? {
        scopes.push((function.to_owned(), &resource["Properties"]["Environment"]["Variables"]));
    }
    let mut names = BTreeMap::new();
    for (scope, variables) in scopes {
        for (variable, value) in variables.as_mapping().into_iter().flatten() {
            let variable = variable.as_str().unwrap_or("?");
            let Some(mut logical) = referenced(template, value) else { continue };
            if resource_type(template, &logical) == Some("AWS::KMS::Alias") {
                let target = &template["Resources"][logical.as_str()]["Properties"]["TargetKeyId"];
                logical = referenced(template, target)
                    .with_context(|| format!("{logical}: TargetKeyId is neither !Ref nor !GetAtt …Arn of a key"))?;
            }
            let physical = environment.get(variable).with_context(|| {
                format!("{scope}: {variable} names {logical}, but the function environment lacks it")
            })?;
            names.insert(physical.clone(), logical);
        }
    }
    Ok(names)
}

/// What a request named, as a logical-id path, or `None` if no environment value names it.
fn logical(names: &BTreeMap<String, String>, physical: &str) -> Option<String> {
    if physical == "*" {
        return Some(physical.to_owned());
    }
    if let Some(logical) = names.get(physical) {
        return Some(logical.clone());
    }
    let (table, index) = physical.split_once("/index/")?;
    Some(format!("{}/index/{index}", names.get(table)?))
}

/// Every recorded access some function's policies do not allow, as a sentence naming the function,
/// the action and the resource. A cold start's accesses are checked against each of
/// `cold_starters`, the functions whose Lambda starts through `bootstrap::init`.
pub fn violations(
    policies: &BTreeMap<String, Vec<Statement>>,
    names: &BTreeMap<String, String>,
    accesses: &BTreeSet<Access>,
    cold_starters: &BTreeSet<String>,
) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for access in accesses {
        let (callers, when): (Vec<&str>, &str) = if access.caller == COLD_START {
            (cold_starters.iter().map(String::as_str).collect(), " at cold start")
        } else {
            (vec![access.caller], "")
        };
        let Some(resource) = logical(names, &access.resource) else {
            found.insert(format!(
                "{} performs {} on `{}`, which no resource in the function environment names",
                access.caller, access.action, access.resource
            ));
            continue;
        };
        let context = if access.context.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = access.context.iter().map(|(key, value)| format!("{key}={value}")).collect();
            format!(" ({})", pairs.join(", "))
        };
        for caller in callers {
            let Some(statements) = policies.get(caller) else {
                found.insert(format!("{caller} performs {} but is not a function in template.yaml", access.action));
                continue;
            };
            if !allows(statements, &access.action, &resource, &access.context) {
                found.insert(format!(
                    "{caller} performs {} on {resource}{when}{context} but its policies do not allow it",
                    access.action
                ));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEMPLATE: &str = r#"
Globals:
  Function:
    Environment:
      Variables:
        ORDERS_TABLE: !Ref OrdersTable
        APP_SECRET_ID: !Ref AppSecret
        KMS_KEY_ID: !Ref KeyAlias
        RATE: !Ref RateParameter
Parameters:
  RateParameter: { Type: String }
Resources:
  OrdersTable: { Type: AWS::DynamoDB::Table }
  AppSecret: { Type: AWS::SecretsManager::Secret }
  Key: { Type: AWS::KMS::Key }
  KeyAlias: { Type: AWS::KMS::Alias, Properties: { TargetKeyId: !Ref Key } }
  ReadPolicy:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Sid: Read
            Effect: Allow
            Action: [dynamodb:GetItem, dynamodb:Query]
            Resource: [!GetAtt OrdersTable.Arn, !Sub "${OrdersTable.Arn}/index/*"]
          - Effect: Allow
            Action: secretsmanager:GetSecretValue
            Resource: !Ref AppSecret
          - Effect: Allow
            Action: kms:Decrypt
            Resource: !GetAtt Key.Arn
            Condition: { StringEquals: { "kms:EncryptionContext:app": kavach } }
  ReaderFunction:
    Type: AWS::Serverless::Function
    Properties:
      Policies: [!Ref ReadPolicy]
  WriterFunction:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - !Ref ReadPolicy
        - Statement:
            - Effect: Allow
              Action: "dynamodb:*Item"
              Resource: { "Fn::GetAtt": [OrdersTable, Arn] }
            - Effect: Deny
              Action: dynamodb:DeleteItem
              Resource: "*"
"#;

    fn template(text: &str) -> Yaml {
        serde_yaml::from_str(text).expect("yaml")
    }

    fn environment() -> BTreeMap<String, String> {
        [("ORDERS_TABLE", "stack-orders"), ("APP_SECRET_ID", "arn:secret:stack/app"), ("KMS_KEY_ID", "alias/stack")]
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect()
    }

    fn access(caller: &'static str, action: &str, resource: &str, context: &[(&str, &str)]) -> Access {
        Access {
            caller,
            action: action.into(),
            resource: resource.into(),
            context: context.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect(),
        }
    }

    fn check(accesses: &[Access]) -> BTreeSet<String> {
        let template = template(TEMPLATE);
        let policies = function_policies(&template).expect("policies");
        let names = resource_names(&template, &environment()).expect("names");
        let cold = BTreeSet::from(["ReaderFunction".to_owned(), "WriterFunction".to_owned()]);
        violations(&policies, &names, &accesses.iter().cloned().collect(), &cold)
    }

    #[test]
    fn managed_and_inline_policies_resolve_to_logical_resources() {
        let template = template(TEMPLATE);
        let policies = function_policies(&template).expect("policies");
        assert_eq!(policies["ReaderFunction"].len(), 3);
        assert_eq!(policies["WriterFunction"].len(), 5);
        assert_eq!(policies["ReaderFunction"][0].resources, ["OrdersTable", "OrdersTable/index/*"]);
        assert_eq!(policies["ReaderFunction"][1].resources, ["AppSecret"]);
        let names = resource_names(&template, &environment()).expect("names");
        assert_eq!(names["stack-orders"], "OrdersTable");
        assert_eq!(names["alias/stack"], "Key", "an alias is authorised as its key");
        assert_eq!(names.len(), 3, "parameters are not resources: {names:?}");
    }

    #[test]
    fn allowed_accesses_pass_and_missing_ones_name_function_action_and_resource() {
        let context = [("kms:EncryptionContext:app", "kavach")];
        let fine = [
            access("ReaderFunction", "dynamodb:GetItem", "stack-orders", &[]),
            access("ReaderFunction", "DynamoDB:query", "stack-orders/index/by-day", &[]),
            access("WriterFunction", "dynamodb:PutItem", "stack-orders", &[]),
            access(COLD_START, "secretsmanager:GetSecretValue", "arn:secret:stack/app", &[]),
            access(COLD_START, "kms:Decrypt", "alias/stack", &context),
        ];
        assert_eq!(check(&fine), BTreeSet::new());

        let found = check(&[
            access("ReaderFunction", "dynamodb:PutItem", "stack-orders", &[]),
            access("ReaderFunction", "dynamodb:Scan", "stack-orders/index/by-day", &[]),
            access("WriterFunction", "dynamodb:DeleteItem", "stack-orders", &[]),
            access("WriterFunction", "dynamodb:GetItem", "someone-elses-table", &[]),
            access(COLD_START, "kms:Decrypt", "alias/stack", &[("kms:EncryptionContext:app", "other")]),
            access("GhostFunction", "dynamodb:GetItem", "stack-orders", &[]),
        ]);
        let expected = [
            "ReaderFunction performs dynamodb:PutItem on OrdersTable but its policies do not allow it",
            "ReaderFunction performs dynamodb:Scan on OrdersTable/index/by-day but its policies do not allow it",
            "WriterFunction performs dynamodb:DeleteItem on OrdersTable but its policies do not allow it",
            "WriterFunction performs dynamodb:GetItem on `someone-elses-table`, which no resource in the function environment names",
            "ReaderFunction performs kms:Decrypt on Key at cold start (kms:EncryptionContext:app=other) but its policies do not allow it",
            "WriterFunction performs kms:Decrypt on Key at cold start (kms:EncryptionContext:app=other) but its policies do not allow it",
            "GhostFunction performs dynamodb:GetItem but is not a function in template.yaml",
        ];
        assert_eq!(found, expected.iter().map(|s| (*s).to_owned()).collect(), "{found:#?}");
    }

    fn error(text: &str) -> String {
        let template = template(text);
        function_policies(&template).map(|_| ()).expect_err("unresolved").to_string()
    }

    fn function_with(policies: &str) -> String {
        format!(
            "Resources:\n  Table: {{ Type: AWS::DynamoDB::Table }}\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Policies:\n{policies}"
        )
    }

    fn statement_with(body: &str) -> String {
        function_with(&format!("        - Statement:\n            - Sid: S\n              Effect: Allow\n{body}"))
    }

    #[test]
    fn policy_forms_it_does_not_resolve_are_named() {
        let cases = [
            (
                function_with("        - DynamoDBCrudPolicy: { TableName: !Ref Table }\n"),
                "SAM policy template `DynamoDBCrudPolicy`",
            ),
            (function_with("        - AWSLambdaBasicExecutionRole\n"), "policy `AWSLambdaBasicExecutionRole`"),
            (function_with("        - !Ref Table\n"), "policy !Ref Table is a AWS::DynamoDB::Table"),
            (
                statement_with(
                    "              Action: dynamodb:GetItem\n              Resource: arn:aws:dynamodb:*:*:table/x\n",
                ),
                "resource `arn:aws:dynamodb:*:*:table/x` is a literal",
            ),
            (
                statement_with("              Action: dynamodb:GetItem\n              Resource: !Ref Table\n"),
                "!Ref Table is a AWS::DynamoDB::Table's name or id, not its ARN",
            ),
            (
                statement_with(
                    "              Action: dynamodb:GetItem\n              Resource: !Sub \"arn:${AWS::Partition}:x\"\n",
                ),
                "${AWS::Partition} in !Sub is not resolved",
            ),
            (
                statement_with("              NotAction: dynamodb:GetItem\n              Resource: \"*\"\n"),
                "NotAction is not resolved",
            ),
            (
                statement_with(
                    "              Action: dynamodb:GetItem\n              Resource: \"*\"\n              Condition: { IpAddress: { aws:SourceIp: 10.0.0.0/8 } }\n",
                ),
                "condition operator IpAddress",
            ),
            (
                statement_with(
                    "              Action: dynamodb:GetItem\n              Resource: \"*\"\n              Condition: { StringEquals: { aws:PrincipalTag/x: y } }\n",
                ),
                "condition key aws:PrincipalTag/x",
            ),
        ];
        for (template, message) in cases {
            let error = error(&template);
            assert!(error.contains(message), "expected `{message}` in: {error}");
            assert!(error.starts_with('F'), "names the function: {error}");
        }
    }

    #[test]
    fn the_templates_policies_resolve() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template");
        let template = template(&text);
        let policies = function_policies(&template).unwrap_or_else(|error| panic!("{error:#}"));
        assert!(policies.values().all(|statements| !statements.is_empty()), "{policies:#?}");
    }

    #[test]
    fn leading_keys_are_judged_as_iam_does_for_all_values() {
        let text = statement_with(
            "              Action: [dynamodb:GetItem, dynamodb:Scan]\n              Resource: !GetAtt Table.Arn\n              Condition: { \"ForAllValues:StringLike\": { dynamodb:LeadingKeys: [\"user#*\", admin] } }\n",
        );
        let policies = function_policies(&template(&text)).expect("policies");
        let with = |key: &str| BTreeMap::from([(shared::app::aws::LEADING_KEYS.to_owned(), key.to_owned())]);
        assert!(allows(&policies["F"], "dynamodb:GetItem", "Table", &with("user#alice")));
        assert!(allows(&policies["F"], "dynamodb:GetItem", "Table", &with("admin")));
        assert!(!allows(&policies["F"], "dynamodb:GetItem", "Table", &with("apikey#0123")));
        assert!(!allows(&policies["F"], "dynamodb:GetItem", "Table", &with("administrator")));
        // IAM's vacuous truth: a request with no leading key (a Scan) satisfies ForAllValues.
        assert!(allows(&policies["F"], "dynamodb:Scan", "Table", &BTreeMap::new()));

        let single = statement_with(
            "              Action: dynamodb:GetItem\n              Resource: \"*\"\n              Condition: { StringLike: { dynamodb:LeadingKeys: \"user#*\" } }\n",
        );
        assert!(error(&single).contains("needs ForAllValues:StringLike"), "{}", error(&single));
    }

    #[test]
    fn wildcards_are_iams() {
        assert!(glob("dynamodb:*", "dynamodb:getitem"));
        assert!(glob("T/index/*", "T/index/resting"));
        assert!(!glob("T", "T/index/resting"), "a table's ARN does not cover its indexes");
        assert!(glob("a?c*", "abcdef"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("*", ""));
    }
}
