//! The login budget's receipt. Password, TOTP and setup-token checks each take a [`LoginAttempt`]
//! by value, and only spending a login-class attempt against its budgets makes one
//! (`crate::pipeline::pages::spend_login_attempt`), so no credential form can check a credential
//! without being limited.

/// One login-class attempt, spent against the address's and the account's budgets and admitted.
#[derive(Debug)]
#[must_use = "an attempt is spent by the credential check it was granted for"]
pub struct LoginAttempt {
    _granted: (),
}

impl LoginAttempt {
    /// Only the login limiter grants attempts.
    pub(crate) fn granted() -> Self {
        Self { _granted: () }
    }

    /// Used up by the check it was granted for.
    pub(crate) fn spend(self) {}
}
