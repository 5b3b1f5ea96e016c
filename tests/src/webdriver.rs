//! A small W3C WebDriver client over HTTP, driving Debian's headless Chromium through
//! `chromedriver`. Missing binaries fail the test with the command that installs them.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

#[derive(Debug)]
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    session: String,
    base: String,
    profile: PathBuf,
}

fn which(binary: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"] {
        let path = PathBuf::from(dir).join(binary);
        if path.exists() {
            return path;
        }
    }
    panic!("{binary} is not installed: scripts/test installs it (apt-get install chromium chromium-driver)");
}

impl Browser {
    pub async fn start() -> Self {
        let chromium = which("chromium");
        let chromedriver = which("chromedriver");
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let http = reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(60)).build().expect("client");
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!("kavach-chromium-{}-{port}", std::process::id()));
        // Without the networking flags Chromium keeps calling Google's hosts, which this machine's
        // closed network refuses.
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
                         "--window-size=1100,1400", format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let response: Value = http
            .post(format!("{base}/session"))
            .json(&capabilities)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .expect("session json");
        let session =
            response["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {response}")).to_owned();
        Self { driver, http, session, base, profile }
    }

    async fn try_command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut request = self.http.request(method, url);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response: Value = request.send().await.expect("webdriver reachable").json().await.expect("webdriver json");
        if response["value"].get("error").is_some() {
            Err(response["value"].clone())
        } else {
            Ok(response["value"].clone())
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.try_command(method, path, body.clone()).await.unwrap_or_else(|error| panic!("webdriver {path}: {error}"))
    }

    pub async fn goto(&self, url: &str) {
        self.command(reqwest::Method::POST, "/url", Some(json!({ "url": url }))).await;
    }

    pub async fn url(&self) -> String {
        self.command(reqwest::Method::GET, "/url", None).await.as_str().unwrap_or_default().to_owned()
    }

    /// The ids of the elements matching `css` on the page as it is now.
    async fn elements(&self, css: &str) -> Vec<String> {
        let found = self
            .try_command(reqwest::Method::POST, "/elements", Some(json!({ "using": "css selector", "value": css })))
            .await
            .unwrap_or_default();
        let ids = found.as_array().into_iter().flatten();
        ids.filter_map(|element| element[ELEMENT].as_str().map(str::to_owned)).collect()
    }

    /// The first element matching `css`, waiting up to 5 s for it to appear.
    async fn find(&self, css: &str) -> String {
        for _ in 0..50 {
            if let Some(id) = self.elements(css).await.into_iter().next() {
                return id;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no element `{css}` on {}:\n{}", self.url().await, self.visible_text().await);
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{element}/clear"), Some(json!({}))).await;
        self.command(reqwest::Method::POST, &format!("/element/{element}/value"), Some(json!({ "text": text }))).await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        self.command(reqwest::Method::POST, &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    /// The rendered, visible text of an element: what is on screen. A page that is still being
    /// replaced (a click's navigation) is waited for.
    pub async fn text(&self, css: &str) -> String {
        for _ in 0..50 {
            let element = self.find(css).await;
            match self.try_command(reqwest::Method::GET, &format!("/element/{element}/text"), None).await {
                Ok(text) => return text.as_str().unwrap_or_default().to_owned(),
                Err(error) if error["error"] == "stale element reference" => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(error) => panic!("webdriver text of `{css}`: {error}"),
            }
        }
        panic!("`{css}` kept going stale");
    }

    /// Waits (up to 10 s) until `css` shows exactly `expected`: after a click the old page may still
    /// be on screen for a moment.
    pub async fn wait_text(&self, css: &str, expected: &str) {
        let mut seen = String::new();
        for _ in 0..100 {
            if self.has(css).await {
                seen = self.text(css).await;
                if seen == expected {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("`{css}` shows {seen:?}, not {expected:?}, on {}:\n{}", self.url().await, self.visible_text().await);
    }

    pub async fn visible_text(&self) -> String {
        let Some(body) = self.elements("body").await.into_iter().next() else { return String::new() };
        let text = self.try_command(reqwest::Method::GET, &format!("/element/{body}/text"), None).await;
        text.ok().and_then(|text| text.as_str().map(str::to_owned)).unwrap_or_default()
    }

    pub async fn has(&self, css: &str) -> bool {
        !self.elements(css).await.is_empty()
    }

    /// Gives the browser a cookie for the current page's origin, as a `Set-Cookie` from it would
    /// (`Secure`, `HttpOnly`, path `/`): a session logged in over HTTP, carried on in the browser.
    pub async fn add_cookie(&self, name: &str, value: &str) {
        let cookie =
            json!({ "cookie": { "name": name, "value": value, "path": "/", "secure": true, "httpOnly": true } });
        self.command(reqwest::Method::POST, "/cookie", Some(cookie)).await;
    }

    /// Cookies the browser holds for the current page.
    pub async fn cookies(&self) -> Vec<Value> {
        self.command(reqwest::Method::GET, "/cookie", None).await.as_array().cloned().unwrap_or_default()
    }

    /// Saves a PNG of the viewport under `target/screenshots/` and returns its path.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.command(reqwest::Method::GET, "/screenshot", None).await;
        let png =
            base64::engine::general_purpose::STANDARD.decode(encoded.as_str().unwrap_or_default()).expect("base64 png");
        assert!(png.starts_with(b"\x89PNG") && png.len() > 1000, "screenshot {name} is not a real PNG");
        let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/screenshots"));
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    pub async fn quit(mut self) {
        let _ = self.http.delete(format!("{}/session/{}", self.base, self.session)).send().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}
