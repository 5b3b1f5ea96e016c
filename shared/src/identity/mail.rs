//! Outbound mail (password-reset links) over SMTP with verified TLS: implicit TLS (port 465) or
//! STARTTLS (587), certificate and host name always checked (OpenAlgo disabled both, W14).
//!
//! The settings live in the identity table as `settings#smtp`, the password Fernet-encrypted under
//! the SMTP purpose key, so they change without a redeploy and never sit in an environment variable.
//! `ca_pem` adds one trusted root, for a relay with a private CA (and the local test sink).

use aws_sdk_dynamodb::types::AttributeValue;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::{ExposeSecret, SecretString};

use crate::core::clock::Clock;
use crate::core::error::AppError;
use crate::store::app_secret::LiveCipher;
use crate::store::identity::IdentityStore;
use crate::store::{PK, number, s, string, unavailable};

const SETTINGS_PK: &str = "settings#smtp";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    StartTls,
}

#[derive(Debug)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: Security,
    pub username: String,
    pub password: SecretString,
    pub from: String,
    pub ca_pem: Option<String>,
}

/// The SMTP settings over what they use: the identity table they live in, the SMTP purpose key
/// that seals the password, and the clock for the Fernet timestamps.
#[derive(Clone, Copy, Debug)]
pub struct MailSettings<'a> {
    pub identity: &'a IdentityStore,
    pub smtp_passwords: &'a LiveCipher,
    pub clock: &'a dyn Clock,
}

impl MailSettings<'_> {
    /// Stores the settings, encrypting the password.
    pub async fn configure(self, settings: &SmtpSettings) -> Result<(), AppError> {
        settings
            .from
            .parse::<lettre::message::Mailbox>()
            .map_err(|_| AppError::bad_request("`from` is not an email address"))?;
        if let Some(pem) = &settings.ca_pem {
            Certificate::from_pem(pem.as_bytes())
                .map_err(|_| AppError::bad_request("the CA file is not a PEM certificate"))?;
        }
        let now = self.clock.now();
        let password = self.smtp_passwords.encrypt(settings.password.expose_secret().as_bytes(), now).await?;
        let mut put = self
            .identity
            .client
            .put_item()
            .table_name(&self.identity.table)
            .item(PK, s(SETTINGS_PK))
            .item("host", s(&settings.host))
            .item("port", AttributeValue::N(settings.port.to_string()))
            .item("security", s(if settings.security == Security::Implicit { "implicit" } else { "starttls" }))
            .item("username", s(&settings.username))
            .item("password", s(password))
            .item("from", s(&settings.from));
        if let Some(pem) = &settings.ca_pem {
            put = put.item("ca_pem", s(pem));
        }
        put.send().await.map_err(unavailable("store SMTP settings"))?;
        Ok(())
    }

    /// The stored settings, or `None` when mail is not configured.
    pub async fn settings(self) -> Result<Option<SmtpSettings>, AppError> {
        let Some(item) = self.identity.item(SETTINGS_PK.into(), "read SMTP settings").await? else {
            return Ok(None);
        };
        let now = self.clock.now();
        let password = match string(&item, "password") {
            Some(token) => {
                let bytes = self.smtp_passwords.decrypt(&token, None, now).await?;
                SecretString::from(String::from_utf8_lossy(&bytes).into_owned())
            }
            None => SecretString::default(),
        };
        Ok(Some(SmtpSettings {
            host: string(&item, "host").unwrap_or_default(),
            port: number(&item, "port").and_then(|port| u16::try_from(port).ok()).unwrap_or(465),
            security: if string(&item, "security").as_deref() == Some("starttls") {
                Security::StartTls
            } else {
                Security::Implicit
            },
            username: string(&item, "username").unwrap_or_default(),
            password,
            from: string(&item, "from").unwrap_or_default(),
            ca_pem: string(&item, "ca_pem"),
        }))
    }
}

/// Sends one plain-text message. Any failure (connection, TLS verification, authentication,
/// refusal) is an error for the caller to log; its text never reaches a client.
pub async fn send(settings: &SmtpSettings, to: &str, subject: &str, text: String) -> anyhow::Result<()> {
    let message = Message::builder()
        .from(settings.from.parse()?)
        .to(to.parse()?)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(text)?;
    let mut tls = TlsParameters::builder(settings.host.clone());
    if let Some(pem) = &settings.ca_pem {
        tls = tls.add_root_certificate(Certificate::from_pem(pem.as_bytes())?);
    }
    let tls = tls.build_rustls()?;
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.clone())
        .port(settings.port)
        .timeout(Some(std::time::Duration::from_secs(10)))
        .tls(match settings.security {
            Security::Implicit => Tls::Wrapper(tls),
            Security::StartTls => Tls::Required(tls),
        });
    if !settings.username.is_empty() {
        transport = transport
            .credentials(Credentials::new(settings.username.clone(), settings.password.expose_secret().to_owned()));
    }
    transport.build().send(message).await?;
    Ok(())
}
