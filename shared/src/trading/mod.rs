//! OpenAlgo's trading API behind the pipeline: its request schemas, the simulated market, the
//! sandbox broker and live trading through a linked broker.

pub mod desk;
pub mod live;
pub mod market;
pub mod orders;
pub mod reads;
pub mod sandbox;
