//! The sandbox's fill engine: one pass over every resting order (LIMIT, SL, SL-M) against the
//! simulated market. EventBridge runs it every minute in AWS; the local gateway runs the same pass
//! on a timer. It needs no keys and no secrets: only the sandbox table.

use std::sync::Arc;

use shared::AppError;
use shared::app::aws::AwsClients;
use shared::core::clock::Clock;
use shared::core::config::{Config, OrderCaps};
use shared::store::sandbox::SandboxStore;
use shared::trading::sandbox::service::Sandbox;

#[derive(Debug)]
pub struct FillEngine {
    store: SandboxStore,
    clock: Arc<dyn Clock>,
    caps: OrderCaps,
}

impl FillEngine {
    pub fn new(config: &Config, aws: &AwsClients, clock: Arc<dyn Clock>) -> Self {
        Self {
            store: SandboxStore::new(aws.dynamodb.clone(), config.tables.sandbox.clone()),
            clock,
            caps: config.order_caps,
        }
    }

    /// Matches every resting order once; returns how many changed (filled or triggered).
    pub async fn run_once(&self) -> Result<usize, AppError> {
        let changed = Sandbox::new(&self.store, self.clock.as_ref(), self.caps).match_resting_orders().await?;
        if changed > 0 {
            tracing::info!(changed, "resting sandbox orders matched");
        }
        Ok(changed)
    }
}
