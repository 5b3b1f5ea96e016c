//! The built-in paper broker every account trades on until a real broker is linked.
//!
//! - [`ledger`]: the rules (acceptance, margin, fills, positions), pure and unit-tested.
//! - [`ist`]: Indian Standard Time arithmetic for sessions, ids and timestamps.
//! - [`service`]: load → apply → commit, one DynamoDB transaction per order, retried on conflict.
//! - [`views`]: the JSON shapes OpenAlgo's routes return.

pub mod ist;
pub mod ledger;
pub mod service;
pub mod views;
