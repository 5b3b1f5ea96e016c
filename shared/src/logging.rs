//! JSON logs on stderr, one object per line, so CloudWatch (and the local gateway's console) can
//! filter on fields. Never log a request body, header, cookie or secret: secret types print
//! `**redacted**` even if someone tries.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber once; a second call (tests, the local gateway) is a no-op.
pub fn init() {
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .or_else(|_| EnvFilter::try_from_env("AWS_LAMBDA_LOG_LEVEL"))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .with_target(false)
        .flatten_event(true)
        .try_init();
}
