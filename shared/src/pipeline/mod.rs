//! The request pipelines: one gate ([`gate`]) in front of the API ([`api`]), the pages
//! ([`pages`]) and the catch-all, and the Lambda entry point ([`lambda`]).

pub mod api;
pub mod gate;
pub mod lambda;
pub mod pages;
