//! The request pipelines: one gate ([`gate`]) in front of the API ([`api`]), the pages
//! ([`pages`]), the catch-all ([`not_found`]) and the webhook, what each entry point declares
//! ([`route`]), and the Lambda entry point ([`lambda`]).

pub mod api;
pub mod gate;
pub mod lambda;
pub mod not_found;
pub mod pages;
pub mod route;
