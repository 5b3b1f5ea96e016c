//! The request log: one item per request, 14-day TTL, partitioned by hour so the dashboard can
//! read recent traffic with a `Query` per hour.
//!
//! What goes in is chosen field by field — no bodies, no headers, no query strings — so there is
//! nothing to redact after the fact.

use std::time::Duration;

use aws_sdk_dynamodb::Client;

use super::{EXPIRES_AT, PK, epoch, n, number, s, string, unavailable};
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::http::traffic::TrafficRecord;

#[derive(Clone, Debug)]
pub struct TrafficStore {
    client: Client,
    table: String,
    retention: Duration,
}

impl TrafficStore {
    pub fn new(client: Client, table: String, retention_days: u64) -> Self {
        Self { client, table, retention: Duration::from_secs(retention_days * 86_400) }
    }

    pub async fn put(&self, record: &TrafficRecord) -> Result<(), AppError> {
        // Records are partitioned by the hour they were made in.
        let hour = record.at.secs() / 3600;
        // The item is built whole, in a map sized for its ten attributes at most, rather than grown
        // attribute by attribute.
        let mut item = super::Item::with_capacity(10);
        item.insert(PK.to_owned(), s(format!("hour#{hour}")));
        item.insert("sk".to_owned(), s(format!("{:013}#{}", record.at.0, record.request_id)));
        item.insert("method".to_owned(), s(&record.method));
        item.insert("path".to_owned(), s(&record.path));
        item.insert("status".to_owned(), n(u64::from(record.status)));
        item.insert("duration_us".to_owned(), n(record.duration_us));
        item.insert("route".to_owned(), s(record.route));
        item.insert(EXPIRES_AT.to_owned(), epoch(record.at.plus(self.retention)));
        if let Some(ip) = record.client_ip {
            item.insert("ip".to_owned(), s(ip.to_string()));
        }
        if let Some(user) = &record.user {
            item.insert("user".to_owned(), s(user));
        }
        let put = self.client.put_item().table_name(&self.table).set_item(Some(item));
        put.send().await.map_err(unavailable("write traffic record"))?;
        Ok(())
    }
}

/// A request as the traffic log shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedRequest {
    pub at: UnixMillis,
    pub ip: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub duration_ms: f64,
    pub user: String,
    pub route: String,
}

/// What the log viewer asks for: every field optional, all of them must match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrafficFilter {
    pub ip: Option<String>,
    pub status: Option<u16>,
    /// A substring of the path.
    pub path: Option<String>,
}

/// Hours of partitions read at once while paging back through the log.
const HOURS_PER_ROUND: usize = 24;
/// Items one page of an hour's Query evaluates at most (before the filter).
const PAGE_ITEMS: i32 = 500;

/// The newest requests of the log, at most the limit asked for.
#[derive(Clone, Debug, PartialEq)]
pub struct RecentRequests {
    /// Newest first.
    pub records: Vec<LoggedRequest>,
    /// Older matching requests exist beyond the limit.
    pub more: bool,
}

impl TrafficStore {
    /// The newest `limit` requests matching `filter` within the retention period, newest first.
    /// Hour partitions are read a day at a time, concurrently, newest hour first; each is read newest
    /// first and only until it has yielded what is still missing, so at most `HOURS_PER_ROUND ×
    /// (limit + 1)` records are ever held, however busy an hour was.
    pub async fn recent(
        &self,
        filter: &TrafficFilter,
        limit: usize,
        now: UnixMillis,
    ) -> Result<RecentRequests, AppError> {
        let newest_hour = now.secs() / 3600;
        let oldest_hour = newest_hour.saturating_sub(self.retention.as_secs() / 3600);
        let hours: Vec<u64> = (oldest_hour..=newest_hour).rev().collect();
        // One more than asked for tells whether there are more.
        let wanted = limit.saturating_add(1);
        let mut found = Vec::new();
        for round in hours.chunks(HOURS_PER_ROUND) {
            let missing = wanted.saturating_sub(found.len());
            if missing == 0 {
                break;
            }
            let hours = futures::future::try_join_all(round.iter().map(|hour| self.hour(*hour, filter, missing)));
            for records in hours.await? {
                found.extend(records);
            }
            // Every hour of this round is newer than every later one: what is kept now stays.
            found.sort_by_key(|record: &LoggedRequest| std::cmp::Reverse(record.at));
            found.truncate(wanted);
        }
        let more = found.len() > limit;
        found.truncate(limit);
        Ok(RecentRequests { records: found, more })
    }

    /// One hour's requests matching `filter`.
    /// The newest `wanted` of one hour's requests matching `filter`, newest first: the Query runs
    /// newest first (the sort key starts with the time) and stops paging once it has them.
    async fn hour(&self, hour: u64, filter: &TrafficFilter, wanted: usize) -> Result<Vec<LoggedRequest>, AppError> {
        // DynamoDB applies a filter after `Limit`: pages of `wanted` would take one round trip per
        // `wanted` records of the hour however few match (a busy hour and an address filter made
        // that hundreds, each a full read of the partition in the emulator, which serialises every
        // request behind it). So a filtered read's pages double, from `wanted` to PAGE_ITEMS: a
        // selective filter over a busy hour takes tens of round trips, and what is held stays
        // bounded by the last page.
        let filtered = filter.ip.is_some() || filter.status.is_some() || filter.path.is_some();
        let first_page = i32::try_from(wanted).unwrap_or(PAGE_ITEMS).clamp(1, PAGE_ITEMS);
        let mut query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("hour#{hour}")))
            .scan_index_forward(false);
        let mut conditions = Vec::new();
        if let Some(ip) = &filter.ip {
            conditions.push("ip = :ip");
            query = query.expression_attribute_values(":ip", s(ip));
        }
        if let Some(status) = filter.status {
            conditions.push("#status = :status");
            query = query
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", n(u64::from(status)));
        }
        if let Some(path) = &filter.path {
            conditions.push("contains(#path, :path)");
            query = query.expression_attribute_names("#path", "path").expression_attribute_values(":path", s(path));
        }
        if !conditions.is_empty() {
            query = query.filter_expression(conditions.join(" AND "));
        }
        let mut items = Vec::new();
        let mut page_items = first_page;
        let mut start = None;
        loop {
            let page = query
                .clone()
                .limit(page_items)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable("read traffic log"))?;
            items.extend(page.items.unwrap_or_default());
            start = page.last_evaluated_key;
            if items.len() >= wanted || start.is_none() {
                break;
            }
            if filtered {
                page_items = page_items.saturating_mul(2).min(PAGE_ITEMS);
            }
        }
        items.truncate(wanted);
        items
            .into_iter()
            .map(|item| {
                // The sort key starts with the request's epoch milliseconds.
                let at = string(&item, "sk")
                    .and_then(|sk| sk.split('#').next().and_then(|ms| ms.parse().ok()))
                    .map(UnixMillis)
                    .unwrap_or_default();
                let duration_us = number(&item, "duration_us").unwrap_or_default();
                Ok(LoggedRequest {
                    at,
                    ip: string(&item, "ip").unwrap_or_default(),
                    method: string(&item, "method").unwrap_or_default(),
                    path: string(&item, "path").unwrap_or_default(),
                    status: number(&item, "status").and_then(|status| u16::try_from(status).ok()).unwrap_or(0),
                    duration_ms: duration_us as f64 / 1000.0,
                    user: string(&item, "user").unwrap_or_default(),
                    route: string(&item, "route").unwrap_or_default(),
                })
            })
            .collect()
    }
}
