//! A cookie-carrying HTTP client for the pages, as a browser without JavaScript would use them:
//! no automatic redirects (tests look at each hop), one session cookie, forms posted url-encoded.

use std::net::{IpAddr, SocketAddr};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use shared::Deps;

use crate::WebUser;

const JSON: (&str, &str) = ("accept", "application/json");

#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers.get("location").and_then(|value| value.to_str().ok()).unwrap_or_default()
    }

    /// The CSRF token a rendered page embeds in its forms.
    pub fn csrf(&self) -> String {
        let marker = r#"name="csrf_token" value=""#;
        let start = self
            .text
            .find(marker)
            .map(|at| at + marker.len())
            .unwrap_or_else(|| panic!("no CSRF field in: {}", self.text));
        self.text[start..].split('"').next().unwrap_or_default().to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| panic!("status {}: not JSON: {}", self.status, self.text))
    }

    /// The text of the element with `id`, tags stripped.
    pub fn element_text(&self, id: &str) -> Option<String> {
        let start = self.text.find(&format!(r#"id="{id}""#))?;
        let open_end = self.text[start..].find('>')? + start + 1;
        let close = self.text[open_end..].find("</")? + open_end;
        Some(self.text[open_end..close].trim().to_owned())
    }
}

#[derive(Debug)]
pub struct WebClient {
    client: reqwest::Client,
    base: String,
    /// The `__Host-kavach_session` value currently held.
    pub cookie: Option<String>,
    /// The device cookies held (`__Host-kavach_device_…`, name and value), one per account this
    /// browser has logged in to; sent with every request, as a browser would.
    pub devices: Vec<(String, String)>,
}

impl WebClient {
    pub fn new(gateway: SocketAddr, source: IpAddr) -> Self {
        let client = reqwest::Client::builder()
            .local_address(source)
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Self { client, base: format!("http://{gateway}"), cookie: None, devices: Vec::new() }
    }

    /// A client of a gateway serving under `prefix` (`/prod`): every path it is given is asked for
    /// under it, as a browser following the pages' links would.
    pub fn under(gateway: SocketAddr, source: IpAddr, prefix: &str) -> Self {
        Self { base: format!("http://{gateway}{prefix}"), ..Self::new(gateway, source) }
    }

    pub fn with_cookie(&self, cookie: Option<String>) -> Self {
        Self { client: self.client.clone(), base: self.base.clone(), cookie, devices: Vec::new() }
    }

    /// This browser's device cookies, on a client from `source` without its session: the same
    /// browser on another network.
    pub fn same_browser_from(&self, gateway: SocketAddr, source: IpAddr) -> Self {
        Self { devices: self.devices.clone(), ..Self::new(gateway, source) }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(reqwest::Method::GET, path, None, &[]).await
    }

    pub async fn get_json(&mut self, path: &str) -> Page {
        self.send(reqwest::Method::GET, path, None, &[JSON]).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_with(path, form, &[]).await
    }

    /// A form post whose answer is wanted as JSON, as a script would send it.
    pub async fn post_json(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.post_with(path, form, &[JSON]).await
    }

    pub async fn post_with(&mut self, path: &str, form: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        self.send(reqwest::Method::POST, path, Some(form), headers).await
    }

    /// This session's CSRF token, as a script fetches it for the `x-csrf-token` header.
    pub async fn csrf_token(&mut self) -> String {
        self.get_json("/auth/csrf-token").await.json()["csrf_token"].as_str().expect("csrf token").to_owned()
    }

    async fn send(
        &mut self,
        method: reqwest::Method,
        path: &str,
        form: Option<&[(&str, &str)]>,
        headers: &[(&str, &str)],
    ) -> Page {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(form) = form {
            // Url-encoded, with its content type.
            request = request.form(form);
        }
        let mut cookies: Vec<String> = self.devices.iter().map(|(name, value)| format!("{name}={value}")).collect();
        if let Some(cookie) = &self.cookie {
            cookies.push(format!("{}={cookie}", shared::identity::sessions::COOKIE_NAME));
        }
        if !cookies.is_empty() {
            request = request.header("cookie", cookies.join("; "));
        }
        for (name, value) in headers {
            request = request.header(
                HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        let response = request.send().await.expect("gateway reachable");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for set in headers.get_all("set-cookie") {
            let set = set.to_str().expect("ascii cookie");
            if set.starts_with(shared::identity::devices::COOKIE_PREFIX) {
                let pair = set.split(';').next().unwrap_or_default();
                let (name, value) = pair.split_once('=').expect("name=value");
                self.devices.retain(|(held, _)| held != name);
                self.devices.push((name.to_owned(), value.to_owned()));
                continue;
            }
            let Some(rest) = set.strip_prefix(&format!("{}=", shared::identity::sessions::COOKIE_NAME)) else {
                continue;
            };
            let value = rest.split(';').next().unwrap_or_default();
            self.cookie = (!value.is_empty()).then(|| value.to_owned());
        }
        let text = response.text().await.expect("body");
        Page { status, headers, text }
    }

    /// A client from `source` that has logged `user` in, password then the TOTP code at `deps`'
    /// clock (read before the first request); panics saying which step failed.
    pub async fn logged_in(gateway: SocketAddr, source: IpAddr, user: &WebUser, deps: &Deps) -> Self {
        let code = user.code(deps);
        let mut client = Self::new(gateway, source);
        let step1 = client.post("/auth/login", &[("username", &user.username), ("password", &user.password)]).await;
        assert_eq!((step1.status, step1.location()), (303, "/auth/login/totp"), "password step: {}", step1.text);
        let form = client.get("/auth/login/totp").await;
        assert_eq!(form.status, 200, "TOTP form: {}", form.text);
        let step2 = client.post("/auth/login/totp", &[("totp_code", &code), ("csrf_token", &form.csrf())]).await;
        assert_eq!((step2.status, step2.location()), (303, "/dashboard"), "TOTP step: {}", step2.text);
        client
    }
}
