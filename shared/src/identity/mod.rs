//! Who is calling: users and their API keys, web sessions, the device cookies of browsers that
//! logged in before, password reset mail and the secret ids of strategy webhooks.

pub mod accounts;
pub mod auth;
pub mod devices;
pub mod mail;
pub mod reset_mail;
pub mod sessions;
pub mod webhooks;

/// The built-in paper broker every account starts on.
pub const SANDBOX_BROKER: &str = "sandbox";

/// What a web user may do. Stored as its name; anything else read back is an ordinary user, so a
/// corrupted item can never grant the dashboard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Role {
    Admin,
    #[default]
    User,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::User => "user",
        }
    }

    pub fn from_stored(text: &str) -> Self {
        if text == Role::Admin.as_str() { Role::Admin } else { Role::User }
    }
}
