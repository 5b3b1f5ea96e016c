//! Strict request bodies: JSON whatever the content type (TradingView sends `text/plain`), unknown
//! fields rejected, every failure a 400 that names the field in marshmallow's words.

use std::ops::RangeInclusive;

use serde_json::{Map, Value};

use crate::error::{AppError, FieldErrors};

pub const MISSING: &str = "Missing data for required field.";
pub const UNKNOWN: &str = "Unknown field.";
pub const NOT_A_STRING: &str = "Not a valid string.";
pub const NULL: &str = "Field may not be null.";

/// A parsed JSON object whose fields are taken one by one; whatever is left is unknown.
#[derive(Debug)]
pub struct Fields {
    remaining: Map<String, Value>,
    errors: FieldErrors,
}

impl Fields {
    /// Parses a body into an object. Empty and malformed bodies are 400s that say which.
    pub fn parse(body: &[u8]) -> Result<Self, AppError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Err(AppError::bad_request("Request body is empty; expected a JSON object"));
        }
        let value: Value = serde_json::from_slice(body).map_err(|error| {
            AppError::bad_request(format!(
                "Request body is not valid JSON (line {}, column {})",
                error.line(),
                error.column()
            ))
        })?;
        match value {
            Value::Object(remaining) => Ok(Self { remaining, errors: FieldErrors::new() }),
            _ => Err(AppError::bad_request("Request body must be a JSON object")),
        }
    }

    fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.entry(field.to_owned()).or_default().push(message.into());
    }

    /// A required string whose length (in characters) lies in `length`.
    pub fn required_string(&mut self, field: &str, length: RangeInclusive<usize>) -> Option<String> {
        match self.remaining.remove(field) {
            None => {
                self.fail(field, MISSING);
                None
            }
            Some(Value::Null) => {
                self.fail(field, NULL);
                None
            }
            Some(Value::String(text)) => {
                if length.contains(&text.chars().count()) {
                    Some(text)
                } else {
                    self.fail(field, format!("Length must be between {} and {}.", length.start(), length.end()));
                    None
                }
            }
            Some(_) => {
                self.fail(field, NOT_A_STRING);
                None
            }
        }
    }

    /// Ends validation: any field not taken is unknown. All failures come back together.
    pub fn finish(mut self) -> Result<(), AppError> {
        let unknown: Vec<String> = self.remaining.keys().cloned().collect();
        for field in unknown {
            self.fail(&field, UNKNOWN);
        }
        if self.errors.is_empty() {
            return Ok(());
        }
        let summary = self
            .errors
            .iter()
            .map(|(field, messages)| format!("{}: {}", printable(field), messages.join(" ")))
            .collect::<Vec<_>>()
            .join("; ");
        Err(AppError::BadRequest { message: format!("Invalid request: {summary}"), errors: Some(self.errors) })
    }
}

/// Field names are client text: keep them short and free of control characters in messages.
fn printable(field: &str) -> String {
    let clean: String = field.chars().filter(|c| !c.is_control()).take(64).collect();
    if clean.chars().count() < field.chars().count() { format!("{clean}…") } else { clean }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(result: Result<(), AppError>) -> FieldErrors {
        match result {
            Err(AppError::BadRequest { errors: Some(errors), .. }) => errors,
            other => panic!("expected field errors, got {other:?}"),
        }
    }

    #[test]
    fn takes_known_fields_and_rejects_unknown_ones() {
        let mut fields = Fields::parse(br#"{"apikey":"k","extra":1}"#).expect("object");
        assert_eq!(fields.required_string("apikey", 1..=256).as_deref(), Some("k"));
        let errors = errors_of(fields.finish());
        assert_eq!(errors["extra"], vec![UNKNOWN]);
        assert!(!errors.contains_key("apikey"));
    }

    #[test]
    fn missing_empty_null_and_wrong_type() {
        for (body, message) in [
            (r"{}", MISSING.to_owned()),
            (r#"{"apikey":""}"#, "Length must be between 1 and 256.".to_owned()),
            (r#"{"apikey":null}"#, NULL.to_owned()),
            (r#"{"apikey":42}"#, NOT_A_STRING.to_owned()),
        ] {
            let mut fields = Fields::parse(body.as_bytes()).expect("object");
            assert!(fields.required_string("apikey", 1..=256).is_none());
            assert_eq!(errors_of(fields.finish())["apikey"], vec![message], "{body}");
        }
    }

    #[test]
    fn non_objects_and_garbage_are_400s_with_reasons() {
        for (body, needle) in [
            ("", "empty"),
            ("  \n", "empty"),
            ("{", "not valid JSON"),
            ("[1]", "JSON object"),
            ("apikey=x", "not valid JSON"),
        ] {
            let error = Fields::parse(body.as_bytes()).expect_err(body);
            assert_eq!(error.status(), 400);
            assert!(error.public_message().contains(needle), "{body}: {}", error.public_message());
        }
    }

    #[test]
    fn message_names_fields_readably() {
        let fields = Fields::parse(br#"{"a\u0007b":1}"#).expect("object");
        let error = fields.finish().expect_err("unknown");
        assert_eq!(error.public_message(), "Invalid request: ab…: Unknown field.");
    }
}
