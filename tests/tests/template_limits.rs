//! The template's coarse shields stay above the application's exact budgets, so a client within
//! Kavach's own limits is never refused by API Gateway or the WAF first (which would answer a bare
//! 403 or 429 with no `Retry-After` and nothing in the traffic log).

use serde_yaml::Value;
use shared::limits::RateLimit;

fn template() -> Value {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).expect("template.yaml");
    serde_yaml::from_str(&text).expect("template parses")
}

fn default(template: &Value, parameter: &str) -> Value {
    template["Parameters"][parameter]["Default"].clone()
}

/// A rate-limit parameter's default, in requests per second.
fn per_second(template: &Value, parameter: &str) -> f64 {
    let text = default(template, parameter);
    let limit: RateLimit = text.as_str().unwrap_or_default().parse().unwrap_or_else(|e| panic!("{parameter}: {e}"));
    f64::from(limit.limit) / limit.window.as_secs_f64()
}

#[test]
fn the_waf_blocks_only_above_what_one_address_may_send_within_its_budgets() {
    let template = template();
    // One trading server, one key: the API class, orders and smart orders each have their own
    // budget, all of which it may spend at once.
    let budgets: f64 = ["ApiRateLimit", "OrderRateLimit", "SmartOrderRateLimit"]
        .iter()
        .map(|parameter| per_second(&template, parameter))
        .sum();
    let waf = default(&template, "WafRateLimit").as_f64().expect("WafRateLimit default");
    assert!(
        waf > budgets * 300.0,
        "WafRateLimit {waf} per 5 minutes is below the budgets' {} per 5 minutes",
        budgets * 300.0
    );
}
