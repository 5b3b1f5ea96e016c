//! The web identity pages and the catch-all, as five Lambda functions:
//!
//! - `web-setup`: `/setup`, the one-time creation of the administrator;
//! - `web-auth`: `/auth/login`, `/auth/login/totp` and `/auth/reset-password[/confirm]`, the routes a
//!   visitor without a session uses;
//! - `web-portal`: `/dashboard`, `/apikey…`, `/auth/sessions`, `/auth/logout[-all]`,
//!   `/auth/change-password` and `/broker…`, which need a full session;
//! - `web-security`: `/security…` and `/logs…`, the administrator's security dashboard and traffic
//!   log;
//! - `not-found`: the catch-all behind `{proxy+}`, which feeds the 404 detector.
//!
//! Each handler dispatches on API Gateway's resource and method to one route of
//! [`shared::pipeline::pages::serve`], which has already dealt with bans, budgets, sessions, `Sec-Fetch-Site` and
//! CSRF by the time a function here runs.

mod broker;
mod common;
mod login;
mod portal;
mod reset;
mod security;
mod setup;

use lambda_http::{Body, Request, Response};
use shared::Deps;
use shared::app::bootstrap::Secrets;
use shared::pipeline::api::unknown_resource;
use shared::pipeline::pages::serve;
use shared::pipeline::route::{Access, Endpoint, Method, PageRoute, Routes};

/// Declares one function's page routes as an enum: each variant's method, path, name and access,
/// and the list the drift test reads.
macro_rules! page_routes {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $method:ident($route:literal, $path:literal, $access:ident),)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        pub enum $name {
            $($variant,)+
        }

        impl $name {
            pub const fn route(self) -> PageRoute {
                match self {
                    $($name::$variant => PageRoute::$method($route, $path, Access::$access),)+
                }
            }
        }

        impl Routes for $name {
            const ALL: &'static [Self] = &[$($name::$variant,)+];

            fn endpoint(self) -> Endpoint {
                self.route().endpoint
            }
        }
    };
}

page_routes!(
    /// `web-setup`.
    SetupRoute {
        Form => get("setup", "/setup", Public),
        Submit => post("setup", "/setup", Public),
    }
);

page_routes!(
    /// `web-auth`.
    AuthRoute {
        Home => get("home", "/", Public),
        LoginForm => get("login", "/auth/login", Public),
        LoginSubmit => post("login", "/auth/login", Public),
        TotpForm => get("login-totp", "/auth/login/totp", PendingTotp),
        TotpSubmit => post("login-totp", "/auth/login/totp", PendingTotp),
        CsrfToken => get("csrf-token", "/auth/csrf-token", Public),
        ResetForm => get("reset", "/auth/reset-password", Public),
        ResetStart => post("reset", "/auth/reset-password", Public),
        ResetConfirmForm => get("reset-confirm", "/auth/reset-password/confirm", Public),
        ResetConfirm => post("reset-confirm", "/auth/reset-password/confirm", Public),
    }
);

page_routes!(
    /// `web-portal`.
    PortalRoute {
        Dashboard => get("dashboard", "/dashboard", Session),
        ApiKeyPage => get("apikey", "/apikey", Session),
        ApiKeyRegenerate => post("apikey", "/apikey", Session),
        ApiKeyReveal => post("apikey-reveal", "/apikey/reveal", Session),
        ApiKeyAllowlist => post("apikey-allowlist", "/apikey/allowlist", Session),
        WebhookRevoke => post("webhook-revoke", "/apikey/webhooks/revoke", Session),
        WebhookRebind => post("webhook-rebind", "/apikey/webhooks/rebind", Session),
        Sessions => get("sessions", "/auth/sessions", Session),
        Logout => post("logout", "/auth/logout", Session),
        LogoutAll => post("logout-all", "/auth/logout-all", Session),
        ChangePassword => post("change-password", "/auth/change-password", Session),
        BrokerPage => get("broker", "/broker", Session),
        BrokerConnect => post("broker-connect", "/broker/connect", Session),
        BrokerCallbackZerodha => get("broker-callback", "/broker/callback/zerodha", Session),
        BrokerDisconnect => post("broker-disconnect", "/broker/disconnect", Session),
    }
);

page_routes!(
    /// `web-security`.
    SecurityRoute {
        Page => get("security", "/security", Admin),
        Data => get("security-data", "/security/api/data", Admin),
        Ban => post("security-ban", "/security/ban", Admin),
        Unban => post("security-unban", "/security/unban", Admin),
        ClearNotFound => post("security-clear-404", "/security/clear-404", Admin),
        Settings => post("security-settings", "/security/settings", Admin),
        Logs => get("logs", "/logs", Admin),
        LogsExport => get("logs-export", "/logs/export", Admin),
    }
);

/// `not-found`: every method on every path no other route declares.
#[derive(Clone, Copy, Debug)]
pub struct CatchAll;

impl Routes for CatchAll {
    const ALL: &'static [Self] = &[CatchAll];

    fn endpoint(self) -> Endpoint {
        Endpoint { method: Method::Any, path: "/{proxy+}" }
    }
}

/// What each function's cold start loads ([`Secrets`]): only what its routes use.
/// Setup hashes the administrator's password and first key, encrypts its copy and the TOTP secret.
pub const SETUP_SECRETS: Secrets = Secrets { pepper: true, api_key_copies: true, totp_secrets: true, ..Secrets::NONE };
/// Login checks passwords and TOTP codes and trusts the browser with a device cookie; reset checks
/// a code or sends mail, and hashes the new password.
pub const AUTH_SECRETS: Secrets =
    Secrets { pepper: true, totp_secrets: true, smtp_passwords: true, device_cookies: true, ..Secrets::NONE };
/// The portal re-authenticates (password or code, its budget the browser's device cookie's),
/// regenerates and shows the key, changes the password, and links brokers (their app credentials
/// and tokens).
pub const PORTAL_SECRETS: Secrets = Secrets {
    pepper: true,
    api_key_copies: true,
    totp_secrets: true,
    device_cookies: true,
    broker_tokens: true,
    ..Secrets::NONE
};
/// The security dashboard and the traffic log read and write no secret.
pub const SECURITY_SECRETS: Secrets = Secrets::NONE;
/// The catch-all, which every scanner reaches, holds none (see `shared::pipeline::not_found`).
pub const NOT_FOUND_SECRETS: Secrets = Secrets::NONE;

pub async fn setup_handler(deps: &Deps, request: Request) -> Response<Body> {
    let Some(page) = SetupRoute::of(&request) else { return unknown_resource(&request) };
    let route = page.route();
    match page {
        SetupRoute::Form => serve(deps, request, route, |r| setup::form(deps, r)).await,
        SetupRoute::Submit => serve(deps, request, route, |r| setup::submit(deps, r)).await,
    }
}

pub async fn auth_handler(deps: &Deps, request: Request) -> Response<Body> {
    let Some(page) = AuthRoute::of(&request) else { return unknown_resource(&request) };
    let route = page.route();
    match page {
        AuthRoute::Home | AuthRoute::LoginForm => serve(deps, request, route, |r| login::form(deps, r)).await,
        AuthRoute::LoginSubmit => serve(deps, request, route, |r| login::submit(deps, r)).await,
        AuthRoute::TotpForm => serve(deps, request, route, login::totp_form).await,
        AuthRoute::TotpSubmit => serve(deps, request, route, |r| login::totp_submit(deps, r)).await,
        AuthRoute::CsrfToken => serve(deps, request, route, login::csrf_token).await,
        AuthRoute::ResetForm => serve(deps, request, route, reset::form).await,
        AuthRoute::ResetStart => serve(deps, request, route, |r| reset::start(deps, r)).await,
        AuthRoute::ResetConfirmForm => serve(deps, request, route, |r| reset::confirm_form(deps, r)).await,
        AuthRoute::ResetConfirm => serve(deps, request, route, |r| reset::confirm(deps, r)).await,
    }
}

pub async fn portal_handler(deps: &Deps, request: Request) -> Response<Body> {
    let Some(page) = PortalRoute::of(&request) else { return unknown_resource(&request) };
    let route = page.route();
    match page {
        PortalRoute::Dashboard => serve(deps, request, route, |r| portal::dashboard(deps, r)).await,
        PortalRoute::ApiKeyPage => serve(deps, request, route, |r| portal::apikey_page(deps, r)).await,
        PortalRoute::ApiKeyRegenerate => serve(deps, request, route, |r| portal::regenerate(deps, r)).await,
        PortalRoute::ApiKeyReveal => serve(deps, request, route, |r| portal::reveal(deps, r)).await,
        PortalRoute::ApiKeyAllowlist => serve(deps, request, route, |r| portal::allowlist(deps, r)).await,
        PortalRoute::WebhookRevoke => serve(deps, request, route, |r| portal::revoke_webhook(deps, r)).await,
        PortalRoute::WebhookRebind => serve(deps, request, route, |r| portal::rebind_webhook(deps, r)).await,
        PortalRoute::Sessions => serve(deps, request, route, |r| portal::sessions(deps, r)).await,
        PortalRoute::Logout => serve(deps, request, route, |r| portal::logout(deps, r)).await,
        PortalRoute::LogoutAll => serve(deps, request, route, |r| portal::logout_all(deps, r)).await,
        PortalRoute::ChangePassword => serve(deps, request, route, |r| portal::change_password(deps, r)).await,
        PortalRoute::BrokerPage => serve(deps, request, route, |r| broker::page(deps, r)).await,
        PortalRoute::BrokerConnect => serve(deps, request, route, |r| broker::connect(deps, r)).await,
        PortalRoute::BrokerCallbackZerodha => serve(deps, request, route, |r| broker::zerodha_callback(deps, r)).await,
        PortalRoute::BrokerDisconnect => serve(deps, request, route, |r| broker::disconnect(deps, r)).await,
    }
}

pub async fn security_handler(deps: &Deps, request: Request) -> Response<Body> {
    let Some(page) = SecurityRoute::of(&request) else { return unknown_resource(&request) };
    let route = page.route();
    match page {
        SecurityRoute::Page => serve(deps, request, route, |r| security::page(deps, r)).await,
        SecurityRoute::Data => serve(deps, request, route, |r| security::data(deps, r)).await,
        SecurityRoute::Ban => serve(deps, request, route, |r| security::ban(deps, r)).await,
        SecurityRoute::Unban => serve(deps, request, route, |r| security::unban(deps, r)).await,
        SecurityRoute::ClearNotFound => serve(deps, request, route, |r| security::clear_not_found(deps, r)).await,
        SecurityRoute::Settings => serve(deps, request, route, |r| security::settings(deps, r)).await,
        SecurityRoute::Logs => serve(deps, request, route, |r| security::logs(deps, r)).await,
        SecurityRoute::LogsExport => serve(deps, request, route, |r| security::export(deps, r)).await,
    }
}

pub async fn not_found_handler(deps: &Deps, request: Request) -> Response<Body> {
    shared::pipeline::not_found::not_found(deps, request).await
}
