//! OpenAlgo's trading API behind the pipeline: its request schemas, the simulated market and the
//! sandbox broker.

pub mod market;
pub mod orders;
pub mod reads;
pub mod sandbox;
