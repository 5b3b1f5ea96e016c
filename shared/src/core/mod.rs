//! What every layer uses: errors, configuration, the clock, IST, IP addresses, logs and metrics.

pub mod clock;
pub mod config;
pub mod error;
pub mod ist;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod pending;
