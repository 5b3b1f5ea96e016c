//! Each rate-limit class is its own budget: pages have theirs, so a browser left open on the
//! dashboard cannot spend the API's budget of the trader's strategies, nor the API the pages'.

use std::sync::Arc;

use kavach_tests::{gateway_with_user, get_text, ping_body, post, unique_ip};
use shared::core::clock::SystemClock;

#[tokio::test]
async fn a_spent_page_budget_refuses_pages_only() {
    let overrides = [("PAGE_RATE_LIMIT", "3 per hour"), ("API_RATE_LIMIT", "5 per hour")];
    let (_, gateway, key) = gateway_with_user(&overrides, Arc::new(SystemClock)).await;
    let ip = unique_ip();
    for _ in 0..3 {
        assert_eq!(get_text(gateway, ip, "/auth/reset-password").await.0, 200);
    }
    let (status, _) = get_text(gateway, ip, "/auth/reset-password").await;
    assert_eq!(status, 429, "the fourth page in the hour is over PAGE_RATE_LIMIT");
    for _ in 0..5 {
        assert_eq!(post(gateway, ip, "/api/v1/ping", &ping_body(&key)).await.status, 200, "the API's own budget");
    }
    assert_eq!(post(gateway, ip, "/api/v1/ping", &ping_body(&key)).await.status, 429);
}
