//! JSON logs on stderr, one object per line, so CloudWatch (and the local gateway's console) can
//! filter on fields. Never log a request body, header, cookie or secret: secret types print
//! `**redacted**` even if someone tries.
//!
//! Each line carries `level` and `timestamp`, which is what Lambda's log-level filter reads: the
//! template's `ApplicationLogLevel` (Lambda passes it as `AWS_LAMBDA_LOG_LEVEL`) then drops the
//! same lines here and in Lambda. The EMF metric lines on stdout are not logs and pass every level
//! (`core::metrics`).

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// Installs the subscriber once; a second call (tests, the local gateway) is a no-op.
pub fn init() {
    init_to(std::io::stderr);
}

/// Lambda's `ApplicationLogLevel` as a tracing filter. Lambda's levels are TRACE to FATAL, and
/// tracing has no FATAL: the nearest, ERROR, drops nothing Lambda would keep.
fn lambda_log_level() -> Option<String> {
    let level = std::env::var("AWS_LAMBDA_LOG_LEVEL").ok()?;
    Some(if level.eq_ignore_ascii_case("fatal") { "error".to_owned() } else { level.to_ascii_lowercase() })
}

/// `RUST_LOG` (`warn`, or `info,shared=debug`: a default level and levels by target), else
/// Lambda's level, else `info`. A value that does not parse falls back the same way rather than
/// logging everything or nothing.
fn filter() -> Targets {
    let parse = |value: String| value.parse::<Targets>().ok();
    std::env::var("RUST_LOG")
        .ok()
        .and_then(parse)
        .or_else(|| lambda_log_level().and_then(parse))
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO))
}

/// [`init`] with another destination: the redaction test reads what would have been logged.
pub fn init_to<W>(writer: W)
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let installed = tracing_subscriber::registry()
        .with(
            fmt::layer()
                .json()
                .with_writer(writer)
                .with_current_span(false)
                .with_target(false)
                .flatten_event(true)
                .with_filter(filter()),
        )
        .try_init();
    if installed.is_ok() {
        // A panic becomes one structured log line like any other event, instead of free text on
        // stderr; its message is whatever the code formatted, so a secret type in it stays redacted.
        std::panic::set_hook(Box::new(|panic| {
            let location = panic.location().map(|at| format!("{}:{}", at.file(), at.line())).unwrap_or_default();
            let message = panic
                .payload()
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| panic.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic.location = location, panic.message = message, "panic");
        }));
    }
}
