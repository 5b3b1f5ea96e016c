//! Linking Zerodha on the Broker page, over HTTP through the local gateway, against the local Kite
//! stub: the callback completes only in the session that started the login, with that login's
//! unused, unexpired `state` (W10, W11); the app credentials and the token are stored encrypted
//! under the broker's own key; disconnect revokes at Kite (W26) and, when Kite cannot be told,
//! still revokes here.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::AttributeValue;
use kavach_tests::kite_stub::{API_KEY, API_SECRET, KiteStub};
use kavach_tests::web::{Page, WebClient};
use kavach_tests::{WebUser, config_with, market_morning, new_web_user, query_param, start_gateway, unique_ip};
use serde_json::json;
use shared::Deps;
use shared::app::aws::AwsClients;
use shared::broker::BrokerId;
use shared::core::clock::{Clock, ManualClock};
use shared::core::metrics::MetricSink;
use shared::store::broker_links::LinkState;

/// A gateway whose Kite is the stub, on a frozen clock, a logged-in trader, and the stub.
struct Linking {
    deps: Arc<Deps>,
    clock: Arc<ManualClock>,
    gateway: std::net::SocketAddr,
    stub: KiteStub,
    user: WebUser,
    browser: WebClient,
    /// The metric lines this stack emitted.
    metrics: Arc<Mutex<Vec<String>>>,
}

impl Linking {
    async fn start() -> Self {
        let stub = KiteStub::start().await;
        // A frozen morning in the past: the logins' audit records must not sort ahead of the
        // records other suites look for among the newest (`recent_audit`), as future ones would.
        let clock = market_morning();
        let config = config_with(&[("KITE_API_ROOT", &stub.root), ("KITE_LOGIN_ROOT", &stub.root)]);
        let metrics = Arc::new(Mutex::new(Vec::new()));
        let aws = AwsClients::from_env().await;
        let deps = shared::app::bootstrap::init_with(config, clock.clone(), aws, MetricSink::Memory(metrics.clone()))
            .await
            .expect("cold start");
        let gateway = start_gateway(deps.clone()).await;
        let user = new_web_user(&deps).await;
        let browser = WebClient::logged_in(gateway, unique_ip(), &user, &deps).await;
        Self { deps, clock, gateway, stub, user, browser, metrics }
    }

    /// Connect with the test app's credentials: the redirect to Kite's login, checked.
    async fn connect(&mut self) -> String {
        let page = self.browser.get("/broker").await;
        assert_eq!(page.status, 200, "{}", page.text);
        let form = [("broker", "zerodha"), ("api_key", API_KEY), ("api_secret", API_SECRET)];
        let csrf = page.csrf();
        let started =
            self.browser.post("/broker/connect", &[&form[..], &[("csrf_token", csrf.as_str())]].concat()).await;
        assert_eq!(started.status, 303, "{}", started.text);
        let login = started.location().to_owned();
        assert!(login.starts_with(&format!("{}/connect/login?v=3&api_key={API_KEY}&redirect_params=", self.stub.root)));
        login
    }

    /// A trader who has connected and pressed Authorize at Kite: the login URL and the query of
    /// Kite's redirect back, the callback not yet made.
    async fn authorized() -> (Self, String, String) {
        let mut linking = Self::start().await;
        let login = linking.connect().await;
        let query = linking.stub.authorize(&login).await;
        (linking, login, query)
    }

    async fn callback(&mut self, query: &str) -> Page {
        self.browser.get(&format!("/broker/callback/zerodha?{query}")).await
    }

    async fn status(&mut self) -> String {
        self.browser.get("/broker").await.element_text("status-zerodha").expect("status shown")
    }

    async fn session_exchanges(&self) -> usize {
        self.stub.calls("/session/token").await.iter().filter(|call| call["method"] == "POST").count()
    }

    /// The link's stored item, every attribute as text.
    async fn stored_item(&self) -> String {
        let item = self
            .deps
            .aws
            .dynamodb
            .get_item()
            .table_name(&self.deps.config.tables.identity)
            .key("pk", AttributeValue::S(format!("broker#{}#zerodha", self.user.username)))
            .consistent_read(true)
            .send()
            .await
            .expect("read")
            .item
            .expect("a link item");
        format!("{item:?}")
    }
}

/// The `state` a login URL carries in its `redirect_params`.
fn state_of(login_url: &str) -> String {
    let redirect_params = query_param(login_url, "redirect_params").expect("redirect_params");
    query_param(&redirect_params, "state").expect("a state")
}

/// A callback query with the state replaced by `state` (or left out).
fn with_state(query: &str, state: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name != "state")
        .map(|(n, v)| (n.into(), v.into()))
        .collect();
    if let Some(state) = state {
        pairs.push(("state".into(), state.into()));
    }
    form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish()
}

fn assert_refused(page: &Page) {
    assert_eq!(page.status, 400, "{}", page.text);
    assert!(page.text.contains("Nothing was linked"), "{}", page.text);
}

#[tokio::test]
async fn linking_zerodha_stores_only_ciphertexts_and_disconnect_revokes_at_kite() {
    let mut linking = Linking::start().await;
    assert_eq!(linking.status().await, "not linked");
    let login = linking.connect().await;
    assert_eq!(linking.status().await, "pending", "credentials saved, no login yet");
    let query = linking.stub.authorize(&login).await;
    assert!(query.contains("request_token=") && query.contains("state="), "{query}");

    let done = linking.callback(&query).await;
    assert_eq!((done.status, done.location()), (303, "/broker?linked=zerodha"), "{}", done.text);
    let page = linking.browser.get("/broker?linked=zerodha").await;
    assert_eq!(page.element_text("status-zerodha").as_deref(), Some("linked"));
    assert_eq!(page.element_text("user-zerodha").as_deref(), Some("AB1234"));
    assert_eq!(page.element_text("key-zerodha").as_deref(), Some("…tapp"), "only the key's last four");
    assert!(!page.text.contains(API_SECRET) && !page.text.contains(API_KEY), "credentials never shown again");
    // The page's Connect form may lead to Kite's login (and nowhere else but here).
    let policy = page.headers["content-security-policy"].to_str().expect("csp");
    assert!(policy.contains(&format!("form-action 'self' {};", linking.stub.root)), "{policy}");
    assert_eq!(linking.session_exchanges().await, 1);

    // What is stored opens only with the broker's key: no secret, no token in clear.
    let link = linking.deps.identity.broker_link(&linking.user.username, BrokerId::Zerodha).await.expect("read");
    let link = link.expect("linked");
    assert_eq!(link.state, LinkState::Linked);
    let zerodha = linking.deps.broker_ciphers.of(BrokerId::Zerodha);
    let token = zerodha.decrypt(link.encrypted_token.as_deref().expect("token"), None, linking.clock.now()).await;
    let token = String::from_utf8(token.expect("opens with Zerodha's key").to_vec()).expect("text");
    assert_eq!(token.len(), 32, "Kite's access token");
    let stored = linking.stored_item().await;
    for plaintext in [API_SECRET, API_KEY, token.as_str()] {
        assert!(!stored.contains(plaintext), "{plaintext} is stored in clear: {stored}");
    }
    let other_purpose = linking.deps.totp_secrets.decrypt(&link.encrypted_credentials, None, linking.clock.now()).await;
    assert!(other_purpose.is_err(), "another purpose's key opens nothing of the broker's");
    let active = |sessions: serde_json::Value| {
        sessions.as_array().map_or(0, |all| all.iter().filter(|s| s["active"] == true).count())
    };
    assert_eq!(active(linking.stub.control("GET", "sessions", json!({})).await), 1);

    // Disconnect ends the session at Kite, then here.
    let csrf = linking.browser.get("/broker").await.csrf();
    let gone = linking.browser.post("/broker/disconnect", &[("broker", "zerodha"), ("csrf_token", &csrf)]).await;
    assert_eq!((gone.status, gone.location()), (303, "/broker?disconnected"), "{}", gone.text);
    let deletes = linking.stub.calls("/session/token").await;
    assert_eq!(deletes.iter().filter(|call| call["method"] == "DELETE" && call["status"] == 200).count(), 1);
    assert_eq!(linking.status().await, "revoked");
    assert_eq!(active(linking.stub.control("GET", "sessions", json!({})).await), 0, "ended at Kite");
    let stored = linking.stored_item().await;
    assert!(!stored.contains("\"tok\""), "no token is held after a disconnect: {stored}");
}

#[tokio::test]
async fn a_callback_without_a_state_is_refused_with_nothing_stored() {
    let (mut linking, _, query) = Linking::authorized().await;
    assert_refused(&linking.callback(&with_state(&query, None)).await);
    assert_refused(&linking.callback(&with_state(&query, Some(""))).await);
    assert_refused(&linking.callback(&with_state(&query, Some("made-up-state"))).await);
    assert_eq!(linking.session_exchanges().await, 0, "the request token was never exchanged");
    assert_eq!(linking.status().await, "pending");
}

#[tokio::test]
async fn a_used_state_is_refused() {
    let (mut linking, login, query) = Linking::authorized().await;
    assert_eq!(linking.callback(&query).await.status, 303);
    // The same callback again, and the same state with a fresh request token.
    assert_refused(&linking.callback(&query).await);
    let fresh = linking.stub.request_token().await;
    let replay = with_state(&format!("action=login&status=success&request_token={fresh}"), Some(&state_of(&login)));
    assert_refused(&linking.callback(&replay).await);
    assert_eq!(linking.session_exchanges().await, 1);
}

#[tokio::test]
async fn an_expired_state_is_refused() {
    let (mut linking, _, query) = Linking::authorized().await;
    linking.clock.advance(shared::store::oauth_state::STATE_TTL + Duration::from_secs(1));
    // The session itself is still valid: only the login's state has run out.
    let expired = linking.callback(&query).await;
    assert_refused(&expired);
    assert_eq!(linking.session_exchanges().await, 0);
}

#[tokio::test]
async fn another_sessions_state_is_refused_and_spent() {
    let (mut linking, _, query) = Linking::authorized().await;
    // The same trader logged in elsewhere (or an attacker who got them to follow a link) cannot
    // complete this login: the state is bound to the session that started it. (A step later: the
    // first login used this step's TOTP code.)
    linking.clock.advance(Duration::from_secs(shared::crypto::totp::STEP_SECS));
    let mut elsewhere = WebClient::logged_in(linking.gateway, unique_ip(), &linking.user, &linking.deps).await;
    let foreign = elsewhere.get(&format!("/broker/callback/zerodha?{query}")).await;
    assert_refused(&foreign);
    // Presented once, the state is gone: the right session cannot use it afterwards either.
    assert_refused(&linking.callback(&query).await);
    // Another trader's session is refused the same way.
    let (attacker, _, their_query) = Linking::authorized().await;
    let crossed = linking.callback(&their_query).await;
    assert_refused(&crossed);
    assert_eq!(linking.session_exchanges().await, 0);
    assert_eq!(attacker.session_exchanges().await, 0);
}

#[tokio::test]
async fn a_callback_without_a_session_is_refused_with_nothing_stored() {
    let (mut linking, _, query) = Linking::authorized().await;
    let mut no_session = WebClient::new(linking.gateway, unique_ip());
    let page = no_session.get(&format!("/broker/callback/zerodha?{query}")).await;
    assert_eq!((page.status, page.location()), (303, "/auth/login"), "{}", page.text);
    let json = no_session.get_json(&format!("/broker/callback/zerodha?{query}")).await;
    assert_eq!(json.status, 401, "{}", json.text);
    assert_eq!(json.json()["code"], "session_expired");
    assert_eq!(linking.session_exchanges().await, 0);
    // The state was never presented to the store, so the trader's own session can still finish.
    assert_eq!(linking.callback(&query).await.status, 303);
}

#[tokio::test]
async fn a_disconnect_kite_cannot_hear_still_revokes_here() {
    let (mut linking, _, query) = Linking::authorized().await;
    assert_eq!(linking.callback(&query).await.status, 303);
    let outage = json!({ "method": "DELETE", "path": "/session/token", "preset": "network", "times": 5 });
    linking.stub.control("POST", "inject", outage).await;
    let csrf = linking.browser.get("/broker").await.csrf();
    let page = linking.browser.post("/broker/disconnect", &[("broker", "zerodha"), ("csrf_token", &csrf)]).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains("Disconnected here, but the broker could not be told"), "{}", page.text);
    assert_eq!(page.element_text("status-zerodha").as_deref(), Some("revoked"));
    let last_error = page.element_text("last-error-zerodha").expect("the failure is kept");
    assert!(last_error.contains("Not revoked at the broker"), "{last_error}");
    let link = linking.deps.identity.broker_link(&linking.user.username, BrokerId::Zerodha).await.expect("read");
    assert!(link.expect("link").encrypted_token.is_none(), "the token is dropped here all the same");
    // Metered, for the BrokerRevokeFailures alarm.
    let lines = linking.metrics.lock().expect("metric lines").clone();
    let counted = lines.iter().filter(|line| line.contains("\"BrokerRevokeFailures\":1")).count();
    assert_eq!(counted, 1, "{lines:?}");
    assert!(lines.iter().any(|line| line.contains("\"Kind\":\"zerodha\"")), "{lines:?}");
}

/// A token Kite no longer honours (its 06:00 expiry, a logout at Kite) has nothing left to end:
/// the disconnect is clean, not a revoke failure to alarm on.
#[tokio::test]
async fn disconnecting_a_session_kite_already_ended_is_not_a_failure() {
    let (mut linking, _, query) = Linking::authorized().await;
    assert_eq!(linking.callback(&query).await.status, 303);
    linking.stub.control("POST", "expire_sessions", json!({})).await;
    let csrf = linking.browser.get("/broker").await.csrf();
    let gone = linking.browser.post("/broker/disconnect", &[("broker", "zerodha"), ("csrf_token", &csrf)]).await;
    assert_eq!((gone.status, gone.location()), (303, "/broker?disconnected"), "{}", gone.text);
    assert_eq!(linking.status().await, "revoked");
    let lines = linking.metrics.lock().expect("metric lines").clone();
    assert!(!lines.iter().any(|line| line.contains("BrokerRevokeFailures")), "{lines:?}");
}

#[tokio::test]
async fn logging_out_everywhere_ends_the_broker_session_too_even_when_kite_cannot_hear() {
    let (mut linking, _, query) = Linking::authorized().await;
    assert_eq!(linking.callback(&query).await.status, 303);
    let outage = json!({ "method": "DELETE", "path": "/session/token", "preset": "network", "times": 5 });
    linking.stub.control("POST", "inject", outage).await;
    let csrf = linking.browser.get("/dashboard").await.csrf();
    let out = linking.browser.post("/auth/logout-all", &[("csrf_token", csrf.as_str())]).await;
    assert!(out.status == 303 || out.status == 200, "{}", out.text);
    let deletes = linking.stub.calls("/session/token").await;
    assert!(deletes.iter().any(|call| call["method"] == "DELETE"), "Kite was asked: {deletes:?}");
    let link = linking.deps.identity.broker_link(&linking.user.username, BrokerId::Zerodha).await.expect("read");
    let link = link.expect("link");
    assert_eq!(link.state, LinkState::Revoked);
    assert!(link.encrypted_token.is_none(), "dropped here although Kite did not hear");
    let lines = linking.metrics.lock().expect("metric lines").clone();
    assert_eq!(lines.iter().filter(|line| line.contains("\"BrokerRevokeFailures\":1")).count(), 1, "{lines:?}");

    // And when Kite hears, the session ends there.
    let (mut linking, _, query) = Linking::authorized().await;
    assert_eq!(linking.callback(&query).await.status, 303);
    let csrf = linking.browser.get("/dashboard").await.csrf();
    linking.browser.post("/auth/logout-all", &[("csrf_token", csrf.as_str())]).await;
    let sessions = linking.stub.control("GET", "sessions", json!({})).await;
    let active = sessions.as_array().map_or(usize::MAX, |all| all.iter().filter(|s| s["active"] == true).count());
    assert_eq!(active, 0, "ended at Kite: {sessions}");
}

#[tokio::test]
async fn connect_refuses_an_unknown_broker_and_missing_credentials_by_name() {
    let mut linking = Linking::start().await;
    let csrf = linking.browser.get("/broker").await.csrf();
    let unknown = linking.browser.post_json("/broker/connect", &[("broker", "dhan"), ("csrf_token", &csrf)]).await;
    assert_eq!(unknown.status, 400, "{}", unknown.text);
    assert!(
        unknown.json()["message"].as_str().is_some_and(|m| m.contains("Unknown broker `dhan`")),
        "{}",
        unknown.text
    );
    let nothing_saved =
        linking.browser.post_json("/broker/connect", &[("broker", "zerodha"), ("csrf_token", &csrf)]).await;
    assert_eq!(nothing_saved.status, 400, "{}", nothing_saved.text);
    assert!(nothing_saved.text.contains("API key and secret"), "{}", nothing_saved.text);
    let half = [("broker", "zerodha"), ("api_key", API_KEY), ("csrf_token", csrf.as_str())];
    let half = linking.browser.post_json("/broker/connect", &half).await;
    assert_eq!(half.status, 400, "{}", half.text);
    assert!(half.text.contains("API secret"), "{}", half.text);
    // Without its CSRF token, Connect is refused before anything is saved.
    let forged = linking
        .browser
        .post("/broker/connect", &[("broker", "zerodha"), ("api_key", API_KEY), ("api_secret", API_SECRET)])
        .await;
    assert_eq!(forged.status, 400, "{}", forged.text);
    assert_eq!(linking.status().await, "not linked");
}
