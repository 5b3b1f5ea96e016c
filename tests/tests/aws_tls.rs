//! The AWS clients speak TLS through the one crypto backend the binaries link (ring), and verify the
//! server's certificate against the platform's roots. Locally the emulator is plain HTTP, so
//! without this test the HTTPS path Lambda takes to DynamoDB, KMS and Secrets Manager would run
//! for the first time in a trader's account.
//!
//! The client reads its roots once per client from the platform (`SSL_CERT_FILE` overrides them),
//! so the trusting half runs as a child of this test binary with that variable set: setting it in
//! this process would need `unsafe` and would leak into other tests.

use std::convert::Infallible;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// An HTTPS server for `localhost` that answers every DynamoDB call as `ListTables` would, and the
/// PEM of the CA that signed its certificate.
async fn dynamodb_over_tls() -> (u16, String) {
    let (acceptor, ca_pem) = kavach_tests::tls::localhost_acceptor();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("address").port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else { return };
                let service = service_fn(|request: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = request.into_body().collect().await;
                    let mut response =
                        hyper::Response::new(Full::new(Bytes::from_static(br#"{"TableNames":["over-tls"]}"#)));
                    response
                        .headers_mut()
                        .insert("content-type", "application/x-amz-json-1.0".parse().expect("header"));
                    Ok::<_, Infallible>(response)
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    (port, ca_pem)
}

/// Set in the child run: the port of the parent's server, whose CA `SSL_CERT_FILE` names.
const CHILD_PORT: &str = "KAVACH_AWS_TLS_CHILD_PORT";

async fn list_tables(port: &str) -> Result<Vec<String>, String> {
    let clients = shared::app::aws::AwsClients::for_endpoint(&format!("https://localhost:{port}")).await;
    match clients.dynamodb.list_tables().send().await {
        Ok(listed) => Ok(listed.table_names.unwrap_or_default()),
        Err(error) => Err(format!("{:?}", aws_smithy_types::error::display::DisplayErrorContext(&error))),
    }
}

#[tokio::test]
async fn aws_clients_verify_the_servers_certificate_over_tls_with_ring() {
    if let Ok(port) = std::env::var(CHILD_PORT) {
        // The child: the same call, with the test CA as the platform's roots.
        assert_eq!(list_tables(&port).await.expect("ListTables over verified TLS"), ["over-tls"]);
        return;
    }
    let (port, ca_pem) = dynamodb_over_tls().await;

    // The platform's roots do not include a throw-away CA: the handshake is refused, not skipped.
    let refused = list_tables(&port.to_string()).await.expect_err("an unknown issuer must be refused");
    assert!(
        refused.contains("UnknownIssuer") || refused.contains("invalid peer certificate"),
        "refused for the certificate: {refused}"
    );

    // Trusting that CA (as the platform trusts Amazon's), the same call completes over TLS.
    let roots = std::env::temp_dir().join(format!("kavach-aws-tls-{}.pem", std::process::id()));
    std::fs::write(&roots, ca_pem).expect("write the CA");
    let child = tokio::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "aws_clients_verify_the_servers_certificate_over_tls_with_ring", "--nocapture"])
        .env(CHILD_PORT, port.to_string())
        .env("SSL_CERT_FILE", &roots)
        .output()
        .await
        .expect("run the trusting half");
    let _ = std::fs::remove_file(&roots);
    let output = format!("{}{}", String::from_utf8_lossy(&child.stdout), String::from_utf8_lossy(&child.stderr));
    assert!(child.status.success(), "the call with the CA trusted failed:\n{output}");
    assert!(output.contains("1 passed"), "the child ran the test: {output}");
}
