//! The composition root: the AWS clients and [`bootstrap::Deps`], built once per cold start. Only
//! this layer, the pipeline and the functions name `Deps`; every service takes what it uses.

pub mod aws;
pub mod bootstrap;
pub mod runtime;
