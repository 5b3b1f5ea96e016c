//! The built-in paper broker every account trades on until a real broker is linked.
//!
//! - [`ledger`]: the rules (acceptance, margin, fills, positions), pure and unit-tested.
//! - [`service`]: load → apply → commit, one DynamoDB transaction per order, retried on conflict.
//! - [`views`]: the JSON shapes OpenAlgo's routes return.

pub mod ledger;
pub mod service;
pub mod views;
