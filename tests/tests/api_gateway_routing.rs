//! The local gateway routes as API Gateway does, and the pages work under a stage prefix.
//!
//! - A declared resource called with a method it does not declare falls through to `{proxy+}`, as
//!   in API Gateway; the catch-all answers 405 naming the methods, never feeds the 404 detector (a
//!   trader opening `/api/v1/ping` in a browser must not ban their own address), and never logs a
//!   webhook's secret id.
//! - Under a stage (`/prod`, the execute-api URL), every route is served under it and nothing
//!   outside it, and every link, form action and redirect of the pages carries it: otherwise the
//!   first form posts to the host root, where API Gateway answers 403.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use aws_sdk_dynamodb::types::AttributeValue;
use kavach_tests::web::{Page, WebClient};
use kavach_tests::*;
use shared::core::clock::{Clock, SystemClock};
use shared::threats::Detector;

async fn assert_never_a_scanner(deps: &shared::Deps, ip: IpAddr) {
    assert!(deps.bans.active(ip, SystemClock.now()).await.expect("read").is_none(), "{ip} is not banned");
    let trackers = deps.trackers.list(Detector::NotFound, SystemClock.now()).await.expect("list");
    assert!(!trackers.iter().any(|tracker| tracker.ip == ip), "not one miss of {ip} was counted");
}

#[tokio::test]
async fn a_declared_path_with_the_wrong_method_is_a_405_naming_its_methods_and_never_a_miss() {
    let (deps, gateway, key) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let trader = unique_ip();
    let client = client_from(trader);
    // More than the 404 detector's threshold (20), on API routes, pages and a form endpoint.
    let calls = [("GET", "/api/v1/ping", "POST"), ("GET", "/auth/logout", "POST"), ("PUT", "/setup", "GET, POST")];
    for i in 0..24 {
        let (method, path, allowed) = calls[i % calls.len()];
        let url = format!("http://{gateway}{path}");
        let response = client.request(method.parse().expect("method"), &url).send().await.expect("gateway reachable");
        assert_eq!(response.status().as_u16(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allowed, "{method} {path}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["code"], "method_not_allowed");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(method) && message.contains(allowed), "names the methods: {message}");
    }
    assert_eq!(post(gateway, trader, "/api/v1/ping", &ping_body(&key)).await.status, 200, "still served");
    assert_never_a_scanner(&deps, trader).await;
}

#[tokio::test]
async fn undeclared_paths_still_count_and_the_root_outside_every_resource_is_api_gateways_403() {
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let scanner = unique_ip();
    assert_eq!(get_text(gateway, scanner, "/wp-login.php").await.0, 404);
    // `/` declares GET only, and `{proxy+}` does not match it: API Gateway itself answers.
    let reply = post(gateway, scanner, "/", "{}").await;
    assert_eq!((reply.status, reply.body["message"].as_str()), (403, Some("Missing Authentication Token")));
    let trackers = deps.trackers.list(Detector::NotFound, SystemClock.now()).await.expect("list");
    let record = trackers.iter().find(|tracker| tracker.ip == scanner).expect("the undeclared path counted");
    assert_eq!(record.count, 1, "only the undeclared path");
}

#[tokio::test]
async fn a_wrong_method_on_a_webhook_url_never_logs_its_secret() {
    let (deps, gateway, _) = gateway_with_user(&[], Arc::new(SystemClock)).await;
    let (user, _) = new_user(&deps).await;
    let webhook_id = sbin_webhook(&deps, &user, "routing", 1).await;
    let sender = unique_ip();
    let (status, body) = get_text(gateway, sender, &format!("/strategy/webhook/{webhook_id}")).await;
    assert_eq!(status, 405, "{body}");
    assert!(!body.contains(&webhook_id), "the answer does not echo the id: {body}");
    let logged = traffic_items(&deps, sender, 1).await;
    let path = logged[0].get("path").and_then(|path| path.as_s().ok()).cloned().unwrap_or_default();
    assert_eq!(path, "/strategy/webhook/{webhook_id}", "the resource stands for the secret path");
    let everything: Vec<&AttributeValue> = logged.iter().flat_map(|item| item.values()).collect();
    assert!(!format!("{everything:?}").contains(&webhook_id), "the id is nowhere in the record");
    assert_never_a_scanner(&deps, sender).await;
}

/// Every `href` and `action` value of `page`.
fn links(page: &Page) -> Vec<String> {
    let mut found = Vec::new();
    for attribute in [r#"href=""#, r#"action=""#] {
        for (at, _) in page.text.match_indices(attribute) {
            let rest = &page.text[at + attribute.len()..];
            found.push(rest.split('"').next().unwrap_or_default().to_owned());
        }
    }
    found
}

/// Each link of `page` (`what` names it) is under `/prod`.
fn assert_under_stage(what: &str, page: &Page) {
    let links = links(page);
    assert!(!links.is_empty() || page.status == 303, "{what} has links");
    for link in links {
        assert!(link.starts_with("/prod/"), "{what}: `{link}` is not under /prod");
    }
    let location = page.location();
    assert!(location.is_empty() || location.starts_with("/prod/"), "{what} redirects to `{location}`");
}

#[tokio::test]
async fn under_a_stage_every_route_is_served_under_it_and_every_link_carries_it() {
    let deps = cold_start(config_with(ROOMY), Arc::new(SystemClock)).await;
    let gateway = start_gateway_under(deps.clone(), "prod").await;
    let (_, key) = new_user(&deps).await;
    let source = unique_ip();

    // The API under the stage; nothing outside it, as on execute-api.
    assert_eq!(post(gateway, source, "/prod/api/v1/ping", &ping_body(&key)).await.status, 200);
    let outside = post(gateway, source, "/api/v1/ping", &ping_body(&key)).await;
    assert_eq!((outside.status, outside.body["message"].as_str()), (403, Some("Forbidden")));
    assert_eq!(post(gateway, source, "/production/api/v1/ping", &ping_body(&key)).await.status, 403);

    // Logging in through the forms' own actions and the redirects' own locations.
    let admin = new_admin(&deps).await;
    let mut browser = WebClient::under(gateway, source, "/prod");
    // Before setup (this suite's stack may be fresh) the login page sends visitors to setup, and
    // setup to the login page after it: under the stage either way.
    for path in ["/auth/login", "/setup"] {
        let page = browser.get(path).await;
        assert!(matches!(page.status, 200 | 303), "{path}: {}", page.text);
        assert_under_stage(path, &page);
    }
    let step1 = browser.post("/auth/login", &[("username", &admin.username), ("password", &admin.password)]).await;
    assert_eq!((step1.status, step1.location()), (303, "/prod/auth/login/totp"), "{}", step1.text);
    let totp = browser.get("/auth/login/totp").await;
    assert_under_stage("the TOTP form", &totp);
    let step2 =
        browser.post("/auth/login/totp", &[("totp_code", &admin.code(&deps)), ("csrf_token", &totp.csrf())]).await;
    assert_eq!((step2.status, step2.location()), (303, "/prod/dashboard"), "{}", step2.text);

    // Every page a logged-in administrator reaches, and the answers of a form.
    let mut seen = BTreeSet::new();
    for path in ["/dashboard", "/apikey", "/auth/sessions", "/security", "/logs", "/auth/reset-password"] {
        let page = browser.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        assert_under_stage(path, &page);
        seen.extend(links(&page));
    }
    for nav in ["/prod/dashboard", "/prod/apikey", "/prod/security", "/prod/logs", "/prod/auth/logout"] {
        assert!(seen.contains(nav), "the pages link to {nav}");
    }
    let csrf = browser.get("/security").await.csrf();
    let target = unique_ip().to_string();
    let banned = browser.post("/security/ban", &[("ip_address", &target), ("csrf_token", &csrf)]).await;
    assert_eq!((banned.status, banned.location()), (303, "/prod/security?banned"), "{}", banned.text);
    let unbanned = browser.post("/security/unban", &[("ip_address", &target), ("csrf_token", &csrf)]).await;
    assert_eq!((unbanned.status, unbanned.location()), (303, "/prod/security?unbanned"), "{}", unbanned.text);
    let json = browser.post_json("/auth/login", &[("username", "nobody"), ("password", "x")]).await;
    assert_ne!(json.status, 500, "{}", json.text);
    let logout = browser.post("/auth/logout", &[("csrf_token", &csrf)]).await;
    assert_eq!((logout.status, logout.location()), (303, "/prod/auth/login?bye"), "{}", logout.text);
    // A page that needs a session sends a visitor without one to the login under the stage.
    let expired = browser.get("/dashboard").await;
    assert_eq!((expired.status, expired.location()), (303, "/prod/auth/login"), "{}", expired.text);
}
