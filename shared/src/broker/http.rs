//! The one HTTPS client every broker adapter shares: the AWS SDK's own hyper connector (rustls
//! with ring, the system's roots), which every function links already, so calling a broker adds
//! no second HTTP stack to a binary. Connections are kept alive across requests; every call is
//! bounded.

use std::time::Duration;

use aws_smithy_http_client::Connector;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::HttpConnector;
use aws_smithy_runtime_api::http::Request as SdkRequest;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use http::Method;
use http::header::{CONTENT_TYPE, HeaderName};

use crate::core::error::AppError;

/// A broker's answer: its status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One request to a broker, built by an adapter.
#[derive(Debug)]
pub struct Call {
    pub method: Method,
    /// The full URL, query included.
    pub url: String,
    pub headers: Vec<(HeaderName, String)>,
    /// A form body (`application/x-www-form-urlencoded`), if any.
    pub form: Option<String>,
}

fn encoded<K: AsRef<str>, V: AsRef<str>>(pairs: &[(K, V)]) -> String {
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        encoded.append_pair(name.as_ref(), value.as_ref());
    }
    encoded.finish()
}

impl Call {
    pub fn new(method: Method, url: String) -> Self {
        Self { method, url, headers: Vec::new(), form: None }
    }

    #[must_use]
    pub fn header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// `pairs` url-encoded as the body.
    #[must_use]
    pub fn form<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        self.form = Some(encoded(pairs));
        self
    }

    /// `pairs` url-encoded onto the URL.
    #[must_use]
    pub fn query<K: AsRef<str>, V: AsRef<str>>(mut self, pairs: &[(K, V)]) -> Self {
        let separator = if self.url.contains('?') { '&' } else { '?' };
        self.url = format!("{}{separator}{}", self.url, encoded(pairs));
        self
    }
}

/// Connections a broker may keep idle this long; the client closes them first.
const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

#[derive(Clone, Debug)]
pub struct BrokerHttp {
    connector: std::sync::Arc<Connector>,
}

impl BrokerHttp {
    /// The connector, as `app::aws` builds the SDK's (plain http works only where configuration
    /// admits it: loopback, `core::config`).
    pub fn new() -> Self {
        let connector = Connector::builder()
            .pool_idle_timeout(IDLE_TIMEOUT)
            .tls_provider(Provider::Rustls(CryptoMode::Ring))
            .build();
        Self { connector: std::sync::Arc::new(connector) }
    }

    /// Sends `call` and reads the whole answer within `timeout`. Any failure to get one (a refused
    /// connection, a timeout, a broken body) is `BrokerUnavailable`: nothing is known to have
    /// happened at the broker.
    pub async fn send(&self, call: Call, timeout: Duration) -> Result<Answer, AppError> {
        let unavailable = |what: String| AppError::BrokerUnavailable(anyhow::anyhow!(what));
        let mut request = http::Request::builder().method(call.method).uri(&call.url);
        for (name, value) in call.headers {
            request = request.header(name, value);
        }
        let body = match call.form {
            Some(form) => {
                request = request.header(CONTENT_TYPE, "application/x-www-form-urlencoded");
                SdkBody::from(form)
            }
            None => SdkBody::empty(),
        };
        let request =
            SdkRequest::try_from(request.body(body).map_err(AppError::internal)?).map_err(AppError::internal)?;
        let exchange = async {
            let response = self.connector.call(request).await.map_err(|error| unavailable(format!("{error:?}")))?;
            let status = response.status().as_u16();
            let body = ByteStream::new(response.into_body())
                .collect()
                .await
                .map_err(|error| unavailable(format!("{error:#}")))?;
            Ok(Answer { status, body: body.to_vec() })
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| unavailable(format!("no answer within {} s", timeout.as_secs())))?
    }
}

impl Default for BrokerHttp {
    fn default() -> Self {
        Self::new()
    }
}
