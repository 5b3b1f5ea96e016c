//! Where an account's orders go, decided once per request (`Deps::desk`) from what the gate read:
//! the sandbox (analyzer mode) or the trader's linked broker (live). The order routes, the account
//! reads and the strategy webhook answer through it, so all of them trade where the account trades.

use serde_json::{Value, json};

use crate::core::error::AppError;
use crate::trading::live::LiveDesk;
use crate::trading::orders::{OrderLeg, SmartOrder, SmartOutcome};
use crate::trading::sandbox::service::Sandbox;

/// Where an account's orders go: the sandbox (analyzer mode, every body says `"mode":"analyze"`) or the
/// trader's linked broker (live, as OpenAlgo's live bodies: no `mode`).
#[derive(Debug)]
pub enum Desk<'a> {
    Sandbox { sandbox: Sandbox<'a>, user: String },
    Live(LiveDesk<'a>),
}

impl<'a> Desk<'a> {
    /// `body` as this desk answers it.
    pub fn answer(&self, mut body: Value) -> Value {
        if let Desk::Sandbox { .. } = self {
            body["mode"] = json!("analyze");
        }
        body
    }

    pub async fn smart(&self, request: &SmartOrder) -> Result<SmartOutcome, AppError> {
        match self {
            Desk::Sandbox { sandbox, user } => sandbox.smart(user, request).await,
            Desk::Live(live) => live.smart(request).await,
        }
    }

    pub async fn place(&self, strategy: &str, leg: &OrderLeg) -> Result<String, AppError> {
        match self {
            Desk::Sandbox { sandbox, user } => Ok(sandbox.place(user, strategy, leg).await?.id),
            Desk::Live(live) => live.place(leg).await,
        }
    }
}
