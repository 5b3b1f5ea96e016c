//! Kavach's shared library: everything a route function needs between API Gateway and its handler.
//!
//! The folders are the layers of `docs/architecture.md`, lowest first; a module uses only modules
//! of its own layer or below, and `tests/import_cycles.rs` fails on any cycle between modules.
//!
//! - [`core`]: errors, configuration, the clock and time units, IST, IP addresses, logs, metrics.
//! - [`crypto`]: Argon2id and its PHC strings, Fernet and the key ring, API keys, TOTP, one-time
//!   tokens.
//! - [`http`]: the response envelope and headers, strict input, the client IP, the traffic record.
//! - [`limits`]: rate-limit classes, subjects and the limiter.
//! - [`store`]: one DynamoDB adapter per kind of item.
//! - [`identity`]: users, API keys, sessions, password reset mail, strategy webhooks.
//! - [`threats`]: detectors, bans and their settings.
//! - [`trading`]: OpenAlgo's order and read schemas, the simulated market and the sandbox broker.
//! - [`pipeline`]: the one gate and the three request pipelines (API, pages and their `maud`
//!   layout, catch-all), and the Lambda entry point.
//! - [`app`]: the composition root: AWS clients and [`Deps`], built once per cold start.

pub mod app;
pub mod broker;
pub mod core;
pub mod crypto;
pub mod http;
pub mod identity;
pub mod limits;
pub mod pipeline;
pub mod store;
pub mod threats;
pub mod trading;

pub use app::bootstrap::Deps;
pub use core::error::AppError;
