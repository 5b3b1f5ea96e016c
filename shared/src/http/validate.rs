//! Strict request bodies: JSON whatever the content type (TradingView sends `text/plain`), unknown
//! fields rejected, every failure a 400 that names the field in marshmallow's words.

use std::ops::RangeInclusive;

use serde_json::{Map, Value};

use crate::core::error::{AppError, FieldErrors};

pub const MISSING: &str = "Missing data for required field.";
pub const UNKNOWN: &str = "Unknown field.";
pub const NOT_A_STRING: &str = "Not a valid string.";
pub const NULL: &str = "Field may not be null.";
pub const NOT_A_NUMBER: &str = "Not a valid number.";
pub const NOT_AN_INTEGER: &str = "Not a valid integer.";
pub const NOT_FINITE: &str = "Special numeric values (nan or infinity) are not permitted.";
pub const NOT_A_LIST: &str = "Not a valid list.";
pub const NOT_AN_OBJECT: &str = "Invalid input type.";
pub const NOT_A_BOOLEAN: &str = "Not a valid boolean.";
pub const NOT_A_DATE: &str = "Not a valid date.";

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

    /// The fields of one object inside a list, e.g. a basket leg; `finish_into` files its errors
    /// under `orders[1].quantity`-style names.
    pub fn object(value: Value) -> Result<Self, &'static str> {
        match value {
            Value::Object(remaining) => Ok(Self { remaining, errors: FieldErrors::new() }),
            _ => Err(NOT_AN_OBJECT),
        }
    }

    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.errors.entry(field.to_owned()).or_default().push(message.into());
    }

    /// Whether no error has been recorded so far.
    pub fn is_clean(&self) -> bool {
        self.errors.is_empty()
    }

    /// Takes a field out, mapping JSON `null` to an error: OpenAlgo's fields are not nullable
    /// unless said so.
    fn take(&mut self, field: &str) -> Option<Value> {
        match self.remaining.remove(field) {
            Some(Value::Null) => {
                self.fail(field, NULL);
                None
            }
            other => other,
        }
    }

    /// Takes a field out; a required one that is absent (and not already failed as `null`) is
    /// recorded as missing.
    fn take_present(&mut self, field: &str, required: bool) -> Option<Value> {
        let value = self.take(field);
        if value.is_none() && required && !self.errors.contains_key(field) {
            self.fail(field, MISSING);
        }
        value
    }

    /// Records every field nobody took as unknown.
    fn reject_unknown(&mut self) {
        let unknown: Vec<String> = self.remaining.keys().cloned().collect();
        for field in unknown {
            self.fail(&field, UNKNOWN);
        }
    }

    /// A required string of any content whose length (in characters) lies in `length`.
    pub fn string_in(&mut self, field: &str, length: RangeInclusive<usize>, required: bool) -> Option<String> {
        match self.take_present(field, required)? {
            Value::String(text) if length.contains(&text.chars().count()) => Some(text),
            Value::String(_) => {
                self.fail(field, format!("Length must be between {} and {}.", length.start(), length.end()));
                None
            }
            _ => {
                self.fail(field, NOT_A_STRING);
                None
            }
        }
    }

    /// A value from a fixed set, compared exactly (OpenAlgo's enums are case-sensitive lists).
    pub fn one_of<T: Copy>(&mut self, field: &str, choices: &[(&str, T)], default: Option<T>) -> Option<T> {
        let Some(value) = self.take_present(field, default.is_none()) else {
            return default;
        };
        let found = value.as_str().and_then(|text| choices.iter().find(|(name, _)| *name == text));
        if let Some((_, choice)) = found {
            return Some(*choice);
        }
        let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
        self.fail(field, format!("Must be one of: {}.", names.join(", ")));
        None
    }

    /// A number: a JSON number or a numeric string (`"1"`, `"800.5"`, `"1e3"`), never a boolean,
    /// NaN or infinity. `None` when absent; errors are recorded.
    pub fn number(&mut self, field: &str, required: bool) -> Option<f64> {
        let value = self.take_present(field, required)?;
        let parsed = match &value {
            Value::Number(number) => number.as_f64(),
            Value::String(text) => text.trim().parse::<f64>().ok(),
            _ => None,
        };
        match parsed {
            Some(number) if number.is_finite() => Some(number),
            Some(_) => {
                self.fail(field, NOT_FINITE);
                None
            }
            None => {
                self.fail(field, NOT_A_NUMBER);
                None
            }
        }
    }

    /// A whole number: a JSON integer, an integral JSON float, or a string of digits.
    pub fn integer(&mut self, field: &str, required: bool) -> Option<i64> {
        let value = self.take_present(field, required)?;
        let parsed = match &value {
            Value::Number(number) => number
                .as_i64()
                .or_else(|| number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64)),
            Value::String(text) => text.trim().parse::<i64>().ok(),
            _ => None,
        };
        if parsed.is_none() {
            self.fail(field, NOT_AN_INTEGER);
        }
        parsed
    }

    /// A boolean as marshmallow reads one: `true`/`false`, 1/0, and the strings `true`, `on`, `yes`,
    /// `y`, `t`, `1` (and their negations) in lower, upper or title case.
    pub fn boolean(&mut self, field: &str) -> Option<bool> {
        const TRUTHY: &[&str] = &["t", "true", "on", "y", "yes", "1"];
        const FALSY: &[&str] = &["f", "false", "off", "n", "no", "0"];
        let value = self.take_present(field, true)?;
        let cased = |text: &str, word: &str| {
            let title: String = word.chars().take(1).flat_map(char::to_uppercase).chain(word.chars().skip(1)).collect();
            text == word || text == word.to_uppercase() || text == title
        };
        let parsed = match &value {
            Value::Bool(flag) => Some(*flag),
            Value::Number(number) => match number.as_f64() {
                Some(1.0) => Some(true),
                Some(0.0) => Some(false),
                _ => None,
            },
            Value::String(text) if TRUTHY.iter().any(|word| cased(text, word)) => Some(true),
            Value::String(text) if FALSY.iter().any(|word| cased(text, word)) => Some(false),
            _ => None,
        };
        if parsed.is_none() {
            self.fail(field, NOT_A_BOOLEAN);
        }
        parsed
    }

    /// A calendar date written `YYYY-MM-DD`, returned as (year, month, day).
    pub fn date(&mut self, field: &str) -> Option<(i32, u32, u32)> {
        let text = self.string_in(field, 0..=usize::MAX, true)?;
        let parts: Vec<&str> = text.split('-').collect();
        let parsed = match parts.as_slice() {
            [y, m, d] if y.len() == 4 && m.len() == 2 && d.len() == 2 => {
                match (y.parse::<i32>(), m.parse::<u32>(), d.parse::<u32>()) {
                    (Ok(y), Ok(m), Ok(d)) if (1..=12).contains(&m) && (1..=days_in_month(y, m)).contains(&d) => {
                        Some((y, m, d))
                    }
                    _ => None,
                }
            }
            _ => None,
        };
        if parsed.is_none() {
            self.fail(field, NOT_A_DATE);
        }
        parsed
    }

    /// A required list; each element comes back as raw JSON for its own schema.
    pub fn list(&mut self, field: &str) -> Option<Vec<Value>> {
        let value = self.take_present(field, true)?;
        match value {
            Value::Array(items) => Some(items),
            _ => {
                self.fail(field, NOT_A_LIST);
                None
            }
        }
    }

    /// Parses every element of the list `field` as an object with `parse`, filing each element's
    /// errors under `field[index].name`. Returns the elements that parsed.
    pub fn objects<T>(
        &mut self,
        field: &str,
        items: Vec<Value>,
        mut parse: impl FnMut(&mut Fields) -> Option<T>,
    ) -> Vec<T> {
        let mut parsed = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let name = format!("{field}[{index}]");
            match Fields::object(item) {
                Ok(mut item) => {
                    parsed.extend(parse(&mut item));
                    item.finish_into(self, &name);
                }
                Err(message) => self.fail(&name, message),
            }
        }
        parsed
    }

    /// Ends validation of a nested object: unknown fields become errors, and every error moves
    /// into `parent` under `prefix.field`.
    pub fn finish_into(mut self, parent: &mut Fields, prefix: &str) {
        self.reject_unknown();
        for (field, messages) in self.errors {
            parent.errors.entry(format!("{prefix}.{field}")).or_default().extend(messages);
        }
    }

    /// A required string whose length (in characters) lies in `length`.
    pub fn required_string(&mut self, field: &str, length: RangeInclusive<usize>) -> Option<String> {
        self.string_in(field, length, true)
    }

    /// Ends validation: any field not taken is unknown. All failures come back together.
    pub fn finish(mut self) -> Result<(), AppError> {
        self.reject_unknown();
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

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Runs a route schema over `body` the way the pipeline does: `apikey` first, then the schema,
/// then the unknown-field check. Ok only if nothing failed, and then the schema must have parsed.
#[cfg(test)]
pub(crate) fn run_schema<T>(body: &str, parse: fn(&mut Fields) -> Option<T>) -> Result<T, FieldErrors> {
    let mut fields = Fields::parse(body.as_bytes()).expect("object");
    let _ = fields.required_string("apikey", 1..=256);
    let parsed = parse(&mut fields);
    match fields.finish() {
        Ok(()) => Ok(parsed.expect("a schema that records no error must parse")),
        Err(AppError::BadRequest { errors: Some(errors), .. }) => Err(errors),
        Err(other) => panic!("{other:?}"),
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
    fn numbers_accept_json_numbers_and_numeric_strings_only() {
        let mut fields =
            Fields::parse(br#"{"a":1,"b":"800.5","c":"1e3","d":true,"e":"NaN","f":"abc","g":" 7 ","h":-2.5}"#)
                .expect("object");
        assert_eq!(fields.number("a", true), Some(1.0));
        assert_eq!(fields.number("b", true), Some(800.5));
        assert_eq!(fields.number("c", true), Some(1000.0));
        assert_eq!(fields.number("d", true), None);
        assert_eq!(fields.number("e", true), None);
        assert_eq!(fields.number("f", true), None);
        assert_eq!(fields.number("g", true), Some(7.0));
        assert_eq!(fields.number("h", true), Some(-2.5));
        assert_eq!(fields.number("absent", false), None);
        let errors = errors_of(fields.finish());
        assert_eq!(errors["d"], vec![NOT_A_NUMBER]);
        assert_eq!(errors["e"], vec![NOT_FINITE]);
        assert_eq!(errors["f"], vec![NOT_A_NUMBER]);
        assert!(!errors.contains_key("absent"));
    }

    #[test]
    fn integers_and_enums() {
        let mut fields = Fields::parse(br#"{"a":"5","b":5.0,"c":5.5,"d":"5.0","x":"buy","y":"Buy"}"#).expect("object");
        assert_eq!(fields.integer("a", true), Some(5));
        assert_eq!(fields.integer("b", true), Some(5));
        assert_eq!(fields.integer("c", true), None);
        assert_eq!(fields.integer("d", true), None);
        let choices = [("BUY", 1), ("SELL", 2), ("buy", 1), ("sell", 2)];
        assert_eq!(fields.one_of("x", &choices, None), Some(1));
        assert_eq!(fields.one_of("y", &choices, None), None);
        assert_eq!(fields.one_of("z", &choices, Some(2)), Some(2));
        let errors = errors_of(fields.finish());
        assert_eq!(errors["c"], vec![NOT_AN_INTEGER]);
        assert_eq!(errors["y"], vec!["Must be one of: BUY, SELL, buy, sell."]);
    }

    #[test]
    fn booleans_as_marshmallow_reads_them() {
        let mut fields =
            Fields::parse(br#"{"a":true,"b":"on","c":"TRUE","d":1,"e":"no","f":0,"g":"maybe","h":"tRUE","i":2}"#)
                .expect("object");
        let read: Vec<Option<bool>> =
            ["a", "b", "c", "d", "e", "f", "g", "h", "i"].iter().map(|f| fields.boolean(f)).collect();
        assert_eq!(
            read,
            vec![Some(true), Some(true), Some(true), Some(true), Some(false), Some(false), None, None, None]
        );
        let errors = errors_of(fields.finish());
        assert_eq!(errors["g"], vec![NOT_A_BOOLEAN]);
    }

    #[test]
    fn dates_are_real_calendar_days() {
        let mut fields = Fields::parse(
            br#"{"a":"2025-01-02","b":"2024-02-29","c":"2025-02-29","d":"2025-1-2","e":"02-01-2025","f":"2025-13-01"}"#,
        )
        .expect("object");
        assert_eq!(fields.date("a"), Some((2025, 1, 2)));
        assert_eq!(fields.date("b"), Some((2024, 2, 29)));
        for bad in ["c", "d", "e", "f"] {
            assert_eq!(fields.date(bad), None, "{bad}");
        }
        assert_eq!(errors_of(fields.finish())["c"], vec![NOT_A_DATE]);
    }

    #[test]
    fn nested_objects_file_errors_under_their_index() {
        let mut fields = Fields::parse(br#"{"orders":[{"symbol":"SBIN"},{"x":1}]}"#).expect("object");
        for (index, item) in fields.list("orders").expect("list").into_iter().enumerate() {
            let mut leg = Fields::object(item).expect("object");
            let _ = leg.required_string("symbol", 1..=64);
            leg.finish_into(&mut fields, &format!("orders[{index}]"));
        }
        let errors = errors_of(fields.finish());
        assert_eq!(errors["orders[1].symbol"], vec![MISSING]);
        assert_eq!(errors["orders[1].x"], vec![UNKNOWN]);
        assert!(!errors.contains_key("orders[0].symbol"));
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
