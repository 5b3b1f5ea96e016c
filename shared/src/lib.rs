//! Kavach's shared library: everything a route function needs between API Gateway and its handler.
//!
//! A request flows through [`api::run`]: client IP ([`client_ip`]), the concurrent security gate
//! ([`gate`]), strict input ([`validate`]), [`auth::authenticate`], the handler, and one response
//! shape with security headers and a traffic record ([`http`], [`traffic`]). Cold-start state is
//! built once by [`bootstrap::init`] and passed by reference as [`Deps`].

pub mod accounts;
pub mod api;
pub mod auth;
pub mod aws;
pub mod bootstrap;
pub mod client_ip;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod error;
pub mod gate;
pub mod http;
pub mod lambda;
pub mod limits;
pub mod logging;
pub mod mail;
pub mod market;
pub mod metrics;
pub mod orders;
pub mod reads;
pub mod sandbox;
pub mod sessions;
pub mod store;
pub mod threats;
pub mod totp;
pub mod traffic;
pub mod validate;
pub mod web;
pub mod webhooks;

pub use bootstrap::Deps;
pub use error::AppError;
