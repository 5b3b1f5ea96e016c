//! The administrator's security pages: `/security` (bans, detector records, login activity,
//! settings, manual ban and unban) and `/logs` (the traffic log, filtered, with CSV export).
//! Every view is HTML for a browser and JSON for a script; every change is a CSRF-checked POST.

use std::net::IpAddr;

use maud::html;
use serde_json::{Value, json};
use shared::Deps;
use shared::core::error::AppError;
use shared::pipeline::pages::html::{csrf_field, notice_box};
use shared::pipeline::pages::{Reply, WebRequest};
use shared::store::bans::Ban;
use shared::store::trackers::Tracker;
use shared::store::traffic::{LoggedRequest, RecentRequests, TrafficFilter};
use shared::store::users::{AuditEvent, AuditKind, AuditOutcome};
use shared::threats::{Detector, ManualBan, SecuritySettings};

use crate::common::ist;

/// The durations the manual-ban form offers, in hours (OpenAlgo's API accepts any 1–8760).
const BAN_CHOICES: [(&str, &str); 4] = [("24", "24 hours"), ("48", "48 hours"), ("168", "1 week"), ("0", "Permanent")];
/// Login events shown on the dashboard.
const LOGIN_ACTIVITY_LIMIT: i32 = 50;
/// Requests shown or exported from the traffic log at most.
const LOG_LIMIT_MAX: usize = 1000;

fn ban_json(ban: &Ban) -> Value {
    json!({
        "ip_address": ban.ip.to_string(),
        "ban_reason": ban.reason,
        "banned_at": ist(ban.banned_at),
        "expires_at": ban.expires_at.map(ist),
        "is_permanent": ban.is_permanent(),
        "ban_count": ban.ban_count,
        "created_by": ban.created_by,
    })
}

fn tracker_json(tracker: &Tracker, evidence_name: &str) -> Value {
    json!({
        "ip_address": tracker.ip.to_string(),
        "count": tracker.count,
        "first_at": ist(tracker.first_at),
        "last_at": ist(tracker.last_at),
        evidence_name: tracker.evidence,
    })
}

/// The latest [`LOGIN_ACTIVITY_LIMIT`] audited events of every kind (logins and their TOTP step,
/// resets, reveals, password and key changes), newest first: a failed reset or re-authentication is
/// as much a sign of guessing as a failed login.
async fn recent_activity(deps: &Deps) -> Result<Vec<AuditEvent>, AppError> {
    let kinds = AuditKind::ALL.map(|kind| deps.identity.recent_audit(kind, LOGIN_ACTIVITY_LIMIT));
    let mut events: Vec<AuditEvent> = futures::future::try_join_all(kinds).await?.into_iter().flatten().collect();
    events.sort_by_key(|event| std::cmp::Reverse(event.at));
    events.truncate(usize::try_from(LOGIN_ACTIVITY_LIMIT).unwrap_or(50));
    Ok(events)
}

/// Everything the dashboard shows, as JSON (the page renders the same data).
async fn snapshot(deps: &Deps, request: &WebRequest) -> Result<Value, AppError> {
    let now = request.now;
    let (bans, not_found, invalid_keys, login_abuse, settings, logins) = tokio::try_join!(
        deps.bans.list_active(now),
        deps.trackers.list(Detector::NotFound, now),
        deps.trackers.list(Detector::InvalidApiKey, now),
        deps.trackers.list(Detector::LoginAbuse, now),
        deps.trackers.settings(),
        recent_activity(deps),
    )?;
    let permanent = bans.iter().filter(|ban| ban.is_permanent()).count();
    let threshold = u64::from(settings.not_found_threshold);
    let near = |tracker: &&Tracker| tracker.count * 4 >= threshold * 3 && tracker.count <= threshold;
    let failed_logins = logins.iter().filter(|event| event.outcome == AuditOutcome::Failed).count();
    Ok(json!({
        "your_ip": request.ip.to_string(),
        "totals": {
            "active_bans": bans.len(),
            "permanent_bans": permanent,
            "temporary_bans": bans.len() - permanent,
            "ips_with_404s": not_found.len(),
            "ips_near_404_threshold": not_found.iter().filter(near).count(),
            "ips_with_invalid_keys": invalid_keys.len(),
            "ips_over_login_limit": login_abuse.len(),
            "recent_failed_logins": failed_logins,
        },
        "banned_ips": bans.iter().map(ban_json).collect::<Vec<_>>(),
        "ips_with_404s": not_found.iter().map(|t| tracker_json(t, "paths")).collect::<Vec<_>>(),
        "ips_with_invalid_keys": invalid_keys.iter().map(|t| tracker_json(t, "key_hashes")).collect::<Vec<_>>(),
        "ips_over_login_limit": login_abuse.iter().map(|t| tracker_json(t, "evidence")).collect::<Vec<_>>(),
        "login_activity": logins.iter().map(|event| json!({
            "at": ist(event.at),
            "kind": event.kind.as_str(),
            "username": event.username,
            "ip_address": event.ip,
            "outcome": event.outcome.as_str(),
            "detail": event.detail,
        })).collect::<Vec<_>>(),
        "settings": settings_json(&settings),
    }))
}

fn settings_json(settings: &SecuritySettings) -> Value {
    let mut object = serde_json::Map::new();
    for (name, value) in settings.to_stored() {
        object.insert(name.to_owned(), if name == "auto_ban_enabled" { json!(value == 1) } else { json!(value) });
    }
    Value::Object(object)
}

/// `GET /security/api/data`.
pub async fn data(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    Ok(Reply::json(snapshot(deps, &request).await?))
}

/// `GET /security`: the dashboard page (JSON for a script).
pub async fn page(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let data = snapshot(deps, &request).await?;
    if request.wants_json {
        return Ok(Reply::json(data));
    }
    let csrf = csrf_field(&request.session()?.csrf);
    let text = |value: &Value| value.as_str().map_or_else(|| value.to_string(), str::to_owned);
    let rows = |key: &str| data[key].as_array().map_or(&[][..], Vec::as_slice);

    let notices = [
        ("banned", "The address is banned."),
        ("unbanned", "The address is unbanned."),
        ("cleared", "The 404 record is cleared."),
        ("saved", "Settings saved. They apply from the next request."),
    ];
    let notice = notices.iter().find(|(flag, _)| request.query_param(flag).is_some()).map(|(_, text)| *text);

    let totals = &data["totals"];
    let tracker_rows = |key: &str, evidence: &str, clear: bool| {
        html! {
            @for row in rows(key) {
                tr {
                    td { (text(&row["ip_address"])) }
                    td { (text(&row["count"])) }
                    td { (text(&row["first_at"])) }
                    td { (text(&row["last_at"])) }
                    td {
                        code {
                            @for (index, item) in row[evidence].as_array().into_iter().flatten().enumerate() {
                                @if index > 0 { br; }
                                (text(item))
                            }
                        }
                    }
                    td {
                        @if clear {
                            form class="inline" method="post" action=(request.link("/security/clear-404")) {
                                (csrf)
                                input type="hidden" name="ip_address" value=(text(&row["ip_address"]));
                                button type="submit" { "Clear" }
                            }
                        }
                    }
                }
            }
        }
    };
    let settings = &data["settings"];
    let number_input = |name: &str, label: &str| {
        html! {
            label for=(name) { (label) }
            input id=(name) name=(name) type="number" min="0" value=(text(&settings[name]));
        }
    };

    let body = html! {
        (notice_box(notice))
        p { "Your address: " code id="your-ip" { (text(&data["your_ip"])) } " (never bannable from here)." }
        h2 { "Totals" }
        table id="totals" {
            tr {
                th { "Active bans" } th { "Permanent" } th { "Temporary" } th { "IPs with 404s" }
                th { "Near the 404 threshold" } th { "IPs with invalid keys" } th { "Recent failed logins" }
            }
            tr {
                td id="total-bans" { (text(&totals["active_bans"])) }
                td { (text(&totals["permanent_bans"])) }
                td { (text(&totals["temporary_bans"])) }
                td { (text(&totals["ips_with_404s"])) }
                td { (text(&totals["ips_near_404_threshold"])) }
                td { (text(&totals["ips_with_invalid_keys"])) }
                td { (text(&totals["recent_failed_logins"])) }
            }
        }
        h2 { "Active bans" }
        table id="bans" {
            tr { th { "IP" } th { "Reason" } th { "Banned at" } th { "Until" } th { "Offence" } th { "By" } th {} }
            @for ban in rows("banned_ips") {
                @let ip = text(&ban["ip_address"]);
                tr class="ban" data-ip=(ip) {
                    td { (ip) }
                    td { (text(&ban["ban_reason"])) }
                    td { (text(&ban["banned_at"])) }
                    td { @if ban["is_permanent"] == true { "Permanent" } @else { (text(&ban["expires_at"])) } }
                    td { (text(&ban["ban_count"])) }
                    td { (text(&ban["created_by"])) }
                    td {
                        form class="inline" method="post" action=(request.link("/security/unban")) {
                            (csrf)
                            input type="hidden" name="ip_address" value=(ip);
                            button type="submit" class="unban" { "Unban" }
                        }
                    }
                }
            }
        }
        h2 { "Ban an address" }
        form method="post" action=(request.link("/security/ban")) id="ban-form" {
            (csrf)
            label for="ip_address" { "IP address" }
            input id="ip_address" name="ip_address" required;
            label for="reason" { "Reason" }
            input id="reason" name="reason" value="Manual ban" maxlength="200";
            label for="duration_hours" { "Duration" }
            select id="duration_hours" name="duration_hours" {
                @for (hours, label) in BAN_CHOICES {
                    option value=(hours) selected[hours == "24"] { (label) }
                }
            }
            // The select and the button share a line: without a space between them they touch.
            " "
            button id="ban" type="submit" { "Ban" }
        }
        h2 { "404s in the last 24 hours" }
        table id="not-found" {
            tr { th { "IP" } th { "404s" } th { "First" } th { "Last" } th { "Paths tried" } th {} }
            (tracker_rows("ips_with_404s", "paths", true))
        }
        h2 { "Invalid API keys in the last 24 hours" }
        table id="invalid-keys" {
            tr { th { "IP" } th { "Attempts" } th { "First" } th { "Last" } th { "Key SHA-256 prefixes" } th {} }
            (tracker_rows("ips_with_invalid_keys", "key_hashes", false))
        }
        h2 { "Over the login limit in the last 24 hours" }
        table id="login-abuse" {
            tr { th { "IP" } th { "Refused attempts" } th { "First" } th { "Last" } th {} th {} }
            (tracker_rows("ips_over_login_limit", "evidence", false))
        }
        h2 { "Login activity" }
        table id="logins" {
            tr { th { "At" } th { "Kind" } th { "User" } th { "IP" } th { "Outcome" } th { "Detail" } }
            @for event in rows("login_activity") {
                tr {
                    td { (text(&event["at"])) }
                    td { (text(&event["kind"])) }
                    td { (text(&event["username"])) }
                    td { (text(&event["ip_address"])) }
                    td { (text(&event["outcome"])) }
                    td { (text(&event["detail"])) }
                }
            }
        }
        h2 { "Settings" }
        form method="post" action=(request.link("/security/settings")) id="settings-form" {
            (csrf)
            input type="hidden" name="auto_ban_enabled" value="false";
            label {
                input id="auto_ban_enabled" name="auto_ban_enabled" type="checkbox" value="true"
                    checked[settings["auto_ban_enabled"] == true];
                " Ban automatically"
            }
            (number_input("404_threshold", "404s per 24 hours before a ban (1–1000)"))
            (number_input("404_ban_duration", "404 ban duration in hours (0 = permanent)"))
            (number_input("api_threshold", "Invalid API keys per 24 hours before a ban (1–100)"))
            (number_input("api_ban_duration", "Invalid-key ban duration in hours (0 = permanent)"))
            (number_input("login_threshold", "Refused logins per 24 hours before a ban (1–1000)"))
            (number_input("login_ban_duration", "Login ban duration in hours (0 = permanent)"))
            (number_input("repeat_offender_limit", "Offence from which bans are permanent (1–10)"))
            button id="save-settings" type="submit" { "Save settings" }
        }
    };
    Ok(request.page(200, "Security", body))
}

/// An address typed by the operator, in the form requests see it.
fn parse_ip(text: &str) -> Result<IpAddr, AppError> {
    text.trim()
        .parse::<IpAddr>()
        .map(shared::core::net::canonical)
        .map_err(|_| AppError::bad_request("Invalid IP address format"))
}

/// `POST /security/ban`: `ip_address`, `reason`, `duration_hours` (0 = permanent) or `permanent`.
pub async fn ban(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let ip = parse_ip(request.field("ip_address"))?;
    let permanent = matches!(request.field("permanent"), "true" | "1" | "on");
    let hours = match request.field("duration_hours") {
        "" => 24,
        text => text.parse::<u32>().map_err(|_| AppError::bad_request("Invalid numeric value provided"))?,
    };
    // The form's 0 is OpenAlgo's "permanent".
    let hours = (!permanent && hours > 0).then_some(hours);
    let manual = ManualBan::new(ip, hours, request.field("reason"), &deps.config.never_ban, Some(request.ip))?;
    let ban = deps.threats().ban(&manual, request.now).await?;
    let message = match ban.expires_at {
        Some(until) => format!("Banned {ip} until {} (offence {})", ist(until), ban.ban_count),
        None => format!("Banned {ip} permanently (offence {})", ban.ban_count),
    };
    Ok(request.done(&message, "/security?banned"))
}

/// `POST /security/unban`: `ip_address`. The offender history stays.
pub async fn unban(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let ip = parse_ip(request.field("ip_address"))?;
    if !deps.threats().unban(ip).await? {
        return Err(AppError::NoSuchBan);
    }
    Ok(request.done(&format!("Unbanned {ip}"), "/security?unbanned"))
}

/// `POST /security/clear-404`: `ip_address`.
pub async fn clear_not_found(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let ip = parse_ip(request.field("ip_address"))?;
    deps.trackers.clear(Detector::NotFound, ip).await?;
    Ok(request.done(&format!("Cleared the 404 record of {ip}"), "/security?cleared"))
}

/// `POST /security/settings`: any of the settings' fields; absent ones keep their value.
pub async fn settings(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let current = deps.trackers.settings().await?;
    let updated = current.updated_from(&request.form)?;
    deps.trackers.save_settings(&updated).await?;
    tracing::warn!(settings = ?updated, "security settings changed");
    if request.wants_json {
        return Ok(Reply::json(json!({ "message": "Settings updated", "settings": settings_json(&updated) })));
    }
    Ok(Reply::redirect("/security?saved"))
}

/// The log viewer's filter and limit, from the query string; a bad value is named.
fn log_query(request: &WebRequest) -> Result<(TrafficFilter, usize), AppError> {
    let given = |name: &str| request.query_param(name).map(|value| value.trim().to_owned()).filter(|v| !v.is_empty());
    let ip = given("ip").map(|text| parse_ip(&text).map(|ip| ip.to_string())).transpose()?;
    let status = given("status")
        .map(|text| match text.parse::<u16>() {
            Ok(status) if (100..=599).contains(&status) => Ok(status),
            _ => Err(AppError::bad_request(format!("status `{text}` is not an HTTP status code"))),
        })
        .transpose()?;
    let path = given("path").map(|text| text.chars().take(200).collect());
    let limit = match given("limit") {
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if (1..=LOG_LIMIT_MAX).contains(&limit) => limit,
            _ => return Err(AppError::bad_request(format!("limit must be between 1 and {LOG_LIMIT_MAX}"))),
        },
        None => 200,
    };
    Ok((TrafficFilter { ip, status, path }, limit))
}

fn logged_json(record: &LoggedRequest) -> Value {
    json!({
        "timestamp": ist(record.at),
        "timestamp_utc_ms": record.at.0,
        "client_ip": record.ip,
        "method": record.method,
        "path": record.path,
        "status_code": record.status,
        "duration_ms": record.duration_ms,
        "user": record.user,
        "route": record.route,
    })
}

/// `GET /logs`: the traffic log, filterable by `ip`, `status` and `path` (JSON for a script).
pub async fn logs(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let (filter, limit) = log_query(&request)?;
    let RecentRequests { records, more } = deps.traffic.recent(&filter, limit, request.now).await?;
    if request.wants_json {
        return Ok(Reply::json(json!({
            "logs": records.iter().map(logged_json).collect::<Vec<_>>(),
            "limit": limit,
            "more": more,
        })));
    }
    let value = |name: &str| request.query_param(name).unwrap_or_default();
    let body = html! {
        form method="get" action=(request.link("/logs")) id="log-filter" {
            label for="ip" { "IP" }
            input id="ip" name="ip" value=(value("ip"));
            label for="status" { "Status" }
            input id="status" name="status" value=(value("status"));
            label for="path" { "Path contains" }
            input id="path" name="path" value=(value("path"));
            button id="filter" type="submit" { "Filter" }
        }
        p {
            a id="export" href={ (request.link("/logs/export")) "?" (request.query) } { "Export CSV" }
            " · " span id="count" { (records.len()) }
            " request(s), newest first; times in IST; kept " (deps.config.traffic_retention_days) " days."
        }
        @if more {
            p id="more" {
                "Showing the newest " (limit) " only: older requests match too. Narrow the filter, or raise "
                code { "limit" } " (up to " (LOG_LIMIT_MAX) ")."
            }
        }
        table id="traffic" {
            tr {
                th { "Time" } th { "IP" } th { "Method" } th { "Path" } th { "Status" } th { "ms" } th { "User" }
                th { "Route" }
            }
            @for record in &records {
                tr class="log" {
                    td { (ist(record.at)) }
                    td { (record.ip) }
                    td { (record.method) }
                    td { (record.path) }
                    td { (record.status) }
                    td { (format!("{:.1}", record.duration_ms)) }
                    td { (record.user) }
                    td { (record.route) }
                }
            }
        }
    };
    Ok(request.page(200, "Traffic log", body))
}

/// `GET /logs/export`: the filtered log as CSV.
pub async fn export(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let (filter, _) = log_query(&request)?;
    // The newest LOG_LIMIT_MAX at most, like the page's largest limit.
    let records = deps.traffic.recent(&filter, LOG_LIMIT_MAX, request.now).await?.records;
    let mut csv =
        String::from("timestamp_ist,timestamp_utc_ms,client_ip,method,path,status_code,duration_ms,user,route\n");
    for record in &records {
        let fields = [
            ist(record.at),
            record.at.0.to_string(),
            record.ip.clone(),
            record.method.clone(),
            record.path.clone(),
            record.status.to_string(),
            format!("{:.3}", record.duration_ms),
            record.user.clone(),
            record.route.clone(),
        ];
        let line: Vec<String> = fields.iter().map(|field| csv_field(field)).collect();
        csv.push_str(&line.join(","));
        csv.push('\n');
    }
    Ok(Reply::csv("kavach-traffic.csv", csv))
}

/// One CSV field: quoted when it must be, and never read as a formula by a spreadsheet. OWASP's
/// list of leading characters includes TAB and CR, which some spreadsheets skip before a formula.
fn csv_field(value: &str) -> String {
    let value =
        if value.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{value}") } else { value.to_owned() };
    if value.contains([',', '"', '\n', '\r']) { format!("\"{}\"", value.replace('"', "\"\"")) } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formula_safe() {
        assert_eq!(csv_field("/api/v1/ping"), "/api/v1/ping");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("\t=1+1"), "'\t=1+1");
        assert_eq!(csv_field("\r=1+1"), "\"'\r=1+1\"", "guarded, and quoted for its CR");
    }

    #[test]
    fn operator_addresses_are_validated_and_canonical() {
        assert_eq!(parse_ip(" ::ffff:203.0.113.9 ").expect("ip").to_string(), "203.0.113.9");
        assert_eq!(parse_ip("999.1.1.1").expect_err("bad").public_message(), "Invalid IP address format");
    }
}
