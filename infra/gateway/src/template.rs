//! Reads the routes out of `template.yaml`, the single source of truth for what API Gateway serves.

use serde_yaml::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemplateRoute {
    /// The function's logical id, e.g. `PingFunction`.
    pub function: String,
    /// Upper-case HTTP method, or `ANY`.
    pub method: String,
    /// API Gateway resource path, e.g. `/api/v1/ping` or `/{proxy+}`.
    pub path: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template.yaml is not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("template.yaml: {0}")]
    Shape(String),
}

/// Every `Type: Api` event of every `AWS::Serverless::Function`.
pub fn routes(template: &str) -> Result<Vec<TemplateRoute>, TemplateError> {
    let document: Value = serde_yaml::from_str(template)?;
    let resources = document
        .get("Resources")
        .and_then(Value::as_mapping)
        .ok_or_else(|| TemplateError::Shape("no Resources section".into()))?;
    let mut routes = Vec::new();
    for (name, resource) in resources {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::Serverless::Function") {
            continue;
        }
        let function = name.as_str().ok_or_else(|| TemplateError::Shape("a resource name is not a string".into()))?;
        let events = resource.get("Properties").and_then(|p| p.get("Events")).and_then(Value::as_mapping);
        for (_, event) in events.into_iter().flatten() {
            if event.get("Type").and_then(Value::as_str) != Some("Api") {
                continue;
            }
            let properties = event.get("Properties");
            let field = |key: &str| {
                properties
                    .and_then(|p| p.get(key))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| TemplateError::Shape(format!("{function}: an Api event has no {key}")))
            };
            routes.push(TemplateRoute {
                function: function.to_owned(),
                method: field("Method")?.to_ascii_uppercase(),
                path: field("Path")?,
            });
        }
    }
    if routes.is_empty() {
        return Err(TemplateError::Shape("no function has an Api event".into()));
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_api_events_and_ignores_everything_else() {
        let template = r#"
Transform: AWS::Serverless-2016-10-31
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties: { TableName: !Sub "${AWS::StackName}-x" }
  PingFunction:
    Type: AWS::Serverless::Function
    Properties:
      Environment: { Variables: { A: !Ref Table } }
      Events:
        Ping: { Type: Api, Properties: { Path: /api/v1/ping, Method: post, RestApiId: !Ref Api } }
        Tick: { Type: Schedule, Properties: { Schedule: rate(1 minute) } }
"#;
        let routes = routes(template).expect("routes");
        assert_eq!(
            routes,
            vec![TemplateRoute { function: "PingFunction".into(), method: "POST".into(), path: "/api/v1/ping".into() }]
        );
    }

    #[test]
    fn missing_pieces_are_named() {
        let error = routes("Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Events:\n        E: { Type: Api, Properties: { Method: get } }\n")
            .expect_err("no path");
        assert!(error.to_string().contains("F: an Api event has no Path"), "{error}");
    }
}
