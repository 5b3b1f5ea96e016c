//! The detectors' counters and the security settings, in the security table.
//!
//! - `track#<detector>#<ip>`: one item per detector and IP. Each hour has its own counter attribute
//!   (`h<hour since epoch>`), and the count is the sum of the last 24 of them: a rolling window, not
//!   a day that starts at the first error and resets (OpenAlgo's fixed window let a scanner pace
//!   itself across the reset). The item also keeps a bounded set of evidence (paths tried, short key
//!   hashes) for the dashboard, and expires a day after its last hit. It is on the dashboard's list
//!   `track#<detector>` of the listed index, newest hit first.
//! - `settings#security`: the detectors' settings, read on each detection so a change from the
//!   dashboard applies to the next request without a redeploy.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{
    EXPIRES_AT, Item, LISTING, PK, epoch, instant, n, number, s, string, string_set, unavailable,
    unless_condition_failed,
};
use crate::core::clock::UnixMillis;
use crate::core::error::AppError;
use crate::core::net::accountable;
use crate::threats::settings::{Detector, SecuritySettings, WINDOW_HOURS};

const SETTINGS_PK: &str = "settings#security";
/// A tracker outlives its window by an hour after its last hit, then TTL may remove it.
const TRACKER_LIFETIME: Duration = Duration::from_secs((WINDOW_HOURS + 1) * 3600);

/// One IP's record for one detector, as the dashboard shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracker {
    pub ip: IpAddr,
    /// Hits within the rolling window.
    pub count: u64,
    /// Epoch seconds.
    pub first_at: UnixMillis,
    pub last_at: UnixMillis,
    /// Paths tried (404s) or short key hashes (invalid keys), oldest first is not kept: a set.
    pub evidence: Vec<String>,
}

// Keyed by the accountable address: an IPv6 /64 is counted as one.
fn tracker_key(detector: Detector, ip: IpAddr) -> String {
    format!("track#{}#{}", detector.key(), accountable(ip))
}

/// The dashboard's list of `detector`'s records in the security table's listed index.
fn listing(detector: Detector) -> String {
    format!("track#{}", detector.key())
}

/// The hits within the window ending at `hour`, and the hour attributes that have left it.
fn window_count(item: &Item, hour: u64) -> (u64, Vec<String>) {
    let mut count = 0;
    let mut stale = Vec::new();
    for (name, value) in item {
        let Some(bucket) = name.strip_prefix('h').and_then(|digits| digits.parse::<u64>().ok()) else { continue };
        if bucket + WINDOW_HOURS > hour {
            count += value.as_n().ok().and_then(|text| text.parse::<u64>().ok()).unwrap_or(0);
        } else {
            stale.push(name.clone());
        }
    }
    (count, stale)
}

#[derive(Clone, Debug)]
pub struct TrackerStore {
    client: Client,
    table: String,
}

impl TrackerStore {
    pub fn new(client: Client, table: String) -> Self {
        Self { client, table }
    }

    /// Counts one hit for `ip` and returns the hits within the rolling window, this one included.
    /// `evidence` joins the item's set while the set is below the detector's cap.
    pub async fn count(
        &self,
        detector: Detector,
        ip: IpAddr,
        evidence: Option<&str>,
        now: UnixMillis,
    ) -> Result<u64, AppError> {
        let hour = now.secs() / 3600;
        let key = tracker_key(detector, ip);
        let write = |with_evidence: Option<&str>| {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PK, s(&key))
                .expression_attribute_names("#bucket", format!("h{hour}"))
                .expression_attribute_names("#exp", EXPIRES_AT)
                .expression_attribute_names("#listing", LISTING)
                .expression_attribute_values(":listing", s(listing(detector)))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":now", epoch(now))
                .expression_attribute_values(":exp", epoch(now.plus(TRACKER_LIFETIME)))
                .return_values(ReturnValue::AllNew);
            let set = "SET last_at = :now, first_at = if_not_exists(first_at, :now), #exp = :exp, \
                       #listing = :listing, listed_at = :now";
            update = match with_evidence {
                Some(evidence) => update
                    .update_expression(format!("ADD #bucket :one, evidence :evidence {set}"))
                    .condition_expression(
                        "attribute_not_exists(evidence) OR size(evidence) < :cap OR contains(evidence, :item)",
                    )
                    .expression_attribute_values(":evidence", AttributeValue::Ss(vec![evidence.to_owned()]))
                    .expression_attribute_values(":item", s(evidence))
                    .expression_attribute_values(":cap", n(detector.evidence_cap() as u64)),
                None => update.update_expression(format!("ADD #bucket :one {set}")),
            };
            update.send()
        };
        let evidence = evidence.filter(|_| detector.evidence_cap() > 0);
        // Only the write with evidence has a condition: when it fails, the evidence set is full, and
        // the hit is counted without adding to it.
        let output = match unless_condition_failed(write(evidence).await, "count detector hit")? {
            Some(output) => output,
            None => write(None).await.map_err(unavailable("count detector hit"))?,
        };
        let item = output.attributes().cloned().unwrap_or_default();
        let (count, stale) = window_count(&item, hour);
        if !stale.is_empty() {
            // Hours that left the window: dropped once, so the item never grows past a day of hours.
            let mut prune = self.client.update_item().table_name(&self.table).key(PK, s(&key));
            let mut names = Vec::new();
            for (index, name) in stale.into_iter().enumerate() {
                prune = prune.expression_attribute_names(format!("#s{index}"), name);
                names.push(format!("#s{index}"));
            }
            if let Err(error) = prune.update_expression(format!("REMOVE {}", names.join(", "))).send().await {
                tracing::warn!(error = %error, "stale detector hours not pruned");
            }
        }
        Ok(count)
    }

    /// Every IP with hits for `detector` within the window, most hits first.
    pub async fn list(&self, detector: Detector, now: UnixMillis) -> Result<Vec<Tracker>, AppError> {
        let prefix = format!("track#{}#", detector.key());
        let hour = now.secs() / 3600;
        let items =
            super::query_listing(&self.client, &self.table, &listing(detector), "list detector records").await?;
        let mut trackers: Vec<Tracker> = items
            .iter()
            .filter_map(|item| {
                let ip = string(item, PK)?.strip_prefix(&prefix)?.parse().ok()?;
                let (count, _) = window_count(item, hour);
                let mut evidence = string_set(item, "evidence");
                evidence.sort();
                Some(Tracker {
                    ip,
                    count,
                    first_at: instant(item, "first_at").unwrap_or_default(),
                    last_at: instant(item, "last_at").unwrap_or_default(),
                    evidence,
                })
            })
            .filter(|tracker| tracker.count > 0)
            .collect();
        trackers.sort_by_key(|tracker| (std::cmp::Reverse(tracker.count), tracker.ip));
        Ok(trackers)
    }

    /// Forgets `ip`'s hits for `detector`. Returns whether there were any.
    pub async fn clear(&self, detector: Detector, ip: IpAddr) -> Result<bool, AppError> {
        super::delete_by_pk(&self.client, &self.table, tracker_key(detector, ip), "clear detector record").await
    }

    /// The settings in force: what the dashboard last saved, or the defaults.
    pub async fn settings(&self) -> Result<SecuritySettings, AppError> {
        let item = super::get_by_pk(&self.client, &self.table, SETTINGS_PK.into(), "read security settings").await?;
        let Some(item) = item else { return Ok(SecuritySettings::default()) };
        let stored: HashMap<String, u64> =
            item.keys().filter_map(|name| number(&item, name).map(|value| (name.clone(), value))).collect();
        Ok(SecuritySettings::from_stored(&stored))
    }

    pub async fn save_settings(&self, settings: &SecuritySettings) -> Result<(), AppError> {
        let mut put = self.client.put_item().table_name(&self.table).item(PK, s(SETTINGS_PK));
        for (name, value) in settings.to_stored() {
            put = put.item(name, n(value));
        }
        put.send().await.map_err(unavailable("save security settings"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_is_the_last_24_hours_and_older_hours_are_stale() {
        let item: Item = [
            ("h100".to_owned(), n(3)),
            ("h90".to_owned(), n(2)),
            ("h77".to_owned(), n(1)),
            ("h76".to_owned(), n(50)),
            ("first_at".to_owned(), n(7)),
        ]
        .into_iter()
        .collect();
        let (count, mut stale) = window_count(&item, 100);
        assert_eq!(count, 6, "hours 77..=100 are the 24 in the window");
        stale.sort();
        assert_eq!(stale, ["h76"]);
    }
}
