//! A local SMTP server over implicit TLS with a certificate from a throw-away CA, so that the mail
//! path is tested with certificate verification on: Kavach is told to trust this CA (as an operator
//! with a private relay would), never to skip verification. Every accepted message is kept.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug)]
pub struct SmtpSink {
    pub address: SocketAddr,
    /// PEM of the CA that signed the sink's certificate for `localhost`.
    pub ca_pem: String,
    messages: Arc<Mutex<Vec<String>>>,
}

impl SmtpSink {
    /// The SMTP settings that send to this sink over verified TLS.
    pub fn settings(&self) -> shared::identity::mail::SmtpSettings {
        shared::identity::mail::SmtpSettings {
            host: "localhost".into(),
            port: self.address.port(),
            security: shared::identity::mail::Security::Implicit,
            username: "kavach".into(),
            password: "smtp-secret".to_owned().into(),
            from: "Kavach <noreply@example.in>".into(),
            ca_pem: Some(self.ca_pem.clone()),
        }
    }

    pub async fn start() -> Self {
        Self::start_with_delay(std::time::Duration::ZERO).await
    }

    /// A sink that takes `delay` to accept each message, as a slow relay does: a response that
    /// waited for the mail would take at least that long.
    pub async fn start_with_delay(delay: std::time::Duration) -> Self {
        let (acceptor, ca_pem) = crate::tls::localhost_acceptor();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let kept = messages.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, kept) = (acceptor.clone(), kept.clone());
                tokio::spawn(async move {
                    if let Ok(stream) = acceptor.accept(stream).await {
                        let _ = converse(stream, kept, delay).await;
                    }
                });
            }
        });
        Self { address, ca_pem, messages }
    }

    pub fn messages(&self) -> Vec<String> {
        self.messages.lock().expect("messages").clone()
    }

    /// The last message that mentions `to`, once there is one (polled for, for up to 15 s, since
    /// mail is sent after the response).
    pub async fn wait_for_message_to(&self, to: &str) -> String {
        for _ in 0..150 {
            if let Some(message) = self.messages().into_iter().rev().find(|m| m.contains(to)) {
                return message;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no message to {to} within 15 s")
    }

    /// The messages, once there are at least `count`: mail is sent after the response, so it is
    /// polled for, for up to 15 s.
    pub async fn wait_for(&self, count: usize) -> Vec<String> {
        for _ in 0..150 {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{count} message(s) within 15 s: the sink has {}", self.messages().len())
    }
}

/// Just enough SMTP (RFC 5321) for one client: greeting, EHLO, AUTH PLAIN, MAIL, RCPT, DATA, QUIT.
async fn converse<S>(stream: S, kept: Arc<Mutex<Vec<String>>>, delay: std::time::Duration) -> std::io::Result<()>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (read, mut write) = tokio::io::split(stream);
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 localhost Kavach test sink\r\n").await?;
    while let Some(line) = lines.next_line().await? {
        let verb = line.split_whitespace().next().unwrap_or_default().to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" | "HELO" => write.write_all(b"250-localhost\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n").await?,
            "AUTH" => write.write_all(b"235 2.7.0 Authentication successful\r\n").await?,
            "MAIL" | "RCPT" | "RSET" | "NOOP" => write.write_all(b"250 OK\r\n").await?,
            "DATA" => {
                write.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n").await?;
                let mut message = String::new();
                while let Some(data) = lines.next_line().await? {
                    if data == "." {
                        break;
                    }
                    message.push_str(&data);
                    message.push('\n');
                }
                tokio::time::sleep(delay).await;
                kept.lock().expect("messages").push(message);
                write.write_all(b"250 OK queued\r\n").await?;
            }
            "QUIT" => {
                write.write_all(b"221 Bye\r\n").await?;
                break;
            }
            _ => write.write_all(b"502 Command not implemented\r\n").await?,
        }
    }
    Ok(())
}
