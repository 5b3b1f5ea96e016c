//! The request log: one item per request, 14-day TTL, partitioned by hour so the dashboard can
//! read recent traffic with a `Query` per hour.
//!
//! What goes in is chosen field by field — no bodies, no headers, no query strings — so there is
//! nothing to redact after the fact.

use aws_sdk_dynamodb::Client;

use super::{EXPIRES_AT, PK, n, s, unavailable};
use crate::error::AppError;
use crate::traffic::TrafficRecord;

#[derive(Clone, Debug)]
pub struct TrafficStore {
    client: Client,
    table: String,
    retention_secs: u64,
}

impl TrafficStore {
    pub fn new(client: Client, table: String, retention_days: u64) -> Self {
        Self { client, table, retention_secs: retention_days * 86_400 }
    }

    pub async fn put(&self, record: &TrafficRecord) -> Result<(), AppError> {
        let secs = record.at.secs();
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(format!("hour#{}", secs / 3600)))
            .item("sk", s(format!("{:013}#{}", record.at.0, record.request_id)))
            .item("method", s(&record.method))
            .item("path", s(&record.path))
            .item("status", n(u64::from(record.status)))
            .item("duration_us", n(record.duration_us))
            .item("route", s(record.route))
            .item(EXPIRES_AT, n(secs + self.retention_secs));
        if let Some(ip) = record.client_ip {
            put = put.item("ip", s(ip.to_string()));
        }
        if let Some(user) = &record.user {
            put = put.item("user", s(user));
        }
        put.send().await.map_err(unavailable("write traffic record"))?;
        Ok(())
    }
}
