//! The Kite Connect stub (`tests/brokers/kite_stub.py`) as a child process of a test, with its
//! control API. The stub needs the repository's `.venv` Python (`scripts/test` makes it); without
//! it the test fails, it never skips.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};

pub const API_KEY: &str = "kavachtestapp";
pub const API_SECRET: &str = "kavach-test-app-secret";

/// A running stub; killed when dropped.
#[derive(Debug)]
pub struct KiteStub {
    child: Child,
    pub root: String,
    http: reqwest::Client,
}

impl KiteStub {
    /// Starts a stub on a free port with the test app registered (loopback as its static IP).
    pub async fn start() -> Self {
        let python = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/brokers/kite_stub.py");
        let mut child = Command::new(python)
            .args([script, "--port", "0", "--api-key", API_KEY, "--api-secret", API_SECRET])
            .args(["--redirect-url", "http://127.0.0.1:9/broker/callback/zerodha"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start the Kite stub with {python} (run scripts/test once): {error}")
            });
        let stdout = child.stdout.take().expect("stub stdout");
        let port = BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| line.strip_prefix("KITE_STUB_PORT=").map(str::to_owned))
            .expect("the Kite stub printed its port");
        let stub = Self { child, root: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
        stub.control("POST", "config", json!({ "rate_limits_enabled": false })).await;
        stub
    }

    /// A control call (`/__stub/<name>`), which must succeed.
    pub async fn control(&self, method: &str, name: &str, body: Value) -> Value {
        let request = self.http.request(method.parse().expect("method"), format!("{}/__stub/{name}", self.root));
        let request = if method == "GET" { request } else { request.json(&body) };
        let response = request.send().await.expect("stub reachable");
        assert!(response.status().is_success(), "stub control {method} {name}: {}", response.status());
        response.json().await.expect("control JSON")
    }

    /// What the trader's "Authorize" on Kite's consent page yields: a fresh request token.
    pub async fn request_token(&self) -> String {
        let query = self.press_authorize(&no_redirects(), API_KEY, "").await;
        crate::query_param(&query, "request_token").expect("a request_token in the redirect")
    }

    /// The consent form's "Authorize" for `api_key`, carrying `redirect_params`: the query string
    /// of Kite's redirect back to the app.
    async fn press_authorize(&self, client: &reqwest::Client, api_key: &str, redirect_params: &str) -> String {
        let form = [("api_key", api_key), ("redirect_params", redirect_params), ("action", "authorize")];
        let response =
            client.post(format!("{}/connect/login", self.root)).form(&form).send().await.expect("stub reachable");
        let location = response.headers()["location"].to_str().expect("location").to_owned();
        location.split_once('?').map(|(_, query)| query.to_owned()).expect("a query in the redirect")
    }

    /// What the trader's "Authorize" on the consent page at `login_url` (Kavach's redirect to
    /// `/connect/login`) yields: the query string Kite sends the browser back to the app with
    /// (`action`, `type`, `status`, `request_token`, and the `redirect_params` Kavach passed).
    pub async fn authorize(&self, login_url: &str) -> String {
        let client = no_redirects();
        let consent = client.get(login_url).send().await.expect("stub reachable");
        assert_eq!(consent.status(), 200, "the consent page for {login_url}");
        let param = |name: &str| crate::query_param(login_url, name).unwrap_or_default();
        self.press_authorize(&client, &param("api_key"), &param("redirect_params")).await
    }

    /// The calls the stub received on paths matching `glob`.
    pub async fn calls(&self, glob: &str) -> Vec<Value> {
        let url = format!("{}/__stub/calls?path={}", self.root, glob);
        self.http.get(url).send().await.expect("stub").json::<Vec<Value>>().await.expect("calls JSON")
    }
}

/// A client that shows each redirect instead of following it.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

impl Drop for KiteStub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
