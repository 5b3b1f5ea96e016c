//! The web identity pages, as three Lambda functions:
//!
//! - `web-setup`: `/setup`, the one-time creation of the administrator;
//! - `web-auth`: `/auth/login`, `/auth/login/totp` and `/auth/reset-password[/confirm]`, the routes a
//!   visitor without a session uses;
//! - `web-portal`: `/dashboard`, `/apikey…`, `/auth/sessions`, `/auth/logout[-all]` and
//!   `/auth/change-password`, which need a full session;
//! - `web-security`: `/security…` and `/logs…`, the administrator's security dashboard and traffic
//!   log;
//! - `not-found`: the catch-all behind `{proxy+}`, which feeds the 404 detector.
//!
//! Each handler dispatches on API Gateway's resource and method to one route of
//! [`shared::pipeline::pages::serve`], which has already dealt with bans, budgets, sessions, `Sec-Fetch-Site` and
//! CSRF by the time a function here runs.

mod common;
mod login;
mod portal;
mod reset;
mod security;
mod setup;

use http::Method;
use lambda_http::{Body, Request, Response};
use shared::Deps;
use shared::pipeline::api::{resource, unknown_resource};
use shared::pipeline::pages::{Access, PageRoute, serve};

const fn route(name: &'static str, access: Access) -> PageRoute {
    PageRoute { name, access }
}

pub async fn setup_handler(deps: &Deps, request: Request) -> Response<Body> {
    match (request.method().clone(), resource(&request).as_str()) {
        (Method::GET, "/setup") => serve(deps, request, route("setup", Access::Public), |r| setup::form(deps, r)).await,
        (Method::POST, "/setup") => {
            serve(deps, request, route("setup", Access::Public), |r| setup::submit(deps, r)).await
        }
        _ => unknown_resource(&request),
    }
}

pub async fn auth_handler(deps: &Deps, request: Request) -> Response<Body> {
    let public = |name| route(name, Access::Public);
    match (request.method().clone(), resource(&request).as_str()) {
        (Method::GET, "/") => serve(deps, request, public("home"), |r| login::form(deps, r)).await,
        (Method::GET, "/auth/login") => serve(deps, request, public("login"), |r| login::form(deps, r)).await,
        (Method::POST, "/auth/login") => serve(deps, request, public("login"), |r| login::submit(deps, r)).await,
        (Method::GET, "/auth/login/totp") => {
            serve(deps, request, route("login-totp", Access::PendingTotp), login::totp_form).await
        }
        (Method::POST, "/auth/login/totp") => {
            serve(deps, request, route("login-totp", Access::PendingTotp), |r| login::totp_submit(deps, r)).await
        }
        (Method::GET, "/auth/csrf-token") => serve(deps, request, public("csrf-token"), login::csrf_token).await,
        (Method::GET, "/auth/reset-password") => serve(deps, request, public("reset"), reset::form).await,
        (Method::POST, "/auth/reset-password") => {
            serve(deps, request, public("reset"), |r| reset::start(deps, r)).await
        }
        (Method::GET, "/auth/reset-password/confirm") => {
            serve(deps, request, public("reset-confirm"), |r| reset::confirm_form(deps, r)).await
        }
        (Method::POST, "/auth/reset-password/confirm") => {
            serve(deps, request, public("reset-confirm"), |r| reset::confirm(deps, r)).await
        }
        _ => unknown_resource(&request),
    }
}

pub async fn portal_handler(deps: &Deps, request: Request) -> Response<Body> {
    let private = |name| route(name, Access::Session);
    match (request.method().clone(), resource(&request).as_str()) {
        (Method::GET, "/dashboard") => serve(deps, request, private("dashboard"), |r| portal::dashboard(deps, r)).await,
        (Method::GET, "/apikey") => serve(deps, request, private("apikey"), |r| portal::apikey_page(deps, r)).await,
        (Method::POST, "/apikey") => serve(deps, request, private("apikey"), |r| portal::regenerate(deps, r)).await,
        (Method::POST, "/apikey/reveal") => {
            serve(deps, request, private("apikey-reveal"), |r| portal::reveal(deps, r)).await
        }
        (Method::POST, "/apikey/allowlist") => {
            serve(deps, request, private("apikey-allowlist"), |r| portal::allowlist(deps, r)).await
        }
        (Method::GET, "/auth/sessions") => {
            serve(deps, request, private("sessions"), |r| portal::sessions(deps, r)).await
        }
        (Method::POST, "/auth/logout") => serve(deps, request, private("logout"), |r| portal::logout(deps, r)).await,
        (Method::POST, "/auth/logout-all") => {
            serve(deps, request, private("logout-all"), |r| portal::logout_all(deps, r)).await
        }
        (Method::POST, "/auth/change-password") => {
            serve(deps, request, private("change-password"), |r| portal::change_password(deps, r)).await
        }
        _ => unknown_resource(&request),
    }
}

pub async fn security_handler(deps: &Deps, request: Request) -> Response<Body> {
    let admin = |name| route(name, Access::Admin);
    match (request.method().clone(), resource(&request).as_str()) {
        (Method::GET, "/security") => serve(deps, request, admin("security"), |r| security::page(deps, r)).await,
        (Method::GET, "/security/api/data") => {
            serve(deps, request, admin("security-data"), |r| security::data(deps, r)).await
        }
        (Method::POST, "/security/ban") => {
            serve(deps, request, admin("security-ban"), |r| security::ban(deps, r)).await
        }
        (Method::POST, "/security/unban") => {
            serve(deps, request, admin("security-unban"), |r| security::unban(deps, r)).await
        }
        (Method::POST, "/security/clear-404") => {
            serve(deps, request, admin("security-clear-404"), |r| security::clear_not_found(deps, r)).await
        }
        (Method::POST, "/security/settings") => {
            serve(deps, request, admin("security-settings"), |r| security::settings(deps, r)).await
        }
        (Method::GET, "/logs") => serve(deps, request, admin("logs"), |r| security::logs(deps, r)).await,
        (Method::GET, "/logs/export") => {
            serve(deps, request, admin("logs-export"), |r| security::export(deps, r)).await
        }
        _ => unknown_resource(&request),
    }
}

pub async fn not_found_handler(deps: &Deps, request: Request) -> Response<Body> {
    shared::pipeline::pages::not_found(deps, request).await
}
