//! The `KeyRing` custom resource (template.yaml): the one step that used to follow `sam deploy` by
//! hand. CloudFormation creates the app secret empty and never owns its value; on `Create` this
//! fills it with [`shared::store::app_secret::ensure`] (a pepper and a key ring sealed under the
//! stack's KMS key, bound to the stack's name), creating only what is missing, so the upgrade that
//! adds this resource to an older stack keeps that stack's pepper and ring. `Update` and `Delete`
//! change nothing and succeed: the secret and the key are retained, and a ring is replaced only by
//! `kavach keyring rotate`.
//!
//! Every request is answered, with a PUT of the response document to its pre-signed
//! `ResponseURL`, within a bounded time ([`WORK_BUDGET`], then [`PUT_ATTEMPTS`] tries of
//! [`PUT_TIMEOUT`]): a failure is reported as `FAILED` with a reason that names the remedy, never
//! left for CloudFormation to wait out. The serving functions `DependsOn` this resource, so none
//! serves before it has succeeded.

use std::collections::HashMap;
use std::time::Duration;

use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceRequest, CloudFormationCustomResourceResponse,
    CloudFormationCustomResourceResponseStatus as Status,
};
use serde_json::Value;
use shared::app::aws::AwsClients;
use shared::core::config::Config;
use shared::store::app_secret::{self, Ensured};

/// How long `Create`'s work may take before the request is answered `FAILED` (the SDK's own
/// per-call timeouts bound each call; this bounds them all).
pub const WORK_BUDGET: Duration = Duration::from_secs(25);
/// One attempt to deliver the response.
pub const PUT_TIMEOUT: Duration = Duration::from_secs(10);
pub const PUT_ATTEMPTS: u32 = 3;
/// CloudFormation refuses a response document above 4 KiB; the reason is cut well below it.
const MAX_REASON_CHARS: usize = 1500;

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error("not a CloudFormation custom-resource request, and no ResponseURL to answer: {0}")]
    NotARequest(String),
    #[error("could not build the HTTP client: {0}")]
    Client(String),
    #[error("could not deliver the {status:?} response to CloudFormation after {PUT_ATTEMPTS} attempts: {detail}")]
    Undelivered { status: Status, detail: String },
}

/// What one request needs: the stack's configuration (or why it could not be read), the AWS
/// clients, and the client that answers CloudFormation.
/// The resource type of the deploy's last step, which this function also answers.
pub const TABLE_PROTECTION: &str = "Custom::TableProtection";

#[derive(Debug)]
pub struct Provider {
    config: Result<Config, String>,
    aws: AwsClients,
    http: reqwest::Client,
}

/// The fields every response echoes from its request.
#[derive(Debug, Default)]
struct Echo {
    response_url: String,
    stack_id: String,
    request_id: String,
    logical_resource_id: String,
    /// Update and Delete name the resource; Create does not yet.
    physical_resource_id: Option<String>,
}

impl Provider {
    pub fn new(config: Result<Config, String>, aws: AwsClients) -> Result<Self, KeyRingError> {
        let http = reqwest::Client::builder()
            .timeout(PUT_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|error| KeyRingError::Client(error.to_string()))?;
        Ok(Self { config, aws, http })
    }

    /// Answers one CloudFormation request and returns the response it delivered.
    pub async fn handle(&self, event: Value) -> Result<CloudFormationCustomResourceResponse, KeyRingError> {
        let (echo, outcome) = match serde_json::from_value::<CloudFormationCustomResourceRequest>(event.clone()) {
            Ok(CloudFormationCustomResourceRequest::Create(request)) => {
                let echo = Echo {
                    response_url: request.response_url,
                    stack_id: request.stack_id,
                    request_id: request.request_id,
                    logical_resource_id: request.logical_resource_id,
                    physical_resource_id: None,
                };
                let outcome = if request.resource_type == TABLE_PROTECTION {
                    self.protect_tables().await
                } else {
                    self.create(&echo.stack_id).await
                };
                (echo, outcome)
            }
            Ok(CloudFormationCustomResourceRequest::Update(request)) => {
                // Protection is asked for again on every update (idempotent): a stack whose tables
                // lost it by hand gets it back with its next deploy.
                let outcome = if request.resource_type == TABLE_PROTECTION {
                    self.protect_tables().await
                } else {
                    Ok(Done::unchanged(
                        "Updated nothing: the pepper and the key ring are created once and never replaced here \
                         (rotate the ring with `kavach keyring rotate`).",
                    ))
                };
                let echo = Echo {
                    response_url: request.response_url,
                    stack_id: request.stack_id,
                    request_id: request.request_id,
                    logical_resource_id: request.logical_resource_id,
                    physical_resource_id: Some(request.physical_resource_id),
                };
                (echo, outcome)
            }
            Ok(CloudFormationCustomResourceRequest::Delete(request)) => (
                Echo {
                    response_url: request.response_url,
                    stack_id: request.stack_id,
                    request_id: request.request_id,
                    logical_resource_id: request.logical_resource_id,
                    physical_resource_id: Some(request.physical_resource_id),
                },
                Ok(Done::unchanged(
                    "Deleted nothing: the app secret and the KMS key are retained, and with them the pepper and \
                     the key ring.",
                )),
            ),
            // `non_exhaustive`: a request type CloudFormation may add later changes nothing either.
            Ok(_) => (echo_of(&event)?, Err("unknown RequestType: nothing was done".to_owned())),
            Err(error) => (echo_of(&event)?, Err(format!("the request could not be read: {error}"))),
        };
        let response = response(&echo, outcome);
        tracing::info!(
            request_id = %response.request_id,
            status = ?response.status,
            reason = response.reason.as_deref().unwrap_or_default(),
            "custom resource answered"
        );
        self.deliver(&echo.response_url, &response).await?;
        Ok(response)
    }

    /// Ensures the pepper and the ring, within [`WORK_BUDGET`].
    async fn create(&self, stack_id: &str) -> Result<Done, String> {
        let config = self.config.as_ref().map_err(|error| {
            format!("KeyRingFunction's environment is incomplete ({error}): check its variables in template.yaml")
        })?;
        // The ring is sealed under an encryption context naming STACK_NAME: it must be this stack's
        // real name, or no function of the stack could open it.
        let stack = stack_name(stack_id);
        if stack != Some(config.stack_name.as_str()) {
            return Err(format!(
                "STACK_NAME is `{}` but the stack is `{}`: a ring sealed for another name would not open; \
                 STACK_NAME must be !Ref AWS::StackName",
                config.stack_name,
                stack.unwrap_or(stack_id)
            ));
        }
        let ensured = tokio::time::timeout(WORK_BUDGET, app_secret::ensure(&self.aws.secrets, &self.aws.kms, config))
            .await
            .map_err(|_| format!("no answer from Secrets Manager and KMS within {} s", WORK_BUDGET.as_secs()))
            .and_then(|ensured| ensured.map_err(|error| error.to_string()))
            .map_err(|error| {
                format!(
                    "the pepper and key ring in `{}` were not created: {error}. Nothing was overwritten. Fix the \
                     cause (KeyRingFunction's role, the key policy of `{}`, the secret) and run `sam deploy` again; \
                     or run `kavach keyring init` against the stack",
                    config.secret_id, config.kms_key_id
                )
            })?;
        if let Some(error) = &ensured.unopened {
            tracing::error!(error, "the key ring already in the app secret does not open");
        }
        Ok(Done::created(&ensured, config))
    }

    /// Turns deletion protection on for the identity and sandbox tables. It runs last in a deploy
    /// (`TableProtection` depends on everything else): a first deploy that fails earlier rolls back
    /// over unprotected tables, which `RetainExceptOnCreate` then deletes, so their fixed names
    /// cannot block the next attempt; a table protected from its creation would stop that rollback
    /// at `DELETE_FAILED` instead.
    async fn protect_tables(&self) -> Result<Done, String> {
        let config = self.config.as_ref().map_err(|error| {
            format!("KeyRingFunction's environment is incomplete ({error}): check its variables in template.yaml")
        })?;
        let tables = [&config.tables.identity, &config.tables.sandbox];
        for table in tables {
            let update = self.aws.dynamodb.update_table().table_name(table.as_str()).deletion_protection_enabled(true);
            tokio::time::timeout(WORK_BUDGET, update.send())
                .await
                .map_err(|_| format!("no answer from DynamoDB within {} s", WORK_BUDGET.as_secs()))?
                .map_err(|error| {
                    use aws_sdk_dynamodb::error::ProvideErrorMetadata;
                    format!(
                        "deletion protection was not turned on for `{table}` ({}: {}). Nothing else changed; \
                         fix KeyRingFunction's role or the table and run `sam deploy` again",
                        error.code().unwrap_or("no answer"),
                        error.message().unwrap_or("the request failed")
                    )
                })?;
        }
        Ok(Done::unchanged(&format!("Deletion protection is on for `{}` and `{}`.", tables[0], tables[1])))
    }

    /// PUTs the response to the pre-signed URL: no `Content-Type`, which the URL was not signed with.
    async fn deliver(&self, url: &str, response: &CloudFormationCustomResourceResponse) -> Result<(), KeyRingError> {
        let body = serde_json::to_string(response).map_err(|error| KeyRingError::Undelivered {
            status: response.status.clone(),
            detail: error.to_string(),
        })?;
        let mut detail = String::new();
        for attempt in 0..PUT_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
            }
            match self.http.put(url).body(body.clone()).send().await {
                Ok(answer) if answer.status().is_success() => return Ok(()),
                Ok(answer) => detail = format!("HTTP {}", answer.status()),
                Err(error) => detail = error.to_string(),
            }
            tracing::warn!(attempt, detail, "custom resource response not delivered");
        }
        Err(KeyRingError::Undelivered { status: response.status.clone(), detail })
    }
}

/// A successful request's reason and data.
struct Done {
    reason: String,
    data: HashMap<String, String>,
}

impl Done {
    fn unchanged(reason: &str) -> Self {
        Self { reason: reason.to_owned(), data: HashMap::new() }
    }

    /// No secret in it: what was created, and the ring's root ids. A ring that was there and does
    /// not open is reported, not failed: see [`Ensured::unopened`].
    fn created(ensured: &Ensured, config: &Config) -> Self {
        let made = |created: bool| if created { "created" } else { "kept" };
        let reason = match &ensured.unopened {
            None => format!(
                "Pepper {}, key ring {} (root ids {:?}).",
                made(ensured.pepper_created),
                made(ensured.ring_created),
                ensured.root_ids
            ),
            Some(error) => format!(
                "Pepper and key ring kept as they were, but the ring does not open: {error}. Nothing was changed; \
                 until it opens every cold start counts KeyServiceFailures. Check the key policy of `{}` and that \
                 the ring was sealed for stack `{}`; `kavach keyring status` shows the same error",
                config.kms_key_id, config.stack_name
            ),
        };
        let data = HashMap::from([
            ("PepperCreated".to_owned(), ensured.pepper_created.to_string()),
            ("KeyRingCreated".to_owned(), ensured.ring_created.to_string()),
            ("KeyRingOpens".to_owned(), ensured.unopened.is_none().to_string()),
        ]);
        Self { reason, data }
    }
}

fn response(echo: &Echo, outcome: Result<Done, String>) -> CloudFormationCustomResourceResponse {
    let mut response = CloudFormationCustomResourceResponse::default();
    // Stable: the same id for every request of the stack, so no update ever reads as a replacement.
    response.physical_resource_id = echo.physical_resource_id.clone().unwrap_or_else(|| {
        let stack = stack_name(&echo.stack_id).unwrap_or(echo.logical_resource_id.as_str());
        if echo.logical_resource_id == "TableProtection" {
            format!("{stack}-table-protection")
        } else {
            format!("{stack}-key-ring")
        }
    });
    response.stack_id = echo.stack_id.clone();
    response.request_id = echo.request_id.clone();
    response.logical_resource_id = echo.logical_resource_id.clone();
    match outcome {
        Ok(done) => {
            response.status = Status::Success;
            response.reason = Some(done.reason);
            response.data = done.data;
        }
        Err(reason) => {
            response.status = Status::Failed;
            response.reason = Some(reason.chars().take(MAX_REASON_CHARS).collect());
        }
    }
    response
}

/// The fields of a request that did not parse, enough to answer it when it has a ResponseURL.
fn echo_of(event: &Value) -> Result<Echo, KeyRingError> {
    let text = |name: &str| event.get(name).and_then(Value::as_str).map(str::to_owned);
    let response_url = text("ResponseURL").ok_or_else(|| KeyRingError::NotARequest(event.to_string()))?;
    Ok(Echo {
        response_url,
        stack_id: text("StackId").unwrap_or_default(),
        request_id: text("RequestId").unwrap_or_default(),
        logical_resource_id: text("LogicalResourceId").unwrap_or_default(),
        physical_resource_id: text("PhysicalResourceId"),
    })
}

/// `kavach` of `arn:aws:cloudformation:ap-south-1:123456789012:stack/kavach/0a1b…`.
fn stack_name(stack_id: &str) -> Option<&str> {
    let resource = stack_id.split(':').nth(5)?;
    let mut parts = resource.split('/');
    (parts.next() == Some("stack")).then(|| parts.next()).flatten().filter(|name| !name.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stack_name_is_read_from_the_stack_id() {
        let id =
            "arn:aws:cloudformation:ap-south-1:123456789012:stack/kavach-prod/0a1b2c3d-0000-4000-8000-000000000000";
        assert_eq!(stack_name(id), Some("kavach-prod"));
        assert_eq!(stack_name("arn:aws:cloudformation:ap-south-1:123456789012:stack//x"), None);
        assert_eq!(stack_name("kavach"), None);
    }

    #[test]
    fn a_failure_is_cut_below_cloudformations_limit_and_keeps_a_stable_id() {
        let echo = Echo {
            stack_id: "arn:aws:cloudformation:ap-south-1:1:stack/kavach/guid".into(),
            logical_resource_id: "KeyRing".into(),
            ..Echo::default()
        };
        let failed = response(&echo, Err("x".repeat(10_000)));
        assert_eq!(failed.status, Status::Failed);
        assert_eq!(failed.reason.as_deref().map(str::len), Some(MAX_REASON_CHARS));
        assert_eq!(failed.physical_resource_id, "kavach-key-ring");
        assert!(serde_json::to_string(&failed).map(|body| body.len() < 4096).unwrap_or(false));
    }
}
