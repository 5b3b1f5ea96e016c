//! The administrator's security pages: `/security` (bans, detector records, login activity,
//! settings, manual ban and unban) and `/logs` (the traffic log, filtered, with CSV export).
//! Every view is HTML for a browser and JSON for a script; every change is a CSRF-checked POST.

use std::net::IpAddr;

use serde_json::{Value, json};
use shared::Deps;
use shared::core::clock::UnixMillis;
use shared::core::error::AppError;
use shared::pipeline::pages::html::{csrf_field, escape, notice_box};
use shared::pipeline::pages::{Reply, WebRequest};
use shared::store::bans::Ban;
use shared::store::trackers::Tracker;
use shared::store::traffic::{LoggedRequest, TrafficFilter};
use shared::threats::{Detector, ManualBan, SecuritySettings};

use crate::common::ist;

/// The durations the manual-ban form offers, in hours (OpenAlgo's API accepts any 1–8760).
const BAN_CHOICES: [(&str, &str); 4] = [("24", "24 hours"), ("48", "48 hours"), ("168", "1 week"), ("0", "Permanent")];
/// Login events shown on the dashboard.
const LOGIN_ACTIVITY_LIMIT: i32 = 50;
/// Requests shown or exported from the traffic log at most.
const LOG_LIMIT_MAX: usize = 1000;

fn secs_ist(secs: u64) -> String {
    ist(UnixMillis::from_secs(secs))
}

fn ban_json(ban: &Ban) -> Value {
    json!({
        "ip_address": ban.ip.to_string(),
        "ban_reason": ban.reason,
        "banned_at": secs_ist(ban.banned_at),
        "expires_at": ban.expires_at.map(secs_ist),
        "is_permanent": ban.is_permanent(),
        "ban_count": ban.ban_count,
        "created_by": ban.created_by,
    })
}

fn tracker_json(tracker: &Tracker, evidence_name: &str) -> Value {
    json!({
        "ip_address": tracker.ip.to_string(),
        "count": tracker.count,
        "first_at": secs_ist(tracker.first_at),
        "last_at": secs_ist(tracker.last_at),
        evidence_name: tracker.evidence,
    })
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
        deps.identity.recent_audit("login", LOGIN_ACTIVITY_LIMIT),
    )?;
    let permanent = bans.iter().filter(|ban| ban.is_permanent()).count();
    let threshold = u64::from(settings.not_found_threshold);
    let near = |tracker: &&Tracker| tracker.count * 4 >= threshold * 3 && tracker.count <= threshold;
    let failed_logins = logins.iter().filter(|event| event.outcome == "failed").count();
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
            "username": event.username,
            "ip_address": event.ip,
            "outcome": event.outcome,
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
    let text = |value: &Value| escape(&value.as_str().map_or_else(|| value.to_string(), str::to_owned));
    let rows = |key: &str| data[key].as_array().map_or(&[][..], Vec::as_slice);

    let notices = [
        ("banned", "The address is banned."),
        ("unbanned", "The address is unbanned."),
        ("cleared", "The 404 record is cleared."),
        ("saved", "Settings saved. They apply from the next request."),
    ];
    let notice =
        notice_box(notices.iter().find(|(flag, _)| request.query_param(flag).is_some()).map(|(_, text)| *text));

    let totals = &data["totals"];
    let totals_html = format!(
        r#"<table id="totals"><tr><th>Active bans</th><th>Permanent</th><th>Temporary</th><th>IPs with 404s</th><th>Near the 404 threshold</th><th>IPs with invalid keys</th><th>Recent failed logins</th></tr>
<tr><td id="total-bans">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>"#,
        text(&totals["active_bans"]),
        text(&totals["permanent_bans"]),
        text(&totals["temporary_bans"]),
        text(&totals["ips_with_404s"]),
        text(&totals["ips_near_404_threshold"]),
        text(&totals["ips_with_invalid_keys"]),
        text(&totals["recent_failed_logins"]),
    );

    let bans_html: String = rows("banned_ips")
        .iter()
        .map(|ban| {
            format!(
                r#"<tr class="ban" data-ip="{ip}"><td>{ip}</td><td>{reason}</td><td>{at}</td><td>{until}</td><td>{count}</td><td>{by}</td>
<td><form class="inline" method="post" action="/security/unban">{csrf}<input type="hidden" name="ip_address" value="{ip}"><button type="submit" class="unban">Unban</button></form></td></tr>"#,
                ip = text(&ban["ip_address"]),
                reason = text(&ban["ban_reason"]),
                at = text(&ban["banned_at"]),
                until = if ban["is_permanent"] == true { "Permanent".to_owned() } else { text(&ban["expires_at"]) },
                count = text(&ban["ban_count"]),
                by = text(&ban["created_by"]),
            )
        })
        .collect();

    let tracker_rows = |key: &str, evidence: &str, clear: bool| -> String {
        rows(key)
            .iter()
            .map(|row| {
                let items: Vec<String> = row[evidence].as_array().into_iter().flatten().map(&text).collect();
                let clear_form = if clear {
                    format!(
                        r#"<form class="inline" method="post" action="/security/clear-404">{csrf}<input type="hidden" name="ip_address" value="{}"><button type="submit">Clear</button></form>"#,
                        text(&row["ip_address"])
                    )
                } else {
                    String::new()
                };
                format!(
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>{clear_form}</td></tr>",
                    text(&row["ip_address"]),
                    text(&row["count"]),
                    text(&row["first_at"]),
                    text(&row["last_at"]),
                    items.join("<br>"),
                )
            })
            .collect()
    };

    let logins_html: String = rows("login_activity")
        .iter()
        .map(|event| {
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                text(&event["at"]),
                text(&event["username"]),
                text(&event["ip_address"]),
                text(&event["outcome"]),
                text(&event["detail"]),
            )
        })
        .collect();

    let settings = &data["settings"];
    let number_input = |name: &str, label: &str| {
        format!(
            r#"<label for="{name}">{label}</label><input id="{name}" name="{name}" type="number" min="0" value="{}">"#,
            text(&settings[name])
        )
    };
    let duration_options: String = BAN_CHOICES
        .iter()
        .map(|(hours, label)| {
            format!(r#"<option value="{hours}"{}>{label}</option>"#, if *hours == "24" { " selected" } else { "" })
        })
        .collect();

    let body = format!(
        r#"{notice}<p>Your address: <code id="your-ip">{your_ip}</code> (never bannable from here).</p>
<h2>Totals</h2>{totals_html}
<h2>Active bans</h2>
<table id="bans"><tr><th>IP</th><th>Reason</th><th>Banned at</th><th>Until</th><th>Offence</th><th>By</th><th></th></tr>{bans_html}</table>
<h2>Ban an address</h2>
<form method="post" action="/security/ban" id="ban-form">{csrf}
<label for="ip_address">IP address</label><input id="ip_address" name="ip_address" required>
<label for="reason">Reason</label><input id="reason" name="reason" value="Manual ban" maxlength="200">
<label for="duration_hours">Duration</label><select id="duration_hours" name="duration_hours">{duration_options}</select>
<button id="ban" type="submit">Ban</button></form>
<h2>404s in the last 24 hours</h2>
<table id="not-found"><tr><th>IP</th><th>404s</th><th>First</th><th>Last</th><th>Paths tried</th><th></th></tr>{not_found}</table>
<h2>Invalid API keys in the last 24 hours</h2>
<table id="invalid-keys"><tr><th>IP</th><th>Attempts</th><th>First</th><th>Last</th><th>Key SHA-256 prefixes</th><th></th></tr>{invalid_keys}</table>
<h2>Over the login limit in the last 24 hours</h2>
<table id="login-abuse"><tr><th>IP</th><th>Refused attempts</th><th>First</th><th>Last</th><th></th><th></th></tr>{login_abuse}</table>
<h2>Login activity</h2>
<table id="logins"><tr><th>At</th><th>User</th><th>IP</th><th>Outcome</th><th>Detail</th></tr>{logins_html}</table>
<h2>Settings</h2>
<form method="post" action="/security/settings" id="settings-form">{csrf}
<input type="hidden" name="auto_ban_enabled" value="false">
<label><input id="auto_ban_enabled" name="auto_ban_enabled" type="checkbox" value="true"{auto}> Ban automatically</label>
{t404}{d404}{tapi}{dapi}{tlogin}{dlogin}{repeat}
<button id="save-settings" type="submit">Save settings</button></form>"#,
        your_ip = text(&data["your_ip"]),
        not_found = tracker_rows("ips_with_404s", "paths", true),
        invalid_keys = tracker_rows("ips_with_invalid_keys", "key_hashes", false),
        login_abuse = tracker_rows("ips_over_login_limit", "evidence", false),
        auto = if settings["auto_ban_enabled"] == true { " checked" } else { "" },
        t404 = number_input("404_threshold", "404s per 24 hours before a ban (1–1000)"),
        d404 = number_input("404_ban_duration", "404 ban duration in hours (0 = permanent)"),
        tapi = number_input("api_threshold", "Invalid API keys per 24 hours before a ban (1–100)"),
        dapi = number_input("api_ban_duration", "Invalid-key ban duration in hours (0 = permanent)"),
        tlogin = number_input("login_threshold", "Refused logins per 24 hours before a ban (1–1000)"),
        dlogin = number_input("login_ban_duration", "Login ban duration in hours (0 = permanent)"),
        repeat = number_input("repeat_offender_limit", "Offence from which bans are permanent (1–10)"),
    );
    Ok(request.page(200, "Security", &body))
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
        Some(until) => format!("Banned {ip} until {} (offence {})", secs_ist(until), ban.ban_count),
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
        "timestamp": ist(UnixMillis(record.at)),
        "timestamp_utc_ms": record.at,
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
    let records = deps.traffic.recent(&filter, limit, request.now).await?;
    if request.wants_json {
        return Ok(Reply::json(json!({ "logs": records.iter().map(logged_json).collect::<Vec<_>>() })));
    }
    let rows: String = records
        .iter()
        .map(|record| {
            format!(
                r#"<tr class="log"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{}</td></tr>"#,
                escape(&ist(UnixMillis(record.at))),
                escape(&record.ip),
                escape(&record.method),
                escape(&record.path),
                record.status,
                record.duration_ms,
                escape(&record.user),
                escape(&record.route),
            )
        })
        .collect();
    let value = |name: &str| escape(&request.query_param(name).unwrap_or_default());
    let export_query = request.query.clone();
    let body = format!(
        r#"<form method="get" action="/logs" id="log-filter">
<label for="ip">IP</label><input id="ip" name="ip" value="{ip}">
<label for="status">Status</label><input id="status" name="status" value="{status}">
<label for="path">Path contains</label><input id="path" name="path" value="{path}">
<button id="filter" type="submit">Filter</button></form>
<p><a id="export" href="/logs/export?{export}">Export CSV</a> · <span id="count">{count}</span> request(s), newest first; times in IST; kept {retention} days.</p>
<table id="traffic"><tr><th>Time</th><th>IP</th><th>Method</th><th>Path</th><th>Status</th><th>ms</th><th>User</th><th>Route</th></tr>{rows}</table>"#,
        ip = value("ip"),
        status = value("status"),
        path = value("path"),
        export = escape(&export_query),
        count = records.len(),
        retention = deps.config.traffic_retention_days,
    );
    Ok(request.page(200, "Traffic log", &body))
}

/// `GET /logs/export`: the filtered log as CSV.
pub async fn export(deps: &Deps, request: WebRequest) -> Result<Reply, AppError> {
    let (filter, _) = log_query(&request)?;
    let records = deps.traffic.recent(&filter, LOG_LIMIT_MAX, request.now).await?;
    let mut csv =
        String::from("timestamp_ist,timestamp_utc_ms,client_ip,method,path,status_code,duration_ms,user,route\n");
    for record in &records {
        let fields = [
            ist(UnixMillis(record.at)),
            record.at.to_string(),
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

/// One CSV field: quoted when it must be, and never read as a formula by a spreadsheet.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) { format!("'{value}") } else { value.to_owned() };
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
    }

    #[test]
    fn operator_addresses_are_validated_and_canonical() {
        assert_eq!(parse_ip(" ::ffff:203.0.113.9 ").expect("ip").to_string(), "203.0.113.9");
        assert_eq!(parse_ip("999.1.1.1").expect_err("bad").public_message(), "Invalid IP address format");
    }
}
